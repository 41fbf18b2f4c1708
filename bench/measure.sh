#!/usr/bin/env bash
# The issue's measurements, each against a freshly started server (so RSS per connection
# isn't flattered by memory an earlier run left behind):
#
#   connect    $CONNECT_USERS users, idle, with --server-pid   (connects/s, server RSS per connection)
#   members    connect again, the users first put in groups of $GROUP_SIZE, so each connect
#              loads memberships (connects/s; label <server>/members)
#   chat       $USERS users in groups of $GROUP_SIZE at $CHAT_RATE msgs/s for $CHAT_SECS s
#   sweep      $USERS users in groups of $GROUP_SIZE from $SWEEP_START msgs/s (or the list
#              $SWEEP_RATES), p99 ack ≤ 50 ms
#   fanout     one group of $FANOUT_USERS at $FANOUT_RATE msgs/s (the peer stops at 1,000 members); for
#              confab the group has $FANOUT_MEMBERS members in all (default $FANOUT_USERS), those
#              beyond $FANOUT_USERS never connecting (a group of 100,000 on one machine)
#   multinode  $MULTINODE_NODES nodes (default two) sharing PostgreSQL and Redis, $USERS users spread
#              over them
#   capacity   as many users as the server's open-file limit ($CAPACITY_NOFILE) leaves room for,
#              chatting at $CAPACITY_RATE msgs/s (label <server>/capacity)
#   soak       $USERS users in groups of $GROUP_SIZE at one rate for $SOAK_SECS s, second by
#              second: $SOAK_RATE_PG (confab-pg), $SOAK_RATE_SQLITE (confab-sqlite),
#              $SOAK_RATE_PEER (peer: a rate it sustains)
#   search     $SEARCH_MESSAGES messages stored through the server at $SEARCH_RATE_PG (confab-pg) or
#              $SEARCH_RATE_SQLITE (confab-sqlite) msgs/s by $SEARCH_USERS users in groups of
#              $GROUP_SIZE, then one-word searches by a member of 50 of the groups (confab only:
#              the peer has no search)
#
# for each server in $SERVERS: confab-pg (release build, PostgreSQL, a fresh database),
# confab-sqlite (release build, SQLite in a temp dir; connect, chat and sweep only) and peer
# (the Node peer on PostgreSQL and Redis). JSON lines go to $OUT (default
# bench/results/<date>.jsonl) and stdout; the human summaries to stderr. Before each
# measurement a {"record": "command"} line records the server and generator commands, how busy
# the machine was, and the server's open-file limit (for `confab-bench report`).
#
#   bench/measure.sh
#   SERVERS=confab-pg SCENARIOS="chat sweep" CHAT_RATE=8000 BENCH_ARGS="--threads 2" bench/measure.sh
#
# Needs PostgreSQL at 127.0.0.1:5432 (user root, trust), Redis at 127.0.0.1:6379, Node 20+.
# bench/run.sh starts them, runs this at the issue's size and writes docs/BENCHMARKS.md.
# Run it on a quiet machine: the generator shares the cores with the server. Before each
# measurement the script waits (up to $QUIET_WAIT s) until the cores are less than
# $QUIET_PCT % busy, and says so when they never were; each JSON line has the machine's CPU use
# ("machine": {"cpu_pct", "saturated"}) to tell a starved run from a slow server.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

