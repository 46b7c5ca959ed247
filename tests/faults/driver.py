"""The fault suite's client side: CreateDispatch at a fixed rate with retries, ListDispatch.

Every dispatch goes to its own room ``f-<n>`` with its own request id, and a failed try (any
non-200, a connection error, a timeout) is retried with the same request id until a 200 or
the deadline: the API node deduplicates by request id, so a retry never creates a second
dispatch. A dispatch counts as accepted once a 200 carrying its id came back.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from dispatcher.api.auth import create_token
from tests.faults import AGENT_NAME
from tests.faults.reconcile import Accepted, ListedJob
from tests.stack import API_KEY, API_SECRET

ROUTE = "/twirp/livekit.AgentDispatchService/"
TRY_TIMEOUT_S = 2.0
RETRY_DELAY_S = 0.2
LIST_CONCURRENCY = 16


@dataclass
class Request:
    """One dispatch to create, and what became of it."""

    room: str
    request_id: str
    sent_ns: int = 0
    accepted_ns: int = 0
    dispatch_id: str = ""
    tries: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        """Minted for each try: a run may outlast any token's lifetime (the soak does)."""
        token = admin_token(self.room)
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    @property
    def headers(self) -> dict[str, str]:
        return {**self.auth, "X-Livekit-Request-Id": self.request_id}


def admin_token(room: str) -> str:
    return create_token(API_KEY, API_SECRET, {"video": {"roomAdmin": True, "room": room}})


def plan(count: int) -> list[Request]:
    """Rooms and request ids, built before the clock starts."""
    run = uuid.uuid4().hex[:8]
    return [Request(f"f-{n}", f"fault-{run}-{n}") for n in range(count)]


async def _post(
    http: aiohttp.ClientSession, url: str, body: dict[str, str], headers: dict[str, str]
) -> tuple[int, Any]:
    timeout = aiohttp.ClientTimeout(total=TRY_TIMEOUT_S)
    async with http.post(url, json=body, headers=headers, timeout=timeout) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if resp.status == 200 else text[:200]


async def create(
    http: aiohttp.ClientSession, base: str, req: Request, hold_s: float, deadline: float
) -> None:
    """Send until a 200 with a dispatch id or the deadline (monotonic)."""
    body = {"agentName": AGENT_NAME, "room": req.room, "metadata": json.dumps({"hold_s": hold_s})}
    req.sent_ns = time.time_ns()
    while time.monotonic() < deadline:
        req.tries += 1
        try:
            status, reply = await _post(http, base + ROUTE + "CreateDispatch", body, req.headers)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            status, reply = 0, repr(exc)
        if status == 200 and reply.get("id"):
            req.dispatch_id, req.accepted_ns = reply["id"], time.time_ns()
            return
        req.errors.append(f"{status} {reply}"[:200])
        await asyncio.sleep(RETRY_DELAY_S)


async def drive(
    base: str, requests: Sequence[Request], rate: float, hold_s: float, deadline_s: float
) -> None:
    """Open loop: request n leaves at start + n / rate whatever became of the earlier ones;
    each retries for up to ``deadline_s`` after its slot."""
    start = time.monotonic()
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(n: int, req: Request) -> None:
            slot = start + n / rate
            await asyncio.sleep(max(0.0, slot - time.monotonic()))
            await create(http, base, req, hold_s, slot + deadline_s)

        await asyncio.gather(*(one(n, req) for n, req in enumerate(requests)))


def refusals(requests: Iterable[Request], most: int = 3) -> list[str]:
    """The commonest last error of the requests never accepted, with their counts."""
    last = Counter(
        r.errors[-1] if r.errors else "never sent" for r in requests if not r.dispatch_id
    )
    return [f"{n} x {error}" for error, n in last.most_common(most)]


def accepted(requests: Iterable[Request]) -> list[Accepted]:
    return [Accepted(r.dispatch_id, r.sent_ns, r.accepted_ns) for r in requests if r.dispatch_id]


def jobs_of(reply: dict[str, Any]) -> dict[str, list[ListedJob]]:
    """Dispatch id -> its jobs, from a ListDispatch reply in protojson (proto field names)."""
    out = {}
    for dispatch in reply.get("agent_dispatches", []):
        jobs = dispatch.get("state", {}).get("jobs", [])
        out[dispatch["id"]] = [
            ListedJob(
                job["id"],
                job["state"]["status"],
                job["state"].get("worker_id", ""),
                job["state"].get("error", ""),
            )
            for job in jobs
        ]
    return out


async def list_rooms(base: str, requests: Sequence[Request]) -> dict[str, list[ListedJob]]:
    """ListDispatch of every given room (one try each; the caller polls)."""
    gate = asyncio.Semaphore(LIST_CONCURRENCY)
    found: dict[str, list[ListedJob]] = {}
    async with aiohttp.ClientSession() as http:

        async def one(req: Request) -> None:
            async with gate:
                try:
                    status, reply = await _post(
                        http, base + ROUTE + "ListDispatch", {"room": req.room}, req.auth
                    )
                except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
                    return
                if status == 200:
                    found.update(jobs_of(reply))

        await asyncio.gather(*(one(r) for r in requests))
    return found
