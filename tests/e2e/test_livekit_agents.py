"""LiveKit's own agent workers (``livekit-agents``, the reference docs' agent started with its
own ``start`` command) connected over ``/agent``: dispatched explicitly, by a token and
automatically, terminated, drained, and sharing a pool with our SDK's servers."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from livekit import api

from dispatcher.api.app import ApiNode
from dispatcher.scheduler.node import SchedulerNode
from tests.e2e.livekit_worker import Worker, livekit_worker
from tests.redis_servers import RedisTarget
from tests.room_stack import JOIN, join_token
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

pytestmark = pytest.mark.timeout(180)
JS = api.JobStatus
WAIT_S = 45.0  # a worker forks its job processes; the first start takes a few seconds


@dataclass
class Stack:
    redis_url: str
    url: str
    node: ApiNode
    scheduler: SchedulerNode
    lk: api.LiveKitAPI
    http: aiohttp.ClientSession

    async def dispatch(self, room: str, metadata: str) -> str:
        request = api.CreateAgentDispatchRequest(
            agent_name="test-agent", room=room, metadata=metadata
        )
        return str((await self.lk.agent_dispatch.create_dispatch(request)).id)

    async def job(self, room: str) -> api.Job | None:
        dispatches = await self.lk.agent_dispatch.list_dispatch(room_name=room)
        jobs = [j for d in dispatches for j in d.state.jobs]
        return jobs[-1] if jobs else None

    async def status_is(self, room: str, status: int) -> bool:
        job = await self.job(room)
        return job is not None and job.state.status == status

    async def join(self, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with self.http.post(self.url + JOIN, data=b"{}", headers=headers) as reply:
            assert reply.status == 200, await reply.text()


async def _stack(redis: RedisTarget, **api_settings: object) -> AsyncIterator[Stack]:
    scheduler = await start_scheduler(redis.url, "lk-e2e")
    node = await start_api(redis.url, **api_settings)
    url = api_url(node)
    lk = api.LiveKitAPI(url, API_KEY, API_SECRET)
    http = aiohttp.ClientSession()
    try:
        yield Stack(redis.url, url, node, scheduler, lk, http)
    finally:
        await http.close()
        await lk.aclose()
        await node.aclose()
        await scheduler.aclose()


@pytest.fixture
async def stack(redis_single_target: RedisTarget) -> AsyncIterator[Stack]:
    async for s in _stack(redis_single_target):
        yield s


async def _registered(worker: Worker) -> None:
    await eventually(lambda: worker.registrations() >= 1, WAIT_S, "the worker to register")


async def test_explicit_token_and_deleted_dispatches_reach_a_livekit_worker(
    stack: Stack, tmp_path: Path
) -> None:
    with livekit_worker(stack.url, tmp_path) as worker:
        await _registered(worker)

        await stack.dispatch("explicit-room", "quick")
        await eventually(lambda: bool(worker.started("quick")), WAIT_S, "the explicit job to start")
        (started,) = worker.started("quick")
        assert started["room"] == "explicit-room" and started["agent_name"] == "test-agent"
        await eventually(
            lambda: stack.status_is("explicit-room", JS.JS_SUCCESS), WAIT_S, "JS_SUCCESS"
        )
        job = await stack.job("explicit-room")
        assert job is not None and job.id == started["job"]

        agent = api.RoomAgentDispatch(agent_name="test-agent", metadata="from-token")
        await stack.join(join_token("token-room", "caller", agent))
        await eventually(lambda: bool(worker.started("from-token")), WAIT_S, "the token's job")
        assert worker.started("from-token")[0]["room"] == "token-room"

        dispatch_id = await stack.dispatch("held-room", "hold")
        await eventually(lambda: stack.status_is("held-room", JS.JS_RUNNING), WAIT_S, "RUNNING")
        # RUNNING can come from the worker before its entrypoint's first line has run
        await eventually(lambda: bool(worker.started("hold")), WAIT_S, "the held job to start")
        assert len(worker.started("hold")) == 1
        await stack.lk.agent_dispatch.delete_dispatch(dispatch_id, "held-room")
        await eventually(lambda: bool(worker.ended("hold")), WAIT_S, "the termination to reach it")
        await eventually(lambda: stack.status_is("held-room", JS.JS_SUCCESS), WAIT_S, "ended")


async def test_a_worker_without_an_agent_name_gets_automatic_dispatches(
    stack: Stack, tmp_path: Path
) -> None:
    with livekit_worker(stack.url, tmp_path, agent_name="") as worker:
        await _registered(worker)
        await stack.join(join_token("auto-room", "first"))
        await eventually(lambda: bool(worker.started("")), WAIT_S, "the automatic job")
        assert worker.started("")[0]["room"] == "auto-room"


async def test_sigterm_drains_the_worker_it_takes_nothing_new_and_leaves_when_done(
    stack: Stack, tmp_path: Path
) -> None:
    with livekit_worker(stack.url, tmp_path) as worker:
        await _registered(worker)
        await stack.dispatch("drain-room", "short")  # ends by itself 3 s after it starts
        await eventually(lambda: bool(worker.started("short")), WAIT_S, "the running job")
        worker.stop(signal.SIGTERM)
        await eventually(lambda: _said_full(stack), WAIT_S, "the pool to see it full")
        await stack.dispatch("late-room", "late")
        await eventually(lambda: worker.process.poll() is not None, WAIT_S, "the worker to exit")
        assert worker.process.returncode == 0
        assert worker.ended("short") and not worker.started("late")
        assert await stack.status_is("drain-room", JS.JS_SUCCESS)
        assert await _pending(stack, "late-room")


async def _said_full(stack: Stack) -> bool:
    """Every server of the pool says it is full (a livekit worker says so as it drains)."""
    servers = await stack.node.client.fast.execute("KEYS", "dsp:*srv:*")
    for key in servers:
        load = await stack.node.client.fast.execute("HGET", key, "load", key=key)
        if load is None or float(load) < 1.0:
            return False
    return bool(servers)


async def _pending(stack: Stack, room: str) -> bool:
    job = await stack.job(room)
    return job is not None and job.state.status == JS.JS_PENDING


@pytest.fixture
async def small_gateway_stack(redis_single_target: RedisTarget) -> AsyncIterator[Stack]:
    async for s in _stack(redis_single_target, gateway_capacity=2):
        yield s


async def test_our_sdk_and_a_livekit_worker_share_one_pool_without_overfilling(
    small_gateway_stack: Stack, tmp_path: Path
) -> None:
    stack = small_gateway_stack
    ran: list[str] = []

    async def hold(ctx: JobContext) -> None:
        ran.append(ctx.job.id)
        await asyncio.Event().wait()

    sdk = await start_agent(stack.redis_url, "test-agent", hold, capacity=1)
    try:
        with livekit_worker(stack.url, tmp_path) as worker:
            await _registered(worker)
            for i in range(4):
                await stack.dispatch(f"mixed-{i}", "hold")
            await eventually(lambda: len(ran) == 1, WAIT_S, "the SDK server's one job")
            await eventually(lambda: len(worker.started("hold")) == 2, WAIT_S, "two on the worker")
            statuses = [await stack.job(f"mixed-{i}") for i in range(4)]
            running = [j for j in statuses if j is not None and j.state.status == JS.JS_RUNNING]
            waiting = [j for j in statuses if j is not None and j.state.status == JS.JS_PENDING]
            assert (len(running), len(waiting)) == (3, 1)
            assert len(ran) == 1 and len(worker.started("hold")) == 2
    finally:
        await sdk.aclose()
