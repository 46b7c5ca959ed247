#!/usr/bin/env bash
# Prepare a Debian/Ubuntu machine for development and tests:
#   * redis-server + redis-cli (apt packages redis-server, redis-tools); the
#     tests start their own servers, so the system service is stopped again;
#   * Python 3.11+ and a virtualenv in .venv with the project and its dev tools;
#   * Node.js and the npm packages of the Node agent the end-to-end tests run;
#   * Chromium (apt package chromium), which the dashboard test drives headless.
# Idempotent: when everything is in place a run takes a fraction of a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '==> %s\n' "$*"; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
fi
APT_UPDATED=0

apt_install() {
  command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found; install these packages by hand: $*"
  if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
    die "need root or sudo to install: $*"
  fi
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# --- Redis -------------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  apt_install redis-server redis-tools
  # The package may start a system redis on :6379; our tools spawn their own.
  "${SUDO[@]}" service redis-server stop >/dev/null 2>&1 ||
    "${SUDO[@]}" systemctl stop redis-server >/dev/null 2>&1 || true
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 ||
    die "redis-server/redis-cli still not on PATH after installing redis-server redis-tools"
fi
redis_version="$(redis-server --version | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')"
if [[ -n $redis_version && ${redis_version%%.*} -lt 7 ]]; then
  printf 'setup.sh: warning: redis-server %s found; the project targets Redis 7+\n' \
    "$redis_version" >&2
fi

# --- Python 3.11+ ------------------------------------------------------------
py_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

if ! command -v python3 >/dev/null 2>&1; then
  apt_install python3 python3-venv
fi
PY=""
for candidate in python3 python3.13 python3.12 python3.11; do
  if command -v "$candidate" >/dev/null 2>&1 && py_ok "$candidate"; then
    PY="$(command -v "$candidate")"
    break
  fi
done
[[ -n $PY ]] || die "Python 3.11+ is required, but python3 is $(python3 -V 2>&1 | cut -d' ' -f2);" \
  "install python3.11 (or newer) with its venv module and re-run"
PY_VER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# --- virtualenv + project ----------------------------------------------------
VENV="$ROOT/.venv"
STAMP="$VENV/.installed"
if ! [[ -x $VENV/bin/python && -x $VENV/bin/pip ]] || ! py_ok "$VENV/bin/python"; then
  if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
    if [[ $(basename "$PY") == python3 ]]; then
      apt_install python3-venv
    else
      apt_install "python$PY_VER-venv"
    fi
  fi
  log "creating .venv with $PY (Python $PY_VER)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi

if [[ ! -f $STAMP || pyproject.toml -nt $STAMP ]]; then
  log "pip install -e '.[dev]'"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$STAMP"
fi

# --- Node.js + the Node agent of the end-to-end tests (@livekit/agents) ---------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
NODE_AGENT="$ROOT/tests/e2e/node_agent"
if [[ ! -f $NODE_AGENT/node_modules/.installed ||
      $NODE_AGENT/package-lock.json -nt $NODE_AGENT/node_modules/.installed ]]; then
  log "npm ci in tests/e2e/node_agent"
  npm ci --prefix "$NODE_AGENT" --no-audit --no-fund --loglevel=error
  touch "$NODE_AGENT/node_modules/.installed"
fi

# --- Chromium: the dashboard's test drives a real headless browser ---------------------
if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium
fi

log "ready: $(redis-server --version | cut -d' ' -f1-3), $("$VENV/bin/python" -V) in .venv," \
  "node $(node --version)"
