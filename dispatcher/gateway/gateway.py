"""``GET /agent``: where LiveKit's own agent workers connect to an API node.

The upgrade is authenticated first (a token with the ``video.agent`` grant, else 401 with
no upgrade, as the reference), then the connection leaves the HTTP server for a
``WebSocket`` and a ``WorkerSession``. The node keeps nothing durable about its workers:
each is an agent server in Redis like any other, and a worker that reconnects to another
node takes its server (and its running jobs) with it (``remote.py``).
"""

from __future__ import annotations

import asyncio
import logging
import socket

from dispatcher.api.auth import TokenVerifier, bearer_token
from dispatcher.api.http import Request, Response, Upgrade
from dispatcher.errors import AuthError, describe
from dispatcher.gateway.session import SessionConfig, WorkerSession
from dispatcher.gateway.websocket import WebSocket, handshake
from dispatcher.settings import ApiSettings
from dispatcher.store import keys
from dispatcher.store.client import Client
from dispatcher.wire import JobType, pool_name

log = logging.getLogger(__name__)

PATH = "/agent"
_GOING_AWAY = 1001
_CLOSE_WAIT_S = 5.0


class Gateway:
    def __init__(self, client: Client, api_keys: dict[str, str], settings: ApiSettings) -> None:
        self._client = client
        self._keys = api_keys
        self._verifier = TokenVerifier(api_keys, settings.token_leeway_s)
        self._pool_shards = settings.pool_shards
        self._config = SessionConfig(
            node_id=f"ND_{socket.gethostname()}",
            capacity=settings.gateway_capacity,
            heartbeat_ttl_ms=settings.gateway_heartbeat_ttl_ms,
            media_url=settings.media_url,
        )
        self._sessions: dict[WorkerSession, asyncio.Task[None]] = {}

    async def handle(self, request: Request) -> Response:
        try:
            token = bearer_token(request.headers.get("Authorization"), None)
            if token is None:
                raise AuthError("no access token")
            claims = self._verifier.verify(token)
        except AuthError as exc:
            return Response.text(f"unauthorized: {exc}", 401)
        if not claims.video.agent:
            return Response.text("unauthorized: the token lacks the video.agent grant", 401)
        protocol, reply = handshake(request)
        if reply.status_code != 101:
            return Response(reply.status_code, bytes(reply.body or b""), "text/plain")
        secret = self._keys[claims.iss]

        def take_over(transport: asyncio.Transport, tail: bytes) -> None:
            ws = WebSocket(protocol, reply, transport)
            if tail:
                ws.data_received(tail)
            session = WorkerSession(
                ws, claims.iss, secret, self._config, self._owner_of, self._client
            )
            task = asyncio.create_task(session.run(), name="worker-session")
            self._sessions[session] = task
            task.add_done_callback(lambda _: self._sessions.pop(session, None))

        return Upgrade(take_over)

    async def _owner_of(self, agent_name: str, job_type: JobType, job_ids: list[str]) -> str | None:
        """The server that holds any of ``job_ids`` in the worker's pool: each shard's
        ``jobs`` hash maps a reserved job to its server (read only after a reconnect)."""
        if not job_ids:
            return None
        pool = pool_name(agent_name, job_type)
        for shard in range(self._pool_shards):
            shard_keys = keys.shard_keys(pool, shard, self._pool_shards)
            try:
                owners = await self._client.fast.execute(
                    "HMGET", shard_keys.jobs, *job_ids, key=shard_keys.jobs
                )
            except Exception as exc:  # policy: a fresh server; the old one's jobs re-placed
                log.warning("could not look up migrated jobs (%s)", describe(exc))
                return None
            for owner in owners:
                if owner is not None:
                    return bytes(owner).decode()
        return None

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    async def aclose(self) -> None:
        """Close every worker socket (going away): workers reconnect to another node and
        take their running jobs there."""
        for session in list(self._sessions):
            session.ws.close(_GOING_AWAY, "node shutting down")
        tasks = list(self._sessions.values())
        if tasks:
            await asyncio.wait(tasks, timeout=_CLOSE_WAIT_S)