SERVERS=${SERVERS:-confab-pg confab-sqlite peer}
SCENARIOS=${SCENARIOS:-connect members chat sweep fanout multinode capacity soak search}
CONNECT_USERS=${CONNECT_USERS:-10000}
USERS=${USERS:-1000}
GROUP_SIZE=${GROUP_SIZE:-10}
CHAT_RATE=${CHAT_RATE:-1000}
CHAT_SECS=${CHAT_SECS:-20}
SWEEP_START=${SWEEP_START:-1000}
SWEEP_SECS=${SWEEP_SECS:-10}
SWEEP_RATES=${SWEEP_RATES:-}
FANOUT_USERS=${FANOUT_USERS:-1000}
FANOUT_MEMBERS=${FANOUT_MEMBERS:-$FANOUT_USERS}
FANOUT_RATE=${FANOUT_RATE:-5}
FANOUT_SECS=${FANOUT_SECS:-10}
MULTINODE_RATE=${MULTINODE_RATE:-1000}
MULTINODE_SECS=${MULTINODE_SECS:-10}
# The server's soft open-file limit in the capacity scenario (the shell's by default), and the
# descriptors left spare beside those it has open at idle (for the database pool to grow).
CAPACITY_NOFILE=${CAPACITY_NOFILE:-$(ulimit -Sn)}
CAPACITY_SPARE=${CAPACITY_SPARE:-64}
CAPACITY_RATE=${CAPACITY_RATE:-1000}
CAPACITY_SECS=${CAPACITY_SECS:-10}
SOAK_SECS=${SOAK_SECS:-600}
SEARCH_USERS=${SEARCH_USERS:-5000}
SEARCH_MESSAGES=${SEARCH_MESSAGES:-1000000}
SEARCH_RATE_PG=${SEARCH_RATE_PG:-5000}
SEARCH_RATE_SQLITE=${SEARCH_RATE_SQLITE:-3000}
SEARCH_QUERIES=${SEARCH_QUERIES:-300}
SOAK_RATE_PG=${SOAK_RATE_PG:-5000}
SOAK_RATE_SQLITE=${SOAK_RATE_SQLITE:-3000}
SOAK_RATE_PEER=${SOAK_RATE_PEER:-400}
BENCH_ARGS=${BENCH_ARGS:-}
# Nodes in the multinode scenario (sharing PostgreSQL and Redis).
MULTINODE_NODES=${MULTINODE_NODES:-2}
# PROBES=1: around each run, what it cost PostgreSQL, Redis, the nodes' bus and the kernel's TCP
# memory, as a {"record": "probe"} line (bench/probe.py; the inputs of docs/SCALING.md).
PROBES=${PROBES:-0}
PG_URL=${PG_URL:-postgres://root@127.0.0.1:5432}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
# REDIS_CLUSTER=true: REDIS_URL lists seed nodes of a Redis Cluster (confab only; the peer's Redis
# adapter uses one Redis). bench/redis-cluster.sh starts one on loopback:
#   REDIS_URL=$(bench/redis-cluster.sh start) REDIS_CLUSTER=true SERVERS=confab-pg SCENARIOS=multinode bench/measure.sh
REDIS_CLUSTER=${REDIS_CLUSTER:-false}
# confab's log filter, and a directory to keep each run's server logs in (<label>-<scenario>-server<n>.log),
# to line stalls up with the database's events:
#   SERVER_LOG=info,confab::store=debug SERVER_LOGS=target/soak-logs SCENARIOS=soak bench/measure.sh
SERVER_LOG=${SERVER_LOG:-warn}
SERVER_LOGS=${SERVER_LOGS:-}
[[ -z $SERVER_LOGS ]] || mkdir -p "$SERVER_LOGS"
QUIET_PCT=${QUIET_PCT:-25}
QUIET_WAIT=${QUIET_WAIT:-300}
mkdir -p bench/results
OUT=${OUT:-bench/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl}
SECRET="measure-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/confab-measure.XXXXXX")
PEER_DIR=bench/peers/node-socketio
SERVER_PIDS=()
SERVER_URLS=()
SERVER_DB=
SERVER_CMD=
SERVER_NOFILE=
BUSY=0

log() { printf '\n== %s\n' "$*" >&2; }

