"""Every Redis key the system uses, built in one place.

All keys start with ``dsp:``. Keys of one partition carry the partition's hash tag ``{pNN}`` and
keys of one agent-server pool carry the pool's tag ``{a:<agent name>}``, so each partition and
each pool lives in a single Redis Cluster slot and every script over it is atomic. No script
touches keys of two partitions, or of a partition and a pool.

Global keys (one slot each):

``dsp:meta``                    hash  ``partitions`` -> P, written once at first start.
``dsp:schedulers``              zset  scheduler node id -> heartbeat expiry (Redis ms).
``dsp:pools``                   set   agent names that have registered servers.

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

Timers need no key of their own: each is derived from a persisted job record (phase and
``updated_at``), so a new lease holder inherits them when it loads the active jobs.

Pool keys (``A`` = ``{a:<agent name>}``):

``dsp:A:servers``               set of server ids [agent servers].
``dsp:A:srv:<id>``              hash cap, load, status, exp (Redis ms), info [agent server].
``dsp:A:res:<id>``              hash job id -> reach deadline (Redis ms), 0 once confirmed:
                                the server's reserved slots [scheduler reserves, server
                                confirms and releases, heartbeat reclaims].
``dsp:A:jobs``                  hash job id -> server id: makes reservation idempotent.
``dsp:A:inbox:<id>``            stream of assignments and terminations for one server.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

from dispatcher.partitions import partition_tag

META = "dsp:meta"
SCHEDULERS = "dsp:schedulers"
POOLS = "dsp:pools"
CONSUMER_GROUP = "schedulers"


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
    )


@dataclass(frozen=True, slots=True)
class PoolKeys:
    agent_name: str
    base: str  # "dsp:{a:<agent name>}:"
    servers: str
    jobs: str

    def server(self, server_id: str) -> str:
        return f"{self.base}srv:{server_id}"

    def reservations(self, server_id: str) -> str:
        return f"{self.base}res:{server_id}"

    def inbox(self, server_id: str) -> str:
        return f"{self.base}inbox:{server_id}"

    def slot_keys(self, server_id: str) -> list[str]:
        """The keys of a server's reservations, in the order the slot scripts expect
        (``confirm``/``release``/``revoke``: the server's reservations, then the pool's jobs)."""
        return [self.reservations(server_id), self.jobs]

    def server_keys(self, server_id: str) -> list[str]:
        """The three keys of one server, in the order the pool scripts expect."""
        return [self.server(server_id), self.reservations(server_id), self.inbox(server_id)]


@lru_cache(maxsize=1024)  # pools are few; bounded all the same, names come from callers
def pool_keys(agent_name: str) -> PoolKeys:
    base = f"dsp:{{a:{agent_name}}}:"
    return PoolKeys(agent_name=agent_name, base=base, servers=base + "servers", jobs=base + "jobs")
