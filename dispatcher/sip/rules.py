"""SIP dispatch rules: checking a rule, and choosing the rule and room for an inbound call.

Pure logic: no I/O and no clock; the random room suffix comes from an injectable function.

Choosing a rule, as the reference does:

* a rule applies to a call when each of its filters is empty or names the call's value:
  ``trunk_ids`` (the trunk the call came in on), ``inbound_numbers`` (the caller) and
  ``numbers`` (the called number), compared as sent;
* PINs: a call that carries a PIN only reaches rules with that same PIN (never an open rule);
  a call without one reaches every rule, and if the best is PIN-protected the caller must
  be asked for the PIN (``PinRequired``); ``no_pin`` skips PIN-protected rules altogether;
* rules bound to the call's trunk beat rules without a trunk filter; among those, PIN-protected
  rules beat open ones, then direct beats individual beats callee, and every empty number
  filter costs priority; remaining ties go to the smaller room name, then rule id;
* two applicable rules with the same PIN that claim the same trunk, caller and called number
  (numbers normalised) are a conflict.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any, TypeVar

import msgspec
from google.protobuf import json_format
from google.protobuf.message import Message
from livekit.protocol import agent_dispatch as agent_pb
from livekit.protocol import models as models_pb
from livekit.protocol import room as room_pb
from livekit.protocol import sip as sip_pb

from dispatcher import ids
from dispatcher.errors import (
    DispatcherError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from dispatcher.limits import MAX_NAME_BYTES, Limits, check_deployment, check_restart_policy

__all__ = [
    "InboundCall",
    "InboundMatch",
    "NoRuleMatched",
    "PinRequired",
    "RuleConflict",
    "SipRuleError",
    "apply_update",
    "check_conflicts",
    "match_inbound",
    "normalize_number",
    "rule_from_create_request",
    "rule_from_update_request",
    "select_rule",
    "validate_call",
    "validate_rule",
]

# Room names are built as prefix + "_" + number + "_" + 12 random characters; these bounds keep
# the result within a room name's 256 bytes.
MAX_PREFIX_BYTES = 128
MAX_NUMBER_BYTES = 64
MAX_PIN_BYTES = 64
# A rule's conflict keys are the product of its three lists, so each list stays short.
MAX_FILTER_ITEMS = 100

M = TypeVar("M", bound=Message)

_KINDS = ("dispatch_rule_direct", "dispatch_rule_individual", "dispatch_rule_callee")
_NEW_RULE = "<new>"


# -- errors ------------------------------------------------------------------------------


class SipRuleError(DispatcherError):
    """SIP dispatch rule error."""


class NoRuleMatched(SipRuleError, NotFound):
    """No SIP dispatch rule matched the call."""


class RuleConflict(SipRuleError, FailedPrecondition):
    """Two SIP dispatch rules claim the same trunk, numbers and PIN.

    For an inbound call this is a failed precondition: the call is well formed, the stored
    rules are not, and only an administrator can fix them. Creating or updating a rule that
    would conflict is the request's fault instead, so the SIP service answers those with
    ``InvalidArgument`` (as the reference does).
    """


class PinRequired(SipRuleError, PermissionDenied):
    """The chosen dispatch rule is PIN-protected and the call carried no PIN.

    The SIP edge asks the caller for the PIN and resolves the call again with it.
    """

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"dispatch rule {rule_id} requires a PIN")
        self.rule_id = rule_id


# -- the call and its outcome ------------------------------------------------------------


class InboundCall(msgspec.Struct, frozen=True, kw_only=True):
    """An inbound SIP call as the SIP edge reports it."""

    call_id: str
    trunk_id: str = ""  # the inbound trunk the call matched; "" = none
    from_number: str  # the caller
    to_number: str  # the called number
    from_host: str = ""
    pin: str = ""
    no_pin: bool = False  # the caller will not enter a PIN: skip PIN-protected rules


@dataclass(frozen=True, slots=True)
class InboundMatch:
    """Where an accepted call goes and who the caller becomes there."""

    rule_id: str
    room: str
    agents: list[agent_pb.RoomAgentDispatch]
    room_config: room_pb.RoomConfiguration | None
    room_preset: str
    participant_identity: str
    participant_name: str
    participant_metadata: str
    participant_attributes: dict[str, str]
    hide_phone_number: bool

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict; protobuf members in protojson with proto field names."""
        return {
            "rule_id": self.rule_id,
            "room": self.room,
            "agents": [_to_json(agent) for agent in self.agents],
            "room_config": None if self.room_config is None else _to_json(self.room_config),
            "room_preset": self.room_preset,
            "participant_identity": self.participant_identity,
            "participant_name": self.participant_name,
            "participant_metadata": self.participant_metadata,
            "participant_attributes": dict(self.participant_attributes),
            "hide_phone_number": self.hide_phone_number,
        }


