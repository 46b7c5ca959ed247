"""``livekit.SIP`` dispatch-rule and inbound-trunk calls, and resolving an inbound call.

The dispatch-rule and inbound-trunk methods of ``livekit.SIP`` are served (outbound trunks
and calls belong to LiveKit's SIP service and answer ``unimplemented``). Each needs the
token's ``sip.admin`` grant, as the reference requires. ``resolve_inbound`` is what the SIP
edge's inbound-call endpoint runs: find the trunk the call came in on (unless the edge
says), load the rules, pick one, name the room.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

import msgspec
from livekit.protocol import models as models_pb
from livekit.protocol import sip as sip_pb

from dispatcher.api.access import Authorizer
from dispatcher.api.http import Request
from dispatcher.api.twirp import TwirpService
from dispatcher.api.validation import Limits, check_metadata
from dispatcher.errors import AuthError, InvalidArgument
from dispatcher.sip import store, trunks
from dispatcher.sip.rules import (
    InboundCall,
    InboundMatch,
    RuleConflict,
    match_inbound,
    rule_from_create_request,
    rule_from_update_request,
    validate_call,
    validate_rule,
)
from dispatcher.store.client import Client

SERVICE = "livekit.SIP"

Rule = sip_pb.SIPDispatchRuleInfo


class SipService:
    """Create, list, update and delete dispatch rules; every call needs ``sip.admin``."""

    def __init__(
        self, client: Client, authorizer: Authorizer, limits: Limits | None = None
    ) -> None:
        self._client = client
        self._auth = authorizer
        self._limits = limits or Limits()

    def twirp(self) -> TwirpService:
        service = TwirpService(SERVICE)
        service.add("CreateSIPDispatchRule", sip_pb.CreateSIPDispatchRuleRequest, self.create_rule)
        service.add("ListSIPDispatchRule", sip_pb.ListSIPDispatchRuleRequest, self.list_rules)
        service.add("UpdateSIPDispatchRule", sip_pb.UpdateSIPDispatchRuleRequest, self.update_rule)
        service.add("DeleteSIPDispatchRule", sip_pb.DeleteSIPDispatchRuleRequest, self.delete_rule)
        service.add("CreateSIPInboundTrunk", sip_pb.CreateSIPInboundTrunkRequest, self.create_trunk)
        service.add("ListSIPInboundTrunk", sip_pb.ListSIPInboundTrunkRequest, self.list_trunks)
        service.add("GetSIPInboundTrunk", sip_pb.GetSIPInboundTrunkRequest, self.get_trunk)
        service.add("UpdateSIPInboundTrunk", sip_pb.UpdateSIPInboundTrunkRequest, self.update_trunk)
        service.add("DeleteSIPTrunk", sip_pb.DeleteSIPTrunkRequest, self.delete_trunk)
        return service

    async def create_rule(self, req: sip_pb.CreateSIPDispatchRuleRequest, request: Request) -> Rule:
        self._require_admin(request)
        rule = rule_from_create_request(req)
        validate_rule(rule, self._limits)
        return await _conflict_is_invalid(store.create_rule(self._client, rule))

    async def list_rules(
        self, req: sip_pb.ListSIPDispatchRuleRequest, request: Request
    ) -> sip_pb.ListSIPDispatchRuleResponse:
        self._require_admin(request)
        rules = await store.list_rules(self._client, req.dispatch_rule_ids, req.trunk_ids)
        return sip_pb.ListSIPDispatchRuleResponse(items=_page(rules, req.page))

    async def update_rule(self, req: sip_pb.UpdateSIPDispatchRuleRequest, request: Request) -> Rule:
        self._require_admin(request)
        _require_rule_id(req.sip_dispatch_rule_id)

        def change(current: Rule) -> Rule:
            updated = rule_from_update_request(current, req)
            validate_rule(updated, self._limits)
            return updated

        return await _conflict_is_invalid(
            store.update_rule(self._client, req.sip_dispatch_rule_id, change)
        )

    async def delete_rule(self, req: sip_pb.DeleteSIPDispatchRuleRequest, request: Request) -> Rule:
        self._require_admin(request)
        _require_rule_id(req.sip_dispatch_rule_id)
        return await store.delete_rule(self._client, req.sip_dispatch_rule_id)

    async def create_trunk(
        self, req: sip_pb.CreateSIPInboundTrunkRequest, request: Request
    ) -> sip_pb.SIPInboundTrunkInfo:
        self._require_admin(request)
        _check_trunk(req.trunk, self._limits)
        return await trunks.create(self._client, req.trunk)

    async def list_trunks(
        self, req: sip_pb.ListSIPInboundTrunkRequest, request: Request
    ) -> sip_pb.ListSIPInboundTrunkResponse:
        self._require_admin(request)
        found = trunks.listed(await trunks.load(self._client), req.trunk_ids, req.numbers)
        after = [t for t in found if t.sip_trunk_id > req.page.after_id]
        items = after[: req.page.limit] if req.page.limit > 0 else after
        return sip_pb.ListSIPInboundTrunkResponse(items=items)

    async def get_trunk(
        self, req: sip_pb.GetSIPInboundTrunkRequest, request: Request
    ) -> sip_pb.GetSIPInboundTrunkResponse:
        self._require_admin(request)
        trunk = await trunks.get(self._client, _trunk_id(req.sip_trunk_id))
        return sip_pb.GetSIPInboundTrunkResponse(trunk=trunk)

    async def update_trunk(
        self, req: sip_pb.UpdateSIPInboundTrunkRequest, request: Request
    ) -> sip_pb.SIPInboundTrunkInfo:
        self._require_admin(request)
        trunk_id = _trunk_id(req.sip_trunk_id)
        action = req.WhichOneof("action")
        if action == "replace":
            _check_trunk(req.replace, self._limits)
            return await trunks.replace(self._client, trunk_id, req.replace)
        if action == "update":
            return await trunks.update(self._client, trunk_id, req.update)
        raise InvalidArgument("either replace or update is required")

    async def delete_trunk(
        self, req: sip_pb.DeleteSIPTrunkRequest, request: Request
    ) -> sip_pb.SIPTrunkInfo:
        self._require_admin(request)
        trunk = await trunks.delete(self._client, _trunk_id(req.sip_trunk_id))
        return sip_pb.SIPTrunkInfo(
            sip_trunk_id=trunk.sip_trunk_id,
            kind=sip_pb.SIPTrunkInfo.TRUNK_INBOUND,
            inbound_numbers=trunk.numbers,
            name=trunk.name,
            metadata=trunk.metadata,
        )

    def _require_admin(self, request: Request) -> None:
        if not self._auth.claims(request).sip.admin:
            raise AuthError("permissions denied: token lacks the sip admin grant")


async def resolve_inbound(client: Client, call: InboundCall) -> InboundMatch:
    """The room and participant for an inbound call, chosen from the stored rules.

    Raises ``InvalidArgument`` for an unusable call report, and ``NoRuleMatched``,
    ``RuleConflict`` or ``PinRequired`` when no rule can take the call.
    """
    validate_call(call)
    if not call.trunk_id:
        trunk_id = trunks.trunk_of_call(await trunks.load(client), call.to_number, call.from_number)
        call = msgspec.structs.replace(call, trunk_id=trunk_id)
    return match_inbound(await store.load_rules(client), call)


async def _conflict_is_invalid(write: Awaitable[Rule]) -> Rule:
    # A write that would conflict with a stored rule is the request's fault.
    try:
        return await write
    except RuleConflict as exc:
        raise InvalidArgument(str(exc)) from exc


def _trunk_id(trunk_id: str) -> str:
    if not trunk_id:
        raise InvalidArgument("sip_trunk_id is required")
    return trunk_id


def _check_trunk(trunk: sip_pb.SIPInboundTrunkInfo, limits: Limits) -> None:
    check_metadata(trunk.metadata, limits)
    for number in trunk.numbers:
        if not number.strip():
            raise InvalidArgument("numbers must not be empty strings")


def _require_rule_id(rule_id: str) -> None:
    if not rule_id:
        raise InvalidArgument("sip_dispatch_rule_id is required")


def _page(rules: Sequence[Rule], page: models_pb.Pagination) -> list[Rule]:
    """Rules (sorted by id) after ``page.after_id``, at most ``page.limit`` of them."""
    after = [rule for rule in rules if rule.sip_dispatch_rule_id > page.after_id]
    return after[: page.limit] if page.limit > 0 else after
