"""The dashboard's feed on one API node: one snapshot a second, however many viewers, and
a few minutes of rates and dispatch-time percentiles for the charts.

The feed reads Redis only while someone watches: the first viewer starts it, the last one
to leave stops it. Each viewer has a queue of one message; a viewer too slow to take a
message has it replaced by the next (a dashboard wants the latest, not every one).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Any

import msgspec

from dispatcher.errors import describe
from dispatcher.observe.rates import Point, between
from dispatcher.observe.snapshot import Snapshot, collect
from dispatcher.store.client import Client

log = logging.getLogger(__name__)
HISTORY_POINTS = 300  # five minutes at one a second
# A viewer's stream leaves the HTTP server's connection limit once handed over: bounded here.
MAX_VIEWERS = 100
SERVERS_PER_POOL = 100  # detailed per pool, two reads each a second; a larger pool says so
_encode = msgspec.json.Encoder().encode


class Feed:
    def __init__(
        self, client: Client, interval_s: float = 1.0, max_viewers: int = MAX_VIEWERS
    ) -> None:
        self._client = client
        self._interval_s = interval_s
        self.max_viewers = max_viewers
        self._viewers: set[asyncio.Queue[bytes]] = set()
        self._task: asyncio.Task[None] | None = None
        self._previous: Snapshot | None = None
        self.history: collections.deque[Point] = collections.deque(maxlen=HISTORY_POINTS)
        self.latest: bytes | None = None  # the last message sent

    def full(self) -> bool:
        return len(self._viewers) >= self.max_viewers

    def subscribe(self) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
        self._viewers.add(queue)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dashboard-feed")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes]) -> None:
        self._viewers.discard(queue)
        if not self._viewers and self._task is not None:
            self._task.cancel()
            self._task = None

    def history_message(self) -> bytes:
        return _encode({"history": list(self.history)})

    async def one(self) -> bytes:
        """A message now, for a single request (the feed's own if it is running)."""
        if self.latest is not None and self._task is not None:
            return self.latest
        return _encode({"snapshot": (await collect(self._client, SERVERS_PER_POOL)).to_builtins()})

    async def aclose(self) -> None:
        """Stop, and tell every viewer so with an empty message (its stream then ends)."""
        task, self._task = self._task, None
        for queue in self._viewers:
            _offer(queue, b"")
        self._viewers.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            message = await self._next_message()
            self.latest = message
            for queue in list(self._viewers):
                _offer(queue, message)
            await asyncio.sleep(max(0.0, self._interval_s - (time.monotonic() - started)))

    async def _next_message(self) -> bytes:
        try:
            snapshot = await collect(self._client, SERVERS_PER_POOL)
        except Exception as exc:  # policy: the page says so, and the next second tries again
            log.warning("dashboard snapshot failed: %s", describe(exc))
            return _encode({"error": "Redis is unavailable"})
        point = self._point(snapshot)
        message: dict[str, Any] = {"snapshot": snapshot.to_builtins(), "point": point}
        return _encode(message)

    def _point(self, snapshot: Snapshot) -> Point | None:
        previous, self._previous = self._previous, snapshot
        if previous is None:
            return None
        seconds = (snapshot.at_ms - previous.at_ms) / 1000
        if seconds <= 0 or seconds > 10 * self._interval_s:
            return None  # a gap (nobody watched): no rate over it
        point = between(previous.figures, snapshot.figures, snapshot.at_ms, seconds)
        self.history.append(point)
        return point


def _offer(queue: asyncio.Queue[bytes], message: bytes) -> None:
    if queue.full():
        queue.get_nowait()  # the viewer is behind: it gets the newest instead
    queue.put_nowait(message)
