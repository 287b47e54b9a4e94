#!/bin/sh
# kafka-storage.sh ARGS: kafka.tools.StorageTool (format, random-uuid)
exec java -Xmx128m -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties \
  -cp '/opt/kafka/libs/*' kafka.tools.StorageTool "$@"
