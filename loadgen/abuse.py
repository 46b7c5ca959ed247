"""Connection abuse: hold many idle and slow connections open at an API node while probing
it as a new client would, and report whether (and how fast) the probes were answered.

Idle connections connect and send nothing; slow ones send a request head one byte a
second (slowloris). A connection the node closes is opened again after a second, as an
attacker would. The held connections are spread over worker processes, since one process
may not have file descriptors for all of them. Meanwhile the main process opens a fresh
connection every ``probe_every_s`` and asks for ``/healthz``, then ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlparse

import uvloop

from dispatcher.api.fdlimit import connections_within_fd_limit

_REOPEN_AFTER_S = 1.0
_SLOW_HEAD = b"POST /twirp/livekit.RoomService/ListRooms HTTP/1.1\r\nHost: abuse\r\nX-Slow: "


@dataclass(frozen=True, slots=True)
class AbusePlan:
    host: str
    port: int
    idle: int
    slow: int
    hold_s: float
    procs: int = 2
    probe_every_s: float = 0.1


@dataclass(slots=True)
class HeldCounts:
    """What the held connections saw, summed over the worker processes."""

    opened: int = 0
    failed_to_open: int = 0
    closed_by_node: int = 0

    def add(self, other: HeldCounts) -> None:
        self.opened += other.opened
        self.failed_to_open += other.failed_to_open
        self.closed_by_node += other.closed_by_node


@dataclass(slots=True)
class AbuseReport:
    plan: dict[str, Any]
    held: HeldCounts
    probes: int = 0
    probe_failures: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    slow_probes: list[tuple[float, float]] = field(default_factory=list)  # (at s, ms) > 100 ms

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms) or [float("nan")]

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

        return {
            "plan": self.plan,
            "held": asdict(self.held),
            "probes": self.probes,
            "probe_failures": len(self.probe_failures),
            "first_failures": self.probe_failures[:5],
            "probe_ms": {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 2)},
            "probes_over_100ms": len(self.slow_probes),
            "slow_probes_at_s_ms": self.slow_probes[:20],
        }


def plan_from_url(url: str, **options: Any) -> AbusePlan:
    parsed = urlparse(url)
    return AbusePlan(parsed.hostname or "127.0.0.1", parsed.port or 80, **options)


def run(plan: AbusePlan) -> AbuseReport:
    """Hold the connections in worker processes, probe from this one, gather counts."""
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for index in range(plan.procs):
        share = _share(plan, index)
        parent, child = context.Pipe()
        worker = context.Process(target=_hold_main, args=(share, child), daemon=True)
        worker.start()
        pipes.append(parent)
        workers.append(worker)
    for pipe in pipes:
        pipe.recv()  # each worker has opened its connections
    report = AbuseReport(asdict(plan), HeldCounts())
    uvloop.run(_probe(plan, report))
    for pipe, worker in zip(pipes, workers, strict=True):
        report.held.add(pipe.recv())
        worker.join(10)
    return report


def _share(plan: AbusePlan, index: int) -> AbusePlan:
    def part(total: int) -> int:
        return total // plan.procs + (1 if index < total % plan.procs else 0)

    return AbusePlan(plan.host, plan.port, part(plan.idle), part(plan.slow), plan.hold_s, 1)


# --- the held connections (worker processes) -----------------------------------------------


def _hold_main(plan: AbusePlan, pipe: Connection) -> None:
    connections_within_fd_limit(plan.idle + plan.slow)  # raises the soft limit
    counts = HeldCounts()
    uvloop.run(_hold(plan, counts, pipe))
    pipe.send(counts)


async def _hold(plan: AbusePlan, counts: HeldCounts, pipe: Connection) -> None:
    deadline = time.monotonic() + plan.hold_s
    opened = asyncio.Event()
    ready = [0]
    total = plan.idle + plan.slow

    def one_ready() -> None:
        ready[0] += 1
        if ready[0] == total:
            opened.set()

    tasks = [
        asyncio.create_task(_keep_open(plan, slow, deadline, counts, one_ready))
        for slow in [False] * plan.idle + [True] * plan.slow
    ]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(opened.wait(), plan.hold_s)
    pipe.send("ready")
    await asyncio.gather(*tasks)


async def _keep_open(
    plan: AbusePlan, slow: bool, deadline: float, counts: HeldCounts, ready: Any
) -> None:
    first = True
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(plan.host, plan.port)
        except OSError:
            counts.failed_to_open += 1
        else:
            counts.opened += 1
            if first:
                ready()
                first = False
            if await _hold_one(reader, writer, slow, deadline):
                counts.closed_by_node += 1
        if first:
            ready()
            first = False
        await asyncio.sleep(_REOPEN_AFTER_S)


async def _hold_one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: bool, deadline: float
) -> bool:
    """Hold the connection until the deadline; True if the node closed it first."""
    try:
        if slow:
            writer.write(_SLOW_HEAD)
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                if not await asyncio.wait_for(reader.read(4096), min(1.0, left)):
                    return True
            if slow and not writer.is_closing():
                writer.write(b"x")
        return False
    except (OSError, RuntimeError):  # reset, or written to as the node closed it
        return True
    finally:
        writer.close()


# --- the probes (main process) --------------------------------------------------------------


async def _probe(plan: AbusePlan, report: AbuseReport) -> None:
    begin = time.monotonic()
    deadline = begin + plan.hold_s
    paths = ("/healthz", "/readyz")
    while time.monotonic() < deadline:
        path = paths[report.probes % 2]
        report.probes += 1
        started = time.perf_counter()
        try:
            status = await asyncio.wait_for(_get(plan, path), 5)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            report.probe_failures.append(f"{path}: {type(exc).__name__} {exc}")
        else:
            took_ms = (time.perf_counter() - started) * 1000
            report.latencies_ms.append(took_ms)
            if took_ms > 100:
                report.slow_probes.append((round(time.monotonic() - begin, 2), round(took_ms, 1)))
            if status != 200:
                report.probe_failures.append(f"{path}: HTTP {status}")
        await asyncio.sleep(plan.probe_every_s)


async def _get(plan: AbusePlan, path: str) -> int:
    reader, writer = await asyncio.open_connection(plan.host, plan.port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode())
        status_line = await reader.readline()
        await reader.read()
        return int(status_line.split()[1]) if status_line else 0
    finally:
        writer.close()
