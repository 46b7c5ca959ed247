"""The job state machine of one dispatch. Pure: no I/O; time comes in as an argument.

Phases: ``pending`` (no server yet) -> ``assigned`` (slot reserved, waiting for the server's
RUNNING report) -> ``running`` -> ``ended``; a deleted dispatch passes through
``terminating`` while its server winds the job down. Timers are derived from the phase and
``current.updated_at``, so they survive a change of lease holder with the record itself.
Each transition returns the new record and the effects the scheduler must carry out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from dispatcher import ids, targets
from dispatcher.wire import (
    DispatchCreated,
    DispatchRecord,
    JobAttempt,
    JobReason,
    JobRecord,
    JobRejected,
    JobReport,
    JobSpec,
    JobStatus,
    JobType,
    ParticipantRecord,
    RestartPolicy,
    RoomRecord,
)

_MAX_REMEMBERED_REJECTIONS = 8
# A job turned down again waits before its next offer: 50 ms after the second refusal,
# doubling to 2 s. The first refusal is re-offered at once (it usually goes elsewhere); a
# pool whose only servers keep refusing (a LiveKit worker over its load threshold, a
# request handler that declines) must not be asked hundreds of times a second.
_REJECTION_BACKOFF_MS = 50
_REJECTION_BACKOFF_MAX_MS = 2000
_ENDED = (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED)
REJECTED_BY = "rejected by "  # how an attempt a server turned down ends (metrics read it)


@dataclass(frozen=True, slots=True)
class Place:
    job_key: str


@dataclass(frozen=True, slots=True)
class Terminate:
    pool: str
    server_id: str
    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Release:
    pool: str
    server_id: str
    job_id: str


Effect = Place | Terminate | Release


@dataclass(slots=True)
class Step:
    record: JobRecord
    effects: list[Effect] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Timeouts:
    assign_ms: int = 5000
    terminate_grace_ms: int = 20000
    capacity_wait_ms: int = 0  # how long a job may wait for a free slot; 0: for ever


def created(
    event: DispatchCreated, partition: int, now: int, room: RoomRecord | None = None
) -> Step:
    """A new dispatch's room job; ``room`` is the room as its lease holder knows it (the
    event's sid may be that of a room this dispatch did not end up creating)."""
    sid, metadata = (room.sid, room.metadata) if room else (event.room_sid, "")
    return _new_job(event.dispatch, sid, metadata, partition, now, event.received_ns)


def for_participant(
    dispatch: DispatchRecord,
    room: RoomRecord,
    participant: ParticipantRecord,
    job_type: JobType,
    partition: int,
    now: int,
) -> Step:
    """A participant or publisher job: one per dispatch, job type and participant."""
    key = f"{dispatch.id}/{job_type.name.lower()}/{participant.identity}"
    return _new_job(
        dispatch, room.sid, room.metadata, partition, now, now, key, job_type, participant
    )


def _new_job(
    d: DispatchRecord,
    room_sid: str,
    room_metadata: str,
    partition: int,
    now: int,
    received_ns: int,
    key: str = "",
    job_type: JobType = JobType.ROOM,
    participant: ParticipantRecord | None = None,
) -> Step:
    spec = JobSpec(
        job_id=ids.job_id(key or d.id, 0),
        dispatch_id=d.id,
        attempt=0,
        partition=partition,
        room=d.room,
        room_sid=room_sid,
        agent_name=d.agent_name,
        metadata=d.metadata,
        room_metadata=room_metadata,
        job_type=job_type,
        deployment=d.deployment,
        attributes=d.attributes,
        received_ns=received_ns,
        key=key,
        participant=participant,
        target=d.target,
    )
    current = JobAttempt(job_id=spec.job_id, updated_at=now)
    record = JobRecord(spec=spec, phase="pending", current=current, restart_policy=d.restart_policy)
    return Step(record, [Place(spec.job_key)])


def placed(record: JobRecord, server_id: str, now: int) -> JobRecord:
    current = record.current
    if current.reason is JobReason.NO_CAPACITY:  # it waited; now it has a server
        current = msgspec.structs.replace(current, reason=JobReason.UNSPECIFIED, error="")
    current = msgspec.structs.replace(current, server_id=server_id, updated_at=now)
    return msgspec.structs.replace(record, phase="assigned", current=current)


