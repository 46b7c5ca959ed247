"""Credentials for a request: mostly a valid token with the grants the call needs, minted
with ``create_token`` and the node's key, and otherwise every way a token can be wrong.

Each ``Credentials`` says whether the node must refuse it (``must_reject``): a token that
is absent, garbled, tampered with, padded, non-canonically encoded, signed with another
algorithm, key or secret, expired, or lacking the grant. Deeply nested headers and claims
that are otherwise valid may be accepted or refused, but never crash the node.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from dispatcher.api.auth import create_token
from tests.fuzz.jsonbodies import Deep, deep_values, dumps
from tests.fuzz.text import header_text
from tests.stack import API_KEY, API_SECRET

#: A token longer than this would push the request head past the server's 64 KiB limit.
MAX_TOKEN_CHARS = 48_000
HS256_HEADER = {"alg": "HS256", "typ": "JWT"}
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_INVALID_MODES = [
    "absent", "not-bearer", "garbage", "tampered", "padded", "non-canonical", "wrong-alg",
    "wrong-secret", "unknown-key", "no-iss", "expired", "not-yet-valid", "no-exp",
    "bad-claim-type", "no-grant", "too-many-segments",
]  # fmt: skip
_MAY_PASS_MODES = ["valid-query", "deep-header", "deep-claim"]
_NOT_STR: list[Any] = [1, 1.5, None, [], {"a": 1}, True]
_NOT_INT: list[Any] = ["1", 1.5, None, [], {"a": 1}, True]
_NOT_OBJECT: list[Any] = ["x", 1, None, [], True]
#: Claims the verifier reads, with values of the wrong type for each (a grant with a known
#: field of the wrong type is refused too; one with unknown fields only is not).
_WRONG_TYPES: dict[str, list[Any]] = {
    "exp": _NOT_INT, "nbf": _NOT_INT, "iss": _NOT_STR, "sub": _NOT_STR, "name": _NOT_STR,
    "metadata": _NOT_STR, "video": [*_NOT_OBJECT, {"roomAdmin": "yes"}, {"room": 1}],
    "sip": [*_NOT_OBJECT, {"admin": 1}, {"call": "yes"}],
    "attributes": ["x", 1, None, [], {"a": 1}, {"a": None}],
}  # fmt: skip
Claims = dict[str, Any]
Authorizes = Callable[[Claims], bool]


@dataclass(frozen=True)
class Credentials:
    authorization: str | None  # the Authorization header's value; None: no header
    access_token: str | None  # the ?access_token= query parameter
    mode: str
    must_reject: bool

    def __repr__(self) -> str:
        shown = _clip(self.authorization) if self.authorization is not None else None
        query = _clip(self.access_token) if self.access_token is not None else None
        return f"Credentials(mode={self.mode!r}, authorization={shown}, access_token={query})"


def _clip(text: str, limit: int = 300) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"…({len(text)} chars)"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(
    payload: bytes,
    *,
    header: bytes = b'{"alg":"HS256","typ":"JWT"}',
    secret: str = API_SECRET,
    digest: str = "sha256",
) -> str:
    """A JWT over raw header and payload bytes (for what ``create_token`` cannot write)."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    signature = hmac.digest(secret.encode(), signing_input.encode("ascii"), digest)
    return f"{signing_input}.{b64(signature)}"


def lifetime(now: float | None = None, ttl_s: int = 600) -> dict[str, Any]:
    issued = int(time.time() if now is None else now)
    return {"iss": API_KEY, "nbf": issued, "exp": issued + ttl_s}


def mint(claims: dict[str, Any], ttl_s: int = 600) -> str:
    """A valid token for ``claims``: ``create_token`` where orjson can write them, else the
    same payload written by ``dumps`` (lone surrogates, nesting past orjson's limit)."""
    try:
        return create_token(API_KEY, API_SECRET, claims, ttl_s)
    except TypeError:  # orjson.JSONEncodeError
        return sign(dumps({**claims, **lifetime(ttl_s=ttl_s)}))


