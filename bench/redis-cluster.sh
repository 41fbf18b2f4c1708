#!/usr/bin/env bash
# A Redis Cluster on loopback for benchmarks: $SHARDS primaries (3 by default) with
# $REPLICAS replicas each (0 by default), on ports from $PORT (7100), nothing kept on disk.
#
#   bench/redis-cluster.sh start   # prints the seed URLs for CONFAB_REDIS_URL / REDIS_URL
#   bench/redis-cluster.sh stop    # stops the servers it started
#
# The servers' files (pids, nodes-*.conf, logs) are in $DIR (target/redis-cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARDS=${SHARDS:-3}
REPLICAS=${REPLICAS:-0}
PORT=${PORT:-7100}
DIR=${DIR:-target/redis-cluster}
count=$((SHARDS * (REPLICAS + 1)))

case ${1:-} in
  start)
    mkdir -p "$DIR"
    nodes=()
    for ((i = 0; i < count; i++)); do
      port=$((PORT + i))
      redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
        --cluster-config-file "nodes-$port.conf" --cluster-node-timeout 5000 \
        --save "" --appendonly no --dir "$DIR" --daemonize yes \
        --pidfile "$PWD/$DIR/redis-$port.pid" --logfile "$PWD/$DIR/redis-$port.log"
      nodes+=("127.0.0.1:$port")
    done
    for node in "${nodes[@]}"; do
      for _ in $(seq 1 50); do
        redis-cli -p "${node#*:}" ping >/dev/null 2>&1 && break
        sleep 0.1
      done
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$REPLICAS" --cluster-yes >"$DIR/create.log"
    for _ in $(seq 1 100); do
      redis-cli -p "$PORT" cluster info | grep -q '^cluster_state:ok' && break
      sleep 0.1
    done
    redis-cli -p "$PORT" cluster info | grep -q '^cluster_state:ok'
    echo "redis://127.0.0.1:$PORT,redis://127.0.0.1:$((PORT + 1))"
    ;;
  stop)
    for pidfile in "$DIR"/redis-*.pid; do
      [[ -e $pidfile ]] || continue
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    done
    rm -f "$DIR"/nodes-*.conf
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