def placeable_at(record: JobRecord) -> int:
    """When (unix ns) a pending job may next be offered: at once unless refused twice."""
    refusals = len(record.rejected_by)
    if refusals < 2 or record.phase != "pending":
        return 0
    delay_ms = min(_REJECTION_BACKOFF_MS << (refusals - 2), _REJECTION_BACKOFF_MAX_MS)
    return record.current.updated_at + delay_ms * 1_000_000


def waiting_for_capacity(record: JobRecord, target_matched: bool = True) -> JobRecord:
    """A pending job no server has a slot for: ListDispatch says so (for a targeted job,
    whether no live server matches its target at all). Its timers keep their start
    (``updated_at`` is left alone)."""
    error = _waiting(record.spec, target_matched)
    if record.phase != "pending" or record.current.error == error:
        return record
    current = msgspec.structs.replace(record.current, reason=JobReason.NO_CAPACITY, error=error)
    return msgspec.structs.replace(record, current=current)


def _waiting(spec: JobSpec, target_matched: bool) -> str:
    agent = f"agent server of agent {spec.agent_name!r}"
    if spec.target is None:
        return f"waiting for a free {agent}"
    wanted = targets.describe(spec.target)
    if not target_matched:
        return f"waiting for an {agent} matching target {wanted}: no live server matches"
    return f"waiting for a free {agent} matching target {wanted}"


def on_report(record: JobRecord, report: JobReport, now: int) -> Step:
    if report.attempt != record.spec.attempt or record.phase == "ended":
        return _stray(record, report)
    if report.fenced:
        return on_server_lost(record, now, report.error)
    if report.status is JobStatus.RUNNING:
        return Step(_running(record, report, now))
    if report.status in _ENDED:
        return Step(_ended(record, now, report.status, report.error))
    return Step(record)


def on_rejected(record: JobRecord, event: JobRejected, now: int) -> Step:
    if event.attempt != record.spec.attempt or record.phase not in ("pending", "assigned"):
        return Step(record)
    if event.terminate:
        return Step(_ended(record, now, JobStatus.SUCCESS, event.reason or "rejected"))
    rejected = (*record.rejected_by, event.server_id)[-_MAX_REMEMBERED_REJECTIONS:]
    record = msgspec.structs.replace(record, rejected_by=rejected)
    return _retry(record, now, f"{REJECTED_BY}{event.server_id}: {event.reason}")


def on_deleted(
    record: JobRecord,
    now: int,
    reason: JobReason = JobReason.DISPATCH_DELETED,
    why: str = "dispatch deleted",
) -> Step:
    if record.phase == "pending":
        return Step(_ended(record, now, JobStatus.FAILED, why, reason))
    if record.phase not in ("assigned", "running"):
        return Step(record)
    current = msgspec.structs.replace(record.current, reason=reason, updated_at=now)
    record = msgspec.structs.replace(record, phase="terminating", current=current)
    return Step(record, [_terminate(record, why)])


def on_participant_left(record: JobRecord, now: int) -> Step:
    """A participant or publisher job ends with its participant."""
    return on_deleted(record, now, JobReason.UNSPECIFIED, "participant left")


def on_room_closed(record: JobRecord, now: int) -> Step:
    """The room closed (timeouts) or was deleted: its jobs end as the dispatch's would."""
    return on_deleted(record, now, JobReason.ROOM_CLOSED, "room closed")


def on_timer(record: JobRecord, now: int) -> Step:
    """Called once the record's timer is due (see ``due_at``)."""
    c = record.current
    if record.phase == "assigned":
        rejected = (*record.rejected_by, c.server_id)[-_MAX_REMEMBERED_REJECTIONS:]
        effects: list[Effect] = [_terminate(record, "assignment timed out"), _release(record)]
        step = _retry(
            msgspec.structs.replace(record, rejected_by=rejected),
            now,
            f"agent server {c.server_id} did not start the job in time",
        )
        step.effects[:0] = effects
        return step
    if record.phase == "terminating":
        error = "agent server did not confirm the termination"
        return Step(_ended(record, now, JobStatus.FAILED, error, c.reason), [_release(record)])
    if record.phase == "pending":
        error = _no_capacity(record, now)
        return Step(_ended(record, now, JobStatus.FAILED, error, JobReason.NO_CAPACITY))
    return Step(record)


