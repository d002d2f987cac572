#!/bin/bash
# bench/replay.sh — replication of the seed workload (tests/workload), four ways side by
# side in one run:
#
#   (a) in-server  this extension's in-server replay, root -> branch -> leaf (three
#                  clusters; set up with the Python londiste CLI; no londiste worker, no
#                  pgqd)
#   (b) ours+py    this extension with the Python `londiste worker` on every node
#                  (pgq.replay = off; the in-server ticker ticks the root, no pgqd)
#   (c) original   the original stack (PgQ 3.5 + pgq_node + londiste SQL from $REF_BIN,
#                  scripts/install-original.sh), ticked by one pgqd per cluster, with the
#                  Python `londiste worker` on every node
#   (d) native     PostgreSQL 15 logical replication, root -> subscriber (two clusters)
#   (e) in-server, one hop: as (a), root -> branch only (two clusters), the topology of
#                  (d); not in the default SIDES
#
# Each run starts fresh clusters, seeds the root (ROWS users), subscribes the four
# workload tables plus a marker table (branch first, then leaf), runs the pgbench
# login/logout load on the root for SECONDS with 2 clients while a marker row is
# inserted every 50 ms, and measures:
#   sync      initial sync of user_info + user_session (ROWS rows each) per node: seconds
#             from add-table (native: CREATE SUBSCRIPTION) until both tables are ok
#             (native: ready) on that node; for (b)/(c) that is the Python worker's copy
#             process and hand-off, for (a) the replay worker's copy
#   tps       root transactions per second under replication
#   apply     rows per second reaching the last node during the load: every
#             transaction writes two rows (a login/logout record and the session row),
#             so apply = 2 x (records on the last node at the end of the load - at its
#             start) / load seconds; a side that keeps up applies about 2 x tps
#   drain     seconds from the end of the load until the last node has the root's last
#             login and logout record
#   delay     marker rows: commit on the root -> arrival on the last node (a trigger
#             there that also fires during replay stamps the arrival), p50 / p99 in ms
# After the drain the data of every node is compared with the root's.
#
# The sides run interleaved a b c d d c b a (for SIDES="a b c d"), RUNS times; every
# run is printed, then the best value of each metric per side (highest tps and apply,
# lowest times), then the ratios of each side against (d) and of (a) against (b) and
# (c). A side that fails in a run is reported as FAILED for that run (its clusters and
# processes are stopped, the next run goes on); the script then exits non-zero.
# No timing is asserted: this is a benchmark.
#
# Queue tuning, the same for (a), (b) and (c): the root queue ticks at least every
# MAX_LAG while events come and every IDLE_PERIOD when idle (the Python worker's copy
# hand-off waits for ticks; the original's default of 60 s would dominate its sync
# time). The ticker runs every 100 ms (pgq.ticker_period for ours, pgqd's
# ticker_period for the original); ours also wakes on commits, so under load it ticks
# about every MAX_LAG, pgqd at most every 100 ms. The Python workers use
# loop_delay = 0.1 and parallel_copies = 2.
#
# With the defaults one run (8 side runs) takes about 9 minutes on 2 cores.
#
# Env: ROWS (200000), SECONDS (load seconds, 20; LOAD_SECONDS too), RUNS (1 = the
# interleaved sequence once; REPEAT too), SIDES ("a b c d"; also e), OURS_BIN (the tree with
# this extension), REF_BIN (the original's tree), MAX_LAG (20ms), IDLE_PERIOD (1s),
# APPLY_DIRECT (pgq.apply_direct of sides a and e: on), KEEP_WORK=1 keeps the work dir (logs, ini files).
set -Eeuo pipefail
# SECONDS is bash's own clock: a value given in the environment is read from it
env_seconds=$(tr '\0' '\n' < /proc/$$/environ | sed -n 's/^SECONDS=//p' | head -1)
ROWS=${ROWS:-200000}
LOAD_SECONDS=${LOAD_SECONDS:-${env_seconds:-20}}
RUNS=${RUNS:-${REPEAT:-1}}
SIDES=${SIDES:-a b c d}
MAX_LAG=${MAX_LAG:-20ms}
IDLE_PERIOD=${IDLE_PERIOD:-1s}
APPLY_DIRECT=${APPLY_DIRECT:-on}
EXTRA_CONF="max_worker_processes = 16
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10"
CLUSTER_DB=digoal
source "$(dirname "$0")/common.sh"
LONDISTE=/usr/bin/londiste
WL=$REPO/tests/workload
TABLES="digoal.user_info digoal.user_session digoal.user_login_rec digoal.user_logout_rec digoal.bench_marker"
DB=digoal
mapfile -t BASECONF < <(echo "$CONF" | grep -v '^$')
declare -A LABEL=([a]=in-server [b]=ours+py [c]=original [d]=native [e]=in-srv-1hop)

