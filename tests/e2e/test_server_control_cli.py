"""Agent-server control as an operator uses it: every role its own process, two SDK agent
servers labelled through ``DISPATCHER_AGENT_LABELS``, and the ``dispatcher servers`` and
``dispatcher dispatch`` commands."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from dispatcher.localredis import free_port
from tests.e2e.procs import DISPATCHER, env, started, wait_http
from tests.redis_servers import RedisTarget
from tests.stack import API_KEY, API_SECRET, eventually

AGENT = """
import asyncio, pathlib, sys
from workers import AgentServer, JobContext

server = AgentServer(capacity=4)
release = pathlib.Path(sys.argv[2])

@server.rtc_session(agent_name="ops-agent")
async def entry(ctx: JobContext) -> None:
    print("started", ctx.job.id, ctx.room.name, flush=True)
    while not release.exists():
        await asyncio.sleep(0.05)
    print("finished", ctx.job.id, flush=True)

if __name__ == "__main__":
    server.run()
"""


class Operator:
    def __init__(self, url: str) -> None:
        self.env = env(LIVEKIT_URL=url, LIVEKIT_API_KEY=API_KEY, LIVEKIT_API_SECRET=API_SECRET)

    async def run(self, *args: str) -> Any:
        """A ``dispatcher`` client command; its JSON output."""
        done = await asyncio.to_thread(
            subprocess.run, [DISPATCHER, *args], env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    async def servers(self, *filters: str) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = (await self.run("servers", "list", *filters))["servers"]
        return listed

    async def jobs(self, room: str) -> list[dict[str, Any]]:
        listed = await self.run("dispatch", "list", "--room", room)
        return [job for d in listed.get("agentDispatches", []) for job in d["state"]["jobs"]]


def _started(log: Path) -> list[str]:
    text = log.read_text() if log.exists() else ""
    return [line.split()[2] for line in text.splitlines() if line.startswith("started ")]


def _readiness(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return str(reply.read().decode())
    except urllib.error.HTTPError as error:
        return str(error.read().decode())


async def test_an_operator_targets_dispatches_by_label_and_drains_a_server(
    redis_single_target: RedisTarget, tmp_path: Path
) -> None:
    script, release = tmp_path / "ops_agent.py", tmp_path / "release"
    script.write_text(AGENT)
    port, redis = free_port(), ["--redis-url", redis_single_target.url]
    roles = [["api", "--port", str(port), "--host", "127.0.0.1", *redis], ["scheduler", *redis]]
    url = f"http://127.0.0.1:{port}"
    ops = Operator(url)
    agents: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / "agent-a.log", tmp_path / "agent-b.log"]
    health = [free_port(), free_port()]
    with started(roles, tmp_path):
        try:
            for zone, log, probe in zip("ab", logs, health, strict=True):
                agent_env = env(
                    DISPATCHER_REDIS_URL=redis_single_target.url,
                    DISPATCHER_AGENT_LABELS=f"zone={zone}",
                    DISPATCHER_AGENT_VERSION="7",
                    DISPATCHER_HEALTH_PORT=str(probe),
                    DISPATCHER_HEALTH_HOST="127.0.0.1",
                )
                with log.open("wb") as out:
                    command = [sys.executable, str(script), "start", str(release)]
                    agents.append(subprocess.Popen(command, env=agent_env, stdout=out, stderr=out))
            await asyncio.to_thread(wait_http, f"{url}/readyz")

            async def both_listed() -> bool:
                return len(await ops.servers("--agent-name", "ops-agent")) == 2

            await eventually(both_listed, timeout_s=30, what="both servers listed")
            [zone_a] = await ops.servers("--label", "zone=a")
            assert (zone_a["labels"], zone_a["version"]) == ({"zone": "a"}, "7")
            await _targeted_jobs_run_on_zone_a(ops, logs)
            await _drained_server_takes_no_new_job(ops, zone_a["id"], logs, health[0])
            await _no_match_waits_with_a_reason(ops)
            release.touch()  # the drained server's jobs end on their own

            async def drained_and_idle() -> bool:
                [server] = await ops.servers("--status", "draining")
                return bool(server["used"] == 0 and server["id"] == zone_a["id"])

            await eventually(drained_and_idle, timeout_s=30, what="its jobs to finish")
            ended = [job for n in range(2) for job in await ops.jobs(f"zone-a-{n}")]
            assert {job["state"]["status"] for job in ended} == {"JS_SUCCESS"}
            finished = logs[0].read_text().count("finished ")
            assert finished == len(_started(logs[0])) == 2  # none cut short, none twice
        finally:
            for agent in agents:
                agent.terminate()
                agent.wait(30)


async def _targeted_jobs_run_on_zone_a(ops: Operator, logs: list[Path]) -> None:
    for n in range(2):
        room = f"zone-a-{n}"
        await ops.run("dispatch", "create", "--agent-name", "ops-agent", "--room", room,
                      "--label", "zone=a")  # fmt: skip
    await eventually(lambda: len(_started(logs[0])) == 2, timeout_s=30, what="jobs on zone a")
    assert _started(logs[1]) == []


async def _drained_server_takes_no_new_job(
    ops: Operator, server_id: str, logs: list[Path], probe: int
) -> None:
    drained = await ops.run("servers", "drain", server_id)
    assert (drained["server"]["id"], drained["server"]["status"]) == (server_id, "draining")
    await eventually(
        lambda: _readiness(probe) == "not ready: draining", timeout_s=10, what="its readiness"
    )
    for n in range(3):
        await ops.run("dispatch", "create", "--agent-name", "ops-agent", "--room", f"after-{n}")
    await eventually(lambda: len(_started(logs[1])) == 3, timeout_s=30, what="jobs on zone b")
    assert len(_started(logs[0])) == 2  # still only the jobs it had


async def _no_match_waits_with_a_reason(ops: Operator) -> None:
    created = await ops.run("dispatch", "create", "--agent-name", "ops-agent", "--room",
                            "zone-c", "--label", "zone=c")  # fmt: skip
    assert created["agentName"] == "ops-agent"

    async def says_why() -> bool:
        jobs = await ops.jobs("zone-c")
        return bool(jobs) and "no live server matches" in jobs[0]["state"].get("error", "")

    await eventually(says_why, timeout_s=30, what="the pending reason")
