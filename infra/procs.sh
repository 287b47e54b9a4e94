# shellcheck shell=bash
# Background servers by pid file, shared by infra/k8s/k8s.sh and infra/node/node.sh.
# The caller sets RUN (pid files), LOGS (log files) and READY_TIMEOUT, and defines die;
# for write_kubeconfig also API (the apiserver's URL) and PKI (holding ca.crt).

# The pid of a running server; drops its pid file when the pid is gone or recycled.
pid_of() {
  local file="$RUN/$1.pid" pid
  [[ -f $file ]] || return 1
  pid="$(<"$file")"
  if [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == *"$1"* ]]; then echo "$pid"; else rm -f "$file"; return 1; fi
}

# Run a server in its own session, logging to its log file.
launch() {
  local name=$1 bin
  shift
  bin="$(readlink -f "$1")"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  local pid=$! tries=0
  # Until the server's binary runs under this pid, its command line is the forked shell's or
  # setsid's, and read mid-exec it can be empty: pid_of would drop the pid file (a CI run's
  # "etcd exited" while etcd ran). Wait for the binary itself.
  while [[ $(readlink "/proc/$pid/exe" 2>/dev/null) != "$bin" ]] && ((tries++ < 100)); do
    sleep 0.05
  done
  echo "$pid" >"$RUN/$name.pid"
}

# Fail when a process listens on one of the ports: a server left running by another checkout
# would answer the readiness checks in place of the one about to start.
require_free_ports() {
  local port busy
  for port in "$@"; do
    busy="$(ss -Hltnp "sport = :$port" 2>/dev/null)"
    [[ -z $busy ]] || die "port $port is taken by another process: ${busy##* }"
  done
}

# Wait until the shell command $2 succeeds, failing as soon as server $1 has exited. On failure
# the log's last lines go to stderr (CI keeps only the output), with what the caller's
# `explain_<name>` prints, if it defines one.
wait_for() {
  local name=$1 check=$2 deadline=$((SECONDS + READY_TIMEOUT))
  until eval "$check" >/dev/null 2>&1; do
    pid_of "$name" >/dev/null || { tell_why "$name"; die "$name exited; log $LOGS/$name.log"; }
    ((SECONDS < deadline)) || { tell_why "$name"; die "$name not ready in ${READY_TIMEOUT}s; log $LOGS/$name.log"; }
    sleep 0.3
  done
}

tell_why() {
  tail -n 20 "$LOGS/$1.log" | cut -c1-400 >&2
  if declare -F "explain_$1" >/dev/null; then "explain_$1" >&2 || true; fi
}

# write_kubeconfig FILE CLUSTER TOKEN: a kubeconfig for the apiserver at $API, by static token.
write_kubeconfig() {
  mkdir -p "$(dirname "$1")"
  cat >"$1" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: $2
  cluster:
    server: $API
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: user
  user:
    token: $3
contexts:
- name: $2
  context: {cluster: $2, user: user}
current-context: $2
YAML
}