case "$LOAD_SECONDS$ROWS$RUNS" in *[!0-9]*) echo "replay.sh: SECONDS, ROWS and RUNS are whole numbers" >&2; exit 2 ;; esac
for s in $SIDES; do
  [ -n "${LABEL[$s]:-}" ] || { echo "replay.sh: unknown side '$s' in SIDES (a b c d e)" >&2; exit 2; }
  case $s in b|c) [ -x "$LONDISTE" ] || { echo "replay.sh: $LONDISTE missing (scripts/install-original.sh installs it)" >&2; exit 2; } ;; esac
  case $s in a|e) [ -x "$LONDISTE" ] || { echo "replay.sh: $LONDISTE missing (the CLI sets up side a)" >&2; exit 2; } ;; esac
  case $s in c) [ -x "$REF_BIN/postgres" ] && [ -x "${PGQD:-/usr/bin/pgqd}" ] \
      || { echo "replay.sh: side c needs the original in $REF_BIN and pgqd (scripts/install-original.sh)" >&2; exit 2; } ;; esac
done

sql() { cluster_psql "$1" -At -c "$2"; }
now_s() { date +%s.%N; }
since() { echo "$(now_s) - $1" | bc; }

seed() {  # NAME ROWS
  as_pg "$(cluster_bin "$1")/createdb" -h "$(cluster_host "$1")" -p "$(cluster_port "$1")" $DB
  cluster_psql "$1" -v rows="$2" -f "$WL/seed.sql" >/dev/null
  sql "$1" "create table digoal.bench_marker (id bigserial primary key, sent timestamptz not null,
              arrived timestamptz);
            create function digoal.bench_arrived() returns trigger language plpgsql as
              \$\$ begin new.arrived := clock_timestamp(); return new; end \$\$;
            create trigger bench_arrived before insert on digoal.bench_marker
              for each row execute function digoal.bench_arrived();
            alter table digoal.bench_marker enable always trigger bench_arrived;" >/dev/null
}

# wait until SQL on NAME returns t (at most MAX seconds, default 300); prints the seconds
# waited
wait_true() {  # NAME SQL [MAX]
  local t0 end; t0=$(now_s); end=$(( $(date +%s) + ${3:-300} ))
  while [ "$(date +%s)" -le $end ]; do
    [ "$(sql "$1" "$2" 2>/dev/null)" = t ] && { since "$t0"; return 0; }
    sleep 0.05
  done
  echo "replay.sh: timed out after ${3:-300} s waiting on $1 for: $2" >&2; return 1
}

# login + logout records on NAME; each transaction of the load writes one record and
# updates one session row
records() { sql "$1" "select (select count(*) from digoal.user_login_rec) + (select count(*) from digoal.user_logout_rec)"; }

