#!/usr/bin/env bash
# Build the project's image on a machine with no container registry and no Docker engine:
#   1. a Debian rootfs with python3 and venv, made by debootstrap from the machine's own
#      apt mirror (cached as a tarball: later builds skip this step);
#   2. imported into podman as the base image;
#   3. the real Dockerfile built over it (BASE=that image), with podman.
# Usage: scripts/build_image.sh [IMAGE]      (default agent-dispatcher:0.1.0)
# Where a registry is reachable, `docker build .` with the default BASE does the same.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${1:-agent-dispatcher:0.1.0}"
SUITE="${DISPATCHER_IMAGE_SUITE:-bookworm}"
CACHE="${DISPATCHER_IMAGE_CACHE:-/var/cache/agent-dispatcher}"
BASE_IMAGE="localhost/dispatcher-base:$SUITE"
# This sandbox refuses crun and the default ulimits; runc with explicit limits works.
PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)
LIMITS=(--ulimit nofile=1024:20000 --ulimit nproc=4096:4096)

log() { printf '==> %s\n' "$*"; }
die() { printf 'build_image.sh: error: %s\n' "$*" >&2; exit 1; }

missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "need root to install: ${missing[*]} (and buildah)"
  log "apt-get install podman buildah runc debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman buildah runc debootstrap
fi

mirror() {
  # The first Debian archive this machine's apt uses (deb822 or one-line sources).
  local uri
  uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' |
    grep -v security | head -1)"
  [[ -n $uri ]] || uri="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -1)"
  [[ -n $uri ]] || die "no Debian mirror in /etc/apt/sources.list*"
  printf '%s\n' "$uri"
}

if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
  tarball="$CACHE/rootfs-$SUITE.tar"
  if [[ ! -s $tarball ]]; then
    mkdir -p "$CACHE"
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap $SUITE (python3, python3-venv) from $(mirror)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      "$SUITE" "$rootfs" "$(mirror)" >"$CACHE/debootstrap.log" 2>&1 ||
      die "debootstrap failed; see $CACHE/debootstrap.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # The image's apt must reach the same mirror as this machine's.
    printf 'deb %s %s main\n' "$(mirror)" "$SUITE" >"$rootfs/etc/apt/sources.list"
    tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  fi
  log "podman import $tarball as $BASE_IMAGE"
  "${PODMAN[@]}" import "$tarball" "$BASE_IMAGE" >/dev/null
fi

# pip inside the build trusts what pip here trusts (a proxy's CA, if this machine has one).
CA="${PIP_CERT:-${REQUESTS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}}"
secret=()
[[ -s $CA ]] && secret=(--secret "id=ca,src=$CA")
log "podman build -t $IMAGE (BASE=$BASE_IMAGE)"
"${PODMAN[@]}" build --isolation chroot "${LIMITS[@]}" --network host "${secret[@]}" \
  --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE" "$ROOT"
"${PODMAN[@]}" image prune -f >/dev/null  # the previous build's layers, now untagged
log "built $IMAGE"
