"""An ``HttpApp`` served on a free loopback port, with an aiohttp session pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from dispatcher.api.http import HttpApp
from dispatcher.api.httpserver import HttpServer


@dataclass
class Served:
    app: HttpApp
    server: HttpServer
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def make_url(self, path: str) -> str:
        return self.url + path

    def get(self, path: str, **kwargs: object) -> aiohttp.client._RequestContextManager:
        return self.session.get(self.make_url(path), **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> aiohttp.client._RequestContextManager:
        return self.session.post(self.make_url(path), **kwargs)  # type: ignore[arg-type]

    def request(
        self, method: str, path: str, **kwargs: object
    ) -> aiohttp.client._RequestContextManager:
        return self.session.request(method, self.make_url(path), **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def served(app: HttpApp) -> AsyncIterator[Served]:
    server = HttpServer(app)
    await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield Served(app, server, session)
    finally:
        await server.aclose()
