#!/usr/bin/env bash
# `make chart-check`: lint the chart with each profile's values (charts/profiles.sh: the ci/
# files, kind-* layered on kind), render it and its NOTES, diff them against the goldens in
# examples/, validate every object and the chart's CRDs offline (Kubernetes schemas; KEDA's,
# prometheus-operator's and the chart's CRDs for custom resources) and check that bad values are refused.
# `charts/check.sh --golden` (`make chart-golden`) rewrites examples/ instead of diffing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KUBE_VERSION="${KUBE_VERSION:-1.34.0}"
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
CHART=charts/ticketing
eval "$(bash charts/tools.sh)"
UV="$(scripts/ensure-uv.sh)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

say() { echo "chart-check: $*"; }

render() { "$HELM" template ticketing "$CHART" --namespace ticketing --kube-version "$KUBE_VERSION" "$@"; }

# The NOTES of an install: a client-side dry run, with no kubeconfig to reach a cluster.
notes() {
  KUBECONFIG="$work/no-kubeconfig" "$HELM" install ticketing "$CHART" --namespace ticketing \
    --dry-run=client "$@" | sed -n '/^NOTES:$/,$p' | tail -n +2
}

# -f for each values file of a profile.
values_of() {
  local file
  for file in $(bash charts/profiles.sh "$1"); do
    printf -- '-f\n%s\n' "$file"
  done
}

profiles=()
for profile in $(bash charts/profiles.sh); do
  profiles+=("$profile")
  mapfile -t values < <(values_of "$profile")
  "$HELM" lint --strict "$CHART" --kube-version "$KUBE_VERSION" "${values[@]}" >"$work/lint.log" ||
    { cat "$work/lint.log"; exit 1; }
  render "${values[@]}" >"$work/$profile.yaml"
  notes "${values[@]}" >"$work/$profile.NOTES.txt"
done
say "helm lint --strict passed: ${profiles[*]}"

if [[ ${1:-} == --golden ]]; then
  rm -f "$CHART"/examples/*.yaml "$CHART"/examples/*.NOTES.txt
  cp "$work"/*.yaml "$work"/*.NOTES.txt "$CHART/examples/"
  say "golden manifests written to $CHART/examples/"
  exit 0
fi

stale=0
for profile in "${profiles[@]}"; do
  for golden in "$profile.yaml" "$profile.NOTES.txt"; do
    diff -u "$CHART/examples/$golden" "$work/$golden" || stale=1
  done
done
if ((stale)); then
  echo "chart-check: the renders differ from $CHART/examples/; run \`make chart-golden\` and review" >&2
  exit 1
fi
say "renders match $CHART/examples/"

"$UV" run --quiet --no-project --with "$KUBERNETES_VALIDATE" python charts/validate.py \
  --kube-version "$KUBE_VERSION" --crds "$KEDA_CRDS" --crds "$PROMETHEUS_OPERATOR_CRDS" --crds "$CHART/crds" \
  "$CHART"/crds/*.yaml "$work"/*.yaml
say "every object valid against Kubernetes $KUBE_VERSION, KEDA's and prometheus-operator's CRDs and the chart's"

# Values the chart must refuse, each with the message it must give: refuse MESSAGE PROFILE ARGS.
refuse() {
  local expected=$1 values
  mapfile -t values < <(values_of "$2")
  shift 2
  set -- "${values[@]}" "$@"
  if render "$@" >/dev/null 2>"$work/err"; then
    echo "chart-check: rendered, but should have refused: $*" >&2
    exit 1
  fi
  grep -q -- "$expected" "$work/err" ||
    { echo "chart-check: refused without \"$expected\": $*" >&2; cat "$work/err" >&2; exit 1; }
}
refuse "above topics.partitions" kind-keda --set components.ranking-consumer.autoscaling.maxReplicas=7
refuse "leave database.url" external --set database.url=postgresql://u:p@h/d
refuse "additional properties" default --set components.compensator.replica=2
refuse "kafka.bootstrapServers is required" default --set kafka.bootstrapServers=
refuse "minReplicas must be at least 1" hpa \
  --set components.default.autoscaling.minReplicas=0
refuse "above topics.partitions" operator \
  --set components.ranking-consumer.autoscaling.maxReplicas=7
refuse "needs components.lag-autoscaler.enabled" operator \
  --set components.lag-autoscaler.enabled=false
refuse "the chart sets them" operator \
  --set "components.lag-autoscaler.args={run}"
refuse "the operator does not implement it" operator \
  --set components.ranking-consumer.autoscaling.keda.excludePersistentLag=true
refuse "needs components.payment-api.enabled" kind --set components.payment-api.enabled=false
refuse "auth needs a key source" default --set auth.jwksUrl=
refuse "auth.jwtSecret empty" external --set auth.jwtSecret=not-in-values
refuse "mints its users' tokens" kind --set auth.jwtSecret= --set auth.jwksUrl=https://idp.example/jwks
say "bad values refused"
