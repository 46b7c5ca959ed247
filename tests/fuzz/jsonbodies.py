"""JSON request bodies: protojson of drawn messages in either field casing, then edited:
wrong types, unknown fields, NUL and lone surrogates (as ``\\ud800`` escapes, or as the raw
bytes of an invalid encoding), huge strings, nesting thousands deep, and documents that
are not objects at all.

``dumps`` writes JSON itself, so a ``Deep`` value can nest deeper than a recursive encoder
allows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import strategies as st

from tests.fuzz.text import nasty_text, weighted

DEPTHS = (2, 64, 999, 1_001, 3_000)


@dataclass(frozen=True)
class Deep:
    """A value nested ``depth`` levels deep: ``[[[…]]]`` or ``{"a":{"a":…}}``."""

    depth: int
    kind: str = "array"

    def render(self) -> str:
        if self.kind == "array":
            return "[" * self.depth + "1" + "]" * self.depth
        return '{"a":' * self.depth + "1" + "}" * self.depth


def dumps(value: Any, *, ascii_only: bool = True) -> bytes:
    """JSON for ``value``; lone surrogates become ``\\ud800`` escapes with ``ascii_only``,
    else their (invalid) surrogatepass UTF-8 bytes."""
    return _text(value, ascii_only).encode("utf-8", "surrogatepass")


def _text(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Deep):
        return value.render()
    if isinstance(value, Mapping):
        items = (f"{_text(str(k), ascii_only)}:{_text(v, ascii_only)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_text(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def deep_values() -> st.SearchStrategy[Deep]:
    return st.builds(Deep, st.sampled_from(DEPTHS), st.sampled_from(["array", "object"]))


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value, weighted towards the awkward ones."""
    numbers = st.one_of(
        st.sampled_from([0, -1, 2**31, 2**32, 2**63, 2**64, -(2**63) - 1, 10**30]),
        st.floats(),  # NaN and Infinity are written as the bare words
        st.integers(),
    )
    strings = st.one_of(
        nasty_text(surrogates=True),
        st.sampled_from(["1", "-1", "1e3", "0x10", "4294967296", "JRP_NEVER", "JRP_BAD", "null"]),
    )
    scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
    nested = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(strings, inner, max_size=3),
        max_leaves=6,
    )
    return st.one_of(scalars, nested, deep_values())


def as_document(message: Message, snake_case: bool) -> dict[str, Any]:
    """``message`` as protojson; a message protojson cannot express becomes ``{}``."""
    try:
        return json_format.MessageToDict(message, preserving_proto_field_name=snake_case)
    except (json_format.SerializeToJsonError, ValueError, TypeError):  # a Timestamp out of range
        return {}


def recase(name: str) -> str:
    """snake_case → camelCase and back."""
    if "_" in name:
        head, *rest = name.split("_")
        return head + "".join(part.capitalize() for part in rest)
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), name)


@st.composite
def edited(draw: st.DrawFn, document: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """``document`` after a few edits: a field's value replaced, renamed to the other
    casing, removed, or an unknown field added. ``names`` are the message's field names."""
    result = dict(document)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        edit = draw(st.sampled_from(["value", "surrogate", "recase", "remove", "unknown"]))
        keys = sorted(result) or names
        key = draw(st.sampled_from(keys)) if keys else "x"
        if edit == "value":
            result[draw(st.sampled_from([key, recase(key)]))] = draw(json_values())
        elif edit == "surrogate":  # a lone surrogate where any field's value goes
            field = draw(st.sampled_from(names or keys or ["x"]))
            result[field] = draw(st.sampled_from(["\ud800", "x\udfff", "\udc00\ud800"]))
        elif edit == "recase" and key in result:
            result[recase(key)] = result.pop(key)
        elif edit == "remove":
            result.pop(key, None)
        else:
            result[draw(nasty_text(surrogates=True))] = draw(json_values())
    return result


NOT_OBJECTS = [
    b"", b" ", b"\n", b"[]", b'"x"', b"1", b"null", b"true", b"{", b'{"a":1', b"{}x",
    b"\xef\xbb\xbf{}", b"{}\x00", b"{\x00}", b'{"a":1,}', b'{"a":1,"a":2}', b"{'a':1}",
    b'{"\\ud800":1}', b'{"a":"\\ud800\\udc00\\udfff"}', b'{"a":"\\u0000"}', b"NaN",
]  # fmt: skip


def json_bodies(documents: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Mostly edited documents; some top-level non-objects, deep documents, random bytes."""
    return weighted(
        (80, st.builds(dumps, documents, ascii_only=st.booleans())),
        (8, st.sampled_from(NOT_OBJECTS)),
        (5, deep_values().map(lambda deep: dumps({"x": deep}))),
        (3, deep_values().map(lambda deep: deep.render().encode())),
        (4, st.binary(max_size=64)),
    )


def message_documents(
    messages: st.SearchStrategy[Message], names: list[str]
) -> st.SearchStrategy[dict[str, Any]]:
    """Protojson documents of drawn messages, in either casing, then edited."""
    documents = st.builds(as_document, messages, st.booleans())
    return documents.flatmap(lambda document: edited(document, names))
