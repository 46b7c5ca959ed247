"""An agent server run the way users run it: ``python my_agent.py start``, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from livekit import api

from dispatcher.localredis import free_port
from tests.e2e.procs import env, processes, wait_http
from tests.redis_servers import RedisTarget
from tests.stack import API_KEY, API_SECRET, eventually

AGENT = """
import asyncio
from workers import AgentServer, JobContext

server = AgentServer(capacity=2)

@server.rtc_session(agent_name="script-agent")
async def entry(ctx: JobContext) -> None:
    print("started", ctx.job.id, ctx.job.metadata, ctx.room.name, flush=True)
    await asyncio.sleep(0.5)
    print("finished", ctx.job.id, flush=True)

if __name__ == "__main__":
    server.run()
"""


async def test_script_agent_runs_a_job_and_drains_on_sigterm(
    redis_single_target: RedisTarget, tmp_path: Path
) -> None:
    script = tmp_path / "my_agent.py"
    script.write_text(AGENT)
    port, redis = free_port(), ["--redis-url", redis_single_target.url]
    commands = [["api", "--port", str(port), "--host", "127.0.0.1", *redis], ["scheduler", *redis]]
    agent_env = env(DISPATCHER_REDIS_URL=redis_single_target.url)
    with processes(commands, tmp_path):
        agent = subprocess.Popen(
            [sys.executable, str(script), "start"],
            env=agent_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/readyz")
            lk = api.LiveKitAPI(f"http://127.0.0.1:{port}", API_KEY, API_SECRET)
            try:
                request = api.CreateAgentDispatchRequest(
                    agent_name="script-agent", room="script-room", metadata="hello"
                )
                await lk.agent_dispatch.create_dispatch(request)

                async def running() -> bool:
                    found = await lk.agent_dispatch.list_dispatch(room_name="script-room")
                    jobs = found[0].state.jobs
                    return bool(jobs) and jobs[-1].state.status == api.JobStatus.JS_RUNNING

                await eventually(running, timeout_s=30, what="the job to start")
            finally:
                await lk.aclose()
            agent.send_signal(signal.SIGTERM)
            output, _ = await asyncio.to_thread(agent.communicate, timeout=30)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
    assert agent.returncode == 0, output
    assert "started" in output and "hello script-room" in output
    assert "finished" in output  # the running job was allowed to finish before exit
