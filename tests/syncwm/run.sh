#!/bin/bash
# tests/syncwm/run.sh — the sync_watermark node attribute under in-server replay: a
# root, two branches b1 and b2 that list each other in sync_watermark, and a leaf under
# b1 (four preloaded clusters, seed data on the root, pgq.replay = on, no londiste
# worker, no pgqd), administered with pgq_cascade SQL calls; scenario.py's docstring
# lists the steps. The watermark period is 1 s here (pgq.replay_watermark_period).
# Env: see tests/lib/nodes.sh.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../lib/nodes.sh"
nodes_main syncwm "$HERE/scenario.py" "root b1 b2 leaf" "pgq.replay = on" \
  "pgq.replay_watermark_period = '1s'"
