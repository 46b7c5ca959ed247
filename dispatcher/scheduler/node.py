"""A scheduler node: membership, partition ownership, leases, and one loop per partition.

Every heartbeat the node refreshes its membership, renews the leases it holds, computes the
partitions rendezvous hashing gives it, stops the loops of partitions it should no longer
own (then releases their leases) and tries to acquire the leases of partitions it should own.
A partition whose lease is still held elsewhere is retried on the next heartbeat, so a
handover completes within about one heartbeat of the old owner letting go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from dispatcher.errors import OwnershipLost, describe
from dispatcher.scheduler import figures, jobs, observe
from dispatcher.scheduler.ownership import owned_by
from dispatcher.scheduler.partition import PartitionLoop
from dispatcher.scheduler.registry import Registry
from dispatcher.settings import SchedulerSettings, default_node_id
from dispatcher.store import calls, keys, scripts
from dispatcher.store.client import Client, connect, log_failure
from dispatcher.store.meta import ensure_partitions, ensure_pool_shards
from dispatcher.webhooks.config import webhook_config

if TYPE_CHECKING:
    from dispatcher.webhooks import Webhooks

log = logging.getLogger(__name__)
CANCEL_TIMEOUT_S = 2.0  # for cancelled tasks to end, before a shutdown goes on without them


class SchedulerNode:
    def __init__(self, settings: SchedulerSettings, client: Client) -> None:
        self.settings = settings
        self.node_id = settings.node_id or default_node_id()
        self.client = client
        self.registry = Registry(
            client,
            settings.pool_shards,
            settings.snapshot_interval_s,
            settings.reap_after_ms,
            settings.loss_margin_ms,
        )
        self.loops: dict[int, PartitionLoop] = {}
        self.members: list[str] = []
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._background: list[asyncio.Task[None]] = []
        self._member_since: float | None = None  # monotonic time of the last membership write
        self._draining = False
        # Who watches each partition this node owns (metrics, webhooks, the node's figures).
        self.observers: list[observe.PerPartition] = []
        self.figures = figures.FigureCounter(self.node_id, settings.heartbeat_interval_s)
        self.observers.append(lambda _: self.figures)
        self.webhooks: Webhooks | None = None
        if (hooks := webhook_config(settings)) is not None:  # delivery imported only then
            from dispatcher.webhooks import Webhooks

            self.webhooks = Webhooks(hooks, client, self.node_id)
            self.observers.append(self.webhooks.watch)
        self._timeouts = jobs.Timeouts(
            settings.assign_timeout_ms,
            settings.terminate_grace_ms,
            int(settings.capacity_wait_s * 1000),
        )

    @classmethod
    async def create(cls, settings: SchedulerSettings) -> SchedulerNode:
        client = await connect(settings.redis_url)
        try:
            await ensure_partitions(client, settings.partitions)
            await ensure_pool_shards(client, settings.pool_shards)
            await scripts.load_all(client)
            return cls(settings, client)
        except BaseException:
            await client.aclose()
            raise

    async def start(self) -> None:
        await self.registry.refresh()
        await self.tick()
        self._background = [
            asyncio.create_task(self.registry.run(), name="registry"),
            asyncio.create_task(self._heartbeat_loop(), name="membership"),
        ]
        held, total = len(self.loops), self.settings.partitions
        log.info("scheduler %s started, holding %d of %d partitions", self.node_id, held, total)

    def not_ready(self) -> str | None:
        """Why this node should not count as ready (None: it is a live member)."""
        if self._draining:
            return "draining"
        if self._member_since is None:
            return "starting"
        silent_s = time.monotonic() - self._member_since
        if silent_s > self.settings.membership_ttl_ms / 1000:
            return f"no membership heartbeat for {silent_s:.0f} s (Redis unavailable?)"
        return None

    async def drain(self) -> None:
        """Leave the membership and hand every partition over."""
        self._draining = True
        await _cancel(self._background)
        await scripts.membership(self.client, *calls.membership(self.node_id, 0, leaving=True))
        await asyncio.gather(*(self._stop_partition(p) for p in list(self.loops)))
        await figures.withdraw(self.client, self.node_id)
        log.info("scheduler %s drained", self.node_id)

    async def aclose(self) -> None:
        """Stop at once, leaving leases to expire (as a crash would); ``drain`` first to hand
        partitions over cleanly."""
        await _cancel(self._background)
        await self._stop_loops()
        if self.webhooks is not None:
            await self.webhooks.aclose()
        await self.client.aclose()

    async def _stop_loops(self) -> None:
        """Let each loop finish its turn; cancelling a blocked read can wedge its
        connection, so cancel only the ones that do not stop in time."""
        for loop in self.loops.values():
            loop.stop()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=turn_end_s(self.settings))
        await _cancel(list(late))

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            try:
                await self.tick()
            except Exception as exc:  # policy: try again next heartbeat
                log_failure(log, "scheduler heartbeat", exc)

    async def tick(self) -> None:
        ttl = self.settings.membership_ttl_ms
        members = await scripts.membership(self.client, *calls.membership(self.node_id, ttl))
        self._member_since = time.monotonic()
        self.members = [m.decode() for m in members]
        await self._renew_leases()
        wanted = owned_by(self.node_id, self.members, self.settings.partitions)
        await asyncio.gather(*(self._stop_partition(p) for p in set(self.loops) - wanted))
        await self._acquire(sorted(wanted - set(self.loops)))
        try:
            record = self.figures.figures(self.loops, time.time_ns())
            await figures.publish(self.client, record, self.members)
        except Exception as exc:  # policy: counters are cumulative; the next heartbeat says all
            log_failure(log, "scheduler figures", exc)

    async def _renew_leases(self) -> None:
        """Policy: a lease another node now holds is abandoned at once; a renewal that
        failed is retried next heartbeat, and the partition is abandoned only once its lease
        may have expired (its writes are fenced anyway; this also stops its unfenced calls
        to agent-server pools)."""
        held = list(self.loops.items())
        batch = scripts.Batch()
        for partition, loop in held:
            k = keys.partition_keys(partition)
            ttl_ms = self.settings.lease_ttl_ms
            batch.script(scripts.lease, *calls.lease(k, self.node_id, ttl_ms, loop.lease_value))
        until = time.monotonic() + self.settings.lease_ttl_ms / 1000
        failed = 0
        for (partition, loop), value in zip(held, await batch.outcomes(self.client), strict=True):
            if isinstance(value, Exception):
                failed += 1
                if time.monotonic() > loop.lease_until:
                    log.warning("partition %d: lease not renewed in time; stopping", partition)
                    self._abandon(partition)
            elif value is None or value.decode() != loop.lease_value:
                log.warning("scheduler %s lost the lease of partition %d", self.node_id, partition)
                self._abandon(partition)
            else:
                loop.lease_until = until
        if failed:
            log.warning("%d of %d lease renewals failed; retrying", failed, len(held))

    async def _acquire(self, partitions: list[int]) -> None:
        batch = scripts.Batch()
        for partition in partitions:
            k = keys.partition_keys(partition)
            batch.script(scripts.lease, *calls.lease(k, self.node_id, self.settings.lease_ttl_ms))
        until = time.monotonic() + self.settings.lease_ttl_ms / 1000
        results = await batch.outcomes(self.client)  # policy: a failure is retried next tick
        for partition, value in zip(partitions, results, strict=True):
            if isinstance(value, bytes):
                self._start_partition(partition, value.decode()).lease_until = until
        if failures := [r for r in results if isinstance(r, Exception)]:
            log.warning("%d lease acquisition(s) failed: %s", len(failures), describe(failures[0]))

    def _start_partition(self, partition: int, lease_value: str) -> PartitionLoop:
        s = self.settings
        loop = PartitionLoop(
            self.client,
            partition,
            self.node_id,
            lease_value,
            self.registry,
            timeouts=self._timeouts,
            batch_size=s.batch_size,
            block_ms=s.block_ms,
            idle_block_ms=s.idle_block_ms,
            load_threshold=s.load_threshold,
            room_retention_s=s.room_retention_s,
            observer=observe.for_partition(self.observers, partition),
        )
        self.loops[partition] = loop
        task = asyncio.create_task(self._run_partition(loop), name=f"partition-{partition}")
        self._tasks[partition] = task
        log.debug("scheduler %s owns partition %d (%s)", self.node_id, partition, lease_value)
        return loop

    async def _run_partition(self, loop: PartitionLoop) -> None:
        try:
            await loop.run()
        except OwnershipLost as exc:
            log.warning("%s", exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # policy: restart from Redis's state at the next heartbeat
            log_failure(log, f"partition {loop.partition} (restarted at the next heartbeat)", exc)
        finally:
            if self.loops.get(loop.partition) is loop:
                self.loops.pop(loop.partition)
                self._tasks.pop(loop.partition, None)
                self._stop_webhooks(loop.partition)

    async def _stop_partition(self, partition: int) -> None:
        loop, task = self.loops.get(partition), self._tasks.get(partition)
        if loop is None or task is None:
            return
        loop.stop()
        # wait(), not ``await task``: our own cancellation must still propagate.
        await asyncio.wait([task])
        k = keys.partition_keys(partition)
        await scripts.release_lease(self.client, *calls.release_lease(k, loop.lease_value))
        log.debug("scheduler %s released partition %d", self.node_id, partition)

    def _abandon(self, partition: int) -> None:
        """The lease is gone: stop at once; the commit fence already refuses its writes."""
        self.loops.pop(partition, None)
        task = self._tasks.pop(partition, None)
        if task is not None:
            task.cancel()
        self._stop_webhooks(partition)

    def _stop_webhooks(self, partition: int) -> None:
        if self.webhooks is not None:
            self.webhooks.stop(partition)


def turn_end_s(settings: SchedulerSettings) -> float:
    """How long a partition is given to finish its turn (its longest read, and margin)."""
    return max(settings.block_ms, settings.idle_block_ms) / 1000 + 2.0


def longest_drain_s(settings: SchedulerSettings) -> float:
    """The longest a SIGTERM'd node takes to stop: its background tasks' cancellation,
    every partition's turn and then the node's own close (each bounded the same way)."""
    return CANCEL_TIMEOUT_S + 2 * (turn_end_s(settings) + CANCEL_TIMEOUT_S)


async def _cancel(tasks: list[asyncio.Task[None]], timeout_s: float = CANCEL_TIMEOUT_S) -> None:
    """Cancel tasks and wait for them, but never hang a shutdown on one that lingers."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=timeout_s)
    for task in late:
        log.warning("task %s did not stop within %.1f s", task.get_name(), timeout_s)
