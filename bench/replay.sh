#!/bin/bash
# bench/replay.sh — replication of the seed workload (tests/workload), side by side:
#
#   (a) ours:   this extension's in-server replay, root -> branch -> leaf (three
#               clusters; set up with the Python londiste CLI; no londiste worker, no
#               pgqd)
#   (d) native: PostgreSQL 15 logical replication, root -> subscriber (two clusters)
#
# Each run starts fresh clusters, seeds the root (ROWS users), subscribes the four
# workload tables (plus a marker table), runs the pgbench login/logout load on the root
# for LOAD_SECONDS with 2 clients while a marker row is inserted every 50 ms, and
# measures:
#   sync      initial sync of all tables (user_info + user_session hold ROWS rows each):
#             seconds from subscribing until every table is ready, per subscriber
#   tps       root transactions per second under replication
#   apply     rows applied per second on the last node during the load (n_tup_ins +
#             n_tup_upd + n_tup_del of the workload tables)
#   drain     seconds from the end of the load until the last node has the root's last
#             login record
#   delay     marker rows: commit on the root -> arrival on the last node (a trigger
#             there that also fires during replay stamps the arrival), p50 / p99 in ms
# Runs are interleaved A-B-B-A (REPEAT times); the best run of each side is reported,
# with the ratio ours / native.
#
# Env: ROWS (200000), LOAD_SECONDS (20), REPEAT (1 = A-B-B-A once), OURS_BIN (the tree
# with this extension), MAX_LAG (ticker_max_lag of our root queue, default 20ms).
set -Eeuo pipefail
ROWS=${ROWS:-200000}
LOAD_SECONDS=${LOAD_SECONDS:-20}
MAX_LAG=${MAX_LAG:-20ms}
REPEAT=${REPEAT:-1}
EXTRA_CONF="max_worker_processes = 16
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10"
CLUSTER_DB=digoal
source "$(dirname "$0")/common.sh"
LONDISTE=/usr/bin/londiste
[ -x "$LONDISTE" ] || { echo "replay.sh: $LONDISTE missing (Debian python3-londiste)" >&2; exit 1; }
WL=$REPO/tests/workload
TABLES="digoal.user_info digoal.user_session digoal.user_login_rec digoal.user_logout_rec digoal.bench_marker"
DB=digoal
mapfile -t BASECONF < <(echo "$CONF" | grep -v '^$')

sql() { cluster_psql "$1" -At -c "$2"; }

seed() {  # NAME ROWS
  as_pg "$(cluster_bin $1)/createdb" -h "$(cluster_host $1)" -p "$(cluster_port $1)" $DB
  cluster_psql "$1" -v rows="$2" -f "$WL/seed.sql" >/dev/null
  sql "$1" "create table digoal.bench_marker (id bigserial primary key, sent timestamptz not null,
              arrived timestamptz);
            create function digoal.bench_arrived() returns trigger language plpgsql as
              \$\$ begin new.arrived := clock_timestamp(); return new; end \$\$;
            create trigger bench_arrived before insert on digoal.bench_marker
              for each row execute function digoal.bench_arrived();
            alter table digoal.bench_marker enable always trigger bench_arrived;" >/dev/null
}

now_s() { date +%s.%N; }

# wait until SQL on NAME returns t (at most 300 s); prints the seconds waited
wait_true() {  # NAME SQL
  local t0; t0=$(now_s)
  for _ in $(seq 6000); do
    [ "$(sql "$1" "$2" 2>/dev/null)" = t ] && { echo "$(now_s) - $t0" | bc; return 0; }
    sleep 0.05
  done
  echo "replay.sh: timed out waiting on $1 for: $2" >&2; return 1
}

applied() { sql "$1" "select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) from pg_stat_user_tables where schemaname = 'digoal' and relname <> 'bench_marker'"; }

# the load, a marker every 50 ms during it; sets TPS
load() {  # ROOT LAST
  local out=$WORK/pgbench.out
  cluster_pgbench "$1" -n -f "$WL/login.pgbench" -f "$WL/logout.pgbench" -c 2 -j 2 -T "$LOAD_SECONDS" > "$out" 2>&1 &
  local pb=$!
  while kill -0 $pb 2>/dev/null; do
    sql "$1" "insert into digoal.bench_marker (sent) values (clock_timestamp())" >/dev/null
    sleep 0.05
  done
  wait $pb
  TPS=$(awk '/^tps = / {print $3; exit}' "$out")
}

