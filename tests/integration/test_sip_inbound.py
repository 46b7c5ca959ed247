"""An inbound SIP call through the real API: the matching dispatch rule names the room,
which is created with the rule's agents, and the job carries the caller's details."""

from __future__ import annotations

import pytest
from livekit import api
from livekit.protocol import sip as sip_pb

from tests.room_stack import Stack, stack
from tests.stack import API_KEY, API_SECRET, eventually

__all__ = ["stack"]  # the fixture

CALL = "/twirp/dispatcher.SIPInbound/Call"
CALLER, CALLED = "+15550001111", "+15550002222"


def _edge_token(call: bool = True) -> str:
    token = api.AccessToken(API_KEY, API_SECRET).with_sip_grants(api.SIPGrants(call=call))
    return token.to_jwt()


async def _call(stack: Stack, token: str, **fields: str) -> tuple[int, dict[str, object]]:
    body = {"call_id": "SCL_test", "from_number": CALLER, "to_number": CALLED, **fields}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with stack.http.post(stack.url + CALL, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def test_a_call_matching_an_individual_rule_gets_a_prefixed_room_and_its_agent(
    stack: Stack,
) -> None:
    jobs = await stack.agent("receptionist")
    agent = api.RoomAgentDispatch(agent_name="receptionist", metadata='{"lang": "en"}')
    rule = sip_pb.SIPDispatchRule(
        dispatch_rule_individual=sip_pb.SIPDispatchRuleIndividual(room_prefix="call")
    )
    created = await stack.lk.sip.create_dispatch_rule(
        sip_pb.CreateSIPDispatchRuleRequest(
            dispatch_rule=sip_pb.SIPDispatchRuleInfo(
                rule=rule, room_config=api.RoomConfiguration(agents=[agent])
            )
        )
    )
    status, reply = await _call(stack, _edge_token())
    assert status == 200, reply
    room = reply["room"]
    assert isinstance(room, dict) and room["created"] is True
    assert str(room["name"]).startswith(f"call_{CALLER}_")
    assert reply["rule_id"] == created.sip_dispatch_rule_id
    assert reply["participant_identity"] == f"sip_{CALLER}"
    await eventually(lambda: len(jobs) == 1, what="the rule's agent runs")
    job = jobs[0]
    assert job.room.name == room["name"] and job.metadata == '{"lang": "en"}'
    assert job.attributes["sip.phoneNumber"] == CALLER
    assert job.attributes["sip.callID"] == "SCL_test"
    listed = await stack.lk.room.list_rooms(api.ListRoomsRequest(names=[str(room["name"])]))
    assert [r.num_participants for r in listed.rooms] == [1]


async def test_a_call_no_rule_matches_is_refused_and_creates_nothing(stack: Stack) -> None:
    status, reply = await _call(stack, _edge_token())
    assert (status, reply["code"]) == (404, "not_found")
    assert "SCL_test" in str(reply["msg"])
    assert (await stack.lk.room.list_rooms(api.ListRoomsRequest())).rooms == []


async def test_the_edge_needs_the_sip_call_grant(stack: Stack) -> None:
    status, reply = await _call(stack, _edge_token(call=False))
    assert (status, reply["code"]) == (401, "unauthenticated")
    assert "sip call grant" in str(reply["msg"])


async def test_a_malformed_call_report_is_refused(stack: Stack) -> None:
    status, reply = await _call(stack, _edge_token(), from_number=None)  # type: ignore[arg-type]
    assert (status, reply["code"]) == (400, "malformed")


async def test_inbound_trunks_are_created_listed_updated_and_deleted(stack: Stack) -> None:
    sip = stack.lk.sip
    trunk = await sip.create_inbound_trunk(
        sip_pb.CreateSIPInboundTrunkRequest(
            trunk=sip_pb.SIPInboundTrunkInfo(name="carrier", numbers=[CALLED])
        )
    )
    assert trunk.sip_trunk_id.startswith("ST_") and list(trunk.numbers) == [CALLED]
    listed = await sip.list_inbound_trunk(sip_pb.ListSIPInboundTrunkRequest(numbers=[CALLED]))
    assert [t.sip_trunk_id for t in listed.items] == [trunk.sip_trunk_id]

    updated = await sip.update_inbound_trunk_fields(
        trunk.sip_trunk_id, name="renamed", numbers=[CALLED, "+15550003333"]
    )
    assert updated.name == "renamed" and list(updated.numbers) == [CALLED, "+15550003333"]

    deleted = await sip.delete_trunk(sip_pb.DeleteSIPTrunkRequest(sip_trunk_id=trunk.sip_trunk_id))
    assert deleted.sip_trunk_id == trunk.sip_trunk_id
    assert not (await sip.list_inbound_trunk(sip_pb.ListSIPInboundTrunkRequest())).items
    with pytest.raises(api.TwirpError) as caught:
        await sip.delete_trunk(sip_pb.DeleteSIPTrunkRequest(sip_trunk_id=trunk.sip_trunk_id))
    assert caught.value.code == "not_found"


async def test_a_rule_filtered_by_trunk_takes_calls_to_that_trunks_numbers_only(
    stack: Stack,
) -> None:
    sip = stack.lk.sip
    trunk = await sip.create_inbound_trunk(
        sip_pb.CreateSIPInboundTrunkRequest(trunk=sip_pb.SIPInboundTrunkInfo(numbers=[CALLED]))
    )
    rule = sip_pb.SIPDispatchRule(
        dispatch_rule_direct=sip_pb.SIPDispatchRuleDirect(room_name="trunk-room")
    )
    await sip.create_dispatch_rule(
        sip_pb.CreateSIPDispatchRuleRequest(
            dispatch_rule=sip_pb.SIPDispatchRuleInfo(rule=rule, trunk_ids=[trunk.sip_trunk_id])
        )
    )
    status, reply = await _call(stack, _edge_token())
    assert status == 200, reply
    assert reply["room"]["name"] == "trunk-room"  # type: ignore[index]
    status, reply = await _call(stack, _edge_token(), to_number="+15559999999")
    assert (status, reply["code"]) == (404, "not_found")
