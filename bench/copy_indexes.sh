#!/bin/bash
# bench/copy_indexes.sh — the in-server initial copy of a table with a primary key and
# two secondary indexes, with the indexes dropped before the COPY and rebuilt after it
# (the default for a truncated destination) against the same copy with them kept in
# place (add_table's skip_truncate, on an emptied destination). A benchmark, not a test.
#
# Two clusters (root -> leaf, pgq_cascade SQL calls, in-server replay). bench.t has ROWS
# rows (default 1,000,000) on the root: id bigint primary key, k int (random), email
# text (random md5, indexed), payload text (60 bytes). The leaf copies it RUNS times
# per mode (default 3) after one uncounted warm-up copy, modes interleaved (drop keep
# keep drop ...); between copies the table is removed on the leaf, truncated and
# checkpointed. The time is the replay
# worker's own "copied table" log line (the local transaction: COPY, index builds or
# row-by-row index maintenance, ANALYZE, commit). Settings as bench/common.sh (fsync on,
# 256 MB shared_buffers, asynchronous commit; maintenance_work_mem left at 64 MB).
#
# Env: ROWS, RUNS, PG_BIN.
set -Eeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export BENCH_ROWS=${ROWS:-1000000} RUNS=${RUNS:-3} ROWS=0
source "$HERE/../tests/lib/nodes.sh"
nodes_main copy_indexes "$HERE/copy_indexes.py" "root leaf" "pgq.replay = on" \
  "fsync = on" "shared_buffers = 256MB" "synchronous_commit = off" "max_wal_size = 4GB" \
  "checkpoint_timeout = 30min"
