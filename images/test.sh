#!/usr/bin/env bash
# Runs each built image against the local infrastructure (`make infra-up`): the API answers
# /readyz, each consumer processes one event, the stub answers /healthz, the load generator
# plays a round, all stop on SIGTERM. Containers use the host's network, so this needs Linux.
# Usage: images/test.sh [pytest args]   (after images/build.sh)
set -euo pipefail
# shellcheck source=images/common.sh
source "$(dirname "$0")/common.sh"
# shellcheck source=infra/env.sh
source "$REPO_ROOT/infra/env.sh"

detect_tool
choose_base
# tests/test_images.py runs the tool with the flags of this machine, if any.
CONTAINER_COMMAND="$CONTAINER_TOOL${TOOL_FLAGS[*]+ ${TOOL_FLAGS[*]}}"
export IMAGE_PREFIX IMAGE_TAG CONTAINER_COMMAND
export IMAGES_TEST_LABEL="ticketing-imgtest=$$"
cleanup() {
  local ids
  ids="$(tool ps -aq --filter "label=$IMAGES_TEST_LABEL")"
  # shellcheck disable=SC2086  # one id a word
  [[ -z $ids ]] || tool rm -f $ids >/dev/null
}
trap cleanup EXIT

cd "$REPO_ROOT"
"$REPO_ROOT/.venv/bin/python" -m pytest images/tests -p no:cacheprovider "$@"
