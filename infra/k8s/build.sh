#!/usr/bin/env bash
# Build the test control plane from the Go module proxy, cached under $TICKETING_CACHE/bin
# (idempotent): kube-apiserver, kube-controller-manager and kube-scheduler from
# k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3, and kwok.
# The kubernetes commands through a wrapper module (infra/gobuild.sh).
set -euo pipefail
# shellcheck source=infra/k8s/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=infra/gobuild.sh
source "$(dirname "${BASH_SOURCE[0]}")/../gobuild.sh"

say() { echo "k8s-build: $*" >&2; }
command -v go >/dev/null || { say "Go 1.26 or newer is needed"; exit 1; }
mkdir -p "$K8S_BIN_DIR"

kubernetes() { k8s_commands "$K8S_VERSION" kube-apiserver kube-controller-manager kube-scheduler; }

etcd() {
  go mod init local/etcd-build
  cat >tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy
  nice go build -trimpath -tags tools -ldflags "-s -w" -o "$K8S_BIN_DIR/etcd-$ETCD_VERSION" \
    go.etcd.io/etcd/server/v3
}

kwok() {
  GOBIN="$PWD" nice go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv kwok "$K8S_BIN_DIR/kwok-$KWOK_VERSION"
}

[[ -x $ETCD_BIN ]] || go_build etcd etcd
[[ -x $KUBE_APISERVER_BIN && -x $KUBE_CONTROLLER_MANAGER_BIN && -x $KUBE_SCHEDULER_BIN ]] ||
  go_build kubernetes kubernetes
[[ -x $KWOK_BIN ]] || go_build kwok kwok
say "control plane binaries ready in $K8S_BIN_DIR"
