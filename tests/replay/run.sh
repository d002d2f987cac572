#!/bin/bash
# tests/replay/run.sh — in-server replay: a root → branch → leaf cascade of this
# extension replicated by the `pgq replay` background workers alone, with NO
# `londiste worker` and NO pgqd anywhere (issue 11).
#
# Three clusters (one per node) are started from $PG_BIN with `pgq` preloaded and
# pgq.replay = on; the seed workload's schema (tests/workload/seed.sql, or
# $WORKLOAD_DIR) is loaded on each and the data ($ROWS rows) on the root only: the
# replay workers of branch and leaf make the initial COPY themselves (`add-table`
# without --expect-sync). scenario.py then drives the Python `londiste` CLI
# (create-root/-branch/-leaf, add-table, add-seq) and checks with SQL: the initial copy
# (every table ok, copy times, equal data), the replay workers, pgbench load on the
# root reaching branch and leaf, equal data on every node (count + hash sum per table,
# sequences), `compare` on the branch, an apply conflict on the leaf (error recorded,
# retries with backoff, skip_replay_error), in-server replay off and on again, replay
# workers terminated under load, TRUNCATE, an EXECUTE'd DDL script, a replay role that
# is not a superuser (missing and wrong password, no secret in any log or status),
# status/members on the leaf (see scenario.py for the step list).
#
# Env: PG_BIN (bin dir of the PostgreSQL that has this extension installed), ROWS (seed
# rows, default 20000), LOAD_SECONDS (pgbench duration per load phase, default 8),
# KEEP=1 keeps the work dir (logs, ini files, commands.log) and the clusters' directories
# (stopped; server.log) on failure, KEEP=2 always.
# Everything started here — clusters, pgbench — is stopped on exit, also on failure.
set -Eeuo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
export PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
WORKLOAD_DIR=${WORKLOAD_DIR:-$HERE/../workload}
PY=/usr/bin/python3
LONDISTE=/usr/bin/londiste
ROWS=${ROWS:-20000}

[ -x "$LONDISTE" ] || { echo "replay: $LONDISTE missing (Debian python3-londiste)" >&2; exit 1; }
[ -f "$WORKLOAD_DIR/seed.sql" ] || { echo "replay: workload not found in $WORKLOAD_DIR" >&2; exit 1; }

CLUSTER_DB=digoal
source "$HERE/../lib/cluster.sh"

WORK=$(mktemp -d /tmp/pgq-replay-work.XXXXXX)
chmod 755 "$WORK"
export WORK

# Stop what scenario.py started (pgbench; it records the pids).
stop_started() {
  local p
  [ -f "$WORK/pids" ] || return 0
  for p in $(cat "$WORK/pids"); do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in $(cat "$WORK/pids"); do kill -9 "$p" 2>/dev/null || true; done
}
cleanup() {
  local rc=$?
  stop_started
  if [ $rc -ne 0 ]; then
    # the end of each server log names what the replay workers did last
    for d in ${NODE_DIRS:-}; do
      n=${d%%=*}; d=${d#*=}; d=${d%/data}
      echo "---- $n: last replay lines of $d/server.log ----" >&2
      grep -a -i -E 'replay|pgq|ERROR|FATAL|PANIC' "$d/server.log" 2>/dev/null | tail -n 25 >&2 || true
    done
    [ "${KEEP:-0}" != 0 ] && KEEP_CLUSTERS=1
  fi
  [ "${KEEP:-0}" = 2 ] && KEEP_CLUSTERS=1
  cluster_stop_all
  if { [ $rc -ne 0 ] && [ "${KEEP:-0}" = 1 ]; } || [ "${KEEP:-0}" = 2 ]; then
    echo "replay: work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step_fail() { echo "replay: STEP 1 (clusters, seed) FAILED: $*" >&2; exit 1; }

T0=$(date +%s)
CONF=(
  "shared_preload_libraries = 'pgq'"
  "pgq.replay = on"
  "max_worker_processes = 16"
  "pgq.ticker_period = '100ms'"
  "pgq.maint_period = '2s'"
  "pgq.retry_period = '1s'"
  "pgq.launcher_naptime = '1s'"
  "log_line_prefix = '%m [%p] %b: '"
)
NODES="" NODE_DIRS=""
for n in root branch leaf; do
  cluster_start "replay-$n" "${CONF[@]}" || step_fail "cluster $n did not start"
  echo "replay: cluster $n on port $PGPORT (PG_BIN=$PG_BIN)"
  as_pg "$PG_BIN/createdb" -h "$PGHOST" -p "$PGPORT" digoal
  rows=0; [ $n = root ] && rows=$ROWS
  as_pg "$PG_BIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d digoal -v rows=$rows \
    -f "$WORKLOAD_DIR/seed.sql" >/dev/null || step_fail "seed.sql on $n"
  NODES="$NODES $n=$PGPORT"
  NODE_DIRS="$NODE_DIRS $n=$PGDATA_DIR"
  PORT_BASE=$((PGPORT + 1))
done

export NODES NODE_DIRS WORKLOAD_DIR ROWS
echo "replay: clusters up and seeded in $(( $(date +%s) - T0 ))s"

"$PY" "$HERE/scenario.py"
echo "replay: scenario passed in $(( $(date +%s) - T0 ))s"
