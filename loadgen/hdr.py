"""Latency histograms: bounded memory per run, mergeable across processes.

Exact percentiles would need every value in one place. These histograms
record nanosecond values from 1 us to 120 s at 3 significant digits (HdrHistogram), so each
agent process can record its own share, send a few hundred bytes to the parent, and the
parent merges them into the same percentiles a single histogram would give.

Accuracy: a reported percentile is the upper edge of the bucket holding the value at that
rank, at most 0.1 % above it (below 1 ms: at most 0.5 us above), and never outside the
exact minimum and maximum, which are kept as recorded. Ranks follow HdrHistogram
(round(p/100 * count)), so they can differ by one from nearest-rank figures.

Nothing is dropped: values below 1 us are recorded as 1 us, values above 120 s as 120 s
and are also counted in ``overflow``, so a report can say that its maximum is a floor.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable

import msgspec
from hdrh.codec import HdrCookieException, HdrLengthException
from hdrh.histogram import HdrHistogram

#: The percentiles every report shows, by name.
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("max", 100.0),
)

LOWEST_NS = 1_000
HIGHEST_NS = 120_000_000_000
SIGNIFICANT_DIGITS = 3
_NS_PER_MS = 1e6


class _HistogramWire(msgspec.Struct, array_like=True, frozen=True):
    """What ``encode`` sends: HdrHistogram's compressed counts plus what they cannot hold."""

    counts: bytes  # HdrHistogram's own V2 encoding, zlib-compressed, no base64
    overflow: int
    min_ns: int  # exact extremes; 0 when empty
    max_ns: int


class _SeriesWire(msgspec.Struct, array_like=True, frozen=True):
    interval_s: float
    intervals: list[tuple[int, bytes]]  # (interval index, encoded LatencyHistogram)


_ENCODER = msgspec.msgpack.Encoder()
_HISTOGRAM_DECODER = msgspec.msgpack.Decoder(_HistogramWire)
_SERIES_DECODER = msgspec.msgpack.Decoder(_SeriesWire)
# What hdrh raises for bytes it did not encode.
_HDR_DECODE_ERRORS = (
    ValueError,
    RuntimeError,
    TypeError,
    zlib.error,
    HdrCookieException,
    HdrLengthException,
)


def _new_hdr() -> HdrHistogram:
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS, b64_wrap=False)


def _ms(ns: float) -> float:
    return ns / _NS_PER_MS