# the load on ROOT, a marker every 50 ms during it; sets TPS, APPLY (rows reaching LAST
# during the load), T_END (end of the load)
load() {  # ROOT LAST
  local out=$RUNDIR/pgbench.out r0 r1 t0 f
  # the scripts pick users out of 200,000: out of ROWS here
  for f in login logout; do
    sed "s/random(1, 200000)/random(1, $ROWS)/" "$WL/$f.pgbench" > "$RUNDIR/$f.pgbench"
  done
  r0=$(records "$2"); t0=$(now_s)
  cluster_pgbench "$1" -n -f "$RUNDIR/login.pgbench" -f "$RUNDIR/logout.pgbench" -c 2 -j 2 -T "$LOAD_SECONDS" > "$out" 2>&1 &
  local pb=$!
  cluster_bg $pb
  while kill -0 $pb 2>/dev/null; do
    sql "$1" "insert into digoal.bench_marker (sent) values (clock_timestamp())" >/dev/null
    sleep 0.05
  done
  wait $pb || { cat "$out" >&2; return 1; }
  T_END=$(now_s); r1=$(records "$2")
  TPS=$(awk '/^tps = / {printf "%.0f", $3; exit}' "$out")
  APPLY=$(echo "2 * ($r1 - $r0) / ($T_END - $t0)" | bc)
}

