"""The lean HTTP client against real servers on loopback: an aiohttp.web app, raw asyncio
servers scripted to misbehave, and the trivial endpoint. Every scenario runs on the default
asyncio loop and on uvloop (the loop the load generator runs on)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Literal

import pytest
import uvloop
from aiohttp import web

from loadgen.httpclient import HttpClient, HttpError, HttpTimeout, Outcome
from loadgen.sender import classify
from loadgen.trivial import REPLY_BODY, serve_trivial

Runner = Callable[[Coroutine[Any, Any, None]], None]
Action = Literal["answer", "drop", "silent", "half"]
Policy = Callable[[int, int], Action]  # (connection number, request number on it) -> action

LOOPS: dict[str, Runner] = {"asyncio": asyncio.run, "uvloop": uvloop.run}
PROTOBUF = ("Content-Type", "application/protobuf")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Runner:
    return LOOPS[request.param]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- an aiohttp.web server that records what it sees ------------------------------------------


class Recorder:
    """Echoes each body back and notes the client port every request came in on."""

    def __init__(self, delay: float = 0.0, close: bool = False) -> None:
        self.delay = delay
        self.close = close
        self.peers: list[int] = []
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername")[1])
        self.headers.append(dict(request.headers))
        body = await request.read()
        self.bodies.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.path == "/chunked":
            return await self._chunked(request, body)
        response = web.Response(body=b"echo:" + body, content_type="application/protobuf")
        if self.close:
            response.force_close()
        return response

    async def _chunked(self, request: web.Request, body: bytes) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in (b"echo", b":", body):
            await response.write(piece)
            await asyncio.sleep(0.001)
        await response.write_eof()
        return response


@asynccontextmanager
async def web_server(recorder: Recorder, keepalive_timeout: float = 75.0) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, keepalive_timeout=keepalive_timeout)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def eventually(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    """Wait for something the server does in its own time; fails only if it never happens."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within_s
    while not condition():
        assert loop.time() < give_up, "condition never became true"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def client_for(url: str, **kwargs: Any) -> AsyncIterator[HttpClient]:
    client = HttpClient(url, **kwargs)
    try:
        yield client
    finally:
        await client.aclose()


def test_concurrent_posts_beyond_the_limit_all_succeed_on_few_connections(run: Runner) -> None:
    async def scenario() -> None:
        recorder = Recorder(delay=0.01)
        async with web_server(recorder) as url, client_for(url, max_connections=4) as client:
            bodies = [f"request-{i}".encode() for i in range(60)]
            replies = await asyncio.gather(
                *(client.post("/echo", body, [PROTOBUF]) for body in bodies)
            )
            assert replies == [(200, b"echo:" + body) for body in bodies]
            assert len(set(recorder.peers)) == 4
            assert client.open_connections == 4

    run(scenario())


def test_request_carries_headers_and_body(run: Runner) -> None:
    async def scenario() -> None:
        recorder = Recorder()
        async with web_server(recorder) as url, client_for(url) as client:
            token = "Bearer " + "t" * 300
            status, _ = await client.post("/twirp/x", b"\x00" * 200, [("Authorization", token)])
            assert status == 200
            assert recorder.bodies == [b"\x00" * 200]
            headers = recorder.headers[0]
            assert headers["Authorization"] == token
            assert headers["Content-Length"] == "200"
            assert headers["Host"] == url.removeprefix("http://")

    run(scenario())


def test_idle_connections_are_reused_most_recent_first(run: Runner) -> None:
    async def scenario() -> None:
        recorder = Recorder(delay=0.01)
        async with web_server(recorder) as url, client_for(url, max_connections=8) as client:
            await asyncio.gather(*(client.post("/", b"x", []) for _ in range(3)))
            assert len(set(recorder.peers)) == 3
            del recorder.peers[:]
            for _ in range(6):
                assert (await client.post("/", b"x", []))[0] == 200
            assert len(set(recorder.peers)) == 1  # a FIFO pool would rotate through all three

    run(scenario())


def test_waiting_callers_are_served_in_arrival_order(run: Runner) -> None:
    async def scenario() -> None:
        recorder = Recorder(delay=0.002)
        async with web_server(recorder) as url, client_for(url, max_connections=1) as client:
            bodies = [str(i).encode() for i in range(20)]
            await asyncio.gather(*(client.post("/", body, []) for body in bodies))
            assert recorder.bodies == bodies

    run(scenario())


def test_chunked_response(run: Runner) -> None:
    async def scenario() -> None:
        recorder = Recorder()
        async with web_server(recorder) as url, client_for(url) as client:
            for _ in range(3):  # and the connection stays usable after each
                assert await client.post("/chunked", b"abc", []) == (200, b"echo:abc")
            assert len(set(recorder.peers)) == 1

    run(scenario())


def test_connection_close_from_server_is_honoured(run: Runner) -> None:
    async def scenario() -> None:
        recorder = Recorder(close=True)
        async with web_server(recorder) as url, client_for(url) as client:
            for i in range(5):
                assert await client.post("/", b"%d" % i, []) == (200, b"echo:%d" % i)
            assert len(set(recorder.peers)) == 5
            assert client.open_connections == 0

    run(scenario())


