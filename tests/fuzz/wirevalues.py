"""msgpack documents for the wire decoders, drawn from the types themselves
(``msgspec.inspect``): valid encodings of every event, inbox message and record, the same
with one edit (a field of the wrong type, a field dropped, an unknown tag, an unknown field
nested thousands deep, a string that is not UTF-8), byte-level mutations of them, and
random bytes."""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from tests.fuzz.protos import integers, mutated
from tests.fuzz.text import nasty_text, weighted

_DEPTHS = (2, 64, 999, 1_001, 3_000)


def valid_values(tp: Any) -> st.SearchStrategy[Any]:
    """Untyped values (dicts, lists, scalars) that decode as ``tp``."""
    return _values(mi.type_info(tp))


def _values(t: mi.Type) -> st.SearchStrategy[Any]:
    if isinstance(t, mi.StrType):
        return nasty_text(huge_percent=0)
    if isinstance(t, mi.IntType):
        return integers(-(2**63), 2**63 - 1)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.FloatType):
        return st.floats()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.EnumType):
        return st.sampled_from([member.value for member in t.cls])
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(list(t.values))
    if isinstance(t, mi.DictType):
        return st.dictionaries(_values(t.key_type), _values(t.value_type), max_size=3)
    if isinstance(t, mi.ListType | mi.VarTupleType):
        return st.lists(_values(t.item_type), max_size=3)
    if isinstance(t, mi.UnionType):
        return st.one_of([_values(member) for member in t.types])
    if isinstance(t, mi.StructType):
        return _struct(t)
    raise NotImplementedError(f"no values for {t!r}")


def _struct(t: mi.StructType) -> st.SearchStrategy[dict[str, Any]]:
    required = {f.encode_name: _values(f.type) for f in t.fields if f.required}
    optional = {f.encode_name: _values(f.type) for f in t.fields if not f.required}
    if t.tag_field is not None:
        required[t.tag_field] = st.just(t.tag)
    return st.fixed_dictionaries(required, optional=optional)


def any_values() -> st.SearchStrategy[Any]:
    """Any msgpack value, of any type: what a wrong-typed field gets."""
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
        nasty_text(huge_percent=0), st.binary(max_size=16),
        st.builds(msgspec.msgpack.Ext, st.integers(-128, 127), st.binary(max_size=8)),
        st.sampled_from([msgspec.Raw(b"\xa2\xff\xfe"), msgspec.Raw(b"\xc1")]),  # not UTF-8; 0xc1
    )  # fmt: skip
    nested = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=5,
    )
    return weighted((40, scalars), (30, nested), (30, deep_raw()))


def deep_raw() -> st.SearchStrategy[msgspec.Raw]:
    """A value nested thousands deep, spliced in as raw msgpack."""
    return st.builds(
        lambda depth, kind: msgspec.Raw(kind * depth + b"\xc0"),
        st.sampled_from(_DEPTHS),
        st.sampled_from([b"\x91", b"\x81\xa1k"]),  # [[[…]]] or {"k":{"k":…}}
    )


@st.composite
def edited(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one edit where it is a map (a struct): a field's value of the wrong
    type, a field dropped, an unknown field (often nested deep), or an unknown tag."""
    if not isinstance(value, dict) or not value:
        return draw(any_values())
    result = dict(value)
    key = draw(st.sampled_from(sorted(result)))
    edit = draw(st.sampled_from(["unknown", "wrong", "drop", "tag", "nested"]))
    if edit == "wrong":
        result[key] = draw(any_values())
    elif edit == "drop":
        del result[key]
    elif edit == "unknown":
        result[draw(st.text(max_size=8).filter(lambda k: k not in value))] = draw(any_values())
    elif edit == "tag":
        result["type"] = draw(st.one_of(nasty_text(huge_percent=0), any_values()))
    else:
        result[key] = draw(edited(result[key]))
    return result


def documents(tp: Any) -> st.SearchStrategy[bytes]:
    """Encodings for the decoder of ``tp``: valid, edited, mutated, random."""
    valid = valid_values(tp)
    encoded = valid.map(msgspec.msgpack.encode)
    return weighted(
        (35, encoded),
        (35, valid.flatmap(edited).map(msgspec.msgpack.encode)),
        (20, encoded.flatmap(mutated)),
        (10, st.binary(max_size=128)),
    )


def minimal(tp: Any) -> Any:
    """The smallest untyped value that decodes as ``tp`` (required fields only)."""
    return _minimal(mi.type_info(tp))


def _minimal(t: mi.Type) -> Any:
    simple: dict[type[mi.Type], Any] = {
        mi.StrType: "", mi.IntType: 0, mi.BoolType: False, mi.FloatType: 0.0,
        mi.NoneType: None, mi.DictType: {}, mi.ListType: [], mi.VarTupleType: [],
    }  # fmt: skip
    if type(t) in simple:
        return simple[type(t)]
    if isinstance(t, mi.EnumType):
        return next(iter(t.cls)).value
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, mi.UnionType):
        return _minimal(t.types[0])
    assert isinstance(t, mi.StructType), t
    value = {f.encode_name: _minimal(f.type) for f in t.fields if f.required}
    return value if t.tag_field is None else {**value, t.tag_field: t.tag}


def deep_documents(tp: Any) -> dict[str, bytes]:
    """``minimal(tp)`` with a value nested 3,000 deep: in an unknown field (before and after
    the others, so a tagged union must skip it to find its tag) and in a known field."""
    base = minimal(tp)
    arrays, maps = (
        msgspec.Raw(b"\x91" * 3_000 + b"\xc0"),
        msgspec.Raw(b"\x81\xa1k" * 3_000 + b"\xc0"),
    )
    first = next(iter(base))
    documents = {
        "unknown field, deep arrays, last": {**base, "x": arrays},
        "unknown field, deep maps, last": {**base, "x": maps},
        "unknown field, deep arrays, first": {"x": arrays, **base},
        f"known field {first!r} deep": {**base, first: arrays},
    }
    return {name: msgspec.msgpack.encode(doc) for name, doc in documents.items()}
