"""The ``loadgen`` command: ``dispatch`` benchmarks agent dispatch, ``connect`` participants
joining rooms, ``offer`` the load generator itself."""

from __future__ import annotations

import sys
from typing import Any

import click

from dispatcher.settings import DEV_API_KEY, DEV_API_SECRET
from loadgen.connect_cmd import connect_command
from loadgen.errors import DispatchCommandError

POSITIVE = click.FloatRange(min=0, min_open=True)


@click.group()
def main() -> None:
    """Load generator and benchmarks for the dispatcher."""


@main.command()
@click.option("--url", default="http://127.0.0.1:7880", show_default=True, help="API node URL.")
@click.option("--api-key", envvar="LIVEKIT_API_KEY", default=DEV_API_KEY, show_default=True)
@click.option("--api-secret", envvar="LIVEKIT_API_SECRET", default=DEV_API_SECRET)
@click.option("--redis-url", help="The deployment's Redis (agent fleet and results).")
@click.option("--dev", is_flag=True, help="Start Redis and dispatcher dev here; ignores --url.")
@click.option(
    "--pin",
    is_flag=True,
    help="With --dev: Redis on CPU 0, everything else (loadgen included) on CPU 1.",
)
@click.option("--rate", type=POSITIVE, default=500.0, show_default=True, help="Dispatches/s.")
@click.option("--duration", type=POSITIVE, default=30.0, show_default=True, help="Seconds.")
@click.option("--agents", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--agent-procs",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Run --agents as virtual agent servers in this many processes (0: one SDK process each).",
)
@click.option("--capacity", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--hold", type=click.FloatRange(min=0), default=0.5, show_default=True)
@click.option("--agent-name", default="loadgen-agent", show_default=True)
@click.option("--seed", type=int, default=None, help="Seed for room names (reproducible).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, not the table.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a latency plot (PNG).")
@click.option("--find-max", is_flag=True, help="Search for the knee instead of one run.")
@click.option("--start-rate", type=POSITIVE, default=250.0, show_default=True)
@click.option("--max-rate", type=POSITIVE, default=64000.0, show_default=True)
@click.option("--step-duration", type=POSITIVE, default=10.0, show_default=True)
@click.option("--progress/--no-progress", default=True, help="Live progress on stderr.")
def dispatch(**params: Any) -> None:
    """Dispatch at a fixed rate to a simulated agent fleet; report dispatch times."""
    from dispatcher import process
    from loadgen.dispatch_cmd import run_command

    try:
        output = process.run(run_command(params))
    except DispatchCommandError as exc:
        sys.exit(f"error: {exc}")
    click.echo(output)


@main.command()
@click.option("--rate", type=POSITIVE, default=10000.0, show_default=True)
@click.option("--duration", type=POSITIVE, default=10.0, show_default=True)
@click.option("--pin", is_flag=True, help="Endpoint on CPU 0, loadgen on CPU 1.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def offer(rate: float, duration: float, pin: bool, as_json: bool) -> None:
    """Offer dispatch requests to a trivial endpoint: the load generator's own ceiling."""
    import orjson
    import uvloop

    from loadgen.offer import format_offer, run_offer

    try:
        report = uvloop.run(run_offer(rate, duration, pin))
    except DispatchCommandError as exc:
        sys.exit(f"error: {exc}")
    click.echo(orjson.dumps(report).decode() if as_json else format_offer(report))


@main.command()
@click.option("--url", default="http://127.0.0.1:7880", show_default=True, help="API node URL.")
@click.option("--idle", type=click.IntRange(min=0), default=10000, show_default=True)
@click.option("--slow", type=click.IntRange(min=0), default=10000, show_default=True)
@click.option("--hold", type=POSITIVE, default=30.0, show_default=True, help="Seconds.")
@click.option("--procs", type=click.IntRange(min=1), default=2, show_default=True)
def abuse(url: str, idle: int, slow: int, hold: float, procs: int) -> None:
    """Hold idle and slow (slowloris) connections at an API node while probing its health
    on fresh connections; prints one JSON object with the probes' outcome."""
    import orjson

    from loadgen.abuse import plan_from_url, run

    plan = plan_from_url(url, idle=idle, slow=slow, hold_s=hold, procs=procs)
    summary = run(plan).summary()
    click.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    if summary["probe_failures"]:
        sys.exit(1)


@main.command("fleet-idle")
@click.option("--servers", type=click.IntRange(min=1), default=10000, show_default=True)
@click.option("--schedulers", type=click.IntRange(min=0), default=8, show_default=True)
@click.option("--duration", type=POSITIVE, default=20.0, show_default=True, help="Seconds.")
@click.option("--procs", type=click.IntRange(min=1), default=2, show_default=True)
def fleet_idle(servers: int, schedulers: int, duration: float, procs: int) -> None:
    """What an idle fleet costs: virtual agent servers heartbeating, scheduler processes,
    no dispatches; prints Redis and scheduler CPU and the slowest Redis calls as JSON."""
    import orjson

    from loadgen.fleet_idle import IdlePlan, run

    plan = IdlePlan(servers, schedulers, duration_s=duration, procs=procs)
    click.echo(orjson.dumps(run(plan), option=orjson.OPT_INDENT_2).decode())


@main.command("abuse-listing")
@click.option("--url", default="http://127.0.0.1:7880", show_default=True, help="API node URL.")
@click.option("--api-key", envvar="LIVEKIT_API_KEY", default=DEV_API_KEY, show_default=True)
@click.option("--api-secret", envvar="LIVEKIT_API_SECRET", default=DEV_API_SECRET)
@click.option("--bytes", "total_bytes", type=click.IntRange(min=1), default=4 * 1024 * 1024)
@click.option("--rounds", type=click.IntRange(min=1), default=10, show_default=True)
def abuse_listing(url: str, api_key: str, api_secret: str, total_bytes: int, rounds: int) -> None:
    """Fill a room up to a listing's limit, list it back to back and probe /healthz
    meanwhile; prints one JSON object."""
    import asyncio

    import orjson

    from loadgen.abuse_listing import run_listing

    report = asyncio.run(
        run_listing(url, api_key, api_secret, total_bytes=total_bytes, rounds=rounds)
    )
    click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


main.add_command(connect_command(dispatch))
