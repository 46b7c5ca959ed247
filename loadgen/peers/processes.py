"""The step's subprocesses: a peer's worker and its enqueuer, each optionally pinned to CPUs.

Both are ``python -m loadgen.peers.cli <peer> ...``, prefixed with ``taskset -c <cpus>``
when CPUs are given (taskset execs the interpreter, so the pid is the peer's own). Output
goes to log files whose tail ends up in the ``PeerError`` when something does not start.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import psutil

from loadgen.peers.schedule import GO, READY, EnqueueStats

STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 30
_STDOUT_LIMIT = 1 << 24  # the stats line lists failed indices: allow long lines


class PeerError(RuntimeError):
    """A peer's worker or enqueuer did not start, died, or did not answer in time."""


def peer_argv(peer: str, command: str, options: Sequence[str], cpus: str | None) -> list[str]:
    argv = [sys.executable, "-m", "loadgen.peers.cli", peer, command, *options]
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty log)"


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants."""
    process = psutil.Process(pid)
    total = 0.0
    for member in (process, *process.children(recursive=True)):
        times = member.cpu_times()
        total += times.user + times.system
    return total


class WorkerProcess:
    """A peer's worker, stopped with SIGTERM (its graceful shutdown), then SIGKILL."""

    def __init__(self, argv: Sequence[str], log_path: Path) -> None:
        self._argv = list(argv)
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self._argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def check_alive(self) -> None:
        proc = self._require()
        if proc.poll() is not None:
            raise PeerError(
                f"worker exited with code {proc.returncode}; log tail:\n{log_tail(self._log_path)}"
            )

    def cpu_s(self) -> float:
        self.check_alive()
        try:
            return process_tree_cpu_s(self._require().pid)
        except psutil.NoSuchProcess as exc:
            raise PeerError(f"worker exited; log tail:\n{log_tail(self._log_path)}") from exc

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Blocking: SIGTERM, wait up to ``timeout_s``, then SIGKILL."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _require(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("worker not started")
        return self._proc


class EnqueuerProcess:
    """A peer's enqueuer, driven through its stdin/stdout hand-shake (see schedule.py)."""

    def __init__(self, argv: Sequence[str], log_path: Path) -> None:
        self._argv = list(argv)
        self._log_path = log_path
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self._log_path.open("wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=_STDOUT_LIMIT,
            )

    async def wait_ready(self, timeout_s: float) -> None:
        """Until the enqueuer has sent its warm-up jobs."""
        await self._read_line(lambda line: line == READY, "its warm-up", timeout_s)

    async def go(self) -> None:
        stdin = self._require().stdin
        assert stdin is not None
        stdin.write(f"{GO}\n".encode())
        await stdin.drain()

    async def stats(self, timeout_s: float) -> EnqueueStats:
        """The stats line the enqueuer prints at the end of its schedule."""
        line = await self._read_line(lambda line: line.startswith("{"), "its stats", timeout_s)
        await self._require().wait()
        return msgspec.json.decode(line, type=EnqueueStats)

    async def kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def _read_line(self, wanted: Callable[[str], bool], what: str, timeout_s: float) -> str:
        stdout = self._require().stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                raw = await asyncio.wait_for(stdout.readline(), deadline - time.monotonic())
            except TimeoutError:
                raise PeerError(
                    self._failure(f"did not report {what} in {timeout_s:g} s")
                ) from None
            if not raw:
                raise PeerError(self._failure(f"exited before reporting {what}"))
            line = raw.decode(errors="replace").strip()
            if wanted(line):
                return line

    def _failure(self, what: str) -> str:
        return f"enqueuer {what}; log tail:\n{log_tail(self._log_path)}"

    def _require(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise RuntimeError("enqueuer not started")
        return self._proc
