"""How late schedulers renew their partition leases: the margin a lease TTL must leave.

    python -m loadgen.leases --redis-url redis://127.0.0.1:6379 --duration 30

Samples the remaining TTL of every partition lease (``PTTL``, pipelined) every few
milliseconds while a deployment runs, typically next to ``loadgen dispatch``. A lease is
renewed every heartbeat back to the full TTL, so the lowest remaining TTL seen says how long
the longest gap between two renewals was: TTL minus that. A lease TTL below the longest gap
would hand a partition over from a live, merely slow, scheduler.
"""

from __future__ import annotations

import asyncio
import json
import time

import click

from dispatcher.partitions import DEFAULT_PARTITIONS
from dispatcher.store import keys
from dispatcher.store.fastlane import FastLane


async def watch(url: str, partitions: int, duration_s: float, every_ms: float) -> dict[str, float]:
    lane = FastLane(url, cluster=False)
    leases = [keys.partition_keys(p).lease for p in range(partitions)]
    lowest = dict.fromkeys(leases, float("inf"))
    handovers, holders = 0, dict.fromkeys(leases, b"")
    ttl_ms = 0.0
    deadline = time.monotonic() + duration_s
    try:
        while time.monotonic() < deadline:
            replies = await asyncio.gather(
                *(lane.execute("PTTL", lease) for lease in leases),
                *(lane.execute("GET", lease) for lease in leases),
            )
            for lease, left, holder in zip(
                leases, replies[:partitions], replies[partitions:], strict=True
            ):
                if left > 0:
                    lowest[lease] = min(lowest[lease], left)
                    ttl_ms = max(ttl_ms, left)
                if holders[lease] and holder and holder != holders[lease]:
                    handovers += 1
                holders[lease] = holder or holders[lease]
            await asyncio.sleep(every_ms / 1000)
    finally:
        await lane.aclose()
    seen = [v for v in lowest.values() if v != float("inf")]
    gap = ttl_ms - min(seen) if seen else 0.0
    return {"lease_ttl_ms_seen": ttl_ms, "longest_renewal_gap_ms": gap, "handovers": handovers}


@click.command()
@click.option("--redis-url", required=True)
@click.option("--partitions", type=int, default=DEFAULT_PARTITIONS, show_default=True)
@click.option("--duration", type=float, default=30.0, show_default=True, help="seconds")
@click.option("--every-ms", type=float, default=5.0, show_default=True)
def main(redis_url: str, partitions: int, duration: float, every_ms: float) -> None:
    """How late schedulers renew their partition leases (one JSON object)."""
    result = asyncio.run(watch(redis_url, partitions, duration, every_ms))
    click.echo(json.dumps(result))


if __name__ == "__main__":
    main()
