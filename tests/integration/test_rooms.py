"""Rooms and participants through the real HTTP API: RoomService with the real
``livekit-api`` client, joins authenticated by tokens minted with ``livekit-api``'s
``AccessToken``, automatic dispatch, and rooms closing on their timeouts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from livekit import api

from dispatcher.api.auth import create_token
from dispatcher.partitions import partition_of
from dispatcher.store import keys
from dispatcher.store.client import connect
from tests.room_stack import JOIN, LEAVE, Stack, join_token, stack
from tests.stack import API_KEY, API_SECRET, eventually

__all__ = ["stack"]  # the fixture

ENDED = (api.JobStatus.JS_SUCCESS, api.JobStatus.JS_FAILED)


# --- token joins ------------------------------------------------------------------------------


async def test_a_join_token_creates_the_room_and_sends_its_agent(stack: Stack) -> None:
    await stack.agent("test-agent")
    agent = api.RoomAgentDispatch(agent_name="test-agent", metadata='{"user_id": "12345"}')
    first = await stack.join(join_token("my-room", "alice", agent))
    assert first["room"]["created"] is True
    assert first["token_agents"] == "applied"
    assert [(d["agent_name"], d["metadata"]) for d in first["dispatches"]] == [
        ("test-agent", '{"user_id": "12345"}')
    ]
    await eventually(lambda: len(stack.jobs["test-agent"]) == 1, what="the token's agent runs")
    job = stack.jobs["test-agent"][0]
    assert job.metadata == '{"user_id": "12345"}' and job.room.name == "my-room"
    assert job.room.sid == first["room"]["sid"]

    second = await stack.join(join_token("my-room", "bob", agent))
    assert second["room"] == {**first["room"], "created": False}
    assert second["token_agents"] == "ignored" and second["dispatches"] == []
    assert "not applied" in second["message"]
    assert len(await stack.dispatches("my-room")) == 1


async def test_fifty_concurrent_first_joins_make_one_dispatch_per_token_agent(
    stack: Stack,
) -> None:
    agents = [
        api.RoomAgentDispatch(agent_name="a-one", metadata="1"),
        api.RoomAgentDispatch(agent_name="a-two", metadata="2"),
    ]
    tokens = [join_token("race-room", f"user-{i}", *agents) for i in range(50)]
    replies = await asyncio.gather(*(stack.join(t) for t in tokens))
    assert sum(r["room"]["created"] for r in replies) == 1
    assert len({r["room"]["sid"] for r in replies}) == 1
    assert sum(len(r["dispatches"]) for r in replies) == 2
    listed = await stack.dispatches("race-room")
    assert sorted(d.agent_name for d in listed) == ["a-one", "a-two"]
    rooms = await stack.lk.room.list_rooms(api.ListRoomsRequest(names=["race-room"]))
    assert [r.num_participants for r in rooms.rooms] == [50]


async def test_a_reconnect_keeps_the_participant(stack: Stack) -> None:
    token = join_token("again", "carol")
    first, second = await stack.join(token), await stack.join(token)
    assert second["participant"] == {**first["participant"], "reconnected": True}
    assert second["dispatches"] == []


@pytest.mark.parametrize("stack", [{"token_agents": "ensure"}], indirect=True)
async def test_ensure_mode_adds_only_the_agents_the_room_lacks(stack: Stack) -> None:
    present = api.RoomAgentDispatch(agent_name="present")
    await stack.lk.room.create_room(api.CreateRoomRequest(name="ensured", agents=[present]))
    missing = api.RoomAgentDispatch(agent_name="missing", metadata="m")
    reply = await stack.join(join_token("ensured", "dave", present, missing))
    assert reply["token_agents"] == "ensured"
    assert [d["agent_name"] for d in reply["dispatches"]] == ["missing"]
    again = await stack.join(join_token("ensured", "erin", present, missing))
    assert again["dispatches"] == []
    assert sorted(d.agent_name for d in await stack.dispatches("ensured")) == [
        "missing",
        "present",
    ]


async def test_a_full_room_refuses_a_new_participant(stack: Stack) -> None:
    await stack.join(join_token("small", "p1", max_participants=1))
    status, body = await stack.post(JOIN, join_token("small", "p2"))
    assert (status, body["code"]) == (429, "resource_exhausted")
    assert "full" in body["msg"]


# --- automatic dispatch -----------------------------------------------------------------------


async def test_automatic_dispatch_reaches_only_unnamed_servers_of_rooms_without_agents(
    stack: Stack,
) -> None:
    await stack.agent("")
    await stack.agent("named")
    await stack.lk.room.create_room(api.CreateRoomRequest(name="plain"))
    await stack.join(join_token("joined-plain", "frank"))
    named = api.RoomAgentDispatch(agent_name="named")
    await stack.lk.room.create_room(api.CreateRoomRequest(name="explicit", agents=[named]))
    await stack.lk.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(agent_name="named", room="by-dispatch")
    )
    await eventually(lambda: len(stack.jobs["named"]) == 2, what="the named jobs")
    await eventually(lambda: len(stack.jobs[""]) == 2, what="the automatic jobs")
    assert sorted(j.room.name for j in stack.jobs[""]) == ["joined-plain", "plain"]
    assert sorted(j.room.name for j in stack.jobs["named"]) == ["by-dispatch", "explicit"]
    assert all(j.agent_name == "" for j in stack.jobs[""])


# --- RoomService ------------------------------------------------------------------------------


async def test_create_room_returns_an_existing_room_unchanged(stack: Stack) -> None:
    created = await stack.lk.room.create_room(
        api.CreateRoomRequest(name="r1", empty_timeout=60, metadata="m")
    )
    assert created.sid.startswith("RM_") and created.empty_timeout == 60
    assert created.departure_timeout == 20 and created.creation_time_ms > 0
    again = await stack.lk.room.create_room(api.CreateRoomRequest(name="r1", metadata="other"))
    assert again == created
    await stack.lk.room.create_room(api.CreateRoomRequest(name="r2"))
    every = await stack.lk.room.list_rooms(api.ListRoomsRequest())
    assert [r.name for r in every.rooms] == ["r1", "r2"]
    some = await stack.lk.room.list_rooms(api.ListRoomsRequest(names=["r2", "nope"]))
    assert [r.name for r in some.rooms] == ["r2"]


async def test_room_calls_need_their_grants(stack: Stack) -> None:
    listing = api.AccessToken(API_KEY, API_SECRET).with_grants(api.VideoGrants(room_list=True))
    lk = api.LiveKitAPI(stack.url, token=listing.to_jwt())
    try:
        await lk.room.list_rooms(api.ListRoomsRequest())
        with pytest.raises(api.TwirpError) as refused:
            await lk.room.create_room(api.CreateRoomRequest(name="x"))
        assert refused.value.code == "unauthenticated"
        assert "roomCreate" in refused.value.message
    finally:
        await lk.aclose()


async def test_delete_room_ends_its_jobs_and_marks_its_dispatches_deleted(stack: Stack) -> None:
    await stack.agent("worker")
    agent = api.RoomAgentDispatch(agent_name="worker")
    await stack.lk.room.create_room(api.CreateRoomRequest(name="doomed", agents=[agent]))
    await eventually(lambda: len(stack.jobs["worker"]) == 1, what="the job runs")
    await stack.lk.room.delete_room(api.DeleteRoomRequest(room="doomed"))
    assert (await stack.lk.room.list_rooms(api.ListRoomsRequest(names=["doomed"]))).rooms == []

    async def ended() -> bool:
        jobs = (await stack.dispatches("doomed"))[0].state.jobs
        return jobs[-1].state.status in ENDED

    await eventually(ended, what="the job ends")
    dispatch = (await stack.dispatches("doomed"))[0]
    assert dispatch.state.deleted_at > 0
    assert dispatch.state.jobs[-1].state.reason == api.JobStateReason.JSR_ROOM_CLOSED
    with pytest.raises(api.TwirpError) as missing:
        await stack.lk.room.delete_room(api.DeleteRoomRequest(room="doomed"))
    assert missing.value.code == "not_found"
    # The name is free again: a new room with a new sid and none of the old dispatches.
    fresh = await stack.lk.room.create_room(api.CreateRoomRequest(name="doomed"))
    assert [d.agent_name for d in await stack.dispatches("doomed")] == [""]
    assert fresh.sid != dispatch.state.jobs[-1].room.sid


# --- lifecycle --------------------------------------------------------------------------------


async def _closes(stack: Stack, room: str) -> None:
    async def gone() -> bool:
        listed = await stack.lk.room.list_rooms(api.ListRoomsRequest(names=[room]))
        return not listed.rooms

    await eventually(gone, what=f"room {room} closes")


async def test_a_room_nobody_joins_closes_after_its_empty_timeout(stack: Stack) -> None:
    await stack.agent("lonely")
    agent = api.RoomAgentDispatch(agent_name="lonely")
    await stack.lk.room.create_room(
        api.CreateRoomRequest(name="empty", empty_timeout=1, agents=[agent])
    )
    await eventually(lambda: len(stack.jobs["lonely"]) == 1, what="the job runs")
    await _closes(stack, "empty")

    async def ended() -> bool:
        job = (await stack.dispatches("empty"))[0].state.jobs[-1]
        return job.state.status in ENDED and job.state.reason == api.JobStateReason.JSR_ROOM_CLOSED

    await eventually(ended, what="the job ends with the room")
    # What is left of the room expires after the retention window instead of piling up.
    k = keys.partition_keys(partition_of("empty", 64))
    client = await connect(stack.url_redis)
    try:
        for key in (k.room("empty"), k.room_jobs("empty")):
            assert 0 < await client.ttl(key) <= 3600
        assert not await client.hexists(k.active, (await stack.dispatches("empty"))[0].id)
    finally:
        await client.aclose()


async def test_rooms_of_one_partition_that_come_due_together_all_close(stack: Stack) -> None:
    same = partition_of("burst-0", 64)
    names = [n for n in (f"burst-{i}" for i in range(1000)) if partition_of(n, 64) == same][:6]
    for name in names:
        await stack.lk.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=1))
    for name in names:
        await _closes(stack, name)


async def test_a_room_closes_after_the_last_participant_leaves(stack: Stack) -> None:
    token = join_token("visited", "gina", empty_timeout=1, departure_timeout=1)
    await stack.join(token)
    await asyncio.sleep(1.5)  # past the empty timeout: a present participant keeps it open
    listed = await stack.lk.room.list_rooms(api.ListRoomsRequest(names=["visited"]))
    assert [r.num_participants for r in listed.rooms] == [1]
    status, body = await stack.post(LEAVE, token)
    assert (status, body["left"]) == (200, True)
    await _closes(stack, "visited")
    status, body = await stack.post(LEAVE, token)
    assert (status, body["code"]) == (404, "not_found")


# --- bad tokens -------------------------------------------------------------------------------


def _signed(claims: dict[str, Any], key: str = API_KEY, secret: str = API_SECRET) -> str:
    return create_token(key, secret, claims, now=claims.pop("_now", time.time()))


_VIDEO = {"roomJoin": True, "room": "guarded"}
_BAD_TOKENS = {
    "no roomJoin": (_signed({"sub": "x", "video": {"room": "guarded"}}), "roomJoin"),
    "no identity": (_signed({"video": _VIDEO}), "identity"),
    "expired": (_signed({"sub": "x", "video": _VIDEO, "_now": 0}), "expired"),
    "not yet valid": (
        _signed({"sub": "x", "video": _VIDEO, "_now": 4_000_000_000}),
        "not valid yet",
    ),
    "unknown key": (_signed({"sub": "x", "video": _VIDEO}, key="other"), "invalid API key"),
    "wrong secret": (
        _signed({"sub": "x", "video": _VIDEO}, secret="x" * 32),
        "signature mismatch",
    ),
    "malformed roomConfig": (
        _signed({"sub": "x", "video": _VIDEO, "roomConfig": {"agents": "not-a-list"}}),
        "roomConfig",
    ),
    "roomConfig not an object": (
        _signed({"sub": "x", "video": _VIDEO, "roomConfig": [1]}),
        "roomConfig",
    ),
}


@pytest.mark.parametrize("case", sorted(_BAD_TOKENS))
async def test_a_bad_join_token_is_refused_and_changes_nothing(stack: Stack, case: str) -> None:
    token, says = _BAD_TOKENS[case]
    status, body = await stack.post(JOIN, token)
    assert (status, body["code"]) == (401, "unauthenticated")
    assert says in body["msg"]
    assert (await stack.lk.room.list_rooms(api.ListRoomsRequest())).rooms == []


async def test_a_join_naming_another_room_is_refused(stack: Stack) -> None:
    status, body = await stack.post(JOIN + "?room=elsewhere", join_token("mine", "hank"))
    assert (status, body["code"]) == (401, "unauthenticated")
    assert "not 'elsewhere'" in body["msg"]
    assert (await stack.lk.room.list_rooms(api.ListRoomsRequest())).rooms == []


async def test_an_agent_alone_does_not_keep_a_room_open(stack: Stack) -> None:
    token = api.AccessToken(API_KEY, API_SECRET).with_identity("bot").with_kind("agent")
    config = api.RoomConfiguration(empty_timeout=1)
    grants = api.VideoGrants(room_join=True, room="agent-only")
    await stack.join(token.with_grants(grants).with_room_config(config).to_jwt())
    await _closes(stack, "agent-only")
