"""The soak: the fault suite's deployment under steady load for a long while, with a random
fault every minute, memory and stream lengths sampled, and one reconciliation at the end.

    .venv/bin/python -m tests.faults.soak --minutes 30 --out soak-report

It prints each fault as it happens and, at the end, the reconciliation (the same figures the
fault suite requires to be zero), the recovery figures and how memory and stream lengths
moved; ``--out`` keeps the logs, the samples (``samples.jsonl``) and ``report.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

from dispatcher.store import keys
from tests.faults import AGENT_NAME, driver
from tests.faults.harness import FaultStack, Load
from tests.faults.reconcile import Report
from tests.pools import shard

SoakFault = Callable[[FaultStack, random.Random], Awaitable[str]]
SAMPLE_EVERY_S = 10.0


async def _kill_and_restart(stack: FaultStack, name: str, after_s: float) -> str:
    stack.kill(name)
    await asyncio.sleep(after_s)
    stack.restart(name)
    return f"kill -9 {name}, restarted after {after_s:g} s"


async def kill_scheduler(stack: FaultStack, rng: random.Random) -> str:
    return await _kill_and_restart(stack, f"scheduler-{rng.randint(1, 3)}", 3.0)


async def kill_agent(stack: FaultStack, rng: random.Random) -> str:
    return await _kill_and_restart(stack, f"agent-{rng.randint(1, 2)}", 2.0)


async def kill_api(stack: FaultStack, rng: random.Random) -> str:
    return await _kill_and_restart(stack, "api", 1.0)


async def stop_scheduler(stack: FaultStack, rng: random.Random) -> str:
    name = f"scheduler-{rng.randint(1, 3)}"
    stack.stop(name)
    await asyncio.sleep(4.0)
    stack.cont(name)
    return f"SIGSTOP {name} for 4 s"


async def restart_redis(stack: FaultStack, rng: random.Random) -> str:
    away_s = rng.choice([0.5, 5.0])
    stack.kill_redis()
    await asyncio.sleep(away_s)
    stack.start_redis()
    return f"kill -9 Redis, back after {away_s:g} s"


async def cut_agent(stack: FaultStack, rng: random.Random) -> str:
    stack.cut()
    await asyncio.sleep(5.0)
    stack.uncut()
    return "agent-0 cut off from Redis for 5 s"


FAULTS: tuple[SoakFault, ...] = (
    kill_scheduler,
    kill_agent,
    kill_api,
    stop_scheduler,
    restart_redis,
    cut_agent,
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sample(stack: FaultStack) -> dict[str, object]:
    """RSS of each role's process (with its start count) and the streams' lengths."""
    rss = {
        name: {"start": proc.starts, "rss_kib": rss_kib(proc.pid)}
        for name, proc in stack.procs.items()
        if proc.running
    }
    with stack.client() as r:
        partitions = int(cast(bytes, r.hget(keys.META, "partitions")))
        events = [cast(int, r.xlen(keys.partition_keys(p).events)) for p in range(partitions)]
        dead = sum(cast(int, r.xlen(keys.partition_keys(p).dead)) for p in range(partitions))
        inboxes = [
            cast(int, r.xlen(shard(AGENT_NAME, s).inbox(s))) for s in stack.servers().values()
        ]
    return {
        "t": time.time(),
        "rss": rss,
        "events_total": sum(events),
        "events_max": max(events),
        "dead_letters": dead,
        "inbox_max": max(inboxes, default=0),
    }


async def sampler(stack: FaultStack, out: Path, until: float) -> None:
    with out.open("a") as samples:
        while time.monotonic() < until:
            try:
                row = await asyncio.to_thread(sample, stack)
            except Exception as exc:  # Redis may be away in a fault: sample again later
                row = {"t": time.time(), "error": repr(exc)}
            samples.write(json.dumps(row) + "\n")
            samples.flush()
            await asyncio.sleep(SAMPLE_EVERY_S)


async def faults(stack: FaultStack, rng: random.Random, every_s: float, until: float) -> None:
    """A random fault each ``every_s``, the first after one interval, none in the last."""
    while time.monotonic() + 2 * every_s < until:
        await asyncio.sleep(every_s)
        stack.fault_ns = stack.fault_ns or time.time_ns()
        what = await rng.choice(FAULTS)(stack, rng)
        print(f"{time.strftime('%H:%M:%S')} {what}", flush=True)


def memory_trend(samples: list[dict[str, object]]) -> list[str]:
    """Per process that ran from the first sample to the last: RSS then and at the end."""
    rows = [s for s in samples if "rss" in s]
    if len(rows) < 2:
        return []
    first, last = cast(dict[str, dict[str, int]], rows[0]["rss"]), rows[-1]["rss"]
    last = cast(dict[str, dict[str, int]], last)
    lines = []
    for name, then in sorted(first.items()):
        now = last.get(name)
        if now is not None and now["start"] == then["start"]:
            lines.append(
                f"  {name}: {then['rss_kib'] / 1024:.1f} -> {now['rss_kib'] / 1024:.1f} MiB"
            )
    return lines


def stream_trend(samples: list[dict[str, object]]) -> str:
    rows = [s for s in samples if "events_total" in s]
    if not rows:
        return "streams: no sample"
    peak = max(cast(int, s["events_total"]) for s in rows)
    return (
        f"streams: events total first={rows[0]['events_total']} peak={peak} "
        f"last={rows[-1]['events_total']}; dead letters last={rows[-1]['dead_letters']}; "
        f"largest inbox last={rows[-1]['inbox_max']}"
    )


async def soak(minutes: float, rate: float, out: Path, seed: int) -> Report:
    rng = random.Random(seed)
    duration_s = minutes * 60
    load = Load(rate=rate, duration_s=duration_s, hold_s=3.0, fault_at_s=0, settle_s=60.0)
    async with FaultStack(out, proxied_agent=True) as stack:
        requests = driver.plan(int(rate * duration_s))
        start_ns = time.time_ns()
        until = time.monotonic() + duration_s
        traffic = asyncio.create_task(
            driver.drive(stack.base, requests, load.rate, load.hold_s, load.retry_for_s)
        )
        samples_path = out / "samples.jsonl"
        watch = asyncio.create_task(sampler(stack, samples_path, until + load.settle_s))
        await faults(stack, rng, 60.0, until)
        await traffic
        listed = await stack._settle(requests, load.settle_s)
        report = stack._reconcile(requests, listed, start_ns + int(duration_s * 1e9))
        watch.cancel()
        samples = [json.loads(line) for line in samples_path.read_text().splitlines()]
        lines = [report.summary(), "memory (processes never restarted):"]
        lines += [*memory_trend(samples), stream_trend(samples)]
        (out / "report.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=30.0, help="dispatches per second")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="keep logs and samples here")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    out = args.out or Path(tempfile.mkdtemp(prefix="soak-"))
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.minutes:g} min at {args.rate:g}/s, seed {seed}, output in {out}")
    report = asyncio.run(soak(args.minutes, args.rate, out, seed))
    counts = report.counts()
    raise SystemExit(0 if not any(counts.values()) else 1)


if __name__ == "__main__":
    main()
