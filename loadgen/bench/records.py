"""What the bench keeps of every step and knee search, built the same way for every system.

A ``StepRecord`` comes from our own report (``loadgen.report.build_report``) or from a
peer's ``StepResult``; both give dispatch time as client send -> the job's first statement,
summarized with the same histogram, and CPU per accepted dispatch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadgen.hdr import LatencyHistogram
from loadgen.peers import StepResult
from loadgen.sweep import BACKLOG_GRACE_S, KneeCriteria, KneeResult, StepOutcome, passes
from loadgen.sweep import backlog_bounded as is_bounded

KNEE = "knee"  # a step of a knee search
FIXED = "fixed"  # a fixed-rate step
RESULT_WAIT_S = 10.0  # after the last send, for every accepted job to start


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One measured step.

    send_rate: sends per second between the first and the last send; accepted: sends the
    system took; started: job starts recorded (the latency count). The latency figures are
    None when no job started. process_cpu_us: CPU of the system's own processes and its
    client per accepted dispatch (``cpu_us_by_process`` itemizes it); redis_cpu_us: Redis
    main-thread CPU (``INFO cpu``) per accepted dispatch; redis_command_us: command time
    (``INFO commandstats``) per accepted dispatch, which counts a command a Lua script runs
    twice (``loadgen.cpu``), so it is kept for the record only. failure: why the step could
    not run at all (then every figure is empty). steal_share: the largest share of one CPU
    the hypervisor took during the step (``loadgen.bench.steal``); tries: how many times the
    step ran before one was not disturbed (or the least disturbed of them was kept);
    quiet_wait_s: how long the step waited for a quiet host first.
    """

    system: str
    repeat: int
    phase: str
    rate: float
    duration_s: float
    send_rate: float
    accepted: int
    started: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    lost: int
    errors: int
    duplicates: int
    backlog_bounded: bool
    process_cpu_us: float | None
    redis_cpu_us: float | None
    cpu_us_by_process: dict[str, float | None] = field(default_factory=dict)
    redis_command_us: float | None = None  # INFO commandstats, for the record
    passed: bool = False
    reason: str = ""
    failure: str | None = None
    wall_s: float = 0.0  # the step's wall time, start-up and teardown included
    steal_share: float | None = None
    tries: int = 1
    quiet_wait_s: float = 0.0


@dataclass(frozen=True, slots=True)
class KneeRecord:
    """One knee search; ``knee_rate`` is None when even the start rate failed."""

    system: str
    repeat: int
    knee_rate: float | None
    lowest_failing_rate: float | None
    capped: bool
    stopped: str


def per_dispatch_us(cpu_s: float | None, count: int) -> float | None:
    return round(cpu_s / count * 1e6, 1) if cpu_s is not None and count else None


def outcome(record: StepRecord) -> StepOutcome:
    """The step as the knee search judges it; the achieved rate is accepted per second."""
    return StepOutcome(
        rate=record.rate,
        achieved_rate=record.accepted / record.duration_s if record.duration_s else 0.0,
        p99_ms=record.p99_ms,
        max_ms=record.max_ms,
        lost=record.lost,
        errors=record.errors,
        backlog_bounded=record.backlog_bounded,
    )


def judged(record: StepRecord, criteria: KneeCriteria) -> StepRecord:
    ok, reason = passes(outcome(record), criteria)
    return dataclasses.replace(record, passed=ok, reason=reason)


def knee_record(system: str, repeat: int, knee: KneeResult) -> KneeRecord:
    return KneeRecord(
        system=system,
        repeat=repeat,
        knee_rate=knee.knee_rate,
        lowest_failing_rate=knee.lowest_failing_rate,
        capped=knee.capped,
        stopped=knee.stopped,
    )


