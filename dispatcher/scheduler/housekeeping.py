"""A partition stream's upkeep, every few seconds beside the turns: entries left pending by
a consumer that went away are claimed, and acked entries are trimmed."""

from __future__ import annotations

import logging
import time
from typing import Any

from dispatcher.store import keys
from dispatcher.store.fastlane import FastLane, entries_of

log = logging.getLogger(__name__)
Entry = tuple[bytes, dict[bytes, bytes]]
TRIM_EVERY_S = 5.0
STALE_CHECK_S = 5.0
STALE_AFTER_MS = 30_000


class Housekeeping:
    def __init__(self, fast: FastLane, events: str, consumer: str, batch_size: int) -> None:
        self._fast = fast
        self._events = events
        self._consumer = consumer
        self._batch_size = batch_size
        self._last_trim = time.monotonic()
        self._last_stale_check = time.monotonic()

    async def stale_entries(self) -> list[Entry]:
        """Entries delivered long ago and never acked: read for a partition loop that was stopped
        mid-read (a lost lease), or by a consumer that vanished after this node's catch-up.
        Checked every few seconds; normally there are none."""
        if time.monotonic() - self._last_stale_check < STALE_CHECK_S:
            return []
        self._last_stale_check = time.monotonic()
        reply: Any = await self._fast.execute(
            "XAUTOCLAIM", self._events, keys.CONSUMER_GROUP, self._consumer,
            STALE_AFTER_MS, "0-0", "COUNT", self._batch_size,
        )  # fmt: skip
        claimed = entries_of(reply[1])
        if claimed:
            log.warning("%s: claimed %d stale entries", self._events, len(claimed))
        return claimed

    async def trim(self, last_id: bytes) -> None:
        """Every few seconds, drop acked entries: everything older than the oldest one still
        pending (``last_id``, the newest entry read, when none is)."""
        if not last_id or time.monotonic() - self._last_trim < TRIM_EVERY_S:
            return
        self._last_trim = time.monotonic()
        await trim_acked(self._fast, self._events, keys.CONSUMER_GROUP, last_id)


async def trim_acked(fast: FastLane, stream: str, group: str, newest_done: bytes) -> None:
    """Drop what ``group`` is done with: every entry older than its oldest pending one, or
    up to ``newest_done`` when none is pending."""
    # summary form: [count, smallest pending id, greatest, consumers]
    pending: list[Any] = await fast.execute("XPENDING", stream, group)
    await fast.execute("XTRIM", stream, "MINID", "~", pending[1] or newest_done)
