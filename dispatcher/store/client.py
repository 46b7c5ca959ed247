"""Connecting to Redis: one node or a Redis Cluster, detected from the server itself.

A client is redis-py's, for the many cold calls (membership, snapshots, listings), plus
``fast``: the auto-pipelined lane that the dispatch path's calls take (see ``fastlane``).
Both read a ``rediss://`` URL's TLS options (``ssl_ca_certs``, ``ssl_certfile``, ...) alike;
the fast lane checks them first, so a bad one stops ``connect`` before any connection.
"""

from __future__ import annotations

import logging
from typing import Any, TypeAlias, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import ClusterError, ReadOnlyError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dispatcher.errors import BatchFailed, StoreUnavailable, describe
from dispatcher.metrics.counts import REDIS
from dispatcher.store.fastlane import FastLane, Redirect
from dispatcher.store.replication import Replication

# redis-py's asyncio pool raises once its cap is reached instead of waiting; a scheduler holds
# one blocking read per owned partition on top of its other calls, so the cap must be roomy.
MAX_CONNECTIONS = 1024


def _count_failure(exc: Exception) -> None:
    """A redis-py call that failed, for the process's Redis metrics."""
    if isinstance(exc, ResponseError):
        REDIS.error_reply("redis-py", str(exc))
    elif isinstance(exc, RedisTimeoutError | TimeoutError):
        REDIS.failed("redis-py", "timeout")
    else:
        REDIS.failed("redis-py", "connection_lost" if is_unavailable(exc) else "other")


class SingleClient(aioredis.Redis):
    """A client of one Redis node."""

    fast: FastLane
    replication = Replication()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except Exception as exc:
            _count_failure(exc)
            raise

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self.fast.aclose()
        await super().aclose(close_connection_pool)


class ClusterClient(RedisCluster):
    """A client of a Redis Cluster."""

    fast: FastLane
    replication = Replication()

    def __init__(
        self,
        *args: Any,
        ssl_ca_path: str | None = None,
        ssl_password: str | None = None,
        **kwargs: Any,
    ) -> None:
        """redis-py's cluster client takes every TLS option of a URL but these two, which
        its node connections do take: they join the arguments that every node's
        connections are made with (redis-py adds its maintenance-notification arguments
        the same way)."""
        super().__init__(*args, **kwargs)
        extra = {"ssl_ca_path": ssl_ca_path, "ssl_password": ssl_password}
        extra = {name: value for name, value in extra.items() if value is not None}
        if extra and kwargs.get("ssl"):
            self.nodes_manager.connection_kwargs.update(extra)  # nodes found from now on
            for node in self.nodes_manager.startup_nodes.values():  # made before this
                node.connection_kwargs.update(extra)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except Exception as exc:
            _count_failure(exc)
            raise

    async def aclose(self) -> None:
        await self.fast.aclose()
        await super().aclose()


Client: TypeAlias = "SingleClient | ClusterClient"
Pipeline: TypeAlias = "aioredis.client.Pipeline | ClusterPipeline"


async def connect(url: str, replication: Replication | None = None, **options: Any) -> Client:
    """Open a client for ``url``; a node with cluster mode enabled yields a cluster client.
    ``replication`` says which of its writes wait for replicas (see ``replication``)."""
    client = await _connect(url, **options)
    if replication is not None:
        client.replication = replication
    return client


async def _connect(url: str, **options: Any) -> Client:
    options.setdefault("max_connections", MAX_CONNECTIONS)
    fast = FastLane(url, cluster=False)  # first: it rejects a URL option it cannot use
    single = cast(SingleClient, SingleClient.from_url(url, **options))
    single.fast = fast
    try:
        info = await single.info("cluster")
    except Exception:
        await single.aclose()
        raise
    if not info.get("cluster_enabled"):
        return single
    await single.aclose()
    cluster = cast(ClusterClient, ClusterClient.from_url(url, **options))
    cluster.fast = FastLane(url, cluster=True)
    await cluster.initialize()
    return cluster


def is_cluster(client: Client) -> bool:
    return isinstance(client, RedisCluster)


# Error replies of a Redis that is up but not serving: loading its data, a cluster without a
# majority or a primary for the slot, a slot in migration, a replica that was just demoted.
_NOT_SERVING = (
    "LOADING", "CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN", "READONLY", "NOREPLICAS", "UNBLOCKED"
)  # fmt: skip


def is_unavailable(exc: BaseException) -> bool:
    """Whether a failure says Redis is (for now) unreachable or not serving, rather than
    that the call was wrong: the caller may answer "unavailable" and try again later."""
    if isinstance(exc, BatchFailed):
        return any(is_unavailable(f) for f in exc.failures)
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | StoreUnavailable):
        return True  # BusyLoadingError is a ConnectionError
    if isinstance(exc, Redirect | ClusterError | TryAgainError | ReadOnlyError):
        return True  # a slot on the move
    if isinstance(exc, OSError | TimeoutError):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_NOT_SERVING)


def log_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """Redis being unavailable is expected in an outage: a warning that names it. Anything
    else is a bug: the traceback."""
    if is_unavailable(exc):
        logger.warning("%s failed: Redis unavailable (%s)", what, describe(exc))
    else:
        logger.error("%s failed", what, exc_info=exc)