stop_server() {
  stop_pids 10 "${SERVER_PIDS[@]}"
  if [[ -n $SERVER_LOGS && -n ${LABEL:-} ]]; then
    local f
    for f in "$TMP"/server*.log; do
      [[ -e $f ]] && cp "$f" "$SERVER_LOGS/${LABEL//\//-}-$(basename "$f")"
    done
  fi
  rm -f "$TMP"/server*.log
  SERVER_PIDS=()
  SERVER_URLS=()
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

# Sets BUSY to how busy the cores were when it stopped waiting.
wait_quiet() {
  local waited=0 busy
  while busy=$(busy_pct) && BUSY=$busy && ((busy >= QUIET_PCT)); do
    if ((waited >= QUIET_WAIT)); then
      echo "warning: the machine is still ${busy}% busy after ${waited} s; measuring anyway" >&2
      return 0
    fi
    ((waited == 0)) && echo "waiting for the machine to quieten (${busy}% busy)" >&2
    sleep 8
    waited=$((waited + 10))
  done
}

# Starts server kind $1 fresh, $2 nodes of it (default 1; several share the database and
# Redis), with soft open-file limit $3 (default: the shell's). Sets SERVER_PIDS, SERVER_URLS
# and SERVER_CMD (the first node's command, for the record, with the secret as $S).
start_server() {
  local kind=$1 nodes=${2:-1} nofile=${3:-$(ulimit -Sn)} n port db_url
  local env=()
  SERVER_NOFILE=$nofile
  for n in $(seq 1 "$nodes"); do
    port=$(free_port)
    case $kind in
      confab-pg | confab-sqlite)
        mkdir -p "$TMP/data-$port"
        if [[ $kind == confab-pg ]]; then
          if [[ -z $SERVER_DB ]]; then
            SERVER_DB="confab_measure_$$_$port"
            psql -q "$PG_URL/postgres" -c "CREATE DATABASE \"$SERVER_DB\"" >/dev/null
          fi
          # Without TLS, like the peer (node-postgres connects in the clear unless told
          # otherwise); sqlx's default (prefer) would encrypt every query on loopback.
          db_url="$PG_URL/$SERVER_DB?sslmode=disable"
        else
          db_url="sqlite://$TMP/data-$port/confab.db"
        fi
        # fanout's group may be larger than confab's default limit of 100,000 members. The rate
        # limits are off: every simulated user comes from a few loopback addresses (the
        # per-IP connect limit would refuse them), and the peer has none.
        env=(CONFAB_BIND="127.0.0.1:$port" CONFAB_DATA_DIR="$TMP/data-$port" CONFAB_DATABASE_URL="$db_url"
          CONFAB_LOG=$SERVER_LOG CONFAB_MAX_GROUP_MEMBERS=$((FANOUT_MEMBERS > 100000 ? FANOUT_MEMBERS : 100000))
          CONFAB_RATE_CONNECT_PER_IP=1000000/1000000 CONFAB_RATE_SESSION_PER_IP=1000000/1000000
          CONFAB_MAX_UNAUTHENTICATED_PER_IP=1000000 CONFAB_MAX_UNAUTHENTICATED=1000000 CONFAB_RATE_SEND=1000000/1000000
          CONFAB_RATE_OTHER=1000000/1000000 CONFAB_RATE_MEMBERS=1000000/1000000)
        if ((nodes > 1)); then
          env+=(CONFAB_REDIS_URL="$REDIS_URL" CONFAB_REDIS_CLUSTER="$REDIS_CLUSTER" CONFAB_REDIS_PREFIX="measure-$SERVER_DB")
        fi
        (ulimit -Sn "$nofile" && exec env "${env[@]}" CONFAB_JWT_SECRET="$SECRET" target/release/confab) \
          >"$TMP/server$n.log" 2>&1 &
        SERVER_PIDS+=("$!")
        SERVER_URLS+=("http://127.0.0.1:$port")
        ((n > 1)) || SERVER_CMD="ulimit -Sn $nofile; ${env[*]} CONFAB_JWT_SECRET=\$S target/release/confab"
        wait_ready "http://127.0.0.1:$port" "${SERVER_PIDS[-1]}" "$TMP/server$n.log"
        ;;
      peer)
        [[ -n $SERVER_DB ]] || SERVER_DB="confab_peer_measure_$$_$port"
        env=(PORT="$port" DATABASE_URL="$PG_URL/$SERVER_DB" REDIS_URL="$REDIS_URL" REDIS_KEY="measure-$SERVER_DB")
        (cd "$PEER_DIR" && ulimit -Sn "$nofile" && exec env "${env[@]}" JWT_SECRET="$SECRET" node server.mjs) \
          >"$TMP/server$n.log" 2>&1 &
        SERVER_PIDS+=("$!")
        SERVER_URLS+=("http://127.0.0.1:$port")
        ((n > 1)) || SERVER_CMD="cd $PEER_DIR; ulimit -Sn $nofile; ${env[*]} JWT_SECRET=\$S node server.mjs"
        wait_for_line "$TMP/server$n.log" '^listening on' "${SERVER_PIDS[-1]}"
        ;;
      *)
        echo "unknown server $kind (confab-pg, confab-sqlite, peer)" >&2
        return 1
        ;;
    esac
  done
}

