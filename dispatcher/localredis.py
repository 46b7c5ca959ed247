"""A throwaway redis-server for dev mode: free loopback port, nothing left on disk, stopped on
exit and even when its parent is killed."""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from dispatcher.errors import ConfigError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends it SIGTERM when its parent dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRedis:
    """A throwaway redis-server on a free loopback port; ``cpus`` pins it (``taskset``)."""

    def __init__(self, cpus: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError("redis-server not found: run scripts/setup.sh, or pass --redis-url")
        # Redis works in this folder but writes nothing there (no RDB, no AOF): the folder is
        # removed as soon as Redis is up, so a parent killed with SIGKILL leaves none behind.
        # Its log goes to a file without a name, gone once both processes close it.
        self._dir = Path(tempfile.mkdtemp(prefix="dispatcher-redis-"))
        self._log = tempfile.TemporaryFile()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        pin = ["taskset", "-c", cpus] if cpus else []
        args = [
            *pin,
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self._dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            "",
        ]
        # Own session: a Ctrl-C in the terminal must not stop Redis before the drain is done.
        # And it dies with its parent, even one killed with SIGKILL.
        self._process = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            self._wait_ready()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    @property
    def pid(self) -> int:
        return self._process.pid

    def _wait_ready(self, timeout_s: float = 10.0) -> None:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise ConfigError(f"redis-server did not start on port {self.port}: {self._last_words()}")

    def _last_words(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "it printed nothing"

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
