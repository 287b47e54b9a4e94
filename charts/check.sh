#!/usr/bin/env bash
# `make chart-check`: lint the chart with each ci/ values file, render it, diff the renders
# against the golden manifests in examples/, validate every object and the chart's CRDs offline
# (Kubernetes schemas; KEDA's CRDs and the chart's for custom resources) and check that bad
# values are refused.
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

profiles=()
for values in "$CHART"/ci/*-values.yaml; do
  profile="$(basename "$values" -values.yaml)"
  profiles+=("$profile")
  "$HELM" lint --strict "$CHART" --kube-version "$KUBE_VERSION" -f "$values" >"$work/lint.log" ||
    { cat "$work/lint.log"; exit 1; }
  render -f "$values" >"$work/$profile.yaml"
done
say "helm lint --strict passed: ${profiles[*]}"

if [[ ${1:-} == --golden ]]; then
  rm -f "$CHART"/examples/*.yaml
  cp "$work"/*.yaml "$CHART/examples/"
  say "golden manifests written to $CHART/examples/"
  exit 0
fi

stale=0
for profile in "${profiles[@]}"; do
  diff -u "$CHART/examples/$profile.yaml" "$work/$profile.yaml" || stale=1
done
if ((stale)); then
  echo "chart-check: the renders differ from $CHART/examples/; run \`make chart-golden\` and review" >&2
  exit 1
fi
say "renders match $CHART/examples/"

"$UV" run --quiet --no-project --with "$KUBERNETES_VALIDATE" python charts/validate.py \
  --kube-version "$KUBE_VERSION" --crds "$KEDA_CRDS" --crds "$CHART/crds" \
  "$CHART"/crds/*.yaml "$work"/*.yaml
say "every object valid against Kubernetes $KUBE_VERSION, KEDA's CRDs and the chart's"

# Values the chart must refuse, each with the message it must give.
refuse() {
  local expected=$1
  shift
  if render "$@" >/dev/null 2>"$work/err"; then
    echo "chart-check: rendered, but should have refused: $*" >&2
    exit 1
  fi
  grep -q -- "$expected" "$work/err" ||
    { echo "chart-check: refused without \"$expected\": $*" >&2; cat "$work/err" >&2; exit 1; }
}
refuse "above topics.partitions" -f "$CHART/ci/keda-values.yaml" \
  --set components.ranking-consumer.autoscaling.maxReplicas=13
refuse "leave database.url" -f "$CHART/ci/external-values.yaml" --set database.url=postgresql://u:p@h/d
refuse "additional properties" -f "$CHART/ci/default-values.yaml" --set components.compensator.replica=2
refuse "kafka.bootstrapServers is required" -f "$CHART/ci/default-values.yaml" --set kafka.bootstrapServers=
refuse "minReplicas must be at least 1" -f "$CHART/ci/hpa-values.yaml" \
  --set components.default.autoscaling.minReplicas=0
refuse "above topics.partitions" -f "$CHART/ci/operator-values.yaml" \
  --set components.ranking-consumer.autoscaling.maxReplicas=7
refuse "needs components.lag-autoscaler.enabled" -f "$CHART/ci/operator-values.yaml" \
  --set components.lag-autoscaler.enabled=false
refuse "the chart sets them" -f "$CHART/ci/operator-values.yaml" \
  --set "components.lag-autoscaler.args={run}"
refuse "the operator does not implement it" -f "$CHART/ci/operator-values.yaml" \
  --set components.ranking-consumer.autoscaling.keda.excludePersistentLag=true
say "bad values refused"
