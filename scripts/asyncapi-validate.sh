#!/usr/bin/env bash
# Validate an AsyncAPI document with the AsyncAPI project's own parser (@asyncapi/parser), which
# is installed once from the npm registry into a cache outside the repo; Node from Debian.
# Usage: scripts/asyncapi-validate.sh [FILE]   (default docs/asyncapi.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
PARSER_VERSION=3.6.6
CACHE="${TICKETING_CACHE:-$HOME/.cache/ticketing}/npm/asyncapi-parser-$PARSER_VERSION"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "asyncapi: apt-get install nodejs npm" >&2
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
fi
if [[ ! -f "$CACHE/node_modules/@asyncapi/parser/package.json" ]]; then
  echo "asyncapi: npm install @asyncapi/parser@$PARSER_VERSION into $CACHE" >&2
  mkdir -p "$CACHE"
  # No install scripts: the parser needs none (one dependency's is telemetry).
  npm install --prefix "$CACHE" --no-audit --no-fund --ignore-scripts --no-save \
    "@asyncapi/parser@$PARSER_VERSION" >&2
fi
ASYNCAPI_PARSER="$CACHE/node_modules/@asyncapi/parser" node scripts/asyncapi-validate.cjs \
  "${1:-docs/asyncapi.yaml}"
