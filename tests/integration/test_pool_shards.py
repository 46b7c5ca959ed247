"""The pool-shard scripts on a real Redis (one node and the 3-master cluster): placement
inside a shard, the free index kept in step, expiries read forward, bounded upkeep."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dispatcher.store import calls, keys, scripts
from dispatcher.store.client import Client, connect
from tests import pools
from tests.redis_servers import RedisTarget

POOL = "shards"


@pytest.fixture
async def client(redis_target: RedisTarget) -> AsyncIterator[Client]:
    connected = await connect(redis_target.url)
    await scripts.load_all(connected)
    try:
        yield connected
    finally:
        await connected.aclose()


def one_shard(count: int) -> tuple[int, list[str]]:
    """``count`` server ids that share a shard, and that shard."""
    by_shard: dict[int, list[str]] = {}
    n = 0
    while True:
        server_id = f"AW_s{n}"
        same = by_shard.setdefault(pools.shard(POOL, server_id).shard, [])
        same.append(server_id)
        if len(same) == count:
            return pools.shard(POOL, server_id).shard, same
        n += 1


async def free_index(client: Client, shard: int) -> tuple[dict[str, int], int]:
    s = keys.shard_keys(POOL, shard, pools.SHARDS)
    rows: list[Any] = await client.fast.execute("ZRANGE", s.free, 0, -1, "WITHSCORES")
    index = {rows[i].decode(): int(rows[i + 1]) for i in range(0, len(rows), 2)}
    return index, int(await client.fast.execute("GET", s.total) or 0)


async def test_a_shard_places_on_its_freest_server_and_never_past_capacity(
    client: Client,
) -> None:
    shard, (small, large) = one_shard(2)
    await pools.heartbeat(client, POOL, small, capacity=1)
    await pools.heartbeat(client, POOL, large, capacity=3)
    held = [await pools.reserve(client, POOL, shard, f"AJ_{n}") for n in range(5)]
    assert held[:4].count(large.encode()) == 3 and held[:4].count(small.encode()) == 1
    assert held[0] == large.encode()  # three free slots before one
    assert held[4] is None  # four slots, four reservations
    assert await free_index(client, shard) == ({small: 0, large: 0}, 0)  # full, yet usable
    shard_keys = keys.shard_keys(POOL, shard, pools.SHARDS)
    await scripts.release(client, *calls.release(shard_keys, large, "AJ_0"))
    assert await free_index(client, shard) == ({small: 0, large: 1}, 1)


async def test_a_replayed_job_id_gets_the_server_that_holds_it(client: Client) -> None:
    shard, (first, second) = one_shard(2)
    await pools.heartbeat(client, POOL, first)
    await pools.heartbeat(client, POOL, second)
    held = await pools.reserve(client, POOL, shard, "AJ_replayed")
    assert await pools.reserve(client, POOL, shard, "AJ_replayed") == held
    s = keys.shard_keys(POOL, shard, pools.SHARDS)
    both = [await client.hlen(s.reservations(sid)) for sid in (first, second)]
    assert sorted(both) == [0, 1]


async def test_a_server_that_rejected_the_job_is_taken_only_when_no_other_can(
    client: Client,
) -> None:
    shard, (rejecter, other) = one_shard(2)
    await pools.heartbeat(client, POOL, rejecter, capacity=5)
    await pools.heartbeat(client, POOL, other, capacity=1)

    async def reserve(job_id: str) -> Any:
        return await pools.reserve(client, POOL, shard, job_id, excluded=(rejecter,))

    assert await reserve("AJ_a") == other.encode()  # fewer free slots, but not the rejecter
    assert await reserve("AJ_b") == rejecter.encode()  # the only one left with room


async def test_dead_draining_and_overloaded_servers_are_passed_over(client: Client) -> None:
    shard, (dead, draining, loaded, fine) = one_shard(4)
    await pools.heartbeat(client, POOL, dead, capacity=9, ttl_ms=50)
    await pools.heartbeat(client, POOL, draining, capacity=8, status=2)
    await pools.heartbeat(client, POOL, loaded, capacity=7, load="0.95")
    await pools.heartbeat(client, POOL, fine, capacity=1)
    await asyncio.sleep(0.1)  # the first one's heartbeat expires
    assert await pools.reserve(client, POOL, shard, "AJ_1") == fine.encode()
    index, total = await free_index(client, shard)
    assert index == {loaded: 7, fine: 0}  # the dead one was dropped on the way; draining
    assert total == 7  # never in
    assert await pools.reserve(client, POOL, shard, "AJ_2") is None


async def test_a_server_back_from_expiry_returns_to_the_free_index(client: Client) -> None:
    shard, (server,) = one_shard(1)
    await pools.heartbeat(client, POOL, server, capacity=2, ttl_ms=50)
    await asyncio.sleep(0.1)
    tick = await pools.tick(client, POOL, shard)
    assert [r.decode() for r in tick[3][::3]] == [server]  # seen expired, out of the index
    assert await free_index(client, shard) == ({}, 0)
    s = pools.shard(POOL, server)
    # Past its fence deadline the SDK sends the script, even with nothing new to say: it
    # sees the expiry had passed and puts the server back.
    now_ms, gone = await scripts.heartbeat(client, *calls.heartbeat(s, server, 3000))
    assert int(now_ms) > 0 and gone == []
    assert await free_index(client, shard) == ({server: 2}, 2)
    # A plain ZADD (the SDK's quiet heartbeat) never adds a server the shard does not know.
    assert await client.fast.execute("ZADD", s.exp, "XX", "GT", "CH", 1, "AW_unknown") == 0


async def test_expiries_are_read_forward_and_the_long_dead_reaped_a_few_at_a_time(
    client: Client,
) -> None:
    shard, servers = one_shard(20)
    for server_id in servers:
        await pools.heartbeat(client, POOL, server_id, ttl_ms=30)
    await asyncio.sleep(0.1)
    s = keys.shard_keys(POOL, shard, pools.SHARDS)
    first = await scripts.shard_tick(client, *calls.shard_tick(s, 0, 0, 8, 60_000))
    assert len(first[3]) == 3 * 8  # a page of expiries
    reaped = await scripts.shard_tick(client, *calls.shard_tick(s, 0, 0, 256, 50, reap_count=16))
    assert reaped[2] == 4  # 16 of 20 reaped (as asked), four left
    assert await client.exists(s.server(servers[0])) == 0


async def test_a_reservation_is_taken_back_from_a_lost_server_only(client: Client) -> None:
    shard, (alive, lost) = one_shard(2)
    await pools.heartbeat(client, POOL, alive, capacity=1)
    await pools.heartbeat(client, POOL, lost, capacity=1, ttl_ms=50)
    held = {
        (await pools.reserve(client, POOL, shard, f"AJ_{n}")).decode(): f"AJ_{n}" for n in (1, 2)
    }
    s = keys.shard_keys(POOL, shard, pools.SHARDS)

    async def release_lost(server_id: str, not_before: int) -> Any:
        call = calls.release_lost(s, server_id, held[server_id], not_before, 100)
        return await scripts.release_lost(client, *call)

    assert await release_lost(alive, 0) == 0  # heartbeat ahead: alive
    await asyncio.sleep(0.06)
    assert await release_lost(lost, 0) == -1  # expired, not past the margin yet
    assert await release_lost(lost, 2**50) == -1  # nor past the caller's evidence bound
    await asyncio.sleep(0.12)
    assert await release_lost(lost, 0) == 1
    assert await client.hlen(s.reservations(lost)) == 0
    assert await client.hget(s.jobs, held[lost]) is None


async def test_the_free_total_matches_the_index_through_any_mix_of_calls(client: Client) -> None:
    shard, servers = one_shard(6)
    rng = random.Random(13)
    s = keys.shard_keys(POOL, shard, pools.SHARDS)
    held: dict[str, str] = {}
    for step in range(300):
        server_id = rng.choice(servers)
        action = rng.random()
        if action < 0.3:
            await pools.heartbeat(
                client, POOL, server_id, capacity=rng.randint(1, 4), status=rng.choice((0, 0, 1, 2))
            )
        elif action < 0.6:
            result = await pools.reserve(client, POOL, shard, f"AJ_{step}")
            if result is not None:  # never past the capacity it has when reserved
                held[f"AJ_{step}"] = server_id = result.decode()
                cap = int(await client.hget(s.server(server_id), "cap") or 0)
                assert await client.hlen(s.reservations(server_id)) <= cap
        elif action < 0.85 and held:
            job_id = rng.choice(sorted(held))
            await scripts.release(client, *calls.release(s, held.pop(job_id), job_id))
        elif action < 0.95 and held:
            job_id = rng.choice(sorted(held))
            await scripts.revoke(client, *calls.revoke(s, held.pop(job_id), job_id))
        else:
            await scripts.deregister(client, *calls.deregister(s, server_id))
            held = {j: sid for j, sid in held.items() if sid != server_id}
        index, total = await free_index(client, shard)
        assert total == sum(index.values()), f"step {step}"
