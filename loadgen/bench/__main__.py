"""``python -m loadgen.bench``: the peers table (see ``loadgen.bench``)."""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path

import click

from loadgen.bench.output import report_text, write_json, write_plot
from loadgen.bench.steal import MAX_TRIES, STEAL_LIMIT
from loadgen.bench.suite import BenchConfig, BenchRun, cpu_set, run_bench
from loadgen.bench.systems import parse_systems
from loadgen.bench.table import Table, build_table
from loadgen.plot import PlotUnavailable

POSITIVE = click.FloatRange(min=0, min_open=True)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _table(run: BenchRun) -> Table:
    config = run.config
    return build_table(
        config.systems, run.knees, run.steps, low_rate=config.low_rate, high_rate=config.high_rate
    )


def _save(json_path: str | None, run: BenchRun) -> None:
    """Write the JSON file; also after every step, so an interrupted run keeps its figures."""
    if json_path:
        write_json(json_path, run, _table(run))


@click.command(context_settings={"show_default": True})
@click.option(
    "--systems",
    default="all",
    help="Comma-separated: dispatcher, taskiq-defaults, celery-at-least-once, ...; "
    "a peer's name for both its variants; all.",
)
@click.option("--repeats", type=click.IntRange(min=1), default=3)
@click.option("--step-duration", type=POSITIVE, default=5.0, help="Seconds per knee-search step.")
@click.option("--fixed-duration", type=POSITIVE, default=10.0, help="Seconds per fixed-rate step.")
@click.option("--start-rate", type=POSITIVE, default=125.0, help="Knee search's first rate.")
@click.option("--max-rate", type=POSITIVE, default=16000.0, help="Knee search's highest rate.")
@click.option("--redis-cpu", default="0", help="CPU(s) of redis-server (taskset list).")
@click.option("--cpu", default="1", help="CPU(s) of every other process, this one included.")
@click.option("--no-pin", is_flag=True, help="Leave CPU placement to the OS.")
@click.option("--ceiling/--no-ceiling", default=True, help="Run redis-benchmark XADD first.")
@click.option(
    "--steal-limit",
    type=click.FloatRange(min=0.0, max=1.0),
    default=STEAL_LIMIT,
    help="Run a step again when the hypervisor took more than this share of a CPU during it.",
)
@click.option(
    "--tries", type=click.IntRange(min=1), default=MAX_TRIES, help="Runs of a step at most."
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every figure.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write the sweep PNG.")
def main(
    systems: str,
    repeats: int,
    step_duration: float,
    fixed_duration: float,
    start_rate: float,
    max_rate: float,
    redis_cpu: str,
    cpu: str,
    no_pin: bool,
    ceiling: bool,
    steal_limit: float,
    tries: int,
    json_path: str | None,
    plot_path: str | None,
) -> None:
    """Our dispatcher against Taskiq, Celery and arq on one pinned Redis: one table."""
    from dispatcher import process

    try:
        selected = parse_systems(systems)
        pinned = None if no_pin else cpu_set(cpu)
        cpu_set(redis_cpu)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if max_rate < start_rate:
        raise click.BadParameter("--max-rate must be >= --start-rate")
    for path in (json_path, plot_path):
        if path and not Path(path).resolve().parent.is_dir():
            raise click.BadParameter(f"no directory for {path}")
    _pin_this_process(pinned, cpu)
    config = BenchConfig(
        systems=selected,
        repeats=repeats,
        step_duration_s=step_duration,
        fixed_duration_s=fixed_duration,
        start_rate=start_rate,
        max_rate=max_rate,
        cpus=None if no_pin else cpu,
        redis_cpus=None if no_pin else redis_cpu,
        ceiling=ceiling,
        steal_limit=steal_limit,
        max_tries=tries,
    )
    # SIGTERM as Ctrl-C: the run is cancelled and stops every process it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # Heap frozen, as loadgen does: collector pauses would delay our steps' sends.
    run = process.run(run_bench(config, _log, functools.partial(_save, json_path)))
    _report(run, json_path, plot_path)


def _pin_this_process(cpus: set[int] | None, spec: str) -> None:
    if cpus is not None:
        try:
            os.sched_setaffinity(0, cpus)  # every child inherits it unless pinned otherwise
        except OSError as exc:
            raise click.BadParameter(f"cannot run on CPU {spec}: {exc}") from exc


def _report(run: BenchRun, json_path: str | None, plot_path: str | None) -> None:
    click.echo(report_text(run, _table(run)))
    _save(json_path, run)
    if plot_path:
        try:
            write_plot(plot_path, run)
        except PlotUnavailable as exc:
            sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
