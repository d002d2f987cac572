#!/usr/bin/python3
"""A cascade administered with SQL calls only (driven by tests/sqladmin/run.sh).

No Python CLI, no `londiste worker`, no pgqd: every operation is one pgq_cascade call on
the node it concerns, and replication is the extension's in-server replay. The data is
compared (count + hash sum per table) on every node after each step.

Steps:
  1. CREATE EXTENSION pgq on every node; bad input before anything exists: NULL arguments, a location that is another
     database, an unreachable provider: clear errors (SQLSTATE), nothing created
  2. create_root / create_branch / create_leaf; bad input against the live cascade
     (already initialized, a leaf as provider, a taken node name, inside a transaction
     block): clear errors and
     every node unchanged (members, subscribers, node rows)
  3. add_table / add_seq on every node (the leaf creates a missing table from the
     provider's definition); a table without primary key and an unknown table refused;
     the replay workers copy; equal data
  4. pgbench load on the root; status from the leaf: nodes() (every node, type,
     provider, lag, tick, in-server replay pid, tables), members() (no password),
     tables(), seqs(); equal data
  5. pause the leaf from the root: the leaf stops at its tick while the root moves on;
     resume: it catches up
  6. change_provider: the leaf under the root under load, equal data, then back under
     the branch
  7. execute: a DDL script on the root reaches branch and leaf
  8. takeover (switchover) under load: the branch becomes root, the old root a branch
     under it (its in-server replay worker starts); writes on the new root reach every
     node; the old root refuses local writes
  9. takeover of a dead root: the current root (the former branch) is stopped; the old
     root takes over with i_dead; the leaf moves under it; writes reach the leaf
 10. resync on the leaf (rows deleted there by hand come back), remove_table and
     remove_seq on the leaf, drop_node of the leaf from the root
"""

import os
import re
import signal
import subprocess
import sys
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from cascadetest import *  # noqa: E402,F401,F403  (the shared multi-node helpers)

WATCH.append(check_no_external_workers)
ROOT = ['root']   # the current root's name (changes with takeover)


def call(node, fn, *args, **named):
    """pgq_cascade.<fn>(args, name => value) on node; returns (ret_code, ret_note)."""
    parts = ['%s'] * len(args) + ['%s => %%s' % k for k in named]
    sql = 'select * from pgq_cascade.%s(%s)' % (fn, ', '.join(parts))
    r = q(node, sql, list(args) + list(named.values()))
    log('  %s: %s -> %s' % (node, fn, r[0] if r else None))
    return r[0] if r else None


def refused(node, fn, args, sqlstate, label, dbname='digoal', in_block=False):
    """pgq_cascade.<fn>(args) on node must fail with sqlstate (in_block: inside a
    transaction block)."""
    con = pgqclient.connect(connstr(node).replace('dbname=digoal', 'dbname=' + dbname),
                            autocommit=not in_block)
    try:
        with con.cursor() as cur:
            cur.execute('select * from pgq_cascade.%s(%s)' % (fn, ', '.join(['%s'] * len(args))), args)
    except psycopg2.Error as e:
        if e.pgcode != sqlstate:
            fail('%s: %s failed with %s (%s), expected %s' % (label, fn, e.pgcode, str(e).strip(), sqlstate))
        log('  %s: refused with %s: %s' % (label, e.pgcode, str(e).strip().splitlines()[0]))
        return
    finally:
        con.close()
    fail('%s: %s%r succeeded' % (label, fn, tuple(args)))


def state_of(node):
    """What bad input must leave unchanged on a node."""
    return (q(node, 'select node_name, node_location, dead from pgq_node.get_queue_locations(%s) order by 1', [QUEUE]),
            q(node, 'select node_name, worker_name from pgq_node.get_subscriber_info(%s) order by 1', [QUEUE]),
            q(node, 'select node_type, node_name, provider_node from pgq_node.get_node_info(%s)', [QUEUE]),
            q(node, 'select consumer_name from pgq.get_consumer_info(%s) order by 1', [QUEUE])
            if q1(node, 'select count(*) from pgq.queue where queue_name = %s', [QUEUE]) else [])


def unchanged(before, label):
    for n, st in before.items():
        if state_of(n) != st:
            fail('%s: node %s changed: %s -> %s' % (label, n, st, state_of(n)))
    log('  %s: every node unchanged' % label)


