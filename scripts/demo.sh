#!/bin/bash
# demo.sh — the README's demo command: the seed cascade replicated by the server
# itself, administered with SQL calls only (no Python CLI, no londiste worker, no
# pgqd).
#
# It sets everything up (setup.sh), starts four throwaway PostgreSQL 15 clusters on
# free local ports (root, branch1, branch2, leaf; `pgq` preloaded), loads the seed
# workload's schema on each and its data on the root, and then, with pgq_cascade calls:
#   1. builds the cascade: root -> branch1 -> leaf, root -> branch2
#   2. subscribes the workload's four tables and two sequences on every node (the
#      in-server replay workers copy the data)
#   3. runs pgbench (the workload's login/logout) on the root, showing the status tree
#      with lag while it runs, then compares the leaf with its provider (lock-free)
#   4. moves the leaf under branch2 (change_provider), then lets branch1 take over the
#      root (takeover), and writes on the new root flow to every node
#   5. prints a summary; every cluster is stopped and removed at the end (also on
#      failure; KEEP_CLUSTERS=1 keeps their directories).
# Env: PG_BIN (default the system PostgreSQL 15), LOAD_SECONDS (default 15), ROWS
# (seed rows, default 100000), SKIP_SETUP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${SKIP_SETUP:-}" ] || scripts/setup.sh
export PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
LOAD_SECONDS=${LOAD_SECONDS:-15}
ROWS=${ROWS:-100000}
Q=replika
source tests/lib/cluster.sh
cluster_init
T0=$(date +%s)

declare -A LOC
CONF=(
  "shared_preload_libraries = 'pgq'"
  "max_worker_processes = 16"
  "pgq.ticker_period = '100ms'"
)
for n in root branch1 branch2 leaf; do
  cluster_start "demo-$n" "${CONF[@]}" >/dev/null
  as_pg "$PG_BIN/createdb" -h "$PGHOST" -p "$PGPORT" digoal
  rows=0; [ $n = root ] && rows=$ROWS
  as_pg "$PG_BIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d digoal -v rows=$rows \
    -f tests/workload/seed.sql >/dev/null
  LOC[$n]="host=127.0.0.1 port=$PGPORT dbname=digoal user=postgres"
  PORT_BASE=$((PGPORT + 1))
  echo "cluster $n: ${LOC[$n]}"
done

