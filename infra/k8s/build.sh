#!/usr/bin/env bash
# Build the test control plane from the Go module proxy, cached under $TICKETING_CACHE/bin
# (idempotent): kube-apiserver, kube-controller-manager and kube-scheduler from
# k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3, and kwok.
#
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, k8s.io/apiserver, ...) with
# local paths, so it cannot be `go install`ed: a throwaway wrapper module requires it and
# replaces each staging module with its published v0.X.Y release.
set -euo pipefail
# shellcheck source=infra/k8s/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

say() { echo "k8s-build: $*" >&2; }
command -v go >/dev/null || { say "Go 1.26 or newer is needed"; exit 1; }
mkdir -p "$K8S_BIN_DIR"

# build NAME LOG SCRIPT: run SCRIPT in a fresh wrapper module dir, timing it.
build() {
  local name=$1 log="$TICKETING_CACHE/$1-build.log" start=$SECONDS work
  work="$(mktemp -d "$TICKETING_CACHE/$name-build.XXXXXX")"
  say "building $name (first time: many minutes; log $log)"
  if ! (cd "$work" && eval "$2") >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    say "$name build failed, full log: $log"
    rm -rf "$work"
    exit 1
  fi
  rm -rf "$work"
  say "$name built in $((SECONDS - start)) s"
}

kubernetes() {
  local v=$K8S_VERSION gomod staging minor ver
  minor="${v#v1.}"; minor="${minor%%.*}"
  go mod init local/kubernetes-build
  go mod edit -require="k8s.io/kubernetes@$v"
  # Every k8s.io module the kubernetes go.mod replaces with ./staging/... gets its release.
  gomod="$(go mod download -json "k8s.io/kubernetes@$v" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  staging="$(sed -n 's:^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*:\1:p' "$gomod")"
  [[ -n $staging ]] || { echo "no staging replaces found in k8s.io/kubernetes $v go.mod"; return 1; }
  for m in $staging; do go mod edit -replace="$m=$m@v0.${v#v1.}"; done
  cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
  go mod tidy
  ver="-X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1"
  ver="$ver -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  GOBIN="$K8S_BIN_DIR" nice go install -trimpath -tags tools -ldflags "-s -w $ver" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    mv "$K8S_BIN_DIR/$b" "$K8S_BIN_DIR/$b-$v"
  done
}

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

[[ -x $ETCD_BIN ]] || build etcd etcd
[[ -x $KUBE_APISERVER_BIN && -x $KUBE_CONTROLLER_MANAGER_BIN && -x $KUBE_SCHEDULER_BIN ]] ||
  build kubernetes kubernetes
[[ -x $KWOK_BIN ]] || build kwok kwok
say "control plane binaries ready in $K8S_BIN_DIR"
