#!/bin/sh
# As the official image's entrypoint: a redis-server started with arguments and no config
# file serves the Pod's network without protected mode (the chart passes its own arguments).
if [ "${1:-}" = redis-server ]; then
  exec "$@" --protected-mode no
fi
exec "$@"
