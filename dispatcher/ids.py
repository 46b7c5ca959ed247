"""LiveKit-style identifiers: a prefix plus 12 characters of the base57 shortuuid alphabet."""

from __future__ import annotations

import hashlib
import os
import random

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE = len(ALPHABET) ** 2
# Two digits at a time, least significant first: _PAIRS[d0 + 57 * d1] = ALPHABET[d0] + ALPHABET[d1].
_PAIRS = [low + high for high in ALPHABET for low in ALPHABET]

# Ids need uniqueness, not secrecy: a generator seeded from the OS (and again in every forked
# child) instead of one getrandom(2) call per id, which every dispatch and join makes several of.
_rng = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(32)))


def _encode(number: int) -> str:
    """12 base-57 digits, least significant first."""
    pairs, base = _PAIRS, _BASE
    number, a = divmod(number, base)
    number, b = divmod(number, base)
    number, c = divmod(number, base)
    number, d = divmod(number, base)
    number, e = divmod(number, base)
    return pairs[a] + pairs[b] + pairs[c] + pairs[d] + pairs[e] + pairs[number % base]


def new_id(prefix: str) -> str:
    """A fresh random id such as ``AD_x7Kq...``."""
    return prefix + _encode(_rng.getrandbits(72))


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
