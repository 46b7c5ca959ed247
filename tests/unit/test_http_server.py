"""The API node's HTTP/1.1 server over real loopback sockets, driven byte by byte."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from dispatcher.api.http import Headers, HttpApp, Request, Response
from dispatcher.api.httpserver import HttpServer, ServerLimits
from dispatcher.api.httpwire import extra_headers

ECHO = "/echo"


async def echo(request: Request) -> Response:
    """The body back, with what the handler saw in headers."""
    await asyncio.sleep(float(request.query.get("sleep", "0")))
    if request.body_too_large:
        return Response.text("too large", 413)
    seen = f"{request.method} {request.path} {request.headers.get('x-tag', '-')}|"
    return Response(200, seen.encode() + request.body, "text/plain")


async def fail(request: Request) -> Response:
    raise RuntimeError("boom")


async def healthz(request: Request) -> Response:
    return Response.text("ok")


def make_app() -> HttpApp:
    app = HttpApp(max_body_size=64)
    app.prefix(ECHO, echo)
    app.prefix("/fail", fail)
    app.route("/healthz", healthz)
    return app


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    served = HttpServer(make_app())
    await served.start("127.0.0.1", 0)
    try:
        yield served
    finally:
        await served.aclose(grace_s=1)


async def connect(server: HttpServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


def post(path: str, body: bytes = b"", *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    status_line, *lines = head.strip().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


async def closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether the server closed the connection (ours is closed either way)."""
    try:
        return await asyncio.wait_for(reader.read(), 2) == b""
    finally:
        writer.close()


async def test_keep_alive_serves_several_requests_on_one_connection(server: HttpServer) -> None:
    reader, writer = await connect(server)
    for tag in ("a", "b"):
        writer.write(post(ECHO, tag.encode(), f"X-Tag: {tag}"))
        status, headers, body = await read_response(reader)
        assert (status, body) == (200, f"POST {ECHO} {tag}|{tag}".encode())
        assert "date" in headers and "connection" not in headers
    writer.close()


async def test_pipelined_requests_are_answered_in_order(server: HttpServer) -> None:
    reader, writer = await connect(server)
    # the first is the slowest: its answer must still come first
    writer.write(post(f"{ECHO}?sleep=0.05", b"1") + post(ECHO, b"2") + post(ECHO, b"3"))
    bodies = [(await read_response(reader))[2][-1:] for _ in range(3)]
    assert bodies == [b"1", b"2", b"3"]
    writer.close()


async def test_a_request_split_across_writes_is_read_whole(server: HttpServer) -> None:
    reader, writer = await connect(server)
    raw = post(ECHO, b"0123456789", "X-Tag: split")
    for i in range(0, len(raw), 7):
        writer.write(raw[i : i + 7])
        await writer.drain()
        await asyncio.sleep(0.001)
    status, _, body = await read_response(reader)
    assert (status, body) == (200, f"POST {ECHO} split|0123456789".encode())
    writer.close()


async def test_chunked_body_is_reassembled(server: HttpServer) -> None:
    reader, writer = await connect(server)
    head = f"POST {ECHO} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    writer.write(head.encode() + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert (await read_response(reader))[2].endswith(b"|abcde")
    writer.close()


async def test_expect_100_continue_gets_an_interim_response(server: HttpServer) -> None:
    reader, writer = await connect(server)
    head = f"POST {ECHO} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    writer.write(head.encode())
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"ok")
    assert (await read_response(reader))[2].endswith(b"|ok")
    writer.close()


async def test_body_over_the_limit_reaches_the_handler_flagged_then_closes(
    server: HttpServer,
) -> None:
    reader, writer = await connect(server)
    writer.write(post(ECHO, b"x" * 65))
    status, headers, body = await read_response(reader)
    assert (status, body, headers["connection"]) == (413, b"too large", "close")
    assert await closed(reader, writer)


