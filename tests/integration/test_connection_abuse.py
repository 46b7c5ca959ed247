"""Many idle and slow connections at a real API node: new clients and health checks are
still answered. The scale here fits the suite; SECURITY.md has the 20,000-connection run."""

from __future__ import annotations

import asyncio

import pytest
from livekit import api

from loadgen.abuse import AbusePlan, run
from tests.redis_servers import RedisTarget
from tests.stack import API_KEY, API_SECRET, api_url, start_api


@pytest.mark.solo  # a concurrent run starves the node, and its probes would time out
async def test_idle_and_slow_connections_past_the_limit_do_not_shut_out_new_clients(
    redis_single_target: RedisTarget,
) -> None:
    node = await start_api(
        redis_single_target.url, max_connections=300, head_timeout_s=1.0, keepalive_timeout_s=2.0
    )
    try:
        plan = AbusePlan("127.0.0.1", node.settings.port, idle=300, slow=300, hold_s=5, procs=1)
        report = await asyncio.to_thread(run, plan)
        assert report.probes > 20 and report.probe_failures == []
        assert report.held.closed_by_node > 0  # the node made room and timed out slow heads
        lk = api.LiveKitAPI(api_url(node), API_KEY, API_SECRET)
        try:
            created = await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name="a", room="after-abuse")
            )
            assert created.room == "after-abuse"
        finally:
            await lk.aclose()
    finally:
        await node.aclose()
