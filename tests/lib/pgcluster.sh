# pgcluster.sh — throw-away PostgreSQL clusters for the compat test and the benchmark.
#
# Source it from a bash script that uses `set -euo pipefail`. Each cluster runs as the
# `postgres` OS user, listens on 127.0.0.1 and on a unix socket in its own directory
# under /tmp, and is stopped and removed by pgc_cleanup (call it from an EXIT trap):
#
#   source tests/lib/pgcluster.sh
#   trap pgc_cleanup EXIT
#   pgc_start ref /opt/.../bin "shared_buffers = 256MB"   # sets PGC_ref_PORT, PGC_ref_DIR
#   pgc_psql ref -c 'select 1'
#   pgc_connstr ref                                     # "host=... port=... dbname=..."
#
# Clients (psql, pgbench, python) run as the invoking user and connect as database user
# `postgres` with trust authentication; only the server needs the postgres OS user.

PGC_NAMES=()
PGC_DB=${PGC_DB:-postgres}

_pgc_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# pgc_port_free PORT: nothing listens on 127.0.0.1:PORT (nor on any address).
pgc_port_free() {
  local p=$1
  [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] || return 1
  # double check by binding (ss may miss sockets of other network namespaces)
  /usr/bin/python3 - "$p" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.close()
EOF
}

# pgc_pick_port [START]: print the first free port at or above START (default random).
pgc_pick_port() {
  local p=${1:-$(( 20000 + RANDOM % 20000 ))} i
  for ((i = 0; i < 200; i++)); do
    if pgc_port_free "$p"; then echo "$p"; return 0; fi
    p=$((p + 1))
  done
  echo "no free port found" >&2
  return 1
}

# pgc_start NAME BINDIR [PORT] [CONF_LINES]: initdb + start. PORT empty = pick one.
pgc_start() {
  local name=$1 bin=$2 port=${3:-} conf=${4:-} dir
  [ -x "$bin/postgres" ] || { echo "no postgres binary in $bin" >&2; return 1; }
  [ -n "$port" ] || port=$(pgc_pick_port)
  pgc_port_free "$port" || { echo "port $port is in use" >&2; return 1; }
  dir=$(mktemp -d "/tmp/pgq-$name-XXXXXX")
  chmod 755 "$dir"
  chown postgres: "$dir"
  PGC_NAMES+=("$name")
  printf -v "PGC_${name}_DIR" %s "$dir"
  printf -v "PGC_${name}_PORT" %s "$port"
  printf -v "PGC_${name}_BIN" %s "$bin"
  _pgc_log "initdb $name ($bin) in $dir, port $port"
  sudo -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres --auth=trust \
      -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  {
    echo "# added by pgcluster.sh"
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$dir'"
    echo "logging_collector = off"
    echo "log_min_messages = warning"
    echo "log_min_error_statement = error"
    [ -n "$conf" ] && printf '%s\n' "$conf"
  } >>"$dir/data/postgresql.conf"
  sudo -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
      >/dev/null || { cat "$dir/server.log" >&2; return 1; }
}

_pgc_var() { local v="PGC_${1}_$2"; echo "${!v}"; }
pgc_dir()  { _pgc_var "$1" DIR; }
pgc_port() { _pgc_var "$1" PORT; }
pgc_bin()  { _pgc_var "$1" BIN; }
pgc_connstr() { echo "host=$(pgc_dir "$1") port=$(pgc_port "$1") dbname=$PGC_DB user=postgres"; }

# pgc_psql NAME ARGS...: psql of that cluster's bin dir, errors stop the script.
pgc_psql() {
  local name=$1; shift
  "$(pgc_bin "$name")/psql" -X -q -v ON_ERROR_STOP=1 -h "$(pgc_dir "$name")" \
    -p "$(pgc_port "$name")" -U postgres -d "$PGC_DB" "$@"
}
# pgc_val NAME SQL: one value, unaligned.
pgc_val() { pgc_psql "$1" -At -c "$2"; }

pgc_pgbench() {
  local name=$1; shift
  "$(pgc_bin "$name")/pgbench" -h "$(pgc_dir "$name")" -p "$(pgc_port "$name")" \
    -U postgres "$@" "$PGC_DB"
}

# pgc_stop NAME: fast shutdown, remove the directory (the log is printed first if
# PGC_KEEP_LOG_ON_STOP=1, e.g. after a failure).
pgc_stop() {
  local name=$1 dir bin
  dir=$(pgc_dir "$name"); bin=$(pgc_bin "$name")
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  if [ -f "$dir/data/postmaster.pid" ]; then
    sudo -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
      || sudo -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ "${PGC_KEEP_LOG_ON_STOP:-0}" = 1 ] && [ -f "$dir/server.log" ]; then
    echo "---- last lines of $name server log ----" >&2
    tail -n 30 "$dir/server.log" >&2 || true
  fi
  rm -rf "$dir"
  printf -v "PGC_${name}_DIR" %s ""
}

# pgc_cleanup: stop every cluster started by this shell.
pgc_cleanup() {
  local n
  for n in "${PGC_NAMES[@]}"; do pgc_stop "$n"; done
  PGC_NAMES=()
}