# measurements common to both sides after the load: DRAIN, APPLY, P50, P99
after_load() {  # ROOT LAST APPLIED_BEFORE T_LOAD_START
  local last_id t_end
  t_end=$(now_s)
  last_id=$(sql "$1" "select max(id) from digoal.user_login_rec")
  DRAIN=$(wait_true "$2" "select coalesce(max(id), 0) >= $last_id from digoal.user_login_rec")
  DRAIN=$(echo "$(now_s) - $t_end" | bc)
  wait_true "$2" "select count(*) = $(sql "$1" "select count(*) from digoal.bench_marker") from digoal.bench_marker" >/dev/null
  APPLY=$(echo "($(applied "$2") - $3) / ($t_end - $4)" | bc)
  read -r P50 P99 < <(sql "$2" "select round(percentile_cont(0.5) within group (order by ms)::numeric, 1),
       round(percentile_cont(0.99) within group (order by ms)::numeric, 1)
      from (select extract(epoch from arrived - sent) * 1000 as ms from digoal.bench_marker) m" | tr '|' ' ')
}

run_ours() {
  local n
  for n in root branch leaf; do
    PG_BIN=$OURS_BIN cluster_start "ours-$n" "${BASECONF[@]}" "shared_preload_libraries = 'pgq'" \
      "pgq.ticker_period = '100ms'" "pgq.launcher_naptime = '1s'"
    rows=0; [ $n = root ] && rows=$ROWS
    seed "ours-$n" $rows
    sql "ours-$n" "create extension pgq" >/dev/null
    cat > "$WORK/$n.ini" <<EOF
[londiste]
job_name = bench_$n
db = $(cluster_connstr "ours-$n" $DB)
queue_name = replika
logfile = $WORK/$n.log
pidfile = $WORK/$n.pid
EOF
  done
  L() { "$LONDISTE" "$WORK/$1.ini" "${@:2}" >> "$WORK/londiste.out" 2>&1; }
  L root create-root root "$(cluster_connstr ours-root $DB)"
  sql ours-root "select pgq.set_queue_config('replika', 'ticker_max_lag', '$MAX_LAG')" >/dev/null
  L root add-table $TABLES
  L root add-seq digoal.user_login_rec_id_seq digoal.user_logout_rec_id_seq
  L branch create-branch branch "$(cluster_connstr ours-branch $DB)" --provider="$(cluster_connstr ours-root $DB)"
  local t0; t0=$(now_s)
  L branch add-table $TABLES
  wait_true ours-branch "select bool_and(merge_state = 'ok') from londiste.get_table_list('replika') where local" >/dev/null
  SYNC_B=$(echo "$(now_s) - $t0" | bc)
  L leaf create-leaf leaf "$(cluster_connstr ours-leaf $DB)" --provider="$(cluster_connstr ours-branch $DB)"
  t0=$(now_s)
  L leaf add-table $TABLES
  wait_true ours-leaf "select bool_and(merge_state = 'ok') from londiste.get_table_list('replika') where local" >/dev/null
  SYNC_L=$(echo "$(now_s) - $t0" | bc)
  local before tl; before=$(applied ours-leaf); tl=$(now_s)
  load ours-root ours-leaf
  after_load ours-root ours-leaf "$before" "$tl"
  # the data on every node equals the root's
  local q="select count(*) || ':' || coalesce(sum(hashtext(t::text)::bigint), 0) from digoal.user_session t"
  local r; r=$(sql ours-root "$q")
  [ "$(sql ours-branch "$q")" = "$r" ] && [ "$(sql ours-leaf "$q")" = "$r" ] \
    || { echo "replay.sh: ours: user_session differs after the drain" >&2; return 1; }
  cluster_stop_all
}

run_native() {
  PG_BIN=$OURS_BIN cluster_start native-root "${BASECONF[@]}"
  seed native-root "$ROWS"
  PG_BIN=$OURS_BIN cluster_start native-sub "${BASECONF[@]}"
  seed native-sub 0
  sql native-root "create publication bench for table ${TABLES// /, }" >/dev/null
  local t0; t0=$(now_s)
  sql native-sub "create subscription bench connection '$(cluster_connstr native-root $DB)' publication bench" >/dev/null
  wait_true native-sub "select bool_and(srsubstate = 'r') and count(*) = 5 from pg_subscription_rel" >/dev/null
  SYNC_B=$(echo "$(now_s) - $t0" | bc); SYNC_L=-
  local before tl; before=$(applied native-sub); tl=$(now_s)
  load native-root native-sub
  after_load native-root native-sub "$before" "$tl"
  local q="select count(*) || ':' || coalesce(sum(hashtext(t::text)::bigint), 0) from digoal.user_session t"
  [ "$(sql native-sub "$q")" = "$(sql native-root "$q")" ] \
    || { echo "replay.sh: native: user_session differs after the drain" >&2; return 1; }
  cluster_stop_all
}

bench_header "bench/replay.sh: seed-workload replication, in-server replay vs native logical replication" \
  "ROWS=$ROWS LOAD_SECONDS=$LOAD_SECONDS (pgbench login+logout, 2 clients) MAX_LAG=$MAX_LAG REPEAT=$REPEAT"
printf '%-7s %4s %9s %9s %9s %9s %8s %8s %8s\n' side run sync_b_s sync_l_s root_tps apply_r/s drain_s p50_ms p99_ms
RESULTS=()
run=0
for _ in $(seq "$REPEAT"); do
  for side in ours native native ours; do
    run=$((run + 1))
    log "run $run: $side"
    "run_$side"
    printf '%-7s %4s %9s %9s %9s %9s %8s %8s %8s\n' $side $run "$SYNC_B" "$SYNC_L" "$TPS" "$APPLY" "$DRAIN" "$P50" "$P99"
    RESULTS+=("$side $SYNC_B $SYNC_L $TPS $APPLY $DRAIN $P50 $P99")
  done
done
# best of each side: highest tps; the ratio line compares the best runs
best() { printf '%s\n' "${RESULTS[@]}" | awk -v s=$1 '$1 == s' | sort -k4 -g -r | head -1; }
echo
echo "best run of each side (by root tps):"
printf '%-7s %9s %9s %9s %9s %8s %8s %8s\n' side sync_b_s sync_l_s root_tps apply_r/s drain_s p50_ms p99_ms
for s in ours native; do
  best $s | awk '{printf "%-7s %9s %9s %9s %9s %8s %8s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8}'
done
read -r _ ob _ ot oa od o50 o99 < <(best ours)
read -r _ nb _ nt na nd n50 n99 < <(best native)
echo
echo "ratios ours/native: root tps $(echo "scale=2; $ot / $nt" | bc), apply rate $(echo "scale=2; $oa / $na" | bc), initial sync (branch) $(echo "scale=2; $ob / $nb" | bc), drain $od s vs $nd s, p50 $o50 vs $n50 ms, p99 $o99 vs $n99 ms"
echo "total time: $(( $(date +%s) - T0 )) s"
