"""The API node's HTTP/1.1 server: a lean asyncio protocol over httptools.

Every dispatch and every participant join is one small POST, so the server's cost per
request bounds what one API core can take. aiohttp's server spent about as much CPU per
call as our whole handler (BENCHMARKS.md has the comparison); this one parses with
httptools (llhttp) and answers from a plain ``asyncio.Protocol``: one task per request,
one ``write`` per response, no per-request stream objects.

It serves what the API needs and no more: keep-alive and pipelined requests (answered in
order, one at a time per connection), ``Content-Length`` and chunked bodies (buffered
whole, up to a limit), ``Expect: 100-continue``, and routes by exact path or by prefix::

    app = HttpApp()
    app.route("/healthz", healthz)            # GET and HEAD
    app.prefix("/twirp/", twirp.handle)        # any method; the handler checks it
    server = HttpServer(app)
    await server.start("127.0.0.1", 7880)
    ...
    await server.aclose()

Handlers are ``async (Request) -> Response``; an exception becomes a plain 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final, cast, overload
from urllib.parse import parse_qsl

import httptools

log = logging.getLogger(__name__)

Handler = Callable[["Request"], Awaitable["Response"]]

MAX_HEAD_BYTES: Final = 64 * 1024  # request line plus headers
KEEPALIVE_TIMEOUT_S: Final = 75.0  # an idle keep-alive connection is closed after this
_SWEEP_EVERY_S: Final = 10.0
_MAX_QUEUED: Final = 16  # pipelined requests buffered per connection before reading pauses
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_REASONS: Final = {s.value: s.phrase for s in HTTPStatus}


class Headers:
    """Request headers by case-insensitive name (repeated headers joined with ", ")."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str] | None = None) -> None:
        self._items = items if items is not None else {}

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        return self._items.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class Request:
    """One whole request: ``body`` is read completely before the handler runs.

    ``body_too_large`` says the body passed the server's limit and was dropped; the
    connection closes after the response."""

    __slots__ = ("_query", "body", "body_too_large", "headers", "method", "path", "query_string")

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: bytes = b"",
        *,
        body_too_large: bool = False,
    ) -> None:
        self.method = method
        self.path, _, self.query_string = target.partition("?")
        self.headers = headers
        self.body = body
        self.body_too_large = body_too_large
        self._query: dict[str, str] | None = None

    @property
    def query(self) -> Mapping[str, str]:
        """The query string's parameters (the first value of a repeated one)."""
        if self._query is None:
            self._query = {}
            for name, value in parse_qsl(self.query_string, keep_blank_values=True):
                self._query.setdefault(name, value)
        return self._query


class Response:
    __slots__ = ("body", "content_type", "status")

    def __init__(
        self, status: int = 200, body: bytes = b"", content_type: str = "application/octet-stream"
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode(), "text/plain; charset=utf-8")


class HttpApp:
    """Routes: exact paths (GET and HEAD) and path prefixes (any method)."""

    def __init__(self, *, max_body_size: int = 10 * 1024 * 1024) -> None:
        self.max_body_size = max_body_size
        self._routes: dict[str, Handler] = {}
        self._prefixes: list[tuple[str, Handler]] = []
        self.state: dict[str, Any] = {}  # shared objects, e.g. the Twirp router

    def route(self, path: str, handler: Handler) -> None:
        self._routes[path] = handler

    def prefix(self, prefix: str, handler: Handler) -> None:
        self._prefixes.append((prefix, handler))

    async def handle(self, request: Request) -> Response:
        for prefix, handler in self._prefixes:
            if request.path.startswith(prefix):
                return await handler(request)
        route = self._routes.get(request.path)
        if route is None:
            return Response.text("not found", 404)
        if request.method not in ("GET", "HEAD"):
            return Response.text("method not allowed", 405)
        return await route(request)


