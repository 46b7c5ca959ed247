"""The routes under fuzz, and how to draw requests for each.

Twirp routes with a protobuf request type get protobuf bodies (valid, mutated, random) and
protojson bodies (either casing, edited); each carries credentials for the grant its body
needs. ``dispatcher.Participant`` routes read nothing but the token, so there the token's
claims are what is drawn. ``dispatcher.SIPInbound/Call`` reads a JSON call report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import strategies as st
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import models
from livekit.protocol import room as room_pb
from livekit.protocol import sip as sip_pb

from tests.fuzz.jsonbodies import as_document, edited, json_bodies, json_values, message_documents
from tests.fuzz.protos import Hints, messages, protobuf_bodies
from tests.fuzz.requests import FuzzRequest, content_type, extra_headers, http_method
from tests.fuzz.seed import Known
from tests.fuzz.text import nasty_text
from tests.fuzz.tokens import Authorizes, credentials

Claims = dict[str, Any]
_NOBODY: Claims = {"sub": "mallory", "video": {"roomJoin": True, "room": "fuzz-room"}}


def grants(needed: Claims) -> Authorizes:
    """Whether claims carry ``needed`` (every key, recursively, with the same value)."""

    def carries(claims: Any, wanted: Any) -> bool:
        if not isinstance(wanted, dict):
            return bool(claims == wanted)
        return isinstance(claims, dict) and all(
            carries(claims.get(k), v) for k, v in wanted.items()
        )

    return lambda claims: carries(claims, needed)


def joins(asked: str | None) -> Authorizes:
    """Whether claims let a participant in: ``roomJoin``, a room, an identity, and the
    room ``?room=`` names (if any)."""

    def authorizes(claims: Claims) -> bool:
        video, sub = claims.get("video"), claims.get("sub")
        if not isinstance(video, dict) or video.get("roomJoin") is not True:
            return False
        room = video.get("room")
        ok = isinstance(room, str) and room != "" and isinstance(sub, str) and sub != ""
        return ok and asked in (None, room)

    return authorizes


def _admin(message: Message | None) -> Claims:
    room = getattr(message, "room", "") if message is not None else ""
    return {"video": {"roomAdmin": True, "room": room}}


def _video(grant: str) -> Callable[[Message | None], Claims]:
    return lambda _: {"video": {grant: True}}


def _sip(grant: str) -> Callable[[Message | None], Claims]:
    return lambda _: {"sip": {grant: True}}


@dataclass(frozen=True)
class Route:
    service: str
    method: str
    request_type: type[Message] | None  # None: a raw service reading its own body
    reply_type: type[Message] | None
    grant: Callable[[Message | None], Claims]  # claims authorising the decoded request
    read_only: bool = False
    ungranted: Claims = field(default_factory=lambda: _NOBODY)

    @property
    def name(self) -> str:
        return f"{self.service}/{self.method}"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Route({self.name!r})"


_DISPATCH, _ROOMS, _SIP = "livekit.AgentDispatchService", "livekit.RoomService", "livekit.SIP"
ROUTES = [
    Route(_DISPATCH, "CreateDispatch", dispatch_pb.CreateAgentDispatchRequest,
          dispatch_pb.AgentDispatch, _admin),
    Route(_DISPATCH, "ListDispatch", dispatch_pb.ListAgentDispatchRequest,
          dispatch_pb.ListAgentDispatchResponse, _admin, read_only=True),
    Route(_DISPATCH, "DeleteDispatch", dispatch_pb.DeleteAgentDispatchRequest,
          dispatch_pb.AgentDispatch, _admin),
    Route(_ROOMS, "CreateRoom", room_pb.CreateRoomRequest, models.Room, _video("roomCreate")),
    Route(_ROOMS, "ListRooms", room_pb.ListRoomsRequest, room_pb.ListRoomsResponse,
          _video("roomList"), read_only=True),
    Route(_ROOMS, "DeleteRoom", room_pb.DeleteRoomRequest, room_pb.DeleteRoomResponse,
          _video("roomCreate")),
    Route(_SIP, "CreateSIPDispatchRule", sip_pb.CreateSIPDispatchRuleRequest,
          sip_pb.SIPDispatchRuleInfo, _sip("admin")),
    Route(_SIP, "ListSIPDispatchRule", sip_pb.ListSIPDispatchRuleRequest,
          sip_pb.ListSIPDispatchRuleResponse, _sip("admin"), read_only=True),
    Route(_SIP, "UpdateSIPDispatchRule", sip_pb.UpdateSIPDispatchRuleRequest,
          sip_pb.SIPDispatchRuleInfo, _sip("admin")),
    Route(_SIP, "DeleteSIPDispatchRule", sip_pb.DeleteSIPDispatchRuleRequest,
          sip_pb.SIPDispatchRuleInfo, _sip("admin")),
    Route("dispatcher.Participant", "Join", None, None, _video("roomJoin")),
    Route("dispatcher.Participant", "Leave", None, None, _video("roomJoin")),
    Route("dispatcher.Participant", "Publish", None, None, _video("roomJoin")),
    Route("dispatcher.SIPInbound", "Call", None, None, _sip("call"),
          ungranted={"sip": {"admin": True}}),
]  # fmt: skip


def requests(route: Route, known: Known) -> st.SearchStrategy[FuzzRequest]:
    if route.request_type is not None:
        return _twirp_requests(route, route.request_type, known)
    if route.service == "dispatcher.Participant":
        return _participant_requests(route, known)
    return _call_requests(route, known)


def hints(known: Known) -> Hints:
    """Strings per field name: the seeded names first, so requests reach existing state."""
    room = nasty_text(known.rooms)
    numbers = nasty_text(known.numbers)
    return {
        "room": room, "name": room, "names": room, "room_name": room, "room_prefix": room,
        "agent_name": nasty_text(known.agents),
        "dispatch_id": nasty_text(known.dispatch_ids),
        "sip_dispatch_rule_id": nasty_text(known.rule_ids),
        "dispatch_rule_ids": nasty_text(known.rule_ids),
        "trunk_ids": nasty_text(known.trunks), "set": nasty_text(known.trunks),
        "add": nasty_text(known.trunks), "remove": nasty_text(known.trunks),
        "inbound_numbers": numbers, "numbers": numbers,
        "pin": nasty_text(known.pins),
        "deployment": nasty_text(known.deployments),
        "metadata": nasty_text(huge_percent=10),
        "after_id": nasty_text(known.rule_ids),
    }  # fmt: skip


@dataclass(frozen=True)
class _Body:
    data: bytes
    kind: str


def _twirp_requests(
    route: Route, request_type: type[Message], known: Known
) -> st.SearchStrategy[FuzzRequest]:
    valid = messages(request_type, hints(known))
    names = [f.name for f in request_type.DESCRIPTOR.fields]
    bodies = st.one_of(
        protobuf_bodies(valid).map(lambda data: _Body(data, "protobuf")),
        json_bodies(message_documents(valid, names)).map(lambda data: _Body(data, "json")),
    )
    return _twirp_request(route, request_type, bodies)


@st.composite
def _twirp_request(
    draw: st.DrawFn, route: Route, request_type: type[Message], bodies: st.SearchStrategy[_Body]
) -> FuzzRequest:
    body = draw(bodies)
    media = draw(content_type(body.kind))
    claims = route.grant(_as_server_reads(request_type, body.data, media))
    creds = draw(credentials(claims, grants(claims), route.ungranted))
    headers = [("Content-Type", media)] if media is not None else []
    headers += draw(extra_headers())
    return FuzzRequest(route.name, draw(http_method()), "", tuple(headers), body.data,
                       body.kind, creds)  # fmt: skip


def _as_server_reads(request_type: type[Message], body: bytes, media: str | None) -> Message | None:
    """The request as the node decodes it (to put its room in the token), or None."""
    message = request_type()
    try:
        if (media or "").partition(";")[0].strip().lower() == "application/json":
            json_format.Parse(body, message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except Exception:  # whatever the node makes of it, the grant cannot name its room
        return None
    return message


# -- dispatcher.Participant ----------------------------------------------------------------


def _participant_requests(route: Route, known: Known) -> st.SearchStrategy[FuzzRequest]:
    config = messages(room_pb.RoomConfiguration, hints(known))
    names = [f.name for f in room_pb.RoomConfiguration.DESCRIPTOR.fields]
    configs = st.one_of(
        st.builds(as_document, config, st.booleans()).flatmap(lambda d: edited(d, names)),
        json_values(),
    )
    return _participant_request(route, known, configs)


_LONG_NAME = "r" * 257


@st.composite
def _participant_request(
    draw: st.DrawFn, route: Route, known: Known, configs: st.SearchStrategy[Any]
) -> FuzzRequest:
    room = draw(st.one_of(nasty_text(known.rooms, huge_percent=0), st.just(_LONG_NAME)))
    identity = draw(nasty_text(known.identities, huge_percent=0))
    join = draw(st.integers(0, 99)) < 95
    claims: Claims = {"sub": identity, "video": {"roomJoin": join, "room": room}}
    extra = {
        "name": nasty_text(huge_percent=0, surrogates=True),
        "kind": st.sampled_from(["", "standard", "agent", "sip", "egress", "AGENT", "x"]),
        "metadata": nasty_text(huge_percent=0, surrogates=True),
        "attributes": st.dictionaries(
            nasty_text(huge_percent=0), nasty_text(huge_percent=0), max_size=3
        ),
        "roomConfig": configs,
    }
    claims |= draw(st.fixed_dictionaries({}, optional=extra))
    query = draw(st.one_of(st.just(""), nasty_text(known.rooms, huge_percent=0, surrogates=True)))
    if query:
        query = "?room=" + quote(query.encode("utf-8", "surrogatepass"))
    asked = dict(parse_qsl(query[1:], keep_blank_values=True)).get("room") if query else None
    creds = draw(credentials(claims, joins(asked), _admin(None)))
    media = draw(content_type("none"))
    headers = [("Content-Type", media)] if media is not None else []
    body = draw(st.one_of(st.just(b""), st.just(b"{}"), st.binary(max_size=32)))
    return FuzzRequest(route.name, draw(http_method()), query, tuple(headers), body, "ignored",
                       creds)  # fmt: skip


# -- dispatcher.SIPInbound/Call ------------------------------------------------------------

_CALL_FIELDS = ["call_id", "trunk_id", "from_number", "to_number", "from_host", "pin", "no_pin"]


def _call_requests(route: Route, known: Known) -> st.SearchStrategy[FuzzRequest]:
    numbers = nasty_text(known.numbers)
    fields = {
        "trunk_id": nasty_text(known.trunks),
        "from_host": nasty_text(["sip.example.com"], surrogates=True),
        "pin": nasty_text(known.pins),
        "no_pin": st.booleans(),
    }
    reports = st.fixed_dictionaries(
        {"call_id": nasty_text(["call-1"]), "from_number": numbers, "to_number": numbers},
        optional=fields,
    )
    bodies = json_bodies(reports.flatmap(lambda report: edited(report, _CALL_FIELDS)))
    return _call_request(route, bodies)


@st.composite
def _call_request(draw: st.DrawFn, route: Route, bodies: st.SearchStrategy[bytes]) -> FuzzRequest:
    body = draw(bodies)
    claims = route.grant(None)
    creds = draw(credentials(claims, grants(claims), route.ungranted))
    media = draw(content_type("json"))
    headers = [("Content-Type", media)] if media is not None else []
    return FuzzRequest(route.name, draw(http_method()), "", tuple(headers), body, "json", creds)
