"""The reference docs' agent, written with LiveKit's own ``livekit-agents`` and started with
its own command (``python livekit_agent.py start``), pointed at us by ``LIVEKIT_URL``.

For the tests it also appends what it sees to ``AGENT_RECORD`` (one JSON line per job
start and per job end), and a job's metadata says how it behaves: ``hold`` stays until
the job is terminated, ``short`` ends after 3 s, ``fail`` raises, anything else ends the
job at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

from livekit.agents import AgentServer, JobContext, JobExecutorType, cli

logger = logging.getLogger("test-agent")
server = AgentServer(
    port=int(os.environ.get("AGENT_HEALTH_PORT", "8081")),
    # the default runs each job in its own process; the gateway bench also measures threads
    job_executor_type=JobExecutorType(os.environ.get("AGENT_EXECUTOR", "process")),
)


def record(event: str, ctx: JobContext) -> None:
    line = {
        "event": event,
        "job": ctx.job.id,
        "dispatch": ctx.job.dispatch_id,
        "metadata": ctx.job.metadata,
        "room": ctx.job.room.name,
        "agent_name": ctx.job.agent_name,
        "pid": os.getpid(),
        "t_ns": time.time_ns(),
    }
    with open(os.environ["AGENT_RECORD"], "a") as out:
        out.write(json.dumps(line) + "\n")


@server.rtc_session(agent_name=os.environ.get("AGENT_NAME", "test-agent"))
async def entrypoint(ctx: JobContext) -> None:
    record("started", ctx)
    logger.info(f"job {ctx.job.id} metadata: {ctx.job.metadata}")

    async def ended(reason: str) -> None:
        record("ended", ctx)

    ctx.add_shutdown_callback(ended)
    if ctx.job.metadata == "hold":
        return  # the job lives on (as one that joined its room would) until terminated
    if ctx.job.metadata == "fail":
        raise RuntimeError("the agent failed on purpose")
    if ctx.job.metadata == "short":
        await asyncio.sleep(3)
    ctx.shutdown(reason="done")


if __name__ == "__main__":
    cli.run_app(server)
