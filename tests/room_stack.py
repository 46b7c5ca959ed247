"""A stack for room tests: an API node and a scheduler on the test's Redis, the real
``livekit-api`` client, tokens minted with ``livekit-api``, and agent servers that record
the jobs they run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from livekit import api

from dispatcher.api.app import ApiNode
from dispatcher.scheduler.node import SchedulerNode
from tests.redis_servers import RedisTarget
from tests.stack import (
    API_KEY,
    API_SECRET,
    api_url,
    eventually,
    start_agent,
    start_api,
    start_scheduler,
)
from workers import AgentServer, JobContext, JobType

JOIN = "/twirp/dispatcher.Participant/Join"
LEAVE = "/twirp/dispatcher.Participant/Leave"


def join_token(room: str, identity: str, *agents: api.RoomAgentDispatch, **config: Any) -> str:
    token = api.AccessToken(API_KEY, API_SECRET).with_identity(identity)
    token = token.with_grants(api.VideoGrants(room_join=True, room=room))
    if agents or config:
        token = token.with_room_config(api.RoomConfiguration(agents=list(agents), **config))
    return token.to_jwt()


@dataclass
class Stack:
    node: ApiNode
    lk: api.LiveKitAPI
    http: aiohttp.ClientSession
    url: str
    scheduler: SchedulerNode
    agents: list[AgentServer] = field(default_factory=list)
    jobs: dict[str, list[api.Job]] = field(default_factory=dict)  # agent name -> jobs run

    async def post(self, path: str, token: str) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with self.http.post(self.url + path, data=b"{}", headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def join(self, token: str) -> dict[str, Any]:
        status, body = await self.post(JOIN, token)
        assert status == 200, body
        return body

    async def agent(
        self, name: str, job_type: JobType = JobType.ROOM, hold_s: float = 30.0
    ) -> list[api.Job]:
        """An agent server of ``name`` whose jobs run until terminated (or ``hold_s``),
        once the scheduler sees it. Its jobs are recorded in ``self.jobs[name]`` (and the
        ended ones in ``self.ended[name]``), or under ``name:participant`` etc. for
        servers of other job types; the list is returned."""
        label = name if job_type == JobType.ROOM else f"{name}:{job_type.name.lower()}"
        ran = self.jobs.setdefault(label, [])
        ended = self.ended.setdefault(label, [])

        async def entry(ctx: JobContext) -> None:
            ran.append(ctx.job)
            try:
                await asyncio.sleep(hold_s)
            finally:
                ended.append(ctx.job)

        server = await start_agent(self.url_redis, name, entry, job_type=job_type)
        self.agents.append(server)
        registry = self.scheduler.registry
        seen = registry.version + 2  # a refresh that began after the server's first heartbeat
        await eventually(
            lambda: registry.version >= seen, what="the scheduler to see the agent server"
        )
        return ran

    url_redis: str = ""
    ended: dict[str, list[api.Job]] = field(default_factory=dict)  # agent name -> jobs ended

    async def dispatches(self, room: str) -> list[api.AgentDispatch]:
        return list(await self.lk.agent_dispatch.list_dispatch(room_name=room))


@pytest.fixture
async def stack(redis_target: RedisTarget, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    overrides = getattr(request, "param", {})
    scheduler: SchedulerNode = await start_scheduler(redis_target.url, "s0", block_ms=50)
    node = await start_api(redis_target.url, **overrides)
    url = api_url(node)
    lk = api.LiveKitAPI(url, API_KEY, API_SECRET)
    http = aiohttp.ClientSession()
    s = Stack(node=node, lk=lk, http=http, url=url, scheduler=scheduler, url_redis=redis_target.url)
    try:
        yield s
    finally:
        await http.close()
        await lk.aclose()
        await node.aclose()
        await asyncio.gather(*(a.aclose() for a in s.agents))
        await scheduler.aclose()
