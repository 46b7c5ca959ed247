"""The API node's HTTP/1.1 server: a lean asyncio protocol over httptools.

Every dispatch and every participant join is one small POST, so the server's cost per
request bounds what one API core can take. aiohttp's server spent about as much CPU per
call as our whole handler (BENCHMARKS.md has the comparison); this one parses with
httptools (llhttp) and answers from a plain ``asyncio.Protocol``: one task per request,
one ``write`` per response, no per-request stream objects.

It serves what the API needs and no more: keep-alive and pipelined requests (answered in
order, one at a time per connection), ``Content-Length`` and chunked bodies (buffered
whole, up to a limit), ``Expect: 100-continue``; and it bounds what one client may cost
(``ServerLimits``, SECURITY.md)::

    server = HttpServer(app, ServerLimits(max_connections=10_000))
    await server.start("127.0.0.1", 7880)
    ...
    await server.aclose()
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import httptools

from dispatcher.api.fdlimit import connections_within_fd_limit
from dispatcher.api.http import Headers, HttpApp, Request, Response, Stream, Upgrade
from dispatcher.api.httpwire import busy_reply, extra_headers, response_head, target_of

log = logging.getLogger(__name__)

_SWEEP_EVERY_S: Final = 1.0  # how often connections are checked against their timeouts
_SWEEP_SLICE: Final = 256  # connections checked between two turns of the event loop
_LINGER_S: Final = 2.0  # a closing connection drops what still arrives for this long
_MAX_QUEUED: Final = 16  # pipelined requests buffered per connection before reading pauses
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one client may cost the node (SECURITY.md lists them with their settings).

    At ``max_connections`` a new client still gets in: the oldest connections that wait on
    their own client (idle, or sending a request slowly) are closed to make room, those
    silent for a second or more first. The cap is lowered to what the file-descriptor limit
    allows when that limit cannot be raised.
    A request head must arrive within ``head_timeout_s`` of its first byte and a body within
    ``body_timeout_s`` of its head; an idle keep-alive connection lasts ``keepalive_timeout_s``.
    """

    max_connections: int = 50_000
    max_head_bytes: int = 64 * 1024  # request line, headers and every CRLF, counted exactly
    head_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 75.0
    # Connections the kernel completes before they are accepted; the kernel caps it at
    # net.core.somaxconn. A shallow queue drops a burst of reconnections' SYNs, and each
    # dropped client (a health check among them) waits a second for its retransmission.
    listen_backlog: int = 65_535


