"""CPU and memory of each role as its own process, under a steady load.

Starts a redis-server pinned to CPU 0, an API node and schedulers as `dispatcher`
processes pinned to CPU 1, and drives them with `loadgen dispatch` and/or `loadgen
connect` (participants joining, 10 % creating a room with an agent), whose own agent
servers take the jobs, on CPU 1 too. Reads each process's CPU and peak RSS from /proc, the
agents' CPU from loadgen's reports and Redis's CPU from its own INFO. Prints one JSON
object: per role, the CPU seconds the run cost, loadgen's own, and how busy CPU 1 was over
the run's wall time (which includes loadgen's set-up, so it reads low).

    .venv/bin/python -m loadgen.roles --dispatches 400 --duration 15
    .venv/bin/python -m loadgen.roles --dispatches 0 --joins 750 --duration 15
    .venv/bin/python -m loadgen.roles --dispatches 400 --duration 15 --metrics-ab 3
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import redis

from dispatcher.localredis import LocalRedis, free_port
from dispatcher.settings import DEV_API_KEY, DEV_API_SECRET
from loadgen.cpu import process_cpu_s, process_cpu_s_of_redis

BIN = Path(sys.executable).parent
ROLES = ("api", "schedulers", "agents", "redis")
ROLES_CPU = "1"  # every process but Redis
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def rss_peak_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def cpu_busy_s(cpu: str) -> float:
    """Seconds CPU ``cpu`` spent on anything but idle and iowait since boot."""
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == f"cpu{cpu}":
            ticks = [int(f) for f in fields[1:9]]
            return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS_PER_S
    return 0.0


def redis_cpu_s(client: redis.Redis) -> float:
    info: dict[str, Any] = client.info("cpu")
    return process_cpu_s_of_redis(info)


def start(
    argv: list[str], env: dict[str, str], log: Path, pin: bool = True
) -> subprocess.Popen[bytes]:
    pinned = ["taskset", "-c", ROLES_CPU, *argv] if pin else argv
    with log.open("wb") as out:
        return subprocess.Popen(pinned, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(url: str, timeout_s: float = 30.0) -> None:
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


def loadgen_cpu_s(report: dict[str, Any]) -> float:
    """What loadgen itself spent sending (it shares CPU 1 with the roles)."""
    per_request = report["cpu"]["loadgen_us_per_request"] or 0.0
    return float(per_request) * int(report["attempted"]) / 1e6


def start_roles(
    env: dict[str, str],
    port: int,
    schedulers: int,
    logs: Path,
    pin: bool = True,
    metrics: dict[str, int] | None = None,
) -> dict[str, subprocess.Popen[bytes]]:
    """One API node on ``port`` and ``schedulers`` schedulers, each its own process;
    ``metrics``: each process's metrics port, by name (none: no metrics)."""
    dispatcher = str(BIN / "dispatcher")
    argv = {"api": [dispatcher, "api", "--host", "127.0.0.1", "--port", str(port)]}
    for i in range(schedulers):
        argv[f"scheduler-{i}"] = [dispatcher, "scheduler", "--node-id", f"s{i}"]
    return {
        name: start(
            args, with_metrics(env, (metrics or {}).get(name, 0)), logs / f"{name}.log", pin
        )
        for name, args in argv.items()
    }


def with_metrics(env: dict[str, str], port: int) -> dict[str, str]:
    if not port:
        return env
    return env | {"DISPATCHER_METRICS_HOST": "127.0.0.1", "DISPATCHER_METRICS_PORT": str(port)}


