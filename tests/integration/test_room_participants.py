"""RoomService's participant calls and room metadata through the real ``livekit-api``
client: who is in a room, one of them, removing one (which ends its jobs), and the calls
LiveKit defines that have no meaning in a dispatch service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from livekit import api

from tests.room_stack import Stack, join_token, stack
from tests.stack import API_KEY, API_SECRET, eventually
from workers import JobType

__all__ = ["stack"]  # the fixture


async def test_participants_are_listed_got_and_removed(stack: Stack) -> None:
    await stack.join(join_token("people-room", "alice"))
    await stack.join(join_token("people-room", "bob"))
    rooms = stack.lk.room

    listed = await rooms.list_participants(api.ListParticipantsRequest(room="people-room"))
    assert [p.identity for p in listed.participants] == ["alice", "bob"]
    assert all(p.sid.startswith("PA_") for p in listed.participants)

    who = api.RoomParticipantIdentity(room="people-room", identity="bob")
    bob = await rooms.get_participant(who)
    assert bob.identity == "bob" and bob.state == api.ParticipantInfo.ACTIVE

    await rooms.remove_participant(who)
    listed = await rooms.list_participants(api.ListParticipantsRequest(room="people-room"))
    assert [p.identity for p in listed.participants] == ["alice"]


async def test_a_participant_not_in_the_room_is_not_found(stack: Stack) -> None:
    await stack.join(join_token("lonely-room", "alice"))
    who = api.RoomParticipantIdentity(room="lonely-room", identity="nobody")
    for call in (stack.lk.room.get_participant, stack.lk.room.remove_participant):
        with pytest.raises(api.TwirpError) as caught:
            await call(who)
        assert caught.value.code == "not_found" and "'nobody'" in caught.value.message


async def test_removing_a_participant_ends_its_participant_jobs(stack: Stack) -> None:
    ran = await stack.agent("per-person", JobType.PARTICIPANT)
    agent = api.RoomAgentDispatch(agent_name="per-person")
    await stack.join(join_token("jobs-room", "carol", agent))
    await eventually(lambda: len(ran) == 1, what="carol's participant job")
    ended = stack.ended["per-person:participant"]

    who = api.RoomParticipantIdentity(room="jobs-room", identity="carol")
    await stack.lk.room.remove_participant(who)
    await eventually(lambda: len(ended) == 1, what="her job to end")


@pytest.mark.parametrize(
    ("call", "request_"),
    [
        ("mute_published_track", api.MuteRoomTrackRequest(room="r", identity="i", track_sid="t")),
        ("send_data", api.SendDataRequest(room="r", data=b"x")),
    ],
)
async def test_media_calls_answer_unimplemented_with_a_reason(
    stack: Stack, call: str, request_: object
) -> None:
    with pytest.raises(api.TwirpError) as caught:
        await getattr(stack.lk.room, call)(request_)
    assert caught.value.code == "unimplemented"
    assert "media server" in caught.value.message


async def test_updated_room_metadata_reaches_later_jobs(stack: Stack) -> None:
    ran = await stack.agent("meta-agent")
    await stack.lk.room.create_room(api.CreateRoomRequest(name="meta-room", metadata="v1"))

    async def dispatch() -> None:
        request = api.CreateAgentDispatchRequest(agent_name="meta-agent", room="meta-room")
        await stack.lk.agent_dispatch.create_dispatch(request)

    await dispatch()
    await eventually(lambda: len(ran) == 1, what="the first job")
    update = api.UpdateRoomMetadataRequest(room="meta-room", metadata="v2")
    room = await stack.lk.room.update_room_metadata(update)
    assert room.name == "meta-room" and room.metadata == "v2"
    listed = await stack.lk.room.list_rooms(api.ListRoomsRequest(names=["meta-room"]))
    assert listed.rooms[0].metadata == "v2"
    await dispatch()
    await eventually(lambda: len(ran) == 2, what="the second job")
    assert [job.room.metadata for job in ran] == ["v1", "v2"]


async def test_metadata_of_a_missing_room_is_not_found(stack: Stack) -> None:
    update = api.UpdateRoomMetadataRequest(room="no-such-room", metadata="x")
    with pytest.raises(api.TwirpError) as caught:
        await stack.lk.room.update_room_metadata(update)
    assert caught.value.code == "not_found"


async def test_the_node_server_sdk_lists_removes_updates_and_manages_trunks(stack: Stack) -> None:
    """LiveKit's Node ``livekit-server-sdk``, unchanged (tests/e2e/node_agent/server_sdk.mjs)."""
    await stack.join(join_token("node-sdk-room", "alice"))
    await stack.join(join_token("node-sdk-room", "bob"))
    script = Path(__file__).parents[1] / "e2e" / "node_agent" / "server_sdk.mjs"
    node = await asyncio.create_subprocess_exec(
        "node", str(script), stack.url, API_KEY, API_SECRET, "node-sdk-room",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await node.communicate()
    assert node.returncode == 0, err.decode()
    said = json.loads(out)
    assert said["participants"] == ["alice", "bob"]
    assert said["removed"] is True and said["after"] == ["alice"]
    assert said["metadata"] == "from-node"
    assert said["trunk"].startswith("ST_") and said["trunks"] == [said["trunk"]]
    assert said["deleted"] == said["trunk"]
    assert said["mute"]["status"] == 501  # unimplemented, not bad_route (404)
