"""Webhooks under faults, against a scheduler process, an API node, an agent server and a
real receiver: a receiver that is down for 30 s (refusing connections, then answering 503)
gets every event once it answers 200, and events queued when their scheduler is killed
(SIGKILL) are delivered by the next lease holder."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis
from livekit import api

from dispatcher.partitions import DEFAULT_PARTITIONS, partition_of
from dispatcher.store import keys
from tests.e2e.procs import started
from tests.faults.harness import SCHEDULER_ENV
from tests.redis_servers import RedisTarget
from tests.room_stack import JOIN, LEAVE, join_token
from tests.stack import api_url, eventually, start_agent, start_api
from tests.webhook_receiver import HOOK_KEY, HOOK_SECRET, Receiver
from workers import JobContext

AGENT = "hooked-agent"
ROOMS = 8
PER_ROOM = (  # in the order their changes are committed
    "room_started", "participant_joined", "job_started", "participant_left", "room_finished",
    "job_ended",
)  # fmt: skip
DELIVERY_WAIT_S = 60.0  # after the receiver accepts again (backoff is at most 10 s)


def expected(rooms: list[str]) -> Counter[tuple[str, str]]:
    return Counter((room, event) for room in rooms for event in PER_ROOM)


def scheduler_env(redis_url: str, receiver: Receiver, node_id: str) -> dict[str, str]:
    return {
        **SCHEDULER_ENV,
        "DISPATCHER_REDIS_URL": redis_url,
        "DISPATCHER_NODE_ID": node_id,
        "DISPATCHER_WEBHOOK_URLS": receiver.url,
        "DISPATCHER_WEBHOOK_API_KEY": HOOK_KEY,
        "DISPATCHER_WEBHOOK_API_SECRET": HOOK_SECRET,
    }


@asynccontextmanager
async def api_and_agent(redis_url: str) -> AsyncIterator[str]:
    """An API node and an agent server whose jobs run until they are terminated."""

    async def entry(_: JobContext) -> None:
        await asyncio.sleep(60)

    node = await start_api(redis_url)
    agent = await start_agent(redis_url, AGENT, entry, capacity=ROOMS * 2)
    try:
        yield api_url(node)
    finally:
        await agent.aclose()
        await node.aclose()


async def room_lives(url: str, prefix: str) -> list[str]:
    """Rooms opened by a join with an agent, left once the job runs, closed 1 s later."""
    rooms = [f"{prefix}-{i}" for i in range(ROOMS)]
    agent = api.RoomAgentDispatch(agent_name=AGENT)
    async with aiohttp.ClientSession() as http:
        for room in rooms:
            await _post(http, url + JOIN, join_token(room, "alice", agent, departure_timeout=1))
        lk = api.LiveKitAPI(url, "devkey", "secretsecretsecretsecretsecret12")
        try:
            await eventually(lambda: _all_running(lk, rooms), 30, "every room's job to run")
        finally:
            await lk.aclose()
        for room in rooms:
            await _post(http, url + LEAVE, join_token(room, "alice"))
    return rooms


async def _post(http: aiohttp.ClientSession, url: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with http.post(url, data=b"{}", headers=headers) as response:
        assert response.status == 200, await response.text()


async def _all_running(lk: api.LiveKitAPI, rooms: list[str]) -> bool:
    for room in rooms:
        listed = await lk.agent_dispatch.list_dispatch(room_name=room)
        jobs = [j for d in listed for j in d.state.jobs]
        if not any(j.state.status == api.JobStatus.JS_RUNNING for j in jobs):
            return False
    return True


async def _at(t0: float, after_s: float) -> None:
    await asyncio.sleep(max(0.0, t0 + after_s - time.monotonic()))


@pytest.mark.timeout(180)
async def test_a_receiver_down_for_30_s_gets_every_event_afterwards(
    redis_single_target: RedisTarget, tmp_path: Path
) -> None:
    receiver = Receiver()  # not listening: connections are refused
    url = redis_single_target.url
    with started([["scheduler"]], tmp_path, **scheduler_env(url, receiver, "hooks-0")):
        async with api_and_agent(url) as api_node:
            t0 = time.monotonic()
            rooms = await room_lives(api_node, "down")
            await _at(t0, 15)
            receiver.status = 503
            await receiver.listen()
            await _at(t0, 30)
            refused = len(receiver.received)
            receiver.status = 200
            try:
                await eventually(
                    lambda: receiver.kinds() >= expected(rooms), DELIVERY_WAIT_S, "every event"
                )
            finally:
                await receiver.close()
    assert refused > 0  # the 503 phase was exercised
    assert receiver.kinds() == expected(rooms)  # each event once (repeats share an id)
    assert all(receiver.order(room) == list(PER_ROOM) for room in rooms)


@pytest.mark.timeout(180)
async def test_events_queued_when_their_scheduler_is_killed_are_delivered_by_the_next(
    redis_single_target: RedisTarget, tmp_path: Path
) -> None:
    receiver = Receiver(status=503)
    await receiver.listen()
    url = redis_single_target.url
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        async with api_and_agent(url) as api_node:
            with started([["scheduler"]], tmp_path / "a", **scheduler_env(url, receiver, "a")) as (
                first,
            ):
                rooms = await room_lives(api_node, "killed")
                await eventually(lambda: _queued(url, rooms), 30, "every event queued")
                await eventually(lambda: len(receiver.received) > 0, 30, "a refused delivery")
                first.kill()
                first.wait()
            receiver.status = 200
            with started([["scheduler"]], tmp_path / "b", **scheduler_env(url, receiver, "b")):
                await eventually(
                    lambda: receiver.kinds() >= expected(rooms), DELIVERY_WAIT_S, "every event"
                )
    finally:
        await receiver.close()
    assert receiver.kinds() == expected(rooms)
    assert all(receiver.order(room) == list(PER_ROOM) for room in rooms)


async def _queued(redis_url: str, rooms: list[str]) -> bool:
    """Every event of the rooms is in their partitions' hooks streams."""
    streams = {keys.partition_keys(partition_of(r, DEFAULT_PARTITIONS)).hooks for r in rooms}
    async with redis.Redis.from_url(redis_url) as client:
        lengths = [await client.xlen(stream) for stream in streams]
    return sum(lengths) >= len(rooms) * len(PER_ROOM)
