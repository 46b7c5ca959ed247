"""``dispatcher dev``: redis (spawned unless given), an API node, a scheduler and the demo
agent server, in one process. Ctrl-C drains the agent and the scheduler, then stops all."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import click

from dispatcher import settings as config
from dispatcher.api.app import ApiNode
from dispatcher.localredis import LocalRedis
from dispatcher.scheduler.node import SchedulerNode
from workers.runner import install_stop_signals

log = logging.getLogger(__name__)


def banner(url: str, redis_url: str) -> str:
    key, secret = config.DEV_API_KEY, config.DEV_API_SECRET
    return f"""
  dispatcher dev is up
    API         {url}
    Redis       {redis_url}
    API key     {key}
    API secret  {secret}

  Try, in another shell:
    export LIVEKIT_URL={url} LIVEKIT_API_KEY={key} LIVEKIT_API_SECRET={secret}
    dispatcher dispatch create --agent-name test-agent --room my-room \\
        --metadata '{{"user_id": "12345"}}'
    dispatcher dispatch list --room my-room
"""


async def run_dev(redis_url: str | None, port: int, partitions: int) -> None:
    from dispatcher.demo_agent import server as demo

    local = LocalRedis() if redis_url is None else None
    url = redis_url or (local.url if local else "")
    stop = asyncio.Event()
    install_stop_signals(stop)
    overrides = {"redis_url": url, "partitions": partitions}
    api_settings = config.load(
        config.ApiSettings,
        {**overrides, "port": port, "api_keys": f"{config.DEV_API_KEY}:{config.DEV_API_SECRET}"},
    )
    api = await ApiNode.create(api_settings)
    scheduler = await SchedulerNode.create(config.load(config.SchedulerSettings, overrides))
    demo.redis_url = url
    try:
        await api.start()
        await scheduler.start()
        await demo.start()
        click.echo(banner(f"http://127.0.0.1:{port}", url))
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
