"""A deployment as Redis shows it, read in three pipelined round trips: the schedulers and
the partitions each holds (with each partition's stream lag), the pools with their servers,
and what the schedulers counted (``dsp:{stats}:schedulers``, ``scheduler/figures.py``).

Nothing here walks the keyspace: partitions are numbered, pools are listed in
``dsp:pools``, and a pool's servers are the members of its shards' expiry indexes.
``dispatcher status`` prints a snapshot; the dashboard sends one a second to its viewers.
"""

from __future__ import annotations

import heapq
from typing import Any

import msgspec

from dispatcher.settings import DEFAULT_POOL_SHARDS
from dispatcher.store import keys
from dispatcher.store.client import Client
from dispatcher.wire import (
    Failure,
    JobType,
    SchedulerFigures,
    ServerInfo,
    ServerStatus,
    figures_decoder,
    server_info_decoder,
)

RECENT_FAILURES = 20
_FRESH_HEARTBEATS = 4  # a node's figures older than this many heartbeats are ignored
_FRESH_MARGIN_MS = 1000
_POOL_TYPE_SEPARATOR = "\x1f"


class SchedulerView(msgspec.Struct, kw_only=True, rename="camel"):
    node_id: str
    alive: bool  # its membership has not expired
    expires_at_ms: int
    partitions: list[int]  # the leases it holds


class PartitionView(msgspec.Struct, kw_only=True, rename="camel"):
    partition: int
    owner: str  # "" when no lease is held
    lag: int | None  # entries not yet read by the group (None: unknown)
    pending: int  # entries read and not yet acked


class ServerView(msgspec.Struct, kw_only=True, rename="camel"):
    id: str
    status: str  # available, full, draining, or gone (its heartbeat expired)
    capacity: int
    used: int  # reserved slots (running or about to)
    load: float
    version: str
    labels: dict[str, str]
    host: str
    last_heartbeat_ms: int  # Redis ms


class PoolView(msgspec.Struct, kw_only=True, rename="camel"):
    name: str
    agent_name: str
    job_type: str
    servers_total: int  # every server its shards list, gone ones included
    servers_live: int  # those whose heartbeat has not expired
    capacity: int  # of the live servers detailed below
    used: int
    servers: list[ServerView]  # the live ones first; at most the snapshot's limit
    partial: bool  # some live servers were left out by the limit (capacity counts fewer)


class Totals(msgspec.Struct, kw_only=True, rename="camel"):
    """The fresh figures of every scheduler, added up."""

    jobs_created: int = 0
    jobs_started: int = 0
    attempts_retried: int = 0
    jobs_ended: dict[str, int] = {}
    jobs_by_phase: dict[str, int] = {}
    pending_by_reason: dict[str, int] = {}
    dispatch_bounds_ms: list[float] = []
    dispatch_counts: list[int] = []
    dispatch_sum_ms: float = 0.0


class FailureView(msgspec.Struct, kw_only=True, rename="camel"):
    job_id: str
    dispatch_id: str
    room: str
    agent_name: str
    server_id: str
    error: str
    reason: str
    at_ms: int

    @classmethod
    def of(cls, failure: Failure) -> FailureView:
        f = failure
        return cls(
            job_id=f.job_id,
            dispatch_id=f.dispatch_id,
            room=f.room,
            agent_name=f.agent_name,
            server_id=f.server_id,
            error=f.error,
            reason=f.reason,
            at_ms=f.at // 1_000_000,
        )


class Snapshot(msgspec.Struct, kw_only=True, rename="camel"):
    at_ms: int  # Redis's clock
    partition_count: int
    schedulers: list[SchedulerView]
    partitions: list[PartitionView]
    pools: list[PoolView]
    totals: Totals
    failures: list[FailureView]  # the latest of every scheduler, newest first
    figures: list[SchedulerFigures]  # each fresh record, for readers that diff them

    def to_builtins(self) -> dict[str, Any]:
        """As JSON would have it (camelCase), without the raw records."""
        built: dict[str, Any] = msgspec.to_builtins(self)
        built.pop("figures", None)
        return built


