"""What the metrics count, from the job state machine's own transitions and the API node's
routes; no process, no Redis."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.api.http import Headers, Request, Response
from dispatcher.api.twirp import TwirpRouter, TwirpService
from dispatcher.metrics.api import MeasuredApp, RequestCounts
from dispatcher.metrics.counts import Histogram, error_code
from dispatcher.metrics.export import Metrics
from dispatcher.scheduler import jobs
from dispatcher.scheduler.metrics import JobCounts, exported
from dispatcher.wire import JobRecord, JobStatus
from loadgen.metrics_ab import ROLES
from tests.unit.test_jobs import SERVER, T1, T2, T3, assigned, pending, rejection, report


def test_histogram_buckets_are_cumulative_with_inf_last() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 7.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert histogram.count == 4 and histogram.sum == 7.65


def test_error_code_is_the_replys_first_word_or_err() -> None:
    assert error_code("NOSCRIPT No matching script") == "NOSCRIPT"
    assert error_code("MOVED 3999 127.0.0.1:6381") == "MOVED"
    assert error_code("user_script:1: something odd") == "ERR"
    assert error_code("Fenced lease") == "ERR"


def _told(counts: JobCounts, *records: JobRecord) -> None:
    """Tell ``counts`` each change from one record to the next, as a partition does."""
    before: JobRecord | None = None
    for record in records:
        counts.job_changed(before, record)
        before = record


def test_a_job_that_runs_and_ends_counts_one_placement_one_start_and_one_end() -> None:
    counts = JobCounts()
    waiting, placed = pending(), assigned()
    running = jobs.on_report(placed, report(JobStatus.RUNNING, at=T2), T2).record
    ended = jobs.on_report(running, report(JobStatus.SUCCESS), T3).record
    _told(counts, waiting, placed, running, ended)
    assert counts.placements == 1
    assert counts.dispatch_time.count == 1
    assert counts.dispatch_time.sum == (T2 - waiting.spec.received_ns) / 1e9
    assert counts.ended == {(int(JobStatus.SUCCESS), 0): 1}
    assert counts.retries == {} and counts.rejections == 0


def test_re_placements_are_counted_by_cause() -> None:
    counts = JobCounts()
    placed = assigned()
    turned_down = jobs.on_rejected(placed, rejection(terminate=False), T2).record
    counts.job_changed(placed, turned_down)
    timed_out = jobs.on_timer(placed, T3).record
    counts.job_changed(placed, timed_out)
    running = jobs.on_report(placed, report(JobStatus.RUNNING), T2).record
    lost = jobs.on_server_lost(running, T3).record
    counts.job_changed(running, lost)
    assert counts.retries == {"rejected": 1, "assign_timeout": 1, "server_lost": 1}
    assert counts.rejections == 1


def test_a_rejection_for_good_counts_as_a_rejection_and_an_end() -> None:
    counts = JobCounts()
    placed = assigned()
    counts.job_changed(placed, jobs.on_rejected(placed, rejection(terminate=True), T2).record)
    assert counts.rejections == 1 and counts.retries == {}
    assert sum(counts.ended.values()) == 1


def test_a_scheduler_exports_what_its_partitions_counted() -> None:
    metrics = Metrics()
    collector = exported(metrics)
    counts = collector.counts
    placed = jobs.placed(pending(), SERVER, T1)
    _told(counts, pending(), placed)
    counts.entries_applied(3)
    samples = _samples(metrics)
    assert samples["dispatcher_placements_total"] == 1
    assert samples["dispatcher_stream_entries_applied_total"] == 3
    assert samples["dispatcher_dispatch_duration_seconds_count"] == 0
    assert "dispatcher_redis_connects_total" in samples  # every process exports its Redis


def _samples(metrics: Metrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def test_requests_are_counted_by_twirp_method_path_and_code() -> None:
    counts = RequestCounts()
    app = MeasuredApp(counts)
    router = TwirpRouter()
    router.install(app)
    service = TwirpService("pkg.Service")

    async def ok(_: None, __: Request) -> Response:
        return Response(200, b"{}", "application/json")

    service.add_raw("Do", ok)
    router.add_service(service)

    async def healthz(_: Request) -> Response:
        return Response.text("ok")

    app.route("/healthz", healthz)
    for path in ("/twirp/pkg.Service/Do", "/twirp/pkg.Service/Nope", "/healthz", "/x/y", "/z"):
        method = "POST" if path.startswith("/twirp/") else "GET"
        await app.handle(Request(method, path, Headers()))
    app.refusal("/twirp/pkg.Service/Do?q=1", 413, "too large")
    assert counts.requests == {
        ("pkg.Service/Do", 200): 1,
        ("other", 404): 3,  # an unknown method and two unknown paths: one label value
        ("/healthz", 200): 1,
        ("pkg.Service/Do", 413): 1,
    }
    assert counts.latency["pkg.Service/Do"].count == 1  # refusals have no handler time


def test_the_ab_comparison_takes_medians_and_pairs_each_on_run_with_the_off_before_it() -> None:
    from loadgen.metrics_ab import compare

    arms = iter([100.0, 110.0, 200.0, 190.0, 100.0, 104.0])  # off, on, off, on, off, on

    def fake(*args: float) -> dict[str, object]:
        scraped = args[-1] > 0
        cpu = next(arms) / 1e6 * 1000  # µs per dispatch at 1,000 accepted
        return {"accepted": {"dispatch": 1000}, "cpu_s": dict.fromkeys(ROLES, cpu),
                "lost": {"dispatch": 0}, "metrics": scraped}  # fmt: skip

    result = compare(fake, [400, 15, 1, 64], 3, 5.0)
    assert result["cpu_us_per_dispatch_median"]["off"]["api"] == 100.0
    assert result["cpu_us_per_dispatch_median"]["on"]["api"] == 110.0
    assert result["change_percent"]["api"] == 10.0
    assert result["paired_change_percent"]["api"] == 4.0  # +10 %, -5 %, +4 %


def test_the_hot_path_bench_observes_a_whole_job_life() -> None:
    from loadgen.metrics_bench import job_life

    counts = JobCounts()
    _told(counts, *job_life())
    assert [r.phase for r in job_life()] == ["pending", "assigned", "running", "ended"]
    assert counts.placements == 1 and counts.dispatch_time.count == 1
