"""Script calls when a node has forgotten the scripts (a restart, or a replica promoted by a
failover: script caches are per node and never replicated), and batches that fail."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from dispatcher.errors import BatchFailed
from dispatcher.store import calls, keys, scripts
from dispatcher.store.client import connect
from tests.faultinject import Faults
from tests.redis_servers import RedisTarget

SHARD = keys.shard_keys("x", 0, 1)


async def test_a_forgotten_script_is_loaded_on_its_node_and_the_call_retried(
    redis_target: RedisTarget,
) -> None:
    client = await connect(redis_target.url)
    try:
        res = SHARD.reservations("AW_1")
        await client.fast.execute("HSET", res, "AJ_1", 5)
        await client.fast.execute("SCRIPT", "FLUSH", key=res)  # that node forgets them all
        assert await scripts.confirm(client, *calls.confirm(SHARD, "AW_1", "AJ_1")) == 1
    finally:
        await client.aclose()


async def test_a_batch_resends_only_the_calls_that_met_noscript(
    redis_target: RedisTarget,
) -> None:
    client = await connect(redis_target.url)
    try:
        res, stream = SHARD.reservations("AW_1"), SHARD.base + "log"
        await client.fast.execute("HSET", res, "AJ_1", 5)
        await client.fast.execute("SCRIPT", "FLUSH", key=res)
        batch = scripts.Batch()
        batch.command("XADD", stream, "*", "f", "v")
        batch.script(scripts.confirm, *calls.confirm(SHARD, "AW_1", "AJ_1"))
        assert (await batch.run(client))[1] == 1
        assert await client.fast.execute("XLEN", stream) == 1  # not appended twice
    finally:
        await client.aclose()


async def test_a_batch_with_a_failed_call_raises_unless_its_caller_takes_outcomes(
    redis_target: RedisTarget,
) -> None:
    client = await connect(redis_target.url)
    try:
        Faults(client.fast).fail_command("GET", "{t}b", times=2)
        batch = scripts.Batch()
        batch.command("SET", "{t}a", "1")
        batch.command("GET", "{t}b")
        with pytest.raises(BatchFailed, match="1 of 2 Redis calls failed"):
            await batch.run(client)
        ok, failed = await batch.outcomes(client)
        assert ok == b"OK" and isinstance(failed, RedisConnectionError)
    finally:
        await client.aclose()
