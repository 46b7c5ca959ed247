"""The knee search: the highest offered rate a system sustains within latency criteria.

Pure logic: ``find_knee`` is handed a ``measure(rate)`` coroutine that runs one step (a
fixed-rate, open-loop run) and returns its ``StepOutcome``. The search doubles the rate
from ``start`` until a step fails or ``max_rate`` passes, then bisects between the highest
passing and the lowest failing rate. Every step is one full run, so ``max_steps`` bounds
the wall time of a sweep.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

#: A suggested grace for ``backlog_bounded``: how long after the last send every accepted
#: job may still take to start before the backlog counts as growing.
BACKLOG_GRACE_S = 1.0


@dataclass(frozen=True)
class KneeCriteria:
    """What a step must meet to pass; the defaults are the benchmark suite's criteria."""

    p99_ms: float = 50.0
    max_ms: float = 150.0
    min_achieved_ratio: float = 0.95  # achieved_rate >= ratio * offered rate
    max_lost: int = 0
    max_errors: int = 0  # a system that rejects load is not sustaining it


@dataclass(frozen=True)
class StepOutcome:
    """One step's figures, computed by the caller's ``measure``.

    rate: the offered (scheduled) rate; achieved_rate: accepted jobs per second over the
    send window; p99_ms / max_ms: send -> start latency, None when no job started; lost:
    accepted jobs that never started; errors: rejected or failed sends; backlog_bounded:
    see ``backlog_bounded``.
    """

    rate: float
    achieved_rate: float
    p99_ms: float | None
    max_ms: float | None
    lost: int
    errors: int
    backlog_bounded: bool


@dataclass(frozen=True)
class Step:
    """A measured step and the verdict on it; ``reason`` is "" when it passed."""

    outcome: StepOutcome
    passed: bool
    reason: str


@dataclass(frozen=True)
class KneeResult:
    """The search's answer.

    knee_rate: the highest passing rate measured; None when even ``start`` failed (there
    is no sustainable rate to report, and 0.0 would read as a measurement).
    lowest_failing_rate: the lowest failing rate measured; None when nothing failed, in
    which case the knee is only a lower bound (``capped`` tells whether ``max_rate`` was
    reached and passed).
    steps: every step in the order it ran.
    stopped: why the search ended, for the report.
    """

    knee_rate: float | None
    lowest_failing_rate: float | None
    capped: bool
    steps: tuple[Step, ...]
    stopped: str


def _limit(value: float) -> str:
    return f"{value:g}"


def passes(outcome: StepOutcome, criteria: KneeCriteria) -> tuple[bool, str]:
    """(ok, reason): every criterion the step missed, joined by "; ", or "" when ok."""
    failures = [
        *_latency_failures(outcome, criteria),
        *_throughput_failures(outcome, criteria),
    ]
    return not failures, "; ".join(failures)


def _latency_failures(outcome: StepOutcome, criteria: KneeCriteria) -> list[str]:
    if outcome.p99_ms is None or outcome.max_ms is None:
        return ["no job started"]
    failures = []
    if outcome.p99_ms > criteria.p99_ms:
        failures.append(f"p99 {outcome.p99_ms:.1f} ms > {_limit(criteria.p99_ms)} ms")
    if outcome.max_ms > criteria.max_ms:
        failures.append(f"max {outcome.max_ms:.1f} ms > {_limit(criteria.max_ms)} ms")
    return failures


def _throughput_failures(outcome: StepOutcome, criteria: KneeCriteria) -> list[str]:
    failures = []
    if outcome.achieved_rate < criteria.min_achieved_ratio * outcome.rate:
        failures.append(
            f"achieved {outcome.achieved_rate:.1f}/s < "
            f"{criteria.min_achieved_ratio:.0%} of {_limit(outcome.rate)}/s"
        )
    if outcome.lost > criteria.max_lost:
        failures.append(f"lost {outcome.lost} > {criteria.max_lost}")
    if outcome.errors > criteria.max_errors:
        failures.append(f"errors {outcome.errors} > {criteria.max_errors}")
    if not outcome.backlog_bounded:
        failures.append("backlog not bounded")
    return failures


