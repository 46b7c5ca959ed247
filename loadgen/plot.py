"""PNG plots of a run (latency over time) and of a sweep (latency against offered rate).

matplotlib is a ``bench`` extra, not a runtime dependency: it is imported when a plot is
drawn, never at import of ``loadgen``. Figures are drawn on the Agg canvas directly (no
pyplot), so plotting leaves no global figure state behind and needs no display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loadgen.hdr import IntervalHistograms
from loadgen.sweep import KneeCriteria

MISSING_MATPLOTLIB = "--plot needs matplotlib: pip install 'agent-dispatcher[bench]'"
WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.5, 100  # 800 x 450 px

#: One sweep point: (offered rate, p50 ms, p99 ms, max ms); None where nothing was measured.
SweepPoint = tuple[float, float | None, float | None, float | None]


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _new_figure() -> Any:
    """A figure on the Agg canvas, or PlotUnavailable with the install hint."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotUnavailable(MISSING_MATPLOTLIB) from exc
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="tight")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | Path) -> None:
    figure.savefig(Path(path), format="png", dpi=DPI)


def _no_data(axes: Any) -> None:
    axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)


def _log_ms_axis(axes: Any) -> None:
    """Log scale labelled with plain numbers ("20", not "2x10^1"), see ``_minor_label``."""
    from matplotlib.ticker import FuncFormatter

    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:g}"))
    low, high = axes.get_ylim()
    decades = math.log10(high / low)
    axes.yaxis.set_minor_formatter(
        FuncFormatter(lambda value, _position: _minor_label(value, decades))
    )
    axes.grid(True, which="both", alpha=0.3)


def _minor_label(value: float, decades: float) -> str:
    """Between the powers of ten: every tick over less than a decade, 2s and 5s over a few
    (otherwise a narrow range can show no label at all), none over a wide range."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** math.floor(math.log10(value)))
    if decades < 1 or (decades < 3 and leading in (2, 5)):
        return f"{value:g}"
    return ""


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def plot_over_time(series: IntervalHistograms, path: str | Path, title: str) -> None:
    """p50 / p99 / max of each interval against the interval's start, log-scale ms."""
    figure = _new_figure()
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel("time since start (s)")
    axes.set_ylabel("latency (ms)")
    intervals = series.intervals()
    if intervals:
        middles = [start + series.interval_s / 2 for start, _ in intervals]
        for label, p, style in (("p50", 50.0, "--"), ("p99", 99.0, "-"), ("max", 100.0, ":")):
            values = [histogram.percentile_ms(p) for _, histogram in intervals]
            axes.plot(middles, values, style, label=label)
        _log_ms_axis(axes)
        axes.legend(loc="upper left")
    else:
        _no_data(axes)
    _save(figure, path)


def plot_sweep(
    points: Mapping[str, Sequence[SweepPoint]],
    path: str | Path,
    title: str,
    criteria: KneeCriteria | None = None,
) -> None:
    """Latency against offered rate, one color per system: p99 solid, p50 dashed, max
    dotted; horizontal lines at the criteria's p99 and max limits."""
    criteria = criteria or KneeCriteria()
    figure = _new_figure()
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel("offered rate (/s)")
    axes.set_ylabel("latency (ms)")
    if not any(points.values()):
        _no_data(axes)
        _save(figure, path)
        return
    for index, (system, system_points) in enumerate(points.items()):
        _plot_system(axes, system, sorted(system_points, key=_rate), f"C{index}")
    _criteria_lines(axes, criteria)
    _log_ms_axis(axes)
    _legends(axes)
    _save(figure, path)


def _criteria_lines(axes: Any, criteria: KneeCriteria) -> None:
    for limit, name in ((criteria.p99_ms, "p99"), (criteria.max_ms, "max")):
        axes.axhline(limit, color="grey", linewidth=0.8, alpha=0.7)
        axes.annotate(
            f"{name} limit {limit:g} ms",
            (0.995, limit),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            color="grey",
            ha="right",
            va="bottom",
        )


def _legends(axes: Any) -> None:
    """Systems by color, and a second legend for what each line style means."""
    from matplotlib.lines import Line2D  # matplotlib is known to be there by now

    systems = axes.legend(loc="upper left", title="system")
    axes.add_artist(systems)  # the second legend call would otherwise replace it
    styles = [Line2D([], [], color="black", linestyle=s) for s in ("-", "--", ":")]
    axes.legend(styles, ["p99", "p50", "max"], loc="lower right")


def _rate(point: SweepPoint) -> float:
    return point[0]


def _plot_system(axes: Any, system: str, points: Sequence[SweepPoint], color: str) -> None:
    rates = [point[0] for point in points]
    for column, style, label in ((2, "-", system), (1, "--", None), (3, ":", None)):
        values = [_nan_if_none(point[column]) for point in points]
        axes.plot(rates, values, style, color=color, marker=".", label=label)
