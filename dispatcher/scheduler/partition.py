"""One owned partition: read its event stream, run the job state machine, place, commit.

Each loop turn reads a batch of events, applies them and any due timers to the in-memory
state, then commits the changed records together with the acks in one fenced script call,
followed in the same write by one reservation per waiting job; the assignments are
committed by the next turn. Effects that only reach agent servers (terminations, released
slots) follow the commit. A crash anywhere leaves unacked events that the next lease holder
replays; job ids are deterministic and reservations idempotent, so a replay re-creates the
same assignment instead of a second one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, NoReturn

import msgspec
from redis.exceptions import ResponseError

from dispatcher.errors import BatchFailed, OwnershipLost, describe
from dispatcher.room_records import DEFAULT_DEPARTURE_TIMEOUT_S, DEFAULT_EMPTY_TIMEOUT_S
from dispatcher.scheduler import fanout, jobs, roomlife
from dispatcher.scheduler.deadletter import DeadLetters
from dispatcher.scheduler.housekeeping import Housekeeping
from dispatcher.scheduler.observe import NOTHING, Observer
from dispatcher.scheduler.placing import PoolCalls
from dispatcher.scheduler.registry import Registry
from dispatcher.scheduler.state import PartitionState
from dispatcher.store import calls, keys, scripts
from dispatcher.store.client import Client
from dispatcher.store.fastlane import ensure_group, entries_of, stream_entries
from dispatcher.wire import (
    ROOM_EVENTS,
    DispatchCreated,
    DispatchDeleted,
    Event,
    JobRecord,
    JobReport,
    JobStatus,
    JobType,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantPublished,
    ParticipantRecord,
    RoomDeleted,
    RoomEvent,
    RoomLife,
    RoomMetadataUpdated,
    RoomRecord,
    event_decoder,
    job_decoder,
    life_decoder,
    room_decoder,
)

_NEVER = 2**63  # no refused job is waiting
log = logging.getLogger(__name__)
Entry = tuple[bytes, dict[bytes, bytes]]
_SLOT_FREED = (JobStatus.SUCCESS, JobStatus.FAILED)  # the release follows in the same write
_CLOSE_RETRY_NS = 1_000_000_000  # a deferred room close is looked at again after this
_REVOKE_RETRY_NS = 500_000_000  # a timer whose revoke failed fires again after this


class PartitionLoop:
    def __init__(
        self,
        client: Client,
        partition: int,
        consumer: str,
        lease_value: str,
        registry: Registry,
        *,
        timeouts: jobs.Timeouts,
        batch_size: int,
        block_ms: int,
        load_threshold: float,
        idle_block_ms: int | None = None,
        room_retention_s: int = 3600,
        observer: Observer = NOTHING,
    ) -> None:
        self.partition = partition
        self.lease_value = lease_value
        # Monotonic time by which the lease may have lapsed (the node moves it on at each
        # renewal): past it the loop does nothing, fenced calls or not.
        self.lease_until = float("inf")
        self._client = client
        self._keys = keys.partition_keys(partition)
        self._consumer = consumer
        self._registry = registry
        self._batch_size = batch_size
        self._block_ms = block_ms
        self._idle_block_ms = idle_block_ms or block_ms
        self._pools = PoolCalls(registry, load_threshold, partition)
        self._room_retention_s = room_retention_s
        self._observer = observer
        self.state = PartitionState(timeouts)
        self._stopping = False
        self._placed_version = -1  # registry snapshot last used for placement
        self._placed_freed = 0  # the registry's count of freed slots at that placement
        self._retry_at = _NEVER  # unix ns: the earliest a refused job may be offered again
        self._checked_version = -1  # registry snapshot last used to look for lost servers
        self._dirty: dict[str, JobRecord] = {}
        self._dirty_rooms: dict[str, RoomLife | None] = {}  # None: forget the room's life
        self._fanouts: list[fanout.Fanout] = []  # participant jobs waiting to learn who is present
        self._effects: list[jobs.Terminate | jobs.Release] = []
        self.dead = DeadLetters(partition, self._keys.dead)
        self._housekeeping = Housekeeping(client.fast, self._keys.events, consumer, batch_size)
        self._last_id = b""
        self._reads = client.fast.dedicated(self._keys.events)  # blocking reads wait here

    def stop(self) -> None:
        """Finish the current batch, then return from ``run``."""
        self._stopping = True

    async def run(self) -> None:
        try:
            await ensure_group(self._client.fast, self._keys.events, keys.CONSUMER_GROUP)
            await self._load()
            await self._catch_up()
            while not self._stopping:
                stale = await self._housekeeping.stale_entries()
                await self._turn(stale + await self._read(">", self._block_for()))
        finally:
            self._reads.close()

    # --- start-up -------------------------------------------------------------------------

    async def _load(self) -> None:
        lives: list[bytes] = await self._client.fast.execute("HVALS", self._keys.life)
        for raw_life in lives:
            self.state.put_room(life_decoder.decode(raw_life))
        active: list[bytes] = await self._client.fast.execute("HGETALL", self._keys.active)
        by_room: dict[str, list[bytes]] = {}
        for key, room_name in zip(active[::2], active[1::2], strict=True):
            by_room.setdefault(room_name.decode(), []).append(key)
        fast = self._client.fast
        per_room = await asyncio.gather(
            *(fast.execute("HMGET", self._keys.room_jobs(r), *ks) for r, ks in by_room.items())
        )  # one pipelined write, however many rooms
        for raws in per_room:
            for raw in raws:
                if raw is not None:
                    self.state.put(job_decoder.decode(raw))
        await self._pools.find_absent(self._client, self.state.servers())
        level = logging.INFO if len(self.state) else logging.DEBUG  # 64 lines of 0 say nothing
        log.log(level, "partition %d: loaded %d active jobs", self.partition, len(self.state))

    async def _catch_up(self) -> None:
        """Apply everything outstanding (other consumers' pending entries included) before
        placing, so a job that already ran is not placed again."""
        start: str | bytes = "0-0"  # the reply names the next start as bytes
        while True:
            reply: Any = await self._client.fast.execute(
                "XAUTOCLAIM", self._keys.events, keys.CONSUMER_GROUP, self._consumer, 0, start,
                "COUNT", self._batch_size,
            )  # fmt: skip
            start = reply[0]
            await self._turn(entries_of(reply[1]), place=False)
            if start == b"0-0":
                break
        while entries := await self._read(">", None):
            await self._turn(entries, place=False)
        self._end_jobs_of_gone_rooms(time.time_ns())
        # An earlier holder may have reserved any of them and stopped before committing it.
        pending = [r for r in self.state.records.values() if r.phase == "pending"]
        await self._pools.find_reservations(self._client, pending)
        await self._turn([])

    def _end_jobs_of_gone_rooms(self, now: int) -> None:
        """Jobs of a room that closed while its closer crashed before committing them."""
        for record in list(self.state.records.values()):
            if record.spec.room not in self.state.rooms:
                self._step(jobs.on_room_closed(record, now))

    def _block_for(self) -> int:
        """How long a read may wait: short while jobs need timers and placement retries,
        long when the partition holds none (64 idle partitions polling 10 times a second
        cost more CPU at rest than anything else the scheduler does)."""
        return self._block_ms if self.state.records else self._idle_block_ms

    async def _read(self, start: str, block_ms: int | None) -> list[Entry]:
        group = ("GROUP", keys.CONSUMER_GROUP, self._consumer, "COUNT", self._batch_size)
        block = ("BLOCK", block_ms) if block_ms is not None else ()
        stream = ("STREAMS", self._keys.events, start)
        extra_s = (block_ms or 0) / 1000
        reply = await self._reads.execute("XREADGROUP", *group, *block, *stream, extra_s=extra_s)
        return stream_entries(reply)

    # --- one turn -------------------------------------------------------------------------

    async def _turn(self, entries: list[Entry], place: bool = True) -> None:
        if time.monotonic() > self.lease_until:  # e.g. this process was stopped a while
            raise OwnershipLost(f"partition {self.partition}: lease not renewed in time")
        now = time.time_ns()
        for entry_id, fields in entries:
            self._take(entry_id, fields, now)
        self._observer.entries_applied(len(entries))
        if self.dead:
            await self.dead.send(self._client)
        if self._fanouts:
            await self._fan_out(now)
        if due := list(self.state.due(now)):
            await self._timers_fired(due, now)
        if closing := self.state.rooms_due(now, limit=self._batch_size):
            await self._close_rooms(closing, now)
        await self._check_servers(now)
        acks = [entry_id for entry_id, _ in entries]
        await self._commit(acks, now, place=place and self._should_place(now))
        if self._effects:
            await self._send_effects()
        if entries:
            self._last_id = entries[-1][0]
        await self._housekeeping.trim(self._last_id)

    def _take(self, entry_id: bytes, fields: dict[bytes, bytes], now: int) -> None:
        """Apply one entry; one that cannot be decoded or applied is dead-lettered, so
        poison input never wedges the partition."""
        try:
            if (room := fields.get(b"r")) is not None:  # this entry's call created the room
                self._room_created(room_decoder.decode(room))
            self._apply(event_decoder.decode(fields[b"e"]), now)
        except (KeyError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.dead.add(entry_id, fields, f"undecodable: {describe(exc)}")
        except Exception as exc:
            log.exception("partition %d: entry %s could not be applied", self.partition, entry_id)
            self.dead.add(entry_id, fields, f"not applicable: {describe(exc)}")

    def _apply(self, event: Event, now: int) -> None:
        if isinstance(event, DispatchCreated):
            self._dispatch_created(event, now)
            return
        if isinstance(event, ROOM_EVENTS):
            self._apply_to_room(event, now)
            return
        record = self.state.records.get(event.job_key)
        if record is None:
            if isinstance(event, JobReport):
                self._effects.extend(jobs.stray_report(event))
            return
        if isinstance(event, JobReport):
            if event.status in _SLOT_FREED:
                self._registry.note_released(record.spec.pool, event.server_id)
            self._step(jobs.on_report(record, event, now))
        else:
            self._registry.note_released(record.spec.pool, event.server_id)
            self._step(jobs.on_rejected(record, event, now))

    async def _timers_fired(self, due: list[JobRecord], now: int) -> None:
        """Assignments that timed out are revoked first: one whose server confirmed it in
        the meantime is starting, and re-placing it would run it twice."""
        assigned = [r for r in due if r.phase == "assigned"]
        batch = scripts.Batch()
        for record in assigned:
            batch.script(scripts.revoke, *self._pools.revoke(record))
        # Policy: a revoke that failed leaves the job assigned and fires its timer again.
        outcomes = await batch.outcomes(self._client)
        revoked = {r.spec.job_key: o for r, o in zip(assigned, outcomes, strict=True)}
        for record in due:
            outcome = revoked.get(record.spec.job_key, 1)
            if isinstance(outcome, Exception):
                why = describe(outcome)
                log.warning("partition %d: revoke failed (%s); retrying", self.partition, why)
                self.state.rearm(record, now + _REVOKE_RETRY_NS)
            elif outcome == 0:  # the server confirmed it in the meantime
                self._step(jobs.on_confirmed(record, now))
            else:
                self._step(jobs.on_timer(record, now))

    # --- rooms ----------------------------------------------------------------------------

    def _has_pool(self, pool: str) -> bool:
        return self._registry.has_servers(pool)

    def _room_created(self, room: RoomRecord) -> None:
        known = self.state.rooms.get(room.name)
        if known is None or known.room.sid != room.sid:  # not a replay of what was loaded
            self._observer.room_started(room)
        self._put_room(roomlife.created(room))

    def _put_room(self, life: RoomLife) -> None:
        self.state.put_room(life)
        self._dirty_rooms[life.room.name] = life

    def _dispatch_created(self, event: DispatchCreated, now: int) -> None:
        life = self._life(event)
        dispatch = event.dispatch
        if any(d.id == dispatch.id for d in life.dispatches):
            return  # read again: its jobs exist
        life = roomlife.with_dispatch(life, dispatch)
        self._put_room(life)
        if (
            step := roomlife.room_job(life, dispatch, self._has_pool, self.partition, now)
        ) is not None:
            self._start([step])
        if life.present and roomlife.typed_pools(dispatch, self._has_pool):
            self._fanouts.append(fanout.Fanout(life.room.name, dispatch_id=dispatch.id))

    def _life(self, event: DispatchCreated) -> RoomLife:
        """The room of a new dispatch. Every call that creates a room says so in its entry;
        should one not, the room gets a life of its own rather than none."""
        name = event.dispatch.room
        if (life := self.state.rooms.get(name)) is None:
            log.warning("partition %d: dispatch for unknown room %r", self.partition, name)
            room = RoomRecord(
                name=name,
                sid=event.room_sid,
                created_at=event.received_ns,
                empty_timeout=DEFAULT_EMPTY_TIMEOUT_S,
                departure_timeout=DEFAULT_DEPARTURE_TIMEOUT_S,
            )
            life = roomlife.created(room)
            self._put_room(life)
        return life

    def _apply_to_room(self, event: RoomEvent, now: int) -> None:
        life = self.state.rooms.get(event.room)
        if life is None:
            return
        if isinstance(event, RoomDeleted):
            if event.sid == life.room.sid:
                self._room_gone(event.room, now)
        elif isinstance(event, DispatchDeleted):
            self._put_room(roomlife.without_dispatch(life, event.dispatch_id))
            self._end_jobs(event.room, now, jobs.on_deleted, dispatch_id=event.dispatch_id)
        elif isinstance(event, ParticipantJoined):
            self._joined(life, event.participant, now)
        elif isinstance(event, ParticipantPublished):
            self._published(life, event.identity)
        elif isinstance(event, RoomMetadataUpdated):
            self._put_room(roomlife.with_metadata(life, event.metadata))
        else:
            self._left(life, event, now)

    def _joined(self, life: RoomLife, person: ParticipantRecord, now: int) -> None:
        self._observer.participant_joined(life.room, person)
        self._put_room(roomlife.joined(life, person.kind))
        wanted = [(person, JobType.PARTICIPANT)]
        self._start(roomlife.jobs_for_participants(
            life, life.dispatches, wanted, self._has_pool, self.partition, now
        ))  # fmt: skip

    def _left(self, life: RoomLife, event: ParticipantLeft, now: int) -> None:
        self._observer.participant_left(life.room, event)
        self._put_room(roomlife.left(life, event.kind, now))
        self._end_jobs(event.room, now, jobs.on_participant_left, identity=event.identity)

    def _published(self, life: RoomLife, identity: str) -> None:
        if any(
            JobType.PUBLISHER in roomlife.typed_pools(d, self._has_pool) for d in life.dispatches
        ):
            self._fanouts.append(fanout.Fanout(life.room.name, identity=identity))

    async def _fan_out(self, now: int) -> None:
        """Participant and publisher jobs that need to know who is in the room: read from
        the room's participants (and who published) once per room, after the whole batch
        is applied, so a participant who left in the same batch gets nothing."""
        fanouts, self._fanouts = self._fanouts, []
        names = sorted({f.room for f in fanouts if f.room in self.state.rooms})
        seen = await fanout.presence(self._client.fast, self._keys, names)
        for each in fanouts:
            if (life := self.state.rooms.get(each.room)) is None:
                continue
            dispatches, wanted = fanout.wanted(each, life, seen[each.room])
            self._start(roomlife.jobs_for_participants(
                life, dispatches, wanted, self._has_pool, self.partition, now
            ))  # fmt: skip

    def _start(self, steps: list[jobs.Step]) -> None:
        for step in steps:
            if step.record.spec.job_key not in self.state.records:
                self._step(step)

    def _end_jobs(
        self,
        room: str,
        now: int,
        end: Callable[[JobRecord, int], jobs.Step],
        *,
        dispatch_id: str | None = None,
        identity: str | None = None,
    ) -> None:
        """End the room's jobs of one dispatch, or of one participant."""
        for record in self.state.in_room(room):
            spec = record.spec
            if dispatch_id is not None and spec.dispatch_id != dispatch_id:
                continue
            person = spec.participant
            if identity is not None and (person is None or person.identity != identity):
                continue
            self._step(end(record, now))

    def _room_gone(self, room: str, now: int) -> None:
        if (life := self.state.rooms.get(room)) is not None:
            self._observer.room_finished(life.room)
        self.state.forget_room(room)
        self._dirty_rooms[room] = None
        self._end_jobs(room, now, jobs.on_room_closed)

    async def _close_rooms(self, closing: list[str], now: int) -> None:
        """Every room due in one round trip: rooms opened in a burst come due in one too."""
        k, batch = self._keys, scripts.Batch()
        for room in closing:
            call = calls.close_room(k, self.lease_value, room, self._room_retention_s)
            batch.script(scripts.close_room, *call)
        try:
            results = await batch.run(self._client)
        except BatchFailed as failed:
            self._raise_failure(failed)
        for room, closed in zip(closing, results, strict=True):
            if closed:
                log.info("partition %d: room %r closed (timeout)", self.partition, room)
                self._room_gone(room, now)
                self._dirty_rooms.pop(room, None)  # the close already forgot its life
            else:
                self.state.recheck_room(room, now + _CLOSE_RETRY_NS)

    def _step(self, step: jobs.Step) -> None:
        self._record(step.record)
        # Place effects need no action: a pending record is in ``state.waiting``.
        self._effects.extend(e for e in step.effects if not isinstance(e, jobs.Place))

    def _record(self, record: JobRecord) -> None:
        before = self.state.records.get(record.spec.job_key)
        if self.state.put(record):
            self._dirty[record.spec.job_key] = record
            self._observer.job_changed(before, record)

    async def _check_servers(self, now: int) -> None:
        """Jobs on servers the registry saw lost are re-placed (or ended), each only once
        its reservation is taken back: a server that is alive after all then finds it gone
        and stops the job rather than run it next to its replacement."""
        if self._registry.version == self._checked_version:
            return
        self._checked_version = self._registry.version
        lost = [
            (key, r)
            for key in self._pools.lost(self.state.hosting())
            for r in self.state.on_server(key)
        ]
        if not lost:
            return
        batch = scripts.Batch()
        for key, record in lost:
            batch.script(
                scripts.release_lost, *self._pools.release_lost(key, record.current.job_id)
            )
        # Policy: a job whose reservation could not be taken back stays where it is, and
        # the next turn looks again.
        for (key, record), outcome in zip(lost, await batch.outcomes(self._client), strict=True):
            if isinstance(outcome, Exception):
                log.warning("partition %d: release failed (%s)", self.partition, describe(outcome))
                self._checked_version = -1
            elif outcome == 1:
                self._step(jobs.on_server_lost(record, now))
            elif outcome == 0:  # it heartbeat again since the registry saw it expire
                self._registry.note_alive(key)
            else:  # not lost yet by Redis's clock: look again next turn
                self._checked_version = -1

    # --- placement ------------------------------------------------------------------------

    def _should_place(self, now: int) -> bool:
        """Something waits, and a job became pending, the snapshot changed, a slot was
        freed since the last placement (so a job waiting for capacity takes a slot as soon
        as any partition sees it freed, not at the next snapshot), or a refused job's
        wait is over."""
        if not self.state.waiting:
            return False
        if now >= self._retry_at:
            return True
        registry = self._registry
        if registry.version != self._placed_version or registry.freed != self._placed_freed:
            return True
        return any(r.phase == "pending" for r in self._dirty.values())

    async def _commit(self, acks: list[bytes], now: int, *, place: bool) -> None:
        """The commit and, when placing, the reservations in one round trip. The commit
        goes first and holds new jobs as pending; their assignments are committed by the
        next turn (at most one read timeout later). A crash in between is safe: the next
        lease holder places them again, and ``reserve.lua`` answers a replayed job id with
        the server that already holds it."""
        batch = scripts.Batch()
        commit = self._commit_call(acks)
        if commit is not None:
            batch.script(scripts.commit, *commit)
        order = self._queue_reservations(batch, now) if place else []
        # Policy: a failed commit fails the turn (the loop restarts from Redis); a failed
        # reservation leaves its job pending for the next placement.
        results = await batch.outcomes(self._client)
        if commit is not None and isinstance(committed := results.pop(0), Exception):
            self._raise_failure(committed)
        for (record, shard), result in zip(order, results, strict=True):
            self._placed(record, shard, result, now)

    def _queue_reservations(self, batch: scripts.Batch, now: int) -> list[tuple[JobRecord, int]]:
        """One reservation per waiting job whose pool has a shard with room (and that is
        not waiting after refusals); the jobs and their shards, in call order."""
        self._placed_version, self._placed_freed = self._registry.version, self._registry.freed
        self._retry_at = _NEVER
        order: list[tuple[JobRecord, int]] = []
        full: set[str] = set()  # pools with no shard left with room in this pass
        unplaced: list[JobRecord] = []
        timeout_ms = self.state.timeouts.assign_ms
        for key in self.state.waiting:
            record = self.state.records[key]
            if (at := jobs.placeable_at(record)) > now:
                self._retry_at = min(self._retry_at, at)
            elif record.spec.pool in full and record.spec.target is None:
                unplaced.append(record)  # e.g. automatic jobs for servers that never came
            elif (reservation := self._pools.reservation(record, timeout_ms)) is not None:
                shard, call = reservation
                batch.script(scripts.reserve, *call)
                order.append((record, shard))
            else:  # a targeted job found no shard: the pool may still have room for others
                full.update(() if record.spec.target else (record.spec.pool,))
                unplaced.append(record)
        for record in unplaced:  # ListDispatch says why they wait (written once)
            self._record(self._pools.waiting(record))
        return order

    def _placed(self, record: JobRecord, shard: int, result: Any, now: int) -> None:
        server_id = self._pools.placed(record, shard, result)
        if server_id is not None:
            self._record(jobs.placed(record, server_id, now))
        elif not isinstance(result, Exception):
            if self._pools.more_to_try(record):
                self._placed_version = -1  # that shard was full: try another next turn
            elif record.spec.target is not None:  # no shard is left to try: say why it waits
                self._record(self._pools.waiting(record))

    # --- commit and effects ---------------------------------------------------------------

    def _commit_call(self, acks: list[bytes]) -> calls.Call | None:
        """The commit script's keys and args for the acks, every changed record (which
        count as written from here on) and the webhook events seen, or None when there is
        nothing to write."""
        hooks = self._observer.take_hooks()
        if not acks and not self._dirty and not self._dirty_rooms and not hooks:
            return None
        dirty, rooms = self._dirty, self._dirty_rooms
        call = calls.commit(self._keys, self.lease_value, acks, dirty, rooms, hooks)
        self._dirty = {}
        self._dirty_rooms = {}
        return call

    def _raise_failure(self, failure: Exception) -> NoReturn:
        """A fenced script failed: "FENCED" means another node now owns us."""
        failures = failure.failures if isinstance(failure, BatchFailed) else [failure]
        if any(isinstance(f, ResponseError) and "FENCED" in str(f) for f in failures):
            raise OwnershipLost(f"partition {self.partition}: lease lost") from failure
        raise failure

    async def _send_effects(self) -> None:
        batch = scripts.Batch()
        self._pools.queue_effects(batch, self._effects)
        # Policy: an effect that failed is sent again after the next turn, until Redis
        # acknowledges it (terminating a job twice and releasing a slot twice are no-ops).
        effects, self._effects = self._effects, []
        for effect, result in zip(effects, await batch.outcomes(self._client), strict=True):
            if isinstance(result, Exception):
                self._effects.append(effect)
        if failed := len(self._effects):
            log.warning("partition %d: %d effect(s) failed; retrying", self.partition, failed)
