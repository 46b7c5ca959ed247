"""Each Redis call site's declared failure policy, checked by making its calls fail.

Redis is real; ``tests.faultinject`` fails chosen calls of one process the way a dropped
connection would, so each test shows what that call site does instead of losing the call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from livekit import api
from livekit.api import LiveKitAPI
from livekit.protocol.agent import Job

from dispatcher.api.app import ApiNode
from dispatcher.partitions import partition_of
from dispatcher.scheduler.node import SchedulerNode
from dispatcher.store import keys, scripts
from dispatcher.store.client import connect
from tests import pools
from tests.faultinject import Faults
from tests.redis_servers import RedisTarget
from tests.stack import API_KEY, API_SECRET, api_url, eventually, start_agent, start_api
from tests.stack import start_scheduler as start_scheduler_node
from workers import AgentServer, JobContext

JS = api.JobStatus
AGENT = "policy"


@dataclass
class Rig:
    url: str
    api: ApiNode
    scheduler: SchedulerNode
    lk: LiveKitAPI
    agents: list[AgentServer] = field(default_factory=list)

    async def agent(self, entry: Callable[[JobContext], Awaitable[None]]) -> AgentServer:
        server = await start_agent(self.url, AGENT, entry)
        self.agents.append(server)
        return server

    async def dispatch(self, room: str) -> str:
        request = api.CreateAgentDispatchRequest(agent_name=AGENT, room=room)
        return str((await self.lk.agent_dispatch.create_dispatch(request)).id)

    async def jobs(self, room: str) -> list[Job]:
        dispatches = await self.lk.agent_dispatch.list_dispatch(room_name=room)
        return list(dispatches[0].state.jobs) if dispatches else []

    async def last_status(self, room: str) -> int:
        jobs = await self.jobs(room)
        return int(jobs[-1].state.status) if jobs else -1


async def start_scheduler(url: str, **overrides: object) -> SchedulerNode:
    return await start_scheduler_node(url, "policy-s", assign_timeout_ms=1000, **overrides)


@pytest.fixture
async def rig(redis_single_target: RedisTarget) -> AsyncIterator[Rig]:
    url = redis_single_target.url
    scheduler = await start_scheduler(url)
    node = await start_api(url)
    rig = Rig(url, node, scheduler, api.LiveKitAPI(api_url(node), API_KEY, API_SECRET))
    await eventually(lambda: len(scheduler.loops) == 64, what="ownership")
    yield rig
    await rig.lk.aclose()
    await node.aclose()
    await asyncio.gather(*(a.aclose() for a in rig.agents))
    await rig.scheduler.aclose()


class Gate:
    """An entrypoint that records its runs and waits until opened (or cancelled)."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.started: list[tuple[str, float]] = []  # (job id, monotonic)
        self.stopped: list[tuple[str, float]] = []

    async def __call__(self, ctx: JobContext) -> None:
        self.started.append((ctx.job.id, time.monotonic()))
        try:
            await self.opened.wait()
        finally:
            self.stopped.append((ctx.job.id, time.monotonic()))


# --- agent server -------------------------------------------------------------------------


async def test_a_final_report_that_fails_is_retried_until_redis_takes_it(rig: Rig) -> None:
    gate = Gate()
    server = await rig.agent(gate)
    await rig.dispatch("report-room")
    await eventually(lambda: _status_is(rig, "report-room", JS.JS_RUNNING), what="start")
    rule = Faults(server.client.fast).fail_command("XADD", ":events", times=3)
    gate.opened.set()
    await eventually(lambda: _status_is(rig, "report-room", JS.JS_SUCCESS), what="the report")
    assert rule.failed == 3
    reservations = server.shard.reservations(server.id)
    await eventually(lambda: _hlen_is(rig, reservations, 0), what="the slot freed")


