"""The simulated agent fleet: ``--agents`` processes, each one ``AgentServer``.

Separate processes (spawned, not forked, so no event loop or Redis socket is inherited)
keep the agents' CPU off the sender's clock and behave like real, independent servers.
Each entrypoint stamps its start first, queues a compact result, holds its slot for
``--hold`` seconds and returns; a flusher pushes queued results every 100 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import signal
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from typing import Any

from dispatcher.process import run as run_process
from dispatcher.store.client import Client, connect
from dispatcher.wire import JobSpec
from loadgen.payload import decode_sent_ns
from loadgen.results import JobResult, encode_batch, results_key
from workers import AgentServer, JobContext

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1
STOP_POLL_S = 0.05
DRAIN_TIMEOUT_S = 10.0


class FleetError(RuntimeError):
    """The agent processes did not come up."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """What one agent process needs; picklable, as spawn sends it to the child."""

    redis_url: str
    agent_name: str
    capacity: int
    hold_s: float
    run_id: str


@dataclass(frozen=True, slots=True)
class AgentSummary:
    """Sent back by each process at the end: peak concurrency and how many jobs it ran."""

    server_id: str
    capacity: int
    max_running: int
    jobs: int  # entrypoints started, warm-up jobs included
    bad_metadata: int
    loop_errors: int  # unhandled exceptions in the agent's event loop (SDK or entrypoint)
    cpu_s: float = 0.0  # the process's CPU time, start-up excluded

    @property
    def over_capacity(self) -> bool:
        return self.max_running > self.capacity


class Recorder:
    """Counts running entrypoints and batches results for the flusher."""

    def __init__(self) -> None:
        self.pending: list[JobResult] = []
        self.running = 0
        self.max_running = 0
        self.jobs = 0
        self.bad_metadata = 0
        self.loop_errors = 0

    def started(self) -> None:
        self.running += 1
        self.jobs += 1
        self.max_running = max(self.max_running, self.running)

    def ended(self) -> None:
        self.running -= 1

    def take(self) -> list[JobResult]:
        batch, self.pending = self.pending, []
        return batch


def make_server(config: AgentConfig, recorder: Recorder) -> AgentServer:
    """An agent server whose entrypoint measures dispatch time, then holds its slot."""
    server = AgentServer(redis_url=config.redis_url, capacity=config.capacity)

    @server.rtc_session(agent_name=config.agent_name)
    async def entry(ctx: JobContext) -> None:
        start = time.time_ns()  # first statement: everything before it is dispatch time
        recorder.started()
        try:
            record_start(recorder, ctx.spec, start)
            await asyncio.sleep(config.hold_s)
        finally:
            recorder.ended()

    return server


def record_start(recorder: Recorder, spec: JobSpec, start: int) -> None:
    """A job's entrypoint started at ``start`` (unix ns): its result, queued for the flusher."""
    try:
        sent_ns = decode_sent_ns(spec.metadata)
    except ValueError:
        recorder.bad_metadata += 1
        return
    result = JobResult(
        job_id=spec.job_id,
        dispatch_id=spec.dispatch_id,
        server_ns=start - spec.received_ns,
        user_ns=start - sent_ns,
        attempt=spec.attempt,
        sent_ns=sent_ns,
    )
    recorder.pending.append(result)


async def flush(client: Client, key: str, recorder: Recorder) -> None:
    batch = recorder.take()
    if batch:
        await client.rpush(key, encode_batch(batch))


async def flush_loop(client: Client, key: str, recorder: Recorder) -> None:
    while True:
        await asyncio.sleep(FLUSH_INTERVAL_S)
        try:
            await flush(client, key, recorder)
        except Exception:
            log.exception("pushing results failed")


async def _wait_event(event: Event) -> None:
    while not event.is_set():
        await asyncio.sleep(STOP_POLL_S)


def _count_loop_errors(recorder: Recorder) -> None:
    """Count exceptions nobody awaited (an SDK task failing), still logging them as usual."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        recorder.loop_errors += 1
        loop.default_exception_handler(context)

    asyncio.get_running_loop().set_exception_handler(handler)


async def serve_agent(config: AgentConfig, ready: Event, stop: Event) -> AgentSummary:
    """Run one agent server until ``stop``; drain, close, push the last results."""
    recorder = Recorder()
    _count_loop_errors(recorder)
    server = make_server(config, recorder)
    client = await connect(config.redis_url)
    key = results_key(config.run_id)
    flusher = asyncio.create_task(flush_loop(client, key, recorder))
    try:
        await server.start()
        cpu_start = time.process_time()
        ready.set()
        await _wait_event(stop)
        await server.drain(DRAIN_TIMEOUT_S)
    finally:
        await server.aclose()
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await flush(client, key, recorder)
        await client.aclose()
    return AgentSummary(
        server_id=server.id,
        capacity=config.capacity,
        max_running=recorder.max_running,
        jobs=recorder.jobs,
        bad_metadata=recorder.bad_metadata,
        loop_errors=recorder.loop_errors,
        cpu_s=time.process_time() - cpu_start,
    )


def agent_process(
    config: AgentConfig, ready: Event, stop: Event, summaries: multiprocessing.Queue[AgentSummary]
) -> None:
    """Process entry. Ctrl-C is left to the parent, which stops agents through ``stop``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s agent %(name)s: %(message)s")
    summaries.put(run_process(serve_agent(config, ready, stop)))


class Fleet:
    """Starts, waits for and stops the agent processes."""

    def __init__(self, config: AgentConfig, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._ready = [context.Event() for _ in range(count)]
        self._summaries: multiprocessing.Queue[AgentSummary] = context.Queue()
        self._expected = count  # summaries: one per agent server
        self._processes: list[SpawnProcess] = [
            context.Process(
                target=agent_process,
                args=(config, ready, self._stop, self._summaries),
                name=f"loadgen-agent-{i}",
                daemon=True,
            )
            for i, ready in enumerate(self._ready)
        ]

    def start(self) -> None:
        for process in self._processes:
            process.start()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def wait_ready(self, timeout_s: float) -> None:
        """Block until every server has registered; fail fast if one died instead."""
        deadline = time.monotonic() + timeout_s
        while not all(event.is_set() for event in self._ready):
            dead = [p.name for p in self._processes if p.exitcode is not None]
            if dead:
                raise FleetError(f"agent process(es) exited before registering: {dead}")
            if time.monotonic() > deadline:
                raise FleetError(f"agent servers not registered after {timeout_s:.0f} s")
            time.sleep(0.05)

    def stop(self, timeout_s: float = DRAIN_TIMEOUT_S + 10.0) -> list[AgentSummary]:
        """Drain and stop every process; returns the summaries of those that reported."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        summaries = self._collect(deadline)
        for process in self._processes:
            if process.pid is None:
                continue  # never started (the start itself failed)
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        return summaries

    def _collect(self, deadline: float) -> list[AgentSummary]:
        """Read summaries until all arrived, all processes exited, or the deadline passed."""
        summaries: list[AgentSummary] = []
        while len(summaries) < self._expected and time.monotonic() < deadline:
            try:
                summaries.append(self._summaries.get(timeout=0.2))
            except queue.Empty:
                if all(p.exitcode is not None or p.pid is None for p in self._processes):
                    break
        with contextlib.suppress(queue.Empty):
            while len(summaries) < self._expected:
                summaries.append(self._summaries.get_nowait())
        return summaries
