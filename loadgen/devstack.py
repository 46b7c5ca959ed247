"""``--dev``: the whole system on this machine, started by loadgen itself.

A redis-server and ``dispatcher dev`` (API node, scheduler and demo agent in one process),
each its own process so their CPU can be read separately. ``cpus`` / ``redis_cpus`` pin them
with ``taskset``, as the benchmark suite does (Redis on one core, everything else on the
other).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from dispatcher.localredis import LocalRedis, free_port

READY_TIMEOUT_S = 30.0

#: What a stack runs: the argv of the server process, given its port and the Redis URL.
ServerCommand = Callable[[int, str], list[str]]


def dev_command(port: int, redis_url: str) -> list[str]:
    """``dispatcher dev``: API node, scheduler and demo agent in one process."""
    dev = [sys.executable, "-m", "dispatcher.cli", "dev", "--port", str(port)]
    return [*dev, "--redis-url", redis_url]


class DevStackError(RuntimeError):
    """The local system did not come up."""


class DevStack:
    """Start with ``start()``, stop with ``stop()``; ``url`` and ``redis_url`` locate it."""

    def __init__(
        self,
        *,
        cpus: str | None = None,
        redis_cpus: str | None = None,
        redis: LocalRedis | None = None,
        role: str = "dispatcher",
        command: ServerCommand = dev_command,
    ) -> None:
        """``redis``: use this server (left running on stop) instead of starting one.
        ``command`` runs another server in place of ``dispatcher dev`` (it must answer
        ``GET /readyz``); ``role`` names its process in ``pids``."""
        self._cpus = cpus
        self._redis_cpus = redis_cpus
        self._own_redis = redis is None
        self._redis = redis
        self._role = role
        self._command = command
        self._process: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def redis_url(self) -> str:
        assert self._redis is not None, "start() first"
        return self._redis.url

    @property
    def pids(self) -> dict[str, int]:
        """The processes whose CPU counts as the dispatcher's (and Redis's)."""
        assert self._redis is not None and self._process is not None, "start() first"
        return {self._role: self._process.pid, "redis": self._redis.pid}

    def start(self) -> None:
        if self._redis is None:
            self._redis = LocalRedis(cpus=self._redis_cpus)
        pin = ["taskset", "-c", self._cpus] if self._cpus else []
        self._process = subprocess.Popen(
            [*pin, *self._command(self.port, self._redis.url)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise DevStackError(f"{self._role} exited with {self._process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        raise DevStackError(f"{self._role} not ready after {READY_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # drain, as a Ctrl-C would
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._redis is not None and self._own_redis:
            self._redis.stop()
