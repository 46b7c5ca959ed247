"""Short ``loadgen connect`` sessions against an in-process API node and scheduler."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest

from dispatcher.api.httpserver import HttpServer
from dispatcher.wire import pool_name
from loadgen.connect_report import build_connect_report
from loadgen.connect_session import ConnectSession
from loadgen.httpclient import HttpClient
from loadgen.join_plan import JoinShape
from loadgen.join_sender import join
from loadgen.sender import OK
from loadgen.trivial_stack import create_app
from tests import stack
from tests.loadgen_system import AGENT, System, running_system
from tests.redis_servers import RedisTarget
from workers import JobContext, JobType

SHAPE = JoinShape(new_room_share=0.2, room_size=5, leave_share=0.1)


@pytest.fixture
async def system(redis_single_target: RedisTarget) -> AsyncIterator[System]:
    async with running_system(redis_single_target.url) as running:
        yield running


async def test_every_join_is_counted_and_every_room_starts_its_agent_once(
    system: System,
) -> None:
    rooms_started: list[str] = []

    async def entry(ctx: JobContext) -> None:
        rooms_started.append(ctx.room.name)

    agent = await stack.start_agent(system.redis_url, AGENT, entry, capacity=100)
    try:
        registry, pool = system.scheduler.registry, pool_name(AGENT, JobType.ROOM)
        await stack.eventually(lambda: registry.has_servers(pool), what="the agent registered")
        async with ConnectSession(system.options(rate=200, agents=0), SHAPE) as session:
            step = await session.step(200, 1.0)
        report = build_connect_report(step, session.run_id)
        assert report["planned"] == report["attempted"] == report["accepted"] == 200
        assert report["error_total"] == 0 and report["leave_errors"] == {}
        assert report["leaves"] > 0 and report["reconnected"] == 0
        assert report["rooms_created"] == report["rooms_planned"] == report["dispatches"]
        assert report["rooms_created_unplanned"] == report["creator_found_room"] == 0
        rooms = report["rooms_opened"] + report["rooms_created"]  # and each room is joined
        assert report["rooms_joined"] <= rooms
        await stack.eventually(lambda: len(rooms_started) >= rooms, what="every room's agent job")
        assert len(rooms_started) == rooms
        assert set(Counter(rooms_started).values()) == {1}
    finally:
        await agent.aclose()


async def test_with_a_fleet_every_room_s_dispatch_reaches_an_entrypoint_once(
    system: System,
) -> None:
    async with ConnectSession(system.options(rate=100, agents=1), SHAPE) as session:
        step = await session.step(100, 1.0)
    report = build_connect_report(step, session.run_id, session.agents)
    assert report["accepted"] == report["planned"] == 100 and report["error_total"] == 0
    rooms = report["rooms_created"]
    assert rooms == report["rooms_planned"] == report["dispatches"] == report["results"]
    assert (report["lost"], report["duplicates"], report["unmatched"]) == (0, 0, 0)
    assert report["join_to_entrypoint_ms"]["count"] == rooms
    assert report["backlog_bounded"]
    # the session's warm-up dispatch and the rooms opened before the schedule ran there too
    assert [a["jobs"] for a in report["agents"]] == [1 + report["rooms_opened"] + rooms]


async def test_the_trivial_join_answers_what_the_sender_reads() -> None:
    server = HttpServer(create_app())
    await server.start("127.0.0.1", 0)
    client = HttpClient(f"http://127.0.0.1:{server.port}")
    try:
        answer = await join(client, "not-checked")
    finally:
        await client.aclose()
        await server.aclose()
    assert answer.code == OK and answer.reply is not None
    assert not answer.reply.room.created and answer.reply.dispatches == []
