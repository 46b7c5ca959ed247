"""CPU time the hypervisor takes from this machine ("steal", the 8th field of /proc/stat).

On a virtual machine the host may run someone else on our CPUs. On the machine the peers
table is measured on this comes in waves of tens of seconds that take 10-37 % of every
CPU, and a step run inside one is slowed whatever the system: ten identical 500/s steps of
ours, back to back, gave p99 6 ms at 0.5 % steal, 17 ms at 5 %, 32-46 ms at 8-9 % and
160-212 ms at 37 %. So the suite waits for a quiet host before each step and runs a step
again when the host took more than ``STEAL_LIMIT`` of a CPU during it.

Where the kernel reports no steal (bare metal, other systems), every share is 0.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

STEAL_LIMIT = 0.03  # of one CPU's time, on the CPU the host took the most from
QUIET_WINDOW_S = 3.0  # steal comes in bursts: a 1 s lull between two is no quiet host
QUIET_TIMEOUT_S = 300.0
MAX_TRIES = 5
PROC_STAT = Path("/proc/stat")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_STEAL_FIELD = 8  # cpuN user nice system idle iowait irq softirq steal ...

Steal = Mapping[str, float]  # CPU name -> seconds stolen since boot


def parse_steal(stat_text: str) -> dict[str, float]:
    """Seconds stolen per CPU (``cpu0``, ``cpu1``, ...) from /proc/stat's text."""
    stolen: dict[str, float] = {}
    for line in stat_text.splitlines():
        fields = line.split()
        if len(fields) > _STEAL_FIELD and fields[0][3:].isdigit() and fields[0][:3] == "cpu":
            stolen[fields[0]] = int(fields[_STEAL_FIELD]) / _TICKS_PER_S
    return stolen


def read_steal() -> dict[str, float]:
    try:
        return parse_steal(PROC_STAT.read_text())
    except OSError:
        return {}


def stolen_share(before: Steal, after: Steal, wall_s: float) -> float:
    """The largest share of one CPU's time taken between two readings ``wall_s`` apart."""
    if wall_s <= 0:
        return 0.0
    shares = [(after[cpu] - before[cpu]) / wall_s for cpu in after if cpu in before]
    return round(max(shares, default=0.0), 4)


@dataclass(frozen=True, slots=True)
class QuietWait:
    waited_s: float
    share: float  # in the last window: at most the limit unless the wait timed out


async def wait_for_quiet_host(
    limit: float = STEAL_LIMIT,
    window_s: float = QUIET_WINDOW_S,
    timeout_s: float = QUIET_TIMEOUT_S,
) -> QuietWait:
    """Wait until the host took at most ``limit`` of every CPU over ``window_s``."""
    started = time.monotonic()
    while True:
        before, window_start = read_steal(), time.monotonic()
        await asyncio.sleep(window_s)
        share = stolen_share(before, read_steal(), time.monotonic() - window_start)
        waited = time.monotonic() - started
        if share <= limit or waited >= timeout_s:
            return QuietWait(round(waited, 1), share)


class StealMeter:
    """The steal share from the meter's creation to each ``share()``."""

    def __init__(self) -> None:
        self._before, self._started = read_steal(), time.monotonic()

    def share(self) -> float:
        return stolen_share(self._before, read_steal(), time.monotonic() - self._started)
