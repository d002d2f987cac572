#!/bin/bash
# tests/robust/run.sh — in-server replay under crashes: a root → branch → leaf cascade
# of this extension replicated by the `pgq replay` background workers alone (no
# `londiste worker`, no pgqd anywhere), while replay workers are SIGKILLed under load,
# the initial COPY is SIGKILLed half way or loses its provider, subscriber postmasters
# are SIGKILLed, and the leaf's provider is down for a minute. After each phase: not
# one row lost or doubled (scenario.py lists the phases and what is checked).
#
# tests/lib/nodes.sh starts one preloaded cluster per node (pgq.replay = on) and loads
# the seed workload's schema on each, its data ($ROWS rows) on the root only; the
# scenario adds digoal.bulk ($BULK_ROWS rows on the root) for the COPY phases. The
# replay workers copy everything.
#
# Env: PG_BIN (bin dir of the PostgreSQL that has this extension installed), ROWS (seed
# rows, default 20000), BULK_ROWS (rows of digoal.bulk, default 1000000), WORKER_KILLS,
# COPY_KILLS, COPY_CUTS, PM_KILLS (default 20, 20, 3, 20), OUTAGE_SECONDS (default 60),
# LOAD_RATE (pgbench tps on the root, default 200), RANDOM_SEED (the kill moments;
# printed), KEEP=1 keeps the work dir and the clusters' directories (stopped;
# server.log) on failure, KEEP=2 always.
# Everything started here — clusters, pgbench — is stopped on exit, also on failure
# (a cluster whose postmaster a failed step left down is started again first).
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x /usr/bin/londiste ] || { echo "robust: /usr/bin/londiste missing (Debian python3-londiste)" >&2; exit 1; }
source "$HERE/../lib/nodes.sh"
# restart_after_crash (the default, stated: a SIGKILLed backend must make the
# postmaster restart the cluster's backends)
nodes_main robust "$HERE/scenario.py" "root branch leaf" "pgq.replay = on" "restart_after_crash = on"
