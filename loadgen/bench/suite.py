"""The run: per repeat, every system's knee search (ours included), in an order rotated
by one place per repeat; the best peer; then per repeat, every system's fixed-rate steps,
rotated likewise. The knee column lists each repeat's knee in run order.

Every step is logged as it ends and handed to ``checkpoint`` (the CLI rewrites its JSON
file), so an interrupted run keeps what it measured. A step that cannot run (a peer that
does not start) is recorded as failed and the run goes on; so does a knee search or a
repeat of ours that fails. A step may take at most ``step_timeout_s``: nothing hangs the run.

Every step first waits for a quiet host, and a step the hypervisor took more than
``steal_limit`` of a CPU from is run again, up to ``max_tries`` times (``loadgen.bench.steal``
says why); the runs set aside are kept in ``BenchRun.disturbed``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dispatcher.localredis import LocalRedis
from dispatcher.store.client import Client, connect
from loadgen.bench.ceiling import Ceiling, CeilingError, measure_ceiling
from loadgen.bench.records import (
    FIXED,
    KNEE,
    KneeRecord,
    StepRecord,
    failed_record,
    judged,
    knee_record,
    outcome,
)
from loadgen.bench.render import fmt_ms, fmt_us
from loadgen.bench.steal import MAX_TRIES, STEAL_LIMIT, StealMeter, wait_for_quiet_host
from loadgen.bench.systems import System
from loadgen.bench.table import HIGH_RATE, LOW_RATE, fixed_rates, peer_knee
from loadgen.bench.targets import IDLE_CPU_SHARE, OursTarget, PeerTarget, Target, ours_target
from loadgen.sweep import KneeCriteria, StepOutcome, find_knee

Log = Callable[[str], None]
Checkpoint = Callable[["BenchRun"], None]

STEP_TIMEOUT_MARGIN_S = 180.0  # start-up, warm-up, result wait and teardown of one step
PACKAGES = ("agent-dispatcher", "redis", "taskiq", "taskiq-redis", "celery", "kombu", "arq")


@dataclass(frozen=True, slots=True)
class BenchConfig:
    systems: tuple[System, ...]
    repeats: int
    step_duration_s: float
    fixed_duration_s: float
    start_rate: float
    max_rate: float
    cpus: str | None  # every process but Redis; None: not pinned
    redis_cpus: str | None
    ceiling: bool
    criteria: KneeCriteria = field(default_factory=KneeCriteria)
    low_rate: float = LOW_RATE
    high_rate: float = HIGH_RATE
    steal_limit: float = STEAL_LIMIT
    max_tries: int = MAX_TRIES


@dataclass
class BenchRun:
    """Everything the run measured, in the order it ran."""

    config: BenchConfig
    environment: dict[str, Any]
    steps: list[StepRecord] = field(default_factory=list)
    knees: list[KneeRecord] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    disturbed: list[StepRecord] = field(default_factory=list)  # runs of a step run again
    ceiling: Ceiling | None = None
    peer_knee_rate: float | None = None
    elapsed_s: float = 0.0


def run_order(systems: Sequence[System], repeat: int) -> list[System]:
    """The systems of one repeat, rotated by one place per repeat: every system (ours
    included) runs in turn first, last and between the others, so neither the host's
    state at the start of a run nor what an earlier system left behind falls on one
    system in every repeat."""
    shift = (repeat - 1) % max(1, len(systems))
    return [*systems[shift:], *systems[:shift]]


def step_timeout_s(duration_s: float) -> float:
    return 2 * duration_s + STEP_TIMEOUT_MARGIN_S


def cpu_set(spec: str) -> set[int]:
    """CPU ids from taskset's list syntax: ``1``, ``0,2``, ``2-3``."""
    cpus: set[int] = set()
    for part in spec.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"not a CPU list: {spec!r}")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


