"""The peers table: aggregation over repeats, the best peer, ratios, rendering, parsing."""

from __future__ import annotations

import dataclasses
import math

import pytest

from loadgen.bench.ceiling import (
    Ceiling,
    CeilingError,
    XaddRun,
    benchmark_argv,
    ceiling_lines,
    parse_requests_per_s,
)
from loadgen.bench.output import report_text
from loadgen.bench.records import (
    FIXED,
    KNEE,
    KneeRecord,
    StepRecord,
    failed_record,
    judged,
    ours_record,
    outcome,
    peer_backlog_bounded,
    peer_record,
    per_dispatch_us,
)
from loadgen.bench.render import acceptance_lines, cell, fmt_ms, render_table, table_dict
from loadgen.bench.suite import BenchConfig, BenchRun, cpu_set, run_order, step_line
from loadgen.bench.systems import ALL_SYSTEMS, DISPATCHER, System, parse_systems
from loadgen.bench.table import (
    Spread,
    build_table,
    fixed_rates,
    peer_knee,
    ratio,
    redis_us_at_knee,
    spread,
    sweep_points,
)
from loadgen.peers import StepResult
from loadgen.sweep import KneeCriteria

TASKIQ = next(s for s in ALL_SYSTEMS if s.key == "taskiq-defaults")
CELERY = next(s for s in ALL_SYSTEMS if s.key == "celery-defaults")
ARQ = next(s for s in ALL_SYSTEMS if s.key == "arq-defaults")
SYSTEMS = (DISPATCHER, TASKIQ, CELERY, ARQ)


def step(
    system: System,
    rate: float,
    *,
    repeat: int = 1,
    phase: str = FIXED,
    p50: float | None = 1.0,
    p99: float | None = 5.0,
    max_ms: float | None = 10.0,
    lost: int = 0,
    process_us: float | None = 100.0,
    redis_us: float | None = 30.0,
) -> StepRecord:
    return StepRecord(
        system=system.label,
        repeat=repeat,
        phase=phase,
        rate=rate,
        duration_s=10.0,
        send_rate=rate,
        accepted=int(rate * 10),
        started=int(rate * 10),
        p50_ms=p50,
        p99_ms=p99,
        max_ms=max_ms,
        lost=lost,
        errors=0,
        duplicates=0,
        backlog_bounded=True,
        process_cpu_us=process_us,
        redis_cpu_us=redis_us,
    )


def knee(system: System, rate: float | None, repeat: int = 1) -> KneeRecord:
    return KneeRecord(system.label, repeat, rate, None, False, "resolution reached")


# Systems ---------------------------------------------------------------------------------


def test_systems_keep_the_canonical_order_and_expand_a_peer_to_both_variants() -> None:
    selected = parse_systems("celery, dispatcher,taskiq-at-least-once")
    assert [s.key for s in selected] == [
        "dispatcher",
        "taskiq-at-least-once",
        "celery-defaults",
        "celery-at-least-once",
    ]
    assert [s.label for s in selected][1] == "taskiq (at-least-once)"


def test_all_selects_every_system_and_unknown_names_are_refused() -> None:
    assert parse_systems("all") == ALL_SYSTEMS
    assert len(ALL_SYSTEMS) == 7
    with pytest.raises(ValueError, match="unknown system 'rq'"):
        parse_systems("dispatcher,rq")
    with pytest.raises(ValueError, match="no system"):
        parse_systems(" , ")


@pytest.mark.parametrize(
    ("spec", "cpus"), [("1", {1}), ("0,2", {0, 2}), ("2-4", {2, 3, 4}), ("0, 3-4", {0, 3, 4})]
)
def test_cpu_lists_follow_taskset(spec: str, cpus: set[int]) -> None:
    assert cpu_set(spec) == cpus


@pytest.mark.parametrize("spec", ["", "a", "1-", "-1", "1,,2"])
def test_bad_cpu_lists_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="not a CPU list"):
        cpu_set(spec)


# Aggregation -----------------------------------------------------------------------------


