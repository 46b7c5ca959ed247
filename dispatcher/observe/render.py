"""A snapshot as one terminal screen (rich): schedulers and their partitions, lag, pools and
their servers, jobs by phase and pending by reason, dispatch times, the latest failures."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from dispatcher.observe.rates import QUANTILES, Point, percentile
from dispatcher.observe.snapshot import PoolView, Snapshot

_MAX_SERVERS_SHOWN = 20  # per pool; --json has them all
_SERVER_COLUMNS = ("server", "status", "used/cap", "load", "version", "labels", "heartbeat", "host")


def screen(snapshot: Snapshot, rates: Point | None = None) -> RenderableType:
    return Group(
        _title(snapshot),
        _schedulers(snapshot),
        _partitions(snapshot),
        *(_pool(pool, snapshot.at_ms) for pool in snapshot.pools),
        _jobs(snapshot, rates),
        _failures(snapshot),
    )


def ranges(numbers: Iterable[int]) -> str:
    """``0-3, 7, 9-10``: partition numbers, compactly."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans) or "-"


def _title(snapshot: Snapshot) -> Text:
    at = time.strftime("%H:%M:%S", time.localtime(snapshot.at_ms / 1000))
    alive = sum(s.alive for s in snapshot.schedulers)
    servers = sum(p.servers_live for p in snapshot.pools)
    return Text.assemble(
        ("dispatcher status", "bold"),
        f"  {at}  {snapshot.partition_count} partitions, {alive} scheduler(s), "
        f"{len(snapshot.pools)} pool(s), {servers} live agent server(s)",
    )


def _schedulers(snapshot: Snapshot) -> Table:
    table = Table(title="Schedulers", title_justify="left", expand=False)
    for column in ("node", "state", "partitions held", "which"):
        table.add_column(column)
    for view in snapshot.schedulers:
        state = "alive" if view.alive else "[red]gone[/]"
        table.add_row(view.node_id, state, str(len(view.partitions)), ranges(view.partitions))
    unowned = [p.partition for p in snapshot.partitions if not p.owner]
    if unowned:
        table.add_row("[yellow](no owner)[/]", "", str(len(unowned)), ranges(unowned))
    return table


def _partitions(snapshot: Snapshot) -> Table:
    """Lag of every partition, eight to a row: ``p07 3`` (entries not yet read)."""
    table = Table(title="Partition lag (unread / unacked)", title_justify="left", show_header=False)
    cells = []
    for view in snapshot.partitions:
        lag = "?" if view.lag is None else str(view.lag)
        style = "red" if not view.owner else ("yellow" if view.lag or view.pending else "")
        cells.append(Text(f"p{view.partition:02d} {lag}/{view.pending}", style=style))
    for row in range(0, len(cells), 8):
        table.add_row(*cells[row : row + 8])
    return table


def _pool(pool: PoolView, now_ms: int) -> Table:
    counted = f" (of the {len(pool.servers)} read)" if pool.partial else ""
    title = (
        f"Pool {pool.agent_name!r} ({pool.job_type}): {pool.servers_live} live of "
        f"{pool.servers_total} server(s), {pool.used}/{pool.capacity} slots used{counted}"
    )
    table = Table(title=title, title_justify="left")
    for column in _SERVER_COLUMNS:
        table.add_column(column)
    for server in pool.servers[:_MAX_SERVERS_SHOWN]:
        age_s = max(0.0, (now_ms - server.last_heartbeat_ms) / 1000)
        labels = ", ".join(f"{k}={v}" for k, v in sorted(server.labels.items()))
        status = server.status if server.status != "gone" else "[red]gone[/]"
        table.add_row(
            server.id, status, f"{server.used}/{server.capacity}", f"{server.load:.2f}",
            server.version or "-", labels or "-", f"{age_s:.1f} s ago", server.host,
        )  # fmt: skip
    if len(pool.servers) > _MAX_SERVERS_SHOWN:
        table.caption = f"{len(pool.servers) - _MAX_SERVERS_SHOWN} more (--json lists them all)"
    return table


def _jobs(snapshot: Snapshot, rates: Point | None) -> Table:
    totals = snapshot.totals
    table = Table(title="Jobs", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("by phase", _counts(totals.jobs_by_phase))
    table.add_row("pending by reason", _counts(totals.pending_by_reason))
    table.add_row(
        "since start",
        f"{totals.jobs_created} created, {totals.jobs_started} started, "
        f"{totals.attempts_retried} retried, ended: {_counts(totals.jobs_ended)}",
    )
    bounds, counts = totals.dispatch_bounds_ms, totals.dispatch_counts
    quantiles = [percentile(bounds, counts, q) for q in QUANTILES]
    table.add_row("dispatch time (since start)", _quantiles(quantiles))
    if rates is not None:
        table.add_row(
            "last interval",
            f"{rates.created_per_s:.1f} created/s, {rates.started_per_s:.1f} started/s, "
            f"{rates.failed_per_s:.1f} failed/s; "
            + _quantiles([rates.p50_ms, rates.p90_ms, rates.p99_ms]),
        )
    return table


def _failures(snapshot: Snapshot) -> Table:
    table = Table(title="Recent failures", title_justify="left")
    for column in ("when", "job", "room", "agent", "server", "reason", "error"):
        table.add_column(column)
    for failure in snapshot.failures:
        when = time.strftime("%H:%M:%S", time.localtime(failure.at_ms / 1000))
        table.add_row(
            when, failure.job_id, failure.room, failure.agent_name, failure.server_id or "-",
            failure.reason, failure.error,
        )  # fmt: skip
    return table


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "none"


def _quantiles(values: list[float | None]) -> str:
    named = zip(("p50", "p90", "p99"), values, strict=True)
    return "  ".join(f"{name} {'-' if v is None else f'{v:.0f} ms'}" for name, v in named)
