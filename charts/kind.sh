#!/usr/bin/env bash
# `make kind-up` / `make kind-down`: the whole system on a local kind (or minikube) cluster.
#   charts/kind.sh up     create the cluster, load the images of `make images`, helm install
#   charts/kind.sh down   delete the cluster
# K8S=minikube uses minikube; CLUSTER, NAMESPACE, RELEASE and VALUES override the defaults.
# Needs kind or minikube, kubectl, and podman (images/build.sh builds with it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

K8S="${K8S:-kind}"
CLUSTER="${CLUSTER:-ticketing}"
NAMESPACE="${NAMESPACE:-ticketing}"
RELEASE="${RELEASE:-ticketing}"
VALUES="${VALUES:-charts/ticketing/ci/kind-values.yaml}"
IMAGES=(payment-api ranking-consumer dataplatform-consumer cleanup-consumer compensator
  seatlock-consumer dataplatform-stub)

up() {
  case $K8S in
    kind) kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" ;;
    minikube) minikube status -p "$CLUSTER" >/dev/null 2>&1 || minikube start -p "$CLUSTER" ;;
    *) echo "kind.sh: K8S must be kind or minikube" >&2; exit 2 ;;
  esac
  # The images live in podman's store: load them as archives, which both tools accept.
  local work name archive
  work="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand $work now
  trap "rm -rf '$work'" EXIT
  for name in "${IMAGES[@]}"; do
    archive="$work/$name.tar"
    podman save --format docker-archive -o "$archive" "localhost/ticketing/$name:dev"
    case $K8S in
      kind) kind load image-archive "$archive" --name "$CLUSTER" ;;
      minikube) minikube image load "$archive" -p "$CLUSTER" ;;
    esac
  done
  eval "$(bash charts/tools.sh)"
  # No --wait: with infra in the release, the topic and migration Jobs run after install.
  "$HELM" upgrade --install "$RELEASE" charts/ticketing --namespace "$NAMESPACE" \
    --create-namespace -f "$VALUES"
  kubectl -n "$NAMESPACE" wait deployment --all --for condition=Available --timeout 10m
  "$HELM" test "$RELEASE" --namespace "$NAMESPACE"
}

down() {
  case $K8S in
    kind) kind delete cluster --name "$CLUSTER" ;;
    minikube) minikube delete -p "$CLUSTER" ;;
  esac
}

case "${1:-}" in
  up | down) "$1" ;;
  *) echo "usage: charts/kind.sh up|down" >&2; exit 2 ;;
esac
