"""The demo agent server that dev mode runs: logs each job's metadata, then stays in the room.

Run it alone with ``dispatcher agent dispatcher.demo_agent:server``.
"""

from __future__ import annotations

import asyncio
import logging

from workers import AgentServer, JobContext

log = logging.getLogger("demo-agent")

server = AgentServer(capacity=100)


@server.rtc_session(agent_name="test-agent")
async def entry(ctx: JobContext) -> None:
    log.info("job %s in room %s, metadata: %s", ctx.job.id, ctx.room.name, ctx.job.metadata)
    # A real agent would hold a conversation here; the demo stays until the job is ended.
    await asyncio.Event().wait()