class HttpServer:
    """A listening socket serving one ``HttpApp``; ``aclose`` drains in-flight requests."""

    def __init__(self, app: HttpApp) -> None:
        self.app = app
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int, *, backlog: int = 1024) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, backlog=backlog
        )
        self._sweeper = loop.create_task(self._sweep_idle())

    async def aclose(self, grace_s: float = 10.0) -> None:
        """Stop accepting, let requests in progress finish (up to ``grace_s``), close."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self.connections):
            connection.close_when_idle()
        deadline = time.monotonic() + grace_s
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def _sweep_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_SWEEP_EVERY_S)
            cutoff = loop.time() - KEEPALIVE_TIMEOUT_S
            for connection in list(self.connections):
                if connection.idle_since(cutoff):
                    connection.close_when_idle()


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._app = server.app
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[tuple[Request, bool]] = deque()  # (request, keep the connection)
        self._task: asyncio.Task[None] | None = None  # the request being answered
        self._write_paused = False
        self._reading_paused = False
        self._closing = False
        self._last_active = self._loop.time()
        self._head_error = ""
        self._reset()

    def _reset(self) -> None:
        self._target = b""
        self._fields: dict[str, str] = {}
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._too_large = False

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None
        if self._task is not None:
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._refuse(400, self._head_error or f"malformed HTTP request: {exc}")

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._next()

    # --- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self._target += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        previous = self._fields.get(key)
        self._fields[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        length = self._fields.get("content-length", "")
        if length.isdigit() and int(length) > self._app.max_body_size:
            self._too_large = True
        elif self._fields.get("expect", "").lower() == "100-continue" and self._transport:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self._app.max_body_size:
            self._too_large = True
            self._body.clear()
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method().decode("latin-1")
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(
            method,
            self._target.decode("latin-1"),
            Headers(self._fields),
            b"" if self._too_large else body,
            body_too_large=self._too_large,
        )
        keep = self._parser.should_keep_alive() and not self._too_large
        self._queue.append((request, keep))
        self._last_active = self._loop.time()
        if len(self._queue) >= _MAX_QUEUED and self._transport is not None:
            self._transport.pause_reading()
            self._reading_paused = True
        self._next()

    # --- answering ------------------------------------------------------------------------

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            # the parser reports a callback's exception as its own error; keep ours to answer
            self._head_error = f"request head exceeds {MAX_HEAD_BYTES} bytes"
            raise httptools.HttpParserError(self._head_error)

    def _next(self) -> None:
        if self._task is not None or self._write_paused or not self._queue:
            return
        request, keep = self._queue.popleft()
        if self._reading_paused and len(self._queue) < _MAX_QUEUED // 2 and self._transport:
            self._transport.resume_reading()
            self._reading_paused = False
        self._task = self._loop.create_task(self._answer(request, keep))

    async def _answer(self, request: Request, keep: bool) -> None:
        try:
            response = await self._app.handle(request)
        except Exception:
            log.exception("handler for %s %s failed", request.method, request.path)
            response = Response.text("internal server error", 500)
        self._task = None
        self._last_active = self._loop.time()
        keep = keep and not self._closing
        self._write(response, keep, head_only=request.method == "HEAD")
        if keep:
            self._next()

    def _write(self, response: Response, keep: bool, *, head_only: bool = False) -> None:
        if self._transport is None:
            return
        body = response.body
        head = _head(response.status, response.content_type, len(body), keep)
        self._transport.write(head if head_only else head + body)
        if not keep:
            self._transport.close()

    def _refuse(self, status: int, message: str) -> None:
        self._queue.clear()
        if self._task is None:
            self._write(Response.text(message, status), keep=False)
        elif self._transport is not None:
            self._transport.close()

    # --- shutdown -------------------------------------------------------------------------

    def idle_since(self, cutoff: float) -> bool:
        return self._task is None and not self._queue and self._last_active < cutoff

    def close_when_idle(self) -> None:
        """Close now if nothing is in progress, else after the current response."""
        self._closing = True
        self._queue.clear()
        if self._task is None and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def _head(status: int, content_type: str, length: int, keep: bool) -> bytes:
    reason = _REASONS.get(status, "")
    connection = b"" if keep else b"Connection: close\r\n"
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nDate: %s\r\n%s\r\n" % (
        status,
        reason.encode(),
        content_type.encode(),
        length,
        _date(),
        connection,
    )


_date_cache: list[Any] = [0, b""]


def _date() -> bytes:
    """The ``Date`` header's value, formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, formatdate(now, usegmt=True).encode()]
    return cast(bytes, _date_cache[1])
