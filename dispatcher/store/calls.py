"""Every script's KEYS and ARGV, built here and nowhere else: one function per script in
``lua/``, named after it, that lays out typed, named values in the order of the script's
``KEYS=[...] ARGV=[...]`` header. A caller passes the result to the script of the same
name: ``await scripts.lease(client, *calls.lease(k, node_id, ttl_ms))`` or
``batch.script(scripts.release, *calls.release(shard, server_id, job_id))``.

Pure: no I/O, no clock. Keys come from ``keys.py``; records are encoded here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from dispatcher import targets
from dispatcher.store import keys
from dispatcher.store.keys import PartitionKeys, ShardKeys
from dispatcher.store.scripts import ScriptArg
from dispatcher.wire import (
    Assignment,
    DispatchCreated,
    DispatchDeleted,
    DispatchRecord,
    Drain,
    JobRecord,
    JobSpec,
    ParticipantLeft,
    ParticipantPublished,
    ParticipantRecord,
    RoomDeleted,
    RoomLife,
    RoomMetadataUpdated,
    RoomRecord,
    encode,
)

Call = tuple[list[str], list[ScriptArg]]  # a script's KEYS and ARGV

# What a server says of itself in a heartbeat: capacity, load ("0.42"), status, ServerInfo.
Description = tuple[int, str, int, bytes]

# --- schedulers: membership, leases, the commit, closing rooms ------------------------------


def membership(node_id: str, ttl_ms: int, *, leaving: bool = False) -> Call:
    """``membership.lua``: heartbeat ``node_id`` into the membership set, or take it out."""
    return [keys.SCHEDULERS], [node_id, ttl_ms, int(leaving)]


def lease(k: PartitionKeys, node_id: str, ttl_ms: int, held: str = "") -> Call:
    """``lease.lua``: acquire the partition's lease, or renew the ``held`` one."""
    return [k.lease, k.fence], [node_id, ttl_ms, held]


def release_lease(k: PartitionKeys, held: str) -> Call:
    """``release_lease.lua``: give up the partition's lease if ``held`` is still it."""
    return [k.lease], [held]


def commit(
    k: PartitionKeys,
    lease_value: str,
    acks: Sequence[bytes],
    records: Mapping[str, JobRecord],
    lives: Mapping[str, RoomLife | None],
    hooks: Sequence[bytes] = (),
) -> Call:
    """``commit.lua``: the acks, the records by job key, the lives by room (None forgets a
    room's life) and the encoded webhook events to queue, fenced by ``lease_value``."""
    call_keys = [k.lease, k.active, k.events, k.life, k.hooks]
    job_hash: dict[str, int] = {}  # room -> index of its job hash in KEYS (1-based)
    args: list[ScriptArg] = [lease_value, keys.CONSUMER_GROUP, len(acks), *acks, len(records)]
    for key, record in records.items():
        room = record.spec.room
        if room not in job_hash:
            call_keys.append(k.room_jobs(room))
            job_hash[room] = len(call_keys)
        args += [job_hash[room], room, key, encode(record), 0 if record.phase == "ended" else 1]
    args.append(len(lives))
    for room, life in lives.items():
        args += [room, encode(life) if life is not None else b""]
    args += hooks
    return call_keys, args


def close_room(k: PartitionKeys, lease_value: str, room: str, retention_s: int) -> Call:
    """``close_room.lua``: the lease holder closes an empty room whose timeout passed."""
    room_keys = [k.lease, k.events, k.rooms, *k.room_keys(room), k.life]
    return room_keys, [lease_value, keys.CONSUMER_GROUP, room, retention_s]


# --- dispatches and rooms (API nodes) -------------------------------------------------------


def create_dispatch(
    k: PartitionKeys,
    record: DispatchRecord,
    event: DispatchCreated,
    room: RoomRecord,
    *,
    request_id: str,
    idempotency_ttl_s: int,
    max_dispatches: int,
    max_bytes: int,
) -> Call:
    """``create_dispatch.lua``: the dispatch, its event and the room it creates if absent;
    a ``request_id`` ("" for none) makes a replay within the ttl answer the first call."""
    idempotency = k.idempotency(request_id) if request_id else k.events  # unused without one
    ttl = idempotency_ttl_s if request_id else 0
    return [k.rooms, *k.room_keys(record.room), k.events, idempotency], [
        *(record.room, record.id, encode(record), encode(event), encode(room), ttl),
        *(record.agent_name, max_dispatches, max_bytes),
    ]


def list_dispatches(k: PartitionKeys, room: str, dispatch_id: str, max_bytes: int) -> Call:
    """``list_dispatches.lua``: a room's dispatches (one, or "" for all) with its jobs."""
    return [k.room(room), k.room_jobs(room)], [dispatch_id, max_bytes]


def delete_dispatch(
    k: PartitionKeys, read: bytes, deleted: DispatchRecord, event: DispatchDeleted
) -> Call:
    """``delete_dispatch.lua``: mark the dispatch deleted if its record is still ``read``."""
    room = deleted.room
    return [k.room(room), k.events, k.room_info(room)], [
        *(deleted.id, read, encode(deleted), encode(event), deleted.agent_name)
    ]


def open_room(
    k: PartitionKeys,
    room: RoomRecord,
    dispatches: Sequence[DispatchRecord],
    *,
    ensure: bool,
    participant: ParticipantRecord | None,
    joined_event: bytes,
    max_participants: int,
    max_dispatches: int,
) -> Call:
    """``open_room.lua``: create ``room`` with ``dispatches`` unless it exists (with
    ``ensure``, the dispatches of agents it has none of), then let ``participant`` in."""
    args: list[ScriptArg] = [room.name, encode(room), int(ensure), len(dispatches)]
    for d in dispatches:
        event = DispatchCreated(dispatch=d, room_sid=room.sid, received_ns=d.created_at)
        args += [d.agent_name, d.id, encode(d), encode(event)]
    if participant is None:
        args += ["", b"", b""]
    else:
        args += [participant.identity, encode(participant), joined_event]
    args += [max_participants, max_dispatches]
    return [k.rooms, *k.room_keys(room.name), k.events], args


