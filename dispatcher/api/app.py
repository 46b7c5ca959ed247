"""The API node: an HTTP app serving the Twirp services plus health endpoints."""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import TYPE_CHECKING

from dispatcher.api.access import Authorizer
from dispatcher.api.auth import TokenVerifier
from dispatcher.api.dashboard import Dashboard, Sessions
from dispatcher.api.dispatch_service import DispatchService
from dispatcher.api.http import HttpApp, Request, Response
from dispatcher.api.httpserver import HttpServer, ServerLimits
from dispatcher.api.participant_service import ParticipantService
from dispatcher.api.room_service import RoomService, RoomStore
from dispatcher.api.servers_service import ServersService
from dispatcher.api.sip_inbound import SipInboundService
from dispatcher.api.sip_service import SipService
from dispatcher.api.twirp import TwirpRouter
from dispatcher.api.unimplemented import answer_the_rest
from dispatcher.api.validation import Limits
from dispatcher.errors import ConfigError, describe
from dispatcher.gateway.gateway import PATH as GATEWAY_PATH
from dispatcher.gateway.gateway import Gateway
from dispatcher.health import LIVENESS, READINESS
from dispatcher.metrics.serve import serving
from dispatcher.observe.feed import Feed
from dispatcher.settings import ApiSettings, api_key_pairs
from dispatcher.startup import start_when_redis_is_up
from dispatcher.store import scripts
from dispatcher.store.client import Client, connect
from dispatcher.store.meta import ensure_partitions

if TYPE_CHECKING:
    from dispatcher.metrics.export import Metrics

log = logging.getLogger(__name__)
DRAINING = "draining"  # app state: set once the node stops, so readiness fails first
IN_FLIGHT_GRACE_S = 10.0  # after the drain delay, for requests in progress to finish


def longest_drain_s(settings: ApiSettings) -> float:
    """The longest a SIGTERM'd node takes to stop (a pod's grace period must cover it)."""
    return settings.drain_delay_s + IN_FLIGHT_GRACE_S


def create_app(
    settings: ApiSettings,
    client: Client,
    api_keys: dict[str, str],
    gateway: Gateway,
    feed: Feed | None = None,
    metrics: Metrics | None = None,
) -> HttpApp:
    app = HttpApp() if metrics is None else _measured_app(metrics)
    authorizer = Authorizer(TokenVerifier(api_keys, settings.token_leeway_s))
    limits = Limits(
        max_metadata_bytes=settings.max_metadata_bytes,
        max_dispatches_per_room=settings.max_dispatches_per_room,
        max_list_bytes=settings.max_list_bytes,
        max_list_rooms=settings.max_list_rooms,
    )
    router = TwirpRouter(max_body_size=settings.max_body_bytes)
    router.install(app)
    dispatches = DispatchService(
        client, authorizer, settings.partitions, limits, settings.idempotency_ttl_s
    )
    dispatches.twirp().install(app)
    rooms = RoomStore(client, settings.partitions, settings.room_retention_s, limits)
    RoomService(rooms, authorizer, limits).twirp().install(app)
    ensure = settings.token_agents == "ensure"
    ParticipantService(rooms, authorizer, limits, ensure).twirp().install(app)
    SipService(client, authorizer, limits).twirp().install(app)
    SipInboundService(rooms, client, authorizer, ensure).twirp().install(app)
    ServersService(client, authorizer, settings.pool_shards).twirp().install(app)
    answer_the_rest(router)

    async def healthz(_: Request) -> Response:
        return Response.text("ok")

    async def readyz(_: Request) -> Response:
        if app.state.get(DRAINING):
            return Response.text("not ready: draining", 503)
        try:
            await client.fast.execute("PING")
        except Exception as exc:  # the reason is logged; the reply names no address
            log.warning("not ready: Redis unavailable (%s)", describe(exc))
            return Response.text("not ready: Redis is unavailable", 503)
        return Response.text("ready")

    app.route(LIVENESS, healthz)
    app.route(READINESS, readyz)
    app.route(GATEWAY_PATH, gateway.handle)
    Dashboard(Sessions(api_keys), feed or Feed(client)).install(app)
    return app


def _measured_app(metrics: Metrics) -> HttpApp:
    from dispatcher.metrics.api import MeasuredApp, RequestCounts

    counts = RequestCounts()
    metrics.add(counts)
    return MeasuredApp(counts)


def server_limits(settings: ApiSettings) -> ServerLimits:
    return ServerLimits(
        max_connections=settings.max_connections,
        max_head_bytes=settings.max_head_bytes,
        head_timeout_s=settings.head_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        keepalive_timeout_s=settings.keepalive_timeout_s,
    )


class ApiNode:
    def __init__(
        self,
        settings: ApiSettings,
        client: Client,
        api_keys: dict[str, str],
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.gateway = Gateway(client, api_keys, settings)
        self.feed = Feed(client)  # the dashboard's: one snapshot a second while watched
        self._app = create_app(settings, client, api_keys, self.gateway, self.feed, metrics)
        self._server = HttpServer(self._app, server_limits(settings))

    @classmethod
    async def create(cls, settings: ApiSettings, metrics: Metrics | None = None) -> ApiNode:
        """``metrics``: where the node's request metrics are exported (None: not counted)."""
        api_keys = api_key_pairs(settings)
        client = await connect(settings.redis_url, settings.replication())
        try:
            await ensure_partitions(client, settings.partitions)
            await scripts.load_all(client)
        except BaseException:
            await client.aclose()
            raise
        return cls(settings, client, api_keys, metrics)

    async def start(self) -> None:
        host, port = self.settings.host, self.settings.port
        try:
            await self._server.start(host, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise ConfigError(
                f"cannot listen on {host}:{port}: the port is in use (another API node or dev "
                "mode?); stop it or choose another port (--port)"
            ) from None
        log.info("API node listening on %s:%d", self.settings.host, self.settings.port)

    async def drain(self) -> None:
        """Fail readiness, keep serving for ``drain_delay_s`` (while load balancers take
        the node out), then stop accepting and let requests in progress finish."""
        self._app.state[DRAINING] = True
        log.info("API node draining: not ready, closing in %.1f s", self.settings.drain_delay_s)
        await asyncio.sleep(self.settings.drain_delay_s)
        await self.gateway.aclose()
        await self.feed.aclose()
        await self._server.aclose(IN_FLIGHT_GRACE_S)

    async def aclose(self) -> None:
        await self.gateway.aclose()
        await self.feed.aclose()
        await self._server.aclose()
        await self.client.aclose()


async def run_api(settings: ApiSettings, stop: asyncio.Event) -> None:
    async with serving(settings.metrics_host, settings.metrics_port) as metrics:
        node = await start_when_redis_is_up(
            lambda: ApiNode.create(settings, metrics), stop, "API node"
        )
        if node is None:
            return
        try:
            await node.start()
            await stop.wait()
            await node.drain()
        finally:
            await node.aclose()
