"""A lean HTTP/1.1 client for one origin: keep-alive POSTs over a pool of asyncio connections.

The load generator must offer far more requests per second than the system under test can
take, from one core. A general-purpose client spends most of its CPU on features this job
never uses (cookies, redirects, proxies, header multidicts, streaming readers), so this one
does only what a load generator needs:

* one request in flight per connection (no pipelining), over a pool of at most
  ``max_connections`` connections; idle ones are reused most-recent first (the warmest, least
  likely to have been closed by the server), and callers beyond the limit wait in FIFO order;
* the request line and Host header are encoded once per path, and each request is one
  ``transport.write``;
* responses are parsed by httptools' llhttp (``loadgen.httpparse``: Content-Length, chunked,
  or read until close) fed whatever ``data_received`` hands over;
* one deadline per request covers waiting for a connection, connecting and the response;
* a reused connection the server closed while idle (nothing of the reply came back) is
  retried once on a new connection, as the request never reached the server;
* besides the ``post`` coroutine, ``send`` takes a request encoded beforehand (``prepare``)
  and calls back with its outcome: no task, future or coroutine per request, which an
  open-loop sender would otherwise pay for every request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from typing import Any, Final, TypeAlias, cast
from urllib.parse import urlsplit

from loadgen.httpparse import HttpError, ResponseParser

__all__ = ["Done", "HttpClient", "HttpError", "HttpTimeout", "Outcome", "ResponseParser"]

_WATCHDOG_TICK_S: Final = 0.25


class HttpTimeout(HttpError):
    """No connection or no whole response within the request's timeout."""


class _StaleConnection(HttpError):
    """A reused connection closed by the peer before any byte of the response arrived."""


#: What became of a request: (status, body) of its response, or why none came back.
Outcome: TypeAlias = tuple[int, bytes] | HttpError
Done: TypeAlias = Callable[[Outcome], None]


# --- one connection -------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive TCP connection carrying one request at a time."""

    def __init__(self, client: HttpClient) -> None:
        self._client = client
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = ResponseParser()
        self._done: Done | None = None  # set while a request is in flight
        self.deadline = 0.0
        self.closed = False
        self.idle = False  # in the client's idle stack
        self.responses = 0

    @property
    def reusable(self) -> bool:
        return not self.closed and self._done is None and self._parser.keep_alive

    @property
    def busy(self) -> bool:
        return self._done is not None

    def time(self) -> float:
        """The event loop's clock, which deadlines are on."""
        return self._loop.time()

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        self._client._connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._done is None:  # nothing asked: the peer is out of step with us
            self._close()
            return
        try:
            complete = self._parser.feed(data)
        except HttpError as exc:
            self._fail(exc)
            return
        if complete:
            self._complete()

    def eof_received(self) -> bool:
        if self._done is not None and self._parser.eof():
            self._complete()
        self._close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._close(exc)

    # used by HttpClient

    def start(self, data: bytes, deadline: float, done: Done) -> None:
        """Write one request; ``done`` is called once, with its outcome."""
        if self.closed or self._transport is None:
            done(self._lost_error(None))
            return
        self._done = done
        self.deadline = deadline
        if self._client._watchdog is None:
            self._client._arm_watchdog()
        self._transport.write(data)

    def send(self, data: bytes, deadline: float) -> asyncio.Future[tuple[int, bytes]]:
        """``start``, with a future that resolves to (status, body) or fails with HttpError."""
        waiter: asyncio.Future[tuple[int, bytes]] = self._loop.create_future()
        self.start(data, deadline, partial(_settle, waiter))
        return waiter

    def time_out(self) -> None:
        self._fail(HttpTimeout(f"timeout: no response within {self._client.timeout_s:g} s"))

    def abort(self) -> None:
        """Drop the connection at once (timeout, cancellation, or unusable after a reply)."""
        if self._transport is not None and not self.closed:
            self._transport.abort()
        self._close()

    # internals

    def _complete(self) -> None:
        """The response is whole: ready the connection for the next request, then report."""
        parser, done = self._parser, self._done
        assert done is not None
        self._done = None
        self.responses += 1
        reply = (parser.status, parser.body)
        keep = parser.keep_alive and not parser.trailing  # trailing: out of step with us
        parser.reset()
        parser.keep_alive = keep
        if not keep and self._transport is not None:
            self._transport.close()
        done(reply)

    def _fail(self, exc: HttpError) -> None:
        done, self._done = self._done, None
        self.abort()
        if done is not None:
            done(exc)

    def _close(self, exc: Exception | None = None) -> None:
        """Mark closed and fail any pending request; tells the client if we were idle."""
        if self.closed:
            return
        self.closed = True
        done, self._done = self._done, None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self._client._connections.discard(self)
        if self.idle:
            self._client._idle_lost(self)
        if done is not None:
            done(self._lost_error(exc))

    def _lost_error(self, exc: Exception | None) -> HttpError:
        reason = f"connection lost: {exc}" if exc else "connection closed by server"
        if self.responses and not self._parser.started:
            # Nothing of the reply came back on a connection that had served before: the
            # server closed it while idle, before it could read the request.
            return _StaleConnection(f"{reason} (idle keep-alive connection)")
        return HttpError(reason)


