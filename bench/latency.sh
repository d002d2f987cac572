#!/bin/bash
# bench/latency.sh — end-to-end delivery latency: producer commit -> consumer holds
# the event, p50 / p99, at 100 and at 5,000 events/s, same machine, same run.
#
#   ours-default  this extension preloaded, default GUCs, default queue settings;
#                 consumer LISTENs on "pgq_<queue>" and works off batches on each
#                 notification (fallback poll every 1 s)
#   ours-lowlag   same, queue ticker_max_lag = $LOW_LAG (the recommended low-latency
#                 setting; pgq.ticker_wakeup on by default)
#   orig-default  the original PgQ 3.5 + pgqd at its default period (ticker_period 1 s),
#                 default queue settings; consumer polls next_batch every 10 ms
#   orig-lowlag   the same with queue ticker_max_lag = $LOW_LAG
#
# Each event carries time.time() of the producer, taken right before its COMMIT is sent;
# the consumer stamps each event when get_batch_events returns it. One producer process
# (up to 500 transactions/s, 1 event per transaction at 100/s, 10 at 5,000/s). Every
# measurement uses a fresh queue and checks that each event arrived exactly once.
#
# Env: SECS_SLOW (seconds at 100/s, 20), SECS_FAST (seconds at 5,000/s, 10),
#      RATES ("100 5000"), CASES (all four), LOW_LAG ('10 milliseconds'),
#      OURS_BIN, REF_BIN, PGQD, OUT (result dir). Run as root. ~3 minutes.
set -Eeuo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OURS_BIN=${OURS_BIN:-/usr/lib/postgresql/15/bin}
# REF_BIN: scripts/install-original.sh's default install location
REF_BIN=${REF_BIN:-/opt/pgq-reference/usr/lib/postgresql/15/bin}
SECS_SLOW=${SECS_SLOW:-20}
SECS_FAST=${SECS_FAST:-10}
RATES=${RATES:-100 5000}
CASES=${CASES:-ours-default ours-lowlag orig-default orig-lowlag}
LOW_LAG=${LOW_LAG:-10 milliseconds}
PY=/usr/bin/python3
TOOL=$REPO/bench/ticker_bench.py
OUT=${OUT:-$(mktemp -d /tmp/pgq-latency-XXXXXX)}
mkdir -p "$OUT"; chmod 777 "$OUT"

source "$REPO/tests/lib/cluster.sh"
cluster_init   # also ends pgqd and the consumers (cluster_bg)
trap 'exit 143' TERM INT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

COMMON=("shared_buffers = 128MB" "synchronous_commit = on")

log "starting ours ($OURS_BIN, preloaded, default pgq.* settings)"
PG_BIN=$OURS_BIN PORT_BASE=55600 cluster_start lat-ours "${COMMON[@]}" "shared_preload_libraries = 'pgq'"
OURS_DSN="host=$PGHOST port=$PGPORT user=postgres dbname=lat"
OURS_HOST=$PGHOST OURS_PORT=$PGPORT
psql -X -q -d postgres -c "create database lat"
psql -X -q -d lat -c "create extension pgq"

log "starting the original ($REF_BIN) + pgqd with its default periods"
PG_BIN=$REF_BIN PORT_BASE=55700 cluster_start lat-ref "${COMMON[@]}"
REF_DSN="host=$PGHOST port=$PGPORT user=postgres dbname=lat"
psql -X -q -d postgres -c "create database lat"
psql -X -q -d lat -c "create extension pgq"
pgqd_start lat-ref "$OUT" "initial_database = postgres"

run_one() {  # run_one CASE RATE -> prints a table row
  local case=$1 rate=$2 dsn mode q secs
  case $case in
    ours-*) dsn=$OURS_DSN; mode=listen ;;
    orig-*) dsn=$REF_DSN; mode=poll ;;
  esac
  q="l_${case//-/_}_$rate"
  secs=$SECS_SLOW; [ "$rate" -ge 1000 ] && secs=$SECS_FAST
  local h=${dsn#host=}; h=${h%% *}; local p=${dsn#*port=}; p=${p%% *}
  psql -X -q -h "$h" -p "$p" -d lat -c "select pgq.create_queue('$q')" >/dev/null
  if [[ $case == *lowlag ]]; then
    psql -X -q -h "$h" -p "$p" -d lat -c "select pgq.set_queue_config('$q', 'ticker_max_lag', '$LOW_LAG')" >/dev/null
  fi
  psql -X -q -h "$h" -p "$p" -d lat -c "select pgq.register_consumer('$q', 'c')" >/dev/null
  local stop=$OUT/$q.stop cnt=$OUT/$q.count res=$OUT/$q.lat
  rm -f "$stop" "$cnt"
  "$PY" "$TOOL" consume "$dsn" "$q" c "$mode" "$res" "$stop" > "$OUT/$q.consumer.log" 2>&1 & local cp=$!; cluster_bg $cp
  sleep 1
  "$PY" "$TOOL" produce "$dsn" "$q" "$rate" "$secs" 0 "$cnt" > "$OUT/$q.producer.log" 2>&1
  cp "$cnt" "$stop"
  wait "$cp" || true
  local n st
  n=$(cat "$cnt")
  st=$("$PY" "$TOOL" stats "$res")
  # n=.. p50=.. p90=.. p99=.. max=.. dup=.. missing=..
  eval "local $(echo "$st" | tr ' ' '\n' | sed 's/^/s_/' | tr '\n' ' ')"
  local got=$s_n note=""
  [ "$got" = "$n" ] && [ "$s_dup" = 0 ] && [ "$s_missing" = 0 ] || note="  (produced $n, received $got, dup $s_dup, missing $s_missing)"
  printf "| %-13s | %5s | %6s | %8s | %8s | %8s | %8s |%s\n" "$case" "$rate" "$got" "$s_p50" "$s_p90" "$s_p99" "$s_max" "$note"
  psql -X -q -h "$h" -p "$p" -d lat -c "select pgq.unregister_consumer('$q', 'c'); select pgq.drop_queue('$q')" >/dev/null 2>&1 || true
}

sleep 2
{
  echo "| case          | ev/s  | events | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |"
  echo "|---------------|------:|-------:|---------:|---------:|---------:|---------:|"
  for rate in $RATES; do
    for c in $CASES; do
      log "$c at $rate events/s"
      run_one "$c" "$rate"
    done
  done
} | tee "$OUT/table.md"
echo "ours: $(psql -X -Atq -h "$OURS_HOST" -p "$OURS_PORT" -d lat -c "select 'ticker ticks=' || ticks || ' restarts=' || restarts || ' last_error=' || coalesce(last_error, '-') from pgq.worker_status() where database = 'lat'")"
echo "raw data: $OUT"
