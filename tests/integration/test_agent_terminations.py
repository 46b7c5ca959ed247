"""An agent server told to stop a job at awkward moments frees its slot, on one node and on
the cluster: before the job's task ever ran, and while its confirm was in flight."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from dispatcher.store import keys, scripts
from dispatcher.wire import (
    Assignment,
    JobReport,
    JobSpec,
    JobStatus,
    ServerStatus,
    Termination,
    event_decoder,
)
from tests.redis_servers import RedisTarget
from tests.stack import start_agent
from workers import AgentServer, JobContext

AGENT = "term"


def spec(job_id: str) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        dispatch_id=f"AD_{job_id}",
        attempt=0,
        partition=5,
        room="r",
        room_sid="RM_r",
        agent_name=AGENT,
    )


async def _never(ctx: JobContext) -> None:
    raise AssertionError("the entrypoint of a terminated job ran")


async def reserve(server: AgentServer, job: JobSpec) -> None:
    """The slot a scheduler would reserve, without the inbox entry: the test delivers the
    assignment itself, at the moment it wants."""
    reservations = server.shard.reservations(server.id)
    await server.client.hset(reservations, job.job_id, int(time.time() * 1000) + 60_000)


def watch_sends(server: AgentServer, sha: str) -> list[tuple[Any, ...]]:
    """The calls of one script, and the events appended, that the server sends from now on,
    as they are sent (a batch over several cluster nodes may take more than one loop turn
    to send them all)."""
    lane, sent = server.client.fast, []
    send = lane.send

    def watched(args: tuple[Any, ...], key: Any = None) -> Any:
        if args[:2] == ("EVALSHA", sha) or (args[0] == "XADD" and ":events" in str(args[1])):
            sent.append(args)
        return send(args, key)

    lane.send = watched  # type: ignore[method-assign]
    return sent


async def reports(server: AgentServer, job: JobSpec) -> list[JobStatus]:
    stream = keys.partition_keys(job.partition).events
    entries: list[Any] = await server.client.xrange(stream)  # type: ignore[assignment]
    decoded = [event_decoder.decode(fields[b"e"]) for _, fields in entries]
    return [e.status for e in decoded if isinstance(e, JobReport) and e.job_id == job.job_id]


async def test_a_job_terminated_before_its_task_ran_leaves_running(
    redis_target: RedisTarget,
) -> None:
    server = await start_agent(redis_target.url, AGENT, _never, capacity=1)
    try:
        job = spec("AJ_early")
        server._dispatch(Assignment(job=job))
        server._dispatch(Termination(job_id=job.job_id, reason="deleted"))
        await asyncio.sleep(0.05)
        assert server.running == {}
        assert server.status() == ServerStatus.AVAILABLE  # the slot counts as free again
    finally:
        await server.aclose()


async def test_a_job_terminated_while_confirming_reports_and_frees_its_slot(
    redis_target: RedisTarget,
) -> None:
    server = await start_agent(redis_target.url, AGENT, _never, capacity=1)
    try:
        job = spec("AJ_confirming")
        await reserve(server, job)
        # the connection to the events' node open beforehand, as it is in any running server
        await server.client.fast.execute("XLEN", keys.partition_keys(job.partition).events)
        confirming = watch_sends(server, scripts.confirm.sha)
        server._dispatch(Assignment(job=job))
        task = server.running[job.job_id]
        while len(confirming) < 2:  # the task runs up to the confirm's reply
            await asyncio.sleep(0)
        server._dispatch(Termination(job_id=job.job_id, reason="deleted"))
        await asyncio.gather(task, return_exceptions=True)

        reservations = server.shard.reservations(server.id)
        assert await server.client.hlen(reservations) == 0
        assert await reports(server, job) == [JobStatus.RUNNING, JobStatus.SUCCESS]
    finally:
        await server.aclose()
