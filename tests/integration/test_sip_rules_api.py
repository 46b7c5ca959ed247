"""SIP dispatch rules over real HTTP with the real livekit-api client, stored in a real Redis;
inbound calls resolved against the stored rules; the ``sip`` commands end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass

import aiohttp
import pytest
from click.testing import CliRunner, Result
from livekit import api
from livekit.protocol import sip as sip_pb

from dispatcher import ids
from dispatcher.api.access import Authorizer
from dispatcher.api.auth import TokenVerifier, create_token
from dispatcher.api.http import HttpApp
from dispatcher.api.room_service import RoomStore
from dispatcher.api.sip_inbound import SipInboundService
from dispatcher.api.sip_service import SipService, resolve_inbound
from dispatcher.api.twirp import TwirpRouter
from dispatcher.errors import InvalidArgument
from dispatcher.sip.rules import InboundCall, NoRuleMatched
from dispatcher.sip_cli import sip_group
from dispatcher.store.client import Client, connect
from dispatcher.store.keys import SIP_RULES
from tests.redis_servers import RedisTarget
from tests.served import served

API_KEY, API_SECRET = "devkey", "secretsecretsecretsecretsecret12"
TRUNK, OTHER_TRUNK = "ST_trunk000001", "ST_trunk000002"
CALLER, CALLED = "+15550001111", "+15550002222"


@dataclass
class Sip:
    url: str
    client: Client
    lk: api.LiveKitAPI


def _app(client: Client) -> HttpApp:
    app = HttpApp()
    authorizer = Authorizer(TokenVerifier({API_KEY: API_SECRET}))
    TwirpRouter().install(app)
    SipService(client, authorizer).twirp().install(app)
    rooms = RoomStore(client, partitions=64, retention_s=3600)
    SipInboundService(rooms, client, authorizer, ensure_agents=False).twirp().install(app)
    return app


@pytest.fixture
async def sip(redis_single_target: RedisTarget) -> AsyncIterator[Sip]:
    client = await connect(redis_single_target.url)
    try:
        async with served(_app(client)) as server:
            url = server.url
            lk = api.LiveKitAPI(url, API_KEY, API_SECRET)
            try:
                yield Sip(url, client, lk)
            finally:
                await lk.aclose()
    finally:
        await client.aclose()


def direct(room: str = "lobby", pin: str = "") -> sip_pb.SIPDispatchRule:
    return sip_pb.SIPDispatchRule(
        dispatch_rule_direct=sip_pb.SIPDispatchRuleDirect(room_name=room, pin=pin)
    )


def individual(prefix: str = "call") -> sip_pb.SIPDispatchRule:
    rule = sip_pb.SIPDispatchRuleIndividual(room_prefix=prefix)
    return sip_pb.SIPDispatchRule(dispatch_rule_individual=rule)


async def create(sip: Sip, **fields: object) -> sip_pb.SIPDispatchRuleInfo:
    rule = sip_pb.SIPDispatchRuleInfo(**fields)  # type: ignore[arg-type]
    request = sip_pb.CreateSIPDispatchRuleRequest(dispatch_rule=rule)
    return await sip.lk.sip.create_dispatch_rule(request)


async def listed(sip: Sip, ids: Sequence[str] = (), trunks: Sequence[str] = ()) -> list[str]:
    request = sip_pb.ListSIPDispatchRuleRequest(dispatch_rule_ids=ids, trunk_ids=trunks)
    response = await sip.lk.sip.list_dispatch_rule(request)
    return [rule.sip_dispatch_rule_id for rule in response.items]


async def twirp_failure(call: Awaitable[object]) -> api.TwirpError:
    with pytest.raises(api.TwirpError) as caught:
        await call
    return caught.value


# -- CRUD ------------------------------------------------------------------------------------


async def test_create_stores_the_rule_under_a_fresh_id(sip: Sip) -> None:
    agents = [api.RoomAgentDispatch(agent_name="greeter")]
    created = await create(
        sip, rule=direct(), name="front desk", room_config=api.RoomConfiguration(agents=agents)
    )
    rule_id = created.sip_dispatch_rule_id
    assert rule_id.startswith("SDR_") and len(rule_id) == 16
    assert set(rule_id[4:]) <= set(ids.ALPHABET)
    assert created.created_at.seconds > 0
    stored = sip_pb.SIPDispatchRuleInfo.FromString(await sip.client.hget(SIP_RULES, rule_id))  # type: ignore[arg-type]
    assert stored == created
    assert list(stored.room_config.agents) == agents


async def test_create_accepts_the_legacy_request_shape(sip: Sip) -> None:
    request = sip_pb.CreateSIPDispatchRuleRequest(
        rule=individual("call"), trunk_ids=[TRUNK], hide_phone_number=True, name="legacy"
    )
    created = await sip.lk.sip.create_dispatch_rule(request)
    assert created.rule == individual("call")
    assert (list(created.trunk_ids), created.hide_phone_number, created.name) == (
        [TRUNK],
        True,
        "legacy",
    )


async def test_create_accepts_camel_case_json(sip: Sip) -> None:
    body = {"dispatchRule": {"rule": {"dispatchRuleDirect": {"roomName": "lobby"}}, "name": "js"}}
    token = create_token(API_KEY, API_SECRET, {"sip": {"admin": True}})
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            sip.url + "/twirp/livekit.SIP/CreateSIPDispatchRule", json=body, headers=headers
        ) as response,
    ):
        assert response.status == 200
        reply = await response.json()
    assert reply["name"] == "js"
    assert reply["rule"]["dispatch_rule_direct"]["room_name"] == "lobby"


async def test_list_returns_all_rules_sorted_by_id(sip: Sip) -> None:
    first = await create(sip, rule=direct(), trunk_ids=[TRUNK])
    second = await create(sip, rule=direct(), trunk_ids=[OTHER_TRUNK])
    assert await listed(sip) == sorted([first.sip_dispatch_rule_id, second.sip_dispatch_rule_id])


async def test_list_by_id_returns_only_those_rules(sip: Sip) -> None:
    wanted = await create(sip, rule=direct(), trunk_ids=[TRUNK])
    await create(sip, rule=direct(), trunk_ids=[OTHER_TRUNK])
    assert await listed(sip, ids=[wanted.sip_dispatch_rule_id]) == [wanted.sip_dispatch_rule_id]


async def test_list_by_trunk_includes_rules_for_any_trunk(sip: Sip) -> None:
    on_trunk = await create(sip, rule=direct(), trunk_ids=[TRUNK])
    any_trunk = await create(sip, rule=direct())
    await create(sip, rule=direct(), trunk_ids=[OTHER_TRUNK])
    expected = sorted([on_trunk.sip_dispatch_rule_id, any_trunk.sip_dispatch_rule_id])
    assert await listed(sip, trunks=[TRUNK]) == expected


async def test_list_pages_after_an_id(sip: Sip) -> None:
    created = [await create(sip, rule=direct(), trunk_ids=[f"ST_{i}"]) for i in range(3)]
    all_ids = sorted(rule.sip_dispatch_rule_id for rule in created)
    page = sip_pb.ListSIPDispatchRuleRequest(page={"after_id": all_ids[0], "limit": 1})
    response = await sip.lk.sip.list_dispatch_rule(page)
    assert [rule.sip_dispatch_rule_id for rule in response.items] == [all_ids[1]]


async def test_delete_removes_the_rule_and_returns_it(sip: Sip) -> None:
    created = await create(sip, rule=direct(), name="gone")
    request = sip_pb.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=created.sip_dispatch_rule_id)
    deleted = await sip.lk.sip.delete_dispatch_rule(request)
    assert deleted == created
    assert await listed(sip) == []


async def test_deleting_an_unknown_rule_is_not_found(sip: Sip) -> None:
    request = sip_pb.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id="SDR_missing")
    err = await twirp_failure(sip.lk.sip.delete_dispatch_rule(request))
    assert (err.code, err.status, err.message) == ("not_found", 404, "dispatch rule not found")


async def test_update_fields_changes_only_those_fields(sip: Sip) -> None:
    created = await create(sip, rule=direct(), name="old", metadata="keep")
    updated = await sip.lk.sip.update_dispatch_rule_fields(
        created.sip_dispatch_rule_id, name="new", trunk_ids=[TRUNK]
    )
    assert (updated.name, updated.metadata, list(updated.trunk_ids)) == ("new", "keep", [TRUNK])
    assert updated.created_at == created.created_at
    assert (await listed(sip, trunks=[OTHER_TRUNK])) == []


async def test_replace_swaps_the_whole_rule(sip: Sip) -> None:
    created = await create(sip, rule=direct(), name="old")
    replacement = sip_pb.SIPDispatchRuleInfo(rule=individual("new"))
    replaced = await sip.lk.sip.update_dispatch_rule(created.sip_dispatch_rule_id, replacement)
    assert replaced.sip_dispatch_rule_id == created.sip_dispatch_rule_id
    assert (replaced.rule, replaced.name) == (individual("new"), "")


# -- refusals --------------------------------------------------------------------------------


async def test_a_token_without_the_sip_admin_grant_is_refused(sip: Sip) -> None:
    token = create_token(API_KEY, API_SECRET, {"video": {"roomAdmin": True}, "sip": {"call": True}})
    lk = api.LiveKitAPI(sip.url, token=token)
    try:
        err = await twirp_failure(lk.sip.list_dispatch_rule(sip_pb.ListSIPDispatchRuleRequest()))
    finally:
        await lk.aclose()
    assert (err.code, err.status) == ("unauthenticated", 401)
    assert err.message == "permissions denied: token lacks the sip admin grant"


async def test_an_invalid_rule_is_invalid_argument(sip: Sip) -> None:
    err = await twirp_failure(create(sip, rule=direct(room="")))
    assert (err.code, err.status) == ("invalid_argument", 400)
    assert "room_name" in err.message
    assert await listed(sip) == []


async def test_a_conflicting_rule_is_invalid_argument(sip: Sip) -> None:
    first = await create(sip, rule=direct(), trunk_ids=[TRUNK])
    err = await twirp_failure(create(sip, rule=individual(), trunk_ids=[OTHER_TRUNK, TRUNK]))
    assert err.code == "invalid_argument"
    assert first.sip_dispatch_rule_id in err.message
    assert await listed(sip) == [first.sip_dispatch_rule_id]


async def test_an_update_into_a_conflict_is_refused(sip: Sip) -> None:
    await create(sip, rule=direct(), trunk_ids=[TRUNK])
    other = await create(sip, rule=direct(), trunk_ids=[OTHER_TRUNK])
    err = await twirp_failure(
        sip.lk.sip.update_dispatch_rule_fields(other.sip_dispatch_rule_id, trunk_ids=[TRUNK])
    )
    assert err.code == "invalid_argument"


# -- inbound calls ---------------------------------------------------------------------------


def inbound(trunk_id: str = "", call_id: str = "SCL_call00000001") -> InboundCall:
    return InboundCall(call_id=call_id, trunk_id=trunk_id, from_number=CALLER, to_number=CALLED)


async def test_resolve_inbound_uses_the_stored_rule_for_the_trunk(sip: Sip) -> None:
    await create(sip, rule=direct("general"))
    on_trunk = await create(
        sip, rule=individual("support"), trunk_ids=[TRUNK], attributes={"team": "support"}
    )
    found = await resolve_inbound(sip.client, inbound(trunk_id=TRUNK))
    assert found.rule_id == on_trunk.sip_dispatch_rule_id
    assert found.room.startswith(f"support_{CALLER}_")
    assert found.participant_attributes["team"] == "support"
    assert found.participant_attributes["sip.ruleID"] == on_trunk.sip_dispatch_rule_id


async def test_resolve_inbound_without_a_matching_rule_raises(sip: Sip) -> None:
    await create(sip, rule=direct(), trunk_ids=[OTHER_TRUNK])
    with pytest.raises(NoRuleMatched):
        await resolve_inbound(sip.client, inbound(trunk_id=TRUNK))


async def test_resolve_inbound_rejects_a_call_without_id(sip: Sip) -> None:
    with pytest.raises(InvalidArgument, match="call_id"):
        await resolve_inbound(sip.client, inbound(call_id=""))


# -- the sip commands ------------------------------------------------------------------------


async def invoke(sip: Sip, *args: str) -> Result:
    """Run a ``sip`` command in a thread (it runs its own event loop) against this server."""
    env = {"LIVEKIT_URL": sip.url, "LIVEKIT_API_KEY": API_KEY, "LIVEKIT_API_SECRET": API_SECRET}
    return await asyncio.to_thread(CliRunner().invoke, sip_group, list(args), env=env)


async def run_cli(sip: Sip, *args: str) -> str:
    result = await invoke(sip, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


async def test_cli_creates_lists_and_deletes_a_rule(sip: Sip) -> None:
    args = ["dispatch-rule", "create", "--individual", "call", "--trunks", f"{TRUNK},X"]
    created = json.loads(await run_cli(sip, *args))
    rule_id = created["sipDispatchRuleId"]
    assert created["trunkIds"] == [TRUNK, "X"]
    listed_rules = json.loads(await run_cli(sip, "dispatch-rule", "list", "--trunk", TRUNK))
    assert [rule["sipDispatchRuleId"] for rule in listed_rules["items"]] == [rule_id]
    await run_cli(sip, "dispatch-rule", "delete", "--id", rule_id)
    assert await listed(sip) == []


async def test_cli_puts_agents_in_the_rules_room_config(sip: Sip) -> None:
    await run_cli(
        sip,
        "dispatch-rule",
        "create",
        "--direct",
        "lobby",
        "--agent",
        "greeter",
        "--agent",
        "scribe",
        "--agent-metadata",
        "{}",
    )
    (rule,) = (await sip.lk.sip.list_dispatch_rule(sip_pb.ListSIPDispatchRuleRequest())).items
    agents = [(agent.agent_name, agent.metadata) for agent in rule.room_config.agents]
    assert agents == [("greeter", "{}"), ("scribe", "{}")]


async def test_cli_simulates_an_inbound_call(sip: Sip) -> None:
    await create(sip, rule=direct("lobby"), trunk_ids=[TRUNK])
    args = ["inbound", "--from", CALLER, "--to", CALLED, "--trunk", TRUNK, "--call-id", "SCL_1"]
    reply = json.loads(await run_cli(sip, *args))
    assert reply["room"]["name"] == "lobby" and reply["room"]["created"]
    assert reply["participantIdentity"] == f"sip_{CALLER}"  # camelCase, as every CLI reply
    assert [d["agentName"] for d in reply["dispatches"]] == [""]  # the automatic agent


async def test_cli_inbound_call_without_a_rule_fails_and_prints_why(sip: Sip) -> None:
    result = await invoke(sip, "inbound", "--from", CALLER, "--to", CALLED, "--call-id", "SCL_2")
    assert result.exit_code == 1
    reply = json.loads(result.stdout)
    assert reply["code"] == "not_found"
    assert "SCL_2" in reply["msg"]
