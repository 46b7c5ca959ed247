"""A process's start-up, the same for every role and tool: logging, the start-up heap
frozen, the event loop (uvloop), and the stop signals.

Freezing the heap keeps full collections short. A full (generation 2) collection walks
every tracked object; left alone, a scheduler holding tens of thousands of rooms paused
for 60 to 140 ms per full collection and found nothing to free (see BENCHMARKS.md). Two
things keep it short: the wire records opt out of tracking (``gc=False`` in
``dispatcher.wire``: immutable data never forms a cycle), and each process moves what it
built while starting (modules, classes, functions) to the permanent generation, which no
collection walks again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import uvloop

from dispatcher.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


def freeze_startup_heap() -> None:
    """Collect once, then exempt every surviving object from later collections."""
    gc.collect()
    gc.freeze()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop, once what the process built while starting is frozen."""
    freeze_startup_heap()
    return uvloop.run(main)


def install_stop_signals(stop: asyncio.Event) -> None:
    """First SIGTERM/SIGINT sets ``stop`` (drain); a second one exits at once."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            log.warning("second signal: exiting now")
            raise SystemExit(1)
        log.info("signal received: draining")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)


def run_main(main: Coroutine[Any, Any, None]) -> None:
    """A long-running process: ``main`` run; a configuration error ends it with one line
    on stderr, Ctrl-C without a traceback."""
    try:
        run(main)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:
        pass


def run_role(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """A role's process: ``serve(stop)`` until a stop signal sets ``stop``, then it drains."""

    async def until_signal() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await serve(stop)

    run_main(until_signal())
