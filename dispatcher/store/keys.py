"""Every Redis key the system uses, built in one place.

All keys start with ``dsp:``. Keys of one partition carry the partition's hash tag ``{pNN}`` and
keys of one agent-server pool carry the pool's tag ``{a:<agent name>}``, so each partition and
each pool lives in a single Redis Cluster slot and every script over it is atomic. No script
touches keys of two partitions, or of a partition and a pool.

Global keys (one slot each):

``dsp:meta``                    hash  ``partitions`` -> P, written once at first start.
``dsp:schedulers``              zset  scheduler node id -> heartbeat expiry (Redis ms).
``dsp:pools``                   set   agent names that have registered servers.
``dsp:{stats}:schedulers``      hash  scheduler node id -> SchedulerFigures (msgpack): what
                                it counted and holds, rewritten every heartbeat, deleted
                                on a clean stop or, once it left the membership, by a
                                live scheduler [scheduler; ``dispatcher status`` and the
                                dashboard read it].

SIP keys (one slot between them, tag ``{sip}``: rules and trunks are few, and a listing or
a match reads a whole hash):

``dsp:{sip}:rules``             hash rule id -> ``SIPDispatchRuleInfo`` protobuf [API].
``dsp:{sip}:trunks``            hash trunk id -> ``SIPInboundTrunkInfo`` protobuf [API].

Partition keys (``T`` = ``{pNN}``); writer in brackets:

``dsp:T:events``                stream of wire events (API nodes, agent servers append;
                                the lease holder consumes through group ``schedulers``).
``dsp:T:lease``                 string ``<node>/<token>`` with a TTL [scheduler].
``dsp:T:fence``                 counter; every lease acquisition takes the next token.
``dsp:T:rooms``                 hash room -> RoomRecord [API].
``dsp:T:room:<room>``           hash dispatch id -> DispatchRecord [API]; kept for the
                                retention window after the room closes, then expires.
``dsp:T:part:<room>``           hash identity -> ParticipantRecord [API].
``dsp:T:rinfo:<room>``          hash ``max`` -> max participants, ``a:<agent name>`` ->
                                id of the room's dispatch of that agent, ``p:<identity>``
                                -> 1 once that participant published [API]; what the
                                room scripts must know without decoding records.
``dsp:T:life``                  hash room -> RoomLife: presence and close timers [lease holder].
``dsp:T:idem:<request id>``     string dispatch id, expires with the idempotency window [API].
``dsp:T:jobs:<room>``           hash job key -> JobRecord [lease holder]; expires with the
                                room's dispatch records after the room closes.
``dsp:T:active``                hash job key -> room, for jobs that have not ended [lease
                                holder].
``dsp:T:dead``                  stream of entries that could not be decoded or applied: the
                                entry id, the reason and the entry's fields as ``f:<name>``
                                [lease holder].
``dsp:T:hooks``                 stream of webhook events (``h``: a ``wire.Hook``), appended
                                by the commit that makes the change they describe, read by
                                the lease holder's deliverer through group ``webhooks``
                                [lease holder; only when webhooks are configured].

Timers need no key of their own: each is derived from a persisted job record (phase and
``updated_at``), so a new lease holder inherits them when it loads the active jobs.

Pool-shard keys. The servers of one pool (agent name and job type) spread over K shards
(``pool_shards``, stored in ``dsp:meta``); a server's shard is ``crc32(id) % K``. ``S`` is
the shard's tag ``{a:<pool>/<k>}`` (with a suffix that aims it at the k-th of K equal
slices of the cluster's slots, so the shards of a pool spread over every master):

``dsp:S:exp``                   zset server id -> heartbeat expiry (Redis ms); a server
                                that left stays with the time it left until it is reaped
                                [agent servers; schedulers reap].
``dsp:S:free``                  zset server id -> free slots, for the servers placement may
                                use (alive when last looked at, not draining; full ones
                                with 0) [every shard script].
``dsp:S:total``                 string: the sum of ``free`` [every shard script].
``dsp:S:srv:<id>``              hash cap, load, status, ttl, info [agent server; said when
                                changed, a quiet heartbeat only moves its ``exp`` entry].
``dsp:S:res:<id>``              hash job id -> reach deadline (Redis ms), 0 once confirmed:
                                the server's reserved slots [scheduler reserves, server
                                confirms and releases, heartbeat reclaims].
``dsp:S:jobs``                  hash job id -> server id: makes reservation idempotent.
``dsp:S:reach``                 zset job id -> reach deadline (Redis ms), for reservations
                                not confirmed yet [scheduler reserves; server confirms;
                                schedulers reclaim the overdue].
``dsp:S:inbox:<id>``            stream of assignments, terminations and drains for one server.
``dsp:S:tag:<tag>``             set of the servers carrying a tag (``v=<version>``,
                                ``l:<key>=<value>``, dispatcher/targets.py), for targeted
                                placement [heartbeat script when a server's info changes;
                                leaving and reaping].
``dsp:S:tags``                  hash tag -> how many servers carry it [the same].
``dsp:S:tagv``                  counter bumped whenever ``tags`` changes: a scheduler reads
                                ``tags`` again when it moved [the same].

A server's hash (``srv``) also holds ``tags`` (its tags, joined by US) and, once an
operator drained it (DrainServer), ``drain`` = 1, which its own heartbeats leave alone.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cache, lru_cache

from redis.crc import key_slot

from dispatcher.partitions import partition_tag

META = "dsp:meta"
SCHEDULERS = "dsp:schedulers"
POOLS = "dsp:pools"
SIP_RULES = "dsp:{sip}:rules"
SIP_TRUNKS = "dsp:{sip}:trunks"
SCHEDULER_FIGURES = "dsp:{stats}:schedulers"
CONSUMER_GROUP = "schedulers"
HOOKS_GROUP = "webhooks"


@dataclass(frozen=True, slots=True)
class PartitionKeys:
    partition: int
    base: str  # "dsp:{pNN}:", the prefix of every key below
    events: str
    lease: str
    fence: str
    rooms: str
    active: str
    life: str
    dead: str
    hooks: str

    def room(self, room: str) -> str:
        return f"{self.base}room:{room}"

    def participants(self, room: str) -> str:
        return f"{self.base}part:{room}"

    def room_info(self, room: str) -> str:
        return f"{self.base}rinfo:{room}"

    def room_jobs(self, room: str) -> str:
        return f"{self.base}jobs:{room}"

    def room_keys(self, room: str) -> list[str]:
        """A room's own keys, in the order the room scripts expect."""
        return [
            self.room(room),
            self.room_info(room),
            self.participants(room),
            self.room_jobs(room),
        ]

    def idempotency(self, request_id: str) -> str:
        return f"{self.base}idem:{request_id}"


