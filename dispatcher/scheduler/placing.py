"""How a partition reaches the agent-server pools: the calls that reserve a job's slot in a
pool shard, take it back, and find the jobs of lost servers.

Placement picks a shard from the registry's view (two random choices by free slots) and
``reserve.lua`` picks the server inside it from the shard's free index: O(1) here and
O(log N) in Redis, however large the pool.

A replayed placement never holds a second reservation in another shard. ``reserve.lua``
answers a job id the shard already holds with the server holding it, so the only danger
is asking a different shard. This loop asks the same shard again whenever a reservation
may exist: after a call whose outcome is unknown (it failed or timed out), and, for every
job still pending when it took the partition over, in the shard where a lookup over all
the pool's shards found its reservation (the previous holder may have reserved it and
stopped before committing the assignment).
"""

from __future__ import annotations

import logging
from collections.abc import KeysView
from typing import Any

from dispatcher.scheduler import jobs
from dispatcher.scheduler.poolview import ServerKey
from dispatcher.scheduler.registry import Registry
from dispatcher.scheduler.targeted import Misses
from dispatcher.store import calls, keys, scripts
from dispatcher.store.calls import Call
from dispatcher.store.client import Client
from dispatcher.wire import JobRecord, Termination, encode

log = logging.getLogger(__name__)


class PoolCalls:
    def __init__(self, registry: Registry, load_threshold: float, partition: int) -> None:
        self._registry = registry
        self._shards = registry.shards
        self._load_threshold = load_threshold
        self._partition = partition
        # job id -> the shard that holds, or may hold, its reservation
        self._held_in: dict[str, int] = {}
        self._misses = Misses()  # targeted jobs: shards with no room for them

    def waiting(self, record: JobRecord) -> JobRecord:
        """A job that could not be placed, with its pending reason."""
        return jobs.waiting_for_capacity(record, self._target_matched(record))

    def _target_matched(self, record: JobRecord) -> bool:
        """False when no live server matches the job's target (as far as this process
        knows: no shard carries its tags, or every shard asked since the last refresh
        found no live match); True otherwise, or when it has none."""
        spec = record.spec
        if spec.target is None:
            return True
        if not spec.target.server_id and not self._registry.may_match(spec.pool, spec.target):
            return False
        misses = self._misses.of(spec.job_id, self._registry.version)
        return any(misses.values()) or not misses

    def more_to_try(self, record: JobRecord) -> bool:
        """A job that found no room may find it in another shard before the next refresh:
        any job without a target, a targeted one while shards carrying its tags are left."""
        spec = record.spec
        if spec.target is None:
            return True
        misses = self._misses.of(spec.job_id, self._registry.version)
        return self._registry.choose_shard(spec.pool, spec.target, misses) is not None

    def shard(self, pool: str, server_id: str) -> keys.ShardKeys:
        return keys.server_shard(pool, server_id, self._shards)

    # --- reserving ------------------------------------------------------------------------

    def reservation(self, record: JobRecord, timeout_ms: int) -> tuple[int, Call] | None:
        """The shard and the ``reserve.lua`` call for a waiting job; None when no shard of
        its pool has a free slot."""
        spec = record.spec
        shard = self._held_in.get(spec.job_id)
        if shard is None and spec.target is None:
            shard = self._registry.choose_shard(spec.pool)
        elif shard is None:
            misses = self._misses.of(spec.job_id, self._registry.version)
            shard = self._registry.choose_shard(spec.pool, spec.target, misses)
        if shard is None:
            return None
        shard_keys = keys.shard_keys(spec.pool, shard, self._shards)
        threshold, excluded = self._load_threshold, record.rejected_by
        return shard, calls.reserve(shard_keys, spec, timeout_ms, threshold, excluded)

    def placed(self, record: JobRecord, shard: int, result: Any) -> str | None:
        """The server a reservation went to; None when it failed or found no room."""
        job_id, pool = record.spec.job_id, record.spec.pool
        if isinstance(result, Exception):
            # It may have run: ask the same shard again, which answers with its server.
            self._held_in[job_id] = shard
            log.warning("partition %d: reserve failed: %s", self._partition, result)
            return None
        self._held_in.pop(job_id, None)
        if record.spec.target is not None and not isinstance(result, bytes):
            # the shard may have room for other jobs: only this target found none
            self._misses.note(job_id, self._registry.version, shard, result != 0)
            return None
        if result is None:
            self._registry.note_full(pool, shard)
            return None
        self._misses.forget(job_id)
        server_id: str = result.decode()
        self._registry.note_reserved(pool, server_id)
        return server_id

    async def find_reservations(self, client: Client, pending: list[JobRecord]) -> None:
        """For jobs pending when this loop took over: the shard that already holds a
        reservation for one, if any, so that placing it again asks that shard."""
        batch = scripts.Batch()
        asked = [(r, k) for r in pending for k in range(self._shards)]
        for record, shard in asked:
            spec = record.spec
            batch.command("HGET", keys.shard_keys(spec.pool, shard, self._shards).jobs, spec.job_id)
        for (record, shard), held in zip(asked, await batch.run(client), strict=True):
            if held is not None:
                self._held_in[record.spec.job_id] = shard

    # --- taking slots back ----------------------------------------------------------------

    def revoke(self, record: JobRecord) -> Call:
        """The call that takes an assigned job's reservation back from its server."""
        current = record.current
        shard = self.shard(record.spec.pool, current.server_id)
        return calls.revoke(shard, current.server_id, current.job_id)

    def release_lost(self, key: ServerKey, job_id: str) -> Call:
        pool, server_id = key
        expired = self._registry.suspects()[key]
        not_before = self._registry.not_before(expired)
        shard, margin = self.shard(pool, server_id), self._registry.loss_margin_ms
        return calls.release_lost(shard, server_id, job_id, not_before, margin)

    def inbox(self, pool: str, server_id: str) -> str:
        return self.shard(pool, server_id).inbox(server_id)

    def queue_effects(
        self, batch: scripts.Batch, effects: list[jobs.Terminate | jobs.Release]
    ) -> None:
        """One call per effect: a termination into the server's inbox, or a slot freed."""
        for effect in effects:
            if isinstance(effect, jobs.Terminate):
                message = encode(Termination(job_id=effect.job_id, reason=effect.reason))
                inbox = self.inbox(effect.pool, effect.server_id)
                batch.command("XADD", inbox, "MAXLEN", "~", 1000, "*", "m", message)
            else:
                server_id, shard = effect.server_id, self.shard(effect.pool, effect.server_id)
                batch.script(scripts.release, *calls.release(shard, server_id, effect.job_id))

    # --- lost servers ---------------------------------------------------------------------

    def lost(self, hosting: KeysView[ServerKey]) -> list[ServerKey]:
        """The servers hosting this partition's jobs that the registry judges lost: O(the
        smaller of the two sets), since either may be large."""
        registry, suspects = self._registry, self._registry.suspects()
        if len(suspects) < len(hosting):
            keys_ = [k for k in suspects if k in hosting]
        else:
            keys_ = [k for k in hosting if k in suspects]
        return [k for k in keys_ if registry.is_lost(k)]

    async def find_absent(self, client: Client, hosting: list[ServerKey]) -> None:
        """Servers Redis no longer knows at all (reaped before this loop looked) are
        suspects from now on, so their jobs are found."""
        batch = scripts.Batch()
        for pool, server_id in hosting:
            batch.command("ZSCORE", self.shard(pool, server_id).exp, server_id)
        for key, expiry in zip(hosting, await batch.run(client), strict=True):
            if expiry is None:
                self._registry.note_absent(key)
