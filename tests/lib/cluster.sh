# tests/lib/cluster.sh — throwaway PostgreSQL clusters for every test layer, the
# benchmarks and the demo (the one cluster library of the repository).
#
# Each cluster runs as the `postgres` OS user, listens on 127.0.0.1 and on a unix
# socket in its own directory under /tmp, on a free port (random start, retried on the
# next free port if another suite wins the race), and is stopped (immediate) and
# removed by cluster_stop_all. Source this file from bash, then either call
# cluster_init (an EXIT trap that runs cluster_stop_all) or call cluster_stop_all from
# your own EXIT trap: every cluster is stopped on exit, also on failure.
#
#   cluster_start NAME [postgresql.conf lines...]
#       initdb + start with $PG_BIN (default the system PostgreSQL 15; a per-call
#       `PG_BIN=... cluster_start` uses another tree for that cluster). Sets and exports
#       PGPORT, PGHOST (the socket dir), PGUSER=postgres, and sets PGDATA_DIR, so plain
#       psql reaches the cluster started last. PORT_BASE: first port to try.
#       CLUSTER_ENV: extra environment of the server (e.g. RUST_BACKTRACE=1).
#   cluster_port NAME, cluster_host NAME, cluster_dir NAME, cluster_bin NAME
#   cluster_connstr NAME [DB]       libpq "host=... port=... user=postgres dbname=DB"
#   cluster_psql NAME ARGS...       that cluster's psql, -X -q, ON_ERROR_STOP, db $CLUSTER_DB
#   cluster_val NAME SQL            one value, unaligned
#   cluster_pgbench NAME ARGS...    that cluster's pgbench against $CLUSTER_DB
#   cluster_bg PID...               client processes (pgqd, producers, consumers) that
#       cluster_bg_stop ends (SIGTERM, then waits for them); cluster_stop_all calls it
#       before it stops the clusters
#   pgqd_start NAME DIR [ini lines...]
#       the original's ticker daemon ($PGQD, default /usr/bin/pgqd: Debian package pgqd)
#       for cluster NAME: DIR/pgqd-NAME.ini gets NAME's base_connstr, logfile
#       DIR/pgqd-NAME.log, pidfile, syslog = 0, then the given lines (e.g.
#       "ticker_period = 0.1"); its stdout/stderr go to DIR/pgqd-NAME.out. Sets PGQD_PID
#       and registers it with cluster_bg.
#   cluster_stop_all                end the cluster_bg processes, stop and remove every
#       cluster started by this shell; KEEP_CLUSTERS=1 keeps the directories,
#       CLUSTER_LOG_ON_STOP=1 prints the last 30 lines of each server log first (set it
#       when a run failed).
#
# Clients (psql, pgbench, python) run as the invoking user and connect as database user
# `postgres` with trust authentication; only the server needs the postgres OS user.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
CLUSTER_DB=${CLUSTER_DB:-postgres}
CLUSTER_DIRS=()
CLUSTER_BG_PIDS=()
declare -gA CLUSTER_DIR=() CLUSTER_PORT=() CLUSTER_BIN=()

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

cluster_bg() { CLUSTER_BG_PIDS+=("$@"); }
cluster_bg_stop() {
  local p
  for p in "${CLUSTER_BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${CLUSTER_BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  CLUSTER_BG_PIDS=()
}

cluster_stop_all() {
  local d bin
  cluster_bg_stop
  for d in "${CLUSTER_DIRS[@]}"; do
    bin=$(cat "$d/bin" 2>/dev/null || echo "$PG_BIN")
    if [ -f "$d/data/postmaster.pid" ]; then
      as_pg "$bin/pg_ctl" -D "$d/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ -n "${CLUSTER_LOG_ON_STOP:-}" ] && [ -f "$d/server.log" ]; then
      echo "---- last lines of the server log in $d ----" >&2
      tail -n 30 "$d/server.log" >&2 || true
    fi
    [ -n "${KEEP_CLUSTERS:-}" ] || rm -rf "$d"
  done
  CLUSTER_DIRS=()
  CLUSTER_DIR=() CLUSTER_PORT=() CLUSTER_BIN=()
}

cluster_init() { trap cluster_stop_all EXIT; }

# cluster_start NAME [extra postgresql.conf lines...]; sets PGPORT, PGHOST, PGDATA_DIR
cluster_start() {
  local name=$1; shift
  [ -x "$PG_BIN/postgres" ] || { echo "cluster_start: no postgres binary in $PG_BIN" >&2; return 1; }
  local dir; dir=$(mktemp -d "/tmp/pgq-$name.XXXXXX")
  chmod 755 "$dir"; chown postgres: "$dir"
  echo "$PG_BIN" > "$dir/bin"
  CLUSTER_DIRS+=("$dir")
  # a random start inside the range makes two suites running at once rarely race for
  # a port; a start that loses the race anyway is retried on the next free port
  PGPORT=$(free_port "${PORT_BASE:-$((54320 + RANDOM % 400 * 10))}")
  as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
      --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  {
    echo "# added by tests/lib/cluster.sh (later lines win)"
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
  CLUSTER_DIR[$name]=$dir CLUSTER_PORT[$name]=$PGPORT CLUSTER_BIN[$name]=$PG_BIN
  export PGPORT PGHOST PGUSER=postgres
}

_cluster_known() { [ -n "${CLUSTER_DIR[$1]:-}" ] || { echo "no cluster named $1" >&2; return 1; }; }
cluster_dir()  { _cluster_known "$1" && echo "${CLUSTER_DIR[$1]}"; }
cluster_host() { cluster_dir "$1"; }
cluster_port() { _cluster_known "$1" && echo "${CLUSTER_PORT[$1]}"; }
cluster_bin()  { _cluster_known "$1" && echo "${CLUSTER_BIN[$1]}"; }
cluster_connstr() {
  _cluster_known "$1" || return 1
  echo "host=${CLUSTER_DIR[$1]} port=${CLUSTER_PORT[$1]} user=postgres dbname=${2:-$CLUSTER_DB}"
}

# cluster_psql NAME ARGS...: psql of that cluster's tree; errors stop the script
cluster_psql() {
  local name=$1; shift
  _cluster_known "$name" || return 1
  "${CLUSTER_BIN[$name]}/psql" -X -q -v ON_ERROR_STOP=1 -h "${CLUSTER_DIR[$name]}" \
    -p "${CLUSTER_PORT[$name]}" -U postgres -d "$CLUSTER_DB" "$@"
}
cluster_val() { cluster_psql "$1" -At -c "$2"; }

cluster_pgbench() {
  local name=$1; shift
  _cluster_known "$name" || return 1
  "${CLUSTER_BIN[$name]}/pgbench" -h "${CLUSTER_DIR[$name]}" -p "${CLUSTER_PORT[$name]}" \
    -U postgres "$@" "$CLUSTER_DB"
}

pgqd_start() {
  local name=$1 dir=$2; shift 2
  _cluster_known "$name" || return 1
  local ini=$dir/pgqd-$name.ini
  {
    echo "[pgqd]"
    echo "base_connstr = host=${CLUSTER_DIR[$name]} port=${CLUSTER_PORT[$name]} user=postgres"
    echo "logfile = $dir/pgqd-$name.log"
    echo "pidfile = $dir/pgqd-$name.pid"
    echo "syslog = 0"
    local l; for l in "$@"; do echo "$l"; done
  } > "$ini"
  "${PGQD:-/usr/bin/pgqd}" -q "$ini" >>"$dir/pgqd-$name.out" 2>&1 &
  PGQD_PID=$!
  cluster_bg "$PGQD_PID"
}
