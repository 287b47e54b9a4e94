#!/usr/bin/env bash
# A real single-node Kubernetes on this machine: the control plane of infra/k8s/ (same
# binaries, its own instance on its own ports) plus a real node: containerd, runc and the CNI
# plugins from Debian, kubelet and kube-proxy (nftables mode) from infra/node/build.sh, and
# CoreDNS as a Deployment.
#   node.sh up|down|status|load IMAGE...|load-release RELEASE_YAML VALUES_OUT|kubectl ARGS...
#   down --purge (or purge) also deletes the cluster's state folder
#
# Network: Pods in $POD_CIDR on the bridge $NODE_BRIDGE ($NODE_IP, the node's, the kubelet's
# and the apiserver's address), Services in $SERVICE_CIDR. No route or NAT to any other
# interface: an nft table (inet node_guard) drops any forwarding between the bridge and
# another interface; Pods get no default route, no host resolvers, and CoreDNS has no
# `forward`. Everything the node writes stays under $NODE_DIR, except what containerd 1.6
# hard-codes (/run/containerd, removed by down), the bridge, the nft tables, the kubelet's
# cgroups (kubepods) and net.ipv4.ip_forward (its previous value is restored by down).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=infra/node/env.sh
source "$HERE/env.sh"

# Start order; down goes the other way.
ALL=(net etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)
PKI="$NODE_DIR/pki"
LOGS="$NODE_DIR/logs"
RUN="$NODE_DIR/run"
CTRD="$NODE_DIR/containerd"
SOCK="$CTRD/containerd.sock"
API="https://$NODE_IP:$NODE_APISERVER_PORT"
READY_TIMEOUT=120

die() { echo "node: $*" >&2; exit 1; }
say() { echo "node: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[[ $EUID == 0 ]] || die "needs root (bridge, nftables, containerd, kubelet)"

# shellcheck source=infra/procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/../procs.sh"

token() { sed -n "${1}p" "$PKI/tokens.csv" | cut -d, -f1; }
api_get() { curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(token 1)" "$API$1"; }
kctl() { "$KUBECTL_BIN" --kubeconfig "$NODE_KUBECONFIG" "$@"; }
ctr_() { ctr -a "$SOCK" -n k8s.io "$@"; }

# A CA; the apiserver's serving cert (bridge address, loopback, the kubernetes Service); its
# client cert for the kubelet (system:masters); the service-account keys; static tokens for
# the admin (line 1), the kubelet (2, system:node:$NODE_NAME) and kube-proxy (3).
pki() {
  [[ -f $PKI/tokens.csv ]] && return
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ticketing-node-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key \
      -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:%s,IP:127.0.0.1,IP:%s,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
      "$NODE_IP" "$KUBERNETES_SERVICE_IP" >san.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile san.ext -out apiserver.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      -keyout kubelet-client.key -out kubelet-client.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile client.ext -out kubelet-client.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    {
      echo "$(openssl rand -hex 24),admin,admin-uid,system:masters"
      echo "$(openssl rand -hex 24),system:node:$NODE_NAME,node-uid,system:nodes"
      echo "$(openssl rand -hex 24),system:kube-proxy,kube-proxy-uid"
    } >tokens.csv.tmp
    mv tokens.csv.tmp tokens.csv
  )
}

# kubeconfig FILE TOKEN_LINE
kubeconfig() { write_kubeconfig "$1" ticketing-node "$(token "$2")"; }

configs() {
  mkdir -p "$CTRD" "$NODE_DIR/cni/net.d" "$NODE_DIR/kubelet/root" "$NODE_DIR/kubelet/pki" \
    "$NODE_DIR/kubelet/manifests" "$NODE_DIR/kubelet/pod-logs" "$NODE_DIR/kube-proxy"
  kubeconfig "$NODE_KUBECONFIG" 1
  kubeconfig "$NODE_DIR/kubelet/kubeconfig" 2
  kubeconfig "$NODE_DIR/kube-proxy/kubeconfig" 3
  cat >"$CTRD/config.toml" <<TOML
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # built here (infra/node/build.sh); no registry is ever contacted
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "$NODE_STREAM_PORT"
  enable_unprivileged_ports = false
  enable_unprivileged_icmp = false
  disable_apparmor = true
  # This machine's root lacks CAP_SYS_RESOURCE: runc cannot set a negative oom_score_adj
  # (sandboxes ask for -998) and every sandbox would fail; clamp to containerd's own score.
  restrict_oom_score_adj = true
  # Pod netns bind mounts under the state folder, not /var/run/netns
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
        Root = "$CTRD/runc"
TOML
  # Pods: no default route, only the Pod range on-link and the Service range via the bridge.
  cat >"$NODE_DIR/cni/net.d/10-ticketing-node.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "ticketing-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "${NODE_IP%.*}.$((${NODE_IP##*.} + 1))", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "$SERVICE_CIDR"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": false}
  ]
}
JSON
  cat >"$NODE_DIR/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# this machine's cgroups are hybrid v1: allowed only with this (default true since v1.35)
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
address: $NODE_IP
port: $NODE_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $NODE_KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS_IP]
# no host resolv.conf: nothing in a Pod is pointed at the host's resolvers
resolvConf: ""
staticPodPath: $NODE_DIR/kubelet/manifests
podLogsDir: $NODE_DIR/kubelet/pod-logs
failSwapOn: false
rotateCertificates: false
serverTLSBootstrap: false
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
evictionHard:
  memory.available: 100Mi
  nodefs.available: 5%
  imagefs.available: 5%