def subscribers():
    return [n for n in NODES if n != ROOT[0] and n in ALIVE]


ALIVE = set(NODES)


def converge(label, nodes=None):
    tick = sync_point(ROOT[0])
    nodes = nodes or subscribers()
    wait_caught_up(tick, nodes, 120)
    compare_data(ROOT[0], nodes, label)


def all_ok(node):
    return table_states(node) and all(s == 'ok' for s in table_states(node).values())


# ---------------------------------------------------------------- steps

@step('create extension; bad input before anything exists: clear errors, nothing created')
def s_bad_before():
    for n in NODES:
        q(n, 'create extension pgq')
    before = {n: state_of(n) for n in NODES}
    refused('root', 'create_root', [None, 'root', connstr('root')], '22004', 'NULL queue')
    refused('root', 'create_root', [QUEUE, 'root', connstr('leaf')], '22023', 'location of another server')
    dead = 'host=127.0.0.1 port=%d dbname=digoal user=postgres connect_timeout=2' % free_port()
    refused('branch', 'create_branch', [QUEUE, 'branch', connstr('branch'), dead], '08001', 'unreachable provider')
    refused('branch', 'create_branch', [QUEUE, 'branch', connstr('branch'), connstr('root')], '55000',
            'provider without a node')
    unchanged(before, 'after the refused calls')


def free_port():
    import socket
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


@step('create_root / create_branch / create_leaf; bad input against the live cascade')
def s_create():
    call('root', 'create_root', QUEUE, 'root', connstr('root'))
    call('branch', 'create_branch', QUEUE, 'branch', connstr('branch'), connstr('root'))
    call('leaf', 'create_leaf', QUEUE, 'leaf', connstr('leaf'), connstr('branch'))
    for n, (typ, prov) in {'root': ('root', 'root'), 'branch': ('branch', 'root'),
                           'leaf': ('leaf', 'branch')}.items():
        info = node_info(n)
        if (info[0], info[2]) != (typ, prov):
            fail('%s is %s under %s' % (n, info[0], info[2]))
    lag = q1('root', 'select extract(epoch from queue_ticker_max_lag) from pgq.queue where queue_name = %s', [QUEUE])
    if float(lag) != 0.02:
        fail('the root queue ticker_max_lag is %ss, create_root gives 0.02s' % lag)
    wait_for('every node to know all members',
             lambda: all(len(q(n, 'select 1 from pgq_node.get_queue_locations(%s)', [QUEUE])) == 3
                         for n in NODES), 30)
    before = {n: state_of(n) for n in NODES}
    refused('root', 'create_root', [QUEUE, 'root', connstr('root')], '55000', 'already initialized')
    # a spare database on the leaf's server, with the extension, for attempts to join
    q('leaf', 'create database spare')
    spare = connstr('leaf').replace('dbname=digoal', 'dbname=spare')
    con = pgqclient.connect(spare, autocommit=True)
    pgqclient.rows(con, 'create extension pgq')
    con.close()
    refused('leaf', 'create_branch', [QUEUE, 'x1', spare, connstr('leaf')], '55000', 'a leaf as provider',
            dbname='spare')
    refused('leaf', 'create_branch', [QUEUE, 'branch', spare, connstr('root')], '42710', 'a taken node name',
            dbname='spare')
    refused('leaf', 'create_branch', [QUEUE, 'x2', spare, connstr('root')], '25001',
            'inside a transaction block', dbname='spare', in_block=True)
    unchanged(before, 'after the refused joins')


COPY_LINE = re.compile(r'pgq copy: node "([^"]+)": copied table (\S+): (\d+) rows, (\d+) bytes in (\d+) ms '
                       r'\(from node "([^"]+)"\)')
SYNC_LINE = re.compile(r'pgq replay: queue "[^"]+": table (\S+) \(wanna-sync:(\d+)\) syncs at tick (\d+)')
START_LINE = re.compile(r'pgq replay: node "[^"]+": table (\S+) goes to a copy worker '
                        r'\((\d+) of at most (\d+) copies\)')
HANDED_LINE = re.compile(r'pgq copy: table (\S+) of queue "[^"]+" is handed to the replay worker '
                         r'at (?:tick (\d+)|its position)')


