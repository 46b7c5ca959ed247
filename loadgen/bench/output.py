"""What a bench run prints and writes: the text report, the JSON file and the sweep plot."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson

from loadgen.bench.ceiling import ceiling_lines
from loadgen.bench.render import acceptance_lines, render_table, table_dict
from loadgen.bench.suite import BenchRun
from loadgen.bench.systems import OURS
from loadgen.bench.table import Table, redis_us_at_knee, sweep_points
from loadgen.plot import plot_sweep


def report_text(run: BenchRun, table: Table) -> str:
    """The table, the acceptance lines, the Redis ceiling, and what did not run."""
    config = run.config
    pinning = (
        f"Redis on CPU {config.redis_cpus}, the rest on CPU {config.cpus}"
        if config.cpus
        else "not pinned"
    )
    head = (
        f"peers table: {config.repeats} repeat(s), knee steps {config.step_duration_s:g} s "
        f"from {config.start_rate:g}/s, fixed steps {config.fixed_duration_s:g} s, {pinning}"
    )
    lines = [head, "", render_table(table), "", *acceptance_lines(table)]
    if run.ceiling is not None:
        lines += ["", *ceiling_lines(run.ceiling, _our_redis_us(run, table))]
    failed = [s for s in run.steps if s.failure is not None]
    if run.failures or failed:
        lines += ["", "did not run:"]
        lines += [f"  {_where(f['system'], f['repeat'])}: {f['error']}" for f in run.failures]
        lines += [
            f"  {s.system} repeat {s.repeat} {s.phase} step at {s.rate:g}/s: {s.failure}"
            for s in failed
        ]
    lines += ["", host_line(run)]
    lines.append(f"\nran {run.elapsed_s / 60:.1f} min")
    return "\n".join(lines)


def host_line(run: BenchRun) -> str:
    """How much the hypervisor disturbed the run, and what was run again for it."""
    kept = [s.steal_share for s in run.steps if s.steal_share is not None]
    worst = max(kept, default=0.0)
    over = sum(1 for share in kept if share > run.config.steal_limit)
    return (
        f"host: {len(run.disturbed)} step run(s) set aside and run again, the hypervisor "
        f"having taken over {run.config.steal_limit:.0%} of a CPU; kept steps: worst "
        f"{worst:.1%}, {over} of {len(kept)} over the limit after {run.config.max_tries} tries"
    )


def _our_redis_us(run: BenchRun, table: Table) -> list[tuple[str, float]]:
    """Our Redis CPU per dispatch at the low fixed rate and at our own knee (medians)."""
    ours = next((row for row in table.rows if row.system == OURS), None)
    at_knee = redis_us_at_knee(run.knees, run.steps, OURS)
    figures = [
        (f"at {table.low_rate:g}/s", ours.redis_cpu_us_low if ours else None),
        ("at its knee", at_knee),
    ]
    return [(where, value.median) for where, value in figures if value is not None]


def _where(system: str, repeat: int | None) -> str:
    return system if repeat is None else f"{system} repeat {repeat}"


def report_json(run: BenchRun, table: Table) -> dict[str, Any]:
    return {
        **dataclasses.asdict(run),
        "table": table_dict(table),
        "table_text": render_table(table),
    }


def write_json(path: str | Path, run: BenchRun, table: Table) -> None:
    Path(path).write_bytes(orjson.dumps(report_json(run, table), option=orjson.OPT_INDENT_2))


def write_plot(path: str | Path, run: BenchRun) -> None:
    title = "dispatch time against offered rate (knee searches, median over repeats)"
    points = sweep_points(run.steps)
    ordered = {s.label: points[s.label] for s in run.config.systems if s.label in points}
    plot_sweep(ordered, path, title, run.config.criteria)
