#!/usr/bin/env bash
# Builds localhost/ticketing/<service>:dev for every services/<service>/Dockerfile (or the
# services named) on the local base image, then prints each image's size and what it adds
# on top of the base.
# Usage: images/build.sh [service ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"

# Package downloads go through a TLS-intercepting proxy: its CA bundle is mounted into the
# build and named by build arguments of the build stage only.
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
ca_args=()
if [[ -f "$CA_BUNDLE" ]]; then
  ca_dir="$(dirname "$CA_BUNDLE")"
  ca_args=(-v "$ca_dir:$ca_dir:ro" --build-arg "PIP_CERT=$CA_BUNDLE" --build-arg "SSL_CERT_FILE=$CA_BUNDLE")
fi

"$(dirname "$0")/build-base.sh"

if (($#)); then names=("$@"); else mapfile -t names < <(services); fi
declare -A seconds
for name in "${names[@]}"; do
  dockerfile="$(dockerfile_of "$name")"
  log="$IMAGES_CACHE/build-$name.log"
  echo "building $IMAGE_PREFIX/$name:$IMAGE_TAG (log: $log)"
  start=$SECONDS
  if ! nice -n 10 podman --runtime runc build --layers --network host \
    -f "$dockerfile" -t "$IMAGE_PREFIX/$name:$IMAGE_TAG" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" "${ca_args[@]}" "$REPO_ROOT" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    exit 1
  fi
  seconds[$name]=$((SECONDS - start))
done

base_size="$(pm image inspect --format '{{.Size}}' "$BASE_IMAGE")"
printf '\n%-24s %10s %12s %8s\n' image size "over base" "build s"
printf '%-24s %10s %12s %8s\n' "(base)" "$(human "$base_size")" - -
for name in "${names[@]}"; do
  size="$(pm image inspect --format '{{.Size}}' "$IMAGE_PREFIX/$name:$IMAGE_TAG")"
  printf '%-24s %10s %12s %8s\n' "$name" "$(human "$size")" "$(human $((size - base_size)))" "${seconds[$name]}"
done
