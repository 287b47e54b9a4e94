# shellcheck shell=bash
# Defaults for the local infrastructure (source it from bash). Every value can be
# overridden from the environment.

INFRA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

export TICKETING_CACHE="${TICKETING_CACHE:-$HOME/.cache/ticketing}"
export INFRA_DIR="${INFRA_DIR:-$(dirname "$INFRA_ROOT")/.infra}"

# The Kafka version is pinned once, in infra/kafka/pom.xml.
export KAFKA_VERSION="${KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$INFRA_ROOT/kafka/pom.xml")}"
export KAFKA_LIBS="${KAFKA_LIBS:-$TICKETING_CACHE/kafka-$KAFKA_VERSION/libs}"
export KAFKA_PORT="${KAFKA_PORT:-9092}"
export KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
# KAFKA_BROKERS=3 runs a cluster of combined broker+controller nodes instead of one. Node N
# (from 1) listens on KAFKA_PORT+2(N-1) for clients and KAFKA_CONTROLLER_PORT+2(N-1) for the
# quorum (defaults: 9092/9093, 9094/9095, 9096/9097); the bootstrap list names every node.
export KAFKA_BROKERS="${KAFKA_BROKERS:-1}"
KAFKA_LOCAL_BOOTSTRAP="$(for ((n = 0; n < KAFKA_BROKERS; n++)); do printf ',127.0.0.1:%d' $((KAFKA_PORT + 2 * n)); done)"
export KAFKA_LOCAL_BOOTSTRAP="${KAFKA_LOCAL_BOOTSTRAP#,}"
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-$KAFKA_LOCAL_BOOTSTRAP}"

export REDIS_PORT="${REDIS_PORT:-6379}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}"

export PG_PORT="${PG_PORT:-5432}"
export DATABASE_URL="${DATABASE_URL:-postgresql+psycopg://ticketing:ticketing@127.0.0.1:$PG_PORT/ticketing}"

# Jaeger v1.7x tags are the Jaeger v2 binary; infra/jaeger/config.yaml reads the ports.
export JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"
export JAEGER_BIN="${JAEGER_BIN:-$TICKETING_CACHE/bin/jaeger}"
export JAEGER_OTLP_GRPC_PORT="${JAEGER_OTLP_GRPC_PORT:-4317}"
export JAEGER_OTLP_HTTP_PORT="${JAEGER_OTLP_HTTP_PORT:-4318}"
export JAEGER_QUERY_PORT="${JAEGER_QUERY_PORT:-16686}"
export JAEGER_QUERY_GRPC_PORT="${JAEGER_QUERY_GRPC_PORT:-16685}"
export OTEL_EXPORTER_OTLP_ENDPOINT="${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:$JAEGER_OTLP_GRPC_PORT}"
export JAEGER_QUERY_URL="${JAEGER_QUERY_URL:-http://127.0.0.1:$JAEGER_QUERY_PORT}"

# The Go module's v0.3XX.Y tag is Prometheus 3.XX.Y. Tests run their own Prometheus from it
# (ticketing_events.testing.PrometheusServer).
export PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
export PROMETHEUS_BIN="${PROMETHEUS_BIN:-$TICKETING_CACHE/bin/prometheus}"
