"""Which webhook configuration a scheduler runs with (dispatcher.webhooks.webhook_config)."""

from __future__ import annotations

import pytest

from dispatcher.errors import ConfigError
from dispatcher.settings import SchedulerSettings, load
from dispatcher.webhooks.config import WebhookConfig, webhook_config

URLS = "http://a.example/hooks, https://b.example/hooks"
LIVEKIT = {"LIVEKIT_API_KEY": "lk", "LIVEKIT_API_SECRET": "lk-secret"}


def settings(**environ: str) -> SchedulerSettings:
    return load(SchedulerSettings, environ=environ)


def test_no_url_means_no_webhooks() -> None:
    assert webhook_config(settings(), LIVEKIT) is None


def test_urls_key_secret_and_retry_come_from_the_settings() -> None:
    s = settings(
        DISPATCHER_WEBHOOK_URLS=URLS,
        DISPATCHER_WEBHOOK_API_KEY="k",
        DISPATCHER_WEBHOOK_API_SECRET="s",
        DISPATCHER_WEBHOOK_RETRY_S="30",
    )

    assert webhook_config(s, LIVEKIT) == WebhookConfig(
        ("http://a.example/hooks", "https://b.example/hooks"), "k", "s", 30.0
    )


def test_the_livekit_pair_signs_by_default() -> None:
    config = webhook_config(settings(DISPATCHER_WEBHOOK_URLS=URLS), LIVEKIT)

    assert config is not None and (config.api_key, config.api_secret) == ("lk", "lk-secret")


def test_another_key_does_not_take_the_livekit_secret() -> None:
    s = settings(DISPATCHER_WEBHOOK_URLS=URLS, DISPATCHER_WEBHOOK_API_KEY="other")

    with pytest.raises(ConfigError, match="signing key"):
        webhook_config(s, LIVEKIT)


def test_urls_without_a_key_are_a_start_up_error() -> None:
    with pytest.raises(ConfigError, match="signing key"):
        webhook_config(settings(DISPATCHER_WEBHOOK_URLS=URLS), {})


def test_a_url_that_is_not_http_is_refused() -> None:
    s = settings(DISPATCHER_WEBHOOK_URLS="ftp://x/hooks")

    with pytest.raises(ConfigError, match="not an http"):
        webhook_config(s, LIVEKIT)
