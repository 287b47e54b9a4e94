# shellcheck shell=bash
# Go builds from the module proxy, shared by infra/k8s/build.sh and infra/node/build.sh.
# The caller sets TICKETING_CACHE and K8S_BIN_DIR and defines say.

# go_build NAME FUNCTION: run FUNCTION in a fresh wrapper module folder, logged and timed.
go_build() {
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

# k8s_commands VERSION COMMAND...: build k8s.io/kubernetes/cmd/COMMAND... of VERSION into
# $K8S_BIN_DIR/COMMAND-VERSION, from the current (empty) folder.
#
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, k8s.io/apiserver, ...) with
# local paths, so it cannot be `go install`ed: a throwaway wrapper module requires it and
# replaces each staging module with its published v0.X.Y release. Every build of one
# VERSION resolves the same modules, so they share the Go build cache.
k8s_commands() {
  local v=$1 gomod staging minor ver c packages=()
  shift
  minor="${v#v1.}"; minor="${minor%%.*}"
  go mod init local/kubernetes-build
  go mod edit -require="k8s.io/kubernetes@$v"
  gomod="$(go mod download -json "k8s.io/kubernetes@$v" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  staging="$(sed -n 's:^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*:\1:p' "$gomod")"
  [[ -n $staging ]] || { echo "no staging replaces found in k8s.io/kubernetes $v go.mod"; return 1; }
  for m in $staging; do go mod edit -replace="$m=$m@v0.${v#v1.}"; done
  for c in "$@"; do packages+=("k8s.io/kubernetes/cmd/$c"); done
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    printf '\t_ "%s"\n' "${packages[@]}"
    printf ')\n'
  } >tools.go
  go mod tidy
  ver="-X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1"
  ver="$ver -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  # kubectl reports its client version from client-go's version package too.
  ver="$ver -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1"
  ver="$ver -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  mkdir gobin
  GOBIN="$PWD/gobin" nice go install -trimpath -tags tools -ldflags "-s -w $ver" "${packages[@]}"
  for c in "$@"; do mv "gobin/$c" "$K8S_BIN_DIR/$c-$v"; done
}
