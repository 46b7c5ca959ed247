"""A trivial HTTP/1.1 endpoint: every request gets 200 and a tiny AgentDispatch body.

It measures the load generator alone: pointed at this instead of an API node, the sender's
achieved rate shows what it can offer when the server costs next to nothing. A raw asyncio
Protocol on uvloop keeps the server's cost to about 10 us per request, kernel included, so
one core answers well over 50,000 requests/s.

    python -m loadgen.trivial --port 7990
"""

from __future__ import annotations

import asyncio
import sys
from typing import Final, cast

import click
import uvloop

# An encoded livekit AgentDispatch with id (field 1) "AD_trivial": enough for the sender to
# count the reply as an accepted dispatch.
REPLY_BODY: Final = b"\x0a\x0aAD_trivial"
_OK: Final = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/protobuf\r\n"
    b"Content-Length: %d\r\n\r\n" % len(REPLY_BODY) + REPLY_BODY
)
_BAD: Final = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_MAX_HEAD: Final = 64 * 1024
_MAX_BUFFER: Final = 1024 * 1024  # bodies are small protobufs; refuse anything huge


class _Trivial(asyncio.Protocol):
    """Answers each request (pipelined ones too) as soon as its body is in."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        replies = 0
        while True:
            size = _request_size(buf)
            if size is None or size > len(buf):
                break
            if size < 0:
                self._reject()
                return
            buf = buf[size:]
            replies += 1
        if len(buf) > _MAX_BUFFER:
            self._reject()
            return
        self._buf = buf
        if replies and self._transport is not None:
            self._transport.write(_OK * replies)

    def _reject(self) -> None:
        if self._transport is not None:
            self._transport.write(_BAD)
            self._transport.close()
        self._buf = b""


def _request_size(buf: bytes) -> int | None:
    """Bytes of the first whole request in ``buf``; None if its head is incomplete, -1 if
    it cannot be served (chunked body, bad Content-Length, oversized head)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return -1 if len(buf) > _MAX_HEAD else None
    head = buf[:end].lower()
    if b"\r\ntransfer-encoding:" in head:
        return -1
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return end + 4
    line_end = head.find(b"\r\n", at + 2)
    value = head[at + 17 : line_end if line_end >= 0 else len(head)].strip()
    if not value.isdigit() or len(value) > 9:
        return -1
    return end + 4 + int(value)


async def serve_trivial(host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """Start the endpoint; port 0 picks a free one (see ``server.sockets``)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(_Trivial, host, port, backlog=1024)


async def _serve_forever(host: str, port: int) -> None:
    server = await serve_trivial(host, port)
    bound = server.sockets[0].getsockname()
    print(f"trivial endpoint on http://{bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=7990, show_default=True)
def main(host: str, port: int) -> None:
    """A trivial HTTP/1.1 endpoint: every request gets 200 and a tiny AgentDispatch body."""
    try:
        uvloop.run(_serve_forever(host, port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
