"""``sip`` client commands, like ``lk sip dispatch``: dispatch rules through the livekit-api
client, and a simulated inbound call for trying the rules out."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

import aiohttp
import click
from livekit import api
from livekit.protocol import sip as sip_pb

from dispatcher import ids
from dispatcher.api.auth import create_token
from dispatcher.client_cli import _call, _print, key_option, print_json, secret_option, url_option

INBOUND_PATH = "/twirp/dispatcher.SIPInbound/Call"


@click.group("sip")
def sip_group() -> None:
    """SIP dispatch rules and simulated inbound calls."""


@sip_group.group("dispatch-rule")
def rule_group() -> None:
    """Create, list and delete SIP dispatch rules."""


@rule_group.command("create")
@url_option
@key_option
@secret_option
@click.option("--direct", metavar="ROOM", help="Send every call into ROOM.")
@click.option(
    "--individual", metavar="PREFIX", help="A new room per call: PREFIX_<caller>_<random>."
)
@click.option("--callee", metavar="PREFIX", help="A room per called number: PREFIX_<called>.")
@click.option("--pin", default="", help="Callers must enter this PIN.")
@click.option("--no-randomness", is_flag=True, help="--individual rooms without the random suffix.")
@click.option("--randomize", is_flag=True, help="--callee rooms with a random suffix.")
@click.option("--trunks", multiple=True, help="Trunk ids, repeated or comma-separated; none = any.")
@click.option("--numbers", multiple=True, help="Called numbers the rule takes; none = any.")
@click.option("--inbound-numbers", multiple=True, help="Caller numbers the rule takes; none = any.")
@click.option("--name", default="")
@click.option("--metadata", default="", help="Metadata of the caller's participant.")
@click.option("--attribute", "attributes", multiple=True, metavar="KEY=VALUE")
@click.option("--hide-phone-number", is_flag=True, help="Mask the caller's number in the room.")
@click.option(
    "--agent", "agents", multiple=True, metavar="NAME", help="Dispatch this agent; repeatable."
)
@click.option("--agent-metadata", default="", help="Job metadata for every --agent.")
def rule_create(
    url: str, api_key: str, api_secret: str, agents: tuple[str, ...], **options: Any
) -> None:
    """Create a dispatch rule: exactly one of --direct, --individual, --callee."""
    info = sip_pb.SIPDispatchRuleInfo(
        rule=_rule_kind(options),
        trunk_ids=_split(options["trunks"]),
        numbers=_split(options["numbers"]),
        inbound_numbers=_split(options["inbound_numbers"]),
        name=options["name"],
        metadata=options["metadata"],
        attributes=_pairs(options["attributes"]),
        hide_phone_number=options["hide_phone_number"],
    )
    if agents:
        dispatches = [
            api.RoomAgentDispatch(agent_name=name, metadata=options["agent_metadata"])
            for name in agents
        ]
        info.room_config.agents.extend(dispatches)
    request = api.CreateSIPDispatchRuleRequest(dispatch_rule=info)
    _print(_call(url, api_key, api_secret, lambda c: c.sip.create_dispatch_rule(request)))


@rule_group.command("list")
@url_option
@key_option
@secret_option
@click.option("--id", "rule_ids", multiple=True, help="Only these rules (repeatable).")
@click.option("--trunk", "trunk_ids", multiple=True, help="Rules that apply to these trunks.")
def rule_list(
    url: str, api_key: str, api_secret: str, rule_ids: tuple[str, ...], trunk_ids: tuple[str, ...]
) -> None:
    """List dispatch rules."""
    request = api.ListSIPDispatchRuleRequest(
        dispatch_rule_ids=_split(rule_ids), trunk_ids=_split(trunk_ids)
    )
    _print(_call(url, api_key, api_secret, lambda c: c.sip.list_dispatch_rule(request)))


@rule_group.command("delete")
@url_option
@key_option
@secret_option
@click.option("--id", "rule_id", required=True)
def rule_delete(url: str, api_key: str, api_secret: str, rule_id: str) -> None:
    """Delete a dispatch rule."""
    request = api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=rule_id)
    _print(_call(url, api_key, api_secret, lambda c: c.sip.delete_dispatch_rule(request)))


@sip_group.command("inbound")
@url_option
@key_option
@secret_option
@click.option("--from", "from_number", required=True, help="The caller's number.")
@click.option("--to", "to_number", required=True, help="The called number.")
@click.option("--trunk", "trunk_id", default="", help="The inbound trunk id.")
@click.option("--pin", default="", help="The PIN the caller entered.")
@click.option("--call-id", default=None, help="Default: a fresh SCL_ id.")
def inbound(
    url: str,
    api_key: str,
    api_secret: str,
    from_number: str,
    to_number: str,
    trunk_id: str,
    pin: str,
    call_id: str | None,
) -> None:
    """Simulate the SIP edge reporting an inbound call: the matching rule's room is created
    with its agents and the caller joins it; prints what the call did."""
    body = {
        "call_id": call_id or ids.new_id("SCL_"),
        "trunk_id": trunk_id,
        "from_number": from_number,
        "to_number": to_number,
        "pin": pin,
    }
    token = create_token(api_key, api_secret, {"sip": {"call": True}})
    endpoint = _http_url(url) + INBOUND_PATH
    try:
        status, reply = asyncio.run(_post_json(endpoint, body, token))
    except (OSError, aiohttp.ClientError) as exc:
        click.echo(f"error: cannot reach {url}: {exc}", err=True)
        sys.exit(1)
    if isinstance(reply, dict):
        print_json(reply)
    else:
        click.echo(reply)
    if status != 200:
        sys.exit(1)


async def _post_json(endpoint: str, body: dict[str, str], token: str) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(endpoint, json=body, headers=headers) as response,
    ):
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except json.JSONDecodeError:
            return response.status, text


def _rule_kind(options: dict[str, Any]) -> sip_pb.SIPDispatchRule:
    direct, individual, callee = options["direct"], options["individual"], options["callee"]
    if sum(choice is not None for choice in (direct, individual, callee)) != 1:
        raise click.UsageError("give exactly one of --direct, --individual, --callee")
    pin = options["pin"]
    if direct is not None:
        return sip_pb.SIPDispatchRule(
            dispatch_rule_direct=sip_pb.SIPDispatchRuleDirect(room_name=direct, pin=pin)
        )
    if individual is not None:
        rule = sip_pb.SIPDispatchRuleIndividual(
            room_prefix=individual, pin=pin, no_randomness=options["no_randomness"]
        )
        return sip_pb.SIPDispatchRule(dispatch_rule_individual=rule)
    callee_rule = sip_pb.SIPDispatchRuleCallee(
        room_prefix=callee, pin=pin, randomize=options["randomize"]
    )
    return sip_pb.SIPDispatchRule(dispatch_rule_callee=callee_rule)


def _split(values: Sequence[str]) -> list[str]:
    """Repeated and comma-separated values, blanks dropped."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _pairs(values: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--attribute")
        pairs[key] = item
    return pairs


def _http_url(url: str) -> str:
    """The HTTP base of a LiveKit URL: ws(s) becomes http(s), a trailing slash goes."""
    if url.startswith("ws"):
        url = "http" + url[2:]
    return url.rstrip("/")
