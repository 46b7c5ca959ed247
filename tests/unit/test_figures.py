"""A scheduler's figures (dispatcher.scheduler.figures) and what readers derive from them
(dispatcher.observe.rates): counted from job changes as a partition reports them."""

from __future__ import annotations

import msgspec
import pytest

from dispatcher.observe.rates import between, percentile
from dispatcher.scheduler import jobs
from dispatcher.scheduler.figures import DISPATCH_BOUNDS_MS, FigureCounter, pending_reason
from dispatcher.scheduler.jobs import Timeouts
from dispatcher.scheduler.state import PartitionState
from dispatcher.wire import (
    DispatchCreated,
    DispatchRecord,
    JobRecord,
    JobRejected,
    JobReport,
    JobSpec,
    JobStatus,
    SchedulerFigures,
)

T0 = 1_000_000_000
MS = 1_000_000


def created(received_ns: int = T0) -> jobs.Step:
    dispatch = DispatchRecord(id="AD_d1", agent_name="agent-a", room="room-1")
    event = DispatchCreated(dispatch=dispatch, room_sid="RM_1", received_ns=received_ns)
    return jobs.created(event, 3, T0)


def report(record: JobRecord, status: JobStatus, at: int, error: str = "") -> JobReport:
    spec = record.spec
    return JobReport(
        dispatch_id=spec.dispatch_id,
        job_id=spec.job_id,
        attempt=spec.attempt,
        server_id="AW_s1",
        pool=spec.pool,
        status=status,
        error=error,
        at=at,
    )


class Holder:
    def __init__(self, *records: JobRecord) -> None:
        self.state = PartitionState(Timeouts(5000, 20000, 0))
        for record in records:
            self.state.put(record)


def test_a_job_is_counted_as_created_started_with_its_dispatch_time_and_ended() -> None:
    counter = FigureCounter("node-a", 0.5)
    new = created().record
    counter.job_changed(None, new)
    placed = jobs.placed(new, "AW_s1", T0 + 5 * MS)
    counter.job_changed(new, placed)
    running = jobs.on_report(placed, report(placed, JobStatus.RUNNING, T0 + 40 * MS), T0).record
    counter.job_changed(placed, running)
    ended = jobs.on_report(running, report(running, JobStatus.SUCCESS, T0), T0 + 99 * MS).record
    counter.job_changed(running, ended)
    figures = counter.figures({}, T0)
    assert (figures.jobs_created, figures.jobs_started) == (1, 1)
    assert figures.jobs_ended == {"success/unspecified": 1}
    assert figures.dispatch_sum_ms == pytest.approx(40.0)
    assert figures.dispatch_counts[DISPATCH_BOUNDS_MS.index(50.0)] == 1  # 25 < 40 <= 50
    assert figures.failures == []


def test_failed_attempts_are_kept_as_recent_failures_retried_ones_too() -> None:
    counter = FigureCounter("node-a", 0.5)
    placed = jobs.placed(created().record, "AW_s1", T0)
    rejected = JobRejected(
        dispatch_id="AD_d1",
        job_id=placed.spec.job_id,
        attempt=placed.spec.attempt,
        server_id="AW_s1",
        reason="busy",
    )
    retried = jobs.on_rejected(placed, rejected, T0 + MS).record
    counter.job_changed(placed, retried)
    again = jobs.placed(retried, "AW_s2", T0 + 2 * MS)
    failed = jobs.on_report(again, report(again, JobStatus.FAILED, T0, "boom"), T0 + 3 * MS).record
    counter.job_changed(again, failed)
    figures = counter.figures({}, T0)
    assert figures.attempts_retried == 1
    assert [(f.reason, f.server_id) for f in figures.failures] == [
        ("retrying", "AW_s1"),
        ("retrying", "AW_s2"),  # the last attempt keeps the reason it was made for
    ]
    assert figures.failures[1].error == "boom" and figures.failures[1].room == "room-1"
    assert figures.jobs_ended == {"failed/retrying": 1}


def test_what_a_node_holds_is_read_from_its_partitions() -> None:
    waiting = jobs.waiting_for_capacity(created().record)
    placing = created().record
    assigned = jobs.placed(msgspec.structs.replace(placing, spec=_other(placing)), "AW_s1", T0)
    figures = FigureCounter("node-a", 0.5).figures({3: Holder(waiting), 9: Holder(assigned)}, T0)
    assert figures.partitions == [3, 9]
    assert figures.jobs_by_phase == {"pending": 1, "assigned": 1}
    assert figures.pending_by_reason == {"no_capacity": 1}
    assert pending_reason(placing, T0) == "placing"


def test_a_job_refused_twice_backs_off_before_it_is_offered_again() -> None:
    record = created().record
    for n, server in enumerate(("AW_s1", "AW_s2")):
        placed = jobs.placed(record, server, T0)
        event = JobRejected(
            dispatch_id="AD_d1", job_id=placed.spec.job_id, attempt=placed.spec.attempt,
            server_id=server, reason="busy",
        )  # fmt: skip
        record = jobs.on_rejected(placed, event, T0 + n).record
    assert pending_reason(record, T0 + 1) == "backing_off"
    assert pending_reason(record, T0 + 3600 * 10**9) == "retrying"


def test_percentiles_interpolate_inside_their_bucket() -> None:
    bounds = [10.0, 20.0, 50.0]
    assert percentile(bounds, [0, 0, 0, 0], 0.5) is None
    assert percentile(bounds, [0, 10, 0, 0], 0.5) == pytest.approx(15.0)
    assert percentile(bounds, [5, 0, 0, 5], 0.99) == 50.0  # beyond every bound: at least it


def test_rates_diff_each_node_with_itself_and_a_restart_counts_from_zero() -> None:
    a0, b0 = _figures("a", started_at=1, created=100), _figures("b", started_at=1, created=50)
    a1 = _figures("a", started_at=1, created=120, counts=[2, 0, 0, 0])
    b1 = _figures("b", started_at=5, created=4)  # restarted: counting began again
    point = between([a0, b0], [a1, b1], at_ms=2000, seconds=2.0)
    assert point.created_per_s == pytest.approx((20 + 4) / 2)
    assert point.dispatches == 2 and point.p50_ms is not None


def _figures(
    node: str, *, started_at: int, created: int, counts: list[int] | None = None
) -> SchedulerFigures:
    return SchedulerFigures(
        node_id=node,
        started_at=started_at,
        at=10,
        heartbeat_ms=500,
        dispatch_bounds_ms=[10.0, 20.0, 50.0],
        dispatch_counts=counts or [0, 0, 0, 0],
        jobs_created=created,
    )


def _other(record: JobRecord) -> JobSpec:
    return msgspec.structs.replace(record.spec, dispatch_id="AD_d2", job_id="AJ_d2")
