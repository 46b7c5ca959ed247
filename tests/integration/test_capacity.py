"""Placement under a burst: 10 agent servers of capacity 5, 2 schedulers, 200 concurrent
dispatches through the real HTTP API. No server ever runs more than 5 jobs; every dispatch
runs. Runs against a single Redis and a 3-master cluster."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from livekit import api

from tests.redis_servers import RedisTarget
from tests.stack import (
    API_KEY,
    API_SECRET,
    api_url,
    eventually,
    start_agent,
    start_api,
    start_scheduler,
)
from workers import AgentServer, JobContext

SERVERS, CAPACITY, DISPATCHES = 10, 5, 200


class Tracker:
    """Counts jobs running per agent server, and the most ever seen at once."""

    def __init__(self) -> None:
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.ran: Counter[str] = Counter()  # dispatch id -> times started

    async def entry(self, ctx: JobContext) -> None:
        server = ctx.worker_id
        self.running[server] += 1
        self.peak[server] = max(self.peak[server], self.running[server])
        self.ran[str(ctx.job.dispatch_id)] += 1
        try:
            await asyncio.sleep(random.uniform(0.02, 0.1))
        finally:
            self.running[server] -= 1


async def test_burst_never_overfills_a_server_and_every_dispatch_runs(
    redis_target: RedisTarget,
) -> None:
    url = redis_target.url
    tracker = Tracker()
    schedulers = [await start_scheduler(url, f"s{i}") for i in range(2)]
    agents: list[AgentServer] = [
        await start_agent(url, "burst-agent", tracker.entry, capacity=CAPACITY)
        for _ in range(SERVERS)
    ]
    node = await start_api(url)
    lk = api.LiveKitAPI(api_url(node), API_KEY, API_SECRET)
    try:
        await eventually(lambda: sum(len(s.loops) for s in schedulers) == 64, what="ownership")
        requests = [
            api.CreateAgentDispatchRequest(agent_name="burst-agent", room=f"room-{i}")
            for i in range(DISPATCHES)
        ]
        created = await asyncio.gather(*(lk.agent_dispatch.create_dispatch(r) for r in requests))
        ids = {d.id for d in created}
        assert len(ids) == DISPATCHES
        await eventually(lambda: set(tracker.ran) == ids, timeout_s=60, what="every dispatch ran")
        assert max(tracker.peak.values()) <= CAPACITY
        assert all(count == 1 for count in tracker.ran.values())
    finally:
        await lk.aclose()
        await node.aclose()
        await asyncio.gather(*(a.aclose() for a in agents))
        await asyncio.gather(*(s.aclose() for s in schedulers))
