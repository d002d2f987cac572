#!/bin/bash
# tests/bgworker/run.sh — the in-server ticker on real clusters with
# shared_preload_libraries = 'pgq' (scripts/test.sh bgworker runs it).
#
# Scenarios (each prints PASS/FAIL with a reason; exit status 1 if any failed):
#   b  CREATE EXTENSION after server start is picked up within ~1 s
#   a  a queue is ticked and rotated with no manual calls; old event tables get
#      truncated; a consumer gets every event exactly once while producers insert;
#      (a2) the worker's table writes reach pg_stat_user_tables, so autovacuum sees them
#   j  event_retry'd events come back through the worker's retry mover
#   l  a queue the ticker cannot tick (its tick sequence is gone) is visible in
#      worker_status.last_error; the
#      worker carries on once the cause is gone
#   c  SIGKILL of a ticker worker (postmaster crash-restart) → workers come back,
#      ticking resumes, no event lost or duplicated; pg_terminate_backend of a worker
#      → restarted by the launcher
#   d  pg_ctl restart: workers come back, ticking continues; (d2) never two tickers
#      on one database
#   e  a second database gets its own worker; a database without the extension none;
#      templates are never probed
#   k  the original pgqd runs against the same cluster at the same time: nothing
#      breaks, every event is delivered once
#   f  GUC reload: pgq.enabled off → workers exit; on → back; pgq.ticker_period change
#      changes the tick rate
#   g  DROP DATABASE with a running worker; CREATE DATABASE ... TEMPLATE of a database
#      with a running worker (and the copy gets its own worker); DROP EXTENSION makes
#      the worker exit without a restart loop
#   n  pg_terminate_backend of the launcher: the postmaster starts it again, it keeps the
#      running tickers (no duplicates) and restarts one it did not start
#   o  an ERROR in the launcher (query cancel): it exits, the postmaster starts a new
#      one, which keeps the running tickers
#   p  a second launcher started beside the running one exits at once
#   q  ticker processes started for a slot that a live ticker holds, or for an older
#      generation of it, refuse the slot and exit
#      (o, p, q end with exactly one ticker per database; p and q use the test-only
#      helper tests/bgworker/bgw_start.c, built into the scratch directory)
#   h  SIGTERM to the postmaster (fast shutdown) stops every pgq worker within 1 s
#   i  binary-upgrade mode (postgres -b): no pgq worker ever runs
#   m  not preloaded: CREATE EXTENSION warns about shared_preload_libraries, the
#      extension works with manual pgq.ticker() calls, worker_status() is empty
#
# Env: PG_BIN (system PostgreSQL 15), PGQD (/usr/bin/pgqd), ONLY="a b ..." to run a
# subset (later scenarios assume the databases of earlier ones; b a e are cheap),
# KEEP_CLUSTERS=1 keeps the data directories.
set -Euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
TOOL=$HERE/pgqtool.py
PGQD=${PGQD:-/usr/bin/pgqd}
ONLY=${ONLY:-}
source "$REPO/tests/lib/cluster.sh"

WORK=$(mktemp -d /tmp/pgq-bgw-XXXXXX)
chmod 777 "$WORK"
BG_PIDS=()
RESULTS=()
NFAIL=0
T_START=$(date +%s)

