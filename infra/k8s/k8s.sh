#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for tests: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (one fake node, so Pods become Ready).
#   k8s.sh up|down|status        down --purge (or purge) also deletes the cluster's data
# Binaries come from infra/k8s/build.sh (cached). State lives under $K8S_DIR; the admin
# kubeconfig is written to $K8S_KUBECONFIG (a static token of group system:masters).
set -euo pipefail
# shellcheck source=infra/k8s/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

ALL=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
PKI="$K8S_DIR/pki"
LOGS="$K8S_DIR/logs"
RUN="$K8S_DIR/run"
API="https://127.0.0.1:$KUBE_APISERVER_PORT"
READY_TIMEOUT=90

die() { echo "k8s: $*" >&2; exit 1; }
say() { echo "k8s: $*" >&2; }

# shellcheck source=infra/procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/../procs.sh"

api_get() { curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(token)" "$API$1"; }
token() { cut -d, -f1 "$PKI/tokens.csv"; }

# A CA, the apiserver's serving cert for loopback, the service-account key pair, an admin token.
pki() {
  [[ -f $PKI/tokens.csv ]] && return
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ticketing-test-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key \
      -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc,IP:10.0.0.1\n' >san.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile san.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    echo "$(openssl rand -hex 24),admin,admin-uid,system:masters" >tokens.csv
  )
}

kubeconfig() { write_kubeconfig "$K8S_KUBECONFIG" ticketing-test "$(token)"; }

start_etcd() {
  launch etcd "$ETCD_BIN" --name test --data-dir "$K8S_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "test=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes 2147483648 --log-level warn
  wait_for etcd "curl -sf http://127.0.0.1:$ETCD_PORT/health >/dev/null"
}

start_kube_apiserver() {
  launch kube-apiserver "$KUBE_APISERVER_BIN" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$KUBE_APISERVER_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
    --authorization-mode RBAC --endpoint-reconciler-type none \
    --cert-dir "$PKI/serving" --v 1
  wait_for kube-apiserver "api_get /readyz >/dev/null"
}

start_kube_controller_manager() {
  launch kube-controller-manager "$KUBE_CONTROLLER_MANAGER_BIN" \
    --kubeconfig "$K8S_KUBECONFIG" --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --controllers '*,-nodeipam' --v 1
  wait_for kube-controller-manager "api_get /api/v1/namespaces/default/serviceaccounts/default >/dev/null"
}

start_kube_scheduler() {
  launch kube-scheduler "$KUBE_SCHEDULER_BIN" --kubeconfig "$K8S_KUBECONFIG" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 --v 1
  sleep 0.2
  pid_of kube-scheduler >/dev/null || die "kube-scheduler exited; log $LOGS/kube-scheduler.log"
}

# kwok keeps the fake node's heartbeat and moves Pods bound to it to Running and Ready (Jobs'
# Pods to Succeeded), by the stages that ship in its Go module.
start_kwok() {
  local stages config=()
  stages="$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')/kustomize/stage"
  for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    [[ -f $stages/$f.yaml ]] || die "kwok stage $f missing in $stages"
    config+=(--config "$stages/$f.yaml")
  done
  launch kwok "$KWOK_BIN" --kubeconfig "$K8S_KUBECONFIG" "${config[@]}" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr 10.244.0.0/16 --node-ip 10.244.0.1 --node-lease-duration-seconds 40 \
    --server-address 127.0.0.1:0
  local node
  node='{"apiVersion":"v1","kind":"Node","metadata":{"name":"kwok-node-0",
    "annotations":{"kwok.x-k8s.io/node":"fake","node.alpha.kubernetes.io/ttl":"0"},
    "labels":{"kubernetes.io/hostname":"kwok-node-0","kubernetes.io/os":"linux","type":"kwok"}},
    "status":{"allocatable":{"cpu":"64","memory":"256Gi","pods":"500"},
    "capacity":{"cpu":"64","memory":"256Gi","pods":"500"}}}'
  api_get /api/v1/nodes/kwok-node-0 >/dev/null ||
    curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(token)" -H 'Content-Type: application/json' \
      -X POST -d "$node" "$API/api/v1/nodes" >/dev/null || die "could not create the kwok node"
  wait_for kwok "api_get /api/v1/nodes/kwok-node-0 | tr -d ' \n' | grep -q '\"type\":\"Ready\",\"status\":\"True\"'"
}

up() {
  local start=$SECONDS name fn
  [[ -x $KUBE_APISERVER_BIN && -x $ETCD_BIN && -x $KWOK_BIN ]] || bash "$(dirname "$0")/build.sh"
  mkdir -p "$LOGS" "$RUN"
  pki
  kubeconfig
  for name in "${ALL[@]}"; do
    if pid_of "$name" >/dev/null; then say "$name already running"; continue; fi
    fn="start_${name//-/_}"
    "$fn"
    say "$name up"
  done
  say "control plane ready in $((SECONDS - start)) s: KUBECONFIG=$K8S_KUBECONFIG ($API)"
}

down() {
  local i pid
  for ((i = ${#ALL[@]} - 1; i >= 0; i--)); do
    pid="$(pid_of "${ALL[i]}")" || continue
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do [[ -e /proc/$pid ]] && [[ -n $(tr -d '\0' </proc/"$pid"/cmdline 2>/dev/null) ]] || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$RUN/${ALL[i]}.pid"
    say "${ALL[i]} stopped"
  done
  [[ ${1:-} == --purge ]] && rm -rf "$K8S_DIR" && say "purged $K8S_DIR"
  return 0
}

status() {
  local name rc=0
  for name in "${ALL[@]}"; do
    if pid="$(pid_of "$name")"; then echo "$name: running (pid $pid)"; else echo "$name: stopped"; rc=1; fi
  done
  return $rc
}

case ${1:-} in
  up) up ;;
  down) down "${2:-}" ;;
  purge) down --purge ;;
  status) status ;;
  *) echo "usage: $0 up|down [--purge]|purge|status" >&2; exit 2 ;;
esac
