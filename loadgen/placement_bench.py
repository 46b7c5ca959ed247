"""Scheduler CPU per placement against the size of the pool: what a partition does for one
waiting job (choose a shard, build the ``reserve.lua`` call, account for its answer),
with the pool's servers spread over the shards as the registry would see them.

    python -m loadgen.placement_bench --servers 10 --servers 10000

The reservation itself runs in Redis (``reserve.lua``: O(log N) in the shard's servers);
this measures only the scheduler's side, without I/O.
"""

from __future__ import annotations

import time
from typing import Any, cast

import click
import orjson

from dispatcher.scheduler.placing import PoolCalls
from dispatcher.scheduler.registry import Registry
from dispatcher.settings import SchedulerSettings
from dispatcher.store import keys
from dispatcher.store.client import Client
from dispatcher.wire import JobAttempt, JobRecord, JobSpec

POOL = "bench-agent"


def per_placement_us(servers: int, placements: int, shards: int) -> float:
    registry = Registry(cast(Client, None), shards, 0.25, 60_000)
    for shard in range(shards):  # capacity 10 per server, spread as crc32 spreads ids
        count = sum(1 for n in range(servers) if keys.shard_of(f"AW_{n}", shards) == shard)
        registry.view.apply_tick(POOL, shard, 10 * count, count, [])
    calls = PoolCalls(registry, 0.7, partition=0)
    records = [_record(n) for n in range(placements)]
    began = time.perf_counter()
    for n, record in enumerate(records):
        reservation = calls.reservation(record, 5000)
        assert reservation is not None
        shard, _call = reservation
        calls.placed(record, shard, f"AW_{n % servers}".encode())
        registry.note_released(POOL, f"AW_{n % servers}")  # the job ended: keep room
    return (time.perf_counter() - began) / placements * 1e6


def _record(n: int) -> JobRecord:
    spec = JobSpec(
        job_id=f"AJ_{n}",
        dispatch_id=f"AD_{n}",
        attempt=0,
        partition=0,
        room=f"room-{n}",
        room_sid=f"RM_{n}",
        agent_name=POOL,
    )
    return JobRecord(spec=spec, phase="pending", current=JobAttempt(job_id=spec.job_id))


@click.command()
@click.option("--servers", "sizes", type=int, multiple=True, default=(10, 10_000))
@click.option("--placements", type=int, default=50_000, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True)
def main(sizes: tuple[int, ...], placements: int, repeats: int) -> None:
    """Microseconds of scheduler CPU per placement, best of the repeats, per pool size."""
    shards = SchedulerSettings().pool_shards
    out: dict[str, Any] = {"shards": shards, "placements": placements, "us_per_placement": {}}
    for size in sizes:
        best = min(per_placement_us(size, placements, shards) for _ in range(repeats))
        out["us_per_placement"][str(size)] = round(best, 2)
    click.echo(orjson.dumps(out).decode())


if __name__ == "__main__":
    main()