# no KUBE-FIREWALL chains in the host's iptables
makeIPTablesUtilChains: false
# no CAP_SYS_RESOURCE (see containerd's restrict_oom_score_adj)
oomScoreAdj: 0
YAML
  cat >"$NODE_DIR/kube-proxy/config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $NODE_DIR/kube-proxy/kubeconfig
# its own nft tables (ip kube-proxy, ip6 kube-proxy), removed by down
mode: nftables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$NODE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$NODE_PROXY_METRICS_PORT
nodePortAddresses: ["$NODE_IP/32"]
# leave the host's conntrack sysctls alone
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
oomScoreAdj: 0
YAML
}

# The bridge, the route to the Service range and the forward guard. net.ipv4.ip_forward is
# needed (Pod -> ClusterIP -> Pod on the same bridge is routed by the host); its previous value
# is kept in $RUN/ip_forward for down.
start_net() {
  [[ -f $RUN/ip_forward ]] || sysctl -n net.ipv4.ip_forward >"$RUN/ip_forward"
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 || ip link add "$NODE_BRIDGE" type bridge
  sysctl -qw "net.ipv6.conf.$NODE_BRIDGE.disable_ipv6=1" 2>/dev/null || true
  ip addr replace "$NODE_IP/${POD_CIDR#*/}" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # Service IPs stay on the bridge even before kube-proxy has programmed them.
  ip route replace "$SERVICE_CIDR" dev "$NODE_BRIDGE"
  modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.ipv4.ip_forward=1
  # Nothing forwarded between the bridge and any other interface; nothing from the bridge to
  # the host but the node's own ranges.
  nft -f - <<NFT
table inet node_guard
delete table inet node_guard
table inet node_guard {
  chain forward {
    type filter hook forward priority -200; policy accept;
    iifname "$NODE_BRIDGE" oifname "$NODE_BRIDGE" accept
    iifname "$NODE_BRIDGE" counter drop
    oifname "$NODE_BRIDGE" counter drop
  }
  chain input {
    type filter hook input priority -200; policy accept;
    iifname "$NODE_BRIDGE" ip daddr != { $POD_CIDR, $SERVICE_CIDR } counter drop
    iifname "$NODE_BRIDGE" meta nfproto ipv6 counter drop
  }
}
NFT
}
net_up() { ip -br addr show "$NODE_BRIDGE" 2>/dev/null | grep -q "$NODE_IP/" && nft list table inet node_guard >/dev/null 2>&1; }

start_etcd() {
  launch etcd "$ETCD_BIN" --name node --data-dir "$NODE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$NODE_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$NODE_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$NODE_ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$NODE_ETCD_PEER_PORT" \
    --initial-cluster "node=http://127.0.0.1:$NODE_ETCD_PEER_PORT" \
    --listen-metrics-urls "http://127.0.0.1:$NODE_ETCD_METRICS_PORT" \
    --unsafe-no-fsync --quota-backend-bytes 2147483648 --log-level warn
  wait_for etcd "curl -sf http://127.0.0.1:$NODE_ETCD_PORT/health"
}

# Bound to the bridge address, so Pods reach it through the kubernetes Service. It talks to
# the kubelet by the node's InternalIP only: by default it would resolve the node's name
# through the host's resolver.
start_kube_apiserver() {
  launch kube-apiserver "$KUBE_APISERVER_BIN" \
    --etcd-servers "http://127.0.0.1:$NODE_ETCD_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$NODE_APISERVER_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
    --kubelet-client-certificate "$PKI/kubelet-client.crt" --kubelet-client-key "$PKI/kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range "$NODE_PORT_RANGE" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --cert-dir "$PKI/serving" --profiling=false --v 1
  wait_for kube-apiserver "api_get /readyz"
}

