"""A server-side WebSocket over a connection the API node's HTTP server handed over.

The framing, masking, control frames and closing handshake are the `websockets` library's
sans-I/O ``ServerProtocol``; this module only moves bytes between it and the transport and
turns its events into an async ``receive``. The HTTP server has already parsed the request
head, so the head is re-serialised for the library to check and answer (101 or an error).

Dead peers: the server pings every ``ping_interval_s`` and closes the connection when
nothing at all arrived for ``dead_after_s`` (a worker that is alive answers the pings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from websockets.frames import Frame, Opcode
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse
from websockets.protocol import State
from websockets.server import ServerProtocol

from dispatcher.api.http import Request

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 2 * 1024 * 1024  # as the reference
PING_INTERVAL_S = 10.0
DEAD_AFTER_S = 30.0


_DATA = (Opcode.BINARY, Opcode.TEXT, Opcode.CONT)


class ConnectionClosed(Exception):
    """The WebSocket is closed (by either side, or the connection was lost)."""


def handshake(request: Request) -> tuple[ServerProtocol, WsResponse]:
    """The library's verdict on an upgrade request: 101 with a protocol ready to take the
    connection, or an error response (400, 426, ...) to send instead."""
    protocol = ServerProtocol(max_size=MAX_MESSAGE_BYTES)
    lines = [f"GET {request.path} HTTP/1.1"]
    lines += [f"{name}: {request.headers[name]}" for name in request.headers]
    protocol.receive_data(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    events = protocol.events_received()
    if len(events) != 1 or not isinstance(events[0], WsRequest):
        return protocol, protocol.reject(400, "not a WebSocket upgrade request\n")
    return protocol, protocol.accept(events[0])


class WebSocket(asyncio.Protocol):
    """Binary and text messages in, binary messages out; ``receive`` raises
    ``ConnectionClosed`` once the socket is closed and every message before it was read."""

    def __init__(
        self,
        protocol: ServerProtocol,
        response: WsResponse,
        transport: asyncio.Transport,
        *,
        ping_interval_s: float = PING_INTERVAL_S,
        dead_after_s: float = DEAD_AFTER_S,
    ) -> None:
        self._ws = protocol
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._messages: deque[bytes | str] = deque()
        self._fragments: list[Frame] = []  # a message sent in several frames, so far
        self._arrived = asyncio.Event()
        self.closed = asyncio.Event()
        self._heard = self._loop.time()
        self._ping_interval_s, self._dead_after_s = ping_interval_s, dead_after_s
        transport.set_protocol(self)
        protocol.send_response(response)
        self._flush()
        self._pinger = self._loop.create_task(self._keepalive())

    # --- asyncio.Protocol -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._heard = self._loop.time()
        self._ws.receive_data(data)
        self._take_events()

    def eof_received(self) -> bool:
        self._ws.receive_eof()
        self._take_events()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._pinger.cancel()
        self.closed.set()
        self._arrived.set()

    # --- the socket -----------------------------------------------------------------------

    async def receive(self) -> bytes | str:
        while not self._messages:
            if self.closed.is_set() or self._ws.state is State.CLOSED:
                raise ConnectionClosed(self.close_code_text())
            self._arrived.clear()
            await self._arrived.wait()
        return self._messages.popleft()

    def send(self, data: bytes) -> None:
        if self._ws.state is not State.OPEN:
            raise ConnectionClosed(self.close_code_text())
        self._ws.send_binary(data)
        self._flush()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the connection ends when the peer answers, or
        after a moment when it does not."""
        if self._ws.state is State.OPEN:
            self._ws.send_close(code, reason)
            self._flush()
            self._loop.call_later(2.0, self.abort)
        elif not self.closed.is_set():
            self.abort()

    def abort(self) -> None:
        self._transport.abort()

    def close_code_text(self) -> str:
        code = self._ws.close_code
        return "connection lost" if code is None else f"closed with code {code}"

    def _take_events(self) -> None:
        for event in self._ws.events_received():
            if isinstance(event, Frame) and event.opcode in _DATA:
                self._fragments.append(event)
                if event.fin:
                    self._deliver()
        self._flush()  # pongs and the closing handshake's answer
        if self._ws.close_expected() or self._ws.state is State.CLOSED:
            self._arrived.set()
            if self._ws.state is State.CLOSED:
                self._transport.close()

    def _deliver(self) -> None:
        first, data = self._fragments[0], b"".join(bytes(f.data) for f in self._fragments)
        self._fragments = []
        self._messages.append(data if first.opcode is Opcode.BINARY else data.decode())
        self._arrived.set()

    def _flush(self) -> None:
        for chunk in self._ws.data_to_send():
            if chunk:
                self._transport.write(chunk)
            elif self._transport.can_write_eof():
                self._transport.write_eof()

    async def _keepalive(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while self._ws.state is State.OPEN:
                await asyncio.sleep(self._ping_interval_s)
                if self._loop.time() - self._heard > self._dead_after_s:
                    log.info("worker socket silent for %.0f s: closing it", self._dead_after_s)
                    self.abort()
                    return
                if self._ws.state is State.OPEN:
                    self._ws.send_ping(b"")
                    self._flush()
