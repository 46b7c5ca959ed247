"""Rooms as the API nodes build them: records, their dispatches and their LiveKit messages.

Every way a room comes to exist (CreateRoom, a participant's first join, an inbound SIP call,
CreateDispatch) builds its records here, so timeouts and automatic dispatch follow one rule:
a room created with no agents gets one dispatch with an empty agent name, which only agent
servers registered without a name receive. CreateDispatch is the exception: a room it
creates gets only the requested agent (the reference also starts the automatic agent there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from livekit.protocol import models
from livekit.protocol import room as room_pb
from livekit.protocol.agent_dispatch import CreateAgentDispatchRequest, RoomAgentDispatch

from dispatcher import ids
from dispatcher.wire import (
    DispatchRecord,
    DispatchTarget,
    RestartPolicy,
    RoomRecord,
)

DEFAULT_EMPTY_TIMEOUT_S = 300  # as the reference's room.empty_timeout
DEFAULT_DEPARTURE_TIMEOUT_S = 20  # as the reference's room.departure_timeout


@dataclass(frozen=True, slots=True)
class RoomSpec:
    """What a room is created with, from CreateRoom, a token's roomConfig or a SIP rule."""

    empty_timeout: int = 0
    departure_timeout: int = 0
    max_participants: int = 0
    metadata: str = ""
    agents: Sequence[RoomAgentDispatch] = ()

    @classmethod
    def of(cls, config: room_pb.RoomConfiguration | room_pb.CreateRoomRequest) -> RoomSpec:
        return cls(
            empty_timeout=config.empty_timeout,
            departure_timeout=config.departure_timeout,
            max_participants=config.max_participants,
            metadata=config.metadata,
            agents=list(config.agents),
        )


def new_room(name: str, spec: RoomSpec, now: int) -> RoomRecord:
    """A room record with a fresh sid and the default timeouts where none were given."""
    return RoomRecord(
        name=name,
        sid=ids.new_id("RM_"),
        created_at=now,
        empty_timeout=spec.empty_timeout or DEFAULT_EMPTY_TIMEOUT_S,
        departure_timeout=spec.departure_timeout or DEFAULT_DEPARTURE_TIMEOUT_S,
        max_participants=spec.max_participants,
        metadata=spec.metadata,
    )


def dispatch_of(
    room: RoomRecord,
    agent: RoomAgentDispatch | CreateAgentDispatchRequest,
    now: int,
    target: DispatchTarget | None = None,
) -> DispatchRecord:
    """A dispatch of ``agent`` (a room's agent entry, or a CreateDispatch request)."""
    return DispatchRecord(
        id=ids.dispatch_id(),
        agent_name=agent.agent_name,
        room=room.name,
        metadata=agent.metadata,
        restart_policy=RestartPolicy(agent.restart_policy),
        deployment=agent.deployment,
        attributes=dict(agent.attributes),
        created_at=now,
        target=target,
    )


def room_dispatches(room: RoomRecord, spec: RoomSpec, now: int) -> list[DispatchRecord]:
    """The dispatches a new room starts with: its agents, else the automatic one."""
    agents = spec.agents or [RoomAgentDispatch(agent_name="")]
    return [dispatch_of(room, agent, now) for agent in agents]


def room_message(room: RoomRecord, num_participants: int = 0) -> models.Room:
    created_ms = room.created_at // 1_000_000
    return models.Room(
        sid=room.sid,
        name=room.name,
        empty_timeout=room.empty_timeout,
        departure_timeout=room.departure_timeout,
        max_participants=room.max_participants,
        creation_time=created_ms // 1000,
        creation_time_ms=created_ms,
        metadata=room.metadata,
        num_participants=num_participants,
    )


def participant_kind(kind: str) -> int:
    """The token's ``kind`` claim as LiveKit's ``ParticipantInfo.Kind`` number."""
    try:
        return int(models.ParticipantInfo.Kind.Value(kind.upper()))
    except ValueError:
        return int(models.ParticipantInfo.STANDARD)


def is_dependent(kind: str) -> bool:
    """Agents and egress (a participant's ``kind``) never trigger participant or publisher
    jobs (as the reference)."""
    return kind.lower() in ("agent", "egress")
