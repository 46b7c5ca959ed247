"""A room's lifetime as its partition's lease holder sees it. Pure: time comes in as an argument.

A room closes when nobody is in it: ``empty_timeout`` after creation if nobody ever joined,
``departure_timeout`` after the last participant left. Agents and egress participants do not
keep a room open and get no participant or publisher jobs (they are there because of it).
The room also remembers its live dispatches, which participant and publisher jobs come from.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from dispatcher.rooms import is_dependent
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


def created(room: RoomRecord) -> RoomLife:
    return RoomLife(room=room)


def participant(life: RoomLife, identity: str) -> ParticipantRecord | None:
    return next((p for p in life.present if p.identity == identity), None)


def joined(life: RoomLife, person: ParticipantRecord) -> RoomLife:
    """The room with ``person`` in it (unchanged for a dependent or present participant)."""
    if is_dependent(person) or participant(life, person.identity) is not None:
        return life
    present = (*life.present, person)
    return msgspec.structs.replace(life, present=present, joined_ever=True, emptied_at=0)


def left(life: RoomLife, identity: str, now: int) -> RoomLife:
    if participant(life, identity) is None:
        return life
    present = tuple(p for p in life.present if p.identity != identity)
    return msgspec.structs.replace(
        life,
        present=present,
        publishers=life.publishers - {identity},
        emptied_at=0 if present else now,
    )


def published(life: RoomLife, identity: str) -> RoomLife:
    if participant(life, identity) is None or identity in life.publishers:
        return life
    return msgspec.structs.replace(life, publishers=life.publishers | {identity})


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


def jobs_for_dispatch(
    life: RoomLife, dispatch: DispatchRecord, has_pool: HasPool, partition: int, now: int
) -> list[jobs.Step]:
    """A new dispatch's jobs: the room job, plus participant and publisher jobs for those
    already in the room when servers of those types exist. The room job is left out only
    when the agent's servers all serve other job types."""
    name, sid = dispatch.agent_name, life.room.sid
    typed = [t for t in (JobType.PARTICIPANT, JobType.PUBLISHER) if has_pool(pool_name(name, t))]
    steps = []
    if has_pool(pool_name(name, JobType.ROOM)) or not typed:
        event = DispatchCreated(dispatch=dispatch, room_sid=sid, received_ns=dispatch.created_at)
        steps.append(jobs.created(event, partition, now, sid))
    for person in life.present:
        if JobType.PARTICIPANT in typed:
            steps.append(
                jobs.for_participant(dispatch, sid, person, JobType.PARTICIPANT, partition, now)
            )
        if JobType.PUBLISHER in typed and person.identity in life.publishers:
            steps.append(
                jobs.for_participant(dispatch, sid, person, JobType.PUBLISHER, partition, now)
            )
    return steps


def jobs_for_participant(
    life: RoomLife,
    person: ParticipantRecord,
    job_type: JobType,
    has_pool: HasPool,
    partition: int,
    now: int,
) -> list[jobs.Step]:
    """A participant's jobs of ``job_type``: one per live dispatch whose agent has servers
    of that type."""
    return [
        jobs.for_participant(d, life.room.sid, person, job_type, partition, now)
        for d in life.dispatches
        if has_pool(pool_name(d.agent_name, job_type))
    ]
