"""What an entrypoint and a request handler read of a job: ``ctx.job`` is the LiveKit ``Job``
of the spec, built on first read and then the same object for the context and the request."""

from __future__ import annotations

import pytest

from dispatcher.wire import JobSpec, ParticipantRecord
from workers import context
from workers.context import JobContext, JobRequest, job_message

SPEC = JobSpec(
    job_id="AJ_1",
    dispatch_id="AD_1",
    attempt=2,
    partition=3,
    room="lobby",
    room_sid="RM_1",
    agent_name="helper",
    metadata='{"x": 1}',
    attributes={"k": "v"},
    participant=ParticipantRecord(sid="PA_1", identity="alice"),
)


def test_ctx_job_is_the_specs_livekit_job_with_this_server_as_worker() -> None:
    ctx = JobContext(spec=SPEC, worker_id="AW_1")
    assert ctx.job == job_message(SPEC, "AW_1")
    assert ctx.job.state.worker_id == "AW_1"
    assert ctx.job.participant.identity == "alice"


def test_ctx_job_is_built_once_and_only_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    def counting(spec: JobSpec, server_id: str) -> object:
        built.append(spec.job_id)
        return job_message(spec, server_id)

    monkeypatch.setattr(context, "job_message", counting)
    ctx = JobContext(spec=SPEC, worker_id="AW_1")
    assert built == []
    assert ctx.job is ctx.job
    assert built == ["AJ_1"]


def test_ctx_room_names_the_room() -> None:
    room = JobContext(spec=SPEC, worker_id="AW_1").room
    assert (room.name, room.sid) == ("lobby", "RM_1")


async def test_the_request_and_the_entrypoint_see_the_same_job() -> None:
    ctx = JobContext(spec=SPEC, worker_id="AW_1")
    request = JobRequest(ctx)
    assert request.job is ctx.job
    assert (request.id, request.agent_name) == ("AJ_1", "helper")
