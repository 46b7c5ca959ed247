"""The fault suite's verdicts, on hand-made observations (no Redis, no processes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from tests.faults.reconcile import (
    NS,
    Accepted,
    ListedJob,
    Observed,
    Record,
    Run,
    build_runs,
    parse_records,
    percentile,
    reconcile,
    widest_gap,
)

T0 = 1_700_000_000 * NS
DONE = [ListedJob("AJ_1", "JS_SUCCESS", "AW_a")]


def _start(dispatch: str, job: str, server: str, t_s: float) -> Record:
    return Record("start", server, 1, T0 + int(t_s * NS), dispatch, job)


def _end(dispatch: str, job: str, server: str, t_s: float, how: str = "done") -> Record:
    return Record("end", server, 1, T0 + int(t_s * NS), dispatch, job, how)


def _observe(
    records: Sequence[Record],
    *,
    accepted: Sequence[str] = ("AD_1",),
    killed: Mapping[str, float] | None = None,
    alive: frozenset[str] = frozenset({"AW_a", "AW_b"}),
    listed: Mapping[str, Sequence[ListedJob]] | None = None,
    reservations: Mapping[str, Mapping[str, str]] | None = None,
) -> Observed:
    return Observed(
        requested=len(accepted),
        accepted=[Accepted(d, T0, T0) for d in accepted],
        records=records,
        killed={s: T0 + int(t * NS) for s, t in (killed or {}).items()},
        alive=alive,
        listed=dict.fromkeys(accepted, DONE) if listed is None else listed,
        reservations=reservations or {},
        end_ns=T0 + 60 * NS,
        fault_ns=T0 + 3 * NS,
        load_end_ns=T0 + 8 * NS,
    )


def test_a_healthy_run_is_clean() -> None:
    report = reconcile(
        _observe([_start("AD_1", "AJ_1", "AW_a", 0.1), _end("AD_1", "AJ_1", "AW_a", 3)])
    )
    assert set(report.counts().values()) == {0}
    assert report.runs == 1 and report.start_latency_ms == [100.0]


def test_an_accepted_dispatch_that_never_started_is_lost() -> None:
    report = reconcile(_observe([], listed={"AD_1": [ListedJob("AJ_1", "JS_PENDING", "")]}))
    assert report.lost == ["AD_1"]
    assert report.stuck == [("AD_1", "AJ_1 JS_PENDING on a dead server ()")]


def test_a_run_killed_with_its_server_ends_at_the_kill() -> None:
    records = [_start("AD_1", "AJ_1", "AW_a", 0), _start("AD_1", "AJ_2", "AW_b", 5)]
    runs = build_runs(records, {"AW_a": T0 + 4 * NS}, T0 + 60 * NS)
    assert [(r.how, r.end) for r in runs] == [("killed", T0 + 4 * NS), ("open", T0 + 60 * NS)]
    report = reconcile(_observe([*records, _end("AD_1", "AJ_2", "AW_b", 7)], killed={"AW_a": 4}))
    assert report.twice == [] and report.unexplained == [] and report.reruns == 1


def test_a_second_run_while_the_first_still_runs_is_twice_at_once() -> None:
    records = [
        _start("AD_1", "AJ_1", "AW_a", 0),
        _start("AD_1", "AJ_2", "AW_b", 2),
        _end("AD_1", "AJ_1", "AW_a", 3),
        _end("AD_1", "AJ_2", "AW_b", 5),
    ]
    report = reconcile(_observe(records))
    assert [(a.job, b.job) for a, b in report.twice] == [("AJ_1", "AJ_2")]


def test_a_run_with_no_end_on_a_live_server_is_open_to_the_end() -> None:
    records = [_start("AD_1", "AJ_1", "AW_a", 0), _start("AD_1", "AJ_2", "AW_b", 30)]
    records.append(_end("AD_1", "AJ_2", "AW_b", 32))
    assert len(reconcile(_observe(records)).twice) == 1


def test_the_same_job_started_twice_on_one_server_overlaps() -> None:
    records = [
        _start("AD_1", "AJ_1", "AW_a", 0),
        _start("AD_1", "AJ_1", "AW_a", 1),
        _end("AD_1", "AJ_1", "AW_a", 2),
        _end("AD_1", "AJ_1", "AW_a", 3),
    ]
    assert len(reconcile(_observe(records)).twice) == 1


def test_a_rerun_after_a_done_run_is_unexplained() -> None:
    records = [
        _start("AD_1", "AJ_1", "AW_a", 0),
        _end("AD_1", "AJ_1", "AW_a", 2),
        _start("AD_1", "AJ_2", "AW_b", 4),
        _end("AD_1", "AJ_2", "AW_b", 6),
    ]
    report = reconcile(_observe(records))
    assert report.twice == []
    assert [(a.how, b.job) for a, b in report.unexplained] == [("done", "AJ_2")]


def test_a_rerun_after_a_cancelled_run_is_explained() -> None:
    records = [
        _start("AD_1", "AJ_1", "AW_a", 0),
        _end("AD_1", "AJ_1", "AW_a", 1, how="cancelled"),
        _start("AD_1", "AJ_2", "AW_b", 4),
        _end("AD_1", "AJ_2", "AW_b", 6),
    ]
    report = reconcile(_observe(records))
    assert report.unexplained == [] and report.twice == [] and report.reruns == 1


def test_a_done_run_whose_server_died_before_reporting_may_rerun() -> None:
    records = [
        _start("AD_1", "AJ_1", "AW_a", 0),
        _end("AD_1", "AJ_1", "AW_a", 2),
        _start("AD_1", "AJ_2", "AW_b", 5),
        _end("AD_1", "AJ_2", "AW_b", 7),
    ]
    assert reconcile(_observe(records, killed={"AW_a": 2.5})).unexplained == []
    # killed long after it finished: its report went out, so the re-run is not explained
    assert len(reconcile(_observe(records, killed={"AW_a": 4.5})).unexplained) == 1


def test_a_done_run_that_ended_while_its_server_was_cut_off_may_rerun() -> None:
    records = [
        _start("AD_1", "AJ_1", "AW_a", 0),
        _end("AD_1", "AJ_1", "AW_a", 4),
        _start("AD_1", "AJ_2", "AW_b", 6),
        _end("AD_1", "AJ_2", "AW_b", 8),
    ]
    cut = {"AW_a": [(T0 + 3 * NS, T0 + 8 * NS)]}
    assert reconcile(replace(_observe(records), cut_off=cut)).unexplained == []
    # ended well before the cut: its report went out, so the re-run is not explained
    early = {"AW_a": [(T0 + 11 * NS // 2, T0 + 8 * NS)]}
    assert len(reconcile(replace(_observe(records), cut_off=early)).unexplained) == 1


def test_a_job_that_failed_without_an_error_is_not_truthful() -> None:
    listed = {"AD_1": [ListedJob("AJ_1", "JS_FAILED", "AW_a"), *DONE]}
    report = reconcile(_observe([], listed=listed))
    assert report.stuck == [("AD_1", "AJ_1 failed without saying why")]
    listed = {"AD_1": [ListedJob("AJ_1", "JS_FAILED", "AW_a", "agent server lost"), *DONE]}
    assert reconcile(_observe([], listed=listed)).stuck == []


def test_jobs_still_open_after_settle_are_stuck() -> None:
    listed = {
        "AD_1": [ListedJob("AJ_1", "JS_RUNNING", "AW_a")],
        "AD_2": [ListedJob("AJ_2", "JS_RUNNING", "AW_gone")],
        "AD_3": [],
    }
    records = [_start(d, "AJ_x", "AW_a", 0) for d in listed]
    report = reconcile(_observe(records, accepted=list(listed), listed=listed))
    assert [d for d, _ in report.stuck] == ["AD_1", "AD_2", "AD_3"]
    assert "dead server" in report.stuck[1][1] and report.stuck[2][1] == "no job"


def test_an_accepted_dispatch_missing_from_the_listing_is_unlisted() -> None:
    records = [_start("AD_1", "AJ_1", "AW_a", 0), _end("AD_1", "AJ_1", "AW_a", 1)]
    assert reconcile(_observe(records, listed={})).unlisted == ["AD_1"]


def test_reservations_left_on_live_servers_leak_and_on_dead_ones_wait_for_the_reaper() -> None:
    reservations = {"AW_a": {"AJ_9": "0"}, "AW_dead": {"AJ_8": "0"}}
    records = [_start("AD_1", "AJ_1", "AW_a", 0), _end("AD_1", "AJ_1", "AW_a", 1)]
    report = reconcile(_observe(records, reservations=reservations))
    assert report.leaked == [("AW_a", "AJ_9")]
    assert report.dead_leftovers == [("AW_dead", "AJ_8")]


def test_parse_skips_a_torn_last_line() -> None:
    lines = [
        '{"ev":"hello","server":"AW_a","pid":7,"t":1}',
        '{"ev":"start","server":"AW_a","pid":7,"t":2,"dispatch":"AD_1","job":"AJ_1"}',
        '{"ev":"end","server":"AW_a","pi',
    ]
    assert [r.ev for r in parse_records(lines)] == ["hello", "start"]


def test_recovery_figures() -> None:
    assert percentile([float(v) for v in range(1, 101)], 99) == 99.0
    assert percentile([], 99) == 0.0
    assert widest_gap([5, 1, 2, 9, 30], since=1, until=5) == (4, 5)
    # a gap that begins inside the window counts whole: an outage stops every start
    assert widest_gap([5, 1, 2, 9, 30], since=1, until=9) == (21, 9)


def test_runs_sort_by_dispatch_then_start() -> None:
    runs = build_runs(
        [_start("AD_2", "AJ_2", "AW_a", 1), _start("AD_1", "AJ_1", "AW_a", 2)], {}, T0
    )
    assert [r.dispatch for r in runs] == ["AD_1", "AD_2"]
    assert all(isinstance(r, Run) for r in runs)


def test_a_dispatch_nobody_accepted_is_a_stray() -> None:
    """A retried CreateDispatch that made a second dispatch shows up as a stray."""
    records = [_start("AD_1", "AJ_1", "AW_a", 0), _end("AD_1", "AJ_1", "AW_a", 1)]
    records += [_start("AD_2", "AJ_2", "AW_a", 0), _end("AD_2", "AJ_2", "AW_a", 1)]
    listed = {"AD_1": DONE, "AD_3": DONE}
    assert reconcile(_observe(records, listed=listed)).strays == ["AD_2", "AD_3"]


def test_rerun_delays_run_from_the_previous_end() -> None:
    records = [
        _start("AD_1", "AJ_1", "AW_a", 0),
        _end("AD_1", "AJ_1", "AW_a", 1, how="cancelled"),
        _start("AD_1", "AJ_2", "AW_b", 3.5),
        _end("AD_1", "AJ_2", "AW_b", 5),
    ]
    assert reconcile(_observe(records)).rerun_delay_ms == [2500.0]