async def test_malformed_request_gets_400_and_the_connection_closes(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    status, headers, body = await read_response(reader)
    assert (status, headers["connection"]) == (400, "close")
    assert body.startswith(b"malformed HTTP request")
    assert await closed(reader, writer)


async def test_oversized_head_is_refused(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(post(ECHO, b"", "X-Big: " + "y" * 70_000))
    status, _, body = await read_response(reader)
    assert status == 431 and b"exceeds" in body
    assert await closed(reader, writer)


async def test_connection_close_is_honoured(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(post(ECHO, b"bye", "Connection: close"))
    status, headers, _ = await read_response(reader)
    assert (status, headers["connection"]) == (200, "close")
    assert await closed(reader, writer)


async def test_http_1_0_closes_after_the_response(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert (await read_response(reader))[::2] == (200, b"ok")
    assert await closed(reader, writer)


@pytest.mark.parametrize(
    ("request_line", "status"),
    [("GET /healthz", 200), ("HEAD /healthz", 200), ("POST /healthz", 405), ("GET /nope", 404)],
)
async def test_exact_routes(server: HttpServer, request_line: str, status: int) -> None:
    reader, writer = await connect(server)
    writer.write(f"{request_line} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    assert head.startswith(f"HTTP/1.1 {status} ")
    if request_line.startswith("HEAD"):  # the length of the body, but no body
        assert "Content-Length: 2\r\n" in head
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(reader))[::2] == (200, b"ok")
    writer.close()


async def test_handler_exception_is_500_and_the_connection_stays_usable(
    server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await connect(server)
    with caplog.at_level(logging.ERROR, logger="dispatcher.api.httpserver"):
        writer.write(post("/fail"))
        status, _, body = await read_response(reader)
    assert (status, body) == (500, b"internal server error")
    assert "boom" in caplog.text
    writer.write(post(ECHO, b"again"))
    assert (await read_response(reader))[2].endswith(b"|again")
    writer.close()


async def test_aclose_lets_the_request_in_progress_finish() -> None:
    served = HttpServer(make_app())
    await served.start("127.0.0.1", 0)
    busy_reader, busy = await connect(served)
    idle_reader, idle = await connect(served)
    busy.write(post(f"{ECHO}?sleep=0.2", b"late"))
    await asyncio.sleep(0.05)

    await served.aclose(grace_s=5)

    assert (await read_response(busy_reader))[2].endswith(b"|late")
    assert await closed(busy_reader, busy) and await closed(idle_reader, idle)


def test_request_headers_and_query() -> None:
    request = Request(
        "POST", "/twirp/x?room=a%20b&room=c&flag", Headers({"authorization": "Bearer t"})
    )
    assert request.path == "/twirp/x"
    assert request.headers.get("Authorization") == "Bearer t"
    assert request.headers.get("X-Missing", "") == ""
    assert "AUTHORIZATION" in request.headers
    assert dict(request.query) == {"room": "a b", "flag": ""}


# --- hostile clients --------------------------------------------------------------------


@asynccontextmanager
async def limited(**limits: Any) -> AsyncIterator[HttpServer]:
    served = HttpServer(make_app(), ServerLimits(**limits))
    await served.start("127.0.0.1", 0)
    try:
        yield served
    finally:
        await served.aclose(grace_s=1)


async def test_a_client_that_shuts_down_its_side_still_gets_its_reply(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(post(f"{ECHO}?sleep=0.05", b"half"))
    writer.write_eof()
    assert (await read_response(reader))[2].endswith(b"|half")
    assert await closed(reader, writer)


async def test_garbage_after_a_valid_request_does_not_lose_its_reply(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(post(f"{ECHO}?sleep=0.05", b"first") + b"GARBAGE\r\n\r\n")
    assert (await read_response(reader))[2].endswith(b"|first")
    status, headers, body = await read_response(reader)
    assert (status, headers["connection"]) == (400, "close")
    assert body.startswith(b"malformed HTTP request")
    assert await closed(reader, writer)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n",
            200,
        ),
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 404),
    ],
)
async def test_upgrades_and_connect_are_answered_then_closed(
    server: HttpServer, raw: bytes, status: int
) -> None:
    reader, writer = await connect(server)
    writer.write(raw + b"\x16\x03\x01 not http")
    got, headers, _ = await read_response(reader)
    assert (got, headers["connection"]) == (status, "close")
    assert await closed(reader, writer)


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(
    server: HttpServer,
) -> None:
    reader, writer = await connect(server)
    head = f"POST {ECHO} HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n"
    writer.write(head.encode() + b"Expect: 100-continue\r\n\r\n")
    status, headers, body = await asyncio.wait_for(read_response(reader), 2)
    assert (status, body, headers["connection"]) == (413, b"too large", "close")
    assert await closed(reader, writer)


def head_of_size(size: int, line: str = "X-Pad: ") -> bytes:
    """A GET head of exactly ``size`` bytes, its padding in one header."""
    start = f"GET /healthz HTTP/1.1\r\nHost: x\r\n{line}"
    return (start + "p" * (size - len(start) - 4) + "\r\n\r\n").encode()


@pytest.mark.parametrize("split", [False, True])
async def test_the_head_limit_counts_every_byte(split: bool) -> None:
    async with limited(max_head_bytes=1024) as server:
        for size, status in ((1024, 200), (1025, 431)):
            reader, writer = await connect(server)
            raw = head_of_size(size)
            for i in range(0, len(raw), 100 if split else len(raw)):
                writer.write(raw[i : i + 100] if split else raw)
                await writer.drain()
            assert (await read_response(reader))[0] == status
            writer.close()


async def test_many_tiny_headers_count_their_colons_and_line_ends(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"a:\r\n" * 50_000 + b"\r\n")
    status, _, body = await read_response(reader)
    assert status == 431 and body == b"request head exceeds 65536 bytes"
    assert await closed(reader, writer)


async def test_a_pipelined_head_is_counted_from_its_own_first_byte() -> None:
    async with limited(max_head_bytes=1024) as server:
        reader, writer = await connect(server)
        writer.write(post(ECHO, b"x" * 40) + head_of_size(1024) + head_of_size(1025))
        assert (await read_response(reader))[0] == 200
        assert (await read_response(reader))[0] == 200
        assert (await read_response(reader))[0] == 431
        writer.close()


async def test_a_slow_head_or_body_gets_408_and_an_idle_connection_closes() -> None:
    async with limited(head_timeout_s=0.2, body_timeout_s=0.2, keepalive_timeout_s=0.3) as server:
        slow_head_reader, slow_head = await connect(server)
        slow_head.write(b"GET /healthz HTTP/1.1\r\nHost:")
        slow_body_reader, slow_body = await connect(server)
        slow_body.write(post(ECHO, b"12345")[:-3])
        idle_reader, idle = await connect(server)
        for reader, what in ((slow_head_reader, b"head"), (slow_body_reader, b"body")):
            status, _, body = await asyncio.wait_for(read_response(reader), 2)
            assert status == 408 and what in body
        assert await closed(idle_reader, idle)
        assert await closed(slow_head_reader, slow_head)
        assert await closed(slow_body_reader, slow_body)


async def test_at_the_connection_limit_the_longest_waiting_make_room() -> None:
    async with limited(max_connections=8) as server:
        idle = [await connect(server) for _ in range(8)]
        reader, writer = await connect(server)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(reader))[::2] == (200, b"ok")
        assert await closed(*idle[0])  # the oldest idle one was closed
        assert len(server.connections) <= 8
        writer.close()
        for _, other in idle:
            other.close()


async def test_at_the_connection_limit_with_every_connection_busy_a_new_one_gets_503() -> None:
    async with limited(max_connections=4) as server:
        busy = [await connect(server) for _ in range(4)]
        for _, writer in busy:
            writer.write(post(f"{ECHO}?sleep=0.5", b"busy"))
        await asyncio.sleep(0.05)
        reader, writer = await connect(server)
        status, headers, body = await read_response(reader)
        assert (status, headers["connection"]) == (503, "close")
        assert b"connection limit" in body
        writer.close()
        for busy_reader, busy_writer in busy:  # the busy ones are not disturbed
            assert (await read_response(busy_reader))[2].endswith(b"|busy")
            busy_writer.close()


async def test_a_burst_of_connections_waits_in_the_listen_queue_instead_of_being_dropped(
    server: HttpServer,
) -> None:
    # While the loop is busy the kernel completes handshakes into the listen queue; a SYN
    # beyond its depth is dropped and that client retries only after a second.
    burst = 2_000
    clients = []
    try:
        for _ in range(burst):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", server.port))
            clients.append(client)
        time.sleep(0.3)  # the loop is blocked: nothing is accepted meanwhile
        deadline = time.monotonic() + 0.7
        while len(server.connections) < burst and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(server.connections) == burst
    finally:
        for client in clients:
            client.close()


def test_a_handler_header_with_a_line_break_is_refused() -> None:
    assert extra_headers((("Set-Cookie", "a=b; HttpOnly"),)) == b"Set-Cookie: a=b; HttpOnly\r\n"
    for value in ("a\r\nX-Injected: 1", "a\nb"):
        with pytest.raises(ValueError, match="line break"):
            extra_headers((("Location", value),))