async def collect(client: Client, server_limit: int | None = None) -> Snapshot:
    """One snapshot; ``server_limit`` caps the servers detailed per pool (two reads each),
    so that a page refreshed every second costs Redis a bounded amount however large the
    fleet; ``None`` details them all."""
    first: list[Call] = [
        (("TIME",), keys.META),
        (("HMGET", keys.META, "partitions", "pool_shards"), keys.META),
        (("ZRANGE", keys.SCHEDULERS, 0, -1, "WITHSCORES"), keys.SCHEDULERS),
        (("SMEMBERS", keys.POOLS), keys.POOLS),
        (("HGETALL", keys.SCHEDULER_FIGURES), keys.SCHEDULER_FIGURES),
    ]
    clock, (count, shards), members, pools, raw_figures = await _replies(client, first)
    now_ms = int(clock[0]) * 1000 + int(clock[1]) // 1000
    partition_count = int(count or 0)
    shard_count = int(shards or DEFAULT_POOL_SHARDS)
    pool_names = sorted(p.decode() for p in pools)
    partitions, expiries = await _partitions_and_shards(
        client, partition_count, pool_names, shard_count
    )
    pool_views = await _pools(client, pool_names, shard_count, expiries, now_ms, server_limit)
    figures = _fresh(raw_figures, now_ms)
    return Snapshot(
        at_ms=now_ms,
        partition_count=partition_count,
        schedulers=_schedulers(members, partitions, now_ms),
        partitions=partitions,
        pools=pool_views,
        totals=add_up(figures),
        failures=latest_failures(figures),
        figures=figures,
    )


async def _partitions_and_shards(
    client: Client, partition_count: int, pools: list[str], shards: int
) -> tuple[list[PartitionView], dict[tuple[str, int], list[bytes]]]:
    """Each partition's lease and consumer group; each pool shard's expiry index."""
    calls: list[Call] = []
    for partition in range(partition_count):
        k = keys.partition_keys(partition)
        calls.append((("GET", k.lease), k.lease))
        calls.append((("XINFO", "GROUPS", k.events), k.events))
    shard_list = [(pool, shard) for pool in pools for shard in range(shards)]
    for pool, shard in shard_list:
        exp = keys.shard_keys(pool, shard, shards).exp
        calls.append((("ZRANGE", exp, 0, -1, "WITHSCORES"), exp))
    results = await _outcomes(client, calls)
    views = []
    for partition in range(partition_count):
        lease = _raise_failed(results[2 * partition])
        groups = results[2 * partition + 1]  # fails when the stream does not exist yet
        owner = lease.decode().rpartition("/")[0] if isinstance(lease, bytes) else ""
        lag, pending = _group_figures(groups)
        views.append(PartitionView(partition=partition, owner=owner, lag=lag, pending=pending))
    rest = results[2 * partition_count :]
    expiries = {where: _raise_failed(r) for where, r in zip(shard_list, rest, strict=True)}
    return views, expiries


Call = tuple[tuple[Any, ...], str]  # a command and the key that routes it


async def _outcomes(client: Client, calls: list[Call]) -> list[Any]:
    """Every call's reply in order, sent in one pipelined write per node; a failed call's
    reply is its exception, for the caller to judge where it reads it."""
    fast = client.fast
    futures = [fast.send(args, key) for args, key in calls]
    outcomes: list[Any] = []
    for future, (args, _) in zip(futures, calls, strict=True):
        try:
            outcomes.append(await fast.finish(future, args))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


async def _replies(client: Client, calls: list[Call]) -> list[Any]:
    """``_outcomes``, raising the first failure: a snapshot with a hole would mislead."""
    outcomes = await _outcomes(client, calls)
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome
    return outcomes


def _raise_failed(result: Any) -> Any:
    if isinstance(result, Exception):
        raise result
    return result


def _group_figures(groups: Any) -> tuple[int | None, int]:
    """Lag and pending count of the schedulers' group (XINFO GROUPS, a list of flat maps)."""
    if isinstance(groups, Exception):
        return 0, 0  # no stream yet: nothing was ever sent to this partition
    for flat in groups:
        fields = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
        name = fields.get("name")
        if name is not None and name.decode() == keys.CONSUMER_GROUP:
            lag = fields.get("lag")
            return (None if lag is None else int(lag)), int(fields.get("pending") or 0)
    return None, 0


def _schedulers(
    members: list[bytes], partitions: list[PartitionView], now_ms: int
) -> list[SchedulerView]:
    held: dict[str, list[int]] = {}
    for view in partitions:
        if view.owner:
            held.setdefault(view.owner, []).append(view.partition)
    views = []
    for i in range(0, len(members), 2):
        node, expires = members[i].decode(), int(float(members[i + 1]))
        views.append(
            SchedulerView(
                node_id=node,
                alive=expires > now_ms,
                expires_at_ms=expires,
                partitions=held.pop(node, []),
            )
        )
    for node, owned in sorted(held.items()):  # holds leases but left the membership
        views.append(SchedulerView(node_id=node, alive=False, expires_at_ms=0, partitions=owned))
    return views


