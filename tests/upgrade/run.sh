#!/bin/bash
# tests/upgrade/run.sh — extension versions and ALTER EXTENSION pgq UPDATE, against the
# tree at PG_BIN with this checkout installed (scripts/test.sh upgrade runs it).
#
# PREV is the version the current one updates from: the FROM of the one update script
# sql/pgq--FROM--<current>.sql (override with PREV=...). Its install script is frozen
# in sql/archive/pgq--PREV.sql and created here with the CURRENT library.
#
# Steps (each prints PASS/FAIL with a reason; exit status 1 if any failed):
#   files     the tree has every frozen install script and update script of the repo,
#             byte for byte (scripts/install.sh ships them), and an update path from
#             every frozen version to the current one
#   symbols   every C symbol ('MODULE_PATHNAME', '<fn>_wrapper') that a frozen install
#             script or an update script names exists in the installed pgq.so: an old
#             version whose SQL names a symbol the library lost can no longer be
#             created or even run between installing a new library and ALTER EXTENSION
#   catalog   catalog-diff.sh: updating from every frozen version gives exactly the
#             catalog (and data) of a fresh install
#   state     PREV with queues, consumers (one with an open batch), a cascade root
#             node, a londiste table and pending events; ALTER EXTENSION pgq UPDATE;
#             the state reads back the same, the open batch and every event are
#             delivered once, triggers still fire, and the catalog equals a fresh one
#   regress   the regress suite (tests/regress) on databases where the extension was
#             created as PREV and updated, instead of created fresh: each plain
#             `CREATE EXTENSION pgq;` of the suite becomes `CREATE EXTENSION pgq
#             VERSION 'PREV';` + `ALTER EXTENSION pgq UPDATE;` in a copy of the suite
#             (the expected output gets the same two lines, nothing else changes)
#   worker    a preloaded cluster with pgq.enabled on and PREV installed: the worker
#             logs one WARNING about the version mismatch, shows it in
#             pgq.worker_status(), and ticks nothing; after ALTER EXTENSION pgq UPDATE
#             ticking starts
#
# Env: PG_BIN, PREV, ONLY="files symbols ..." (a subset), KEEP_CLUSTERS=1.
set -Euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
export PG_BIN
ONLY=${ONLY:-}
source "$REPO/tests/lib/cluster.sh"

