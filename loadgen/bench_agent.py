"""The SDK agent server the gateway bench runs beside LiveKit's: it records each job's
start (the entrypoint's first statement) as ``tests/e2e/livekit_agent.py`` does, to
``AGENT_RECORD``, and returns at once.

    dispatcher agent loadgen.bench_agent:server
"""

from __future__ import annotations

import json
import os
import time

from workers import AgentServer, JobContext

server = AgentServer(capacity=int(os.environ.get("BENCH_CAPACITY", "100")))


@server.rtc_session(agent_name="test-agent")
async def entry(ctx: JobContext) -> None:
    started_ns = time.time_ns()
    line = {"event": "started", "job": ctx.job.id, "metadata": ctx.job.metadata, "t_ns": started_ns}
    with open(os.environ["AGENT_RECORD"], "a") as out:
        out.write(json.dumps(line) + "\n")
