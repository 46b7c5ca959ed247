"""The report of a ``loadgen connect`` step: pure aggregation, as ``loadgen.report``.

Join latency is the client's round trip of a Join (send to reply). With agents, a room's
dispatch time runs from the send of the join that created the room to the first statement
of the agent's entrypoint, both on the one host clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from loadgen.fleet import AgentSummary
from loadgen.hdr import IntervalHistograms, LatencyHistogram
from loadgen.join_sender import JoinStats
from loadgen.report import (
    agent_dict,
    cpu_line,
    cpu_report,
    latency_table,
    matched,
    result_accounting,
)
from loadgen.run import StepData
from loadgen.sender import OK
from loadgen.sweep import StepOutcome, backlog_bounded

#: Top-level keys of the JSON report (documented in BENCHMARKS.md; tests hold us to them).
CONNECT_REPORT_KEYS = (
    "run_id",
    "config",
    "planned",
    "attempted",
    "send_rate",
    "accepted",
    "connections_per_s",
    "errors",
    "error_total",
    "rooms_opened",
    "rooms_planned",
    "rooms_created",
    "rooms_created_unplanned",
    "creator_found_room",
    "rooms_joined",
    "reconnected",
    "dispatches",
    "leaves",
    "leave_errors",
    "results",
    "lost",
    "duplicates",
    "unmatched",
    "retried",
    "started_in_grace",
    "backlog_bounded",
    "join_ms",
    "join_to_entrypoint_ms",
    "server_share_ms",
    "leave_ms",
    "send_lag_ms",
    "agents",
    "over_capacity",
    "agent_errors",
    "cpu",
)


def joins_over_time(step: StepData, interval_s: float = 1.0) -> IntervalHistograms:
    """Join round trips bucketed by send time, for the over-time plot."""
    stats, series = join_stats(step), IntervalHistograms(interval_s)
    for sent_ns, elapsed_ns in zip(stats.join_sent_ns, stats.response_ns, strict=True):
        series.record(max(0.0, (sent_ns - step.window_start_ns) / 1e9), elapsed_ns)
    return series


def join_stats(step: StepData) -> JoinStats:
    if not isinstance(step.stats, JoinStats):
        raise TypeError("not a connect step: its stats are not JoinStats")
    return step.stats


def build_connect_report(
    step: StepData, run_id: str, agents: Sequence[AgentSummary] = ()
) -> dict[str, Any]:
    """The report as a JSON-ready dict with exactly ``CONNECT_REPORT_KEYS``."""
    stats = join_stats(step)
    errors = {code: n for code, n in sorted(stats.codes.items()) if code != OK}
    leave_errors = {code: n for code, n in sorted(stats.leave_codes.items()) if code != OK}
    accepted = stats.codes[OK]
    report: dict[str, Any] = {
        "run_id": run_id,
        "config": _config(step, stats),
        "planned": stats.planned,
        "attempted": stats.attempted,
        "send_rate": round(stats.send_rate(), 2),
        "accepted": accepted,
        "connections_per_s": round(accepted / step.options.duration, 2),
        "errors": errors,
        "error_total": sum(errors.values()),
        **_rooms(stats),
        "leaves": stats.leave_codes[OK],
        "leave_errors": leave_errors,
        **result_accounting(stats.accepted_ids, step.results),
        "started_in_grace": step.started_in_grace,
        "backlog_bounded": _backlog_bounded(step, stats),
        **_latencies(step, stats),
        "agents": [agent_dict(a) for a in agents],
        "over_capacity": sum(1 for a in agents if a.over_capacity),
        "agent_errors": sum(a.loop_errors + a.bad_metadata for a in agents),
        "cpu": connect_cpu(step, stats, agents),
    }
    return {key: report[key] for key in CONNECT_REPORT_KEYS}


def _config(step: StepData, stats: JoinStats) -> dict[str, Any]:
    return {
        **step.options.as_dict(),
        "connections": step.options.connections,
        **dataclasses.asdict(stats.shape),
    }


def _rooms(stats: JoinStats) -> dict[str, int]:
    return {
        "rooms_opened": stats.rooms_opened,
        "rooms_planned": stats.rooms_planned,
        "rooms_created": stats.rooms_created,
        "rooms_created_unplanned": stats.rooms_created_unplanned,
        "creator_found_room": stats.creator_found_room,
        "rooms_joined": len(stats.rooms_joined),
        "reconnected": stats.reconnected,
        "dispatches": stats.dispatches,
    }


def _backlog_bounded(step: StepData, stats: JoinStats) -> bool:
    """The schedule was kept and every tracked dispatch started within the grace."""
    return backlog_bounded(
        offered_rate=step.options.rate,
        send_rate=stats.send_rate(),
        accepted=len(stats.accepted_ids),
        started_within_grace=step.started_in_grace,
    )


def _latencies(step: StepData, stats: JoinStats) -> dict[str, dict[str, float | int | None]]:
    results = matched(step)
    dispatch_ns = (r.sent_ns + r.user_ns - stats.dispatch_sent_ns[r.dispatch_id] for r in results)
    return {
        "join_ms": LatencyHistogram.of(stats.response_ns).summary_ms(),
        "join_to_entrypoint_ms": LatencyHistogram.of(dispatch_ns).summary_ms(),
        "server_share_ms": LatencyHistogram.of(r.server_ns for r in results).summary_ms(),
        "leave_ms": LatencyHistogram.of(stats.leave_ns).summary_ms(),
        "send_lag_ms": LatencyHistogram.of(stats.lag_ns).summary_ms(),
    }


def connect_cpu(
    step: StepData, stats: JoinStats, agents: Sequence[AgentSummary]
) -> dict[str, float | None]:
    """``report.cpu_report``'s figures per accepted join, loadgen's per request (joins and
    leaves), and what minting the step's tokens cost per token."""
    figures = {
        name.replace("_per_dispatch", "_per_join"): value
        for name, value in cpu_report(step, agents).items()
    }
    requests = stats.attempted + stats.leave_codes.total()
    figures["loadgen_us_per_request"] = _per(stats.cpu_s, requests)
    figures["loadgen_mint_us_per_token"] = _per(stats.mint_cpu_s, stats.planned)
    return figures


