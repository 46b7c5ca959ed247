"""In-process building blocks for integration tests: API node, schedulers, agent servers,
all against a real Redis, with short timers so tests settle quickly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from dispatcher import settings as config
from dispatcher.api.app import ApiNode
from dispatcher.localredis import free_port
from dispatcher.scheduler.node import SchedulerNode
from workers import AgentServer, JobContext, JobRequest, JobType

API_KEY, API_SECRET = config.DEV_API_KEY, config.DEV_API_SECRET


def scheduler_settings(url: str, node_id: str, **overrides: object) -> config.SchedulerSettings:
    fast = {
        "redis_url": url,
        "node_id": node_id,
        "heartbeat_interval_s": 0.2,
        "membership_ttl_ms": 1500,
        "lease_ttl_ms": 1500,
        "snapshot_interval_s": 0.1,
        "block_ms": 50,
        "idle_block_ms": 200,
        **overrides,
    }
    return config.load(config.SchedulerSettings, fast, environ={})


async def start_scheduler(url: str, node_id: str, **overrides: object) -> SchedulerNode:
    node = await SchedulerNode.create(scheduler_settings(url, node_id, **overrides))
    await node.start()
    return node


async def start_api(url: str, **overrides: object) -> ApiNode:
    values = {
        "redis_url": url,
        "host": "127.0.0.1",
        "port": free_port(),
        "api_keys": f"{API_KEY}:{API_SECRET}",
        **overrides,
    }
    node = await ApiNode.create(config.load(config.ApiSettings, values, environ={}))
    await node.start()
    return node


def api_url(node: ApiNode) -> str:
    return f"http://127.0.0.1:{node.settings.port}"


async def start_agent(
    url: str,
    agent_name: str,
    entry: Callable[[JobContext], Awaitable[None]],
    capacity: int = 5,
    on_request: Callable[[JobRequest], Awaitable[None]] | None = None,
    job_type: JobType = JobType.ROOM,
) -> AgentServer:
    server = AgentServer(
        redis_url=url, capacity=capacity, heartbeat_interval_s=0.2, heartbeat_ttl_ms=1000
    )
    server.rtc_session(agent_name=agent_name, on_request=on_request, job_type=job_type)(entry)
    await server.start()
    return server


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], timeout_s: float = 15.0, what: str = "condition"
) -> None:
    """Poll ``check`` until true; fail with ``what`` after the timeout (no timing asserted)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
