"""A scheduler's own figures: what it counted since it started (dispatch times, jobs created,
started and ended, the latest failures) and what it holds now (partitions, jobs by phase,
pending jobs by why they wait).

Figures of the whole deployment cannot come from one process's memory, so every scheduler
writes its own record (``wire.SchedulerFigures``) into ``dsp:{stats}:schedulers`` at each
membership heartbeat, and ``dispatcher status`` and the dashboard add them up. Counting
hangs on the partitions' observer hook: one ``FigureCounter`` per node, shared by every
partition it owns. What it holds now is read from the partitions' state, not counted
from changes (a partition taken over loads its jobs without telling any observer): an
O(active jobs) look, repeated every heartbeat while it costs under 1 % of the node's time
and less often beyond (20,000 active jobs took 15 ms on the test machine).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Mapping
from typing import Protocol

from dispatcher.metrics.counts import Histogram
from dispatcher.scheduler import jobs
from dispatcher.scheduler.observe import Observer
from dispatcher.scheduler.state import PartitionState
from dispatcher.store import keys
from dispatcher.store.client import Client
from dispatcher.wire import (
    Failure,
    JobAttempt,
    JobReason,
    JobRecord,
    JobStatus,
    SchedulerFigures,
    encode,
)

# Upper bounds (ms) of the dispatch-time buckets: fixed, so records of every node add up.
DISPATCH_BOUNDS_MS = (
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
)  # fmt: skip
RECENT_FAILURES = 20
_SCAN_SHARE = 0.01  # of the node's time, at most, spent counting what it holds
_RUNNING = ("running", "terminating")


class HoldsState(Protocol):
    """A partition loop, as far as its figures go."""

    state: PartitionState


class FigureCounter(Observer):
    """Counts what every partition of one node saw; cheap, as an observer must be."""

    def __init__(self, node_id: str, heartbeat_s: float) -> None:
        self.node_id = node_id
        self.started_at = time.time_ns()
        self._heartbeat_ms = int(heartbeat_s * 1000)
        self._dispatch_ms = Histogram(DISPATCH_BOUNDS_MS)
        self._created = 0
        self._started = 0
        self._retried = 0
        self._ended: collections.Counter[str] = collections.Counter()
        self._failures: collections.deque[Failure] = collections.deque(maxlen=RECENT_FAILURES)
        self._holdings: tuple[dict[str, int], dict[str, int]] = ({}, {})
        self._next_count = 0.0  # monotonic s: when what the node holds is counted again

    def job_changed(self, before: JobRecord | None, after: JobRecord) -> None:
        if before is None:
            self._created += 1
        if after.phase in _RUNNING and (before is None or before.phase not in _RUNNING):
            self._job_started(after)
        if after.phase == "ended":
            current = after.current
            self._ended[f"{current.status.name.lower()}/{current.reason.name.lower()}"] += 1
            if current.status is JobStatus.FAILED:
                self._failures.append(_failure(after, after.current))
        elif before is not None and len(after.past) > len(before.past):  # tried again
            self._retried += 1
            self._failures.append(_failure(before, after.past[-1]))

    def _job_started(self, record: JobRecord) -> None:
        self._started += 1
        received, started = record.spec.received_ns, record.current.started_at
        if received and started >= received:
            self._dispatch_ms.observe((started - received) / 1e6)

    def figures(self, partitions: Mapping[int, HoldsState], now: int) -> SchedulerFigures:
        """The record to write now. What the node holds is counted again only once the last
        count's cost is paid back (``_SCAN_SHARE``): a node holding 100,000 jobs does not
        spend a tenth of its time counting them, and says figures a little older instead."""
        if time.monotonic() >= self._next_count:
            started = time.perf_counter()
            self._holdings = _holdings(partitions, now)
            took = time.perf_counter() - started
            self._next_count = time.monotonic() + took / _SCAN_SHARE
        phases, pending = self._holdings
        return SchedulerFigures(
            node_id=self.node_id,
            started_at=self.started_at,
            at=now,
            heartbeat_ms=self._heartbeat_ms,
            partitions=sorted(partitions),
            dispatch_bounds_ms=list(DISPATCH_BOUNDS_MS),
            dispatch_counts=list(self._dispatch_ms.counts),
            dispatch_sum_ms=self._dispatch_ms.sum,
            jobs_created=self._created,
            jobs_started=self._started,
            jobs_ended=dict(self._ended),
            attempts_retried=self._retried,
            jobs_by_phase=phases,
            pending_by_reason=pending,
            failures=list(self._failures),
        )


def _holdings(
    partitions: Mapping[int, HoldsState], now: int
) -> tuple[dict[str, int], dict[str, int]]:
    """Jobs by phase and pending jobs by reason, over every owned partition."""
    phases: collections.Counter[str] = collections.Counter()
    pending: collections.Counter[str] = collections.Counter()
    for loop in partitions.values():
        state = loop.state
        phases.update(record.phase for record in state.records.values())  # counted in C
        for key in state.waiting:  # the pending ones, without a look at the rest
            pending[pending_reason(state.records[key], now)] += 1
    return dict(phases), dict(pending)


def pending_reason(record: JobRecord, now: int) -> str:
    """Why a pending job waits, in a word."""
    if record.current.reason is JobReason.NO_CAPACITY:
        return "no_capacity"  # no server of its pool had a free slot
    if jobs.placeable_at(record) > now:
        return "backing_off"  # refused by servers, offered again after a pause
    if record.current.reason is JobReason.RETRYING:
        return "retrying"  # a new attempt after a failed one, about to be placed
    return "placing"  # new, about to be placed


def _failure(record: JobRecord, attempt: JobAttempt) -> Failure:
    spec = record.spec
    return Failure(
        job_id=attempt.job_id,
        dispatch_id=spec.dispatch_id,
        room=spec.room,
        agent_name=spec.agent_name,
        server_id=attempt.server_id,
        error=attempt.error,
        reason=attempt.reason.name.lower(),
        at=attempt.ended_at or attempt.updated_at,
    )


async def publish(client: Client, figures: SchedulerFigures, members: list[str]) -> None:
    """Write a node's record, and drop those of nodes that left the membership without a
    clean stop (a crash): readers ignore them already, but the hash should not grow with
    every node name ever used."""
    fast, key = client.fast, keys.SCHEDULER_FIGURES
    _, names = await asyncio.gather(
        fast.execute("HSET", key, figures.node_id, encode(figures)), fast.execute("HKEYS", key)
    )  # one round trip
    live = {*members, figures.node_id}
    if gone := [name for name in names if name.decode() not in live]:
        await fast.execute("HDEL", key, *gone)


async def withdraw(client: Client, node_id: str) -> None:
    await client.fast.execute("HDEL", keys.SCHEDULER_FIGURES, node_id)
