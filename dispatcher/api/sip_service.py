"""``livekit.SIP`` dispatch-rule calls, and resolving an inbound call against the rules.

Only the dispatch-rule methods of ``livekit.SIP`` are served (no trunks, no outbound calls).
Each needs the token's ``sip.admin`` grant, as the reference requires. ``resolve_inbound`` is
what the SIP edge's inbound-call endpoint runs: load the rules, pick one, name the room.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from livekit.protocol import models as models_pb
from livekit.protocol import sip as sip_pb

from dispatcher.api.access import Authorizer
from dispatcher.api.http import Request
from dispatcher.api.twirp import TwirpError, TwirpService
from dispatcher.api.validation import Limits
from dispatcher.sip import store
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

    def _require_admin(self, request: Request) -> None:
        if not self._auth.claims(request).sip.admin:
            raise TwirpError.unauthenticated("permissions denied: token lacks the sip admin grant")


async def resolve_inbound(client: Client, call: InboundCall) -> InboundMatch:
    """The room and participant for an inbound call, chosen from the stored rules.

    Raises ``TwirpError`` (``invalid_argument``) for an unusable call report, and
    ``NoRuleMatched``, ``RuleConflict`` or ``PinRequired`` otherwise; each of those has
    ``twirp_error()`` giving the answer to send.
    """
    validate_call(call)
    return match_inbound(await store.load_rules(client), call)


async def _conflict_is_invalid(write: Awaitable[Rule]) -> Rule:
    # A write that would conflict with a stored rule is the request's fault.
    try:
        return await write
    except RuleConflict as exc:
        raise TwirpError.invalid_argument(str(exc)) from exc


def _require_rule_id(rule_id: str) -> None:
    if not rule_id:
        raise TwirpError.invalid_argument("sip_dispatch_rule_id is required")


def _page(rules: Sequence[Rule], page: models_pb.Pagination) -> list[Rule]:
    """Rules (sorted by id) after ``page.after_id``, at most ``page.limit`` of them."""
    after = [rule for rule in rules if rule.sip_dispatch_rule_id > page.after_id]
    return after[: page.limit] if page.limit > 0 else after
