#!/bin/bash
# bench/cascade_latency.sh — how long a row committed on the root takes to reach a
# branch and a leaf under it, with in-server replay, at a steady rate (default 1,000
# rows/s): p50 / p90 / p99 / max per node. A benchmark, not a test.
#
# Three clusters (root -> branch -> leaf, set up with pgq_cascade SQL calls). The
# table digoal.lat (id, created default clock_timestamp()) is replicated; branch and
# leaf have one more column, arrived default clock_timestamp(), which the replay's
# INSERT (it names the common columns only) leaves to its default: arrived - created is
# the delay, on one machine, one clock. pgbench -R inserts one row per transaction.
#
# Env: RATE (rows/s, 1000), SECONDS_RUN (20), MAX_LAGS (root queue ticker_max_lag
# values to compare, "'3 seconds' '100 milliseconds' '20 milliseconds'"), PG_BIN.
set -Eeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export RATE=${RATE:-1000} SECONDS_RUN=${SECONDS_RUN:-20}
export MAX_LAGS=${MAX_LAGS:-"3 seconds|100 milliseconds|20 milliseconds"}
export LOAD_SECONDS=$SECONDS_RUN ROWS=0
source "$HERE/../tests/lib/nodes.sh"
nodes_main cascade_latency "$HERE/cascade_latency.py" "root branch leaf" "pgq.replay = on"
