"""One benchmark step for one peer: worker up, warm-up, open-loop schedule, results, teardown.

The method is ours (``loadgen.run``): results are pushed by the task's own process and read
back from the same Redis, and every accepted job must start exactly once within
``result_wait_s`` of the last send; whatever has not started by then is lost. CPU is the
worker's (psutil, sampled right before the go signal and after the wait) plus the
enqueuer's own figure; Redis CPU is the ``INFO commandstats`` usec delta over the same span.
The Redis DB is flushed before and after the step: it must be dedicated to the benchmark.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dispatcher.store.client import Client, connect
from loadgen.cpu import redis_command_usec
from loadgen.peers.config import WARMUP_JOBS, check_peer, job_key, warmup_key
from loadgen.peers.processes import EnqueuerProcess, PeerError, WorkerProcess, peer_argv
from loadgen.peers.recording import FLUSH_INTERVAL_S
from loadgen.peers.schedule import EnqueueStats
from loadgen.report import result_accounting
from loadgen.results import JobResult, ResultReader, wait_for_results

READY_TIMEOUT_S = 30.0  # enqueuer start-up and warm-up sends (imports, connecting)
WARMUP_TIMEOUT_S = 30.0  # until the worker has started every warm-up job
SCHEDULE_MARGIN_S = 30.0  # beyond duration_s for the enqueuer's last enqueues to return
LAST_FLUSH_WAIT_S = 3 * FLUSH_INTERVAL_S


@dataclass(frozen=True)
class StepResult:
    system: str  # e.g. "taskiq (at-least-once)"
    rate: float  # offered rate
    duration_s: float
    planned: int
    sent: int
    accepted: int  # enqueue calls that returned without error
    errors: dict[str, int]  # error kind -> count
    latencies_ns: list[int]  # client send -> task first statement, one per started job
    lost: int  # accepted but never started within the wait
    duplicates: int
    send_lag_max_ns: int
    achieved_rate: float  # sends per second actually achieved
    cpu_s: float  # CPU of the peer's processes (enqueuer + worker) during the step
    redis_usec: int  # INFO commandstats usec delta over the step


@dataclass(frozen=True, slots=True)
class _Sample:
    worker_cpu_s: float
    redis_usec: int


@dataclass(frozen=True, slots=True)
class _Measured:
    stats: EnqueueStats
    accepted_keys: list[str]
    results: list[JobResult]
    worker_cpu_s: float
    redis_usec: int


async def run_peer_step(
    peer: str,
    variant: str,
    *,
    redis_url: str,
    rate: float,
    duration_s: float,
    capacity: int = 100,
    cpus: str | None = None,
    result_wait_s: float = 10.0,
) -> StepResult:
    """Run ``peer`` in ``variant`` at ``rate`` enqueues/s for ``duration_s`` seconds."""
    check_peer(peer, variant)
    client = await connect(redis_url)
    try:
        await _reset(client)
        with tempfile.TemporaryDirectory(prefix=f"loadgen-{peer}-") as logs:
            step = _Step(peer, variant, redis_url, capacity, cpus, Path(logs))
            measured = await step.run(client, rate, duration_s, result_wait_s)
    finally:
        await client.flushdb()
        await client.aclose()
    return _step_result(f"{peer} ({variant})", rate, duration_s, measured)


async def _reset(client: Client) -> None:
    await client.flushdb()
    await client.config_resetstat()


class _Step:
    def __init__(
        self, peer: str, variant: str, redis_url: str, capacity: int, cpus: str | None, logs: Path
    ) -> None:
        self.run_id = secrets.token_hex(4)
        self._peer, self._cpus, self._logs = peer, cpus, logs
        self._common = ["--redis-url", redis_url, "--variant", variant, "--run-id", self.run_id]
        self._capacity = capacity

    async def run(
        self, client: Client, rate: float, duration_s: float, result_wait_s: float
    ) -> _Measured:
        reader = ResultReader(client, self.run_id)
        worker = self._worker()
        enqueuer = self._enqueuer(rate, duration_s)
        worker.start()
        try:
            await enqueuer.start()
            await enqueuer.wait_ready(READY_TIMEOUT_S)
            await self._wait_warm(reader, worker)
            before = await _sample(client, worker)
            await enqueuer.go()
            stats = await enqueuer.stats(duration_s + SCHEDULE_MARGIN_S)
            accepted = accepted_keys(self.run_id, stats)
            complete = await wait_for_results(reader, accepted, result_wait_s)
            after = await _sample(client, worker)
            if not complete:
                await _collect_last_flush(reader)
        finally:
            await enqueuer.kill()
            await asyncio.to_thread(worker.stop)
        return _Measured(
            stats=stats,
            accepted_keys=accepted,
            results=reader.results,
            worker_cpu_s=after.worker_cpu_s - before.worker_cpu_s,
            redis_usec=after.redis_usec - before.redis_usec,
        )

    def _worker(self) -> WorkerProcess:
        options = [*self._common, "--capacity", str(self._capacity)]
        argv = peer_argv(self._peer, "worker", options, self._cpus)
        return WorkerProcess(argv, self._logs / "worker.log")

    def _enqueuer(self, rate: float, duration_s: float) -> EnqueuerProcess:
        options = [*self._common, "--rate", str(rate), "--duration", str(duration_s)]
        options += ["--warmup", str(WARMUP_JOBS)]
        argv = peer_argv(self._peer, "enqueue", options, self._cpus)
        return EnqueuerProcess(argv, self._logs / "enqueuer.log")

    async def _wait_warm(self, reader: ResultReader, worker: WorkerProcess) -> None:
        """Until every warm-up job started; then forget their results."""
        keys = [warmup_key(self.run_id, i) for i in range(WARMUP_JOBS)]
        if not await wait_for_results(reader, keys, WARMUP_TIMEOUT_S, worker.check_alive):
            raise PeerError(
                f"{self._peer} worker did not start its warm-up jobs in {WARMUP_TIMEOUT_S:g} s"
            )
        reader.discard()


async def _collect_last_flush(reader: ResultReader) -> None:
    """Jobs started just before the wait ended reach Redis with the worker's next flush.

    Read them before stopping the worker: a worker draining on SIGTERM may still start jobs
    it had fetched, and those did not start within the wait.
    """
    await asyncio.sleep(LAST_FLUSH_WAIT_S)
    await reader.poll()


def accepted_keys(run_id: str, stats: EnqueueStats) -> list[str]:
    failed = set(stats.failed)
    return [job_key(run_id, i) for i in range(stats.sent) if i not in failed]


async def _sample(client: Client, worker: WorkerProcess) -> _Sample:
    return _Sample(worker_cpu_s=worker.cpu_s(), redis_usec=await redis_command_usec(client))


def _step_result(system: str, rate: float, duration_s: float, measured: _Measured) -> StepResult:
    stats = measured.stats
    accounting = result_accounting(measured.accepted_keys, measured.results)
    return StepResult(
        system=system,
        rate=rate,
        duration_s=duration_s,
        planned=stats.planned,
        sent=stats.sent,
        accepted=stats.accepted,
        errors=dict(stats.errors),
        latencies_ns=[r.user_ns for r in measured.results],
        lost=accounting["lost"],
        duplicates=accounting["duplicates"],
        send_lag_max_ns=stats.max_lag_ns,
        achieved_rate=stats.achieved_rate,
        cpu_s=measured.worker_cpu_s + stats.cpu_s,
        redis_usec=measured.redis_usec,
    )
