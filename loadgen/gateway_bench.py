"""Dispatch time through the ``/agent`` gateway next to our own SDK: from the client's send
of CreateDispatch to the first statement of the agent's entrypoint.

Starts Redis, an API node and a scheduler (each its own process), and one agent: LiveKit's
own ``livekit-agents`` worker (the reference agent, ``tests/e2e/livekit_agent.py start``),
each job in a process of its own (``livekit``, its default) or in a thread of the worker
(``livekit-thread``), or our SDK's (``loadgen.bench_agent``). Sends
CreateDispatch on an open-loop schedule (one room per dispatch, its admin token minted
before the window), each carrying its send time as metadata; the agent records the time
its entrypoint starts. Prints one JSON object: percentiles of the difference, and how
many never started.

    .venv/bin/python -m loadgen.gateway_bench --agent livekit --rate 100 --duration 20
    .venv/bin/python -m loadgen.gateway_bench --agent sdk --rate 500 --duration 20
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import click

from dispatcher.api.auth import create_token
from dispatcher.localredis import LocalRedis, free_port
from dispatcher.settings import DEV_API_KEY, DEV_API_SECRET
from loadgen.roles import role_env, start_roles, stop_roles, wait_ready

LIVEKIT_AGENT = Path(__file__).parents[1] / "tests" / "e2e" / "livekit_agent.py"
CREATE = "/twirp/livekit.AgentDispatchService/CreateDispatch"
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


def start_agent(kind: str, url: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    """``livekit`` (jobs in processes, the default), ``livekit-thread`` or ``sdk``."""
    env = {k: v for k, v in env.items() if k not in _PROXIES}
    env["AGENT_EXECUTOR"] = "thread" if kind == "livekit-thread" else "process"
    env |= {"LIVEKIT_URL": url, "AGENT_RECORD": str(logs / "record.jsonl"),
            "AGENT_HEALTH_PORT": str(free_port())}  # fmt: skip
    if kind.startswith("livekit"):
        argv = [sys.executable, str(LIVEKIT_AGENT), "start"]
    else:
        argv = [
            str(Path(sys.executable).with_name("dispatcher")),
            "agent",
            "loadgen.bench_agent:server",
        ]
    with (logs / "agent.log").open("wb") as out:
        # its own group: a LiveKit worker's forkserver and job processes go with it
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def started(logs: Path) -> dict[str, int]:
    """Send time (the metadata) -> entrypoint start, of every job the agent recorded."""
    record = logs / "record.jsonl"
    if not record.exists():
        return {}
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    return {e["metadata"]: int(e["t_ns"]) for e in lines if e["event"] == "started"}


def token(room: str) -> str:
    claims = {"video": {"roomAdmin": True, "room": room}, "exp": int(time.time()) + 3600}
    return create_token(DEV_API_KEY, DEV_API_SECRET, claims)


async def send_all(url: str, rate: float, duration: float, label: str) -> list[tuple[str, int]]:
    """Open loop: request i due at t0 + i/rate; (metadata, HTTP status) of each."""
    count = int(rate * duration)
    rooms = [f"{label}-{i}" for i in range(count)]
    tokens = [token(room) for room in rooms]
    results: list[tuple[str, int]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http:

        async def one(i: int) -> None:
            sent = str(time.time_ns())
            body = {"agent_name": "test-agent", "room": rooms[i], "metadata": sent}
            headers = {"Authorization": f"Bearer {tokens[i]}"}
            async with http.post(url + CREATE, json=body, headers=headers) as reply:
                await reply.read()
                results.append((sent, reply.status))

        tasks, t0 = [], time.monotonic()
        for i in range(count):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return results


def percentiles(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {}
    ordered = sorted(values_ms)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(ordered[-1], 2)}


async def measure(kind: str, rate: float, duration: float) -> dict[str, Any]:
    local = LocalRedis("0")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = role_env(local.url, 64) | {"DISPATCHER_GATEWAY_CAPACITY": "100"}
    logs = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    procs = start_roles(env, port, 1, logs, pin=False)
    agent = start_agent(kind, url, env, logs)
    try:
        wait_ready(f"{url}/readyz")
        await asyncio.sleep(8)  # the worker registers and prewarms its job processes
        await send_all(url, 20, 1, "warm")  # first jobs pay one-off costs
        await asyncio.sleep(3)
        results = await send_all(url, rate, duration, "bench")
        accepted = {sent for sent, status in results if status == 200}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not accepted <= started(logs).keys():
            await asyncio.sleep(0.5)
        starts = started(logs)
        latencies = [(starts[s] - int(s)) / 1e6 for s in accepted if s in starts]
        return {"agent": kind, "rate": rate, "duration_s": duration, "sent": len(results),
                "accepted": len(accepted), "never_started": len(accepted - starts.keys()),
                "dispatch_ms": percentiles(latencies), "logs": str(logs)}  # fmt: skip
    finally:
        agent.terminate()
        try:
            agent.wait(20)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(agent.pid, signal.SIGKILL)
        stop_roles(procs)
        local.stop()


@click.command()
@click.option(
    "--agent", "kind", type=click.Choice(["livekit", "livekit-thread", "sdk"]), default="livekit"
)
@click.option("--rate", type=float, default=100.0)
@click.option("--duration", type=float, default=20.0)
def main(kind: str, rate: float, duration: float) -> None:
    print(json.dumps(asyncio.run(measure(kind, rate, duration)), indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
