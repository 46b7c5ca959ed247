"""loadgen's ``python -m`` entry points: one CLI style (click), the options and defaults the
docs and BENCHMARKS.md cite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from loadgen import connect_bench, leases, trivial, trivial_stack
from loadgen.peers import cli as peers_cli

ROOT = Path(__file__).parents[2]


def defaults(command: click.Command, *path: str) -> dict[str, Any]:
    """Each option's default, by its longest flag (of a subcommand when ``path`` names it)."""
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return {
        max(param.opts, key=len): "required" if param.required else param.default
        for param in command.params
        if isinstance(param, click.Option)
    }


@pytest.mark.parametrize(
    ("command", "path", "expected"),
    [
        (
            leases.main,
            (),
            {"--redis-url": "required", "--partitions": 64, "--duration": 30.0,
             "--every-ms": 5.0},
        ),
        (trivial.main, (), {"--host": "127.0.0.1", "--port": 7990}),
        (trivial_stack.main, (), {"--host": "127.0.0.1", "--port": 7991}),
        (connect_bench.main, (), {"--repeats": 3, "--step-duration": 10.0, "--json": None}),
        (
            peers_cli.main,
            ("worker",),
            {"--redis-url": "required", "--variant": "required", "--run-id": "required",
             "--capacity": "required"},
        ),
        (
            peers_cli.main,
            ("enqueue",),
            {"--redis-url": "required", "--variant": "required", "--run-id": "required",
             "--rate": "required", "--duration": "required", "--warmup": 5},
        ),
    ],
)  # fmt: skip
def test_each_entry_point_keeps_its_options_and_defaults(
    command: click.Command, path: tuple[str, ...], expected: dict[str, Any]
) -> None:
    assert defaults(command, *path) == expected


@pytest.mark.parametrize(
    "module", ["leases", "trivial", "trivial_stack", "connect_bench", "peers.cli"]
)
def test_python_dash_m_runs_each_entry_point(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"loadgen.{module}", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: python -m loadgen.{module} ")


def test_connect_bench_passes_options_it_does_not_know_to_loadgen_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[int, list[str]]] = []

    async def run_bench(repeats: int, common: list[str]) -> tuple[list[Any], list[Any]]:
        seen.append((repeats, common))
        return [], []

    monkeypatch.setattr(connect_bench, "run_bench", run_bench)
    args = ["--repeats", "2", "--rate", "500", "--pin", "--step-duration", "5"]
    result = CliRunner().invoke(connect_bench.main, args)
    assert result.exit_code == 0, result.output
    assert seen == [(2, ["--step-duration", "5.0", "--no-progress", "--rate", "500", "--pin"])]


def test_a_peer_command_refuses_an_unknown_peer() -> None:
    result = CliRunner().invoke(peers_cli.main, ["nope", "worker", "--help"])
    assert result.exit_code == 2
    assert "'nope' is not one of" in result.output


def test_the_parser_benchmark_runs_and_both_parsers_agree() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadgen.parse_bench", "--responses", "40", "--repeats", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    cases = {
        f"{kind}/{pattern}"
        for kind in ("dispatch", "join", "mixed")
        for pattern in ("whole", "split")
    }
    assert cases <= figures.keys()
    assert all(figures[case]["httptools"] > 0 for case in cases)
