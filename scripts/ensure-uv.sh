#!/usr/bin/env bash
# Print the path of uv, installing it from PyPI first when it is missing.
set -euo pipefail
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv >&2
fi
command -v uv
