"""A real LiveKit agent worker process and what it recorded (every job start and end, as
JSON lines): the Python one (``livekit-agents``, ``tests/e2e/livekit_agent.py start``) or
the Node one (``@livekit/agents``, ``node tests/e2e/node_agent/agent.mjs start``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispatcher.localredis import free_port
from tests.stack import API_KEY, API_SECRET

AGENT = Path(__file__).with_name("livekit_agent.py")
NODE_AGENT = Path(__file__).with_name("node_agent") / "agent.mjs"
COMMANDS = {
    "python": [sys.executable, str(AGENT), "start"],
    "node": ["node", str(NODE_AGENT), "start"],
}
_PROXIES = {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"}


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    record: Path
    log: Path

    def events(self, event: str = "started") -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        lines = self.record.read_text().splitlines()
        return [e for e in map(json.loads, lines) if e["event"] == event]

    def started(self, metadata: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["metadata"] == metadata]

    def ended(self, metadata: str) -> list[dict[str, Any]]:
        return [e for e in self.events("ended") if e["metadata"] == metadata]

    def registrations(self) -> int:
        return self.log.read_text().count('"registered worker"') if self.log.exists() else 0

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)


@contextmanager
def livekit_worker(
    url: str, tmp: Path, agent_name: str = "test-agent", sdk: str = "python"
) -> Iterator[Worker]:
    """The worker, connected to ``url`` with the test key; killed at exit if still running."""
    name = f"{sdk}-{agent_name or 'automatic'}"
    env = {k: v for k, v in os.environ.items() if k not in _PROXIES}
    env |= {
        "LIVEKIT_URL": url,
        "LIVEKIT_API_KEY": API_KEY,
        "LIVEKIT_API_SECRET": API_SECRET,
        "AGENT_NAME": agent_name,
        "AGENT_RECORD": str(tmp / f"{name}.jsonl"),
        "AGENT_HEALTH_PORT": str(free_port()),
    }
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            COMMANDS[sdk],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its forkserver and job processes share its group
        )
    worker = Worker(process, tmp / f"{name}.jsonl", log)
    try:
        yield worker
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
