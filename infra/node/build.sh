#!/usr/bin/env bash
# Build what the real node needs, cached (idempotent):
#   - kubelet, kube-proxy and kubectl from k8s.io/kubernetes, through the same wrapper module
#     method as infra/k8s/build.sh (the staging modules replaced by their v0.X.Y releases), so
#     the Go build cache of the control plane build is shared;
#   - CoreDNS from its Go module;
#   - the images the node runs, on the project's local Debian base (images/build-base.sh):
#     the Pod sandbox (kubernetes' own pause.c, static, FROM scratch) and CoreDNS, saved as
#     OCI archives under $NODE_IMAGES_DIR for `node.sh up` to import into containerd.
# The control plane itself comes from infra/k8s/build.sh.
#   build.sh [packages|binaries|images|infra-images]   (default: the first three)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=infra/node/env.sh
source "$HERE/env.sh"

say() { echo "node-build: $*" >&2; }
command -v go >/dev/null || { say "Go 1.26 or newer is needed"; exit 1; }
mkdir -p "$K8S_BIN_DIR" "$NODE_IMAGES_DIR"

# build NAME FUNCTION: run FUNCTION in a fresh wrapper module dir, timing it.
build() {
  local name=$1 log="$TICKETING_CACHE/$1-build.log" start=$SECONDS work
  work="$(mktemp -d "$TICKETING_CACHE/$name-build.XXXXXX")"
  say "building $name (first time: many minutes; log $log)"
  if ! (cd "$work" && "$2") >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    say "$name build failed, full log: $log"
    rm -rf "$work"
    exit 1
  fi
  rm -rf "$work"
  say "$name built in $((SECONDS - start)) s"
}

node_kubernetes() {
  local v=$K8S_VERSION gomod staging minor ver
  minor="${v#v1.}"; minor="${minor%%.*}"
  go mod init local/kubernetes-node-build
  go mod edit -require="k8s.io/kubernetes@$v"
  gomod="$(go mod download -json "k8s.io/kubernetes@$v" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  staging="$(sed -n 's:^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*:\1:p' "$gomod")"
  [[ -n $staging ]] || { echo "no staging replaces found in k8s.io/kubernetes $v go.mod"; return 1; }
  for m in $staging; do go mod edit -replace="$m=$m@v0.${v#v1.}"; done
  cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  go mod tidy
  ver="-X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1"
  ver="$ver -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  # kubectl reports its client version from client-go's version package too.
  ver="$ver -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1"
  ver="$ver -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  mkdir gobin
  GOBIN="$PWD/gobin" nice go install -trimpath -tags tools -ldflags "-s -w $ver" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl
  for b in kubelet kube-proxy kubectl; do mv "gobin/$b" "$K8S_BIN_DIR/$b-$v"; done
}

coredns() {
  # Static (CGO off), so its image needs nothing from the base but CA files and passwd.
  GOBIN="$PWD" CGO_ENABLED=0 nice -n 19 go install -trimpath \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
  mv coredns "$COREDNS_BIN"
}