def check_copies(node, offset, tables, sources):
    """Every table of tables was copied on node since log offset by a copy worker, from
    the node sources names (default the provider), and handed over through
    wanna-sync:T -> do-sync:C -> ok with T <= C, the copy worker's last tick C."""
    text, _ = log_lines(node, offset)
    copied = {m.group(2): m.group(6) for m in COPY_LINE.finditer(text)}
    synced = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in SYNC_LINE.finditer(text)}
    # at tick C after wanna-sync/do-sync, or (None) at once where the replay worker stood
    handed = {m.group(1): int(m.group(2)) if m.group(2) else None for m in HANDED_LINE.finditer(text)}
    for t in tables:
        want = sources.get(t, PROVIDER_OF[node])
        if copied.get(t) != want:
            fail('%s: %s copied from %r, expected from %r (copies logged: %s)' % (node, t, copied.get(t), want, copied))
        if want != PROVIDER_OF[node] and handed.get(t, 0) is None:
            fail('%s: %s, copied from %s (not the provider), was handed over without the tick hand-off' % (
                node, t, want))
        if t not in handed or (handed[t] is not None and (
                t not in synced or synced[t][1] != handed[t] or synced[t][0] > synced[t][1])):
            fail('%s: the hand-off of %s: wanna-sync/do-sync %s, handed over at %s' % (
                node, t, synced.get(t), handed.get(t)))
    # how many tables were in their copy at once (pgq.max_parallel_copies = 2), as the
    # replay worker counted them (from the table states) when it started each copy
    counts = [(int(m.group(2)), int(m.group(3))) for m in START_LINE.finditer(text)]
    peak = max((k for k, _ in counts), default=0)
    if any(m != 2 for _, m in counts):
        fail('%s: the copies started with another limit than pgq.max_parallel_copies = 2: %s' % (node, counts))
    if peak > 2 or (node == 'branch' and peak != 2):
        fail('%s: up to %d tables in their copy at once, expected %s' % (
            node, peak, '2' if node == 'branch' else 'at most 2'))
    log('  %s: copied %s by copy workers (from %s), up to %d at once, handed over at ticks %s' % (
        node, ', '.join(tables), ', '.join(sorted(set(copied[t] for t in tables))), peak,
        ', '.join(str(handed[t]) if handed[t] else 'its position' for t in tables)))


PROVIDER_OF = {'branch': 'root', 'leaf': 'branch'}


@step('add_table / add_seq everywhere (the leaf creates a missing table, copies one from the root); '
      'copy workers copy and hand over')
def s_tables():
    offsets = {n: log_size(n) for n in ('branch', 'leaf')}
    q('leaf', 'drop table digoal.user_logout_rec')
    q('root', 'create table digoal.nopk (a int)')
    refused('root', 'add_table', [QUEUE, 'digoal.nopk'], '42P16', 'a table without primary key')
    refused('branch', 'add_table', [QUEUE, 'digoal.nosuch'], '42P01', 'a table the provider does not replicate')
    for t in TABLES:
        call('root', 'add_table', QUEUE, t)
    for s in SEQS:
        call('root', 'add_seq', QUEUE, s)
    for n in ('branch', 'leaf'):
        if n == 'leaf':
            refused('leaf', 'add_table', [QUEUE, 'digoal.user_logout_rec'], '42P01',
                    'a missing table without i_create')
        for t in TABLES:
            if n == 'leaf' and t == 'digoal.user_logout_rec':
                call(n, 'add_table', QUEUE, t, i_create=True)
            elif n == 'leaf' and t == 'digoal.user_session':
                refused('leaf', 'add_table', [QUEUE, t, False, False, False, 'nosuch'], '42704',
                        'a copy_node that is no member')
                call(n, 'add_table', QUEUE, t, i_copy_node='root')
            else:
                call(n, 'add_table', QUEUE, t)
        if n == 'leaf':
            # dropping the table dropped its serial sequence; the one it had is made anew
            q('leaf', 'create sequence digoal.user_logout_rec_id_seq')
        for s in SEQS:
            call(n, 'add_seq', QUEUE, s)
    for n in ('branch', 'leaf'):
        wait_for('%s: every table ok (%s)' % (n, table_states(n)), lambda: all_ok(n), 120, 0.5)
    converge('after the copy')
    for n in ('branch', 'leaf'):
        check_copies(n, offsets[n], TABLES, {'digoal.user_session': 'root'} if n == 'leaf' else {})
        left = q1(n, "select count(*) from pgq_node.local_state where consumer_name like '%%.copy.%%'")
        if left:
            fail('%s: %d copy consumers left registered' % (n, left))
    for n in ('root', 'branch'):
        left = q1(n, "select count(*) from pgq.get_consumer_info(%s) where consumer_name like '%%.copy.%%'", [QUEUE])
        if left:
            fail('%s: %d copy consumers left on the queue' % (n, left))


