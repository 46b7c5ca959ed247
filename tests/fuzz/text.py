"""Strings that break naive code: NUL and other control characters, lone surrogates,
non-BMP characters, sizes at and past every limit, and the names the seeded state knows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from hypothesis import strategies as st

T = TypeVar("T")

# Lengths (in characters) just past the limits the API enforces: names 256 bytes, deployment
# 64, attributes 64 KiB, metadata 512 KiB, the harness node's body limit 1 MiB.
HUGE_LENGTHS = (65, 257, 4_097, 65_537, 524_289, 1_100_000)

_CONTROL = st.sampled_from(
    ["\x00", "\x01", "\x07", "\x08", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\x85", "\u2028",
     "\u2029", "\ufeff", "\u200b"]
)  # fmt: skip
_LONE_SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_ODD = st.sampled_from(["_", " ", "/", ".", "..", "%", "%00", "{", "}", "\\", '"', "'", "="])


def _repeat(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


def huge_text(*, surrogates: bool = False) -> st.SearchStrategy[str]:
    """A short unit repeated to one of HUGE_LENGTHS characters (cheap to draw and to shrink)."""
    unit = st.text(_characters(surrogates), min_size=1, max_size=3)
    return st.builds(_repeat, unit, st.sampled_from(HUGE_LENGTHS))


def _characters(surrogates: bool) -> st.SearchStrategy[str]:
    plain = st.characters(codec="utf-8")
    return st.one_of(plain, _LONE_SURROGATE) if surrogates else plain


def nasty_text(
    known: Sequence[str] = (), *, surrogates: bool = False, huge_percent: int = 2
) -> st.SearchStrategy[str]:
    """Any string, biased towards ``known`` names and the characters that break things;
    about ``huge_percent`` % of them are huge.

    ``surrogates`` allows lone surrogates (only where they can be encoded: JSON escapes,
    not protobuf strings, which must be valid UTF-8)."""
    pieces = [_CONTROL, _ODD, st.text(_characters(surrogates), max_size=12)]
    if surrogates:
        pieces.append(_LONE_SURROGATE)
    if known:
        pieces.append(st.sampled_from(list(known)))
    mixed = st.lists(st.one_of(pieces), min_size=1, max_size=4).map("".join)
    choices: list[tuple[int, st.SearchStrategy[str]]] = []
    if known:
        choices.append((70, st.sampled_from(list(known))))
    choices += [(25 if known else 95, mixed), (5, st.just(""))]
    if huge_percent:
        choices.append((huge_percent * 2, huge_text(surrogates=surrogates)))
    return weighted(*choices)


@st.composite
def weighted(draw: st.DrawFn, *choices: tuple[int, st.SearchStrategy[T]]) -> T:
    """One of ``choices`` with probability proportional to its weight; shrinks towards the
    first (``one_of`` picks its branches uniformly)."""
    roll = draw(st.integers(0, sum(weight for weight, _ in choices) - 1))
    for weight, strategy in choices:
        if roll < weight:
            return draw(strategy)
        roll -= weight
    raise AssertionError("unreachable")


def header_text(max_size: int = 64) -> st.SearchStrategy[str]:
    """Text a header value may legally carry (no control characters but tab; latin-1)."""
    legal = st.characters(
        min_codepoint=0x09, max_codepoint=0xFF, exclude_characters="".join(map(chr, _CTL))
    )
    return st.text(legal, max_size=max_size)


_CTL = [c for c in range(0x20) if c != 0x09] + [0x7F]
