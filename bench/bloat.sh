#!/bin/bash
# bench/bloat.sh — do pgq's hot metadata tables stay small with the in-server ticker?
#
# One preloaded cluster per case (run side by side): pgq.ticker_period = 100ms with
# the queue's ticker_max_lag = 0 / ticker_idle_period = 100ms and ticker_wakeup off,
# so the worker makes ~10 ticks/s; maintenance by the worker every $MAINT_PERIOD s,
# queue_rotation_period $ROTATION; a steady producer (pgbench, $RATE events/s) and a
# consumer that keeps the queue drained. Cases:
#   free  — nothing else running
#   held  — another session in the same database holds a transaction open
#           (BEGIN; SELECT txid_current(); idle) for the whole run
#   free-noav, held-noav — the same with autovacuum = off, so that only the worker's
#           VACUUM keeps the tables small
#   orig-free, orig-held — the original PgQ 3.5 ($REF_BIN) ticked and maintained by
#           pgqd with the same periods (ticker_period 0.1 s, maint_period, retry 10 s)
# Every $SAMPLE s: pg_total_relation_size and n_dead_tup of pgq.tick, pgq.subscription,
# pgq.queue, pgq.retry_queue and the queue's event tables. Prints start / max / end.
#
# Env: DURATION (s, default 600), SAMPLE (30), RATE (events/s, 200), MAINT_PERIOD (10),
#      ROTATION ('30 seconds'), CASES ("free held free-noav held-noav"), OUT (dir for raw samples; temp),
#      PG_BIN. Run as root (clusters run as `postgres`).
set -Eeuo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-600}
SAMPLE=${SAMPLE:-30}
RATE=${RATE:-200}
MAINT_PERIOD=${MAINT_PERIOD:-10}
ROTATION=${ROTATION:-30 seconds}
CASES=${CASES:-free held orig-free orig-held}
# REF_BIN: scripts/install-original.sh's default install location
REF_BIN=${REF_BIN:-/opt/pgq-reference/usr/lib/postgresql/15/bin}
PY=/usr/bin/python3
TOOL=$REPO/bench/ticker_bench.py
OUT=${OUT:-$(mktemp -d /tmp/pgq-bloat-XXXXXX)}
mkdir -p "$OUT"; chmod 777 "$OUT"

source "$REPO/tests/lib/cluster.sh"

SAMPLE_SQL="select c.relname, pg_total_relation_size(c.oid), coalesce(s.n_dead_tup, 0), coalesce(s.n_live_tup, 0)
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
  left join pg_stat_user_tables s on s.relid = c.oid
 where n.nspname = 'pgq' and c.relkind = 'r'
   and (c.relname in ('tick', 'subscription', 'queue', 'retry_queue') or c.relname like 'event\_1%')
 order by 1"

run_case() {
  local case=$1 port_base=$2
  cluster_init   # this subshell's cluster and its clients (cluster_bg)
  trap 'exit 143' TERM INT
  local extra="autovacuum = on"
  case $case in *noav*) extra="autovacuum = off";; esac
  if [[ $case == orig-* ]]; then
    PG_BIN=$REF_BIN PORT_BASE=$port_base cluster_start "bloat-$case" "$extra" \
      "track_counts = on" "stats_fetch_consistency = none"
  else
    PORT_BASE=$port_base cluster_start "bloat-$case" "$extra" \
      "shared_preload_libraries = 'pgq'" "pgq.ticker_period = 100ms" "pgq.ticker_wakeup = off" \
      "pgq.maint_period = ${MAINT_PERIOD}s" "pgq.retry_period = 10s" "pgq.launcher_naptime = 1s" \
      "track_counts = on" "stats_fetch_consistency = none"
  fi
  grep -h "^autovacuum" "$PGDATA_DIR/postgresql.conf" > "$OUT/$case.conf" || true
  local dsn="host=$PGHOST port=$PGPORT user=postgres dbname=bloat"
  psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "create database bloat"
  psql -X -q -v ON_ERROR_STOP=1 -d bloat <<SQL >/dev/null