# --- the client and its pool -----------------------------------------------------------------


class HttpClient:
    """POSTs to one ``http://host:port`` origin over a bounded pool of keep-alive connections.

    ``post`` returns (status, body) for any HTTP response, whatever its status, and raises
    HttpError when none came back; ``send`` reports the same outcomes to a callback. Callers
    must not pass Host, Content-Length or Transfer-Encoding headers: the client writes those
    itself. A request times out ``timeout_s`` after ``post`` or ``send`` was called, checked
    every min(0.25 s, timeout_s / 8).
    """

    def __init__(self, url: str, *, max_connections: int = 256, timeout_s: float = 10.0) -> None:
        self._host, self._port, authority = _origin(url)
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._max = max_connections
        self.timeout_s = timeout_s
        self._host_line = f"Host: {authority}\r\n"
        self._prefixes: dict[str, bytes] = {}
        self._idle: list[_Connection] = []  # a stack: the most recently used is reused first
        self._open = 0  # connection slots taken: connecting, idle or busy
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._connections: set[_Connection] = set()  # every live one
        self._tasks: set[asyncio.Task[None]] = set()  # sends waiting for a connection
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        """Connections open or being opened."""
        return self._open

    async def post(
        self, path: str, body: bytes, headers: Sequence[tuple[str, str]]
    ) -> tuple[int, bytes]:
        """POST ``body`` to ``path``; (status, body) of the response."""
        if self._closed:
            raise HttpError("client is closed")
        data = self._encode(path, body, headers)
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        if self._idle:  # the common case, without a coroutine for _acquire
            conn = self._idle.pop()
            conn.idle = False
        else:
            conn = await self._acquire(deadline)
        try:
            reply = await conn.send(data, deadline)
        except _StaleConnection:
            pass  # keep the slot; retry once below on a new connection
        except BaseException:
            self._release(conn)
            raise
        else:
            self._release(conn)
            return reply
        conn = await self._connect(deadline)
        try:
            return await conn.send(data, deadline)
        finally:
            self._release(conn)

    def prepare(self, path: str, body: bytes, headers: Sequence[tuple[str, str]]) -> bytes:
        """The bytes of a POST, as ``send`` takes them; the same rules as ``post``."""
        return self._encode(path, body, headers)

    def send(self, request: bytes, done: Done) -> None:
        """Send ``request`` (see ``prepare``) without waiting for the response.

        ``done`` is called once, with (status, body) or the HttpError ``post`` would raise;
        it may be called before ``send`` returns (the client is closed).
        """
        if self._closed:
            done(HttpError("client is closed"))
            return
        if self._idle:  # the common case, without a task
            conn = self._idle.pop()
            conn.idle = False
            self._start(conn, request, conn.time() + self.timeout_s, done)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        self._spawn(self._send_on(self._acquire, request, deadline, done))

    async def aclose(self) -> None:
        """Close every connection; requests in flight fail with HttpError."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(HttpError("client closed"))
        for conn in list(self._connections):
            conn.abort()  # idle ones free their slot now, busy ones when their request ends
        await asyncio.sleep(0)  # let the transports deliver connection_lost

    # sending with a callback

    def _start(self, conn: _Connection, request: bytes, deadline: float, done: Done) -> None:
        conn.start(request, deadline, partial(self._answered, conn, request, deadline, done))

    def _answered(
        self, conn: _Connection, request: bytes, deadline: float, done: Done, outcome: Outcome
    ) -> None:
        if isinstance(outcome, _StaleConnection) and not self._closed:
            # The request never reached the server: once more, on a new connection in the
            # slot this one held (a new connection is never stale, so only once).
            self._spawn(self._send_on(self._connect, request, deadline, done))
            return
        self._release(conn)
        done(outcome)

    async def _send_on(
        self,
        connection: Callable[[float], Awaitable[_Connection]],
        request: bytes,
        deadline: float,
        done: Done,
    ) -> None:
        """Send once ``connection`` (``_acquire`` or ``_connect``) has given one."""
        try:
            conn = await connection(deadline)
        except HttpError as exc:
            done(exc)
            return
        self._start(conn, request, deadline, done)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._tasks.discard)

    # request encoding

    def _encode(self, path: str, body: bytes, headers: Sequence[tuple[str, str]]) -> bytes:
        prefix = self._prefixes.get(path)
        if prefix is None:
            prefix = self._prefix(path)
        fields = "".join([f"{name}: {value}\r\n" for name, value in headers])
        # Each line holds exactly one CR and one LF; more means a name or value smuggles one.
        if fields.count("\n") != len(headers) or fields.count("\r") != len(headers):
            raise ValueError("header names and values must not contain CR or LF")
        tail = f"{fields}Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
        return b"".join((prefix, tail, body))

    def _prefix(self, path: str) -> bytes:
        if not path.startswith("/") or any(c in path for c in " \r\n"):
            raise ValueError(f"bad request path {path!r}")
        prefix = f"POST {path} HTTP/1.1\r\n{self._host_line}".encode("ascii")
        if len(self._prefixes) < 64:  # paths are few; a caller that varies them gets no cache
            self._prefixes[path] = prefix
        return prefix

    # Timeouts: one coarse periodic check instead of a timer per request, whose arming and
    # cancelling (~2 us under uvloop) would be a large share of the client's own work.

    def _arm_watchdog(self) -> None:
        tick = min(_WATCHDOG_TICK_S, self.timeout_s / 8)
        self._watchdog = asyncio.get_running_loop().call_later(tick, self._check_deadlines)

    def _check_deadlines(self) -> None:
        """Time out overdue requests; keeps ticking while any request is in flight."""
        self._watchdog = None
        now = asyncio.get_running_loop().time()
        busy = False
        for conn in list(self._connections):
            if conn.busy:
                if conn.deadline <= now:
                    conn.time_out()
                else:
                    busy = True
        if busy:
            self._arm_watchdog()

    # the pool: every open or opening connection holds one of ``max_connections`` slots

    async def _acquire(self, deadline: float) -> _Connection:
        """A connection to use: idle (LIFO), else a new one, else the next one freed (FIFO)."""
        if self._idle:
            conn = self._idle.pop()
            conn.idle = False
            return conn
        if self._open < self._max:
            self._open += 1
            return await self._connect(deadline)
        got = await self._wait_turn(deadline)
        return got if got is not None else await self._connect(deadline)

    async def _wait_turn(self, deadline: float) -> _Connection | None:
        """Queue for a connection; None hands over a free slot to open a new one in."""
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back(waiter.result())  # handed over just as we gave up
            if isinstance(exc, TimeoutError):
                raise HttpTimeout(
                    f"timeout: no free connection within {self.timeout_s:g} s"
                ) from None
            raise

    async def _connect(self, deadline: float) -> _Connection:
        """Open a connection in a slot the caller already holds; frees the slot on failure."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), self._host, self._port
                )
        except TimeoutError:
            self._free_slot()
            raise HttpTimeout(f"timeout connecting to {self._host}:{self._port}") from None
        except OSError as exc:
            self._free_slot()
            raise HttpError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        except BaseException:
            self._free_slot()
            raise
        if self._closed:
            conn.abort()
            self._free_slot()
            raise HttpError("client closed")
        return conn

    def _release(self, conn: _Connection) -> None:
        """A request is over: keep the connection if it can carry another, else free its slot."""
        if conn.reusable and not self._closed:
            self._give_back(conn)
        else:
            conn.abort()
            self._free_slot()

    def _give_back(self, conn: _Connection | None) -> None:
        """Hand a live connection (or a bare slot, as None) to the next waiter, else keep
        the connection idle (or free the slot)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            self._open -= 1
        else:
            conn.idle = True
            self._idle.append(conn)

    def _free_slot(self) -> None:
        self._give_back(None)

    def _idle_lost(self, conn: _Connection) -> None:
        """An idle connection was closed by the server: forget it and free its slot."""
        conn.idle = False
        self._idle.remove(conn)
        self._free_slot()


def _settle(waiter: asyncio.Future[tuple[int, bytes]], outcome: Outcome) -> None:
    """Resolve ``waiter`` with ``outcome``, unless its caller has given up on it."""
    if waiter.done():
        return
    if isinstance(outcome, HttpError):
        waiter.set_exception(outcome)
    else:
        waiter.set_result(outcome)


def _origin(url: str) -> tuple[str, int, str]:
    """(host, port, Host header value) of an ``http://host[:port]`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"only http:// URLs are supported, not {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"expected http://host:port with nothing after it, not {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    port = parts.port or 80
    authority = f"[{host}]" if ":" in host else host
    return host, port, authority if port == 80 else f"{authority}:{port}"
