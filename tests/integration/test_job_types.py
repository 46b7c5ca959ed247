"""Participant and publisher jobs: one per participant (agents excluded), idempotent on
reconnect and republish, ended when the participant leaves; agent servers registered for
them get no room jobs."""

from __future__ import annotations

import asyncio

from livekit import api

from tests.room_stack import Stack, join_token, stack
from tests.stack import API_KEY, API_SECRET, eventually
from workers import JobType

__all__ = ["stack"]  # the fixture

PUBLISH = "/twirp/dispatcher.Participant/Publish"
LEAVE = "/twirp/dispatcher.Participant/Leave"


def _agent_token(room: str, identity: str) -> str:
    token = api.AccessToken(API_KEY, API_SECRET).with_identity(identity).with_kind("agent")
    return token.with_grants(api.VideoGrants(room_join=True, room=room)).to_jwt()


async def _settle() -> None:
    await asyncio.sleep(0.5)  # room for a job that should not exist to show up


async def test_one_participant_job_per_participant_and_none_for_agents(stack: Stack) -> None:
    jobs = await stack.agent("watcher", JobType.PARTICIPANT)
    watcher = api.RoomAgentDispatch(agent_name="watcher", metadata="w")
    await stack.lk.room.create_room(api.CreateRoomRequest(name="call", agents=[watcher]))
    alice = join_token("call", "alice")
    await stack.join(alice)
    await stack.join(join_token("call", "bob"))
    await stack.join(_agent_token("call", "some-agent"))
    await stack.join(alice)  # a reconnect
    await eventually(lambda: len(jobs) == 2, what="a job for each participant")
    await _settle()
    assert sorted(j.participant.identity for j in jobs) == ["alice", "bob"]
    assert all(j.type == api.JobType.JT_PARTICIPANT and j.metadata == "w" for j in jobs)
    assert all(j.room.name == "call" for j in jobs)
    # The agent's servers serve participant jobs only: the dispatch lists no room job, and
    # one job per participant.
    listed = (await stack.dispatches("call"))[0].state.jobs
    assert sorted((j.type, j.participant.identity) for j in listed) == [
        (api.JobType.JT_PARTICIPANT, "alice"),
        (api.JobType.JT_PARTICIPANT, "bob"),
    ]
    assert {j.state.status for j in listed} <= {api.JobStatus.JS_PENDING, api.JobStatus.JS_RUNNING}

    status, _ = await stack.post(LEAVE, alice)
    assert status == 200
    ended = stack.ended["watcher:participant"]
    await eventually(lambda: [j.participant.identity for j in ended] == ["alice"], what="ended")


async def test_a_dispatch_created_later_reaches_the_participants_present(stack: Stack) -> None:
    jobs = await stack.agent("late", JobType.PARTICIPANT)
    await stack.join(join_token("busy", "carol"))
    await stack.join(join_token("busy", "dave"))
    await stack.lk.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(agent_name="late", room="busy")
    )
    await eventually(lambda: len(jobs) == 2, what="jobs for those present")
    assert sorted(j.participant.identity for j in jobs) == ["carol", "dave"]


async def test_one_publisher_job_at_the_first_publish(stack: Stack) -> None:
    jobs = await stack.agent("scribe", JobType.PUBLISHER)
    scribe = api.RoomAgentDispatch(agent_name="scribe")
    erin = join_token("stage", "erin", scribe)
    await stack.join(erin)
    await stack.join(join_token("stage", "frank"))
    await _settle()
    assert jobs == []  # nobody published yet
    first = await stack.post(PUBLISH, erin)
    again = await stack.post(PUBLISH, erin)
    assert (first[1]["first"], again[1]["first"]) == (True, False)
    await eventually(lambda: len(jobs) == 1, what="the publisher job")
    await _settle()
    assert [(j.participant.identity, j.type) for j in jobs] == [("erin", api.JobType.JT_PUBLISHER)]
    status, body = await stack.post(PUBLISH, join_token("stage", "nobody"))
    assert (status, body["code"]) == (404, "not_found")


async def test_room_and_participant_servers_of_one_agent_each_get_their_jobs(
    stack: Stack,
) -> None:
    room_jobs = await stack.agent("both")
    participant_jobs = await stack.agent("both", JobType.PARTICIPANT)
    agent = api.RoomAgentDispatch(agent_name="both")
    await stack.join(join_token("mixed", "gina", agent))
    await eventually(lambda: len(room_jobs) == 1, what="the room job")
    await eventually(lambda: len(participant_jobs) == 1, what="the participant job")
    assert room_jobs[0].type == api.JobType.JT_ROOM
    assert participant_jobs[0].participant.identity == "gina"
