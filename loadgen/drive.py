"""What ``loadgen dispatch`` does with a session: one measured run, or a knee search.

The knee is the highest offered rate whose dispatch time stays within the criteria
(``loadgen.sweep.KneeCriteria``: p99 under 50 ms, max under 150 ms, no loss, no errors, the
offered rate achieved and the backlog bounded). Each step of the search is a full measured
run at one rate against the same fleet. ``loadgen connect`` runs the same search over its
own steps (a ``StepKind`` says how they are reported and judged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from loadgen.report import build_report, over_time
from loadgen.run import DispatchSession, StepData
from loadgen.sweep import KneeCriteria, StepOutcome, find_knee

Writer = Callable[[str], object]


async def run_dispatch(
    session: DispatchSession, plot: str | None = None
) -> tuple[StepData, dict[str, Any]]:
    """One step at the session's rate and duration; the report covers the fleet as well."""
    step = await session.step(session.options.rate, session.options.duration)
    if plot:
        from loadgen.plot import plot_over_time

        title = f"dispatch time at {session.options.rate:g}/s (client send -> entrypoint)"
        plot_over_time(over_time(step), plot, title)
    return step, build_report(step, session.run_id)


def outcome(report: dict[str, Any]) -> StepOutcome:
    """A step's report as the knee search sees it."""
    user = report["user_dispatch_ms"]
    duration = report["config"]["duration_s"]
    return StepOutcome(
        rate=report["config"]["rate"],
        achieved_rate=report["accepted"] / duration if duration else 0.0,
        p99_ms=user["p99"],
        max_ms=user["max"],
        lost=report["lost"],
        errors=report["error_total"],
        backlog_bounded=report["backlog_bounded"],
    )


@dataclass(frozen=True)
class StepKind:
    """How a command's steps are reported and judged: its report, the report as the knee
    search sees it, and the latency (a key of the report) the search is about."""

    report: Callable[[StepData, str], dict[str, Any]]
    outcome: Callable[[dict[str, Any]], StepOutcome]
    latency_key: str
    plot_title: str


DISPATCH_STEPS = StepKind(
    report=build_report,
    outcome=outcome,
    latency_key="user_dispatch_ms",
    plot_title="dispatch time against offered rate",
)


async def run_find_max(
    session: DispatchSession,
    *,
    start: float,
    max_rate: float,
    step_duration: float,
    criteria: KneeCriteria,
    log: Writer,
    plot: str | None = None,
    kind: StepKind = DISPATCH_STEPS,
) -> dict[str, Any]:
    """Search for the knee; returns the knee and every step's report."""
    reports: list[dict[str, Any]] = []

    async def measure(rate: float) -> StepOutcome:
        step = await session.step(rate, step_duration)
        report = kind.report(step, session.run_id)
        reports.append(report)
        result = kind.outcome(report)
        log(_step_line(report, kind.latency_key) + "\n")
        return result

    knee = await find_knee(measure, start=start, criteria=criteria, max_rate=max_rate)
    if plot:
        from loadgen.plot import plot_sweep

        points = sorted(
            (r["config"]["rate"], *(r[kind.latency_key][k] for k in ("p50", "p99", "max")))
            for r in reports
        )
        plot_sweep({"dispatcher": points}, plot, kind.plot_title, criteria)
    return {
        "knee_rate": knee.knee_rate,
        "lowest_failing_rate": knee.lowest_failing_rate,
        "capped": knee.capped,
        "stopped": knee.stopped,
        "criteria": asdict(criteria),
        "steps": [
            {"rate": s.outcome.rate, "passed": s.passed, "reason": s.reason, "report": r}
            for s, r in zip(knee.steps, reports, strict=True)
        ],
    }


def _step_line(report: dict[str, Any], latency_key: str) -> str:
    user = report[latency_key]
    return (
        f"step {report['config']['rate']:g}/s: p50 {user['p50']} p99 {user['p99']} "
        f"max {user['max']} ms, lost {report['lost']}, errors {report['error_total']}, "
        f"backlog bounded {report['backlog_bounded']}"
    )


def format_knee(result: dict[str, Any], latency_key: str = "user_dispatch_ms") -> str:
    """The human-readable knee search: one line per step, then the verdict."""
    lines = ["rate/s     p50 ms    p99 ms    max ms  verdict"]
    for step in result["steps"]:
        user = step["report"][latency_key]
        verdict = "pass" if step["passed"] else f"FAIL {step['reason']}"
        figures = (f"{user[k]:>9}" if user[k] is not None else f"{'-':>9}" for k in _KEYS)
        lines.append(f"{step['rate']:>7g}  {' '.join(figures)}  {verdict}")
    knee = result["knee_rate"]
    lines.append(
        f"knee: {knee:g}/s ({result['stopped']})" if knee else f"knee: none ({result['stopped']})"
    )
    return "\n".join(lines)


_KEYS = ("p50", "p99", "max")