@step('load on the root; status from the leaf: nodes(), members(), tables(), seqs()')
def s_status():
    p = pgbench('root', LOAD_SECONDS)
    time.sleep(2)
    rows = qdict('leaf', 'select * from pgq_cascade.nodes(%s)', [QUEUE])
    for r in rows:
        log('  nodes(): %s' % {k: v for k, v in r.items() if v is not None})
    byname = {r['node_name']: r for r in rows}
    if sorted(byname) != sorted(NODES):
        fail('nodes() shows %s' % sorted(byname))
    for n, (typ, prov) in {'root': ('root', None), 'branch': ('branch', 'root'),
                           'leaf': ('leaf', 'branch')}.items():
        r = byname[n]
        if r['node_type'] != typ or (prov and r['provider_node'] != prov):
            fail('nodes(): %s is %s under %s' % (n, r['node_type'], r['provider_node']))
        if r['error'] or r['lag'] is None or r['last_tick'] is None:
            fail('nodes(): %s: error %r, lag %r, last_tick %r' % (n, r['error'], r['lag'], r['last_tick']))
        if n != 'root' and (not r['in_server_replay'] or not r['replay_pid'] or r['tables_ok'] != 4):
            fail('nodes(): %s: replay %r pid %r tables %r' % (n, r['in_server_replay'], r['replay_pid'], r['tables_ok']))
    mem = q('leaf', 'select node_name, location, dead from pgq_cascade.members(%s) order by 1', [QUEUE])
    if [m[0] for m in mem] != sorted(NODES) or any(m[2] for m in mem):
        fail('members(): %s' % mem)
    tabs = q('leaf', 'select table_name, merge_state from pgq_cascade.tables(%s) where local', [QUEUE])
    if len(tabs) != 4 or any(t[1] != 'ok' for t in tabs):
        fail('tables(): %s' % tabs)
    seqs = q('leaf', 'select seq_name, local from pgq_cascade.seqs(%s)', [QUEUE])
    if sorted(s[0] for s in seqs if s[1]) != sorted(SEQS):
        fail('seqs(): %s' % seqs)
    n = wait_pgbench('root', p)
    log('  %d transactions on the root' % n)
    converge('after the load')


@step('pause the leaf from the root, then resume')
def s_pause():
    call('root', 'pause', QUEUE, 'leaf')
    wait_for('the leaf to acknowledge the pause',
             lambda: q1('leaf', 'select worker_paused and worker_uptodate from pgq_node.get_node_info(%s)', [QUEUE]), 10)
    held = node_info('leaf')[3]
    wait_pgbench('root', pgbench('root', 2))
    sync_point('root')
    time.sleep(1.5)
    if node_info('leaf')[3] != held:
        fail('the paused leaf moved from tick %s to %s' % (held, node_info('leaf')[3]))
    log('  the paused leaf stayed at tick %s' % held)
    call('root', 'resume', QUEUE, 'leaf')
    converge('after resume')


@step('change_provider: the leaf under the root under load, then back under the branch')
def s_change_provider():
    p = pgbench('root', 4)
    time.sleep(1)
    call('leaf', 'change_provider', QUEUE, 'root')
    if node_info('leaf')[2] != 'root':
        fail('leaf provider is %s' % node_info('leaf')[2])
    subs = [r[0] for r in q('branch', 'select node_name from pgq_node.get_subscriber_info(%s)', [QUEUE])]
    if 'leaf' in subs:
        fail('the branch still lists the leaf as subscriber')
    wait_pgbench('root', p, 4)
    converge('under the root')
    call('leaf', 'change_provider', QUEUE, 'branch')
    wait_pgbench('root', pgbench('root', 2))
    converge('back under the branch')


