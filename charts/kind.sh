#!/usr/bin/env bash
# `make kind-up` / `make kind-down`: the whole system on a local kind (or minikube) cluster.
#   charts/kind.sh up     the cluster (created if missing), the local images the release uses
#                         (built by `make images`), KEDA if it has ScaledObjects, helm upgrade
#                         --install, every Deployment rolled out, helm test
#   charts/kind.sh down   delete the cluster
# Settings, from the environment:
#   PROFILE     kind (default; no autoscaling), kind-keda (KEDA, from its official chart) or
#               kind-operator (the chart's lag-autoscaler): charts/profiles.sh PROFILE
#   VALUES      more values files, space-separated, layered after the profile's
#   K8S         kind (default) or minikube;  CLUSTER, NAMESPACE, RELEASE: default ticketing
#   TIMEOUT     of Helm (hooks included) and of each wait (default 15m)
#   CONTAINER_TOOL  docker or podman, whichever holds the images (default: as images/build.sh)
# Every command names the cluster's context; the current one is never used.
# Needs kind or minikube, kubectl, docker or podman, and Helm 3.14 or newer (charts/tools.sh
# builds one with Go if there is none). The node needs 4 GiB of memory for kind and 6 GiB for
# kind-keda and kind-operator scaled out: Docker Desktop's or the podman machine's memory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=images/common.sh
source images/common.sh

K8S="${K8S:-kind}"
CLUSTER="${CLUSTER:-ticketing}"
NAMESPACE="${NAMESPACE:-ticketing}"
RELEASE="${RELEASE:-ticketing}"
PROFILE="${PROFILE:-kind}"
VALUES="${VALUES:-}"
TIMEOUT="${TIMEOUT:-15m}"
KEDA_REPO=https://kedacore.github.io/charts

say() { echo "kind.sh: $*" >&2; }

require() {
  command -v "$1" >/dev/null || { say "needs $1: $2"; exit 1; }
}

case $K8S in
  kind) require kind https://kind.sigs.k8s.io/docs/user/quick-start/#installation; CONTEXT="kind-$CLUSTER" ;;
  minikube) require minikube https://minikube.sigs.k8s.io/docs/start/; CONTEXT=$CLUSTER ;;
  *) say "K8S must be kind or minikube"; exit 2 ;;
esac

# MiB the node needs: the release's memory requests, scaled out, plus Kubernetes and KEDA
# (charts/tests/test_chart.py checks the renders against these).
node_memory() {
  if [[ $PROFILE == kind ]]; then echo 4096; else echo 6144; fi
}

cluster_up() {
  case $K8S in
    kind)
      kind get clusters 2>/dev/null | grep -x "$CLUSTER" >/dev/null ||
        kind create cluster --name "$CLUSTER" --wait "$TIMEOUT"
      ;;
    minikube)
      minikube status -p "$CLUSTER" >/dev/null 2>&1 ||
        minikube start -p "$CLUSTER" --memory "$(node_memory)"
      ;;
  esac
  local memory
  memory="$(kubectl --context "$CONTEXT" get nodes -o jsonpath='{.items[0].status.allocatable.memory}')"
  if [[ $memory == *Ki ]] && ((${memory%Ki} / 1024 < $(node_memory))); then
    say "warning: the node has $((${memory%Ki} / 1024)) MiB, profile $PROFILE needs $(node_memory) MiB: pods may stay Pending"
  fi
}

# Tags each local image (localhost/...) of the release's objects ($1, rendered) by its id,
# loads those the node lacks, and writes the values that name the tags (image.tags) to $2: a
# rebuilt image is a new tag, so its Deployments roll out.
load_images() {
  local on_node ref repo name id tag archive
  on_node="$(kubectl --context "$CONTEXT" get nodes \
    -o jsonpath='{range .items[*].status.images[*]}{range .names[*]}{@}{"\n"}{end}{end}')"
  printf 'image:\n  tags:\n' >"$2"
  while read -r ref <&3; do
    repo="${ref%:*}"
    name="${repo##*/}"
    id="$(tool image inspect --format '{{.Id}}' "$ref" 2>/dev/null)" ||
      { say "no image $ref in $CONTAINER_TOOL: run \`make images\`"; exit 1; }
    id="${id#sha256:}"
    tag="id-${id:0:12}"
    echo "    $name: $tag" >>"$2"
    if grep -qx "$repo:$tag" <<<"$on_node"; then
      continue
    fi
    say "loading $repo:$tag"
    tool tag "$ref" "$repo:$tag"
    archive="$work/$name.tar"
    tool save -o "$archive" "$repo:$tag"
    case $K8S in
      kind) kind load image-archive "$archive" --name "$CLUSTER" ;;
      minikube) minikube image load "$archive" -p "$CLUSTER" ;;
    esac
    rm -f "$archive"
  done 3< <(sed -n 's/^ *image: *"\{0,1\}\(localhost\/[^" ]*\)"\{0,1\}$/\1/p' "$1" | sort -u)
}

up() {
  require kubectl https://kubernetes.io/docs/tasks/tools/
  detect_tool
  eval "$(bash charts/tools.sh --kind)"
  values=()
  local file
  for file in $(bash charts/profiles.sh "$PROFILE") $VALUES; do
    values+=(-f "$file")
  done
  cluster_up
  work="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand $work now
  trap "rm -rf '$work'" EXIT
  # The server's version: a Helm built from source assumes an old one.
  local version
  version="$(kubectl --context "$CONTEXT" get --raw /version |
    sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')"
  "$HELM" template "$RELEASE" charts/ticketing --namespace "$NAMESPACE" --kube-version "$version" \
    "${values[@]}" >"$work/release.yaml"
  load_images "$work/release.yaml" "$work/images.yaml"
  if grep -x 'kind: ScaledObject' "$work/release.yaml" >/dev/null; then
    say "KEDA $KEDA_VERSION"
    "$HELM" upgrade --install keda keda --repo "$KEDA_REPO" --version "$KEDA_VERSION" \
      --kube-context "$CONTEXT" --namespace keda --create-namespace --wait --timeout "$TIMEOUT"
  fi
  # No --wait: with infra in the release, the topic and migration Jobs run after its objects
  # are applied (Helm waits for them); the rollouts are awaited below.
  "$HELM" upgrade --install "$RELEASE" charts/ticketing --kube-context "$CONTEXT" \
    --namespace "$NAMESPACE" --create-namespace --timeout "$TIMEOUT" "${values[@]}" \
    -f "$work/images.yaml"
  local deployment
  for deployment in $(kubectl --context "$CONTEXT" -n "$NAMESPACE" get deployments -o name); do
    kubectl --context "$CONTEXT" -n "$NAMESPACE" rollout status "$deployment" --timeout "$TIMEOUT"
  done
  "$HELM" test "$RELEASE" --kube-context "$CONTEXT" --namespace "$NAMESPACE" --timeout "$TIMEOUT"
  say "up: kubectl --context $CONTEXT -n $NAMESPACE get pods"
}

down() {
  case $K8S in
    kind) kind delete cluster --name "$CLUSTER" ;;
    minikube) minikube delete -p "$CLUSTER" ;;
  esac
}

case "${1:-}" in
  up | down) "$1" ;;
  *) say "usage: charts/kind.sh up|down"; exit 2 ;;
esac
