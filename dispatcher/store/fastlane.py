"""The hot lane to Redis: auto-pipelined commands over one connection per node.

Every command issued during one turn of the event loop, by any coroutine, leaves in a single
socket write, and replies are matched to callers in order. A dispatch touches Redis from the
API node, the scheduler and the agent server several times; through redis-py each call costs
tens of microseconds of Python (pool checkout, packing, per-call writes), which a profile put
at the top of the dispatch path. Here a call is one packed command appended to a buffer
(``hiredis.pack_command``) and one future; replies are parsed by ``hiredis.Reader``.

Replies are raw RESP2 values as hiredis returns them (bytes, ints, lists, None). Error
replies become redis-py's exception classes (``NoScriptError``, ``ResponseError``), so callers
handle errors the same on both lanes. In a Redis Cluster a command goes to the primary that
owns its first key's slot; ``MOVED`` refreshes the slot map and retries, ``ASK`` retries once
on the named node. Blocking commands (``XREADGROUP BLOCK``) get a ``dedicated`` connection
so they never hold up the shared one.

Every command has a deadline: a connection whose oldest command has had no reply by then is
dropped and its callers fail with ``TimeoutError``, so a stalled network surfaces as an error
instead of a wait without end. The lane counts connections that dropped without being closed
(``disconnects``): a scheduler reads it as evidence that Redis was unreachable for a while.

A ``rediss://`` URL's ``ssl_*`` query options are read as redis-py reads them (``tls.py``),
so both lanes trust, verify and present the same certificates; the SSL context is built
once per URL, when the lane is made, and serves every node.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlparse

import hiredis
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dispatcher.metrics.counts import REDIS
from dispatcher.store.tls import tls_context

Arg = str | bytes | int | float
Address = tuple[str, int]

_MAX_REDIRECTS = 5
_CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 5.0  # a reply later than this means the connection is stalled


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect: from the deployment's Redis URL. ``tls`` is the SSL
    context of a ``rediss://`` URL, shared by every connection and every cluster node."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: ssl.SSLContext | None = None

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """Raises ``ValueError`` for a URL, or a TLS option, that cannot be used."""
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss"):
            # not the URL itself: it may carry a password
            raise ValueError(f"unsupported Redis URL scheme {parsed.scheme!r} (redis, rediss)")
        path = parsed.path.lstrip("/")
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 6379,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            db=int(path) if path else 0,
            tls=tls_context(parsed.scheme, parsed.query),
        )

    def at(self, address: Address) -> Endpoint:
        """The same credentials and TLS context at another node (cluster)."""
        return dataclasses.replace(self, host=address[0], port=address[1], db=0)


class Redirect(Exception):
    """A cluster redirection reply: the slot lives (or is moving) elsewhere."""

    def __init__(self, kind: str, address: Address) -> None:
        super().__init__(f"{kind} {address[0]}:{address[1]}")
        self.kind = kind
        self.address = address


def reply_error(message: str) -> Exception:
    """The exception for an error reply, as redis-py would raise it."""
    if message.startswith(("MOVED ", "ASK ")):
        kind, _slot, where = message.split(" ", 2)
        host, _, port = where.rpartition(":")
        return Redirect(kind, (host, int(port)))
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


class Connection(asyncio.Protocol):
    """One socket: commands are buffered and written once per loop turn, replies matched
    to waiting futures in order."""

    def __init__(
        self, timeout_s: float = COMMAND_TIMEOUT_S, on_lost: Callable[[], None] | None = None
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader()
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._deadlines: collections.deque[float] = collections.deque()  # loop time, per waiter
        self._watchdog: asyncio.TimerHandle | None = None
        self._wait: tuple[asyncio.Future[Any], int, int] | None = None  # (WAIT, place, n)
        self._timeout_s = timeout_s
        self._on_lost = on_lost
        self._out: list[bytes] = []
        self._flush_pending = False
        self.closed = False

    @classmethod
    async def open(
        cls,
        endpoint: Endpoint,
        timeout_s: float = COMMAND_TIMEOUT_S,
        on_lost: Callable[[], None] | None = None,
    ) -> Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(_CONNECT_TIMEOUT_S):
            try:
                _, conn = await loop.create_connection(
                    lambda: cls(timeout_s, on_lost), endpoint.host, endpoint.port, ssl=endpoint.tls
                )
            except ssl.SSLError as exc:  # as redis-py words it: the node, then the reason
                where = f"{endpoint.host}:{endpoint.port}"
                raise RedisConnectionError(f"TLS handshake with {where} failed: {exc}") from exc
            try:
                await conn.handshake(endpoint)
            except BaseException:  # cancelled or refused: the socket must not outlive it
                conn.close()
                raise
        return conn

    async def handshake(self, endpoint: Endpoint) -> None:
        if endpoint.password is not None:
            auth = [endpoint.username] if endpoint.username else []
            await self.execute("AUTH", *auth, endpoint.password)
        if endpoint.db:
            await self.execute("SELECT", endpoint.db)

    def execute(self, *args: Arg, extra_s: float = 0.0) -> asyncio.Future[Any]:
        """Queue one command; the future resolves with its reply or error. ``extra_s`` adds
        to the deadline (a blocking read's own wait)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        if self.closed:
            REDIS.failed("fast", "connection_lost")
            future.set_exception(RedisConnectionError("connection to Redis is closed"))
            return future
        self._out.append(hiredis.pack_command(args))  # type: ignore[arg-type]
        self._waiters.append(future)
        deadline = self._loop.time() + self._timeout_s + extra_s
        self._deadlines.append(deadline)
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(deadline, self._check_deadline)
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)
        return future

    def wait_replicas(self, replicas: int, timeout_ms: int) -> asyncio.Future[Any]:
        """``WAIT``: how many replicas have every write this connection sent before it.
        Callers whose writes all went before the last WAIT still queued share that one."""
        if self._wait is not None and self._wait[1:] == (len(self._out), replicas):
            return self._wait[0]
        future = self.execute("WAIT", replicas, timeout_ms, extra_s=timeout_ms / 1000)
        self._wait = (future, len(self._out), replicas)
        return future

    def _check_deadline(self) -> None:
        """Replies come in order, so only the oldest command's deadline matters."""
        self._watchdog = None
        if not self._deadlines or self.closed:
            return
        if self._deadlines[0] > self._loop.time():
            self._watchdog = self._loop.call_at(self._deadlines[0], self._check_deadline)
            return
        REDIS.failed("fast", "timeout", len(self._waiters))
        self._fail_all(RedisTimeoutError(f"Redis did not answer within {self._timeout_s:g} s"))
        self.closed = True
        if self._transport is not None:
            self._transport.abort()
        if self._on_lost is not None:
            self._on_lost()

    def _flush(self) -> None:
        self._flush_pending = False
        self._wait = None
        if self._transport is not None and self._out:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; both set TCP_NODELAY.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            future = self._waiters.popleft()
            self._deadlines.popleft()
            if future.done():
                continue  # the caller was cancelled; the reply is dropped in order
            if isinstance(reply, hiredis.ReplyError):
                REDIS.error_reply("fast", str(reply))
                future.set_exception(reply_error(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        unexpected = not self.closed
        self.closed = True
        self._transport = None
        if unexpected and self._waiters:
            REDIS.failed("fast", "connection_lost", len(self._waiters))
        self._fail_all(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))
        if unexpected and self._on_lost is not None:
            self._on_lost()

    def _fail_all(self, error: Exception) -> None:
        self._deadlines.clear()
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class FastLane:
    """Auto-pipelined commands to one node or to the primaries of a cluster."""

    def __init__(self, url: str, cluster: bool, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self._endpoint = Endpoint.from_url(url)
        self._cluster = cluster
        self._timeout_s = timeout_s
        self.disconnects = 0  # connections that dropped or stalled (not closed by us)
        self._connections: dict[Address, Connection] = {}
        self._connecting: dict[Address, asyncio.Task[Connection]] = {}
        self._slots: list[Address] = []
        self._nodes: set[Address] = set()  # every node a slot map named: refresh seeds
        self._dedicated: set[Connection] = set()
        self._closed = False

    def send(self, args: tuple[Arg, ...], key: str | bytes | None = None) -> asyncio.Future[Any]:
        """Queue one command now, without a coroutine when the route is known (the common
        case); the future fails with ``Redirect`` only when the slot has moved, which
        ``finish`` follows."""
        key = key if key is not None else _key_of(args)
        conn = self._connections.get(self._known_route(key)) if self._routable() else None
        if conn is not None and not conn.closed:
            return conn.execute(*args)
        return asyncio.ensure_future(self._execute(args, key))

    async def finish(self, future: asyncio.Future[Any], args: tuple[Arg, ...]) -> Any:
        """The reply of a ``send``, following a cluster redirection if there was one."""
        try:
            return await future
        except Redirect as redirect:
            return await self._follow(redirect, args)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            self._slots = []  # a failover may have moved the slot: look again next time
            raise

    async def execute(self, *args: Arg, key: str | bytes | None = None) -> Any:
        """Send one command; ``key`` routes it in a cluster (defaults to the first arg)."""
        return await self.finish(self.send(args, key), args)

    async def _execute(self, args: tuple[Arg, ...], key: str | bytes) -> Any:
        try:
            conn = await self._connection(await self._route(key))
        except OSError:
            self.forget_slots()  # the node may be gone for good (a failover)
            raise
        return await conn.execute(*args)

    async def _follow(self, redirect: Redirect, args: tuple[Arg, ...]) -> Any:
        for _ in range(_MAX_REDIRECTS):
            try:
                if redirect.kind == "ASK":
                    return await self._ask(redirect.address, args)
                await self._refresh_slots()
                return await (await self._connection(redirect.address)).execute(*args)
            except Redirect as again:
                redirect = again
        raise RedisConnectionError(f"too many cluster redirections for {args[0]!r}")

    def _routable(self) -> bool:
        """Whether a key's node is known without asking Redis (a cluster's slot map)."""
        return not self._cluster or bool(self._slots)

    def _known_route(self, key: str | bytes) -> Address:
        if not self._cluster:
            return (self._endpoint.host, self._endpoint.port)
        return self._slots[key_slot(key.encode() if isinstance(key, str) else key)]

    async def wait_replicas(self, key: str, replicas: int, timeout_ms: int) -> int:
        """How many replicas of ``key``'s node have this lane's writes to it. It asks on the
        connection the writes went through; if that one dropped since, it cannot tell and
        raises."""
        conn = self._connections.get(self._known_route(key)) if self._routable() else None
        if conn is None or conn.closed:
            raise RedisConnectionError("the connection of the write is gone; retry the call")
        return int(await asyncio.shield(conn.wait_replicas(replicas, timeout_ms)))

    async def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        return await self.execute("EVALSHA", sha, len(keys), *keys, *args, key=_first(keys))

    def dedicated(self, key: str) -> Dedicated:
        """A connection of its own (for blocking reads) to the node owning ``key``."""
        return Dedicated(self, key)

    async def open_dedicated(self, key: str) -> Connection:
        conn = self._adopt(await self._open_at(await self._route(key)))
        self._dedicated.add(conn)
        return conn

    def forget_slots(self) -> None:
        """The slot map is stale (a redirection): look it up again before the next call."""
        self._slots = []

    def forget(self, conn: Connection) -> None:
        self._dedicated.discard(conn)
        conn.close()

    async def aclose(self) -> None:
        self._closed = True
        for task in self._connecting.values():
            task.cancel()
        for conn in [*self._connections.values(), *self._dedicated]:
            conn.close()
        self._connections.clear()
        self._dedicated.clear()

    # --- routing ----------------------------------------------------------------------

    async def _route(self, key: str | bytes) -> Address:
        if not self._routable():
            await self._refresh_slots()
        return self._known_route(key)

    async def _ask(self, address: Address, args: tuple[Arg, ...]) -> Any:
        """A slot being migrated: ask the importing node once, behind ASKING."""
        target = await self._connection(address)
        asking = target.execute("ASKING")
        reply = target.execute(*args)
        await asking
        return await reply

    async def _refresh_slots(self) -> None:
        """The slot map from the first node that answers: after a failover, the node
        the map was last read from may be gone for good."""
        failure: Exception | None = None
        for seed in self._seeds():
            try:
                reply = await (await self._connection(seed)).execute("CLUSTER", "SLOTS")
            except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
                failure = exc
                continue
            self._slots = self._slot_table(reply, seed)
            return
        raise RedisConnectionError(f"no cluster node answered CLUSTER SLOTS: {failure!r}")

    def _seeds(self) -> list[Address]:
        """Open connections first, then every node seen before, then the URL's."""
        seeds = dict.fromkeys(a for a, c in self._connections.items() if not c.closed)
        seeds.update(dict.fromkeys(self._nodes))
        seeds[(self._endpoint.host, self._endpoint.port)] = None
        return list(seeds)

    def _slot_table(self, reply: list[Any], seed: Address) -> list[Address]:
        table: list[Address] = [seed] * 16384
        for start, end, primary, *replicas in reply:
            nodes = [(n[0].decode() or seed[0], int(n[1])) for n in (primary, *replicas)]
            self._nodes.update(nodes)
            table[start : end + 1] = [nodes[0]] * (end - start + 1)
        return table

    def _endpoint_at(self, address: Address) -> Endpoint:
        return self._endpoint.at(address) if self._cluster else self._endpoint

    async def _connection(self, address: Address) -> Connection:
        conn = self._connections.get(address)
        if conn is not None and not conn.closed:
            return conn
        task = self._connecting.get(address)
        if task is None:
            task = asyncio.ensure_future(self._open(address))
            self._connecting[address] = task
            task.add_done_callback(lambda _t: self._connecting.pop(address, None))
        return await asyncio.shield(task)

    async def _open(self, address: Address) -> Connection:
        # Registered by the task itself, so a connection whose waiters were all cancelled
        # is still owned (and closed by ``aclose``) rather than left to the collector.
        replaces = address in self._connections  # only a dropped one stays in the map
        conn = self._adopt(await self._open_at(address))
        REDIS.reconnects += replaces
        self._connections[address] = conn
        return conn

    async def _open_at(self, address: Address) -> Connection:
        try:
            conn = await Connection.open(self._endpoint_at(address), self._timeout_s, self._lost)
        except Exception:
            REDIS.failed("fast", "connect")
            raise
        REDIS.connects += 1
        return conn

    def _lost(self) -> None:
        self.disconnects += 1
        REDIS.disconnects += 1
        self.forget_slots()  # a failover drops connections: read the slot map again

    def _adopt(self, conn: Connection) -> Connection:
        """A connection that finished opening; one that outlived ``aclose`` is shut."""
        if self._closed:
            conn.close()
            raise RedisConnectionError("the Redis client is closed")
        return conn


class Dedicated:
    """A connection used by one caller at a time, reopened when it drops; blocking commands
    wait here without delaying anyone else's."""

    def __init__(self, lane: FastLane, key: str) -> None:
        self._lane = lane
        self._key = key
        self._conn: Connection | None = None

    async def execute(self, *args: Arg, extra_s: float = 0.0) -> Any:
        """``extra_s``: how long the command itself may wait in Redis (``BLOCK``). A slot
        that moved (a failover) is followed once, on a connection to its new owner."""
        for _ in range(2):
            if self._conn is None or self._conn.closed:
                REDIS.reconnects += self._conn is not None  # ``close`` forgets its own
                self._conn = await self._lane.open_dedicated(self._key)
            try:
                return await self._conn.execute(*args, extra_s=extra_s)
            except Redirect:
                self.close()
                self._lane.forget_slots()
        raise RedisConnectionError(f"the slot of {self._key!r} is moving; try again")

    def close(self) -> None:
        if self._conn is not None:
            self._lane.forget(self._conn)
            self._conn = None


def stream_entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of a one-stream ``XREAD``/``XREADGROUP`` reply (None when it timed out)."""
    return entries_of(reply[0][1]) if reply else []


def entries_of(raw: list[Any]) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """``[[id, [field, value, ...]], ...]`` as (id, {field: value}); a deleted entry's
    fields are nil and it comes back with no fields."""
    return [(entry_id, _pairs(fields)) for entry_id, fields in raw]


async def ensure_group(fast: FastLane, stream: str, group: str) -> None:
    """The consumer group on ``stream`` (and the stream), unless it exists."""
    try:
        await fast.execute("XGROUP", "CREATE", stream, group, "0", "MKSTREAM", key=stream)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _pairs(flat: list[bytes] | None) -> dict[bytes, bytes]:
    if not flat:
        return {}
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _first(keys: Sequence[str]) -> str:
    return keys[0] if keys else ""


def _key_of(args: tuple[Arg, ...]) -> str | bytes:
    """The key of a plain command: its first argument after the name."""
    key = args[1] if len(args) > 1 else ""
    return key if isinstance(key, str | bytes) else str(key)
