"""The arguments of ``commit.lua``: acks, changed job records, room lives and the webhook
events they produced, in one call.

Pure: the partition loop decides what changed; this lays it out as the script reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dispatcher.store import keys
from dispatcher.wire import JobRecord, RoomLife, encode


def commit_call(
    k: keys.PartitionKeys,
    lease_value: str,
    acks: list[bytes],
    records: Mapping[str, JobRecord],
    lives: Mapping[str, RoomLife | None],
    hooks: Sequence[bytes] = (),
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV for the acks, the records by job key, the lives by room (None forgets
    a room's life) and the encoded webhook events to queue."""
    call_keys = [k.lease, k.active, k.events, k.life, k.hooks]
    job_hash: dict[str, int] = {}  # room -> index of its job hash in KEYS (1-based)
    args: list[Any] = [lease_value, keys.CONSUMER_GROUP, len(acks), *acks, len(records)]
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
