"""Webhooks: LiveKit's ``WebhookEvent`` for rooms and participants, plus job events, queued
durably with the partition's commit and delivered off the turn.

A partition's ``HookObserver`` turns what the partition saw into events, which its commit
appends to ``dsp:T:hooks`` in the same fenced script call as the change they describe. A
``Deliverer`` per owned partition reads that stream and the node's ``Sender`` POSTs each
event, signed as LiveKit signs webhooks, to every configured URL. Nothing is written when
no URL is configured.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

from dispatcher.errors import ConfigError
from dispatcher.settings import SchedulerSettings
from dispatcher.store.client import Client
from dispatcher.webhooks.delivery import Deliverer
from dispatcher.webhooks.observer import HookObserver
from dispatcher.webhooks.sender import Sender, WebhookConfig

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 2.0

__all__ = ["WebhookConfig", "Webhooks", "webhook_config"]


def webhook_config(
    settings: SchedulerSettings, environ: Mapping[str, str] | None = None
) -> WebhookConfig | None:
    """None when no URL is configured. The signing key and secret default to
    ``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET``, as the API nodes' own pair."""
    env = os.environ if environ is None else environ
    urls = tuple(u for u in (p.strip() for p in settings.webhook_urls.split(",")) if u)
    if not urls:
        return None
    if bad := [u for u in urls if not u.startswith(("http://", "https://"))]:
        raise ConfigError(f"webhook_urls: not an http(s) URL: {', '.join(bad)}")
    key = settings.webhook_api_key or env.get("LIVEKIT_API_KEY", "")
    secret = settings.webhook_api_secret
    if not secret and key == env.get("LIVEKIT_API_KEY"):
        secret = env.get("LIVEKIT_API_SECRET", "")
    if not key or not secret:
        raise ConfigError(
            "webhook_urls needs a signing key: set DISPATCHER_WEBHOOK_API_KEY and "
            "DISPATCHER_WEBHOOK_API_SECRET, or LIVEKIT_API_KEY and LIVEKIT_API_SECRET"
        )
    if settings.webhook_retry_s <= 0:
        raise ConfigError("webhook_retry_s must be positive")
    return WebhookConfig(urls, key, secret, settings.webhook_retry_s)


class Webhooks:
    """A scheduler node's webhooks: an observer and a deliverer per owned partition."""

    def __init__(self, config: WebhookConfig, client: Client, consumer: str) -> None:
        self.sender = Sender(config)
        self._client = client
        self._consumer = consumer
        self._delivering: dict[int, asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()  # stopped ones too, until they end

    def watch(self, partition: int) -> HookObserver:
        """The observer of a partition this node now owns, and its deliverer started
        (replacing any earlier one of the partition)."""
        observer = HookObserver()
        self.stop(partition)
        deliverer = Deliverer(self._client, partition, self._consumer, self.sender, observer.queued)
        task = asyncio.create_task(deliverer.run(), name=f"webhooks-{partition}")
        self._delivering[partition] = task
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return observer

    def stop(self, partition: int) -> None:
        """The partition is no longer ours: its deliverer stops where it is (an unacked
        batch is sent again by the next holder)."""
        if (task := self._delivering.pop(partition, None)) is not None:
            task.cancel()

    async def aclose(self) -> None:
        for partition in list(self._delivering):
            self.stop(partition)
        if tasks := list(self._running):
            _, late = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            if late:
                log.warning("%d webhook deliverer(s) did not stop in time", len(late))
        await self.sender.aclose()
