"""POSTing a webhook event to every configured URL until each answers 2xx or the event's
retry time is over: one ``Sender`` per scheduler node, shared by its partitions'
deliverers."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from dispatcher.errors import describe
from dispatcher.webhooks import events, signing
from dispatcher.webhooks.config import WebhookConfig
from dispatcher.wire import Hook

log = logging.getLogger(__name__)
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
REQUEST_TIMEOUT_S = 10.0
PER_URL = 32  # requests in flight to one URL from one node
_LOG_EVERY_S = 5.0  # one line per URL per this while it keeps failing


class Sender:
    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.delivered = 0  # events a URL accepted
        self.dropped = 0  # events a URL never accepted before their retry time ran out
        # Per URL: dropped since the last event it accepted, reported in the next one's
        # ``numDropped`` as LiveKit does.
        self._unreported = dict.fromkeys(config.urls, 0)
        self._in_flight = {url: asyncio.Semaphore(PER_URL) for url in config.urls}
        self._last_log: dict[tuple[str, bool], float] = {}
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, hook: Hook) -> None:
        """Returns once every URL accepted the event or gave up on it."""
        await asyncio.gather(*(self._to(url, hook) for url in self.config.urls))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _to(self, url: str, hook: Hook) -> None:
        """Policy: retried with backoff (0.5 s doubling to 10 s) until a 2xx; dropped
        (logged and counted) once the event is ``retry_s`` old, tried or not, so a
        receiver that hangs cannot make the stream grow past ``retry_s`` of events."""
        delay = FIRST_BACKOFF_S
        deadline = hook.created_at + int(self.config.retry_s * 1e9)
        failure: str | None = "not sent before its retry time ran out"
        while time.time_ns() < deadline:
            reported = self._unreported[url]
            failure = await self._post(url, events.body(hook, reported))
            if failure is None:
                self._unreported[url] -= reported
                self.delivered += 1
                return
            self._log(url, f"webhooks to {url} failing ({failure}); retrying")
            await asyncio.sleep(max(0.0, min(delay, (deadline - time.time_ns()) / 1e9)))
            delay = min(delay * 2, MAX_BACKOFF_S)
        self._unreported[url] += 1
        self.dropped += 1
        self._log(url, f"webhook {hook.event} ({hook.id}) to {url} dropped: {failure}", drop=True)

    async def _post(self, url: str, body: bytes) -> str | None:
        """None when the URL accepted the event, else why not."""
        headers = {
            "Authorization": signing.authorization(
                body, self.config.api_key, self.config.api_secret, int(time.time())
            ),
            "Content-Type": signing.CONTENT_TYPE,
        }
        async with self._in_flight[url]:
            try:
                async with self._client().post(url, data=body, headers=headers) as response:
                    await response.read()  # read to the end, so the connection is kept
                    if 200 <= response.status < 300:
                        return None
                    return f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                return describe(exc)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made in the running loop, at first use
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    def _log(self, url: str, line: str, *, drop: bool = False) -> None:
        """One line per URL and kind every few seconds, however many events fail."""
        key = (url, drop)
        now = time.monotonic()
        if now - self._last_log.get(key, float("-inf")) >= _LOG_EVERY_S:
            self._last_log[key] = now
            log.warning("%s", line)
