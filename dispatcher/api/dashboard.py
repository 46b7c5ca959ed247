"""``/dashboard``: a live page of the deployment, behind a login with an API key and secret.

The login form checks the key and secret against the node's configured keys and sets a
session cookie: ``<key>.<expiry>.<signature>``, signed with HMAC-SHA256 under that key's
secret, so every API node with the same keys accepts it and removing a key ends its
sessions. The cookie is HttpOnly and SameSite=Strict, scoped to ``/dashboard``. Every data
route refuses a request without a valid cookie. The page's assets (``observe/static``) hold
no data and are served to anyone, so the login form has its style.

Data reach the page as server-sent events from the node's one ``Feed``: a snapshot a
second, however many viewers.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import html
import logging
import time
from importlib import resources
from urllib.parse import parse_qsl

from dispatcher.api.http import HttpApp, Request, Response, Stream
from dispatcher.errors import describe
from dispatcher.observe.feed import Feed

log = logging.getLogger(__name__)
PREFIX = "/dashboard"
COOKIE = "dsp_dashboard"
SESSION_S = 12 * 3600
_ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
_PAGE_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    ),
)


@functools.cache
def _static(name: str) -> bytes:
    return resources.files("dispatcher.observe").joinpath("static", name).read_bytes()


class Sessions:
    """Signs and checks session cookies with the configured API keys."""

    def __init__(self, api_keys: dict[str, str], lifetime_s: int = SESSION_S) -> None:
        self._keys = api_keys
        self._lifetime_s = lifetime_s

    def login(self, key: str, secret: str) -> bool:
        expected = self._keys.get(key)
        # Compared even for an unknown key, so the answer takes as long either way.
        ok = hmac.compare_digest(secret.encode(), (expected or "\0").encode())
        return expected is not None and ok

    def cookie_for(self, key: str, now: float) -> str:
        expiry = int(now) + self._lifetime_s
        name = _b64(key.encode())
        return f"{name}.{expiry}.{self._sign(key, expiry)}"

    def valid(self, cookie: str | None, now: float) -> bool:
        if not cookie:
            return False
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return False
        try:
            key = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)).decode()
        except ValueError:  # binascii.Error and UnicodeDecodeError both are
            return False
        expiry = int(parts[1])
        if key not in self._keys or expiry <= now:
            return False
        return hmac.compare_digest(parts[2], self._sign(key, expiry))

    def _sign(self, key: str, expiry: int) -> str:
        message = f"dashboard|{key}|{expiry}".encode()
        return _b64(hmac.new(self._keys[key].encode(), message, hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cookie_of(request: Request, name: str = COOKIE) -> str | None:
    for part in (request.headers.get("cookie") or "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


class Dashboard:
    def __init__(self, sessions: Sessions, feed: Feed) -> None:
        self._sessions = sessions
        self._feed = feed
        self._routes = {
            ("GET", PREFIX): self._page,
            ("GET", PREFIX + "/"): self._page,
            ("POST", PREFIX + "/login"): self._login,
            ("POST", PREFIX + "/logout"): self._logout,
            ("GET", PREFIX + "/events"): self._events,
            ("GET", PREFIX + "/snapshot"): self._snapshot,
        }

    def install(self, app: HttpApp) -> None:
        app.prefix(PREFIX, self.handle)

    async def handle(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        route = self._routes.get((method, request.path))
        if route is not None:
            return await route(request)
        asset = request.path.removeprefix(PREFIX + "/static/")
        if method == "GET" and asset in _ASSETS:
            return Response(200, _static(asset), _ASSETS[asset], _PAGE_HEADERS)
        if any(path == request.path for _, path in self._routes):
            return Response.text("method not allowed", 405)
        return Response.text("not found", 404)

    def _signed_in(self, request: Request) -> bool:
        return self._sessions.valid(cookie_of(request), time.time())

    async def _page(self, request: Request) -> Response:
        if not self._signed_in(request):
            return _login_form()
        return _html(_static("dashboard.html"))

    async def _login(self, request: Request) -> Response:
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        key, secret = form.get("key", ""), form.get("secret", "")
        if not self._sessions.login(key, secret):
            log.info("dashboard: failed login for key %r", key[:64])
            return _login_form("Wrong API key or secret.", 401)
        cookie = self._sessions.cookie_for(key, time.time())
        attributes = f"Path={PREFIX}; Max-Age={SESSION_S}; HttpOnly; SameSite=Strict"
        return _redirect(PREFIX, f"{COOKIE}={cookie}; {attributes}")

    async def _logout(self, request: Request) -> Response:
        return _redirect(PREFIX, f"{COOKIE}=; Path={PREFIX}; Max-Age=0; HttpOnly; SameSite=Strict")

    async def _snapshot(self, request: Request) -> Response:
        if not self._signed_in(request):
            return _refused()
        try:
            message = await self._feed.one()
        except Exception as exc:  # policy: the caller is told, and may ask again
            log.warning("dashboard snapshot failed: %s", describe(exc))
            return Response.text("Redis is unavailable", 503)
        return Response(200, message, "application/json", _PAGE_HEADERS)

    async def _events(self, request: Request) -> Response:
        if not self._signed_in(request):
            return _refused()
        if request.method == "HEAD":
            return Response(200, b"", "text/event-stream", _PAGE_HEADERS)
        if self._feed.full():
            return Response.text("too many dashboard viewers on this node; retry later", 503)

        def take_over(transport: asyncio.Transport, _tail: bytes) -> None:
            EventStream(self._feed, transport)  # it lives as the transport's protocol

        return Stream(take_over)


class EventStream(asyncio.Protocol):
    """One viewer's server-sent events: the history first, then each message of the feed.
    Whatever the browser sends is ignored; the stream ends when it goes away."""

    HEAD = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
        b"X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
    )

    def __init__(self, feed: Feed, transport: asyncio.Transport) -> None:
        self._feed = feed
        self._transport = transport
        self._queue = feed.subscribe()
        transport.set_protocol(self)
        transport.write(self.HEAD + _event("history", feed.history_message()))
        self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        try:
            while not self._transport.is_closing():
                message = await self._queue.get()
                if not message:  # the feed closed: the node is stopping
                    self._transport.close()
                    return
                self._transport.write(_event("snapshot", message))
        finally:
            self._feed.unsubscribe(self._queue)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the browser closed its side: close ours

    def connection_lost(self, exc: Exception | None) -> None:
        self._task.cancel()


def _event(name: str, data: bytes) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (name.encode(), data)


def _html(body: bytes, status: int = 200) -> Response:
    return Response(status, body, "text/html; charset=utf-8", _PAGE_HEADERS)


def _login_form(error: str = "", status: int = 200) -> Response:
    page = _static("login.html").decode()
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return _html(page.replace("<!--error-->", message).encode(), status)


def _redirect(location: str, cookie: str) -> Response:
    headers = (("Location", location), ("Set-Cookie", cookie), ("Cache-Control", "no-store"))
    return Response(303, b"", "text/plain; charset=utf-8", headers)


def _refused() -> Response:
    return Response.text("log in first, at /dashboard", 401)