WORK=$(mktemp -d /tmp/pgq-upgrade-XXXXXX)
chmod 755 "$WORK"
RESULTS=()
NFAIL=0
cleanup() {
  cluster_stop_all
  [ -n "${KEEP_CLUSTERS:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

log() { echo "[$(date +%H:%M:%S)] $*"; }
pass() { RESULTS+=("PASS $1: $2"); echo "PASS $1: $2"; }
fail() { RESULTS+=("FAIL $1: $2"); echo "FAIL $1: $2"; NFAIL=$((NFAIL + 1)); }
want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }
# q DB SQL...: values (|-separated), stops at the first error (on stderr)
q() { local db=$1; shift; local a=(); for s in "$@"; do a+=(-c "$s"); done
      "$PG_BIN/psql" -X -Atq -v ON_ERROR_STOP=1 -d "$db" "${a[@]}"; }
now_ms() { date +%s%3N; }
wait_for() {  # SECONDS DB SQL: until SQL returns 't'
  local deadline=$(( $(now_ms) + $1 * 1000 ))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    [ "$(q "$2" "$3" 2>/dev/null)" = t ] && return 0
    sleep 0.1
  done
  return 1
}

SHARE=$("$PG_BIN/pg_config" --sharedir)/extension
SO=$("$PG_BIN/pg_config" --pkglibdir)/pgq.so
NEW=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" "$SHARE/pgq.control")
if [ -z "${PREV:-}" ]; then
  mapfile -t ups < <(cd "$REPO/sql" && ls pgq--*--"$NEW".sql 2>/dev/null)
  if [ ${#ups[@]} -ne 1 ]; then
    echo "upgrade: expected exactly one sql/pgq--FROM--$NEW.sql (found ${#ups[@]}); set PREV" >&2
    exit 1
  fi
  PREV=${ups[0]#pgq--}; PREV=${PREV%--"$NEW".sql}
fi
log "current version $NEW (library $SO), previous version $PREV"
[ -f "$REPO/sql/archive/pgq--$PREV.sql" ] \
  || { echo "upgrade: sql/archive/pgq--$PREV.sql is missing (freeze it: README)" >&2; exit 1; }

# ---------------------------------------------------------------------------
if want files; then
  bad=""
  for f in "$REPO"/sql/archive/pgq--*.sql "$REPO"/sql/pgq--*--*.sql; do
    cmp -s "$f" "$SHARE/${f##*/}" || bad="$bad ${f##*/}"
  done
  cluster_start upgrade-files "shared_preload_libraries = 'pgq'" "pgq.enabled = off" >/dev/null
  for f in "$REPO"/sql/archive/pgq--*.sql; do
    v=${f##*/pgq--}; v=${v%.sql}
    p=$(q postgres "SELECT path FROM pg_extension_update_paths('pgq') WHERE source = '$v' AND target = '$NEW'")
    [ -n "$p" ] || bad="$bad no-path-$v-to-$NEW"
  done
  cluster_stop_all
  if [ -z "$bad" ]; then
    pass files "archived install scripts and update scripts are installed as in the repo; every archived version has an update path to $NEW"
  else
    fail files "not installed as in the repo / no update path:$bad (scripts/install.sh)"
  fi
fi

# ---------------------------------------------------------------------------
if want symbols; then
  nm -D --defined-only "$SO" | awk '{print $3}' | sort -u > "$WORK/exported"
  missing=""
  for f in "$REPO"/sql/archive/pgq--*.sql "$REPO"/sql/pgq--*--*.sql; do
    for s in $(grep -o "'MODULE_PATHNAME', *'[A-Za-z0-9_]*'" "$f" | sed "s/.*, *'\(.*\)'/\1/" | sort -u); do
      # fmgr needs the function and its info record (pg_finfo_<symbol>, V1 convention)
      grep -qx "$s" "$WORK/exported" || missing="$missing ${f##*/}:$s"
      grep -qx "pg_finfo_$s" "$WORK/exported" || missing="$missing ${f##*/}:pg_finfo_$s"
    done
  done
  n=$(cat "$REPO"/sql/archive/pgq--*.sql | grep -o "'MODULE_PATHNAME', *'[A-Za-z0-9_]*'" | sort -u | wc -l)
  if [ -z "$missing" ] && [ "$n" -gt 0 ]; then
    pass symbols "all $n C symbols the archived versions name are exported by pgq.so (with their pg_finfo_ records)"
  else
    fail symbols "symbols named by old SQL but missing from pgq.so (keep them exported: README, Versions and upgrades):$missing"
  fi
fi

# ---------------------------------------------------------------------------
if want catalog; then
  cluster_start upgrade-catalog "shared_preload_libraries = 'pgq'" "pgq.enabled = off" >/dev/null
  if REUSE_CLUSTER=1 "$HERE/catalog-diff.sh" > "$WORK/catalog.out" 2>&1; then
    pass catalog "$(grep -c identical "$WORK/catalog.out") update path(s) give a fresh install's catalog: $(grep identical "$WORK/catalog.out" | sed 's/catalog-diff: //' | tr '\n' ' ')"
  else
    cat "$WORK/catalog.out"
    fail catalog "an update differs from a fresh install (see above)"
  fi
  cluster_stop_all
fi

# ---------------------------------------------------------------------------
# the state a running cascade node has; read before and after the update
snapshot() {  # DB FILE
  q "$1" \
    "SELECT 'versions', pgq.version(), pgq_node.version(), londiste.version(), pgq_ext.version(), pgq_coop.version()" \
    "SELECT 'queue', queue_name, queue_ntables, queue_cur_table, queue_event_seq, queue_tick_seq FROM pgq.queue ORDER BY 2" \
    "SELECT 'consumer', queue_name, consumer_name, last_tick, current_batch, next_tick, pending_events FROM pgq.get_consumer_info() ORDER BY 2, 3" \
    "SELECT 'tick', tick_queue, tick_id, tick_event_seq FROM pgq.tick ORDER BY 2, 3" \
    "SELECT 'node', * FROM pgq_node.get_node_info('nq')" \
    "SELECT 'location', * FROM pgq_node.get_queue_locations('nq') ORDER BY 2" \
    "SELECT 'subscriber', * FROM pgq_node.get_subscriber_info('nq') ORDER BY 2" \
    "SELECT 'table', * FROM londiste.get_table_list('nq') ORDER BY 2" \
    "SELECT 'trigger', tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'public.ut'::regclass ORDER BY 2" \
    "SELECT 'coop', sub_consumer, sub_batch FROM pgq.subscription s JOIN pgq.consumer c ON c.co_id = s.sub_consumer WHERE c.co_name LIKE 'cc%' ORDER BY 2" \
    "SELECT 'open batch', ev_id, ev_type, ev_data FROM pgq.get_batch_events($OPEN_BATCH) ORDER BY 2" \
    > "$2"
}

if want state; then
  cluster_start upgrade-state "shared_preload_libraries = 'pgq'" "pgq.enabled = off" >/dev/null
  db=upg_state
  q postgres "CREATE DATABASE $db" "CREATE DATABASE upg_fresh" >/dev/null
  q upg_fresh "CREATE EXTENSION pgq" >/dev/null
  ok=1
  q $db "CREATE EXTENSION pgq VERSION '$PREV'" \
    "SELECT pgq.create_queue('uq')" \
    "SELECT pgq.set_queue_config('uq', 'ticker_max_count', '1')" \
    "SELECT pgq.register_consumer('uq', 'c_open')" \
    "SELECT pgq.register_consumer('uq', 'c_later')" \
    "SELECT pgq_coop.register_subconsumer('uq', 'cc', 's1')" \
    "SELECT pgq.insert_event('uq', 'e', 'ev1')" \
    "SELECT pgq.insert_event('uq', 'e', 'ev2')" \
    "SELECT pgq.ticker()" \
    "SELECT pgq.insert_event('uq', 'e', 'ev3')" \
    "SELECT pgq.ticker()" \
    "SELECT * FROM pgq_node.register_location('nq', 'n1', 'dbname=$db', false)" \
    "SELECT * FROM pgq_node.create_node('nq', 'root', 'n1', 'w1', NULL, NULL, NULL)" \
    "CREATE TABLE public.ut (id int4 PRIMARY KEY, v text)" \
    "SELECT * FROM londiste.local_add_table('nq', 'public.ut')" \
    "INSERT INTO public.ut VALUES (1, 'one')" \
    > "$WORK/setup.out" 2>&1 || { ok=0; fail state "setting up $PREV with the current library failed: $(tail -3 "$WORK/setup.out")"; }
  if [ $ok = 1 ]; then
    OPEN_BATCH=$(q $db "SELECT pgq.next_batch('uq', 'c_open')")
    in_open=$(q $db "SELECT string_agg(ev_data, ',' ORDER BY ev_id) FROM pgq.get_batch_events($OPEN_BATCH)")
    q $db "SELECT pgq.insert_event('uq', 'e', 'ev4')" >/dev/null   # pending, not ticked yet
    ver_before=$(q $db "SELECT extversion FROM pg_extension WHERE extname = 'pgq'")
    snapshot $db "$WORK/before.txt"
    if ! q $db "ALTER EXTENSION pgq UPDATE" > "$WORK/update.out" 2>&1; then
      fail state "ALTER EXTENSION pgq UPDATE from $PREV failed: $(cat "$WORK/update.out")"
    else
      ver_after=$(q $db "SELECT extversion FROM pg_extension WHERE extname = 'pgq'")
      snapshot $db "$WORK/after.txt"
      why=""
      [ "$ver_before" = "$PREV" ] && [ "$ver_after" = "$NEW" ] || why="$why extversion $ver_before -> $ver_after;"
      [ -s "$WORK/update.out" ] && why="$why the update printed: $(cat "$WORK/update.out");"
      grep -q "^open batch|" "$WORK/before.txt" || why="$why the open batch had no events;"
      grep -q "^table|public.ut|" "$WORK/before.txt" || why="$why no londiste table;"
      grep -q "^node|" "$WORK/before.txt" || why="$why no node info;"
      diff "$WORK/before.txt" "$WORK/after.txt" > "$WORK/state.diff" || why="$why state changed: $(head -c 600 "$WORK/state.diff");"
      # the open batch finishes; every event reaches each consumer exactly once
      got=$(q $db "CREATE FUNCTION public.drain(q text, c text) RETURNS SETOF text LANGUAGE plpgsql AS \$\$
                   DECLARE b int8; BEGIN LOOP b := pgq.next_batch(q, c); EXIT WHEN b IS NULL;
                   RETURN QUERY SELECT ev_data FROM pgq.get_batch_events(b) ORDER BY ev_id;
                   PERFORM pgq.finish_batch(b); END LOOP; END \$\$" \
               "SELECT pgq.finish_batch($OPEN_BATCH)" \
               "DO \$\$ BEGIN PERFORM pgq.ticker(); END \$\$" \
               "SELECT '$in_open' || ',' || string_agg(d, ',') FROM public.drain('uq', 'c_open') d" \
               "SELECT string_agg(d, ',') FROM public.drain('uq', 'c_later') d" 2>&1 | tr '\n' ' ')
      [ "$got" = "1 ev1,ev2,ev3,ev4 ev1,ev2,ev3,ev4 " ] \
        || why="$why events after the update: '$got' (want: finish_batch 1, then c_open: the open batch + the rest, c_later: all, in order);"
      # the londiste trigger created by $PREV still queues changes
      ntrg=$(q $db "INSERT INTO public.ut VALUES (2, 'two')" \
               "SELECT count(*) FROM pgq.event_template e JOIN pgq.queue q ON e.tableoid::regclass::text LIKE q.queue_data_pfx || '%'
                 WHERE q.queue_name = 'nq' AND e.ev_type LIKE 'I:%'" 2>&1)
      [ "$ntrg" = 2 ] || why="$why londiste trigger events on nq: $ntrg (want 2);"
      "$PG_BIN/psql" -X -Atq -v ON_ERROR_STOP=1 -d $db -f "$HERE/catalog.sql" > "$WORK/cat-updated.txt"
      "$PG_BIN/psql" -X -Atq -v ON_ERROR_STOP=1 -d upg_fresh -f "$HERE/catalog.sql" > "$WORK/cat-fresh.txt"
      diff "$WORK/cat-updated.txt" "$WORK/cat-fresh.txt" > "$WORK/cat.diff" \
        || why="$why catalog of the updated node differs from a fresh one: $(head -c 600 "$WORK/cat.diff");"
      if [ -z "$why" ]; then
        pass state "$PREV -> $NEW with $(wc -l < "$WORK/before.txt") state rows unchanged; open batch $OPEN_BATCH and every event delivered once; londiste trigger works; catalog = fresh ($(wc -l < "$WORK/cat-fresh.txt") facts)"
      else
        fail state "$why"
      fi
    fi
  fi
  cluster_stop_all
fi

# ---------------------------------------------------------------------------
if want regress; then
  PGXS=$("$PG_BIN/pg_config" --pkglibdir)/pgxs
  suite=$WORK/regress
  mkdir -p "$suite"
  cp -r "$REPO/tests/regress/sql" "$REPO/tests/regress/expected" "$suite/"
  # every `CREATE EXTENSION pgq;` on a line of its own creates PREV and updates it,
  # except the one of 01_pgq_init that checks that a second CREATE fails
  from="CREATE EXTENSION pgq VERSION '$PREV';\nALTER EXTENSION pgq UPDATE;"
  for d in sql expected; do
    ext=sql; [ $d = expected ] && ext=out
    for f in "$suite/$d"/*.$ext; do
      case "${f##*/}" in
        01_pgq_init.*) sed -i "0,/^CREATE EXTENSION pgq;\$/s//$from/" "$f" ;;
        *) sed -i "s/^CREATE EXTENSION pgq;\$/$from/" "$f" ;;
      esac
    done
  done
  n_sql=$(cat "$suite"/sql/*.sql | grep -c "^ALTER EXTENSION pgq UPDATE;$")
  n_out=$(cat "$suite"/expected/*.out | grep -c "^ALTER EXTENSION pgq UPDATE;$")
  CLUSTER_ENV="RUST_BACKTRACE=1" cluster_start upgrade-regress "shared_preload_libraries = 'pgq'" "pgq.enabled = off" >/dev/null
  q postgres "CREATE DATABASE pgq_regress" >/dev/null
  tests=$(cd "$suite/sql" && ls *.sql | sed 's/\.sql$//' | sort)
  if [ "$n_sql" -lt 1 ] || [ "$n_sql" != "$n_out" ]; then
    fail regress "the suite's CREATE EXTENSION lines were not all rewritten ($n_sql in sql, $n_out in expected)"
  elif "$PGXS/src/test/regress/pg_regress" --use-existing --host="$PGHOST" --port="$PGPORT" --user=postgres \
      --inputdir="$suite" --outputdir="$suite/results-run" --dbname=pgq_regress $tests > "$WORK/regress.out" 2>&1; then
    ran=$(cat "$suite"/results-run/results/*.out | grep -c "^ALTER EXTENSION pgq UPDATE;$")
    if [ "$ran" = "$n_sql" ]; then
      pass regress "$(grep -o 'All [0-9]* tests passed' "$WORK/regress.out") on $n_sql databases created as $PREV and updated to $NEW"
    else
      fail regress "the suite passed but ran $ran of $n_sql updates"
    fi
  else
    tail -5 "$WORK/regress.out"
    head -200 "$suite/results-run/regression.diffs" 2>/dev/null
    fail regress "the regress suite on updated databases: $(grep -E 'tests? failed' "$WORK/regress.out")"
  fi
  cluster_stop_all
fi

# ---------------------------------------------------------------------------
if want worker; then
  cluster_start upgrade-worker "shared_preload_libraries = 'pgq'" "pgq.enabled = on" "pgq.launcher_naptime = 1" >/dev/null
  db=upg_worker
  slog=$PGHOST/server.log
  pattern="pgq ticker: extension pgq is installed at version \"$PREV\" but the loaded library is version \"$NEW\""
  q postgres "CREATE DATABASE $db" >/dev/null
  why=""
  q $db "CREATE EXTENSION pgq VERSION '$PREV'" \
    "SELECT pgq.create_queue('wq')" \
    "SELECT pgq.set_queue_config('wq', 'ticker_max_count', '1')" \
    "SELECT pgq.insert_event('wq', 'e', 'w1')" > "$WORK/worker-setup.out" 2>&1 \
    || why="setting up $PREV failed: $(tail -2 "$WORK/worker-setup.out");"
  ticks0=$(q $db "SELECT count(*) FROM pgq.tick")
  # the worker starts (launcher naptime 1 s), notices, and must then stay idle
  if ! wait_for 15 postgres "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pgq ticker' AND datname = '$db'"; then
    why="$why no ticker worker started for $db;"
  fi
  wait_for 10 $db "SELECT last_sqlstate = '55000' FROM pgq.worker_status() WHERE database = '$db'" \
    || why="$why worker_status shows no version mismatch: $(q $db "SELECT last_error, last_sqlstate FROM pgq.worker_status() WHERE database = '$db'" 2>&1);"
  sleep 4
  n_warn=$(grep -cF "$pattern" "$slog")
  [ "$n_warn" = 1 ] || why="$why $n_warn mismatch lines in the log (want 1);"
  grep -F "$pattern" "$slog" | grep -q "WARNING:" || why="$why the mismatch line is not a WARNING;"
  st=$(q $db "SELECT ticks || '|' || (last_error LIKE '%\"$PREV\"%\"$NEW\"%') FROM pgq.worker_status() WHERE database = '$db'" 2>&1)
  [ "$st" = "0|true" ] || why="$why worker_status while waiting: '$st' (want 0 ticks and the mismatch in last_error);"
  ticks1=$(q $db "SELECT count(*) FROM pgq.tick")
  [ "$ticks1" = "$ticks0" ] || why="$why ticked while the versions disagree ($ticks0 -> $ticks1 ticks);"
  q $db "ALTER EXTENSION pgq UPDATE" >/dev/null 2>&1 || why="$why ALTER EXTENSION pgq UPDATE failed;"
  if ! wait_for 10 $db "SELECT count(*) > $ticks0 FROM pgq.tick"; then
    why="$why no tick within 10 s of the update;"
  fi
  wait_for 5 $db "SELECT ticks > 0 FROM pgq.worker_status() WHERE database = '$db'" \
    || why="$why worker_status shows no ticks after the update;"
  grep -q "pgq ticker: extension pgq is at version \"$NEW\" now, the library's; ticking resumes" "$slog" \
    || why="$why no 'ticking resumes' line in the log;"
  n_warn=$(grep -cF "$pattern" "$slog")
  [ "$n_warn" = 1 ] || why="$why $n_warn mismatch lines in the log by the end (want 1);"
  if [ -z "$why" ]; then
    pass worker "$PREV SQL with the $NEW library: one WARNING, mismatch in worker_status, $ticks0 -> $ticks1 ticks while waiting; after the update the worker ticks ($(q $db "SELECT count(*) FROM pgq.tick") ticks)"
  else
    grep "pgq" "$slog" | tail -15
    fail worker "$why"
  fi
  cluster_stop_all
fi

echo "---- upgrade summary ($PREV -> $NEW)"
for r in "${RESULTS[@]}"; do echo "$r"; done
[ "$NFAIL" -eq 0 ]
