"""The API node's request metrics: requests by route and status code, and a latency
histogram per route.

A route is a Twirp method (``livekit.AgentDispatchService/CreateDispatch``) or one of the
node's own paths (``/agent``, ``/healthz``, ``/readyz``); any other path counts as
``other``, so a client sending random paths cannot make a label value per path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from dispatcher.api.http import HttpApp, Request, Response
from dispatcher.api.twirp import TWIRP_ROUTER, TwirpRouter
from dispatcher.metrics.counts import LATENCY_BUCKETS_S, Histogram
from dispatcher.metrics.export import add_histogram, counter, histogram

OTHER = "other"


class RequestCounts(Collector):
    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}  # (route, status) -> requests
        self.latency: dict[str, Histogram] = {}

    def answered(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if (latency := self.latency.get(route)) is None:
            latency = self.latency[route] = Histogram(LATENCY_BUCKETS_S)
        latency.observe(seconds)

    def refused(self, route: str, status: int) -> None:
        """Refused by the HTTP server before any handler (too large, too slow, malformed)."""
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def collect(self) -> Iterable[Metric]:
        requests = counter(
            "dispatcher_api_requests",
            "Requests answered by the API node, by route and HTTP status code.",
            ["route", "code"],
        )
        for (route, status), n in sorted(self.requests.items()):
            requests.add_metric([route, str(status)], n)
        yield requests
        latency = histogram(
            "dispatcher_api_request_duration_seconds",
            "Time from a whole request read to its response, by route.",
            ["route"],
        )
        for route, counts in sorted(self.latency.items()):
            add_histogram(latency, [route], counts)
        yield latency


class MeasuredApp(HttpApp):
    """An ``HttpApp`` that counts every answer and times every handler."""

    def __init__(self, counts: RequestCounts, *, max_body_size: int = 10 * 1024 * 1024) -> None:
        super().__init__(max_body_size=max_body_size)
        self.counts = counts
        self._routes_by_path: dict[str, str] = {}  # known paths only: bounded

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await super().handle(request)
        except Exception:
            self.counts.answered(self.route_of(request.path), 500, time.perf_counter() - started)
            raise
        self.counts.answered(
            self.route_of(request.path), response.status, time.perf_counter() - started
        )
        return response

    def refusal(self, target: str, status: int, message: str) -> Response:
        self.counts.refused(self.route_of(target.partition("?")[0]), status)
        return super().refusal(target, status, message)

    def route_of(self, path: str) -> str:
        route = self._routes_by_path.get(path)
        if route is None:
            route = self._known_route(path)
            if route != OTHER:
                self._routes_by_path[path] = route
        return route

    def _known_route(self, path: str) -> str:
        router: TwirpRouter | None = self.state.get(TWIRP_ROUTER)
        if router is not None and path.startswith(router.prefix):
            name, _, method = path[len(router.prefix) :].rpartition("/")
            service = router.service(name)
            return f"{name}/{method}" if service and method in service.methods else OTHER
        return path if path in self._routes else OTHER
