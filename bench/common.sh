# bench/common.sh — what bench/bench.sh and bench/triggers.sh share (source it after
# `set -Eeuo pipefail`): the settings of both clusters, the two trees, the EXIT trap,
# the run header, and the two clusters "ref" (the original PgQ 3.5) and "ours".
#
# Durability stays at the defaults (fsync = on, full_page_writes = on: tests/lib/cluster.sh
# turns fsync off for tests, so it is set back here); only commits are asynchronous.
# Checkpoints are spaced out, and each benchmark forces one before every timed run.
CONF="shared_buffers = 256MB
fsync = on
synchronous_commit = off
max_wal_size = 4GB
checkpoint_timeout = 30min
max_connections = 20
${EXTRA_CONF:-}"

# REF_BIN: scripts/install-original.sh's default install location
REF_BIN=${REF_BIN:-/opt/pgq-reference/usr/lib/postgresql/15/bin}
OURS_BIN=${OURS_BIN:-/usr/lib/postgresql/15/bin}
REPEAT=${REPEAT:-2}
PY=/usr/bin/python3

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BENCH=$(basename "$0")
source "$REPO/tests/lib/cluster.sh"

WORK=$(mktemp -d /tmp/pgq-bench-work-XXXXXX)
bench_cleanup() {
  local rc=$?
  [ $rc -ne 0 ] && CLUSTER_LOG_ON_STOP=1
  cluster_stop_all
  if [ -n "${KEEP_WORK:-}" ]; then echo "$BENCH: work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
  exit $rc
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
trap '[ -n "${ERR_SEEN:-}" ] || { ERR_SEEN=1; echo "$BENCH: command failed: $BASH_COMMAND" >&2; }' ERR

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
T0=$(date +%s)

# bench_header TITLE LINE: the run's header (TITLE, commit, host, trees, settings, LINE)
bench_header() {
  local commit dirty
  commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "none (no commits yet)")
  dirty=$(git -C "$REPO" status --porcelain 2>/dev/null | head -c1)
  echo "$1  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit: $commit${dirty:+ (working tree has uncommitted changes)}"
  echo "host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "ref:  $REF_BIN"
  echo "ours: $OURS_BIN"
  echo "settings: $(echo "$CONF" | grep -v '^$' | paste -sd ';' | sed 's/;/; /g')"
  echo "$2"
}

# bench_clusters: start "ref" and "ours" with $CONF and create the extension in each
bench_clusters() {
  local side bin conf
  mapfile -t conf < <(echo "$CONF" | grep -v '^$')
  for side in ref ours; do
    bin=$REF_BIN; [ $side = ours ] && bin=$OURS_BIN
    log "initdb $side ($bin)"
    PG_BIN=$bin cluster_start "$side" "${conf[@]}"
    cluster_psql $side -c "create extension pgq" >/dev/null
    echo "$side: $(cluster_val $side "select 'PostgreSQL ' || current_setting('server_version') || ', pgq ' || pgq.version()") (port $(cluster_port $side))"
  done
}
