"""The peers table as text: one row per system, the legend and the acceptance lines."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from loadgen.bench.records import RESULT_WAIT_S
from loadgen.bench.systems import OURS
from loadgen.bench.table import KNEE_RATIO_TARGET, P99_RATIO_TARGET, Row, Spread, Table
from loadgen.report import align


def fmt_rate(value: float) -> str:
    return "none" if value == 0 else f"{value:.0f}"


def fmt_ms(value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def fmt_us(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.2f}"


def every_repeat(value: Spread | None, fmt: Callable[[float], str]) -> str:
    """``median (first/second/...)``: each repeat's value in run order, so a repeat that
    stands apart shows as one."""
    if value is None:
        return "-"
    if len(value.each) <= 1:
        return fmt(value.median)
    return f"{fmt(value.median)} ({'/'.join(fmt(v) for v in value.each)})"


def cell(value: Spread | None, fmt: Callable[[float], str]) -> str:
    """``median (min-max)``, or the median alone when min and max read the same."""
    if value is None:
        return "-"
    low, high = fmt(value.low), fmt(value.high)
    return fmt(value.median) if low == high else f"{fmt(value.median)} ({low}-{high})"


def render_table(table: Table) -> str:
    low, high = f"{table.low_rate:g}", f"{table.high_rate:g}"
    knee = f"{table.peer_knee_rate:.0f}" if table.peer_knee_rate else "peer-knee"
    header = [
        "system",
        "knee/s",
        f"p50@{low}",
        f"p99@{low}",
        f"max@{low}",
        f"p99@{knee}",
        f"max@{knee}",
        f"p99@{high}",
        "lost",
        f"cpu us@{low}",
        f"redis us@{low}",
        "knee x",
        f"p99@{knee} x",
        f"p99@{low} x",
    ]
    rows = [header, *(_cells(row, row.system == table.best_peer) for row in table.rows)]
    return "\n".join([*align(rows), "", *_legend(table)])


def _cells(row: Row, best: bool) -> list[str]:
    return [
        f"{row.system} *" if best else row.system,
        every_repeat(row.knee, fmt_rate),
        cell(row.p50_low, fmt_ms),
        cell(row.p99_low, fmt_ms),
        cell(row.max_low, fmt_ms),
        cell(row.p99_peer_knee, fmt_ms),
        cell(row.max_peer_knee, fmt_ms),
        cell(row.p99_high, fmt_ms),
        str(row.lost),
        cell(row.process_cpu_us_low, fmt_us),
        cell(row.redis_cpu_us_low, fmt_us),
        fmt_ratio(row.knee_ratio),
        fmt_ratio(row.p99_peer_knee_ratio),
        fmt_ratio(row.p99_low_ratio),
    ]


def _legend(table: Table) -> list[str]:
    best = f"* best peer: {table.best_peer}" if table.best_peer else "no peer sustained any rate"
    return [
        f"{best}; every figure: median over repeats (min-max); knees: (each repeat, in run order)",
        "knee/s: highest offered rate within the knee criteria (none: not even the start rate)",
        "p50/p99/max@R: client send -> job start in ms, fixed-rate steps at R/s offered",
        f"lost: accepted jobs not started {RESULT_WAIT_S:g} s after the last send, summed over"
        " every step",
        "cpu us / redis us: CPU per accepted dispatch of the system's processes and client /"
        " of Redis's main thread",
        "x: this system's median over the best peer's",
    ]


def acceptance_lines(table: Table) -> list[str]:
    """The targets, spelled out for our row against the best peer."""
    rows = {row.system: row for row in table.rows}
    ours = rows.get(OURS)
    peer = rows.get(table.best_peer) if table.best_peer else None
    if ours is None:
        return []
    if peer is None:
        return ["no best peer to compare with: no peer ran or none sustained any rate"]
    knee_rate = f"{table.peer_knee_rate:.0f}/s"
    return [
        f"knee ratio to best peer ({peer.system}): {fmt_ratio(ours.knee_ratio)} "
        f"(target >= {KNEE_RATIO_TARGET:g}){_verdict(ours.knee_ratio, KNEE_RATIO_TARGET, True)}",
        f"p99 at best peer's knee ({knee_rate}): ours/peer = "
        f"{fmt_ratio(ours.p99_peer_knee_ratio)} (target <= {P99_RATIO_TARGET:g})"
        f"{_verdict(ours.p99_peer_knee_ratio, P99_RATIO_TARGET, False)}",
        f"p99 at {table.low_rate:g}/s: ours {cell(ours.p99_low, fmt_ms)} ms vs best peer "
        f"{cell(peer.p99_low, fmt_ms)} ms (ours/peer = {fmt_ratio(ours.p99_low_ratio)})",
    ]


def _verdict(value: float | None, target: float, at_least: bool) -> str:
    if value is None:
        return ""
    met = value >= target if at_least else value <= target
    return ": met" if met else ": NOT met"


def table_dict(table: Table) -> dict[str, Any]:
    """The table for the JSON file (infinite latencies become null there)."""
    return {**dataclasses.asdict(table), "acceptance": acceptance_lines(table)}
