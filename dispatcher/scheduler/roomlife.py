"""A room's lifetime as its partition's lease holder sees it. Pure: time comes in as an argument.

A room closes when nobody is in it: ``empty_timeout`` after creation if nobody ever joined,
``departure_timeout`` after the last participant left. Agents and egress participants do not
keep a room open and get no participant or publisher jobs (they are there because of it).
The room also remembers its live dispatches, which participant and publisher jobs come from.
Presence is a count, so a change costs the same in a room of two and of ten thousand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from dispatcher.room_records import is_dependent
from dispatcher.scheduler import jobs
from dispatcher.wire import (
    DispatchCreated,
    DispatchRecord,
    JobType,
    ParticipantRecord,
    RoomLife,
    RoomRecord,
    pool_name,
)

_NS = 1_000_000_000
TYPED = (JobType.PARTICIPANT, JobType.PUBLISHER)


def created(room: RoomRecord) -> RoomLife:
    return RoomLife(room=room)


def joined(life: RoomLife, kind: str) -> RoomLife:
    """A participant session began (API nodes report each session once)."""
    if is_dependent(kind):
        return life
    return msgspec.structs.replace(life, present=life.present + 1, joined_ever=True, emptied_at=0)


def left(life: RoomLife, kind: str, now: int) -> RoomLife:
    if is_dependent(kind) or not life.present:
        return life
    present = life.present - 1
    return msgspec.structs.replace(life, present=present, emptied_at=0 if present else now)


def with_metadata(life: RoomLife, metadata: str) -> RoomLife:
    """UpdateRoomMetadata: jobs created from here on see the new metadata."""
    return msgspec.structs.replace(life, room=msgspec.structs.replace(life.room, metadata=metadata))


def with_dispatch(life: RoomLife, dispatch: DispatchRecord) -> RoomLife:
    if any(d.id == dispatch.id for d in life.dispatches):
        return life
    return msgspec.structs.replace(life, dispatches=(*life.dispatches, dispatch))


def without_dispatch(life: RoomLife, dispatch_id: str) -> RoomLife:
    dispatches = tuple(d for d in life.dispatches if d.id != dispatch_id)
    return msgspec.structs.replace(life, dispatches=dispatches)


def close_due(life: RoomLife) -> int | None:
    """When the room closes (unix ns), or None while someone is in it."""
    if life.present:
        return None
    if life.joined_ever:
        return life.emptied_at + life.room.departure_timeout * _NS
    return life.room.created_at + life.room.empty_timeout * _NS


# --- which jobs a room's events start ----------------------------------------------------------

HasPool = Callable[[str], bool]  # whether any agent server serves the pool


def typed_pools(dispatch: DispatchRecord, has_pool: HasPool) -> list[JobType]:
    """The per-participant job types the dispatch's agent has servers for."""
    return [t for t in TYPED if has_pool(pool_name(dispatch.agent_name, t))]


def room_job(
    life: RoomLife, dispatch: DispatchRecord, has_pool: HasPool, partition: int, now: int
) -> jobs.Step | None:
    """A new dispatch's room job, left out only when the agent's servers all serve other
    job types (with no servers at all it waits for them)."""
    if not has_pool(pool_name(dispatch.agent_name, JobType.ROOM)) and typed_pools(
        dispatch, has_pool
    ):
        return None
    sid = life.room.sid
    event = DispatchCreated(dispatch=dispatch, room_sid=sid, received_ns=dispatch.created_at)
    return jobs.created(event, partition, now, life.room)


def jobs_for_participants(
    life: RoomLife,
    dispatches: Iterable[DispatchRecord],
    people: Iterable[tuple[ParticipantRecord, JobType]],
    has_pool: HasPool,
    partition: int,
    now: int,
) -> list[jobs.Step]:
    """Participant or publisher jobs: one per (dispatch, participant, job type) whose agent
    has servers of that type; agents and egress get none."""
    return [
        jobs.for_participant(d, life.room, person, job_type, partition, now)
        for person, job_type in people
        if not is_dependent(person.kind)
        for d in dispatches
        if has_pool(pool_name(d.agent_name, job_type))
    ]
