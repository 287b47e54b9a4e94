#!/usr/bin/env bash
# Install what the local infrastructure needs (Debian bookworm, as root), idempotently:
# Debian packages, the Kafka jars and the Jaeger and Prometheus binaries (into $TICKETING_CACHE).
set -euo pipefail
# shellcheck source=infra/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

export PATH="$PATH:/usr/local/go/bin"

say() { echo "install: $*"; }

install_packages() {
  local pkgs=()
  command -v redis-server >/dev/null || pkgs+=(redis-server)
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || pkgs+=(postgresql)
  command -v curl >/dev/null || pkgs+=(curl)
  command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || pkgs+=(maven)
  if ((${#pkgs[@]} == 0)); then
    say "Debian packages already present"
    return
  fi
  say "apt-get install ${pkgs[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
  # Package scripts may start the distro's own instances, which would hold our
  # ports; infra.sh runs its own.
  local svc
  for svc in redis-server postgresql; do
    invoke-rc.d "$svc" stop >/dev/null 2>&1 || true
  done
}

install_kafka() {
  if [[ -f $KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar ]]; then
    say "Kafka $KAFKA_VERSION jars already in $KAFKA_LIBS"
    return
  fi
  say "downloading Kafka $KAFKA_VERSION jars into $KAFKA_LIBS"
  local start=$SECONDS tmp="$KAFKA_LIBS.tmp" log="$TICKETING_CACHE/kafka-download.log"
  rm -rf "$tmp"
  mkdir -p "$(dirname "$KAFKA_LIBS")"
  if ! mvn -B -f "$INFRA_ROOT/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$tmp" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "install: Kafka download failed, full log: $log" >&2
    exit 1
  fi
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  say "Kafka jars downloaded in $((SECONDS - start)) s"
}

# `go install ...@version` refuses Jaeger because its go.mod has a replace directive,
# so the binary is built from a throwaway wrapper module carrying the same replace.
install_jaeger() {
  if [[ -x $JAEGER_BIN ]]; then
    say "Jaeger already built at $JAEGER_BIN"
    return
  fi
  command -v go >/dev/null || { echo "install: Go (1.21 or newer) is needed to build Jaeger" >&2; exit 1; }
  say "building Jaeger $JAEGER_VERSION into $JAEGER_BIN (takes minutes)"
  local start=$SECONDS work log="$TICKETING_CACHE/jaeger-build.log"
  mkdir -p "$TICKETING_CACHE" "$(dirname "$JAEGER_BIN")"
  work="$(mktemp -d "$TICKETING_CACHE/jaeger-build.XXXXXX")"
  # shellcheck disable=SC2064  # expand $work now
  trap "rm -rf '$work'" EXIT
  # set -e does not apply inside an `if` condition, hence the && chain.
  # The replace mirrors the one in Jaeger's own go.mod.
  if ! (
    cd "$work" &&
      go mod init local/jaeger-build &&
      go mod edit -replace=github.com/Shopify/sarama=github.com/Shopify/sarama@v1.33.0 &&
      go get "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" &&
      go build -trimpath -o "$JAEGER_BIN.tmp" \
        -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_VERSION" \
        github.com/jaegertracing/jaeger/cmd/jaeger
  ) >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "install: Jaeger build failed, full log: $log" >&2
    exit 1
  fi
  mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
  say "Jaeger built in $((SECONDS - start)) s"
}

# Prometheus's go.mod has no replace directive, so `go install ...@version` builds it. The
# remove_all_sd tag leaves out every service-discovery plugin (static targets are enough);
# without the builtinassets tag there is no web UI, only the HTTP API. The release name
# (the module's VERSION file) and the module version are stamped in, as `--version` prints
# them, so a binary of another version is rebuilt.
install_prometheus() {
  if [[ -x $PROMETHEUS_BIN && $("$PROMETHEUS_BIN" --version 2>&1) == *"revision: $PROMETHEUS_VERSION)"* ]]; then
    say "Prometheus $PROMETHEUS_VERSION already built at $PROMETHEUS_BIN"
    return
  fi
  command -v go >/dev/null || { echo "install: Go (1.26.7 or newer) is needed to build Prometheus" >&2; exit 1; }
  say "building Prometheus $PROMETHEUS_VERSION into $PROMETHEUS_BIN (takes minutes)"
  local start=$SECONDS work log="$TICKETING_CACHE/prometheus-build.log"
  local module=github.com/prometheus/prometheus
  mkdir -p "$TICKETING_CACHE" "$(dirname "$PROMETHEUS_BIN")"
  work="$(mktemp -d "$TICKETING_CACHE/prometheus-build.XXXXXX")"
  # set -e does not apply inside an `if` condition, hence the && chain.
  if ! (
    dir="$(go mod download -json "$module@$PROMETHEUS_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')" &&
      stamp="-X github.com/prometheus/common/version.Version=$(cat "$dir/VERSION")" &&
      stamp+=" -X github.com/prometheus/common/version.Revision=$PROMETHEUS_VERSION" &&
      CGO_ENABLED=0 GOBIN="$work" go install -trimpath -tags remove_all_sd -ldflags "-s -w $stamp" \
        "$module/cmd/prometheus@$PROMETHEUS_VERSION"
  ) >"$log" 2>&1; then
    rm -rf "$work"
    tail -n 30 "$log" >&2
    echo "install: Prometheus build failed, full log: $log" >&2
    exit 1
  fi
  mv "$work/prometheus" "$PROMETHEUS_BIN"
  rm -rf "$work"
  say "Prometheus built in $((SECONDS - start)) s ($(du -m "$PROMETHEUS_BIN" | cut -f1) MB)"
}

install_packages
install_kafka
install_jaeger
install_prometheus
say "done"
