"""The job state machine of one dispatch (dispatcher.scheduler.jobs), step by step.

Time is a plain integer (unix ns) passed in by the test; no clock is read.
"""

from __future__ import annotations

import msgspec

from dispatcher import ids
from dispatcher.scheduler import jobs
from dispatcher.scheduler.jobs import Place, Release, Terminate, Timeouts
from dispatcher.wire import (
    DispatchCreated,
    DispatchRecord,
    JobReason,
    JobRecord,
    JobRejected,
    JobReport,
    JobStatus,
    RestartPolicy,
)

DISPATCH = "AD_dispatch00001"
AGENT = "agent-a"
ROOM = "room-1"
SERVER = "AW_server000001"
OTHER_SERVER = "AW_server000002"
PARTITION = 7

T0 = 1_000_000_000
T1 = 2_000_000_000
T2 = 3_000_000_000
T3 = 4_000_000_000


def created_event(restart_policy: RestartPolicy = RestartPolicy.ON_FAILURE) -> DispatchCreated:
    dispatch = DispatchRecord(
        id=DISPATCH,
        agent_name=AGENT,
        room=ROOM,
        metadata="meta",
        restart_policy=restart_policy,
        deployment="prod",
        attributes={"k": "v"},
        created_at=T0 - 5,
    )
    return DispatchCreated(dispatch=dispatch, room_sid="RM_room00000001", received_ns=T0 - 1)


def pending(restart_policy: RestartPolicy = RestartPolicy.ON_FAILURE) -> JobRecord:
    return jobs.created(created_event(restart_policy), PARTITION, T0).record


def assigned(
    server: str = SERVER, restart_policy: RestartPolicy = RestartPolicy.ON_FAILURE
) -> JobRecord:
    return jobs.placed(pending(restart_policy), server, T1)


def report(
    status: JobStatus,
    *,
    attempt: int = 0,
    server: str = SERVER,
    error: str = "",
    at: int = 0,
) -> JobReport:
    return JobReport(
        dispatch_id=DISPATCH,
        job_id=ids.job_id(DISPATCH, attempt),
        attempt=attempt,
        server_id=server,
        pool=AGENT,
        status=status,
        error=error,
        at=at,
    )


def running(restart_policy: RestartPolicy = RestartPolicy.ON_FAILURE) -> JobRecord:
    record = assigned(restart_policy=restart_policy)
    return jobs.on_report(record, report(JobStatus.RUNNING, at=T2), T2).record


def rejection(
    *, terminate: bool, attempt: int = 0, server: str = SERVER, reason: str = "busy"
) -> JobRejected:
    return JobRejected(
        dispatch_id=DISPATCH,
        job_id=ids.job_id(DISPATCH, attempt),
        attempt=attempt,
        server_id=server,
        terminate=terminate,
        reason=reason,
    )


def retried_once() -> JobRecord:
    """A job whose first attempt was rejected by SERVER: now pending as attempt 1."""
    return jobs.on_rejected(assigned(), rejection(terminate=False), T2).record


# --- created ---------------------------------------------------------------------------------


def test_created_job_is_pending_and_asks_to_be_placed() -> None:
    step = jobs.created(created_event(), PARTITION, T0)

    assert step.record.phase == "pending"
    assert step.effects == [Place(DISPATCH)]


def test_created_job_id_is_derived_from_dispatch_and_attempt_zero() -> None:
    record = pending()

    assert record.spec.job_id == ids.job_id(DISPATCH, 0)
    assert record.current.job_id == record.spec.job_id
    assert record.spec.attempt == 0


def test_created_job_is_the_same_when_the_event_is_replayed() -> None:
    first = jobs.created(created_event(), PARTITION, T0)
    replay = jobs.created(created_event(), PARTITION, T0)

    assert first.record == replay.record


def test_created_job_spec_carries_the_dispatch_fields() -> None:
    spec = pending().spec

    assert spec.dispatch_id == DISPATCH
    assert spec.partition == PARTITION
    assert spec.room == ROOM
    assert spec.room_sid == "RM_room00000001"
    assert spec.agent_name == AGENT
    assert spec.metadata == "meta"
    assert spec.deployment == "prod"
    assert spec.attributes == {"k": "v"}
    assert spec.received_ns == T0 - 1


