"""Which webhooks a scheduler sends, from its settings: read at start-up by every scheduler,
so it imports nothing of the delivery (its HTTP client among them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from dispatcher.errors import ConfigError
from dispatcher.settings import SchedulerSettings


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    urls: tuple[str, ...]
    api_key: str  # signs: the token's ``iss``
    api_secret: str
    retry_s: float  # an event not delivered this long after it happened is dropped


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
