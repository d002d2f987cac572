#!/bin/bash
# tests/interop/run.sh — in-server replay across versions and topology changes: two
# multi-node scenarios, replicated by this extension's `pgq replay` background workers
# alone (no `londiste worker` anywhere), administered with the Python `londiste` CLI.
#
#   A. mixed versions: a root of the ORIGINAL stack (PgQ 3.5 + pgq_node + londiste SQL
#      from $REF_BIN's tree, scripts/install-original.sh; ticked by pgqd, the only pgqd
#      of the layer), a branch and a leaf of this extension (preloaded, pgq.replay = on).
#      The way users migrate, one node at a time.
#   B. topology changes, every node of this extension: root → branch1 → leaf plus
#      branch2 under the root; pause/resume, change-provider there and back under load,
#      takeover (switchover) of the root by branch1, takeover --dead-root after the
#      current root is stopped.
#
# Each scenario gets its own clusters (started here, one per node; the seed workload's
# schema, tests/workload/seed.sql, on each, its $ROWS rows on the root only: the replay
# workers make the initial copies) and its own work dir; scenario.py A|B drives it (see
# there for the steps). The clusters of A are stopped before B starts.
#
# Env: PG_BIN (bin dir of the PostgreSQL that has this extension installed), REF_BIN (bin
# dir of the original stack's tree, default /opt/pgq-reference/usr/lib/postgresql/15/bin),
# ROWS (seed rows, default 20000), LOAD_SECONDS (pgbench duration per load phase, default
# 5), SCENARIOS (default "A B"), KEEP=1 keeps the work dir (ini files, commands.log,
# pgqd log) and the clusters' directories (stopped; server.log) on failure, KEEP=2 always.
# Everything started here — clusters, pgqd, pgbench — is stopped on exit, also on failure.
set -Eeuo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
export PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
OUR_BIN=$PG_BIN
REF_BIN=${REF_BIN:-/opt/pgq-reference/usr/lib/postgresql/15/bin}
WORKLOAD_DIR=${WORKLOAD_DIR:-$HERE/../workload}
PY=/usr/bin/python3
LONDISTE=/usr/bin/londiste
export ROWS=${ROWS:-20000}
export LOAD_SECONDS=${LOAD_SECONDS:-5}
SCENARIOS=${SCENARIOS:-A B}

[ -x "$LONDISTE" ] || { echo "interop: $LONDISTE missing (Debian python3-londiste; scripts/install-original.sh)" >&2; exit 1; }
[ -x "${PGQD:-/usr/bin/pgqd}" ] || { echo "interop: pgqd missing (Debian pgqd; scripts/install-original.sh)" >&2; exit 1; }
[ -f "$WORKLOAD_DIR/seed.sql" ] || { echo "interop: workload not found in $WORKLOAD_DIR" >&2; exit 1; }
case " $SCENARIOS " in
  *" A "*)
    [ -x "$REF_BIN/postgres" ] \
      && grep -qs "^default_version = '3.5" "$("$REF_BIN/pg_config" --sharedir)/extension/pgq.control" \
      || { echo "interop: the original stack is not in $REF_BIN's tree (run scripts/install-original.sh)" >&2; exit 1; }
    ;;
esac

CLUSTER_DB=digoal
source "$HERE/../lib/cluster.sh"
# (KEEP=2: also the clusters of a scenario that passed, stopped before the next starts)
if [ "${KEEP:-0}" = 2 ]; then KEEP_CLUSTERS=1; fi

TOP=$(mktemp -d /tmp/pgq-interop-work.XXXXXX)
chmod 755 "$TOP"
export WORKLOAD_DIR

