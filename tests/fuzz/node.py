"""The system under test: an in-process ``ApiNode`` on its own event loop in a thread,
listening on a free loopback port, with every log record at WARNING or above kept."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

from dispatcher import settings as config
from dispatcher.api.app import ApiNode
from tests.redis_servers import free_port
from tests.stack import API_KEY, API_SECRET

T = TypeVar("T")
_CALL_TIMEOUT_S = 60.0


class LogCapture(logging.Handler):
    """Keeps the records logged since the last ``take`` (from any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._records: list[logging.LogRecord] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_records:
            self._records.append(record)

    def take(self) -> list[logging.LogRecord]:
        with self._lock_records:
            records, self._records = self._records, []
        return records


class NodeThread:
    """``ApiNode`` with the settings the harness needs: few partitions (so ListRooms is
    cheap) and a 1 MiB body limit (so bodies past it are cheap to send)."""

    def __init__(self, redis_url: str) -> None:
        self.settings = config.load(
            config.ApiSettings,
            {
                "redis_url": redis_url,
                "host": "127.0.0.1",
                "port": free_port(),
                "api_keys": f"{API_KEY}:{API_SECRET}",
                "partitions": 4,
                "max_body_bytes": 1024 * 1024,
            },
            environ={},
        )
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fuzz-api-node")
        self._node: ApiNode | None = None

    @property
    def port(self) -> int:
        return self.settings.port

    def start(self) -> None:
        self._thread.start()
        self._node = self._call(self._start())

    async def _start(self) -> ApiNode:
        node = await ApiNode.create(self.settings)
        await node.start()
        return node

    def stop(self) -> None:
        if self._node is not None:
            self._call(self._node.aclose())
        self._call(self._loop.shutdown_asyncgens())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_CALL_TIMEOUT_S)
