"""Choosing agent servers for a job. Pure: no I/O.

The choice only ranks candidates; the slot is reserved by a Redis script that re-checks each
one, so a stale snapshot can cost a retry but never over-fill a server. Two random choices
(pick two eligible servers, prefer the one with more free slots) spread concurrent placements
from many schedulers instead of herding them onto the emptiest server.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from dispatcher.wire import ServerStatus

_RNG = random.Random()  # seeding a fresh generator per placement cost more than the choice


@dataclass(slots=True)
class ServerView:
    """One agent server as the scheduler's snapshot sees it."""

    id: str
    capacity: int
    load: float
    status: ServerStatus
    expires_at: int  # Redis ms
    used: int
    ttl_ms: int = 0  # the heartbeat TTL the server asked for

    @property
    def free(self) -> int:
        return self.capacity - self.used

    def alive(self, now_ms: int) -> bool:
        return self.expires_at > now_ms

    def eligible(self, now_ms: int, load_threshold: float) -> bool:
        return (
            self.alive(now_ms)
            and self.status is not ServerStatus.DRAINING  # FULL may be stale: count slots
            and self.free > 0
            and self.load < load_threshold
        )


def rank_candidates(
    servers: list[ServerView],
    now_ms: int,
    load_threshold: float,
    exclude: tuple[str, ...] = (),
    limit: int = 4,
    rng: random.Random | None = None,
) -> list[str]:
    """Up to ``limit`` server ids in the order the reservation script should try them."""
    rng = rng or _RNG
    pool = [s for s in servers if s.eligible(now_ms, load_threshold) and s.id not in exclude]
    if len(pool) <= 1:
        return [s.id for s in pool]
    first, second = rng.sample(pool, 2)
    best, other = (first, second) if _better(first, second) else (second, first)
    rest = [s for s in pool if s is not best and s is not other]
    tail = rng.sample(rest, min(len(rest), max(0, limit - 2)))
    return [s.id for s in (best, other, *tail)][:limit]


def _better(a: ServerView, b: ServerView) -> bool:
    if a.free != b.free:
        return a.free > b.free
    return a.load <= b.load
