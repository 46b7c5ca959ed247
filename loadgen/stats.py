"""Exact percentiles over a sorted list: pure, so they are checked against known data.

Nearest-rank definition: the p-th percentile of n sorted values is the value at rank
ceil(p/100 * n), so every reported figure is a value that was actually observed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("max", 100.0),
)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values; p in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile {p} is outside [0, 100]")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values) - 1e-9))
    return sorted_values[rank - 1]


def summarize_ns(values_ns: Sequence[int]) -> dict[str, float | int | None]:
    """count plus p50..max in milliseconds; None figures when nothing was measured."""
    ordered = sorted(values_ns)
    summary: dict[str, float | int | None] = {"count": len(ordered)}
    for name, p in PERCENTILES:
        summary[name] = round(percentile(ordered, p) / 1e6, 3) if ordered else None
    return summary