def leave_room(k: PartitionKeys, event: ParticipantLeft) -> Call:
    """``leave_room.lua``: the participant leaves its room."""
    room = event.room
    return [k.participants(room), k.room_info(room), k.events], [event.identity, encode(event)]


def publish(k: PartitionKeys, event: ParticipantPublished) -> Call:
    """``publish.lua``: the participant publishes (its first publish is an event)."""
    room = event.room
    return [k.participants(room), k.room_info(room), k.events], [event.identity, encode(event)]


def update_room(
    k: PartitionKeys, read: bytes, updated: RoomRecord, event: RoomMetadataUpdated
) -> Call:
    """``update_room.lua``: the room's new record, if its record is still ``read``."""
    return [k.rooms, k.events], [event.room, read, encode(updated), encode(event)]


def delete_room(
    k: PartitionKeys,
    event: RoomDeleted,
    retention_s: int,
    marks: Sequence[tuple[str | bytes, bytes, DispatchRecord]],
) -> Call:
    """``delete_room.lua``: delete the room, marking each dispatch (id, record read,
    record marked deleted) if its record is still the one read."""
    args: list[ScriptArg] = [event.room, retention_s, encode(event), len(marks)]
    for dispatch_id, read, deleted in marks:
        args += [dispatch_id, read, encode(deleted)]
    return [k.rooms, *k.room_keys(event.room), k.events], args


def list_rooms(k: PartitionKeys, names: Sequence[str] = ()) -> Call:
    """``list_rooms.lua``: the partition's rooms (these, or every one) and their sizes."""
    return [k.rooms], [k.participants(""), *names]


def room_sizes(k: PartitionKeys, max_count: int, names: Sequence[str] = ()) -> Call:
    """``room_sizes.lua``: how many rooms ``list_rooms`` would return, and their bytes."""
    return [k.rooms], [max_count, *names]


# --- pool shards ----------------------------------------------------------------------------


def heartbeat(
    shard: ShardKeys,
    server_id: str,
    ttl_ms: int,
    description: Description | None = None,
    running: Iterable[str] = (),
) -> Call:
    """``heartbeat.lua``: the server's expiry, what it says of itself (None: unchanged),
    and the running jobs whose reservations it asks after."""
    said: Sequence[ScriptArg] = ("", "", "", "") if description is None else description
    return [shard.jobs], [shard.base, server_id, ttl_ms, *said, *running]


def deregister(shard: ShardKeys, server_id: str) -> Call:
    """``deregister.lua``: the server leaves its shard (a clean shutdown)."""
    return [shard.jobs], [shard.base, server_id]


def reserve(
    shard: ShardKeys,
    spec: JobSpec,
    reach_ms: int,
    load_threshold: float,
    excluded: Iterable[str] = (),
) -> Call:
    """``reserve.lua``: a slot for the job on the shard's best server (none of those
    ``excluded``, one matching its target), and its assignment in that server's inbox."""
    payload, target = encode(Assignment(job=spec)), targets.reserve_argument(spec.target)
    args: list[ScriptArg] = [shard.base, spec.job_id, reach_ms, load_threshold, payload, target]
    return [shard.jobs], [*args, *excluded]


def confirm(shard: ShardKeys, server_id: str, job_id: str) -> Call:
    """``confirm.lua``: the server confirms it starts the job reserved for it."""
    return _slot(shard, server_id, job_id)


def release(shard: ShardKeys, server_id: str, job_id: str) -> Call:
    """``release.lua``: free the job's slot on its server."""
    return _slot(shard, server_id, job_id)


def revoke(shard: ShardKeys, server_id: str, job_id: str) -> Call:
    """``revoke.lua``: take the job's reservation back unless the server confirmed it."""
    return _slot(shard, server_id, job_id)


def _slot(shard: ShardKeys, server_id: str, job_id: str) -> Call:
    return [shard.jobs], [shard.base, job_id, server_id]


def release_lost(
    shard: ShardKeys, server_id: str, job_id: str, not_before_ms: int, margin_ms: int
) -> Call:
    """``release_lost.lua``: take the job's reservation back from a server lost by Redis's
    clock (expired, and past ``not_before_ms``, by ``margin_ms``)."""
    return [shard.jobs], [shard.base, job_id, server_id, not_before_ms, margin_ms]


def shard_tick(
    shard: ShardKeys,
    cursor_ms: int,
    skip: int,
    count: int,
    reap_after_ms: int,
    reap_count: int = 0,
    reclaim_count: int = 0,
) -> Call:
    """``shard_tick.lua``: the shard's totals, up to ``count`` expiries past the cursor, and
    the upkeep asked for (counts of 0 skip it)."""
    upkeep = [reap_after_ms, reap_count, reclaim_count]
    return [shard.jobs], [shard.base, cursor_ms, skip, count, *upkeep]


def drain_server(shard: ShardKeys, server_id: str, message: Drain) -> Call:
    """``drain_server.lua``: placement skips the server, and its inbox tells it."""
    return [shard.jobs], [shard.base, server_id, encode(message)]


def list_servers(shard: ShardKeys) -> Call:
    """``list_servers.lua``: the shard's live servers, for an operator's listing."""
    return [shard.jobs], [shard.base]