def _to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


# -- requests into rules -----------------------------------------------------------------


def rule_from_create_request(
    req: sip_pb.CreateSIPDispatchRuleRequest,
) -> sip_pb.SIPDispatchRuleInfo:
    """The rule a create request describes: ``dispatch_rule``, else the legacy top-level fields."""
    info = sip_pb.SIPDispatchRuleInfo()
    if req.HasField("dispatch_rule"):
        if req.dispatch_rule.sip_dispatch_rule_id:
            raise InvalidArgument("sip_dispatch_rule_id must not be set on create")
        info.CopyFrom(req.dispatch_rule)
        return info
    if req.HasField("rule"):
        info.rule.CopyFrom(req.rule)
    if req.HasField("room_config"):
        info.room_config.CopyFrom(req.room_config)
    info.trunk_ids.extend(req.trunk_ids)
    info.inbound_numbers.extend(req.inbound_numbers)
    info.attributes.update(req.attributes)
    info.hide_phone_number = req.hide_phone_number
    info.name = req.name
    info.metadata = req.metadata
    info.room_preset = req.room_preset
    return info


def rule_from_update_request(
    current: sip_pb.SIPDispatchRuleInfo, req: sip_pb.UpdateSIPDispatchRuleRequest
) -> sip_pb.SIPDispatchRuleInfo:
    """The rule after ``req`` (replace or field update), keeping the id and creation time."""
    action = req.WhichOneof("action")
    if action == "replace":
        new_id = req.replace.sip_dispatch_rule_id
        if new_id and new_id != current.sip_dispatch_rule_id:
            raise InvalidArgument(
                "the replacing rule's id must be empty or match sip_dispatch_rule_id"
            )
        updated = sip_pb.SIPDispatchRuleInfo()
        updated.CopyFrom(req.replace)
    elif action == "update":
        updated = apply_update(current, req.update)
    else:
        raise InvalidArgument("update needs either replace or update")
    updated.sip_dispatch_rule_id = current.sip_dispatch_rule_id
    updated.created_at.CopyFrom(current.created_at)
    return updated


def apply_update(
    current: sip_pb.SIPDispatchRuleInfo, update: sip_pb.SIPDispatchRuleUpdate
) -> sip_pb.SIPDispatchRuleInfo:
    """``current`` with the fields present in ``update``; an empty attribute value deletes it."""
    updated = sip_pb.SIPDispatchRuleInfo()
    updated.CopyFrom(current)
    if update.HasField("trunk_ids"):
        trunks = _apply_list_update(list(current.trunk_ids), update.trunk_ids)
        del updated.trunk_ids[:]
        updated.trunk_ids.extend(trunks)
    for name in ("rule", "media"):
        if update.HasField(name):
            getattr(updated, name).CopyFrom(getattr(update, name))
    if update.HasField("name"):
        updated.name = update.name
    if update.HasField("metadata"):
        updated.metadata = update.metadata
    if update.HasField("media_encryption"):
        updated.media_encryption = update.media_encryption
    for key, value in update.attributes.items():
        if value:
            updated.attributes[key] = value
        else:
            updated.attributes.pop(key, None)
    return updated


def _apply_list_update(items: list[str], change: models_pb.ListUpdate) -> list[str]:
    edits = [*change.set, *change.add, *change.remove]
    if change.clear == bool(edits) or (change.set and (change.add or change.remove)):
        raise InvalidArgument("trunk_ids update must either clear, set, or add/remove items")
    if "" in edits:
        raise InvalidArgument("trunk_ids update has an empty item")
    if change.clear:
        return []
    if change.set:
        return list(change.set)
    kept = [item for item in items if item not in change.remove]
    return kept + [item for item in dict.fromkeys(change.add) if item not in kept]