def test_created_job_keeps_the_dispatch_restart_policy() -> None:
    assert pending(RestartPolicy.NEVER).restart_policy is RestartPolicy.NEVER


def test_created_job_attempt_is_pending_and_stamped_with_now() -> None:
    current = pending().current

    assert current.status is JobStatus.PENDING
    assert current.server_id == ""
    assert current.updated_at == T0


# --- placed ----------------------------------------------------------------------------------


def test_placed_job_is_assigned_to_the_server() -> None:
    record = jobs.placed(pending(), SERVER, T1)

    assert record.phase == "assigned"
    assert record.current.server_id == SERVER
    assert record.current.updated_at == T1


def test_a_job_without_a_server_says_it_waits_for_capacity_keeping_its_timer_start() -> None:
    record = jobs.waiting_for_capacity(pending())

    assert record.phase == "pending" and record.current.reason is JobReason.NO_CAPACITY
    assert AGENT in record.current.error and record.current.updated_at == T0
    assert jobs.waiting_for_capacity(record) == record


def test_a_job_placed_after_waiting_for_capacity_no_longer_says_so() -> None:
    record = jobs.placed(jobs.waiting_for_capacity(pending()), SERVER, T1)

    assert record.current.reason is JobReason.UNSPECIFIED and record.current.error == ""


def test_placed_job_keeps_its_job_id() -> None:
    assert assigned().current.job_id == ids.job_id(DISPATCH, 0)


# --- reports ---------------------------------------------------------------------------------


def test_running_report_makes_an_assigned_job_running() -> None:
    step = jobs.on_report(assigned(), report(JobStatus.RUNNING, at=T2 - 7), T2)

    assert step.record.phase == "running"
    assert step.record.current.status is JobStatus.RUNNING
    assert step.record.current.server_id == SERVER
    assert step.effects == []


def test_running_report_sets_started_at_from_the_report_time() -> None:
    step = jobs.on_report(assigned(), report(JobStatus.RUNNING, at=T2 - 7), T2)

    assert step.record.current.started_at == T2 - 7
    assert step.record.current.updated_at == T2


def test_running_report_without_a_time_uses_now_as_started_at() -> None:
    step = jobs.on_report(assigned(), report(JobStatus.RUNNING, at=0), T2)

    assert step.record.current.started_at == T2


def test_running_report_for_a_running_job_changes_nothing() -> None:
    record = running()

    step = jobs.on_report(record, report(JobStatus.RUNNING, at=T3), T3)

    assert step.record == record
    assert step.effects == []


def test_success_report_ends_the_job() -> None:
    step = jobs.on_report(running(), report(JobStatus.SUCCESS), T3)

    assert step.record.phase == "ended"
    assert step.record.current.status is JobStatus.SUCCESS
    assert step.record.current.ended_at == T3
    assert step.effects == []


def test_failed_report_ends_the_job_with_its_error() -> None:
    step = jobs.on_report(running(), report(JobStatus.FAILED, error="crashed"), T3)

    assert step.record.phase == "ended"
    assert step.record.current.status is JobStatus.FAILED
    assert step.record.current.error == "crashed"


def test_ending_report_keeps_the_started_at_of_the_run() -> None:
    step = jobs.on_report(running(), report(JobStatus.SUCCESS), T3)

    assert step.record.current.started_at == T2


def test_report_for_an_old_attempt_saying_running_terminates_that_job() -> None:
    record = retried_once()

    step = jobs.on_report(record, report(JobStatus.RUNNING, attempt=0, server=SERVER), T3)

    assert step.effects == [Terminate(AGENT, SERVER, ids.job_id(DISPATCH, 0), "no such job")]


def test_report_for_an_old_attempt_leaves_the_record_alone() -> None:
    record = retried_once()

    step = jobs.on_report(record, report(JobStatus.RUNNING, attempt=0), T3)

    assert step.record == record


def test_report_for_an_old_attempt_that_ended_has_no_effect() -> None:
    record = retried_once()

    step = jobs.on_report(record, report(JobStatus.FAILED, attempt=0), T3)

    assert step.record == record
    assert step.effects == []


