"""Latency histograms: accuracy, summary shape, overflow, and merging across processes."""

from __future__ import annotations

import math
import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor

import pytest

from loadgen.hdr import HIGHEST_NS, LOWEST_NS, IntervalHistograms, LatencyHistogram

MS = 1_000_000
PERCENTILES = (0.0, 50.0, 90.0, 99.0, 99.9, 100.0)


def summarize_ns(values: list[int]) -> dict[str, float | int | None]:
    """The exact reference: nearest-rank percentiles over every value, in ms."""
    ordered = sorted(values)
    summary: dict[str, float | int | None] = {"count": len(ordered)}
    for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9), ("max", 100)):
        rank = max(1, math.ceil(p / 100 * len(ordered) - 1e-9))
        summary[name] = round(ordered[rank - 1] / 1e6, 3) if ordered else None
    return summary


def latencies(seed: int, n: int) -> list[int]:
    """Log-normal around 2 ms with a long tail, plus a few values past the 120 s maximum."""
    rng = random.Random(seed)
    values = [int(rng.lognormvariate(14.5, 1.2)) for _ in range(n)]
    return [*values, HIGHEST_NS + 1, 3 * HIGHEST_NS]


def histogram_of(values: list[int]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    histogram.record_many(values)
    return histogram


def encode_in_child(seed: int) -> bytes:
    """Runs in a spawned process: record one share of the values, send the encoding."""
    return histogram_of(latencies(seed, 5_000)).encode()


# --- single histogram ---------------------------------------------------------------------


def test_percentiles_are_within_a_thousandth_of_the_exact_ones() -> None:
    values = latencies(1, 20_000)
    exact = summarize_ns([min(v, HIGHEST_NS) for v in values])
    summary = histogram_of(values).summary_ms()
    assert summary["count"] == exact["count"] == len(values)
    for name in ("p50", "p90", "p99", "p99.9", "max"):
        assert summary[name] == pytest.approx(exact[name], rel=2e-3, abs=1e-3), name


def test_summary_has_the_shape_of_summarize_ns() -> None:
    summary = histogram_of([1 * MS, 2 * MS, 3 * MS]).summary_ms()
    assert list(summary) == list(summarize_ns([1]))
    assert summary["count"] == 3
    assert summary["p50"] == pytest.approx(2.0, rel=1e-3)  # a bucket's upper edge
    assert summary["max"] == 3.0


def test_empty_summary_has_none_figures_and_readers_raise() -> None:
    histogram = LatencyHistogram()
    assert histogram.summary_ms() == summarize_ns([])
    assert histogram.count == 0
    with pytest.raises(ValueError, match="empty"):
        histogram.percentile_ms(50)
    with pytest.raises(ValueError, match="empty"):
        _ = histogram.max_ms


def test_min_max_and_mean_stay_exact_bounds() -> None:
    histogram = histogram_of([1_234_567, 7_654_321])
    assert histogram.min_ms == 1.234567
    assert histogram.max_ms == 7.654321
    assert histogram.percentile_ms(0) == 1.234567
    assert histogram.percentile_ms(100) == 7.654321
    assert histogram.mean_ms == pytest.approx(4.444444, rel=1e-3)


def test_percentile_outside_0_100_is_rejected() -> None:
    with pytest.raises(ValueError, match="outside"):
        histogram_of([MS]).percentile_ms(100.5)


def test_values_past_the_range_are_clamped_and_counted() -> None:
    histogram = histogram_of([-5, 10, 2 * HIGHEST_NS, HIGHEST_NS])
    assert histogram.count == 4
    assert histogram.overflow == 1  # HIGHEST_NS itself still fits
    assert histogram.min_ms == LOWEST_NS / MS
    assert histogram.max_ms == HIGHEST_NS / MS


# --- encoding and merging ------------------------------------------------------------------


def test_encode_decode_round_trip_is_compact() -> None:
    histogram = histogram_of(latencies(2, 10_000))
    data = histogram.encode()
    assert len(data) < 10_000
    decoded = LatencyHistogram.decode(data)
    assert decoded.summary_ms() == histogram.summary_ms()
    assert decoded.overflow == histogram.overflow == 2
    assert decoded.min_ms == histogram.min_ms


def test_empty_histogram_round_trips() -> None:
    decoded = LatencyHistogram.decode(LatencyHistogram().encode())
    assert decoded.count == 0
    assert decoded.summary_ms() == summarize_ns([])


@pytest.mark.parametrize("data", [b"", b"garbage", LatencyHistogram().encode()[:-3]])
def test_decode_rejects_foreign_bytes(data: bytes) -> None:
    with pytest.raises(ValueError, match="not an encoded LatencyHistogram"):
        LatencyHistogram.decode(data)


def test_histograms_merged_across_processes_equal_one_histogram_of_all_values() -> None:
    seeds = [11, 12, 13]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(seeds), mp_context=spawn) as pool:
        encoded = list(pool.map(encode_in_child, seeds))
    merged = LatencyHistogram()
    for data in encoded:
        merged.merge(LatencyHistogram.decode(data))
    single = histogram_of([v for seed in seeds for v in latencies(seed, 5_000)])
    assert merged.count == single.count == 3 * 5_002
    assert merged.overflow == single.overflow == 3 * 2
    for p in PERCENTILES:
        assert merged.percentile_ms(p) == single.percentile_ms(p), p
    assert merged.summary_ms() == single.summary_ms()
    assert (merged.min_ms, merged.max_ms) == (single.min_ms, single.max_ms)


def test_merge_into_empty_keeps_the_extremes() -> None:
    merged = LatencyHistogram()
    merged.merge(histogram_of([3 * MS, 5 * MS]))
    merged.merge(LatencyHistogram())
    assert (merged.min_ms, merged.max_ms, merged.count) == (3.0, 5.0, 2)


# --- interval series -----------------------------------------------------------------------


def test_intervals_bucket_by_time_and_skip_empty_ones() -> None:
    series = IntervalHistograms(0.5)
    series.record(0.0, 1 * MS)
    series.record(0.49, 2 * MS)
    series.record(0.5, 3 * MS)
    series.record(2.2, 4 * MS)
    intervals = series.intervals()
    assert [start for start, _ in intervals] == [0.0, 0.5, 2.0]
    assert [h.count for _, h in intervals] == [2, 1, 1]
    assert intervals[0][1].max_ms == 2.0
    all_values = histogram_of([x * MS for x in (1, 2, 3, 4)])
    assert series.total().summary_ms() == all_values.summary_ms()


def test_interval_series_merge_and_round_trip() -> None:
    first, second = IntervalHistograms(1.0), IntervalHistograms(1.0)
    first.record(0.2, 1 * MS)
    second.record(0.7, 2 * MS)
    second.record(3.1, 9 * MS)
    first.merge(IntervalHistograms.decode(second.encode()))
    intervals = first.intervals()
    assert [(start, h.count) for start, h in intervals] == [(0.0, 2), (3.0, 1)]
    assert intervals[1][1].max_ms == 9.0
    assert IntervalHistograms.decode(first.encode()).total().summary_ms() == (
        first.total().summary_ms()
    )


def test_interval_series_reject_mismatches_and_bad_times() -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        IntervalHistograms(1.0).merge(IntervalHistograms(2.0))
    with pytest.raises(ValueError, match="t_s"):
        IntervalHistograms(1.0).record(-0.1, MS)
    with pytest.raises(ValueError, match="interval_s"):
        IntervalHistograms(0.0)
    with pytest.raises(ValueError, match="not an encoded IntervalHistograms"):
        IntervalHistograms.decode(b"\x01")
