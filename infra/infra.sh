#!/usr/bin/env bash
# Local infrastructure on loopback: Kafka (KRaft), Redis, PostgreSQL, Jaeger.
#   infra.sh up|down|status [kafka|redis|postgres|jaeger ...]   (default: all four)
#   infra.sh down --purge [...]   or   infra.sh purge [...]     (also delete their data)
#   infra.sh kafka-kill|kafka-stop|kafka-start N                 (one Kafka node: SIGKILL,
#                                                                  SIGTERM, start and wait)
# Data, logs and pid files live under $INFRA_DIR; ports and URLs come from infra/env.sh.
# KAFKA_BROKERS=3 runs Kafka as nodes kafka-1..kafka-3 (each a broker and a controller);
# by default it is one node, kafka.
set -euo pipefail
# shellcheck source=infra/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

ALL=(kafka redis postgres jaeger)
READY_TIMEOUT=60 # seconds, per component
STOP_TIMEOUT=30  # seconds before SIGKILL
LOG_DIR="$INFRA_DIR/logs"
RUN_DIR="$INFRA_DIR/run"

usage() {
  echo "usage: $0 up|down [--purge]|purge|status [${ALL[*]}]" >&2
  echo "       $0 kafka-kill|kafka-stop|kafka-start N" >&2
  exit 2
}
die() {
  echo "infra: $*" >&2
  exit 1
}
log_file() { echo "$LOG_DIR/$1.log"; }
pid_file() { echo "$RUN_DIR/$1.pid"; }

# A zombie has an empty command line, so it counts as gone.
alive() { [[ -n $(tr -d '\0' 2>/dev/null <"/proc/$1/cmdline") ]]; }

# Whether pid $1 runs component $2: the command line must match, so a recycled pid (or a
# fork that has not exec'd yet) is not mistaken for ours.
is_ours() {
  local pattern
  case $2 in
    kafka*) pattern="kafka.Kafka $INFRA_DIR/$2/server.properties" ;;
    redis) pattern=redis-server ;;
    postgres) pattern=bin/postgres ;;
    jaeger) pattern=jaeger ;;
  esac
  [[ $1 =~ ^[0-9]+$ && $(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") == *"$pattern"* ]]
}

# Print the pid of a running component; drop its pid file when the process is gone.
running_pid() {
  local file pid
  file="$(pid_file "$1")"
  [[ -f $file ]] || return 1
  pid="$(<"$file")"
  if is_ours "$pid" "$1"; then
    echo "$pid"
  else
    rm -f "$file"
    return 1
  fi
}

# shellcheck disable=SC2016  # $0 and $1 expand in the child bash
port_open() { timeout 2 bash -c ': <>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }

# KAFKA_BOOTSTRAP_SERVERS pointing elsewhere means someone else's Kafka: only check it.
kafka_external() {
  [[ $KAFKA_BOOTSTRAP_SERVERS != "$KAFKA_LOCAL_BOOTSTRAP" && $KAFKA_BOOTSTRAP_SERVERS != "localhost:$KAFKA_PORT" ]]
}

# The Kafka nodes of this set-up: kafka alone, or kafka-1..kafka-N for KAFKA_BROKERS=N.
kafka_nodes() {
  local n
  if ((KAFKA_BROKERS == 1)); then
    echo kafka
  else
    for ((n = 1; n <= KAFKA_BROKERS; n++)); do echo "kafka-$n"; done
  fi
}
# Node ids count from 1; node N's ports are its offset 2(N-1) from the first node's (env.sh).
node_id() { if [[ $1 == kafka-* ]]; then echo "${1#kafka-}"; else echo 1; fi; }
node_port() { echo $((KAFKA_PORT + 2 * ($(node_id "$1") - 1))); }
node_controller_port() { echo $((KAFKA_CONTROLLER_PORT + 2 * ($(node_id "$1") - 1))); }
node_name() {
  if ! [[ $1 =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > KAFKA_BROKERS)); then
    die "kafka: no node $1 (KAFKA_BROKERS=$KAFKA_BROKERS)"
  fi
  if ((KAFKA_BROKERS == 1)); then echo kafka; else echo "kafka-$1"; fi
}
# Nodes with a pid file, whatever KAFKA_BROKERS says now: down stops what up started.
kafka_started_nodes() {
  local f
  for f in "$RUN_DIR"/kafka.pid "$RUN_DIR"/kafka-*.pid; do
    [[ -f $f ]] && basename "$f" .pid
  done
}

pg_bin() { printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1; }

# The postgres user must reach its data dir and the socket path must stay short;
# when $INFRA_DIR fails either (e.g. a checkout under /root), use postgres's home.
pg_root() {
  local root="$INFRA_DIR/postgres"
  mkdir -p "$INFRA_DIR"
  if ! runuser -u postgres -- test -x "$INFRA_DIR" || ((${#root} > 90)); then
    root="/var/lib/postgresql/ticketing-infra-$(cksum <<<"$INFRA_DIR" | cut -d' ' -f1)"
  fi
  echo "$root"
}

addr() {
  case $1 in
    kafka) echo "$KAFKA_BOOTSTRAP_SERVERS" ;;
    kafka-*) echo "127.0.0.1:$(node_port "$1")" ;;
    redis) echo "127.0.0.1:$REDIS_PORT" ;;
    postgres) echo "127.0.0.1:$PG_PORT" ;;
    jaeger) echo "127.0.0.1:$JAEGER_OTLP_GRPC_PORT,$JAEGER_QUERY_URL" ;;
  esac
}

ports() {
  case $1 in
    kafka*) echo "$(node_port "$1") $(node_controller_port "$1")" ;;
    redis) echo "$REDIS_PORT" ;;
    postgres) echo "$PG_PORT" ;;
    jaeger) echo "$JAEGER_OTLP_GRPC_PORT $JAEGER_OTLP_HTTP_PORT $JAEGER_QUERY_PORT $JAEGER_QUERY_GRPC_PORT" ;;
  esac
}

