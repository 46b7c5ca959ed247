"""``dispatcher status``: the deployment as Redis shows it, on one screen or as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import click
import msgspec
from redis.exceptions import RedisError
from rich.console import Console
from rich.live import Live

from dispatcher.errors import describe
from dispatcher.observe import render
from dispatcher.observe.rates import Point, between
from dispatcher.observe.snapshot import Snapshot, collect
from dispatcher.settings import RedisSettings
from dispatcher.store.client import Client, connect


@click.command("status")
@click.option(
    "--redis-url",
    envvar="DISPATCHER_REDIS_URL",
    default=RedisSettings().redis_url,
    show_default=True,
    help="Redis URL [env DISPATCHER_REDIS_URL]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON (camelCase).")
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="--watch's, in s.")
def status_command(redis_url: str, as_json: bool, watch: bool, interval: float) -> None:
    """Schedulers and their partitions, lag, pools and servers, pending jobs, failures."""
    try:
        asyncio.run(_status(redis_url, as_json, watch, interval))
    except KeyboardInterrupt:
        pass
    except (OSError, RedisError) as exc:
        sys.exit(f"error: cannot read Redis: {describe(exc)}")  # the URL may hold a password


async def _status(redis_url: str, as_json: bool, watch: bool, interval: float) -> None:
    client = await connect(redis_url)
    try:
        if not watch:
            _print(await collect(client), None, as_json)
        elif as_json:
            await _watch_json(client, interval)
        else:
            await _watch_screen(client, interval)
    finally:
        await client.aclose()


def _print(snapshot: Snapshot, rates: Point | None, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(_json(snapshot, rates), indent=2))
    else:
        Console().print(render.screen(snapshot, rates))


def _json(snapshot: Snapshot, rates: Point | None) -> dict[str, object]:
    built = snapshot.to_builtins()
    if rates is not None:
        built["rates"] = _rates_json(rates)
    return built


def _rates_json(rates: Point) -> dict[str, object]:
    converted: dict[str, object] = msgspec.to_builtins(rates)
    return converted


async def _watch_json(client: Client, interval: float) -> None:
    """One JSON document per line per refresh, for piping into other tools."""
    before: Snapshot | None = None
    while True:
        snapshot = await collect(client)
        rates = _rates(before, snapshot)
        click.echo(json.dumps(_json(snapshot, rates)))
        before = snapshot
        await asyncio.sleep(interval)


async def _watch_screen(client: Client, interval: float) -> None:
    before: Snapshot | None = None
    with Live(auto_refresh=False, screen=False) as live:
        while True:
            started = time.monotonic()
            snapshot = await collect(client)
            live.update(render.screen(snapshot, _rates(before, snapshot)), refresh=True)
            before = snapshot
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


def _rates(before: Snapshot | None, after: Snapshot) -> Point | None:
    if before is None:
        return None
    seconds = (after.at_ms - before.at_ms) / 1000
    return between(before.figures, after.figures, after.at_ms, seconds)
