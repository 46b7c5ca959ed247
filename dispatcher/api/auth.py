"""Verify and mint LiveKit access tokens (HS256 JWTs) on the request hot path.

Every API call and every agent-server connection carries a token, so verification is
hand-written on hmac + hashlib + base64 + msgspec instead of PyJWT: about 7 µs per token
against about 45 µs. It follows the reference rules (HS256 only, `iss` selects the secret,
`exp` required, `nbf`/`exp` checked with a 60 s leeway, unknown claims ignored) and is
tested against tokens minted by PyJWT and `livekit-api`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeAlias

import msgspec
import orjson

from dispatcher.api.nesting import MAX_DEPTH, too_deep
from dispatcher.errors import AuthError

__all__ = ["Claims", "SIPGrant", "TokenVerifier", "VideoGrant", "bearer_token", "create_token"]

_INVALID = "invalid authorization token"
_BEARER = "Bearer "
# base64url({"alg":"HS256","typ":"JWT"}): the header PyJWT and livekit-api always send.
_HS256_HEADER_B64 = b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
# Map base64url onto standard base64 and poison "+" and "/" so strict decoding rejects them.
_FROM_URLSAFE = bytes.maketrans(b"-_+/", b"+/!!")

if TYPE_CHECKING:
    _RawOrNone: TypeAlias = msgspec.Raw | None
else:
    # msgspec cannot decode `Raw` inside a union, so at runtime the field is a plain `Raw`
    # whose default is None (defaults are not validated): absent -> None, present -> Raw.
    _RawOrNone = msgspec.Raw


class VideoGrant(msgspec.Struct, kw_only=True, rename="camel"):
    """The `video` grant; livekit-api sets canPublish/canSubscribe/canPublishData always."""

    room_create: bool = False
    room_list: bool = False
    room_record: bool = False
    room_admin: bool = False
    room_join: bool = False
    room: str = ""
    can_publish: bool | None = None
    can_subscribe: bool | None = None
    can_publish_data: bool | None = None
    can_update_own_metadata: bool = False
    hidden: bool = False
    recorder: bool = False
    agent: bool = False


class SIPGrant(msgspec.Struct, kw_only=True, rename="camel"):
    """The `sip` grant: `admin` manages trunks and dispatch rules, `call` places calls."""

    admin: bool = False
    call: bool = False


class Claims(msgspec.Struct, kw_only=True, rename="camel"):
    """Token claims we act on; anything else in the payload is ignored."""

    iss: str = ""  # missing iss is reported as "invalid API key", not as malformed
    sub: str = ""
    exp: int
    nbf: int = 0
    name: str = ""
    kind: str = ""
    metadata: str = ""
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    video: VideoGrant = msgspec.field(default_factory=VideoGrant)
    sip: SIPGrant = msgspec.field(default_factory=SIPGrant)
    room_config: _RawOrNone = None  # raw protojson RoomConfiguration, parsed by its user
    room_preset: str = ""


class _Header(msgspec.Struct):
    alg: str = ""


_CLAIMS_DECODER = msgspec.json.Decoder(Claims)
_HEADER_DECODER = msgspec.json.Decoder(_Header)


class TokenVerifier:
    """Verifies HS256 tokens signed with any of several API key/secret pairs."""

    def __init__(self, keys: Mapping[str, str], leeway_s: float = 60.0) -> None:
        # Keyed HMAC state per API key: copying it skips re-hashing the padded secret.
        self._macs = {
            key: hmac.new(secret.encode(), digestmod=hashlib.sha256) for key, secret in keys.items()
        }
        self._leeway_s = leeway_s

    def verify(self, token: str, now: float | None = None) -> Claims:
        """Return the token's claims, or raise AuthError saying why it is refused."""
        signing_input, header_b64, payload_b64, signature_b64 = _split(token)
        _check_header(header_b64)
        claims = _decode_claims(payload_b64)
        self._check_signature(claims.iss, signing_input, signature_b64)
        _check_lifetime(claims, time.time() if now is None else now, self._leeway_s)
        return claims

    def _check_signature(self, api_key: str, signing_input: bytes, signature_b64: bytes) -> None:
        base = self._macs.get(api_key)
        if base is None:
            raise AuthError("invalid API key")
        mac = base.copy()
        mac.update(signing_input)
        if not hmac.compare_digest(mac.digest(), _b64decode(signature_b64)):
            raise AuthError(f"{_INVALID}: signature mismatch")