# The ids of the brokers in the cluster's metadata (registered, not fenced) that answer.
kafka_broker_ids() {
  local a open=1
  for a in ${KAFKA_BOOTSTRAP_SERVERS//,/ }; do port_open "${a%:*}" "${a##*:}" && open=0 && break; done
  ((open == 0)) &&
    timeout 30 "$INFRA_ROOT/kafka-tool.sh" org.apache.kafka.tools.BrokerApiVersionsCommand \
      --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" 2>/dev/null | sed -n 's/^[^ ]* (id: \([0-9]*\) .*) -> ($/\1/p'
}
# Ready: an external Kafka answers; ours has every node of KAFKA_BROKERS in its metadata.
ready_kafka() {
  local ids
  ids="$(kafka_broker_ids)" || return 1
  if kafka_external; then
    [[ -n $ids ]]
  else
    (($(wc -w <<<"$ids") == KAFKA_BROKERS))
  fi
}
ready_redis() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }
ready_postgres() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }
ready_jaeger() { curl -sf -o /dev/null "$JAEGER_QUERY_URL/api/services"; }

# Run a server in its own session, detached from the terminal, logging to its log file.
launch() {
  local name=$1
  shift
  setsid "$@" >>"$(log_file "$name")" 2>&1 </dev/null &
  local pid=$! tries=0
  # Until the fork has exec'd, its command line is this script's: running_pid would drop it.
  while ! is_ours "$pid" "$name" && alive "$pid" && ((tries++ < 100)); do sleep 0.05; done
  echo "$pid" >"$(pid_file "$name")"
}

# A Kafka UUID (16 random bytes, URL-safe base64) that cannot be read as an option.
kafka_uuid() {
  local id=-
  while [[ $id == -* ]]; do id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"; done
  echo "$id"
}

# Write node $1's server.properties: one node replicates nothing; a cluster keeps 3 replicas
# (fewer with 2 nodes) and acks=all waits for all but one.
kafka_config() {
  local node=$1 n replication controllers=""
  replication=$((KAFKA_BROKERS < 3 ? KAFKA_BROKERS : 3))
  for n in $(kafka_nodes); do controllers+=",127.0.0.1:$(node_controller_port "$n")"; done
  mkdir -p "$INFRA_DIR/$node/data"
  sed -e "s|@KAFKA_NODE_ID@|$(node_id "$node")|g" -e "s|@KAFKA_CONTROLLERS@|${controllers#,}|g" \
    -e "s|@KAFKA_PORT@|$(node_port "$node")|g" -e "s|@KAFKA_CONTROLLER_PORT@|$(node_controller_port "$node")|g" \
    -e "s|@KAFKA_DATA_DIR@|$INFRA_DIR/$node/data|g" -e "s|@KAFKA_REPLICATION@|$replication|g" \
    -e "s|@KAFKA_MIN_ISR@|$((replication > 1 ? replication - 1 : 1))|g" \
    "$INFRA_ROOT/kafka/server.properties" >"$INFRA_DIR/$node/server.properties"
}

