"""``dispatcher servers``: list the agent servers of every pool and drain one, through
``dispatcher.AgentServers`` with an operator's token (roomAdmin and roomList, no room)
minted from the API key and secret. Output is JSON in camelCase, like the other client
commands."""

from __future__ import annotations

import click
from livekit import api

from dispatcher.client_cli import (
    key_option,
    label_map,
    post_twirp,
    print_json,
    secret_option,
    url_option,
)

SERVICE = "dispatcher.AgentServers"


def operator_token(api_key: str, api_secret: str) -> str:
    grants = api.VideoGrants(room_admin=True, room_list=True)
    return api.AccessToken(api_key, api_secret).with_grants(grants).to_jwt()


@click.group("servers")
def servers_group() -> None:
    """List agent servers and drain them."""


@servers_group.command("list")
@url_option
@key_option
@secret_option
@click.option("--agent-name", default=None, help="Only this agent's servers")
@click.option("--status", type=click.Choice(["available", "full", "draining"]), default=None)
@click.option("--label", "labels", multiple=True, help="Only servers with label k=v (repeatable)")
def servers_list(
    url: str,
    api_key: str,
    api_secret: str,
    agent_name: str | None,
    status: str | None,
    labels: tuple[str, ...],
) -> None:
    """The live agent servers: capacity, slots used and reserved, load, status, version,
    labels, last heartbeat."""
    body: dict[str, object] = {"labels": label_map(labels)}
    if agent_name is not None:
        body["agentName"] = agent_name
    if status is not None:
        body["status"] = status
    token = operator_token(api_key, api_secret)
    print_json(post_twirp(url, f"{SERVICE}/ListServers", token, body))


@servers_group.command("drain")
@url_option
@key_option
@secret_option
@click.argument("server_id")
def servers_drain(url: str, api_key: str, api_secret: str, server_id: str) -> None:
    """Drain SERVER_ID: it takes no new job and finishes its running ones (it stays up,
    drained, until stopped)."""
    token = operator_token(api_key, api_secret)
    print_json(post_twirp(url, f"{SERVICE}/DrainServer", token, {"id": server_id}))
