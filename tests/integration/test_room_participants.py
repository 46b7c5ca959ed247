"""RoomService's participant calls and room metadata through the real ``livekit-api``
client: who is in a room, one of them, removing one (which ends its jobs), and the calls
LiveKit defines that have no meaning in a dispatch service."""

from __future__ import annotations

import pytest
from livekit import api

from tests.room_stack import Stack, join_token, stack
from tests.stack import eventually
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
