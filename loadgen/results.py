"""Per-job results: what the simulated agents push to Redis and how the run reads them back.

Agents push one list element per flush (a msgpack array of records), so a run of thousands
of jobs costs tens of Redis calls per second instead of one per job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

import msgspec

from dispatcher.store.client import Client


class JobResult(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One started job. Durations end at the entrypoint's first statement (unix-ns clock)."""

    job_id: str
    dispatch_id: str
    server_ns: int  # API node receipt -> entrypoint start: the dispatcher's share
    user_ns: int  # client send -> entrypoint start: what the user waits for
    attempt: int  # 0 for the first offer; > 0 when the job was placed again
    sent_ns: int = 0  # the client's send time (unix ns), to place the job on the run's clock


_ENCODER = msgspec.msgpack.Encoder()
_BATCH_DECODER = msgspec.msgpack.Decoder(list[JobResult])


def results_key(run_id: str) -> str:
    return f"loadgen:results:{run_id}"


def encode_batch(batch: Iterable[JobResult]) -> bytes:
    return _ENCODER.encode(list(batch))


def decode_batch(data: bytes) -> list[JobResult]:
    return _BATCH_DECODER.decode(data)


class ResultReader:
    """Reads the results list incrementally, so polling for stragglers stays cheap."""

    def __init__(self, client: Client, run_id: str) -> None:
        self._client = client
        self._key = results_key(run_id)
        self._next = 0
        self._lock = asyncio.Lock()  # concurrent polls must not read the same range twice
        self.results: list[JobResult] = []
        self.dispatch_ids: set[str] = set()

    async def poll(self) -> int:
        """Read the batches pushed since the last poll; returns how many results arrived."""
        async with self._lock:
            raw: Any = await self._client.lrange(self._key, self._next, -1)
            before = len(self.results)
            for data in raw:
                batch = decode_batch(data)
                self.results.extend(batch)
                self.dispatch_ids.update(r.dispatch_id for r in batch)
            self._next += len(raw)
            return len(self.results) - before

    def discard(self) -> None:
        """Forget what was read so far (warm-up results) but keep the read position."""
        self.results = []
        self.dispatch_ids = set()

    async def delete(self) -> None:
        await self._client.delete(self._key)


POLL_INTERVAL_S = 0.05


async def wait_for_results(
    reader: ResultReader,
    dispatch_ids: Collection[str],
    timeout_s: float,
    check: Callable[[], None] = lambda: None,
) -> bool:
    """Poll until every id has a result (True) or ``timeout_s`` passed (False); ``check``
    runs between polls and may raise to give up early (a worker that died)."""
    deadline = time.monotonic() + timeout_s
    wanted = set(dispatch_ids)
    while True:
        await reader.poll()
        if wanted <= reader.dispatch_ids:
            return True
        if time.monotonic() >= deadline:
            return False
        check()
        await asyncio.sleep(POLL_INTERVAL_S)
