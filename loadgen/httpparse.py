"""Incremental parsing of HTTP/1.1 responses for ``loadgen.httpclient``, over httptools'
``HttpResponseParser`` (llhttp, the parser of Node.js).

Fed whatever ``data_received`` hands over: Content-Length, chunked or read-until-close
bodies, ``Connection: close``, HTTP/1.0 keep-alive rules, 204/304 and interim 1xx
responses. llhttp is strict where RFC 9112 lets a recipient be: obsolete line folding, a
repeated Content-Length, or Content-Length next to Transfer-Encoding make a response
malformed. ``python -m loadgen.parse_bench`` measures it against the parser written by
hand that it replaced (BENCHMARKS.md, "Response parsing").
"""

from __future__ import annotations

from typing import Final

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpResponseParser,
)

MAX_HEAD_BYTES: Final = 64 * 1024
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
_NO_BODY: Final = frozenset((204, 304))


class HttpError(Exception):
    """The request got no HTTP response: refused, reset, timed out or a malformed reply."""


class _Trailing(Exception):
    """Bytes of another response after a whole one: parsing stops there."""


class ResponseParser:
    """Incremental parser for one HTTP/1.x response at a time.

    ``feed`` takes bytes in pieces of any size and returns True once the response is whole;
    ``eof`` says the peer closed, which ends a read-until-close body. Malformed input raises
    HttpError. ``reset`` readies it for the next response on the same connection.
    """

    __slots__ = (
        "_body",
        "_complete",
        "_framed",
        "_head_fed",
        "_in_body",
        "_parser",
        "_reusable",
        "keep_alive",
        "started",
        "status",
        "trailing",
    )

    def __init__(self) -> None:
        self._reusable = False
        self.reset()

    def reset(self) -> None:
        if not self._reusable:  # llhttp stops for good after an error or a closing response
            self._parser = HttpResponseParser(self)
        self._reusable = True
        self._body = b""
        self._complete = self._in_body = self._framed = False
        self._head_fed = 0
        self.status = 0
        self.keep_alive = True
        self.started = False  # any byte of the current response arrived
        self.trailing = False  # bytes after a whole response: never legitimate unpipelined

    @property
    def body(self) -> bytes:
        return self._body

    def feed(self, data: bytes) -> bool:
        if not data:
            return self._complete
        self.started = True
        try:
            self._parser.feed_data(data)
        except HttpParserCallbackError as exc:
            self._stopped(exc.__context__)
        except HttpParserUpgrade:
            self._reusable = False
            raise HttpError("unexpected 101 Switching Protocols") from None
        except HttpParserError as exc:
            self._reusable = False
            if not self._complete:
                raise HttpError(f"malformed response: {exc}") from None
            self.trailing = True  # not even a response after this one: out of step all the same
        if not self._in_body and not self._complete:  # llhttp bounds no head: we do
            self._head_fed += len(data)
            if self._head_fed > MAX_HEAD_BYTES:
                raise HttpError(f"response head exceeds {MAX_HEAD_BYTES} bytes")
        return self._complete

    def eof(self) -> bool:
        """The peer closed: True if that completes the response (read-until-close body)."""
        if self._in_body and not self._framed and not self._complete:
            self._complete, self.keep_alive, self._reusable = True, False, False
            return True
        return False

    def _stopped(self, cause: BaseException | None) -> None:
        """A callback below stopped the parser: at another response's start, or for cause."""
        self._reusable = False
        if isinstance(cause, _Trailing):
            self.trailing = True
        elif isinstance(cause, HttpError):
            raise cause from None
        else:
            raise HttpError(f"response parsing failed: {cause!r}") from cause

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._complete:
            raise _Trailing

    def on_header(self, name: bytes, value: bytes) -> None:
        # Only the framing matters here (for a read-until-close body and the size bound):
        # llhttp itself checks and applies Content-Length, Transfer-Encoding and Connection.
        if len(name) == 14 and name.lower() == b"content-length":
            self._framed = True
            if int(value) > MAX_BODY_BYTES:
                raise HttpError(f"response body exceeds {MAX_BODY_BYTES} bytes")
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            self._framed = value.rsplit(b",", 1)[-1].strip(b" \t").lower() == b"chunked"

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 100:
            raise HttpError(f"malformed response: status {status}")
        if status >= 200:  # else an interim response (100 Continue...): the real one follows
            self.status, self._in_body = status, True
            self._framed = self._framed or status in _NO_BODY

    def on_body(self, body: bytes) -> None:
        if len(self._body) + len(body) > MAX_BODY_BYTES:
            raise HttpError(f"response body exceeds {MAX_BODY_BYTES} bytes")
        self._body += body

    def on_message_complete(self) -> None:
        if not self._in_body:  # the interim response's end
            self._framed = False
            return
        self._complete = True
        self.keep_alive = self._reusable = self._parser.should_keep_alive()
