"""Participant and publisher jobs that need to know who is in a room.

A new dispatch starts a job for everyone present (and a publisher job for everyone who has
published); a first publish starts publisher jobs of every dispatch. Who is present is read
from the room's participants hash, once per room and after a whole batch is applied, so a
participant who left in the same batch gets nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from dispatcher.store import keys
from dispatcher.store.fastlane import FastLane
from dispatcher.wire import (
    DispatchRecord,
    JobType,
    ParticipantRecord,
    RoomLife,
    participant_decoder,
)

Wanted = list[tuple[ParticipantRecord, JobType]]


@dataclass(frozen=True, slots=True)
class Fanout:
    """Per-participant jobs to start: of one new dispatch for everyone present, or of every
    dispatch for one participant who published."""

    room: str
    dispatch_id: str | None = None
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class Presence:
    people: dict[str, ParticipantRecord]  # by identity
    publishers: set[str]  # identities that have published


async def presence(fast: FastLane, k: keys.PartitionKeys, names: list[str]) -> dict[str, Presence]:
    """Who is in each room and who has published, in one pipelined round trip."""
    replies = await asyncio.gather(
        *(fast.execute("HVALS", k.participants(r)) for r in names),
        *(fast.execute("HKEYS", k.room_info(r)) for r in names),
    )
    return {
        room: Presence(
            {p.identity: p for p in map(participant_decoder.decode, people)},
            {f[2:].decode() for f in fields if f.startswith(b"p:")},
        )
        for room, people, fields in zip(
            names, replies[: len(names)], replies[len(names) :], strict=True
        )
    }


def wanted(fanout: Fanout, life: RoomLife, seen: Presence) -> tuple[list[DispatchRecord], Wanted]:
    """The dispatches and (participant, job type) pairs a fan-out starts jobs for."""
    if fanout.dispatch_id is not None:
        dispatches = [d for d in life.dispatches if d.id == fanout.dispatch_id]
        pairs = [(p, JobType.PARTICIPANT) for p in seen.people.values()]
        pairs += [(p, JobType.PUBLISHER) for i, p in seen.people.items() if i in seen.publishers]
        return dispatches, pairs
    person = seen.people.get(fanout.identity or "")
    return list(life.dispatches), [(person, JobType.PUBLISHER)] if person is not None else []
