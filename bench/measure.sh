#!/usr/bin/env bash
# The issue's measurements, each against a freshly started server (so RSS per connection
# isn't flattered by memory an earlier run left behind):
#
#   connect  10,000 users, idle, with --server-pid   (connects/s, server RSS per connection)
#   chat     1,000 users in groups of 10 at $CHAT_RATE msgs/s for $CHAT_SECS s
#   sweep    1,000 users in groups of 10 from $SWEEP_START msgs/s, p99 ack ≤ 50 ms
#
# for each server in $SERVERS: confab-pg (release build, PostgreSQL, a fresh database),
# confab-sqlite (release build, SQLite in a temp dir) and peer (the Node peer on PostgreSQL
# and Redis). JSON lines go to $OUT (default bench/results/<date>.jsonl) and stdout; the
# human summaries to stderr.
#
#   bench/measure.sh
#   SERVERS=confab-pg SCENARIOS="chat sweep" CHAT_RATE=8000 BENCH_ARGS="--threads 2" bench/measure.sh
#
# Needs PostgreSQL at 127.0.0.1:5432 (user root, trust), Redis at 127.0.0.1:6379, Node 20+.
# Run it on a quiet machine: the generator shares the cores with the server. Before each
# measurement the script waits (up to $QUIET_WAIT s) until the cores are less than
# $QUIET_PCT % busy, and says so when they never were; each JSON line has the machine's CPU use
# ("machine": {"cpu_pct", "saturated"}) to tell a starved run from a slow server.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=${SERVERS:-confab-pg confab-sqlite peer}
SCENARIOS=${SCENARIOS:-connect chat sweep}
CONNECT_USERS=${CONNECT_USERS:-10000}
USERS=${USERS:-1000}
GROUP_SIZE=${GROUP_SIZE:-10}
CHAT_RATE=${CHAT_RATE:-5000}
CHAT_SECS=${CHAT_SECS:-20}
SWEEP_START=${SWEEP_START:-1000}
SWEEP_SECS=${SWEEP_SECS:-10}
BENCH_ARGS=${BENCH_ARGS:-}
PG_URL=${PG_URL:-postgres://root@127.0.0.1:5432}
QUIET_PCT=${QUIET_PCT:-25}
QUIET_WAIT=${QUIET_WAIT:-300}
mkdir -p bench/results
OUT=${OUT:-bench/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl}
SECRET="measure-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/confab-measure.XXXXXX")
PEER_DIR=bench/peers/node-socketio
SERVER_PID=
SERVER_URL=
SERVER_DB=

log() { printf '\n== %s\n' "$*" >&2; }

stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
  if [[ -n $SERVER_DB ]]; then
    psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS \"$SERVER_DB\" WITH (FORCE)" >/dev/null || true
    SERVER_DB=
  fi
}

