#!/usr/bin/env bash
# The wire formats side by side (docs/BENCHMARKS.md, "Wire formats"): `chat` against a fresh confab
# (SQLite in a temp dir) per variant, back to back, the same load for each:
#
#   json            the default parser, no compression offered
#   msgpack         socket.io-msgpack-parser's encoding
#   json+deflate    permessage-deflate offered, confab's default threshold (1024 bytes)
#   json+deflate0   permessage-deflate with threshold 0: every server message compressed
#   msgpack+deflate0
#
# JSON lines go to $OUT (default bench/results/wire-<date>.jsonl); a table to stdout.
#   USERS=1000 GROUP_SIZE=10 RATE=1000 SECS=15 bench/wire.sh
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-1000}
GROUP_SIZE=${GROUP_SIZE:-10}
RATE=${RATE:-1000}
SECS=${SECS:-15}
PORT=${PORT:-3201}
OUT=${OUT:-bench/results/wire-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
VARIANTS=${VARIANTS:-json msgpack json+deflate json+deflate0 msgpack+deflate0}
SECRET="wire-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/confab-wire.XXXXXX")
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$TMP"' EXIT
cargo build --release -q -p confab -p confab-bench
mkdir -p "$(dirname "$OUT")"
for variant in $VARIANTS; do
  args=(--parser json)
  threshold=1024
  case $variant in
    msgpack*) args=(--parser msgpack) ;;
  esac
  case $variant in
    *+deflate0) args+=(--deflate); threshold=0 ;;
    *+deflate) args+=(--deflate) ;;
  esac
  mkdir -p "$TMP/$variant"
  env CONFAB_BIND=127.0.0.1:$PORT CONFAB_DATA_DIR="$TMP/$variant" CONFAB_LOG=warn \
    CONFAB_JWT_SECRET="$SECRET" CONFAB_WS_COMPRESSION_THRESHOLD_BYTES=$threshold \
    CONFAB_RATE_CONNECT_PER_IP=1000000/1000000 CONFAB_RATE_SEND=1000000/1000000 \
    CONFAB_RATE_OTHER=1000000/1000000 CONFAB_RATE_MEMBERS=1000000/1000000 \
    CONFAB_RATE_SESSION_PER_IP=1000000/1000000 CONFAB_MAX_UNAUTHENTICATED_PER_IP=100000 \
    target/release/confab >"$TMP/$variant.log" 2>&1 &
  PID=$!
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
  echo "== $variant: confab-bench chat --users $USERS --group-size $GROUP_SIZE --rate $RATE --duration $SECS ${args[*]}" >&2
  CONFAB_BENCH_SECRET=$SECRET target/release/confab-bench chat --url "http://127.0.0.1:$PORT" \
    --users "$USERS" --group-size "$GROUP_SIZE" --rate "$RATE" --duration "$SECS" \
    --server-pid "$PID" --label "$variant" "${args[@]}" --json-out "$TMP/line.json" >&2
  cat "$TMP/line.json" >>"$OUT"
  rm -f "$TMP/line.json"
  kill "$PID"; wait "$PID" 2>/dev/null || true
  PID=
  sleep 2
done
python3 - "$OUT" <<'PY'
import json, sys
print("| variant | acked msgs/s | ack p99 ms | delivered/s | bytes server → client per delivery | bytes client → server per send | server CPU µs per message | machine CPU % |")
print("|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "wire_in_bytes" not in r:
        continue
    # Server CPU over the phase (cpu_pct is of one core) per acked message.
    cpu_us = r["server"]["cpu_pct"] / 100 / max(r["acked_per_s"], 1) * 1e6
    print(f"| {r['label']} | {r['acked_per_s']:,.0f} | {r['ack_ms']['p99']} | {r['delivered_per_s']:,.0f} | "
          f"{r['wire_in_bytes'] / max(r['delivered'], 1):,.0f} | {r['wire_out_bytes'] / max(r['acked'], 1):,.0f} | "
          f"{cpu_us:,.0f} | {r['machine']['cpu_pct']} |")
PY
