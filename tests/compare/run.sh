#!/bin/bash
# tests/compare/run.sh — pgq_cascade.compare and pgq_cascade.repair (docs/admin.md,
# "Compare and repair") on a root → branch → leaf cascade of this extension replicated
# in-server (no londiste worker, no pgqd).
#
# Three preloaded clusters (tests/lib/nodes.sh: the seed workload's schema on each, its
# data on the root only). scenario.py adds a table digoal.big of $BIG_ROWS rows (default
# 1,000,000; several column types, NULLs, quotes) on the root, sets the cascade up with
# the Python `londiste` CLI and checks (see its step list): compare equal on branch and
# leaf under load on the root, the numbers of `londiste compare`, a row changed by hand
# on the leaf found and repaired, the hold of a repair that applied lasting until its
# transaction ends, cancelled compares letting go, a writer on the root's 1M-row table
# never blocked by a compare (compare time, the replay's standing time and the writer's
# longest commit printed), bad input.
#
# Env: PG_BIN (bin dir of the PostgreSQL that has this extension installed), ROWS (seed
# rows, default 20000), BIG_ROWS, LOAD_SECONDS (default 8), KEEP=1 keeps the work dir
# and the clusters' directories (stopped) on failure, KEEP=2 always. Everything started
# here — clusters, pgbench, writers — is stopped on exit, also on failure.
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x /usr/bin/londiste ] || { echo "compare: /usr/bin/londiste missing (Debian python3-londiste)" >&2; exit 1; }
export BIG_ROWS=${BIG_ROWS:-1000000}
source "$HERE/../lib/nodes.sh"
nodes_main compare "$HERE/scenario.py" "root branch leaf" "pgq.replay = on" "shared_buffers = '128MB'"