async def test_closing_lets_a_final_report_that_is_being_retried_land(rig: Rig) -> None:
    gate = Gate()
    server = await rig.agent(gate)
    await rig.dispatch("closing-room")
    await eventually(lambda: _status_is(rig, "closing-room", JS.JS_RUNNING), what="start")
    rule = Faults(server.client.fast).fail_command("XADD", ":events", times=4)
    gate.opened.set()
    await eventually(lambda: rule.failed >= 1, what="the first failed report")
    rig.agents.remove(server)
    await server.aclose()  # while the report is still being retried
    assert rule.failed == 4
    await eventually(lambda: _status_is(rig, "closing-room", JS.JS_SUCCESS), what="the report")


async def test_a_server_cut_off_from_redis_stops_its_jobs_before_they_run_elsewhere(
    rig: Rig,
) -> None:
    cut_off, elsewhere = Gate(), Gate()
    first = await rig.agent(cut_off)
    await rig.dispatch("fence-room")
    await eventually(lambda: bool(cut_off.started), what="the first run")
    faults = Faults(first.client.fast)
    faults.fail(lambda _args: True)  # every call: the network to Redis is gone
    await rig.agent(elsewhere)
    await eventually(lambda: bool(elsewhere.started), timeout_s=20, what="the second run")
    assert cut_off.stopped, "the cut-off server never stopped its job"
    assert cut_off.stopped[0][1] < elsewhere.started[0][1]  # never both at once
    faults.clear()  # back on the network: its stale report changes nothing
    await asyncio.sleep(1.0)
    jobs = await rig.jobs("fence-room")
    assert jobs[-1].state.status == JS.JS_RUNNING
    assert jobs[-1].state.worker_id != first.id


async def test_a_job_whose_reservation_is_gone_is_stopped(rig: Rig) -> None:
    gate = Gate()
    server = await rig.agent(gate)
    await rig.dispatch("gone-room")
    await eventually(lambda: bool(gate.started), what="the run")
    await rig.api.client.delete(server.shard.reservations(server.id))
    await eventually(lambda: bool(gate.stopped), what="the job stopped")


async def test_an_undecodable_inbox_message_is_skipped(rig: Rig) -> None:
    gate = Gate()
    server = await rig.agent(gate)
    inbox = server.shard.inbox(server.id)
    await rig.api.client.xadd(inbox, {"m": b"\x00not a message"})
    await rig.dispatch("inbox-room")
    await eventually(lambda: bool(gate.started), what="the next assignment to run")


# --- scheduler ----------------------------------------------------------------------------


async def test_a_revoke_that_fails_keeps_the_job_until_it_succeeds(rig: Rig) -> None:
    async with silent_server(rig.url, "AW_silent"):
        rule = Faults(rig.scheduler.client.fast).fail_script(scripts.revoke)
        await rig.dispatch("revoke-room")
        await eventually(lambda: rule.failed >= 2, timeout_s=10, what="revokes to fail")
        assert len(await rig.jobs("revoke-room")) == 1  # attempt 0, still where it was
        rule.times = 0  # Redis answers again
        await eventually(lambda: _attempts_are(rig, "revoke-room", 2), what="re-placement")
    jobs = await rig.jobs("revoke-room")
    assert "did not start the job in time" in jobs[0].state.error


async def test_a_termination_that_fails_is_sent_again(rig: Rig) -> None:
    gate = Gate()
    await rig.agent(gate)
    dispatch_id = await rig.dispatch("terminate-room")
    await eventually(lambda: bool(gate.started), what="the run")
    rule = Faults(rig.scheduler.client.fast).fail_command("XADD", ":inbox:", times=3)
    await rig.lk.agent_dispatch.delete_dispatch(dispatch_id, "terminate-room")
    await eventually(lambda: bool(gate.stopped), what="the termination")
    assert rule.failed == 3


