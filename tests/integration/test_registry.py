"""The scheduler's registry judges an agent server lost only on evidence: its heartbeat
expired, and it had a whole TTL to heartbeat since Redis was last seen coming back."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from dispatcher.scheduler.registry import Registry
from dispatcher.store import scripts
from dispatcher.store.client import connect
from tests.faultinject import Faults
from tests.pools import SHARDS, heartbeat
from tests.redis_servers import RedisTarget

POOL = "registry"
TTL_MS = 300


async def test_no_server_is_lost_on_evidence_from_an_outage(redis_target: RedisTarget) -> None:
    client = await connect(redis_target.url)
    try:
        await scripts.load_all(client)
        sid = "AW_quiet"
        key = (POOL, sid)
        await heartbeat(client, POOL, sid, ttl_ms=TTL_MS)
        registry = Registry(client, SHARDS, 0.05, 60_000, loss_margin_ms=100)
        await registry.refresh()
        assert not registry.is_lost(key)
        await asyncio.sleep(0.5)  # no heartbeat since: expired, with a TTL to spare
        await registry.refresh()
        assert registry.is_lost(key)

        Faults(client.fast).fail_command("SMEMBERS", times=1)  # Redis seems away a moment
        with pytest.raises(RedisConnectionError):
            await registry.refresh()
        await registry.refresh()
        assert not registry.is_lost(key)  # it could not have heartbeat meanwhile
        await asyncio.sleep(0.5)
        await registry.refresh()
        assert registry.is_lost(key)  # a whole TTL since Redis came back
    finally:
        await client.aclose()