def _per(cpu_s: float, count: int) -> float | None:
    return round(cpu_s / count * 1e6, 1) if count else None


def connect_outcome(report: dict[str, Any]) -> StepOutcome:
    """A step's report as the knee search sees it: join latency, every error counts."""
    join = report["join_ms"]
    return StepOutcome(
        rate=report["config"]["rate"],
        achieved_rate=report["connections_per_s"],
        p99_ms=join["p99"],
        max_ms=join["max"],
        lost=report["lost"],
        errors=report["error_total"] + sum(report["leave_errors"].values()),
        backlog_bounded=report["backlog_bounded"],
    )


_LATENCY_ROWS = (
    ("join (client round trip)", "join_ms"),
    ("join -> agent entrypoint", "join_to_entrypoint_ms"),
    ("server share (API receipt -> entrypoint)", "server_share_ms"),
    ("leave (client round trip)", "leave_ms"),
    ("sender lag (actual - scheduled send)", "send_lag_ms"),
)


def format_connect(report: dict[str, Any]) -> str:
    """The human-readable report: counts first, then the latency table in ms."""
    c = report["config"]
    errors = ", ".join(f"{k}={v}" for k, v in report["errors"].items()) or "none"
    bounded = "yes" if report["backlog_bounded"] else "no"
    head = [
        f"loadgen connect  run {report['run_id']}  {c['rate']:g}/s for {c['duration_s']:g} s, "
        f"new rooms {c['new_room_share']:.0%}, room size {c['room_size']}, "
        f"leave {c['leave_share']:.0%}, {c['agents']} agents x {c['capacity']}",
        f"joins      {report['attempted']} of {report['planned']} sent "
        f"({report['send_rate']:.1f}/s); accepted {report['accepted']} "
        f"= {report['connections_per_s']:.1f} connections/s; errors {report['error_total']} "
        f"({errors})",
        f"rooms      {report['rooms_opened']} opened before the schedule; created "
        f"{report['rooms_created']} of {report['rooms_planned']} planned (unplanned "
        f"{report['rooms_created_unplanned']}); joined {report['rooms_joined']}; "
        f"dispatches {report['dispatches']}; reconnects {report['reconnected']}",
        f"leaves     {report['leaves']}   errors {report['leave_errors'] or 'none'}",
        f"jobs       results {report['results']}   lost {report['lost']}   duplicates "
        f"{report['duplicates']}   retried {report['retried']}   over-capacity "
        f"{report['over_capacity']}   backlog bounded: {bounded}",
        f"CPU (us)   {cpu_line(report['cpu'])}",
        "",
    ]
    return "\n".join(head + latency_table(report, _LATENCY_ROWS))
