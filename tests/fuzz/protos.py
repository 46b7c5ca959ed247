"""Protobuf request messages drawn field by field from their descriptors, and the byte-level
mutations of their serialisations.

Every field gets values of its wire type, including the awkward ones: enums out of their
range (proto3 enums are open), the ends of each integer range, NaN, strings with NUL and
control characters or past every size limit. ``hints`` maps a field name to a strategy for
its strings, so names the seeded state knows (rooms, dispatch ids, rule ids) come up often
enough to reach past "not found".
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, cast

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from tests.fuzz.text import nasty_text, weighted

Hints = Mapping[str, st.SearchStrategy[str]]

#: Below this depth message fields are left unset, so drawn trees stay small.
MAX_DEPTH = 3
#: Fields never set: large trees no handler reads (``RoomEgress``).
SKIPPED = frozenset({"egress"})
#: Fields a request is refused without: set 90 % of the time (others 50 %, nested 25 %).
LIKELY = frozenset({"room", "name", "agent_name", "dispatch_id", "sip_dispatch_rule_id", "rule"})

_F = FieldDescriptor
_INT_RANGES: dict[int, tuple[int, int]] = {
    _F.TYPE_INT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1),
    _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _F.TYPE_UINT64: (0, 2**64 - 1),
    _F.TYPE_FIXED64: (0, 2**64 - 1),
}


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    """Small values first (they shrink there), plus both ends of the range."""
    ends = [low, high, low + 1, high - 1, 0]
    edges = st.sampled_from([v for v in ends if low <= v <= high])
    return st.one_of(st.integers(0, 3), edges, st.integers(low, high))


def messages(
    message_type: type[Message], hints: Hints | None = None, depth: int = 0
) -> st.SearchStrategy[Message]:
    """Messages of ``message_type`` with any subset of their fields set."""
    descriptor = message_type.DESCRIPTOR
    fields: dict[str, tuple[int, st.SearchStrategy[Any]]] = {}
    for field in descriptor.fields:
        if field.name in SKIPPED:
            continue
        values = _field_values(cast(FieldDescriptor, field), hints or {}, depth)
        if values is not None:
            percent = 90 if field.name in LIKELY else 50 if depth == 0 else 25
            fields[field.name] = (percent, values)
    return _some_fields(fields).map(partial(_build, message_type))


@st.composite
def _some_fields(
    draw: st.DrawFn, fields: dict[str, tuple[int, st.SearchStrategy[Any]]]
) -> dict[str, Any]:
    """Each field with its chance in percent. Hypothesis favours small draws, so a likely
    field is kept on a small roll and any other on a large one: examples shrink towards
    the likely fields alone."""
    chosen = {}
    for name, (percent, values) in fields.items():
        roll = draw(st.integers(0, 99))
        if (roll < percent) if name in LIKELY else (roll >= 100 - percent):
            chosen[name] = draw(values)
    return chosen


def _field_values(
    field: FieldDescriptor, hints: Hints, depth: int
) -> st.SearchStrategy[Any] | None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        entry = field.message_type
        keys = _scalar(entry.fields_by_name["key"], field.name, hints)
        value_field = entry.fields_by_name["value"]
        if value_field.message_type is not None:
            return None  # no request we serve has message-valued maps
        assert keys is not None
        return st.dictionaries(keys, _scalar(value_field, field.name, hints), max_size=4)
    if field.message_type is not None:
        if depth >= MAX_DEPTH:
            return None
        one = messages(GetMessageClass(field.message_type), hints, depth + 1)
        return st.lists(one, max_size=3) if field.is_repeated else one
    one_value = _scalar(field, field.name, hints)
    return st.lists(one_value, max_size=4) if field.is_repeated else one_value


def _scalar(field: FieldDescriptor, name: str, hints: Hints) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == _F.TYPE_STRING:
        return hints.get(name, nasty_text())
    if kind == _F.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == _F.TYPE_BOOL:
        return st.booleans()
    if kind == _F.TYPE_ENUM:
        assert field.enum_type is not None
        known = st.sampled_from(sorted(v.number for v in field.enum_type.values))
        return weighted((70, known), (30, integers(-(2**31), 2**31 - 1)))
    if kind in (_F.TYPE_FLOAT, _F.TYPE_DOUBLE):
        return st.floats(width=32 if kind == _F.TYPE_FLOAT else 64)
    low, high = _INT_RANGES[kind]
    return integers(low, high)


def _build(message_type: type[Message], values: dict[str, Any]) -> Message:
    message = message_type()
    for name, value in values.items():
        field = message_type.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target.update(value)
        elif field.is_repeated:
            target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


# -- serialisations ----------------------------------------------------------------------

_TAIL_GARBAGE = [
    b"\xff" * 11,  # a varint that never ends
    b"\x0a\xff\xff\xff\xff\x0f",  # a length past the end
    b"\x0b",  # start group (deprecated wire type 3)
    b"\x0c",  # end group without a start
    b"\x0f",  # wire type 7 (invalid)
    b"\x00",  # field number 0
    b"\x12\x02\xc3\x28",  # invalid UTF-8 in field 2 (a string in every request here)
    b"\x0a\x01\x00",  # NUL string in field 1
    b"\x22\x05\x08\xff\xff\xff\x7f",  # a sub-message cut short
]


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with one edit: a byte changed, a cut, an insertion, a deletion or a splice."""
    size = len(data)
    at = draw(st.integers(0, size))
    edit = draw(st.sampled_from(["flip", "cut", "insert", "delete", "garbage", "repeat"]))
    if edit == "flip" and size:
        at = min(at, size - 1)
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    if edit == "cut":
        return data[:at]
    if edit == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if edit == "delete":
        return data[:at] + data[at + draw(st.integers(1, 8)) :]
    if edit == "repeat":
        return data + data[at:]
    return data[:at] + draw(st.sampled_from(_TAIL_GARBAGE)) + data[at:]


def protobuf_bodies(valid: st.SearchStrategy[Message]) -> st.SearchStrategy[bytes]:
    """Mostly valid serialisations; some mutated, some random bytes, some empty."""
    serialised = valid.map(lambda m: m.SerializeToString())
    return weighted(
        (80, serialised),
        (12, serialised.flatmap(mutated)),
        (6, st.binary(max_size=256)),
        (2, st.just(b"")),
    )
