"""Partition ownership across scheduler nodes, against a real Redis (single and cluster)."""

from __future__ import annotations

import asyncio

import pytest

from dispatcher.errors import ConfigError, OwnershipLost
from dispatcher.scheduler import jobs
from dispatcher.scheduler.node import SchedulerNode
from dispatcher.scheduler.ownership import owned_by
from dispatcher.scheduler.partition import PartitionLoop
from dispatcher.scheduler.registry import Registry
from dispatcher.store import calls, keys, scripts
from dispatcher.store.client import Client, connect
from dispatcher.store.meta import ensure_partitions
from tests.redis_servers import RedisTarget
from tests.stack import eventually, start_scheduler

P = 64


def _split(nodes: list[SchedulerNode]) -> list[set[int]]:
    return [set(n.loops) for n in nodes]


def _settled(nodes: list[SchedulerNode]) -> bool:
    """Every node holds exactly the partitions rendezvous hashing gives it."""
    members = [n.node_id for n in nodes]
    return all(set(n.loops) == owned_by(n.node_id, members, P) for n in nodes)


async def _watch_overlap(nodes: list[SchedulerNode], stop: asyncio.Event) -> set[int]:
    """Partitions seen held by two nodes at the same instant."""
    seen: set[int] = set()
    while not stop.is_set():
        owned = _split(nodes)
        for i, a in enumerate(owned):
            for b in owned[i + 1 :]:
                seen |= a & b
        await asyncio.sleep(0.005)
    return seen


async def test_two_schedulers_split_partitions_evenly(redis_target: RedisTarget) -> None:
    nodes = [await start_scheduler(redis_target.url, f"s{i}") for i in range(2)]
    try:
        await eventually(lambda: _settled(nodes), what="64 partitions owned")
        for owned in _split(nodes):
            assert 24 <= len(owned) <= 40  # ±25% of 32
    finally:
        await asyncio.gather(*(n.aclose() for n in nodes))


async def test_third_scheduler_takes_about_a_third_without_double_ownership(
    redis_target: RedisTarget,
) -> None:
    nodes = [await start_scheduler(redis_target.url, f"s{i}") for i in range(2)]
    stop = asyncio.Event()
    try:
        await eventually(lambda: _settled(nodes), what="two-node split")
        before = _split(nodes)
        watcher = asyncio.create_task(_watch_overlap(nodes, stop))
        nodes.append(await start_scheduler(redis_target.url, "s2"))
        await eventually(
            lambda: _settled(nodes) and len(nodes[2].loops) > 0, what="three-node split"
        )
        stop.set()
        assert await watcher == set()
        moved = sum(len(b - a) for b, a in zip(before, _split(nodes)[:2], strict=True))
        assert 12 <= moved <= 32  # about a third of 64
        assert moved == len(nodes[2].loops)
    finally:
        stop.set()
        await asyncio.gather(*(n.aclose() for n in nodes))


async def test_stale_lease_holder_cannot_commit(redis_target: RedisTarget) -> None:
    client = await connect(redis_target.url)
    try:
        await scripts.load_all(client)
        k = keys.partition_keys(5)
        old = (await scripts.lease(client, *calls.lease(k, "a", 60000))).decode()
        await client.delete(k.lease)  # the lease expired while "a" was paused
        new = (await scripts.lease(client, *calls.lease(k, "b", 60000))).decode()
        assert int(new.split("/")[1]) > int(old.split("/")[1])
        worker = PartitionLoop(
            client,
            5,
            "a",
            old,
            Registry(client, 1, 1.0, 60000),
            timeouts=jobs.Timeouts(),
            batch_size=10,
            block_ms=10,
            load_threshold=1.0,
        )
        await client.xadd(k.events, {"e": b"junk"})
        with pytest.raises(OwnershipLost):
            await worker.run()
        assert await client.get(k.lease) == new.encode()
    finally:
        await client.aclose()


async def test_node_with_other_partition_count_refuses_to_start(
    redis_target: RedisTarget,
) -> None:
    client = await connect(redis_target.url)
    try:
        await ensure_partitions(client, 64)
        with pytest.raises(ConfigError, match="64 partitions"):
            await ensure_partitions(client, 32)
    finally:
        await client.aclose()


async def test_acked_events_are_trimmed_from_the_stream(redis_target: RedisTarget) -> None:
    node = await start_scheduler(redis_target.url, "trimmer")
    client = await connect(redis_target.url)
    try:
        await eventually(lambda: len(node.loops) == P, what="ownership")
        k = keys.partition_keys(3)
        for _ in range(200):
            await client.xadd(k.events, {"e": b"junk"})  # undecodable: logged and acked
        worker = node.loops[3]
        worker._housekeeping._last_trim = 0.0  # make the next turn trim
        await eventually(lambda: _stream_length(client, k.events, below=200), what="trimming")
    finally:
        await client.aclose()
        await node.aclose()


async def _stream_length(client: Client, stream: str, below: int) -> bool:
    return int(await client.xlen(stream)) < below