def bearer_token(authorization: str | None, query_token: str | None) -> str | None:
    """The request's token: `Authorization: Bearer <jwt>`, else the `access_token` query value.

    An empty result is None: like the reference, the request then proceeds without grants.
    """
    if not authorization:
        return query_token or None
    if not authorization.startswith(_BEARER):
        raise AuthError("invalid authorization header")
    return authorization[len(_BEARER) :] or None


def create_token(
    api_key: str,
    api_secret: str,
    claims: dict[str, object],
    ttl_s: float = 600,
    *,
    now: float | None = None,
) -> str:
    """Mint an HS256 token for tests and the dev CLI; iss, nbf and exp override `claims`."""
    issued = int(time.time() if now is None else now)
    payload = {**claims, "iss": api_key, "nbf": issued, "exp": int(issued + ttl_s)}
    signing_input = _HS256_HEADER_B64 + b"." + _b64encode(orjson.dumps(payload))
    signature = hmac.digest(api_secret.encode(), signing_input, "sha256")
    return (signing_input + b"." + _b64encode(signature)).decode("ascii")


def _split(token: str) -> tuple[bytes, bytes, bytes, bytes]:
    """(signing input, header, payload, signature), all still base64url-encoded."""
    try:
        data = token.encode("ascii")
    except UnicodeEncodeError:
        raise AuthError(f"{_INVALID}: malformed token") from None
    parts = data.split(b".")
    if len(parts) != 3:
        raise AuthError(f"{_INVALID}: malformed token")
    header_b64, payload_b64, signature_b64 = parts
    return data[: len(header_b64) + 1 + len(payload_b64)], header_b64, payload_b64, signature_b64


def _check_header(header_b64: bytes) -> None:
    if header_b64 == _HS256_HEADER_B64:  # fast path for the header every SDK sends
        return
    try:
        alg = _HEADER_DECODER.decode(_json_segment(header_b64, "header")).alg
    except msgspec.DecodeError as exc:
        raise AuthError(f"{_INVALID}: malformed header ({exc})") from None
    if alg != "HS256":  # refuses "none", other HMAC sizes and asymmetric algorithms
        raise AuthError(f"{_INVALID}: algorithm {alg or '(missing)'} not allowed")


def _decode_claims(payload_b64: bytes) -> Claims:
    try:
        claims = _CLAIMS_DECODER.decode(_json_segment(payload_b64, "claims"))
    except msgspec.DecodeError as exc:
        raise AuthError(f"{_INVALID}: malformed claims ({exc})") from None
    if claims.room_config is not None and bytes(claims.room_config) == b"null":
        claims.room_config = None  # `"roomConfig": null` means absent, as in protojson
    return claims


def _check_lifetime(claims: Claims, now: float, leeway_s: float) -> None:
    if now > claims.exp + leeway_s:
        raise AuthError(f"{_INVALID}: token expired")
    if now + leeway_s < claims.nbf:
        raise AuthError(f"{_INVALID}: token not valid yet")


def _json_segment(segment: bytes, what: str) -> bytes:
    """A header or claims segment's JSON, refused before decoding when it nests too deep."""
    data = _b64decode(segment)
    if too_deep(data):
        raise AuthError(f"{_INVALID}: malformed {what} (nested more than {MAX_DEPTH} deep)")
    return data


def _b64decode(segment: bytes) -> bytes:
    """Canonical unpadded base64url only: stray characters, padding and unused bits that
    are not zero are errors, so each token has exactly one accepted spelling."""
    padded = segment.translate(_FROM_URLSAFE) + b"=" * (-len(segment) % 4)
    try:
        data = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error:
        raise AuthError(f"{_INVALID}: malformed base64") from None
    if _b64encode(data) != segment:  # "=" padding, or a last character with stray bits
        raise AuthError(f"{_INVALID}: base64 is not in canonical unpadded form")
    return data


def _b64encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")
