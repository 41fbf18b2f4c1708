#!/usr/bin/env bash
# Smoke test of the load generator: every confab-bench scenario once, at a tiny size, against
# a confab it starts itself (SQLite in a temp dir; multinode: two confab nodes sharing
# PostgreSQL and Redis) and against the Node peer (bench/peers/node-socketio: two processes
# sharing PostgreSQL and Redis). Fails if a scenario errors or reports lost, refused or
# duplicated messages (confab-bench --strict). Then writes a report from the results
# (confab-bench report) into a temp dir, to prove that path works. Leaves no processes or
# databases behind. CI runs it (.ci/run); benchmarks proper are bench/run.sh.
#
#   bench/smoke.sh                 # builds debug binaries first
#   SMOKE_PROFILE=release bench/smoke.sh
#
# Needs PostgreSQL at 127.0.0.1:5432 (user root, trust; psql) and Redis at 127.0.0.1:6379 for
# confab's multinode and the peer (SMOKE_PG_URL / SMOKE_REDIS_URL override them), Node 20+ and
# npm. SMOKE_SKIP_PEER=1 runs the confab half only.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

PROFILE=${SMOKE_PROFILE:-debug}
PG_URL=${SMOKE_PG_URL:-postgres://root@127.0.0.1:5432}
REDIS_URL=${SMOKE_REDIS_URL:-redis://127.0.0.1:6379}
SECRET="smoke-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/confab-bench-smoke.XXXXXX")
PEER_DIR=bench/peers/node-socketio
PEER_DB="confab_bench_smoke_$$_$RANDOM"
CLUSTER_DB="confab_bench_smoke_cluster_$$_$RANDOM"
PIDS=()
PEER_DB_CREATED=0
CLUSTER_DB_CREATED=0

log() { printf '\n== %s\n' "$*" >&2; }

cleanup() {
  local status=$?
  # A server that ignores SIGTERM for 5 s is killed.
  stop_pids 5 "${PIDS[@]}"
  if [[ $CLUSTER_DB_CREATED == 1 ]]; then
    psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS \"$CLUSTER_DB\" WITH (FORCE)" >/dev/null || true
  fi
  if [[ $PEER_DB_CREATED == 1 ]]; then
    (cd "$PEER_DIR" && node -e '
      const pg = require("pg");
      const c = new pg.Client({ connectionString: process.argv[1] + "/postgres" });
      c.connect().then(() => c.query(`DROP DATABASE IF EXISTS "${process.argv[2]}" WITH (FORCE)`))
        .catch((e) => console.error("dropping the smoke database:", e.message)).finally(() => c.end());
    ' "$PG_URL" "$PEER_DB") || true
  fi
  if [[ $status != 0 ]]; then
    for f in "$TMP"/*.log; do
      [[ -f $f ]] || continue
      echo "--- last lines of $(basename "$f")" >&2
      tail -n 20 "$f" >&2
    done
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "build ($PROFILE)"
if [[ $PROFILE == release ]]; then
  cargo build --release -p confab -p confab-bench
else
  cargo build -p confab -p confab-bench
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
CONFAB="$TARGET_DIR/$PROFILE/confab"
BENCH="$TARGET_DIR/$PROFILE/confab-bench"
export CONFAB_BENCH_SECRET=$SECRET
STARTED=$SECONDS

# Runs one scenario; --strict makes lost messages, errors and disconnects fail the script.
bench() {
  local name=$1
  shift
  log "$name"
  "$BENCH" "$@" --strict --connect-timeout 10 --grace 3 --json-out "$TMP/results.jsonl"
}

# Starts confab with the given extra environment; sets CONFAB_PID and CONFAB_URL. Rate limits
# are off: every simulated user comes from one loopback address.
start_confab() {
  local name=$1 port
  shift
  port=$(free_port)
  mkdir -p "$TMP/$name"
  env CONFAB_BIND="127.0.0.1:$port" CONFAB_DATA_DIR="$TMP/$name" CONFAB_JWT_SECRET="$SECRET" \
    CONFAB_MAX_GROUP_MEMBERS=2000 CONFAB_LOG=warn CONFAB_RATE_CONNECT_PER_IP=1000000/1000000 CONFAB_RATE_SESSION_PER_IP=1000000/1000000 \
    CONFAB_MAX_UNAUTHENTICATED_PER_IP=1000000 CONFAB_MAX_UNAUTHENTICATED=1000000 \
    CONFAB_RATE_SEND=1000000/1000000 CONFAB_RATE_OTHER=1000000/1000000 CONFAB_RATE_MEMBERS=1000000/1000000 "$@" "$CONFAB" >"$TMP/$name.log" 2>&1 &
  CONFAB_PID=$!
  PIDS+=("$CONFAB_PID")
  CONFAB_URL="http://127.0.0.1:$port"
  wait_ready "$CONFAB_URL" "$CONFAB_PID" "$TMP/$name.log"
}

# Labels as bench/run.sh uses them, so the report below has figures to show.
log "confab (SQLite)"
start_confab confab CONFAB_DATABASE_URL="sqlite://$TMP/confab/confab.db"
bench "confab connect" connect --url "$CONFAB_URL" --users 200 --duration 1 --server-pid "$CONFAB_PID" --label confab-sqlite
bench "confab connect, with memberships" connect --url "$CONFAB_URL" --users 200 --group-size 10 --duration 1 --label confab-sqlite/members
bench "confab chat" chat --url "$CONFAB_URL" --users 60 --group-size 5 --rate 200 --duration 2 --server-pid "$CONFAB_PID" --settle 0.3 --label confab-sqlite
# 1100 connected members: one conversation:create of 1000, then a conversation:members:add; and
# 400 more who never connect (--group-members), as the group of 100,000 has.
bench "confab fanout" fanout --url "$CONFAB_URL" --users 1100 --group-members 1500 --rate 5 --duration 1 --server-pid "$CONFAB_PID" --settle 0.3 --label confab-sqlite
bench "confab sweep" sweep --url "$CONFAB_URL" --users 40 --group-size 4 --rates 50,100 --duration 1 --p99-bound-ms 1000 --settle 0.3 --label confab-sqlite
# The stall sampler beside the soak (bench/stalls.py reads both below).
python3 bench/pressure.py "$TMP/pressure.jsonl" --comm confab --comm confab-bench &
PRESSURE_PID=$!
PIDS+=("$PRESSURE_PID")
bench "confab soak" soak --url "$CONFAB_URL" --users 40 --group-size 4 --rate 100 --duration 3 --server-pid "$CONFAB_PID" --settle 0.3 --label confab-sqlite
kill "$PRESSURE_PID"
bench "confab search" search --url "$CONFAB_URL" --users 100 --group-size 2 --messages 400 --rate 200 --queries 10 --server-pid "$CONFAB_PID" --settle 0.3 --label confab-sqlite

log "confab cluster (2 nodes, PostgreSQL + Redis)"
psql -q "$PG_URL/postgres" -c "CREATE DATABASE \"$CLUSTER_DB\"" >/dev/null
CLUSTER_DB_CREATED=1
CLUSTER_URLS=()
CLUSTER_PIDS=()
for n in 1 2; do
  start_confab "node$n" CONFAB_DATABASE_URL="$PG_URL/$CLUSTER_DB" CONFAB_REDIS_URL="$REDIS_URL" \
    CONFAB_REDIS_PREFIX="smoke-$CLUSTER_DB"
  CLUSTER_URLS+=(--url "$CONFAB_URL")
  CLUSTER_PIDS+=(--server-pid "$CONFAB_PID")
done
bench "confab multinode" multinode "${CLUSTER_URLS[@]}" --users 40 --group-size 4 --rate 100 --duration 1 "${CLUSTER_PIDS[@]}" --settle 0.5 --label confab-pg

if [[ ${SMOKE_SKIP_PEER:-0} != 1 ]]; then
  log "Node peer (PostgreSQL + Redis)"
  if [[ ! -d $PEER_DIR/node_modules ]]; then
    (cd "$PEER_DIR" && npm ci --no-audit --no-fund)
  fi
  PEER_URLS=()
  for n in 1 2; do
    (
      cd "$PEER_DIR"
      PORT=0 JWT_SECRET=$SECRET DATABASE_URL="$PG_URL/$PEER_DB" REDIS_URL=$REDIS_URL \
        REDIS_KEY="smoke-$PEER_DB" exec node server.mjs
    ) >"$TMP/peer$n.log" 2>&1 &
    PIDS+=("$!")
    PEER_DB_CREATED=1
    wait_for_line "$TMP/peer$n.log" '^listening on http://' "$!"
    PEER_URLS+=("$(grep -oE 'http://[0-9.]+:[0-9]+' "$TMP/peer$n.log" | head -n 1)")
  done
  PEER_PID=${PIDS[-2]}

  bench "peer connect" connect --url "${PEER_URLS[0]}" --users 200 --duration 1 --server-pid "$PEER_PID" --label peer
  bench "peer connect, with memberships" connect --url "${PEER_URLS[0]}" --users 200 --group-size 10 --duration 1 --label peer/members
  bench "peer chat" chat --url "${PEER_URLS[0]}" --users 60 --group-size 5 --rate 100 --duration 2 --server-pid "$PEER_PID" --settle 0.3 --label peer
  # The peer has no conversation:members:add, so its groups stop at 1000 members.
  bench "peer fanout" fanout --url "${PEER_URLS[0]}" --users 300 --rate 5 --duration 1 --server-pid "$PEER_PID" --settle 0.3 --label peer
  bench "peer multinode" multinode --url "${PEER_URLS[0]}" --url "${PEER_URLS[1]}" --users 40 --group-size 4 --rate 50 --duration 2 --settle 1 --label peer
  bench "peer sweep" sweep --url "${PEER_URLS[0]}" --users 40 --group-size 4 --rates 25,50 --duration 1 --p99-bound-ms 1000 --settle 0.3 --label peer
  bench "peer soak" soak --url "${PEER_URLS[0]}" --users 40 --group-size 4 --rate 50 --duration 3 --server-pid "$PEER_PID" --settle 0.3 --label peer
fi

log "results"
# Belt and braces: every JSON line must parse and none may report a loss.
python3 - "$TMP/results.jsonl" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
bad = [l for l in lines if l.get("lost", 0) > 0 or l.get("ok") is False]
for l in lines:
    what = l.get("scenario") + (" step %s" % l["step"] if "step" in l else "")
    print("%-12s %-18s lost=%s ok=%s" % (l.get("label"), what, l.get("lost", "-"), l.get("ok", l.get("passed", "-"))), file=sys.stderr)
if bad:
    sys.exit("smoke: %d result line(s) show problems" % len(bad))
EOF
log "report"
# The report writer on these results: it must run and show both systems' figures.
"$BENCH" report --results "$TMP/results.jsonl" --out "$TMP/report/BENCHMARKS.md"
grep -q '^| Connect rate' "$TMP/report/BENCHMARKS.md"
grep -q '^### multinode' "$TMP/report/BENCHMARKS.md"
[[ -s $TMP/report/bench/sweep-ack-latency.svg ]]
grep -q '^### soak' "$TMP/report/BENCHMARKS.md"
[[ -s $TMP/report/bench/soak-ack-latency.svg ]]
# The soak's worst seconds lined up with the server's log and the sampler's.
python3 bench/stalls.py "$TMP/results.jsonl" confab-sqlite --server-log "$TMP/confab.log" \
  --pressure "$TMP/pressure.jsonl" --top 3 >"$TMP/stalls.txt"
grep -q 'cpu_some' "$TMP/stalls.txt"
grep -q 'runtime busy' "$TMP/stalls.txt"
# Each second of confab's soak carries its runtime's figures (from /metrics); the peer has none.
python3 - "$TMP/results.jsonl" <<'EOF'
import json, sys
soaks = {l["label"]: l for l in map(json.loads, open(sys.argv[1])) if l.get("scenario") == "soak"}
series = soaks["confab-sqlite"]["series"]
with_runtime = [s for s in series if "wake_ms" in s and "runtime_busy_pct" in s and "server_send_ms" in s]
if not with_runtime or len(with_runtime) < len(series) // 2:
    sys.exit(f"smoke: confab's soak has runtime figures in {len(with_runtime)} of {len(series)} seconds")
if any("wake_ms" in s for s in soaks.get("peer", {}).get("series", [])):
    sys.exit("smoke: the peer's soak has runtime figures it can't have")
EOF
log "smoke passed in $((SECONDS - STARTED)) s after the build"
