"""A ``loadgen dispatch`` session: fleet up, warm-up, one or more measured steps, fleet down.

Registration alone does not make the fleet placeable: schedulers see new agent servers at
their next registry snapshot. A short warm-up (a few dispatches that must reach an
entrypoint, results discarded) keeps that start-up lag out of the measured figures.
Every accepted dispatch must reach an entrypoint; after sending, a step polls the results
for up to ``result_wait_s`` and then counts whatever is still missing as lost. The fleet
stays up across steps, so a ``--find-max`` sweep measures the same servers at every rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from dispatcher.store.client import Client, connect
from loadgen.cpu import redis_command_usec, redis_cpu_s, total_cpu_s
from loadgen.fleet import AgentConfig, AgentSummary, Fleet
from loadgen.httpclient import HttpClient
from loadgen.options import DispatchOptions
from loadgen.payload import room_prefix
from loadgen.progress import Progress, report_every
from loadgen.results import POLL_INTERVAL_S, JobResult, ResultReader, wait_for_results
from loadgen.sender import (
    OK,
    SendStats,
    http_client,
    post_dispatch,
    prepare_dispatches,
    send_all,
)
from loadgen.sweep import BACKLOG_GRACE_S
from loadgen.virtual_fleet import VirtualFleet

PROGRESS_INTERVAL_S = 1.0


class RunError(RuntimeError):
    """The run could not be carried out (fleet did not start, warm-up failed)."""


@dataclass
class StepData:
    """What one measured step produced; ``report.build_report`` turns it into figures."""

    options: DispatchOptions  # with this step's rate and duration
    stats: SendStats
    results: list[JobResult]
    started_in_grace: int  # accepted jobs started by the end of the send window + grace
    window_start_ns: int  # unix ns of the first scheduled send
    redis_usec: int | None = None  # Redis command time over the step (INFO commandstats)
    redis_cpu_s: float | None = None  # Redis main-thread CPU over the step (INFO cpu)
    process_cpu_s: dict[str, float] = field(default_factory=dict)  # by role, over the step


class DispatchSession:
    """The fleet, result reader and HTTP client of a run, shared by its steps."""

    def __init__(
        self,
        options: DispatchOptions,
        *,
        system_pids: Mapping[str, int] | None = None,
        progress_write: Callable[[str], object] | None = None,
        progress_tty: bool = False,
    ) -> None:
        self.options = options
        self.run_id = secrets.token_hex(4)
        self._system_pids = dict(system_pids or {})
        self._progress_write = progress_write
        self._progress_tty = progress_tty
        config = AgentConfig(
            redis_url=options.redis_url,
            agent_name=options.agent_name,
            capacity=options.capacity,
            hold_s=options.hold,
            run_id=self.run_id,
        )
        self._fleet = (
            VirtualFleet(config, options.agents, options.agent_procs)
            if options.agent_procs
            else Fleet(config, options.agents)
        )
        self._prefix = room_prefix(options.seed)
        self._steps = 0
        self.agents: list[AgentSummary] = []
        self._client: Client | None = None
        self._reader: ResultReader | None = None
        self._http: HttpClient | None = None

    async def __aenter__(self) -> DispatchSession:
        self._client = await connect(self.options.redis_url)
        self._reader = ResultReader(self._client, self.run_id)
        self._http = http_client(self.options)
        try:
            self._fleet.start()
            await asyncio.to_thread(self._fleet.wait_ready, self.options.ready_timeout_s)
            await self._warm_up()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    @property
    def agent_pids(self) -> list[int]:
        """The simulated agent servers' processes (once the session has started)."""
        return self._fleet.pids

    async def _close(self) -> None:
        self.agents = await asyncio.to_thread(self._fleet.stop)
        if self._http is not None:
            await self._http.aclose()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader.delete()
        if self._client is not None:
            await self._client.aclose()

    async def _warm_up(self) -> None:
        """One dispatch per agent, one by one, each of which must reach an entrypoint."""
        assert self._http is not None and self._reader is not None
        accepted: list[str] = []
        for index in range(self.options.agents):
            room = f"{self._prefix}-warmup-{index}"
            reply = await post_dispatch(self._http, self.options, room)
            if reply.code != OK or reply.dispatch_id is None:
                raise RunError(f"warm-up dispatch failed: {reply.code}")
            accepted.append(reply.dispatch_id)
        timeout = self.options.ready_timeout_s
        if not await wait_for_results(self._reader, accepted, timeout):
            raise RunError(f"warm-up jobs did not start within {timeout:.0f} s")
        self._reader.discard()

    async def step(self, rate: float, duration: float) -> StepData:
        """Send at ``rate`` for ``duration`` seconds and collect what happened."""
        assert self._http is not None
        http, (options, prefix) = self._http, self._next_step(rate, duration)
        # Requests and tokens are built before the measured window, while the system idles.
        requests = prepare_dispatches(http, options, prefix)
        progress = Progress(rate)
        return await self._measure(
            options, progress, lambda: send_all(http, options, requests, progress)
        )

    def _next_step(self, rate: float, duration: float) -> tuple[DispatchOptions, str]:
        """The options and room-name prefix of the next step."""
        self._steps += 1
        options = dataclasses.replace(self.options, rate=rate, duration=duration)
        return options, f"{self._prefix}-{self._steps}"

    async def _measure(
        self,
        options: DispatchOptions,
        progress: Progress,
        send: Callable[[], Awaitable[SendStats]],
    ) -> StepData:
        """Run ``send`` (the step's schedule) with CPU, Redis and job starts measured around
        it; accepted jobs are the sent ``accepted_ids``."""
        assert self._reader is not None and self._client is not None
        self._reader.discard()
        usec_before = await redis_command_usec(self._client)
        redis_cpu_before = await redis_cpu_s(self._client)
        cpu_before = self._process_cpu()
        window_start_ns = time.time_ns()
        async with self._live(progress, self._reader):
            stats = await send()
            started_in_grace = await self._started_by(
                window_start_ns + int((options.duration + BACKLOG_GRACE_S) * 1e9),
                stats.accepted_ids,
            )
            await wait_for_results(self._reader, stats.accepted_ids, options.result_wait_s)
        return StepData(
            options=options,
            stats=stats,
            results=list(self._reader.results),
            started_in_grace=started_in_grace,
            window_start_ns=window_start_ns,
            redis_usec=await redis_command_usec(self._client) - usec_before,
            redis_cpu_s=await redis_cpu_s(self._client) - redis_cpu_before,
            process_cpu_s={
                role: cpu - cpu_before[role] for role, cpu in self._process_cpu().items()
            },
        )

    def _process_cpu(self) -> dict[str, float]:
        return {role: total_cpu_s([pid]) for role, pid in self._system_pids.items()}

    async def _started_by(self, deadline_ns: int, accepted_ids: Iterable[str]) -> int:
        """How many accepted jobs had started by ``deadline_ns`` (waiting until then)."""
        assert self._reader is not None
        await asyncio.sleep(max(0.0, (deadline_ns - time.time_ns()) / 1e9))
        await self._reader.poll()
        accepted = set(accepted_ids)
        return sum(
            1
            for r in self._reader.results
            if r.dispatch_id in accepted and r.sent_ns + r.user_ns <= deadline_ns
        )

    @contextlib.asynccontextmanager
    async def _live(self, progress: Progress, reader: ResultReader) -> AsyncIterator[None]:
        """Feed job starts to ``progress`` and print it, while the step runs."""
        tasks = [asyncio.create_task(_feed_starts(progress, reader))]
        if self._progress_write is not None:
            report = report_every(
                progress, PROGRESS_INTERVAL_S, self._progress_write, is_tty=self._progress_tty
            )
            tasks.append(asyncio.create_task(report))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _feed_starts(progress: Progress, reader: ResultReader) -> None:
    seen = 0
    while True:
        await asyncio.sleep(POLL_INTERVAL_S)
        await reader.poll()
        for result in reader.results[seen:]:
            progress.completed(result.user_ns)
        seen = len(reader.results)
