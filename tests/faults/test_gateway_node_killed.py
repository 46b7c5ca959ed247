"""The API node holding a LiveKit worker's socket is killed (SIGKILL) while the worker runs
a job: the worker reconnects through the load balancer to another node and migrates the
job there, which adopts its agent server. Nothing is lost, nothing starts twice, and the
job can still be terminated through the node it moved to."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from pathlib import Path

import pytest
from livekit import api

from dispatcher.localredis import free_port
from tests.e2e.livekit_worker import livekit_worker
from tests.e2e.procs import started, wait_http
from tests.redis_servers import RedisTarget
from tests.stack import API_KEY, API_SECRET, eventually, start_scheduler

JS = api.JobStatus
WAIT_S = 45.0
SERVER_TTL_MS = 3000  # the worker's server outlives its socket this long


class FirstLiveBackend:
    """A TCP load balancer: each connection goes to the first backend that accepts it."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.port = free_port()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for port in self.ports:
            with contextlib.suppress(OSError):
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                break
        else:
            writer.close()
            return
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.mark.timeout(180)
async def test_a_killed_api_node_loses_no_job_and_starts_none_twice(
    redis_single_target: RedisTarget, tmp_path: Path
) -> None:
    scheduler = await start_scheduler(redis_single_target.url, "gw-faults")
    ports = [free_port(), free_port()]
    commands = [["api", "--host", "127.0.0.1", "--port", str(port)] for port in ports]
    gateway_env = {"DISPATCHER_REDIS_URL": redis_single_target.url,
                   "DISPATCHER_GATEWAY_HEARTBEAT_TTL_MS": str(SERVER_TTL_MS)}  # fmt: skip
    try:
        with started(commands, tmp_path, **gateway_env) as (first, _):
            for port in ports:
                await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/readyz")
            balancer = FirstLiveBackend(ports)
            server = await asyncio.start_server(balancer.serve, "127.0.0.1", balancer.port)
            lk = api.LiveKitAPI(f"http://127.0.0.1:{ports[1]}", API_KEY, API_SECRET)
            try:
                await _kill_and_follow(lk, first, f"http://127.0.0.1:{balancer.port}", tmp_path)
            finally:
                server.close()
                await lk.aclose()
    finally:
        await scheduler.aclose()


async def _kill_and_follow(
    lk: api.LiveKitAPI, first: subprocess.Popen[bytes], url: str, tmp: Path
) -> None:
    async def job(room: str) -> api.Job | None:
        dispatches = await lk.agent_dispatch.list_dispatch(room_name=room)
        jobs = [j for d in dispatches for j in d.state.jobs]
        return jobs[-1] if jobs else None

    async def status_is(room: str, status: int) -> bool:
        found = await job(room)
        return found is not None and found.state.status == status

    async def dispatch(room: str, metadata: str) -> str:
        request = api.CreateAgentDispatchRequest(
            agent_name="test-agent", room=room, metadata=metadata
        )
        return str((await lk.agent_dispatch.create_dispatch(request)).id)

    with livekit_worker(url, tmp) as worker:
        await eventually(lambda: worker.registrations() == 1, WAIT_S, "registration")
        held = await dispatch("kept-room", "hold")
        await eventually(lambda: status_is("kept-room", JS.JS_RUNNING), WAIT_S, "RUNNING")
        before = await job("kept-room")
        assert before is not None

        first.send_signal(signal.SIGKILL)  # the node holding the worker's socket
        await eventually(lambda: worker.registrations() == 2, WAIT_S, "the reconnect")
        # Past the server's TTL and the schedulers' loss margin: a server not adopted
        # would be lost by now and its job re-placed (and started a second time).
        await asyncio.sleep(3 * SERVER_TTL_MS / 1000)
        after = await job("kept-room")
        assert after is not None and after.id == before.id
        assert after.state.status == JS.JS_RUNNING
        assert len(worker.started("hold")) == 1, worker.started("hold")

        await dispatch("after-room", "quick")  # the adopted server takes new jobs
        await eventually(lambda: status_is("after-room", JS.JS_SUCCESS), WAIT_S, "a new job")

        await lk.agent_dispatch.delete_dispatch(held, "kept-room")
        await eventually(lambda: bool(worker.ended("hold")), WAIT_S, "the termination")
        await eventually(lambda: status_is("kept-room", JS.JS_SUCCESS), WAIT_S, "its end")
        assert len(worker.started("hold")) == 1