def test_reports_after_the_job_ended_are_ignored() -> None:
    ended = jobs.on_report(running(), report(JobStatus.SUCCESS), T3).record

    step = jobs.on_report(ended, report(JobStatus.FAILED, error="late"), T3 + 1)

    assert step.record == ended
    assert step.effects == []


def test_running_report_after_the_job_ended_terminates_the_job() -> None:
    ended = jobs.on_report(running(), report(JobStatus.SUCCESS), T3).record

    step = jobs.on_report(ended, report(JobStatus.RUNNING), T3 + 1)

    assert step.record == ended
    assert step.effects == [Terminate(AGENT, SERVER, ids.job_id(DISPATCH, 0), "no such job")]


# --- stray reports (no record at all) ---------------------------------------------------------


def test_stray_running_report_terminates_the_reported_job() -> None:
    stray = report(JobStatus.RUNNING, attempt=3, server=OTHER_SERVER)

    assert jobs.stray_report(stray) == [
        Terminate(AGENT, OTHER_SERVER, ids.job_id(DISPATCH, 3), "no such job")
    ]


def test_stray_report_of_an_ended_job_needs_nothing() -> None:
    assert jobs.stray_report(report(JobStatus.SUCCESS)) == []
    assert jobs.stray_report(report(JobStatus.FAILED)) == []


# --- rejections ------------------------------------------------------------------------------


def test_rejection_with_terminate_ends_the_job_successfully() -> None:
    step = jobs.on_rejected(assigned(), rejection(terminate=True, reason="not for me"), T2)

    assert step.record.phase == "ended"
    assert step.record.current.status is JobStatus.SUCCESS
    assert step.record.current.error == "not for me"
    assert step.effects == []


def test_rejection_without_terminate_queues_the_next_attempt() -> None:
    step = jobs.on_rejected(assigned(), rejection(terminate=False), T2)

    assert step.record.phase == "pending"
    assert step.record.spec.attempt == 1
    assert step.record.spec.job_id == ids.job_id(DISPATCH, 1)
    assert step.record.current.job_id == ids.job_id(DISPATCH, 1)
    assert step.effects == [Place(DISPATCH)]


def test_next_attempt_has_a_different_job_id() -> None:
    assert retried_once().spec.job_id != ids.job_id(DISPATCH, 0)


def test_next_attempt_is_pending_with_reason_retrying() -> None:
    current = retried_once().current

    assert current.status is JobStatus.PENDING
    assert current.reason is JobReason.RETRYING
    assert current.server_id == ""
    assert current.updated_at == T2


def test_rejection_remembers_the_rejecting_server() -> None:
    assert retried_once().rejected_by == (SERVER,)


def test_rejection_keeps_the_failed_attempt_in_the_past() -> None:
    (past,) = retried_once().past

    assert past.job_id == ids.job_id(DISPATCH, 0)
    assert past.server_id == SERVER
    assert past.status is JobStatus.FAILED
    assert past.reason is JobReason.RETRYING
    assert past.ended_at == T2
    assert SERVER in past.error


def test_rejected_servers_are_remembered_in_order() -> None:
    record = retried_once()
    record = jobs.placed(record, OTHER_SERVER, T3)

    event = rejection(terminate=False, attempt=1, server=OTHER_SERVER)
    record = jobs.on_rejected(record, event, T3).record

    assert record.rejected_by == (SERVER, OTHER_SERVER)
    assert record.spec.attempt == 2
    assert [a.job_id for a in record.past] == [ids.job_id(DISPATCH, 0), ids.job_id(DISPATCH, 1)]


def test_only_the_most_recent_rejections_are_remembered() -> None:
    record = pending()
    servers = [f"AW_server{i:06d}" for i in range(12)]
    for attempt, server in enumerate(servers):
        record = jobs.placed(record, server, T1 + attempt)
        event = rejection(terminate=False, attempt=attempt, server=server)
        record = jobs.on_rejected(record, event, T1 + attempt).record

    assert record.rejected_by == tuple(servers[-8:])
    assert record.spec.attempt == 12


def test_rejection_of_an_old_attempt_is_ignored() -> None:
    record = jobs.placed(retried_once(), OTHER_SERVER, T3)

    step = jobs.on_rejected(record, rejection(terminate=True, attempt=0), T3)

    assert step.record == record
    assert step.effects == []


