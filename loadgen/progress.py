"""Live progress of a long run: one terminal line per interval.

``Progress`` is fed events as they happen (sends, replies, job starts) and turns the
interval since its previous line into a snapshot: the rate actually sent against the
offered one, requests awaiting a reply, accepted jobs not started yet, the p99 of the
latencies that arrived in the interval, and errors so far. ``report_every`` prints it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from loadgen.hdr import LatencyHistogram

_ERASE_TO_END_OF_LINE = "\x1b[K"
_ERROR_CODES_SHOWN = 2


@dataclass(frozen=True)
class ProgressSnapshot:
    """One interval's view; counts without "window" in the name are totals so far."""

    elapsed_s: float
    window_s: float
    offered_rate: float
    sent_rate: float  # sends per second within the window
    in_flight: int  # sent, no reply (accepted or error) yet
    unstarted: int  # accepted, no job start reported yet
    window_p99_ms: float | None  # None when no job start was reported in the window
    started: int
    errors: Counter[str]


class Progress:
    """Counts a run's events; ``snapshot``/``line`` close the current window.

    Every ``sent`` send is expected to be answered by one ``accepted()`` or ``error()``;
    ``completed`` is one job start with its send -> start latency.
    """

    def __init__(self, offered_rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._offered_rate = offered_rate
        self._clock = clock
        self._started_at = self._window_start = clock()
        self._sent = self._window_sent = 0
        self._accepted = self._started = 0
        self._errors: Counter[str] = Counter()
        self._window_latency = LatencyHistogram()

    def sent(self, n: int = 1) -> None:
        self._sent += n
        self._window_sent += n

    def accepted(self) -> None:
        self._accepted += 1

    def error(self, code: str) -> None:
        self._errors[code] += 1

    def completed(self, latency_ns: int) -> None:
        self._started += 1
        self._window_latency.record(latency_ns)

    def snapshot(self) -> ProgressSnapshot:
        """The figures since the previous snapshot (or the start); opens a new window."""
        now = self._clock()
        window_s = now - self._window_start
        latency = self._window_latency
        snapshot = ProgressSnapshot(
            elapsed_s=now - self._started_at,
            window_s=window_s,
            offered_rate=self._offered_rate,
            sent_rate=self._window_sent / window_s if window_s > 0 else 0.0,
            in_flight=self._sent - self._accepted - self._errors.total(),
            # results of sends whose reply was lost (timeouts) would take this below 0
            unstarted=max(0, self._accepted - self._started),
            window_p99_ms=latency.percentile_ms(99.0) if latency.count else None,
            started=self._started,
            errors=self._errors.copy(),
        )
        self._window_start, self._window_sent = now, 0
        self._window_latency = LatencyHistogram()
        return snapshot

    def line(self) -> str:
        """One terminal line for the interval since the previous line; opens a new one."""
        return format_line(self.snapshot())


def format_line(snapshot: ProgressSnapshot) -> str:
    p99 = "-" if snapshot.window_p99_ms is None else f"{snapshot.window_p99_ms:.1f} ms"
    return (
        f"{snapshot.elapsed_s:6.1f} s  sent {snapshot.sent_rate:.0f}/s"
        f" of {snapshot.offered_rate:g}/s  in flight {snapshot.in_flight}"
        f"  unstarted {snapshot.unstarted}  started {snapshot.started}"
        f"  p99 {p99}  errors {_errors(snapshot.errors)}"
    )


def _errors(errors: Counter[str]) -> str:
    total = errors.total()
    if not total:
        return "0"
    common = ", ".join(f"{code}={n}" for code, n in errors.most_common(_ERROR_CODES_SHOWN))
    more = ", ..." if len(errors) > _ERROR_CODES_SHOWN else ""
    return f"{total} ({common}{more})"


async def report_every(
    progress: Progress, interval_s: float, write: Callable[[str], object], *, is_tty: bool
) -> None:
    """Write ``progress.line()`` every ``interval_s`` until cancelled.

    On a terminal each line overwrites the previous one (carriage return, erase to the end
    of the line) and cancelling ends it with a newline; otherwise (a log file, CI) every
    line is a line of its own. ``write`` must not buffer: see ``stream_writer``.
    """
    wrote = False
    try:
        while True:
            await asyncio.sleep(interval_s)
            line = progress.line()
            write(f"\r{line}{_ERASE_TO_END_OF_LINE}" if is_tty else f"{line}\n")
            wrote = True
    finally:
        if is_tty and wrote:
            write("\n")


def stream_writer(stream: TextIO) -> Callable[[str], None]:
    """A ``write`` for ``report_every`` that flushes, so a line without newline shows."""

    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return write
