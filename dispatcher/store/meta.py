"""Deployment-wide facts stored in Redis at first start."""

from __future__ import annotations

from dispatcher.errors import ConfigError
from dispatcher.store.client import Client
from dispatcher.store.keys import META


async def ensure_partitions(client: Client, configured: int) -> None:
    """Store P on first start; refuse to run with a P that disagrees with the stored one."""
    if configured < 1:
        raise ConfigError(f"partitions must be at least 1, got {configured}")
    await client.hsetnx(META, "partitions", configured)
    stored = int(await client.hget(META, "partitions") or 0)
    if stored != configured:
        raise ConfigError(
            f"this deployment has {stored} partitions but this node is configured with "
            f"{configured}; set DISPATCHER_PARTITIONS={stored} (P cannot change once stored)"
        )