# after the load: DRAIN, P50, P99, and the data of every node compared with the root's
after_load() {  # ROOT LAST [OTHER NODES...]
  local root=$1 last=$2 li lo
  li=$(sql "$root" "select coalesce(max(id), 0) from digoal.user_login_rec")
  lo=$(sql "$root" "select coalesce(max(id), 0) from digoal.user_logout_rec")
  wait_true "$last" "select (select coalesce(max(id), 0) >= $li from digoal.user_login_rec)
                        and (select coalesce(max(id), 0) >= $lo from digoal.user_logout_rec)" >/dev/null
  DRAIN=$(printf '%.2f' "$(since "$T_END")")
  wait_true "$last" "select count(*) = $(sql "$root" "select count(*) from digoal.bench_marker") from digoal.bench_marker" >/dev/null
  read -r P50 P99 < <(sql "$last" "select round(percentile_cont(0.5) within group (order by ms)::numeric, 1),
       round(percentile_cont(0.99) within group (order by ms)::numeric, 1)
      from (select extract(epoch from arrived - sent) * 1000 as ms from digoal.bench_marker) m" | tr '|' ' ')
  # the same data on every node (user_session: every update of the load; the records)
  local q="select count(*) || ':' || coalesce(sum(hashtext(t::text)::bigint), 0) from digoal.user_session t"
  local qr="select (select count(*) from digoal.user_login_rec) || ':' || (select count(*) from digoal.user_logout_rec)"
  local want rwant n; want=$(sql "$root" "$q"); rwant=$(sql "$root" "$qr")
  for n in "${@:2}"; do
    wait_true "$n" "select (select count(*) || ':' || coalesce(sum(hashtext(t::text)::bigint), 0) from digoal.user_session t) = '$want'
                      and ($qr) = '$rwant'" 30 >/dev/null \
      || { echo "replay.sh: $n: data differs from the root's after the drain" >&2; return 1; }
  done
}

# -------------------------------------------------------------- (a), (b), (c): cascades

BOTH_OK="select count(*) = 2 from londiste.get_table_list('replika')
          where local and merge_state = 'ok' and table_name in ('digoal.user_info', 'digoal.user_session')"
# every local table ok (a table still waiting for its copy has no state: not ok)
ALL_OK="select count(*) = 5 and bool_and(coalesce(merge_state = 'ok', false))
          from londiste.get_table_list('replika') where local"

L() { "$LONDISTE" "$RUNDIR/$1.ini" "${@:2}" >> "$RUNDIR/londiste.out" 2>&1; }

# sides b and c replay with the Python londiste worker
python_side() { [ "$1" = b ] || [ "$1" = c ]; }

start_worker() {  # NODE: the Python londiste worker of that node
  "$LONDISTE" "$RUNDIR/$1.ini" worker >> "$RUNDIR/$1.worker.out" 2>&1 &
  cluster_bg $!
}

# the run's client processes: those this shell started (cluster_bg), then the Python
# workers' copy processes, which daemonize themselves: every process whose pidfile lies
# in RUNDIR and whose command line names a file there
stop_londiste() {
  local f p pids=() i alive
  cluster_bg_stop   # the workers, pgbench and pgqd: children of this shell
  for f in "$RUNDIR"/*.pid*; do
    [ -f "$f" ] || continue
    p=$(head -1 "$f" 2>/dev/null || true)
    case "$p" in ''|*[!0-9]*) continue ;; esac
    { tr '\0' ' ' < "/proc/$p/cmdline"; } 2>/dev/null | grep -qF "$RUNDIR/" || continue
    kill "$p" 2>/dev/null && pids+=("$p")
  done
  for i in $(seq 50); do
    alive=
    for p in "${pids[@]}"; do [ -d "/proc/$p" ] && alive=1; done
    [ -n "$alive" ] || return 0
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}

cascade() {  # SIDE (a, b or c) [NODES: root branch leaf]
  local side=$1 n bin conf t0 nodes=${2:-root branch leaf}
  for n in $nodes; do
    conf=("${BASECONF[@]}")
    bin=$OURS_BIN
    case $side in
      a|e) conf+=("shared_preload_libraries = 'pgq'" "pgq.ticker_period = '100ms'" "pgq.launcher_naptime = '1s'"
                  "pgq.apply_direct = $APPLY_DIRECT") ;;
      b) conf+=("shared_preload_libraries = 'pgq'" "pgq.ticker_period = '100ms'" "pgq.launcher_naptime = '1s'"
                "pgq.replay = off") ;;
      c) bin=$REF_BIN ;;
    esac
    PG_BIN=$bin cluster_start "$side-$n" "${conf[@]}"
    local rows=0; [ $n = root ] && rows=$ROWS
    seed "$side-$n" $rows
    if [ $side = c ]; then
      sql "$side-$n" "create extension pgq; create extension pgq_node; create extension londiste" >/dev/null
      pgqd_start "$side-$n" "$RUNDIR" "initial_database = $DB" "database_list = $DB" \
        "ticker_period = 0.1" "maint_period = 2" "retry_period = 1" "check_period = 1"
    else
      sql "$side-$n" "create extension pgq" >/dev/null
    fi
    {
      echo "[londiste]"
      echo "job_name = bench_$n"
      echo "db = $(cluster_connstr "$side-$n" $DB)"
      echo "queue_name = replika"
      echo "logfile = $RUNDIR/$n.log"
      echo "pidfile = $RUNDIR/$n.pid"
      echo "loop_delay = 0.1"
      echo "parallel_copies = 2"
    } > "$RUNDIR/$n.ini"
  done
  L root create-root root "$(cluster_connstr $side-root $DB)"
  sql $side-root "select pgq.set_queue_config('replika', 'ticker_max_lag', '$MAX_LAG'),
                         pgq.set_queue_config('replika', 'ticker_idle_period', '$IDLE_PERIOD')" >/dev/null
  L root add-table $TABLES
  L root add-seq digoal.user_login_rec_id_seq digoal.user_logout_rec_id_seq
  python_side $side && start_worker root
  L branch create-branch branch "$(cluster_connstr $side-branch $DB)" --provider="$(cluster_connstr $side-root $DB)"
  python_side $side && start_worker branch
  t0=$(now_s)
  L branch add-table $TABLES
  wait_true $side-branch "$BOTH_OK" 600 >/dev/null
  SYNC_B=$(printf '%.1f' "$(since "$t0")")
  wait_true $side-branch "$ALL_OK" 600 >/dev/null
  if [ "$nodes" = "root branch" ]; then
    SYNC_L=-
    load $side-root $side-branch
    after_load $side-root $side-branch
    return
  fi
  L leaf create-leaf leaf "$(cluster_connstr $side-leaf $DB)" --provider="$(cluster_connstr $side-branch $DB)"
  python_side $side && start_worker leaf
  t0=$(now_s)
  L leaf add-table $TABLES
  wait_true $side-leaf "$BOTH_OK" 600 >/dev/null
  SYNC_L=$(printf '%.1f' "$(since "$t0")")
  wait_true $side-leaf "$ALL_OK" 600 >/dev/null
  load $side-root $side-leaf
  after_load $side-root $side-leaf $side-branch
}

run_a() { cascade a; }
run_b() { cascade b; }
run_c() { cascade c; }
run_e() { cascade e "root branch"; }

# -------------------------------------------------------------- (d): native

run_d() {
  PG_BIN=$OURS_BIN cluster_start d-root "${BASECONF[@]}"
  seed d-root "$ROWS"
  PG_BIN=$OURS_BIN cluster_start d-sub "${BASECONF[@]}"
  seed d-sub 0
  sql d-root "create publication bench for table ${TABLES// /, }" >/dev/null
  local t0; t0=$(now_s)
  PGOPTIONS="-c client_min_messages=warning" sql d-sub "create subscription bench connection '$(cluster_connstr d-root $DB)' publication bench" >/dev/null
  wait_true d-sub "select count(*) = 2 from pg_subscription_rel r join pg_class c on c.oid = r.srrelid
                    where c.relname in ('user_info', 'user_session') and r.srsubstate = 'r'" 600 >/dev/null
  SYNC_B=$(printf '%.1f' "$(since "$t0")"); SYNC_L=-
  wait_true d-sub "select bool_and(srsubstate = 'r') and count(*) = 5 from pg_subscription_rel" 600 >/dev/null
  load d-root d-sub
  after_load d-root d-sub
}

# -------------------------------------------------------------- runs

RESULTS=$WORK/results
: > "$RESULTS"
SIDE_PID=

# one run of SIDE in a subshell of its own (its clusters and processes are stopped when
# it ends, also on failure); appends its line to RESULTS
one_run() {  # SIDE RUN
  RUNDIR=$WORK/run$2-$1
  mkdir -p "$RUNDIR"; chmod 755 "$RUNDIR"
  (
    side_exit() {
      local rc=$?
      if [ $rc -ne 0 ]; then
        CLUSTER_LOG_ON_STOP=1
        local f
        for f in "$RUNDIR"/*.log "$RUNDIR"/*.out; do
          [ -s "$f" ] && { echo "---- last lines of $f ----" >&2; tail -n 15 "$f" >&2; }
        done
      fi
      stop_londiste
      cluster_stop_all
      exit $rc
    }
    trap side_exit EXIT
    trap 'exit 130' INT TERM
    "run_$1"
    echo "$1 $2 $SYNC_B $SYNC_L $TPS $APPLY $DRAIN $P50 $P99" >> "$RESULTS"
  ) &
  SIDE_PID=$!
  local rc=0
  wait $SIDE_PID || rc=$?
  SIDE_PID=
  if [ $rc -ne 0 ]; then
    echo "$1 $2 FAILED" >> "$RESULTS"
    FAILED=1
    [ $rc -ge 128 ] && exit $rc
  fi
  return 0
}

# an interrupted run: stop the run in progress (its own trap stops its clusters)
replay_cleanup() {
  local rc=$?
  set +e
  if [ -n "$SIDE_PID" ]; then
    kill -TERM "$SIDE_PID" 2>/dev/null || true
    wait "$SIDE_PID" 2>/dev/null || true
  fi
  (exit $rc)
  bench_cleanup
}
trap replay_cleanup EXIT

row() { printf '%-12s %4s %9s %9s %9s %10s %8s %8s %8s\n' "$@"; }

bench_header "bench/replay.sh: seed-workload replication: (a) in-server replay, (b) ours + Python londiste worker, (c) original PgQ 3.5 + pgqd + Python londiste worker, (d) native logical replication" \
  "ROWS=$ROWS SECONDS=$LOAD_SECONDS (pgbench login+logout, 2 clients) RUNS=$RUNS SIDES=\"$SIDES\" MAX_LAG=$MAX_LAG IDLE_PERIOD=$IDLE_PERIOD APPLY_DIRECT=$APPLY_DIRECT"
read -ra SEQ <<< "$SIDES"
ORDER=()
for ((i = 0; i < ${#SEQ[@]}; i++)); do ORDER+=("${SEQ[i]}"); done
for ((i = ${#SEQ[@]} - 1; i >= 0; i--)); do ORDER+=("${SEQ[i]}"); done
echo "order of the runs: $(for _ in $(seq "$RUNS"); do echo -n "${ORDER[*]} "; done)"
row side run sync_b_s sync_l_s root_tps apply_r/s drain_s p50_ms p99_ms
FAILED=
run=0
for _ in $(seq "$RUNS"); do
  for side in "${ORDER[@]}"; do
    run=$((run + 1))
    log "run $run: ${LABEL[$side]}"
    t_run=$(date +%s)
    one_run "$side" $run
    read -r _ _ b l t a d p5 p9 < <(tail -1 "$RESULTS")
    row "$side:${LABEL[$side]}" $run "$b" "${l:-}" "${t:-}" "${a:-}" "${d:-}" "${p5:-}" "${p9:-}"
    log "run $run: ${LABEL[$side]} took $(( $(date +%s) - t_run )) s"
  done
done

# best of each metric per side: highest tps and apply rate, lowest times
best() {  # SIDE: sync_b sync_l tps apply drain p50 p99 (or nothing)
  awk -v s="$1" '
    function lo(i) { if ($i != "-" && (!(i in m) || $i + 0 < m[i])) m[i] = $i + 0 }
    function hi(i) { if (!(i in m) || $i + 0 > m[i]) m[i] = $i + 0 }
    function out(i) { return (i in m) ? m[i] : "-" }
    $1 == s && $3 != "FAILED" { n++; lo(3); lo(4); hi(5); hi(6); lo(7); lo(8); lo(9) }
    END { if (n) print out(3), out(4), out(5), out(6), out(7), out(8), out(9), n }' "$RESULTS"
}
declare -A BEST=()
echo
echo "best of each side (highest tps and apply, lowest times; over its runs that did not fail):"
printf '%-12s %4s %9s %9s %9s %10s %8s %8s %8s\n' side runs sync_b_s sync_l_s root_tps apply_r/s drain_s p50_ms p99_ms
for s in $SIDES; do
  BEST[$s]=$(best "$s")
  if [ -n "${BEST[$s]}" ]; then
    read -r b l t a d p5 p9 n <<< "${BEST[$s]}"
    row "$s:${LABEL[$s]}" "$n" "$b" "$l" "$t" "$a" "$d" "$p5" "$p9"
  else
    row "$s:${LABEL[$s]}" 0 "all runs failed"
  fi
done

ratio() { if [[ "$1" =~ ^[0-9.]+$ && "$2" =~ ^[0-9.]+$ ]] && [ "$(echo "$2 > 0" | bc)" = 1 ]; then
    printf '%.2f' "$(echo "scale=4; $1 / $2" | bc)"; else echo n/a; fi; }
compare() {  # X Y: the ratios of side X against side Y
  local xb xl xt xa xd x5 x9 yb yl yt ya yd y5 y9
  read -r xb xl xt xa xd x5 x9 _ <<< "${BEST[$1]}"
  read -r yb yl yt ya yd y5 y9 _ <<< "${BEST[$2]}"
  echo "  $1 vs $2: root tps $(ratio "$xt" "$yt")x, apply $(ratio "$xa" "$ya")x," \
    "sync branch $xb vs $yb s ($(ratio "$xb" "$yb")x the time), sync leaf $xl vs $yl s," \
    "drain $xd vs $yd s, p50 $x5 vs $y5 ms, p99 $x9 vs $y9 ms"
}
echo
echo "ratios of the best values (tps, apply: higher is better; times: lower is better):"
have() { [[ " $SIDES " == *" $1 "* ]] && [ -n "${BEST[$1]:-}" ]; }
for s in a b c e; do have $s && have d && compare $s d; done
for s in b c; do have a && have $s && compare a $s; done
echo "total time: $(( $(date +%s) - T0 )) s"
[ -z "$FAILED" ] || { echo "replay.sh: some runs failed (FAILED above)" >&2; exit 1; }
