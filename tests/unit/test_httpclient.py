"""The lean HTTP client without sockets: the response parser fed whole, byte by byte and in
random splits; request encoding; one connection's protocol against a fake transport."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from loadgen.httpclient import (
    HttpClient,
    HttpError,
    HttpTimeout,
    ResponseParser,
    _Connection,
    _origin,
    _StaleConnection,
)
from loadgen.httpparse import MAX_BODY_BYTES, MAX_HEAD_BYTES

CL_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/protobuf\r\nContent-Length: 5\r\n\r\nhello"

# (id, raw response, (status, body, keep_alive))
RESPONSES: list[tuple[str, bytes, tuple[int, bytes, bool]]] = [
    ("content-length", CL_OK, (200, b"hello", True)),
    (
        "lower-case-and-spacing",
        b"HTTP/1.1 201 Created\r\ncontent-length:3   \r\nx-y:  z\r\n\r\nabc",
        (201, b"abc", True),
    ),
    ("empty-body", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", (200, b"", True)),
    ("no-reason", b"HTTP/1.1 404\r\nContent-Length: 2\r\n\r\nno", (404, b"no", True)),
    (
        "chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\n\r\n",
        (200, b"hello, world", True),
    ),
    (
        "chunked-trailer-uppercase-hex",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"A\r\n0123456789\r\n0\r\nX-Checksum: 1\r\nX-More: 2\r\n\r\n",
        (200, b"0123456789", True),
    ),
    (
        "connection-close",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        (200, b"ok", False),
    ),
    (
        "connection-close-among-tokens",
        b"HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n",
        (200, b"", False),
    ),
    ("http10-closes", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", (200, b"ok", False)),
    (
        "http10-keep-alive",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
        (200, b"ok", True),
    ),
    ("no-content", b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", (204, b"", True)),
    (
        "interim-100",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        (200, b"x", True),
    ),
]

MALFORMED: list[tuple[str, bytes]] = [
    ("not-http", b"SSH-2.0-OpenSSH\r\n\r\n"),
    ("http2-preface", b"HTTP/2 200\r\n\r\n"),
    ("short-status", b"HTTP/1.1 20 OK\r\n\r\n"),
    ("status-below-100", b"HTTP/1.1 099 Odd\r\n\r\n"),
    ("huge-length", b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n"),
    ("header-without-colon", b"HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok"),
    ("bad-length", b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n"),
    ("conflicting-lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok"),
    ("bad-chunk-size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ("chunk-size-sign", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\n"),
    ("chunk-missing-crlf", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX"),
    ("switching-protocols", b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
    # What RFC 9112 lets a recipient refuse, llhttp refuses: a response framed two ways may
    # be a smuggling attempt, and none of our servers sends one.
    ("obs-fold", b"HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\nContent-Length: 1\r\n\r\nx"),
    (
        "repeated-length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    ),
    (
        "length-and-chunked",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
    ),
]


def feed_pieces(parser: ResponseParser, raw: bytes, sizes: list[int]) -> None:
    """Feed ``raw`` in pieces of ``sizes``; the parser must say complete on the last only."""
    assert sum(sizes) == len(raw)
    at = 0
    for index, size in enumerate(sizes):
        complete = parser.feed(raw[at : at + size])
        at += size
        assert complete == (index == len(sizes) - 1), f"complete={complete} at byte {at}"


def random_sizes(total: int, rng: random.Random) -> list[int]:
    sizes: list[int] = []
    while total:
        size = min(total, rng.randint(1, 7))
        sizes.append(size)
        total -= size
    return sizes


def outcome(parser: ResponseParser) -> tuple[int, bytes, bool]:
    return parser.status, parser.body, parser.keep_alive


# --- the parser ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [r[1:] for r in RESPONSES], ids=[r[0] for r in RESPONSES]
)
def test_parses_whole(raw: bytes, expected: tuple[int, bytes, bool]) -> None:
    parser = ResponseParser()
    feed_pieces(parser, raw, [len(raw)])
    assert outcome(parser) == expected
    assert not parser.trailing


@pytest.mark.parametrize(
    ("raw", "expected"), [r[1:] for r in RESPONSES], ids=[r[0] for r in RESPONSES]
)
def test_parses_byte_by_byte(raw: bytes, expected: tuple[int, bytes, bool]) -> None:
    parser = ResponseParser()
    feed_pieces(parser, raw, [1] * len(raw))
    assert outcome(parser) == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [r[1:] for r in RESPONSES], ids=[r[0] for r in RESPONSES]
)
def test_parses_random_splits(raw: bytes, expected: tuple[int, bytes, bool]) -> None:
    rng = random.Random(raw)
    for _ in range(20):
        parser = ResponseParser()
        feed_pieces(parser, raw, random_sizes(len(raw), rng))
        assert outcome(parser) == expected


def test_head_whole_body_split() -> None:
    """The head in one piece and the body later: the single-piece shortcut hands over."""
    parser = ResponseParser()
    assert not parser.feed(CL_OK[:-3])
    assert parser.feed(CL_OK[-3:])
    assert outcome(parser) == (200, b"hello", True)


def test_reset_parses_the_next_response() -> None:
    parser = ResponseParser()
    for raw, expected in [(r[1], r[2]) for r in RESPONSES] * 2:
        parser.reset()
        feed_pieces(parser, raw, [len(raw)])
        assert outcome(parser) == expected


def test_body_until_close() -> None:
    """No Content-Length and no chunking: the body runs until the server closes."""
    parser = ResponseParser()
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, part two"
    for byte in range(len(raw)):
        assert not parser.feed(raw[byte : byte + 1])
    assert parser.eof()
    assert outcome(parser) == (200, b"part one, part two", False)


def test_a_transfer_coding_other_than_chunked_runs_until_close() -> None:
    parser = ResponseParser()
    assert not parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz")
    assert parser.eof()
    assert outcome(parser) == (200, b"zz", False)


def test_eof_mid_chunked_body_does_not_complete() -> None:
    parser = ResponseParser()
    assert not parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
    assert not parser.eof()


def test_eof_mid_response_does_not_complete() -> None:
    parser = ResponseParser()
    assert not parser.feed(CL_OK[:-1])
    assert not parser.eof()
    assert not ResponseParser().eof()


def test_started_once_any_byte_arrives() -> None:
    parser = ResponseParser()
    assert not parser.started
    parser.feed(b"H")
    assert parser.started


def test_trailing_bytes_are_flagged() -> None:
    parser = ResponseParser()
    assert parser.feed(CL_OK + b"HTTP/1.1 200")
    assert parser.trailing


@pytest.mark.parametrize("raw", [r[1] for r in MALFORMED], ids=[r[0] for r in MALFORMED])
def test_malformed_raises(raw: bytes) -> None:
    with pytest.raises(HttpError):
        ResponseParser().feed(raw)
    parser = ResponseParser()
    with pytest.raises(HttpError):
        for byte in range(len(raw)):
            parser.feed(raw[byte : byte + 1])


def test_oversized_head_raises() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(HttpError, match="head exceeds"):
        parser.feed(b"X-Pad: " + b"a" * MAX_HEAD_BYTES)


def test_a_body_past_the_bound_raises_from_its_length_or_as_it_grows() -> None:
    too_long = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1)
    with pytest.raises(HttpError, match="body exceeds"):
        ResponseParser().feed(too_long)
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % (1024 * 1024) + b"x" * (1024 * 1024) + b"\r\n"
    with pytest.raises(HttpError, match="body exceeds"):
        for _ in range(MAX_BODY_BYTES // (1024 * 1024) + 1):
            parser.feed(chunk)


# --- URL and request encoding -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:7880", ("127.0.0.1", 7880, "127.0.0.1:7880")),
        ("http://api.local/", ("api.local", 80, "api.local")),
        ("http://[::1]:8080", ("::1", 8080, "[::1]:8080")),
    ],
)
def test_origin(url: str, origin: tuple[str, int, str]) -> None:
    assert _origin(url) == origin


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1", "http://127.0.0.1:80/twirp", "http://u:p@h", "http://:80", "h:1"]
)
def test_bad_url(url: str) -> None:
    with pytest.raises(ValueError):
        HttpClient(url)


def test_request_is_one_buffer_with_content_length() -> None:
    client = HttpClient("http://127.0.0.1:7880")
    headers = [("Authorization", "Bearer t"), ("Content-Type", "application/protobuf")]
    assert client._encode("/twirp/x", b"\x0a\x01a", headers) == (
        b"POST /twirp/x HTTP/1.1\r\nHost: 127.0.0.1:7880\r\n"
        b"Authorization: Bearer t\r\nContent-Type: application/protobuf\r\n"
        b"Content-Length: 3\r\n\r\n\x0a\x01a"
    )
    assert client._encode("/twirp/x", b"", []) == (
        b"POST /twirp/x HTTP/1.1\r\nHost: 127.0.0.1:7880\r\nContent-Length: 0\r\n\r\n"
    )


@pytest.mark.parametrize(
    "headers",
    [[("X-A", "v\r\nInjected: 1")], [("X-A", "v\n")], [("X-A\r", "v")], [("X-A", "\u2603")]],
)
def test_header_injection_and_non_latin1_rejected(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError):
        HttpClient("http://127.0.0.1:1")._encode("/", b"", headers)


@pytest.mark.parametrize("path", ["twirp", "/a b", "/a\r\nX: 1"])
def test_bad_path_rejected(path: str) -> None:
    with pytest.raises(ValueError, match="bad request path"):
        HttpClient("http://127.0.0.1:1")._encode(path, b"", [])


# --- one connection against a fake transport --------------------------------------------------


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def connection() -> tuple[_Connection, FakeTransport]:
    conn = _Connection(HttpClient("http://127.0.0.1:1"))
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport


def reply_of(future: asyncio.Future[tuple[int, bytes]]) -> tuple[int, bytes]:
    assert future.done()
    return future.result()


async def test_one_write_per_request_and_byte_by_byte_reply() -> None:
    conn, transport = connection()
    for round_ in range(2):
        reply = conn.send(b"REQUEST", deadline=1e12)
        assert transport.written[round_] == b"REQUEST"
        for byte in range(len(CL_OK) - 1):
            conn.data_received(CL_OK[byte : byte + 1])
            assert not reply.done()
        conn.data_received(CL_OK[-1:])
        assert reply_of(reply) == (200, b"hello")
        assert conn.reusable
    assert len(transport.written) == 2
    assert not transport.closed


async def test_connection_close_reply_closes() -> None:
    conn, transport = connection()
    reply = conn.send(b"REQUEST", deadline=1e12)
    conn.data_received(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert reply_of(reply) == (200, b"")
    assert transport.closed
    assert not conn.reusable


async def test_until_close_reply_completes_on_eof() -> None:
    conn, _ = connection()
    reply = conn.send(b"REQUEST", deadline=1e12)
    conn.data_received(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    assert not reply.done()
    conn.eof_received()
    assert reply_of(reply) == (200, b"all of it")
    assert not conn.reusable


async def test_eof_before_reply_on_fresh_connection_is_not_stale() -> None:
    conn, _ = connection()
    reply = conn.send(b"REQUEST", deadline=1e12)
    conn.eof_received()
    error = reply.exception()
    assert isinstance(error, HttpError) and not isinstance(error, _StaleConnection)
    assert "closed by server" in str(error)


async def test_close_before_reply_on_reused_connection_is_stale() -> None:
    """The server closed an idle keep-alive connection: retryable."""
    conn, _ = connection()
    conn.send(b"REQUEST", deadline=1e12)
    conn.data_received(CL_OK)
    reply = conn.send(b"REQUEST", deadline=1e12)
    conn.connection_lost(ConnectionResetError("reset by peer"))
    assert isinstance(reply.exception(), _StaleConnection)
    assert "reset by peer" in str(reply.exception())


async def test_lost_mid_reply_is_not_stale() -> None:
    conn, _ = connection()
    conn.send(b"REQUEST", deadline=1e12)
    conn.data_received(CL_OK)
    reply = conn.send(b"REQUEST", deadline=1e12)
    conn.data_received(CL_OK[:10])
    conn.connection_lost(None)
    error = reply.exception()
    assert isinstance(error, HttpError) and not isinstance(error, _StaleConnection)


async def test_send_on_closed_connection_fails_at_once() -> None:
    conn, transport = connection()
    conn.connection_lost(None)
    assert isinstance(conn.send(b"REQUEST", deadline=1e12).exception(), HttpError)
    assert transport.written == []


async def test_malformed_reply_aborts() -> None:
    conn, transport = connection()
    reply = conn.send(b"REQUEST", deadline=1e12)
    conn.data_received(b"garbage\r\n\r\n")
    assert isinstance(reply.exception(), HttpError)
    assert transport.aborted and conn.closed


async def test_unsolicited_bytes_close_an_idle_connection() -> None:
    conn, transport = connection()
    conn.data_received(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    assert transport.closed and conn.closed


async def test_extra_bytes_after_reply_make_it_unusable() -> None:
    conn, transport = connection()
    reply = conn.send(b"REQUEST", deadline=1e12)
    conn.data_received(CL_OK + b"HTTP/1.1 200 OK\r\n")
    assert reply_of(reply) == (200, b"hello")
    assert not conn.reusable and transport.closed


async def test_time_out_fails_and_aborts() -> None:
    conn, transport = connection()
    reply = conn.send(b"REQUEST", deadline=0.0)
    assert conn.busy
    conn.time_out()
    assert isinstance(reply.exception(), HttpTimeout)
    assert transport.aborted and not conn.busy
