"""Agent-server control for a LiveKit worker attached through ``/agent`` (a raw WebSocket
client speaking the worker protocol): it is listed with the version it registered, a
dispatch targeted at that version is offered to it, and once drained it is offered
nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from livekit import api
from livekit.protocol import agent

from dispatcher.api.app import ApiNode
from dispatcher.api.auth import create_token
from dispatcher.scheduler.node import SchedulerNode
from tests.redis_servers import RedisTarget
from tests.stack import API_KEY, API_SECRET, api_url, eventually, start_api, start_scheduler

SERVERS = "/twirp/dispatcher.AgentServers/"
CREATE = "/twirp/livekit.AgentDispatchService/CreateDispatch"


@pytest.fixture
async def stack(redis_single_target: RedisTarget) -> AsyncIterator[tuple[ApiNode, SchedulerNode]]:
    scheduler = await start_scheduler(redis_single_target.url, "s0", block_ms=50)
    node = await start_api(redis_single_target.url)
    try:
        yield node, scheduler
    finally:
        await node.aclose()
        await scheduler.aclose()


async def _post(http: aiohttp.ClientSession, url: str, body: Any, claims: Any) -> Any:
    headers = {"Authorization": f"Bearer {create_token(API_KEY, API_SECRET, claims)}"}
    async with http.post(url, json=body, headers=headers) as response:
        reply = await response.json(content_type=None)
        assert response.status == 200, reply
        return reply


async def _offered(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> agent.Job | None:
    """The next job offered to the worker within the timeout, if any."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while True:
                message = agent.ServerMessage.FromString(await ws.receive_bytes())
                if message.WhichOneof("message") == "availability":
                    return message.availability.job
    return None


async def test_a_gateway_worker_is_listed_targeted_by_version_and_drained(
    stack: tuple[ApiNode, SchedulerNode],
) -> None:
    node, scheduler = stack
    base, operator = api_url(node), {"video": {"roomAdmin": True, "roomList": True}}
    worker_token = api.AccessToken(API_KEY, API_SECRET).with_grants(api.VideoGrants(agent=True))
    headers = {"Authorization": f"Bearer {worker_token.to_jwt()}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(base + "/agent", headers=headers) as ws,
    ):
        register = agent.RegisterWorkerRequest(agent_name="gw", version="0.0.1")
        await ws.send_bytes(agent.WorkerMessage(register=register).SerializeToString())
        worker_id = agent.ServerMessage.FromString(await ws.receive_bytes()).register.worker_id
        status = agent.UpdateWorkerStatus(status=agent.WorkerStatus.WS_AVAILABLE, load=0.0)
        await ws.send_bytes(agent.WorkerMessage(update_worker=status).SerializeToString())

        async def listed() -> list[dict[str, Any]]:
            reply = await _post(http, base + SERVERS + "ListServers", {}, operator)
            return list(reply["servers"])

        await eventually(lambda: _has(listed(), worker_id), what="the worker listed")
        [entry] = await listed()
        assert (entry["agentName"], entry["version"], entry["labels"]) == ("gw", "0.0.1", {})
        seen = scheduler.registry.version + 2
        await eventually(lambda: scheduler.registry.version >= seen, what="the scheduler")

        target = {"version": "0.0.1"}
        before = {"agentName": "gw", "room": "gw-before", "target": target}
        await _post(
            http, base + CREATE, before, {"video": {"roomAdmin": True, "room": "gw-before"}}
        )
        job = await _offered(ws, 10.0)
        assert job is not None and job.room.name == "gw-before"

        drained = await _post(http, base + SERVERS + "DrainServer", {"id": worker_id}, operator)
        assert (drained["server"]["id"], drained["server"]["status"]) == (worker_id, "draining")
        after = {"agentName": "gw", "room": "gw-after", "target": target}
        await _post(http, base + CREATE, after, {"video": {"roomAdmin": True, "room": "gw-after"}})
        assert await _offered(ws, 2.0) is None
        [entry] = await listed()
        assert (entry["status"], entry["drained"]) == ("draining", True)


async def _has(servers: Any, worker_id: str) -> bool:
    return any(s["id"] == worker_id for s in await servers)
