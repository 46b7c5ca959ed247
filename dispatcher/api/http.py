"""Requests, responses and routing of the API node's HTTP server (``httpserver.py``).

Routes are exact paths (GET and HEAD) or path prefixes (any method)::

    app = HttpApp()
    app.route("/healthz", healthz)                      # GET and HEAD
    app.prefix("/twirp/", twirp.handle, twirp.refuse)   # any method; the handler checks it

Handlers are ``async (Request) -> Response``; an exception becomes a plain 500. A prefix
may word the server's own refusals (too large, too slow, malformed) in its protocol. A
handler of an ``Upgrade:`` request may answer ``Upgrade`` to take the connection over, and
any handler may answer ``Stream`` to write a long reply itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, overload
from urllib.parse import parse_qsl

Handler = Callable[["Request"], Awaitable["Response"]]
Refuser = Callable[[int, str], "Response"]  # (HTTP status, message) -> the reply


class Headers:
    """Request headers by case-insensitive name (repeated headers joined with ", ")."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str] | None = None) -> None:
        self._items = items if items is not None else {}

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        return self._items.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class Request:
    """One whole request: ``body`` is read completely before the handler runs.

    ``body_too_large`` says the body passed the server's limit and was dropped; the
    connection closes after the response."""

    __slots__ = ("_query", "body", "body_too_large", "headers", "method", "path", "query_string")

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: bytes = b"",
        *,
        body_too_large: bool = False,
    ) -> None:
        self.method = method
        self.path, _, self.query_string = target.partition("?")
        self.headers = headers
        self.body = body
        self.body_too_large = body_too_large
        self._query: dict[str, str] | None = None

    @property
    def query(self) -> Mapping[str, str]:
        """The query string's parameters (the first value of a repeated one)."""
        if self._query is None:
            self._query = {}
            for name, value in parse_qsl(self.query_string, keep_blank_values=True):
                self._query.setdefault(name, value)
        return self._query


class Response:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        content_type: str = "application/octet-stream",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers  # beyond Content-Type, Content-Length, Date and Connection

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode(), "text/plain; charset=utf-8")


class Upgrade(Response):
    """A handler's answer that takes the connection over (a WebSocket): the server stops
    speaking HTTP on it and calls ``take_over`` with the transport and whatever bytes the
    client sent after the request head."""

    __slots__ = ("take_over",)

    def __init__(self, take_over: Callable[[asyncio.Transport, bytes], None]) -> None:
        super().__init__(101)
        self.take_over = take_over


class Stream(Upgrade):
    """A reply its handler writes itself, head included, for as long as it likes (server-sent
    events): the server hands the connection over as it does an upgrade's."""

    __slots__ = ()

    def __init__(self, take_over: Callable[[asyncio.Transport, bytes], None]) -> None:
        super().__init__(take_over)
        self.status = 200


class HttpApp:
    """Routes: exact paths (GET and HEAD) and path prefixes (any method)."""

    def __init__(self, *, max_body_size: int = 10 * 1024 * 1024) -> None:
        self.max_body_size = max_body_size
        self._routes: dict[str, Handler] = {}
        self._prefixes: list[tuple[str, Handler]] = []
        self._refusers: list[tuple[str, Refuser]] = []
        self.state: dict[str, Any] = {}  # shared objects, e.g. the Twirp router

    def route(self, path: str, handler: Handler) -> None:
        self._routes[path] = handler

    def prefix(self, prefix: str, handler: Handler, refuser: Refuser | None = None) -> None:
        """Serve paths under ``prefix``; ``refuser`` words the server's own refusals of
        such requests (too large, too slow, malformed) in the prefix's protocol."""
        self._prefixes.append((prefix, handler))
        if refuser is not None:
            self._refusers.append((prefix, refuser))

    def refusal(self, target: str, status: int, message: str) -> Response:
        """The reply to a request the server refuses before any handler sees it."""
        for prefix, refuser in self._refusers:
            if target.startswith(prefix):
                return refuser(status, message)
        return Response.text(message, status)

    async def handle(self, request: Request) -> Response:
        for prefix, handler in self._prefixes:
            if request.path.startswith(prefix):
                return await handler(request)
        route = self._routes.get(request.path)
        if route is None:
            return Response.text("not found", 404)
        if request.method not in ("GET", "HEAD"):
            return Response.text("method not allowed", 405)
        return await route(request)
