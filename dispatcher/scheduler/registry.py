"""The scheduler's view of every agent-server pool (``poolview.FleetView``), refreshed a
few times a second by one bounded call per pool shard (``shard_tick.lua``).

Placement picks a shard from this view and ``reserve.lua`` picks the server inside it, so
staleness costs at most a retry in another shard. The view also names the servers whose
heartbeat expired; the partitions holding jobs on them take those jobs back with
``release_lost.lua``, which re-checks the expiry on Redis's clock.

Loss is judged on evidence: a server is lost only once its heartbeat expiry has passed and
it has had a whole TTL to heartbeat since Redis was last seen coming back (a refresh that
failed, or a connection that dropped, means Redis may have been away, and expiries run on
Redis's clock while nobody can reach it), plus a margin that keeps the agent servers' own
fence ahead of any re-placement.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Collection

from dispatcher import targets
from dispatcher.scheduler.poolview import Expired, FleetView, ServerKey
from dispatcher.store import calls, keys, scripts
from dispatcher.store.client import Client, is_unavailable, log_failure
from dispatcher.wire import DispatchTarget

log = logging.getLogger(__name__)

# Bounds that keep one shard_tick.lua call under 1 ms on this project's test machine even
# in its worst case (BENCHMARKS.md, "Fleet scale"); a full page of expiries is followed at
# once by another call, up to _PAGES_PER_REFRESH, so a mass failure is still read quickly.
EXPIRED_PER_TICK = 16  # expiries read per shard and call
REAPED_PER_TICK = 2  # long-dead servers deleted per shard and upkeep
RECLAIMED_PER_TICK = 4  # reservations past their deadline taken back per shard and upkeep
_PAGES_PER_REFRESH = 8
_UPKEEP_EVERY_S = 1.0  # reaping and reclaiming need not run at every refresh
_FORGET_AFTER_MS = 60_000  # beyond reaping: an expiry this old concerns nobody any more


class Registry:
    def __init__(
        self,
        client: Client,
        shards: int,
        interval_s: float,
        reap_after_ms: int,
        loss_margin_ms: int = 500,
    ) -> None:
        self._client = client
        self.shards = shards
        self.view = FleetView(shards)
        self._interval_s = interval_s
        self._reap_after_ms = reap_after_ms
        self.loss_margin_ms = loss_margin_ms
        self._back_at_ms = 0  # Redis ms when Redis was last seen coming back
        self._unreachable = True  # nothing seen yet: the first refresh counts as a return
        self._disconnects = 0  # the fast lane's count at the last good refresh
        self._unreachable_logged = False
        self._offset_ms = 0  # Redis clock minus local clock
        self._refreshed_at = float("-inf")  # monotonic time of the last good refresh
        self._upkeep_at = float("-inf")  # monotonic time of the last reaping and reclaiming
        self._rng = random.Random()
        self.version = 0
        self.freed = 0  # slots freed locally so far: jobs waiting for capacity retry on it

    def now_ms(self) -> int:
        """Now on Redis's clock, which every expiry in the registry uses."""
        return int(time.time() * 1000) + self._offset_ms

    def has_servers(self, pool: str) -> bool:
        return self.view.has_servers(pool)

    def choose_shard(
        self, pool: str, target: DispatchTarget | None = None, avoid: Collection[int] = ()
    ) -> int | None:
        """A shard to reserve in; for a target, one with servers that may match it (a
        server id has its own shard), other than those to ``avoid``."""
        if target is None:
            return self.view.choose_shard(pool, self._rng)
        if target.server_id:
            shard = keys.shard_of(target.server_id, self.shards)
            states = self.view.pools.get(pool)
            return shard if states and states[shard].free > 0 and shard not in avoid else None
        return self.view.choose_shard(pool, self._rng, targets.tags(target), avoid)

    def may_match(self, pool: str, target: DispatchTarget) -> bool:
        """Whether any server of the pool may match the target's version and labels, as
        far as the view knows (a server id is not in the view: only ``reserve.lua`` knows)."""
        return self.view.has_tags(pool, targets.tags(target))

    def note_reserved(self, pool: str, server_id: str) -> None:
        """Count a reservation locally so the rest of a batch spreads over other shards."""
        self.view.note_reserved(pool, keys.shard_of(server_id, self.shards))

    def note_released(self, pool: str, server_id: str) -> None:
        """Count a slot freed by a job that ended or was rejected: without it, a busy shard
        would look full until the next refresh while its slots are in fact free."""
        self.view.note_released(pool, keys.shard_of(server_id, self.shards))
        self.freed += 1

    def note_full(self, pool: str, shard: int) -> None:
        self.view.note_full(pool, shard)

    # --- lost servers ---------------------------------------------------------------------

    def suspects(self) -> dict[ServerKey, Expired]:
        """Servers seen expired: the only ones that may be lost. Few: the recent churn."""
        return self.view.expired

    def is_lost(self, key: ServerKey) -> bool:
        """True once a suspect's expiry (plus the evidence bound and the margin) has passed.
        A stale view (Redis unreachable for a while) declares nothing lost: its expiry
        times would make every server look dead."""
        expired = self.view.expired.get(key)
        if expired is None or self.stale():
            return False
        return self.now_ms() > max(expired.expires_at, self.not_before(expired)) + (
            self.loss_margin_ms
        )

    def not_before(self, expired: Expired) -> int:
        """Redis ms before which no server may be judged lost: it gets a whole TTL to
        heartbeat from when Redis was last seen coming back."""
        return self._back_at_ms + expired.ttl_ms

    def note_alive(self, key: ServerKey) -> None:
        self.view.note_alive(key)

    def note_absent(self, key: ServerKey) -> None:
        self.view.note_absent(key, self.now_ms())

    def stale(self) -> bool:
        return time.monotonic() - self._refreshed_at > max(1.0, 4 * self._interval_s)

    # --- refreshing -----------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # policy: the view goes stale; no loss is judged
                if not self._unreachable_logged:  # once per outage
                    log_failure(log, "registry refresh", exc)
                self._unreachable_logged = is_unavailable(exc)
            else:
                self._unreachable_logged = False
            await asyncio.sleep(self._interval_s)

    async def refresh(self) -> None:
        # The fast lane, not redis-py: a refresh cancelled at shutdown must stop at once.
        disconnects = self._client.fast.disconnects
        try:
            await self._tick()
        except Exception:
            self._unreachable = True
            raise
        if self._unreachable or disconnects != self._disconnects:
            self._back_at_ms = self.now_ms()
            log.info("Redis reachable: agent servers get a full TTL from now to heartbeat")
        self._unreachable, self._disconnects = False, disconnects
        self._refreshed_at = time.monotonic()
        self.view.forget_expired_before(self.now_ms() - self._reap_after_ms - _FORGET_AFTER_MS)
        self.version += 1

    async def _tick(self) -> None:
        members: list[bytes] = await self._client.fast.execute("SMEMBERS", keys.POOLS)
        shards = [(n.decode(), k) for n in sorted(members) for k in range(self.shards)]
        upkeep = time.monotonic() - self._upkeep_at >= _UPKEEP_EVERY_S
        if upkeep:
            self._upkeep_at = time.monotonic()
        for _ in range(_PAGES_PER_REFRESH):  # again for the shards whose page was full
            shards = await self._tick_shards(shards, upkeep)
            if not shards:
                return
            upkeep = False

    async def _tick_shards(
        self, shards: list[tuple[str, int]], upkeep: bool
    ) -> list[tuple[str, int]]:
        """One ``shard_tick.lua`` call per shard; the shards with more expiries to read."""
        reap, reclaim = (REAPED_PER_TICK, RECLAIMED_PER_TICK) if upkeep else (0, 0)
        batch = scripts.Batch()
        for pool, shard in shards:
            state = self.view.shard_states(pool)[shard]
            call = calls.shard_tick(
                keys.shard_keys(pool, shard, self.shards),
                state.cursor,
                state.skip,
                EXPIRED_PER_TICK,
                self._reap_after_ms,
                reap_count=reap,
                reclaim_count=reclaim,
            )
            batch.script(scripts.shard_tick, *call)
        more, retagged = [], []
        for (pool, shard), result in zip(shards, await batch.run(self._client), strict=True):
            now, total, servers, rows, reclaimed, epoch = result
            if int(epoch) != self.view.shard_states(pool)[shard].tag_epoch:
                retagged.append((pool, shard, int(epoch)))
            self._offset_ms = int(now) - int(time.time() * 1000)
            if reclaimed:
                log.warning(
                    "%s/%d: reclaimed %d reservation(s) that never reached their server",
                    pool, shard, reclaimed,
                )  # fmt: skip
            expired = [
                (rows[i].decode(), int(rows[i + 1]), int(rows[i + 2]))
                for i in range(0, len(rows), 3)
            ]
            self.view.apply_tick(pool, shard, int(total), int(servers), expired)
            if len(expired) == EXPIRED_PER_TICK:
                more.append((pool, shard))
        if retagged:
            await self._read_tags(retagged)
        return more

    async def _read_tags(self, retagged: list[tuple[str, int, int]]) -> None:
        """The tags present in shards whose tag epoch moved (servers came, left or
        changed their version or labels): rare, unlike the ticks."""
        batch = scripts.Batch()
        for pool, shard, _ in retagged:
            batch.command("HKEYS", keys.shard_keys(pool, shard, self.shards).tags)
        read = await batch.run(self._client)
        for (pool, shard, epoch), names in zip(retagged, read, strict=True):
            self.view.apply_tags(pool, shard, epoch, frozenset(n.decode() for n in names))
