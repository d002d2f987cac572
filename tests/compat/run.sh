#!/bin/bash
# tests/compat/run.sh [PORT] — end-to-end compatibility test with the Python pgq library.
#
# Starts a throw-away PostgreSQL cluster from $PG_BIN (default: the system PostgreSQL 15,
# where this project is installed), runs `CREATE EXTENSION pgq`, and then, concurrently:
#   * producers: $N_EVENTS events (default 100,000) through pgq.insert_event (3- and
#     7-argument forms; non-ASCII, quotes, backslashes, JSON, empty/NULL/large payloads)
#     in a few hundred transactions from 2 sessions, plus one long transaction that stays
#     open across many ticks, plus rolled-back transactions and savepoints whose events
#     must never be delivered; every committed event is recorded in compat_sent;
#   * the original's ticker daemon, pgqd (Debian package pgqd): ticks every 20 ms, retry
#     mover and maintenance every 0.5 s (table rotation every $ROTATION_PERIOD, so the 3
#     event tables get rotated and truncated several times under the consumer: checked);
#   * consumer.py: a pgq.Consumer subclass (skytools DBScript, ini file) that drains the
#     queue, tags every ${RETRY_EVERY}th event for retry once, and stores what it receives
#     in compat_recv within the batch's transaction.
# Then it checks: every committed event received exactly once, with identical type,
# data, extras, ev_time and ev_txid (retried events are re-inserted by the retry mover, so
# they get a new ev_txid and carry ev_retry = 1); nothing from rolled-back work; pgqd ran
# to the end without an error in its log; the queue switched tables at least twice.
# Exits non-zero with a message on any difference. Takes ~10-30 s.
#
# Env: PG_BIN, PGQD (/usr/bin/pgqd), N_EVENTS, RETRY_EVERY (0 = off), ROTATION_PERIOD ('' = no rotation),
#      TIMEOUT (seconds for the consumer to finish), KEEP=1 keeps the work dir on failure,
#      EXTRA_CONF (postgresql.conf lines). Do not preload a library that ticks by itself:
#      pgqd is the only ticker here. PORT: the first port to try (default random).
set -Eeuo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PORT=${1:-}
PGQD=${PGQD:-/usr/bin/pgqd}
N_EVENTS=${N_EVENTS:-100000}
RETRY_EVERY=${RETRY_EVERY:-1000}
ROTATION_PERIOD=${ROTATION_PERIOD-1 second}
TIMEOUT=${TIMEOUT:-180}
PY=/usr/bin/python3
QUEUE=compat_q
LONG_TX=2000          # events of the long transaction (part of N_EVENTS)

source "$HERE/../lib/cluster.sh"

T0=$(date +%s)
log() { echo "[$(date +%H:%M:%S)] $*"; }
fail() { echo "COMPAT TEST FAILED: $*" >&2; exit 1; }

