"""LiveKit-style identifiers: a prefix plus 12 characters of the base57 shortuuid alphabet."""

from __future__ import annotations

import hashlib
import secrets

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_LENGTH = 12


def _encode(number: int) -> str:
    chars = []
    for _ in range(_LENGTH):
        number, digit = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return "".join(chars)


def new_id(prefix: str) -> str:
    """A fresh random id such as ``AD_x7Kq...``."""
    return prefix + _encode(secrets.randbits(72))


def derived_id(prefix: str, *parts: str) -> str:
    """A deterministic id from its parts, so replays of the same step produce the same id."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=9).digest()
    return prefix + _encode(int.from_bytes(digest, "big"))


def dispatch_id() -> str:
    return new_id("AD_")


def job_id(dispatch: str, attempt: int) -> str:
    """Job ids follow from the dispatch and attempt: a re-read event re-creates the same job."""
    return derived_id("AJ_", dispatch, str(attempt))


def room_sid(room: str, created_at_ns: int) -> str:
    return derived_id("RM_", room, str(created_at_ns))


def worker_id() -> str:
    return new_id("AW_")
