"""Stored records to LiveKit protobuf messages: what API clients and agent entrypoints read."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from livekit.protocol import agent, agent_dispatch, models

from dispatcher.room_records import participant_kind
from dispatcher.wire import DispatchRecord, JobAttempt, JobRecord, JobSpec, ParticipantRecord


def dispatch_message(
    record: DispatchRecord, jobs: Iterable[JobRecord] = ()
) -> agent_dispatch.AgentDispatch:
    """The dispatch with its jobs: the room job first, then participant and publisher jobs
    in the order they were created, each with its past attempts before its current one."""
    message = agent_dispatch.AgentDispatch(
        id=record.id,
        agent_name=record.agent_name,
        room=record.room,
        metadata=record.metadata,
        restart_policy=_enum(record.restart_policy),
        deployment=record.deployment,
        attributes=record.attributes,
    )
    message.state.created_at = record.created_at
    message.state.deleted_at = record.deleted_at
    for job in sorted(jobs, key=lambda j: (bool(j.spec.key), j.spec.received_ns, j.spec.key)):
        message.state.jobs.extend(job_message(job, a) for a in (*job.past, job.current))
    return message


def job_from_spec(spec: JobSpec) -> agent.Job:
    """The LiveKit ``Job`` of a spec, without state (an agent reads it as ``ctx.job``)."""
    job = agent.Job(
        id=spec.job_id,
        dispatch_id=spec.dispatch_id,
        type=_enum(spec.job_type),
        room=models.Room(sid=spec.room_sid, name=spec.room, metadata=spec.room_metadata),
        agent_name=spec.agent_name,
        metadata=spec.metadata,
        deployment=spec.deployment,
        attributes=spec.attributes,
    )
    if (person := spec.participant) is not None:
        job.participant.CopyFrom(participant_message(person))
        job.state.participant_identity = person.identity
    return job


def participant_message(person: ParticipantRecord) -> models.ParticipantInfo:
    return models.ParticipantInfo(
        sid=person.sid,
        identity=person.identity,
        name=person.name,
        kind=_enum(participant_kind(person.kind)),
        metadata=person.metadata,
        attributes=person.attributes,
        joined_at=person.joined_at // 1_000_000_000,
        joined_at_ms=person.joined_at // 1_000_000,
        state=_enum(models.ParticipantInfo.ACTIVE),
    )


def job_message(job: JobRecord, attempt: JobAttempt) -> agent.Job:
    message = job_from_spec(job.spec)
    message.id = attempt.job_id
    state = message.state
    state.status = _enum(attempt.status)
    state.error = attempt.error
    state.started_at = attempt.started_at
    state.ended_at = attempt.ended_at
    state.updated_at = attempt.updated_at
    state.worker_id = attempt.server_id
    state.reason = _enum(attempt.reason)
    return message


def _enum(value: int) -> Any:
    """Protobuf enum fields take plain ints; the stubs type them as the enum wrapper."""
    return int(value)