async def run_bench(
    config: BenchConfig, log: Log, checkpoint: Checkpoint = lambda run: None
) -> BenchRun:
    redis = await asyncio.to_thread(LocalRedis, config.redis_cpus)
    try:
        client = await connect(redis.url)
        try:
            run = BenchRun(config, await environment(client))
            await _Suite(config, run, redis, client, log, checkpoint).run()
        finally:
            await client.aclose()
    finally:
        await asyncio.to_thread(redis.stop)
    return run


async def environment(client: Client) -> dict[str, Any]:
    server = await client.info("server")
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "redis_server": server.get("redis_version"),
        "packages": versions,
    }


class _Suite:
    def __init__(
        self,
        config: BenchConfig,
        run: BenchRun,
        redis: LocalRedis,
        client: Client,
        log: Log,
        checkpoint: Checkpoint,
    ) -> None:
        self._config, self._run, self._redis, self._client = config, run, redis, client
        self._started = time.monotonic()
        self._log_line, self._checkpoint = log, checkpoint

    def _log(self, text: str) -> None:
        elapsed = int(time.monotonic() - self._started)
        self._log_line(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {text}")

    async def run(self) -> None:
        config = self._config
        if config.ceiling:
            await self._ceiling()
        for repeat in range(1, config.repeats + 1):
            for system in run_order(config.systems, repeat):
                self._log(f"{system.label}, repeat {repeat}: knee search")
                await self._guarded(system, repeat, self._knees(system, repeat))
        best, self._run.peer_knee_rate = peer_knee(config.systems, self._run.knees)
        rates = fixed_rates(config.low_rate, self._run.peer_knee_rate, config.high_rate)
        self._log(f"best peer: {best or 'none'}; fixed-rate steps at {_rates(rates)}")
        for repeat in range(1, config.repeats + 1):
            for system in run_order(config.systems, repeat):
                self._log(f"{system.label}, repeat {repeat}: fixed-rate steps")
                await self._guarded(system, repeat, self._fixed(system, repeat, rates))
        self._run.elapsed_s = round(time.monotonic() - self._started, 1)

    async def _guarded(self, system: System, repeat: int, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as exc:  # one knee search or repeat lost, not the whole run
            self._failed(system.label, repeat, f"{type(exc).__name__}: {exc}")

    async def _ceiling(self) -> None:
        self._log("redis-benchmark XADD")
        try:
            self._run.ceiling = await measure_ceiling(
                self._client, self._redis.port, self._config.cpus
            )
        except (CeilingError, OSError) as exc:
            self._failed("redis-benchmark", None, f"{type(exc).__name__}: {exc}")

    def _peer(self, system: System) -> PeerTarget:
        return PeerTarget(system, self._redis.url, self._client, self._config.cpus)

    async def _knees(self, system: System, repeat: int) -> None:
        await self._on(system, lambda target: self._knee_search(target, repeat))

    async def _fixed(self, system: System, repeat: int, rates: list[float]) -> None:
        await self._on(system, lambda target: self._fixed_steps(target, repeat, rates))

    async def _on(self, system: System, work: Callable[[Target], Awaitable[None]]) -> None:
        """``work`` on a peer, or on a fresh deployment of ours for the length of it."""
        if system.is_peer:
            await work(self._peer(system))
            return
        async with ours_target(system, self._redis, self._client, self._config.cpus) as ours:
            await work(ours)

    async def _knee_search(self, target: Target, repeat: int) -> None:
        config = self._config

        async def measure(rate: float) -> StepOutcome:
            step = await self._step(target, rate, config.step_duration_s, KNEE, repeat)
            return outcome(step)

        knee = await find_knee(
            measure, start=config.start_rate, criteria=config.criteria, max_rate=config.max_rate
        )
        self._run.knees.append(knee_record(target.system.label, repeat, knee))
        rate = f"{knee.knee_rate:g}/s" if knee.knee_rate else "none"
        self._log(f"{target.system.label}, repeat {repeat}: knee {rate} ({knee.stopped})")

    async def _fixed_steps(self, target: Target, repeat: int, rates: list[float]) -> None:
        for rate in rates:
            await self._step(target, rate, self._config.fixed_duration_s, FIXED, repeat)

    async def _step(
        self, target: Target, rate: float, duration_s: float, phase: str, repeat: int
    ) -> StepRecord:
        """The step, run again while the host takes too much of a CPU during it."""
        config, tries = self._config, []
        while True:
            step = await self._step_once(target, rate, duration_s, phase, repeat)
            tries.append(step)
            if not _disturbed(step, config.steal_limit) or len(tries) >= config.max_tries:
                break
            self._log(f"{step_line(step)}; the host took {step.steal_share:.0%}: again")
        kept = kept_try(tries, config.steal_limit)
        self._run.disturbed.extend(t for t in tries if t is not kept)
        step = dataclasses.replace(kept, tries=len(tries))
        self._run.steps.append(step)
        self._run.elapsed_s = round(time.monotonic() - self._started, 1)
        self._log(step_line(step, target))
        self._checkpoint(self._run)
        if step.failure is not None and isinstance(target, OursTarget):
            raise RuntimeError(step.failure)  # the session is in an unknown state
        return step

    async def _step_once(
        self, target: Target, rate: float, duration_s: float, phase: str, repeat: int
    ) -> StepRecord:
        quiet = await wait_for_quiet_host(self._config.steal_limit)
        steal, started = StealMeter(), time.monotonic()
        timeout = step_timeout_s(duration_s)
        try:
            step = await asyncio.wait_for(target.step(rate, duration_s, phase, repeat), timeout)
        except TimeoutError:
            step = failed_record(
                system=target.system.label,
                repeat=repeat,
                phase=phase,
                rate=rate,
                duration_s=duration_s,
                failure=f"step did not end within {timeout:g} s",
            )
        return dataclasses.replace(
            judged(step, self._config.criteria),
            wall_s=round(time.monotonic() - started, 1),
            steal_share=steal.share(),
            quiet_wait_s=quiet.waited_s,
        )

    def _failed(self, system: str, repeat: int | None, error: str) -> None:
        self._run.failures.append({"system": system, "repeat": repeat, "error": error})
        where = system if repeat is None else f"{system}, repeat {repeat}"
        self._log(f"{where}: FAILED: {error}")


def _disturbed(step: StepRecord, limit: float) -> bool:
    return step.failure is None and (step.steal_share or 0.0) > limit


def kept_try(tries: Sequence[StepRecord], limit: float) -> StepRecord:
    """The last try if the host left it alone, else the one it took the least from."""
    if not _disturbed(tries[-1], limit):
        return tries[-1]
    return min(tries, key=lambda step: step.steal_share or 0.0)


def step_line(step: StepRecord, target: Target | None = None) -> str:
    """One step for the live log."""
    head = f"{step.system} r{step.repeat} {step.phase} {step.rate:g}/s"
    if step.failure is not None:
        return f"{head}: FAILED: {step.failure}"
    latency = "/".join(
        "-" if v is None else fmt_ms(v) for v in (step.p50_ms, step.p99_ms, step.max_ms)
    )
    cpu = "/".join(
        "-" if v is None else fmt_us(v) for v in (step.process_cpu_us, step.redis_cpu_us)
    )
    verdict = "pass" if step.passed else f"FAIL: {step.reason}"
    host = f", steal {step.steal_share:.1%}" if step.steal_share is not None else ""
    if step.tries > 1:
        host += f" (try {step.tries})"
    settle = ""
    if isinstance(target, OursTarget) and target.last_settle_share > IDLE_CPU_SHARE:
        settle = f", not idle before the step ({target.last_settle_share:.0%} CPU)"
    return (
        f"{head}: sent {step.send_rate:.0f}/s, p50/p99/max {latency} ms, lost {step.lost}, "
        f"errors {step.errors}, cpu/redis {cpu} us, {step.wall_s:.0f} s{host}: {verdict}{settle}"
    )


def _rates(rates: list[float]) -> str:
    return ", ".join(f"{r:g}/s" for r in rates)
