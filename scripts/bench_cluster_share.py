"""Each master's share of Redis CPU while one agent name takes dispatches on a local
3-master Redis Cluster: does one agent name spread over the masters?

    PYTHONPATH=. .venv/bin/python scripts/bench_cluster_share.py --pool-shards 12
    PYTHONPATH=. .venv/bin/python scripts/bench_cluster_share.py --pool-shards 1

Starts the cluster, an API node and a scheduler as processes, then runs ``loadgen
dispatch`` (its agent servers included) at a fixed rate, and reads each master's CPU from
/proc over the run. ``--pool-shards 1`` is the pool in one slot, as before pools were
sharded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

from dispatcher.settings import DEV_API_KEY, DEV_API_SECRET
from loadgen.cpu import process_cpu_s
from tests.redis_servers import RedisCluster, free_port

ROOT = Path(__file__).resolve().parent.parent
_MAIN = "from dispatcher.cli import main; main()"
_LOADGEN = "from loadgen.cli import main; main()"


@click.command()
@click.option("--pool-shards", type=int, default=12, show_default=True)
@click.option("--rate", type=float, default=300.0, show_default=True)
@click.option("--duration", type=float, default=30.0, show_default=True)
@click.option("--agents", type=int, default=12, show_default=True)
def main(pool_shards: int, rate: float, duration: float, agents: int) -> None:
    cluster = RedisCluster(size=3).start()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DISPATCHER_REDIS_URL": cluster.url,
        "DISPATCHER_POOL_SHARDS": str(pool_shards),
        "DISPATCHER_API_KEYS": f"{DEV_API_KEY}:{DEV_API_SECRET}",  # loadgen's defaults
    }
    roles = [
        subprocess.Popen(
            [sys.executable, "-c", _MAIN, "api", "--port", str(port)],
            env=env,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [sys.executable, "-c", _MAIN, "scheduler", "--node-id", "s1"],
            env=env,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        time.sleep(3)
        pids = {node.port: node.pid for node in cluster.nodes}
        before = {p: process_cpu_s(pid) for p, pid in pids.items() if pid}
        run = subprocess.run(
            [sys.executable, "-c", _LOADGEN, "dispatch", "--url", f"http://127.0.0.1:{port}",
             "--redis-url", cluster.url, "--rate", str(rate), "--duration", str(duration),
             "--agents", str(agents), "--capacity", "100", "--hold", "0.5", "--json",
             "--no-progress"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        if run.returncode != 0:
            sys.exit(f"loadgen dispatch failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}")
        used = {p: process_cpu_s(pid) - before[p] for p, pid in pids.items() if pid}
        total = sum(used.values())
        report = json.loads(run.stdout)
        click.echo(
            json.dumps(
                {
                    "pool_shards": pool_shards,
                    "rate": rate,
                    "agents": agents,
                    "lost": report.get("lost"),
                    "master_cpu_s": {str(p): round(s, 2) for p, s in used.items()},
                    "master_share_pct": {
                        str(p): round(100 * s / total, 1) for p, s in used.items()
                    },
                }
            )
        )
    finally:
        for role in roles:
            role.terminate()
        for role in roles:
            role.wait(10)
        cluster.stop()


if __name__ == "__main__":
    main()
