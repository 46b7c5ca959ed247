"""Webhook bodies and signatures (dispatcher.webhooks.events, .signing): what
``livekit-api``'s ``WebhookReceiver`` verifies and parses, and which job changes are events."""

from __future__ import annotations

import time

import pytest
from livekit import api
from livekit.protocol import agent, models

from dispatcher.scheduler import jobs
from dispatcher.webhooks import events, signing
from dispatcher.wire import (
    DispatchCreated,
    DispatchRecord,
    Hook,
    JobRecord,
    JobReport,
    JobStatus,
    ParticipantLeft,
    ParticipantRecord,
    RoomRecord,
    encode,
    hook_decoder,
)

KEY, SECRET = "hookkey", "hooksecrethooksecrethooksecret12"
NOW = 1_700_000_000_123_456_789
ROOM = RoomRecord(name="room-1", sid="RM_room00000001", created_at=NOW - 10**9, metadata="m")
PERSON = ParticipantRecord(sid="PA_person000001", identity="alice", name="Alice", joined_at=NOW)


def receive(hook: Hook, secret: str = SECRET, num_dropped: int = 0) -> api.WebhookEvent:
    """Through the wire format and back, then as a LiveKit receiver reads it."""
    body = events.body(hook_decoder.decode(encode(hook)), num_dropped)
    auth = signing.authorization(body, KEY, SECRET, int(time.time()))
    receiver = api.WebhookReceiver(api.TokenVerifier(KEY, secret))
    return receiver.receive(body.decode(), auth)


def report(record: JobRecord, status: JobStatus, error: str = "") -> JobReport:
    return JobReport(
        dispatch_id=record.spec.dispatch_id, job_id=record.current.job_id, attempt=0,
        server_id="AW_server000001", pool="agent-a", status=status, error=error, at=NOW,
    )  # fmt: skip


def running_job() -> tuple[JobRecord, JobRecord]:
    dispatch = DispatchRecord(id="AD_dispatch0001", agent_name="agent-a", room=ROOM.name)
    created = DispatchCreated(dispatch=dispatch, room_sid=ROOM.sid, received_ns=NOW)
    assigned = jobs.placed(jobs.created(created, 3, NOW).record, "AW_server000001", NOW)
    return assigned, jobs.on_report(assigned, report(assigned, JobStatus.RUNNING), NOW).record


def test_room_started_is_verified_and_parsed_by_livekits_receiver() -> None:
    event = receive(events.hook(events.ROOM_STARTED, NOW, room=ROOM))

    assert event.event == "room_started"
    assert event.id.startswith("EV_")
    assert event.created_at == NOW // 10**9
    assert (event.room.name, event.room.sid, event.room.metadata) == ("room-1", ROOM.sid, "m")


def test_a_receiver_with_another_secret_refuses_the_event() -> None:
    hook = events.hook(events.ROOM_FINISHED, NOW, room=ROOM)

    with pytest.raises(Exception, match="Signature"):
        receive(hook, secret="another-secret-another-secret-12")


def test_a_body_changed_after_signing_is_refused() -> None:
    body = events.body(events.hook(events.ROOM_STARTED, NOW, room=ROOM))
    auth = signing.authorization(body, KEY, SECRET, int(time.time()))
    receiver = api.WebhookReceiver(api.TokenVerifier(KEY, SECRET))

    with pytest.raises(Exception, match="hash mismatch"):
        receiver.receive(body.decode().replace("room-1", "room-2"), auth)


def test_participant_joined_carries_the_participant() -> None:
    event = receive(events.hook(events.PARTICIPANT_JOINED, NOW, room=ROOM, participant=PERSON))

    assert event.event == "participant_joined"
    assert (event.participant.sid, event.participant.identity) == ("PA_person000001", "alice")
    assert event.participant.state == models.ParticipantInfo.ACTIVE
    assert event.room.name == "room-1"


def test_participant_left_carries_identity_kind_and_disconnected() -> None:
    left = ParticipantLeft(room=ROOM.name, identity="bob", at=NOW, kind="sip")
    person = events.left_participant(left)

    event = receive(events.hook(events.PARTICIPANT_LEFT, NOW, room=ROOM, participant=person))

    assert event.event == "participant_left"
    assert event.participant.identity == "bob"
    assert event.participant.kind == models.ParticipantInfo.SIP
    assert event.participant.state == models.ParticipantInfo.DISCONNECTED


def test_job_started_carries_the_job_and_its_room() -> None:
    before, after = running_job()
    hook = events.job_hook(before, after, NOW)
    assert hook is not None

    event = receive(hook)

    assert event.event == "job_started"
    assert event.job.id == after.current.job_id
    assert event.job.dispatch_id == "AD_dispatch0001"
    assert event.job.state.status == agent.JS_RUNNING
    assert event.job.state.worker_id == "AW_server000001"
    assert (event.room.name, event.room.sid) == ("room-1", ROOM.sid)


def test_job_ended_carries_status_reason_and_error() -> None:
    _, running = running_job()
    terminating = jobs.on_room_closed(running, NOW).record
    ended = jobs.on_report(terminating, report(terminating, JobStatus.FAILED, "stopped"), NOW)
    assert events.job_hook(running, terminating, NOW) is None
    hook = events.job_hook(terminating, ended.record, NOW)
    assert hook is not None

    event = receive(hook)

    assert event.event == "job_ended"
    assert event.job.state.status == agent.JS_FAILED
    assert event.job.state.reason == agent.JSR_ROOM_CLOSED
    assert event.job.state.error == "stopped"


def test_only_changes_into_running_or_ended_are_job_events() -> None:
    assigned, running = running_job()

    assert events.job_hook(None, assigned, NOW) is None
    assert events.job_hook(running, running, NOW) is None
    started = events.job_hook(assigned, running, NOW)
    assert started is not None and started.event == "job_started"


def test_num_dropped_is_said_in_the_body() -> None:
    assert receive(events.hook(events.ROOM_STARTED, NOW, room=ROOM), num_dropped=3).num_dropped == 3


def test_the_token_is_livekits_shape() -> None:
    body = b"{}"
    claims = api.TokenVerifier(KEY, SECRET).verify(
        signing.authorization(body, KEY, SECRET, int(time.time()))
    )
    assert claims.sha256 == "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o="
