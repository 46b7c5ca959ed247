"""A script's ``-- KEYS=[...] ARGV=[...]`` header, read as names, and a call laid out by it.

The header is the script's own statement of what it takes, so a test that names each value
of a call by the header fails when a function's keys or arguments stop matching it (one
too many or too few, or two swapped).

Header items: a plain name takes one value; ``name...`` takes the rest (or, when more items
follow, as many as the item before it says); ``(a, b) x n`` takes ``n`` groups, ``n``
being an item already read; ``then ...`` takes the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from dispatcher.store.calls import Call


@dataclass(frozen=True)
class Header:
    keys: list[str]
    argv: list[str]


def header(script: str) -> Header:
    text = resources.files("dispatcher.store").joinpath(f"lua/{script}.lua").read_text()
    comment = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        comment.append(line.removeprefix("--").strip())
    joined = " ".join(comment)
    return Header(keys=_items(joined, "KEYS="), argv=_items(joined, "ARGV="))


def scripts_with_headers() -> list[str]:
    """Every script a caller calls: the ones with a header (the rest are included)."""
    names = []
    for entry in resources.files("dispatcher.store").joinpath("lua").iterdir():
        if entry.name.endswith(".lua") and "KEYS=" in entry.read_text():
            names.append(entry.name.removesuffix(".lua"))
    return sorted(names)


def laid_out(script: str, call: Call) -> tuple[dict[str, Any], dict[str, Any]]:
    """The call's KEYS and ARGV, each value under the header's name for it."""
    h = header(script)
    call_keys, args = call
    return _layout(h.keys, list(call_keys)), _layout(h.argv, list(args))


def _items(text: str, label: str) -> list[str]:
    start = text.index(label) + len(label)
    assert text[start] == "[", text[start:]
    depth, item, items = 0, "", []
    for char in text[start + 1 :]:
        if char == "]" and depth == 0:
            break
        if char == "," and depth == 0:
            items.append(item.strip())
            item = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        item += char
    return [*items, item.strip()]


_GROUP = re.compile(r"\((?P<names>.*)\) x (?P<count>\w+)")


def _layout(items: list[str], values: list[Any]) -> dict[str, Any]:
    named: dict[str, Any] = {}
    at = 0
    for n, item in enumerate(items):
        if item.startswith("then ") or (item.endswith("...") and n == len(items) - 1):
            named[item], at = values[at:], len(values)
        elif item.endswith("..."):
            count = int(named[items[n - 1]])
            named[item], at = values[at : at + count], at + count
        elif group := _GROUP.fullmatch(item):
            names = [name.strip() for name in group["names"].split(",")]
            size = len(names) * int(named[group["count"]])
            flat, at = values[at : at + size], at + size
            named[item] = [
                dict(zip(names, flat[i : i + len(names)], strict=True))
                for i in range(0, size, len(names))
            ]
        else:
            assert at < len(values), f"no value for {item!r}: the call has too few"
            named[item], at = values[at], at + 1
    assert at == len(values), f"{len(values) - at} value(s) past the header's {items}"
    return named
