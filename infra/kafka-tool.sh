#!/usr/bin/env bash
# Run a Kafka CLI class with the cached jars, e.g.
#   infra/kafka-tool.sh org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#   infra/kafka-tool.sh org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server 127.0.0.1:9092 --describe --all-groups
set -euo pipefail
# shellcheck source=infra/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

if (($# == 0)); then
  echo "usage: $0 <MainClass> [args...]" >&2
  exit 2
fi
if [[ ! -d $KAFKA_LIBS ]]; then
  echo "Kafka jars not found in $KAFKA_LIBS: run infra/install.sh" >&2
  exit 1
fi
# C1-only JIT and serial GC start a short-lived CLI JVM faster.
exec java -Xmx512m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
  -Dlog4j2.configurationFile="$INFRA_ROOT/kafka/tools-log4j2.properties" \
  -cp "$KAFKA_LIBS/*" "$@"
