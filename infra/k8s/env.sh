# shellcheck shell=bash
# Versions, binaries and ports of the test control plane (source it from bash).
# Every value can be overridden from the environment.
# shellcheck source=infra/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
export PATH="$PATH:/usr/local/go/bin"

export K8S_VERSION="${K8S_VERSION:-v1.37.2}"
export ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
export KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"

export K8S_BIN_DIR="${K8S_BIN_DIR:-$TICKETING_CACHE/bin}"
export KUBE_APISERVER_BIN="$K8S_BIN_DIR/kube-apiserver-$K8S_VERSION"
export KUBE_CONTROLLER_MANAGER_BIN="$K8S_BIN_DIR/kube-controller-manager-$K8S_VERSION"
export KUBE_SCHEDULER_BIN="$K8S_BIN_DIR/kube-scheduler-$K8S_VERSION"
export ETCD_BIN="$K8S_BIN_DIR/etcd-$ETCD_VERSION"
export KWOK_BIN="$K8S_BIN_DIR/kwok-$KWOK_VERSION"

export K8S_DIR="${K8S_DIR:-$INFRA_DIR/k8s}"
export ETCD_PORT="${ETCD_PORT:-12379}"
export ETCD_PEER_PORT="${ETCD_PEER_PORT:-12380}"
export KUBE_APISERVER_PORT="${KUBE_APISERVER_PORT:-16443}"
export K8S_KUBECONFIG="${K8S_KUBECONFIG:-$K8S_DIR/kubeconfig}"