format_kafka() {
  local node=$1
  shift
  "$INFRA_ROOT/kafka-tool.sh" kafka.tools.StorageTool format -c "$INFRA_DIR/$node/server.properties" "$@" \
    >>"$(log_file "$node")" 2>&1 || die "$node: storage format failed, see $(log_file "$node")"
}

# Format the nodes' storage the first time: one node as a standalone quorum, a cluster's nodes
# with one cluster id and every node as an initial controller (KRaft's dynamic quorum).
format_kafka_nodes() {
  local node formatted=() voters=""
  for node in $(kafka_nodes); do
    kafka_config "$node"
    [[ -f $INFRA_DIR/$node/data/meta.properties ]] && formatted+=("$node")
  done
  if ((${#formatted[@]} == KAFKA_BROKERS)); then
    return
  elif ((${#formatted[@]})); then
    die "kafka: only ${formatted[*]} of the $KAFKA_BROKERS nodes have data; \`bash infra/infra.sh purge kafka\` starts over"
  elif ((KAFKA_BROKERS == 1)); then
    format_kafka kafka --standalone -t "$("$INFRA_ROOT/kafka-tool.sh" kafka.tools.StorageTool random-uuid)"
    return
  fi
  for node in $(kafka_nodes); do
    voters+=",$(node_id "$node")@127.0.0.1:$(node_controller_port "$node"):$(kafka_uuid)"
  done
  local cluster_id
  cluster_id="$(kafka_uuid)"
  for node in $(kafka_nodes); do
    format_kafka "$node" -t "$cluster_id" --initial-controllers "${voters#,}"
  done
}

# Start the nodes that do not run, formatting their storage the first time.
start_kafka() {
  local node p todo=()
  [[ -f $KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar ]] || die "kafka: jars missing in $KAFKA_LIBS; run infra/install.sh"
  for node in $(kafka_nodes); do
    if running_pid "$node" >/dev/null; then
      echo "$node: already running"
    else
      for p in $(ports "$node"); do
        ! port_open 127.0.0.1 "$p" || die "$node: port $p is already taken by another process"
      done
      todo+=("$node")
    fi
  done
  ((${#todo[@]})) || return 0
  format_kafka_nodes
  for node in "${todo[@]}"; do
    echo "$node: starting, log $(log_file "$node")"
    start_kafka_node "$node"
  done
}

# Start node $1; the cluster's nodes get small heaps, three of them share the machine.
start_kafka_node() {
  local node=$1 heap=(-Xms256m -Xmx1g)
  ((KAFKA_BROKERS == 1)) || heap=(-Xms128m -Xmx384m)
  kafka_config "$node"
  launch "$node" java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$INFRA_ROOT/kafka/log4j2.properties" -Dkafka.log.file="$(log_file "$node")" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$INFRA_DIR/$node/server.properties"
}

start_redis() {
  command -v redis-server >/dev/null || die "redis: redis-server missing; run infra/install.sh"
  mkdir -p "$INFRA_DIR/redis"
  launch redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$INFRA_DIR/redis" \
    --save '' --appendonly no --logfile "$(log_file redis)"
}

start_postgres() {
  local root bin
  root="$(pg_root)"
  bin="$(pg_bin)"
  [[ -x $bin/postgres ]] || die "postgres: server missing; run infra/install.sh"
  if [[ ! -f $root/data/PG_VERSION ]]; then
    mkdir -p "$root"
    chown postgres:postgres "$root"
    # initdb refuses root; cd / spares postgres an unreadable working directory.
    (cd / && runuser -u postgres -- "$bin/initdb" -D "$root/data" -U postgres -E UTF8 --no-locale \
      --auth-local=peer --auth-host=scram-sha-256) >>"$(log_file postgres)" 2>&1 ||
      die "postgres: initdb failed, see $(log_file postgres)"
  fi
  # fsync and synchronous_commit off: fast, and fine for a throwaway dev/test instance.
  launch postgres setpriv --reuid=postgres --regid=postgres --init-groups -- "$bin/postgres" -D "$root/data" \
    -c listen_addresses=127.0.0.1 -c port="$PG_PORT" -c unix_socket_directories="$root" \
    -c max_connections=200 -c fsync=off -c synchronous_commit=off
}

# Role and database for the services; safe to repeat.
setup_postgres() {
  local root
  root="$(pg_root)"
  (cd / && runuser -u postgres -- "$(pg_bin)/psql" -q -v ON_ERROR_STOP=1 -h "$root" -p "$PG_PORT" -d postgres) <<'SQL'
SELECT 'CREATE ROLE ticketing LOGIN PASSWORD ''ticketing''' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ticketing') \gexec
SELECT 'CREATE DATABASE ticketing OWNER ticketing' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ticketing') \gexec
SQL
}

start_jaeger() {
  [[ -x $JAEGER_BIN ]] || die "jaeger: binary missing at $JAEGER_BIN; run infra/install.sh"
  launch jaeger "$JAEGER_BIN" --config "$INFRA_ROOT/jaeger/config.yaml"
}

fail_start() {
  echo "infra: $1 $2; last 30 lines of $(log_file "$1"):" >&2
  tail -n 30 "$(log_file "$1")" >&2
  exit 1
}

# The first Kafka node that does not run.
kafka_exited() {
  local node
  for node in $(kafka_nodes); do
    running_pid "$node" >/dev/null || { echo "$node" && return 0; }
  done
  return 1
}

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT)) exited
  until "ready_$1"; do
    if [[ $1 == kafka ]] && kafka_external; then
      ((SECONDS < deadline)) || die "kafka: $KAFKA_BOOTSTRAP_SERVERS does not answer"
    elif [[ $1 == kafka ]] && exited="$(kafka_exited)"; then
      fail_start "$exited" "exited during startup"
    elif [[ $1 != kafka ]] && ! running_pid "$1" >/dev/null; then
      fail_start "$1" "exited during startup"
    elif ((SECONDS >= deadline)); then
      fail_start "$([[ $1 == kafka ]] && kafka_nodes | head -n 1 || echo "$1")" "not ready after ${READY_TIMEOUT}s"
    fi
    sleep 1
  done
  echo "$1: ready at $(addr "$1")"
}

cmd_up() {
  local c p started=()
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  # Start everything first, then wait: the servers boot in parallel.
  for c; do
    if [[ $c == kafka ]] && kafka_external; then
      echo "kafka: using external $KAFKA_BOOTSTRAP_SERVERS"
    elif [[ $c == kafka ]]; then
      start_kafka
    elif running_pid "$c" >/dev/null; then
      echo "$c: already running"
    else
      for p in $(ports "$c"); do
        ! port_open 127.0.0.1 "$p" || die "$c: port $p is already taken by another process"
      done
      echo "$c: starting, log $(log_file "$c")"
      "start_$c"
      started+=("$c")
    fi
  done
  for c; do
    wait_ready "$c"
  done
  if [[ " ${started[*]} " == *" postgres "* ]]; then
    setup_postgres
  fi
}

stop() {
  local pid=$1 sig=TERM deadline
  # SIGINT is PostgreSQL's fast shutdown: it does not wait for clients to leave.
  [[ $2 == postgres ]] && sig=INT
  kill -s "$sig" "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while alive "$pid"; do
    if ((SECONDS >= deadline)); then
      echo "$2: still running after ${STOP_TIMEOUT}s, killing"
      kill -s KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 5))
    fi
    sleep 0.2
  done
}

# Every node at once: the last of a cluster stopped alone would wait for a quorum.
stop_kafka() {
  local node pid stopping=()
  for node in $( (kafka_nodes && kafka_started_nodes) | sort -u); do
    if pid="$(running_pid "$node")"; then
      echo "$node: stopping pid $pid"
      kill -s TERM "$pid" 2>/dev/null || true
      stopping+=("$node:$pid")
    else
      echo "$node: not running"
    fi
  done
  for node in "${stopping[@]}"; do
    stop "${node#*:}" "${node%:*}"
    rm -f "$(pid_file "${node%:*}")"
  done
}

cmd_down() {
  local c pid
  for c; do
    if [[ $c == kafka ]] && kafka_external; then
      echo "kafka: external $KAFKA_BOOTSTRAP_SERVERS, left alone"
    elif [[ $c == kafka ]]; then
      stop_kafka
    elif pid="$(running_pid "$c")"; then
      echo "$c: stopping pid $pid"
      stop "$pid" "$c"
      rm -f "$(pid_file "$c")"
    else
      echo "$c: not running"
    fi
  done
}

cmd_purge() {
  local c
  cmd_down "$@"
  for c; do
    # Jaeger keeps its traces in memory: only its log goes.
    case $c in
      kafka) rm -rf "${INFRA_DIR:?}"/kafka "${INFRA_DIR:?}"/kafka-[0-9]* "$LOG_DIR"/kafka-[0-9]*.log ;;
      redis) rm -rf "${INFRA_DIR:?}/$c" ;;
      postgres) rm -rf "$(pg_root)" ;;
    esac
    rm -f "$(log_file "$c")"
    echo "$c: data and log deleted"
  done
  if (($# == ${#ALL[@]})); then
    rm -rf "$INFRA_DIR"
  fi
}

# One line per node of a cluster: healthy when the cluster's metadata lists its broker.
status_kafka_nodes() {
  local node ids state rc=0
  ids=" $(kafka_broker_ids | tr '\n' ' ') "
  for node in $( (kafka_nodes && kafka_started_nodes) | sort -u); do
    state=down
    [[ $ids == *" $(node_id "$node") "* ]] && state=healthy
    [[ $state == healthy ]] || rc=1
    printf '%-8s %-7s %-40s pid %-7s log %s\n' "$node" "$state" "$(addr "$node")" \
      "$(running_pid "$node" || echo -)" "$(log_file "$node")"
  done
  return "$rc"
}

cmd_status() {
  local c state pid log rc=0
  for c; do
    if [[ $c == kafka ]] && ! kafka_external && [[ $(kafka_nodes) != kafka ]]; then
      status_kafka_nodes || rc=1
      continue
    fi
    if "ready_$c"; then
      state=healthy
    else
      state=down
      rc=1
    fi
    if [[ $c == kafka ]] && kafka_external; then
      pid=external log=-
    else
      pid="$(running_pid "$c" || echo -)" log="$(log_file "$c")"
    fi
    printf '%-8s %-7s %-40s pid %-7s log %s\n' "$c" "$state" "$(addr "$c")" "$pid" "$log"
  done
  return "$rc"
}

# kafka-kill|kafka-stop|kafka-start N: one node, e.g. to restart a broker under load.
cmd_node() {
  local node pid deadline
  node="$(node_name "$2")"
  case $1 in
    kafka-kill | kafka-stop)
      pid="$(running_pid "$node")" || die "$node: not running"
      if [[ $1 == kafka-kill ]]; then
        kill -s KILL "$pid"
        while alive "$pid"; do sleep 0.1; done
      else
        stop "$pid" "$node"
      fi
      rm -f "$(pid_file "$node")"
      echo "$node: ${1#kafka-} pid $pid done"
      ;;
    kafka-start)
      running_pid "$node" >/dev/null && die "$node: already running"
      mkdir -p "$LOG_DIR" "$RUN_DIR"
      start_kafka_node "$node"
      deadline=$((SECONDS + READY_TIMEOUT))
      until [[ " $(kafka_broker_ids | tr '\n' ' ') " == *" $(node_id "$node") "* ]]; do
        running_pid "$node" >/dev/null || fail_start "$node" "exited during startup"
        ((SECONDS < deadline)) || fail_start "$node" "not back in the cluster after ${READY_TIMEOUT}s"
        sleep 1
      done
      echo "$node: back in the cluster at $(addr "$node")"
      ;;
  esac
}

main() {
  (($#)) || usage
  local cmd=$1 purge=0 arg comps=()
  shift
  if [[ $cmd == kafka-kill || $cmd == kafka-stop || $cmd == kafka-start ]]; then
    (($# == 1)) || usage
    cmd_node "$cmd" "$1"
    return
  fi
  for arg; do
    case $arg in
      --purge) purge=1 ;;
      kafka | redis | postgres | jaeger) [[ " ${comps[*]} " == *" $arg "* ]] || comps+=("$arg") ;;
      *) usage ;;
    esac
  done
  ((${#comps[@]})) || comps=("${ALL[@]}")
  case $cmd in
    up) cmd_up "${comps[@]}" ;;
    down) if ((purge)); then cmd_purge "${comps[@]}"; else cmd_down "${comps[@]}"; fi ;;
    purge) cmd_purge "${comps[@]}" ;;
    status) cmd_status "${comps[@]}" ;;
    *) usage ;;
  esac
}

main "$@"