def test_server_closing_idle_connections_does_not_fail_requests(run: Runner) -> None:
    async def scenario() -> None:
        recorder = Recorder()
        async with (
            web_server(recorder, keepalive_timeout=0.05) as url,
            client_for(url) as client,
        ):
            await asyncio.gather(*(client.post("/", b"a", []) for _ in range(3)))
            await eventually(lambda: client.open_connections == 0)  # the server closed all
            assert await client.post("/", b"b", []) == (200, b"echo:b")

    run(scenario())


# --- raw servers scripted to misbehave --------------------------------------------------------


class Scripted:
    """A raw HTTP server that treats each whole request as ``policy`` says: answer it, drop
    the connection unanswered (the server closing it), stay silent, or answer half."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.accepted = 0
        self.lost = 0
        self.received = asyncio.Event()
        self.transports: list[asyncio.Transport] = []

    def protocol(self) -> asyncio.Protocol:
        return _ScriptedConnection(self)


class _ScriptedConnection(asyncio.Protocol):
    def __init__(self, server: Scripted) -> None:
        self.server = server
        self.number = server.accepted
        server.accepted += 1
        self.served = 0
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.server.transports.append(self.transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            match = _LENGTH.search(self.buf[:end])
            size = end + 4 + (int(match[1]) if match else 0)
            if len(self.buf) < size:
                return
            self.buf = self.buf[size:]
            self.server.received.set()
            self.act(self.server.policy(self.number, self.served))
            self.served += 1

    def act(self, action: Action) -> None:
        assert self.transport is not None
        if action == "answer":
            self.transport.write(OK)
        elif action == "drop":
            self.transport.abort()
        elif action == "half":
            self.transport.write(OK[:20])
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.lost += 1


@asynccontextmanager
async def scripted_server(policy: Policy) -> AsyncIterator[tuple[str, Scripted]]:
    scripted = Scripted(policy)
    server = await asyncio.get_running_loop().create_server(scripted.protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", scripted
    finally:
        server.close()
        for transport in scripted.transports:
            transport.abort()
        await server.wait_closed()
        await asyncio.sleep(0.01)  # let the aborted transports finish closing


def test_stale_keep_alive_connection_is_retried_on_a_fresh_one(run: Runner) -> None:
    """The server dropped an idle connection just as the next request went out on it."""

    def policy(connection: int, request: int) -> Action:
        return "drop" if (connection, request) == (0, 1) else "answer"

    async def scenario() -> None:
        async with scripted_server(policy) as (url, server), client_for(url) as client:
            assert await client.post("/", b"1", []) == (200, b"ok")
            assert await client.post("/", b"2", []) == (200, b"ok")
            assert server.accepted == 2
            assert client.open_connections == 1

    run(scenario())


def test_stale_retry_happens_only_once(run: Runner) -> None:
    def policy(connection: int, request: int) -> Action:
        return "answer" if (connection, request) == (0, 0) else "drop"

    async def scenario() -> None:
        async with scripted_server(policy) as (url, server), client_for(url) as client:
            assert await client.post("/", b"1", []) == (200, b"ok")
            with pytest.raises(HttpError, match=r"closed|lost"):
                await client.post("/", b"2", [])
            assert server.accepted == 2
            assert client.open_connections == 0

    run(scenario())


def test_fresh_connection_dropped_is_an_error_without_retry(run: Runner) -> None:
    async def scenario() -> None:
        async with scripted_server(lambda c, r: "drop") as (url, server), client_for(url) as c:
            with pytest.raises(HttpError, match=r"closed|lost"):
                await c.post("/", b"1", [])
            assert server.accepted == 1

    run(scenario())


def test_reset_mid_response_is_an_error_without_retry(run: Runner) -> None:
    def policy(connection: int, request: int) -> Action:
        return "answer" if request == 0 else "half"

    async def scenario() -> None:
        async with scripted_server(policy) as (url, server), client_for(url) as client:
            await client.post("/", b"1", [])
            with pytest.raises(HttpError, match=r"closed|lost"):
                await client.post("/", b"2", [])
            assert server.accepted == 1

    run(scenario())


def test_server_that_never_answers_times_out(run: Runner) -> None:
    async def scenario() -> None:
        async with (
            scripted_server(lambda c, r: "silent") as (url, server),
            client_for(url, timeout_s=0.3) as client,
        ):
            with pytest.raises(HttpTimeout, match="timeout: no response"):
                await client.post("/", b"1", [])
            await eventually(lambda: server.lost == 1)  # the timed-out connection was closed
            assert client.open_connections == 0

    run(scenario())


def test_waiting_for_a_free_connection_times_out(run: Runner) -> None:
    async def scenario() -> None:
        async with (
            scripted_server(lambda c, r: "silent") as (url, _),
            client_for(url, max_connections=1, timeout_s=0.3) as client,
        ):
            results = await asyncio.gather(
                *(client.post("/", b"x", []) for _ in range(3)), return_exceptions=True
            )
            assert all(isinstance(r, HttpTimeout) for r in results)
            assert client.open_connections == 0

    run(scenario())


def test_connection_refused(run: Runner) -> None:
    async def scenario() -> None:
        async with client_for(f"http://127.0.0.1:{free_port()}") as client:
            for _ in range(2):
                with pytest.raises(HttpError, match="cannot connect"):
                    await client.post("/", b"x", [])
            assert client.open_connections == 0

    run(scenario())


def test_cancelled_post_frees_its_connection(run: Runner) -> None:
    async def scenario() -> None:
        async with (
            scripted_server(lambda c, r: "silent" if c == 0 else "answer") as (url, server),
            client_for(url, max_connections=1) as client,
        ):
            task = asyncio.create_task(client.post("/", b"x", []))
            await server.received.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert client.open_connections == 0
            assert await client.post("/", b"y", []) == (200, b"ok")

    run(scenario())


def test_aclose_fails_requests_in_flight(run: Runner) -> None:
    async def scenario() -> None:
        async with scripted_server(lambda c, r: "silent") as (url, server):
            client = HttpClient(url)
            task = asyncio.create_task(client.post("/", b"x", []))
            await server.received.wait()
            await client.aclose()
            with pytest.raises(HttpError):
                await task
            with pytest.raises(HttpError, match="closed"):
                await client.post("/", b"x", [])

    run(scenario())


# --- send: a prepared request, its outcome to a callback -----------------------------------------


async def outcome_of(client: HttpClient, body: bytes) -> Outcome:
    """``send`` a POST of ``body`` to / and wait for what its callback is given."""
    called: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    client.send(client.prepare("/", body, []), called.set_result)
    return await called


def test_send_reports_every_reply_beyond_the_limit_on_few_connections(run: Runner) -> None:
    async def scenario() -> None:
        recorder = Recorder(delay=0.01)
        async with web_server(recorder) as url, client_for(url, max_connections=4) as client:
            bodies = [f"request-{i}".encode() for i in range(30)]
            outcomes = await asyncio.gather(*(outcome_of(client, body) for body in bodies))
            assert outcomes == [(200, b"echo:" + body) for body in bodies]
            assert len(set(recorder.peers)) == 4

    run(scenario())


def test_send_retries_a_stale_connection_only_once(run: Runner) -> None:
    def policy(connection: int, request: int) -> Action:
        return "answer" if (connection, request) in ((0, 0), (1, 0)) else "drop"

    async def scenario() -> None:
        async with scripted_server(policy) as (url, server), client_for(url) as client:
            assert await outcome_of(client, b"1") == (200, b"ok")
            assert await outcome_of(client, b"2") == (200, b"ok")  # dropped, then retried
            dropped_twice = await outcome_of(client, b"3")  # the retry's drop is final
            assert isinstance(dropped_twice, HttpError)
            assert server.accepted == 3
            assert client.open_connections == 0

    run(scenario())


def test_send_reports_timeouts_and_refusals(run: Runner) -> None:
    async def scenario() -> None:
        async with (
            scripted_server(lambda c, r: "silent") as (url, _),
            client_for(url, max_connections=1, timeout_s=0.3) as client,
        ):
            outcomes = await asyncio.gather(*(outcome_of(client, b"x") for _ in range(2)))
            assert all(isinstance(outcome, HttpTimeout) for outcome in outcomes)
            assert client.open_connections == 0
        async with client_for(f"http://127.0.0.1:{free_port()}") as client:
            refused = await outcome_of(client, b"x")
            assert isinstance(refused, HttpError) and "cannot connect" in str(refused)

    run(scenario())


def test_send_on_a_closed_client_reports_at_once(run: Runner) -> None:
    async def scenario() -> None:
        client = HttpClient("http://127.0.0.1:1")
        await client.aclose()
        outcomes: list[Outcome] = []
        client.send(client.prepare("/", b"x", []), outcomes.append)
        assert len(outcomes) == 1 and isinstance(outcomes[0], HttpError)

    run(scenario())


# --- the trivial endpoint ----------------------------------------------------------------------


def test_trivial_endpoint_answers_every_post_with_a_dispatch(run: Runner) -> None:
    async def scenario() -> None:
        server = await serve_trivial("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with client_for(f"http://127.0.0.1:{port}", max_connections=8) as client:
                replies = await asyncio.gather(
                    *(client.post("/twirp/x", b"\x0a" * 200, [PROTOBUF]) for _ in range(100))
                )
            assert set(replies) == {(200, REPLY_BODY)}
            assert classify(200, REPLY_BODY) == ("ok", "AD_trivial")
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())


def test_trivial_endpoint_handles_pipelined_and_split_requests(run: Runner) -> None:
    async def scenario() -> None:
        server = await serve_trivial("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        expected = b"HTTP/1.1 200 OK\r\nContent-Type: application/protobuf\r\n"
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request * 3)
            for byte in request:
                writer.write(bytes([byte]))
                await writer.drain()
            data = b""
            while data.count(expected) < 4:
                chunk = await reader.read(65536)
                assert chunk
                data += chunk
            assert data.endswith(REPLY_BODY)
            writer.close()
            await writer.wait_closed()
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())
