"""PartitionState: the in-memory job records of one partition and their indexes."""

from __future__ import annotations

import msgspec

from dispatcher.scheduler import jobs, roomlife
from dispatcher.scheduler.state import PartitionState
from dispatcher.wire import (
    DispatchCreated,
    DispatchRecord,
    JobRecord,
    JobReport,
    JobStatus,
    RoomRecord,
)

AGENT = "agent-a"
SERVER_A = "AW_serverA00001"
SERVER_B = "AW_serverB00001"
ASSIGN_MS = 1000
GRACE_MS = 5000
MS = 1_000_000

T0 = 1_000_000_000


def new_state() -> PartitionState:
    return PartitionState(jobs.Timeouts(assign_ms=ASSIGN_MS, terminate_grace_ms=GRACE_MS))


def pending(dispatch_id: str, now: int = T0, agent: str = AGENT) -> JobRecord:
    dispatch = DispatchRecord(id=dispatch_id, agent_name=agent, room="room")
    event = DispatchCreated(dispatch=dispatch, room_sid="RM_room00000001", received_ns=now)
    return jobs.created(event, 0, now).record


def assigned(dispatch_id: str, server: str = SERVER_A, now: int = T0) -> JobRecord:
    return jobs.placed(pending(dispatch_id, now), server, now)


def running(dispatch_id: str, server: str = SERVER_A, now: int = T0) -> JobRecord:
    record = assigned(dispatch_id, server, now)
    return jobs.on_report(record, report(record, JobStatus.RUNNING), now).record


def report(record: JobRecord, status: JobStatus) -> JobReport:
    return JobReport(
        dispatch_id=record.spec.dispatch_id,
        job_id=record.spec.job_id,
        attempt=record.spec.attempt,
        server_id=record.current.server_id,
        pool=record.spec.agent_name,
        status=status,
    )


def ended(record: JobRecord, now: int) -> JobRecord:
    return jobs.on_report(record, report(record, JobStatus.SUCCESS), now).record


def due_ids(state: PartitionState, now: int) -> list[str]:
    return [r.spec.dispatch_id for r in state.due(now)]


# --- records and the waiting index -----------------------------------------------------------


def test_empty_state_holds_nothing() -> None:
    state = new_state()

    assert len(state) == 0
    assert state.records == {}
    assert list(state.waiting) == []
    assert state.servers() == []


def test_put_stores_the_record_by_dispatch_id() -> None:
    state = new_state()
    record = pending("AD_1")

    state.put(record)

    assert state.records == {"AD_1": record}
    assert len(state) == 1


def test_put_replaces_the_previous_record_of_the_dispatch() -> None:
    state = new_state()
    state.put(pending("AD_1"))
    record = assigned("AD_1")

    state.put(record)

    assert state.records == {"AD_1": record}


def test_pending_records_wait_to_be_placed_oldest_first() -> None:
    state = new_state()

    for dispatch_id in ("AD_1", "AD_2", "AD_3"):
        state.put(pending(dispatch_id))

    assert list(state.waiting) == ["AD_1", "AD_2", "AD_3"]


def test_placed_record_stops_waiting() -> None:
    state = new_state()
    state.put(pending("AD_1"))
    state.put(pending("AD_2"))

    state.put(assigned("AD_1"))

    assert list(state.waiting) == ["AD_2"]


def test_retried_record_waits_again() -> None:
    state = new_state()
    record = assigned("AD_1")
    state.put(record)

    state.put(jobs.on_timer(record, T0 + ASSIGN_MS * MS).record)

    assert list(state.waiting) == ["AD_1"]


def test_re_putting_a_waiting_record_keeps_its_place_in_line() -> None:
    state = new_state()
    first = pending("AD_1")
    state.put(first)
    state.put(pending("AD_2"))

    state.put(first)

    assert list(state.waiting) == ["AD_1", "AD_2"]


def test_ended_record_leaves_memory() -> None:
    state = new_state()
    record = running("AD_1")
    state.put(record)

    state.put(ended(record, T0 + 1))

    assert "AD_1" not in state.records
    assert len(state) == 0


def test_ended_pending_record_stops_waiting() -> None:
    state = new_state()
    record = pending("AD_1")
    state.put(record)

    state.put(jobs.on_deleted(record, T0 + 1).record)

    assert list(state.waiting) == []
    assert len(state) == 0


def test_putting_an_ended_record_that_was_never_stored_is_harmless() -> None:
    state = new_state()

    state.put(ended(running("AD_1"), T0 + 1))

    assert len(state) == 0
    assert list(state.waiting) == []


