"""Counting on the hot path: plain ints and lists, no locks, no Prometheus objects.

Everything here runs on one event loop, so an increment needs no lock; a scrape reads the
numbers as they are (``export.py`` turns them into Prometheus families). A
``prometheus_client`` counter takes a lock and walks its label children on every increment,
which a dispatch would pay several times over on each role.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Sequence
from typing import Protocol

# Seconds: from a fraction of a millisecond (a cached Twirp call) to a minute (a job that
# waited for capacity).
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip
DISPATCH_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0
)  # fmt: skip


class Histogram:
    """Observations per bucket (not cumulative: summed at scrape), their sum and count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus's buckets: (upper bound, observations at or below it), ``+Inf`` last."""
        total, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return buckets


class RedisCounts:
    """A process's Redis trouble, from both lanes (``fastlane.py`` and redis-py's client in
    ``client.py``): counted where it happens, which is never on a call that succeeds."""

    __slots__ = ("connects", "disconnects", "error_replies", "failed_calls", "reconnects")

    def __init__(self) -> None:
        self.error_replies: dict[tuple[str, str], int] = {}  # (lane, error code) -> replies
        self.failed_calls: dict[tuple[str, str], int] = {}  # (lane, cause) -> calls
        self.connects = 0  # fast-lane connections opened
        self.reconnects = 0  # ... of which replaced one that dropped or stalled
        self.disconnects = 0  # fast-lane connections that dropped or stalled

    def error_reply(self, lane: str, message: str) -> None:
        key = (lane, error_code(message))
        self.error_replies[key] = self.error_replies.get(key, 0) + 1

    def failed(self, lane: str, cause: str, calls: int = 1) -> None:
        key = (lane, cause)
        self.failed_calls[key] = self.failed_calls.get(key, 0) + calls


def error_code(message: str) -> str:
    """A Redis error reply's code (its first word, by Redis's convention upper case):
    ``NOSCRIPT``, ``MOVED``, ``BUSYGROUP``; ``ERR`` for anything else, so a script's
    free-text error cannot make a new label value per message."""
    code = message.split(" ", 1)[0]
    return code if code.isupper() and code.isalpha() and len(code) <= 16 else "ERR"


REDIS = RedisCounts()  # one per process: every client of the process counts here


class AgentServerCounts:
    """An agent server's jobs and heartbeats (``workers/server.py``)."""

    __slots__ = ("ended", "heartbeat_failures", "started")

    def __init__(self) -> None:
        self.started = 0  # jobs that entered their entrypoint
        self.ended: dict[int, int] = {}  # final status (``JobStatus``) -> jobs
        self.heartbeat_failures = 0

    def job_ended(self, status: int) -> None:
        self.ended[status] = self.ended.get(status, 0) + 1


class MeasuredServer(Protocol):
    """What the collector reads of an agent server (``workers.server.AgentServer``)."""

    id: str
    agent_name: str
    capacity: int
    draining: bool
    counts: AgentServerCounts
    running: dict[str, asyncio.Task[None]]
