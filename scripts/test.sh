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
if [[ $# -gt 0 ]]; then
  step "pytest -q $*"
  exec .venv/bin/pytest -q "$@"
fi

# The fault suite mostly waits (its processes run at 30 dispatches/s and hold jobs for
# seconds: half a core on average), so it runs beside the rest, which is CPU-bound: 8.5
# minutes instead of 13 on two cores. Tests marked solo measure a node under a flood that
# a concurrent run would fake, so they run alone, after both.
faults_log="$(mktemp)"
faults_pid=""
trap '[[ -n $faults_pid ]] && kill "$faults_pid" 2>/dev/null; rm -f "$faults_log"' EXIT
step "pytest -q -m faults (in the background) and pytest -q -m 'not faults and not solo'"
.venv/bin/pytest -q -p no:cacheprovider -m faults >"$faults_log" 2>&1 &
faults_pid=$!
rest=0
.venv/bin/pytest -q -m "not faults and not solo" || rest=$?
faults=0
wait "$faults_pid" || faults=$?
faults_pid=""
step "the fault suite's output"
cat "$faults_log"
step "pytest -q -m solo"
solo=0
.venv/bin/pytest -q -m solo || solo=$?
printf '==> exit codes: rest %d, faults %d, solo %d\n' "$rest" "$faults" "$solo"
(( rest == 0 && faults == 0 && solo == 0 ))
