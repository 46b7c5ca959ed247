"""Client commands, like ``lk``: they read LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET."""

from __future__ import annotations

import asyncio
import json
import sys
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import aiohttp
import click
from google.protobuf import json_format
from jwt.warnings import InsecureKeyLengthWarning
from livekit import api

from dispatcher import targets

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
MIN_SECRET_BYTES = 32  # HS256 keys shorter than the hash are weak (RFC 7518 3.2)


def _checked_secret(ctx: click.Context, param: click.Parameter, secret: str) -> str:
    """A short secret is said once, in one line; PyJWT's multi-line warning is not shown."""
    warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)
    if len(secret.encode()) < MIN_SECRET_BYTES:
        click.echo(
            f"warning: the API secret is {len(secret.encode())} bytes, shorter than "
            f"{MIN_SECRET_BYTES}: a server may refuse tokens signed with it",
            err=True,
        )
    return secret


secret_option = click.option(
    "--api-secret",
    envvar="LIVEKIT_API_SECRET",
    required=True,
    callback=_checked_secret,
    help="[env LIVEKIT_API_SECRET]",
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
    """A reply as LiveKit's JSON (camelCase), every field shown: a pending job says so."""
    click.echo(
        json_format.MessageToJson(message, indent=2, always_print_fields_with_no_presence=True)
    )


def print_json(body: Any) -> None:
    """Our own JSON replies, printed in the same camelCase as LiveKit's."""
    click.echo(json.dumps(camel_keys(body), indent=2))


_DATA_MAPS = ("attributes", "labels")


def camel_keys(value: Any) -> Any:
    """Field names in camelCase; the keys of an ``attributes`` or ``labels`` map are data,
    kept as sent."""
    if isinstance(value, dict):
        return {_camel(str(k)): v if k in _DATA_MAPS else camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


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
@click.option("--target-server", default="", help="Run only on this agent server (id)")
@click.option("--target-version", default="", help="Run only on servers of this version")
@click.option(
    "--label", "labels", multiple=True, help="Run only on servers with label k=v (repeatable)"
)
def dispatch_create(
    url: str,
    api_key: str,
    api_secret: str,
    agent_name: str,
    room: str,
    metadata: str,
    target_server: str,
    target_version: str,
    labels: tuple[str, ...],
) -> None:
    """Send an agent to a room (with a target: only to matching agent servers)."""
    request = api.CreateAgentDispatchRequest(agent_name=agent_name, room=room, metadata=metadata)
    if not (target_server or target_version or labels):
        _print(_call(url, api_key, api_secret, lambda c: c.agent_dispatch.create_dispatch(request)))
        return
    body = json_format.MessageToDict(request)
    target = {"serverId": target_server, "version": target_version, "labels": label_map(labels)}
    body["target"] = target
    grants = api.VideoGrants(room_admin=True, room=room)
    token = api.AccessToken(api_key, api_secret).with_grants(grants).to_jwt()
    reply = post_twirp(url, "livekit.AgentDispatchService/CreateDispatch", token, body)
    _print(json_format.ParseDict(reply, api.AgentDispatch(), ignore_unknown_fields=True))


def label_map(labels: tuple[str, ...]) -> dict[str, str]:
    """``--label k=v`` options as a map."""
    try:
        return dict(targets.parse_selector(label) for label in labels)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--label") from None


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


@click.group("room")
def room_group() -> None:
    """Create, list and delete rooms."""


@room_group.command("create")
@url_option
@key_option
@secret_option
@click.argument("name")
@click.option("--agent", "agents", multiple=True, help="Dispatch this agent (repeatable)")
@click.option("--agent-metadata", default="", help="Metadata for every --agent dispatch")
@click.option("--empty-timeout", type=int, default=0, help="Seconds; 0 = server default")
@click.option("--departure-timeout", type=int, default=0, help="Seconds; 0 = server default")
@click.option("--max-participants", type=int, default=0)
@click.option("--metadata", default="")
def room_create(
    url: str,
    api_key: str,
    api_secret: str,
    name: str,
    agents: tuple[str, ...],
    agent_metadata: str,
    empty_timeout: int,
    departure_timeout: int,
    max_participants: int,
    metadata: str,
) -> None:
    """Create a room (an existing room is returned unchanged). Without --agent it gets the
    automatic dispatch."""
    request = api.CreateRoomRequest(
        name=name,
        empty_timeout=empty_timeout,
        departure_timeout=departure_timeout,
        max_participants=max_participants,
        metadata=metadata,
        agents=[api.RoomAgentDispatch(agent_name=a, metadata=agent_metadata) for a in agents],
    )
    _print(_call(url, api_key, api_secret, lambda c: c.room.create_room(request)))


@room_group.command("list")
@url_option
@key_option
@secret_option
@click.argument("names", nargs=-1)
def room_list(url: str, api_key: str, api_secret: str, names: tuple[str, ...]) -> None:
    """List rooms (all, or the NAMES given)."""
    request = api.ListRoomsRequest(names=list(names))
    _print(_call(url, api_key, api_secret, lambda c: c.room.list_rooms(request)))


@room_group.command("delete")
@url_option
@key_option
@secret_option
@click.argument("name")
def room_delete(url: str, api_key: str, api_secret: str, name: str) -> None:
    """Delete a room: its jobs end and its dispatches are marked deleted."""
    request = api.DeleteRoomRequest(room=name)
    _call(url, api_key, api_secret, lambda c: c.room.delete_room(request))
    print_json({"room": name, "deleted": True})


@click.command("join")
@url_option
@click.option("--token", required=True, envvar="LIVEKIT_TOKEN", help="[env LIVEKIT_TOKEN]")
@click.option("--leave", is_flag=True, help="Leave the room instead of joining it")
def join_command(url: str, token: str, leave: bool) -> None:
    """Connect as the token's participant and print what the join did (room created or
    not, dispatches created)."""
    method = "Leave" if leave else "Join"
    print_json(post_twirp(url, f"dispatcher.Participant/{method}", token))


def post_twirp(url: str, route: str, token: str, body: Any = None) -> dict[str, Any]:
    """A JSON Twirp call (``service/method``); a Twirp error is printed and exits."""
    status, reply = asyncio.run(_post(url, route, token, body))
    if status != 200:
        click.echo(f"error: {reply.get('code')}: {reply.get('msg')}", err=True)
        sys.exit(1)
    return reply


async def _post(url: str, route: str, token: str, body: Any) -> tuple[int, dict[str, Any]]:
    base = url.replace("wss://", "https://", 1).replace("ws://", "http://", 1).rstrip("/")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    data = json.dumps(body) if body is not None else None
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{base}/twirp/{route}", headers=headers, data=data) as r,
        ):
            return r.status, await r.json(content_type=None)
    except (aiohttp.ClientError, OSError) as exc:
        click.echo(f"error: cannot reach {url}: {exc}", err=True)
        sys.exit(1)
