"""Graceful drain on SIGTERM: schedulers hand their partitions over without a lease TTL
wait; API nodes fail readiness first, keep answering, then finish what is in flight."""

from __future__ import annotations

import asyncio

import aiohttp

from dispatcher.store import keys
from tests.redis_servers import RedisTarget
from tests.stack import api_url, eventually, start_api, start_scheduler


async def test_a_drained_scheduler_releases_its_leases_for_the_next_owner(
    redis_single_target: RedisTarget,
) -> None:
    url = redis_single_target.url
    first = await start_scheduler(url, "drain-a", lease_ttl_ms=60_000)
    second = await start_scheduler(url, "drain-b", lease_ttl_ms=60_000)
    try:
        await eventually(lambda: len(first.loops) + len(second.loops) == 64, what="split")
        held = list(first.loops)
        assert held
        await first.drain()
        leases = [keys.partition_keys(p).lease for p in held]
        values: list[bytes | None] = await first.client.fast.execute("MGET", *leases)
        assert not any(v and v.startswith(b"drain-a/") for v in values)
        # a minute-long TTL: only a released lease can move this soon
        await eventually(lambda: len(second.loops) == 64, what="the takeover")
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_draining_api_node_fails_readiness_but_still_answers(
    redis_single_target: RedisTarget,
) -> None:
    node = await start_api(redis_single_target.url, drain_delay_s=1.0)
    base = api_url(node)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/readyz") as resp:
                assert resp.status == 200
            draining = asyncio.create_task(node.drain())
            await asyncio.sleep(0.2)
            async with http.get(base + "/readyz") as resp:
                assert (resp.status, await resp.text()) == (503, "not ready: draining")
            async with http.get(base + "/healthz") as resp:
                assert resp.status == 200  # alive: nobody should restart it
            await draining
        async with aiohttp.ClientSession() as http:
            try:
                async with http.get(base + "/healthz") as resp:
                    raise AssertionError(f"still accepting after the drain: {resp.status}")
            except aiohttp.ClientConnectionError:
                pass
    finally:
        await node.aclose()