# Appends the {"record": "command"} line for label $1, scenario $2; the rest is the generator's
# command line.
record_command() {
  local label=$1 scenario=$2
  shift 2
  python3 - "$OUT" "$label" "$scenario" "$SERVER_CMD" "$BUSY" "$SERVER_NOFILE" "$@" <<'EOF'
import json, shlex, sys
out, label, scenario, server, busy, nofile, *bench = sys.argv[1:]
line = {"record": "command", "label": label, "scenario": scenario, "server": server,
        "bench": shlex.join(bench), "busy_before_pct": int(busy), "server_nofile": int(nofile)}
# The kernel's write-back timing sets the database's tail (docs/OPERATIONS.md).
try:
    line["kernel_writeback"] = {k: int(open(f"/proc/sys/vm/{k}").read())
                                for k in ("dirty_expire_centisecs", "dirty_writeback_centisecs")}
except OSError:
    pass
with open(out, "a") as f:
    f.write(json.dumps(line) + "\n")
EOF
}

# Runs the generator for label $1 and scenario $2, after recording the command. A failed run
# leaves its line out rather than stopping the rest.
bench() {
  local label=$1 scenario=$2
  shift 2
  # shellcheck disable=SC2086 # BENCH_ARGS is a list of options
  local cmd=("$BENCH" "$@" --label "$label" $BENCH_ARGS)
  LABEL="$label-$scenario"
  record_command "$label" "$scenario" "${cmd[@]}"
  if [[ $PROBES != 1 ]]; then
    "${cmd[@]}" --json-out "$OUT" || echo "warning: $label $scenario failed (status $?)" >&2
    return
  fi
  local redis= sampler
  ((${#SERVER_URLS[@]} > 1)) && redis=$REDIS_URL
  bench/probe.py snapshot "$TMP/probe-before" "$SERVER_DB" "$redis" "${SERVER_URLS[@]}"
  rm -f "$TMP/probe-peak"
  bench/probe.py sample "$TMP/probe-peak" &
  sampler=$!
  "${cmd[@]}" --json-out "$OUT" || echo "warning: $label $scenario failed (status $?)" >&2
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  bench/probe.py snapshot "$TMP/probe-after" "$SERVER_DB" "$redis" "${SERVER_URLS[@]}"
  bench/probe.py diff "$TMP/probe-before" "$TMP/probe-after" "$TMP/probe-peak" "$label" "$scenario" | tee -a "$OUT"
}

# Two settings of this machine that every PostgreSQL figure depends on: say when they are not
# what a deployment should run.
if [[ $SERVERS == *confab-pg* || $SERVERS == *peer* ]]; then
  # Autovacuum off (this machine's CI image turns it off) measures a database no deployment runs.
  if [[ $(psql -qAtX "$PG_URL/postgres" -c 'SHOW autovacuum' 2>/dev/null) == off ]]; then
    log "warning: PostgreSQL's autovacuum is off: deployments run with it on, and the tail differs (docs/bench/notes.md)"
  fi
  # The kernel's default write-back flushes a file's dirty pages once they are 30 s old, all at
  # once: PostgreSQL's data files then go out in bursts (~80 MB every 30 s at 5,000 msgs/s) that
  # stall the log flushes every commit waits for. Deployments should shorten it.
  expire=$(cat /proc/sys/vm/dirty_expire_centisecs 2>/dev/null || echo 0)
  if ((expire >= 3000)); then
    log "warning: vm.dirty_expire_centisecs is $expire: PostgreSQL's data files are written back in 30 s bursts that stall its commits (docs/OPERATIONS.md, \"The tail of the ack latency\")"
  fi
fi
log "build"
cargo build --release -p confab -p confab-bench
if [[ $SERVERS == *peer* && ! -d $PEER_DIR/node_modules ]]; then
  (cd "$PEER_DIR" && npm ci --no-audit --no-fund)
fi
BENCH=target/release/confab-bench
export CONFAB_BENCH_SECRET=$SECRET

for server in $SERVERS; do
  for scenario in $SCENARIOS; do
    case $server:$scenario in
      # SQLite is for one process, and its target is throughput: the rest would repeat
      # confab-pg's figures at the cost of minutes.
      confab-sqlite:fanout | confab-sqlite:multinode | confab-sqlite:capacity) continue ;;
      peer:search) continue ;;
    esac
    log "$server: $scenario"
    wait_quiet
    watch=(--watch-comm postgres)
    case $scenario in
      multinode)
        start_server "$server" "$MULTINODE_NODES"
        watch+=(--watch-comm redis-server)
        ;;
      capacity) start_server "$server" 1 "$CAPACITY_NOFILE" ;;
      *) start_server "$server" ;;
    esac
    if [[ -n $SERVER_DB ]]; then
      watch+=(--watch-cmdline "$SERVER_DB")
    fi
    pids=()
    for pid in "${SERVER_PIDS[@]}"; do
      pids+=(--server-pid "$pid")
    done
    url=${SERVER_URLS[0]}
    case $scenario in
      connect)
        bench "$server" connect connect --url "$url" --users "$CONNECT_USERS" --duration 10 \
          "${pids[@]}" "${watch[@]}"
        ;;
      members)
        bench "$server/members" connect connect --url "$url" --users "$CONNECT_USERS" \
          --group-size "$GROUP_SIZE" --duration 2 "${pids[@]}" "${watch[@]}"
        ;;
      chat)
        bench "$server" chat chat --url "$url" --users "$USERS" --group-size "$GROUP_SIZE" \
          --rate "$CHAT_RATE" --duration "$CHAT_SECS" "${pids[@]}" "${watch[@]}"
        ;;
      sweep)
        rates=(--rate "$SWEEP_START")
        if [[ -n $SWEEP_RATES ]]; then
          rates=(--rates "$SWEEP_RATES")
        fi
        bench "$server" sweep sweep --url "$url" --users "$USERS" --group-size "$GROUP_SIZE" \
          "${rates[@]}" --duration "$SWEEP_SECS" "${pids[@]}" "${watch[@]}"
        ;;
      fanout)
        members=()
        [[ $server == confab* ]] && members=(--group-members "$FANOUT_MEMBERS")
        bench "$server" fanout fanout --url "$url" --users "$FANOUT_USERS" "${members[@]}" --rate "$FANOUT_RATE" \
          --duration "$FANOUT_SECS" "${pids[@]}" "${watch[@]}"
        ;;
      multinode)
        # The peer's Redis adapter joins members to rooms asynchronously: give it a moment.
        urls=()
        for u in "${SERVER_URLS[@]}"; do
          urls+=(--url "$u")
        done
        bench "$server" multinode multinode "${urls[@]}" --users "$USERS" \
          --group-size "$GROUP_SIZE" --rate "$MULTINODE_RATE" --duration "$MULTINODE_SECS" --settle 2 \
          "${pids[@]}" "${watch[@]}"
        ;;
      capacity)
        # Every descriptor the server has open at idle (listener, database, runtime) is one
        # socket fewer.
        users=$((CAPACITY_NOFILE - $(find "/proc/${SERVER_PIDS[0]}/fd" -mindepth 1 | wc -l) - CAPACITY_SPARE))
        (
          # The generator needs a descriptor per socket too: above the server's limit where
          # allowed (as root); otherwise it raises its soft limit to the hard one itself.
          ulimit -Hn $((users + 1000)) 2>/dev/null && ulimit -Sn $((users + 1000)) 2>/dev/null || true
          bench "$server/capacity" chat chat --url "$url" --users "$users" --group-size "$GROUP_SIZE" \
            --rate "$CAPACITY_RATE" --duration "$CAPACITY_SECS" --connect-timeout 30 "${pids[@]}" "${watch[@]}"
        )
        ;;
      soak)
        case $server in
          confab-pg) rate=$SOAK_RATE_PG ;;
          confab-sqlite) rate=$SOAK_RATE_SQLITE ;;
          *) rate=$SOAK_RATE_PEER ;;
        esac
        bench "$server" soak soak --url "$url" --users "$USERS" --group-size "$GROUP_SIZE" \
          --rate "$rate" --duration "$SOAK_SECS" "${pids[@]}" "${watch[@]}"
        ;;
      search)
        rate=$SEARCH_RATE_PG
        if [[ $server == confab-sqlite ]]; then
          rate=$SEARCH_RATE_SQLITE
        fi
        bench "$server" search search --url "$url" --users "$SEARCH_USERS" --group-size "$GROUP_SIZE" \
          --messages "$SEARCH_MESSAGES" --rate "$rate" --queries "$SEARCH_QUERIES" --grace 30 \
          "${pids[@]}" "${watch[@]}"
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
