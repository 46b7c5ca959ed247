"""A room's lifetime as its partition's lease holder sees it. Pure: time comes in as an argument.

A room closes when nobody is in it: ``empty_timeout`` after creation if nobody ever joined,
``departure_timeout`` after the last participant left. Agents and egress participants do not
keep a room open (they are there because of it).
"""

from __future__ import annotations

import msgspec

from dispatcher.rooms import is_dependent
from dispatcher.wire import ParticipantRecord, RoomLife, RoomRecord

_NS = 1_000_000_000


def created(room: RoomRecord) -> RoomLife:
    return RoomLife(room=room)


def joined(life: RoomLife, participant: ParticipantRecord) -> RoomLife:
    if is_dependent(participant) or participant.identity in life.present:
        return life
    present = life.present | {participant.identity}
    return msgspec.structs.replace(life, present=present, joined_ever=True, emptied_at=0)


def left(life: RoomLife, identity: str, now: int) -> RoomLife:
    if identity not in life.present:
        return life
    present = life.present - {identity}
    return msgspec.structs.replace(life, present=present, emptied_at=0 if present else now)


def close_due(life: RoomLife) -> int | None:
    """When the room closes (unix ns), or None while someone is in it."""
    if life.present:
        return None
    if life.joined_ever:
        return life.emptied_at + life.room.departure_timeout * _NS
    return life.room.created_at + life.room.empty_timeout * _NS
