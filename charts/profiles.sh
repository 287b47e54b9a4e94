#!/usr/bin/env bash
# The chart's profiles: charts/ticketing/ci/<profile>-values.yaml. A profile <base>-<name> whose
# <base> is a profile too is layered on it: kind-keda is kind's values, then kind-keda's.
# Read by charts/check.sh, charts/kind.sh and charts/tests/test_chart_on_cluster.py.
# Usage: charts/profiles.sh            every profile, one a line
#        charts/profiles.sh PROFILE    its values files, base first, one a line
set -euo pipefail
CI="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ticketing/ci"

files() {
  [[ -f $CI/$1-values.yaml ]] || { echo "profiles: no profile $1 ($CI/$1-values.yaml)" >&2; exit 2; }
  if [[ $1 == *-* && -f $CI/${1%-*}-values.yaml ]]; then
    files "${1%-*}"
  fi
  echo "$CI/$1-values.yaml"
}

if (($#)); then
  files "$1"
else
  for f in "$CI"/*-values.yaml; do
    f="${f##*/}"
    echo "${f%-values.yaml}"
  done
fi
