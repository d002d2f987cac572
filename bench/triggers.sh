#!/bin/bash
# bench/triggers.sh — cost of the row-capture triggers, this extension vs the original.
#
# Same conventions as bench/bench.sh: two throw-away clusters with identical settings,
# "ref" from $REF_BIN (the original PgQ 3.5, C triggers) and "ours" from $OURS_BIN;
# each measurement runs interleaved ref, ours, ours, ref, $REPEAT times and the best
# run per side counts. Times are reported as ratios to the same side's no-trigger time
# (lower is better), ours next to the original's.
#
#   insert  INSERT ... SELECT of $ROWS rows into a user_info-shaped table
#           (int primary key, 5 text columns, date, numeric, two timestamps)
#   update  UPDATE of all $ROWS rows (one column changes)
# for: no trigger, pgq.logutriga, pgq.sqltriga, pgq.jsontriga (AFTER INSERT OR
# UPDATE OR DELETE FOR EACH ROW, as londiste installs them), and "floor": no trigger,
# but the same statement also writes one row per changed row, with a constant
# logutriga-sized payload, into a table shaped like a pgq event table (same columns,
# ev_txid index). That is the physical cost of storing the events alone, without
# any trigger machinery or encoding: no capture trigger can be cheaper.
#
# Env: REF_BIN, OURS_BIN, REPEAT (2), ROWS (200000), VARIANTS, EXTRA_CONF.
# Run as root (clusters run as `postgres`). Not a test: it asserts nothing about speed,
# but refuses to report a run that produced the wrong number of events.
set -Eeuo pipefail
ROWS=${ROWS:-200000}
VARIANTS=${VARIANTS:-none floor logutriga sqltriga jsontriga}
source "$(dirname "$0")/common.sh"

bench_header "pgq trigger benchmark" "REPEAT=$REPEAT ROWS=$ROWS"
bench_clusters

# prepare SIDE VARIANT: fresh table (+ trigger) and queue
prepare() {
  local side=$1 v=$2 trig=""
  case $v in none | floor) ;; *) trig="create trigger cap after insert or update or delete on user_info
      for each row execute function pgq.$v('bq');" ;; esac
  cluster_psql "$side" -o /dev/null <<SQL
select pgq.drop_queue(queue_name, true) from pgq.queue where queue_name = 'bq';
select pgq.create_queue('bq');
drop table if exists user_info;
create table user_info (
    userid int primary key, engname text, cnname text, occupation text, birthday date,
    signname text, email text, qq numeric, crt_time timestamp, mod_time timestamp);
drop table if exists ev_floor;
create table ev_floor (like pgq.event_template);
create index on ev_floor (ev_txid);
$trig
checkpoint;
SQL
}

# timed SIDE SQL: run SQL once, print its duration in ms
timed() {
  local side=$1 sql=$2 out
  out=$(printf '\\timing on\n%s\n' "$sql" | cluster_psql "$side" -o /dev/null 2>&1) || { echo "$out" >&2; return 1; }
  echo "$out" | awk '/^Time: / {print $2; found=1} END {exit !found}'
}

events() { cluster_val "$1" "select count(*) from pgq.event_template"; }

INSERT_SQL="insert into user_info select g, 'digoal.zhou', '德哥', 'DBA', date '1970-01-01',
  E'公益是一辈子的事, I\\'m Digoal.Zhou, Just do it!', 'digoal@126.com', 276732431,
  timestamp '2024-01-01 12:00:00' + g * interval '1 second', null from generate_series(1, $ROWS) g;"
UPDATE_SQL="update user_info set mod_time = timestamp '2024-06-01 00:00:00';"
# what logutriga sends for one row of this table (same length as the real payloads)
PAYLOAD="userid=100000&engname=digoal.zhou&cnname=%e5%be%b7%e5%93%a5&occupation=DBA&birthday=1970-01-01&signname=%e5%85%ac%e7%9b%8a%e6%98%af%e4%b8%80%e8%be%88%e5%ad%90%e7%9a%84%e4%ba%8b%2c+I%27m+Digoal.Zhou%2c+Just+do+it%21&email=digoal%40126.com&qq=276732431&crt_time=2024-01-02+15%3a46%3a40&mod_time"
floor_sql() {
  echo "with u as (${1%;} returning userid)
    insert into ev_floor (ev_id, ev_time, ev_txid, ev_type, ev_data, ev_extra1)
    select userid, now(), txid_current(), 'I:userid', '$PAYLOAD', 'public.user_info' from u;"
}

# run SIDE VARIANT: prints "insert_ms update_ms"
run() {
  local side=$1 v=$2 ti tu n want ins=$INSERT_SQL upd=$UPDATE_SQL
  [ "$v" = floor ] && { ins=$(floor_sql "$INSERT_SQL"); upd=$(floor_sql "$UPDATE_SQL"); }
  prepare "$side" "$v"
  ti=$(timed "$side" "$ins")
  want=$ROWS; case $v in none | floor) want=0 ;; esac
  n=$(events "$side"); [ "$n" = "$want" ] || { echo "$side $v: $n events after insert, expected $want" >&2; return 1; }
  [ "$v" != floor ] || [ "$(cluster_val "$side" "select count(*) from ev_floor")" = "$ROWS" ] \
    || { echo "$side floor: wrong row count in ev_floor" >&2; return 1; }
  cluster_psql "$side" -o /dev/null -c "vacuum analyze user_info" -c checkpoint
  tu=$(timed "$side" "$upd")
  want=$((2 * ROWS)); case $v in none | floor) want=0 ;; esac
  n=$(events "$side"); [ "$n" = "$want" ] || { echo "$side $v: $n events after update, expected $want" >&2; return 1; }
  echo "$ti $tu"
}

declare -A BEST RUNS
for ((r = 1; r <= REPEAT; r++)); do
  for v in $VARIANTS; do
    for side in ref ours ours ref; do
      read -r ti tu < <(run "$side" "$v")
      log "  round $r $v $side: insert ${ti} ms, update ${tu} ms"
      for op in insert update; do
        t=$ti; [ $op = update ] && t=$tu
        RUNS[$v,$op,$side]="${RUNS[$v,$op,$side]:-}${RUNS[$v,$op,$side]:+ }$t"
        if [ -z "${BEST[$v,$op,$side]:-}" ] || awk -v a="$t" -v b="${BEST[$v,$op,$side]}" 'BEGIN {exit !(a < b)}'; then
          BEST[$v,$op,$side]=$t
        fi
      done
    done
  done
done

echo
echo "best of $((2 * REPEAT)) runs per side, $ROWS rows; ratio = time / same side's no-trigger time (lower is better)"
printf '%-7s %-10s %12s %8s %12s %8s\n' op trigger "ref ms" "ref x" "ours ms" "ours x"
for op in insert update; do
  for v in $VARIANTS; do
    printf '%-7s %-10s' "$op" "$v"
    for side in ref ours; do
      base=${BEST[none,$op,$side]:-}
      ratio=$(awk -v t="${BEST[$v,$op,$side]}" -v b="${base:-0}" 'BEGIN {if (b > 0) printf "%.2f", t / b; else print "-"}')
      printf ' %12.1f %8s' "${BEST[$v,$op,$side]}" "$ratio"
    done
    echo
  done
done
echo
echo "all runs (ms, in order):"
for op in insert update; do
  for v in $VARIANTS; do
    echo "  $op $v ref:  ${RUNS[$v,$op,ref]}"
    echo "  $op $v ours: ${RUNS[$v,$op,ours]}"
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); total time $(( $(date +%s) - T0 )) s"