# -- validation --------------------------------------------------------------------------


def validate_rule(info: sip_pb.SIPDispatchRuleInfo, limits: Limits | None = None) -> None:
    """Raise ``InvalidArgument`` saying what is wrong with ``info``, if anything."""
    limits = limits or Limits()
    _check_kind(info.rule)
    _check_bytes(info.name, "name", MAX_NAME_BYTES)
    _check_bytes(info.room_preset, "room_preset", MAX_NAME_BYTES)
    _check_bytes(info.metadata, "metadata", limits.max_metadata_bytes)
    _check_attributes(info.attributes, "attributes", limits)
    _check_filter(info.trunk_ids, "trunk_ids", MAX_NAME_BYTES)
    _check_filter(info.inbound_numbers, "inbound_numbers", MAX_NUMBER_BYTES)
    _check_filter(info.numbers, "numbers", MAX_NUMBER_BYTES)
    if info.HasField("room_config"):
        _check_room_config(info.room_config, limits)
    _check_representable(info)


def _check_representable(info: sip_pb.SIPDispatchRuleInfo) -> None:
    """Well-known types out of their range (a Duration with nanos past a second, of the
    other sign than its seconds, ...) decode from protobuf but have no JSON form: the
    rule could be stored but never listed."""
    try:
        json_format.MessageToDict(info)
    except json_format.SerializeToJsonError as exc:
        raise InvalidArgument(f"the rule has an invalid value: {exc}") from None


def validate_call(call: InboundCall) -> None:
    """Raise ``InvalidArgument`` if the call report is unusable."""
    if not call.call_id:
        raise InvalidArgument("call_id is required")
    _check_bytes(call.call_id, "call_id", MAX_NAME_BYTES)
    _check_bytes(call.trunk_id, "trunk_id", MAX_NAME_BYTES)
    _check_bytes(call.from_number, "from_number", MAX_NUMBER_BYTES)
    _check_bytes(call.to_number, "to_number", MAX_NUMBER_BYTES)
    _check_bytes(call.from_host, "from_host", MAX_NAME_BYTES)
    _check_bytes(call.pin, "pin", MAX_PIN_BYTES)


def _check_kind(rule: sip_pb.SIPDispatchRule) -> None:
    kind = rule.WhichOneof("rule")
    if kind is None:
        raise InvalidArgument(
            "rule must set one of dispatch_rule_direct, dispatch_rule_individual or "
            "dispatch_rule_callee"
        )
    if kind == "dispatch_rule_direct":
        if not rule.dispatch_rule_direct.room_name:
            raise InvalidArgument("dispatch_rule_direct needs a room_name")
        _check_bytes(rule.dispatch_rule_direct.room_name, "room_name", MAX_NAME_BYTES)
    else:
        _check_bytes(getattr(rule, kind).room_prefix, "room_prefix", MAX_PREFIX_BYTES)
    _check_bytes(_pin(rule), "pin", MAX_PIN_BYTES)


def _check_filter(items: Sequence[str], field: str, max_item_bytes: int) -> None:
    if len(items) > MAX_FILTER_ITEMS:
        raise InvalidArgument(f"{field} has more than {MAX_FILTER_ITEMS} items")
    for item in items:
        if not item:
            raise InvalidArgument(f"{field} has an empty item")
        _check_bytes(item, field + " item", max_item_bytes)


def _check_room_config(config: room_pb.RoomConfiguration, limits: Limits) -> None:
    _check_bytes(config.metadata, "room_config.metadata", limits.max_metadata_bytes)
    for i, agent in enumerate(config.agents):
        where = f"room_config.agents[{i}]"
        # An empty agent_name is allowed: it dispatches the automatic (unnamed) agent.
        _check_bytes(agent.agent_name, where + ".agent_name", MAX_NAME_BYTES)
        _check_bytes(agent.metadata, where + ".metadata", limits.max_metadata_bytes)
        _check_attributes(agent.attributes, where + ".attributes", limits)
        check_restart_policy(agent.restart_policy, where + ".")
        check_deployment(agent.deployment, where + ": ")


