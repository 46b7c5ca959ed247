"""The state every example starts from, made through the API itself: rooms with
participants and dispatches (one room full), and SIP dispatch rules of each kind. ``Known``
holds the names and ids the strategies draw from, so requests reach past "not found"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import models
from livekit.protocol import room as room_pb
from livekit.protocol import sip as sip_pb

from tests.fuzz.client import Connection
from tests.fuzz.tokens import mint

FULL_ROOM, OPEN_ROOM, SIP_ROOM = "fuzz-room", "fuzz-open", "fuzz-sip-room"
TRUNK = "TR_fuzz"


@dataclass(frozen=True)
class Known:
    rooms: tuple[str, ...]
    identities: tuple[str, ...]
    agents: tuple[str, ...]
    dispatch_ids: tuple[str, ...]
    rule_ids: tuple[str, ...]
    trunks: tuple[str, ...]
    numbers: tuple[str, ...]
    pins: tuple[str, ...]
    deployments: tuple[str, ...]


def call(
    conn: Connection, route: str, message: Message, claims: dict[str, Any], reply: type[Message]
) -> Any:
    """A protobuf call that must succeed (the seeding's own)."""
    headers = [
        ("Content-Type", "application/protobuf"),
        ("Authorization", f"Bearer {mint(claims)}"),
    ]
    answer = conn.request("POST", f"/twirp/{route}", headers, message.SerializeToString())
    assert answer.status == 200, f"seeding {route} failed: {answer!r}"
    return reply.FromString(answer.body)


def join(conn: Connection, room: str, identity: str, method: str = "Join") -> None:
    claims = {"sub": identity, "video": {"roomJoin": True, "room": room}}
    headers = [("Authorization", f"Bearer {mint(claims)}")]
    answer = conn.request("POST", f"/twirp/dispatcher.Participant/{method}", headers, b"")
    assert answer.status == 200, f"seeding {method} {identity} failed: {answer!r}"


def seed(conn: Connection) -> Known:
    _rooms(conn)
    rules = _sip_rules(conn)
    dispatch_ids = [
        d.id
        for room in (FULL_ROOM, OPEN_ROOM)
        for d in call(
            conn,
            "livekit.AgentDispatchService/ListDispatch",
            dispatch_pb.ListAgentDispatchRequest(room=room),
            _admin(room),
            dispatch_pb.ListAgentDispatchResponse,
        ).agent_dispatches
    ]
    return Known(
        rooms=(FULL_ROOM, OPEN_ROOM, SIP_ROOM, "fuzz-absent"),
        identities=("alice", "bob", "carol", "dave"),
        agents=("fuzz-agent", "fuzz-agent-2", "sip-agent", ""),
        dispatch_ids=tuple(dispatch_ids),
        rule_ids=tuple(rules),
        trunks=(TRUNK, "TR_other"),
        numbers=("+15550001", "+15550002", "+15550003", "15550001", "+1 (555) 0001"),
        pins=("1234", "0000"),
        deployments=("", "prod", "bad_deploy"),
    )


def _admin(room: str) -> dict[str, Any]:
    return {"video": {"roomAdmin": True, "room": room}}


def _rooms(conn: Connection) -> None:
    create = "livekit.RoomService/CreateRoom"
    grant = {"video": {"roomCreate": True}}
    agent = dispatch_pb.RoomAgentDispatch(agent_name="fuzz-agent", metadata='{"k":"v"}')
    full = room_pb.CreateRoomRequest(name=FULL_ROOM, max_participants=2, agents=[agent])
    call(conn, create, full, grant, models.Room)
    call(conn, create, room_pb.CreateRoomRequest(name=OPEN_ROOM, metadata="m"), grant, models.Room)
    second = dispatch_pb.CreateAgentDispatchRequest(room=FULL_ROOM, agent_name="fuzz-agent-2")
    call(conn, "livekit.AgentDispatchService/CreateDispatch", second, _admin(FULL_ROOM),
         dispatch_pb.AgentDispatch)  # fmt: skip
    join(conn, FULL_ROOM, "alice")
    join(conn, FULL_ROOM, "bob")
    join(conn, OPEN_ROOM, "carol")
    join(conn, OPEN_ROOM, "carol", "Publish")


def _sip_rules(conn: Connection) -> list[str]:
    rule = sip_pb.SIPDispatchRule
    direct = rule(dispatch_rule_direct=sip_pb.SIPDispatchRuleDirect(room_name=SIP_ROOM))
    individual = rule(
        dispatch_rule_individual=sip_pb.SIPDispatchRuleIndividual(room_prefix="call", pin="1234")
    )
    callee = rule(dispatch_rule_callee=sip_pb.SIPDispatchRuleCallee(randomize=True))
    agents = room_pb.RoomConfiguration(
        agents=[dispatch_pb.RoomAgentDispatch(agent_name="sip-agent")], max_participants=3
    )
    requests = [
        sip_pb.CreateSIPDispatchRuleRequest(
            rule=direct, trunk_ids=[TRUNK], inbound_numbers=["+15550001"], name="direct"
        ),
        sip_pb.CreateSIPDispatchRuleRequest(rule=individual, inbound_numbers=["+15550002"]),
        sip_pb.CreateSIPDispatchRuleRequest(rule=callee, room_config=agents, name="callee"),
    ]
    return [
        call(
            conn,
            "livekit.SIP/CreateSIPDispatchRule",
            request,
            {"sip": {"admin": True}},
            sip_pb.SIPDispatchRuleInfo,
        ).sip_dispatch_rule_id
        for request in requests
    ]
