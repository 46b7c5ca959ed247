"""``dispatcher dev``: redis (spawned unless given), an API node, a scheduler and the demo
agent server, in one process. Ctrl-C drains the agent and the scheduler, then stops all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from urllib.parse import urlsplit, urlunsplit

import click

from dispatcher import settings as config
from dispatcher.api.app import ApiNode
from dispatcher.localredis import LocalRedis
from dispatcher.process import install_stop_signals
from dispatcher.scheduler.node import SchedulerNode

log = logging.getLogger(__name__)
_DEV_KEYS = f"{config.DEV_API_KEY}:{config.DEV_API_SECRET}"


def banner(url: str, redis_url: str) -> str:
    key, secret = config.DEV_API_KEY, config.DEV_API_SECRET
    return f"""
  dispatcher dev is up
    API         {url}
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


async def run_dev(redis_url: str | None, host: str, port: int, partitions: int) -> None:
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
    api = await ApiNode.create(api_settings)
    # Webhooks (DISPATCHER_WEBHOOK_URLS) are signed with the dev pair unless told otherwise.
    signing = {"webhook_api_key": config.DEV_API_KEY, "webhook_api_secret": config.DEV_API_SECRET}
    if os.environ.get("DISPATCHER_WEBHOOK_API_KEY"):
        signing = {}
    scheduler_settings = config.load(config.SchedulerSettings, {**overrides, **signing})
    scheduler = await SchedulerNode.create(scheduler_settings)
    demo.redis_url = url
    try:
        await api.start()
        await scheduler.start()
        await demo.start()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        click.echo(banner(f"http://{shown}:{port}", url))
        await stop.wait()
        log.info("stopping")
        await demo.drain(timeout_s=5)
        await scheduler.drain()
    finally:
        for close in (demo.aclose, scheduler.aclose, api.aclose):
            with contextlib.suppress(Exception):
                await close()
        if local is not None:
            local.stop()
