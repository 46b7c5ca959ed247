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

from dispatcher.store.client import Client
from dispatcher.webhooks.config import WebhookConfig, webhook_config
from dispatcher.webhooks.delivery import Deliverer
from dispatcher.webhooks.observer import HookObserver
from dispatcher.webhooks.sender import Sender

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 2.0

__all__ = ["WebhookConfig", "Webhooks", "webhook_config"]


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
