"""Rooms map to a fixed number of logical partitions by a stable hash."""

from __future__ import annotations

import zlib

DEFAULT_PARTITIONS = 64


def partition_of(room: str, partitions: int) -> int:
    """Stable across processes and Python versions (crc32, not ``hash()``)."""
    return zlib.crc32(room.encode()) % partitions


def partition_tag(partition: int) -> str:
    """The Redis hash tag that keeps every key of a partition in one cluster slot."""
    return f"{{p{partition:02d}}}"