def test_rejection_of_a_running_job_is_ignored() -> None:
    record = running()

    step = jobs.on_rejected(record, rejection(terminate=False), T3)

    assert step.record == record
    assert step.effects == []


# --- deletion --------------------------------------------------------------------------------


def test_deleting_a_pending_job_ends_it_as_failed() -> None:
    step = jobs.on_deleted(pending(), T1)

    assert step.record.phase == "ended"
    assert step.record.current.status is JobStatus.FAILED
    assert step.record.current.reason is JobReason.DISPATCH_DELETED
    assert step.effects == []


def test_deleting_a_running_job_asks_its_server_to_terminate_it() -> None:
    step = jobs.on_deleted(running(), T3)

    assert step.record.phase == "terminating"
    assert step.record.current.reason is JobReason.DISPATCH_DELETED
    assert step.record.current.updated_at == T3
    assert step.effects == [Terminate(AGENT, SERVER, ids.job_id(DISPATCH, 0), "dispatch deleted")]


def test_deleting_an_assigned_job_asks_its_server_to_terminate_it() -> None:
    step = jobs.on_deleted(assigned(), T2)

    assert step.record.phase == "terminating"
    assert step.effects == [Terminate(AGENT, SERVER, ids.job_id(DISPATCH, 0), "dispatch deleted")]


def test_success_report_ends_a_terminating_job() -> None:
    terminating = jobs.on_deleted(running(), T3).record

    step = jobs.on_report(terminating, report(JobStatus.SUCCESS), T3 + 1)

    assert step.record.phase == "ended"
    assert step.record.current.status is JobStatus.SUCCESS
    assert step.record.current.reason is JobReason.DISPATCH_DELETED


def test_running_report_does_not_revive_a_terminating_job() -> None:
    terminating = jobs.on_deleted(assigned(), T2).record

    step = jobs.on_report(terminating, report(JobStatus.RUNNING), T3)

    assert step.record == terminating
    assert step.effects == []


def test_deleting_a_terminating_job_again_changes_nothing() -> None:
    terminating = jobs.on_deleted(running(), T3).record

    step = jobs.on_deleted(terminating, T3 + 1)

    assert step.record == terminating
    assert step.effects == []


# --- timers ----------------------------------------------------------------------------------


def test_pending_and_running_jobs_have_no_timer() -> None:
    timeouts = Timeouts()

    assert jobs.due_at(pending(), timeouts) is None
    assert jobs.due_at(running(), timeouts) is None


def test_assigned_job_is_due_after_the_assign_timeout() -> None:
    timeouts = Timeouts(assign_ms=1234, terminate_grace_ms=99)

    assert jobs.due_at(assigned(), timeouts) == T1 + 1234 * 1_000_000


def test_terminating_job_is_due_after_the_grace_period() -> None:
    timeouts = Timeouts(assign_ms=1234, terminate_grace_ms=99)
    terminating = jobs.on_deleted(running(), T3).record

    assert jobs.due_at(terminating, timeouts) == T3 + 99 * 1_000_000


def test_ended_job_has_no_timer() -> None:
    ended = jobs.on_report(running(), report(JobStatus.SUCCESS), T3).record

    assert jobs.due_at(ended, Timeouts()) is None


def test_pending_job_is_due_after_the_capacity_wait_when_one_is_set() -> None:
    assert jobs.due_at(pending(), Timeouts(capacity_wait_ms=0)) is None
    assert jobs.due_at(pending(), Timeouts(capacity_wait_ms=700)) == T0 + 700 * 1_000_000


def test_capacity_wait_expiry_fails_a_pending_job_naming_the_agent_and_the_wait() -> None:
    step = jobs.on_timer(pending(), T0 + 30 * 1_000_000_000)

    assert step.record.phase == "ended" and step.effects == []
    assert step.record.current.status is JobStatus.FAILED
    assert step.record.current.reason is JobReason.NO_CAPACITY
    assert AGENT in step.record.current.error and "30 s" in step.record.current.error


def test_assignment_timeout_terminates_and_releases_the_old_server_then_retries() -> None:
    step = jobs.on_timer(assigned(), T3)

    old_job = ids.job_id(DISPATCH, 0)
    assert step.effects == [
        Terminate(AGENT, SERVER, old_job, "assignment timed out"),
        Release(AGENT, SERVER, old_job),
        Place(DISPATCH),
    ]