start_kube_controller_manager() {
  launch kube-controller-manager "$KUBE_CONTROLLER_MANAGER_BIN" \
    --kubeconfig "$NODE_KUBECONFIG" --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials --controllers '*,-nodeipam' --v 1
  wait_for kube-controller-manager "api_get /api/v1/namespaces/default/serviceaccounts/default"
}

start_kube_scheduler() {
  launch kube-scheduler "$KUBE_SCHEDULER_BIN" --kubeconfig "$NODE_KUBECONFIG" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 --v 1
  sleep 0.3
  pid_of kube-scheduler >/dev/null || die "kube-scheduler exited; log $LOGS/kube-scheduler.log"
}

# Paths outside the state folder that containerd 1.6 and the kubelet create whatever their
# configuration: the ones missing before up are listed in $RUN/host-paths, for down.
HOST_PATHS=(/run/containerd /var/log/containers /var/log/pods /var/lib/kubelet /etc/kubernetes /opt/containerd /var/lib/containerd)
note_host_paths() {
  local p
  for p in "${HOST_PATHS[@]}"; do
    [[ -e $p ]] || grep -qx "$p" "$RUN/host-paths" 2>/dev/null || echo "$p" >>"$RUN/host-paths"
  done
}

start_containerd() {
  note_host_paths
  launch containerd /usr/bin/containerd --config "$CTRD/config.toml" --log-level warn
  wait_for containerd "ctr -a $SOCK version"
}

# The kubelet answers and the Node it registered is Ready (down deletes the Node, so a stale
# Ready from the last run does not count).
node_ready() {
  curl -sf "http://127.0.0.1:$NODE_KUBELET_HEALTHZ_PORT/healthz" >/dev/null &&
    api_get "/api/v1/nodes/$NODE_NAME" | tr -d ' \n' | grep -q '"type":"Ready","status":"True"'
}

# The ports a server listens on.
ports_of() {
  case $1 in
    etcd) echo "$NODE_ETCD_PORT $NODE_ETCD_PEER_PORT $NODE_ETCD_METRICS_PORT" ;;
    kube-apiserver) echo "$NODE_APISERVER_PORT" ;;
    containerd) echo "$NODE_STREAM_PORT" ;;
    kubelet) echo "$NODE_KUBELET_PORT $NODE_KUBELET_HEALTHZ_PORT" ;;
    kube-proxy) echo "$NODE_PROXY_HEALTHZ_PORT $NODE_PROXY_METRICS_PORT" ;;
  esac
}

# Why the kubelet is not ready: its errors, and the Node's conditions.
explain_kubelet() {
  echo "kubelet errors (last 15):"
  grep -E '^E[0-9]{4}' "$LOGS/kubelet.log" | tail -n 15 | cut -c1-400
  echo "healthz: $(curl -s "http://127.0.0.1:$NODE_KUBELET_HEALTHZ_PORT/healthz" || echo no answer)"
  echo "Node $NODE_NAME conditions:"
  api_get "/api/v1/nodes/$NODE_NAME" | grep -E '"(type|status|reason|message)"' | cut -c1-300
}

start_kubelet() {
  launch kubelet "$KUBELET_BIN" --config "$NODE_DIR/kubelet/config.yaml" \
    --kubeconfig "$NODE_DIR/kubelet/kubeconfig" --root-dir "$NODE_DIR/kubelet/root" \
    --cert-dir "$NODE_DIR/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
  wait_for kubelet node_ready
}

start_kube_proxy() {
  launch kube-proxy "$KUBE_PROXY_BIN" --config "$NODE_DIR/kube-proxy/config.yaml" --v 1
  wait_for kube-proxy "curl -sf http://127.0.0.1:$NODE_PROXY_HEALTHZ_PORT/healthz"
}

# Import OCI archives into containerd's k8s.io namespace (skipped when the image is there).
import_archive() {
  local archive=$1 image=$2
  ctr_ images ls -q | grep -qx "$image" && return
  ctr_ images import "$archive" >/dev/null
}

# load IMAGE...: copy images from the podman store (images/build.sh) into the node.
load() {
  local image tmp
  pid_of containerd >/dev/null || die "the node is not up (make cluster-up)"
  # shellcheck source=images/common.sh
  source "$HERE/../../images/common.sh"
  CONTAINER_TOOL=podman LOCAL_BASE=1
  local_settings
  for image in "$@"; do
    tmp="$(mktemp "$NODE_DIR/load.XXXXXX")"
    tool save --format oci-archive -o "$tmp" "$image" >/dev/null 2>&1 ||
      { rm -f "$tmp"; die "cannot save $image from podman's store (images/build.sh builds it)"; }
    ctr_ images import "$tmp" >/dev/null
    rm -f "$tmp"
    say "loaded $image"
  done
}