async def test_a_lease_renewal_that_fails_keeps_the_partition_until_the_lease_may_lapse(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = rig.scheduler
    faults = Faults(scheduler.client.fast)
    faults.fail_script(scripts.lease)
    await asyncio.sleep(0.5)  # a few renewals fail, well inside the 1.5 s lease
    assert len(scheduler.loops) == 64
    assert "lease renewals failed" in caplog.text
    await eventually(lambda: not scheduler.loops, what="partitions stopped")
    faults.clear()
    await eventually(lambda: len(scheduler.loops) == 64, what="partitions taken back")


async def test_a_poison_event_is_dead_lettered_and_the_partition_moves_on(rig: Rig) -> None:
    gate = Gate()
    await rig.agent(gate)
    k = keys.partition_keys(partition_of("poison-room", 64))
    await rig.api.client.xadd(k.events, {"e": b"\xc1 not msgpack", "x": b"1"})
    await rig.dispatch("poison-room")
    await eventually(lambda: bool(gate.started), what="the dispatch after the poison")
    [(_id, raw)] = await rig.api.client.fast.execute("XRANGE", k.dead, "-", "+")
    fields = dict(zip(raw[::2], raw[1::2], strict=True))
    assert fields[b"reason"].startswith(b"undecodable") and fields[b"f:x"] == b"1"


async def test_a_job_without_capacity_fails_after_the_configured_wait(
    redis_single_target: RedisTarget,
) -> None:
    url = redis_single_target.url
    scheduler = await start_scheduler(url, capacity_wait_s=2.0)
    node = await start_api(url)
    rig = Rig(url, node, scheduler, api.LiveKitAPI(api_url(node), API_KEY, API_SECRET))
    try:
        await rig.dispatch("empty-room")
        await eventually(lambda: _says_it_waits(rig, "empty-room"), what="a pending reason")
        await eventually(lambda: _status_is(rig, "empty-room", JS.JS_FAILED), what="give-up")
        [job] = await rig.jobs("empty-room")
        assert job.state.reason == api.JobStateReason.JSR_NO_CAPACITY
        assert "no agent server of agent 'policy' had a free slot within 2 s" in job.state.error
    finally:
        await rig.lk.aclose()
        await node.aclose()
        await scheduler.aclose()


# --- API node -----------------------------------------------------------------------------


async def test_calls_answer_unavailable_while_redis_is_away_and_succeed_after(rig: Rig) -> None:
    Faults(rig.api.client.fast).fail(lambda _args: True, times=1)
    with pytest.raises(api.TwirpError) as raised:
        await rig.dispatch("away-room")
    assert (raised.value.code, raised.value.status) == ("unavailable", 503)
    assert "Redis" in raised.value.message
    await rig.dispatch("away-room")  # the next call goes through


# --- helpers ------------------------------------------------------------------------------


async def _status_is(rig: Rig, room: str, status: int) -> bool:
    return await rig.last_status(room) == status


async def _says_it_waits(rig: Rig, room: str) -> bool:
    jobs = await rig.jobs(room)
    return (
        bool(jobs)
        and jobs[-1].state.status == JS.JS_PENDING
        and ("waiting for a free agent server of agent 'policy'" in jobs[-1].state.error)
    )


async def _hlen_is(rig: Rig, key: str, n: int) -> bool:
    return int(await rig.api.client.hlen(key)) == n


async def _attempts_are(rig: Rig, room: str, n: int) -> bool:
    return len(await rig.jobs(room)) >= n


class silent_server:
    """A registered server that heartbeats but never reads its inbox."""

    def __init__(self, url: str, server_id: str) -> None:
        self.url, self.server_id = url, server_id
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> None:
        client = await connect(self.url)
        sid = self.server_id

        async def beat() -> None:
            try:
                while True:
                    await pools.heartbeat(client, AGENT, sid, ttl_ms=1000)
                    await asyncio.sleep(0.2)
            finally:
                await client.aclose()

        self._task = asyncio.create_task(beat())

    async def __aexit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
