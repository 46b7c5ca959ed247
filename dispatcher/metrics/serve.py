"""Serving a role's metrics for as long as it runs; prometheus-client is imported only
when a metrics port is set, so a role without one starts without it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dispatcher.metrics.export import Metrics


@asynccontextmanager
async def serving(host: str, port: int) -> AsyncIterator[Metrics | None]:
    """``/metrics`` on ``host:port`` while the block runs (port 0: none, and None)."""
    if not port:
        yield None
        return
    from dispatcher.metrics.export import Metrics, MetricsServer

    metrics = Metrics()
    server = MetricsServer(metrics, host, port)
    await server.start()
    try:
        yield metrics
    finally:
        await server.aclose()
