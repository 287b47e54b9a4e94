#!/usr/bin/env bash
# Local infrastructure on loopback: Kafka (KRaft), Redis, PostgreSQL, Jaeger.
#   infra.sh up|down|status [kafka|redis|postgres|jaeger ...]   (default: all four)
#   infra.sh down --purge [...]   or   infra.sh purge [...]     (also delete their data)
# Data, logs and pid files live under $INFRA_DIR; ports and URLs come from infra/env.sh.
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

# Print the pid of a running component; drop its pid file when the process is gone.
# The command line must match, so a recycled pid is not mistaken for ours.
running_pid() {
  local file pid pattern
  file="$(pid_file "$1")"
  [[ -f $file ]] || return 1
  pid="$(<"$file")"
  case $1 in
    kafka) pattern=kafka.Kafka ;;
    redis) pattern=redis-server ;;
    postgres) pattern=bin/postgres ;;
    jaeger) pattern=jaeger ;;
  esac
  if [[ $pid =~ ^[0-9]+$ && $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == *"$pattern"* ]]; then
    echo "$pid"
  else
    rm -f "$file"
    return 1
  fi
}

# shellcheck disable=SC2016  # $0 and $1 expand in the child bash
port_open() { timeout 2 bash -c ': <>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }

# KAFKA_BOOTSTRAP_SERVERS pointing elsewhere means someone else's Kafka: only check it.
kafka_external() { [[ $KAFKA_BOOTSTRAP_SERVERS != "127.0.0.1:$KAFKA_PORT" && $KAFKA_BOOTSTRAP_SERVERS != "localhost:$KAFKA_PORT" ]]; }

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
    redis) echo "127.0.0.1:$REDIS_PORT" ;;
    postgres) echo "127.0.0.1:$PG_PORT" ;;
    jaeger) echo "127.0.0.1:$JAEGER_OTLP_GRPC_PORT,$JAEGER_QUERY_URL" ;;
  esac
}

ports() {
  case $1 in
    kafka) echo "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" ;;
    redis) echo "$REDIS_PORT" ;;
    postgres) echo "$PG_PORT" ;;
    jaeger) echo "$JAEGER_OTLP_GRPC_PORT $JAEGER_OTLP_HTTP_PORT $JAEGER_QUERY_PORT $JAEGER_QUERY_GRPC_PORT" ;;
  esac
}

ready_kafka() {
  local first="${KAFKA_BOOTSTRAP_SERVERS%%,*}"
  port_open "${first%:*}" "${first##*:}" &&
    timeout 30 "$INFRA_ROOT/kafka-tool.sh" org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" --list >/dev/null 2>&1
}
ready_redis() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }
ready_postgres() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }
ready_jaeger() { curl -sf -o /dev/null "$JAEGER_QUERY_URL/api/services"; }

# Run a server in its own session, detached from the terminal, logging to its log file.
launch() {
  local name=$1
  shift
  setsid "$@" >>"$(log_file "$name")" 2>&1 </dev/null &
  echo $! >"$(pid_file "$name")"
}

start_kafka() {
  local dir="$INFRA_DIR/kafka" conf="$INFRA_DIR/kafka/server.properties" id
  [[ -f $KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar ]] || die "kafka: jars missing in $KAFKA_LIBS; run infra/install.sh"
  mkdir -p "$dir/data"
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@KAFKA_DATA_DIR@|$dir/data|g" "$INFRA_ROOT/kafka/server.properties" >"$conf"
  if [[ ! -f $dir/data/meta.properties ]]; then
    id="$("$INFRA_ROOT/kafka-tool.sh" kafka.tools.StorageTool random-uuid)"
    "$INFRA_ROOT/kafka-tool.sh" kafka.tools.StorageTool format --standalone -t "$id" -c "$conf" \
      >>"$(log_file kafka)" 2>&1 || die "kafka: storage format failed, see $(log_file kafka)"
  fi
  launch kafka java -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$INFRA_ROOT/kafka/log4j2.properties" -Dkafka.log.file="$(log_file kafka)" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$conf"
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

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "ready_$1"; do
    if [[ $1 == kafka ]] && kafka_external; then
      ((SECONDS < deadline)) || die "kafka: $KAFKA_BOOTSTRAP_SERVERS does not answer"
    elif ! running_pid "$1" >/dev/null; then
      fail_start "$1" "exited during startup"
    elif ((SECONDS >= deadline)); then
      fail_start "$1" "not ready after ${READY_TIMEOUT}s"
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

cmd_down() {
  local c pid
  for c; do
    if [[ $c == kafka ]] && kafka_external; then
      echo "kafka: external $KAFKA_BOOTSTRAP_SERVERS, left alone"
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
      kafka | redis) rm -rf "${INFRA_DIR:?}/$c" ;;
      postgres) rm -rf "$(pg_root)" ;;
    esac
    rm -f "$(log_file "$c")"
    echo "$c: data and log deleted"
  done
  if (($# == ${#ALL[@]})); then
    rm -rf "$INFRA_DIR"
  fi
}

cmd_status() {
  local c state pid log rc=0
  for c; do
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

main() {
  (($#)) || usage
  local cmd=$1 purge=0 arg comps=()
  shift
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
