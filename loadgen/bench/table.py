"""The peers table: pure aggregation of the run's records (``render`` draws it).

Every figure is the median over repeats with the min and max next to it. Missing values
count as the worst there is: a knee search whose start rate failed has knee 0 (shown as
"none"), a step in which no job started has infinite latency ("inf"); CPU figures of such
steps are left out. Steps that could not run at all (``StepRecord.failure``) are left out.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from loadgen.bench.records import FIXED, KNEE, KneeRecord, StepRecord
from loadgen.bench.systems import System
from loadgen.plot import SweepPoint

LOW_RATE = 500.0  # the everyday load every system should take in its stride
HIGH_RATE = 2000.0
KNEE_RATIO_TARGET = 5.0  # ours / best peer, at least
P99_RATIO_TARGET = 0.5  # ours / best peer at the best peer's knee, at most


@dataclass(frozen=True, slots=True)
class Spread:
    """Median, min and max of ``n`` values (one per repeat), and the values in run order."""

    median: float
    low: float
    high: float
    n: int
    each: tuple[float, ...] = field(default=(), compare=False)  # shown, not compared


@dataclass(frozen=True, slots=True)
class Row:
    """One system's figures; the ratios are this system's over the best peer's."""

    system: str
    is_peer: bool
    knee: Spread | None
    p50_low: Spread | None
    p99_low: Spread | None
    max_low: Spread | None
    p99_peer_knee: Spread | None
    max_peer_knee: Spread | None
    p99_high: Spread | None
    lost: int
    process_cpu_us_low: Spread | None
    redis_cpu_us_low: Spread | None
    knee_ratio: float | None = None
    p99_peer_knee_ratio: float | None = None
    p99_low_ratio: float | None = None


@dataclass(frozen=True, slots=True)
class Table:
    rows: tuple[Row, ...]
    best_peer: str | None
    peer_knee_rate: float | None  # the best peer's median knee: the middle fixed rate
    low_rate: float
    high_rate: float


def spread(values: Iterable[float]) -> Spread | None:
    each = tuple(values)
    ordered = sorted(each)
    if not ordered:
        return None
    return Spread(statistics.median(ordered), ordered[0], ordered[-1], len(ordered), each)


def knee_spread(knees: Iterable[KneeRecord], system: str) -> Spread | None:
    return spread(k.knee_rate or 0.0 for k in knees if k.system == system)


def redis_us_at_knee(
    knees: Iterable[KneeRecord], steps: Iterable[StepRecord], system: str
) -> Spread | None:
    """Redis CPU per dispatch in the step at each repeat's own knee: what a shard spends
    per dispatch under load, where idle reads no longer weigh on it."""
    knee_of = {k.repeat: k.knee_rate for k in knees if k.system == system and k.knee_rate}
    return spread(
        s.redis_cpu_us
        for s in steps
        if s.system == system
        and s.phase == KNEE
        and s.rate == knee_of.get(s.repeat)
        and s.redis_cpu_us is not None
    )


def peer_knee(
    systems: Sequence[System], knees: Sequence[KneeRecord]
) -> tuple[str | None, float | None]:
    """(best peer, its median knee): the peer with the highest median knee, the first
    listed on a tie; (None, None) when no peer sustained any rate."""
    best: tuple[str, float] | None = None
    for system in systems:
        knee = knee_spread(knees, system.label) if system.is_peer else None
        if knee is not None and knee.median > 0 and (best is None or knee.median > best[1]):
            best = (system.label, knee.median)
    return best if best is not None else (None, None)


def fixed_rates(low: float, peer_knee_rate: float | None, high: float) -> list[float]:
    """The fixed-step rates in ascending order, each once."""
    return sorted({low, high} | ({peer_knee_rate} if peer_knee_rate else set()))


def ratio(ours: Spread | None, peer: Spread | None) -> float | None:
    """Median over median; None when either is missing or the quotient is undefined."""
    if ours is None or peer is None or peer.median == 0:
        return None
    value = ours.median / peer.median
    return None if math.isnan(value) else value


