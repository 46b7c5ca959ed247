"""Stream events and stored records survive msgpack encoding, across versions."""

from __future__ import annotations

import gc

import msgspec
import pytest

from dispatcher import wire
from dispatcher.wire import (
    Assignment,
    DispatchCreated,
    DispatchDeleted,
    DispatchRecord,
    Event,
    InboxMessage,
    JobAttempt,
    JobReason,
    JobRecord,
    JobRejected,
    JobReport,
    JobSpec,
    JobStatus,
    RestartPolicy,
    RoomRecord,
    ServerInfo,
    Termination,
    dispatch_decoder,
    encode,
    event_decoder,
    inbox_decoder,
    job_decoder,
    room_decoder,
    server_info_decoder,
)

DISPATCH = DispatchRecord(
    id="AD_dispatch00001",
    agent_name="agent-a",
    room="room-1",
    metadata='{"x": 1}',
    restart_policy=RestartPolicy.NEVER,
    deployment="prod",
    attributes={"k": "v"},
    created_at=123,
    deleted_at=0,
)

SPEC = JobSpec(
    job_id="AJ_job000000001",
    dispatch_id=DISPATCH.id,
    attempt=2,
    partition=7,
    room="room-1",
    room_sid="RM_room00000001",
    agent_name="agent-a",
    metadata="m",
    job_type=1,
    deployment="prod",
    attributes={"a": "b"},
    received_ns=99,
)

EVENTS: list[Event] = [
    DispatchCreated(dispatch=DISPATCH, room_sid="RM_room00000001", received_ns=456),
    DispatchDeleted(room="room-1", dispatch_id=DISPATCH.id, deleted_at=789),
    JobReport(
        dispatch_id=DISPATCH.id,
        job_id=SPEC.job_id,
        attempt=2,
        server_id="AW_server000001",
        pool="agent-a",
        status=JobStatus.FAILED,
        error="boom",
        at=1000,
    ),
    JobRejected(
        dispatch_id=DISPATCH.id,
        job_id=SPEC.job_id,
        attempt=2,
        server_id="AW_server000001",
        terminate=True,
        reason="busy",
    ),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_event_round_trips_through_the_event_decoder(event: Event) -> None:
    decoded = event_decoder.decode(encode(event))

    assert type(decoded) is type(event)
    assert decoded == event


def test_every_event_type_is_covered() -> None:
    assert {type(e) for e in EVENTS} == {DispatchCreated, DispatchDeleted, JobReport, JobRejected}


def test_event_with_only_required_fields_round_trips_with_defaults() -> None:
    event = JobRejected(dispatch_id="AD_1", job_id="AJ_1", attempt=0, server_id="AW_1")

    decoded = event_decoder.decode(encode(event))

    assert decoded == event
    assert isinstance(decoded, JobRejected)
    assert decoded.terminate is False
    assert decoded.reason == ""


def test_enums_decode_as_their_enum_types() -> None:
    decoded = event_decoder.decode(encode(EVENTS[2]))

    assert isinstance(decoded, JobReport)
    assert decoded.status is JobStatus.FAILED


def test_event_with_an_unknown_tag_is_refused() -> None:
    raw = msgspec.msgpack.encode({"type": "exploded", "dispatch_id": "AD_1"})

    with pytest.raises(msgspec.ValidationError):
        event_decoder.decode(raw)


@pytest.mark.parametrize(
    "message",
    [Assignment(job=SPEC), Termination(job_id=SPEC.job_id, reason="dispatch deleted")],
    ids=lambda m: type(m).__name__,
)
def test_inbox_message_round_trips(message: InboxMessage) -> None:
    assert inbox_decoder.decode(encode(message)) == message


def test_dispatch_record_round_trips() -> None:
    assert dispatch_decoder.decode(encode(DISPATCH)) == DISPATCH


def test_room_record_round_trips() -> None:
    room = RoomRecord(name="room-1", sid="RM_room00000001", created_at=5)

    assert room_decoder.decode(encode(room)) == room


def test_job_record_round_trips() -> None:
    past = JobAttempt(
        job_id="AJ_job000000000",
        status=JobStatus.FAILED,
        server_id="AW_server000001",
        error="lost",
        reason=JobReason.RETRYING,
        started_at=1,
        ended_at=2,
        updated_at=2,
    )
    record = JobRecord(
        spec=SPEC,
        phase="running",
        current=JobAttempt(job_id=SPEC.job_id, status=JobStatus.RUNNING, updated_at=3),
        restart_policy=RestartPolicy.NEVER,
        past=(past,),
        rejected_by=("AW_server000001",),
    )

    assert job_decoder.decode(encode(record)) == record


def test_job_record_with_an_unknown_phase_is_refused() -> None:
    raw = msgspec.msgpack.encode(
        {"spec": msgspec.to_builtins(SPEC), "phase": "exploded", "current": {"job_id": "AJ_1"}}
    )

    with pytest.raises(msgspec.ValidationError):
        job_decoder.decode(raw)


def test_server_info_round_trips() -> None:
    info = ServerInfo(id="AW_server000001", agent_name="agent-a", labels={"zone": "a"}, capacity=4)

    assert server_info_decoder.decode(encode(info)) == info


# --- forward compatibility -------------------------------------------------------------------


def test_record_with_an_unknown_field_still_decodes() -> None:
    fields = msgspec.to_builtins(DISPATCH)
    raw = msgspec.msgpack.encode({**fields, "added_in_a_later_version": [1, 2, 3]})

    assert dispatch_decoder.decode(raw) == DISPATCH


def test_record_missing_newer_optional_fields_decodes_with_defaults() -> None:
    raw = msgspec.msgpack.encode({"id": "AD_1", "agent_name": "agent-a", "room": "room-1"})

    assert dispatch_decoder.decode(raw) == DispatchRecord(
        id="AD_1", agent_name="agent-a", room="room-1"
    )


def test_event_with_an_unknown_field_still_decodes() -> None:
    event = EVENTS[1]
    fields = msgspec.to_builtins(event)
    raw = msgspec.msgpack.encode({**fields, "added_in_a_later_version": "x"})

    assert event_decoder.decode(raw) == event


def test_event_encoding_carries_its_tag() -> None:
    fields = msgspec.msgpack.decode(encode(EVENTS[0]))

    assert isinstance(fields, dict)
    assert fields["type"] == "created"


def test_every_wire_struct_stays_out_of_the_cycle_collector() -> None:
    # A scheduler holds one record per live room and job; tracked, they made every full
    # collection walk them all (60 to 140 ms pauses at ~100k objects).
    structs = [
        value
        for value in vars(wire).values()
        if isinstance(value, type)
        and issubclass(value, msgspec.Struct)
        and value.__module__ == wire.__name__
    ]

    assert structs and all(s.__struct_config__.gc is False for s in structs)


def test_a_decoded_record_is_untracked() -> None:
    record = dispatch_decoder.decode(encode(DISPATCH))

    assert not gc.is_tracked(record)