def credentials(
    claims: Claims, authorizes: Authorizes, ungranted: Claims
) -> st.SearchStrategy[Credentials]:
    """Mostly (60 %) a valid token for ``claims``; otherwise one of the broken kinds.
    ``authorizes`` says whether claims carry the call's grant; ``ungranted`` are claims of
    a valid token that lacks it."""
    return _credentials(claims, authorizes, ungranted)


@st.composite
def _credentials(
    draw: st.DrawFn, claims: Claims, authorizes: Authorizes, ungranted: Claims
) -> Credentials:
    if draw(st.integers(0, 99)) < 60:
        return _bearer(mint(claims), "valid", not authorizes(claims))
    mode = draw(st.sampled_from(_INVALID_MODES + _MAY_PASS_MODES))
    if mode in _MAY_PASS_MODES:
        return _may_pass(draw, mode, claims, authorizes)
    if mode == "absent":
        return Credentials(None, None, mode, True)
    if mode == "no-grant":
        return _bearer(mint(ungranted), mode, True)
    if mode == "not-bearer":
        prefix = draw(st.sampled_from(["", "Basic ", "bearer ", "BEARER ", "Bearer", "Bearer  "]))
        return _bearer(mint(claims), mode, True, prefix=prefix)
    return _bearer(_broken(draw, mode, claims), mode, True)


def _bearer(token: str, mode: str, must_reject: bool, *, prefix: str = "Bearer ") -> Credentials:
    token, mode, must_reject = _sendable(token, mode, must_reject)
    return Credentials(prefix + token, None, mode, must_reject)


def _sendable(token: str, mode: str, must_reject: bool) -> tuple[str, str, bool]:
    """A token past MAX_TOKEN_CHARS would make the HTTP server refuse the whole head (431,
    plain text) before any Twirp code runs: send a short token lacking the grant instead."""
    if len(token) <= MAX_TOKEN_CHARS:
        return token, mode, must_reject
    return mint({"video": {"room": "x"}}), f"{mode}, too long", True


def _may_pass(draw: st.DrawFn, mode: str, claims: Claims, authorizes: Authorizes) -> Credentials:
    if mode == "valid-query":
        token, mode, must_reject = _sendable(mint(claims), mode, not authorizes(claims))
        return Credentials(None, token, mode, must_reject)
    deep = draw(deep_values())
    if mode == "deep-header":
        header = dumps({**HS256_HEADER, "x": deep})
        token = sign(dumps({**claims, **lifetime()}), header=header)
        return _bearer(token, mode, not authorizes(claims))
    key = draw(st.sampled_from(["x", "video", "sip", "roomConfig", "attributes"]))
    nested, effective = dict(claims), _deep_claim(draw, claims, key, deep)
    if key in ("video", "sip") and effective is claims:
        nested[key] = {**nested[key], "x": deep}  # an unknown field inside the grant
    else:
        nested[key] = deep
    must_reject = effective is None or not authorizes(effective)
    return _bearer(sign(dumps({**nested, **lifetime()})), mode, must_reject)


def _deep_claim(draw: st.DrawFn, claims: Claims, key: str, deep: Deep) -> Claims | None:
    """The claims as the node reads them once ``key`` holds ``deep`` (None: refused).

    An unknown claim or ``roomConfig`` changes nothing the grant check reads; a grant
    replaced by a deep object (unknown fields only) is a grant of nothing; anything else
    is the wrong type."""
    if key in ("x", "roomConfig"):
        return claims
    if key in ("video", "sip") and isinstance(claims.get(key), dict) and draw(st.booleans()):
        return claims  # the caller nests ``deep`` inside the grant instead
    if key in ("video", "sip") and deep.kind == "object":
        return {**claims, key: {}}
    return None


def _broken(draw: st.DrawFn, mode: str, claims: dict[str, Any]) -> str:
    """The token itself for the modes whose header is ``Bearer <token>``."""
    token = mint(claims)
    if mode == "garbage":
        return draw(header_text(max_size=200))
    if mode == "tampered":
        return _tampered(draw, token)
    if mode == "padded":
        return _padded(draw, token)
    if mode == "non-canonical":
        return _non_canonical(draw, token)
    if mode == "too-many-segments":
        return draw(st.sampled_from([token + ".", "." + token, token + "." + token.split(".")[2],
                                     ".".join(token.split(".")[:2])]))  # fmt: skip
    return _re_signed(draw, mode, claims)


