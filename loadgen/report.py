"""The run's report: pure aggregation of sender stats, job results and agent summaries.

Nothing here does I/O, so accounting (lost, duplicate, unmatched) and the JSON shape are
unit-tested; ``format_table`` renders the same dict that ``--json`` prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from loadgen.fleet import AgentSummary
from loadgen.hdr import PERCENTILES, IntervalHistograms, LatencyHistogram
from loadgen.results import JobResult
from loadgen.run import StepData
from loadgen.sender import OK
from loadgen.sweep import backlog_bounded

#: Top-level keys of the JSON report (documented in BENCHMARKS.md; tests hold us to them).
REPORT_KEYS = (
    "run_id",
    "config",
    "planned",
    "attempted",
    "send_rate",
    "accepted",
    "errors",
    "error_total",
    "results",
    "lost",
    "duplicates",
    "unmatched",
    "retried",
    "started_in_grace",
    "backlog_bounded",
    "user_dispatch_ms",
    "server_share_ms",
    "api_response_ms",
    "send_lag_ms",
    "agents",
    "over_capacity",
    "agent_errors",
    "cpu",
)


def lost_dispatches(accepted_ids: Iterable[str], result_ids: Iterable[str]) -> set[str]:
    """Accepted dispatches whose job never reached an entrypoint."""
    return set(accepted_ids) - set(result_ids)


def result_accounting(accepted_ids: Sequence[str], results: Sequence[JobResult]) -> dict[str, int]:
    """lost / duplicates / unmatched / retried: each should be 0 on a healthy run.

    duplicates: extra entrypoint starts for one dispatch; unmatched: results for dispatches
    the sender never saw accepted (e.g. the reply timed out); retried: attempt > 0.
    """
    accepted = set(accepted_ids)
    per_dispatch = Counter(r.dispatch_id for r in results)
    return {
        "results": len(results),
        "lost": len(lost_dispatches(accepted, per_dispatch)),
        "duplicates": sum(n - 1 for n in per_dispatch.values()),
        "unmatched": sum(1 for d in per_dispatch if d not in accepted),
        "retried": sum(1 for r in results if r.attempt > 0),
    }


def matched(step: StepData) -> list[JobResult]:
    """This step's results: stragglers of an earlier step are left out of the latencies."""
    accepted = set(step.stats.accepted_ids)
    return [r for r in step.results if r.dispatch_id in accepted]


def over_time(step: StepData, interval_s: float = 1.0) -> IntervalHistograms:
    """User dispatch times bucketed by send time, for the over-time plot."""
    series = IntervalHistograms(interval_s)
    for r in matched(step):
        series.record(max(0.0, (r.sent_ns - step.window_start_ns) / 1e9), r.user_ns)
    return series


def is_backlog_bounded(step: StepData) -> bool:
    return backlog_bounded(
        offered_rate=step.options.rate,
        send_rate=step.stats.send_rate(),
        accepted=step.stats.codes[OK],
        started_within_grace=step.started_in_grace,
    )


def build_report(
    step: StepData, run_id: str, agents: Sequence[AgentSummary] = ()
) -> dict[str, Any]:
    """The report as a JSON-ready dict with exactly ``REPORT_KEYS``."""
    stats, results = step.stats, matched(step)
    errors = {code: n for code, n in sorted(stats.codes.items()) if code != OK}
    report: dict[str, Any] = {
        "run_id": run_id,
        "config": step.options.as_dict(),
        "planned": stats.planned,
        "attempted": stats.attempted,
        "send_rate": round(stats.send_rate(), 2),
        "accepted": stats.codes[OK],
        "errors": errors,
        "error_total": sum(errors.values()),
        **result_accounting(stats.accepted_ids, step.results),
        "started_in_grace": step.started_in_grace,
        "backlog_bounded": is_backlog_bounded(step),
        "user_dispatch_ms": LatencyHistogram.of(r.user_ns for r in results).summary_ms(),
        "server_share_ms": LatencyHistogram.of(r.server_ns for r in results).summary_ms(),
        "api_response_ms": LatencyHistogram.of(stats.response_ns).summary_ms(),
        "send_lag_ms": LatencyHistogram.of(stats.lag_ns).summary_ms(),
        "agents": [agent_dict(a) for a in agents],
        "over_capacity": sum(1 for a in agents if a.over_capacity),
        "agent_errors": sum(a.loop_errors + a.bad_metadata for a in agents),
        "cpu": cpu_report(step, agents),
    }
    return {key: report[key] for key in REPORT_KEYS}