# Stop what scenario.py started (pgbench; it records the pids in its work dir).
stop_started() {
  local f p
  for f in "$TOP"/*/pids; do
    [ -f "$f" ] || continue
    for p in $(cat "$f"); do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in $(cat "$f"); do kill -9 "$p" 2>/dev/null || true; done
  done
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
    for f in "$TOP"/*/pgqd-*.log; do
      [ -f "$f" ] || continue
      echo "---- $f (tail) ----" >&2
      tail -n 15 "$f" >&2 || true
    done
    [ "${KEEP:-0}" != 0 ] && KEEP_CLUSTERS=1
  fi
  [ "${KEEP:-0}" = 2 ] && KEEP_CLUSTERS=1
  cluster_stop_all
  if { [ $rc -ne 0 ] && [ "${KEEP:-0}" = 1 ]; } || [ "${KEEP:-0}" = 2 ]; then
    echo "interop: work dir kept: $TOP" >&2
  else
    rm -rf "$TOP"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# the settings of a node of this extension (as in tests/replay)
OUR_CONF=(
  "shared_preload_libraries = 'pgq'"
  "pgq.replay = on"
  "max_worker_processes = 16"
  "pgq.ticker_period = '100ms'"
  "pgq.maint_period = '2s'"
  "pgq.retry_period = '1s'"
  "pgq.launcher_naptime = '1s'"
  "log_line_prefix = '%m [%p] %b: '"
)
# a node of the original stack: nothing preloaded (the original has no library to
# preload); its ticker is pgqd
REF_CONF=(
  "max_worker_processes = 16"
  "log_line_prefix = '%m [%p] %b: '"
)

# start_node SCENARIO NAME ours|ref: a cluster for the node, database digoal, the seed
# schema (rows on the root only); the original's extensions and its pgqd for a ref node
start_node() {
  local sc=$1 n=$2 kind=$3 rows=0 bin=$OUR_BIN
  [ "$n" = root ] && rows=$ROWS
  if [ "$kind" = ref ]; then
    bin=$REF_BIN
    PG_BIN=$bin cluster_start "interop$sc-$n" "${REF_CONF[@]}" || return 1
  else
    PG_BIN=$bin cluster_start "interop$sc-$n" "${OUR_CONF[@]}" || return 1
  fi
  as_pg "$bin/createdb" -h "$PGHOST" -p "$PGPORT" digoal || return 1
  as_pg "$bin/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d digoal -v rows=$rows \
    -f "$WORKLOAD_DIR/seed.sql" >/dev/null || { echo "interop: seed.sql on $n failed" >&2; return 1; }
  if [ "$kind" = ref ]; then
    as_pg "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d digoal \
      -c "create extension pgq; create extension pgq_node; create extension londiste" >/dev/null \
      || return 1
    # pgqd as one would tune it for a cascade: 100 ms ticker loop, quick maintenance
    pgqd_start "interop$sc-$n" "$WORK" "initial_database = digoal" "database_list = digoal" \
      "ticker_period = 0.1" "maint_period = 2" "retry_period = 1" "check_period = 1" || return 1
    echo "$PGQD_PID" > "$WORK/pgqd-$n.started"
  fi
  echo "interop $sc: node $n ($kind) on port $PGPORT (bin $bin)"
  NODES="$NODES $n=$PGPORT"
  NODE_DIRS="$NODE_DIRS $n=$PGDATA_DIR"
  PORT_BASE=$((PGPORT + 1))
}

run_scenario() {  # SCENARIO NODE:KIND...
  local sc=$1; shift
  local t0 spec
  t0=$(date +%s)
  export WORK=$TOP/$sc
  mkdir -p "$WORK"; chmod 755 "$WORK"
  NODES="" NODE_DIRS=""
  for spec in "$@"; do
    start_node "$sc" "${spec%%:*}" "${spec#*:}" \
      || { echo "interop $sc: STEP 1 (clusters, seed) FAILED: node $spec" >&2; return 1; }
  done
  export NODES NODE_DIRS
  echo "interop $sc: clusters up and seeded in $(( $(date +%s) - t0 ))s"
  PG_BIN=$OUR_BIN REF_BIN=$REF_BIN "$PY" "$HERE/scenario.py" "$sc" || return 1
  echo "interop $sc: scenario passed in $(( $(date +%s) - t0 ))s"
  cluster_stop_all
  NODE_DIRS=""
}

T0=$(date +%s)
for sc in $SCENARIOS; do
  case $sc in
    A) run_scenario A root:ref branch:ours leaf:ours ;;
    B) run_scenario B root:ours branch1:ours leaf:ours branch2:ours ;;
    *) echo "interop: unknown scenario $sc" >&2; exit 2 ;;
  esac
done
echo "interop: all scenarios ($SCENARIOS) passed in $(( $(date +%s) - T0 ))s"