# --- timers ----------------------------------------------------------------------------------


def test_nothing_is_due_before_the_timer() -> None:
    state = new_state()
    state.put(assigned("AD_1", now=T0))

    assert due_ids(state, T0 + ASSIGN_MS * MS - 1) == []


def test_assigned_record_is_due_when_its_assign_timeout_passes() -> None:
    state = new_state()
    record = assigned("AD_1", now=T0)
    state.put(record)

    assert list(state.due(T0 + ASSIGN_MS * MS)) == [record]


def test_records_without_timers_are_never_due() -> None:
    state = new_state()
    state.put(pending("AD_1"))
    state.put(running("AD_2"))

    assert due_ids(state, T0 + 10**18) == []


def test_due_records_come_earliest_first_and_only_those_due() -> None:
    state = new_state()
    state.put(assigned("AD_late", now=T0 + 3 * MS))
    state.put(assigned("AD_early", now=T0 + 1 * MS))
    state.put(assigned("AD_never", now=T0 + 100 * ASSIGN_MS * MS))

    assert due_ids(state, T0 + ASSIGN_MS * MS + 3 * MS) == ["AD_early", "AD_late"]


def test_terminating_record_is_due_after_the_grace_period() -> None:
    state = new_state()
    terminating = jobs.on_deleted(running("AD_1"), T0 + 5).record
    state.put(terminating)

    assert due_ids(state, T0 + 5 + GRACE_MS * MS - 1) == []
    assert due_ids(state, T0 + 5 + GRACE_MS * MS) == ["AD_1"]


def test_a_due_record_is_yielded_only_once() -> None:
    state = new_state()
    state.put(assigned("AD_1", now=T0))
    now = T0 + ASSIGN_MS * MS

    assert due_ids(state, now) == ["AD_1"]
    assert due_ids(state, now) == []


def test_due_skips_the_stale_timer_of_a_record_re_put_with_a_new_updated_at() -> None:
    state = new_state()
    state.put(assigned("AD_1", now=T0))
    later = assigned("AD_1", now=T0 + 10 * MS)
    state.put(later)

    assert due_ids(state, T0 + ASSIGN_MS * MS) == []
    assert list(state.due(T0 + 10 * MS + ASSIGN_MS * MS)) == [later]


def test_a_rearmed_timer_fires_again_at_its_new_time_only() -> None:
    state = new_state()
    record = assigned("AD_1", now=T0)
    state.put(record)
    now = T0 + ASSIGN_MS * MS
    assert due_ids(state, now) == ["AD_1"]

    state.rearm(record, now + 500 * MS)

    assert due_ids(state, now + 499 * MS) == []
    assert due_ids(state, now + 500 * MS) == ["AD_1"]
    assert due_ids(state, now + 10**18) == []


def test_a_rearmed_timer_is_dropped_when_the_record_changes() -> None:
    state = new_state()
    record = assigned("AD_1", now=T0)
    state.put(record)
    state.rearm(record, T0 + 10 * ASSIGN_MS * MS)

    state.put(running("AD_1", now=T0 + 1))

    assert due_ids(state, T0 + 10**18) == []


def test_due_skips_the_timer_of_a_record_that_became_running() -> None:
    state = new_state()
    state.put(assigned("AD_1", now=T0))

    state.put(running("AD_1", now=T0 + 1))

    assert due_ids(state, T0 + 10**18) == []


def test_due_skips_the_timer_of_a_record_that_ended() -> None:
    state = new_state()
    record = assigned("AD_1", now=T0)
    state.put(record)

    state.put(ended(record, T0 + 1))

    assert due_ids(state, T0 + 10**18) == []


def test_a_record_put_twice_unchanged_is_due_only_once() -> None:
    state = new_state()
    record = assigned("AD_1", now=T0)
    state.put(record)

    state.put(record)

    assert due_ids(state, T0 + ASSIGN_MS * MS) == ["AD_1"]


# --- the server index ------------------------------------------------------------------------


def test_pending_record_is_on_no_server() -> None:
    state = new_state()
    state.put(pending("AD_1"))

    assert state.servers() == []


def test_assigned_record_is_on_its_server() -> None:
    state = new_state()
    record = assigned("AD_1", SERVER_A)
    state.put(record)

    assert state.servers() == [(AGENT, SERVER_A)]
    assert state.on_server((AGENT, SERVER_A)) == [record]


