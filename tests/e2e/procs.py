"""Real processes for end-to-end tests: each role started as its own ``dispatcher`` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.stack import API_KEY, API_SECRET

DISPATCHER = str(Path(sys.executable).with_name("dispatcher"))


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    return {**base, "DISPATCHER_API_KEYS": f"{API_KEY}:{API_SECRET}", **extra}


@contextmanager
def processes(
    commands: Sequence[Sequence[str]], log_dir: Path, **extra_env: str
) -> Iterator[list[Path]]:
    """Start each command with its output in a log file; SIGTERM (then kill) all at exit."""
    with started(commands, log_dir, **extra_env):
        yield [log_dir / f"proc-{i}.log" for i in range(len(commands))]


@contextmanager
def started(
    commands: Sequence[Sequence[str]], log_dir: Path, **extra_env: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``processes``, yielding the processes themselves (to kill one, say)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, command in enumerate(commands):
            with (log_dir / f"proc-{i}.log").open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [DISPATCHER, *command],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env(**extra_env),
                    )
                )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")