Pick = Callable[[StepRecord], float | None]


def _latency(pick: Pick) -> Pick:
    """A latency figure, with no job started counted as infinitely late."""

    def value(record: StepRecord) -> float:
        figure = pick(record)
        return math.inf if figure is None else figure

    return value


def fixed_spread(
    steps: Iterable[StepRecord], system: str, rate: float | None, pick: Pick
) -> Spread | None:
    """``pick`` over the system's fixed steps at ``rate``; None values are left out."""
    if rate is None:
        return None
    values = (
        pick(s)
        for s in steps
        if s.system == system
        and s.phase == FIXED
        and s.failure is None
        and math.isclose(s.rate, rate)
    )
    return spread(v for v in values if v is not None)


def build_table(
    systems: Sequence[System],
    knees: Sequence[KneeRecord],
    steps: Sequence[StepRecord],
    *,
    low_rate: float = LOW_RATE,
    high_rate: float = HIGH_RATE,
) -> Table:
    best, knee_rate = peer_knee(systems, knees)
    rows = [_row(s, knees, steps, low_rate, knee_rate, high_rate) for s in systems]
    reference = next((r for r in rows if r.system == best), None)
    if reference is not None:
        rows = [_with_ratios(row, reference) for row in rows]
    return Table(tuple(rows), best, knee_rate, low_rate, high_rate)


def _row(
    system: System,
    knees: Sequence[KneeRecord],
    steps: Sequence[StepRecord],
    low: float,
    knee_rate: float | None,
    high: float,
) -> Row:
    label = system.label

    def at(rate: float | None, pick: Pick) -> Spread | None:
        return fixed_spread(steps, label, rate, pick)

    return Row(
        system=label,
        is_peer=system.is_peer,
        knee=knee_spread(knees, label),
        p50_low=at(low, _latency(lambda s: s.p50_ms)),
        p99_low=at(low, _latency(lambda s: s.p99_ms)),
        max_low=at(low, _latency(lambda s: s.max_ms)),
        p99_peer_knee=at(knee_rate, _latency(lambda s: s.p99_ms)),
        max_peer_knee=at(knee_rate, _latency(lambda s: s.max_ms)),
        p99_high=at(high, _latency(lambda s: s.p99_ms)),
        lost=sum(s.lost for s in steps if s.system == label),
        process_cpu_us_low=at(low, lambda s: s.process_cpu_us),
        redis_cpu_us_low=at(low, lambda s: s.redis_cpu_us),
    )


def _with_ratios(row: Row, peer: Row) -> Row:
    return dataclasses.replace(
        row,
        knee_ratio=ratio(row.knee, peer.knee),
        p99_peer_knee_ratio=ratio(row.p99_peer_knee, peer.p99_peer_knee),
        p99_low_ratio=ratio(row.p99_low, peer.p99_low),
    )


def sweep_points(steps: Iterable[StepRecord]) -> dict[str, list[SweepPoint]]:
    """Per system, the knee-search steps of every repeat as (rate, p50, p99, max): the
    median at each offered rate, None where no job started."""
    by_rate: dict[str, dict[float, list[StepRecord]]] = defaultdict(lambda: defaultdict(list))
    for step in steps:
        if step.phase == KNEE and step.failure is None:
            by_rate[step.system][step.rate].append(step)
    return {
        system: [_sweep_point(rate, group) for rate, group in sorted(rates.items())]
        for system, rates in by_rate.items()
    }


def _sweep_point(rate: float, steps: Sequence[StepRecord]) -> SweepPoint:
    def median(pick: Pick) -> float | None:
        values = [v for v in map(pick, steps) if v is not None]
        return statistics.median(values) if values else None

    return (
        rate,
        median(lambda s: s.p50_ms),
        median(lambda s: s.p99_ms),
        median(lambda s: s.max_ms),
    )
