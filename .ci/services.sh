# Sourced by .ci/run and bench/run.sh: starts PostgreSQL's cluster and a throwaway Redis on
# 127.0.0.1 when they aren't running, and fails unless both answer within 30 s.
start_services() {
  # The Redis Cluster tests (tests/api/redis_cluster.rs) start redis-server processes of their own
  # and join them with redis-cli (Debian's redis-server package brings both; Redis 7 for sharded
  # pub/sub).
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  fi
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  fi
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
    sleep 1
  done
  pg_isready -h 127.0.0.1 -p 5432
  redis-cli -h 127.0.0.1 -p 6379 ping
}
