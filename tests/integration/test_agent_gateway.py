"""``GET /agent`` at the protocol level (a raw WebSocket client, no SDK): the upgrade's
authentication, what a worker must send first, ping/pong, and the register reply."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from livekit import api
from livekit.protocol import agent

from dispatcher.api.app import ApiNode
from tests.redis_servers import RedisTarget
from tests.stack import API_KEY, API_SECRET, api_url, start_api


@pytest.fixture
async def node(redis_single_target: RedisTarget) -> AsyncIterator[ApiNode]:
    node = await start_api(redis_single_target.url)
    try:
        yield node
    finally:
        await node.aclose()


def _token(agent_grant: bool = True) -> str:
    grants = api.VideoGrants(agent=agent_grant, room_list=not agent_grant)
    return api.AccessToken(API_KEY, API_SECRET).with_grants(grants).to_jwt()


async def test_the_upgrade_needs_a_token_with_the_agent_grant(node: ApiNode) -> None:
    url = api_url(node) + "/agent"
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": f"Bearer {_token(agent_grant=False)}"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url, headers=headers)
            assert refused.value.status == 401
        async with http.get(url, headers={"Authorization": f"Bearer {_token()}"}) as plain:
            assert plain.status in (400, 426)  # a GET that is no upgrade: said, not a 404


async def test_register_is_answered_first_and_pings_are_ponged(node: ApiNode) -> None:
    headers = {"Authorization": f"Bearer {_token()}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(api_url(node) + "/agent", headers=headers) as ws,
    ):
        ping = agent.WorkerMessage(ping=agent.WorkerPing(timestamp=1795500300000))
        await ws.send_bytes(ping.SerializeToString())  # taken before registration too
        pong = agent.ServerMessage.FromString(await ws.receive_bytes())
        assert pong.pong.last_timestamp == 1795500300000 and pong.pong.timestamp > 0
        register = agent.WorkerMessage(
            register=agent.RegisterWorkerRequest(agent_name="raw", version="0.0.1")
        )
        await ws.send_bytes(register.SerializeToString())
        reply = agent.ServerMessage.FromString(await ws.receive_bytes())
        assert reply.WhichOneof("message") == "register"
        assert reply.register.worker_id.startswith("AW_")
        assert reply.register.server_info.protocol == 16


async def test_anything_but_register_first_closes_the_socket_saying_why(node: ApiNode) -> None:
    headers = {"Authorization": f"Bearer {_token()}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(api_url(node) + "/agent", headers=headers) as ws,
    ):
        status = agent.WorkerMessage(update_worker=agent.UpdateWorkerStatus(load=0.1))
        await ws.send_bytes(status.SerializeToString())
        closing = await ws.receive()
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1002 and "expected register first" in str(closing.extra)
