#!/bin/bash
# bench/bench.sh — this extension vs the original PgQ 3.5, same machine, same run.
#
# Starts two throw-away clusters with identical settings: "ref" from $REF_BIN (the
# original, see scripts/install-original.sh) and "ours" from $OURS_BIN (the system
# tree with this project installed); both run `CREATE EXTENSION pgq`. Each workload runs
# interleaved ref, ours, ours, ref, $REPEAT times; the best run per side is reported with
# the ratio ours/ref in throughput terms (> 1 means ours is faster). Not a test: it
# asserts nothing about speed, it only refuses to report a side that did the wrong work.
#
#   a1  pgq.insert_event, 1 event per transaction, $CLIENTS pgbench clients     events/s
#   a2  pgq.insert_event, 1,000 events per transaction, $CLIENTS clients        events/s
#   b   drain: $DRAIN_TX ticked transactions x 1,000 events, one consumer loops
#       next_batch / get_batch_events (all rows fetched by the client) / finish_batch
#                                                                                events/s
#   c   pgq.ticker() with 100 queues, 5 of them holding a few events,
#       $TICKER_CALLS calls, one per transaction                                  calls/s
#
# Env: REF_BIN, OURS_BIN, REPEAT (2), DURATION (pgbench seconds per a-run, 10), CLIENTS (2),
#      DRAIN_TX (1000), TICKER_CALLS (3000), WORKLOADS ("a1 a2 b c"), EXTRA_CONF.
# Default run: ~10 minutes on 2 cores. Run it as root (clusters run as `postgres`).
set -Eeuo pipefail
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-2}
DRAIN_TX=${DRAIN_TX:-1000}
TICKER_CALLS=${TICKER_CALLS:-3000}
WORKLOADS=${WORKLOADS:-a1 a2 b c}
source "$(dirname "$0")/common.sh"

bench_header "pgq benchmark" "REPEAT=$REPEAT DURATION=${DURATION}s CLIENTS=$CLIENTS DRAIN_TX=$DRAIN_TX TICKER_CALLS=$TICKER_CALLS"
bench_clusters

# bq: queue for the insert workloads, recreated before every run
reset_bq() {
  cluster_psql "$1" -o /dev/null <<'SQL'
select pgq.drop_queue(queue_name, true) from pgq.queue where queue_name = 'bq';
select pgq.create_queue('bq');
SQL
}
checkpoint() { cluster_psql "$1" -c checkpoint >/dev/null; }

# pgbench_tps SIDE ARGS...: run pgbench, print the tps figure
pgbench_tps() {
  local side=$1 out; shift
  out=$(cluster_pgbench "$side" -n -M prepared "$@" 2>&1) || { echo "$out" >&2; return 1; }
  echo "$out" | awk '/^tps = / {print $3; found=1} END {exit !found}' \
    || { echo "$out" >&2; return 1; }
}

# ---- workloads: setup_X SIDE (untimed, once per cluster); run_X SIDE prints the result --
cat >"$WORK/a1.sql" <<'SQL'
\set id random(1, 10000000)
select pgq.insert_event('bq', 'insert', 'id=' || :id || '&name=user_' || :id || '&email=user' || :id || '%40example.com&ts=2024-01-01+12%3A00%3A00');
SQL
cat >"$WORK/a2.sql" <<'SQL'
select count(pgq.insert_event('bq', 'insert', 'id=' || g || '&name=user_' || g || '&email=user' || g || '%40example.com&ts=2024-01-01+12%3A00%3A00')) from generate_series(1, 1000) g;
SQL

setup_a1() { :; }
run_a1() {
  reset_bq "$1"; checkpoint "$1"
  pgbench_tps "$1" -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION" -f "$WORK/a1.sql"
}
setup_a2() { :; }
run_a2() {
  local tps
  reset_bq "$1"; checkpoint "$1"
  tps=$(pgbench_tps "$1" -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION" -f "$WORK/a2.sql")
  awk -v t="$tps" 'BEGIN {printf "%.1f\n", t * 1000}'
}

# b: one backlog per cluster, one consumer per timed run (all registered before
# producing, so every run drains the same DRAIN_TX batches of 1,000 events).
setup_b() {
  local side=$1 i
  log "  $side: producing $DRAIN_TX x 1000 events for the drain workload"
  cluster_psql "$side" -o /dev/null <<'SQL'
select pgq.drop_queue(queue_name, true) from pgq.queue where queue_name = 'bq';
select pgq.create_queue('dq');
SQL
  for ((i = 1; i <= 2 * REPEAT; i++)); do
    cluster_val "$side" "select pgq.register_consumer('dq', 'drain$i')" >/dev/null
  done
  for ((i = 1; i <= DRAIN_TX; i++)); do
    echo "select count(pgq.insert_event('dq', 'U', 'id=' || g || '&name=user_' || g || '&email=user' || g || '%40example.com&score=' || (g::int8 * 7919) % 1000, 'public.users', null, null, null)) from generate_series(($i - 1) * 1000 + 1, $i * 1000) g;"
    echo "select pgq.ticker();"
  done | cluster_psql "$side" -o /dev/null
  cluster_psql "$side" -c "vacuum analyze" >/dev/null
}
B_RUN_ref=0; B_RUN_ours=0
run_b() {
  local side=$1 v n out
  v="B_RUN_$side"; n=$(( ${!v} + 1 )); printf -v "$v" %s "$n"
  checkpoint "$side"
  out=$($PY "$HERE/ticker_bench.py" drain "$(cluster_connstr "$side")" dq "drain$n" --until-empty)
  log "    $side drain$n: $out"
  case "$out" in
    "events=$((DRAIN_TX * 1000)) batches=$DRAIN_TX "*) ;;
    "events=$((DRAIN_TX * 1000)) "*)
       log "    WARNING: $side did not cut the backlog into $DRAIN_TX batches; results not comparable" ;;
    *) echo "drain on $side returned the wrong number of events: $out (expected $((DRAIN_TX * 1000)))" >&2
       return 1 ;;
  esac
  echo "${out##*events_per_sec=}"
}

