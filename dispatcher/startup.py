"""Starting a role against a Redis that may not be up yet: a Kubernetes rollout starts every
pod at once, Redis among them. The role waits, saying so, instead of exiting into a restart
back-off; a configuration error (a partition count that differs from the stored one) still
stops it at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from dispatcher.errors import describe
from dispatcher.health import HealthServer
from dispatcher.store.client import is_unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_RETRY_S = 0.1
LONGEST_RETRY_S = 5.0


async def start_when_redis_is_up(
    start: Callable[[], Awaitable[T]], stop: asyncio.Event, what: str
) -> T | None:
    """``await start()`` until it no longer fails for want of Redis; None if ``stop`` is set
    first."""
    delay = FIRST_RETRY_S
    while not stop.is_set():
        try:
            return await start()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning("%s waiting for Redis (%s); next try in %.1f s", what, describe(exc), delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            delay = min(2 * delay, LONGEST_RETRY_S)
    return None


class Role(Protocol):
    """A scheduler node or an agent server, once started."""

    def not_ready(self) -> str | None: ...
    async def drain(self) -> None: ...
    async def aclose(self) -> None: ...


R = TypeVar("R", bound=Role)


async def serve_role(
    start: Callable[[], Awaitable[R]], stop: asyncio.Event, what: str, host: str, port: int
) -> None:
    """Probes on ``host:port`` from the outset (port 0: none); the role started once Redis
    answers; drained and closed once ``stop`` is set."""
    role: R | None = None
    probes = HealthServer(
        lambda: "starting: waiting for Redis" if role is None else role.not_ready(), host, port
    )
    await probes.start()
    try:
        role = await start_when_redis_is_up(start, stop, what)
        if role is None:
            return
        try:
            await stop.wait()
            await role.drain()
        finally:
            await role.aclose()
    finally:
        await probes.aclose()