def ours_record(
    report: Mapping[str, Any],
    *,
    system: str,
    repeat: int,
    phase: str,
    cpu_s_by_process: Mapping[str, float],
    redis_cpu_s: float,
    redis_command_s: float | None = None,
) -> StepRecord:
    """Our step from its ``build_report`` dict and the CPU measured around it."""
    accepted = int(report["accepted"])
    user = report["user_dispatch_ms"]
    by_process = {name: per_dispatch_us(s, accepted) for name, s in cpu_s_by_process.items()}
    return StepRecord(
        system=system,
        repeat=repeat,
        phase=phase,
        rate=float(report["config"]["rate"]),
        duration_s=float(report["config"]["duration_s"]),
        send_rate=float(report["send_rate"]),
        accepted=accepted,
        started=int(user["count"]),
        p50_ms=user["p50"],
        p99_ms=user["p99"],
        max_ms=user["max"],
        lost=int(report["lost"]),
        errors=int(report["error_total"]),
        duplicates=int(report["duplicates"]),
        backlog_bounded=bool(report["backlog_bounded"]),
        process_cpu_us=per_dispatch_us(sum(cpu_s_by_process.values()), accepted),
        redis_cpu_us=per_dispatch_us(redis_cpu_s, accepted),
        cpu_us_by_process=by_process,
        redis_command_us=per_dispatch_us(redis_command_s, accepted),
    )


def peer_record(
    result: StepResult, *, system: str, repeat: int, phase: str, redis_cpu_s: float
) -> StepRecord:
    """A peer's step; its CPU is the worker's and the enqueuer's together."""
    summary = LatencyHistogram.of(result.latencies_ns).summary_ms()
    return StepRecord(
        system=system,
        repeat=repeat,
        phase=phase,
        rate=result.rate,
        duration_s=result.duration_s,
        send_rate=round(result.achieved_rate, 2),
        accepted=result.accepted,
        started=len(result.latencies_ns),
        p50_ms=_float_or_none(summary["p50"]),
        p99_ms=_float_or_none(summary["p99"]),
        max_ms=_float_or_none(summary["max"]),
        lost=result.lost,
        errors=sum(result.errors.values()),
        duplicates=result.duplicates,
        backlog_bounded=peer_backlog_bounded(
            result.rate, result.achieved_rate, result.accepted, result.latencies_ns
        ),
        process_cpu_us=per_dispatch_us(result.cpu_s, result.accepted),
        redis_cpu_us=per_dispatch_us(redis_cpu_s, result.accepted),
        cpu_us_by_process={"enqueuer + worker": per_dispatch_us(result.cpu_s, result.accepted)},
        redis_command_us=per_dispatch_us(result.redis_usec / 1e6, result.accepted),
    )


def peer_backlog_bounded(
    rate: float, send_rate: float, accepted: int, latencies_ns: Sequence[int]
) -> bool:
    """``loadgen.sweep.backlog_bounded`` for a peer, whose results carry no send times.

    A job that started within ``BACKLOG_GRACE_S`` of its send started within the grace
    after the last send, so counting those is a lower bound of the jobs started in time:
    a step can only be judged unbounded wrongly when its max latency exceeds the grace, and
    such a step fails the max-latency criterion anyway.
    """
    grace_ns = BACKLOG_GRACE_S * 1e9
    in_time = sum(1 for ns in latencies_ns if ns <= grace_ns)
    return is_bounded(
        offered_rate=rate, send_rate=send_rate, accepted=accepted, started_within_grace=in_time
    )


def failed_record(
    *, system: str, repeat: int, phase: str, rate: float, duration_s: float, failure: str
) -> StepRecord:
    """A step that could not run (a peer that did not start, a step that timed out)."""
    return StepRecord(
        system=system,
        repeat=repeat,
        phase=phase,
        rate=rate,
        duration_s=duration_s,
        send_rate=0.0,
        accepted=0,
        started=0,
        p50_ms=None,
        p99_ms=None,
        max_ms=None,
        lost=0,
        errors=0,
        duplicates=0,
        backlog_bounded=False,
        process_cpu_us=None,
        redis_cpu_us=None,
        failure=failure,
    )


def _float_or_none(value: float | int | None) -> float | None:
    return None if value is None else float(value)
