"""Connections/s of the API node against its own HTTP stack with a Join that does nothing.

    python -m loadgen.connect_bench --repeats 3 --step-duration 10 --json out.json

Each repeat runs ``loadgen connect --find-max --pin`` against ``dispatcher dev`` (the real
node) and against ``loadgen.trivial_stack`` (same aiohttp app shape, same layout: Redis
on CPU 0, the server and loadgen on CPU 1), the two in alternating order so drift on a
noisy host does not always favour one. It prints each knee (median and min-max), the ratio
of the median knees (real / trivial), join p50/p99 at each knee and the server process's
CPU per join there.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import click
import orjson
import uvloop

from loadgen.cli import main as loadgen_cli
from loadgen.connect_run import run_connect
from loadgen.report import align

#: The system under test, as ``loadgen connect`` options, and its server process's role.
TARGETS: dict[str, tuple[list[str], str]] = {
    "real": (["--dev"], "dispatcher"),
    "trivial": (["--trivial-stack"], "trivial"),
}


@dataclass(frozen=True, slots=True)
class Knee:
    """One knee search's answer, with the figures of its knee step."""

    target: str
    repeat: int
    rate: float | None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    server_us_per_join: float | None = None
    loadgen_us_per_request: float | None = None


def connect_params(args: Sequence[str]) -> dict[str, Any]:
    """``loadgen connect``'s parameters for ``args``, defaults included."""
    command = loadgen_cli.commands["connect"]
    with command.make_context("connect", list(args)) as context:
        return dict(context.params)


def knee_of(target: str, repeat: int, result: dict[str, Any]) -> Knee:
    rate = result["knee_rate"]
    steps = [s["report"] for s in result["steps"] if s["passed"] and s["rate"] == rate]
    if rate is None or not steps:
        return Knee(target, repeat, None)
    report, role = steps[-1], TARGETS[target][1]
    join = report["join_ms"]
    return Knee(
        target,
        repeat,
        rate,
        join["p50"],
        join["p99"],
        join["max"],
        report["cpu"].get(f"{role}_process_us_per_join"),
        report["cpu"]["loadgen_us_per_request"],
    )


async def run_bench(repeats: int, common: Sequence[str]) -> tuple[list[Knee], list[Any]]:
    knees, results = [], []
    for repeat in range(repeats):
        order = list(TARGETS) if repeat % 2 == 0 else list(reversed(TARGETS))
        for target in order:
            args = [*TARGETS[target][0], "--pin", "--find-max", *common]
            result = await run_connect(connect_params(args))
            results.append({"target": target, "repeat": repeat, "result": result})
            knees.append(knee_of(target, repeat, result))
    return knees, results


def _median_range(values: Sequence[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    median = statistics.median(present)
    return f"{median:g} ({min(present):g}-{max(present):g})"


def summary(knees: Sequence[Knee]) -> dict[str, Any]:
    """Per target: every knee and their median; the ratio of the median knees."""
    medians: dict[str, float | None] = {}
    for target in TARGETS:
        rates = [k.rate for k in knees if k.target == target and k.rate is not None]
        medians[target] = statistics.median(rates) if rates else None
    real, trivial = medians["real"], medians["trivial"]
    return {
        "knees": [asdict(k) for k in knees],
        "median_knee": medians,
        "ratio_real_to_trivial": round(real / trivial, 3) if real and trivial else None,
    }


def format_summary(knees: Sequence[Knee], ratio: float | None) -> str:
    rows = [["target", "knee/s", "p50 ms", "p99 ms", "max ms", "server us/join", "loadgen us"]]
    for target in TARGETS:
        ks = [k for k in knees if k.target == target]
        rows.append(
            [
                target,
                _median_range([k.rate for k in ks]),
                _median_range([k.p50_ms for k in ks]),
                _median_range([k.p99_ms for k in ks]),
                _median_range([k.max_ms for k in ks]),
                _median_range([k.server_us_per_join for k in ks]),
                _median_range([k.loadgen_us_per_request for k in ks]),
            ]
        )
    per_run = ", ".join(f"{k.target}#{k.repeat} {k.rate}" for k in knees)
    return "\n".join(
        [
            "median (min-max) over repeats; latencies and CPU at each repeat's knee",
            *align(rows),
            f"knee ratio real / trivial (medians): {ratio}",
            f"knees by run: {per_run}",
        ]
    )


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog="Other options are passed to every `loadgen connect` run.",
)
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("--step-duration", type=float, default=10.0, show_default=True)
@click.option("--json", "json_path", default=None, help="Write every search's result here.")
@click.pass_context
def main(ctx: click.Context, repeats: int, step_duration: float, json_path: str | None) -> None:
    """Connections/s of the API node against its own HTTP stack with a Join that does nothing."""
    common = ["--step-duration", str(step_duration), "--no-progress", *ctx.args]
    knees, results = uvloop.run(run_bench(repeats, common))
    outcome = summary(knees)
    if json_path:
        with open(json_path, "wb") as out:
            out.write(orjson.dumps({**outcome, "runs": results}, option=orjson.OPT_INDENT_2))
    click.echo(format_summary(knees, outcome["ratio_real_to_trivial"]))


if __name__ == "__main__":
    main()