def cpu_report(step: StepData, agents: Sequence[AgentSummary]) -> dict[str, float | None]:
    """CPU per request or dispatch, in microseconds, for every process we can see."""
    sent, accepted = step.stats.attempted, step.stats.codes[OK]
    jobs = sum(a.jobs for a in agents)
    figures: dict[str, float | None] = {
        "loadgen_us_per_request": _per(step.stats.cpu_s, sent),
        "redis_cpu_us_per_dispatch": _per(step.redis_cpu_s, accepted)
        if step.redis_cpu_s is not None
        else None,
        "redis_command_us_per_dispatch": _per(step.redis_usec / 1e6, accepted)
        if step.redis_usec is not None
        else None,
        "agents_us_per_job": _per(sum(a.cpu_s for a in agents), jobs) if agents else None,
    }
    for role, cpu_s in sorted(step.process_cpu_s.items()):
        figures[f"{role}_process_us_per_dispatch"] = _per(cpu_s, accepted)
    return figures


def _per(cpu_s: float, count: int) -> float | None:
    return round(cpu_s / count * 1e6, 1) if count else None


def agent_dict(agent: AgentSummary) -> dict[str, Any]:
    return {
        "server_id": agent.server_id,
        "capacity": agent.capacity,
        "max_running": agent.max_running,
        "jobs": agent.jobs,
        "bad_metadata": agent.bad_metadata,
        "loop_errors": agent.loop_errors,
        "cpu_s": round(agent.cpu_s, 3),
    }


_LATENCY_ROWS = (
    ("user dispatch time (client send -> entrypoint)", "user_dispatch_ms"),
    ("server share (API receipt -> entrypoint)", "server_share_ms"),
    ("API response (client round trip)", "api_response_ms"),
    ("sender lag (actual - scheduled send)", "send_lag_ms"),
)


def align(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-align the first column, right-align the others."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]


def cpu_line(cpu: dict[str, float | None]) -> str:
    return "   ".join(f"{name} {_fmt(value)}" for name, value in cpu.items())


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def format_table(report: dict[str, Any]) -> str:
    """The human-readable report: counts first, then the latency table in ms."""
    c = report["config"]
    errors = ", ".join(f"{k}={v}" for k, v in report["errors"].items()) or "none"
    peaks = ", ".join(f"{a['max_running']}/{a['capacity']}" for a in report["agents"]) or "-"
    head = [
        f"loadgen dispatch  run {report['run_id']}  {c['rate']:g}/s for {c['duration_s']:g} s, "
        f"{c['agents']} agents x {c['capacity']}, hold {c['hold_s']:g} s",
        f"sent       {report['attempted']} of {report['planned']} planned, "
        f"{report['send_rate']:.1f}/s achieved",
        f"accepted   {report['accepted']}   errors {report['error_total']} ({errors})",
        f"results    {report['results']}   lost {report['lost']}   duplicates "
        f"{report['duplicates']}   unmatched {report['unmatched']}   retried {report['retried']}",
        f"agents     peak running/capacity {peaks}   over-capacity {report['over_capacity']}"
        f"   errors {report['agent_errors']}",
        f"backlog    {report['started_in_grace']} started within the send window + grace, "
        f"bounded: {'yes' if report['backlog_bounded'] else 'no'}",
        f"CPU (us)   {cpu_line(report['cpu'])}",
        "",
    ]
    return "\n".join(head + latency_table(report, _LATENCY_ROWS))


def latency_table(report: dict[str, Any], rows: Sequence[tuple[str, str]]) -> list[str]:
    """The lines of a table in ms: one row per (label, key of a latency summary)."""
    table = [["ms", "count", *(name for name, _ in PERCENTILES)]]
    for label, key in rows:
        summary = report[key]
        table.append([label, str(summary["count"]), *(_fmt(summary[n]) for n, _ in PERCENTILES)])
    return align(table)
