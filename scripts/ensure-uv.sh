#!/usr/bin/env bash
# Print the path of uv: the one on PATH, else uv $UV_VERSION from PyPI in a virtualenv of the
# cache (Debian's python3 refuses `pip install` outside one: PEP 668). The version is the one
# that writes uv.lock, as in the Dockerfiles.
set -euo pipefail
if command -v uv >/dev/null 2>&1; then
  command -v uv
  exit
fi
UV_VERSION="${UV_VERSION:-0.13.9}"
venv="${TICKETING_CACHE:-$HOME/.cache/ticketing}/uv-$UV_VERSION"
if [[ ! -x $venv/bin/uv ]]; then
  if ! python3 -c 'import ensurepip' 2>/dev/null; then
    # Debian ships venv's pip bootstrap apart.
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
      echo "ensure-uv: apt-get install python3-venv" >&2
      apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >&2
    else
      echo "ensure-uv: uv is not on PATH and python3 cannot make a virtualenv;" \
        "install uv (https://docs.astral.sh/uv/) or python3-venv" >&2
      exit 1
    fi
  fi
  echo "ensure-uv: installing uv $UV_VERSION into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION" >&2
fi
echo "$venv/bin/uv"
