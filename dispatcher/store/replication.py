"""Writes that must survive a failover: acknowledged only once enough replicas have them.

Redis replicates asynchronously, so a primary killed right after a write may take it along.
With ``DISPATCHER_REPLICA_ACKS`` = n > 0, the writes whose loss would break a promise (a
dispatch created or deleted, a room opened or deleted, an agent server's final report
before its slot is freed) are followed by ``WAIT n`` on the same connection: a write that
has not reached n replicas within ``DISPATCHER_REPLICA_ACK_TIMEOUT_MS`` fails as
unavailable (API calls answer 503 and may be retried under the same request id; agent
servers retry the report). Concurrent writes share one WAIT.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.errors import StoreUnavailable
from dispatcher.store.fastlane import FastLane


@dataclass(frozen=True, slots=True)
class Replication:
    replicas: int = 0  # 0: acknowledge writes as Redis does, without waiting
    timeout_ms: int = 500

    async def settle(self, lane: FastLane, key: str) -> None:
        """Return once ``replicas`` replicas have the lane's writes to ``key``'s node."""
        if self.replicas <= 0:
            return
        acked = await lane.wait_replicas(key, self.replicas, self.timeout_ms)
        if acked < self.replicas:
            raise StoreUnavailable(
                f"the write reached {acked} of {self.replicas} replica(s) within "
                f"{self.timeout_ms} ms"
            )
