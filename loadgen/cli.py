"""The ``loadgen`` command: ``dispatch`` benchmarks agent dispatch; more commands will follow."""

from __future__ import annotations

import sys

import click
import orjson

from dispatcher.settings import DEV_API_KEY, DEV_API_SECRET
from loadgen.options import DispatchOptions


@click.group()
def main() -> None:
    """Load generator and benchmarks for the dispatcher."""


@main.command()
@click.option("--url", default="http://127.0.0.1:7880", show_default=True, help="API node URL.")
@click.option("--api-key", envvar="LIVEKIT_API_KEY", default=DEV_API_KEY, show_default=True)
@click.option("--api-secret", envvar="LIVEKIT_API_SECRET", default=DEV_API_SECRET)
@click.option(
    "--redis-url", required=True, help="The deployment's Redis (agent fleet and results)."
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=500.0,
    show_default=True,
    help="Dispatches per second (open loop).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds of sending.",
)
@click.option(
    "--agents",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Simulated agent-server processes.",
)
@click.option(
    "--capacity",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Job slots per agent server.",
)
@click.option(
    "--hold",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Seconds each job holds its slot.",
)
@click.option("--agent-name", default="loadgen-agent", show_default=True)
@click.option("--seed", type=int, default=None, help="Seed for room names (reproducible).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, not the table.")
def dispatch(
    url: str,
    api_key: str,
    api_secret: str,
    redis_url: str,
    rate: float,
    duration: float,
    agents: int,
    capacity: int,
    hold: float,
    agent_name: str,
    seed: int | None,
    as_json: bool,
) -> None:
    """Dispatch at a fixed rate to a simulated agent fleet; report dispatch times."""
    import uvloop

    from loadgen.fleet import FleetError
    from loadgen.report import format_table
    from loadgen.run import RunError, run_dispatch

    options = DispatchOptions(
        url=url,
        api_key=api_key,
        api_secret=api_secret,
        redis_url=redis_url,
        rate=rate,
        duration=duration,
        agents=agents,
        capacity=capacity,
        hold=hold,
        agent_name=agent_name,
        seed=seed,
    )
    try:
        report = uvloop.run(run_dispatch(options))
    except (FleetError, RunError) as exc:
        sys.exit(f"error: {exc}")
    click.echo(orjson.dumps(report).decode() if as_json else format_table(report))


@main.command()
def connect() -> None:
    """Agent-server connection load (not implemented yet)."""
    click.echo("not implemented until the rooms issue")
    sys.exit(2)
