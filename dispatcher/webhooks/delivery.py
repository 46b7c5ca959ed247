"""The deliverer of one partition: reads the partition's hooks stream through the consumer
group ``webhooks`` and hands each event to the node's ``Sender``, off the partition's turn.

Each room's events form a chain: an event is sent once the room's previous one is settled
(every URL accepted it, or gave up), so a room's events arrive in the order their changes
were committed, while rooms go concurrently and one room's failing event holds back no
other room. An entry is acked once settled, so a room's unacked entries are always its
latest ones: a deliverer that dies leaves them pending, and the next lease holder claims
them in stream order and sends them again (at least once, the room order kept). Delivered
entries are trimmed every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

import msgspec

from dispatcher.scheduler.housekeeping import trim_acked
from dispatcher.store import keys
from dispatcher.store.client import Client, log_failure
from dispatcher.store.fastlane import ensure_group, entries_of, stream_entries
from dispatcher.webhooks.sender import Sender
from dispatcher.wire import Hook, hook_decoder

log = logging.getLogger(__name__)
BATCH = 64  # entries per read or claim
MAX_UNSETTLED = 256  # entries read and not yet settled, per partition
# A read even without a wake-up (commits and settled events wake the deliverer): a backstop
# for a commit that reached Redis after the read it woke.
POLL_S = 5.0
RESTART_S = 1.0  # after a failed Redis call, start over from the pending entries
_TRIM_EVERY_S = 5.0
_STALE_AFTER_MS = 60_000  # read by another deliverer that stopped (a handover)
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
        self._tails: dict[str, asyncio.Task[None]] = {}  # room -> its chain's last event
        self._sending: set[asyncio.Task[None]] = set()
        self._in_flight: set[bytes] = set()  # entry ids read and not yet settled
        self._settled: list[bytes] = []  # to ack
        self._last_acked = b""
        self._last_trim = time.monotonic()
        self._last_claim = time.monotonic()

    async def run(self) -> None:
        """Until cancelled. Policy: a failed Redis call restarts the loop after a second
        from the pending entries; nothing unacked is lost (settled ones are sent again)."""
        try:
            while True:
                try:
                    await self._deliver_all()
                except Exception as exc:
                    log_failure(log, f"partition {self.partition}: webhook delivery", exc)
                    self._forget_chains()
                    await asyncio.sleep(RESTART_S)
        finally:
            self._forget_chains()

    async def _deliver_all(self) -> None:
        await ensure_group(self._fast, self._stream, keys.HOOKS_GROUP)
        await self._claim(0)  # everything pending: what an earlier holder left unsettled
        while True:
            self._wake.clear()
            space = MAX_UNSETTLED - len(self._in_flight)
            if space > 0 and (entries := await self._read(min(space, BATCH))):
                self._start(entries)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)
            await self._ack()
            if time.monotonic() - self._last_claim >= _STALE_CHECK_S:
                await self._claim(_STALE_AFTER_MS)
            if time.monotonic() - self._last_trim >= _TRIM_EVERY_S:
                await self._trim()

    async def _read(self, count: int) -> list[Entry]:
        reply = await self._fast.execute(
            "XREADGROUP", "GROUP", keys.HOOKS_GROUP, self._consumer, "COUNT", count,
            "STREAMS", self._stream, ">",
        )  # fmt: skip
        return stream_entries(reply)

    async def _claim(self, min_idle_ms: int) -> None:
        """Take over (and send) entries pending that long, whoever read them, but for the
        ones this deliverer is sending."""
        self._last_claim = time.monotonic()
        start: str | bytes = "0-0"
        while True:
            reply: Any = await self._fast.execute(
                "XAUTOCLAIM", self._stream, keys.HOOKS_GROUP, self._consumer, min_idle_ms,
                start, "COUNT", BATCH,
            )  # fmt: skip
            start = reply[0]
            self._start([e for e in entries_of(reply[1]) if e[0] not in self._in_flight])
            if start == b"0-0":
                return

    def _start(self, entries: list[Entry]) -> None:
        """Each entry's send, chained after its room's previous one."""
        for entry_id, fields in entries:
            self._in_flight.add(entry_id)
            try:
                hook = hook_decoder.decode(fields[b"h"])
            except (KeyError, msgspec.DecodeError, msgspec.ValidationError):
                log.warning("partition %d: undecodable webhook entry %s skipped",
                            self.partition, entry_id)  # fmt: skip
                self._settle(entry_id)
                continue
            room = _room_of(hook)
            after = self._tails.get(room)
            task = asyncio.create_task(self._send(entry_id, hook, after))
            self._tails[room] = task
            self._sending.add(task)
            task.add_done_callback(functools.partial(self._sent, room))

    async def _send(self, entry_id: bytes, hook: Hook, after: asyncio.Task[None] | None) -> None:
        if after is not None:
            await asyncio.wait([after])  # its outcome is its own
        try:
            await self._sender.deliver(hook)
        except Exception:  # a bug, not a refusal: dropping beats a room stuck behind it
            log.exception("partition %d: webhook %s could not be sent", self.partition, hook.id)
        self._settle(entry_id)

    def _settle(self, entry_id: bytes) -> None:
        self._settled.append(entry_id)
        self._wake.set()

    def _sent(self, room: str, done: asyncio.Task[None]) -> None:
        self._sending.discard(done)
        if self._tails.get(room) is done:
            del self._tails[room]

    def _forget_chains(self) -> None:
        """Stop every send: their entries stay pending and are claimed again."""
        for task in list(self._sending):
            task.cancel()
        self._sending.clear()
        self._tails.clear()
        self._in_flight.clear()
        self._settled.clear()

    async def _ack(self) -> None:
        if not self._settled:
            return
        ids, self._settled = self._settled, []
        await self._fast.execute("XACK", self._stream, keys.HOOKS_GROUP, *ids)
        self._in_flight.difference_update(ids)
        newest = max(ids, key=_entry_order)
        if not self._last_acked or _entry_order(newest) > _entry_order(self._last_acked):
            self._last_acked = newest

    async def _trim(self) -> None:
        """Drop delivered entries: everything older than the oldest still pending."""
        self._last_trim = time.monotonic()
        if self._last_acked:
            await trim_acked(self._fast, self._stream, keys.HOOKS_GROUP, self._last_acked)


def _room_of(hook: Hook) -> str:
    if hook.room is not None:
        return hook.room.name
    return hook.job.spec.room if hook.job is not None else ""


def _entry_order(entry_id: bytes) -> tuple[int, ...]:
    return tuple(int(part) for part in entry_id.split(b"-"))
