#!/bin/bash
# tests/cascade/run.sh — the compatibility scenario: the original Python `londiste` CLI
# (Debian python3-londiste) administering a root → branch → leaf cascade of this
# extension, with NO pgqd: every cluster preloads `pgq`, whose in-server ticker does the
# ticking before and after takeover.
#
# Three clusters (one per node) are started from $PG_BIN; the seed workload's schema
# (tests/workload/seed.sql, or $WORKLOAD_DIR) is loaded on each (data on the
# root only); then scenario.py drives create-root/-branch/-leaf, add-table, add-seq,
# `londiste worker` daemons, pgbench load with the workload's login/logout functions,
# compare/status/members/tables/missing, change-provider and takeover, checking every
# step by comparing data across the nodes (see scenario.py for the step list).
#
# REFERENCE=1 runs the same scenario against the original stack (pgq 3.5 + pgq_node +
# londiste SQL in $REF_BIN's tree: scripts/install-original.sh puts it in its default
# /opt/pgq-reference) ticked by one pgqd per cluster — to compare behaviour and
# outputs; not part of the test suite.
#
# Env: PG_BIN (bin dir of the PostgreSQL that has this extension installed), ROWS (seed
# rows, default 20000), LOAD_SECONDS (pgbench duration per load phase, default 8),
# KEEP=1 keeps the work dir (logs, ini files) and clusters' logs on failure, KEEP=2 the
# work dir always.
# Everything started here — clusters, londiste workers and their copy processes,
# pgbench — is stopped on exit, also on failure.
set -Eeuo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
export PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
WORKLOAD_DIR=${WORKLOAD_DIR:-$HERE/../workload}
PY=/usr/bin/python3
LONDISTE=/usr/bin/londiste
ROWS=${ROWS:-20000}

[ -x "$LONDISTE" ] || { echo "cascade: $LONDISTE missing (Debian python3-londiste; scripts/install-original.sh installs it)" >&2; exit 1; }
[ -f "$WORKLOAD_DIR/seed.sql" ] || { echo "cascade: workload not found in $WORKLOAD_DIR" >&2; exit 1; }

source "$HERE/../lib/cluster.sh"

WORK=$(mktemp -d /tmp/pgq-cascade-work.XXXXXX)
chmod 755 "$WORK"
export WORK

# Stop what we started: the pids scenario.py recorded (workers, pgbench) and the
# londiste pidfiles in our work dir (copy processes daemonize themselves).
stop_started() {
  local f p
  for f in "$WORK/pids" "$WORK"/*.pid*; do
    [ -f "$f" ] || continue
    for p in $(cat "$f" 2>/dev/null); do
      case "$p" in ''|*[!0-9]*) continue ;; esac
      kill "$p" 2>/dev/null || true
    done
  done
  sleep 0.5
  for f in "$WORK/pids" "$WORK"/*.pid*; do
    [ -f "$f" ] || continue
    for p in $(cat "$f" 2>/dev/null); do
      case "$p" in ''|*[!0-9]*) continue ;; esac
      kill -9 "$p" 2>/dev/null || true
    done
  done
}
cleanup() {
  local rc=$?
  stop_started
  [ $rc -ne 0 ] && [ "${KEEP:-0}" != 0 ] && KEEP_CLUSTERS=1
  cluster_stop_all
  if { [ $rc -ne 0 ] && [ "${KEEP:-0}" = 1 ]; } || [ "${KEEP:-0}" = 2 ]; then
    echo "cascade: work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0=$(date +%s)
CONF=(
  "shared_preload_libraries = 'pgq'"
  "max_worker_processes = 16"
  "pgq.ticker_period = '100ms'"
  "pgq.maint_period = '2s'"
  "pgq.retry_period = '1s'"
  "pgq.launcher_naptime = '1s'"
  # this layer runs the Python `londiste worker`: no in-server replay beside it
  "pgq.replay = off"
)
if [ -n "${REFERENCE:-}" ]; then
  # The same scenario against the ORIGINAL stack (scripts/install-original.sh),
  # ticked by pgqd: to compare behaviour and outputs. Not part of the test suite.
  PG_BIN=${REF_BIN:-/opt/pgq-reference/usr/lib/postgresql/15/bin}
  CONF=("max_worker_processes = 16")
fi
NODES=""
for n in root branch leaf; do
  cluster_start "cascade-$n" "${CONF[@]}"
  echo "cascade: cluster $n on port $PGPORT (PG_BIN=$PG_BIN)"
  as_pg "$PG_BIN/createdb" -h "$PGHOST" -p "$PGPORT" digoal
  rows=0; [ $n = root ] && rows=$ROWS
  as_pg "$PG_BIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d digoal -v rows=$rows \
    -f "$WORKLOAD_DIR/seed.sql" >/dev/null
  if [ -n "${REFERENCE:-}" ]; then
    as_pg "$PG_BIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d digoal \
      -c "create extension pgq; create extension pgq_node; create extension londiste"
    pgqd_start "cascade-$n" "$WORK" "initial_database = digoal" "database_list = digoal" \
      "ticker_period = 0.1" "maint_period = 2" "retry_period = 1" "check_period = 1"
  fi
  NODES="$NODES $n=$PGPORT"
  NODE_DIRS="${NODE_DIRS:-} $n=$PGDATA_DIR"
  PORT_BASE=$((PGPORT + 1))
done
export NODES NODE_DIRS WORKLOAD_DIR ROWS
echo "cascade: clusters up and seeded in $(( $(date +%s) - T0 ))s"

"$PY" "$HERE/scenario.py"
echo "cascade: scenario passed in $(( $(date +%s) - T0 ))s"
