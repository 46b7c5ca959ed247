"""Redis calls that must land: retried with backoff until Redis acknowledges them.

Used for what an agent server owes the scheduler whatever happens to Redis: a job's final
report and the release of its slot, a rejection, the confirmation of a start. Each call
retried here is idempotent, or harmless when it lands twice (a repeated report of an ended
attempt is ignored by the scheduler).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from dispatcher.errors import describe

log = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_DELAY_S = 0.1
MAX_DELAY_S = 2.0


async def until_acknowledged(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call()``'s result once it succeeds; a failure is logged once, then retried."""
    delay, failures = FIRST_DELAY_S, 0
    while True:
        try:
            result = await call()
        except Exception as exc:
            if failures == 0:
                log.warning(
                    "%s failed (%s); retrying until Redis acknowledges it", what, describe(exc)
                )
            failures += 1
        else:
            if failures:
                log.info("%s acknowledged after %d failed attempt(s)", what, failures)
            return result
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY_S)
