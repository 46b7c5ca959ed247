"""The deliverer of one partition: reads the partition's hooks stream through the consumer
group ``webhooks`` and hands each event to the node's ``Sender``, off the partition's turn.

Events of one room are sent one after another, in the order their changes were committed;
rooms of a batch go concurrently. A batch is acked once every URL accepted or gave up on
each of its events, so a deliverer that dies mid-batch leaves it pending, and the next
lease holder claims and sends it again (at least once, the room order kept). Delivered
entries are trimmed every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec

from dispatcher.store import keys
from dispatcher.store.client import Client, log_failure
from dispatcher.store.fastlane import ensure_group, entries_of, stream_entries
from dispatcher.webhooks.sender import Sender
from dispatcher.wire import Hook, hook_decoder

log = logging.getLogger(__name__)
BATCH = 64
# A read even without a wake-up (the partition's commits wake the deliverer): a backstop
# for a commit that reached Redis after the read it woke.
POLL_S = 5.0
RESTART_S = 1.0  # after a failed Redis call, start over from the pending entries
_TRIM_EVERY_S = 5.0
_STALE_AFTER_MS = 60_000  # read by a deliverer that stopped mid-batch (a handover)
_STALE_CHECK_S = 10.0
Entry = tuple[bytes, dict[bytes, bytes]]


class Deliverer:
    def __init__(
        self, client: Client, partition: int, consumer: str, sender: Sender, wake: asyncio.Event
    ) -> None:
        self.partition = partition
        self._fast = client.fast
        self._stream = keys.partition_keys(partition).hooks
        self._consumer = consumer
        self._sender = sender
        self._wake = wake
        self._last_acked = b""
        self._last_trim = time.monotonic()
        self._last_claim = time.monotonic()

    async def run(self) -> None:
        """Until cancelled. Policy: a failed Redis call restarts the loop after a second
        from the pending entries; nothing unacked is lost."""
        while True:
            try:
                await self._deliver_all()
            except Exception as exc:
                log_failure(log, f"partition {self.partition}: webhook delivery", exc)
                await asyncio.sleep(RESTART_S)

    async def _deliver_all(self) -> None:
        await ensure_group(self._fast, self._stream, keys.HOOKS_GROUP)
        await self._claim(0)  # everything pending: an earlier holder's unfinished batches
        while True:
            self._wake.clear()
            if entries := await self._read():
                await self._deliver(entries)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)
            if time.monotonic() - self._last_claim >= _STALE_CHECK_S:
                await self._claim(_STALE_AFTER_MS)
            if time.monotonic() - self._last_trim >= _TRIM_EVERY_S:
                await self._trim()

    async def _read(self) -> list[Entry]:
        reply = await self._fast.execute(
            "XREADGROUP", "GROUP", keys.HOOKS_GROUP, self._consumer, "COUNT", BATCH,
            "STREAMS", self._stream, ">",
        )  # fmt: skip
        return stream_entries(reply)

    async def _claim(self, min_idle_ms: int) -> None:
        """Take over (and deliver) entries pending that long, whoever read them."""
        self._last_claim = time.monotonic()
        start: str | bytes = "0-0"
        while True:
            reply: Any = await self._fast.execute(
                "XAUTOCLAIM", self._stream, keys.HOOKS_GROUP, self._consumer, min_idle_ms,
                start, "COUNT", BATCH,
            )  # fmt: skip
            start = reply[0]
            if claimed := entries_of(reply[1]):
                await self._deliver(claimed)
            if start == b"0-0":
                return

    async def _deliver(self, entries: list[Entry]) -> None:
        by_room: dict[str, list[Hook]] = {}
        for entry_id, fields in entries:
            try:
                hook = hook_decoder.decode(fields[b"h"])
            except (KeyError, msgspec.DecodeError, msgspec.ValidationError):
                log.warning("partition %d: undecodable webhook entry %s skipped",
                            self.partition, entry_id)  # fmt: skip
                continue
            by_room.setdefault(_room_of(hook), []).append(hook)
        await asyncio.gather(*(self._in_order(hooks) for hooks in by_room.values()))
        ids = [entry_id for entry_id, _ in entries]
        await self._fast.execute("XACK", self._stream, keys.HOOKS_GROUP, *ids)
        if not self._last_acked or _entry_order(ids[-1]) > _entry_order(self._last_acked):
            self._last_acked = ids[-1]

    async def _in_order(self, hooks: list[Hook]) -> None:
        for hook in hooks:
            await self._sender.deliver(hook)

    async def _trim(self) -> None:
        """Drop delivered entries: everything older than the oldest still pending."""
        self._last_trim = time.monotonic()
        if not self._last_acked:
            return
        # summary form: [count, smallest pending id, greatest, consumers]
        pending: list[Any] = await self._fast.execute("XPENDING", self._stream, keys.HOOKS_GROUP)
        oldest = pending[1] or self._last_acked
        await self._fast.execute("XTRIM", self._stream, "MINID", "~", oldest)


def _room_of(hook: Hook) -> str:
    if hook.room is not None:
        return hook.room.name
    return hook.job.spec.room if hook.job is not None else ""


def _entry_order(entry_id: bytes) -> tuple[int, ...]:
    return tuple(int(part) for part in entry_id.split(b"-"))