def test_on_server_lists_every_record_held_by_the_server() -> None:
    state = new_state()
    first, second = running("AD_1", SERVER_A), assigned("AD_2", SERVER_A)
    state.put(first)
    state.put(second)
    state.put(assigned("AD_3", SERVER_B))

    held = state.on_server((AGENT, SERVER_A))

    assert sorted(r.spec.dispatch_id for r in held) == ["AD_1", "AD_2"]


def test_on_server_returns_the_latest_version_of_each_record() -> None:
    state = new_state()
    state.put(assigned("AD_1", SERVER_A))
    record = running("AD_1", SERVER_A)

    state.put(record)

    assert state.on_server((AGENT, SERVER_A)) == [record]


def test_servers_are_keyed_by_agent_name_and_server_id() -> None:
    state = new_state()
    state.put(jobs.placed(pending("AD_1", agent="agent-a"), SERVER_A, T0))
    state.put(jobs.placed(pending("AD_2", agent="agent-b"), SERVER_A, T0))

    assert sorted(state.servers()) == [("agent-a", SERVER_A), ("agent-b", SERVER_A)]
    assert [r.spec.dispatch_id for r in state.on_server(("agent-b", SERVER_A))] == ["AD_2"]


def test_unknown_server_holds_nothing() -> None:
    state = new_state()

    assert state.on_server((AGENT, "AW_nobody")) == []


def test_server_index_follows_a_record_to_its_new_server() -> None:
    state = new_state()
    record = assigned("AD_1", SERVER_A)
    state.put(record)
    retry = jobs.on_timer(record, T0 + ASSIGN_MS * MS).record
    state.put(retry)

    moved = jobs.placed(retry, SERVER_B, T0 + ASSIGN_MS * MS + 1)
    state.put(moved)

    assert state.on_server((AGENT, SERVER_A)) == []
    assert state.on_server((AGENT, SERVER_B)) == [moved]
    assert state.servers() == [(AGENT, SERVER_B)]


def test_server_index_forgets_a_server_once_its_last_record_ends() -> None:
    state = new_state()
    record = running("AD_1", SERVER_A)
    state.put(record)

    state.put(ended(record, T0 + 1))

    assert state.on_server((AGENT, SERVER_A)) == []
    assert state.servers() == []


def test_server_index_keeps_a_server_while_another_record_remains() -> None:
    state = new_state()
    first = running("AD_1", SERVER_A)
    second = running("AD_2", SERVER_A)
    state.put(first)
    state.put(second)

    state.put(ended(first, T0 + 1))

    assert state.on_server((AGENT, SERVER_A)) == [second]
    assert state.servers() == [(AGENT, SERVER_A)]


# --- rooms ------------------------------------------------------------------------------------

S = 1_000_000_000
ROOM = RoomRecord(name="room", sid="RM_room00000001", created_at=0, empty_timeout=10)


def test_an_empty_room_is_due_at_its_timeout_and_a_join_disarms_it() -> None:
    state = new_state()
    state.put_room(roomlife.created(ROOM))
    assert state.rooms_due(9 * S) == []
    assert state.rooms_due(10 * S) == ["room"]
    state.put_room(roomlife.created(ROOM))
    state.put_room(roomlife.joined(state.rooms["room"], "standard"))
    assert state.rooms_due(11 * S) == []


def test_a_deferred_close_comes_back_and_a_forgotten_room_never_does() -> None:
    state = new_state()
    state.put_room(roomlife.created(ROOM))
    assert state.rooms_due(10 * S) == ["room"]
    state.recheck_room("room", 11 * S)
    assert state.rooms_due(11 * S) == ["room"]
    state.recheck_room("room", 12 * S)
    state.forget_room("room")
    assert state.rooms_due(20 * S) == []


def test_rooms_come_due_at_most_limit_at_a_time_and_the_rest_stay_due() -> None:
    state = new_state()
    names = [f"room-{i}" for i in range(5)]
    for name in names:
        state.put_room(roomlife.created(msgspec.structs.replace(ROOM, name=name)))

    first = state.rooms_due(10 * S, limit=3)
    rest = state.rooms_due(10 * S, limit=3)

    assert len(first) == 3 and sorted(first + rest) == names


def test_a_room_timer_is_armed_once_per_close_time() -> None:
    state = new_state()
    life = roomlife.created(ROOM)
    for _ in range(100):
        state.put_room(life)  # e.g. one change per dispatch: the close time stays the same
    assert len(state._room_timers) == 1