def backlog_bounded(
    *,
    offered_rate: float,
    send_rate: float,
    accepted: int,
    started_within_grace: int,
    min_send_ratio: float = 0.95,
) -> bool:
    """Whether the step really offered its load and the system kept pace with it.

    offered_rate: the scheduled rate. send_rate: sends per second actually achieved
    between the first and the last send (``SendStats.send_rate()``); below
    ``min_send_ratio`` of the offer the generator fell behind, so the system never saw the
    load. accepted: jobs the system accepted. started_within_grace: how many of those
    had started by the last send plus a short grace (``BACKLOG_GRACE_S``); fewer than
    ``accepted`` means work was still queued when the load stopped, i.e. the queue was
    growing rather than holding steady.
    """
    kept_schedule = send_rate >= min_send_ratio * offered_rate
    return kept_schedule and started_within_grace >= accepted


class _Search:
    """The bracket and the step log while a search runs."""

    def __init__(
        self, measure: Callable[[float], Awaitable[StepOutcome]], criteria: KneeCriteria
    ) -> None:
        self._measure = measure
        self._criteria = criteria
        self.steps: list[Step] = []
        self.passing: float | None = None  # highest passing rate so far
        self.failing: float | None = None  # lowest failing rate so far

    async def run(self, rate: float) -> bool:
        outcome = await self._measure(rate)
        ok, reason = passes(outcome, self._criteria)
        self.steps.append(Step(outcome, ok, reason))
        if ok:
            self.passing = rate if self.passing is None else max(self.passing, rate)
        else:
            self.failing = rate if self.failing is None else min(self.failing, rate)
        return ok

    def narrow_enough(self, resolution: float) -> bool:
        assert self.passing is not None and self.failing is not None
        return (self.failing - self.passing) / self.passing <= resolution


async def find_knee(
    measure: Callable[[float], Awaitable[StepOutcome]],
    *,
    start: float,
    criteria: KneeCriteria,
    max_rate: float,
    resolution: float = 0.1,
    max_steps: int = 12,
) -> KneeResult:
    """Search the knee; at most ``max_steps`` calls of ``measure``, one at a time.

    ``measure(rate)`` runs one step at that offered rate and returns its outcome with
    ``outcome.rate == rate``. The knee ends within ``resolution`` (relative:
    (lowest failing - knee) / knee) of the lowest failing rate unless the steps ran out
    first (then ``stopped`` says so).
    """
    _check_arguments(start, max_rate, resolution, max_steps)
    search = _Search(measure, criteria)
    stopped = await _double(search, start, max_rate, max_steps)
    if search.passing is not None and search.failing is not None:
        stopped = await _bisect(search, resolution, max_steps)
    return KneeResult(
        knee_rate=search.passing,
        lowest_failing_rate=search.failing,
        capped=search.failing is None and search.passing == max_rate,
        steps=tuple(search.steps),
        stopped=stopped,
    )


async def _double(search: _Search, start: float, max_rate: float, max_steps: int) -> str:
    rate = start
    while len(search.steps) < max_steps:
        if not await search.run(rate):
            return "start failed" if search.passing is None else "found a failing rate"
        if rate >= max_rate:
            return "max_rate passed"
        rate = min(rate * 2, max_rate)
    return "steps exhausted"


async def _bisect(search: _Search, resolution: float, max_steps: int) -> str:
    while not search.narrow_enough(resolution):
        if len(search.steps) >= max_steps:
            return "steps exhausted"
        assert search.passing is not None and search.failing is not None
        await search.run((search.passing + search.failing) / 2)
    return "resolution reached"


def _check_arguments(start: float, max_rate: float, resolution: float, max_steps: int) -> None:
    if not (start > 0 and math.isfinite(start)):
        raise ValueError(f"start must be a positive rate, not {start}")
    if not (max_rate >= start and math.isfinite(max_rate)):
        raise ValueError(f"max_rate ({max_rate}) must be finite and >= start ({start})")
    if not resolution > 0:
        raise ValueError(f"resolution must be > 0, not {resolution}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, not {max_steps}")