cleanup() {
  local p
  for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$NFAIL" -gt 0 ] && [ -n "${PGDATA_DIR:-}" ] && [ -f "${PGHOST:-/nonexistent}/server.log" ]; then
    echo "---- last 60 lines of the server log"; tail -60 "$PGHOST/server.log"
  fi
  cluster_stop_all
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

log() { echo "[$(date +%H:%M:%S)] $*"; }
pass() { RESULTS+=("PASS $1: $2"); echo "PASS $1: $2"; }
fail() { RESULTS+=("FAIL $1: $2"); echo "FAIL $1: $2"; NFAIL=$((NFAIL + 1)); }
want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

# q DB SQL: one value (or rows, |-separated); never fails the script
q() { psql -X -Atq -v ON_ERROR_STOP=1 -d "$1" -c "$2" 2>>"$WORK/psql.err"; }
# qe DB SQL: like q, but stops-on-error with the error on stderr
qe() { psql -X -Atq -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
now_ms() { date +%s%3N; }

# wait_for SECONDS DB SQL: poll (every 50 ms) until SQL returns 't'; 0 if it did
wait_for() {
  local deadline=$(( $(now_ms) + $1 * 1000 )) db=$2 sql=$3
  while [ "$(now_ms)" -lt "$deadline" ]; do
    [ "$(q "$db" "$sql")" = t ] && return 0
    sleep 0.05
  done
  return 1
}

# the ticker pid of a database from worker_status (empty if none)
ticker_pid() { q postgres "select pid from pgq.worker_status() where worker = 'ticker' and database = '$1'"; }
# worker_status is defined by the extension: the postgres database gets it too
status_row() { q postgres "select coalesce(pid::text,'-') || ' ticks=' || ticks || ' restarts=' || restarts || ' no_ext=' || no_extension || ' err=' || coalesce(last_error,'-') from pgq.worker_status() where database = '$1'"; }

setup_db() {  # setup_db DB: database with the extension and the bookkeeping tables
  qe postgres "create database $1" && qe "$1" "create extension pgq;
    create table bg_sent (tag text, n int, primary key (tag, n));
    create table bg_recv (consumer text, ev_id bigint, ev_data text, ev_retry int);" >/dev/null
}

# exactly_once DB CONSUMER TAG: '' if every sent event of TAG was stored once, else why not
exactly_once() {
  q "$1" "select case when m > 0 or d > 0 or x > 0 then format('missing=%s duplicated=%s unexpected=%s (sent=%s)', m, d, x, s) else '' end from
    (select (select count(*) from bg_sent s where tag = '$3' and not exists
              (select 1 from bg_recv r where r.consumer = '$2' and r.ev_data = s.tag || ':' || s.n)) m,
            (select count(*) - count(distinct ev_data) from bg_recv where consumer = '$2' and ev_data like '$3:%') d,
            (select count(*) from bg_recv r where consumer = '$2' and ev_data like '$3:%' and not exists
              (select 1 from bg_sent s where s.tag || ':' || s.n = r.ev_data)) x,
            (select count(*) from bg_sent where tag = '$3') s) t"
}

# wait until CONSUMER has stored every event of TAG (deadline SECONDS)
wait_drained() {
  wait_for "$4" "$1" "select not exists (select 1 from bg_sent s where tag = '$3' and not exists
      (select 1 from bg_recv r where r.consumer = '$2' and r.ev_data = s.tag || ':' || s.n))"
}

dsn() { echo "host=$PGHOST port=$PGPORT user=postgres dbname=$1"; }

start_consumer() {  # start_consumer DB QUEUE CONSUMER [RETRY_EVERY]; sets CONS_PID, CONS_STOP
  CONS_STOP=$WORK/stop.$3
  rm -f "$CONS_STOP"
  # registered before any producer starts: a consumer only sees events after its registration
  qe "$1" "select pgq.register_consumer('$2', '$3')" >/dev/null
  "$PY" "$TOOL" consume "$(dsn "$1")" "$2" "$3" "$CONS_STOP" "${4:-0}" >> "$WORK/consumer.$3.log" 2>&1 &
  CONS_PID=$!; BG_PIDS+=("$CONS_PID")
}
stop_consumer() { touch "$CONS_STOP"; wait "$CONS_PID" 2>/dev/null || true; }

start_producer() {  # start_producer DB QUEUE TAG N_TX PER_TX SLEEP_MS; sets PROD_PID
  "$PY" "$TOOL" produce "$(dsn "$1")" "$2" "$3" "$4" "$5" "$6" >> "$WORK/producer.$3.log" 2>&1 &
  PROD_PID=$!; BG_PIDS+=("$PROD_PID")
}

max_tick() { q "$1" "select coalesce(max(tick_id), 0) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = '$2'"; }

PRELOAD=("shared_preload_libraries = 'pgq'" "pgq.ticker_period = 100ms" "pgq.maint_period = 1s"
         "pgq.retry_period = 1s" "pgq.launcher_naptime = 1s" "max_worker_processes = 16"
         "log_min_messages = log")

log "starting cluster"
if ! cluster_start bgw "${PRELOAD[@]}"; then
  echo "FAIL: could not start the preloaded cluster"; exit 1
fi
PGCTL() { as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" "$@"; }
wait_for 10 postgres "select exists (select 1 from pg_stat_activity where backend_type = 'pgq launcher')" \
  || { echo "FAIL: no pgq launcher in pg_stat_activity"; exit 1; }
# the postgres database hosts worker_status() for the checks
qe postgres "create extension pgq" >/dev/null

# ---------------------------------------------------------------------------------- b
if want b; then
  qe postgres "create database db_b" >/dev/null
  sleep 1.5  # let the launcher probe db_b (no extension yet)
  t0=$(now_ms)
  qe db_b "create extension pgq" >/dev/null
  if wait_for 5 postgres "select exists (select 1 from pgq.worker_status() where database = 'db_b' and pid is not null and not no_extension)"; then
    el=$(( $(now_ms) - t0 ))
    ok_act=$(q postgres "select count(*) from pg_stat_activity where backend_type = 'pgq ticker' and datname = 'db_b'")
    if [ "$el" -le 1500 ] && [ "$ok_act" = 1 ]; then
      pass b "ticker for db_b running ${el} ms after CREATE EXTENSION (pg_stat_activity: backend_type 'pgq ticker')"
    else
      fail b "ticker after ${el} ms (want <= 1500), pg_stat_activity rows: $ok_act"
    fi
  else
    fail b "no ticker for db_b 5 s after CREATE EXTENSION: $(status_row db_b)"
  fi
fi

# ---------------------------------------------------------------------------------- a
if want a; then
  setup_db db_a
  qe db_a "select pgq.create_queue('qa');
           select pgq.set_queue_config('qa', 'rotation_period', '1 second');
           select pgq.set_queue_config('qa', 'ticker_idle_period', '200 milliseconds');
           select pgq.set_queue_config('qa', 'ticker_max_lag', '100 milliseconds');" >/dev/null
  cur0=$(q db_a "select queue_cur_table from pgq.queue where queue_name = 'qa'")
  tick0=$(max_tick db_a qa)
  start_consumer db_a qa ca
  start_producer db_a qa pa1 150 20 40
  p1=$PROD_PID
  start_producer db_a qa pa2 300 3 20
  p2=$PROD_PID
  # watch the current table move while the producers run
  seen=" $cur0 "; switches=0; last=$cur0
  deadline=$(( $(date +%s) + 40 ))
  while kill -0 "$p1" 2>/dev/null || kill -0 "$p2" 2>/dev/null; do
    c=$(q db_a "select queue_cur_table from pgq.queue where queue_name = 'qa'")
    if [ -n "$c" ] && [ "$c" != "$last" ]; then switches=$((switches + 1)); last=$c; seen="$seen$c "; fi
    [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 0.1
  done
  wait "$p1" "$p2" 2>/dev/null
  drained=0; wait_drained db_a ca pa1 20 && wait_drained db_a ca pa2 20 && drained=1
  # idle ticks keep rotation going: every event table becomes current again and is truncated
  truncated=0
  tables=$(q db_a "select string_agg(format('(select count(*) from %s_%s)', queue_data_pfx, g), ' + ')
                     from pgq.queue, generate_series(0, queue_ntables - 1) g where queue_name = 'qa'")
  if wait_for 20 db_a "select ($tables) = 0 and (select queue_switch_time > now() - interval '5 s' from pgq.queue where queue_name = 'qa')"; then truncated=1; fi
  c=$(q db_a "select queue_cur_table from pgq.queue where queue_name = 'qa'")
  [ "$c" != "$last" ] && switches=$((switches + 1))
  stop_consumer
  ticks=$(( $(max_tick db_a qa) - tick0 ))
  e1=$(exactly_once db_a ca pa1); e2=$(exactly_once db_a ca pa2)
  if [ "$drained" = 1 ] && [ -z "$e1$e2" ] && [ "$switches" -ge 2 ] && [ "$truncated" = 1 ] && [ "$ticks" -ge 10 ]; then
    pass a "3900 events from 2 producers received exactly once; $ticks ticks, $switches table switches (cur tables seen:$seen), all event tables truncated, no manual calls"
  else
    fail a "drained=$drained pa1:[${e1}] pa2:[${e2}] ticks=$ticks switches=$switches truncated=$truncated; $(status_row db_a)"
  fi
  # the worker's own writes (ticks, rotation deletes) must reach the cumulative statistics,
  # or autovacuum never sees pgq.tick churn (only the worker writes it)
  if wait_for 5 db_a "select n_tup_ins >= $ticks / 2 from pg_stat_user_tables where relid = 'pgq.tick'::regclass"; then
    pass a2 "pgq.tick activity of the worker is in pg_stat_user_tables ($(q db_a "select 'n_tup_ins=' || n_tup_ins || ' n_tup_del=' || n_tup_del from pg_stat_user_tables where relid = 'pgq.tick'::regclass"), $ticks ticks made)"
  else
    fail a2 "pgq.tick statistics miss the worker's writes: $(q db_a "select 'n_tup_ins=' || n_tup_ins || ' n_tup_del=' || n_tup_del || ' n_dead_tup=' || n_dead_tup from pg_stat_user_tables where relid = 'pgq.tick'::regclass") after $ticks ticks; rows now $(q db_a "select count(*) from pgq.tick")"
  fi
fi

# ---------------------------------------------------------------------------------- j
if want j; then
  [ "$(q postgres "select 1 from pg_database where datname = 'db_a'")" = 1 ] || setup_db db_a
  qe db_a "select pgq.create_queue('qj'); select pgq.set_queue_config('qj', 'ticker_max_lag', '100 milliseconds');" >/dev/null
  start_consumer db_a qj cj 5
  start_producer db_a qj pj 40 5 20   # 200 events, every 5th (40) retried once
  wait "$PROD_PID"
  if wait_drained db_a cj pj 20; then
    e=$(exactly_once db_a cj pj)
    nr=$(q db_a "select count(*) from bg_recv where consumer = 'cj' and ev_retry = 1")
    rq=$(q db_a "select count(*) from pgq.retry_queue")
    lr=$(q postgres "select last_retry is not null from pgq.worker_status() where database = 'db_a'")
    if [ -z "$e" ] && [ "$nr" = 40 ] && [ "$rq" = 0 ] && [ "$lr" = t ]; then
      pass j "200 events, the 40 retried ones came back once with ev_retry = 1 via the worker's retry mover; retry_queue empty"
    else
      fail j "[$e] retried-back=$nr (want 40) retry_queue=$rq last_retry set=$lr"
    fi
  else
    fail j "consumer did not get every event within 20 s: $(exactly_once db_a cj pj); retry_queue=$(q db_a "select count(*) from pgq.retry_queue")"
  fi
  stop_consumer
fi

# ---------------------------------------------------------------------------------- l
if want l; then
  qe postgres "create database db_l" >/dev/null
  qe db_l "create extension pgq; select pgq.create_queue('ql'); select pgq.set_queue_config('ql', 'ticker_idle_period', '100 milliseconds');" >/dev/null
  wait_for 5 postgres "select exists (select 1 from pgq.worker_status() where database = 'db_l' and ticks > 0)"
  pid0=$(ticker_pid db_l)
  seq=$(q db_l "select queue_tick_seq from pgq.queue where queue_name = 'ql'")
  # a queue whose tick sequence is gone makes pgq.ticker() fail in this database
  qe db_l "update pgq.queue set queue_tick_seq = 'pgq.no_such_seq' where queue_name = 'ql'" >/dev/null
  if wait_for 5 postgres "select last_error is not null from pgq.worker_status() where database = 'db_l'"; then
    err=$(q postgres "select last_error from pgq.worker_status() where database = 'db_l'")
    qe db_l "update pgq.queue set queue_tick_seq = '$seq' where queue_name = 'ql'" >/dev/null
    t0=$(max_tick db_l ql)
    if wait_for 5 db_l "select coalesce(max(tick_id), 0) > $t0 from pgq.tick"; then
      pid1=$(ticker_pid db_l)
      pass l "last_error = '$err'; ticking resumed after the fix (worker pid $pid0 -> $pid1)"
    else
      fail l "error was visible ('$err') but no tick after fixing the queue: $(status_row db_l)"
    fi
  else
    fail l "no last_error 5 s after breaking the queue: $(status_row db_l)"
  fi
  qe postgres "drop database db_l" >/dev/null || fail l "drop database db_l failed"
fi

# ---------------------------------------------------------------------------------- c
if want c; then
  [ "$(q postgres "select 1 from pg_database where datname = 'db_a'")" = 1 ] || setup_db db_a
  qe db_a "select pgq.create_queue('qc'); select pgq.set_queue_config('qc', 'ticker_max_lag', '100 milliseconds');
           select pgq.set_queue_config('qc', 'rotation_period', '2 seconds');" >/dev/null
  wait_for 5 postgres "select exists (select 1 from pgq.worker_status() where database = 'db_a' and pid is not null)"
  start_consumer db_a qc cc
  start_producer db_a qc pc 300 5 20
  sleep 1.5   # some batches before the crash
  victim=$(ticker_pid db_a)
  log "c: SIGKILL ticker pid $victim"
  kill -KILL "$victim"
  # the postmaster reinitializes: wait for a new ticker and new ticks
  ok=0
  if wait_for 30 postgres "select exists (select 1 from pgq.worker_status() where database = 'db_a' and pid is not null and pid <> $victim and ticks > 0)"; then ok=1; fi
  pid_after=$(ticker_pid db_a)
  wait "$PROD_PID" 2>/dev/null
  drained=0; wait_drained db_a cc pc 30 && drained=1
  stop_consumer
  e=$(exactly_once db_a cc pc)
  crash_logged=$(grep -c "terminated by signal 9" "$PGHOST/server.log" || true)
  if [ "$ok" = 1 ] && [ "$drained" = 1 ] && [ -z "$e" ]; then
    pass c "SIGKILL of pid $victim (crash-restart logged: $crash_logged): new ticker pid $pid_after ticking; 1500 events received exactly once across it"
  else
    fail c "ticker back=$ok (now: $(status_row db_a)) drained=$drained [$e]"
  fi
  # a worker stopped by pg_terminate_backend exits with an error: the launcher restarts it
  victim=$(ticker_pid db_a)
  q postgres "select pg_terminate_backend($victim)" >/dev/null
  t0=$(now_ms)
  if wait_for 15 postgres "select exists (select 1 from pgq.worker_status() where database = 'db_a' and pid is not null and pid <> $victim)"; then
    pass c2 "pg_terminate_backend($victim): the launcher restarted the ticker after $(( $(now_ms) - t0 )) ms ($(status_row db_a))"
  else
    fail c2 "ticker not restarted 15 s after pg_terminate_backend($victim): $(status_row db_a)"
  fi
fi

# ---------------------------------------------------------------------------------- d
if want d; then
  [ "$(q postgres "select 1 from pg_database where datname = 'db_a'")" = 1 ] || setup_db db_a
  qe db_a "select pgq.create_queue('qd'); select pgq.set_queue_config('qd', 'ticker_idle_period', '100 milliseconds');" >/dev/null
  old=$(ticker_pid db_a)
  t0=$(max_tick db_a qd)
  if PGCTL -m fast -w -t 30 restart -l "$PGHOST/server.log" >/dev/null 2>&1; then
    if wait_for 10 db_a "select coalesce(max(tick_id), 0) > $t0 + 5 from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = 'qd'"; then
      pass d "after pg_ctl restart: ticker pid $old -> $(ticker_pid db_a), queue ticking again (tick $t0 -> $(max_tick db_a qd))"
      # never two tickers on one database: watch for 4 s (past the launcher's 2 s restart backoff)
      dups=""
      end=$(( $(now_ms) + 4000 ))
      while [ "$(now_ms)" -lt "$end" ]; do
        d=$(q postgres "select string_agg(datname || ':' || pids, ' ') from (select datname, string_agg(pid::text, ',') pids
                         from pg_stat_activity where backend_type = 'pgq ticker' group by datname having count(*) > 1) s")
        [ -n "$d" ] && dups="$d"
        sleep 0.1
      done
      if [ -z "$dups" ]; then
        pass d2 "after the restart: one ticker per database for 4 s ($(q postgres "select string_agg(datname || '=' || pid, ' ') from pg_stat_activity where backend_type = 'pgq ticker'"))"
      else
        fail d2 "two tickers on one database after the restart: $dups; worker_status: $(q postgres "select string_agg(database || ' pid=' || coalesce(pid::text, '-') || ' restarts=' || restarts, '; ') from pgq.worker_status() where worker = 'ticker'")"
      fi
    else
      fail d "no new ticks within 10 s of restart: $(status_row db_a)"
    fi
  else
    fail d "pg_ctl restart failed"
  fi
fi

# ---------------------------------------------------------------------------------- e
if want e; then
  setup_db db_e
  qe postgres "create database db_none" >/dev/null
  if wait_for 5 postgres "select (select count(*) from pgq.worker_status() where database = 'db_e' and pid is not null) = 1
                          and exists (select 1 from pg_stat_activity where backend_type = 'pgq ticker' and datname = 'db_e')"; then
    e_pid=$(ticker_pid db_e)
    others=$(q postgres "select string_agg(database || '=' || pid, ' ') from pgq.worker_status() where worker = 'ticker' and pid is not null")
    # db_none: probed (no_extension) or never started, and no worker stays there
    if wait_for 5 postgres "select coalesce((select no_extension and pid is null from pgq.worker_status() where database = 'db_none'), false)
                            and not exists (select 1 from pg_stat_activity where backend_type = 'pgq ticker' and datname = 'db_none')"; then
      tmpl=$(q postgres "select count(*) from pgq.worker_status() where database like 'template%'")
      dup=$(q postgres "select count(*) - count(distinct datname) from pg_stat_activity where backend_type = 'pgq ticker'")
      if [ "$tmpl" = 0 ] && [ "$dup" = 0 ]; then
        pass e "db_e has its own ticker ($others); db_none: $(status_row db_none) (no worker left); templates not probed; one ticker per database"
      else
        fail e "template rows in worker_status: $tmpl, databases with 2+ tickers: $dup ($(q postgres "select string_agg(coalesce(datname, '?') || ':' || pid || ':' || coalesce(application_name, ''), ' ') from pg_stat_activity where backend_type = 'pgq ticker'"))"
      fi
    else
      fail e "db_none still has a worker: $(status_row db_none)"
    fi
  else
    fail e "no ticker for db_e: $(status_row db_e)"
  fi
fi

# ---------------------------------------------------------------------------------- k
if want k; then
  if [ -x "$PGQD" ]; then
    [ "$(q postgres "select 1 from pg_database where datname = 'db_a'")" = 1 ] || setup_db db_a
    qe db_a "select pgq.create_queue('qk'); select pgq.set_queue_config('qk', 'ticker_max_lag', '50 milliseconds');
             select pgq.set_queue_config('qk', 'rotation_period', '1 second');" >/dev/null
    cat > "$WORK/pgqd.ini" <<EOF
[pgqd]
base_connstr = host=$PGHOST port=$PGPORT user=postgres
initial_database = postgres
logfile = $WORK/pgqd.log
pidfile = $WORK/pgqd.pid
syslog = 0
ticker_period = 0.1
maint_period = 1
retry_period = 1
check_period = 1
EOF
    "$PGQD" -q "$WORK/pgqd.ini" >/dev/null 2>&1 &
    PGQD_PID=$!; BG_PIDS+=("$PGQD_PID")
    start_consumer db_a qk ck 7
    start_producer db_a qk pk1 200 5 15 ; pk1=$PROD_PID
    start_producer db_a qk pk2 400 1 10 ; pk2=$PROD_PID
    wait "$pk1" "$pk2" 2>/dev/null
    drained=0; wait_drained db_a ck pk1 30 && wait_drained db_a ck pk2 30 && drained=1
    stop_consumer
    alive=0; kill -0 "$PGQD_PID" 2>/dev/null && alive=1
    kill "$PGQD_PID" 2>/dev/null; wait "$PGQD_PID" 2>/dev/null
    e=$(exactly_once db_a ck pk1)$(exactly_once db_a ck pk2)
    pgqd_err=$(grep -ciE "error|fatal" "$WORK/pgqd.log" 2>/dev/null || true)
    pgqd_ticks=$(grep -c "" "$WORK/pgqd.log" 2>/dev/null || true)
    wk_err=$(q postgres "select coalesce(last_error, '') from pgq.worker_status() where database = 'db_a'")
    # batches consistent: every tick's snapshot contains the previous one's xmax ordering
    order=$(q db_a "select count(*) from (select tick_id, txid_snapshot_xmax(tick_snapshot) x,
                     lag(txid_snapshot_xmax(tick_snapshot)) over (order by tick_id) px
                     from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = 'qk') s where x < px")
    if [ "$drained" = 1 ] && [ -z "$e" ] && [ "$alive" = 1 ] && [ "$pgqd_err" = 0 ] && [ -z "$wk_err" ] && [ "$order" = 0 ]; then
      pass k "pgqd (ticker_period 0.1 s, maint 1 s) + in-server ticker together: 1400 events (every 7th retried once) exactly once, snapshots in tick order, no errors (pgqd log lines: $pgqd_ticks)"
    else
      fail k "drained=$drained [$e] pgqd alive=$alive pgqd errors=$pgqd_err worker error='$wk_err' out-of-order ticks=$order; pgqd log: $(tail -5 "$WORK/pgqd.log" 2>/dev/null | tr '\n' ' ')"
    fi
  else
    fail k "$PGQD not found"
  fi
fi

# ---------------------------------------------------------------------------------- f
if want f; then
  qe postgres "create database db_f" >/dev/null
  qe db_f "create extension pgq; select pgq.create_queue('qf'); select pgq.set_queue_config('qf', 'ticker_idle_period', '1 millisecond');
                select pgq.set_queue_config('qf', 'ticker_max_lag', '0');" >/dev/null
  wait_for 5 postgres "select exists (select 1 from pgq.worker_status() where database = 'db_f' and ticks > 0)"
  nworkers=$(q postgres "select count(distinct datname) from pg_stat_activity where backend_type = 'pgq ticker'")
  q postgres "alter system set pgq.enabled = off" >/dev/null; q postgres "select pg_reload_conf()" >/dev/null
  t0=$(now_ms)
  if wait_for 10 postgres "select not exists (select 1 from pg_stat_activity where backend_type = 'pgq ticker')"; then
    off_ms=$(( $(now_ms) - t0 ))
    tk=$(max_tick db_f qf); sleep 1; tk2=$(max_tick db_f qf)
    q postgres "alter system reset pgq.enabled" >/dev/null; q postgres "select pg_reload_conf()" >/dev/null
    t0=$(now_ms)
    if wait_for 10 postgres "select count(distinct datname) >= $nworkers from pg_stat_activity where backend_type = 'pgq ticker'"; then
      on_ms=$(( $(now_ms) - t0 ))
      if [ "$tk" = "$tk2" ] && [ "$off_ms" -le 3000 ]; then
        pass f1 "pgq.enabled = off: $nworkers tickers gone in ${off_ms} ms, no ticks while off; on again: back in ${on_ms} ms"
      else
        fail f1 "off took ${off_ms} ms; ticks while off: $tk -> $tk2"
      fi
    else
      fail f1 "workers not back 10 s after pgq.enabled = on: $(q postgres "select count(distinct datname) from pg_stat_activity where backend_type = 'pgq ticker'") of $nworkers databases"
    fi
  else
    fail f1 "tickers still running 10 s after pgq.enabled = off"
    q postgres "alter system reset pgq.enabled" >/dev/null; q postgres "select pg_reload_conf()" >/dev/null
  fi
  # tick rate follows pgq.ticker_period (the queue ticks on every ticker run)
  rate() {  # ticks/s of qf over $1 s
    local a b; a=$(max_tick db_f qf); sleep "$1"; b=$(max_tick db_f qf)
    echo $(( (b - a) / $1 ))
  }
  wait_for 5 postgres "select exists (select 1 from pgq.worker_status() where database = 'db_f' and pid is not null)"
  sleep 0.5
  r1=$(rate 2)
  q postgres "alter system set pgq.ticker_period = '500ms'" >/dev/null; q postgres "select pg_reload_conf()" >/dev/null
  sleep 1
  r2=$(rate 4)
  q postgres "alter system reset pgq.ticker_period" >/dev/null; q postgres "select pg_reload_conf()" >/dev/null
  if [ "$r1" -ge 7 ] && [ "$r1" -le 12 ] && [ "$r2" -ge 1 ] && [ "$r2" -le 3 ]; then
    pass f2 "pgq.ticker_period 100ms -> 500ms by reload: $r1 -> $r2 ticks/s"
  else
    fail f2 "tick rate $r1/s at 100ms (want 7..12), $r2/s at 500ms (want 1..3)"
  fi
fi

# ---------------------------------------------------------------------------------- g
if want g; then
  [ "$(q postgres "select 1 from pg_database where datname = 'db_f'")" = 1 ] || {
    qe postgres "create database db_f" >/dev/null
    qe db_f "create extension pgq; select pgq.create_queue('qf')" >/dev/null; }
  wait_for 5 postgres "select exists (select 1 from pgq.worker_status() where database = 'db_f' and pid is not null)"
  fpid=$(ticker_pid db_f)
  t0=$(now_ms)
  if out=$(qe postgres "drop database db_f" 2>&1); then
    el=$(( $(now_ms) - t0 ))
    if [ "$el" -le 3000 ]; then pass g1 "DROP DATABASE db_f with its ticker (pid $fpid) running: ok in ${el} ms"
    else fail g1 "DROP DATABASE took ${el} ms"; fi
  else
    fail g1 "DROP DATABASE db_f failed: $out"
  fi
  [ "$(q postgres "select 1 from pg_database where datname = 'db_e'")" = 1 ] || setup_db db_e
  wait_for 5 postgres "select exists (select 1 from pgq.worker_status() where database = 'db_e' and pid is not null)"
  qe db_e "select pgq.create_queue('qe')" >/dev/null
  t0=$(now_ms)
  if out=$(qe postgres "create database db_copy template db_e" 2>&1); then
    el=$(( $(now_ms) - t0 ))
    if wait_for 10 postgres "select (select count(*) from pgq.worker_status() where database in ('db_e', 'db_copy') and pid is not null) = 2"; then
      qn=$(q db_copy "select count(*) from pgq.queue where queue_name = 'qe'")
      pass g2 "CREATE DATABASE db_copy TEMPLATE db_e (ticker running) ok in ${el} ms; db_copy got its own ticker, db_e's came back; queue copied ($qn)"
    else
      fail g2 "after CREATE DATABASE ... TEMPLATE: db_e $(status_row db_e); db_copy $(status_row db_copy)"
    fi
  else
    fail g2 "CREATE DATABASE db_copy TEMPLATE db_e failed: $out"
  fi
  epid=$(ticker_pid db_e)
  r0=$(q postgres "select restarts from pgq.worker_status() where database = 'db_e'")
  qe db_e "drop extension pgq cascade" >/dev/null 2>&1
  if wait_for 5 postgres "select not exists (select 1 from pg_stat_activity where backend_type = 'pgq ticker' and datname = 'db_e')"; then
    sleep 4   # several launcher rounds: it must not come back in a loop
    r1=$(q postgres "select restarts from pgq.worker_status() where database = 'db_e'")
    back=$(q postgres "select count(*) from pg_stat_activity where backend_type = 'pgq ticker' and datname = 'db_e'")
    if [ "${r1:-0}" -le $(( ${r0:-0} + 1 )) ] && [ "$back" = 0 ]; then
      pass g3 "DROP EXTENSION pgq: ticker $epid exited, none 4 s later; restarts ${r0:-0} -> ${r1:-none}; $(status_row db_e)"
    else
      fail g3 "restarts ${r0:-0} -> ${r1:-0}, tickers in db_e now: $back ($(status_row db_e))"
    fi
  else
    fail g3 "ticker of db_e still running 5 s after DROP EXTENSION"
  fi
  qe postgres "drop database db_copy" >/dev/null 2>&1 || fail g1 "DROP DATABASE db_copy failed"
fi

# -------------------------------------------------------------------- n, o, p, q helpers
# one_ticker_each: '' if every database with the extension has exactly one ticker
# process (pg_stat_activity) and worker_status agrees, else what is wrong
one_ticker_each() {
  local dbs d n bad=""
  dbs=$(q postgres "select string_agg(database, ' ') from pgq.worker_status() where worker = 'ticker' and not no_extension")
  for d in $dbs; do
    n=$(q postgres "select count(*) from pg_stat_activity where backend_type = 'pgq ticker' and datname = '$d'")
    [ "$n" = 1 ] || bad="$bad $d:$n"
  done
  n=$(q postgres "select count(*) - count(distinct datname) from pg_stat_activity where backend_type = 'pgq ticker'")
  [ "$n" = 0 ] || bad="$bad duplicates:$n"
  echo "${bad# }"
}
tickers_now() { q postgres "select string_agg(database || '=' || pid, ' ' order by database) from pgq.worker_status() where worker = 'ticker' and pid is not null"; }
# the test helper that starts a pgq entry point as a dynamic background worker
BGW_SO=$WORK/bgw_start.so
bgw_helper() {
  local inc; inc=$("$PG_BIN/pg_config" --includedir-server)
  # a relocated copy of the tree (scripts/install.sh PREFIX) has no headers: the
  # system's are the same version
  [ -f "$inc/postgres.h" ] || inc=$(/usr/lib/postgresql/15/bin/pg_config --includedir-server)
  [ -f "$BGW_SO" ] || gcc -fPIC -shared -O1 -I"$inc" "$HERE/bgw_start.c" -o "$BGW_SO" || return 1
  chmod 755 "$BGW_SO"
}
# start_bgw ENTRY ARG TYPE: the pid of a new worker running pgq's ENTRY(ARG)
start_bgw() {
  q postgres "create function pg_temp.start_bgw(text, int8, text) returns int4
                as '$BGW_SO', 'pgq_test_start_bgworker' language c strict;
              select pg_temp.start_bgw('$1', $2, '$3')"
}
# gone_within SECONDS PID: 0 once PID has exited
gone_within() {
  local end=$(( $(now_ms) + $1 * 1000 ))
  while [ "$(now_ms)" -lt "$end" ]; do kill -0 "$2" 2>/dev/null || return 0; sleep 0.05; done
  return 1
}

# ---------------------------------------------------------------------------------- n
if want n; then
  [ "$(q postgres "select 1 from pg_database where datname = 'db_a'")" = 1 ] || setup_db db_a
  wait_for 10 postgres "select exists (select 1 from pgq.worker_status() where database = 'db_a' and pid is not null)"
  lp0=$(q postgres "select pid from pg_stat_activity where backend_type = 'pgq launcher'")
  before=$(tickers_now)
  q postgres "select pg_terminate_backend($lp0)" >/dev/null
  # the postmaster restarts a launcher that exited with 1 after bgw_restart_time (5 s)
  if wait_for 15 postgres "select exists (select 1 from pg_stat_activity where backend_type = 'pgq launcher' and pid <> $lp0)"; then
    lp1=$(q postgres "select pid from pg_stat_activity where backend_type = 'pgq launcher'")
    sleep 2  # a launcher that started duplicates would have done so by now (naptime 1 s)
    after=$(tickers_now)
    dups=$(q postgres "select count(*) - count(distinct datname) from pg_stat_activity where backend_type = 'pgq ticker'")
    # the new launcher restarts a ticker it did not start itself
    victim=$(ticker_pid db_a)
    q postgres "select pg_terminate_backend($victim)" >/dev/null
    if [ "$before" = "$after" ] && [ "$dups" = 0 ] && wait_for 15 postgres "select exists (select 1 from pgq.worker_status() where database = 'db_a' and pid is not null and pid <> $victim)"; then
      pass n "launcher $lp0 terminated -> $lp1 started by the postmaster; tickers kept ($after), no duplicates; a ticker it did not start was restarted after pg_terminate_backend"
    else
      fail n "before: $before; after: $after; duplicates: $dups; db_a after terminating $victim: $(status_row db_a)"
    fi
  else
    fail n "no launcher 15 s after pg_terminate_backend($lp0)"
  fi
fi

# ---------------------------------------------------------------------------------- o
if want o; then
  [ "$(q postgres "select 1 from pg_database where datname = 'db_a'")" = 1 ] || setup_db db_a
  wait_for 10 postgres "select exists (select 1 from pgq.worker_status() where database = 'db_a' and pid is not null)"
  lp0=$(q postgres "select pid from pg_stat_activity where backend_type = 'pgq launcher'")
  before=$(tickers_now)
  # a query cancel is an ERROR at the launcher's next interrupt check: it exits with
  # 1 and the postmaster starts a new one after bgw_restart_time (5 s)
  q postgres "select pg_cancel_backend($lp0)" >/dev/null
  if wait_for 15 postgres "select exists (select 1 from pg_stat_activity where backend_type = 'pgq launcher' and pid <> $lp0)"; then
    sleep 2  # two naptimes: a launcher that started duplicates would have by now
    after=$(tickers_now); bad=$(one_ticker_each)
    erred=$(grep -c "pgq launcher: canceling statement due to user request (SQLSTATE 57014); exiting" "$PGHOST/server.log" || true)
    if [ "$before" = "$after" ] && [ -z "$bad" ] && [ "$erred" -ge 1 ]; then
      pass o "launcher $lp0 ended by an ERROR (query cancel) and came back; tickers kept ($after), one per database"
    else
      fail o "before: $before; after: $after; wrong: ${bad:-none}; ERROR in log: $erred"
    fi
  else
    fail o "no launcher 15 s after the ERROR in launcher $lp0"
  fi
fi

# ---------------------------------------------------------------------------------- p
if want p; then
  if bgw_helper >/dev/null; then
    lp0=$(q postgres "select pid from pg_stat_activity where backend_type = 'pgq launcher'")
    before=$(tickers_now)
    p2=$(start_bgw pgq_launcher_main 0 "pgq launcher")
    if [ -n "$p2" ] && gone_within 5 "$p2"; then
      sleep 1.5
      lp1=$(q postgres "select string_agg(pid::text, ' ') from pg_stat_activity where backend_type = 'pgq launcher'")
      after=$(tickers_now); bad=$(one_ticker_each)
      said=$(grep -c "another launcher (pid $lp0) is running" "$PGHOST/server.log" || true)
      if [ "$lp1" = "$lp0" ] && [ "$before" = "$after" ] && [ -z "$bad" ] && [ "$said" -ge 1 ]; then
        pass p "a second launcher ($p2) saw launcher $lp0 and exited; tickers kept ($after), one per database"
      else
        fail p "launchers now: $lp1 (was $lp0); tickers before: $before, after: $after; wrong: ${bad:-none}; logged: $said"
      fi
    else
      fail p "second launcher ${p2:-(not started)} still running 5 s later"
    fi
  else
    fail p "could not build the test helper tests/bgworker/bgw_start.c"
  fi
fi

# ---------------------------------------------------------------------------------- q
if want q; then
  [ "$(q postgres "select 1 from pg_database where datname = 'db_a'")" = 1 ] || setup_db db_a
  wait_for 10 postgres "select exists (select 1 from pgq.worker_status() where database = 'db_a' and pid is not null)"
  if bgw_helper >/dev/null; then
    tp=$(ticker_pid db_a)
    before=$(tickers_now)
    line=$(grep "pgq ticker for database \"db_a\" has started" "$PGHOST/server.log" | tail -1)
    slot=$(sed -n 's/.*(slot \([0-9]*\), generation \([0-9]*\)).*/\1/p' <<<"$line")
    gen=$(sed -n 's/.*(slot \([0-9]*\), generation \([0-9]*\)).*/\2/p' <<<"$line")
    t0=$(q postgres "select ticks from pgq.worker_status() where database = 'db_a'")
    started=""; ok=1
    # the live holder's own generation, then an older one
    for g in "$gen" "$((gen - 1))"; do
      p=$(start_bgw pgq_ticker_main "($slot::int8 << 32) | $g" "pgq ticker")
      started="$started $p"
      [ -n "$p" ] && gone_within 5 "$p" || ok=0
    done
    sleep 1
    after=$(tickers_now); bad=$(one_ticker_each)
    held=$(grep -c "not starting: database [0-9]* already has a ticker (pid $tp)" "$PGHOST/server.log" || true)
    stale=$(grep -c "not starting: started for slot $slot generation $((gen - 1)), which is now generation $gen" "$PGHOST/server.log" || true)
    t1=$(q postgres "select ticks from pgq.worker_status() where database = 'db_a'")
    if [ -n "$slot" ] && [ "$ok" = 1 ] && [ "$before" = "$after" ] && [ -z "$bad" ] \
       && [ "$held" -ge 1 ] && [ "$stale" -ge 1 ] && [ "$(ticker_pid db_a)" = "$tp" ]; then
      pass q "workers started for db_a's slot $slot (generation $gen: held by live $tp; $((gen - 1)): stale) refused and exited ($started); tickers kept ($after), ticks $t0 -> $t1"
    else
      fail q "slot=$slot gen=$gen started:$started exited:$ok before: $before after: $after wrong: ${bad:-none} held-logged: $held stale-logged: $stale"
    fi
  else
    fail q "could not build the test helper tests/bgworker/bgw_start.c"
  fi
fi

# ---------------------------------------------------------------------------------- h
if want h; then
  pids=$(q postgres "select string_agg(pid::text, ' ') from pg_stat_activity where backend_type like 'pgq%'")
  pm=$(head -1 "$PGDATA_DIR/postmaster.pid")
  t0=$(now_ms)
  kill -TERM "$pm"
  gone_ms=""
  while [ $(( $(now_ms) - t0 )) -lt 10000 ]; do
    alive=0; for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    if [ "$alive" = 0 ] && [ -z "$gone_ms" ]; then gone_ms=$(( $(now_ms) - t0 )); fi
    kill -0 "$pm" 2>/dev/null || break
    sleep 0.02
  done
  pm_ms=$(( $(now_ms) - t0 ))
  if [ -n "$gone_ms" ] && [ "$gone_ms" -le 1000 ] && [ "$pm_ms" -le 3000 ]; then
    pass h "fast shutdown: pgq workers ($(echo $pids | wc -w)) gone in ${gone_ms} ms, postmaster exited in ${pm_ms} ms"
  else
    fail h "pgq workers gone after ${gone_ms:-never} ms, postmaster after ${pm_ms} ms"
  fi
  # wait for the pid file to disappear before reusing the data directory
  for _ in $(seq 100); do [ -f "$PGDATA_DIR/postmaster.pid" ] || break; sleep 0.05; done
fi

# ---------------------------------------------------------------------------------- i
if want i; then
  [ -f "$PGDATA_DIR/postmaster.pid" ] && PGCTL -m fast -w stop >/dev/null 2>&1
  if PGCTL -o "-b" -w -t 30 -l "$PGHOST/server-b.log" start >/dev/null 2>&1; then
    seen=0; n=0
    end=$(( $(now_ms) + 3000 ))   # three launcher naptimes
    while [ "$(now_ms)" -lt "$end" ]; do
      c=$(q postgres "select count(*) from pg_stat_activity where backend_type like 'pgq%' or application_name like 'pgq%'")
      [ "${c:-0}" != 0 ] && seen=1
      n=$((n + 1)); sleep 0.1
    done
    ws=$(q postgres "select count(*) from pgq.worker_status() where pid is not null")
    logged=$(grep -c "pgq launcher\|pgq ticker" "$PGHOST/server-b.log" || true)
    PGCTL -m fast -w stop >/dev/null 2>&1
    if [ "$seen" = 0 ] && [ "${ws:-0}" = 0 ] && [ "$logged" = 0 ]; then
      pass i "binary-upgrade mode (-b): no pgq backend in $n polls over 3 s, worker_status has no pids, no pgq worker in the log"
    else
      fail i "pgq backends seen=$seen worker_status pids=$ws log mentions=$logged"
    fi
  else
    fail i "could not start the server with -b: $(tail -5 "$PGHOST/server-b.log")"
  fi
fi

# ---------------------------------------------------------------------------------- m
if want m; then
  [ -f "$PGDATA_DIR/postmaster.pid" ] && PGCTL -m fast -w stop >/dev/null 2>&1
  if PGCTL -o "-c shared_preload_libraries=''" -w -t 30 -l "$PGHOST/server-m.log" start >/dev/null 2>&1; then
    qe postgres "create database db_m" >/dev/null
    msg=$(psql -X -q -d db_m -c "create extension pgq" 2>&1)
    qe db_m "select pgq.create_queue('qm'); select pgq.insert_event('qm', 't', 'x')" >/dev/null
    t=$(q db_m "select pgq.ticker('qm')")
    ws=$(q db_m "select count(*) from pgq.worker_status()")
    wk=$(q postgres "select count(*) from pg_stat_activity where backend_type like 'pgq%'")
    PGCTL -m fast -w stop >/dev/null 2>&1
    if echo "$msg" | grep -qiE "(WARNING|NOTICE).*shared_preload_libraries" && [ -n "$t" ] && [ "$ws" = 0 ] && [ "$wk" = 0 ]; then
      pass m "not preloaded: CREATE EXTENSION said: $(echo "$msg" | grep -iE 'WARNING|NOTICE' | head -1); manual pgq.ticker() works (tick $t); worker_status() empty"
    else
      fail m "message: [$msg] manual tick: [$t] worker_status rows: [$ws] pgq backends: [$wk]"
    fi
  else
    fail m "could not start without preload"
  fi
fi

echo
echo "==== bgworker scenarios ($(( $(date +%s) - T_START )) s)"
printf '%s\n' "${RESULTS[@]}"
if [ -s "$WORK/psql.err" ] && [ "$NFAIL" -gt 0 ]; then echo "---- psql errors:"; tail -20 "$WORK/psql.err"; fi
[ "$NFAIL" = 0 ]
