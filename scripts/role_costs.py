"""CPU and memory of each role as its own process, under a steady dispatch rate.

Starts a pinned redis-server (CPU 0), API nodes and schedulers as `dispatcher` processes,
and drives them with `loadgen dispatch` and/or `loadgen connect` (participants joining,
10 % creating a room with an agent), whose own agent servers take the jobs; reads each
process's CPU and peak RSS from /proc, the agents' CPU from loadgen's reports and Redis's
CPU from its own INFO. Prints one JSON object: per role, the CPU seconds the run cost.

    .venv/bin/python scripts/role_costs.py --dispatches 1000 --duration 20
    .venv/bin/python scripts/role_costs.py --dispatches 0 --joins 2000 --duration 20
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import redis

from dispatcher.localredis import LocalRedis, free_port
from dispatcher.settings import DEV_API_KEY, DEV_API_SECRET
from loadgen.cpu import process_cpu_s

BIN = Path(sys.executable).parent


def rss_peak_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def redis_cpu_s(client: redis.Redis) -> float:
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            ["taskset", "-c", "1", *argv], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


def dispatch_load(url: str, redis_url: str, rate: float, duration: float) -> list[str]:
    return [str(BIN / "loadgen"), "dispatch", "--url", url, "--redis-url", redis_url,
            "--rate", str(rate), "--duration", str(duration), "--agents", "2",
            "--capacity", "100", "--hold", "0", "--json", "--no-progress"]  # fmt: skip


def join_load(url: str, redis_url: str, rate: float, duration: float) -> list[str]:
    """Participants joining, 10 % of them creating a room whose token dispatches an agent."""
    return [str(BIN / "loadgen"), "connect", "--url", url, "--redis-url", redis_url,
            "--rate", str(rate), "--duration", str(duration), "--new-room-share", "0.1",
            "--agents", "1", "--hold", "0", "--agent-name", "loadgen-joins", "--json",
            "--no-progress"]  # fmt: skip


def agent_cpu_s(report: dict[str, Any], jobs_key: str) -> float:
    per_job = report["cpu"]["agents_us_per_job"] or 0.0
    return float(per_job) * int(report[jobs_key]) / 1e6


@click.command()
@click.option("--dispatches", type=float, default=1000.0, help="Dispatches/s (0: none).")
@click.option("--joins", type=float, default=0.0, help="Participant joins/s (0: none).")
@click.option("--duration", type=float, default=20.0)
@click.option("--schedulers", type=int, default=1)
def main(dispatches: float, joins: float, duration: float, schedulers: int) -> None:
    logs = Path(tempfile.mkdtemp(prefix="role-costs-"))
    local = LocalRedis("0")
    client = redis.Redis.from_url(local.url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env |= {"DISPATCHER_REDIS_URL": local.url, "LIVEKIT_API_KEY": DEV_API_KEY,
            "LIVEKIT_API_SECRET": DEV_API_SECRET}  # fmt: skip
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["api"] = start(
            [str(BIN / "dispatcher"), "api", "--host", "127.0.0.1", "--port", str(port)],
            env, logs / "api.log",
        )  # fmt: skip
        for i in range(schedulers):
            procs[f"scheduler-{i}"] = start(
                [str(BIN / "dispatcher"), "scheduler", "--node-id", f"s{i}"],
                env, logs / f"scheduler-{i}.log",
            )  # fmt: skip
        wait_ready(f"{url}/readyz")
        time.sleep(3)  # schedulers take their partitions
        before = {name: process_cpu_s(p.pid) for name, p in procs.items()}
        redis_before = redis_cpu_s(client)
        loads = {}
        if dispatches:
            loads["dispatch"] = dispatch_load(url, local.url, dispatches, duration)
        if joins:
            loads["joins"] = join_load(url, local.url, joins, duration)
        running = {
            name: subprocess.Popen(["taskset", "-c", "1", *argv], env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            for name, argv in loads.items()
        }  # fmt: skip
        reports = {name: json.loads(proc.communicate()[0]) for name, proc in running.items()}
        used = {name: process_cpu_s(p.pid) - before[name] for name, p in procs.items()}
        agents = 0.0
        if "dispatch" in reports:
            agents += agent_cpu_s(reports["dispatch"], "accepted")
        if "joins" in reports:
            agents += agent_cpu_s(reports["joins"], "dispatches")
        cpu_s = {
            "api": used["api"],
            "schedulers": sum(v for k, v in used.items() if k.startswith("scheduler")),
            "agents": agents,
            "redis": redis_cpu_s(client) - redis_before,
        }
        out = {
            "dispatches_per_s": dispatches,
            "joins_per_s": joins,
            "duration_s": duration,
            "schedulers": schedulers,
            "accepted": {n: int(r["accepted"]) for n, r in reports.items()},
            "lost": {n: r["lost"] for n, r in reports.items()},
            "cpu_s": {k: round(v, 3) for k, v in cpu_s.items()},
            "rss_peak_mb": {name: rss_peak_mb(p.pid) for name, p in procs.items()},
        }
        print(json.dumps(out, indent=2))
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        client.close()
        local.stop()


if __name__ == "__main__":
    main()
