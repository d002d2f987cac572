#!/bin/bash
# tests/security/run.sh — the exploits of issue 8 against a preloaded cluster
# (scripts/test.sh security runs it). Every scenario must fail to escalate or to block;
# the scenarios themselves are in scenarios.py (one function each, listed in its header).
#
# Env: PG_BIN (the PostgreSQL 15 tree to test), ONLY="1a 3c ..." to run a subset,
# KEEP_CLUSTERS=1 keeps the data directory.
set -Euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
source "$REPO/tests/lib/cluster.sh"

rc=1
cleanup() {
  if [ "$rc" != 0 ] && [ -f "${PGHOST:-/nonexistent}/server.log" ]; then
    echo "---- last 40 lines of the server log"; tail -40 "$PGHOST/server.log"
  fi
  cluster_stop_all
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# short periods: ticks every 100 ms, maintenance (rotation) and retry every second;
# log_min_messages = warning (the default) logs WARNINGs and LOGs both ("log" would
# drop the WARNINGs: LOG ranks above ERROR there)
PRELOAD=("shared_preload_libraries = 'pgq'" "pgq.ticker_period = 100ms" "pgq.maint_period = 1s"
         "pgq.retry_period = 1s" "pgq.launcher_naptime = 1s" "max_worker_processes = 40"
         "max_connections = 80" "log_min_messages = warning" "log_line_prefix = '%m [%p] %q%u@%d '")

echo "[$(date +%H:%M:%S)] starting cluster"
if ! cluster_start sec "${PRELOAD[@]}"; then
  echo "FAIL: could not start the preloaded cluster"; exit 1
fi
/usr/bin/python3 "$HERE/scenarios.py" "$PGHOST" "$PGPORT" "$PGHOST/server.log"
rc=$?
exit $rc