# load-release RELEASE_YAML VALUES_OUT: every local image (localhost/...) that a rendered
# release of the chart names, tagged by its podman image id and loaded when the node lacks that
# tag (as charts/kind.sh does on kind); VALUES_OUT gets the values that name the tags, so a
# rebuilt image is a new tag and its Pods roll out. Service images go to image.tags, the
# infrastructure built here (localhost/node/NAME) to infra.NAME.image.
load_release() {
  local release=$1 out=$2 ref repo name id tag tags="" infra=""
  pid_of containerd >/dev/null || die "the node is not up (make cluster-up)"
  # shellcheck source=images/common.sh
  source "$HERE/../../images/common.sh"
  CONTAINER_TOOL=podman LOCAL_BASE=1
  local_settings
  while read -r ref <&3; do
    repo="${ref%:*}"
    name="${repo##*/}"
    id="$(tool image inspect --format '{{.Id}}' "$ref" 2>/dev/null)" ||
      die "no image $ref in podman's store (make images; infra/node/build.sh infra-images)"
    id="${id#sha256:}"
    tag="id-${id:0:12}"
    case $repo in
      localhost/node/*) infra+="  $name:\n    image: $repo:$tag\n" ;;
      *) tags+="    $name: $tag\n" ;;
    esac
    ctr_ images ls -q | grep -qx "$repo:$tag" && continue
    tool tag "$ref" "$repo:$tag"
    load "$repo:$tag"
  done 3< <(sed -n 's/^ *image: *"\{0,1\}\(localhost\/[^" ]*\)"\{0,1\}$/\1/p' "$release" | sort -u)
  { printf 'image:\n  tags:\n%b' "$tags"; [[ -z $infra ]] || printf 'infra:\n%b' "$infra"; } >"$out"
}

coredns() {
  # Non-root, no capabilities: it listens on 1053; the kube-dns Service maps 53 to it.
  # No `forward`: nothing is ever sent to an upstream resolver.
  kctl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:1053 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
        loop
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: coredns
        image: $COREDNS_IMAGE
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {containerPort: 1053, name: dns, protocol: UDP}
        - {containerPort: 1053, name: dns-tcp, protocol: TCP}
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 1
        livenessProbe:
          httpGet: {path: /health, port: 8080}
        resources:
          requests: {cpu: 50m, memory: 40Mi}
          limits: {memory: 128Mi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes:
      - name: config
        configMap: {name: coredns}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $CLUSTER_DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
YAML
  kctl -n kube-system rollout status deploy/coredns --timeout=120s >/dev/null
}

is_up() {
  if [[ $1 == net ]]; then net_up; else pid_of "$1" >/dev/null; fi
}

up() {
  local t0 t name
  t0="$(now)"
  [[ -x $KUBE_APISERVER_BIN && -x $ETCD_BIN ]] || bash "$HERE/../k8s/build.sh"
  [[ -x $KUBELET_BIN && -x $KUBE_PROXY_BIN && -x $KUBECTL_BIN && -f $NODE_IMAGES_DIR/pause.tar &&
    -f $NODE_IMAGES_DIR/coredns.tar ]] || bash "$HERE/build.sh"
  command -v containerd >/dev/null && command -v nft >/dev/null && [[ -x /usr/lib/cni/bridge ]] ||
    die "needs containerd, runc, nftables and the CNI plugins from Debian: apt-get install containerd runc containernetworking-plugins nftables conntrack"
  mkdir -p "$LOGS" "$RUN"
  pki
  configs
  for name in "${ALL[@]}"; do
    if is_up "$name"; then say "$name already running"; continue; fi
    t="$(now)"
    # shellcheck disable=SC2046  # a port a word
    require_free_ports $(ports_of "$name")
    "start_${name//-/_}"
    say "$name up in $(since "$t") s"
    if [[ $name == containerd ]]; then
      t="$(now)"
      import_archive "$NODE_IMAGES_DIR/pause.tar" "$PAUSE_IMAGE"
      import_archive "$NODE_IMAGES_DIR/coredns.tar" "$COREDNS_IMAGE"
      say "images imported in $(since "$t") s"
    fi
  done
  t="$(now)"
  coredns
  say "CoreDNS available in $(since "$t") s"
  say "cluster ready in $(since "$t0") s: KUBECONFIG=$NODE_KUBECONFIG ($API), kubectl: $KUBECTL_BIN"
}

stop() {
  local name=$1 pid
  pid="$(pid_of "$name")" || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do [[ -e /proc/$pid ]] && [[ -n $(tr -d '\0' </proc/"$pid"/cmdline 2>/dev/null) ]] || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$RUN/$name.pid"
  say "$name stopped"
}

down() {
  local t0 m h c
  t0="$(now)"
  # 1. The kubelet tears the Pods down (CNI DEL, sandboxes stopped): delete them through the
  # API and wait until containerd runs no task.
  if pid_of kubelet >/dev/null && pid_of kube-apiserver >/dev/null && [[ -x $KUBECTL_BIN ]]; then
    kctl delete deploy,sts,ds,rs,job,pod --all -A --wait=false --grace-period=1 >/dev/null 2>&1 || true
    for _ in $(seq 60); do [[ -z $(ctr_ tasks ls -q 2>/dev/null) ]] && break; sleep 0.5; done
  fi
  if pid_of kube-apiserver >/dev/null && [[ -x $KUBECTL_BIN ]]; then
    kctl delete node "$NODE_NAME" --wait=false >/dev/null 2>&1 || true
  fi
  stop kube-proxy
  nft delete table ip kube-proxy 2>/dev/null || true
  nft delete table ip6 kube-proxy 2>/dev/null || true
  stop kubelet
  # 2. Whatever containerd still runs.
  if pid_of containerd >/dev/null; then
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  # Shims left by a killed containerd (their socket paths name our state folder).
  for c in $(pgrep -f "containerd-shim-runc-v2 .*-address $SOCK" 2>/dev/null); do kill -KILL "$c" 2>/dev/null || true; done
  for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$name"; done
  # 3. Mounts under the state folder (volumes, rootfs overlays, netns), deepest first.
  if [[ -d $NODE_DIR ]]; then
    findmnt -rn -o TARGET | grep -F "$NODE_DIR/" | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  fi
  # 4. The kubelet's cgroups (cgroupfs driver: kubepods in each v1 hierarchy and the unified one).
  for h in /sys/fs/cgroup/*/; do
    [[ -d ${h}kubepods ]] && find "${h}kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  # 5. Network: kube-proxy's and the guard's nft tables, the route, the bridge (and veths), ip_forward.
  nft delete table inet node_guard 2>/dev/null || true
  ip route del "$SERVICE_CIDR" dev "$NODE_BRIDGE" 2>/dev/null || true
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  if [[ -f $RUN/ip_forward ]]; then
    sysctl -qw "net.ipv4.ip_forward=$(<"$RUN/ip_forward")"
    rm -f "$RUN/ip_forward"
  fi
  # 6. What containerd 1.6 (shim sockets and fifos in /run/containerd) and the kubelet made
  # outside the state folder, when no other containerd or kubelet runs.
  if [[ -f $RUN/host-paths ]] && ! pgrep -x containerd >/dev/null && ! pgrep -x kubelet >/dev/null; then
    while read -r m; do [[ -e $m ]] && rm -rf "$m" && say "removed $m"; done <"$RUN/host-paths"
    rm -f "$RUN/host-paths"
  fi
  if [[ ${1:-} == --purge ]]; then
    rm -rf "$NODE_DIR"
    say "purged $NODE_DIR"
  fi
  say "down in $(since "$t0") s"
}

status() {
  local name rc=0 pid
  for name in "${ALL[@]}"; do
    if [[ $name == net ]]; then
      if net_up; then echo "net: $NODE_BRIDGE $NODE_IP/${POD_CIDR#*/}, guard inet node_guard"; else echo "net: down"; rc=1; fi
    elif pid="$(pid_of "$name")"; then
      echo "$name: running (pid $pid, log $LOGS/$name.log)"
    else
      echo "$name: stopped"
      rc=1
    fi
  done
  if ((rc == 0)); then
    kctl get nodes -o wide 2>&1 || rc=1
    kctl get pods -A -o wide 2>&1 || rc=1
    echo "KUBECONFIG=$NODE_KUBECONFIG"
  fi
  return $rc
}

case ${1:-} in
  up) up ;;
  down) down "${2:-}" ;;
  purge) down --purge ;;
  status) status ;;
  load) shift; load "$@" ;;
  load-release) load_release "$2" "$3" ;;
  kubectl) shift; kctl "$@" ;;
  *) echo "usage: $0 up|down [--purge]|purge|status|load IMAGE...|load-release RELEASE_YAML VALUES_OUT|kubectl ARGS..." >&2; exit 2 ;;
esac