WORK=$(mktemp -d /tmp/pgq-compat-work-XXXXXX)
cleanup() {
  local rc=$?
  [ $rc -ne 0 ] && CLUSTER_LOG_ON_STOP=1
  cluster_stop_all
  if [ $rc -ne 0 ] && [ "${KEEP:-0}" = 1 ]; then
    echo "work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "COMPAT TEST FAILED: command at line $LINENO failed: $BASH_COMMAND" >&2' ERR

[ "$N_EVENTS" -gt $((LONG_TX * 2)) ] || fail "N_EVENTS must be > $((LONG_TX * 2))"
[ -x "$PGQD" ] || fail "$PGQD missing (Debian package pgqd; scripts/test.sh installs it)"

# ---------------------------------------------------------------- cluster and schema
ROTATE_SQL=
[ -n "$ROTATION_PERIOD" ] && ROTATE_SQL="select pgq.set_queue_config('$QUEUE', 'rotation_period', '$ROTATION_PERIOD');"
mapfile -t extra_conf < <(printf '%s\n' "${EXTRA_CONF:-}" | grep -v '^$' || true)
PORT_BASE=${PORT:-${PORT_BASE:-}} cluster_start compat "max_connections = 50" "${extra_conf[@]}"
log "cluster up: $(cluster_connstr compat)"
cluster_psql compat -o /dev/null <<SQL
create extension pgq;
select pgq.create_queue('$QUEUE');
select pgq.set_queue_config('$QUEUE', 'ticker_max_lag', '1 second');
$ROTATE_SQL

-- what the producers committed (same transaction as the insert_event call)
create table compat_sent (
  n int primary key, ev_id int8 not null unique, ev_txid int8, ev_time timestamptz,
  ev_type text, ev_data text, ev_extra1 text, ev_extra2 text, ev_extra3 text, ev_extra4 text);
-- what the consumer received (no keys on purpose: duplicates must be countable)
create table compat_recv (
  batch_id int8, ev_id int8, ev_time timestamptz, ev_txid int8, ev_retry int4,
  ev_type text, ev_data text, ev_extra1 text, ev_extra2 text, ev_extra3 text, ev_extra4 text);

-- deterministic, deliberately awkward event contents for event number n
create function compat_event(n int, out short bool, out t text, out d text,
                             out x1 text, out x2 text, out x3 text, out x4 text)
language sql immutable as \$\$
  with s(a) as (select array[
    'plain ascii payload',
    'single '' quote and '''' two of them',
    'double " quote, back\\slash \\\\ and a literal \\n',
    E'tab\\there, newline\\nand carriage\\rreturn',
    'Příliš žluťoučký kůň úpěl ďábelské ódy',
    'Ünïcödé — “typographic” ‘quotes’ … € ß',
    '日本語のテキスト, 中文, 한국어',
    '🐘 🚀 outside the BMP 𝄞',
    '{"json": true, "nested": {"k": "v\\u00e9"}, "arr": [1, 2.5, null]}',
    'id=17&name=foo%20bar&x=%C3%A4&empty=&null',
    'sql-ish: ''); drop table x; --',
    ' leading and trailing spaces ',
    'percent %s %d {} \$1 :name ?'])
  select abs(n) % 3 = 0,
         (array['I', 'U', 'D', 'json', 'ü:type', 'type with spaces', 'R:x'])[1 + abs(n) % 7],
         case when abs(n) % 101 = 0 then null
              when abs(n) % 89 = 0 then ''
              when abs(n) % 9973 = 0 then repeat(a[1 + abs(n) % 13] || ' ', 5000)
              when abs(n) % 997 = 0 then repeat(a[1 + abs(n) % 13], 200)
              else a[1 + abs(n) % 13] || ' #' || n end,
         case when abs(n) % 3 = 0 or abs(n) % 5 = 0 then null
              else 'public.table_' || abs(n) % 4 end,
         case when abs(n) % 3 = 0 then null else 'ž' || n end,
         case when abs(n) % 3 = 0 or abs(n) % 2 = 0 then null else a[1 + (abs(n) / 7) % 13] end,
         case when abs(n) % 3 = 0 or abs(n) % 7 <> 0 then null else '' end
  from s
\$\$;

-- produce events lo..hi in the caller's transaction, remember them in compat_sent
create function compat_produce(lo int, hi int) returns int language sql as \$\$
  insert into compat_sent
  select n,
         case when e.short then pgq.insert_event('$QUEUE', e.t, e.d)
              else pgq.insert_event('$QUEUE', e.t, e.d, e.x1, e.x2, e.x3, e.x4) end,
         txid_current(), now(), e.t, e.d, e.x1, e.x2, e.x3, e.x4
  from generate_series(lo, hi) n, compat_event(n) e;
  select hi - lo + 1
\$\$;
SQL

# ---------------------------------------------------------------- consumer registration
cat >"$WORK/consumer.ini" <<INI
[compat_consumer]
job_name = compat_consumer
db = $(cluster_connstr compat) application_name=compat_consumer
queue_name = $QUEUE
loop_delay = 0.1
exception_sleep = 1
recv_table = compat_recv
retry_every = $RETRY_EVERY
end_type = compat-end
idle_timeout = 60
INI
$PY "$HERE/consumer.py" "$WORK/consumer.ini" --register -q
[ "$(cluster_val compat "select count(*) from pgq.get_consumer_info('$QUEUE', 'compat_consumer')")" = 1 ] \
  || fail "consumer registration did not show up in pgq.get_consumer_info"

# ---------------------------------------------------------------- producer scripts
# Two sessions share events 1..(N-LONG_TX) in chunks of varied size; every 40th chunk is
# followed by a rolled-back transaction, every 25th uses a rolled-back savepoint.
# Negative event numbers are never committed.
main_n=$((N_EVENTS - LONG_TX))
sizes=(1 7 50 250 500 1000 120 3 333 1 64 400)
for p in 0 1; do
  lo=$(( p * main_n / 2 + 1 )); end=$(( (p + 1) * main_n / 2 )); k=0
  f="$WORK/producer$p.sql"
  : >"$f"
  while [ $lo -le $end ]; do
    hi=$(( lo + sizes[k % ${#sizes[@]}] - 1 )); [ $hi -gt $end ] && hi=$end
    if (( k % 25 == 24 )) && [ $hi -gt $lo ]; then
      mid=$(( (lo + hi) / 2 ))
      printf 'begin;\nselect compat_produce(%d, %d);\nsavepoint s;\nselect compat_produce(%d, %d);\nrollback to s;\nselect compat_produce(%d, %d);\ncommit;\n' \
        $lo $mid $(( -hi )) $(( -lo )) $((mid + 1)) $hi >>"$f"
    else
      printf 'select compat_produce(%d, %d);\n' $lo $hi >>"$f"
    fi
    if (( k % 40 == 39 )); then
      printf 'begin;\nselect compat_produce(%d, %d);\nrollback;\n' $(( -hi - 200 )) $(( -hi - 1 )) >>"$f"
    fi
    lo=$((hi + 1)); k=$((k + 1))
  done
done
cat >"$WORK/long.sql" <<SQL
begin;
select compat_produce($((main_n + 1)), $((main_n + LONG_TX / 2)));
select pg_sleep(4);
select compat_produce($((main_n + LONG_TX / 2 + 1)), $N_EVENTS);
commit;
SQL
ntx=$(grep -c -e '^select compat_produce' -e '^begin' "$WORK"/producer*.sql | awk -F: '{s+=$2} END {print s}')

# ---------------------------------------------------------------- run everything
log "starting pgqd and the consumer"
pgqd_start compat "$WORK" "initial_database = postgres" "database_list = postgres" \
  "ticker_period = 0.02" "retry_period = 0.5" "maint_period = 0.5" "check_period = 1" "stats_period = 1"
TICKER_PID=$PGQD_PID
pgqd_died() {
  cat "$WORK/pgqd-compat.out" "$WORK/pgqd-compat.log" >&2 2>/dev/null || true
  fail "pgqd ($PGQD) exited during the run"
}
# every table switch of the queue (maint_rotate_tables_step1 sets queue_switch_time)
( while :; do
    cluster_val compat "select queue_switch_time from pgq.queue where queue_name = '$QUEUE'" || true
    sleep 0.2
  done ) >"$WORK/switches" 2>/dev/null &
cluster_bg $!
$PY "$HERE/consumer.py" "$WORK/consumer.ini" 2>"$WORK/consumer.log" &
CONSUMER_PID=$!; cluster_bg "$CONSUMER_PID"

log "producing $N_EVENTS events (~$ntx statements/transactions in 2 sessions + 1 long transaction)"
PROD_PIDS=()
for f in "$WORK/long.sql" "$WORK/producer0.sql" "$WORK/producer1.sql"; do
  cluster_psql compat -o /dev/null -f "$f" 2>"$f.err" &
  PROD_PIDS+=($!); cluster_bg $!
done
for i in "${!PROD_PIDS[@]}"; do
  wait "${PROD_PIDS[$i]}" || { cat "$WORK"/*.sql.err >&2; fail "a producer session failed"; }
done
cluster_val compat "select pgq.insert_event('$QUEUE', 'compat-end', 'end marker')" >/dev/null
log "producers done after $(( $(date +%s) - T0 )) s; waiting for the consumer"

deadline=$(( $(date +%s) + TIMEOUT ))
while kill -0 "$CONSUMER_PID" 2>/dev/null; do
  kill -0 "$TICKER_PID" 2>/dev/null || pgqd_died
  [ "$(date +%s)" -lt $deadline ] || {
    tail -n 20 "$WORK/consumer.log" >&2
    fail "consumer did not finish within $TIMEOUT s ($(cluster_val compat 'select count(*) from compat_recv') rows received)"; }
  sleep 0.5
done
crc=0; wait "$CONSUMER_PID" || crc=$?
kill -0 "$TICKER_PID" 2>/dev/null || pgqd_died
cluster_bg_stop   # pgqd, the switch sampler, the finished consumer and producers
switches=$(( $(sort -u "$WORK/switches" | grep -c .) - 1 ))
pgqd_err=$(grep -iE "error|fatal|warning" "$WORK/pgqd-compat.log" "$WORK/pgqd-compat.out" || true)
# pgqd logs {ticks: N, maint: N, retry: N} for each stats_period: the run's totals
echo "pgqd: $(grep -o '{ticks: .*}' "$WORK/pgqd-compat.log" | tr -d '{},:' |
  awk '{t += $2; m += $4; r += $6} END {printf "%d ticks, %d maintenance runs, %d retry runs", t, m, r}'); queue switched tables $switches times"
if [ $crc -ne 0 ]; then
  echo "---- consumer log ----" >&2; tail -n 40 "$WORK/consumer.log" >&2
  fail "consumer exited with status $crc"
fi
[ -z "$pgqd_err" ] || fail "pgqd logged errors: $pgqd_err"
[ -z "$ROTATION_PERIOD" ] || [ "$switches" -ge 2 ] \
  || fail "the queue switched tables $switches times (want >= 2 with rotation_period $ROTATION_PERIOD)"
grep -E 'consumed [0-9]+ events' "$WORK/consumer.log" | sed 's/^.*INFO /consumer: /' || true

# ---------------------------------------------------------------- verification
log "verifying"
report=$(cluster_psql compat -At -F ' ' <<SQL
select 'sent', count(*) from compat_sent;
select 'sent_ok', count(*) from compat_sent where n between 1 and $N_EVENTS;
select 'received', count(*) from compat_recv;
select 'batches', count(distinct batch_id) from compat_recv;
select 'missing', count(*) from compat_sent s where not exists (select 1 from compat_recv r where r.ev_id = s.ev_id);
select 'unexpected', count(*) from compat_recv r where not exists (select 1 from compat_sent s where s.ev_id = r.ev_id);
select 'duplicated', count(*) from (select ev_id from compat_recv group by 1 having count(*) > 1) d;
select 'mismatched', count(*) from compat_sent s join compat_recv r using (ev_id)
 where (s.ev_type, s.ev_data, s.ev_extra1, s.ev_extra2, s.ev_extra3, s.ev_extra4, s.ev_time, s.ev_txid)
       is distinct from
       (r.ev_type, r.ev_data, r.ev_extra1, r.ev_extra2, r.ev_extra3, r.ev_extra4, r.ev_time,
        case when r.ev_retry is null then r.ev_txid else s.ev_txid end);
select 'bad_retry', count(*) from compat_recv
 where ev_retry is distinct from (case when $RETRY_EVERY > 0 and ev_id % greatest($RETRY_EVERY, 1) = 0 then 1 end);
select 'retried', count(*) from compat_recv where ev_retry = 1;
select 'open_batch', count(*) from pgq.get_consumer_info('$QUEUE', 'compat_consumer') where current_batch is not null;
SQL
)
declare -A R
while read -r k v; do R[$k]=$v; done <<<"$report"
echo "$report" | sed 's/^/  /'

problems=()
[ "${R[sent]}" = "$N_EVENTS" ] && [ "${R[sent_ok]}" = "$N_EVENTS" ] \
  || problems+=("producers committed ${R[sent]} events, expected $N_EVENTS (test setup problem)")
[ "${R[received]}" = "$N_EVENTS" ] || problems+=("received ${R[received]} rows, expected $N_EVENTS")
[ "${R[missing]}" = 0 ] || problems+=("${R[missing]} committed events never delivered")
[ "${R[unexpected]}" = 0 ] || problems+=("${R[unexpected]} delivered events were never committed (rolled back?)")
[ "${R[duplicated]}" = 0 ] || problems+=("${R[duplicated]} events delivered more than once")
[ "${R[mismatched]}" = 0 ] || problems+=("${R[mismatched]} events differ in type/data/extras/time/txid")
[ "${R[bad_retry]}" = 0 ] || problems+=("${R[bad_retry]} events with a wrong ev_retry")
[ "${R[open_batch]}" = 0 ] || problems+=("the consumer still has an open batch")

if [ ${#problems[@]} -gt 0 ]; then
  cluster_psql compat -c "select 'missing' what, s.n, s.ev_id, left(s.ev_data, 40) data from compat_sent s
                   where not exists (select 1 from compat_recv r where r.ev_id = s.ev_id) order by ev_id limit 5" \
             -c "select 'mismatch' what, s.ev_id, left(s.ev_data, 30) sent, left(r.ev_data, 30) recv,
                        s.ev_type st, r.ev_type rt, s.ev_time = r.ev_time same_time, s.ev_txid = r.ev_txid same_txid
                   from compat_sent s join compat_recv r using (ev_id)
                  where (s.ev_type, s.ev_data, s.ev_extra1, s.ev_extra2, s.ev_extra3, s.ev_extra4, s.ev_time, s.ev_txid)
                        is distinct from
                        (r.ev_type, r.ev_data, r.ev_extra1, r.ev_extra2, r.ev_extra3, r.ev_extra4, r.ev_time,
        case when r.ev_retry is null then r.ev_txid else s.ev_txid end)
                  order by ev_id limit 5" >&2 || true
  for p in "${problems[@]}"; do echo "  - $p" >&2; done
  fail "${#problems[@]} check(s) failed (PG_BIN=$PG_BIN)"
fi
log "COMPAT TEST PASSED: $N_EVENTS events, ${R[batches]} batches, ${R[retried]} retried, $(( $(date +%s) - T0 )) s (PG_BIN=$PG_BIN)"
