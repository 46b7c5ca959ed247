"""Entries a partition cannot decode or apply: copied with the reason to the partition's
dead-letter stream (``dsp:T:dead``) before the commit that acks them, and counted, so
poison input never wedges a partition and is never silently dropped."""

from __future__ import annotations

import logging

from dispatcher.store import scripts
from dispatcher.store.client import Client

log = logging.getLogger(__name__)
MAXLEN = 10_000


class DeadLetters:
    def __init__(self, partition: int, stream: str) -> None:
        self._partition = partition
        self._stream = stream
        self._held: list[tuple[bytes, dict[bytes, bytes], str]] = []  # (id, fields, reason)
        self.count = 0

    def __bool__(self) -> bool:
        return bool(self._held)

    def add(self, entry_id: bytes, fields: dict[bytes, bytes], reason: str) -> None:
        self._held.append((entry_id, fields, reason))

    async def send(self, client: Client) -> None:
        """Copy every held entry, its fields as ``f:<name>``; if the copy fails this raises
        (the turn fails before its commit, and the entries are read again)."""
        batch = scripts.Batch()
        for entry_id, fields, reason in self._held:
            flat = [b for name, value in fields.items() for b in (b"f:" + name, value)]
            batch.command(
                "XADD", self._stream, "MAXLEN", "~", MAXLEN, "*",
                "id", entry_id, "reason", reason, *flat,
            )  # fmt: skip
        await batch.run(client)
        for entry_id, _fields, reason in self._held:
            log.error(
                "partition %d: entry %s dead-lettered (%s)", self._partition, entry_id, reason
            )
        self.count += len(self._held)
        self._held.clear()
