"""The open-loop sender: dispatch i leaves at t0 + i/rate, whatever earlier replies do.

A closed loop (send, wait, send) slows down exactly when the server does and so hides the
latency it should measure. Here every request is its own task; the schedule never waits on
replies. In-flight requests are capped only as a safety valve, and a send that would exceed
the cap is counted as an error ("client_overload") rather than delayed.

Requests go through ``HttpClient``, a lean keep-alive client: the general-purpose one cost
~250 us of CPU per request, which made the load generator the bottleneck (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
from google.protobuf.message import DecodeError
from livekit.protocol.agent_dispatch import AgentDispatch

from loadgen.httpclient import HttpClient, HttpError, HttpTimeout
from loadgen.options import DispatchOptions
from loadgen.payload import (
    CREATE_PATH,
    authorization,
    encode_metadata,
    request_body,
    room_name,
)
from loadgen.progress import Progress

REQUEST_TIMEOUT_S = 10.0
OK = "ok"
_YIELD_EVERY = 64  # when behind schedule, still let replies be handled this often


def planned_count(rate: float, duration: float) -> int:
    """How many sends the schedule holds: one every 1/rate seconds for ``duration``."""
    return max(0, math.ceil(rate * duration - 1e-9))


def send_time(t0: float, index: int, rate: float) -> float:
    """When send ``index`` is due: computed from t0, never from the previous send, so
    lateness of one send does not shift all later ones."""
    return t0 + index / rate


def classify(status: int, body: bytes) -> tuple[str, str | None]:
    """(code, dispatch id): "ok" and the new dispatch's id, else the Twirp error code."""
    if status == 200:
        dispatch = AgentDispatch()
        try:
            dispatch.ParseFromString(body)
        except DecodeError:
            return "bad_response", None
        return OK, str(dispatch.id)
    try:
        code = orjson.loads(body).get("code")
    except (orjson.JSONDecodeError, AttributeError):
        code = None
    return (code if isinstance(code, str) and code else f"http_{status}"), None


@dataclass
class SendStats:
    """What the sender saw; plain data so the report can be built and tested without I/O."""

    planned: int
    attempted: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    accepted_ids: list[str] = field(default_factory=list)
    response_ns: list[int] = field(default_factory=list)
    lag_ns: list[int] = field(default_factory=list)
    first_send: float = 0.0
    last_send: float = 0.0
    cpu_s: float = 0.0

    def send_rate(self) -> float:
        """Achieved rate between the first and the last send."""
        span = self.last_send - self.first_send
        return (self.attempted - 1) / span if self.attempted > 1 and span > 0 else 0.0


class Sender:
    """Issues the schedule over one keep-alive session and tallies the replies."""

    def __init__(
        self,
        client: HttpClient,
        options: DispatchOptions,
        prefix: str,
        progress: Progress | None = None,
    ) -> None:
        self._client = client
        self._options = options
        self._prefix = prefix
        self._progress = progress or Progress(options.rate)
        self._in_flight: set[asyncio.Task[None]] = set()
        self.stats = SendStats(planned=planned_count(options.rate, options.duration))

    async def run(self, t0: float | None = None) -> SendStats:
        """Send the whole schedule, then wait for the replies still outstanding.

        ``t0``: when the first send is due (``time.perf_counter``); default 50 ms from now."""
        rate, stats = self._options.rate, self.stats
        t0 = time.perf_counter() + 0.05 if t0 is None else t0
        stats.first_send = t0
        for index in range(stats.planned):
            due = send_time(t0, index, rate)
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif index % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            now = time.perf_counter()
            stats.lag_ns.append(int((now - due) * 1e9))
            stats.last_send = now
            self._launch(index)
        if self._in_flight:
            await asyncio.wait(self._in_flight)
        return stats

    def _launch(self, index: int) -> None:
        self.stats.attempted += 1
        self._progress.sent()
        if len(self._in_flight) >= self._options.max_in_flight:
            self.stats.codes["client_overload"] += 1
            self._progress.error("client_overload")
            return
        task = asyncio.create_task(self._send(index))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send(self, index: int) -> None:
        reply = await post_dispatch(self._client, self._options, room_name(self._prefix, index))
        self.stats.codes[reply.code] += 1
        if reply.code == OK:
            self._progress.accepted()
        else:
            self._progress.error(reply.code)
        if reply.elapsed_ns is not None:
            self.stats.response_ns.append(reply.elapsed_ns)
        if reply.dispatch_id is not None:
            self.stats.accepted_ids.append(reply.dispatch_id)


@dataclass(frozen=True, slots=True)
class Reply:
    code: str
    dispatch_id: str | None = None
    elapsed_ns: int | None = None  # None when no HTTP response came back


async def post_dispatch(client: HttpClient, options: DispatchOptions, room: str) -> Reply:
    """One CreateDispatch call; the send time goes into the metadata just before it."""
    sent_ns = time.time_ns()
    started = time.perf_counter_ns()
    body = request_body(options.agent_name, room, encode_metadata(sent_ns))
    headers = (
        ("Authorization", authorization(options.api_key, options.api_secret, room)),
        ("Content-Type", "application/protobuf"),
    )
    try:
        status, payload = await client.post(CREATE_PATH, body, headers)
    except HttpTimeout:
        return Reply("timeout")
    except HttpError:
        return Reply("connection_error")
    code, dispatch_id = classify(status, payload)
    return Reply(code, dispatch_id, time.perf_counter_ns() - started)


def http_client(options: DispatchOptions) -> HttpClient:
    """Keep-alive connections to the API node, reused as a real API client would."""
    return HttpClient(options.url, max_connections=options.connections, timeout_s=REQUEST_TIMEOUT_S)


async def send_all(
    client: HttpClient, options: DispatchOptions, prefix: str, progress: Progress | None = None
) -> SendStats:
    """Run the schedule; CPU time covers sending and reply handling only."""
    sender = Sender(client, options, prefix, progress)
    cpu_before = time.process_time()
    stats = await sender.run()
    stats.cpu_s = time.process_time() - cpu_before
    return stats