# Debian packages of the node (no service is started: this machine has no systemd).
packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap ]] || missing+=(containernetworking-plugins)
  command -v nft >/dev/null || missing+=(nftables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v gcc >/dev/null || missing+=(gcc libc6-dev)
  command -v podman >/dev/null || missing+=(podman)
  ((${#missing[@]})) || return 0
  [[ $EUID == 0 ]] || { say "needs root to install ${missing[*]}"; exit 1; }
  say "installing ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=900 update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends \
    "${missing[@]}" >&2
}

binaries() {
  local pids=() rc=0
  [[ -x $KUBELET_BIN && -x $KUBE_PROXY_BIN && -x $KUBECTL_BIN ]] || { build node-kubernetes node_kubernetes & pids+=($!); }
  # CoreDNS shares no packages with kubernetes: build it alongside, at the lowest priority.
  [[ -x $COREDNS_BIN ]] || { build coredns coredns & pids+=($!); }
  for p in ${pids[@]+"${pids[@]}"}; do wait "$p" || rc=1; done
  ((rc == 0)) || exit 1
  say "node binaries ready in $K8S_BIN_DIR"
}

# The local base and this machine's podman settings come from images/common.sh.
images() {
  # shellcheck source=images/common.sh
  source "$HERE/../../images/common.sh"
  detect_tool
  LOCAL_BASE=1 choose_base
  bash "$HERE/../../images/build-base.sh" >&2
  local ctx
  if [[ ! -f $NODE_IMAGES_DIR/pause.tar ]]; then
    ctx="$(mktemp -d "$NODE_IMAGES_DIR/pause.XXXXXX")"
    local dir
    dir="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    install -m 0644 "$dir/build/pause/linux/pause.c" "$ctx/pause.c"
    gcc -Os -Wall -Werror -static -DVERSION="$K8S_VERSION-node" -o "$ctx/pause" "$ctx/pause.c"
    strip "$ctx/pause"
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Containerfile"
    tool build ${BUILD_FLAGS[@]+"${BUILD_FLAGS[@]}"} -t "$PAUSE_IMAGE" "$ctx" >&2
    tool save --format oci-archive -o "$NODE_IMAGES_DIR/pause.tar.tmp" "$PAUSE_IMAGE"
    mv "$NODE_IMAGES_DIR/pause.tar.tmp" "$NODE_IMAGES_DIR/pause.tar"
    rm -rf "$ctx"
    say "image $PAUSE_IMAGE saved"
  fi
  if [[ ! -f $NODE_IMAGES_DIR/coredns.tar ]]; then
    [[ -x $COREDNS_BIN ]] || { say "$COREDNS_BIN missing: build.sh binaries first"; exit 1; }
    ctx="$(mktemp -d "$NODE_IMAGES_DIR/coredns.XXXXXX")"
    cp "$COREDNS_BIN" "$ctx/coredns"
    cat >"$ctx/Containerfile" <<DOCKERFILE
FROM $BASE_IMAGE
COPY coredns /coredns
USER 65532:65532
EXPOSE 53 53/udp
ENTRYPOINT ["/coredns"]
DOCKERFILE
    tool build ${BUILD_FLAGS[@]+"${BUILD_FLAGS[@]}"} -t "$COREDNS_IMAGE" "$ctx" >&2
    tool save --format oci-archive -o "$NODE_IMAGES_DIR/coredns.tar.tmp" "$COREDNS_IMAGE"
    mv "$NODE_IMAGES_DIR/coredns.tar.tmp" "$NODE_IMAGES_DIR/coredns.tar"
    rm -rf "$ctx"
    say "image $COREDNS_IMAGE saved"
  fi
}

# The chart's infrastructure (infra.enabled) built here on the same local base, for
# infra/node/values.yaml: Kafka from the Maven jars of infra/install.sh (KRaft, as infra/),
# Redis and PostgreSQL from Debian, Jaeger from its Go build. Saved as OCI archives too.
infra_image() {
  local name=$1 image=$2 ctx sum
  # Rebuilt when its folder under infra/node/images changes (or the archive is missing).
  sum="$(cd "$HERE/images/$name" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
  [[ -f $NODE_IMAGES_DIR/$name.tar && $(cat "$NODE_IMAGES_DIR/$name.sum" 2>/dev/null) == "$sum" ]] && return
  ctx="$(mktemp -d "$NODE_IMAGES_DIR/$name.XXXXXX")"
  cp -r "$HERE/images/$name/." "$ctx/"
  case $name in
    kafka) cp -r "$KAFKA_LIBS" "$ctx/libs" ;;
    jaeger) cp "$JAEGER_BIN" "$ctx/jaeger" ;;
  esac
  local start=$SECONDS
  # apt only (no pip): host network, without common.sh's read-only CA mount (which Debian's
  # ca-certificates-java would write to).
  nice -n 10 podman ${TOOL_FLAGS[@]+"${TOOL_FLAGS[@]}"} build --network host \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$image" "$ctx" >"$TICKETING_CACHE/node-image-$name.log" 2>&1 ||
    { tail -n 20 "$TICKETING_CACHE/node-image-$name.log" >&2; rm -rf "$ctx"; say "image $image failed"; exit 1; }
  tool save --format oci-archive -o "$NODE_IMAGES_DIR/$name.tar.tmp" "$image" >/dev/null 2>&1
  mv "$NODE_IMAGES_DIR/$name.tar.tmp" "$NODE_IMAGES_DIR/$name.tar"
  echo "$sum" >"$NODE_IMAGES_DIR/$name.sum"
  rm -rf "$ctx"
  say "image $image built in $((SECONDS - start)) s"
}

infra_images() {
  # shellcheck source=images/common.sh
  source "$HERE/../../images/common.sh"
  CONTAINER_TOOL=podman
  LOCAL_BASE=1 choose_base
  bash "$HERE/../../images/build-base.sh" >&2
  [[ -f $KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar && -x $JAEGER_BIN ]] ||
    bash "$HERE/../install.sh" >&2
  infra_image kafka "$NODE_KAFKA_IMAGE"
  infra_image redis "$NODE_REDIS_IMAGE"
  infra_image postgresql "$NODE_POSTGRESQL_IMAGE"
  infra_image jaeger "$NODE_JAEGER_IMAGE"
}

case ${1:-all} in
  infra-images) infra_images ;;
  packages) packages ;;
  binaries) binaries ;;
  images) images ;;
  all) packages; binaries; images ;;
  *) echo "usage: $0 [packages|binaries|images]" >&2; exit 2 ;;
esac
