"""The ``dispatcher`` command: run a role (api, scheduler, agent, dev) or call the API."""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Any

import click

from dispatcher import process
from dispatcher import settings as config
from dispatcher.errors import ConfigError

_CLIENT_COMMANDS = {  # name -> (module, attribute)
    "dispatch": ("dispatcher.client_cli", "dispatch_group"),
    "token": ("dispatcher.client_cli", "token_group"),
    "room": ("dispatcher.client_cli", "room_group"),
    "join": ("dispatcher.client_cli", "join_command"),
    "sip": ("dispatcher.sip_cli", "sip_group"),
    "status": ("dispatcher.observe.cli", "status_command"),
    "servers": ("dispatcher.servers_cli", "servers_group"),
}


class _Commands(click.Group):
    """The client commands (``dispatch``, ``token``, ...) are imported when called: a role's
    process (``api``, ``scheduler``, ``agent``) starts without the HTTP client and JWT
    libraries they need, about a quarter of a second of imports each start."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_CLIENT_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in _CLIENT_COMMANDS:
            module, attribute = _CLIENT_COMMANDS[name]
            command = getattr(importlib.import_module(module), attribute)
            return command if isinstance(command, click.Command) else None
        return super().get_command(ctx, name)


@click.group(cls=_Commands)
@click.version_option(package_name="agent-dispatcher", prog_name="dispatcher")
@click.option("--log-level", default="info", show_default=True, envvar="DISPATCHER_LOG_LEVEL")
def main(log_level: str) -> None:
    """Agent dispatch for LiveKit-compatible agent servers."""
    process.configure_logging(log_level)


redis_option = click.option(
    "--redis-url", default=None, help="Redis URL [env DISPATCHER_REDIS_URL]"
)
partitions_option = click.option(
    "--partitions", type=int, default=None, help="Partition count P [env DISPATCHER_PARTITIONS]"
)


@main.command()
@redis_option
@partitions_option
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
def api(redis_url: str | None, partitions: int | None, host: str | None, port: int | None) -> None:
    """Run an API node (Twirp AgentDispatchService)."""
    from dispatcher.api.app import run_api

    overrides = {"redis_url": redis_url, "partitions": partitions, "host": host, "port": port}
    process.run_role(functools.partial(run_api, _load(config.ApiSettings, overrides)))


@main.command()
@redis_option
@partitions_option
@click.option("--node-id", default=None, help="Stable node name [env DISPATCHER_NODE_ID, POD_NAME]")
def scheduler(redis_url: str | None, partitions: int | None, node_id: str | None) -> None:
    """Run a scheduler node."""
    from dispatcher.scheduler.role import run_scheduler

    overrides = {"redis_url": redis_url, "partitions": partitions, "node_id": node_id}
    process.run_role(functools.partial(run_scheduler, _load(config.SchedulerSettings, overrides)))


@main.command()
@click.argument("target")
@redis_option
def agent(target: str, redis_url: str | None) -> None:
    """Run the agent server TARGET, given as module:attribute."""
    from workers.runner import serve
    from workers.server import AgentServer

    module_name, _, attribute = target.partition(":")
    server = getattr(importlib.import_module(module_name), attribute or "server")
    if not isinstance(server, AgentServer):
        raise click.BadParameter(f"{target} is not an AgentServer", param_hint="TARGET")
    if redis_url:
        server.redis_url = redis_url
    process.run_role(functools.partial(serve, server))


@main.command()
@redis_option
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to serve on (0.0.0.0: all)."
)
@click.option("--port", type=int, default=7880, show_default=True)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Prometheus /metrics of every role (0: none)  [default: any free port, in the banner]",
)
@partitions_option
def dev(
    redis_url: str | None, host: str, port: int, metrics_port: int | None, partitions: int | None
) -> None:
    """Redis (spawned unless --redis-url), an API node, a scheduler and a demo agent."""
    from dispatcher.dev import run_dev

    count = partitions or _load(config.RedisSettings, {}).partitions
    process.run_main(run_dev(redis_url, host, port, count, metrics_port))


def _load(role: type[config.S], overrides: dict[str, Any]) -> config.S:
    try:
        return config.load(role, overrides)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
