"""What an idle fleet costs the control plane: N virtual agent servers heartbeating as the
SDK does, S scheduler processes, no dispatches. Reports Redis CPU (``INFO cpu``), the
schedulers' CPU, and the slowest Redis calls (``SLOWLOG``) over a measured window.

The servers are ``loadgen.virtual_fleet``'s, sending exactly the SDK's idle heartbeats
(the script saying everything every 30th time, a plain ``ZADD`` of the expiry otherwise),
spread evenly over the interval. They do not read their inboxes (idle, the SDK blocks on
one ``XREAD`` per 500 ms).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Event
from typing import Any

import redis
import uvloop

from dispatcher.localredis import LocalRedis
from dispatcher.settings import AgentSettings
from dispatcher.store import keys, scripts
from dispatcher.store.client import connect
from loadgen.cpu import process_cpu_s, process_cpu_s_of_redis
from loadgen.fleet import AgentConfig
from loadgen.virtual_fleet import VirtualHost

_SCHEDULER = "from dispatcher.cli import main; main()"
_SLOWLOG_US = 200  # calls slower than this are logged; the slowest is reported


@dataclass(frozen=True, slots=True)
class IdlePlan:
    servers: int
    schedulers: int
    duration_s: float = 20.0
    warmup_s: float = 8.0
    procs: int = 2
    pin: bool = True  # Redis alone on CPU 0, everything else on CPU 1
    agent_name: str = "idle-agent"
    shards: int = AgentSettings().pool_shards
    interval_s: float = AgentSettings().heartbeat_interval_s
    ttl_ms: int = AgentSettings().heartbeat_ttl_ms


def run(plan: IdlePlan) -> dict[str, Any]:
    local = LocalRedis(cpus="0" if plan.pin else None)
    if plan.pin:
        os.sched_setaffinity(0, {1})  # inherited by the fleet and the schedulers
        _not_preempted(local.pid)
    env = {**os.environ, "DISPATCHER_REDIS_URL": local.url}
    env["DISPATCHER_POOL_SHARDS"] = str(plan.shards)
    stop = multiprocessing.get_context("spawn").Event()
    fleet = [_start_fleet(plan, local.url, index, stop) for index in range(plan.procs)]
    schedulers = [
        subprocess.Popen(
            [sys.executable, "-c", _SCHEDULER, "scheduler", "--node-id", f"idle-{n}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(plan.schedulers)
    ]
    admin = redis.Redis(port=local.port)
    try:
        time.sleep(plan.warmup_s)
        return _measure(plan, admin, [p.pid for p in schedulers])
    finally:
        stop.set()
        for proc in schedulers:
            proc.terminate()
        for proc in schedulers:
            proc.wait(10)
        for worker in fleet:
            worker.join(10)
        admin.close()
        local.stop()


def _not_preempted(pid: int) -> None:
    """Real-time priority for Redis, where allowed (root), so that the slow log measures
    the calls and not other processes preempting Redis on its CPU."""
    try:
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(10))
    except PermissionError:
        print("note: Redis runs at normal priority; the slow log may show preemption")


def _redis_cpu_s(admin: redis.Redis) -> float:
    """From Redis's own ``INFO cpu``: /proc's 10 ms ticks are too coarse for a small fleet."""
    info: dict[str, Any] = admin.info("cpu")
    return process_cpu_s_of_redis(info)


def _measure(plan: IdlePlan, admin: redis.Redis, scheduler_pids: list[int]) -> dict[str, Any]:
    admin.config_set("slowlog-log-slower-than", _SLOWLOG_US)
    admin.config_set("slowlog-max-len", 1024)
    admin.slowlog_reset()
    redis_before, sched_before = _redis_cpu_s(admin), sum(map(process_cpu_s, scheduler_pids))
    calls_before = _calls(admin)
    began = time.monotonic()
    time.sleep(plan.duration_s)
    elapsed = time.monotonic() - began
    redis_cpu = _redis_cpu_s(admin) - redis_before
    sched_cpu = sum(map(process_cpu_s, scheduler_pids)) - sched_before
    calls = {k: v - calls_before.get(k, 0) for k, v in _calls(admin).items()}
    slow: list[Any] = admin.slowlog_get(1024)
    slowest = sorted(slow, key=lambda e: -int(e["duration"]))[:5]
    members = sum(
        int(admin.zcard(keys.shard_keys(plan.agent_name, k, plan.shards).exp))
        for k in range(plan.shards)
    )
    return {
        "plan": asdict(plan),
        "servers_registered": members,
        "redis_cpu_pct": round(100 * redis_cpu / elapsed, 2),
        "schedulers_cpu_pct": round(100 * sched_cpu / elapsed, 2),
        "calls_per_s": {k: round(v / elapsed) for k, v in sorted(calls.items()) if v},
        "calls_over_200us": len(slow),
        "slowest_us": [
            {"us": int(e["duration"]), "command": _short(e["command"])} for e in slowest
        ],
    }


def _calls(admin: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = admin.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


_SCRIPT_NAMES = {script.sha: script.name for script in scripts.ALL}


def _short(command: bytes | str) -> str:
    """The command, a script named for its SHA."""
    text = command.decode(errors="replace") if isinstance(command, bytes) else command
    words = text.split(" ")
    if words[0] == "EVALSHA" and len(words) > 1:
        words[1] = _SCRIPT_NAMES.get(words[1], words[1])
    return " ".join(words)[:80]


# --- the virtual fleet (worker processes) ----------------------------------------------------


def _start_fleet(
    plan: IdlePlan, url: str, index: int, stop: Event
) -> multiprocessing.process.BaseProcess:
    count = plan.servers // plan.procs + (1 if index < plan.servers % plan.procs else 0)
    context = multiprocessing.get_context("spawn")
    worker = context.Process(target=_fleet_main, args=(plan, url, count, stop), daemon=True)
    worker.start()
    return worker


def _fleet_main(plan: IdlePlan, url: str, count: int, stop: Event) -> None:
    uvloop.run(_heartbeats(plan, url, count, stop))


async def _heartbeats(plan: IdlePlan, url: str, count: int, stop: Event) -> None:
    """Idle virtual servers (``loadgen.virtual_fleet``): registered and heartbeating as
    the SDK does, their inboxes unread."""
    client = await connect(url)
    config = AgentConfig(url, plan.agent_name, capacity=10, hold_s=0.0, run_id="")
    host = VirtualHost(config, client, count, plan.shards)
    try:
        await scripts.load_all(client)
        await host.register()
        beating = asyncio.create_task(host.heartbeats())
        while not stop.is_set():
            await asyncio.sleep(0.05)
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
    finally:
        await client.aclose()
