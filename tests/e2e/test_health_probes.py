"""The probes of the roles without an HTTP API (scheduler, agent server), as real processes:
alive without Redis, ready only while Redis answers, and started once Redis comes up."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.procs import DISPATCHER, env, wait_http
from tests.k8s.test_parity import free_port, readiness
from tests.redis_servers import RedisServer
from tests.redis_servers import free_port as free_redis_port

ROLES = {
    "scheduler": ["scheduler"],
    "agent": ["agent", "dispatcher.demo_agent:server"],
}


def wait_readiness(base: str, status: int, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while (seen := readiness(base))[0] != status:
        assert time.monotonic() < deadline, f"{base}: still {seen}"
        time.sleep(0.1)
    return seen[1]


@pytest.mark.parametrize("name", ROLES)
def test_a_role_waits_for_redis_then_is_ready_only_while_redis_answers(
    name: str, tmp_path: Path
) -> None:
    redis = RedisServer(port=free_redis_port(), name=f"late-{name}")  # not started yet
    port = free_port()
    variables = env(
        DISPATCHER_REDIS_URL=redis.url,
        DISPATCHER_HEALTH_HOST="127.0.0.1",
        DISPATCHER_HEALTH_PORT=str(port),
    )
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "role.log").open("wb") as log:
        proc = subprocess.Popen(
            [DISPATCHER, *ROLES[name]], env=variables, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_http(base + "/healthz")  # alive, though Redis is not there
        status, text = readiness(base)
        assert status == 503 and text.startswith("not ready: starting"), text
        redis.start()
        wait_readiness(base, 200)
        redis.kill()
        reason = wait_readiness(base, 503, timeout_s=10)
        assert "Redis unavailable?" in reason and "127.0.0.1" not in reason
        wait_http(base + "/healthz")  # still alive: a Redis outage restarts no pod
        redis.start()
        wait_readiness(base, 200)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        redis.stop()
    assert "waiting for Redis" in (tmp_path / "role.log").read_text()
