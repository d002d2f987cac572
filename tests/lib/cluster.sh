# Shared helpers for the test layers and the demo: throwaway PostgreSQL clusters
# run as the `postgres` OS user, on 127.0.0.1 and a unix socket in their own
# directory, on a free port. Source this file; call cluster_start, use $PGPORT /
# $PGHOST, and cluster_stop_all runs from the EXIT trap set by cluster_init.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
CLUSTER_DIRS=()

free_port() {
  local p
  for p in $(seq "${1:-54320}" 65000); do
    if ! (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null \
       && [ ! -e "/tmp/.s.PGSQL.$p" ] && ! ss -ltn 2>/dev/null | grep -q ":$p\b"; then
      echo "$p"; return 0
    fi
  done
  return 1
}

as_pg() { sudo -u postgres -H -- "$@"; }

cluster_stop_all() {
  local d
  for d in "${CLUSTER_DIRS[@]}"; do
    if [ -f "$d/data/postmaster.pid" ]; then
      as_pg "$PG_BIN/pg_ctl" -D "$d/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    [ -n "${KEEP_CLUSTERS:-}" ] || rm -rf "$d"
  done
  CLUSTER_DIRS=()
}

cluster_init() { trap cluster_stop_all EXIT; }

# cluster_start NAME [extra postgresql.conf lines...]; sets PGPORT, PGHOST, PGDATA_DIR
cluster_start() {
  local name=$1; shift
  local dir; dir=$(mktemp -d "/tmp/pgq-$name.XXXXXX")
  chmod 755 "$dir"; chown postgres: "$dir"
  CLUSTER_DIRS+=("$dir")
  # a random start inside the range makes two suites running at once rarely race for
  # a port; a start that loses the race anyway is retried on the next free port
  PGPORT=$(free_port "${PORT_BASE:-$((54320 + RANDOM % 400 * 10))}")
  as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $PGPORT"
    echo "unix_socket_directories = '$dir'"
    echo "max_connections = 50"
    echo "fsync = off"
    echo "logging_collector = off"
    echo "lc_messages = 'C'"
    local l; for l in "$@"; do echo "$l"; done
  } >> "$dir/data/postgresql.conf"
  local try
  for try in 1 2 3 4 5; do
    # CLUSTER_ENV: extra environment of the server (e.g. RUST_BACKTRACE=1)
    as_pg env ${CLUSTER_ENV:-} "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null && break
    if [ "$try" -lt 5 ] && grep -q "Address already in use" "$dir/server.log"; then
      PGPORT=$(free_port $((PGPORT + 1)))
      sed -i "s/^port = .*/port = $PGPORT/" "$dir/data/postgresql.conf"
      : > "$dir/server.log"
      continue
    fi
    cat "$dir/server.log" >&2; return 1
  done
  PGHOST=$dir
  PGDATA_DIR=$dir/data
  export PGPORT PGHOST PGUSER=postgres
}
