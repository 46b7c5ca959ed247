"""The README's examples, run as written against dev mode, in the order a reader meets them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from dispatcher.localredis import free_port
from dispatcher.settings import DEV_API_KEY, DEV_API_SECRET
from tests.e2e.procs import env, processes, wait_http

ROOT = Path(__file__).resolve().parents[2]
README_PORT = "7880"  # the port the README's examples name
BIN = str(Path(sys.executable).parent)


def _blocks(language: str) -> list[str]:
    """The README's fenced blocks of ``language``, in order."""
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.S | re.M)


def _as_here(block: str, port: int) -> str:
    """A block pointed at this test's dev mode and interpreter."""
    return block.replace(f":{README_PORT}", f":{port}").replace(".venv/bin", BIN)


def _run(args: list[str], **extra_env: str) -> str:
    done = subprocess.run(
        args, cwd=ROOT, env=env(**extra_env), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{args[:2]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_readme_examples_run_as_written_against_dev_mode(tmp_path: Path) -> None:
    sh, python = _blocks("sh"), _blocks("python")
    quick_start, rooms = sh[2], sh[3]  # after the set-up and test commands
    assert "dispatch create" in quick_start and "token create" in rooms
    port = free_port()
    with processes([["dev", "--port", str(port), "--metrics-port", "0"]], tmp_path) as logs:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=30)
        # One shell, as a reader's: the quick start's exports serve the rooms example too.
        script = _as_here(quick_start + rooms, port)
        out = _run(["bash", "-euo", "pipefail", "-c", script])
        assert "JS_RUNNING" in out and '"deletedAt": "0"' in out  # listed, then deleted
        assert '"workerId": "AW_' in out
        assert 'metadata: {"user_id": "12345"}' in logs[0].read_text()  # the entrypoint's
        assert '"tokenAgents": "applied"' in out and '"deleted": true' in out

        credentials = {
            "LIVEKIT_URL": f"http://127.0.0.1:{port}",
            "LIVEKIT_API_KEY": DEV_API_KEY,
            "LIVEKIT_API_SECRET": DEV_API_SECRET,
        }
        listed = _run([sys.executable, "-c", _as_here(python[0], port)], **credentials)
        assert "test-agent" in listed

        missing = subprocess.run(
            [f"{BIN}/dispatcher", "dispatch", "delete", "--id", "AD_missing", "--room", "my-room"],
            env=env(**credentials), capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert missing.returncode == 1, "a CLI error exits non-zero"
        assert "not_found: dispatch ID not found" in missing.stderr
