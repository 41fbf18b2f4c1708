# Sourced by bench/measure.sh and bench/smoke.sh.

# stop_pids SECONDS PID...: SIGTERM each process, give it SECONDS to exit, then SIGKILL it.
stop_pids() {
  local limit=$1 pid
  shift
  for pid in "$@"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$@"; do
    for _ in $(seq 1 $((limit * 10))); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_line FILE PATTERN PID: waits until log FILE has a line matching PATTERN; fails after
# 30 s, or as soon as process PID dies, showing the log.
wait_for_line() {
  local file=$1 pattern=$2 pid=$3
  for _ in $(seq 1 300); do
    grep -qE "$pattern" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; echo "process $pid died (log: $file)" >&2; return 1; }
    sleep 0.1
  done
  echo "timed out waiting for /$pattern/ in $file" >&2
  return 1
}

# wait_ready URL PID LOG: waits until confab at URL answers /readyz; fails after 30 s, or as soon
# as process PID dies, showing LOG.
wait_ready() {
  local url=$1 pid=$2 file=$3
  for _ in $(seq 1 300); do
    curl -fsS "$url/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; echo "confab ($url) died (log: $file)" >&2; return 1; }
    sleep 0.1
  done
  echo "confab ($url) did not become ready (log: $file)" >&2
  return 1
}
