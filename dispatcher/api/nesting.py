"""Bound the nesting of JSON before a recursive decoder sees it.

The JSON decoders we use (``json``, msgspec, protobuf's ``json_format``) recurse once per
level and fail with ``RecursionError`` near 1,000 levels: a request nested that deep would
cost a traceback instead of an answer. No message of ours nests more than a few levels, so
anything deeper than ``MAX_DEPTH`` is refused before decoding.

The check costs two ``bytes.count`` calls on the usual body: only a body with more brackets
than the limit (outside or inside strings) is scanned for its real depth.
"""

from __future__ import annotations

import re
from typing import Final

MAX_DEPTH: Final = 64

_OPENERS: Final = (b"[", b"{")
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET: Final = re.compile(rb"[\[\]{}]")


def too_deep(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text ``data`` nests arrays and objects more than ``limit`` deep."""
    if data.count(_OPENERS[0]) + data.count(_OPENERS[1]) <= limit:
        return False
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', data)):
        if match.group() in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False
