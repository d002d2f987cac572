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
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x /usr/bin/londiste ] || { echo "replay: /usr/bin/londiste missing (Debian python3-londiste)" >&2; exit 1; }
source "$HERE/../lib/nodes.sh"
nodes_main replay "$HERE/scenario.py" "root branch leaf" "pgq.replay = on"
