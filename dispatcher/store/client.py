"""Connecting to Redis: one node or a Redis Cluster, detected from the server itself."""

from __future__ import annotations

from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

Client: TypeAlias = "aioredis.Redis | RedisCluster"
Pipeline: TypeAlias = "aioredis.client.Pipeline | ClusterPipeline"


# redis-py's asyncio pool raises once its cap is reached instead of waiting; a scheduler holds
# one blocking read per owned partition on top of its other calls, so the cap must be roomy.
MAX_CONNECTIONS = 1024


async def connect(url: str, **options: Any) -> Client:
    """Open a client for ``url``; a node with cluster mode enabled yields a cluster client."""
    options.setdefault("max_connections", MAX_CONNECTIONS)
    single = aioredis.Redis.from_url(url, **options)
    try:
        info = await single.info("cluster")
    except Exception:
        await single.aclose()
        raise
    if not info.get("cluster_enabled"):
        return single
    await single.aclose()
    cluster = RedisCluster.from_url(url, **options)
    await cluster.initialize()
    return cluster


def is_cluster(client: Client) -> bool:
    return isinstance(client, RedisCluster)
