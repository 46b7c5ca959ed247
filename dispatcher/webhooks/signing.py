"""Signing a webhook as LiveKit does: an ``Authorization`` header holding an HS256 JWT from
the API key (``iss``) with the SHA-256 of the body (``sha256``, base64), valid 5 minutes,
which ``livekit-api``'s ``WebhookReceiver(TokenVerifier(key, secret))`` checks."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson

CONTENT_TYPE = "application/webhook+json"
VALID_S = 300
_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")


def authorization(body: bytes, api_key: str, api_secret: str, now_s: int) -> str:
    """The ``Authorization`` header's value (a bare token, as LiveKit sends it)."""
    claims = {
        "iss": api_key,
        "nbf": now_s,
        "exp": now_s + VALID_S,
        "sha256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
    }
    payload = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=")
    signed = _HEADER + b"." + payload
    mac = hmac.new(api_secret.encode(), signed, hashlib.sha256).digest()
    return (signed + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()
