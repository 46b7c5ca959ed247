"""A scheduler's metrics: what its partitions saw (an ``Observer``, one per process), and
what its node holds, read when scraped.

Counted as partitions apply changes: dispatch time (the API node's receipt to the RUNNING
report), placements, retries by cause, rejections, jobs ended by status and reason, stream
entries applied. Read at scrape time: jobs by phase, partitions owned, pools (servers and
free slots from the registry's view, used slots from each shard's reservations) and each
owned partition's stream lag, the last two sampled from Redis once per scrape (one
pipelined call per partition and per pool shard), never on a partition's turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from dispatcher.metrics.counts import DISPATCH_BUCKETS_S, Histogram
from dispatcher.metrics.export import Metrics, add_histogram, counter, gauge, histogram
from dispatcher.scheduler import jobs
from dispatcher.scheduler.node import SchedulerNode
from dispatcher.scheduler.observe import Observer
from dispatcher.store import keys
from dispatcher.wire import JobReason, JobRecord, JobStatus

PHASES = ("pending", "assigned", "running", "terminating")


class JobCounts(Observer):
    """Counted in plain ints as partitions apply changes: one instance per process."""

    def __init__(self) -> None:
        self.dispatch_time = Histogram(DISPATCH_BUCKETS_S)
        self.placements = 0
        self.retries: dict[str, int] = {}  # cause -> re-placements
        self.rejections = 0
        self.ended: dict[tuple[int, int], int] = {}  # (status, reason) -> jobs
        self.entries = 0

    def job_changed(self, before: JobRecord | None, after: JobRecord) -> None:
        phase = after.phase
        was = before.phase if before is not None else ""
        if phase == was:
            return
        if phase == "assigned":
            self.placements += 1
        elif phase == "running":
            started = after.current.started_at - after.spec.received_ns
            self.dispatch_time.observe(max(0, started) / 1e9)
        elif phase == "ended":
            self._ended(was, after)
        elif phase == "pending" and before is not None and after.spec.attempt > before.spec.attempt:
            cause = retry_cause(before, after)
            self.retries[cause] = self.retries.get(cause, 0) + 1
            self.rejections += cause == "rejected"

    def _ended(self, was: str, after: JobRecord) -> None:
        current = after.current
        key = (int(current.status), int(current.reason))
        self.ended[key] = self.ended.get(key, 0) + 1
        if was in ("pending", "assigned") and current.status is JobStatus.SUCCESS:
            self.rejections += 1  # turned down for good (``reject(terminate=True)``)

    def entries_applied(self, count: int) -> None:
        self.entries += count


def retry_cause(before: JobRecord, after: JobRecord) -> str:
    """Why a job was re-placed: its server turned it down, did not start it within the
    assignment timeout, or was lost (or fenced itself off)."""
    error = after.past[-1].error if after.past else ""
    if error.startswith(jobs.REJECTED_BY):
        return "rejected"
    if after.rejected_by != before.rejected_by:  # the assignment timer blames the server
        return "assign_timeout"
    return "server_lost"


class SchedulerCollector(Collector):
    """The node's metrics; made once per process, so a node made again (its start
    retried while Redis was away) is watched by the same collector."""

    def __init__(self) -> None:
        self._node: SchedulerNode | None = None
        self.counts = JobCounts()
        self._lag: dict[int, tuple[int | None, int]] = {}  # partition -> (lag, pending)
        self._used: dict[str, int] = {}  # pool -> reserved slots

    def watch(self, node: SchedulerNode) -> None:
        """Count what the node's partitions see (before it starts) and export what it holds."""
        node.observers.append(lambda _partition: self.counts)
        self._node = node

    async def refresh(self) -> None:
        """Stream lag of each owned partition and used slots of each pool, one pipelined
        write (the fast lane's), once per scrape."""
        if (node := self._node) is None:
            return
        fast = node.client.fast
        owned = sorted(node.loops)
        pools = sorted(node.registry.view.pools)
        shards = node.registry.shards
        streams = [keys.partition_keys(p).events for p in owned]
        groups = [fast.execute("XINFO", "GROUPS", s, key=s) for s in streams]  # routed by key
        used = [
            fast.execute("HLEN", keys.shard_keys(pool, k, shards).jobs)
            for pool in pools
            for k in range(shards)
        ]
        replies = await asyncio.gather(*groups, *used)
        lags, per_shard = replies[: len(owned)], replies[len(owned) :]
        self._lag = {p: _group_lag(reply) for p, reply in zip(owned, lags, strict=True)}
        self._used = {
            pool: sum(per_shard[i * shards : (i + 1) * shards]) for i, pool in enumerate(pools)
        }

    def collect(self) -> Iterable[Metric]:
        yield from self._counted()
        if self._node is not None:
            yield from self._held(self._node)
            yield from self._pools(self._node)

    def _counted(self) -> Iterable[Metric]:
        c = self.counts
        dispatch = histogram(
            "dispatcher_dispatch_duration_seconds",
            "From the API node's receipt of a dispatch to its job's RUNNING report.",
        )
        add_histogram(dispatch, [], c.dispatch_time)
        yield dispatch
        yield counter(
            "dispatcher_placements", "Jobs assigned a slot on an agent server.", value=c.placements
        )
        retries = counter(
            "dispatcher_job_retries",
            "Jobs re-placed, by cause (rejected, assign_timeout, server_lost).",
            ["cause"],
        )
        for cause, n in sorted(c.retries.items()):
            retries.add_metric([cause], n)
        yield retries
        yield counter(
            "dispatcher_job_rejections", "Jobs turned down by an agent server.", value=c.rejections
        )
        ended = counter(
            "dispatcher_jobs_ended", "Jobs ended, by status and reason.", ["status", "reason"]
        )
        for (status, reason), n in sorted(c.ended.items()):
            ended.add_metric([JobStatus(status).name.lower(), JobReason(reason).name.lower()], n)
        yield ended
        yield counter(
            "dispatcher_stream_entries_applied",
            "Partition stream entries applied (dead-lettered ones included).",
            value=c.entries,
        )

    def _held(self, node: SchedulerNode) -> Iterable[Metric]:
        loops = list(node.loops.values())
        yield gauge(
            "dispatcher_partitions_owned",
            "Partitions this scheduler holds the lease of.",
            value=len(loops),
        )
        phases = dict.fromkeys(PHASES, 0)
        for loop in loops:
            for record in loop.state.records.values():
                phases[record.phase] = phases.get(record.phase, 0) + 1
        by_phase = gauge(
            "dispatcher_jobs", "Unfinished jobs of the owned partitions, by state.", ["state"]
        )
        for phase, n in phases.items():
            by_phase.add_metric([phase], n)
        yield by_phase
        lag = gauge(
            "dispatcher_partition_stream_lag_entries",
            "Entries of an owned partition's stream not yet read by its scheduler.",
            ["partition"],
        )
        pending = gauge(
            "dispatcher_partition_stream_pending_entries",
            "Entries of an owned partition's stream read but not yet acknowledged.",
            ["partition"],
        )
        for partition, (behind, unacked) in sorted(self._lag.items()):
            if partition in node.loops:
                if behind is not None:  # Redis cannot always tell (deleted entries)
                    lag.add_metric([str(partition)], behind)
                pending.add_metric([str(partition)], unacked)
        yield lag
        yield pending

    def _pools(self, node: SchedulerNode) -> Iterable[Metric]:
        servers = gauge(
            "dispatcher_pool_servers",
            "Agent servers per pool, as this scheduler sees it.",
            ["pool"],
        )
        free = gauge(
            "dispatcher_pool_free_slots", "Free slots of a pool's servers that take jobs.", ["pool"]
        )
        used = gauge(
            "dispatcher_pool_used_slots",
            "Reserved slots (jobs assigned or running) per pool.",
            ["pool"],
        )
        capacity = gauge(
            "dispatcher_pool_capacity_slots", "Used plus free slots per pool.", ["pool"]
        )
        for pool, states in sorted(node.registry.view.pools.items()):
            taken, open_ = self._used.get(pool, 0), sum(s.free for s in states)
            servers.add_metric([pool], sum(s.servers for s in states))
            free.add_metric([pool], open_)
            used.add_metric([pool], taken)
            capacity.add_metric([pool], taken + open_)
        yield from (servers, free, used, capacity)


def _group_lag(reply: list[Any]) -> tuple[int | None, int]:
    """(lag, pending) of the schedulers' consumer group in an ``XINFO GROUPS`` reply."""
    for group in reply:
        fields = dict(zip(group[::2], group[1::2], strict=True))
        if fields.get(b"name") == keys.CONSUMER_GROUP.encode():
            lag = fields.get(b"lag")
            return (int(lag) if lag is not None else None), int(fields.get(b"pending", 0))
    return None, 0


def exported(metrics: Metrics) -> SchedulerCollector:
    """A scheduler's collector, exported with the process's metrics."""
    collector = SchedulerCollector()
    metrics.add(collector, collector.refresh)
    return collector
