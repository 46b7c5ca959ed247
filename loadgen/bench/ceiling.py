"""The physical limit: ``redis-benchmark`` XADDs against the bench's own redis-server.

One run without pipelining (each XADD its own round trip, as most of a dispatch's calls
are) and one with ``-P 16``. Besides redis-benchmark's requests per second, the Redis
main-thread CPU (``INFO cpu``) over the run gives the CPU one XADD costs, which holds
whether or not the benchmark client saturated Redis; our Redis CPU per dispatch divided by
it is what one dispatch costs in XADDs.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

from dispatcher.store.client import Client
from loadgen.cpu import redis_cpu_s

KEY = "bench:ceiling"
REQUESTS = 200_000
CLIENTS = 50
PIPELINE = 16
TIMEOUT_S = 120.0
_RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?) requests per second")


class CeilingError(RuntimeError):
    """redis-benchmark failed or printed no rate."""


@dataclass(frozen=True, slots=True)
class XaddRun:
    pipeline: int
    requests: int
    clients: int
    requests_per_s: float
    redis_cpu_us_per_op: float


@dataclass(frozen=True, slots=True)
class Ceiling:
    unpipelined: XaddRun
    pipelined: XaddRun


def parse_requests_per_s(output: str) -> float:
    """The final rate of ``redis-benchmark -q`` (its progress lines, separated by carriage
    returns, show ``rps=`` instead)."""
    matches = _RATE.findall(output)
    if not matches:
        raise CeilingError(f"no 'requests per second' in redis-benchmark output: {output!r}")
    return float(matches[-1])


def benchmark_argv(port: int, *, pipeline: int, cpus: str | None) -> list[str]:
    pin = ["taskset", "-c", cpus] if cpus else []
    options = ["-h", "127.0.0.1", "-p", str(port), "-n", str(REQUESTS), "-c", str(CLIENTS)]
    return [
        *pin,
        "redis-benchmark",
        *options,
        "-P",
        str(pipeline),
        "-q",
        "XADD",
        KEY,
        "*",
        "f",
        "v",
    ]


async def run_xadd(client: Client, port: int, *, pipeline: int, cpus: str | None) -> XaddRun:
    await client.delete(KEY)
    before = await redis_cpu_s(client)
    output = await _run(benchmark_argv(port, pipeline=pipeline, cpus=cpus))
    used = await redis_cpu_s(client) - before
    await client.delete(KEY)
    return XaddRun(
        pipeline=pipeline,
        requests=REQUESTS,
        clients=CLIENTS,
        requests_per_s=parse_requests_per_s(output),
        redis_cpu_us_per_op=round(used / REQUESTS * 1e6, 3),
    )


async def _run(argv: list[str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise CeilingError(f"redis-benchmark did not finish in {TIMEOUT_S:g} s") from None
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise CeilingError(f"redis-benchmark exited with {process.returncode}: {text[-500:]}")
    return text


async def measure_ceiling(client: Client, port: int, cpus: str | None) -> Ceiling:
    return Ceiling(
        unpipelined=await run_xadd(client, port, pipeline=1, cpus=cpus),
        pipelined=await run_xadd(client, port, pipeline=PIPELINE, cpus=cpus),
    )


def ceiling_lines(ceiling: Ceiling, ours: Sequence[tuple[str, float]]) -> list[str]:
    """The limit, and what each of our Redis CPU figures per dispatch (labelled by where
    it was measured) makes of it."""
    one, many = ceiling.unpipelined, ceiling.pipelined
    lines = [
        f"Redis ceiling (redis-benchmark XADD, {one.clients} clients): "
        f"{one.requests_per_s:.0f}/s unpipelined, Redis CPU {one.redis_cpu_us_per_op:.2f} "
        f"us/XADD; {many.requests_per_s:.0f}/s with -P {many.pipeline}, "
        f"{many.redis_cpu_us_per_op:.2f} us/XADD"
    ]
    lines += [
        f"dispatcher {where}: Redis CPU {redis_us:.1f} us/dispatch -> "
        f"{1e6 / redis_us:.0f} dispatches/s per Redis shard (one core); one dispatch"
        f" = {_equivalents(redis_us, one)} unpipelined XADDs, "
        f"{_equivalents(redis_us, many)} pipelined"
        for where, redis_us in ours
        if redis_us > 0
    ]
    return lines


def _equivalents(redis_us: float, run: XaddRun) -> str:
    return f"{redis_us / run.redis_cpu_us_per_op:.1f}" if run.redis_cpu_us_per_op else "-"
