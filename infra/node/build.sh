#!/usr/bin/env bash
# Build what the real node needs, cached (idempotent):
#   - kubelet, kube-proxy and kubectl from k8s.io/kubernetes, through the same wrapper module
#     as the control plane (infra/gobuild.sh), so the Go build cache is shared;
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
# shellcheck source=infra/gobuild.sh
source "$HERE/../gobuild.sh"

say() { echo "node-build: $*" >&2; }
command -v go >/dev/null || { say "Go 1.26 or newer is needed"; exit 1; }
mkdir -p "$K8S_BIN_DIR" "$NODE_IMAGES_DIR"

node_kubernetes() { k8s_commands "$K8S_VERSION" kubelet kube-proxy kubectl; }

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
  [[ -x $KUBELET_BIN && -x $KUBE_PROXY_BIN && -x $KUBECTL_BIN ]] || { go_build node-kubernetes node_kubernetes & pids+=($!); }
  # CoreDNS shares no packages with kubernetes: build it alongside, at the lowest priority.
  [[ -x $COREDNS_BIN ]] || { go_build coredns coredns & pids+=($!); }
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
