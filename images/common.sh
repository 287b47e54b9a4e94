# shellcheck shell=bash
# Shared by the images/ scripts and charts/kind.sh (source it): names, the container tool and
# the base image.
#
# CONTAINER_TOOL is docker or podman; unset: a Docker engine that answers, else podman. The
# images build FROM the public Python image ($BASE_IMAGE). Where it cannot be pulled (this
# workplace has no registry), or with LOCAL_BASE=1, they build on a local Debian base made by
# build-base.sh instead, with this machine's podman settings (local_settings below).
# LOCAL_BASE=0 insists on the public image.

export TICKETING_CACHE="${TICKETING_CACHE:-$HOME/.cache/ticketing}"
IMAGES_CACHE="$TICKETING_CACHE/images"
BASE_IMAGE="${BASE_IMAGE:-docker.io/library/python:3.11-slim-bookworm}"
LOCAL_BASE_IMAGE="localhost/ticketing-python:3.11-bookworm"
IMAGE_PREFIX="${IMAGE_PREFIX:-localhost/ticketing}"
IMAGE_TAG="${IMAGE_TAG:-dev}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Flags of every container tool call, and of builds only (local_settings adds to both).
TOOL_FLAGS=()
BUILD_FLAGS=()

fail() {
  echo "images: $*" >&2
  exit 1
}

# Sets and exports CONTAINER_TOOL. A root Debian host with neither tool (this workplace) gets
# podman from apt, as it builds on the local base.
detect_tool() {
  case ${CONTAINER_TOOL:-} in
    docker | podman)
      command -v "$CONTAINER_TOOL" >/dev/null || fail "CONTAINER_TOOL=$CONTAINER_TOOL is not installed"
      [[ $CONTAINER_TOOL == podman ]] || docker info >/dev/null 2>&1 ||
        fail "CONTAINER_TOOL=docker, but Docker's engine does not answer (docker info); start it"
      ;;
    "")
      if docker info >/dev/null 2>&1; then
        CONTAINER_TOOL=docker
      elif command -v podman >/dev/null; then
        CONTAINER_TOOL=podman
      elif [[ $EUID == 0 && ${LOCAL_BASE:-} != 0 ]] && command -v apt-get >/dev/null; then
        need podman
        CONTAINER_TOOL=podman
      else
        fail "needs Docker (its engine running) or podman: https://docs.docker.com/get-docker/ or https://podman.io/docs/installation"
      fi
      ;;
    *) fail "CONTAINER_TOOL must be docker or podman, not $CONTAINER_TOOL" ;;
  esac
  export CONTAINER_TOOL
}

# (The ${a[@]+...} form expands an empty array under `set -u` in macOS's bash 3.2 too.)
tool() { "$CONTAINER_TOOL" ${TOOL_FLAGS[@]+"${TOOL_FLAGS[@]}"} "$@"; }

# Sets LOCAL_BASE (0 or 1) unless given, then BASE_IMAGE and the local settings. A base
# already in the store decides without a pull; else one pull of the public image, which fails
# fast without a registry.
choose_base() {
  if [[ -z ${LOCAL_BASE:-} ]]; then
    if tool image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
      LOCAL_BASE=0
    elif tool image inspect "$LOCAL_BASE_IMAGE" >/dev/null 2>&1; then
      LOCAL_BASE=1
    elif "$CONTAINER_TOOL" pull "$BASE_IMAGE" >"$IMAGES_CACHE/pull.log" 2>&1; then
      LOCAL_BASE=0
    else
      echo "images: cannot pull $BASE_IMAGE ($(tail -n 1 "$IMAGES_CACHE/pull.log")); building on a local Debian base" >&2
      LOCAL_BASE=1
    fi
  fi
  if [[ $LOCAL_BASE == 1 ]]; then
    BASE_IMAGE=$LOCAL_BASE_IMAGE
    local_settings
  fi
}

# This workplace's settings, with the local base only: podman's crun refuses the machine's
# cgroup layout (runc works), the sandbox may not raise rlimits (default ulimits cleared), and
# package downloads pass a TLS-intercepting proxy (its CA bundle mounted into the builds and
# named by build arguments of their build stage; CA_BUNDLE= overrides the bundle).
local_settings() {
  [[ $CONTAINER_TOOL == podman ]] || return 0
  need runc
  TOOL_FLAGS=(--runtime runc)
  export CONTAINERS_CONF="${CONTAINERS_CONF:-$IMAGES_CACHE/containers.conf}"
  [[ -f $CONTAINERS_CONF ]] || printf '[containers]\ndefault_ulimits = []\n' >"$CONTAINERS_CONF"
  local bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
  BUILD_FLAGS=(--network host)
  if [[ -f $bundle ]]; then
    local dir
    dir="$(dirname "$bundle")"
    BUILD_FLAGS+=(-v "$dir:$dir:ro" --build-arg "PIP_CERT=$bundle" --build-arg "SSL_CERT_FILE=$bundle")
  fi
}

# Installs a command's Debian package when the command is missing (local base only).
need() {
  command -v "$1" >/dev/null 2>&1 && return
  if [[ $EUID != 0 ]] || ! command -v apt-get >/dev/null; then
    fail "needs $1 for the local base image; install it"
  fi
  echo "installing $1" >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >&2
}

# The Dockerfile of every services/<name> without one of its own (the consumers).
CONSUMER_DOCKERFILE="$REPO_ROOT/images/consumer.Dockerfile"

# Every service (a services/<name>/pyproject.toml) and every operator with a Dockerfile, one
# name a line.
services() {
  local f
  for f in "$REPO_ROOT"/services/*/pyproject.toml "$REPO_ROOT"/operators/*/Dockerfile; do
    [[ -f "$f" ]] && basename "$(dirname "$f")"
  done
}

# The Dockerfile of a service or operator: its own, else the consumer Dockerfile.
dockerfile_of() {
  local f
  for f in "$REPO_ROOT/services/$1/Dockerfile" "$REPO_ROOT/operators/$1/Dockerfile"; do
    [[ -f "$f" ]] && { echo "$f"; return; }
  done
  [[ -f "$REPO_ROOT/services/$1/pyproject.toml" ]] && { echo "$CONSUMER_DOCKERFILE"; return; }
  echo "no service or operator $1 under services/ or operators/" >&2
  return 1
}

human() { awk -v b="$1" 'BEGIN { split("B KiB MiB GiB", u); i = 1; while (b >= 1024 && i < 4) { b /= 1024; i++ } printf "%.1f %s\n", b, u[i] }'; }

mkdir -p "$IMAGES_CACHE"
