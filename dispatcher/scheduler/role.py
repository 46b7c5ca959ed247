"""A scheduler as a process: its probes and metrics, the node started once Redis answers,
drained on SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dispatcher.metrics.serve import serving
from dispatcher.scheduler.node import SchedulerNode
from dispatcher.settings import SchedulerSettings
from dispatcher.startup import serve_role
from dispatcher.webhooks.config import webhook_config


async def run_scheduler(settings: SchedulerSettings, stop: asyncio.Event) -> None:
    webhook_config(settings)  # a configuration error stops the process before Redis is up
    host, port = settings.health_host, settings.health_port
    async with serving(settings.metrics_host, settings.metrics_port) as metrics:
        watch = None
        if metrics is not None:
            from dispatcher.scheduler.metrics import exported

            watch = exported(metrics).watch
        await serve_role(lambda: _started(settings, watch), stop, "scheduler", host, port)


async def _started(
    settings: SchedulerSettings, watch: Callable[[SchedulerNode], None] | None = None
) -> SchedulerNode:
    node = await SchedulerNode.create(settings)
    if watch is not None:
        watch(node)
    try:
        await node.start()
    except BaseException:
        await node.aclose()
        raise
    return node
