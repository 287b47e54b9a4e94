#!/usr/bin/env bash
# The tools of the chart's scripts, as shell assignments on stdout (progress on stderr):
#   charts/tools.sh          HELM (exactly $HELM_VERSION: `make chart-check` compares renders
#                            byte for byte), KEDA_CRDS and PROMETHEUS_OPERATOR_CRDS, the CRDs
#                            of KEDA and prometheus-operator from their Go modules
#   charts/tools.sh --kind   HELM (any Helm from $HELM_MIN_VERSION on) and KEDA_VERSION, for
#                            charts/kind.sh
# Helm is the `helm` on PATH when it fits; else it is built from the Go module proxy into
# $TICKETING_CACHE/bin (cached; needs Go).
set -euo pipefail

TICKETING_CACHE="${TICKETING_CACHE:-$HOME/.cache/ticketing}"
export PATH="$PATH:/usr/local/go/bin"
HELM_VERSION="${HELM_VERSION:-v4.3.1}"
# Helm 3.14 supports Kubernetes 1.29, the chart's oldest (Helm's version skew policy).
HELM_MIN_VERSION=v3.14.0
KEDA_VERSION="${KEDA_VERSION:-v2.21.0}"
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.94.1}"
TOOLS_BIN="$TICKETING_CACHE/bin"
HELM_BIN="$TOOLS_BIN/helm-$HELM_VERSION"

say() { echo "chart-tools: $*" >&2; }

need_go() {
  command -v go >/dev/null || {
    say "$1 needs Go 1.24 or newer (https://go.dev/dl/)${2:+, or $2}"
    exit 1
  }
}

# The `helm` on PATH if its version fits ($1: exact or min), else nothing.
helm_on_path() {
  local version
  command -v helm >/dev/null || return 0
  version="$(helm version --template '{{.Version}}' 2>/dev/null)" || return 0
  case $1 in
    exact) [[ $version == "$HELM_VERSION" ]] ||
      { say "Helm $version on PATH is not $HELM_VERSION"; return 0; } ;;
    min) [[ "$(printf '%s\n%s\n' "$HELM_MIN_VERSION" "$version" | sort -V | head -n1)" == "$HELM_MIN_VERSION" ]] ||
      { say "Helm $version on PATH is older than $HELM_MIN_VERSION"; return 0; } ;;
  esac
  say "Helm $version from PATH"
  command -v helm
}

build_helm() {
  if [[ -x $HELM_BIN ]]; then
    say "Helm $HELM_VERSION already built at $HELM_BIN"
    return
  fi
  need_go "Building Helm" "Helm $HELM_MIN_VERSION or newer on PATH (https://helm.sh/docs/intro/install/)"
  say "building Helm $HELM_VERSION into $HELM_BIN (takes minutes)"
  local start=$SECONDS work log="$TICKETING_CACHE/helm-build.log"
  mkdir -p "$TOOLS_BIN"
  work="$(mktemp -d "$TICKETING_CACHE/helm-build.XXXXXX")"
  # shellcheck disable=SC2064  # expand $work now
  trap "rm -rf '$work'" EXIT
  if ! GOBIN="$work" nice go install -trimpath -ldflags "-s -w" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    say "Helm build failed, full log: $log"
    exit 1
  fi
  mv "$work/helm" "$HELM_BIN"
  say "Helm built in $((SECONDS - start)) s"
}

# The module cache keeps the download; `go mod download -json` prints its directory.
keda_crds() {
  need_go "KEDA's CRDs"
  local dir
  dir="$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d $dir/config/crd/bases ]] || { say "no CRDs in KEDA $KEDA_VERSION"; exit 1; }
  echo "$dir/config/crd/bases"
}

# The PodMonitor's CRD, from the operator's module, alone in a directory of the cache (the
# module's other CRDs hold YAML that a safe loader refuses).
prometheus_operator_crds() {
  need_go "prometheus-operator's CRDs"
  local dir crd=monitoring.coreos.com_podmonitors.yaml
  local out="$TICKETING_CACHE/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION"
  if [[ ! -f $out/$crd ]]; then
    dir="$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -f $dir/example/prometheus-operator-crd/$crd ]] ||
      { say "no PodMonitor CRD in prometheus-operator $PROMETHEUS_OPERATOR_VERSION"; exit 1; }
    mkdir -p "$out"
    cp "$dir/example/prometheus-operator-crd/$crd" "$out/"
  fi
  echo "$out"
}

case ${1:-} in
  --kind)
    helm="$(helm_on_path min)"
    [[ -n $helm ]] || { build_helm; helm=$HELM_BIN; }
    echo "HELM=$helm"
    echo "KEDA_VERSION=${KEDA_VERSION#v}"
    ;;
  "")
    helm="$(helm_on_path exact)"
    [[ -n $helm ]] || { build_helm; helm=$HELM_BIN; }
    echo "HELM=$helm"
    echo "KEDA_CRDS=$(keda_crds)"
    echo "PROMETHEUS_OPERATOR_CRDS=$(prometheus_operator_crds)"
    ;;
  *) say "usage: charts/tools.sh [--kind]"; exit 2 ;;
esac