# c: 100 queues, before each run 3 fresh events in each of 5 of them
setup_c() {
  cluster_psql "$1" -o /dev/null <<'SQL'
select pgq.drop_queue(queue_name, true) from pgq.queue;
select pgq.create_queue('tq' || lpad(i::text, 3, '0')) from generate_series(1, 100) i;
SQL
}
run_c() {
  cluster_psql "$1" -o /dev/null -c "select pgq.insert_event('tq' || lpad((i * 20)::text, 3, '0'), 't', 'x') from generate_series(1, 5) i, generate_series(1, 3)"
  checkpoint "$1"
  echo 'select pgq.ticker();' >"$WORK/c.sql"
  pgbench_tps "$1" -c 1 -t "$TICKER_CALLS" -f "$WORK/c.sql"
}

# ---- run -----------------------------------------------------------------------------
declare -A BEST RUNS UNIT=([a1]=events/s [a2]=events/s [b]=events/s [c]=calls/s)
declare -A DESC=([a1]="insert_event, 1 ev/tx, $CLIENTS clients" [a2]="insert_event, 1000 ev/tx, $CLIENTS clients"
                 [b]="drain ${DRAIN_TX}k events, 1 consumer" [c]="ticker(), 100 queues")
for wl in $WORKLOADS; do
  [ -n "${UNIT[$wl]:-}" ] || { echo "unknown workload $wl" >&2; exit 2; }
  log "workload $wl: ${DESC[$wl]}"
  setup_$wl ref; setup_$wl ours
  for ((r = 1; r <= REPEAT; r++)); do
    for side in ref ours ours ref; do
      run_$wl $side >"$WORK/result"   # not $(...): run_b keeps state in this shell
      v=$(<"$WORK/result")
      log "  $wl $side: $v ${UNIT[$wl]}"
      RUNS[$wl,$side]="${RUNS[$wl,$side]:-}${RUNS[$wl,$side]:+ }$v"
      if [ -z "${BEST[$wl,$side]:-}" ] || awk -v a="$v" -v b="${BEST[$wl,$side]}" 'BEGIN {exit !(a > b)}'; then
        BEST[$wl,$side]=$v
      fi
    done
  done
done

# ---- report --------------------------------------------------------------------------
echo
# spread = (best - worst) / best of one side's runs, the larger of the two sides: a
# ratio closer to 1 than the spread means "no measurable difference".
printf '%-8s %-36s %14s %14s %7s %7s  %s\n' workload "" "ref best" "ours best" "ratio" "spread" unit
for wl in $WORKLOADS; do
  ratio=$(awk -v o="${BEST[$wl,ours]}" -v r="${BEST[$wl,ref]}" 'BEGIN {printf "%.2f", o / r}')
  spread=$(echo "${RUNS[$wl,ref]}|${RUNS[$wl,ours]}" | awk -F'|' '{
    m = 0
    for (s = 1; s <= 2; s++) {
      n = split($s, v, " "); lo = hi = v[1]
      for (i = 2; i <= n; i++) { if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i] }
      if (hi > 0 && (hi - lo) / hi > m) m = (hi - lo) / hi
    }
    printf "%d%%", m * 100 + 0.5 }')
  printf '%-8s %-36s %14.1f %14.1f %7s %7s  %s\n' "$wl" "${DESC[$wl]}" "${BEST[$wl,ref]}" "${BEST[$wl,ours]}" "$ratio" "$spread" "${UNIT[$wl]}"
done
echo
echo "all runs (in order):"
for wl in $WORKLOADS; do
  echo "  $wl ref:  ${RUNS[$wl,ref]}"
  echo "  $wl ours: ${RUNS[$wl,ours]}"
done
echo "ratio = ours/ref throughput (> 1: ours faster); spread = worst run's shortfall from the best"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); total time $(( $(date +%s) - T0 )) s"
