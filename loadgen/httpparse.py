"""Incremental parsing of HTTP/1.1 responses for ``loadgen.httpclient``.

Fed whatever ``data_received`` hands over: Content-Length, chunked (extensions and
trailers) or read-until-close bodies, ``Connection: close``, HTTP/1.0 keep-alive rules,
204/304 and interim 1xx responses. The whole head is checked with one compiled regex, and
not again when the next response's head is the same bytes, as a server's mostly are.
"""

from __future__ import annotations

import re
from typing import Final

MAX_HEAD_BYTES: Final = 64 * 1024
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
_MAX_CHUNK_LINE: Final = 1024

# The whole head in one C-speed match: status line, then ``name: value`` lines.
_HEAD: Final = re.compile(
    rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?:[ \t][^\r\n]*)?"
    rb"((?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]*:[^\r\n]*)*)"
)
# The only fields the client acts on: they decide framing and whether to reuse the connection.
_FRAMING: Final = re.compile(
    rb"\r\n(content-length|transfer-encoding|connection)[ \t]*:([^\r\n]*)", re.IGNORECASE
)
_FOLD: Final = re.compile(rb"\r\n[ \t]+")
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,15}")


class HttpError(Exception):
    """The request got no HTTP response: refused, reset, timed out or a malformed reply."""


# --- response parsing ---------------------------------------------------------------------

_S_HEAD, _S_BODY, _S_CHUNK_SIZE, _S_CHUNK_DATA, _S_TRAILER, _S_UNTIL_CLOSE, _S_DONE = range(7)


