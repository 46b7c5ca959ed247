"""The agent-server SDK: register an entrypoint, run it for every job the scheduler assigns.

server = AgentServer(capacity=10)

@server.rtc_session(agent_name="test-agent")
async def entry(ctx: JobContext) -> None:
    print(ctx.job.metadata, ctx.room.name)

if __name__ == "__main__":
    server.run()          # python my_agent.py start
"""

from dispatcher.wire import JobType
from workers.context import JobContext, JobRequest, RoomInfo
from workers.runner import run_server
from workers.server import AgentServer

__all__ = ["AgentServer", "JobContext", "JobRequest", "JobType", "RoomInfo", "run_server"]
