"""``dispatcher dev`` and the CLI client, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from dispatcher.localredis import free_port
from tests.e2e.procs import DISPATCHER, env, processes, wait_http
from tests.stack import API_KEY, API_SECRET


def _cli(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    client_env = env(
        LIVEKIT_URL=f"http://127.0.0.1:{port}",
        LIVEKIT_API_KEY=API_KEY,
        LIVEKIT_API_SECRET=API_SECRET,
    )
    return subprocess.run(
        [DISPATCHER, *args], capture_output=True, text=True, env=client_env, timeout=30, check=False
    )


def test_a_join_token_from_the_cli_sends_its_agent_once(tmp_path: Path) -> None:
    port = free_port()
    with processes([["dev", "--port", str(port)]], tmp_path) as logs:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        metadata = '{"user_id": "12345"}'
        tokens = [
            _cli(
                port,
                "token", "create", "--identity", identity, "--room", "cli-room", "--join",
                "--agent", "test-agent", "--metadata", metadata,
            ).stdout.strip()
            for identity in ("alice", "bob")
        ]  # fmt: skip
        first = _cli(port, "join", "--token", tokens[0])
        assert first.returncode == 0, first.stderr
        joined = json.loads(first.stdout)
        assert joined["room"]["created"] and joined["tokenAgents"] == "applied"
        second = json.loads(_cli(port, "join", "--token", tokens[1]).stdout)
        assert not second["room"]["created"] and second["tokenAgents"] == "ignored"
        rooms = json.loads(_cli(port, "room", "list", "cli-room").stdout)
        assert rooms["rooms"][0]["numParticipants"] == 2
        started = f"in room cli-room, metadata: {metadata}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and started not in logs[0].read_text():
            time.sleep(0.1)
        time.sleep(0.5)  # room for a duplicate to show up, were there one
        assert logs[0].read_text().count(started) == 1


def test_dev_mode_listens_on_loopback_refuses_a_taken_port_and_takes_its_redis_along(
    tmp_path: Path,
) -> None:
    version = subprocess.run([DISPATCHER, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("dispatcher, version ")
    port = free_port()
    temp = tmp_path / "temp"  # dev mode's temporary folders, if it leaves any
    temp.mkdir()
    with processes([["dev", "--port", str(port)]], tmp_path, TMPDIR=str(temp)) as logs:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        assert _listening_addresses(port) == {"127.0.0.1"}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "dispatcher dev is up" not in logs[0].read_text():
            time.sleep(0.1)
        out = logs[0].read_text()
        assert f"http://127.0.0.1:{port}" in out and "loaded 0 active jobs" not in out
        redis_port = int(re.search(r"Redis\s+redis://127\.0\.0\.1:(\d+)", out).group(1))  # type: ignore[union-attr]

        second = subprocess.run(
            [DISPATCHER, "dev", "--port", str(port)],
            capture_output=True, text=True, env=env(), timeout=60, check=False,
        )  # fmt: skip
        assert second.returncode == 1
        assert "Traceback" not in second.stderr
        assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in second.stderr

        dev = _dev_process(port)
        os.kill(dev, signal.SIGKILL)  # no drain, no cleanup: its Redis must go all the same
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _accepts(redis_port):
            time.sleep(0.1)
        assert not _accepts(redis_port)
        assert list(temp.iterdir()) == []


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (IPv4, /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def _dev_process(port: int) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"dev" in argv and str(port).encode() in argv:
                return int(proc.name)
    raise AssertionError("dev mode's process not found")


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
