"""``dispatcher status`` against a deployment of real processes: two schedulers, an API node
and agent servers, each its own process, read back from Redis as the command sees it."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from livekit import api

from dispatcher.localredis import free_port
from tests.e2e.procs import DISPATCHER, env, started, wait_http
from tests.redis_servers import RedisTarget
from tests.stack import API_KEY, API_SECRET, eventually, start_scheduler

PARTITIONS = 16
# Agent servers for the status test: one pool whose jobs hold their slot until the test
# ends, one whose jobs fail at once.
AGENTS = """
import asyncio
from workers import AgentServer, JobContext

holding = AgentServer(capacity=3, heartbeat_interval_s=0.2, heartbeat_ttl_ms=1500,
                      version="1.2.3", labels={"zone": "a"})
failing = AgentServer(capacity=2, heartbeat_interval_s=0.2, heartbeat_ttl_ms=1500)

@holding.rtc_session(agent_name="holding-agent")
async def hold(ctx: JobContext) -> None:
    await asyncio.sleep(3600)

@failing.rtc_session(agent_name="failing-agent")
async def fail(ctx: JobContext) -> None:
    raise RuntimeError("the entrypoint gave up")
"""
FAST_SCHEDULERS = {
    "DISPATCHER_HEARTBEAT_INTERVAL_S": "0.2",
    "DISPATCHER_MEMBERSHIP_TTL_MS": "1500",
    "DISPATCHER_LEASE_TTL_MS": "1500",
    "DISPATCHER_PARTITIONS": str(PARTITIONS),
    "DISPATCHER_DRAIN_TIMEOUT_S": "1",  # the holding jobs are not waited for at exit
}


def status(redis_url: str) -> dict[str, Any]:
    out = subprocess.run(
        [DISPATCHER, "status", "--json", "--redis-url", redis_url],
        capture_output=True,
        check=True,
        env=env(),
        timeout=30,
    )
    parsed: dict[str, Any] = json.loads(out.stdout)
    return parsed


def held(snapshot: dict[str, Any]) -> dict[str, list[int]]:
    return {s["nodeId"]: s["partitions"] for s in snapshot["schedulers"] if s["alive"]}


def pool(snapshot: dict[str, Any], agent_name: str) -> dict[str, Any] | None:
    return next((p for p in snapshot["pools"] if p["agentName"] == agent_name), None)


async def dispatch(url: str, agent_name: str, room: str) -> None:
    lk = api.LiveKitAPI(url, API_KEY, API_SECRET)
    try:
        request = api.CreateAgentDispatchRequest(agent_name=agent_name, room=room)
        await lk.agent_dispatch.create_dispatch(request)
    finally:
        await lk.aclose()


async def until_status(redis_url: str, check: Any, what: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    async def holds() -> bool:
        seen[:] = [await asyncio.to_thread(status, redis_url)]
        return bool(check(seen[0]))

    await eventually(holds, timeout_s=30, what=what)
    return seen[0]


async def test_status_shows_a_running_deployment_truthfully(
    redis_single_target: RedisTarget, tmp_path: Path
) -> None:
    (tmp_path / "status_agents.py").write_text(AGENTS)
    redis, port = redis_single_target.url, free_port()
    url = f"http://127.0.0.1:{port}"
    agent = ["agent", "--redis-url", redis]
    commands = [
        ["scheduler", "--redis-url", redis, "--node-id", "sched-a"],
        ["scheduler", "--redis-url", redis, "--node-id", "sched-b"],
        ["api", "--port", str(port), "--host", "127.0.0.1", "--redis-url", redis],
        [*agent, "status_agents:holding"],
        [*agent, "status_agents:failing"],
    ]
    extra = {**FAST_SCHEDULERS, "PYTHONPATH": _pythonpath(tmp_path)}
    with started(commands, tmp_path, **extra) as procs:
        await asyncio.to_thread(wait_http, f"{url}/readyz")

        def both_hold_all(s: dict[str, Any]) -> bool:
            owned = held(s)
            every = sorted(p for ps in owned.values() for p in ps)
            return set(owned) == {"sched-a", "sched-b"} and every == list(range(PARTITIONS))

        await until_status(redis, both_hold_all, "two schedulers sharing every partition")
        for room in ("hold-1", "hold-2"):
            await dispatch(url, "holding-agent", room)
        await dispatch(url, "nobody-serves-this", "ghost-room")
        await dispatch(url, "failing-agent", "fail-room")

        def truthful(s: dict[str, Any]) -> bool:
            holding = pool(s, "holding-agent")
            failures = [f for f in s["failures"] if f["agentName"] == "failing-agent"]
            return (
                holding is not None
                and (holding["capacity"], holding["used"]) == (3, 2)
                and s["totals"]["pendingByReason"].get("no_capacity", 0) >= 1
                and any("the entrypoint gave up" in f["error"] for f in failures)
            )

        snapshot = await until_status(redis, truthful, "servers, pending jobs and failures")
        [server] = pool(snapshot, "holding-agent")["servers"]  # type: ignore[index]
        assert (server["status"], server["version"], server["labels"]) == (
            "available", "1.2.3", {"zone": "a"},
        )  # fmt: skip
        failure = next(f for f in snapshot["failures"] if f["agentName"] == "failing-agent")
        assert failure["room"] == "fail-room" and failure["serverId"]
        assert snapshot["totals"]["jobsByPhase"].get("running") == 2
        assert all(p["lag"] == 0 for p in snapshot["partitions"])

        procs[0].send_signal(signal.SIGKILL)  # sched-a dies without handing anything over
        survivor = await until_status(
            redis,
            lambda s: held(s) == {"sched-b": list(range(PARTITIONS))},
            "the survivor taking every partition",
        )
        assert [s["nodeId"] for s in survivor["schedulers"] if not s["alive"]] in ([], ["sched-a"])


def _pythonpath(tmp_path: Path) -> str:
    """The agents' module beside the worktree's code (the processes import both)."""
    inherited = env().get("PYTHONPATH", "")
    return f"{tmp_path}:{inherited}" if inherited else str(tmp_path)


async def test_status_prints_a_screen_and_watch_refreshes_it(
    redis_single_target: RedisTarget,
) -> None:
    redis = redis_single_target.url
    scheduler = await start_scheduler(redis, "sched-watched", partitions=4)
    try:
        screen = await asyncio.to_thread(
            subprocess.run,
            [DISPATCHER, "status", "--redis-url", redis],
            capture_output=True, check=True, env={**env(), "COLUMNS": "120"}, timeout=30,
        )  # fmt: skip
        assert "Schedulers" in screen.stdout.decode() and "sched-watched" in screen.stdout.decode()
        command = [DISPATCHER, "status", "--watch", "--json", "--interval", "0.2"]
        with subprocess.Popen(
            [*command, "--redis-url", redis], stdout=subprocess.PIPE, env=env()
        ) as watch:
            try:
                assert watch.stdout is not None
                first = json.loads(await asyncio.to_thread(watch.stdout.readline))
                second = json.loads(await asyncio.to_thread(watch.stdout.readline))
            finally:
                watch.send_signal(signal.SIGINT)  # Ctrl-C
                watch.wait(10)
        assert "rates" not in first and second["rates"]["atMs"] == second["atMs"]
        assert watch.returncode == 0
    finally:
        await scheduler.drain()
        await scheduler.aclose()
