"""Stored records to LiveKit protobuf messages: what API clients and agent entrypoints read."""

from __future__ import annotations

from typing import Any

from livekit.protocol import agent, agent_dispatch, models

from dispatcher.wire import DispatchRecord, JobAttempt, JobRecord, JobSpec


def dispatch_message(record: DispatchRecord, job: JobRecord | None) -> agent_dispatch.AgentDispatch:
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
    if job is not None:
        message.state.jobs.extend(job_message(job, a) for a in (*job.past, job.current))
    return message


def job_from_spec(spec: JobSpec) -> agent.Job:
    """The LiveKit ``Job`` of a spec, without state (an agent reads it as ``ctx.job``)."""
    return agent.Job(
        id=spec.job_id,
        dispatch_id=spec.dispatch_id,
        type=_enum(spec.job_type),
        room=models.Room(sid=spec.room_sid, name=spec.room),
        agent_name=spec.agent_name,
        metadata=spec.metadata,
        deployment=spec.deployment,
        attributes=spec.attributes,
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
