"""Webhook events: what a partition's observer queues (``wire.Hook``) and the body the
deliverer sends, LiveKit's ``WebhookEvent`` as JSON (protobuf's JSON mapping, as LiveKit's
server writes it: camelCase names, 64-bit integers as strings, enums by name).

Pure: no I/O. ``room_started``, ``room_finished``, ``participant_joined`` and
``participant_left`` are LiveKit's; ``job_started`` (a job attempt began running) and
``job_ended`` (a job reached its final state) are ours, in the same envelope with the job
as LiveKit's ``Job`` in ``WebhookEvent.job`` (its state holds status, error and reason).
"""

from __future__ import annotations

import orjson
from google.protobuf import json_format
from livekit.protocol import models, webhook

from dispatcher import ids
from dispatcher.convert import job_message, participant_message
from dispatcher.room_records import room_message
from dispatcher.wire import Hook, JobRecord, ParticipantLeft, ParticipantRecord, RoomRecord

ROOM_STARTED = "room_started"
ROOM_FINISHED = "room_finished"
PARTICIPANT_JOINED = "participant_joined"
PARTICIPANT_LEFT = "participant_left"
JOB_STARTED = "job_started"
JOB_ENDED = "job_ended"
EVENTS = (ROOM_STARTED, ROOM_FINISHED, PARTICIPANT_JOINED, PARTICIPANT_LEFT, JOB_STARTED, JOB_ENDED)


def hook(
    event: str,
    now: int,
    *,
    room: RoomRecord | None = None,
    participant: ParticipantRecord | None = None,
    job: JobRecord | None = None,
) -> Hook:
    """A new event with its own id (kept across delivery attempts, so receivers can drop
    a repeat)."""
    new_id = ids.new_id("EV_")
    return Hook(event=event, id=new_id, created_at=now, room=room, participant=participant, job=job)


def left_participant(event: ParticipantLeft) -> ParticipantRecord:
    """Who left, as far as the leave says: its identity and kind (the participant's record
    is gone by the time the scheduler applies the leave)."""
    return ParticipantRecord(sid="", identity=event.identity, kind=event.kind)


def job_hook(before: JobRecord | None, after: JobRecord, now: int) -> Hook | None:
    """``job_started`` when an attempt begins running, ``job_ended`` when the job reaches
    its final state; None for every other change."""
    was = before.phase if before is not None else None
    if after.phase == "running" and was != "running":
        return hook(JOB_STARTED, now, job=after)
    if after.phase == "ended" and was != "ended":
        return hook(JOB_ENDED, now, job=after)
    return None


def webhook_event(queued: Hook, num_dropped: int = 0) -> webhook.WebhookEvent:
    message = webhook.WebhookEvent(
        event=queued.event,
        id=queued.id,
        created_at=queued.created_at // 1_000_000_000,
        num_dropped=num_dropped,
    )
    if queued.room is not None:
        message.room.CopyFrom(room_message(queued.room))
    if queued.participant is not None:
        message.participant.CopyFrom(_participant(queued.event, queued.participant))
    if (job := queued.job) is not None:
        message.job.CopyFrom(job_message(job, job.current))
        message.room.CopyFrom(message.job.room)
    return message


def body(queued: Hook, num_dropped: int = 0) -> bytes:
    """The request body: the event as JSON, the bytes the signature covers."""
    as_dict = json_format.MessageToDict(webhook_event(queued, num_dropped))
    return orjson.dumps(as_dict)


def _participant(event: str, person: ParticipantRecord) -> models.ParticipantInfo:
    info = participant_message(person)
    if event == PARTICIPANT_LEFT:
        info.state = models.ParticipantInfo.DISCONNECTED
    return info
