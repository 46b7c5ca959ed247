"""A scheduler's scrape-time samples (stream lag per owned partition, used slots per pool)
on a single node and on a cluster, where each call goes to the master of its key."""

from __future__ import annotations

import asyncio

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.metrics.counts import REDIS
from dispatcher.metrics.export import Metrics
from dispatcher.scheduler.metrics import exported
from dispatcher.scheduler.node import SchedulerNode
from tests.redis_servers import RedisTarget
from tests.stack import eventually, scheduler_settings, start_agent
from workers import JobContext

PARTITIONS = 4


async def _hold(_: JobContext) -> None:
    await asyncio.Event().wait()


def _samples(metrics: Metrics, name: str) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        ",".join(sample.labels.values()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def test_a_scrape_samples_lag_per_partition_and_used_slots_per_pool(
    redis_target: RedisTarget,
) -> None:
    metrics = Metrics()
    settings = scheduler_settings(redis_target.url, "m1", partitions=PARTITIONS)
    node = await SchedulerNode.create(settings)
    exported(metrics).watch(node)
    await node.start()
    agent = await start_agent(redis_target.url, "metered", _hold, capacity=3)
    try:
        await eventually(lambda: node.registry.has_servers("metered"), what="the pool")
        moved = REDIS.error_replies.get(("fast", "MOVED"), 0)
        await metrics.render()
        assert REDIS.error_replies.get(("fast", "MOVED"), 0) == moved  # each call routed right
        lag = _samples(metrics, "dispatcher_partition_stream_lag_entries")
        assert lag == {str(p): 0.0 for p in range(PARTITIONS)}
        assert _samples(metrics, "dispatcher_pool_used_slots") == {"metered": 0.0}
        assert _samples(metrics, "dispatcher_pool_capacity_slots") == {"metered": 3.0}
        assert _samples(metrics, "dispatcher_partitions_owned") == {"": PARTITIONS}
    finally:
        await agent.aclose()
        await node.aclose()