async def _pools(
    client: Client,
    pools: list[str],
    shards: int,
    expiries: dict[tuple[str, int], list[bytes]],
    now_ms: int,
    server_limit: int | None,
) -> list[PoolView]:
    listed: dict[str, list[tuple[int, str, int]]] = {pool: [] for pool in pools}
    for (pool, shard), flat in expiries.items():
        for i in range(0, len(flat), 2):
            listed[pool].append((shard, flat[i].decode(), int(float(flat[i + 1]))))
    chosen = {pool: _live_first(servers, now_ms, server_limit) for pool, servers in listed.items()}
    calls: list[Call] = []
    for pool, entries in chosen.items():
        for shard, server_id, _ in entries:
            k = keys.shard_keys(pool, shard, shards)
            calls.append((("HGETALL", k.server(server_id)), k.jobs))
            calls.append((("HLEN", k.reservations(server_id)), k.jobs))
    replies = iter(await _replies(client, calls))
    views = []
    for pool in pools:
        details = [
            _server(server_id, expiry, next(replies), next(replies), now_ms)
            for _, server_id, expiry in chosen[pool]
        ]
        live = sum(expiry > now_ms for _, _, expiry in listed[pool])
        views.append(_pool(pool, len(listed[pool]), live, details))
    return views


def _live_first(
    servers: list[tuple[int, str, int]], now_ms: int, limit: int | None
) -> list[tuple[int, str, int]]:
    ordered = sorted(servers, key=lambda s: (s[2] <= now_ms, s[1]))
    return ordered if limit is None else ordered[:limit]


def _server(server_id: str, expiry: int, raw: list[bytes], used: int, now_ms: int) -> ServerView:
    fields = {raw[i].decode(): raw[i + 1] for i in range(0, len(raw), 2)}
    info = _info(fields.get("info"))
    ttl = int(fields.get("ttl") or 0)
    status = _status(fields.get("status")) if expiry > now_ms else "gone"
    return ServerView(
        id=server_id,
        status=status,
        capacity=int(fields.get("cap") or 0),
        used=int(used),
        load=float(fields.get("load") or 0),
        version=info.version if info else "",
        labels=dict(info.labels) if info else {},
        host=f"{info.host}:{info.pid}" if info else "",
        last_heartbeat_ms=expiry - ttl,
    )


def _info(raw: bytes | None) -> ServerInfo | None:
    """What a server said of itself; None when it said nothing this reader can read."""
    try:
        return server_info_decoder.decode(raw) if raw else None
    except msgspec.DecodeError:
        return None


def _status(raw: bytes | None) -> str:
    try:
        return ServerStatus(int(raw or 0)).name.lower()
    except ValueError:
        return f"status {raw!r}"


def _pool(name: str, servers_total: int, servers_live: int, servers: list[ServerView]) -> PoolView:
    agent_name, _, job_type = name.partition(_POOL_TYPE_SEPARATOR)
    live = [s for s in servers if s.status != "gone"]
    return PoolView(
        name=name,
        agent_name=agent_name,
        job_type=job_type or JobType.ROOM.name.lower(),
        servers_total=servers_total,
        servers_live=servers_live,
        capacity=sum(s.capacity for s in live),
        used=sum(s.used for s in live),
        servers=servers,
        partial=len(live) < servers_live,
    )


def _fresh(raw: list[bytes], now_ms: int) -> list[SchedulerFigures]:
    """Each scheduler's record, unless it stopped writing it (a crashed node's stays)."""
    fresh = []
    for i in range(1, len(raw), 2):
        try:
            record = figures_decoder.decode(raw[i])
        except msgspec.DecodeError:
            continue  # a newer node's record this reader cannot read: left out
        age_ms = now_ms - record.at // 1_000_000
        if age_ms <= _FRESH_HEARTBEATS * record.heartbeat_ms + _FRESH_MARGIN_MS:
            fresh.append(record)
    return sorted(fresh, key=lambda r: r.node_id)


def add_up(figures: list[SchedulerFigures]) -> Totals:
    totals = Totals()
    for record in figures:
        totals.jobs_created += record.jobs_created
        totals.jobs_started += record.jobs_started
        totals.attempts_retried += record.attempts_retried
        _add(totals.jobs_ended, record.jobs_ended)
        _add(totals.jobs_by_phase, record.jobs_by_phase)
        _add(totals.pending_by_reason, record.pending_by_reason)
        if not totals.dispatch_bounds_ms:
            totals.dispatch_bounds_ms = list(record.dispatch_bounds_ms)
            totals.dispatch_counts = [0] * len(record.dispatch_counts)
        if record.dispatch_bounds_ms == totals.dispatch_bounds_ms:
            for i, n in enumerate(record.dispatch_counts):
                totals.dispatch_counts[i] += n
            totals.dispatch_sum_ms += record.dispatch_sum_ms
    return totals


def _add(into: dict[str, int], counts: dict[str, int]) -> None:
    for name, n in counts.items():
        into[name] = into.get(name, 0) + n


def latest_failures(figures: list[SchedulerFigures]) -> list[FailureView]:
    every = (f for record in figures for f in record.failures)
    return [FailureView.of(f) for f in heapq.nlargest(RECENT_FAILURES, every, key=lambda f: f.at)]
