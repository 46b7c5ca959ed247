"""CPU and memory of each role as its own process, under a steady dispatch rate.

Starts a pinned redis-server (CPU 0), API nodes and schedulers as `dispatcher` processes,
and drives them with `loadgen dispatch --url ... --redis-url ...` (whose own agent servers
take the jobs); reads each process's CPU and peak RSS from /proc and Redis's CPU from its
own INFO. Prints one JSON object: per role, CPU µs per dispatch and peak RSS.

    .venv/bin/python scripts/role_costs.py --rate 1000 --schedulers 1 --duration 20
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


@click.command()
@click.option("--rate", type=float, default=1000.0)
@click.option("--duration", type=float, default=20.0)
@click.option("--schedulers", type=int, default=1)
@click.option("--agents", type=int, default=2)
def main(rate: float, duration: float, schedulers: int, agents: int) -> None:
    logs = Path(tempfile.mkdtemp(prefix="role-costs-"))
    local = LocalRedis("0")
    client = redis.Redis.from_url(local.url)
    port = free_port()
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
        wait_ready(f"http://127.0.0.1:{port}/readyz")
        time.sleep(3)  # schedulers take their partitions
        before = {name: process_cpu_s(p.pid) for name, p in procs.items()}
        redis_before = redis_cpu_s(client)
        load = subprocess.run(
            ["taskset", "-c", "1", str(BIN / "loadgen"), "dispatch",
             "--url", f"http://127.0.0.1:{port}", "--redis-url", local.url,
             "--rate", str(rate), "--duration", str(duration), "--agents", str(agents),
             "--capacity", "100", "--hold", "0", "--json", "--no-progress"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        report = json.loads(load.stdout)
        used = {name: process_cpu_s(p.pid) - before[name] for name, p in procs.items()}
        redis_used = redis_cpu_s(client) - redis_before
        accepted = int(report["accepted"])
        per = lambda cpu_s: round(cpu_s / accepted * 1e6, 1)  # noqa: E731
        out = {
            "rate": rate,
            "duration_s": duration,
            "schedulers": schedulers,
            "accepted": accepted,
            "lost": report["lost"],
            "p99_ms": report["user_dispatch_ms"]["p99"],
            "us_per_dispatch": {
                "api": per(used["api"]),
                "schedulers": per(sum(v for k, v in used.items() if k.startswith("scheduler"))),
                "agents": report["cpu"]["agents_us_per_job"],
                "loadgen": report["cpu"]["loadgen_us_per_request"],
                "redis": per(redis_used),
            },
            "cpu_s": {**{k: round(v, 2) for k, v in used.items()}, "redis": round(redis_used, 2)},
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
