#!/bin/bash
# tests/sqladmin/run.sh — a cascade administered with SQL calls only (issue 12): no
# Python CLI, no londiste worker, no pgqd. Three preloaded clusters (root, branch,
# leaf; seed data on the root), then scenario.py (its docstring lists the steps).
# Env: see tests/lib/nodes.sh.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../lib/nodes.sh"
nodes_main sqladmin "$HERE/scenario.py" "root branch leaf" "pgq.replay = on"
