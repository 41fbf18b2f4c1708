#!/usr/bin/env bash
# The whole benchmark, end to end, on a fresh machine: starts PostgreSQL and Redis if they are
# not running, builds the release binaries, installs the Node peer's packages, runs every
# scenario against confab (PostgreSQL; SQLite for the SQLite target; two nodes over Redis for
# multinode) and the Node peer back to back, each on a freshly started server
# (bench/measure.sh), then writes docs/BENCHMARKS.md and its plots (confab-bench report).
#
#   bench/run.sh            # the issue's size: about 55 minutes on 2 cores (the three soaks
#                           # take ten minutes each)
#   bench/run.sh --quick    # small and short, to try it out: about 3 minutes
#
# Options: --quick; --out FILE (the JSON lines; default bench/results/<UTC time>.jsonl, with
# --quick target/bench-quick/); --doc FILE (default docs/BENCHMARKS.md, with --quick
# target/bench-quick/BENCHMARKS.md); --notes FILE (Markdown appended to the document,
# e.g. profiles; default docs/bench/notes.md if it exists). Environment variables of
# measure.sh (SERVERS, SCENARIOS, CHAT_RATE, …) override the sizes below.
#
# Run it on a quiet machine: the load generator shares the cores with the server (the issue's
# setting), so anything else running shows up in the figures. The report flags runs where the
# cores were saturated or shared.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
OUT=
DOC=
NOTES=
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --out) OUT=$2 && shift ;;
    --doc) DOC=$2 && shift ;;
    --notes) NOTES=$2 && shift ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown option $1 (see --help)" >&2
      exit 1
      ;;
  esac
  shift
done
COMMAND=bench/run.sh
if ((QUICK)); then
  # A trial's figures mean little: they stay out of bench/results and docs/.
  COMMAND="bench/run.sh --quick"
  mkdir -p target/bench-quick
  OUT=${OUT:-target/bench-quick/$(date -u +%Y%m%dT%H%M%SZ).jsonl}
  DOC=${DOC:-target/bench-quick/BENCHMARKS.md}
fi
mkdir -p bench/results
OUT=${OUT:-bench/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl}
DOC=${DOC:-docs/BENCHMARKS.md}
if [[ -z $NOTES && -f docs/bench/notes.md ]]; then
  NOTES=docs/bench/notes.md
fi

log() { printf '\n== %s\n' "$*" >&2; }
STARTED=$SECONDS

log "services"
. .ci/services.sh
start_services >/dev/null

log "build"
cargo build --release -p confab -p confab-bench
if [[ ! -d bench/peers/node-socketio/node_modules ]]; then
  (cd bench/peers/node-socketio && npm ci --no-audit --no-fund)
fi
BENCH=target/release/confab-bench

# The sizes. Full: the issue's setting (1,000 users in groups of 10; 10,000 idle connections;
# the server's own open-file limit). Quick: the same scenarios, small and short, where the
# figures mean little.
if ((QUICK)); then
  export CONNECT_USERS=${CONNECT_USERS:-2000} USERS=${USERS:-200} CHAT_RATE=${CHAT_RATE:-500}
  export CHAT_SECS=${CHAT_SECS:-3} SWEEP_RATES=${SWEEP_RATES:-250,500,1000} SWEEP_SECS=${SWEEP_SECS:-2}
  export FANOUT_USERS=${FANOUT_USERS:-200} FANOUT_SECS=${FANOUT_SECS:-2} MULTINODE_RATE=${MULTINODE_RATE:-200}
  export MULTINODE_SECS=${MULTINODE_SECS:-2} CAPACITY_NOFILE=${CAPACITY_NOFILE:-1024} CAPACITY_RATE=${CAPACITY_RATE:-200}
  export CAPACITY_SECS=${CAPACITY_SECS:-2} QUIET_WAIT=${QUIET_WAIT:-0}
  export SOAK_SECS=${SOAK_SECS:-5} SOAK_RATE_PG=${SOAK_RATE_PG:-300} SOAK_RATE_SQLITE=${SOAK_RATE_SQLITE:-300}
  export SOAK_RATE_PEER=${SOAK_RATE_PEER:-200}
  COMMAND+=" (sizes: connect $CONNECT_USERS users; $USERS users in groups of 10; sweep rates $SWEEP_RATES)"
fi
export OUT

"$BENCH" report --stamp "$OUT" --command "$COMMAND"
bench/measure.sh

log "report"
"$BENCH" report --results "$OUT" --out "$DOC" ${NOTES:+--notes "$NOTES"}
log "done in $((SECONDS - STARTED)) s: $DOC (results in $OUT)"
