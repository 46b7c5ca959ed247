"""``dispatcher dev``: redis (spawned unless given), an API node, a scheduler and the demo
agent server, in one process. Ctrl-C drains the agent and the scheduler, then stops all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import click

from dispatcher import settings as config
from dispatcher.api.app import ApiNode
from dispatcher.localredis import LocalRedis
from dispatcher.metrics import PATH
from dispatcher.process import install_stop_signals
from dispatcher.scheduler.node import SchedulerNode
from workers.server import AgentServer

log = logging.getLogger(__name__)
_DEV_KEYS = f"{config.DEV_API_KEY}:{config.DEV_API_SECRET}"


def banner(url: str, redis_url: str, metrics_url: str = "") -> str:
    key, secret = config.DEV_API_KEY, config.DEV_API_SECRET
    metrics = f"\n    Metrics     {metrics_url}" if metrics_url else ""
    return f"""
  dispatcher dev is up
    API         {url}{metrics}
    Redis       {without_password(redis_url)}
    API key     {key}
    API secret  {secret}
    Dashboard   {url}/dashboard (sign in with the key and secret above)

  Try, in another shell:
    export LIVEKIT_URL={url} LIVEKIT_API_KEY={key} LIVEKIT_API_SECRET={secret}
    dispatcher dispatch create --agent-name test-agent --room my-room \\
        --metadata '{{"user_id": "12345"}}'
    dispatcher dispatch list --room my-room
"""


def without_password(url: str) -> str:
    """A Redis URL as it may be printed: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.hostname or ""
    netloc = f"{user}***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def run_dev(
    redis_url: str | None,
    host: str,
    port: int,
    partitions: int,
    metrics_port: int | None = None,
) -> None:
    """``metrics_port``: every role's metrics on one port (None: any free one, as the
    Redis it starts; 0: none)."""
    from dispatcher.demo_agent import server as demo

    local = LocalRedis() if redis_url is None else None
    url = redis_url or (local.url if local else "")
    stop = asyncio.Event()
    install_stop_signals(stop)
    overrides = {"redis_url": url, "partitions": partitions}
    api_settings = config.load(
        config.ApiSettings,
        {**overrides, "host": host, "port": port, "api_keys": _DEV_KEYS},
    )
    metrics = _metrics(host, metrics_port)
    api = await ApiNode.create(api_settings, metrics.exported if metrics else None)
    # Webhooks (DISPATCHER_WEBHOOK_URLS) are signed with the dev pair unless told otherwise.
    signing = {"webhook_api_key": config.DEV_API_KEY, "webhook_api_secret": config.DEV_API_SECRET}
    if os.environ.get("DISPATCHER_WEBHOOK_API_KEY"):
        signing = {}
    scheduler_settings = config.load(config.SchedulerSettings, {**overrides, **signing})
    scheduler = await SchedulerNode.create(scheduler_settings)
    if metrics is not None:
        metrics.watch(scheduler, demo)
    demo.redis_url = url
    try:
        await api.start()  # first: a second dev mode names the API port as the one in use
        if metrics is not None:
            await metrics.server.start()
        await scheduler.start()
        await demo.start()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        metrics_url = f"http://{shown}:{metrics.server.port}{PATH}" if metrics else ""
        click.echo(banner(f"http://{shown}:{port}", url, metrics_url))
        await stop.wait()
        log.info("stopping")
        await demo.drain(timeout_s=5)
        await scheduler.drain()
    finally:
        for close in (demo.aclose, scheduler.aclose, api.aclose, *_closing(metrics)):
            with contextlib.suppress(Exception):
                await close()
        if local is not None:
            local.stop()


class _DevMetrics:
    """Every role's metrics, on one port."""

    def __init__(self, host: str, port: int) -> None:
        from dispatcher.metrics.export import Metrics, MetricsServer

        self.exported = Metrics()
        self.server = MetricsServer(self.exported, host, port)

    def watch(self, scheduler: SchedulerNode, demo: AgentServer) -> None:
        from dispatcher.scheduler.metrics import exported
        from workers.metrics import AgentServerCollector

        exported(self.exported).watch(scheduler)
        self.exported.add(AgentServerCollector(demo))


def _metrics(host: str, port: int | None) -> _DevMetrics | None:
    return _DevMetrics(host, port or 0) if port != 0 else None


def _closing(metrics: _DevMetrics | None) -> list[Callable[[], Awaitable[None]]]:
    return [metrics.server.aclose] if metrics is not None else []
