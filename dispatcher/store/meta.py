"""Deployment-wide facts stored in Redis at first start: the partition count P and the
pool shard count K. Neither can change once stored: rooms map to partitions and servers
to shards by them."""

from __future__ import annotations

from dispatcher.errors import ConfigError
from dispatcher.store.client import Client
from dispatcher.store.keys import META


async def ensure_partitions(client: Client, configured: int) -> None:
    """Store P on first start; refuse to run with a P that disagrees with the stored one."""
    await _ensure(client, "partitions", configured, "DISPATCHER_PARTITIONS")


async def ensure_pool_shards(client: Client, configured: int) -> None:
    """Store K on first start; refuse to run with a K that disagrees with the stored one."""
    await _ensure(client, "pool_shards", configured, "DISPATCHER_POOL_SHARDS")


async def _ensure(client: Client, field: str, configured: int, setting: str) -> None:
    name = field.replace("_", " ")
    if configured < 1:
        raise ConfigError(f"{name} must be at least 1, got {configured}")
    await client.hsetnx(META, field, configured)
    stored = int(await client.hget(META, field) or 0)
    if stored != configured:
        raise ConfigError(
            f"this deployment has {stored} {name} but this node is configured with "
            f"{configured}; set {setting}={stored} ({name} cannot change once stored)"
        )
