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
    life = rooms.joined(rooms.joined(rooms.created(ROOM), ""), "standard")
    assert rooms.close_due(life) is None
    one_left = rooms.left(life, "", 200 * S)
    assert rooms.close_due(one_left) is None
    assert rooms.close_due(rooms.left(one_left, "", 201 * S)) == 206 * S


def test_agents_neither_keep_a_room_open_nor_count_as_present() -> None:
    life = rooms.created(ROOM)
    assert rooms.joined(life, "agent") is life
    assert rooms.left(rooms.joined(life, ""), "egress", 1).present == 1


def test_a_stray_leave_never_makes_presence_negative() -> None:
    assert rooms.left(rooms.created(ROOM), "", 1).present == 0


def _has(*pools: str) -> rooms.HasPool:
    return lambda pool: pool in pools


def _types(steps: list[jobs.Step]) -> list[tuple[int, str | None]]:
    specs = [s.record.spec for s in steps]
    return [
        (spec.job_type, spec.participant.identity if spec.participant else None) for spec in specs
    ]


def test_a_dispatch_gets_a_room_job_unless_its_servers_all_serve_other_types() -> None:
    life = rooms.created(ROOM)
    step = rooms.room_job(life, DISPATCH, _has(), 0, 1)
    assert step is not None and step.record.spec.room_sid == "RM_r"
    assert step.record.spec.job_type == JobType.ROOM
    typed = _has(pool_name("bot", JobType.PARTICIPANT))
    assert rooms.room_job(life, DISPATCH, typed, 0, 1) is None
    both = _has("bot", pool_name("bot", JobType.PARTICIPANT))
    assert rooms.room_job(life, DISPATCH, both, 0, 1) is not None


def test_participant_jobs_go_to_each_dispatch_with_servers_of_the_type() -> None:
    other = DispatchRecord(id="AD_2", agent_name="idle", room="r")
    life = rooms.with_dispatch(rooms.with_dispatch(rooms.created(ROOM), DISPATCH), other)
    has = _has(pool_name("bot", JobType.PARTICIPANT), pool_name("bot", JobType.PUBLISHER))
    wanted = [
        (ALICE, JobType.PARTICIPANT),
        (ALICE, JobType.PUBLISHER),
        (AGENT, JobType.PARTICIPANT),
    ]
    steps = rooms.jobs_for_participants(life, life.dispatches, wanted, has, 0, 1)
    assert _types(steps) == [(JobType.PARTICIPANT, "alice"), (JobType.PUBLISHER, "alice")]
    assert {s.record.spec.job_key for s in steps} == {
        "AD_1/participant/alice",
        "AD_1/publisher/alice",
    }
    assert rooms.typed_pools(DISPATCH, has) == [JobType.PARTICIPANT, JobType.PUBLISHER]


def test_pools_of_typed_servers_are_apart_from_room_servers() -> None:
    assert pool_name("bot", JobType.ROOM) == "bot"
    assert pool_name("bot", JobType.PARTICIPANT) != "bot"
    assert pool_name("bot", JobType.PARTICIPANT) != pool_name("bot", JobType.PUBLISHER)
