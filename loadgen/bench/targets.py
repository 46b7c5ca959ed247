"""The systems as step runners, all against the bench's one redis-server.

A peer starts a fresh worker and enqueuer for every step (``run_peer_step``, which flushes
the database around it). Ours is one ``dispatcher dev`` process and one simulated agent
process per repeat, shared by all the repeat's steps as a deployment would be; before each
step it waits until the previous step's backlog is worked off, so a step that overloaded
the system does not weigh on the next one.

Redis CPU is the main thread's (``INFO cpu``) around the step for every system. For a peer
that window also holds the step's set-up and teardown (worker start, five warm-up jobs,
two FLUSHDBs), a few milliseconds against the step's own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from dispatcher.localredis import LocalRedis
from dispatcher.settings import DEV_API_KEY, DEV_API_SECRET
from dispatcher.store.client import Client
from loadgen.bench.records import (
    RESULT_WAIT_S,
    StepRecord,
    failed_record,
    ours_record,
    peer_record,
)
from loadgen.bench.systems import System
from loadgen.cpu import redis_cpu_s, total_cpu_s
from loadgen.devstack import DevStack
from loadgen.options import DispatchOptions
from loadgen.peers import PeerError, run_peer_step
from loadgen.report import build_report
from loadgen.run import DispatchSession

CAPACITY = 100  # every system: one worker process running up to 100 jobs at once
AGENT_NAME = "bench-agent"
SETTLE_WINDOW_S = 0.5
SETTLE_TIMEOUT_S = 30.0
IDLE_CPU_SHARE = 0.1  # of one core, by our processes and Redis together


class Target(Protocol):
    system: System

    async def step(self, rate: float, duration_s: float, phase: str, repeat: int) -> StepRecord:
        """Run one open-loop step at ``rate`` for ``duration_s`` seconds."""
        ...


class PeerTarget:
    def __init__(self, system: System, redis_url: str, client: Client, cpus: str | None) -> None:
        assert system.peer is not None and system.variant is not None
        self.system = system
        self._peer, self._variant = system.peer, system.variant
        self._redis_url, self._client, self._cpus = redis_url, client, cpus

    async def step(self, rate: float, duration_s: float, phase: str, repeat: int) -> StepRecord:
        before = await redis_cpu_s(self._client)
        try:
            result = await run_peer_step(
                self._peer,
                self._variant,
                redis_url=self._redis_url,
                rate=rate,
                duration_s=duration_s,
                capacity=CAPACITY,
                cpus=self._cpus,
                result_wait_s=RESULT_WAIT_S,
            )
        except PeerError as exc:
            return failed_record(
                system=self.system.label,
                repeat=repeat,
                phase=phase,
                rate=rate,
                duration_s=duration_s,
                failure=f"PeerError: {exc}",
            )
        used = await redis_cpu_s(self._client) - before
        return peer_record(
            result, system=self.system.label, repeat=repeat, phase=phase, redis_cpu_s=used
        )


class OursTarget:
    def __init__(
        self,
        system: System,
        session: DispatchSession,
        client: Client,
        dispatcher_pid: int,
        agent_pids: Sequence[int],
    ) -> None:
        self.system = system
        self._session, self._client = session, client
        self._dispatcher_pid, self._agent_pids = dispatcher_pid, list(agent_pids)
        self.last_settle_share = 0.0  # the CPU share the last wait for idle ended at

    async def step(self, rate: float, duration_s: float, phase: str, repeat: int) -> StepRecord:
        self.last_settle_share = await settle(
            self._client, [self._dispatcher_pid, *self._agent_pids]
        )
        agents_before = total_cpu_s(self._agent_pids)
        redis_before = await redis_cpu_s(self._client)
        data = await self._session.step(rate, duration_s)
        redis_used = await redis_cpu_s(self._client) - redis_before
        cpu = {
            "loadgen": data.stats.cpu_s,
            "dispatcher": data.process_cpu_s.get("dispatcher", 0.0),
            "agent": total_cpu_s(self._agent_pids) - agents_before,
        }
        return ours_record(
            build_report(data, self._session.run_id),
            system=self.system.label,
            repeat=repeat,
            phase=phase,
            cpu_s_by_process=cpu,
            redis_cpu_s=redis_used,
            redis_command_s=None if data.redis_usec is None else data.redis_usec / 1e6,
        )


@contextlib.asynccontextmanager
async def ours_target(
    system: System, redis: LocalRedis, client: Client, cpus: str | None
) -> AsyncIterator[OursTarget]:
    """A fresh ``dispatcher dev`` and agent fleet on the flushed shared Redis."""
    await client.flushall()
    stack = DevStack(cpus=cpus, redis=redis)
    await asyncio.to_thread(stack.start)
    try:
        async with DispatchSession(_options(stack), system_pids=stack.pids) as session:
            pids = session.agent_pids
            yield OursTarget(system, session, client, stack.pids["dispatcher"], pids)
    finally:
        await asyncio.to_thread(stack.stop)
        await client.flushall()


def _options(stack: DevStack) -> DispatchOptions:
    return DispatchOptions(
        url=stack.url,
        api_key=DEV_API_KEY,
        api_secret=DEV_API_SECRET,
        redis_url=stack.redis_url,
        rate=1.0,  # every step sets its own rate and duration
        duration=1.0,
        agents=1,
        capacity=CAPACITY,
        hold=0.0,
        agent_name=AGENT_NAME,
        result_wait_s=RESULT_WAIT_S,
    )


async def settle(client: Client, pids: Sequence[int]) -> float:
    """Wait until ``pids`` and Redis together use at most ``IDLE_CPU_SHARE`` of a core over
    ``SETTLE_WINDOW_S`` (or ``SETTLE_TIMEOUT_S`` passed); returns the last share seen."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        start, used_before = time.monotonic(), total_cpu_s(pids) + await redis_cpu_s(client)
        await asyncio.sleep(SETTLE_WINDOW_S)
        used = total_cpu_s(pids) + await redis_cpu_s(client) - used_before
        share = used / (time.monotonic() - start)
        if share <= IDLE_CPU_SHARE or time.monotonic() >= deadline:
            return share
