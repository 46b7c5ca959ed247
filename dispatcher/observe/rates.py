"""Rates and dispatch-time percentiles between two snapshots, from the schedulers' cumulative
counters: each node's record is diffed with its own previous one, so a node that restarted
(its counters began again) or joined counts from its start, and one that left drops out."""

from __future__ import annotations

import msgspec

from dispatcher.wire import SchedulerFigures

QUANTILES = (0.5, 0.9, 0.99)


class Point(msgspec.Struct, kw_only=True, rename="camel"):
    """What happened between two snapshots, per second, and how long dispatches took."""

    at_ms: int
    created_per_s: float
    started_per_s: float
    failed_per_s: float
    dispatches: int  # RUNNING reports in the interval with a dispatch time
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None


def percentile(bounds: list[float], counts: list[int], q: float) -> float | None:
    """The q-quantile of a bucketed histogram, interpolated inside its bucket (the bucket
    above every bound reports the last bound: at least that long)."""
    total = sum(counts)
    if not total:
        return None
    rank, seen = q * total, 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i >= len(bounds):
                return bounds[-1] if bounds else None
            low = bounds[i - 1] if i else 0.0
            return low + (bounds[i] - low) * (rank - seen) / n
        seen += n
    return bounds[-1] if bounds else None


def between(
    before: list[SchedulerFigures], after: list[SchedulerFigures], at_ms: int, seconds: float
) -> Point:
    previous = {r.node_id: r for r in before}
    since = min((r.at for r in before), default=0)
    created = started = failed = 0
    bounds: list[float] = []
    counts: list[int] = []
    for record in after:
        base = previous.get(record.node_id)
        if base is None and record.started_at < since:
            continue  # already running before, but unseen: its counters say nothing new
        if base is not None and base.started_at != record.started_at:
            base = None  # it restarted: everything it counted is new
        created += record.jobs_created - (base.jobs_created if base else 0)
        started += record.jobs_started - (base.jobs_started if base else 0)
        failed += _failed(record) - (_failed(base) if base else 0)
        if not bounds:
            bounds, counts = list(record.dispatch_bounds_ms), [0] * len(record.dispatch_counts)
        if record.dispatch_bounds_ms == bounds:
            old = base.dispatch_counts if base else [0] * len(counts)
            for i, n in enumerate(record.dispatch_counts):
                counts[i] += n - (old[i] if i < len(old) else 0)
    per_s = 1 / seconds if seconds > 0 else 0.0
    p50, p90, p99 = (percentile(bounds, counts, q) for q in QUANTILES)
    return Point(
        at_ms=at_ms,
        created_per_s=created * per_s,
        started_per_s=started * per_s,
        failed_per_s=failed * per_s,
        dispatches=sum(counts),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
    )


def _failed(record: SchedulerFigures) -> int:
    return sum(n for name, n in record.jobs_ended.items() if name.startswith("failed/"))
