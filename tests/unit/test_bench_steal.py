"""The peers suite against a host that takes CPU time away (steal)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from loadgen.bench import steal, suite
from loadgen.bench.output import host_line
from loadgen.bench.records import FIXED, StepRecord, failed_record
from loadgen.bench.steal import QuietWait, parse_steal, stolen_share
from loadgen.bench.suite import BenchConfig, BenchRun, kept_try, step_line
from loadgen.bench.systems import ALL_SYSTEMS, System

TASKIQ = next(s for s in ALL_SYSTEMS if s.key == "taskiq-defaults")

PROC_STAT = """cpu  1697547 0 292270 2598828 2125 0 61629 70137 0 0
cpu0 741559 0 138756 1414379 400 0 25882 42816 0 0
cpu1 955988 0 153514 1184449 1725 0 35746 27321 0 0
intr 123 0 0
ctxt 456
"""


def test_steal_is_read_per_cpu_from_proc_stat() -> None:
    ticks = steal._TICKS_PER_S
    assert parse_steal(PROC_STAT) == {"cpu0": 42816 / ticks, "cpu1": 27321 / ticks}
    assert parse_steal("cpu  1 2 3 4\nintr 1\n") == {}  # no steal column: nothing stolen


def test_the_share_is_the_cpu_the_host_took_the_most_from() -> None:
    before = {"cpu0": 10.0, "cpu1": 20.0}
    after = {"cpu0": 10.5, "cpu1": 23.0}
    assert stolen_share(before, after, wall_s=10.0) == 0.3
    assert stolen_share({}, after, wall_s=10.0) == 0.0
    assert stolen_share(before, after, wall_s=0.0) == 0.0


def record(share: float | None, p99: float = 5.0) -> StepRecord:
    base = failed_record(
        system=TASKIQ.label, repeat=1, phase=FIXED, rate=500.0, duration_s=10.0, failure="x"
    )
    return dataclasses.replace(base, failure=None, p99_ms=p99, steal_share=share)


def test_the_kept_try_is_the_last_undisturbed_one_else_the_least_disturbed() -> None:
    calm = record(0.01)
    assert kept_try([record(0.2), calm], limit=0.03) is calm
    least = record(0.05)
    assert kept_try([record(0.2), least, record(0.1)], limit=0.03) is least


class _Target:
    def __init__(self, system: System) -> None:
        self.system = system
        self.runs = 0

    async def step(self, rate: float, duration_s: float, phase: str, repeat: int) -> StepRecord:
        self.runs += 1
        return dataclasses.replace(record(None, p99=float(self.runs)), rate=rate)


def _run_step(monkeypatch: pytest.MonkeyPatch, shares: list[float], tries: int) -> BenchRun:
    """One step through the suite, the host taking ``shares`` of a CPU in turn."""
    remaining = list(shares)

    class Meter:
        def share(self) -> float:
            return remaining.pop(0)

    async def quiet(limit: float) -> QuietWait:
        return QuietWait(0.0, 0.0)

    monkeypatch.setattr(suite, "StealMeter", Meter)
    monkeypatch.setattr(suite, "wait_for_quiet_host", quiet)
    config = BenchConfig(
        systems=(TASKIQ,),
        repeats=1,
        step_duration_s=5,
        fixed_duration_s=10,
        start_rate=125,
        max_rate=1000,
        cpus=None,
        redis_cpus=None,
        ceiling=False,
        max_tries=tries,
    )
    run = BenchRun(config, {})
    lines: list[str] = []
    the_suite = suite._Suite(config, run, None, None, lines.append, lambda run: None)  # type: ignore[arg-type]
    asyncio.run(the_suite._step(_Target(TASKIQ), 500.0, 10.0, FIXED, 1))
    return run


def test_a_step_the_host_took_from_runs_again_and_the_calm_run_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = _run_step(monkeypatch, [0.37, 0.12, 0.01], tries=3)
    [kept] = run.steps
    assert (kept.p99_ms, kept.tries, kept.steal_share) == (3.0, 3, 0.01)
    assert [s.steal_share for s in run.disturbed] == [0.37, 0.12]
    assert "steal 1.0% (try 3)" in step_line(kept)
    assert host_line(run).startswith("host: 2 step run(s) set aside")


def test_a_calm_step_runs_once_and_a_busy_host_stops_after_the_last_try(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = _run_step(monkeypatch, [0.02], tries=3)
    assert (run.steps[0].tries, run.disturbed) == (1, [])
    run = _run_step(monkeypatch, [0.2, 0.08], tries=2)
    [kept] = run.steps
    assert (kept.p99_ms, kept.tries, kept.steal_share) == (2.0, 2, 0.08)
    assert "1 of 1 over the limit" in host_line(run)
