"""loadgen ships with the package, its dependencies with the ``loadgen`` extra only."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from loadgen import EXTRA_MODULES

ROOT = Path(__file__).parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    """Distribution names, without versions, markers or extras."""
    cut = str.maketrans(dict.fromkeys("<>=!~[;", " "))
    return {req.translate(cut).split()[0].lower() for req in requirements}


def run_blocking_extra(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter in which the extra's modules cannot be imported."""
    block = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in EXTRA_MODULES)
    return subprocess.run(
        [sys.executable, "-c", block + code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_the_loadgen_extra_is_not_a_core_dependency() -> None:
    extras = PROJECT["optional-dependencies"]
    assert "hdrhistogram" in names(extras["loadgen"])
    assert not names(extras["loadgen"]) & names(PROJECT["dependencies"])
    # what tests and benchmarks need comes with dev (scripts/setup.sh installs .[dev])
    assert "agent-dispatcher" in names(extras["dev"])
    assert any("[loadgen]" in req for req in extras["dev"])


def test_every_product_module_imports_without_the_loadgen_extra() -> None:
    done = run_blocking_extra(
        "import importlib, pkgutil\n"
        "for package in ('dispatcher', 'workers'):\n"
        "    root = importlib.import_module(package)\n"
        "    for found in pkgutil.walk_packages(root.__path__, package + '.'):\n"
        "        importlib.import_module(found.name)\n"
        "print('imported')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"


def test_loadgen_without_its_extra_says_how_to_install_it() -> None:
    done = run_blocking_extra("import loadgen.cli")
    assert done.returncode != 0
    last_line = done.stderr.strip().splitlines()[-1]
    assert "pip install 'agent-dispatcher[loadgen]'" in last_line