@cache
def partition_keys(partition: int) -> PartitionKeys:
    """Built once per partition: every dispatch, report and turn looks them up."""
    base = f"dsp:{partition_tag(partition)}:"
    return PartitionKeys(
        partition=partition,
        base=base,
        events=base + "events",
        lease=base + "lease",
        fence=base + "fence",
        rooms=base + "rooms",
        active=base + "active",
        life=base + "life",
        dead=base + "dead",
        hooks=base + "hooks",
    )


@dataclass(frozen=True, slots=True)
class ShardKeys:
    """The keys of one shard of a pool. The shard scripts take ``jobs`` as their key (it
    routes the call) and ``base`` as their first argument, and derive the rest from it:
    every key here shares the shard's hash tag, so all of them live in one slot."""

    pool: str
    shard: int
    base: str  # "dsp:{a:<pool>/<k>}:", the prefix of every key below
    exp: str
    free: str
    total: str
    jobs: str
    tags: str

    def server(self, server_id: str) -> str:
        return f"{self.base}srv:{server_id}"

    def reservations(self, server_id: str) -> str:
        return f"{self.base}res:{server_id}"

    def inbox(self, server_id: str) -> str:
        return f"{self.base}inbox:{server_id}"


def shard_of(server_id: str, shards: int) -> int:
    """The shard a server belongs to: stable across processes (crc32, not ``hash()``)."""
    return zlib.crc32(server_id.encode()) % shards


def server_shard(pool: str, server_id: str, shards: int) -> ShardKeys:
    return shard_keys(pool, shard_of(server_id, shards), shards)


@lru_cache(maxsize=4096)  # pools are few; bounded all the same, names come from callers
def shard_keys(pool: str, shard: int, shards: int) -> ShardKeys:
    base = f"dsp:{{{_shard_tag(pool, shard, shards)}}}:"
    return ShardKeys(
        pool=pool,
        shard=shard,
        base=base,
        exp=base + "exp",
        free=base + "free",
        total=base + "total",
        jobs=base + "jobs",
        tags=base + "tags",
    )


_SLOTS = 16384
_AIM_TRIES = 4096


def _shard_tag(pool: str, shard: int, shards: int) -> str:
    """``a:<pool>/<k>``, suffixed with the first ``.<n>`` that puts its slot in the k-th of
    ``shards`` equal slices of the slot space. Masters own contiguous slot ranges, so the
    shards of a pool land on different masters instead of wherever the hash falls (three
    random slots share a master four times in five)."""
    tag = f"a:{pool}/{shard}"
    low, high = shard * _SLOTS // shards, (shard + 1) * _SLOTS // shards
    for n in range(_AIM_TRIES):  # each try lands in the slice with probability 1/shards
        aimed = f"{tag}.{n}" if n else tag
        if low <= key_slot(aimed.encode()) < high:
            return aimed
    return tag
