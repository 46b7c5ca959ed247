"""Agent servers as the pool scripts see them, for tests that write them directly."""

from __future__ import annotations

from typing import Any

from dispatcher.settings import RedisSettings
from dispatcher.store import calls, keys, scripts
from dispatcher.store.client import Client
from dispatcher.wire import JobSpec

SHARDS = RedisSettings().pool_shards  # what every role uses unless configured otherwise


def shard(pool: str, server_id: str) -> keys.ShardKeys:
    return keys.server_shard(pool, server_id, SHARDS)


async def heartbeat(
    client: Client,
    pool: str,
    server_id: str,
    *,
    capacity: int = 5,
    ttl_ms: int = 3000,
    load: str = "0",
    status: int = 0,
    running: tuple[str, ...] = (),
) -> Any:
    """One heartbeat saying everything, as the SDK's first; the pool is named as the SDK
    names it. Returns Redis's time and the running jobs that hold no reservation."""
    call = calls.heartbeat(
        shard(pool, server_id), server_id, ttl_ms, (capacity, load, status, b""), running
    )
    reply = await scripts.heartbeat(client, *call)
    await client.sadd(keys.POOLS, pool)
    return reply


async def reserve(
    client: Client,
    pool: str,
    shard_index: int,
    job_id: str,
    *,
    reach_ms: int = 5000,
    excluded: tuple[str, ...] = (),
) -> Any:
    """Reserve a slot for ``job_id`` in one shard, as a scheduler does."""
    s = keys.shard_keys(pool, shard_index, SHARDS)
    call = calls.reserve(s, job_spec(pool, job_id), reach_ms, 0.7, excluded)
    return await scripts.reserve(client, *call)


def job_spec(pool: str, job_id: str) -> JobSpec:
    """A room job of ``pool`` (an agent name), as placement would assign it."""
    return JobSpec(
        job_id=job_id, dispatch_id="AD_" + job_id, attempt=1, partition=0, room="r",
        room_sid="RM_r", agent_name=pool,
    )  # fmt: skip


async def tick(client: Client, pool: str, shard_index: int, *, reap_after_ms: int = 60_000) -> Any:
    """One scheduler's look at a shard (``shard_tick.lua``) from the start of its index."""
    s = keys.shard_keys(pool, shard_index, SHARDS)
    return await scripts.shard_tick(client, *calls.shard_tick(s, 0, 0, 256, reap_after_ms, 16, 64))


def ids_in_distinct_shards(pool: str, prefix: str, count: int) -> list[str]:
    """``count`` server ids, each in a shard of its own."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < count:
        server_id = f"{prefix}{n}"
        found.setdefault(shard(pool, server_id).shard, server_id)
        n += 1
    return list(found.values())