class ResponseParser:
    """Incremental parser for one HTTP/1.x response at a time.

    ``feed`` takes bytes in pieces of any size and returns True once the response is whole;
    ``eof`` says the peer closed, which ends a read-until-close body. Malformed input raises
    HttpError. ``reset`` readies it for the next response on the same connection.
    """

    __slots__ = (
        "_body",
        "_buf",
        "_known_framing",
        "_known_head",
        "_remaining",
        "_state",
        "keep_alive",
        "status",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        # The last final response head parsed, and (status, keep-alive, state, remaining).
        self._known_head: bytes | None = None
        self._known_framing = (0, True, _S_HEAD, 0)
        self.reset()

    def reset(self) -> None:
        self._buf.clear()
        self._body: bytes | bytearray = bytearray()
        self._state = _S_HEAD
        self._remaining = 0
        self.status = 0
        self.keep_alive = True

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    @property
    def started(self) -> bool:
        """Whether any byte of the current response has arrived."""
        return bool(self._buf) or self._state != _S_HEAD

    @property
    def trailing(self) -> bool:
        """Bytes after a whole response: never legitimate without pipelining."""
        return bool(self._buf)

    def feed(self, data: bytes) -> bool:
        if self._state == _S_HEAD and not self._buf:
            end = data.find(b"\r\n\r\n")
            if end >= 0:  # the usual case: a whole head, likely the whole response, at once
                self._parse_head_bytes(data[:end])
                data = data[end + 4 :]
                if self._state == _S_BODY and len(data) == self._remaining:
                    self._body, self._remaining, self._state = data, 0, _S_DONE
                    return True
        self._buf += data
        while self._state != _S_DONE:
            before = (self._state, len(self._buf))
            self._step()
            if (self._state, len(self._buf)) == before:  # no progress: needs more bytes
                return False
        return True

    def eof(self) -> bool:
        """The peer closed: True if that completes the response (read-until-close body)."""
        if self._state == _S_UNTIL_CLOSE:
            self._state = _S_DONE
            self.keep_alive = False
            return True
        return False

    def _step(self) -> None:
        state = self._state
        if state == _S_HEAD:
            self._parse_head()
        elif state == _S_BODY:
            self._remaining -= self._take(min(self._remaining, len(self._buf)))
            if not self._remaining:
                self._state = _S_DONE
        elif state == _S_CHUNK_SIZE:
            self._parse_chunk_size()
        elif state == _S_CHUNK_DATA:
            self._read_chunk()
        elif state == _S_TRAILER:
            self._skip_trailer()
        else:  # _S_UNTIL_CLOSE
            self._take(len(self._buf))

    def _parse_head(self) -> None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise HttpError(f"response head exceeds {MAX_HEAD_BYTES} bytes")
            return
        head = bytes(buf[:end])
        del buf[: end + 4]
        self._parse_head_bytes(head)

    def _parse_head_bytes(self, raw: bytes) -> None:
        if raw == self._known_head:
            self.status, self.keep_alive, self._state, self._remaining = self._known_framing
            return
        head = raw
        if b"\r\n " in head or b"\r\n\t" in head:  # obsolete line folding: unfold (RFC 9112)
            head = _FOLD.sub(b" ", head)
        match = _HEAD.fullmatch(head)
        if match is None:
            raise HttpError(f"malformed response head {head[:120]!r}")
        status = int(match[2])
        if status < 200:  # an interim response (100 Continue...): the real one follows
            if status == 101:
                raise HttpError("unexpected 101 Switching Protocols")
            return
        framing = (status, *_framing(status, match[1] == b"1", _FRAMING.findall(match[3])))
        self.status, self.keep_alive, self._state, self._remaining = framing
        self._known_head, self._known_framing = raw, framing

    def _parse_chunk_size(self) -> None:
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > _MAX_CHUNK_LINE:
                raise HttpError("chunk-size line too long")
            return
        line = bytes(buf[:end])
        digits = line.split(b";", 1)[0].strip(b" \t")
        if not _HEX.fullmatch(digits):
            raise HttpError(f"bad chunk size line {line[:40]!r}")
        del buf[: end + 2]
        self._remaining = int(digits, 16)
        self._state = _S_CHUNK_DATA if self._remaining else _S_TRAILER

    def _read_chunk(self) -> None:
        """The chunk's data, then the CRLF that ends it."""
        if self._remaining:
            self._remaining -= self._take(min(self._remaining, len(self._buf)))
            if self._remaining:
                return
        buf = self._buf
        if len(buf) < 2:
            return
        if buf[:2] != b"\r\n":
            raise HttpError("chunk data not followed by CRLF")
        del buf[:2]
        self._state = _S_CHUNK_SIZE

    def _skip_trailer(self) -> None:
        """Trailer fields after the last chunk carry nothing this client needs."""
        buf = self._buf
        if buf[:2] == b"\r\n":
            del buf[:2]
            self._state = _S_DONE
            return
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            del buf[: end + 4]
            self._state = _S_DONE
        elif len(buf) > MAX_HEAD_BYTES:
            raise HttpError(f"trailer section exceeds {MAX_HEAD_BYTES} bytes")

    def _take(self, count: int) -> int:
        """Move ``count`` buffered bytes into the body; returns ``count``."""
        if len(self._body) + count > MAX_BODY_BYTES:
            raise HttpError(f"response body exceeds {MAX_BODY_BYTES} bytes")
        if count:
            self._body += self._buf[:count]
            del self._buf[:count]
        return count


def _framing(status: int, http11: bool, fields: list[tuple[bytes, bytes]]) -> tuple[bool, int, int]:
    """(keep-alive, parser state, body bytes remaining): how the body is delimited
    (RFC 9112 section 6.3) and whether the connection can carry another request."""
    length, coding, connection = _framing_fields(fields)
    if connection:
        tokens = {t.strip() for t in connection.lower().split(b",")}
        keep_alive = b"close" not in tokens if http11 else b"keep-alive" in tokens
    else:
        keep_alive = http11
    if status in (204, 304):
        return keep_alive, _S_DONE, 0
    if coding is not None:
        if length is not None:  # ambiguous framing: do not trust this connection again
            keep_alive = False
        last = coding.rsplit(b",", 1)[-1].strip().lower()
        return keep_alive, _S_CHUNK_SIZE if last == b"chunked" else _S_UNTIL_CLOSE, 0
    if length is not None:
        remaining = _content_length(length)
        return keep_alive, _S_BODY if remaining else _S_DONE, remaining
    return keep_alive, _S_UNTIL_CLOSE, 0


def _framing_fields(
    fields: list[tuple[bytes, bytes]],
) -> tuple[bytes | None, bytes | None, bytes]:
    """(Content-Length, Transfer-Encoding, Connection); repeated fields joined by commas."""
    length: bytes | None = None
    coding: bytes | None = None
    connection = b""
    for name, raw in fields:
        key, value = name.lower(), raw.strip(b" \t")
        if key == b"content-length":
            length = value if length is None else length + b"," + value
        elif key == b"transfer-encoding":
            coding = value if coding is None else coding + b"," + value
        else:
            connection += b"," + value
    return length, coding, connection


def _content_length(value: bytes) -> int:
    """Content-Length; repeated identical values (``5, 5``) are allowed, others are not."""
    if not value.isdigit():
        values = {v.strip(b" \t") for v in value.split(b",")}
        if len(values) != 1:
            raise HttpError(f"conflicting Content-Length {value[:80]!r}")
        value = values.pop()
        if not value.isdigit():
            raise HttpError(f"bad Content-Length {value[:80]!r}")
    if len(value) > 12:  # also keeps int() clear of its limit on digits
        raise HttpError(f"response body exceeds {MAX_BODY_BYTES} bytes")
    length = int(value)
    if length > MAX_BODY_BYTES:
        raise HttpError(f"response body exceeds {MAX_BODY_BYTES} bytes")
    return length