@step('execute: a DDL script on the root reaches branch and leaf')
def s_execute():
    call('root', 'execute', QUEUE, 'add_note.sql',
         '--*-- Local-Table: digoal.user_info\nalter table @digoal.user_info@ add column note text;')
    q('root', "update digoal.user_info set note = 'n' where userid < 10")
    converge('after execute')
    for n in NODES:
        if not q1(n, "select count(*) from information_schema.columns where table_schema = 'digoal' "
                     "and table_name = 'user_info' and column_name = 'note'"):
            fail('the column from the script is missing on %s' % n)


@step('takeover (switchover) under load: the branch becomes root')
def s_takeover():
    p = pgbench('root', 4)
    time.sleep(1)
    t = time.time()
    call('branch', 'takeover', QUEUE, 'root')
    log('  takeover took %.1fs' % (time.time() - t))
    try:
        wait_pgbench('root', p, 4, min_tx=1)
    except Failed as e:
        log('  the load on the old root ended with its writes refused (%s)' % str(e).splitlines()[0][:100])
    ROOT[0] = 'branch'
    wait_for('the old root to get an in-server replay worker', lambda: replay_pid('root'), 30)
    wait_for('the new root to have no replay worker', lambda: not replay_rows('branch') or
             not any(r.get('pid') for r in replay_rows('branch')), 30)
    if node_info('branch')[0] != 'root' or node_info('root')[:3:2] != ('branch', 'branch'):
        fail('after takeover: branch %s, root %s' % (node_info('branch'), node_info('root')))
    wait_pgbench('branch', pgbench('branch', 3))
    converge('writes on the new root', ['root', 'leaf'])
    before = checksums('root')
    try:
        q('root', "insert into digoal.user_login_rec (userid, login_time) values (1, now())")
    except psycopg2.Error as e:
        log('  the old root refuses a local write: %s' % str(e).strip().splitlines()[0])
    else:
        fail('the old root accepted a local write')
    if checksums('root') != before:
        fail('data on the old root changed')


@step('takeover of a dead root: the old root takes over again with i_dead')
def s_failover():
    subprocess.run(['sudo', '-u', 'postgres', os.path.join(PG_BIN, 'pg_ctl'), '-D', DIRS['branch'],
                    '-m', 'immediate', '-w', 'stop'], check=True, stdout=subprocess.DEVNULL)
    ALIVE.discard('branch')
    call('root', 'takeover', QUEUE, 'branch', i_dead=True)
    ROOT[0] = 'root'
    if node_info('root')[0] != 'root':
        fail('root is %s' % node_info('root')[0])
    if node_info('leaf')[2] != 'root':
        fail('the leaf is under %s' % node_info('leaf')[2])
    wait_pgbench('root', pgbench('root', 3))
    converge('writes on the promoted root', ['leaf'])


@step('resync on the leaf: the table is copied again; remove_table / remove_seq, drop_node')
def s_remove():
    q('leaf', "set session_replication_role = replica; delete from digoal.user_info where userid < 100")
    call('leaf', 'resync', QUEUE, 'digoal.user_info')
    wait_for('the leaf to copy user_info again', lambda: all_ok('leaf'), 60, 0.3)
    converge('after resync', ['leaf'])
    call('leaf', 'remove_table', QUEUE, 'digoal.user_logout_rec')
    call('leaf', 'remove_seq', QUEUE, 'digoal.user_logout_rec_id_seq')
    if 'digoal.user_logout_rec' in table_states('leaf'):
        fail('the table is still local on the leaf')
    call('root', 'drop_node', QUEUE, 'leaf')
    locs = [r[0] for r in q('root', 'select node_name from pgq_node.get_queue_locations(%s)', [QUEUE])]
    if 'leaf' in locs or q1('leaf', 'select count(*) from pgq_node.node_info where queue_name = %s', [QUEUE]):
        fail('the leaf is still known: root members %s' % locs)
    wait_for('the leaf replay worker to stop', lambda: not replay_pid('leaf'), 30)


def main():
    return run_steps('sqladmin scenario', 1, width=84,
                     on_failure=lambda n: '  %s pgq workers:\n%s' % (n, describe_workers(n)) if n in ALIVE else '')


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
