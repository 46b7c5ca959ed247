"""``dispatcher dev`` and the CLI client, as a user runs them."""

from __future__ import annotations

import json
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


def test_dev_mode_runs_a_dispatch_created_from_the_cli(tmp_path: Path) -> None:
    port = free_port()
    with processes([["dev", "--port", str(port)]], tmp_path) as logs:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        metadata = '{"user_id": "12345"}'
        created = _cli(
            port,
            "dispatch",
            "create",
            "--agent-name",
            "test-agent",
            "--room",
            "my-room",
            "--metadata",
            metadata,
        )
        assert created.returncode == 0, created.stderr
        deadline, status = time.monotonic() + 20, ""
        while time.monotonic() < deadline and status != "JS_RUNNING":
            listed = json.loads(_cli(port, "dispatch", "list", "--room", "my-room").stdout)
            jobs = listed["agentDispatches"][0]["state"].get("jobs", [])
            status = jobs[-1]["state"].get("status", "") if jobs else ""
            time.sleep(0.1)
        assert status == "JS_RUNNING"
        assert jobs[-1]["state"]["workerId"].startswith("AW_")
        assert metadata in logs[0].read_text()


def test_cli_errors_print_the_twirp_code_and_exit_non_zero(tmp_path: Path) -> None:
    port = free_port()
    with processes([["dev", "--port", str(port)]], tmp_path):
        wait_http(f"http://127.0.0.1:{port}/readyz")
        result = _cli(port, "dispatch", "delete", "--id", "AD_missing", "--room", "my-room")
        assert result.returncode == 1
        assert "not_found: dispatch ID not found" in result.stderr


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
        assert joined["room"]["created"] and joined["token_agents"] == "applied"
        second = json.loads(_cli(port, "join", "--token", tokens[1]).stdout)
        assert not second["room"]["created"] and second["token_agents"] == "ignored"
        rooms = json.loads(_cli(port, "room", "list", "cli-room").stdout)
        assert rooms["rooms"][0]["numParticipants"] == 2
        started = f"in room cli-room, metadata: {metadata}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and started not in logs[0].read_text():
            time.sleep(0.1)
        time.sleep(0.5)  # room for a duplicate to show up, were there one
        assert logs[0].read_text().count(started) == 1
