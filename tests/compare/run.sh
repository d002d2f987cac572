#!/bin/bash
# tests/compare/run.sh — pgq_cascade.compare and pgq_cascade.repair (docs/admin.md,
# "Compare and repair") on a root → branch → leaf cascade of this extension replicated
# in-server (no londiste worker, no pgqd).
#
# Three clusters (one per node) are started from $PG_BIN with `pgq` preloaded; the
# seed workload's schema (tests/workload/seed.sql) is loaded on each and its data
# ($ROWS rows) on the root only, plus a table digoal.big of $BIG_ROWS rows (default
# 1,000,000; several column types, NULLs, quotes) on the root. scenario.py sets the
# cascade up with the Python `londiste` CLI and checks (see its step list): compare
# equal on branch and leaf under load on the root, the numbers of `londiste compare`,
# a row changed by hand on the leaf found and repaired, the hold of a repair that
# applied lasting until its transaction ends, a writer on the root's 1M-row table never
# blocked by a compare (compare time and the writer's longest commit printed), bad
# input.
#
# Env: PG_BIN (bin dir of the PostgreSQL that has this extension installed), ROWS (seed
# rows, default 20000), BIG_ROWS, LOAD_SECONDS (default 8), KEEP=1 keeps the work dir
# and the clusters' directories (stopped) on failure, KEEP=2 always.
# Everything started here — clusters, pgbench, writers — is stopped on exit, also on
# failure.
set -Eeuo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
export PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
WORKLOAD_DIR=${WORKLOAD_DIR:-$HERE/../workload}
PY=/usr/bin/python3
LONDISTE=/usr/bin/londiste
ROWS=${ROWS:-20000}
BIG_ROWS=${BIG_ROWS:-1000000}

[ -x "$LONDISTE" ] || { echo "compare: $LONDISTE missing (Debian python3-londiste)" >&2; exit 1; }
[ -f "$WORKLOAD_DIR/seed.sql" ] || { echo "compare: workload not found in $WORKLOAD_DIR" >&2; exit 1; }

CLUSTER_DB=digoal
source "$HERE/../lib/cluster.sh"

WORK=$(mktemp -d /tmp/pgq-compare-work.XXXXXX)
chmod 755 "$WORK"
export WORK

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
    echo "compare: work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step_fail() { echo "compare: STEP 1 (clusters, seed) FAILED: $*" >&2; exit 1; }

T0=$(date +%s)
CONF=(
  "shared_preload_libraries = 'pgq'"
  "pgq.replay = on"
  "max_worker_processes = 16"
  "pgq.ticker_period = '100ms'"
  "pgq.maint_period = '2s'"
  "pgq.retry_period = '1s'"
  "pgq.launcher_naptime = '1s'"
  "shared_buffers = '128MB'"
  "log_line_prefix = '%m [%p] %b: '"
)
NODES="" NODE_DIRS=""
for n in root branch leaf; do
  cluster_start "compare-$n" "${CONF[@]}" || step_fail "cluster $n did not start"
  echo "compare: cluster $n on port $PGPORT (PG_BIN=$PG_BIN)"
  as_pg "$PG_BIN/createdb" -h "$PGHOST" -p "$PGPORT" digoal
  rows=0 big=0; [ $n = root ] && rows=$ROWS big=$BIG_ROWS
  as_pg "$PG_BIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d digoal -v rows=$rows \
    -f "$WORKLOAD_DIR/seed.sql" >/dev/null || step_fail "seed.sql on $n"
  # the 1M-row table: several types, NULLs, quotes and backslashes in text
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d digoal <<SQL >/dev/null || step_fail "digoal.big on $n"
CREATE TABLE digoal.big (
    id      int PRIMARY KEY,
    grp     int NOT NULL,
    name    text,
    amount  numeric(12,2),
    flag    bool,
    ts      timestamptz,
    tags    text[]
);
INSERT INTO digoal.big
SELECT n, n % 97,
       CASE WHEN n % 11 = 0 THEN NULL ELSE E'row ' || n || E' it''s \\\\ "q"' END,
       (n % 100000) / 100.0,
       CASE n % 3 WHEN 0 THEN true WHEN 1 THEN false END,
       timestamptz '2024-01-01 00:00:00+00' + n * interval '1 second',
       ARRAY['t' || n % 5, 'x']
  FROM generate_series(1, $big) AS n;
ANALYZE digoal.big;
SQL
  NODES="$NODES $n=$PGPORT"
  NODE_DIRS="$NODE_DIRS $n=$PGDATA_DIR"
  PORT_BASE=$((PGPORT + 1))
done

export NODES NODE_DIRS WORKLOAD_DIR ROWS BIG_ROWS
echo "compare: clusters up and seeded in $(( $(date +%s) - T0 ))s"

"$PY" "$HERE/scenario.py"
echo "compare: scenario passed in $(( $(date +%s) - T0 ))s"
