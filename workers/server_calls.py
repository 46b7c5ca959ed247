"""The Redis calls of one agent server, built here and nowhere else: the SDK sends them, and
so do loadgen's virtual servers, which must stay byte for byte what the SDK sends."""

from __future__ import annotations

import time
from collections.abc import Iterable

from dispatcher.store import calls, keys, scripts
from dispatcher.store.calls import Description
from dispatcher.wire import JobReport, JobSpec, JobStatus, encode


def queue_heartbeat(
    batch: scripts.Batch,
    shard: keys.ShardKeys,
    server_id: str,
    ttl_ms: int,
    description: Description | None,
    running: Iterable[str] = (),
) -> None:
    """The heartbeat script; ``description`` is (capacity, load, status, info), or None
    when nothing changed. A description names the pool again: a failover may lose the
    write that first named it."""
    batch.script(
        scripts.heartbeat, *calls.heartbeat(shard, server_id, ttl_ms, description, running)
    )
    if description is not None:
        batch.command("SADD", keys.POOLS, shard.pool)


def lease_extension(
    shard: keys.ShardKeys, server_id: str, expires_ms: int
) -> tuple[str, str, list[scripts.ScriptArg]]:
    """A quiet heartbeat as (command, key, arguments): the new expiry of a server its shard
    knows (``XX``), never moved back (``GT``); it answers 0 when the server is gone."""
    return "ZADD", shard.exp, ["XX", "GT", "CH", expires_ms, server_id]


def queue_report(
    batch: scripts.Batch,
    spec: JobSpec,
    server_id: str,
    status: JobStatus,
    error: str = "",
    *,
    fenced: bool = False,
) -> None:
    """A job's report, appended to its partition's stream."""
    report = JobReport(
        dispatch_id=spec.dispatch_id,
        job_id=spec.job_id,
        attempt=spec.attempt,
        server_id=server_id,
        pool=spec.pool,
        status=status,
        error=error,
        at=time.time_ns(),
        key=spec.key,
        fenced=fenced,
    )
    batch.command("XADD", keys.partition_keys(spec.partition).events, "*", "e", encode(report))
