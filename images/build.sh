#!/usr/bin/env bash
# Builds localhost/ticketing/<name>:dev for every service and operator (or the ones named) with
# docker or podman (common.sh): each from its own Dockerfile, the consumers from
# images/consumer.Dockerfile with --build-arg SERVICE=<name>. Then prints each image's size and
# what it adds on top of the base.
# Usage: images/build.sh [service ...]
set -euo pipefail
# shellcheck source=images/common.sh
source "$(dirname "$0")/common.sh"

detect_tool
choose_base
if [[ $LOCAL_BASE == 1 ]]; then
  "$(dirname "$0")/build-base.sh"
fi
# The Dockerfiles' cache mounts need BuildKit (Docker's default builder since 23.0).
export DOCKER_BUILDKIT=1

if (($#)); then
  names=("$@")
else
  names=()
  while read -r name; do names+=("$name"); done < <(services)
fi
seconds=()
for name in "${names[@]}"; do
  dockerfile="$(dockerfile_of "$name")"
  args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
  [[ $dockerfile != "$CONSUMER_DOCKERFILE" ]] || args+=(--build-arg "SERVICE=$name")
  log="$IMAGES_CACHE/build-$name.log"
  echo "building $IMAGE_PREFIX/$name:$IMAGE_TAG with $CONTAINER_TOOL on $BASE_IMAGE (log: $log)"
  start=$SECONDS
  if ! nice -n 10 "$CONTAINER_TOOL" ${TOOL_FLAGS[@]+"${TOOL_FLAGS[@]}"} build \
    ${BUILD_FLAGS[@]+"${BUILD_FLAGS[@]}"} -f "$dockerfile" -t "$IMAGE_PREFIX/$name:$IMAGE_TAG" \
    "${args[@]}" "$REPO_ROOT" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    exit 1
  fi
  seconds+=($((SECONDS - start)))
done

base_size="$(tool image inspect --format '{{.Size}}' "$BASE_IMAGE")"
printf '\n%-24s %10s %12s %8s\n' image size "over base" "build s"
printf '%-24s %10s %12s %8s\n' "(base)" "$(human "$base_size")" - -
for i in "${!names[@]}"; do
  size="$(tool image inspect --format '{{.Size}}' "$IMAGE_PREFIX/${names[$i]}:$IMAGE_TAG")"
  printf '%-24s %10s %12s %8s\n' "${names[$i]}" "$(human "$size")" \
    "$(human $((size - base_size)))" "${seconds[$i]}"
done
