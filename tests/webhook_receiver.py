"""A real HTTP endpoint that receives webhooks: it records every request, and can refuse
connections (not listening), answer 5xx, or accept."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web
from livekit import api

from dispatcher.localredis import free_port

HOOK_KEY = "hookkey"
HOOK_SECRET = "hooksecret-hooksecret-hooksecret"


@dataclass
class Received:
    body: str
    authorization: str
    content_type: str
    status: int  # what the receiver answered


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    status: int = 200  # what it answers while listening
    refused_rooms: set[str] = field(default_factory=set)  # events of these get a 503
    received: list[Received] = field(default_factory=list)  # every request, answered or not
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def listen(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        """Stop listening: connections are refused from here on."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        room = json.loads(body).get("room", {}).get("name", "")
        status = 503 if room in self.refused_rooms else self.status
        self.received.append(
            Received(
                body,
                request.headers.get("Authorization", ""),
                request.headers.get("Content-Type", ""),
                status,
            )
        )
        return web.Response(status=status)

    def accepted(self, secret: str = HOOK_SECRET) -> list[api.WebhookEvent]:
        """The events of the requests answered 2xx, as LiveKit's receiver reads them (one
        that does not verify raises)."""
        receiver = api.WebhookReceiver(api.TokenVerifier(HOOK_KEY, secret))
        ok = [r for r in self.received if 200 <= r.status < 300]
        return [receiver.receive(r.body, r.authorization) for r in ok]

    def kinds(self) -> Counter[tuple[str, str]]:
        """How many events of each (room, event) were accepted, a repeat counted once."""
        unique = {e.id: e for e in self.accepted()}
        return Counter((e.room.name, e.event) for e in unique.values())

    def order(self, room: str) -> list[str]:
        """The room's events in the order they were first accepted."""
        seen: dict[str, None] = {}
        for event in self.accepted():
            if event.room.name == room:
                seen.setdefault(event.event)
        return list(seen)
