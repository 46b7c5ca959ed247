"""What a partition saw happen, for those who watch it: metrics, the per-node figures that
``dispatcher status`` and the dashboard read, and webhooks.

A partition calls its observer as it applies a change to its state, before the change is
committed. Observers run inside the turn, so each must be cheap, must not block and must
not raise; one that needs Redis (webhooks) keeps what it saw and writes it with the
partition's commit. A replay after a failover may show a change twice: watchers count on
at-least-once, as webhook receivers do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dispatcher.wire import JobRecord, ParticipantLeft, ParticipantRecord, RoomRecord


class Observer:
    """Every method a no-op: an observer overrides what it watches."""

    def job_changed(self, before: JobRecord | None, after: JobRecord) -> None:
        """A job record changed (``before`` None: a new job)."""

    def room_started(self, room: RoomRecord) -> None:
        """A room this partition had not seen was created."""

    def room_finished(self, room: RoomRecord) -> None:
        """A room closed (timed out empty, or deleted)."""

    def participant_joined(self, room: RoomRecord, person: ParticipantRecord) -> None:
        """A participant joined (a reconnect counts again)."""

    def participant_left(self, room: RoomRecord, event: ParticipantLeft) -> None:
        """A participant left."""

    def take_hooks(self) -> list[bytes]:
        """Webhook events seen since the last call, to queue with the commit being built
        (which makes the changes they describe); taken, so a failed commit's are gone with
        it and its replay sees the changes again."""
        return []

    def entries_applied(self, count: int) -> None:
        """A turn applied ``count`` stream entries (dead-lettered ones included)."""


NOTHING = Observer()
# Made once per owned partition: per-process watchers (metrics) may share one instance,
# per-partition ones (webhooks, committed with the partition) make their own.
PerPartition = Callable[[int], Observer]


class Observers(Observer):
    """Several observers, told in turn."""

    def __init__(self, observers: Iterable[Observer]) -> None:
        self._all = tuple(observers)

    def job_changed(self, before: JobRecord | None, after: JobRecord) -> None:
        for each in self._all:
            each.job_changed(before, after)

    def room_started(self, room: RoomRecord) -> None:
        for each in self._all:
            each.room_started(room)

    def room_finished(self, room: RoomRecord) -> None:
        for each in self._all:
            each.room_finished(room)

    def participant_joined(self, room: RoomRecord, person: ParticipantRecord) -> None:
        for each in self._all:
            each.participant_joined(room, person)

    def participant_left(self, room: RoomRecord, event: ParticipantLeft) -> None:
        for each in self._all:
            each.participant_left(room, event)

    def take_hooks(self) -> list[bytes]:
        return [hook for each in self._all for hook in each.take_hooks()]

    def entries_applied(self, count: int) -> None:
        for each in self._all:
            each.entries_applied(count)


def for_partition(makers: Iterable[PerPartition], partition: int) -> Observer:
    """The observer of one partition: none, one, or several told in turn."""
    made = [make(partition) for make in makers]
    if not made:
        return NOTHING
    return made[0] if len(made) == 1 else Observers(made)
