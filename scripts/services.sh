#!/usr/bin/env bash
# PostgreSQL and Redis for Parley's store tests (Debian packages), idempotent.
#
#   scripts/services.sh            install postgresql and redis-server if missing (the tests then start
#                                  their own throwaway servers: tests/store/services.py)
#   scripts/services.sh start      also start throwaway servers on free loopback ports in a temp dir and
#                                  print `export PARLEY_TEST_POSTGRES_URL=… PARLEY_TEST_REDIS_URL=…`
#                                  (eval the output to make the tests use them)
#   scripts/services.sh stop DIR   stop the servers started in DIR and remove it
set -euo pipefail

log() { printf '\033[1;34m[services]\033[0m %s\n' "$*" >&2; }

install() {
  local need=()
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  ((${#need[@]})) || return 0
  if [ "$(id -u)" != 0 ]; then
    log "missing ${need[*]}: install them with: sudo apt-get install ${need[*]}"
    return 1
  fi
  log "installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts a system-wide cluster and redis on install; the tests need neither.
  if command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
    service postgresql stop >/dev/null 2>&1 || true
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  install
  local dir pg_bin pg_port redis_port as_pg=()
  dir=$(mktemp -d -t parley-services-XXXXXX)
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  if [ "$(id -u)" = 0 ]; then  # PostgreSQL refuses to run as root
    chown postgres "$dir"
    as_pg=(runuser -u postgres --)
  fi
  pg_port=$(free_port)
  "${as_pg[@]}" "$pg_bin/initdb" -D "$dir/pg" -U parley --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/pg" -l "$dir/postgres.log" -w -o \
    "-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  log "started in $dir (stop with: scripts/services.sh stop $dir)"
  echo "export PARLEY_TEST_POSTGRES_URL=postgresql+asyncpg://parley@127.0.0.1:$pg_port/postgres"
  echo "export PARLEY_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0"
}

stop() {
  local dir=${1:?usage: services.sh stop DIR}
  local pg_bin as_pg=()
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  [ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --)
  if [ -f "$dir/pg/postmaster.pid" ]; then
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null || true
  fi
  if [ -f "$dir/redis.pid" ]; then
    kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
  fi
  rm -rf "$dir"
  log "stopped and removed $dir"
}

case "${1:-install}" in
  install) install ;;
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 [install|start|stop DIR]" >&2; exit 2 ;;
esac
