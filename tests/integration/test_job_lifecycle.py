"""A job's life through the real API, scheduler and agent SDK: waiting for capacity, failing,
being rejected, timing out on a silent server, draining."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from livekit import api
from livekit.api import LiveKitAPI
from livekit.protocol.agent import Job

from dispatcher import ids
from dispatcher.api.app import ApiNode
from dispatcher.scheduler.node import SchedulerNode
from dispatcher.store import calls, scripts
from dispatcher.store.client import Client, connect
from tests import pools
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
from workers import AgentServer, JobContext, JobRequest

JS = api.JobStatus


@dataclass
class Stack:
    url: str
    api: ApiNode
    scheduler: SchedulerNode
    lk: LiveKitAPI
    agents: list[AgentServer] = field(default_factory=list)

    async def agent(
        self,
        entry: Callable[[JobContext], Awaitable[None]],
        on_request: Callable[[JobRequest], Awaitable[None]] | None = None,
    ) -> AgentServer:
        server = await start_agent(self.url, "life", entry, on_request=on_request)
        self.agents.append(server)
        return server

    async def dispatch(self, room: str) -> str:
        request = api.CreateAgentDispatchRequest(agent_name="life", room=room)
        return str((await self.lk.agent_dispatch.create_dispatch(request)).id)

    async def jobs(self, room: str) -> list[Job]:
        dispatches = await self.lk.agent_dispatch.list_dispatch(room_name=room)
        return list(dispatches[0].state.jobs)

    async def status(self, room: str) -> int:
        jobs = await self.jobs(room)
        return int(jobs[-1].state.status) if jobs else -1


@pytest.fixture
async def stack(redis_single_target: RedisTarget) -> AsyncIterator[Stack]:
    url = redis_single_target.url
    scheduler = await start_scheduler(url, "life-s", assign_timeout_ms=1000)
    node = await start_api(url)
    stack = Stack(url, node, scheduler, api.LiveKitAPI(api_url(node), API_KEY, API_SECRET))
    await eventually(lambda: len(scheduler.loops) == 64, what="ownership")
    yield stack
    await stack.lk.aclose()
    await node.aclose()
    await asyncio.gather(*(a.aclose() for a in stack.agents))
    await stack.scheduler.aclose()


async def _forever(ctx: JobContext) -> None:
    await asyncio.Event().wait()


async def test_without_capacity_the_job_waits_pending_then_runs(stack: Stack) -> None:
    await stack.dispatch("wait-room")
    await eventually(lambda: _is(stack, "wait-room", JS.JS_PENDING), what="the pending job")
    await asyncio.sleep(0.3)  # several placement rounds with no server: still pending
    assert await stack.status("wait-room") == JS.JS_PENDING
    await stack.agent(_forever)
    await eventually(lambda: _is(stack, "wait-room", JS.JS_RUNNING), what="placement")


async def test_an_entrypoint_exception_fails_the_job_with_its_error(stack: Stack) -> None:
    async def broken(ctx: JobContext) -> None:
        raise RuntimeError("no microphone")

    await stack.agent(broken)
    await stack.dispatch("fail-room")
    await eventually(lambda: _is(stack, "fail-room", JS.JS_FAILED), what="failure")
    assert (await stack.jobs("fail-room"))[-1].state.error == "RuntimeError: no microphone"


async def test_a_rejecting_server_passes_the_job_to_another(stack: Stack) -> None:
    async def refuse(req: JobRequest) -> None:
        await req.reject(terminate=False)

    await stack.agent(_forever, on_request=refuse)
    await stack.dispatch("reject-room")
    accepting = await stack.agent(_forever)
    await eventually(lambda: _is(stack, "reject-room", JS.JS_RUNNING), what="placement")
    assert (await stack.jobs("reject-room"))[-1].state.worker_id == accepting.id


async def test_a_lone_server_that_keeps_refusing_is_asked_less_and_less_often(
    stack: Stack,
) -> None:
    asked: list[float] = []

    async def refuse(req: JobRequest) -> None:
        asked.append(asyncio.get_running_loop().time())
        await req.reject(terminate=False)

    await stack.agent(_forever, on_request=refuse)
    await stack.dispatch("refused-room")
    await eventually(lambda: _asked(asked, 3), what="a few offers")
    await asyncio.sleep(3.0)
    # refusals 2.. wait 50, 100, 200, 400, 800, 1600 ms: about 8 offers in 3 s, not hundreds
    assert len(asked) <= 12, f"{len(asked)} offers in about 3 s"
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    assert max(gaps) >= 0.5


async def _asked(asked: list[float], count: int) -> bool:
    return len(asked) >= count


async def test_reject_with_terminate_ends_the_job(stack: Stack) -> None:
    async def refuse(req: JobRequest) -> None:
        await req.reject()

    await stack.agent(_forever, on_request=refuse)
    await stack.dispatch("end-room")
    await eventually(lambda: _is(stack, "end-room", JS.JS_SUCCESS), what="the job to end")


async def test_a_silent_server_times_out_and_the_job_moves_on(stack: Stack) -> None:
    async with silent_server(stack.url, "AW_silent"):
        await stack.dispatch("silent-room")
        await eventually(lambda: _worker_is(stack, "silent-room", "AW_silent"), what="assignment")
        live = await stack.agent(_forever)
        await eventually(lambda: _is(stack, "silent-room", JS.JS_RUNNING), what="re-placement")
        jobs = await stack.jobs("silent-room")
        assert jobs[-1].state.worker_id == live.id
        assert jobs[0].state.status == JS.JS_FAILED and "did not start" in jobs[0].state.error


async def test_a_job_its_server_confirmed_is_not_placed_again_when_its_report_is_late(
    stack: Stack,
) -> None:
    ran: list[str] = []

    async def record(ctx: JobContext) -> None:
        ran.append(ctx.job.id)
        await asyncio.Event().wait()

    async with silent_server(stack.url, "AW_slow"):
        await stack.dispatch("late-room")
        await eventually(lambda: _worker_is(stack, "late-room", "AW_slow"), what="assignment")
        job_id = (await stack.jobs("late-room"))[-1].id
        # The server starts the job (confirms its slot) but its RUNNING report is slow to come.
        client = await connect(stack.url)
        try:
            shard = pools.shard("life", "AW_slow")
            assert await scripts.confirm(client, *calls.confirm(shard, "AW_slow", job_id)) == 1
        finally:
            await client.aclose()
        await stack.agent(record)
        await eventually(lambda: _is(stack, "late-room", JS.JS_RUNNING), what="running")
        await asyncio.sleep(1.5)  # past the 1 s assignment timeout
        jobs = await stack.jobs("late-room")
        assert [(j.id, j.state.worker_id) for j in jobs] == [(job_id, "AW_slow")]
        assert ran == []


async def test_the_job_of_a_server_that_stops_heartbeating_is_placed_again(stack: Stack) -> None:
    first = await stack.agent(_forever)
    await stack.dispatch("lost-room")
    await eventually(lambda: _is(stack, "lost-room", JS.JS_RUNNING), what="first placement")
    first._leaving.set()  # heartbeats stop, as if the host vanished; nothing leaves the pool
    second = await stack.agent(_forever)
    await eventually(lambda: _worker_is(stack, "lost-room", second.id), what="re-placement")
    await eventually(lambda: _is(stack, "lost-room", JS.JS_RUNNING), what="second run")
    jobs = await stack.jobs("lost-room")
    assert jobs[0].state.worker_id == first.id and "was lost" in jobs[0].state.error


async def test_a_server_reporting_load_over_the_threshold_gets_no_job(stack: Stack) -> None:
    busy = AgentServer(
        redis_url=stack.url,
        capacity=5,
        load_fnc=lambda _: 0.95,
        heartbeat_interval_s=0.2,
        heartbeat_ttl_ms=1000,
    )
    busy.rtc_session(agent_name="life")(_forever)
    await busy.start()
    stack.agents.append(busy)
    await stack.dispatch("load-room")
    await asyncio.sleep(0.5)  # several registry refreshes and placement rounds
    assert await stack.status("load-room") == JS.JS_PENDING
    idle = await stack.agent(_forever)
    await eventually(lambda: _worker_is(stack, "load-room", idle.id), what="placement")


async def test_a_new_lease_holder_inherits_the_assignment_timer(stack: Stack) -> None:
    async with silent_server(stack.url, "AW_silent"):
        await stack.dispatch("handover-room")
        await eventually(lambda: _worker_is(stack, "handover-room", "AW_silent"), what="assignment")
        await stack.scheduler.aclose()  # leases expire; the timer lives on in the job record
        stack.scheduler = await start_scheduler(stack.url, "life-t", assign_timeout_ms=1000)
        live = await stack.agent(_forever)
        await eventually(lambda: _worker_is(stack, "handover-room", live.id), what="re-placement")
        jobs = await stack.jobs("handover-room")
        assert jobs[0].state.worker_id == "AW_silent" and "did not start" in jobs[0].state.error


async def test_drain_takes_no_new_jobs_and_lets_running_ones_finish(stack: Stack) -> None:
    release = asyncio.Event()

    async def until_released(ctx: JobContext) -> None:
        await release.wait()

    server = await stack.agent(until_released)
    await stack.dispatch("drain-a")
    await eventually(lambda: _is(stack, "drain-a", JS.JS_RUNNING), what="first job")
    draining = asyncio.create_task(server.drain(timeout_s=10))
    await eventually(lambda: server.draining, what="draining")
    await stack.dispatch("drain-b")
    release.set()
    await draining
    await eventually(lambda: _is(stack, "drain-a", JS.JS_SUCCESS), what="the job to finish")
    assert await stack.status("drain-b") == JS.JS_PENDING


async def test_a_freed_slot_takes_a_waiting_job_before_the_next_snapshot(
    redis_single_target: RedisTarget,
) -> None:
    url = redis_single_target.url
    release = asyncio.Event()

    async def first_holds(ctx: JobContext) -> None:
        if ctx.job.room.name == "slot-a":
            await release.wait()

    # One slot, and a snapshot that is not refreshed again within the test (the long TTL
    # keeps the server alive in it): only the scheduler's own count of freed slots can let
    # the waiting job in.
    server = AgentServer(
        redis_url=url, capacity=1, heartbeat_interval_s=0.2, heartbeat_ttl_ms=600_000
    )
    server.rtc_session(agent_name="life")(first_holds)
    await server.start()
    scheduler = await start_scheduler(url, "slot-s", snapshot_interval_s=600.0)
    node = await start_api(url)
    stack = Stack(url, node, scheduler, api.LiveKitAPI(api_url(node), API_KEY, API_SECRET))
    try:
        await eventually(lambda: len(scheduler.loops) == 64, what="ownership")
        await stack.dispatch("slot-a")
        await eventually(lambda: _is(stack, "slot-a", JS.JS_RUNNING), what="the first job")
        await stack.dispatch("slot-b")
        await asyncio.sleep(0.3)  # several placement rounds: the one slot is taken
        assert await stack.status("slot-b") == JS.JS_PENDING
        release.set()
        await eventually(lambda: _is(stack, "slot-b", JS.JS_SUCCESS), what="the waiting job")
    finally:
        await stack.lk.aclose()
        await node.aclose()
        await server.aclose()
        await scheduler.aclose()


async def test_a_reservation_that_never_reaches_its_server_is_reclaimed(
    redis_target: RedisTarget,
) -> None:
    client = await connect(redis_target.url)
    try:
        await scripts.load_all(client)
        await _heartbeat(client, "AW_idle")
        shard = pools.shard("life", "AW_idle")
        held = await pools.reserve(client, "life", shard.shard, "AJ_1", reach_ms=50)
        assert held == b"AW_idle"
        assert (await pools.tick(client, "life", shard.shard))[4] == 0  # not due yet
        await asyncio.sleep(0.1)
        assert (await pools.tick(client, "life", shard.shard))[4] == 1
        assert await client.hlen(shard.reservations("AW_idle")) == 0
        assert await client.hget(shard.jobs, "AJ_1") is None
    finally:
        await client.aclose()


async def _heartbeat(client: Client, server_id: str) -> None:
    await pools.heartbeat(client, "life", server_id, ttl_ms=1000)


@asynccontextmanager
async def silent_server(url: str, server_id: str) -> AsyncIterator[None]:
    """A registered server that heartbeats but never reads its inbox."""
    client = await connect(url)
    await scripts.load_all(client)

    async def beat() -> None:
        while True:
            await _heartbeat(client, server_id)
            await asyncio.sleep(0.2)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


async def _is(stack: Stack, room: str, status: int) -> bool:
    return await stack.status(room) == status


async def _worker_is(stack: Stack, room: str, server_id: str) -> bool:
    jobs = await stack.jobs(room)
    return bool(jobs) and jobs[-1].state.worker_id == server_id


async def test_a_job_reserved_before_its_assignment_was_committed_keeps_its_server(
    stack: Stack,
) -> None:
    """A lease holder commits a new job as pending and reserves its slot in the same round
    trip; it may stop before committing the assignment. The next holder places the job
    again and must land on the reservation that exists, not make a second one, in this
    shard or any other."""
    await stack.scheduler.aclose()
    first, *others = pools.ids_in_distinct_shards("life", "AW_", pools.SHARDS)
    async with contextlib.AsyncExitStack() as servers:
        for server_id in (first, *others):
            await servers.enter_async_context(silent_server(stack.url, server_id))
        dispatch_id = await stack.dispatch("crash-room")
        client = stack.api.client
        job_id = ids.job_id(dispatch_id, 0)
        shard = pools.shard("life", first)
        assert await pools.reserve(client, "life", shard.shard, job_id) == first.encode()
        # silent servers never start it: a long timeout keeps it where it was placed
        stack.scheduler = await start_scheduler(stack.url, "life-u", assign_timeout_ms=60_000)
        await eventually(lambda: _worker_is(stack, "crash-room", first), what="placement")
        assert await client.xlen(shard.inbox(first)) == 1  # the first reservation's only
        for other in others:  # one server per shard: no other shard holds a second one
            assert await client.xlen(pools.shard("life", other).inbox(other)) == 0
