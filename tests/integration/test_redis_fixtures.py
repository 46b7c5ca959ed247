"""The Redis fixtures give real single-node and cluster servers that behave alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterCrossSlotError, RedisClusterException

from tests.redis_servers import RedisTarget

AnyRedis = Redis | RedisCluster

TWO_KEY_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1])
local n = redis.call('INCRBY', KEYS[2], ARGV[2])
return {redis.call('GET', KEYS[1]), n}
"""


@pytest.fixture
async def client(redis_target: RedisTarget) -> AsyncIterator[AnyRedis]:
    conn: AnyRedis
    if redis_target.cluster:
        conn = RedisCluster.from_url(redis_target.url, decode_responses=True)
    else:
        conn = Redis.from_url(redis_target.url, decode_responses=True)
    try:
        yield conn
    finally:
        await conn.aclose()


async def test_target_kind_matches_server(client: AnyRedis, redis_target: RedisTarget) -> None:
    if redis_target.cluster:
        assert isinstance(client, RedisCluster)
        await client.initialize()  # discovers all nodes from the seed URL
        assert len(client.get_primaries()) == 3
    else:
        assert isinstance(client, Redis)
        assert (await client.info("cluster"))["cluster_enabled"] == 0


async def test_stream_consumer_group_round_trip(client: AnyRedis) -> None:
    stream = "dsp:{p07}:events"
    assert await client.xgroup_create(stream, "workers", id="0", mkstream=True)
    ids = [await client.xadd(stream, {"job": f"j{i}"}) for i in range(3)]

    # RESP2 reply: [[stream, [(id, {field: value}), ...]]]
    batches: Any = await client.xreadgroup("workers", "w1", {stream: ">"}, count=10)
    assert len(batches) == 1
    name, entries = batches[0]
    assert name == stream
    assert [entry_id for entry_id, _ in entries] == ids
    assert [fields["job"] for _, fields in entries] == ["j0", "j1", "j2"]
    assert (await client.xpending(stream, "workers"))["pending"] == 3

    assert await client.xack(stream, "workers", *ids) == 3
    assert (await client.xpending(stream, "workers"))["pending"] == 0
    assert await client.xreadgroup("workers", "w1", {stream: ">"}, count=10) == []


async def test_lua_script_on_same_hash_tag(client: AnyRedis) -> None:
    keys = ("dsp:{p07}:owner", "dsp:{p07}:counter")
    assert await client.eval(TWO_KEY_SCRIPT, 2, *keys, "w1", 5) == ["w1", 5]
    assert await client.eval(TWO_KEY_SCRIPT, 2, *keys, "w2", 2) == ["w2", 7]
    assert await client.get(keys[1]) == "7"


async def test_cross_slot_script_only_fails_on_cluster(client: AnyRedis) -> None:
    k1, k2 = "dsp:{p01}:x", "dsp:{p02}:x"
    if isinstance(client, Redis):  # a single server has no slot rules
        assert await client.eval(TWO_KEY_SCRIPT, 2, k1, k2, "w1", 1) == ["w1", 1]
        return

    slot1, slot2 = await client.cluster_keyslot(k1), await client.cluster_keyslot(k2)
    assert slot1 != slot2
    assert (slot1, slot2) == (client.keyslot(k1), client.keyslot(k2))
    # redis-py refuses before sending anything ...
    with pytest.raises(RedisClusterException, match="same key slot"):
        await client.eval(TWO_KEY_SCRIPT, 2, k1, k2, "w1", 1)
    # ... and the server itself answers CROSSSLOT when the script reaches it.
    node = client.get_node_from_key(k1)
    # (redis-py maps the server's "-CROSSSLOT ..." reply to ClusterCrossSlotError)
    with pytest.raises(ClusterCrossSlotError, match="don't hash to the same slot"):
        await client.execute_command("EVAL", TWO_KEY_SCRIPT, 2, k1, k2, "w1", 1, target_nodes=node)
    assert await client.get(k1) is None  # the script did not run
