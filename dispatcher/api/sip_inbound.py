"""``dispatcher.SIPInbound/Call``: the SIP edge reports an inbound call; the matching
dispatch rule names the room, which is created with the rule's agents (or the automatic
one) and joined by the caller as a SIP participant, in one script call like a token join.

The caller's details (``sip.callID``, ``sip.phoneNumber``, ``sip.trunkPhoneNumber``, ...)
reach every job this call creates as dispatch attributes, so the agent reads them from
``ctx.job.attributes`` without waiting for the participant. The edge authenticates with a
token carrying the ``sip.call`` grant; a call no rule matches gets ``not_found``.
"""

from __future__ import annotations

import time

import msgspec
from livekit.protocol.agent_dispatch import RoomAgentDispatch

from dispatcher import ids
from dispatcher.api.access import Authorizer
from dispatcher.api.http import Request, Response
from dispatcher.api.participant_service import (
    DispatchInfo,
    RoomInfo,
    dispatch_infos,
    reply,
)
from dispatcher.api.room_service import Joined, RoomStore
from dispatcher.api.sip_service import resolve_inbound
from dispatcher.api.twirp import TwirpError, TwirpService, check_json_depth, request_body
from dispatcher.errors import AuthError, ResourceExhausted
from dispatcher.room_records import RoomSpec
from dispatcher.sip.rules import InboundCall, InboundMatch
from dispatcher.store.client import Client
from dispatcher.wire import ParticipantJoined, ParticipantRecord, encode

SERVICE = "dispatcher.SIPInbound"
_MAX_BODY = 64 * 1024
_call_decoder = msgspec.json.Decoder(InboundCall)


class CallReply(msgspec.Struct):
    rule_id: str
    room: RoomInfo
    participant_identity: str
    participant_sid: str
    dispatches: list[DispatchInfo]  # created by this call (none when the room existed)


class SipInboundService:
    def __init__(
        self, rooms: RoomStore, client: Client, authorizer: Authorizer, ensure_agents: bool
    ) -> None:
        self._rooms = rooms
        self._client = client
        self._auth = authorizer
        self._ensure = ensure_agents

    def twirp(self) -> TwirpService:
        service = TwirpService(SERVICE)
        service.add_raw("Call", self.call)
        return service

    async def call(self, _: None, request: Request) -> Response:
        if not self._auth.claims(request).sip.call:
            raise AuthError("permissions denied: token lacks the sip call grant")
        call = _read_call(request)
        match = await resolve_inbound(self._client, call)
        caller = _caller(match)
        spec = _room_spec(match)
        opened = await self._rooms.open(
            match.room,
            spec,
            ensure=self._ensure and any(a.agent_name for a in spec.agents),
            participant=caller,
            joined_event=encode(ParticipantJoined(room=match.room, participant=caller)),
        )
        if opened.joined == Joined.ROOM_FULL:
            raise ResourceExhausted(f"room {match.room!r} is full")
        participant = opened.participant or caller
        return reply(
            CallReply(
                rule_id=match.rule_id,
                room=RoomInfo(sid=opened.room.sid, name=opened.room.name, created=opened.created),
                participant_identity=participant.identity,
                participant_sid=participant.sid,
                dispatches=dispatch_infos(opened),
            )
        )


def _read_call(request: Request) -> InboundCall:
    body = request_body(request, _MAX_BODY)
    check_json_depth(body, "call report")
    try:
        return _call_decoder.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise TwirpError.malformed(f"the call report could not be decoded: {exc}") from None


def _caller(match: InboundMatch) -> ParticipantRecord:
    return ParticipantRecord(
        sid=ids.new_id("PA_"),
        identity=match.participant_identity,
        name=match.participant_name,
        kind="sip",
        metadata=match.participant_metadata,
        attributes=dict(match.participant_attributes),
        joined_at=time.time_ns(),
    )


def _room_spec(match: InboundMatch) -> RoomSpec:
    """The rule's room settings, with the caller's details on each of its agents."""
    spec = RoomSpec.of(match.room_config) if match.room_config is not None else RoomSpec()
    sip = {k: v for k, v in match.participant_attributes.items() if k.startswith("sip.")}
    agents = [_with_attributes(agent, sip) for agent in match.agents or spec.agents]
    return RoomSpec(
        empty_timeout=spec.empty_timeout,
        departure_timeout=spec.departure_timeout,
        max_participants=spec.max_participants,
        metadata=spec.metadata,
        agents=agents or [RoomAgentDispatch(agent_name="", attributes=sip)],
    )


def _with_attributes(agent: RoomAgentDispatch, extra: dict[str, str]) -> RoomAgentDispatch:
    copy = RoomAgentDispatch()
    copy.CopyFrom(agent)
    copy.attributes.update(extra)
    return copy
