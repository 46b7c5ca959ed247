"""``dispatcher.Participant``: participants connect (Join), publish (Publish) and disconnect
(Leave) with their own access token and nothing else, the load "connections per second"
measures.

Join needs ``video.roomJoin`` for ``video.room`` and an identity (``sub``). The join that
creates the room applies the token's ``roomConfig`` (timeouts, agents) exactly once, however
many participants connect at that moment: creation and the participant's entry are one
script call. On an existing room the token's agents are ignored and the reply says so, or,
with ``DISPATCHER_TOKEN_AGENTS=ensure``, the room gets each token agent it has no live
dispatch of. Replies are JSON; errors are Twirp errors.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec
from google.protobuf import json_format
from livekit.protocol import room as room_pb

from dispatcher import ids
from dispatcher.api.access import Authorizer
from dispatcher.api.auth import Claims
from dispatcher.api.http import Request, Response
from dispatcher.api.room_service import Joined, Opened, RoomStore, not_in_room
from dispatcher.api.twirp import TwirpService
from dispatcher.api.validation import Limits, check_room_spec, require
from dispatcher.errors import AuthError, ResourceExhausted
from dispatcher.room_records import RoomSpec
from dispatcher.store import calls, scripts
from dispatcher.wire import (
    ParticipantJoined,
    ParticipantPublished,
    ParticipantRecord,
    encode,
)

SERVICE = "dispatcher.Participant"
TokenAgents = Literal["applied", "ignored", "ensured", "none"]


class RoomInfo(msgspec.Struct):
    sid: str
    name: str
    created: bool


class ParticipantInfo(msgspec.Struct):
    sid: str
    identity: str
    reconnected: bool


class DispatchInfo(msgspec.Struct):
    id: str
    agent_name: str
    metadata: str


class JoinReply(msgspec.Struct):
    room: RoomInfo
    participant: ParticipantInfo
    token_agents: TokenAgents  # what became of the token's roomConfig agents
    dispatches: list[DispatchInfo]  # created by this join (the automatic one included)
    message: str


class LeaveReply(msgspec.Struct):
    room: str
    identity: str
    left: bool


class PublishReply(msgspec.Struct):
    room: str
    identity: str
    first: bool  # the participant's first publish in this session


_json = msgspec.json.Encoder()


class ParticipantService:
    def __init__(
        self, rooms: RoomStore, authorizer: Authorizer, limits: Limits, ensure_token_agents: bool
    ) -> None:
        self._rooms = rooms
        self._auth = authorizer
        self._limits = limits
        self._ensure = ensure_token_agents

    def twirp(self) -> TwirpService:
        service = TwirpService(SERVICE)
        service.add_raw("Join", self.join)
        service.add_raw("Leave", self.leave)
        service.add_raw("Publish", self.publish)
        return service

    async def join(self, _: None, request: Request) -> Response:
        claims = self._auth.room_join(request)
        # as CreateDispatch and ListDispatch would: a room they refuse is never created
        require(claims.video.room, "the token's room")
        spec = self._room_spec(claims)
        name = claims.video.room
        person = ParticipantRecord(
            sid=ids.new_id("PA_"),
            identity=claims.sub,
            name=claims.name,
            kind=claims.kind,
            metadata=claims.metadata,
            attributes=claims.attributes,
            joined_at=time.time_ns(),
        )
        opened = await self._rooms.open(
            name,
            spec,
            ensure=self._ensure,
            participant=person,
            joined_event=encode(ParticipantJoined(room=name, participant=person)),
        )
        if opened.joined == Joined.ROOM_FULL:
            limit = opened.room.max_participants
            raise ResourceExhausted(f"room {name!r} is full ({limit} participants)")
        return reply(_join_reply(opened, spec, self._ensure))

    async def leave(self, _: None, request: Request) -> Response:
        claims = self._auth.room_join(request)
        name, identity = claims.video.room, claims.sub
        if not await self._rooms.leave(name, identity, claims.kind):
            raise not_in_room(identity, name)
        return reply(LeaveReply(room=name, identity=identity, left=True))

    async def publish(self, _: None, request: Request) -> Response:
        """The participant publishes a track; its first publish starts publisher jobs."""
        claims = self._auth.room_join(request)
        name, identity = claims.video.room, claims.sub
        k = self._rooms.keys_of(name)
        event = ParticipantPublished(room=name, identity=identity)
        first = await scripts.publish(self._rooms.client, *calls.publish(k, event))
        if first == -1:
            raise not_in_room(identity, name)
        return reply(PublishReply(room=name, identity=identity, first=first == 1))

    def _room_spec(self, claims: Claims) -> RoomSpec:
        if claims.room_config is None:
            return RoomSpec()
        spec = RoomSpec.of(parse_room_config(bytes(claims.room_config)))
        check_room_spec(spec, self._limits)
        return spec


def parse_room_config(raw: bytes) -> room_pb.RoomConfiguration:
    """The token's ``roomConfig`` (protojson, either casing); a malformed one makes the
    token invalid, as in the reference."""
    config = room_pb.RoomConfiguration()
    if not raw.lstrip().startswith(b"{"):
        raise AuthError("invalid authorization token: roomConfig must be a JSON object")
    try:
        json_format.Parse(raw, config, ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError) as exc:
        raise AuthError(f"invalid authorization token: malformed roomConfig ({exc})") from None
    return config


def _join_reply(opened: Opened, spec: RoomSpec, ensure: bool) -> JoinReply:
    participant = opened.participant
    assert participant is not None  # a join always has one
    outcome, message = _token_agents_outcome(opened, spec, ensure)
    return JoinReply(
        room=RoomInfo(sid=opened.room.sid, name=opened.room.name, created=opened.created),
        participant=ParticipantInfo(
            sid=participant.sid,
            identity=participant.identity,
            reconnected=opened.joined == Joined.PRESENT,
        ),
        token_agents=outcome,
        dispatches=dispatch_infos(opened),
        message=message,
    )


def dispatch_infos(opened: Opened) -> list[DispatchInfo]:
    return [DispatchInfo(d.id, d.agent_name, d.metadata) for d in opened.dispatches]


def _token_agents_outcome(opened: Opened, spec: RoomSpec, ensure: bool) -> tuple[TokenAgents, str]:
    wanted, made = len(spec.agents), len(opened.dispatches)
    if opened.created:
        if not wanted:
            return "none", "room created with the automatic agent dispatch"
        return "applied", f"room created with the token's {wanted} agent dispatch(es)"
    if not wanted:
        return "none", "joined an existing room"
    if ensure:
        return "ensured", (
            f"room exists: created {made} of the token's {wanted} agent dispatch(es); "
            "the room already had the others"
        )
    return "ignored", (
        f"room exists: the token's {wanted} agent dispatch(es) were not applied "
        "(roomConfig applies only when a join creates the room)"
    )


def reply(body: msgspec.Struct) -> Response:
    """A 200 JSON reply of our own services."""
    return Response(200, _json.encode(body), "application/json")
