"""What one process knows of every agent-server pool: per shard, its free slots and size,
and the servers whose heartbeat expired. Pure: no I/O, no clock.

It is kept current from what changed, never from a walk over the servers: each shard's
free total comes from the index the shard scripts keep in step, and expiries are read
forward from a cursor over the shard's expiry index. So holding it costs O(shards) per
refresh and O(1) per placement, however large the fleet; any role can hold one.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass, field

_RNG = random.Random()


@dataclass(slots=True)
class ShardState:
    free: int = 0  # free slots as last read, less what this process reserved since
    servers: int = 0  # servers in the shard's expiry index (recently gone ones included)
    cursor: int = 0  # expiries up to here (Redis ms) have been read ...
    skip: int = 0  # ... and this many of those exactly at the cursor
    tag_epoch: int = 0  # the shard's tag epoch when ``tags`` was read
    tags: frozenset[str] = frozenset()  # tags of the shard's servers (targets.py)


@dataclass(frozen=True, slots=True)
class Expired:
    expires_at: int  # Redis ms; when it left, for a server that deregistered
    ttl_ms: int


ServerKey = tuple[str, str]  # (pool, server id)


@dataclass(slots=True)
class FleetView:
    shards: int
    pools: dict[str, list[ShardState]] = field(default_factory=dict)
    # Servers seen expired and not seen alive since: the only ones that may be lost.
    expired: dict[ServerKey, Expired] = field(default_factory=dict)

    def shard_states(self, pool: str) -> list[ShardState]:
        states = self.pools.get(pool)
        if states is None:
            states = self.pools[pool] = [ShardState() for _ in range(self.shards)]
        return states

    def has_servers(self, pool: str) -> bool:
        return any(s.servers for s in self.pools.get(pool, ()))

    def free(self, pool: str) -> int:
        return sum(s.free for s in self.pools.get(pool, ()))

    def apply_tick(
        self,
        pool: str,
        shard: int,
        total: int,
        servers: int,
        expired: list[tuple[str, int, int]],
    ) -> None:
        """One shard's tick: its totals, and the servers (id, expiry, ttl) that expired
        since the cursor, in expiry order."""
        state = self.shard_states(pool)[shard]
        state.free, state.servers = max(0, total), servers
        for server_id, expires_at, ttl_ms in expired:
            self.expired[(pool, server_id)] = Expired(expires_at, ttl_ms)
        if not expired:
            return
        last = expired[-1][1]
        at_last = sum(1 for _, e, _ in expired if e == last)
        if last == state.cursor:
            state.skip += at_last
        else:
            state.cursor, state.skip = last, at_last

    def apply_tags(self, pool: str, shard: int, epoch: int, tags: frozenset[str]) -> None:
        state = self.shard_states(pool)[shard]
        state.tag_epoch, state.tags = epoch, tags

    def has_tags(self, pool: str, wanted: frozenset[str]) -> bool:
        """Some shard of the pool has servers carrying these tags (the view's word: a
        server may carry them and be dead, or have come since the last refresh)."""
        return any(wanted <= s.tags for s in self.pools.get(pool, ()))

    def choose_shard(
        self,
        pool: str,
        rng: random.Random | None = None,
        wanted: frozenset[str] = frozenset(),
        avoid: Collection[int] = (),
    ) -> int | None:
        """Two random choices among the shards with a free slot (and, for a targeted job,
        servers carrying the ``wanted`` tags, less those to ``avoid``), the freer one
        first: many schedulers placing at once spread instead of herding onto the freest
        shard."""
        states = self.pools.get(pool)
        if not states:
            return None
        if wanted:
            open_shards = [
                k
                for k, s in enumerate(states)
                if s.free > 0 and wanted <= s.tags and k not in avoid
            ]
        else:
            open_shards = [k for k, s in enumerate(states) if s.free > 0]
        if len(open_shards) <= 1:
            return open_shards[0] if open_shards else None
        first, second = (rng or _RNG).sample(open_shards, 2)
        return first if states[first].free >= states[second].free else second

    def note_reserved(self, pool: str, shard: int) -> None:
        state = self.shard_states(pool)[shard]
        state.free = max(0, state.free - 1)

    def note_released(self, pool: str, shard: int) -> None:
        self.shard_states(pool)[shard].free += 1

    def note_full(self, pool: str, shard: int) -> None:
        """The shard had no room when asked: skip it until its next tick."""
        self.shard_states(pool)[shard].free = 0

    def note_alive(self, key: ServerKey) -> None:
        self.expired.pop(key, None)

    def note_absent(self, key: ServerKey, now_ms: int) -> None:
        """A server Redis no longer knows (reaped before this process looked): lost as of
        now, as if it had just left."""
        self.expired.setdefault(key, Expired(now_ms, 0))

    def forget_expired_before(self, before_ms: int) -> None:
        """Drop servers expired before ``before_ms`` (reaped by now, their jobs long
        re-placed), so the map stays as small as the recent churn."""
        old = [k for k, e in self.expired.items() if e.expires_at < before_ms]
        for key in old:
            del self.expired[key]
