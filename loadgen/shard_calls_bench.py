"""How long each control-plane call holds Redis at fleet scale, worst cases included.

Registers N servers in one pool (K shards), then times, by Redis's own slow log (every
call logged), each pool script in its heaviest case:

- ``shard_tick`` reading a full page of expiries, reaping and reclaiming its bounded
  amounts (every server of the shard has expired, every reservation is overdue);
- ``reserve`` walking its bounded number of stale free-index entries;
- ``heartbeat`` saying everything, and the plain ``ZADD`` of a quiet heartbeat.

    python -m loadgen.shard_calls_bench --servers 50000

Redis runs alone on CPU 0 at real-time priority where allowed; what the host steals
still shows in the maximum, so the median and p99 are reported with it, and so is the
longest gap a busy loop alone on CPU 0 saw afterwards (``host``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import statistics
import time
from typing import Any

import click
import orjson
import redis

from dispatcher.localredis import LocalRedis
from dispatcher.scheduler.registry import EXPIRED_PER_TICK, REAPED_PER_TICK, RECLAIMED_PER_TICK
from dispatcher.settings import SchedulerSettings
from dispatcher.store import calls, keys, scripts
from dispatcher.wire import JobSpec

POOL = "bench-agent"
ROUNDS = 200


def run(servers: int, shards: int, pin: bool = True) -> dict[str, Any]:
    local = LocalRedis(cpus="0" if pin else None)
    if pin:
        os.sched_setaffinity(0, {1})
        with contextlib.suppress(PermissionError):
            os.sched_setscheduler(local.pid, os.SCHED_FIFO, os.sched_param(10))
    r = redis.Redis(port=local.port)
    try:
        shas = {s.name: r.script_load(s.source) for s in scripts.ALL}
        _register(r, shas, servers, shards, ttl_ms=60_000)
        timings = {
            "heartbeat (saying everything)": _time(r, lambda n: _heartbeat(r, shas, n, shards)),
            "heartbeat (plain ZADD)": _time(r, lambda n: _quiet(r, n, shards), b"ZADD"),
        }
        _overdue_reservations(r, shas, servers, shards)
        _register(r, shas, servers, shards, ttl_ms=1)  # every server expires at once
        time.sleep(0.05)
        timings["reserve (stale index)"] = _time(r, lambda n: _reserve(r, shas, n, shards))
        timings["shard_tick (full page, reap, reclaim)"] = _time(
            r, lambda n: _tick(r, shas, n % shards, shards)
        )
        stalls = _host_stalls() if pin else None
        return {"servers": servers, "shards": shards, "calls_us": timings, "host": stalls}
    finally:
        r.close()
        local.stop()


def _host_stalls(seconds: float = 2.0) -> dict[str, int]:
    """What the host takes from CPU 0 on its own: a busy loop there (at real-time priority
    where allowed) notes every gap between its iterations. A gap is time no call could
    have run in, however short the call."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_busy_loop, (seconds,))


def _busy_loop(seconds: float) -> dict[str, int]:
    os.sched_setaffinity(0, {0})
    with contextlib.suppress(PermissionError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    longest, over_200us = 0.0, 0
    last = time.perf_counter()
    end = last + seconds
    while last < end:
        now = time.perf_counter()
        gap = now - last
        longest = max(longest, gap)
        over_200us += gap > 200e-6
        last = now
    return {"longest_gap_us": int(longest * 1e6), "gaps_over_200us": over_200us}


def _time(r: redis.Redis, call: Any, command: bytes = b"EVALSHA") -> dict[str, float]:
    """Durations of the calls by the slow log, which logs a script's own calls first and
    the script last: so after each call, the newest entry is that call."""
    r.config_set("slowlog-log-slower-than", 0)
    durations = []
    for n in range(ROUNDS):
        call(n)
        entries: list[Any] = r.slowlog_get(1)
        assert _is_call(entries[0], command), entries[0]
        durations.append(int(entries[0]["duration"]))
    r.config_set("slowlog-log-slower-than", 10_000)
    durations.sort()
    return {
        "median": statistics.median(durations),
        "p99": durations[int(0.99 * (len(durations) - 1))],
        "max": durations[-1],
    }


def _is_call(entry: Any, command: bytes) -> bool:
    words = entry["command"]
    first = words.split(b" ", 1)[0] if isinstance(words, bytes) else words[0]
    return bool(first.upper() == command) and b"slowlog" not in words.lower()


def _register(r: redis.Redis, shas: dict[str, str], servers: int, shards: int, ttl_ms: int) -> None:
    for start in range(0, servers, 1000):
        pipe = r.pipeline(transaction=False)
        for n in range(start, min(servers, start + 1000)):
            server_id = f"AW_{n}"
            s = keys.server_shard(POOL, server_id, shards)
            _evalsha(pipe, shas["heartbeat"], calls.heartbeat(s, server_id, ttl_ms, _SAID))
        pipe.execute()


def _overdue_reservations(r: redis.Redis, shas: dict[str, str], servers: int, shards: int) -> None:
    """One unconfirmed reservation per server, already past its deadline."""
    for start in range(0, servers, 1000):
        pipe = r.pipeline(transaction=False)
        for n in range(start, min(servers, start + 1000)):
            s = keys.shard_keys(POOL, n % shards, shards)
            _evalsha(pipe, shas["reserve"], calls.reserve(s, _job(f"AJ_{n}"), -1, 0.7))
        pipe.execute()


def _heartbeat(r: redis.Redis, shas: dict[str, str], n: int, shards: int) -> None:
    server_id = f"AW_{n}"
    s = keys.server_shard(POOL, server_id, shards)
    _evalsha(r, shas["heartbeat"], calls.heartbeat(s, server_id, 60_000, _SAID))


def _quiet(r: redis.Redis, n: int, shards: int) -> None:
    server_id = f"AW_{n}"
    s = keys.server_shard(POOL, server_id, shards)
    r.zadd(s.exp, {server_id: 2**50}, xx=True, gt=True, ch=True)


def _reserve(r: redis.Redis, shas: dict[str, str], n: int, shards: int) -> None:
    s = keys.shard_keys(POOL, n % shards, shards)
    _evalsha(r, shas["reserve"], calls.reserve(s, _job(f"AJ_x{n}"), 5000, 0.7))


def _tick(r: redis.Redis, shas: dict[str, str], shard: int, shards: int) -> None:
    s = keys.shard_keys(POOL, shard, shards)
    upkeep = (REAPED_PER_TICK, RECLAIMED_PER_TICK)
    _evalsha(r, shas["shard_tick"], calls.shard_tick(s, 0, 0, EXPIRED_PER_TICK, 0, *upkeep))


_SAID = (10, "0.00", 0, b"info")  # a heartbeat's description: capacity, load, status, info


def _job(job_id: str) -> JobSpec:
    return JobSpec(
        job_id=job_id, dispatch_id="AD_x", attempt=1, partition=0, room="r", room_sid="RM_r",
        agent_name=POOL,
    )  # fmt: skip


def _evalsha(r: Any, sha: str, call: calls.Call) -> None:
    """Send one script call through redis-py (a client or a pipeline)."""
    call_keys, args = call
    r.evalsha(sha, len(call_keys), *call_keys, *args)


@click.command()
@click.option("--servers", type=int, default=50_000, show_default=True)
def main(servers: int) -> None:
    """Microseconds each pool call holds Redis (median, p99, max of 200)."""
    shards = SchedulerSettings().pool_shards
    click.echo(orjson.dumps(run(servers, shards), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