create extension pgq;
select pgq.create_queue('bq');
select pgq.set_queue_config('bq', 'ticker_max_lag', '0');
select pgq.set_queue_config('bq', 'ticker_idle_period', '100 milliseconds');
select pgq.set_queue_config('bq', 'rotation_period', '$ROTATION');
select pgq.register_consumer('bq', 'c1');
SQL
  if [[ $case == orig-* ]]; then
    pgqd_start "bloat-$case" "$OUT" "initial_database = bloat" "database_list = bloat" \
      "ticker_period = 0.1" "maint_period = $MAINT_PERIOD" "retry_period = 10"
  fi
  echo "select pgq.insert_event('bq', 't', 'payload ' || g) from generate_series(1, 10) g;" > "$OUT/$case.pgbench"
  local log=$OUT/$case.samples
  : > "$log"
  "$PY" "$TOOL" drain "$dsn" bq c1 > "$OUT/$case.drain.log" 2>&1 & cluster_bg $!
  if [[ $case == *held* ]]; then
    "$PY" "$TOOL" hold "$dsn" > "$OUT/$case.hold.log" 2>&1 & cluster_bg $!
  fi
  local pgb
  pgbench -n -h "$PGHOST" -p "$PGPORT" -U postgres -R $((RATE / 10)) -T "$DURATION" \
    -f "$OUT/$case.pgbench" bloat > "$OUT/$case.pgbench.log" 2>&1 & pgb=$!; cluster_bg $pgb
  local t0 ticks0 t
  t0=$(date +%s)
  ticks0=$(psql -X -Atq -d bloat -c "select coalesce(max(tick_id),0) from pgq.tick")
  while :; do
    t=$(( $(date +%s) - t0 ))
    psql -X -Atq -F ' ' -d bloat -c "$SAMPLE_SQL" | sed "s/^/$t /" >> "$log"
    [ "$t" -ge "$DURATION" ] && break
    sleep $(( SAMPLE - ( ($(date +%s) - t0) % SAMPLE ) ))
  done
  local ticks1 rot
  wait "$pgb" || true
  ticks1=$(psql -X -Atq -d bloat -c "select max(tick_id) from pgq.tick")
  rot=$(psql -X -Atq -d bloat -c "select queue_cur_table from pgq.queue where queue_name = 'bq'")
  if [[ $case == orig-* ]]; then
    echo "ticker: pgqd (ticker_period 0.1 s, maint_period ${MAINT_PERIOD} s)" > "$OUT/$case.summary"
  else
    psql -X -Atq -d bloat -c "select 'worker: ticks=' || ticks || ' restarts=' || restarts || ' last_maint=' || coalesce(last_maint::text, '-') || ' last_error=' || coalesce(last_error, '-') from pgq.worker_status() where database = 'bloat'" > "$OUT/$case.summary"
  fi
  echo "tick rate: $(awk -v a="$ticks0" -v b="$ticks1" -v d="$DURATION" 'BEGIN { printf "%.1f ticks/s", (b - a) / d }'); cur_table at end: $rot" >> "$OUT/$case.summary"
  grep -h "tps\|number of transactions actually" "$OUT/$case.pgbench.log" | head -2 >> "$OUT/$case.summary" || true
}

report() {
  local case=$1
  echo "### case: $case  ($(grep -h autovacuum "$OUT/$case.conf" 2>/dev/null || true), DURATION=${DURATION}s, $RATE events/s, maint ${MAINT_PERIOD}s, rotation $ROTATION)"
  cat "$OUT/$case.summary" 2>/dev/null || true
  echo
  echo "| table | size start (kB) | size max (kB) | size end (kB) | dead start | dead max | dead end |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  awk '{ r=$2; if (!(r in s)) { s[r]=$3; d[r]=$4; order[++n]=r }
         if ($3 > ms[r]) ms[r]=$3; if ($4 > md[r]) md[r]=$4; e[r]=$3; ed[r]=$4 }
       END { for (i = 1; i <= n; i++) { r = order[i];
             printf "| pgq.%s | %d | %d | %d | %d | %d | %d |\n", r, s[r]/1024, ms[r]/1024, e[r]/1024, d[r], md[r], ed[r] } }' \
    "$OUT/$case.samples"
  echo
}

main_pids=()
stop_main() {
  local p
  for p in "${main_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${main_pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap stop_main EXIT
trap 'exit 143' TERM INT

base=55400
for c in $CASES; do
  ( run_case "$c" "$base" ) > "$OUT/$c.log" 2>&1 & main_pids+=($!)
  base=$((base + 100))
  sleep 2   # let the first cluster take its port
done
rc=0
for p in "${main_pids[@]}"; do wait "$p" || rc=1; done
main_pids=()
echo "raw samples: $OUT"
for c in $CASES; do
  [ -s "$OUT/$c.samples" ] || { echo "case $c produced no samples:"; cat "$OUT/$c.log"; rc=1; continue; }
  report "$c"
done
exit $rc
