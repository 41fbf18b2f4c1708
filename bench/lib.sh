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
