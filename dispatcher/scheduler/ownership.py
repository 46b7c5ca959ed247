"""Which scheduler owns which partition: rendezvous (highest-random-weight) hashing.

Adding or removing one of N members moves only about 1/N of the partitions. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _weight(member: str, partition: int) -> int:
    digest = hashlib.blake2b(f"{member}\x00{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(partition: int, members: Iterable[str]) -> str | None:
    return max(members, key=lambda m: _weight(m, partition), default=None)


def owned_by(node: str, members: Iterable[str], partitions: int) -> set[int]:
    live = sorted(set(members) | {node})
    return {p for p in range(partitions) if owner(p, live) == node}