class HttpServer:
    """A listening socket serving one ``HttpApp``; ``aclose`` drains in-flight requests."""

    def __init__(self, app: HttpApp, limits: ServerLimits | None = None) -> None:
        self.app = app
        self.limits = limits or ServerLimits()
        self.max_connections = self.limits.max_connections
        self.connections: dict[_Connection, None] = {}  # oldest first
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self.max_connections = connections_within_fd_limit(self.limits.max_connections)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, backlog=self.limits.listen_backlog
        )
        self._sweeper = loop.create_task(self._sweep())

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

    def admit(self) -> bool:
        """Whether a new connection may stay: at the cap, make room by closing a batch of
        the oldest connections that wait on their client, those waiting a while first, so
        a flood of new connections costs one short scan per batch."""
        if len(self.connections) < self.max_connections:
            return True
        batch = max(1, self.max_connections // _EVICT_FRACTION)
        stale_before = asyncio.get_running_loop().time() - _STALE_S
        evicted = self._evict(batch, stale_before)
        if evicted < batch:
            evicted += self._evict(batch - evicted, float("inf"))
        return evicted > 0

    def _evict(self, count: int, waiting_before: float) -> int:
        chosen = []
        for connection in self.connections:
            if connection.waiting_on_client(before=waiting_before):
                chosen.append(connection)
                if len(chosen) == count:
                    break
        for connection in chosen:
            connection.evict()
        return len(chosen)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        limits = self.limits
        shortest = min(limits.head_timeout_s, limits.body_timeout_s, limits.keepalive_timeout_s)
        every_s = min(_SWEEP_EVERY_S, shortest / 2)
        while True:
            await asyncio.sleep(every_s)
            now = loop.time()
            for index, connection in enumerate(list(self.connections), 1):
                connection.expire(now)
                if index % _SWEEP_SLICE == 0:
                    # thousands of slow clients may time out at once: let others in between
                    await asyncio.sleep(0)


_EVICT_FRACTION: Final = 32  # at the cap, close 1/32 of the connections per scan
_STALE_S: Final = 1.0  # a connection whose client has been silent this long goes first


class _Phase(enum.Enum):
    IDLE = "idle"  # between requests: no byte of the next one yet
    HEAD = "head"  # receiving a request head
    BODY = "body"  # receiving a request body


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order.

    A request the server cannot take (malformed, too large, too slow, an upgrade) still lets
    the requests before it on the connection be answered; then the connection gets its
    error reply and is closed gracefully: our side is shut down first and what the client
    still sends is read and dropped for a moment, so the reply is not lost to a reset.

    Tens of thousands of these may be open at once, and each object the garbage collector
    tracks lengthens its full collections (which stop the event loop): hence the slots, and
    no per-request containers until a request begins."""

    __slots__ = (
        "_app",
        "_body",
        "_body_bytes",
        "_body_left",
        "_closing",
        "_fields",
        "_head_bytes",
        "_head_error",
        "_last_reply",
        "_limits",
        "_lingering",
        "_loop",
        "_parser",
        "_phase",
        "_queue",
        "_queued",
        "_reading_paused",
        "_server",
        "_since",
        "_tail",
        "_target",
        "_task",
        "_too_large",
        "_transport",
        "_upgrade_tail",
        "_write_paused",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._app = server.app
        self._limits = server.limits
        self._loop = asyncio.get_running_loop()
        self._parser: httptools.HttpRequestParser | None = None  # from the first byte on
        self._transport: asyncio.Transport | None = None
        self._queue: deque[tuple[Request, bool]] = _NO_QUEUE  # (request, keep the connection)
        self._task: asyncio.Task[None] | None = None  # the request being answered
        self._write_paused = False
        self._reading_paused = False
        self._closing = False  # answer what is queued, then close
        self._last_reply: Response | None = None  # the reply that ends the connection
        self._lingering: asyncio.TimerHandle | None = None
        self._phase = _Phase.IDLE
        self._since = self._loop.time()  # when the current phase (or the last reply) began
        self._head_error = ""
        self._head_bytes = 0  # of the head in progress, counted in ``_feed``
        self._tail = b""  # the last bytes of an unfinished head
        self._upgrade_tail: bytes | None = None  # after an upgrade request's head: its bytes
        self._reset(_NO_FIELDS, _NO_BODY)  # fresh ones when a request begins

    def _reset(self, fields: dict[str, str], body: list[bytes]) -> None:
        self._target = b""
        self._fields = fields
        self._body = body
        self._body_bytes = 0
        self._too_large = False
        self._queued = False  # this message was queued before its body ended (too large)
        self._body_left: int | None = None  # the bytes of a Content-Length body still due

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        if not self._server.admit():
            self._transport.write(busy_reply())
            self._transport.close()
            return
        self._server.connections[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.pop(self, None)
        self._transport = None
        if self._lingering is not None:
            self._lingering.cancel()
        if self._task is not None:
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        if self._lingering is not None or self._closing:
            return  # the connection is ending: what the client still sends is dropped
        try:
            self._feed(data)
        except httptools.HttpParserUpgrade:
            self._stop()  # answer the request (its handler may take the connection), close
        except httptools.HttpParserError as exc:
            if self._head_error:
                self._stop(self._refusal(431, self._head_error))
            else:
                self._stop(self._refusal(400, f"malformed HTTP request: {exc}"))

    def eof_received(self) -> bool:
        # The client shut down its side: answer what it sent, then close ours.
        if self._lingering is not None or (self._task is None and not self._queue):
            return False
        self._closing = True
        return True

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._next()

    def _feed(self, data: bytes) -> None:
        """Feed the parser a head, then a body, at a time, so that each head's size is known
        to the byte (request line, headers, every CRLF) before the parser takes it."""
        while data and not self._closing:
            in_body = self._phase is _Phase.BODY
            if in_body:
                size = len(data) if self._body_left is None else min(self._body_left, len(data))
                if self._body_left is not None:
                    self._body_left -= size
            else:
                size = self._head_piece(data)
            piece, data = (data, b"") if size == len(data) else (data[:size], data[size:])
            try:
                self._feed_parser(piece)  # a new message's head restarts the count at 0
            except httptools.HttpParserUpgrade as upgrade:
                self._upgrade_tail = piece[int(upgrade.args[0]) :] + data
                raise
            if not in_body and self._phase is _Phase.HEAD:
                self._head_bytes += size

    def _feed_parser(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            parser = self._parser = httptools.HttpRequestParser(_CALLBACKS)
        _feeding[0] = self
        try:
            parser.feed_data(data)
        finally:
            _feeding[0] = None

    def _head_piece(self, data: bytes) -> int:
        """How much of ``data`` belongs to the head in progress (all of it, or up to its
        blank line); raises if that makes the head larger than its limit."""
        so_far = self._head_bytes if self._phase is _Phase.HEAD else 0
        if self._phase is _Phase.IDLE:
            self._tail = b""
        seen = self._tail + data  # a blank line may straddle two reads
        end = seen.find(b"\r\n\r\n")
        size = len(data) if end < 0 else end + 4 - len(self._tail)
        self._tail = seen[-3:] if end < 0 else b""
        limit = self._limits.max_head_bytes
        # an unfinished head that has reached the limit will pass it
        if so_far + size > limit or (end < 0 and so_far + size == limit):
            if not so_far:  # the parser has not seen this head: its target words the reply
                self._target = target_of(seen)
            self._head_error = f"request head exceeds {limit} bytes"
            raise httptools.HttpParserError(self._head_error)
        return size

    # --- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset({}, [])
        self._head_bytes = 0
        self._enter(_Phase.HEAD)

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        previous = self._fields.get(key)
        self._fields[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        self._enter(_Phase.BODY)
        length = self._fields.get("content-length", "")
        if length.isdigit() and "transfer-encoding" not in self._fields:
            self._body_left = int(length)
        if length.isdigit() and int(length) > self._app.max_body_size:
            self._refuse_body()  # at once: neither "100 Continue" nor a wait for the body
        elif self._fields.get("expect", "").lower() == "100-continue" and self._transport:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self._app.max_body_size:
            self._body.clear()
            self._refuse_body()
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self._enter(_Phase.IDLE)
        if not self._queued:
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            self._queue_request(body, keep=self._parsing().should_keep_alive())

    # --- answering ------------------------------------------------------------------------

    def _refusal(self, status: int, message: str) -> Response:
        return self._app.refusal(self._target.decode("latin-1"), status, message)

    def _parsing(self) -> httptools.HttpRequestParser:
        assert self._parser is not None  # called back by the parser only
        return self._parser

    def _enter(self, phase: _Phase) -> None:
        self._phase = phase
        self._since = self._loop.time()

    def _refuse_body(self) -> None:
        """Hand the request to its handler flagged too large without its body; the
        connection closes after the reply."""
        self._too_large = True
        self._queued = True
        self._queue_request(b"", keep=False)

    def _queue_request(self, body: bytes, *, keep: bool) -> None:
        if self._closing:
            return  # a request after one that ends the connection is not read
        method = self._parsing().get_method().decode("latin-1")
        request = Request(
            method,
            self._target.decode("latin-1"),
            Headers(self._fields),
            body,
            body_too_large=self._too_large,
        )
        if self._queue is _NO_QUEUE:
            self._queue = deque()
        self._queue.append((request, keep))
        if not keep:
            self._closing = True  # nothing after this request is read
        if len(self._queue) >= _MAX_QUEUED and self._transport is not None:
            self._transport.pause_reading()
            self._reading_paused = True
        self._next()

    def _next(self) -> None:
        if self._task is not None or self._write_paused:
            return
        if not self._queue:
            if self._closing:
                self._end()
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
        self._since = self._loop.time()
        if isinstance(response, Upgrade) and not self._queue and self._upgrade_tail is not None:
            self._hand_over(response)
            return
        if isinstance(response, Stream):  # its handler writes the rest: nothing else is read
            self._queue.clear()
            self._hand_over(response)
            return
        last = not keep or (self._closing and not self._queue and self._last_reply is None)
        self._write(response, keep=not last, head_only=request.method == "HEAD")
        if last:
            self._closing = True
            self._queue.clear()
            self._linger()
        else:
            self._next()

    def _hand_over(self, upgrade: Upgrade) -> None:
        """The upgrade request's handler takes the connection: it leaves this server's
        limits and timeouts, and gets the bytes already read past the request head."""
        transport, tail = self._transport, self._upgrade_tail or b""
        self._server.connections.pop(self, None)
        self._transport = None
        if transport is not None and not transport.is_closing():
            upgrade.take_over(transport, tail)
            if self._reading_paused:
                transport.resume_reading()

    def _write(self, response: Response, keep: bool, *, head_only: bool = False) -> None:
        if self._transport is None:
            return
        body = response.body
        head = response_head(response.status, response.content_type, len(body), keep)
        if response.headers:
            head = head[:-2] + extra_headers(response.headers) + b"\r\n"
        self._transport.write(head if head_only else head + body)

    def _stop(self, reply: Response | None = None) -> None:
        """Take no more requests: answer the ones queued, then ``reply`` (if any), close."""
        self._closing = True
        self._last_reply = reply
        if self._transport is not None and not self._reading_paused:
            self._transport.pause_reading()
            self._reading_paused = True
        self._next()

    def _end(self) -> None:
        """Nothing is queued any more and the connection is closing: send the last reply."""
        if self._lingering is not None or self._transport is None:
            return
        if self._last_reply is not None:
            self._write(self._last_reply, keep=False)
        self._linger()

    def _linger(self) -> None:
        """Close gracefully: shut our side, drop what still arrives, close for good when the
        client closes or after ``_LINGER_S``."""
        transport = self._transport
        if transport is None or self._lingering is not None:
            return
        self._lingering = self._loop.call_later(_LINGER_S, self.abort)
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        if self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False

    # --- limits and shutdown --------------------------------------------------------------

    def waiting_on_client(self, *, before: float = float("inf")) -> bool:
        """Nothing of ours in progress: the connection waits for its client (since a time
        earlier than ``before``)."""
        return (
            self._task is None
            and not self._queue
            and self._lingering is None
            and self._since < before
        )

    def expire(self, now: float) -> None:
        """Close the connection if its client has taken too long."""
        if not self.waiting_on_client():
            return
        waited = now - self._since
        if self._phase is _Phase.IDLE and waited > self._limits.keepalive_timeout_s:
            self._linger()
        elif self._phase is _Phase.HEAD and waited > self._limits.head_timeout_s:
            limit = self._limits.head_timeout_s
            self._stop(self._refusal(408, f"request head not received within {limit:g} s"))
        elif self._phase is _Phase.BODY and waited > self._limits.body_timeout_s:
            limit = self._limits.body_timeout_s
            self._stop(self._refusal(408, f"request body not received within {limit:g} s"))

    def evict(self) -> None:
        """Make room for a new connection (the node is at its connection limit): its
        descriptor is freed at once, so an idle connection is reset, not closed gently."""
        self._server.connections.pop(self, None)
        if self._transport is None:
            return
        if self._phase is _Phase.IDLE:
            self._transport.abort()
        else:
            self._transport.write(busy_reply())
            self._transport.close()

    def close_when_idle(self) -> None:
        """Close now if nothing is in progress, else after the current response."""
        self._closing = True
        self._queue.clear()
        if self._task is None and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


_NO_FIELDS: Final[dict[str, str]] = {}  # never written: a request begins with its own
_NO_BODY: Final[list[bytes]] = []
_NO_QUEUE: Final[deque[tuple[Request, bool]]] = deque()  # never appended to


class _Callbacks:
    """The parser callbacks, shared by every parser: each forwards to the connection being
    fed. A parser given the connection itself would hold seven bound methods of its own,
    seven more objects per connection for every full garbage collection to walk."""

    def __init__(self) -> None:
        for name in _CALLBACK_NAMES:
            setattr(self, name, _forward(name))


_CALLBACK_NAMES: Final = (
    "on_message_begin",
    "on_url",
    "on_header",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
)
_feeding: list[Any] = [None]  # the connection whose data the parser is taking


def _forward(name: str) -> Callable[..., None]:
    method = getattr(_Connection, name)

    def forward(*args: Any) -> None:
        method(_feeding[0], *args)

    return forward


_CALLBACKS: Final = _Callbacks()
