"""The bytes of the API node's HTTP responses: status line and headers, written by hand
(one ``write`` per response) rather than through a library's response objects."""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final, cast

_REASONS: Final = {s.value: s.phrase for s in HTTPStatus}


def target_of(head: bytes) -> bytes:
    """The request target in a head's request line (empty if it has none)."""
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    return parts[1] if len(parts) > 1 else b""


def busy_reply() -> bytes:
    body = b"too many connections: the node is at its connection limit; retry"
    return response_head(503, "text/plain; charset=utf-8", len(body), False) + body


def response_head(status: int, content_type: str, length: int, keep: bool) -> bytes:
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


def extra_headers(headers: tuple[tuple[str, str], ...]) -> bytes:
    """Header lines a handler added (cookies, redirects): CR and LF refused, so a value can
    never end the head early."""
    lines = []
    for name, value in headers:
        if "\r" in name + value or "\n" in name + value:
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    return b"".join(lines)


_date_cache: list[Any] = [0, b""]


def _date() -> bytes:
    """The ``Date`` header's value, formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, formatdate(now, usegmt=True).encode()]
    return cast(bytes, _date_cache[1])
