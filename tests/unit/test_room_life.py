"""A room's life as the lease holder keeps it: presence, close times, and which jobs its
events start. Pure functions, no I/O."""

from __future__ import annotations

from dispatcher.scheduler import jobs, rooms
from dispatcher.wire import (
    DispatchRecord,
    JobType,
    ParticipantRecord,
    RoomRecord,
    pool_name,
)

S = 1_000_000_000
ROOM = RoomRecord(name="r", sid="RM_r", created_at=100 * S, empty_timeout=30, departure_timeout=5)
ALICE = ParticipantRecord(sid="PA_a", identity="alice")
AGENT = ParticipantRecord(sid="PA_g", identity="agent-1", kind="agent")
DISPATCH = DispatchRecord(id="AD_1", agent_name="bot", room="r", created_at=100 * S)


def test_an_unjoined_room_closes_after_its_empty_timeout() -> None:
    assert rooms.close_due(rooms.created(ROOM)) == 130 * S


def test_a_present_participant_keeps_the_room_open_and_leaving_starts_departure() -> None:
    life = rooms.joined(rooms.created(ROOM), ALICE)
    assert rooms.close_due(life) is None
    left = rooms.left(life, "alice", 200 * S)
    assert rooms.close_due(left) == 205 * S


def test_agents_neither_keep_a_room_open_nor_count_as_present() -> None:
    life = rooms.created(ROOM)
    assert rooms.joined(life, AGENT) is life


def test_a_rejoin_changes_nothing_and_a_leave_forgets_the_publish() -> None:
    life = rooms.published(rooms.joined(rooms.created(ROOM), ALICE), "alice")
    assert rooms.joined(life, ALICE) is life
    assert "alice" in life.publishers
    assert rooms.left(life, "alice", 1).publishers == frozenset()


def _has(*pools: str) -> rooms.HasPool:
    return lambda pool: pool in pools


def _types(steps: list[jobs.Step]) -> list[tuple[int, str | None]]:
    specs = [s.record.spec for s in steps]
    return [
        (spec.job_type, spec.participant.identity if spec.participant else None) for spec in specs
    ]


def test_a_dispatch_gets_a_room_job_when_no_typed_servers_exist() -> None:
    steps = rooms.jobs_for_dispatch(rooms.created(ROOM), DISPATCH, _has(), 0, 1)
    assert _types(steps) == [(JobType.ROOM, None)]
    assert steps[0].record.spec.room_sid == "RM_r"


def test_participant_servers_only_means_participant_jobs_only() -> None:
    life = rooms.published(rooms.joined(rooms.created(ROOM), ALICE), "alice")
    has = _has(pool_name("bot", JobType.PARTICIPANT), pool_name("bot", JobType.PUBLISHER))
    steps = rooms.jobs_for_dispatch(life, DISPATCH, has, 0, 1)
    assert _types(steps) == [(JobType.PARTICIPANT, "alice"), (JobType.PUBLISHER, "alice")]
    keys = {s.record.spec.job_key for s in steps}
    assert keys == {"AD_1/participant/alice", "AD_1/publisher/alice"}


def test_a_participant_gets_one_job_per_dispatch_with_servers_of_the_type() -> None:
    other = DispatchRecord(id="AD_2", agent_name="idle", room="r")
    life = rooms.with_dispatch(rooms.with_dispatch(rooms.created(ROOM), DISPATCH), other)
    has = _has(pool_name("bot", JobType.PARTICIPANT))
    steps = rooms.jobs_for_participant(life, ALICE, JobType.PARTICIPANT, has, 0, 1)
    assert [s.record.spec.dispatch_id for s in steps] == ["AD_1"]


def test_pools_of_typed_servers_are_apart_from_room_servers() -> None:
    assert pool_name("bot", JobType.ROOM) == "bot"
    assert pool_name("bot", JobType.PARTICIPANT) != "bot"
    assert pool_name("bot", JobType.PARTICIPANT) != pool_name("bot", JobType.PUBLISHER)
