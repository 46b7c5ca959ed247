"""``/healthz`` and ``/readyz`` for the roles that serve no HTTP API of their own: schedulers
and agent servers (the API node answers both on its own port).

Liveness is answered by the event loop alone, never by Redis: a Redis outage must not get
every pod restarted. Readiness asks the role why it is not ready and says so in words,
without internal addresses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from dispatcher.api.http import HttpApp, Request, Response
from dispatcher.api.httpserver import HttpServer, ServerLimits

log = logging.getLogger(__name__)

LIVENESS = "/healthz"
READINESS = "/readyz"
NotReady = Callable[[], str | None]  # why the role is not ready; None when it is
LIMITS = ServerLimits(max_connections=64, max_head_bytes=8 * 1024, head_timeout_s=5.0)


def health_app(not_ready: NotReady) -> HttpApp:
    app = HttpApp(max_body_size=0)

    async def healthz(_: Request) -> Response:
        return Response.text("ok")

    async def readyz(_: Request) -> Response:
        reason = not_ready()
        if reason is not None:
            return Response.text(f"not ready: {reason}", 503)
        return Response.text("ready")

    app.route(LIVENESS, healthz)
    app.route(READINESS, readyz)
    return app


class HealthServer:
    """The two probes on ``host:port``; port 0 serves nothing."""

    def __init__(self, not_ready: NotReady, host: str, port: int) -> None:
        self._server = HttpServer(health_app(not_ready), LIMITS) if port else None
        self._host, self._port = host, port

    async def start(self) -> None:
        if self._server is not None:
            await self._server.start(self._host, self._port)
            log.info("health probes on %s:%d (/healthz, /readyz)", self._host, self._port)

    async def aclose(self) -> None:
        if self._server is not None:
            await self._server.aclose(grace_s=1.0)
