"""Progress lines from events on a fake clock, and how report_every writes them."""

from __future__ import annotations

import asyncio
import io

from loadgen.progress import Progress, format_line, report_every, stream_writer

MS = 1_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_snapshot_covers_the_window_since_the_previous_one() -> None:
    clock = FakeClock()
    progress = Progress(500.0, clock=clock)
    progress.sent(480)
    for _ in range(470):
        progress.accepted()
    progress.error("timeout")
    for i in range(100):
        progress.completed((i + 1) * MS)
    clock.now += 1.0
    first = progress.snapshot()
    assert first.elapsed_s == 1.0
    assert first.sent_rate == 480.0
    assert first.in_flight == 9
    assert first.unstarted == 370
    assert first.window_p99_ms is not None and abs(first.window_p99_ms - 99.0) < 0.1
    assert first.started == 100

    progress.sent(250)
    clock.now += 0.5
    second = progress.snapshot()
    assert second.elapsed_s == 1.5
    assert second.window_s == 0.5
    assert second.sent_rate == 500.0
    assert second.window_p99_ms is None  # nothing started in this window
    assert second.in_flight == 259
    assert second.errors == {"timeout": 1}


def test_line_shows_rates_in_flight_p99_and_errors() -> None:
    clock = FakeClock()
    progress = Progress(500.0, clock=clock)
    progress.sent(500)
    for _ in range(497):
        progress.accepted()
    progress.error("client_overload")
    progress.error("client_overload")
    progress.error("unavailable")
    progress.completed(12 * MS)
    clock.now += 1.0
    line = progress.line()
    assert line == (
        "   1.0 s  sent 500/s of 500/s  in flight 0  unstarted 496  started 1  p99 12.0 ms"
        "  errors 3 (client_overload=2, unavailable=1)"
    )
    assert "\n" not in line


def test_line_without_events() -> None:
    clock = FakeClock()
    progress = Progress(250.0, clock=clock)
    assert format_line(progress.snapshot()) == (
        "   0.0 s  sent 0/s of 250/s  in flight 0  unstarted 0  started 0  p99 -  errors 0"
    )


def test_many_error_codes_are_abbreviated() -> None:
    progress = Progress(1.0, clock=FakeClock())
    for code in ("a", "b", "b", "c"):
        progress.error(code)
    assert progress.line().endswith("errors 4 (b=2, a=1, ...)")


async def collect(is_tty: bool, lines_wanted: int) -> list[str]:
    """Run report_every until it wrote ``lines_wanted`` lines, then cancel it."""
    written: list[str] = []
    enough = asyncio.Event()
    progress = Progress(10.0, clock=FakeClock())

    def write(text: str) -> None:
        written.append(text)
        if len(written) >= lines_wanted:
            enough.set()

    task = asyncio.create_task(report_every(progress, 0.0, write, is_tty=is_tty))
    await enough.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    return written


async def test_report_every_overwrites_on_a_terminal() -> None:
    written = await collect(is_tty=True, lines_wanted=3)
    assert written[-1] == "\n"
    lines = written[:-1]
    assert len(lines) >= 3
    assert all(text.startswith("\r") and text.endswith("\x1b[K") for text in lines)
    assert all("sent" in text and "\n" not in text for text in lines)


async def test_report_every_writes_plain_lines_otherwise() -> None:
    written = await collect(is_tty=False, lines_wanted=3)
    assert len(written) >= 3
    assert all(text.endswith("\n") and text.count("\n") == 1 for text in written)
    assert not any("\r" in text or "\x1b" in text for text in written)


async def test_report_every_cancelled_before_writing_writes_nothing() -> None:
    written: list[str] = []
    task = asyncio.create_task(report_every(Progress(1.0), 3600.0, written.append, is_tty=True))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert written == []


def test_stream_writer_flushes() -> None:
    class Recording(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1
            super().flush()

    stream = Recording()
    stream_writer(stream)("\rline")
    assert stream.getvalue() == "\rline"
    assert stream.flushes == 1