port_of() { local l=${LOC[$1]}; l=${l#*port=}; echo "${l%% *}"; }
# sql NODE STATEMENT...: show and run statements on a node
sql() {
  local node=$1; shift
  local s
  for s in "$@"; do echo "$node=> $s"; done
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(port_of "$node")" -d digoal \
    -P pager=off "${@/#/-c}"
}
val() { as_pg "$PG_BIN/psql" -X -qAt -h 127.0.0.1 -p "$(port_of "$1")" -d digoal -c "$2"; }
section() { echo; echo "==== $* ($(( $(date +%s) - T0 ))s)"; }
wait_until() {  # wait_until SECONDS WHAT NODE QUERY: poll until QUERY returns t
  local end=$(( $(date +%s) + $1 ))
  until [ "$(val "$3" "$4")" = t ]; do
    [ "$(date +%s)" -lt $end ] || { echo "demo: timed out waiting for $2" >&2; exit 1; }
    sleep 0.5
  done
}
status() {
  sql "$1" "select node_name, node_type, provider_node as provider, lag, last_tick,
                   paused, uptodate, replay_pid, tables_ok, error
              from pgq_cascade.nodes('$Q') order by node_type <> 'root', provider_node, node_name"
}
synced() {  # the node has applied the root's newest tick
  local tick; tick=$(val "$1" "select last_tick_id from pgq.get_queue_info('$Q')")
  wait_until 120 "$2 to reach tick $tick" "$2" \
    "select worker_last_tick >= $tick from pgq_node.get_node_info('$Q')"
}

section "1. the cascade: root -> branch1 -> leaf, root -> branch2"
for n in root branch1 branch2 leaf; do sql $n "create extension pgq" >/dev/null; done
sql root "select * from pgq_cascade.create_root('$Q', 'root', '${LOC[root]}')"
sql branch1 "select * from pgq_cascade.create_branch('$Q', 'branch1', '${LOC[branch1]}', '${LOC[root]}')"
sql branch2 "select * from pgq_cascade.create_branch('$Q', 'branch2', '${LOC[branch2]}', '${LOC[root]}')"
sql leaf "select * from pgq_cascade.create_leaf('$Q', 'leaf', '${LOC[leaf]}', '${LOC[branch1]}')"

section "2. tables and sequences on every node (the replay workers copy $ROWS rows per table)"
TABLES="digoal.user_info digoal.user_session digoal.user_login_rec digoal.user_logout_rec"
SEQS="digoal.user_login_rec_id_seq digoal.user_logout_rec_id_seq"
for n in root branch1 branch2 leaf; do
  for t in $TABLES; do sql $n "select * from pgq_cascade.add_table('$Q', '$t')" | grep -v "^$n=>" | tail -1; done
  for s in $SEQS; do val $n "select ret_note from pgq_cascade.add_seq('$Q', '$s')" >/dev/null; done
done
t_copy=$(date +%s)
for n in branch1 branch2 leaf; do
  wait_until 300 "the copy on $n" $n \
    "select bool_and(coalesce(merge_state = 'ok', false)) from pgq_cascade.tables('$Q') where local"
done
echo "every table copied and in replay on branch1, branch2 and leaf in $(( $(date +%s) - t_copy ))s"
sql leaf "select table_name, merge_state from pgq_cascade.tables('$Q') where local"

section "3. pgbench load on the root (${LOAD_SECONDS}s, 2 clients), status while it runs"
sed "s/random(1, 200000)/random(1, $ROWS)/" tests/workload/login.pgbench > /tmp/demo-login.$$.pgbench
sed "s/random(1, 200000)/random(1, $ROWS)/" tests/workload/logout.pgbench > /tmp/demo-logout.$$.pgbench
chmod 644 /tmp/demo-*.$$.pgbench
trap 'rm -f /tmp/demo-*.$$.pgbench; cluster_stop_all' EXIT
as_pg "$PG_BIN/pgbench" -n -c 2 -j 2 -T "$LOAD_SECONDS" -h 127.0.0.1 -p "$(port_of root)" \
  -U postgres -f /tmp/demo-login.$$.pgbench -f /tmp/demo-logout.$$.pgbench digoal \
  > /tmp/demo-pgbench.$$.out 2>&1 &
PGB=$!
cluster_bg $PGB
sleep $(( LOAD_SECONDS / 2 ))
status leaf
wait $PGB
TPS=$(grep -o 'tps = [0-9.]*' /tmp/demo-pgbench.$$.out | head -1 | cut -d' ' -f3)
rm -f /tmp/demo-pgbench.$$.out
echo "pgbench on the root: $TPS tps"
t_drain=$(date +%s)
val root "select pgq.force_tick('$Q')" >/dev/null
sleep 0.3
synced root leaf
echo "the leaf caught up with the root $(( $(date +%s) - t_drain ))s after the load ended"
status root
echo "compare (lock-free: the provider's data and the leaf's at the same tick):"
sql leaf "select table_name, tick_id, source_node, source_rows, local_rows, equal
            from pgq_cascade.compare('$Q')"

section "4a. change_provider: the leaf moves under branch2"
sql leaf "select * from pgq_cascade.change_provider('$Q', 'branch2')"
section "4b. takeover: branch1 becomes the root, the old root a branch under it"
sql branch1 "select * from pgq_cascade.takeover('$Q', 'root')"
echo "writes on the old root are refused now:"
sql root "insert into digoal.user_login_rec (userid, login_time) values (1, now())" 2>&1 | tail -1 || true
sql branch1 "insert into digoal.user_info (userid, engname, cnname, occupation, birthday, signname, email, qq, crt_time)
             values (1000001, 'demo', 'demo', 'demo', '2000-01-01', 'written on the new root', 'demo@example.com', 1, now())"
val branch1 "select pgq.force_tick('$Q')" >/dev/null
for n in root branch2 leaf; do
  wait_until 60 "the new row on $n" $n "select exists (select 1 from digoal.user_info where userid = 1000001)"
done
echo "the row written on branch1 (the new root) arrived on root, branch2 and leaf"
status leaf
sql leaf "select table_name, tick_id, source_node, local_rows, equal from pgq_cascade.compare('$Q')"

section "5. summary"
for n in root branch1 branch2 leaf; do
  printf '%-8s %s\n' "$n" "$(val $n "select string_agg(format('%s %s', c.relname, c.n), ', ' order by c.relname)
     from (select 'user_info' relname, count(*) n from digoal.user_info
           union all select 'user_session', count(*) from digoal.user_session
           union all select 'user_login_rec', count(*) from digoal.user_login_rec
           union all select 'user_logout_rec', count(*) from digoal.user_logout_rec) c")"
done
echo "root tps under replication: $TPS; the demo took $(( $(date +%s) - T0 ))s; stopping the clusters"
