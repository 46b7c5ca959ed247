"""Whole requests: a route, a body, headers and credentials, drawn per route."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from hypothesis import strategies as st

from tests.fuzz.text import header_text
from tests.fuzz.tokens import Credentials

PROTOBUF_TYPES = [
    "application/protobuf", "application/protobuf; charset=utf-8", "Application/Protobuf",
    " application/protobuf ", "application/x-protobuf", "application/octet-stream",
]  # fmt: skip
JSON_TYPES = [
    "application/json", "application/json;charset=UTF-8", "APPLICATION/JSON",
    "application/json ; x=y", "text/json", "application/jsonx",
]  # fmt: skip
_OTHER_METHODS = ["GET", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"]


@dataclass(frozen=True)
class FuzzRequest:
    route: str  # "<service>/<method>"
    method: str
    query: str  # "" or "?..."
    headers: tuple[tuple[str, str], ...]
    body: bytes
    body_kind: str  # what the body was drawn as: "protobuf", "json", ...
    credentials: Credentials

    @property
    def target(self) -> str:
        query, token = self.query, self.credentials.access_token
        if token is not None:
            query += ("&" if query else "?") + "access_token=" + quote(token, safe="")
        return f"/twirp/{self.route}{query}"

    def all_headers(self) -> list[tuple[str, str]]:
        auth = self.credentials.authorization
        return [*self.headers, *([("Authorization", auth)] if auth is not None else [])]

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 400 else self.body[:400] + b"..."
        headers = [(n, v if len(v) <= 200 else v[:200] + "...") for n, v in self.headers]
        return (
            f"FuzzRequest({self.method} {self.target[:300]!r}, headers={headers}, "
            f"{self.body_kind} body ({len(self.body)} bytes)={body!r}, {self.credentials!r})"
        )


@st.composite
def content_type(draw: st.DrawFn, kind: str) -> str | None:
    """Mostly the right media type for ``kind`` (``None`` for "no header")."""
    if draw(st.integers(0, 99)) < 90:
        return {"json": JSON_TYPES[0], "protobuf": PROTOBUF_TYPES[0]}.get(kind)
    return draw(st.one_of(st.sampled_from(PROTOBUF_TYPES + JSON_TYPES), st.none(), header_text(80)))


@st.composite
def http_method(draw: st.DrawFn) -> str:
    return "POST" if draw(st.integers(0, 99)) < 97 else draw(st.sampled_from(_OTHER_METHODS))


def extra_headers() -> st.SearchStrategy[list[tuple[str, str]]]:
    """Headers some clients send: request ids (idempotency keys), a Twirp deadline."""
    names = st.sampled_from(["X-Livekit-Request-Id", "Idempotency-Key", "X-Twirp-Timeout-Ms"])
    return st.lists(st.tuples(names, header_text(200)), max_size=2)
