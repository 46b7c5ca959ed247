"""A scheduler given webhook URLs but no key to sign them with stops at once, saying why,
rather than waiting for Redis first."""

from __future__ import annotations

import subprocess

from tests.e2e.procs import DISPATCHER, env


def test_webhook_urls_without_a_signing_key_stop_the_scheduler_at_start() -> None:
    variables = env(
        DISPATCHER_REDIS_URL="redis://127.0.0.1:1",  # nothing listens: it must not wait
        DISPATCHER_WEBHOOK_URLS="http://127.0.0.1:1/hooks",
    )
    for name in ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        variables.pop(name, None)

    done = subprocess.run(
        [DISPATCHER, "scheduler"], env=variables, capture_output=True, text=True, timeout=30
    )

    assert done.returncode == 1
    assert "webhook_urls needs a signing key" in done.stderr
