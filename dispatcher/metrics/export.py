"""``/metrics`` of a process, in Prometheus's text format, on a port of its own.

Each role adds a collector that reads its counts (``counts.py``) when scraped, and may add
a refresh that samples Redis first (a scheduler's stream lag); the process's Redis counts
and prometheus-client's process collector (CPU, memory, open files) are always there. The
port is served by the project's own HTTP stack, like the probes (``dispatcher/health.py``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from dispatcher.api.http import HttpApp, Request, Response
from dispatcher.api.httpserver import HttpServer, ServerLimits
from dispatcher.errors import ConfigError, describe
from dispatcher.metrics import PATH
from dispatcher.metrics.counts import REDIS, Histogram, RedisCounts

log = logging.getLogger(__name__)

LIMITS = ServerLimits(max_connections=64, max_head_bytes=8 * 1024, head_timeout_s=5.0)
REFRESH_TIMEOUT_S = 2.0  # a scrape during a Redis outage answers with the last samples
Refresh = Callable[[], Awaitable[None]]


class Metrics:
    """What one process exports: its roles' collectors (all of them in dev mode)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self.registry.register(RedisCollector(REDIS))
        self._refreshes: list[Refresh] = []

    def add(self, collector: Collector, refresh: Refresh | None = None) -> None:
        self.registry.register(collector)
        if refresh is not None:
            self._refreshes.append(refresh)

    async def render(self) -> bytes:
        if self._refreshes:
            try:
                async with asyncio.timeout(REFRESH_TIMEOUT_S):
                    await asyncio.gather(*(refresh() for refresh in self._refreshes))
            except Exception as exc:  # policy: export what was sampled last
                log.warning("metrics refresh failed (%s); last samples exported", describe(exc))
        return generate_latest(self.registry)


class MetricsServer:
    """``/metrics`` on ``host:port``."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        app = HttpApp(max_body_size=0)

        async def scrape(_: Request) -> Response:
            return Response(200, await metrics.render(), CONTENT_TYPE_LATEST)

        app.route(PATH, scrape)
        self._server = HttpServer(app, LIMITS)
        self._host, self._port = host, port

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self) -> None:
        try:
            await self._server.start(self._host, self._port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise ConfigError(
                f"cannot serve metrics on {self._host}:{self._port}: the port is in use; "
                "choose another (DISPATCHER_METRICS_PORT, 0: no metrics)"
            ) from None
        log.info("metrics on %s:%d%s", self._host, self.port, PATH)

    async def aclose(self) -> None:
        await self._server.aclose(grace_s=1.0)


class RedisCollector(Collector):
    def __init__(self, counts: RedisCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        c = self._counts
        replies = counter(
            "dispatcher_redis_error_replies",
            "Error replies from Redis, by client lane and error code (MOVED, NOSCRIPT, ...).",
            ["lane", "code"],
        )
        for (lane, code), n in sorted(c.error_replies.items()):
            replies.add_metric([lane, code], n)
        failed = counter(
            "dispatcher_redis_failed_calls",
            "Redis calls that got no reply (timeout, connection lost) and connection "
            "attempts that failed (connect), by client lane.",
            ["lane", "cause"],
        )
        for (lane, cause), n in sorted(c.failed_calls.items()):
            failed.add_metric([lane, cause], n)
        yield replies
        yield failed
        yield counter(
            "dispatcher_redis_connects", "Fast-lane connections opened.", value=c.connects
        )
        yield counter(
            "dispatcher_redis_reconnects",
            "Fast-lane connections opened in place of one that dropped or stalled.",
            value=c.reconnects,
        )
        yield counter(
            "dispatcher_redis_disconnects",
            "Fast-lane connections that dropped or stalled (not closed by this process).",
            value=c.disconnects,
        )


def counter(
    name: str, doc: str, labels: list[str] | None = None, value: float | None = None
) -> CounterMetricFamily:
    """A counter family (``name`` without ``_total``): with ``value``, unlabelled."""
    return CounterMetricFamily(name, doc, value=value, labels=labels)


def gauge(
    name: str, doc: str, labels: list[str] | None = None, value: float | None = None
) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value, labels=labels)


def histogram(name: str, doc: str, labels: list[str] | None = None) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=labels)


def add_histogram(family: HistogramMetricFamily, labels: list[str], counts: Histogram) -> None:
    """One labelled series of a histogram family."""
    family.add_metric(labels, counts.cumulative(), counts.sum)