class LatencyHistogram:
    """Nanosecond latencies; read back in milliseconds.

    The readers (``percentile_ms``, ``min_ms``, ``max_ms``, ``mean_ms``) raise ValueError
    on an empty histogram, as an exact percentile would; ``summary_ms`` gives None
    figures instead. Each instance holds about 160 KB of counters.
    """

    def __init__(self) -> None:
        self._hdr = _new_hdr()
        self.overflow = 0  # values above HIGHEST_NS, recorded as HIGHEST_NS
        self._min_ns: int | None = None
        self._max_ns: int | None = None

    def record(self, ns: int) -> None:
        if ns > HIGHEST_NS:
            self.overflow += 1
            ns = HIGHEST_NS
        elif ns < LOWEST_NS:
            ns = LOWEST_NS  # also covers negative values from a stepped wall clock
        self._hdr.record_value(ns)
        self._min_ns = ns if self._min_ns is None else min(self._min_ns, ns)
        self._max_ns = ns if self._max_ns is None else max(self._max_ns, ns)

    def record_many(self, values: Iterable[int]) -> None:
        for ns in values:
            self.record(ns)

    @classmethod
    def of(cls, values: Iterable[int]) -> LatencyHistogram:
        """A histogram of ``values`` (ns)."""
        histogram = cls()
        histogram.record_many(values)
        return histogram

    @property
    def count(self) -> int:
        return int(self._hdr.get_total_count())

    def percentile_ms(self, p: float) -> float:
        """Value at percentile ``p`` in [0, 100], clamped into the exact [min, max]."""
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"percentile {p} is outside [0, 100]")
        low, high = self._extremes()
        return _ms(min(max(self._hdr.get_value_at_percentile(p), low), high))

    @property
    def min_ms(self) -> float:
        return _ms(self._extremes()[0])

    @property
    def max_ms(self) -> float:
        return _ms(self._extremes()[1])

    @property
    def mean_ms(self) -> float:
        low, high = self._extremes()
        return _ms(min(max(self._hdr.get_mean_value(), low), high))

    def summary_ms(self) -> dict[str, float | int | None]:
        """count plus p50..max in ms; None figures when nothing was recorded."""
        summary: dict[str, float | int | None] = {"count": self.count}
        for name, p in PERCENTILES:
            summary[name] = round(self.percentile_ms(p), 3) if self.count else None
        return summary

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s values to this histogram (``other`` is left unchanged)."""
        if other.count == 0:
            return
        self._hdr.add(other._hdr)
        self.overflow += other.overflow
        low, high = other._extremes()
        self._min_ns = low if self._min_ns is None else min(self._min_ns, low)
        self._max_ns = high if self._max_ns is None else max(self._max_ns, high)

    def encode(self) -> bytes:
        """A compact encoding (tens to hundreds of bytes) for sending between processes."""
        wire = _HistogramWire(
            counts=self._hdr.encode(),
            overflow=self.overflow,
            min_ns=self._min_ns or 0,
            max_ns=self._max_ns or 0,
        )
        return _ENCODER.encode(wire)

    @classmethod
    def decode(cls, data: bytes) -> LatencyHistogram:
        """The histogram ``encode`` produced; ValueError for anything else."""
        try:
            wire = _HISTOGRAM_DECODER.decode(data)
            decoded = HdrHistogram.decode(wire.counts, b64_wrap=False)
        except _HDR_DECODE_ERRORS as exc:  # msgspec.DecodeError is a ValueError
            raise ValueError(f"not an encoded LatencyHistogram: {exc}") from exc
        histogram = cls()
        histogram._hdr.add(decoded)  # re-homes the counts into our own configuration
        histogram.overflow = wire.overflow
        if histogram.count:
            histogram._min_ns, histogram._max_ns = wire.min_ns, wire.max_ns
        return histogram

    def _extremes(self) -> tuple[int, int]:
        if self._min_ns is None or self._max_ns is None:
            raise ValueError("the histogram is empty")
        return self._min_ns, self._max_ns


class IntervalHistograms:
    """One LatencyHistogram per ``interval_s`` of run time, for percentiles over time.

    ``t_s`` is seconds since the run's start, on a clock every recording process shares
    (e.g. the send time's wall clock minus the run's start on the same clock), so series
    recorded in different processes line up when merged. Only intervals with at least one
    value are kept; a gap in ``intervals()`` means nothing was recorded then.
    """

    def __init__(self, interval_s: float) -> None:
        if not interval_s > 0 or math.isinf(interval_s):
            raise ValueError(f"interval_s must be a positive number, not {interval_s}")
        self.interval_s = interval_s
        self._by_index: dict[int, LatencyHistogram] = {}

    def record(self, t_s: float, ns: int) -> None:
        if not t_s >= 0:
            raise ValueError(f"t_s must be >= 0 (seconds since the run's start), not {t_s}")
        self._histogram(int(t_s // self.interval_s)).record(ns)

    def intervals(self) -> list[tuple[float, LatencyHistogram]]:
        """(interval start in seconds, its histogram), in time order."""
        return [(i * self.interval_s, self._by_index[i]) for i in sorted(self._by_index)]

    def total(self) -> LatencyHistogram:
        """All intervals merged into one histogram."""
        merged = LatencyHistogram()
        for histogram in self._by_index.values():
            merged.merge(histogram)
        return merged

    def merge(self, other: IntervalHistograms) -> None:
        if other.interval_s != self.interval_s:
            raise ValueError(
                f"cannot merge {other.interval_s} s intervals into {self.interval_s} s ones"
            )
        for index, histogram in other._by_index.items():
            self._histogram(index).merge(histogram)

    def encode(self) -> bytes:
        intervals = [(i, h.encode()) for i, h in sorted(self._by_index.items())]
        return _ENCODER.encode(_SeriesWire(self.interval_s, intervals))

    @classmethod
    def decode(cls, data: bytes) -> IntervalHistograms:
        try:
            wire = _SERIES_DECODER.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not an encoded IntervalHistograms: {exc}") from exc
        series = cls(wire.interval_s)
        for index, encoded in wire.intervals:
            series._by_index[index] = LatencyHistogram.decode(encoded)
        return series

    def _histogram(self, index: int) -> LatencyHistogram:
        histogram = self._by_index.get(index)
        if histogram is None:
            histogram = self._by_index[index] = LatencyHistogram()
        return histogram