cleanup() {
  local status=$?
  stop_server
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The share of all cores that was busy over the next two seconds, in percent.
busy_pct() {
  local a b
  a=$(head -n 1 /proc/stat)
  sleep 2
  b=$(head -n 1 /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {
    split(a, x); split(b, y); total = 0; idle = 0
    for (i = 2; i <= 9; i++) total += y[i] - x[i]
    idle = (y[5] - x[5]) + (y[6] - x[6])
    printf "%d", (total > 0 ? 100 * (total - idle) / total : 0)
  }'
}

wait_quiet() {
  local waited=0 busy
  while busy=$(busy_pct) && ((busy >= QUIET_PCT)); do
    if ((waited >= QUIET_WAIT)); then
      echo "warning: the machine is still ${busy}% busy after ${waited} s; measuring anyway" >&2
      return 0
    fi
    ((waited == 0)) && echo "waiting for the machine to quieten (${busy}% busy)" >&2
    sleep 8
    waited=$((waited + 10))
  done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_ready() {
  for _ in $(seq 1 300); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$1" >&2; echo "the server died" >&2; return 1; }
    sleep 0.1
  done
  echo "the server did not start" >&2
  return 1
}

# Starts server kind $1 fresh; sets SERVER_PID and SERVER_URL.
start_server() {
  local port
  port=$(free_port)
  case $1 in
    confab-pg | confab-sqlite)
      local db_url
      mkdir -p "$TMP/data-$port"
      if [[ $1 == confab-pg ]]; then
        SERVER_DB="confab_measure_$$_$port"
        psql -q "$PG_URL/postgres" -c "CREATE DATABASE \"$SERVER_DB\"" >/dev/null
        db_url="$PG_URL/$SERVER_DB"
      else
        db_url="sqlite://$TMP/data-$port/confab.db"
      fi
      CONFAB_BIND="127.0.0.1:$port" CONFAB_DATA_DIR="$TMP/data-$port" CONFAB_DATABASE_URL=$db_url \
        CONFAB_JWT_SECRET=$SECRET CONFAB_LOG=warn target/release/confab >"$TMP/server.log" 2>&1 &
      SERVER_PID=$!
      SERVER_URL="http://127.0.0.1:$port"
      for _ in $(seq 1 300); do
        curl -fsS "$SERVER_URL/readyz" >/dev/null 2>&1 && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; return 1; }
        sleep 0.1
      done
      ;;
    peer)
      SERVER_DB="confab_peer_measure_$$_$port"
      (cd "$PEER_DIR" && PORT=$port JWT_SECRET=$SECRET DATABASE_URL="$PG_URL/$SERVER_DB" \
        REDIS_KEY="measure-$SERVER_DB" exec node server.mjs) >"$TMP/server.log" 2>&1 &
      SERVER_PID=$!
      SERVER_URL="http://127.0.0.1:$port"
      wait_ready "$TMP/server.log" '^listening on'
      ;;
    *)
      echo "unknown server $1 (confab-pg, confab-sqlite, peer)" >&2
      return 1
      ;;
  esac
}

log "build"
cargo build --release -p confab -p confab-bench
if [[ $SERVERS == *peer* && ! -d $PEER_DIR/node_modules ]]; then
  (cd "$PEER_DIR" && npm ci --no-audit --no-fund)
fi
BENCH=target/release/confab-bench
export CONFAB_BENCH_SECRET=$SECRET

for server in $SERVERS; do
  for scenario in $SCENARIOS; do
    log "$server: $scenario"
    wait_quiet
    start_server "$server"
    # shellcheck disable=SC2086 # BENCH_ARGS is a list of options
    case $scenario in
      connect)
        "$BENCH" connect --url "$SERVER_URL" --users "$CONNECT_USERS" --duration 10 \
          --server-pid "$SERVER_PID" --watch-comm postgres ${SERVER_DB:+--watch-cmdline "$SERVER_DB"} --label "$server" --json-out "$OUT" $BENCH_ARGS || true
        ;;
      chat)
        "$BENCH" chat --url "$SERVER_URL" --users "$USERS" --group-size "$GROUP_SIZE" \
          --rate "$CHAT_RATE" --duration "$CHAT_SECS" --server-pid "$SERVER_PID" --watch-comm postgres ${SERVER_DB:+--watch-cmdline "$SERVER_DB"} --label "$server" \
          --json-out "$OUT" $BENCH_ARGS || true
        ;;
      sweep)
        "$BENCH" sweep --url "$SERVER_URL" --users "$USERS" --group-size "$GROUP_SIZE" \
          --rate "$SWEEP_START" --duration "$SWEEP_SECS" --server-pid "$SERVER_PID" --watch-comm postgres ${SERVER_DB:+--watch-cmdline "$SERVER_DB"} --label "$server" \
          --json-out "$OUT" $BENCH_ARGS || true
        ;;
      *)
        echo "unknown scenario $scenario" >&2
        exit 1
        ;;
    esac
    stop_server
  done
done
log "results in $OUT"
