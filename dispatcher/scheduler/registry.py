"""The scheduler's snapshot of every agent-server pool, refreshed a few times a second.

Placement ranks candidates from this snapshot; the reservation script re-checks them, so
staleness costs at most a retry. The snapshot also tells partitions which servers are dead.

Loss is judged on evidence: a server is lost only once its heartbeat expiry has passed and
it has had a whole TTL to heartbeat since Redis was last seen coming back (a refresh that
failed, or a connection that dropped, means Redis may have been away, and expiries run on
Redis's clock while nobody can reach it), plus a margin that keeps the agent servers' own
fence ahead of any re-placement.
"""

from __future__ import annotations

import asyncio
import logging
import time

from dispatcher.scheduler.placement import ServerView
from dispatcher.store import keys, scripts
from dispatcher.store.client import Client, is_unavailable, log_failure
from dispatcher.wire import ServerStatus

log = logging.getLogger(__name__)


class Registry:
    def __init__(
        self, client: Client, interval_s: float, reap_after_ms: int, loss_margin_ms: int = 500
    ) -> None:
        self._client = client
        self._interval_s = interval_s
        self._reap_after_ms = reap_after_ms
        self._loss_margin_ms = loss_margin_ms
        self._back_at_ms = 0  # Redis ms when Redis was last seen coming back
        self._unreachable = True  # nothing seen yet: the first refresh counts as a return
        self._disconnects = 0  # the fast lane's count at the last good refresh
        self._unreachable_logged = False
        self._pools: dict[str, list[ServerView]] = {}
        self._offset_ms = 0  # Redis clock minus local clock
        self._refreshed_at = float("-inf")  # monotonic time of the last good refresh
        self.version = 0
        self.freed = 0  # slots freed locally so far: jobs waiting for capacity retry on it

    def now_ms(self) -> int:
        """Now on Redis's clock, which every expiry in the registry uses."""
        return int(time.time() * 1000) + self._offset_ms

    def servers(self, agent_name: str) -> list[ServerView]:
        return self._pools.get(agent_name, [])

    def is_lost(self, agent_name: str, server_id: str) -> bool:
        """True once the server's heartbeat has expired (or it left the pool). A stale
        snapshot (Redis unreachable for a while) declares nothing lost: its expiry times
        would make every server look dead."""
        if time.monotonic() - self._refreshed_at > max(1.0, 4 * self._interval_s):
            return False
        server = next((s for s in self.servers(agent_name) if s.id == server_id), None)
        if server is None:
            return True  # left the pool, or reaped
        return self.now_ms() > self.lost_after(server)

    def lost_after(self, server: ServerView) -> int:
        """Redis ms after which the server counts as lost."""
        fresh = self._back_at_ms + server.ttl_ms  # its chance to heartbeat since Redis is back
        return max(server.expires_at, fresh) + self._loss_margin_ms

    def note_reserved(self, agent_name: str, server_id: str) -> None:
        """Count a reservation locally so the rest of a batch spreads over other servers."""
        for server in self.servers(agent_name):
            if server.id == server_id:
                server.used += 1

    def note_released(self, agent_name: str, server_id: str) -> None:
        """Count a slot freed by a job that ended or was rejected: without it, a busy server
        would look full until the next snapshot while its slots are in fact free."""
        for server in self.servers(agent_name):
            if server.id == server_id and server.used > 0:
                server.used -= 1
                self.freed += 1

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # policy: the snapshot goes stale; no loss is judged
                if not self._unreachable_logged:  # once per outage
                    log_failure(log, "registry refresh", exc)
                self._unreachable_logged = is_unavailable(exc)
            else:
                self._unreachable_logged = False
            await asyncio.sleep(self._interval_s)

    async def refresh(self) -> None:
        # The fast lane, not redis-py: a refresh cancelled at shutdown must stop at once.
        disconnects = self._client.fast.disconnects
        try:
            pools = await self._scan()
        except Exception:
            self._unreachable = True
            raise
        if self._unreachable or disconnects != self._disconnects:
            self._back_at_ms = self.now_ms()
            log.info("Redis reachable: agent servers get a full TTL from now to heartbeat")
        self._unreachable, self._disconnects = False, disconnects
        self._pools = pools
        self._refreshed_at = time.monotonic()
        self.version += 1

    async def _scan(self) -> dict[str, list[ServerView]]:
        members: list[bytes] = await self._client.fast.execute("SMEMBERS", keys.POOLS)
        names = sorted(n.decode() for n in members)
        batch = scripts.Batch()
        for name in names:
            pool = keys.pool_keys(name)
            prefix = pool.servers.removesuffix("servers")
            batch.script(
                scripts.pool_scan, [pool.servers, pool.jobs], [prefix, self._reap_after_ms]
            )
        results = await batch.run(self._client)
        return {name: self._parse(result) for name, result in zip(names, results, strict=True)}

    def _parse(self, result: list[bytes | int]) -> list[ServerView]:
        self._offset_ms = int(result[0]) - int(time.time() * 1000)
        rows = result[1:]
        return [
            ServerView(
                id=_str(rows[i]),
                capacity=int(rows[i + 1]),
                load=float(rows[i + 2]),
                status=ServerStatus(int(rows[i + 3])),
                expires_at=int(rows[i + 4]),
                used=int(rows[i + 5]),
                ttl_ms=int(rows[i + 6]),
            )
            for i in range(0, len(rows), 7)
        ]


def _str(value: bytes | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