def test_assignment_timeout_queues_the_next_attempt_avoiding_the_slow_server() -> None:
    record = jobs.on_timer(assigned(), T3).record

    assert record.phase == "pending"
    assert record.spec.attempt == 1
    assert record.spec.job_id == ids.job_id(DISPATCH, 1)
    assert record.rejected_by == (SERVER,)
    assert record.past[-1].status is JobStatus.FAILED
    assert record.past[-1].reason is JobReason.RETRYING


def test_grace_period_expiry_ends_a_terminating_job_as_failed_and_releases_the_slot() -> None:
    terminating = jobs.on_deleted(running(), T3).record

    step = jobs.on_timer(terminating, T3 + 1)

    assert step.record.phase == "ended"
    assert step.record.current.status is JobStatus.FAILED
    assert step.record.current.reason is JobReason.DISPATCH_DELETED
    assert step.effects == [Release(AGENT, SERVER, ids.job_id(DISPATCH, 0))]


def test_timer_of_a_running_job_does_nothing() -> None:
    record = running()

    step = jobs.on_timer(record, T3)

    assert step.record == record
    assert step.effects == []


# --- lost servers ----------------------------------------------------------------------------


def test_lost_server_retries_a_running_job_with_restart_on_failure() -> None:
    step = jobs.on_server_lost(running(RestartPolicy.ON_FAILURE), T3)

    assert step.record.phase == "pending"
    assert step.record.spec.attempt == 1
    assert step.record.spec.job_id == ids.job_id(DISPATCH, 1)
    assert step.effects == [Place(DISPATCH)]
    (past,) = step.record.past
    assert past.status is JobStatus.FAILED
    assert SERVER in past.error


def test_lost_server_ends_a_running_job_that_must_never_restart() -> None:
    step = jobs.on_server_lost(running(RestartPolicy.NEVER), T3)

    assert step.record.phase == "ended"
    assert step.record.current.status is JobStatus.FAILED
    assert SERVER in step.record.current.error
    assert step.effects == []


def test_lost_server_ends_a_terminating_job() -> None:
    terminating = jobs.on_deleted(running(RestartPolicy.ON_FAILURE), T3).record

    step = jobs.on_server_lost(terminating, T3 + 1)

    assert step.record.phase == "ended"
    assert step.record.current.status is JobStatus.FAILED
    assert step.record.current.reason is JobReason.DISPATCH_DELETED


def test_a_fenced_report_re_places_the_job_as_a_lost_server_would() -> None:
    fenced = msgspec.structs.replace(
        report(JobStatus.FAILED, error="agent server fenced itself"), fenced=True
    )

    step = jobs.on_report(running(), fenced, T3)

    assert step.record.phase == "pending" and step.record.spec.attempt == 1
    assert step.record.past[0].error == "agent server fenced itself"


def test_a_fenced_report_of_an_old_attempt_changes_nothing() -> None:
    fenced = msgspec.structs.replace(report(JobStatus.FAILED, attempt=0), fenced=True)
    record = retried_once()

    assert jobs.on_report(record, fenced, T3).record == record


def test_lost_server_does_not_affect_a_pending_job() -> None:
    record = pending()

    step = jobs.on_server_lost(record, T3)

    assert step.record == record
    assert step.effects == []


# --- server_of -------------------------------------------------------------------------------


def test_server_of_names_the_server_only_while_it_holds_the_job() -> None:
    assert jobs.server_of(pending()) is None
    assert jobs.server_of(assigned()) == SERVER
    assert jobs.server_of(running()) == SERVER
    assert jobs.server_of(jobs.on_deleted(running(), T3).record) == SERVER
    assert jobs.server_of(jobs.on_report(running(), report(JobStatus.SUCCESS), T3).record) is None


def test_a_confirmed_assignment_runs_on_when_its_timer_fires() -> None:
    step = jobs.on_confirmed(assigned(), T1 + 7)
    assert step.record.phase == "running" and step.effects == []
    assert step.record.current.status is JobStatus.RUNNING
    assert step.record.current.server_id == SERVER and step.record.current.started_at == T1 + 7
    assert jobs.on_confirmed(running(), T1 + 7).record == running()
