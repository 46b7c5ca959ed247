"""An agent server's metrics, read from its counts (``AgentServerCounts``) when scraped."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from dispatcher.metrics.counts import MeasuredServer
from dispatcher.metrics.export import counter, gauge
from dispatcher.wire import JobStatus


class AgentServerCollector(Collector):
    def __init__(self, server: MeasuredServer) -> None:
        self._server = server

    def collect(self) -> Iterable[Metric]:
        server, counts = self._server, self._server.counts
        labels = {"agent": server.agent_name, "server": server.id}
        names, values = list(labels), list(labels.values())
        started = counter(
            "dispatcher_agent_jobs_started", "Jobs that entered their entrypoint.", names
        )
        started.add_metric(values, counts.started)
        yield started
        ended = counter(
            "dispatcher_agent_jobs_ended",
            "Jobs ended on this server, by the status it reported.",
            [*names, "status"],
        )
        for status, n in sorted(counts.ended.items()):
            ended.add_metric([*values, JobStatus(status).name.lower()], n)
        yield ended
        for name, doc, value in (
            ("dispatcher_agent_jobs_running", "Jobs on this server now.", len(server.running)),
            ("dispatcher_agent_capacity_slots", "Jobs this server takes at once.", server.capacity),
            ("dispatcher_agent_draining", "1 while the server takes no new jobs.", server.draining),
        ):
            family = gauge(name, doc, names)
            family.add_metric(values, float(value))
            yield family
        failures = counter(
            "dispatcher_agent_heartbeat_failures",
            "Heartbeats that failed (retried every 0.1 s until one is acknowledged).",
            names,
        )
        failures.add_metric(values, counts.heartbeat_failures)
        yield failures
