"""SIP dispatch rules (dispatcher.sip.rules): validation, choosing a rule, naming the room.

The random room suffix is injected, so every expected room name is exact.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest
from livekit.protocol import agent_dispatch as agent_pb
from livekit.protocol import models as models_pb
from livekit.protocol import room as room_pb
from livekit.protocol import sip as sip_pb

from dispatcher import ids
from dispatcher.api.twirp import twirp_error
from dispatcher.errors import InvalidArgument
from dispatcher.sip.rules import (
    InboundCall,
    NoRuleMatched,
    PinRequired,
    RuleConflict,
    SipRuleError,
    apply_update,
    check_conflicts,
    match_inbound,
    normalize_number,
    rule_from_create_request,
    rule_from_update_request,
    validate_call,
    validate_rule,
)

CALLER = "+15550001111"
CALLED = "+15550002222"
TRUNK = "ST_trunk000001"
OTHER_TRUNK = "ST_trunk000002"
SUFFIX = "RANDOMsuffix"


def direct(room: str = "lobby", pin: str = "") -> sip_pb.SIPDispatchRule:
    return sip_pb.SIPDispatchRule(
        dispatch_rule_direct=sip_pb.SIPDispatchRuleDirect(room_name=room, pin=pin)
    )


def individual(
    prefix: str = "call", pin: str = "", no_randomness: bool = False
) -> sip_pb.SIPDispatchRule:
    rule = sip_pb.SIPDispatchRuleIndividual(
        room_prefix=prefix, pin=pin, no_randomness=no_randomness
    )
    return sip_pb.SIPDispatchRule(dispatch_rule_individual=rule)


def callee(prefix: str = "line", pin: str = "", randomize: bool = False) -> sip_pb.SIPDispatchRule:
    rule = sip_pb.SIPDispatchRuleCallee(room_prefix=prefix, pin=pin, randomize=randomize)
    return sip_pb.SIPDispatchRule(dispatch_rule_callee=rule)


def info(
    rule_id: str = "SDR_rule00000001",
    rule: sip_pb.SIPDispatchRule | None = None,
    **fields: object,
) -> sip_pb.SIPDispatchRuleInfo:
    return sip_pb.SIPDispatchRuleInfo(
        sip_dispatch_rule_id=rule_id,
        rule=rule if rule is not None else direct(),
        **fields,  # type: ignore[arg-type]
    )


def call(**fields: object) -> InboundCall:
    values: dict[str, object] = {
        "call_id": "SCL_call00000001",
        "trunk_id": TRUNK,
        "from_number": CALLER,
        "to_number": CALLED,
        **fields,
    }
    return msgspec.convert(values, InboundCall)


def match(rules: list[sip_pb.SIPDispatchRuleInfo], inbound: InboundCall | None = None) -> str:
    """The id of the rule chosen for the call (default: ``call()``)."""
    return match_inbound(rules, inbound or call(), random_suffix=lambda: SUFFIX).rule_id


def code_of(exc: InvalidArgument | SipRuleError) -> str:
    """The Twirp code an API node answers this error with."""
    answer = twirp_error(exc)
    assert answer is not None
    return answer.code


def invalid(rule: sip_pb.SIPDispatchRuleInfo) -> str:
    with pytest.raises(InvalidArgument) as caught:
        validate_rule(rule)
    return str(caught.value)


# -- validation ------------------------------------------------------------------------------


def test_a_rule_without_a_kind_is_invalid() -> None:
    assert "one of dispatch_rule_direct" in invalid(sip_pb.SIPDispatchRuleInfo())


def test_a_direct_rule_needs_a_room_name() -> None:
    assert "room_name" in invalid(info(rule=direct(room="")))


def test_an_individual_rule_may_have_an_empty_prefix() -> None:
    validate_rule(info(rule=individual(prefix="")))


def test_a_long_room_prefix_is_invalid() -> None:
    assert "room_prefix size exceeds" in invalid(info(rule=callee(prefix="p" * 129)))


def test_an_empty_trunk_id_is_invalid() -> None:
    assert "trunk_ids has an empty item" in invalid(info(trunk_ids=[TRUNK, ""]))


def test_a_long_number_filter_is_invalid() -> None:
    assert "inbound_numbers item size exceeds" in invalid(info(inbound_numbers=["1" * 65]))


def test_oversized_rule_metadata_is_invalid() -> None:
    assert "metadata size exceeds" in invalid(info(metadata="m" * (512 * 1024 + 1)))


def test_an_agent_without_a_name_is_the_automatic_agent_and_valid() -> None:
    config = room_pb.RoomConfiguration(agents=[agent_pb.RoomAgentDispatch(metadata="x")])
    validate_rule(info(room_config=config))


def test_oversized_agent_metadata_is_invalid_and_names_the_agent() -> None:
    agent = agent_pb.RoomAgentDispatch(agent_name="a", metadata="m" * (512 * 1024 + 1))
    config = room_pb.RoomConfiguration(agents=[agent_pb.RoomAgentDispatch(), agent])
    assert "room_config.agents[1].metadata size exceeds" in invalid(info(room_config=config))


def test_an_agent_deployment_with_an_underscore_is_invalid() -> None:
    agent = agent_pb.RoomAgentDispatch(agent_name="a", deployment="blue_green")
    message = invalid(info(room_config=room_pb.RoomConfiguration(agents=[agent])))
    assert message.startswith("room_config.agents[0]: deployment")


def test_a_call_report_needs_a_call_id() -> None:
    with pytest.raises(InvalidArgument, match="call_id is required"):
        validate_call(call(call_id=""))


# -- request shapes --------------------------------------------------------------------------


def test_a_create_request_with_dispatch_rule_uses_it() -> None:
    rule = info(rule_id="", name="n", numbers=[CALLED])
    request = sip_pb.CreateSIPDispatchRuleRequest(dispatch_rule=rule, name="ignored")
    assert rule_from_create_request(request) == rule


def test_a_create_request_must_not_carry_a_rule_id() -> None:
    request = sip_pb.CreateSIPDispatchRuleRequest(dispatch_rule=info(rule_id="SDR_x"))
    with pytest.raises(InvalidArgument, match="must not be set"):
        rule_from_create_request(request)


def test_a_legacy_create_request_becomes_a_rule() -> None:
    config = room_pb.RoomConfiguration(agents=[agent_pb.RoomAgentDispatch(agent_name="a")])
    fields: dict[str, Any] = {
        "trunk_ids": [TRUNK],
        "inbound_numbers": [CALLER],
        "hide_phone_number": True,
        "name": "n",
        "metadata": "m",
        "attributes": {"k": "v"},
        "room_preset": "preset",
        "room_config": config,
    }
    request = sip_pb.CreateSIPDispatchRuleRequest(rule=individual(), **fields)
    expected = info(rule_id="", rule=individual(), **fields)
    assert rule_from_create_request(request) == expected


def test_an_update_changes_only_the_fields_it_carries() -> None:
    current = info(name="old", metadata="keep", trunk_ids=["A", "B"], attributes={"x": "1"})
    update = sip_pb.SIPDispatchRuleUpdate(
        name="new",
        trunk_ids=models_pb.ListUpdate(add=["C"], remove=["A"]),
        attributes={"x": "", "y": "2"},
    )
    updated = apply_update(current, update)
    assert (updated.name, updated.metadata) == ("new", "keep")
    assert list(updated.trunk_ids) == ["B", "C"]
    assert dict(updated.attributes) == {"y": "2"}


def test_a_trunk_update_cannot_set_and_add_at_once() -> None:
    update = sip_pb.SIPDispatchRuleUpdate(trunk_ids=models_pb.ListUpdate(set=["A"], add=["B"]))
    with pytest.raises(InvalidArgument, match="trunk_ids update"):
        apply_update(info(), update)


def test_a_replace_keeps_the_rule_id() -> None:
    request = sip_pb.UpdateSIPDispatchRuleRequest(
        sip_dispatch_rule_id="SDR_rule00000001", replace=info(rule_id="", name="replaced")
    )
    replaced = rule_from_update_request(info(), request)
    assert (replaced.sip_dispatch_rule_id, replaced.name) == ("SDR_rule00000001", "replaced")


# -- room names ------------------------------------------------------------------------------


def room(rule: sip_pb.SIPDispatchRule) -> str:
    return match_inbound([info(rule=rule)], call(), random_suffix=lambda: SUFFIX).room


def test_a_direct_rule_sends_the_call_to_its_room() -> None:
    assert room(direct("lobby")) == "lobby"


def test_an_individual_rule_makes_a_room_per_call() -> None:
    assert room(individual("call")) == f"call_{CALLER}_{SUFFIX}"


def test_an_individual_rule_without_prefix_starts_with_the_caller() -> None:
    assert room(individual("")) == f"{CALLER}_{SUFFIX}"


def test_an_individual_rule_without_randomness_has_no_suffix() -> None:
    assert room(individual("call", no_randomness=True)) == f"call_{CALLER}"


def test_a_callee_rule_makes_a_room_per_called_number() -> None:
    assert room(callee("line")) == f"line_{CALLED}"


def test_a_randomized_callee_rule_adds_the_suffix() -> None:
    assert room(callee("line", randomize=True)) == f"line_{CALLED}_{SUFFIX}"


def test_the_default_suffix_is_twelve_base57_characters() -> None:
    name = match_inbound([info(rule=individual("call"))], call()).room
    prefix, _, suffix = name.rpartition("_")
    assert prefix == f"call_{CALLER}"
    assert len(suffix) == 12
    assert set(suffix) <= set(ids.ALPHABET)


# -- choosing a rule -------------------------------------------------------------------------


def test_a_rule_bound_to_the_calls_trunk_beats_a_rule_for_any_trunk() -> None:
    rules = [info("SDR_any"), info("SDR_trunk", trunk_ids=[TRUNK])]
    assert match(rules) == "SDR_trunk"


def test_a_rule_bound_to_another_trunk_does_not_apply() -> None:
    rules = [info("SDR_any"), info("SDR_other", trunk_ids=[OTHER_TRUNK])]
    assert match(rules) == "SDR_any"


def test_a_call_without_a_trunk_reaches_only_rules_for_any_trunk() -> None:
    rules = [info("SDR_any"), info("SDR_trunk", trunk_ids=[TRUNK])]
    assert match(rules, call(trunk_id="")) == "SDR_any"


def test_number_filters_must_name_the_calls_numbers() -> None:
    rules = [
        info("SDR_caller", inbound_numbers=["+19990000000"]),
        info("SDR_called", numbers=["+19990000000"]),
        info("SDR_open", rule=callee()),
    ]
    assert match(rules) == "SDR_open"


def test_a_rule_for_the_callers_number_beats_an_open_rule() -> None:
    rules = [info("SDR_open"), info("SDR_caller", rule=callee(), inbound_numbers=[CALLER])]
    assert match(rules) == "SDR_caller"


def test_equal_priority_goes_to_the_smaller_room_name() -> None:
    rules = [
        info("SDR_b", inbound_numbers=[CALLER], rule=direct("room-b")),
        info("SDR_a", numbers=[CALLED], rule=direct("room-a")),
    ]
    assert match(rules) == "SDR_a"


def test_no_applicable_rule_names_the_call() -> None:
    rules = [info(trunk_ids=[OTHER_TRUNK])]
    with pytest.raises(NoRuleMatched) as caught:
        match(rules)
    message = str(caught.value)
    assert "SCL_call00000001" in message
    assert CALLER in message and CALLED in message and TRUNK in message
    assert code_of(caught.value) == "not_found"


def test_no_rules_at_all_says_so() -> None:
    with pytest.raises(NoRuleMatched, match="no dispatch rules are defined"):
        match([])


# -- conflicts -------------------------------------------------------------------------------


def test_two_rules_for_any_trunk_conflict() -> None:
    with pytest.raises(RuleConflict) as caught:
        match([info("SDR_one"), info("SDR_two", rule=individual())])
    assert "SDR_one" in str(caught.value) and "SDR_two" in str(caught.value)
    assert code_of(caught.value) == "failed_precondition"


def test_rules_sharing_the_calls_trunk_conflict() -> None:
    rules = [info("SDR_one", trunk_ids=[TRUNK]), info("SDR_two", trunk_ids=[OTHER_TRUNK, TRUNK])]
    with pytest.raises(RuleConflict):
        match(rules)


def test_conflicting_rules_the_call_does_not_reach_do_not_matter() -> None:
    rules = [
        info("SDR_one", trunk_ids=[OTHER_TRUNK]),
        info("SDR_two", trunk_ids=[OTHER_TRUNK]),
        info("SDR_mine", trunk_ids=[TRUNK]),
    ]
    assert match(rules) == "SDR_mine"


def test_rules_with_different_pins_do_not_conflict() -> None:
    check_conflicts([info("SDR_one", rule=direct(pin="1234")), info("SDR_two")])


def test_number_filters_conflict_after_normalisation() -> None:
    rules = [
        info("SDR_one", numbers=["+1 (555) 000-2222"]),
        info("SDR_two", numbers=["15550002222"]),
    ]
    with pytest.raises(RuleConflict):
        check_conflicts(rules)


def test_normalize_number_keeps_non_numbers() -> None:
    assert normalize_number("1 555-000") == "+1555000"
    assert normalize_number("alice") == "alice"


def test_a_rule_listing_a_trunk_twice_does_not_conflict_with_itself() -> None:
    check_conflicts([info(trunk_ids=[TRUNK, TRUNK])])


# -- PINs ------------------------------------------------------------------------------------


def test_a_call_with_a_pin_reaches_the_rule_with_that_pin() -> None:
    rules = [info("SDR_open"), info("SDR_pin", rule=direct("secret", pin="1234"))]
    assert match(rules, call(pin="1234")) == "SDR_pin"


def test_a_wrong_pin_never_falls_back_to_an_open_rule() -> None:
    rules = [info("SDR_open"), info("SDR_pin", rule=direct("secret", pin="1234"))]
    with pytest.raises(NoRuleMatched, match="with a PIN"):
        match(rules, call(pin="9999"))


def test_a_call_without_a_pin_is_asked_for_it_when_the_best_rule_has_one() -> None:
    rules = [info("SDR_open"), info("SDR_pin", rule=direct("secret", pin="1234"))]
    with pytest.raises(PinRequired) as caught:
        match(rules)
    assert caught.value.rule_id == "SDR_pin"
    assert code_of(caught.value) == "permission_denied"


def test_a_call_that_will_not_enter_a_pin_reaches_open_rules() -> None:
    rules = [info("SDR_open"), info("SDR_pin", rule=direct("secret", pin="1234"))]
    assert match(rules, call(no_pin=True)) == "SDR_open"


# -- the caller's participant ----------------------------------------------------------------


def test_the_caller_joins_as_sip_participant_with_call_attributes() -> None:
    rule = info(metadata="meta", attributes={"team": "sales", "sip.callID": "overridden"})
    result = match_inbound([rule], call(from_host="pbx.example.com"))
    assert result.participant_identity == f"sip_{CALLER}"
    assert result.participant_name == f"Phone {CALLER}"
    assert result.participant_metadata == "meta"
    assert result.participant_attributes == {
        "team": "sales",
        "sip.callID": "SCL_call00000001",
        "sip.trunkID": TRUNK,
        "sip.phoneNumber": CALLER,
        "sip.hostname": "pbx.example.com",
        "sip.trunkPhoneNumber": CALLED,
        "sip.ruleID": "SDR_rule00000001",
    }
    assert not result.hide_phone_number


def test_a_hidden_phone_number_is_masked_everywhere() -> None:
    rule = info(rule=individual("call", no_randomness=True), hide_phone_number=True)
    result = match_inbound([rule], call())
    digest = hashlib.sha256(CALLER.encode()).digest()[:8].hex()
    assert result.participant_identity == f"sip_{digest}"
    assert result.participant_name == "Phone 1111"
    assert result.room == "call_1111"
    assert result.hide_phone_number
    assert CALLER not in result.participant_attributes.values()
    assert CALLED not in result.participant_attributes.values()


def test_the_rules_agents_come_from_its_room_config() -> None:
    agents = [agent_pb.RoomAgentDispatch(agent_name="greeter", metadata="{}")]
    rule = info(room_config=room_pb.RoomConfiguration(agents=agents, empty_timeout=30))
    result = match_inbound([rule], call())
    assert result.agents == agents
    assert result.room_config is not None and result.room_config.empty_timeout == 30
    assert result.as_json()["agents"] == [{"agent_name": "greeter", "metadata": "{}"}]


def test_a_rule_without_room_config_dispatches_no_agents() -> None:
    result = match_inbound([info()], call())
    assert (result.agents, result.room_config) == ([], None)
