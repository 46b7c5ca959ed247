"""The in-memory state of one owned partition: active job records and their indexes. Pure.

Records of ended jobs leave memory once committed; Redis keeps them for ListDispatch.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, KeysView

from dispatcher.scheduler import jobs, roomlife
from dispatcher.wire import JobRecord, RoomLife

ServerKey = tuple[str, str]  # (pool, server id)


class PartitionState:
    def __init__(self, timeouts: jobs.Timeouts) -> None:
        self.timeouts = timeouts
        self.records: dict[str, JobRecord] = {}  # by job key
        self.waiting: dict[str, None] = {}  # job keys to place, oldest first
        self._timers: list[tuple[int, str]] = []  # (due ns, job key), lazily invalidated
        self._rearmed: dict[str, int] = {}  # job key -> due ns of a timer fired again later
        self._by_server: dict[ServerKey, set[str]] = {}
        self.rooms: dict[str, RoomLife] = {}
        self._room_timers: list[tuple[int, str]] = []  # (close due ns, room), lazily invalidated
        self._by_room: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def put(self, record: JobRecord) -> bool:
        """Store a record and keep every index in step with it; False when nothing changed
        (the record keeps its place in line and its timer is not armed twice)."""
        key = record.spec.job_key
        if self.records.get(key) == record:
            return False
        self._unindex(key)
        if record.phase == "ended":
            self.records.pop(key, None)
            return True
        self.records[key] = record
        self._by_room.setdefault(record.spec.room, set()).add(key)
        if record.phase == "pending":
            self.waiting[key] = None
        if (server := jobs.server_of(record)) is not None:
            self._by_server.setdefault((record.spec.pool, server), set()).add(key)
        if (due := jobs.due_at(record, self.timeouts)) is not None:
            heapq.heappush(self._timers, (due, key))
        return True

    def due(self, now: int) -> Iterator[JobRecord]:
        """Records whose timer is due; stale heap entries are skipped."""
        while self._timers and self._timers[0][0] <= now:
            due, key = heapq.heappop(self._timers)
            record = self.records.get(key)
            if record is None:
                continue
            if jobs.due_at(record, self.timeouts) == due or self._rearmed.get(key) == due:
                self._rearmed.pop(key, None)
                yield record

    def rearm(self, record: JobRecord, at: int) -> None:
        """Fire the record's timer again at ``at``: what it had to do could not be done yet
        (Redis did not answer), so the record stays as it is until then."""
        key = record.spec.job_key
        self._rearmed[key] = at
        heapq.heappush(self._timers, (at, key))

    def servers(self) -> list[ServerKey]:
        return list(self._by_server)

    def hosting(self) -> KeysView[ServerKey]:
        """The servers holding this partition's jobs, as a live view (no copy)."""
        return self._by_server.keys()

    def on_server(self, key: ServerKey) -> list[JobRecord]:
        return [self.records[d] for d in self._by_server.get(key, ())]

    def in_room(self, room: str) -> list[JobRecord]:
        return [self.records[d] for d in self._by_room.get(room, ())]

    # --- rooms ------------------------------------------------------------------------------

    def put_room(self, life: RoomLife) -> None:
        before = self.rooms.get(life.room.name)
        self.rooms[life.room.name] = life
        due = roomlife.close_due(life)
        if due is not None and (before is None or roomlife.close_due(before) != due):
            heapq.heappush(self._room_timers, (due, life.room.name))  # armed once per time

    def forget_room(self, room: str) -> None:
        self.rooms.pop(room, None)

    def recheck_room(self, room: str, at: int) -> None:
        """Look at a room whose close was deferred again at ``at``."""
        heapq.heappush(self._room_timers, (at, room))

    def rooms_due(self, now: int, limit: int | None = None) -> list[str]:
        """Rooms whose close time has come, at most ``limit`` (the rest stay due for the
        next call); entries made stale by a join are skipped."""
        due_rooms: list[str] = []
        while self._room_timers and self._room_timers[0][0] <= now:
            if limit is not None and len(due_rooms) >= limit:
                break
            due, room = heapq.heappop(self._room_timers)
            life = self.rooms.get(room)
            close_at = roomlife.close_due(life) if life is not None else None
            if close_at is not None and close_at <= due and room not in due_rooms:
                due_rooms.append(room)
        return due_rooms

    def _unindex(self, key: str) -> None:
        old = self.records.get(key)
        self.waiting.pop(key, None)
        self._rearmed.pop(key, None)
        if old is not None and (in_room := self._by_room.get(old.spec.room)) is not None:
            in_room.discard(key)
            if not in_room:
                del self._by_room[old.spec.room]
        if old is None or (server := jobs.server_of(old)) is None:
            return
        server_key = (old.spec.pool, server)
        held = self._by_server.get(server_key)
        if held is not None:
            held.discard(key)
            if not held:
                del self._by_server[server_key]
