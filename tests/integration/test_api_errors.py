"""Bad input gets the right Twirp code and a message that says what was wrong, and changes
nothing. Against the API node over real HTTP with a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from livekit import api

from dispatcher.api.app import ApiNode
from dispatcher.api.auth import create_token
from tests.redis_servers import RedisTarget
from tests.stack import API_KEY, API_SECRET, api_url, start_api

ROUTE = "/twirp/livekit.AgentDispatchService/"
PROTOBUF = {"Content-Type": "application/protobuf"}


@pytest.fixture
async def node(redis_single_target: RedisTarget) -> AsyncIterator[ApiNode]:
    node = await start_api(redis_single_target.url, max_metadata_bytes=1024)
    yield node
    await node.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _admin_token(room: str, secret: str = API_SECRET, **claims: object) -> str:
    return create_token(API_KEY, secret, {"video": {"roomAdmin": True, "room": room}, **claims})


def _auth(token: str) -> dict[str, str]:
    return {**PROTOBUF, "Authorization": f"Bearer {token}"}


async def _post(
    http: aiohttp.ClientSession, node: ApiNode, method: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, object]]:
    async with http.post(api_url(node) + ROUTE + method, data=body, headers=headers) as resp:
        assert resp.headers["Content-Type"] == "application/json"
        return resp.status, await resp.json()


def _create(room: str = "r", agent: str = "a", metadata: str = "") -> bytes:
    request = api.CreateAgentDispatchRequest(agent_name=agent, room=room, metadata=metadata)
    return bytes(request.SerializeToString())


async def test_unknown_route_is_bad_route(node: ApiNode, http: aiohttp.ClientSession) -> None:
    status, body = await _post(http, node, "Nope", b"", _auth(_admin_token("r")))
    assert (status, body["code"]) == (404, "bad_route")


async def test_malformed_body_is_malformed(node: ApiNode, http: aiohttp.ClientSession) -> None:
    status, body = await _post(
        http, node, "CreateDispatch", b"\xff\xff\xff", _auth(_admin_token("r"))
    )
    assert (status, body["code"]) == (400, "malformed")


async def test_missing_token_is_unauthenticated(node: ApiNode, http: aiohttp.ClientSession) -> None:
    status, body = await _post(http, node, "CreateDispatch", _create(), PROTOBUF)
    assert (status, body["code"]) == (401, "unauthenticated")
    assert "no access token" in str(body["msg"])


async def test_badly_signed_token_is_unauthenticated(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    token = _admin_token("r", secret="not-the-secret-not-the-secret-00")
    status, body = await _post(http, node, "CreateDispatch", _create(), _auth(token))
    assert (status, body["code"]) == (401, "unauthenticated")
    assert "signature" in str(body["msg"])


async def test_token_for_another_room_is_unauthenticated(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    status, body = await _post(
        http, node, "CreateDispatch", _create(room="r"), _auth(_admin_token("other"))
    )
    assert (status, body["code"]) == (401, "unauthenticated")
    assert "'other'" in str(body["msg"])


async def test_token_without_room_admin_is_unauthenticated(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    token = create_token(API_KEY, API_SECRET, {"video": {"roomJoin": True, "room": "r"}})
    status, body = await _post(http, node, "CreateDispatch", _create(), _auth(token))
    assert (status, body["code"]) == (401, "unauthenticated")
    assert "roomAdmin" in str(body["msg"])


@pytest.mark.parametrize(("room", "agent", "field"), [("r", "", "agent_name"), ("", "a", "room")])
async def test_empty_required_field_is_invalid_argument(
    node: ApiNode, http: aiohttp.ClientSession, room: str, agent: str, field: str
) -> None:
    body_bytes = _create(room=room, agent=agent)
    status, body = await _post(http, node, "CreateDispatch", body_bytes, _auth(_admin_token(room)))
    assert (status, body["code"]) == (400, "invalid_argument")
    assert field in str(body["msg"])


async def test_metadata_over_the_limit_is_invalid_argument_and_writes_nothing(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    status, body = await _post(
        http, node, "CreateDispatch", _create(metadata="x" * 1025), _auth(_admin_token("r"))
    )
    assert (status, body["code"]) == (400, "invalid_argument")
    assert "metadata size exceeds limits (1025 > 1024 bytes)" == body["msg"]
    listed = api.ListAgentDispatchRequest(room="r").SerializeToString()
    async with http.post(
        api_url(node) + ROUTE + "ListDispatch", data=listed, headers=_auth(_admin_token("r"))
    ) as resp:
        assert resp.status == 200
        assert api.ListAgentDispatchResponse.FromString(await resp.read()).agent_dispatches == []


async def test_delete_of_unknown_dispatch_is_not_found(node: ApiNode) -> None:
    lk = api.LiveKitAPI(api_url(node), API_KEY, API_SECRET)
    try:
        with pytest.raises(api.TwirpError) as raised:
            await lk.agent_dispatch.delete_dispatch("AD_missing", "r")
        assert (raised.value.code, raised.value.status) == ("not_found", 404)
    finally:
        await lk.aclose()


async def test_same_request_id_creates_one_dispatch(
    node: ApiNode, http: aiohttp.ClientSession
) -> None:
    headers = {**_auth(_admin_token("r")), "X-Livekit-Request-Id": "req-1"}
    ids = []
    for _ in range(2):
        url = api_url(node) + ROUTE + "CreateDispatch"
        async with http.post(url, data=_create(), headers=headers) as resp:
            assert resp.status == 200
            ids.append(api.AgentDispatch.FromString(await resp.read()).id)
    assert ids[0] == ids[1]
