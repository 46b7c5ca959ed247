"""Worker side: what a peer's task records after stamping its start, and the flushers.

The task itself only stamps ``time.time_ns()`` and hands the stamp to a ``Recorder``; a
flusher pushes the collected results to the run's results list every 100 ms and once more
at shutdown, exactly as our own simulated agents do (``loadgen.fleet``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

import redis

from dispatcher.store.client import Client, connect
from loadgen.results import JobResult, encode_batch, results_key

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1


class Recorder:
    """Collects started jobs; thread-safe, since Celery runs its tasks on a thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[JobResult] = []

    def started(self, key: str, sent_ns: int, start_ns: int) -> None:
        result = JobResult(
            job_id=key, dispatch_id=key, server_ns=0, user_ns=start_ns - sent_ns, attempt=0
        )
        with self._lock:
            self._pending.append(result)

    def take(self) -> list[JobResult]:
        with self._lock:
            batch, self._pending = self._pending, []
        return batch


class AsyncFlusher:
    """Flushes from the worker's event loop (Taskiq, arq)."""

    def __init__(self, recorder: Recorder, redis_url: str, run_id: str) -> None:
        self._recorder = recorder
        self._redis_url = redis_url
        self._key = results_key(run_id)
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._client = await connect(self._redis_url)
        self._task = asyncio.create_task(self._flush_loop(self._client))

    async def stop(self) -> None:
        """Stop the loop and push what is left; a no-op when never started."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._flush(self._client)
            await self._client.aclose()

    async def _flush_loop(self, client: Client) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self._flush(client)
            except Exception:
                log.exception("pushing results failed")

    async def _flush(self, client: Client) -> None:
        batch = self._recorder.take()
        if batch:
            await client.rpush(self._key, encode_batch(batch))


class ThreadFlusher:
    """Flushes from a thread of its own (Celery's worker has no event loop to share)."""

    def __init__(self, recorder: Recorder, redis_url: str, run_id: str) -> None:
        self._recorder = recorder
        self._client = redis.Redis.from_url(redis_url)
        self._key = results_key(run_id)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._flush_loop, name="results-flusher")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and push what is left."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()
        self._flush()
        self._client.close()

    def _flush_loop(self) -> None:
        while not self._stopped.wait(FLUSH_INTERVAL_S):
            try:
                self._flush()
            except redis.RedisError:
                log.exception("pushing results failed")

    def _flush(self) -> None:
        batch = self._recorder.take()
        if batch:
            self._client.rpush(self._key, encode_batch(batch))
