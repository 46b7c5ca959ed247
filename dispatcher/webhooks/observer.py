"""The webhook observer of one partition: turns what the partition saw into ``wire.Hook``
records, which the partition queues with the commit that makes the changes they describe."""

from __future__ import annotations

import asyncio
import time

from dispatcher.scheduler.observe import Observer
from dispatcher.webhooks import events
from dispatcher.wire import (
    Hook,
    JobRecord,
    ParticipantLeft,
    ParticipantRecord,
    RoomRecord,
    encode,
)


class HookObserver(Observer):
    def __init__(self) -> None:
        self._seen: list[bytes] = []
        # Set when a commit carries events: its deliverer reads them at once instead of
        # at its next poll. The commit is written before the deliverer runs again, on the
        # same connection, so the read that follows finds them.
        self.queued = asyncio.Event()

    def _add(self, hook: Hook) -> None:
        self._seen.append(encode(hook))

    def job_changed(self, before: JobRecord | None, after: JobRecord) -> None:
        if (hook := events.job_hook(before, after, time.time_ns())) is not None:
            self._add(hook)

    def room_started(self, room: RoomRecord) -> None:
        self._add(events.hook(events.ROOM_STARTED, time.time_ns(), room=room))

    def room_finished(self, room: RoomRecord) -> None:
        self._add(events.hook(events.ROOM_FINISHED, time.time_ns(), room=room))

    def participant_joined(self, room: RoomRecord, person: ParticipantRecord) -> None:
        now = time.time_ns()
        self._add(events.hook(events.PARTICIPANT_JOINED, now, room=room, participant=person))

    def participant_left(self, room: RoomRecord, event: ParticipantLeft) -> None:
        person = events.left_participant(event)
        now = time.time_ns()
        self._add(events.hook(events.PARTICIPANT_LEFT, now, room=room, participant=person))

    def take_hooks(self) -> list[bytes]:
        seen, self._seen = self._seen, []
        if seen:
            self.queued.set()
        return seen
