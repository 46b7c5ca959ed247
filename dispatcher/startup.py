"""Starting a role against a Redis that may not be up yet: a Kubernetes rollout starts every
pod at once, Redis among them. The role waits, saying so, instead of exiting into a restart
back-off; a configuration error (a partition count that differs from the stored one) still
stops it at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

from dispatcher.errors import describe

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
        except (RedisError, OSError) as exc:
            log.warning("%s waiting for Redis (%s); next try in %.1f s", what, describe(exc), delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            delay = min(2 * delay, LONGEST_RETRY_S)
    return None
