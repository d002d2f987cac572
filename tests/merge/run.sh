#!/bin/bash
# tests/merge/run.sh — londiste merge setups: two part roots (part1, part2; queues
# part1_q, part2_q, disjoint rows of the same tables), a combined root full1 (queue
# `combined`) with a merge leaf of each part queue (create-leaf --merge=combined), and a
# combined branch full2 under full1 with merge leaves of both part queues too. Four
# preloaded clusters, the seed workload's schema on each; scenario.py's docstring lists
# the steps (initial copy of both parts into one table, load on both parts, positions of
# the merge leaves, kill -9 of a merge leaf's replay under load, compare).
#
# MERGE_REPLAY=server (the default): pgq.replay = on, the in-server replay workers do
# all replication; no londiste worker and no pgqd may run. MERGE_REPLAY=python:
# pgq.replay = off and one Python `londiste <ini> worker` per node and queue (the
# in-server ticker ticks, no pgqd).
# Env: see tests/lib/nodes.sh; MERGE_KILLS (kills in the kill step, default 4).
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x /usr/bin/londiste ] || { echo "merge: /usr/bin/londiste missing (Debian python3-londiste)" >&2; exit 1; }
export MERGE_REPLAY=${MERGE_REPLAY:-server}
case "$MERGE_REPLAY" in
  server) replay=on ;;
  python) replay=off ;;
  *) echo "merge: MERGE_REPLAY must be server or python, not '$MERGE_REPLAY'" >&2; exit 2 ;;
esac
source "$HERE/../lib/nodes.sh"
nodes_main merge "$HERE/scenario.py" "part1 part2 full1 full2" "pgq.replay = $replay"