def _re_signed(draw: st.DrawFn, mode: str, claims: dict[str, Any]) -> str:
    payload = {**claims, **lifetime()}
    if mode == "wrong-alg":
        alg = draw(st.sampled_from(["none", "HS512", "HS384", "RS256", "hs256", "HS256 ", "",
                                    None, 256, ["HS256"]]))  # fmt: skip
        digest = {"HS512": "sha512", "HS384": "sha384"}.get(str(alg), "sha256")
        token = sign(dumps(payload), header=dumps({"alg": alg, "typ": "JWT"}), digest=digest)
        return token.rsplit(".", 1)[0] + "." if alg == "none" else token
    if mode == "wrong-secret":
        return sign(dumps(payload), secret=API_SECRET[::-1])
    if mode == "unknown-key":
        return sign(dumps({**payload, "iss": "not-" + API_KEY}))
    if mode in ("no-iss", "no-exp"):
        payload.pop(mode[3:])
        return sign(dumps(payload))
    if mode in ("expired", "not-yet-valid"):
        shift = -3_600 if mode == "expired" else 3_600
        return sign(dumps({**claims, **lifetime(time.time() + shift, ttl_s=60)}))
    # bad-claim-type: a claim we read, with a value of the wrong type
    name = draw(st.sampled_from(sorted(_WRONG_TYPES)))
    wrong = draw(st.sampled_from(_WRONG_TYPES[name]))
    return sign(dumps({**payload, name: wrong}))


def _tampered(draw: st.DrawFn, token: str) -> str:
    """One character of one segment replaced by a different one."""
    segments = token.split(".")
    index = draw(st.integers(0, 2))
    segment = segments[index]
    if not segment:
        segments[index] = "A"
        return ".".join(segments)
    at = draw(st.integers(0, len(segment) - 1))
    replacement = draw(st.sampled_from(list(_B64URL + "+/=!~ ")))
    if replacement == segment[at]:
        replacement = "A" if segment[at] != "A" else "B"
    segments[index] = segment[:at] + replacement + segment[at + 1 :]
    return ".".join(segments)


def _padded(draw: st.DrawFn, token: str) -> str:
    """``=`` appended to (or inserted into) one segment."""
    segments = token.split(".")
    index = draw(st.sampled_from([2, 2, 2, 0, 1]))  # the signature is the one that matters
    padding = "=" * draw(st.integers(1, 3))
    segment = segments[index]
    at = draw(st.sampled_from([len(segment), 0, len(segment) // 2]))
    segments[index] = segment[:at] + padding + segment[at:]
    return ".".join(segments)


def _non_canonical(draw: st.DrawFn, token: str) -> str:
    """A segment whose last character has unused low bits set: it decodes to the same bytes
    as the canonical encoding under a lenient decoder. Falls back to padding when no
    segment has unused bits."""
    segments = token.split(".")
    candidates = [i for i in (2, 1, 0) if len(segments[i]) % 4 in (2, 3)]
    if not candidates:
        return _padded(draw, token)
    index = draw(st.sampled_from([candidates[0]] * 2 + candidates))
    segment = segments[index]
    unused = 4 if len(segment) % 4 == 2 else 2
    value = _B64URL.index(segment[-1])
    bits = draw(st.integers(1, 2**unused - 1))
    segments[index] = segment[:-1] + _B64URL[(value & ~(2**unused - 1)) | bits]
    return ".".join(segments)


def describe(credentials: Credentials) -> str:
    """One line for failure messages: the mode and the decoded header and claims."""
    token = credentials.authorization or credentials.access_token or ""
    parts = token.removeprefix("Bearer ").split(".")
    decoded = []
    for part in parts[:2]:
        try:
            decoded.append(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))[:300])
        except (ValueError, TypeError):
            decoded.append(b"(not base64)")
    return f"{credentials.mode}: {json.dumps([d.decode('utf-8', 'replace') for d in decoded])}"
