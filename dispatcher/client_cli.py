"""Client commands, like ``lk``: they read LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import click
from google.protobuf import json_format
from livekit import api

T = TypeVar("T")

url_option = click.option(
    "--url",
    envvar="LIVEKIT_URL",
    default="http://127.0.0.1:7880",
    show_default=True,
    help="Server URL [env LIVEKIT_URL]",
)
key_option = click.option(
    "--api-key", envvar="LIVEKIT_API_KEY", required=True, help="[env LIVEKIT_API_KEY]"
)
secret_option = click.option(
    "--api-secret", envvar="LIVEKIT_API_SECRET", required=True, help="[env LIVEKIT_API_SECRET]"
)


def _call(url: str, key: str, secret: str, call: Callable[[api.LiveKitAPI], Awaitable[T]]) -> T:
    async def run() -> T:
        client = api.LiveKitAPI(url, key, secret)
        try:
            return await call(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except api.TwirpError as exc:
        click.echo(f"error: {exc.code}: {exc.message}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"error: cannot reach {url}: {exc}", err=True)
        sys.exit(1)


def _print(message: Any) -> None:
    click.echo(json_format.MessageToJson(message, indent=2))


@click.group("dispatch")
def dispatch_group() -> None:
    """Create, list and delete agent dispatches."""


@dispatch_group.command("create")
@url_option
@key_option
@secret_option
@click.option("--agent-name", required=True)
@click.option("--room", required=True)
@click.option("--metadata", default="")
def dispatch_create(
    url: str, api_key: str, api_secret: str, agent_name: str, room: str, metadata: str
) -> None:
    """Send an agent to a room."""
    request = api.CreateAgentDispatchRequest(agent_name=agent_name, room=room, metadata=metadata)
    _print(_call(url, api_key, api_secret, lambda c: c.agent_dispatch.create_dispatch(request)))


@dispatch_group.command("list")
@url_option
@key_option
@secret_option
@click.option("--room", required=True)
def dispatch_list(url: str, api_key: str, api_secret: str, room: str) -> None:
    """List a room's dispatches with their jobs."""
    found = _call(
        url, api_key, api_secret, lambda c: c.agent_dispatch.list_dispatch(room_name=room)
    )
    response = api.ListAgentDispatchResponse(agent_dispatches=found)
    _print(response)


@dispatch_group.command("delete")
@url_option
@key_option
@secret_option
@click.option("--id", "dispatch_id", required=True)
@click.option("--room", required=True)
def dispatch_delete(url: str, api_key: str, api_secret: str, dispatch_id: str, room: str) -> None:
    """Delete a dispatch; its running job is terminated."""
    _print(
        _call(
            url, api_key, api_secret, lambda c: c.agent_dispatch.delete_dispatch(dispatch_id, room)
        )
    )


@click.group("token")
def token_group() -> None:
    """Access tokens."""


@token_group.command("create")
@key_option
@secret_option
@click.option("--identity", required=True)
@click.option("--room", required=True)
@click.option("--agent", "agent_name", default=None, help="Dispatch this agent on room creation")
@click.option("--metadata", default="", help="Metadata for the --agent dispatch")
@click.option("--join", is_flag=True, help="Grant roomJoin")
@click.option("--admin", is_flag=True, help="Grant roomAdmin (dispatch API calls)")
@click.option("--valid-for", default="6h", show_default=True, help="e.g. 30m, 6h, 3600s")
def token_create(
    api_key: str,
    api_secret: str,
    identity: str,
    room: str,
    agent_name: str | None,
    metadata: str,
    join: bool,
    admin: bool,
    valid_for: str,
) -> None:
    """Print an access token."""
    grants = api.VideoGrants(room=room, room_join=join, room_admin=admin)
    token = (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_grants(grants)
        .with_ttl(_duration(valid_for))
    )
    if agent_name is not None:
        dispatch = api.RoomAgentDispatch(agent_name=agent_name, metadata=metadata)
        token = token.with_room_config(api.RoomConfiguration(agents=[dispatch]))
    click.echo(token.to_jwt())


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value, unit = (text[:-1], text[-1]) if text[-1] in units else (text, "s")
        return timedelta(seconds=float(value) * units[unit])
    except (ValueError, IndexError) as exc:
        raise click.BadParameter(f"{text!r} is not a duration like 30m or 6h") from exc
