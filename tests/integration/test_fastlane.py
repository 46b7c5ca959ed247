"""The fast lane against real Redis: one node and a 3-master cluster."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dispatcher.store.client import connect
from dispatcher.store.fastlane import FastLane, stream_entries
from tests.redis_servers import RedisTarget


async def test_concurrent_commands_each_get_their_own_reply(redis_target: RedisTarget) -> None:
    client = await connect(redis_target.url)
    try:
        sets = [client.fast.execute("SET", f"{{k{i}}}", i) for i in range(500)]
        assert await asyncio.gather(*sets) == [b"OK"] * 500
        gets = [client.fast.execute("GET", f"{{k{i}}}") for i in range(500)]
        assert await asyncio.gather(*gets) == [str(i).encode() for i in range(500)]
    finally:
        await client.aclose()


async def test_error_replies_raise_redis_py_exceptions(redis_target: RedisTarget) -> None:
    client = await connect(redis_target.url)
    try:
        with pytest.raises(NoScriptError):
            await client.fast.evalsha("0" * 40, ["k"], [])
        await client.fast.execute("SET", "str", "x")
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await client.fast.execute("LPUSH", "str", "y")
        assert await client.fast.execute("GET", "str") == b"x"  # the connection still works
    finally:
        await client.aclose()


async def test_a_stale_slot_map_is_corrected_by_moved(redis_target: RedisTarget) -> None:
    if not redis_target.cluster:
        pytest.skip("slot maps exist only in a cluster")
    lane = FastLane(redis_target.url, cluster=True)
    try:
        await lane.execute("SET", "{a}", "1")
        wrong = lane._slots[0]
        lane._slots = [wrong] * len(lane._slots)  # every slot on one node: most are MOVED
        values = [lane.execute("SET", f"{{key{i}}}", i) for i in range(50)]
        assert await asyncio.gather(*values) == [b"OK"] * 50
        assert len(set(lane._slots)) == 3  # the map was refreshed from the cluster
    finally:
        await lane.aclose()


async def test_a_blocking_read_does_not_hold_up_other_commands(
    redis_target: RedisTarget,
) -> None:
    client = await connect(redis_target.url)
    reads = client.fast.dedicated("{s}stream")
    try:
        # From id 0 on an empty stream: it blocks until the XADD, whichever arrives first.
        blocked = asyncio.ensure_future(
            reads.execute("XREAD", "BLOCK", 5000, "STREAMS", "{s}stream", "0")
        )
        await asyncio.sleep(0.05)  # let the read be sent before the XADD
        assert await client.fast.execute("XADD", "{s}stream", "*", "f", "v")  # not queued
        entries = stream_entries(await asyncio.wait_for(blocked, 5))
        assert [fields for _, fields in entries] == [{b"f": b"v"}]
    finally:
        reads.close()
        await client.aclose()


async def _clients(probe: FastLane) -> int:
    """Connections the server holds, the probe's own included."""
    info = (await probe.execute("INFO", "clients")).decode()
    return int(info.split("connected_clients:")[1].split()[0])


async def _settles_at(probe: FastLane, expected: int) -> None:
    for _ in range(100):
        if await _clients(probe) == expected:
            return
        await asyncio.sleep(0.02)
    assert await _clients(probe) == expected


async def test_a_connection_whose_callers_all_left_is_still_closed(
    redis_single_target: RedisTarget,
) -> None:
    probe = FastLane(redis_single_target.url, cluster=False)
    baseline = await _clients(probe)
    lane = FastLane(redis_single_target.url, cluster=False)
    caller = asyncio.ensure_future(lane.execute("PING"))
    while not lane._connecting:
        await asyncio.sleep(0)  # until the connect is under way
    caller.cancel()
    await _settles_at(probe, baseline + 1)  # it finished connecting with no one waiting
    await lane.aclose()
    await _settles_at(probe, baseline)
    await probe.aclose()


async def test_a_dedicated_connection_opened_after_close_is_shut(
    redis_single_target: RedisTarget,
) -> None:
    probe = FastLane(redis_single_target.url, cluster=False)
    baseline = await _clients(probe)
    lane = FastLane(redis_single_target.url, cluster=False)
    read = asyncio.ensure_future(lane.dedicated("s").execute("PING"))
    await asyncio.sleep(0)  # the connect is under way
    await lane.aclose()
    with pytest.raises(RedisConnectionError, match="closed"):
        await read
    await _settles_at(probe, baseline)
    await probe.aclose()


async def test_a_command_without_a_reply_fails_at_its_deadline(
    redis_single_target: RedisTarget,
) -> None:
    lane = FastLane(redis_single_target.url, cluster=False, timeout_s=0.3)
    other = FastLane(redis_single_target.url, cluster=False)
    try:
        assert await lane.execute("PING") == b"PONG"
        await other.execute("CLIENT", "PAUSE", 1500, "ALL")  # Redis stops answering a while
        with pytest.raises(RedisTimeoutError, match="did not answer"):
            await lane.execute("SET", "k", "v")
        assert lane.disconnects == 1  # evidence that Redis was out of reach
        await asyncio.sleep(1.5)
        assert await lane.execute("PING") == b"PONG"  # a new connection, no restart needed
    finally:
        await lane.aclose()
        await other.aclose()


async def test_a_blocking_read_has_its_wait_added_to_the_deadline(
    redis_single_target: RedisTarget,
) -> None:
    lane = FastLane(redis_single_target.url, cluster=False, timeout_s=0.2)
    reads = lane.dedicated("{s}idle")
    try:
        reply = await reads.execute("XREAD", "BLOCK", 500, "STREAMS", "{s}idle", "0", extra_s=0.5)
        assert reply is None and lane.disconnects == 0
    finally:
        reads.close()
        await lane.aclose()
