"""Hostile requests at a real API node: each gets the right Twirp code and a message saying
what was wrong, no 5xx and no traceback in the log, and changes nothing."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from livekit import api
from livekit.protocol import room as room_pb
from livekit.protocol import sip as sip_pb

from dispatcher.api.app import ApiNode
from dispatcher.api.auth import create_token
from tests.redis_servers import RedisServer, RedisTarget
from tests.stack import API_KEY, API_SECRET, api_url, start_api

DISPATCH = "/twirp/livekit.AgentDispatchService/"
ROOMS = "/twirp/livekit.RoomService/"
SIP_CALL = "/twirp/dispatcher.SIPInbound/Call"
JSON = {"Content-Type": "application/json"}
PROTOBUF = {"Content-Type": "application/protobuf"}


@pytest.fixture
async def node(redis_single_target: RedisTarget) -> AsyncIterator[ApiNode]:
    node = await start_api(redis_single_target.url, max_dispatches_per_room=3, max_list_rooms=2)
    yield node
    await node.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.WARNING):
        yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


def admin(room: str = "r") -> dict[str, str]:
    grants = {"video": {"roomAdmin": True, "room": room, "roomCreate": True, "roomList": True}}
    token = create_token(API_KEY, API_SECRET, {**grants, "sip": {"call": True}})
    return {"Authorization": f"Bearer {token}"}


async def post(
    http: aiohttp.ClientSession, node: ApiNode, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, object]]:
    async with http.post(api_url(node) + path, data=body, headers=headers) as resp:
        raw = await resp.read()
        if resp.status == 200:
            return 200, {"raw": raw}
        assert resp.headers["Content-Type"] == "application/json"
        return resp.status, json.loads(raw)


async def listed(http: aiohttp.ClientSession, node: ApiNode, room: str = "r") -> list[str]:
    body = api.ListAgentDispatchRequest(room=room).SerializeToString()
    status, reply = await post(
        http, node, DISPATCH + "ListDispatch", body, {**PROTOBUF, **admin(room)}
    )
    assert status == 200
    response = api.ListAgentDispatchResponse.FromString(reply["raw"])  # type: ignore[arg-type]
    return [d.agent_name for d in response.agent_dispatches]


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (bytes.fromhex("0a0161120272702005"), PROTOBUF),  # agent "a", room "rp", policy 5
        (b'{"room":"rp","agentName":"a","restartPolicy":-1}', JSON),
        (b'{"room":"rp","agent_name":"a","restart_policy":999}', JSON),
    ],
)
async def test_an_unknown_restart_policy_is_invalid_argument(
    node: ApiNode, http: aiohttp.ClientSession, body: bytes, headers: dict[str, str]
) -> None:
    status, reply = await post(
        http, node, DISPATCH + "CreateDispatch", body, {**headers, **admin("rp")}
    )
    assert (status, reply["code"]) == (400, "invalid_argument")
    assert "restart_policy" in str(reply["msg"]) and "not a known policy" in str(reply["msg"])
    assert await listed(http, node, "rp") == []


async def test_a_room_agent_with_an_unknown_restart_policy_is_invalid_argument(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    request = room_pb.CreateRoomRequest(name="r", agents=[api.RoomAgentDispatch(agent_name="x")])
    request.agents[0].restart_policy = 7  # type: ignore[assignment]
    status, reply = await post(
        http, node, ROOMS + "CreateRoom", request.SerializeToString(), {**PROTOBUF, **admin()}
    )
    assert (status, reply["code"]) == (400, "invalid_argument")
    assert str(reply["msg"]).startswith("agents[0].restart_policy 7 is not a known policy")


async def test_a_lone_surrogate_echoed_in_an_error_is_valid_json(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    body = b'{"name":"x","maxParticipants":"\\ud800 "}'
    async with http.post(
        api_url(node) + ROOMS + "CreateRoom", data=body, headers={**JSON, **admin()}
    ) as resp:
        assert (resp.status, resp.headers["Content-Type"]) == (400, "application/json")
        reply = json.loads(await resp.read())
    assert reply["code"] == "malformed" and "\ud800" in reply["msg"]


@pytest.mark.parametrize("path", [DISPATCH + "CreateDispatch", ROOMS + "CreateRoom", SIP_CALL])
async def test_json_nested_too_deep_is_malformed(
    node: ApiNode, http: aiohttp.ClientSession, path: str
) -> None:
    body = b'{"room":"r","x":' + b"[" * 1000 + b"]" * 1000 + b"}"
    status, reply = await post(http, node, path, body, {**JSON, **admin()})
    assert (status, reply["code"]) == (400, "malformed")
    assert "nested more than 64 levels deep" in str(reply["msg"])


async def test_a_room_takes_at_most_its_dispatch_limit(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    for i in range(4):
        body = api.CreateAgentDispatchRequest(room="r", agent_name=f"a{i}").SerializeToString()
        status, reply = await post(
            http, node, DISPATCH + "CreateDispatch", body, {**PROTOBUF, **admin()}
        )
    assert (status, reply["code"]) == (429, "resource_exhausted")
    assert "already has 3 dispatches" in str(reply["msg"])
    assert await listed(http, node) == ["a0", "a1", "a2"]


async def test_a_listing_over_its_byte_limit_is_refused_before_it_is_read(
    node: ApiNode, http: aiohttp.ClientSession, redis_single_target: RedisTarget
) -> None:
    for i in range(2):
        body = api.CreateAgentDispatchRequest(
            room="r", agent_name=f"a{i}", metadata="m" * 3000
        ).SerializeToString()
        assert (await post(http, node, DISPATCH + "CreateDispatch", body, {**PROTOBUF, **admin()}))[
            0
        ] == 200
    small = await start_api(redis_single_target.url, max_list_bytes=5000)
    try:
        body = api.ListAgentDispatchRequest(room="r").SerializeToString()
        status, reply = await post(
            http, small, DISPATCH + "ListDispatch", body, {**PROTOBUF, **admin()}
        )
        assert (status, reply["code"]) == (429, "resource_exhausted")
        assert "more than a listing may return (5000)" in str(reply["msg"])
        third = api.CreateAgentDispatchRequest(room="r", agent_name="a2", metadata="m" * 3000)
        status, reply = await post(
            http,
            small,
            DISPATCH + "CreateDispatch",
            third.SerializeToString(),
            {**PROTOBUF, **admin()},
        )
        assert (status, reply["code"]) == (429, "resource_exhausted")
    finally:
        await small.aclose()
    assert await listed(http, node) == ["a0", "a1"]


async def test_list_rooms_over_its_count_limit_asks_for_names(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    for name in ("r1", "r2", "r3"):
        body = room_pb.CreateRoomRequest(name=name).SerializeToString()
        assert (await post(http, node, ROOMS + "CreateRoom", body, {**PROTOBUF, **admin()}))[
            0
        ] == 200
    every = room_pb.ListRoomsRequest().SerializeToString()
    status, reply = await post(http, node, ROOMS + "ListRooms", every, {**PROTOBUF, **admin()})
    assert (status, reply["code"]) == (429, "resource_exhausted")
    assert "more than 2 rooms" in str(reply["msg"])
    named = room_pb.ListRoomsRequest(names=["r1", "r3"]).SerializeToString()
    status, reply = await post(http, node, ROOMS + "ListRooms", named, {**PROTOBUF, **admin()})
    assert status == 200
    rooms = room_pb.ListRoomsResponse.FromString(reply["raw"]).rooms  # type: ignore[arg-type]
    assert [r.name for r in rooms] == ["r1", "r3"]


async def test_readiness_names_no_internal_address(http: aiohttp.ClientSession) -> None:
    with RedisServer() as redis_server:
        node = await start_api(redis_server.url)
        try:
            redis_server.kill()
            async with http.get(api_url(node) + "/readyz") as resp:
                text = await resp.text()
            assert (resp.status, text) == (503, "not ready: Redis is unavailable")
        finally:
            await node.aclose()


async def raw_exchange(port: int, data: bytes) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
        length = int(head.lower().split("content-length:")[1].split("\r\n")[0])
        body = await reader.readexactly(length)
        assert "content-type: application/json" in head.lower()
        return int(head.split()[1]), json.loads(body)
    finally:
        writer.close()


async def test_the_servers_own_refusals_of_twirp_calls_are_twirp_errors(
    redis_single_target: RedisTarget,
) -> None:
    node = await start_api(redis_single_target.url, body_timeout_s=0.3, max_head_bytes=2048)
    try:
        head = f"POST {DISPATCH}CreateDispatch HTTP/1.1\r\nHost: x\r\nX-Pad: {'p' * 3000}\r\n\r\n"
        status, reply = await raw_exchange(node.settings.port, head.encode())
        assert (status, reply["code"]) == (400, "malformed")
        assert reply["msg"] == "request head exceeds 2048 bytes"
        slow = f"POST {DISPATCH}CreateDispatch HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
        status, reply = await raw_exchange(node.settings.port, slow.encode() + b"12345")
        assert (status, reply["code"]) == (408, "deadline_exceeded")
        assert reply["msg"] == "request body not received within 0.3 s"
    finally:
        await node.aclose()


async def test_a_sip_rule_with_a_duration_out_of_range_is_invalid_argument(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    rule = sip_pb.SIPDispatchRuleInfo(
        rule=sip_pb.SIPDispatchRule(
            dispatch_rule_direct=sip_pb.SIPDispatchRuleDirect(room_name="r")
        )
    )
    rule.media.media_timeout.nanos = -(2**31)  # decodes, but has no JSON form
    body = sip_pb.CreateSIPDispatchRuleRequest(dispatch_rule=rule).SerializeToString()
    token = create_token(API_KEY, API_SECRET, {"sip": {"admin": True}})
    headers = {**PROTOBUF, "Authorization": f"Bearer {token}"}
    status, reply = await post(
        http, node, "/twirp/livekit.SIP/CreateSIPDispatchRule", body, headers
    )
    assert (status, reply["code"]) == (400, "invalid_argument")
    assert "media_timeout" in str(reply["msg"])


async def test_a_json_request_with_too_many_members_is_refused_before_conversion(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    attributes = {f"{i:x}": "" for i in range(25_000)}
    body = json.dumps({"room": "r", "agentName": "a", "attributes": attributes}).encode()
    status, reply = await post(http, node, DISPATCH + "CreateDispatch", body, {**JSON, **admin()})
    assert (status, reply["code"]) == (400, "invalid_argument")
    assert reply["msg"] == "the json request has 25003 members, more than 20000"
    assert await listed(http, node) == []


async def test_a_join_token_for_a_room_name_over_the_limit_creates_nothing(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    room = "r" * 257
    grants: dict[str, object] = {"video": {"roomJoin": True, "room": room}, "sub": "alice"}
    headers = {"Authorization": f"Bearer {create_token(API_KEY, API_SECRET, grants)}"}
    status, reply = await post(http, node, "/twirp/dispatcher.Participant/Join", b"", headers)
    assert (status, reply["code"]) == (400, "invalid_argument")
    assert reply["msg"] == "the token's room exceeds 256 bytes"
    every = room_pb.ListRoomsRequest().SerializeToString()
    status, listed_rooms = await post(
        http, node, ROOMS + "ListRooms", every, {**PROTOBUF, **admin()}
    )
    assert status == 200
    assert room_pb.ListRoomsResponse.FromString(listed_rooms["raw"]).rooms == []  # type: ignore[arg-type]
