"""The status snapshot (dispatcher.observe.snapshot) on a single Redis and on a Redis
Cluster: partitions and their owner, pools and servers, and the schedulers' own figures."""

from __future__ import annotations

import asyncio

from livekit import api

from dispatcher.observe.snapshot import Snapshot, collect
from dispatcher.store import keys
from dispatcher.store.client import connect
from dispatcher.wire import SchedulerFigures, encode
from tests.faultinject import Faults
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
from workers import JobContext


async def test_a_snapshot_shows_owners_servers_and_running_jobs(redis_target: RedisTarget) -> None:
    release = asyncio.Event()

    async def entry(ctx: JobContext) -> None:
        await release.wait()

    scheduler = await start_scheduler(redis_target.url, "sched-1", partitions=8)
    node = await start_api(redis_target.url, partitions=8)
    agent = await start_agent(redis_target.url, "snap-agent", entry, capacity=4)
    client = await connect(redis_target.url)
    lk = api.LiveKitAPI(api_url(node), API_KEY, API_SECRET)
    try:
        request = api.CreateAgentDispatchRequest(agent_name="snap-agent", room="snap-room")
        await lk.agent_dispatch.create_dispatch(request)
        seen: list[Snapshot] = []

        async def running() -> bool:
            seen[:] = [await collect(client)]
            return seen[0].totals.jobs_by_phase.get("running") == 1

        await eventually(running, what="the snapshot to show the running job")
        snapshot = seen[0]
        assert [p.owner for p in snapshot.partitions] == ["sched-1"] * 8
        assert [(s.node_id, s.alive, s.partitions) for s in snapshot.schedulers] == [
            ("sched-1", True, list(range(8)))
        ]
        [pool] = snapshot.pools
        [server] = pool.servers
        assert (pool.agent_name, pool.capacity, pool.used) == ("snap-agent", 4, 1)
        assert (server.id, server.status) == (agent.id, "available")
        assert snapshot.totals.jobs_started == 1 and sum(snapshot.totals.dispatch_counts) == 1
        built = snapshot.to_builtins()
        assert "figures" not in built and built["pools"][0]["servers"][0]["lastHeartbeatMs"] > 0
    finally:
        release.set()
        await lk.aclose()
        await agent.aclose()
        await node.aclose()
        await scheduler.drain()
        await scheduler.aclose()
        await client.aclose()


async def test_a_cleanly_stopped_scheduler_takes_its_figures_along(
    redis_target: RedisTarget,
) -> None:
    scheduler = await start_scheduler(redis_target.url, "sched-gone", partitions=4)
    client = await connect(redis_target.url)
    try:
        assert [f.node_id for f in (await collect(client)).figures] == ["sched-gone"]
        await scheduler.drain()
        snapshot = await collect(client)
        assert snapshot.figures == [] and not any(p.owner for p in snapshot.partitions)
    finally:
        await scheduler.aclose()
        await client.aclose()


async def test_the_record_of_a_crashed_scheduler_is_dropped_by_a_live_one(
    redis_target: RedisTarget,
) -> None:
    client = await connect(redis_target.url)
    crashed = SchedulerFigures(node_id="crashed", started_at=0, at=0, heartbeat_ms=500)
    await client.hset(keys.SCHEDULER_FIGURES, "crashed", encode(crashed))
    scheduler = await start_scheduler(redis_target.url, "sched-live", partitions=4)
    try:

        async def pruned() -> bool:
            names = await client.hkeys(keys.SCHEDULER_FIGURES)
            return sorted(names) == [b"sched-live"]

        await eventually(pruned, what="the crashed node's record to go")
    finally:
        await scheduler.drain()
        await scheduler.aclose()
        await client.aclose()


async def test_a_figures_write_that_fails_leaves_the_scheduler_at_work(
    redis_single_target: RedisTarget,
) -> None:
    """Policy: the write is dropped, the heartbeat goes on (its leases were renewed before
    it), and the next heartbeat writes everything, the counters being cumulative."""
    scheduler = await start_scheduler(redis_single_target.url, "sched-cut", partitions=4)
    client = await connect(redis_single_target.url)
    faults = Faults(scheduler.client.fast)
    try:
        await client.hdel(keys.SCHEDULER_FIGURES, "sched-cut")
        rule = faults.fail_command("HSET", keys.SCHEDULER_FIGURES)
        await eventually(lambda: rule.failed >= 10, what="ten failed writes")  # > 2 lease TTLs
        assert sorted(scheduler.loops) == [0, 1, 2, 3]
        assert await client.hget(keys.SCHEDULER_FIGURES, "sched-cut") is None
        faults.clear()

        async def written() -> bool:
            return await client.hget(keys.SCHEDULER_FIGURES, "sched-cut") is not None

        await eventually(written, what="the record once Redis takes it")
    finally:
        faults.clear()
        await scheduler.drain()
        await scheduler.aclose()
        await client.aclose()
