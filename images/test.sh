#!/usr/bin/env bash
# Runs each built image against the local infrastructure (`make infra-up`): the API answers
# /readyz, each consumer processes one event, the stub answers /healthz, all stop on SIGTERM.
# Usage: images/test.sh [pytest args]   (after images/build.sh)
set -euo pipefail
source "$(dirname "$0")/common.sh"
source "$REPO_ROOT/infra/env.sh"

export IMAGE_PREFIX IMAGE_TAG
export IMAGES_TEST_LABEL="ticketing-imgtest=$$"
cleanup() {
  local ids
  mapfile -t ids < <(pm ps -aq --filter "label=$IMAGES_TEST_LABEL")
  ((${#ids[@]} == 0)) || pm rm -f "${ids[@]}" >/dev/null
}
trap cleanup EXIT

cd "$REPO_ROOT"
"$REPO_ROOT/.venv/bin/python" -m pytest images/tests -p no:cacheprovider "$@"
