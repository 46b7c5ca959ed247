"""Webhooks end to end in one process: an API node, a scheduler with webhooks configured, an
agent server and a real HTTP receiver. Every event type arrives, LiveKit's own
``WebhookReceiver`` verifies and parses each, and without a URL nothing reaches Redis."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from livekit import api

from dispatcher.partitions import DEFAULT_PARTITIONS, partition_of
from dispatcher.store import keys
from dispatcher.store.client import Client
from dispatcher.webhooks.signing import CONTENT_TYPE
from tests.faultinject import Faults
from tests.redis_servers import RedisTarget
from tests.room_stack import LEAVE, Stack, join_token
from tests.stack import (
    API_KEY,
    API_SECRET,
    api_url,
    eventually,
    start_api,
    start_scheduler,
)
from tests.webhook_receiver import HOOK_KEY, HOOK_SECRET, Receiver

ROOM = "hooked-room"
AGENT = "hooked-agent"
EVERY_EVENT = {
    "room_started", "participant_joined", "job_started", "participant_left", "job_ended",
    "room_finished",
}  # fmt: skip


async def make_stack(url: str, **scheduler: object) -> Stack:
    node = await start_api(url)
    return Stack(
        node=node,
        lk=api.LiveKitAPI(api_url(node), API_KEY, API_SECRET),
        http=aiohttp.ClientSession(),
        url=api_url(node),
        scheduler=await start_scheduler(url, "hooks-0", **scheduler),
        url_redis=url,
    )


async def close_stack(s: Stack) -> None:
    await s.http.close()
    await s.lk.aclose()
    await s.node.aclose()
    await asyncio.gather(*(a.aclose() for a in s.agents))
    await s.scheduler.aclose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.listen()
    yield r
    await r.close()


async def room_life(stack: Stack) -> None:
    """A room opened by a join with an agent, left, and closed 1 s later."""
    ran = await stack.agent(AGENT)
    agent = api.RoomAgentDispatch(agent_name=AGENT)
    await stack.join(join_token(ROOM, "alice", agent, departure_timeout=1))
    await eventually(lambda: len(ran) == 1, what="the agent's job to run")
    status, body = await stack.post(LEAVE, join_token(ROOM, "alice"))
    assert status == 200, body


async def test_every_event_arrives_verified_by_livekits_receiver(
    redis_target: RedisTarget, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    stack = await make_stack(
        redis_target.url,
        webhook_urls=receiver.url,
        webhook_api_key=HOOK_KEY,
        webhook_api_secret=HOOK_SECRET,
    )
    try:
        await room_life(stack)
        await eventually(
            lambda: {e for _, e in receiver.kinds()} >= EVERY_EVENT, what="every event type"
        )
    finally:
        await close_stack(stack)

    assert "webhook delivery failed" not in caplog.text
    events = receiver.accepted()
    assert len(events) == len(EVERY_EVENT)  # none sent twice
    assert {r.content_type for r in receiver.received} == {CONTENT_TYPE}
    assert all(e.room.name == ROOM and e.id.startswith("EV_") for e in events)
    by_kind = {e.event: e for e in events}
    assert by_kind["room_started"].room.sid.startswith("RM_")
    assert by_kind["participant_joined"].participant.identity == "alice"
    assert by_kind["participant_left"].participant.identity == "alice"
    started, ended = by_kind["job_started"].job, by_kind["job_ended"].job
    assert started.agent_name == AGENT and started.state.status == api.JobStatus.JS_RUNNING
    assert ended.id == started.id and ended.state.reason == api.JobStateReason.JSR_ROOM_CLOSED
    assert ended.state.status in (api.JobStatus.JS_SUCCESS, api.JobStatus.JS_FAILED)
    order = [e.event for e in events]  # one room: in the order its changes were committed
    assert order.index("room_started") < order.index("participant_joined")
    assert order.index("participant_left") < order.index("room_finished")


async def test_another_secret_does_not_verify_them(
    redis_single_target: RedisTarget, receiver: Receiver
) -> None:
    stack = await make_stack(
        redis_single_target.url,
        webhook_urls=receiver.url,
        webhook_api_key=HOOK_KEY,
        webhook_api_secret=HOOK_SECRET,
    )
    try:
        await stack.join(join_token(ROOM, "alice"))
        await eventually(lambda: len(receiver.accepted()) >= 2, what="the first events")
    finally:
        await close_stack(stack)

    with pytest.raises(Exception, match="Signature"):
        receiver.accepted(secret="another-secret-another-secret-12")


async def test_events_past_their_retry_time_are_dropped_and_counted_in_the_next(
    redis_single_target: RedisTarget, receiver: Receiver
) -> None:
    receiver.status = 503
    stack = await make_stack(
        redis_single_target.url,
        webhook_urls=receiver.url,
        webhook_api_key=HOOK_KEY,
        webhook_api_secret=HOOK_SECRET,
        webhook_retry_s=1,
    )
    try:
        sender = stack.scheduler.webhooks.sender if stack.scheduler.webhooks else None
        assert sender is not None
        await stack.join(join_token(ROOM, "alice"))  # room_started, participant_joined
        await eventually(lambda: sender.dropped == 2, what="both to be dropped")
        receiver.status = 200
        status, body = await stack.post(LEAVE, join_token(ROOM, "alice"))
        assert status == 200, body
        await eventually(lambda: len(receiver.accepted()) == 1, what="participant_left")
    finally:
        await close_stack(stack)

    (left,) = receiver.accepted()
    assert (left.event, left.num_dropped) == ("participant_left", 2)
    assert sender.delivered == 1


async def test_events_whose_ack_fails_are_sent_again_until_acked(
    redis_single_target: RedisTarget, receiver: Receiver
) -> None:
    stack = await make_stack(
        redis_single_target.url,
        webhook_urls=receiver.url,
        webhook_api_key=HOOK_KEY,
        webhook_api_secret=HOOK_SECRET,
    )
    try:
        rule = Faults(stack.scheduler.client.fast).fail_command("XACK", ":hooks", times=2)
        await stack.join(join_token(ROOM, "alice"))
        stream = keys.partition_keys(partition_of(ROOM, stack.scheduler.settings.partitions))
        redis = stack.scheduler.client
        await eventually(lambda: rule.failed == 2, what="two acks to fail")
        await eventually(lambda: _pending(redis, stream.hooks, 0), what="every entry acked")
    finally:
        await close_stack(stack)

    sends = Counter(e.id for e in receiver.accepted())
    assert len(sends) == 2  # room_started, participant_joined
    assert sum(sends.values()) >= 2 + rule.failed  # each failed ack sent its events again


async def _pending(redis: Client, stream: str, count: int) -> bool:
    summary = await redis.xpending(stream, keys.HOOKS_GROUP)
    return int(summary["pending"]) == count


async def test_a_room_whose_events_are_refused_holds_back_no_other_room(
    redis_single_target: RedisTarget, receiver: Receiver
) -> None:
    stuck, free = _rooms_of_one_partition(2)
    receiver.refused_rooms = {stuck}
    stack = await make_stack(
        redis_single_target.url,
        webhook_urls=receiver.url,
        webhook_api_key=HOOK_KEY,
        webhook_api_secret=HOOK_SECRET,
    )
    try:
        await stack.join(join_token(stuck, "alice"))
        await eventually(lambda: len(receiver.received) > 0, what="the stuck room's first try")
        await stack.join(join_token(free, "bob"))
        await eventually(
            lambda: receiver.order(free) == ["room_started", "participant_joined"],
            what="the other room's events",
        )
        assert receiver.order(stuck) == []
        receiver.refused_rooms = set()
        await eventually(
            lambda: receiver.order(stuck) == ["room_started", "participant_joined"],
            what="the stuck room's events, in order",
        )
    finally:
        await close_stack(stack)


def _rooms_of_one_partition(count: int) -> list[str]:
    partitions = DEFAULT_PARTITIONS
    names = (f"room-{i}" for i in range(10_000))
    first = next(names)
    same = [n for n in names if partition_of(n, partitions) == partition_of(first, partitions)]
    return [first, *same[: count - 1]]


async def test_nothing_is_queued_without_a_webhook_url(redis_target: RedisTarget) -> None:
    stack = await make_stack(redis_target.url)
    try:
        await room_life(stack)
        await eventually(lambda: _room_closed(stack), what="the room to close")
        redis = stack.scheduler.client
        for p in range(stack.scheduler.settings.partitions):
            assert not await redis.exists(keys.partition_keys(p).hooks)
    finally:
        await close_stack(stack)


async def _room_closed(stack: Stack) -> bool:
    return not list((await stack.lk.room.list_rooms(api.ListRoomsRequest(names=[ROOM]))).rooms)
