#!/bin/bash
# tests/lib/nodes.sh — the driver the multi-node scenarios share: one preloaded cluster
# per node, the seed workload's schema on each (data on the first node only), then a
# Python scenario (tests/lib/cascadetest.py's environment); everything started is
# stopped on exit, also on failure.
#
#   source tests/lib/nodes.sh
#   nodes_main LAYER SCENARIO.py "root branch leaf" [extra postgresql.conf lines...]
#
# Env: PG_BIN, WORKLOAD_DIR (default tests/workload), ROWS (seed rows on the first node,
# default 20000), LOAD_SECONDS, KEEP=1 keeps the work dir and the clusters' directories
# (stopped; server.log) on failure, KEEP=2 always. The scenario gets WORK, NODES,
# NODE_DIRS, PG_BIN, WORKLOAD_DIR, ROWS.
set -Eeuo pipefail

NODES_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
WORKLOAD_DIR=${WORKLOAD_DIR:-$NODES_LIB/../workload}
ROWS=${ROWS:-20000}
CLUSTER_DB=digoal
source "$NODES_LIB/cluster.sh"

# What the scenario started: the pids it recorded, and the pids in the londiste
# pidfiles of the work dir (a `londiste worker` starts its copy processes as daemons,
# each with its own pidfile) if that process's command line names the work dir.
_nodes_started() {
  local f p
  [ -f "$WORK/pids" ] && cat "$WORK/pids"
  for f in "$WORK"/*.pid*; do
    [ -f "$f" ] || continue
    p=$(head -c 20 "$f" 2>/dev/null | tr -dc 0-9)
    [ -n "$p" ] && tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline" | grep -qF "$WORK/" && echo "$p"
  done
  return 0
}

# Stop what the scenario started.
_nodes_stop_started() {
  local p pids
  pids=$(_nodes_started)
  [ -n "$pids" ] || return 0
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
}

_nodes_cleanup() {
  local rc=$?
  _nodes_stop_started
  if [ $rc -ne 0 ]; then
    local d n
    for d in ${NODE_DIRS:-}; do
      n=${d%%=*}; d=${d#*=}; d=${d%/data}
      echo "---- $n: last pgq lines of $d/server.log ----" >&2
      grep -a -i -E 'replay|pgq|ERROR|FATAL|PANIC' "$d/server.log" 2>/dev/null | tail -n 25 >&2 || true
    done
    [ "${KEEP:-0}" != 0 ] && KEEP_CLUSTERS=1
  fi
  [ "${KEEP:-0}" = 2 ] && KEEP_CLUSTERS=1
  cluster_stop_all
  if { [ $rc -ne 0 ] && [ "${KEEP:-0}" = 1 ]; } || [ "${KEEP:-0}" = 2 ]; then
    echo "$NODES_LAYER: work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}

nodes_main() {
  NODES_LAYER=$1; local scenario=$2 names=$3; shift 3
  [ -f "$WORKLOAD_DIR/seed.sql" ] || { echo "$NODES_LAYER: workload not found in $WORKLOAD_DIR" >&2; exit 1; }
  WORK=$(mktemp -d "/tmp/pgq-$NODES_LAYER-work.XXXXXX")
  chmod 755 "$WORK"
  export WORK
  trap _nodes_cleanup EXIT
  trap 'exit 130' INT TERM
  local t0 n rows first=1
  t0=$(date +%s)
  local conf=(
    "shared_preload_libraries = 'pgq'"
    "max_worker_processes = 16"
    "pgq.ticker_period = '100ms'"
    "pgq.maint_period = '2s'"
    "pgq.retry_period = '1s'"
    "pgq.launcher_naptime = '1s'"
    "log_line_prefix = '%m [%p] %b: '"
    "$@"
  )
  NODES="" NODE_DIRS=""
  for n in $names; do
    cluster_start "$NODES_LAYER-$n" "${conf[@]}" \
      || { echo "$NODES_LAYER: cluster $n did not start" >&2; exit 1; }
    echo "$NODES_LAYER: cluster $n on port $PGPORT (PG_BIN=$PG_BIN)"
    as_pg "$PG_BIN/createdb" -h "$PGHOST" -p "$PGPORT" digoal
    rows=0; [ $first = 1 ] && rows=$ROWS
    first=0
    as_pg "$PG_BIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d digoal -v rows=$rows \
      -f "$WORKLOAD_DIR/seed.sql" >/dev/null \
      || { echo "$NODES_LAYER: seed.sql on $n failed" >&2; exit 1; }
    NODES="$NODES $n=$PGPORT"
    NODE_DIRS="$NODE_DIRS $n=$PGDATA_DIR"
    PORT_BASE=$((PGPORT + 1))
  done
  export NODES NODE_DIRS WORKLOAD_DIR ROWS
  echo "$NODES_LAYER: clusters up and seeded in $(( $(date +%s) - t0 ))s"
  /usr/bin/python3 "$scenario"
  echo "$NODES_LAYER: scenario passed in $(( $(date +%s) - t0 ))s"
}
