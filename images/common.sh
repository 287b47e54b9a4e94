# shellcheck shell=bash
# Shared by the images/ scripts (source it): podman settings for this machine and names.

export TICKETING_CACHE="${TICKETING_CACHE:-$HOME/.cache/ticketing}"
IMAGES_CACHE="$TICKETING_CACHE/images"
BASE_IMAGE="${BASE_IMAGE:-localhost/ticketing-python:3.11-bookworm}"
IMAGE_PREFIX="${IMAGE_PREFIX:-localhost/ticketing}"
IMAGE_TAG="${IMAGE_TAG:-dev}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

mkdir -p "$IMAGES_CACHE"

# The sandbox may not raise rlimits, so podman's default ulimits are cleared.
export CONTAINERS_CONF="${CONTAINERS_CONF:-$IMAGES_CACHE/containers.conf}"
if [[ ! -f "$CONTAINERS_CONF" ]]; then
  printf '[containers]\ndefault_ulimits = []\n' >"$CONTAINERS_CONF"
fi

# Installs a command's Debian package when the command is missing.
need() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $1" >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >&2
}
need podman
need runc

# crun refuses this machine's cgroup layout; runc works.
pm() { podman --runtime runc "$@"; }

# Services and operators that have a Dockerfile, one name a line.
services() {
  local f
  for f in "$REPO_ROOT"/services/*/Dockerfile "$REPO_ROOT"/operators/*/Dockerfile; do
    [[ -f "$f" ]] && basename "$(dirname "$f")"
  done
}

# The Dockerfile of a service or operator.
dockerfile_of() {
  local f
  for f in "$REPO_ROOT/services/$1/Dockerfile" "$REPO_ROOT/operators/$1/Dockerfile"; do
    [[ -f "$f" ]] && { echo "$f"; return; }
  done
  echo "no Dockerfile for $1 under services/ or operators/" >&2
  return 1
}

human() { numfmt --to=iec --suffix=B --format='%.1f' "$1"; }
