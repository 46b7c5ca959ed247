"""Schedulers scaled under load the way a StatefulSet scales them: 1 → 3 (the next pod
names start), then 3 → 2 → 1 (SIGTERM to the highest ordinal, which drains). Every accepted
dispatch runs exactly once, ownership settles within ``SETTLE_S`` of each change, and the
dispatch time around each change is reported (``-s`` shows it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.faults import driver
from tests.faults.harness import FaultStack, Load
from tests.faults.reconcile import Record, percentile
from tests.faults.test_faults import _assert_clean

SETTLE_S = 10.0  # a new pod's start-up (about a second of imports) plus two lease TTLs
LOAD = Load(rate=40.0, duration_s=24.0, hold_s=2.0, fault_at_s=3.0)


@dataclass
class Change:
    name: str
    began_ns: int
    settled_s: float = 0.0


async def _change(
    stack: FaultStack, changes: list[Change], name: str, act: Callable[[], None]
) -> None:
    change = Change(name, time.time_ns())
    changes.append(change)
    started = time.monotonic()
    await asyncio.to_thread(act)
    while not await asyncio.to_thread(stack.ownership_settled):
        assert time.monotonic() - started < SETTLE_S, f"{name}: ownership did not settle"
        await asyncio.sleep(0.05)
    change.settled_s = time.monotonic() - started


def _window_ms(
    requests: list[driver.Request], records: list[Record], began_ns: int, until_ns: int
) -> list[float]:
    """Send → first start of the dispatches sent between two instants."""
    first: dict[str, int] = {}
    for record in records:
        if record.ev == "start":
            first[record.dispatch] = min(record.t, first.get(record.dispatch, record.t))
    return [
        (first[r.dispatch_id] - r.sent_ns) / 1e6
        for r in requests
        if began_ns <= r.sent_ns < until_ns and r.dispatch_id in first
    ]


async def test_schedulers_scaled_one_to_three_to_one_under_load(tmp_path: Path) -> None:
    changes: list[Change] = []

    async def scale(stack: FaultStack) -> None:
        def up() -> None:
            stack.start_scheduler("scheduler-2")
            stack.start_scheduler("scheduler-3")

        await _change(stack, changes, "1 -> 3", up)
        await asyncio.sleep(3)
        await _change(stack, changes, "3 -> 2", lambda: stack.terminate("scheduler-3"))
        await asyncio.sleep(3)
        await _change(stack, changes, "2 -> 1", lambda: stack.terminate("scheduler-2"))

    async with FaultStack(tmp_path, schedulers=1) as stack:
        requests = driver.plan(int(LOAD.rate * LOAD.duration_s))
        report = await stack.run(scale, LOAD, requests)
        records = stack.records()
    lines = [report.summary()]
    for change in changes:
        until = change.began_ns + int((change.settled_s + 1.0) * 1e9)
        window = _window_ms(requests, records, change.began_ns, until)
        lines.append(
            f"{change.name}: ownership settled in {change.settled_s:.2f} s; dispatches sent "
            f"until 1 s after: {len(window)}, p99 {percentile(window, 99):.0f} ms, "
            f"max {max(window, default=0):.0f} ms"
        )
    print("\n=== schedulers 1 -> 3 -> 1 under load\n" + "\n".join(lines))
    _assert_clean(report)
    assert [c.name for c in changes] == ["1 -> 3", "3 -> 2", "2 -> 1"]


async def test_partition_lag_as_keda_reads_it_rises_while_nothing_reads_and_returns_to_zero(
    tmp_path: Path,
) -> None:
    """What the KEDA component scales on: with the only scheduler stopped, the lag of the
    partitions receiving dispatches grows; once it runs again every lag returns to 0."""
    peaks: list[int] = []

    async def stall(stack: FaultStack) -> None:
        stack.stop("scheduler-1")
        await asyncio.sleep(3)
        lags = await asyncio.to_thread(stack.partition_lag)
        assert None not in lags.values(), lags  # the scaler could not read a None
        peaks.append(max(v or 0 for v in lags.values()))
        stack.cont("scheduler-1")

    async with FaultStack(tmp_path, schedulers=1) as stack:
        report = await stack.run(stall, Load(rate=40.0, duration_s=8.0))
        after = await asyncio.to_thread(stack.partition_lag)
    print(f"\n=== lag: peak {peaks}, after {max(after.values(), key=lambda v: v or 0)}")
    _assert_clean(report)
    assert peaks and peaks[0] > 0
    assert set(after.values()) == {0}, after
