#!/usr/bin/env bash
# Build or fetch what `make chart-check` needs, cached under $TICKETING_CACHE (idempotent):
# Helm from the Go module proxy, and KEDA's CRDs from its Go module.
# Prints the paths as shell assignments (HELM=..., KEDA_CRDS=...) on stdout; progress on stderr.
set -euo pipefail
# shellcheck source=infra/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/../infra/env.sh"

export PATH="$PATH:/usr/local/go/bin"
HELM_VERSION="${HELM_VERSION:-v4.3.1}"
KEDA_VERSION="${KEDA_VERSION:-v2.21.0}"
TOOLS_BIN="$TICKETING_CACHE/bin"
HELM_BIN="$TOOLS_BIN/helm-$HELM_VERSION"

say() { echo "chart-tools: $*" >&2; }

need_go() {
  command -v go >/dev/null || { echo "chart-tools: Go (1.24 or newer) is needed" >&2; exit 1; }
}

install_helm() {
  if [[ -x $HELM_BIN ]]; then
    say "Helm $HELM_VERSION already built at $HELM_BIN"
    return
  fi
  need_go
  say "building Helm $HELM_VERSION into $HELM_BIN (takes minutes)"
  local start=$SECONDS work log="$TICKETING_CACHE/helm-build.log"
  mkdir -p "$TOOLS_BIN"
  work="$(mktemp -d "$TICKETING_CACHE/helm-build.XXXXXX")"
  # shellcheck disable=SC2064  # expand $work now
  trap "rm -rf '$work'" EXIT
  if ! GOBIN="$work" nice go install -trimpath -ldflags "-s -w" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "chart-tools: Helm build failed, full log: $log" >&2
    exit 1
  fi
  mv "$work/helm" "$HELM_BIN"
  say "Helm built in $((SECONDS - start)) s"
}

# The module cache keeps the download; `go mod download -json` prints its directory.
keda_crds() {
  need_go
  local dir
  dir="$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d $dir/config/crd/bases ]] || { echo "chart-tools: no CRDs in KEDA $KEDA_VERSION" >&2; exit 1; }
  echo "$dir/config/crd/bases"
}

install_helm
crds="$(keda_crds)"
echo "HELM=$HELM_BIN"
echo "KEDA_CRDS=$crds"