def _no_capacity(record: JobRecord, now: int) -> str:
    waited_s = (now - record.current.updated_at) / 1e9
    spec = record.spec
    matching = f" matching target {targets.describe(spec.target)}" if spec.target else ""
    return (
        f"no agent server of agent {spec.agent_name!r}{matching} had a free slot "
        f"within {waited_s:.0f} s"
    )


def on_confirmed(record: JobRecord, now: int) -> Step:
    """The assignment timer fired but the server had already confirmed the job: it is
    starting, and its RUNNING report has not been read yet."""
    if record.phase != "assigned":
        return Step(record)
    current = msgspec.structs.replace(
        record.current, status=JobStatus.RUNNING, started_at=now, updated_at=now
    )
    return Step(msgspec.structs.replace(record, phase="running", current=current))


def on_server_lost(record: JobRecord, now: int, error: str = "") -> Step:
    """The job's server is gone (or fenced itself off). The caller has already taken back
    its reservation, so the server cannot start it late."""
    if record.phase not in ("assigned", "running", "terminating"):
        return Step(record)
    error = error or f"agent server {record.current.server_id} was lost"
    if record.phase == "terminating" or record.restart_policy is RestartPolicy.NEVER:
        return Step(_ended(record, now, JobStatus.FAILED, error, record.current.reason))
    return _retry(record, now, error)


def due_at(record: JobRecord, timeouts: Timeouts) -> int | None:
    """When the record's timer fires (unix ns), or None when it has none."""
    if record.phase == "assigned":
        return record.current.updated_at + timeouts.assign_ms * 1_000_000
    if record.phase == "terminating":
        return record.current.updated_at + timeouts.terminate_grace_ms * 1_000_000
    if record.phase == "pending" and timeouts.capacity_wait_ms > 0:
        return record.current.updated_at + timeouts.capacity_wait_ms * 1_000_000
    return None


def server_of(record: JobRecord) -> str | None:
    """The agent server holding the job, for phases in which one does."""
    if record.phase in ("assigned", "running", "terminating"):
        return record.current.server_id
    return None


def _running(record: JobRecord, report: JobReport, now: int) -> JobRecord:
    if record.phase not in ("pending", "assigned"):
        return record
    current = msgspec.structs.replace(
        record.current,
        status=JobStatus.RUNNING,
        server_id=report.server_id,
        started_at=report.at or now,
        updated_at=now,
    )
    return msgspec.structs.replace(record, phase="running", current=current)


def _ended(
    record: JobRecord,
    now: int,
    status: JobStatus,
    error: str = "",
    reason: JobReason = JobReason.UNSPECIFIED,
) -> JobRecord:
    current = msgspec.structs.replace(
        record.current,
        status=status,
        error=error,
        reason=reason or record.current.reason,
        ended_at=now,
        updated_at=now,
    )
    return msgspec.structs.replace(record, phase="ended", current=current)


def _retry(record: JobRecord, now: int, error: str) -> Step:
    """End the current attempt and queue the next one (a new, deterministic job id)."""
    past = _ended(record, now, JobStatus.FAILED, error, JobReason.RETRYING).current
    attempt = record.spec.attempt + 1
    spec = msgspec.structs.replace(
        record.spec, attempt=attempt, job_id=ids.job_id(record.spec.job_key, attempt)
    )
    current = JobAttempt(job_id=spec.job_id, updated_at=now, reason=JobReason.RETRYING)
    record = msgspec.structs.replace(
        record, spec=spec, phase="pending", current=current, past=(*record.past, past)
    )
    return Step(record, [Place(spec.job_key)])


def _stray(record: JobRecord, report: JobReport) -> Step:
    """A report for an attempt that is no longer current: stop that job if it still runs."""
    return Step(record, list(stray_report(report)))


def _terminate(record: JobRecord, reason: str) -> Terminate:
    c = record.current
    return Terminate(record.spec.pool, c.server_id, c.job_id, reason)


def _release(record: JobRecord) -> Release:
    c = record.current
    return Release(record.spec.pool, c.server_id, c.job_id)


def stray_report(report: JobReport) -> list[Terminate]:
    """A job reports RUNNING for a dispatch that has no live job here: stop it."""
    if report.status is not JobStatus.RUNNING:
        return []
    return [Terminate(report.pool, report.server_id, report.job_id, "no such job")]
