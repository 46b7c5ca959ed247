"""Writes acknowledged only once a replica has them (DISPATCHER_REPLICA_ACKS), on a Redis
Cluster whose primaries have a replica each."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from livekit import api

from dispatcher.api.app import ApiNode
from dispatcher.api.auth import create_token
from dispatcher.partitions import partition_of
from dispatcher.store import keys
from tests.redis_servers import RedisCluster, RedisServer
from tests.stack import API_KEY, API_SECRET, api_url, start_api

ROOM = "replicated-room"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(replicas=1) as started:
        yield started


@pytest.fixture
async def node(cluster: RedisCluster) -> AsyncIterator[ApiNode]:
    cluster.flushall()
    started = await start_api(cluster.url, replica_acks=1, replica_ack_timeout_ms=300)
    yield started
    await started.aclose()


def replica_of_room(cluster: RedisCluster) -> RedisServer:
    events = keys.partition_keys(partition_of(ROOM, 64)).events
    return cluster.replica_of(cluster.primary_of(events))


async def test_a_dispatch_is_acknowledged_once_a_replica_has_it(
    cluster: RedisCluster, node: ApiNode
) -> None:
    async with api.LiveKitAPI(api_url(node), API_KEY, API_SECRET) as lk:
        request = api.CreateAgentDispatchRequest(agent_name="a", room=ROOM)
        created = await lk.agent_dispatch.create_dispatch(request)
    rooms = keys.partition_keys(partition_of(ROOM, 64)).room(ROOM)
    with replica_of_room(cluster).client() as replica:
        replica.execute_command("READONLY")
        assert replica.hget(rooms, created.id) is not None  # on the replica at the 200


async def test_a_write_no_replica_took_is_unavailable_and_its_retry_creates_one(
    cluster: RedisCluster, node: ApiNode
) -> None:
    replica = replica_of_room(cluster)
    token = create_token(API_KEY, API_SECRET, {"video": {"roomAdmin": True, "room": ROOM}})
    headers = {"Authorization": f"Bearer {token}", "X-Livekit-Request-Id": "replicated-1"}
    body = {"agentName": "a", "room": ROOM}
    url = api_url(node) + "/twirp/livekit.AgentDispatchService/CreateDispatch"
    async with aiohttp.ClientSession() as http:
        replica._state.send(signal.SIGSTOP)
        try:
            async with http.post(url, json=body, headers=headers) as resp:
                refused = (resp.status, await resp.json())
        finally:
            replica._state.send(signal.SIGCONT)
        async with http.post(url, json=body, headers=headers) as resp:
            assert resp.status == 200
            dispatch_id = (await resp.json())["id"]
    assert refused[0] == 503 and refused[1]["code"] == "unavailable"
    assert "reached 0 of 1 replica(s)" in refused[1]["msg"]
    async with api.LiveKitAPI(api_url(node), API_KEY, API_SECRET) as lk:
        listed = await lk.agent_dispatch.list_dispatch(room_name=ROOM)
    assert [d.id for d in listed] == [dispatch_id]  # the retry found the first try's write
