#!/bin/sh
# kafka-run-class.sh CLASS ARGS: a Kafka CLI tool from the jars (KAFKA_HEAP_OPTS as in Apache's scripts).
# shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of options
exec java ${KAFKA_HEAP_OPTS:--Xmx128m} -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties \
  -cp '/opt/kafka/libs/*' "$@"