def _check_attributes(attributes: Mapping[str, str], field: str, limits: Limits) -> None:
    size = sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items())
    if size > limits.max_attributes_bytes:
        raise InvalidArgument(
            f"{field} size exceeds limits ({size} > {limits.max_attributes_bytes} bytes)"
        )


def _check_bytes(value: str, field: str, limit: int) -> None:
    size = len(value.encode())
    if size > limit:
        raise InvalidArgument(f"{field} size exceeds limits ({size} > {limit} bytes)")


# -- conflicts ---------------------------------------------------------------------------

_NUMBER = re.compile(r"\+?[\d\- ()]+")
_NUMBER_FORMATTING = str.maketrans("", "", " -()")


def normalize_number(number: str) -> str:
    """``+`` and the digits of a phone number; anything that is not one is returned unchanged."""
    if not number or not _NUMBER.fullmatch(number):
        return number
    digits = number.translate(_NUMBER_FORMATTING)
    return digits if digits.startswith("+") else "+" + digits


def check_conflicts(rules: Iterable[sip_pb.SIPDispatchRuleInfo]) -> None:
    """Raise ``RuleConflict`` if two rules claim the same trunk, numbers and PIN."""
    claimed: dict[tuple[str, str, str, str], sip_pb.SIPDispatchRuleInfo] = {}
    for info in rules:
        for key in _claims(info):
            other = claimed.setdefault(key, info)
            if other is not info:
                raise RuleConflict(
                    f"dispatch rule {_describe_rule(info)} conflicts with {_describe_rule(other)}:"
                    " both apply to the same trunk, caller number, called number and PIN"
                )


def _claims(info: sip_pb.SIPDispatchRuleInfo) -> Iterator[tuple[str, str, str, str]]:
    """(PIN, trunk, caller, called) for every combination the rule covers; "" = any."""
    pin = _pin(info.rule)
    trunks = list(info.trunk_ids) or [""]
    callers = [normalize_number(n) for n in info.inbound_numbers] or [""]
    called = [normalize_number(n) for n in info.numbers] or [""]
    for trunk, caller, callee in product(trunks, callers, called):
        yield pin, trunk, caller, callee


def _describe_rule(info: sip_pb.SIPDispatchRuleInfo) -> str:
    name = f" ({info.name!r})" if info.name else ""
    return (info.sip_dispatch_rule_id or _NEW_RULE) + name


# -- matching ----------------------------------------------------------------------------


def match_inbound(
    rules: Sequence[sip_pb.SIPDispatchRuleInfo],
    call: InboundCall,
    *,
    random_suffix: Callable[[], str] | None = None,
) -> InboundMatch:
    """The room and participant for ``call``; raises ``NoRuleMatched``, ``RuleConflict`` or
    ``PinRequired``. ``random_suffix`` makes the suffix of randomised room names (default:
    12 random base57 characters, as the reference's)."""
    return _evaluate(select_rule(rules, call), call, random_suffix or _random_suffix)


def _random_suffix() -> str:
    return ids.new_id("")


def select_rule(
    rules: Sequence[sip_pb.SIPDispatchRuleInfo], call: InboundCall
) -> sip_pb.SIPDispatchRuleInfo:
    """The best rule for ``call`` (see the module docstring)."""
    candidates = [info for info in rules if _applies(info, call)]
    if not candidates:
        raise NoRuleMatched(_no_match_message(call, defined=len(rules)))
    check_conflicts(candidates)
    on_trunk = [info for info in candidates if info.trunk_ids]
    return min(on_trunk or candidates, key=_rank)


def _applies(info: sip_pb.SIPDispatchRuleInfo, call: InboundCall) -> bool:
    if info.rule.WhichOneof("rule") is None:
        return False  # a stored rule without a kind can route nowhere
    if info.inbound_numbers and call.from_number not in info.inbound_numbers:
        return False
    if info.numbers and call.to_number not in info.numbers:
        return False
    if info.trunk_ids and call.trunk_id not in info.trunk_ids:
        return False
    return _pin_allows(_pin(info.rule), call)


