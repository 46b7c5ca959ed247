"""The reference example, unchanged, against real processes: one API node, two schedulers
and the demo agent server, through the real ``livekit-api`` client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from livekit import api

from dispatcher.localredis import free_port
from tests.e2e.procs import processes, wait_http
from tests.redis_servers import RedisTarget
from tests.stack import API_KEY, API_SECRET, eventually

METADATA = '{"user_id": "12345"}'
ENDED = (api.JobStatus.JS_SUCCESS, api.JobStatus.JS_FAILED)


async def _dispatches(lk: api.LiveKitAPI) -> list[api.AgentDispatch]:
    return list(await lk.agent_dispatch.list_dispatch(room_name="my-room"))


async def test_create_list_delete_with_the_livekit_client(
    redis_single_target: RedisTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, redis = free_port(), ["--redis-url", redis_single_target.url]
    commands = [
        ["api", "--port", str(port), "--host", "127.0.0.1", *redis],
        ["scheduler", "--node-id", "e2e-a", *redis],
        ["scheduler", "--node-id", "e2e-b", *redis],
        ["agent", "dispatcher.demo_agent:server", *redis],
    ]
    monkeypatch.setenv("LIVEKIT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("LIVEKIT_API_KEY", API_KEY)
    monkeypatch.setenv("LIVEKIT_API_SECRET", API_SECRET)
    with processes(commands, tmp_path) as logs:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/readyz")
        lk = api.LiveKitAPI()
        try:
            dispatch = await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(
                    agent_name="test-agent", room="my-room", metadata=METADATA
                )
            )
            assert dispatch.id.startswith("AD_") and dispatch.state.created_at > 0
            assert [d.id for d in await _dispatches(lk)] == [dispatch.id]

            async def running() -> bool:
                jobs = (await _dispatches(lk))[0].state.jobs
                return bool(jobs) and jobs[-1].state.status == api.JobStatus.JS_RUNNING

            await eventually(running, timeout_s=30, what="the job to run")
            job = (await _dispatches(lk))[0].state.jobs[-1]
            assert job.state.worker_id.startswith("AW_")
            assert METADATA in logs[3].read_text()

            deleted = await lk.agent_dispatch.delete_dispatch(dispatch.id, "my-room")
            assert deleted.state.deleted_at > 0

            async def ended() -> bool:
                jobs = (await _dispatches(lk))[0].state.jobs
                return jobs[-1].state.status in ENDED and jobs[-1].state.ended_at > 0

            await eventually(ended, timeout_s=30, what="the job to end")
            assert (await _dispatches(lk))[0].state.deleted_at == deleted.state.deleted_at
        finally:
            await lk.aclose()
