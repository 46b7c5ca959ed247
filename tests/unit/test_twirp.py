"""Tests for the Twirp server layer (wire contract §3, §4.3)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from google.protobuf.message import Message
from livekit import api
from livekit.protocol.agent_dispatch import (
    AgentDispatch,
    CreateAgentDispatchRequest,
    DeleteAgentDispatchRequest,
    JobRestartPolicy,
    ListAgentDispatchRequest,
)
from livekit.protocol.models import Room
from livekit.protocol.room import ListRoomsRequest, ListRoomsResponse

from dispatcher.api.http import HttpApp, Request, Response
from dispatcher.api.twirp import (
    TWIRP_ROUTER,
    TwirpError,
    TwirpRouter,
    TwirpService,
    error_response,
    message_response,
    twirp_error,
)
from dispatcher.errors import (
    Aborted,
    AuthError,
    ConfigError,
    DispatcherError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RequestError,
    ResourceExhausted,
)
from tests.served import Served, served

Client = Served

DISPATCH = "/twirp/livekit.AgentDispatchService"
CREATE = f"{DISPATCH}/CreateDispatch"
DELETE = f"{DISPATCH}/DeleteDispatch"
LIST = f"{DISPATCH}/ListDispatch"
PB = "application/protobuf"
JSON = "application/json"

# §4.3: the byte-exact CreateDispatch request livekit-api 1.2.2 sends.
CREATE_BYTES = bytes.fromhex(
    "0a0a746573742d6167656e7412076d792d726f6f6d1a107b2275736572223a22616c696365227d"
)
CREATED_AT_NS = 1795500230000000000
API_KEY = "devkey"
API_SECRET = "secretsecretsecretsecretsecret12"

RECEIVED = "received"


def messages_of(client: Client) -> list[Message]:
    messages: list[Message] = client.app.state[RECEIVED]
    return messages


def create_dispatch_into(
    messages: list[Message],
) -> Callable[[CreateAgentDispatchRequest, Request], Awaitable[AgentDispatch]]:
    async def create_dispatch(req: CreateAgentDispatchRequest, _: Request) -> AgentDispatch:
        messages.append(req)
        return dispatch_reply(req)

    return create_dispatch


def dispatch_reply(req: CreateAgentDispatchRequest) -> AgentDispatch:
    reply = AgentDispatch(
        id="AD_abc123XYZ", agent_name=req.agent_name, room=req.room, metadata=req.metadata
    )
    reply.state.created_at = CREATED_AT_NS
    return reply


async def delete_dispatch(req: DeleteAgentDispatchRequest, request: Request) -> AgentDispatch:
    raise TwirpError("not_found", "dispatch ID not found", {"room": req.room})


async def list_dispatch(req: ListAgentDispatchRequest, request: Request) -> AgentDispatch:
    raise ValueError("secret internals")


async def list_rooms(req: ListRoomsRequest, request: Request) -> ListRoomsResponse:
    return ListRoomsResponse(rooms=[Room(name=name) for name in req.names])


async def healthz(request: Request) -> Response:
    return Response.text("ok")


def make_app(router: TwirpRouter | None = None) -> HttpApp:
    app = HttpApp()
    messages: list[Message] = []
    app.state[RECEIVED] = messages
    app.route("/healthz", healthz)
    if router is not None:
        router.install(app)
    dispatch = TwirpService("livekit.AgentDispatchService")
    dispatch.add("CreateDispatch", CreateAgentDispatchRequest, create_dispatch_into(messages))
    dispatch.add("DeleteDispatch", DeleteAgentDispatchRequest, delete_dispatch)
    dispatch.add("ListDispatch", ListAgentDispatchRequest, list_dispatch)
    dispatch.install(app)
    rooms = TwirpService("livekit.RoomService")
    rooms.add("ListRooms", ListRoomsRequest, list_rooms)
    rooms.install(app)
    return app


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with served(make_app()) as test_client:
        yield test_client


async def post(
    client: Client, path: str, body: bytes, content_type: str = PB
) -> tuple[int, str, bytes]:
    async with client.post(path, data=body, headers={"Content-Type": content_type}) as resp:
        return resp.status, resp.headers["Content-Type"], await resp.read()


async def post_error(
    client: Client, path: str, body: bytes, content_type: str = PB
) -> tuple[int, dict[str, Any]]:
    status, ctype, raw = await post(client, path, body, content_type)
    assert ctype == JSON
    decoded: dict[str, Any] = json.loads(raw)
    return status, decoded


# -- encodings -------------------------------------------------------------------------


async def test_protobuf_round_trip(client: Client) -> None:
    status, ctype, body = await post(client, CREATE, CREATE_BYTES)

    assert (status, ctype) == (200, PB)
    [received] = messages_of(client)
    assert received == CreateAgentDispatchRequest(
        agent_name="test-agent", room="my-room", metadata='{"user":"alice"}'
    )
    reply = AgentDispatch.FromString(body)
    assert (reply.id, reply.agent_name, reply.room) == ("AD_abc123XYZ", "test-agent", "my-room")
    assert reply.state.created_at == CREATED_AT_NS


async def test_empty_protobuf_body_is_default_message(client: Client) -> None:
    status, _, _ = await post(client, CREATE, b"")

    assert status == 200
    assert messages_of(client) == [CreateAgentDispatchRequest()]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            b'{"agentName":"test-agent","room":"my-room","metadata":"{\\"user\\":\\"alice\\"}",'
            b'"restartPolicy":"JRP_NEVER","unknownField":1}',
            "application/json;charset=UTF-8",
        ),
        (
            b'{"agent_name":"test-agent","room":"my-room","metadata":"{\\"user\\":\\"alice\\"}",'
            b'"restart_policy":1}',
            " Application/JSON ",
        ),
    ],
    ids=["camelCase", "snake_case"],
)
async def test_json_request_decodes(client: Client, body: bytes, content_type: str) -> None:
    status, ctype, _ = await post(client, CREATE, body, content_type)

    assert (status, ctype) == (200, JSON)
    assert messages_of(client) == [
        CreateAgentDispatchRequest(
            agent_name="test-agent",
            room="my-room",
            metadata='{"user":"alice"}',
            restart_policy=JobRestartPolicy.JRP_NEVER,
        )
    ]


async def test_json_response_is_snake_case_with_unpopulated_fields(client: Client) -> None:
    request = b'{"agentName":"test-agent","room":"my-room","metadata":"{\\"user\\":\\"alice\\"}"}'
    status, ctype, body = await post(client, CREATE, request, JSON)

    assert (status, ctype) == (200, JSON)
    assert b" " not in body  # compact, like Go's protojson
    # The reference-style response from the wire contract §4.3 (key order may differ).
    assert json.loads(body) == json.loads(
        b'{"id":"AD_abc123XYZ","agent_name":"test-agent","room":"my-room",'
        b'"metadata":"{\\"user\\":\\"alice\\"}",'
        b'"state":{"jobs":[],"created_at":"1795500230000000000","deleted_at":"0"},'
        b'"restart_policy":"JRP_ON_FAILURE","deployment":"","attributes":{}}'
    )


def test_message_response_protobuf_header() -> None:
    resp = message_response(AgentDispatch(id="AD_x"), is_json=False)

    assert resp.status == 200
    assert resp.content_type == PB
    assert resp.body == AgentDispatch(id="AD_x").SerializeToString()


# -- routing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"{DISPATCH}/NoSuchMethod",
        "/twirp/livekit.NoSuchService/CreateDispatch",
        "/twirp/livekit.AgentDispatchService",
        "/twirp/",
        f"{CREATE}/extra",
    ],
)
async def test_unknown_route_is_bad_route(client: Client, path: str) -> None:
    status, err = await post_error(client, path, CREATE_BYTES)

    assert status == 404
    assert err["code"] == "bad_route"
    assert err["meta"] == {"twirp_invalid_route": f"POST {path}"}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_non_post_is_bad_route(client: Client, method: str) -> None:
    async with client.request(method, CREATE, headers={"Content-Type": PB}) as resp:
        assert (resp.status, resp.headers["Content-Type"]) == (404, JSON)
        err = await resp.json()

    assert err["code"] == "bad_route"
    assert err["meta"] == {"twirp_invalid_route": f"{method} {CREATE}"}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-protobuf", ""])
async def test_unexpected_content_type_is_bad_route(client: Client, content_type: str) -> None:
    status, err = await post_error(client, CREATE, CREATE_BYTES, content_type)

    assert status == 404
    assert err["code"] == "bad_route"
    assert err["msg"].startswith("unexpected Content-Type")
    assert messages_of(client) == []


async def test_other_routes_and_services_share_the_app(client: Client) -> None:
    async with client.get("/healthz") as resp:
        assert (resp.status, await resp.text()) == (200, "ok")

    body = ListRoomsRequest(names=["a", "b"]).SerializeToString()
    status, _, raw = await post(client, "/twirp/livekit.RoomService/ListRooms", body)

    assert status == 200
    assert [room.name for room in ListRoomsResponse.FromString(raw).rooms] == ["a", "b"]


def test_services_share_one_router() -> None:
    app = make_app()
    router = app.state[TWIRP_ROUTER]
    late = TwirpService("livekit.SIP")

    assert late.install(app) is router
    with pytest.raises(ValueError, match="already registered"):
        TwirpService("livekit.SIP").install(app)
    with pytest.raises(RuntimeError):
        TwirpRouter().install(app)


# -- malformed requests ----------------------------------------------------------------


async def test_malformed_protobuf(client: Client) -> None:
    status, err = await post_error(client, CREATE, b"\x0a\x05ab")

    assert (status, err["code"]) == (400, "malformed")
    assert "protobuf request could not be decoded" in err["msg"]
    assert "corrupt" in err["msg"]  # the parser's own message


@pytest.mark.parametrize(
    "body",
    [b'{"agent_name":', b'{"agentName":5}', b"[]", b'"agent_name"', b"null", b"\xff"],
    ids=["truncated", "wrong-type", "array", "string", "null", "not-utf8"],
)
async def test_malformed_json(client: Client, body: bytes) -> None:
    status, err = await post_error(client, CREATE, body, JSON)

    assert (status, err["code"]) == (400, "malformed")
    assert err["msg"].startswith("the json request could not be decoded: ")
    assert messages_of(client) == []


@pytest.mark.parametrize("body", [b"", b" \n"])
async def test_empty_json_body_is_malformed(client: Client, body: bytes) -> None:
    status, err = await post_error(client, CREATE, body, JSON)

    assert (status, err["code"]) == (400, "malformed")


@pytest.mark.parametrize("size", [16, 17, 200_000])
async def test_body_size_limit(size: int) -> None:
    async with served(make_app(TwirpRouter(max_body_size=16))) as limited:
        status, ctype, raw = await post(limited, CREATE, b"\x00" * size)

    if size <= 16:
        assert status == 400  # within the limit, but not a valid message
        assert json.loads(raw)["code"] == "malformed"
    else:
        assert (status, ctype) == (400, JSON)
        assert json.loads(raw) == {
            "code": "invalid_argument",
            "msg": "request body exceeds 16 bytes",
        }


async def test_default_limit_allows_large_bodies(client: Client) -> None:
    # Just under the 1 MiB default: room for any request within the field limits.
    metadata = "x" * (1024 * 1024 - 64)
    body = CreateAgentDispatchRequest(agent_name="a", metadata=metadata).SerializeToString()
    # BytesIO: aiohttp warns (ResourceWarning) about sending large raw bytes.
    async with client.post(CREATE, data=io.BytesIO(body), headers={"Content-Type": PB}) as resp:
        assert resp.status == 200
        assert AgentDispatch.FromString(await resp.read()).metadata == metadata


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [PB, JSON])
async def test_handler_twirp_error(client: Client, content_type: str) -> None:
    body = b"" if content_type == PB else b'{"room":"r1"}'
    async with client.post(DELETE, data=body, headers={"Content-Type": content_type}) as resp:
        assert resp.status == 404
        assert resp.headers.getall("Content-Type") == [JSON]  # exactly, no charset
        raw = await resp.read()

    room = "" if content_type == PB else "r1"
    assert json.loads(raw) == {
        "code": "not_found",
        "msg": "dispatch ID not found",
        "meta": {"room": room},
    }


async def test_handler_exception_is_internal(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="dispatcher.api.twirp"):
        status, err = await post_error(client, LIST, b"")

    assert status == 500
    assert err == {"code": "internal", "msg": "internal error"}
    [record] = caplog.records
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)


class RoomGone(NotFound):
    """The room is gone."""


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (InvalidArgument("room is required"), "invalid_argument", 400),
        (RoomGone(), "not_found", 404),
        (FailedPrecondition("two rules conflict"), "failed_precondition", 412),
        (PermissionDenied("a PIN is required"), "permission_denied", 403),
        (ResourceExhausted("room is full"), "resource_exhausted", 429),
        (Aborted(), "aborted", 409),
        (AuthError("token expired"), "unauthenticated", 401),
    ],
)
async def test_a_domain_error_is_answered_with_its_code_and_message(
    error: DispatcherError, code: str, status: int
) -> None:
    async def refuse(req: ListRoomsRequest, request: Request) -> ListRoomsResponse:
        raise error

    app = HttpApp()
    service = TwirpService("livekit.RoomService")
    service.add("ListRooms", ListRoomsRequest, refuse)
    service.install(app)
    async with served(app) as test_client:
        answer = await post_error(test_client, "/twirp/livekit.RoomService/ListRooms", b"")
    assert answer == (status, {"code": code, "msg": str(error)})


def test_every_kind_of_request_error_has_a_twirp_code() -> None:
    for kind in RequestError.__subclasses__():
        answer = twirp_error(kind())
        assert answer is not None, kind
        assert answer.msg == kind.__doc__


def test_a_domain_error_without_a_code_of_its_own_has_no_answer() -> None:
    assert twirp_error(ConfigError("bad setting")) is None


def test_error_response_without_meta() -> None:
    resp = error_response(TwirpError.invalid_argument("agent_name is required"))

    assert resp.status == 400
    assert resp.content_type == JSON
    assert resp.body == b'{"code":"invalid_argument","msg":"agent_name is required"}'


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("invalid_argument", 400),
        ("malformed", 400),
        ("out_of_range", 400),
        ("unauthenticated", 401),
        ("permission_denied", 403),
        ("not_found", 404),
        ("bad_route", 404),
        ("canceled", 408),
        ("deadline_exceeded", 408),
        ("already_exists", 409),
        ("aborted", 409),
        ("failed_precondition", 412),
        ("resource_exhausted", 429),
        ("internal", 500),
        ("unknown", 500),
        ("dataloss", 500),
        ("unimplemented", 501),
        ("unavailable", 503),
    ],
)
def test_error_status(code: str, status: int) -> None:
    err = TwirpError(code, "m")

    assert (err.code, err.msg, err.meta, err.status) == (code, "m", {}, status)


def test_unknown_error_code_rejected() -> None:
    with pytest.raises(ValueError, match="unknown Twirp error code"):
        TwirpError("nope", "m")


# -- the real livekit-api client -------------------------------------------------------


async def test_livekit_api_client(client: Client) -> None:
    lk = api.LiveKitAPI(client.url, API_KEY, API_SECRET)
    try:
        created = await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="a", room="r")
        )
        with pytest.raises(api.TwirpError) as caught:
            await lk.agent_dispatch.delete_dispatch("AD_missing", "r")
    finally:
        await lk.aclose()

    assert isinstance(created, AgentDispatch)
    assert (created.id, created.agent_name, created.room) == ("AD_abc123XYZ", "a", "r")
    assert created.state.created_at == CREATED_AT_NS
    err = caught.value
    assert (err.code, err.message, err.status) == ("not_found", "dispatch ID not found", 404)
    assert err.metadata == {"room": "r"}