def drive(loads: dict[str, list[str]], env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Run the loadgen commands together; their JSON reports by name."""
    running = {
        name: subprocess.Popen(["taskset", "-c", ROLES_CPU, *argv], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for name, argv in loads.items()
    }  # fmt: skip
    return {name: json.loads(proc.communicate()[0]) for name, proc in running.items()}


def stop_roles(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


def role_env(redis_url: str, partitions: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    return env | {"DISPATCHER_REDIS_URL": redis_url, "DISPATCHER_PARTITIONS": str(partitions),
                  "LIVEKIT_API_KEY": DEV_API_KEY, "LIVEKIT_API_SECRET": DEV_API_SECRET}  # fmt: skip


def measure(
    dispatches: float,
    joins: float,
    duration: float,
    schedulers: int = 1,
    partitions: int = 64,
    scrape_every_s: float = 0.0,
) -> dict[str, Any]:
    """One run at ``dispatches``/s and ``joins``/s: CPU seconds per role, lost, peak RSS.
    ``scrape_every_s``: every role serves /metrics, scraped this often (0: no metrics)."""
    local = LocalRedis("0")
    client = redis.Redis.from_url(local.url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = role_env(local.url, partitions)
    loads = {}
    if dispatches:
        loads["dispatch"] = dispatch_load(url, local.url, dispatches, duration)
    if joins:
        loads["joins"] = join_load(url, local.url, joins, duration)
    names = ["api", *(f"scheduler-{i}" for i in range(schedulers))]
    metrics = {name: free_port() for name in names} if scrape_every_s else {}
    logs = Path(tempfile.mkdtemp(prefix="role-costs-"))
    procs = start_roles(env, port, schedulers, logs, metrics=metrics)
    try:
        wait_ready(f"{url}/readyz")
        time.sleep(3)  # schedulers take their partitions
        before = {name: process_cpu_s(p.pid) for name, p in procs.items()}
        redis_before, busy_before, started = (
            redis_cpu_s(client),
            cpu_busy_s(ROLES_CPU),
            time.monotonic(),
        )
        with scraping(list(metrics.values()), scrape_every_s):
            reports = drive(loads, env)
        wall_s = time.monotonic() - started
        used = {name: process_cpu_s(p.pid) - before[name] for name, p in procs.items()}
        cpu_s = _cpu_by_role(used, reports, redis_cpu_s(client) - redis_before)
        return {
            "dispatches_per_s": dispatches,
            "joins_per_s": joins,
            "duration_s": duration,
            "schedulers": schedulers,
            "partitions": partitions,
            "accepted": {n: int(r["accepted"]) for n, r in reports.items()},
            "lost": {n: r["lost"] for n, r in reports.items()},
            "cpu_s": {k: round(v, 3) for k, v in cpu_s.items()},
            "loadgen_cpu_s": round(sum(loadgen_cpu_s(r) for r in reports.values()), 3),
            "roles_cpu_busy": round((cpu_busy_s(ROLES_CPU) - busy_before) / wall_s, 3),
            "rss_peak_mb": {name: rss_peak_mb(p.pid) for name, p in procs.items()},
            "metrics": bool(scrape_every_s),
        }
    finally:
        stop_roles(procs)
        client.close()
        local.stop()


def _cpu_by_role(
    used: dict[str, float], reports: dict[str, Any], redis_s: float
) -> dict[str, float]:
    """CPU seconds per role: the API node, the schedulers together, the agents (as their
    reports say), Redis."""
    return {
        "api": used["api"],
        "schedulers": sum(v for k, v in used.items() if k.startswith("scheduler")),
        "agents": sum(
            agent_cpu_s(r, "accepted" if name == "dispatch" else "dispatches")
            for name, r in reports.items()
        ),
        "redis": redis_s,
    }


@contextmanager
def scraping(ports: list[int], every_s: float) -> Iterator[None]:
    """Scrape each port's /metrics every ``every_s`` while the block runs, as Prometheus
    would (a scrape's cost lands on the role, as it would in production)."""
    if not ports:
        yield
        return
    done = threading.Event()

    def scrape() -> None:
        while not done.wait(every_s):
            for port in ports:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    r.read()

    thread = threading.Thread(target=scrape, name="scraper", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@click.command()
@click.option("--dispatches", type=float, default=1000.0, help="Dispatches/s (0: none).")
@click.option("--joins", type=float, default=0.0, help="Participant joins/s (0: none).")
@click.option("--duration", type=float, default=20.0)
@click.option("--schedulers", type=int, default=1)
@click.option("--partitions", type=int, default=64, help="DISPATCHER_PARTITIONS of every role.")
@click.option(
    "--metrics-ab",
    "repeats",
    type=int,
    default=0,
    help="Runs with metrics off and on, interleaved, this many of each; prints CPU per "
    "dispatch per role for both and the difference (0: one run, metrics off).",
)
@click.option("--scrape-every", type=float, default=5.0, help="Seconds between scrapes (A/B).")
def main(
    dispatches: float,
    joins: float,
    duration: float,
    schedulers: int,
    partitions: int,
    repeats: int,
    scrape_every: float,
) -> None:
    if repeats:
        from loadgen.metrics_ab import compare

        runs = [dispatches, duration, schedulers, partitions]
        print(json.dumps(compare(measure, runs, repeats, scrape_every), indent=2))
        return
    print(json.dumps(measure(dispatches, joins, duration, schedulers, partitions), indent=2))


if __name__ == "__main__":
    main()