def _pin_allows(rule_pin: str, call: InboundCall) -> bool:
    if call.no_pin:
        return not rule_pin
    if call.pin:
        # A PIN was entered: only rules with that PIN, never a fallback to open rules.
        return rule_pin == call.pin
    return True


def _rank(info: sip_pb.SIPDispatchRuleInfo) -> tuple[int, str, str]:
    kind = info.rule.WhichOneof("rule")
    priority = _KINDS.index(kind) if kind in _KINDS else len(_KINDS)
    if not _pin(info.rule):
        priority += 100
    if not info.inbound_numbers:
        priority += 1000
    if not info.numbers:
        priority += 1000
    return priority, _room_or_prefix(info.rule), info.sip_dispatch_rule_id


def _no_match_message(call: InboundCall, defined: int) -> str:
    trunk = f"trunk {call.trunk_id}" if call.trunk_id else "no trunk"
    pin = " with a PIN" if call.pin else ""
    why = "" if defined else " (no dispatch rules are defined)"
    return (
        f"no SIP dispatch rule matched call {call.call_id} from {call.from_number!r} "
        f"to {call.to_number!r} on {trunk}{pin}{why}"
    )


def _evaluate(
    info: sip_pb.SIPDispatchRuleInfo, call: InboundCall, random_suffix: Callable[[], str]
) -> InboundMatch:
    if _pin(info.rule) and not call.pin:
        raise PinRequired(info.sip_dispatch_rule_id)
    caller = call.from_number
    identity = "sip_" + caller
    attributes = dict(info.attributes)
    attributes["sip.callID"] = call.call_id
    attributes["sip.trunkID"] = call.trunk_id
    if info.hide_phone_number:
        identity = "sip_" + hashlib.sha256(caller.encode()).digest()[:8].hex()
        caller = caller[-4:] if len(caller) > 4 else caller[-1:]
    else:
        attributes["sip.phoneNumber"] = call.from_number
        attributes["sip.hostname"] = call.from_host
        attributes["sip.trunkPhoneNumber"] = call.to_number
    attributes["sip.ruleID"] = info.sip_dispatch_rule_id
    config = info.room_config if info.HasField("room_config") else None
    return InboundMatch(
        rule_id=info.sip_dispatch_rule_id,
        room=_room_name(info.rule, caller, call.to_number, random_suffix),
        agents=[] if config is None else [_copy(agent) for agent in config.agents],
        room_config=None if config is None else _copy(config),
        room_preset=info.room_preset,
        participant_identity=identity,
        participant_name="Phone " + caller,
        participant_metadata=info.metadata,
        participant_attributes=attributes,
        hide_phone_number=info.hide_phone_number,
    )


def _room_name(
    rule: sip_pb.SIPDispatchRule, caller: str, called: str, random_suffix: Callable[[], str]
) -> str:
    """Direct: the room. Individual: [prefix_]caller[_random]. Callee: [prefix_]called[_random]."""
    kind = rule.WhichOneof("rule")
    if kind == "dispatch_rule_direct":
        return rule.dispatch_rule_direct.room_name
    if kind == "dispatch_rule_individual":
        individual = rule.dispatch_rule_individual
        randomize, number, prefix = not individual.no_randomness, caller, individual.room_prefix
    else:
        callee = rule.dispatch_rule_callee
        randomize, number, prefix = callee.randomize, called, callee.room_prefix
    room = f"{prefix}_{number}" if prefix else number
    return f"{room}_{random_suffix()}" if randomize else room


def _pin(rule: sip_pb.SIPDispatchRule) -> str:
    kind = rule.WhichOneof("rule")
    return str(getattr(rule, kind).pin) if kind else ""


def _room_or_prefix(rule: sip_pb.SIPDispatchRule) -> str:
    kind = rule.WhichOneof("rule")
    if kind == "dispatch_rule_direct":
        return rule.dispatch_rule_direct.room_name
    return str(getattr(rule, kind).room_prefix) if kind else ""


def _copy(message: M) -> M:
    duplicate = type(message)()
    duplicate.CopyFrom(message)
    return duplicate
