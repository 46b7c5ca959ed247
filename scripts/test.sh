#!/usr/bin/env bash
# Lint, type-check and run the test suite; extra arguments go to pytest,
# e.g. scripts/test.sh -m "not e2e" -x
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { printf 'test.sh: error: %s\n' "$*" >&2; exit 1; }
step() { printf '==> %s\n' "$*"; }

[[ -x .venv/bin/pytest ]] || die ".venv is missing or incomplete; run scripts/setup.sh first"
command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 ||
  die "redis-server/redis-cli not found; run scripts/setup.sh first"

step "ruff check ."
.venv/bin/ruff check .
step "ruff format --check ."
.venv/bin/ruff format --check .
step "mypy"
.venv/bin/mypy
step "pytest -q $*"
.venv/bin/pytest -q "$@"