def test_spread_is_median_min_max() -> None:
    assert spread([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0, 3)
    assert spread([4.0, 1.0]) == Spread(2.5, 1.0, 4.0, 2)
    assert spread([]) is None


def test_the_best_peer_has_the_highest_median_knee_and_ours_never_counts() -> None:
    knees = [
        knee(DISPATCHER, 9000.0),
        *(knee(TASKIQ, r, i) for i, r in enumerate((800.0, 1000.0, 1200.0))),
        *(knee(CELERY, r, i) for i, r in enumerate((400.0, 2000.0, 600.0))),
        *(knee(ARQ, None, i) for i in range(3)),
    ]
    assert peer_knee(SYSTEMS, knees) == ("taskiq (defaults)", 1000.0)


def test_a_repeat_without_a_knee_counts_as_zero_and_no_knee_means_no_best_peer() -> None:
    knees = [knee(TASKIQ, 1000.0, 1), knee(TASKIQ, None, 2), knee(TASKIQ, None, 3)]
    assert peer_knee(SYSTEMS, knees) == (None, None)
    knees.append(knee(CELERY, 300.0))
    assert peer_knee(SYSTEMS, knees) == ("celery (defaults)", 300.0)


def test_a_tie_goes_to_the_peer_listed_first() -> None:
    assert peer_knee(SYSTEMS, [knee(CELERY, 500.0), knee(TASKIQ, 500.0)])[0] == TASKIQ.label


def test_fixed_rates_are_ascending_and_unique() -> None:
    assert fixed_rates(500.0, 1200.0, 2000.0) == [500.0, 1200.0, 2000.0]
    assert fixed_rates(500.0, 500.0, 2000.0) == [500.0, 2000.0]
    assert fixed_rates(500.0, None, 2000.0) == [500.0, 2000.0]


def test_ratio_is_median_over_median_when_defined() -> None:
    assert ratio(Spread(6.0, 5.0, 7.0, 3), Spread(2.0, 1.0, 3.0, 3)) == 3.0
    assert ratio(None, Spread(2.0, 1.0, 3.0, 3)) is None
    assert ratio(Spread(2.0, 1.0, 3.0, 3), Spread(0.0, 0.0, 0.0, 3)) is None
    assert ratio(Spread(math.inf, 1.0, math.inf, 3), Spread(2.0, 1.0, 3.0, 3)) == math.inf
    assert ratio(Spread(math.inf, 1, math.inf, 1), Spread(math.inf, 1, math.inf, 1)) is None


def three_repeats() -> tuple[list[KneeRecord], list[StepRecord]]:
    """Ours at 8000/s, taskiq at 1000/s (the best peer), arq sustaining nothing."""
    knees, steps = [], []
    for repeat, (ours_knee, peer_knee_rate) in enumerate(
        [(8000.0, 900.0), (7000.0, 1000.0), (9000.0, 1100.0)], start=1
    ):
        knees += [knee(DISPATCHER, ours_knee, repeat), knee(TASKIQ, peer_knee_rate, repeat)]
        knees.append(knee(ARQ, None, repeat))
        steps.append(step(DISPATCHER, 250.0, repeat=repeat, phase=KNEE, lost=1))
        for rate in (500.0, 1000.0, 2000.0):
            steps.append(step(DISPATCHER, rate, repeat=repeat, p99=2.0 + repeat))
            peer_p99 = None if rate == 2000.0 else 10.0 * repeat
            steps.append(step(TASKIQ, rate, repeat=repeat, p99=peer_p99, lost=repeat))
            steps.append(step(ARQ, rate, repeat=repeat, p99=500.0, process_us=None))
    return knees, steps


def test_rows_hold_medians_over_repeats_and_ratios_to_the_best_peer() -> None:
    knees, steps = three_repeats()
    table = build_table((DISPATCHER, TASKIQ, ARQ), knees, steps)
    ours, peer, arq = table.rows
    assert (table.best_peer, table.peer_knee_rate) == ("taskiq (defaults)", 1000.0)
    assert ours.knee == Spread(8000.0, 7000.0, 9000.0, 3)
    assert ours.p99_low == Spread(4.0, 3.0, 5.0, 3)
    assert ours.p99_peer_knee == Spread(4.0, 3.0, 5.0, 3)
    assert ours.lost == 3  # knee-search steps count too
    assert peer.p99_high == Spread(math.inf, math.inf, math.inf, 3)  # nothing started
    assert peer.lost == 3 * (1 + 2 + 3)
    assert ours.knee_ratio == 8.0
    assert ours.p99_peer_knee_ratio == pytest.approx(0.2)
    assert peer.knee_ratio == 1.0
    assert arq.knee == Spread(0.0, 0.0, 0.0, 3)
    assert arq.knee_ratio == 0.0
    assert arq.process_cpu_us_low is None  # no figure is no figure, not an infinite one
    assert arq.redis_cpu_us_low == Spread(30.0, 30.0, 30.0, 3)


def test_redis_at_the_knee_comes_from_each_repeats_own_knee_step() -> None:
    knees = [knee(DISPATCHER, 2000.0, 1), knee(DISPATCHER, 1500.0, 2), knee(DISPATCHER, None, 3)]
    steps = [
        step(DISPATCHER, 2000.0, repeat=1, phase=KNEE, redis_us=200.0),
        step(DISPATCHER, 1500.0, repeat=1, phase=KNEE, redis_us=250.0),  # not repeat 1's knee
        step(DISPATCHER, 1500.0, repeat=2, phase=KNEE, redis_us=240.0),
        step(DISPATCHER, 2000.0, repeat=2, phase=FIXED, redis_us=190.0),  # a fixed step
        step(DISPATCHER, 500.0, repeat=3, phase=KNEE, redis_us=500.0),  # repeat 3 has no knee
    ]

    assert redis_us_at_knee(knees, steps, DISPATCHER.label) == Spread(220.0, 200.0, 240.0, 2)
    assert redis_us_at_knee(knees, steps, TASKIQ.label) is None


def test_failed_steps_are_left_out_of_the_figures() -> None:
    knees, steps = three_repeats()
    steps.append(
        failed_record(
            system=TASKIQ.label, repeat=4, phase=FIXED, rate=500.0, duration_s=10, failure="x"
        )
    )
    row = build_table((TASKIQ,), knees, steps).rows[0]
    assert row.p99_low == Spread(20.0, 10.0, 30.0, 3)


def test_without_peers_there_are_no_ratios_and_no_peer_knee_column_figures() -> None:
    knees, steps = three_repeats()
    table = build_table((DISPATCHER,), knees, steps)
    (ours,) = table.rows
    assert table.best_peer is None and ours.p99_peer_knee is None and ours.knee_ratio is None
    assert acceptance_lines(table) == [
        "no best peer to compare with: no peer ran or none sustained any rate"
    ]
    assert "p99@peer-knee" in render_table(table)


# Rendering -------------------------------------------------------------------------------


def test_cells_show_median_then_range_and_dashes_for_missing_figures() -> None:
    assert cell(Spread(2.0, 1.5, 3.25, 3), fmt_ms) == "2.00 (1.50-3.25)"
    assert cell(Spread(2.0, 2.0, 2.0, 1), fmt_ms) == "2.00"
    assert cell(Spread(12.0, 11.96, 12.04, 3), fmt_ms) == "12.0"  # same once rounded
    assert cell(None, fmt_ms) == "-"
    assert cell(Spread(math.inf, 40.0, math.inf, 3), fmt_ms) == "inf (40.0-inf)"
    assert [fmt_ms(v) for v in (0.1234, 12.34, 1234.5)] == ["0.12", "12.3", "1234"]


def test_the_table_renders_every_system_with_the_best_peer_marked() -> None:
    knees, steps = three_repeats()
    text = render_table(build_table((DISPATCHER, TASKIQ, ARQ), knees, steps))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["system", "knee/s", "p50@500", "p99@500"]
    assert "p99@1000" in lines[0] and "p99@2000" in lines[0]
    # the knee of every repeat, in the order they ran: one that stands apart shows
    assert lines[1].split()[:3] == ["dispatcher", "8000", "(8000/7000/9000)"]
    assert lines[1].split()[-3:] == ["8.00", "0.20", "0.20"]
    assert lines[2].startswith("taskiq (defaults) *")
    assert lines[3].split()[:2] == ["arq", "(defaults)"] and " none " in lines[3]
    assert "* best peer: taskiq (defaults)" in text


def test_each_repeat_runs_the_systems_in_a_rotated_order() -> None:
    systems = (DISPATCHER, TASKIQ, ARQ)
    orders = [[s.key for s in run_order(systems, repeat)] for repeat in (1, 2, 3, 4)]
    assert orders == [
        ["dispatcher", "taskiq-defaults", "arq-defaults"],
        ["taskiq-defaults", "arq-defaults", "dispatcher"],
        ["arq-defaults", "dispatcher", "taskiq-defaults"],
        ["dispatcher", "taskiq-defaults", "arq-defaults"],
    ]


def test_acceptance_lines_spell_out_the_targets() -> None:
    knees, steps = three_repeats()
    lines = acceptance_lines(build_table((DISPATCHER, TASKIQ), knees, steps))
    assert lines == [
        "knee ratio to best peer (taskiq (defaults)): 8.00 (target >= 5): met",
        "p99 at best peer's knee (1000/s): ours/peer = 0.20 (target <= 0.5): met",
        "p99 at 500/s: ours 4.00 (3.00-5.00) ms vs best peer 20.0 (10.0-30.0) ms "
        "(ours/peer = 0.20)",
    ]
    knees = [
        dataclasses.replace(k, knee_rate=2000.0) if k.system == "dispatcher" else k for k in knees
    ]
    assert acceptance_lines(build_table((DISPATCHER, TASKIQ), knees, steps))[0].endswith(
        "2.00 (target >= 5): NOT met"
    )


def test_table_dict_is_plain_data() -> None:
    knees, steps = three_repeats()
    data = table_dict(build_table((DISPATCHER, TASKIQ), knees, steps))
    assert data["best_peer"] == "taskiq (defaults)"
    assert data["rows"][0]["knee"]["median"] == 8000.0
    assert data["acceptance"][0].startswith("knee ratio")


def test_sweep_points_are_medians_per_offered_rate_over_knee_steps_only() -> None:
    steps = [
        step(TASKIQ, 250.0, phase=KNEE, repeat=1, p99=4.0),
        step(TASKIQ, 250.0, phase=KNEE, repeat=2, p99=8.0),
        step(TASKIQ, 125.0, phase=KNEE, p50=None, p99=None, max_ms=None),
        step(TASKIQ, 500.0, phase=FIXED),
    ]
    assert sweep_points(steps) == {
        "taskiq (defaults)": [(125.0, None, None, None), (250.0, 1.0, 6.0, 10.0)]
    }


# Records ---------------------------------------------------------------------------------


def test_our_record_comes_from_the_report_with_cpu_per_accepted_dispatch() -> None:
    report = {
        "config": {"rate": 500.0, "duration_s": 10.0},
        "send_rate": 499.9,
        "accepted": 5000,
        "user_dispatch_ms": {"count": 5000, "p50": 1.2, "p90": 2.0, "p99": 5.5, "max": 9.0},
        "lost": 0,
        "error_total": 0,
        "duplicates": 0,
        "backlog_bounded": True,
    }
    record = ours_record(
        report,
        system="dispatcher",
        repeat=2,
        phase=FIXED,
        cpu_s_by_process={"loadgen": 0.5, "dispatcher": 1.0, "agent": 0.25},
        redis_cpu_s=0.2,
        redis_command_s=0.1,
    )
    assert record.redis_command_us == 20.0
    assert (record.rate, record.accepted, record.p99_ms, record.max_ms) == (500.0, 5000, 5.5, 9.0)
    assert record.process_cpu_us == 350.0
    assert record.cpu_us_by_process == {"loadgen": 100.0, "dispatcher": 200.0, "agent": 50.0}
    assert record.redis_cpu_us == 40.0
    assert judged(record, KneeCriteria()).passed


def test_a_peer_record_summarizes_its_latencies_like_ours() -> None:
    result = StepResult(
        system="taskiq (defaults)",
        rate=100.0,
        duration_s=10.0,
        planned=1000,
        sent=1000,
        accepted=1000,
        errors={},
        latencies_ns=[1_000_000 * (i % 10 + 1) for i in range(1000)],
        lost=0,
        duplicates=0,
        send_lag_max_ns=0,
        achieved_rate=100.0,
        cpu_s=0.5,
        redis_usec=1000,
    )
    record = peer_record(result, system="taskiq (defaults)", repeat=1, phase=KNEE, redis_cpu_s=0.1)
    assert record.p50_ms == pytest.approx(5.0, rel=1e-3)  # HdrHistogram: 3 digits
    assert (record.max_ms, record.started) == (10.0, 1000)
    assert (record.process_cpu_us, record.redis_cpu_us) == (500.0, 100.0)
    assert record.redis_command_us == 1.0
    assert record.backlog_bounded
    late = dataclasses.replace(result, latencies_ns=[2_000_000_000] * 1000, errors={"Timeout": 3})
    record = judged(
        peer_record(late, system="x", repeat=1, phase=KNEE, redis_cpu_s=0.1), KneeCriteria()
    )
    assert not record.backlog_bounded and record.errors == 3
    assert "backlog not bounded" in record.reason and "errors 3 > 0" in record.reason


def test_peer_backlog_counts_jobs_started_within_the_grace_of_their_send() -> None:
    assert peer_backlog_bounded(100.0, 100.0, 3, [1, 2, 3])
    assert not peer_backlog_bounded(100.0, 100.0, 3, [1, 2])  # one never started
    assert not peer_backlog_bounded(100.0, 90.0, 3, [1, 2, 3])  # the schedule slipped
    assert not peer_backlog_bounded(100.0, 100.0, 2, [1, 5_000_000_000])


def test_a_failed_step_fails_the_knee_criteria_and_logs_its_failure() -> None:
    record = failed_record(
        system="celery (defaults)", repeat=1, phase=KNEE, rate=125.0, duration_s=5, failure="boom"
    )
    assert outcome(record).p99_ms is None
    judged_record = judged(record, KneeCriteria())
    assert not judged_record.passed and "no job started" in judged_record.reason
    assert step_line(judged_record) == "celery (defaults) r1 knee 125/s: FAILED: boom"
    assert per_dispatch_us(1.0, 0) is None and per_dispatch_us(None, 5) is None


# Ceiling ---------------------------------------------------------------------------------

# redis-benchmark -q: progress lines end in "\r", the result line in "\n".
REDIS_BENCHMARK_OUTPUT = (
    "XADD bench:ceiling * f v: rps=0.0 (overall: 0.0) avg_msec=-nan (overall: -nan)\r"
    "XADD bench:ceiling * f v: rps=33131.5 (overall: 32869.6) avg_msec=1.027 (overall: 1.027)\r"
    "XADD bench:ceiling * f v: 327868.84 requests per second, p50=2.127 msec                    \n"
)


def test_the_final_rate_is_parsed_not_a_progress_line() -> None:
    assert parse_requests_per_s(REDIS_BENCHMARK_OUTPUT) == 327868.84
    assert parse_requests_per_s("XADD: 95000 requests per second\n") == 95000.0
    with pytest.raises(CeilingError, match="no 'requests per second'"):
        parse_requests_per_s("Could not connect to Redis at 127.0.0.1:1: Connection refused\n")


def test_redis_benchmark_is_pinned_when_asked() -> None:
    argv = benchmark_argv(6379, pipeline=16, cpus="1")
    assert argv[:4] == ["taskset", "-c", "1", "redis-benchmark"]
    assert argv[-8:] == ["-P", "16", "-q", "XADD", "bench:ceiling", "*", "f", "v"]
    assert benchmark_argv(6379, pipeline=1, cpus=None)[0] == "redis-benchmark"


def test_ceiling_lines_relate_our_redis_cpu_to_xadds() -> None:
    ceiling = Ceiling(
        unpipelined=XaddRun(1, 200_000, 50, 100_000.0, 10.0),
        pipelined=XaddRun(16, 200_000, 50, 800_000.0, 1.25),
    )
    lines = ceiling_lines(ceiling, [("at 500/s", 50.0), ("at its knee", 20.0)])
    assert "100000/s unpipelined, Redis CPU 10.00 us/XADD" in lines[0]
    assert "800000/s with -P 16, 1.25 us/XADD" in lines[0]
    assert lines[1] == (
        "dispatcher at 500/s: Redis CPU 50.0 us/dispatch -> 20000 dispatches/s per Redis shard"
        " (one core); one dispatch = 5.0 unpipelined XADDs, 40.0 pipelined"
    )
    assert lines[2].startswith("dispatcher at its knee: Redis CPU 20.0 us/dispatch -> 50000")
    assert len(ceiling_lines(ceiling, [])) == 1


def test_the_report_lists_what_did_not_run() -> None:
    knees, steps = three_repeats()
    steps.append(
        failed_record(
            system=CELERY.label, repeat=2, phase=FIXED, rate=500.0, duration_s=10, failure="boom"
        )
    )
    config = BenchConfig(
        systems=(DISPATCHER, TASKIQ, CELERY),
        repeats=3,
        step_duration_s=5.0,
        fixed_duration_s=10.0,
        start_rate=125.0,
        max_rate=16000.0,
        cpus="1",
        redis_cpus="0",
        ceiling=False,
    )
    run = BenchRun(config, {}, steps=steps, knees=knees, elapsed_s=90.0)
    run.failures.append({"system": "redis-benchmark", "repeat": None, "error": "OSError: x"})
    text = report_text(run, build_table(config.systems, knees, steps))
    assert text.startswith("peers table: 3 repeat(s), knee steps 5 s from 125/s")
    assert "knee ratio to best peer (taskiq (defaults)): 8.00" in text
    assert text.splitlines()[-7:] == [
        "did not run:",
        "  redis-benchmark: OSError: x",
        "  celery (defaults) repeat 2 fixed step at 500/s: boom",
        "",
        "host: 0 step run(s) set aside and run again, the hypervisor having taken over 3% "
        "of a CPU; kept steps: worst 0.0%, 0 of 0 over the limit after 5 tries",
        "",
        "ran 1.5 min",
    ]
