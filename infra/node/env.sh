# shellcheck shell=bash
# Versions, addresses, ports and folders of the real single-node cluster of infra/node/
# (source it from bash). Every value can be overridden from the environment.
#
# The node shares the control plane binaries and versions of infra/k8s/ (env.sh there), but
# runs its own control plane on its own ports (40000-40999) and state folder, so it never
# collides with `make k8s-up` (16443/12379) or the local infrastructure.
# shellcheck source=infra/k8s/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/../k8s/env.sh"

export COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
export KUBELET_BIN="$K8S_BIN_DIR/kubelet-$K8S_VERSION"
export KUBE_PROXY_BIN="$K8S_BIN_DIR/kube-proxy-$K8S_VERSION"
export KUBECTL_BIN="$K8S_BIN_DIR/kubectl-$K8S_VERSION"
export COREDNS_BIN="$K8S_BIN_DIR/coredns-$COREDNS_VERSION"
# Image tarballs (OCI archives) that `up` imports into containerd.
export NODE_IMAGES_DIR="${NODE_IMAGES_DIR:-$TICKETING_CACHE/node-images}"
export PAUSE_IMAGE="${PAUSE_IMAGE:-localhost/node/pause:3.10}"
export COREDNS_IMAGE="${COREDNS_IMAGE:-localhost/node/coredns:${COREDNS_VERSION#v}}"
# The chart's infrastructure images built here (build.sh infra-images; infra/node/values.yaml).
export NODE_KAFKA_IMAGE="${NODE_KAFKA_IMAGE:-localhost/node/kafka:$KAFKA_VERSION}"
export NODE_REDIS_IMAGE="${NODE_REDIS_IMAGE:-localhost/node/redis:7.0}"
export NODE_POSTGRESQL_IMAGE="${NODE_POSTGRESQL_IMAGE:-localhost/node/postgresql:15}"
export NODE_JAEGER_IMAGE="${NODE_JAEGER_IMAGE:-localhost/node/jaeger:${JAEGER_VERSION#v}}"

# All state (etcd data, PKI, containerd root, kubelet root, logs, pid files) lives here.
export NODE_DIR="${NODE_DIR:-$INFRA_DIR/node}"
export NODE_KUBECONFIG="${NODE_KUBECONFIG:-$NODE_DIR/kubeconfig}"
export NODE_NAME="${NODE_NAME:-node-1}"

# Network: Pods in 198.18.0.0/16 on a bridge of this machine, Services in 198.19.0.0/16. The
# bridge address is the node IP, the kubelet's and the apiserver's address.
export NODE_BRIDGE="${NODE_BRIDGE:-nodebr0}"
export NODE_IP="${NODE_IP:-198.18.0.1}"
export POD_CIDR="${POD_CIDR:-198.18.0.0/16}"
export SERVICE_CIDR="${SERVICE_CIDR:-198.19.0.0/16}"
export KUBERNETES_SERVICE_IP="${KUBERNETES_SERVICE_IP:-198.19.0.1}"
export CLUSTER_DNS_IP="${CLUSTER_DNS_IP:-198.19.0.10}"

export NODE_APISERVER_PORT="${NODE_APISERVER_PORT:-40443}"
export NODE_ETCD_PORT="${NODE_ETCD_PORT:-40379}"
export NODE_ETCD_PEER_PORT="${NODE_ETCD_PEER_PORT:-40380}"
export NODE_ETCD_METRICS_PORT="${NODE_ETCD_METRICS_PORT:-40381}"
export NODE_STREAM_PORT="${NODE_STREAM_PORT:-40010}"
export NODE_KUBELET_PORT="${NODE_KUBELET_PORT:-40250}"
export NODE_KUBELET_HEALTHZ_PORT="${NODE_KUBELET_HEALTHZ_PORT:-40248}"
export NODE_PROXY_HEALTHZ_PORT="${NODE_PROXY_HEALTHZ_PORT:-40256}"
export NODE_PROXY_METRICS_PORT="${NODE_PROXY_METRICS_PORT:-40249}"
export NODE_PORT_RANGE="${NODE_PORT_RANGE:-40900-40999}"
