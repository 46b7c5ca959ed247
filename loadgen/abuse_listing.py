"""Listing abuse: fill one room with as many bytes of dispatches as a listing may return,
list it back to back (JSON and protobuf), and probe ``/healthz`` meanwhile.

What it shows is how long one maximal listing holds the API node's event loop: the health
probes wait for nothing else.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from livekit import api

from dispatcher.api.auth import create_token

_DISPATCH = "/twirp/livekit.AgentDispatchService/"


async def run_listing(
    url: str, api_key: str, api_secret: str, *, total_bytes: int, rounds: int = 10
) -> dict[str, Any]:
    room = f"listing-abuse-{int(time.time())}"
    token = create_token(api_key, api_secret, {"video": {"roomAdmin": True, "room": room}})
    auth = {"Authorization": f"Bearer {token}"}
    report: dict[str, Any] = {"room": room, "total_bytes": total_bytes}
    async with aiohttp.ClientSession(url) as http:
        report["dispatches"] = await _fill(http, auth, room, total_bytes)
        stop, health_ms = asyncio.Event(), list[float]()
        prober = asyncio.create_task(_probe(http, stop, health_ms))
        for kind, body in (
            ("json", b'{"room":"%s"}' % room.encode()),
            ("protobuf", api.ListAgentDispatchRequest(room=room).SerializeToString()),
        ):
            report[kind] = await _list(http, auth, kind, body, rounds)
        stop.set()
        await prober
    health_ms.sort()
    report["healthz_ms"] = {
        "probes": len(health_ms),
        "p50": round(health_ms[len(health_ms) // 2], 1),
        "max": round(health_ms[-1], 1),
    }
    return report


async def _fill(http: aiohttp.ClientSession, auth: dict[str, str], room: str, total: int) -> int:
    """Dispatches of 500 kB metadata each until the next would pass ``total``."""
    count, size = 0, 500_000
    while (count + 1) * size < total:
        request = api.CreateAgentDispatchRequest(
            room=room, agent_name=f"listing-{count}", metadata="m" * size
        )
        headers = {**auth, "Content-Type": "application/protobuf"}
        async with http.post(
            _DISPATCH + "CreateDispatch", data=request.SerializeToString(), headers=headers
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"CreateDispatch answered {response.status}")
        count += 1
    return count


async def _list(
    http: aiohttp.ClientSession, auth: dict[str, str], kind: str, body: bytes, rounds: int
) -> dict[str, Any]:
    headers = {**auth, "Content-Type": f"application/{kind}"}
    took, size, status = [], 0, 0
    for _ in range(rounds):
        started = time.perf_counter()
        async with http.post(_DISPATCH + "ListDispatch", data=body, headers=headers) as response:
            size, status = len(await response.read()), response.status
        took.append((time.perf_counter() - started) * 1000)
    return {"status": status, "bytes": size, "max_ms": round(max(took), 1)}


async def _probe(http: aiohttp.ClientSession, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        async with http.get("/healthz", headers={"Connection": "close"}) as response:
            await response.read()
        out.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.02)
