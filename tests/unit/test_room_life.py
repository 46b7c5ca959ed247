"""A room's life as the lease holder keeps it: presence, close times, and which jobs its
events start. Pure functions, no I/O."""

from __future__ import annotations

from dispatcher.scheduler import jobs, roomlife
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
    assert roomlife.close_due(roomlife.created(ROOM)) == 130 * S


def test_a_present_participant_keeps_the_room_open_and_leaving_starts_departure() -> None:
    life = roomlife.joined(roomlife.joined(roomlife.created(ROOM), ""), "standard")
    assert roomlife.close_due(life) is None
    one_left = roomlife.left(life, "", 200 * S)
    assert roomlife.close_due(one_left) is None
    assert roomlife.close_due(roomlife.left(one_left, "", 201 * S)) == 206 * S


def test_agents_neither_keep_a_room_open_nor_count_as_present() -> None:
    life = roomlife.created(ROOM)
    assert roomlife.joined(life, "agent") is life
    assert roomlife.left(roomlife.joined(life, ""), "egress", 1).present == 1


def test_a_stray_leave_never_makes_presence_negative() -> None:
    assert roomlife.left(roomlife.created(ROOM), "", 1).present == 0


def _has(*pools: str) -> roomlife.HasPool:
    return lambda pool: pool in pools


def _types(steps: list[jobs.Step]) -> list[tuple[int, str | None]]:
    specs = [s.record.spec for s in steps]
    return [
        (spec.job_type, spec.participant.identity if spec.participant else None) for spec in specs
    ]


def test_a_dispatch_gets_a_room_job_unless_its_servers_all_serve_other_types() -> None:
    life = roomlife.created(ROOM)
    step = roomlife.room_job(life, DISPATCH, _has(), 0, 1)
    assert step is not None and step.record.spec.room_sid == "RM_r"
    assert step.record.spec.job_type == JobType.ROOM
    typed = _has(pool_name("bot", JobType.PARTICIPANT))
    assert roomlife.room_job(life, DISPATCH, typed, 0, 1) is None
    both = _has("bot", pool_name("bot", JobType.PARTICIPANT))
    assert roomlife.room_job(life, DISPATCH, both, 0, 1) is not None


def test_participant_jobs_go_to_each_dispatch_with_servers_of_the_type() -> None:
    other = DispatchRecord(id="AD_2", agent_name="idle", room="r")
    life = roomlife.with_dispatch(roomlife.with_dispatch(roomlife.created(ROOM), DISPATCH), other)
    has = _has(pool_name("bot", JobType.PARTICIPANT), pool_name("bot", JobType.PUBLISHER))
    wanted = [
        (ALICE, JobType.PARTICIPANT),
        (ALICE, JobType.PUBLISHER),
        (AGENT, JobType.PARTICIPANT),
    ]
    steps = roomlife.jobs_for_participants(life, life.dispatches, wanted, has, 0, 1)
    assert _types(steps) == [(JobType.PARTICIPANT, "alice"), (JobType.PUBLISHER, "alice")]
    assert {s.record.spec.job_key for s in steps} == {
        "AD_1/participant/alice",
        "AD_1/publisher/alice",
    }
    assert roomlife.typed_pools(DISPATCH, has) == [JobType.PARTICIPANT, JobType.PUBLISHER]


def test_pools_of_typed_servers_are_apart_from_room_servers() -> None:
    assert pool_name("bot", JobType.ROOM) == "bot"
    assert pool_name("bot", JobType.PARTICIPANT) != "bot"
    assert pool_name("bot", JobType.PARTICIPANT) != pool_name("bot", JobType.PUBLISHER)
