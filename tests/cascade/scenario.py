#!/usr/bin/python3
"""The cascade compatibility scenario (driven by tests/cascade/run.sh).

The original Python `londiste` CLI administers three nodes of this extension — root,
branch, leaf, one cluster each — with no pgqd: the in-server ticker ticks whichever node
is root. Every step is checked with SQL against the nodes (row counts and checksums per
table, sequence values, node types and providers), never by reading logs.

Steps (each checked by SQL; a failing step fails the run and skips the rest):
create-root/-branch/-leaf; add-table + add-seq on every node; workers copy (wait-sync);
load on the root while change-provider moves the leaf under the root; compare on branch
and leaf; damage + compare + repair --apply; change-provider back under the branch;
status/members/tables/missing; subscribers refuse local writes; pause/resume; execute;
resync; seqs/node-info/node-status/wait-provider/wait-root; sqltriga/jsontriga tables
(add-table --create) and TRUNCATE; takeover (switchover) with load on the new root and
the old root refusing writes; drop-node; remove-table/remove-seq; failover
(takeover --dead-root).

Env (set by run.sh): WORK (work dir; ini files, logs, pid list), NODES ("root=PORT
branch=PORT leaf=PORT"), NODE_DIRS (data dirs, same form), PG_BIN (pgbench), WORKLOAD_DIR, ROWS, LOAD_SECONDS.
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


def start_worker(node):
    logf = open(os.path.join(WORK, node + '.worker.out'), 'a')
    p = subprocess.Popen(LONDISTE + [ini(node), 'worker'], stdout=logf, stderr=subprocess.STDOUT,
                         cwd=WORK)
    remember_pid(p.pid)
    PROCS['worker_' + node] = p


def check_workers():
    for name, p in PROCS.items():
        if name.startswith('worker_') and p.poll() is not None:
            node = name[len('worker_'):]
            fail('londiste worker on %s exited with %s; log tail:\n%s' % (
                node, p.returncode, tail(os.path.join(WORK, node + '.log'))))


WATCH.append(check_workers)


# ---------------------------------------------------------------- data checks











def check_same_data(root, others, label):
    return compare_data(root, others, label)


def check_seqs(root, others, label):
    for s in SEQS:
        real = q1(root, 'select last_value from %s' % s)
        published = q1(root, 'select last_value from londiste.seq_info where queue_name = %s '
                             'and seq_name = %s and local', [QUEUE, s])
        if published is None or published < real:
            fail('%s: %s on %s: published value %s below last_value %s' % (label, s, root, published, real))
        tbl = 'digoal.' + s.split('.')[1][:-len('_id_seq')]
        maxid = q1(root, 'select coalesce(max(id), 0) from %s' % tbl)
        for n in others:
            v = q1(n, 'select last_value from %s' % s)
            # forward-only setval to the published value; a refused local insert on a
            # subscriber may have taken one more value there
            if v < published:
                fail('%s: %s on %s is %s, root %s published %s' % (label, s, n, v, root, published))
            if v < maxid:
                fail('%s: %s on %s is %s, below max(id) %s' % (label, s, n, v, maxid))
    log('  %s: sequences at or above the published values on %s' % (label, ', '.join(others)))


def check_topology(expect, label):
    """expect: node -> (type, provider); a root's worker row points to the root itself"""
    for n, (typ, prov) in expect.items():
        info = node_info(n)
        if (info[0], info[2]) != (typ, prov):
            fail('%s: %s is %s with provider %s, expected %s with provider %s' % (
                label, n, info[0], info[2], typ, prov))
        locs = q(n, 'select node_name from pgq_node.get_queue_locations(%s) order by 1', [QUEUE])
        if [r[0] for r in locs] != sorted(NODES):
            fail('%s: %s knows members %s' % (label, n, locs))


def converge(root, others, label):
    tick = sync_point(root)
    wait_caught_up(tick, others)
    check_same_data(root, others, label)
    check_seqs(root, others, label)


def refuses_writes(node, label):
    """A replicated table must reject a local write on node; its data must stay as is."""
    before = checksums(node)
    for sql in ("insert into digoal.user_login_rec (userid, login_time) values (1, now())",
                "update digoal.user_session set login_count = login_count + 1 where userid = 1",
                "delete from digoal.user_info where userid = 2"):
        try:
            q(node, sql)
        except psycopg2.Error as e:
            log('  %s: %s refused: %s' % (label, sql.split()[0], str(e).strip().splitlines()[0]))
        else:
            fail('%s: %s accepted a local write: %s' % (label, node, sql))
    if checksums(node) != before:
        fail('%s: data on %s changed' % (label, node))


# ---------------------------------------------------------------- the scenario


@step('create-root, create-branch, create-leaf')
def s_create():
    for n in NODES:
        write_ini(n, 'parallel_copies = 2')
    londiste('root', 'create-root', 'root', connstr('root'))
    londiste('branch', 'create-branch', 'branch', connstr('branch'), '--provider=' + connstr('root'))
    # Queue tuning (as one would for pgqd too): tick at least every 200 ms while events
    # come and every second when idle, so the copy hand-off and compare, which wait for
    # ticks, are quick; rotate the event tables every 5 s, so the maintenance (rotation
    # held back by the subscribers' and watermark positions) runs many times under the
    # scenario. Also on the branch, for its time as root after takeover.
    for n in ('root', 'branch'):
        q(n, "select pgq.set_queue_config(%s, 'ticker_max_lag', '200 milliseconds'), "
             "pgq.set_queue_config(%s, 'ticker_idle_period', '1 second'), "
             "pgq.set_queue_config(%s, 'rotation_period', '5 seconds')", [QUEUE, QUEUE, QUEUE])
    londiste('leaf', 'create-leaf', 'leaf', connstr('leaf'), '--provider=' + connstr('branch'))
    check_topology({'root': ('root', 'root'), 'branch': ('branch', 'root'), 'leaf': ('leaf', 'branch')},
                   'create')


@step('add-table and add-seq on every node')
def s_add():
    for n in NODES:
        londiste(n, 'add-table', *TABLES)
        londiste(n, 'add-seq', *SEQS)
    for n in NODES:
        local = set(r[0] for r in q(n, 'select table_name from londiste.get_table_list(%s) where local', [QUEUE]))
        if local != set(TABLES):
            fail('%s: local tables %s' % (n, sorted(local)))
        seqs = set(r[0] for r in q(n, 'select seq_name from londiste.get_seq_list(%s) where local', [QUEUE]))
        if seqs != set(SEQS):
            fail('%s: local sequences %s' % (n, sorted(seqs)))
    # the root's triggers: a write there is an event in the queue
    trg = q1('root', "select count(*) from pg_trigger where tgname like '\\_londiste\\_%%' "
                     "and tgrelid::regclass::text like 'digoal.%%'")
    if trg != 2 * len(TABLES):
        fail('root: %s londiste triggers, expected %d' % (trg, 2 * len(TABLES)))


@step('londiste workers copy the tables (all ok, same data)')
def s_workers():
    for n in NODES:
        start_worker(n)
    londiste('leaf', 'wait-sync', timeout=240)   # returns when all the leaf's tables are ok
    if table_states('leaf') != {t: 'ok' for t in TABLES}:
        fail('wait-sync returned with leaf tables %s' % table_states('leaf'))
    for n in ('branch', 'leaf'):
        wait_for('all tables ok on %s' % n,
                 lambda: table_states(n) == {t: 'ok' for t in TABLES}, 180, 0.5)
    converge('root', ['branch', 'leaf'], 'after copy')


def subscribers(node):
    return [r[0] for r in q(node, 'select node_name from pgq_node.get_subscriber_info(%s) '
                                  'order by 1', [QUEUE])]


@step('load on root while change-provider moves the leaf from the branch to the root')
def s_change_provider():
    p = pgbench('root', LOAD_SECONDS)
    time.sleep(min(2, LOAD_SECONDS / 4))   # let some load through first (not a correctness wait)
    londiste('leaf', 'change-provider', '--provider=root')
    check_topology({'root': ('root', 'root'), 'branch': ('branch', 'root'), 'leaf': ('leaf', 'root')},
                   'leaf under root')
    if subscribers('root') != ['branch', 'leaf'] or subscribers('branch') != []:
        fail('subscribers: root %s, branch %s' % (subscribers('root'), subscribers('branch')))
    n = wait_pgbench('root', p)
    if n < 10:
        fail('pgbench did only %d transactions' % n)
    log('  %d login/logout transactions on root' % n)
    converge('root', ['branch', 'leaf'], 'after load')


@step('londiste compare on branch and leaf (both under the root)')
def s_compare():
    # Only while the leaf's provider is the root: `compare` on a node whose provider is a
    # branch pauses that branch and then waits for its own worker to get *past* the
    # branch's last tick, which cannot happen while the branch is paused — it gives up
    # after lock_timeout with "Consumer lagging too much". The original stack (pgqd +
    # PL/pgSQL pgq_node) fails the same way; see docs/cascade.md.
    for n in ('branch', 'leaf'):
        out = londiste(n, 'compare')
        pairs = re.findall(r'srcdb: (\d+ rows, checksum=-?\d+)\s.*?dstdb: (\d+ rows, checksum=-?\d+)',
                           out, re.S)
        if len(pairs) != len(TABLES) or any(a != b for a, b in pairs):
            fail('compare on %s: %s\n%s' % (n, pairs, out))
        if 'do not match' in out:
            fail('compare on %s reports a mismatch:\n%s' % (n, out))
    log('  compare: %d tables equal on branch and leaf' % len(TABLES))


@step('damage rows on the branch: compare notices, repair --apply fixes them')
def s_repair():
    con = pgqclient.connect(connstr('branch'), autocommit=True)
    cur = con.cursor()
    # as the replay does it: replica role, so no trigger fires and nothing is queued
    cur.execute("set session_replication_role = replica")
    cur.execute("update digoal.user_info set engname = 'damaged' where userid = 3")
    cur.execute("delete from digoal.user_info where userid = 4")
    cur.execute("insert into digoal.user_info (userid, engname) values (%s, 'extra')", [ROWS + 1])
    con.close()
    out = londiste('branch', 'compare', 'digoal.user_info', check=False)
    if 'do not match' not in out:
        fail('compare did not notice the damage:\n%s' % out)
    londiste('branch', 'repair', '--apply', 'digoal.user_info')
    converge('root', ['branch', 'leaf'], 'after repair')


@step('change-provider moves the leaf back under the branch; load reaches it there')
def s_change_back():
    londiste('leaf', 'change-provider', '--provider=branch')
    check_topology({'root': ('root', 'root'), 'branch': ('branch', 'root'), 'leaf': ('leaf', 'branch')},
                   'leaf back under branch')
    if subscribers('root') != ['branch'] or subscribers('branch') != ['leaf']:
        fail('subscribers: root %s, branch %s' % (subscribers('root'), subscribers('branch')))
    n = wait_pgbench('root', pgbench('root', max(2, LOAD_SECONDS // 2)))
    log('  %d login/logout transactions on root' % n)
    converge('root', ['branch', 'leaf'], 'leaf under branch again')


@step('status, members, tables, missing')
def s_info():
    out = londiste('root', 'status')
    print(out)
    for n, typ in (('root', 'root'), ('branch', 'branch'), ('leaf', 'leaf')):
        if not re.search(r'\b%s \(%s\)' % (n, typ), out):
            fail('status does not show %s (%s):\n%s' % (n, typ, out))
    if out.count('Tables: 4/0/0') != 3:
        fail('status: expected Tables: 4/0/0 for every node:\n%s' % out)
    if 'failure' in out or 'ERR:' in out:
        fail('status shows an error:\n%s' % out)
    for n in NODES:
        out = londiste(n, 'members')
        for m in NODES:
            if not re.search(r'^%s\s+(False|f)\s+host=' % m, out, re.M):
                fail('members on %s does not list %s:\n%s' % (n, m, out))
        out = londiste(n, 'tables')
        for t in TABLES:
            if not re.search(r'^%s\s+ok\b' % re.escape(t), out, re.M):
                fail('tables on %s: %s not ok:\n%s' % (n, t, out))
        out = londiste(n, 'missing')
        # (on the root, `missing` also lists the added sequences: upstream's
        # local_show_missing does not exclude registered sequences there)
        for t in TABLES:
            if re.search(r'^\S+\s+%s\s*$' % re.escape(t), out, re.M):
                fail('missing on %s lists replicated table %s:\n%s' % (n, t, out))
    print(londiste('leaf', 'members'))
    print(londiste('leaf', 'tables'))
    print(londiste('root', 'missing'))


@step('leaf and branch refuse local writes to replicated tables')
def s_refuse_sub():
    refuses_writes('leaf', 'leaf')
    refuses_writes('branch', 'branch')


@step('pause and resume the leaf: nothing applied while paused, all after resume')
def s_pause():
    londiste('leaf', 'pause')
    st = q('leaf', 'select paused, uptodate from pgq_node.get_consumer_state(%s, %s)', [QUEUE, 'worker_leaf'])
    if st != [(True, True)]:
        fail('leaf worker state after pause: %s' % st)
    before = checksums('leaf')
    tick_before = node_info('leaf')[3]
    wait_pgbench('root', pgbench('root', 2))
    tick = sync_point('root')
    wait_caught_up(tick, ['branch'])
    if checksums('leaf') != before or node_info('leaf')[3] != tick_before:
        fail('the paused leaf applied batches')
    londiste('leaf', 'resume')
    if q('leaf', 'select paused from pgq_node.get_consumer_state(%s, %s)', [QUEUE, 'worker_leaf']) != [(False,)]:
        fail('leaf still paused after resume')
    converge('root', ['branch', 'leaf'], 'after resume')


@step('execute a DDL script on the root: it runs on every node')
def s_execute():
    path = os.path.join(WORK, 'add_note.sql')
    with open(path, 'w') as f:
        f.write("--*-- Local-Table: digoal.user_info\n"
                "alter table @digoal.user_info@ add column note text;\n"
                "update @digoal.user_info@ set note = 'vip ' || userid where userid % 1000 = 7;\n")
    londiste('root', 'execute', path)
    for n in NODES:
        wait_for('column note on %s' % n,
                 lambda: q1(n, "select count(*) from information_schema.columns where table_schema = 'digoal' "
                               "and table_name = 'user_info' and column_name = 'note'") == 1, 60)
        if q1(n, 'select count(*) from londiste.applied_execute where execute_file = %s', ['add_note.sql']) != 1:
            fail('applied_execute on %s has no add_note.sql' % n)
    # a replicated change of the new column, then all nodes equal again
    q('root', "update digoal.user_info set note = 'changed' where userid between 1 and 5")
    converge('root', ['branch', 'leaf'], 'after execute')
    if q1('leaf', "select count(*) from digoal.user_info where note like 'vip %'") != ROWS // 1000:
        fail('execute: leaf has not the updated notes')


@step('resync a table on the leaf: copied again, same data')
def s_resync():
    londiste('leaf', 'resync', 'digoal.user_session')
    wait_for('user_session copied again on leaf',
             lambda: table_states('leaf') == {t: 'ok' for t in TABLES}
             and q1('leaf', "select count(*) from londiste.table_info where table_name = 'digoal.user_session' "
                            "and custom_snapshot is null") == 1, 120, 0.5)
    p = pgbench('root', 2)
    wait_pgbench('root', p)
    converge('root', ['branch', 'leaf'], 'after resync')


@step('seqs, node-info, node-status, wait-provider, wait-root')
def s_more_info():
    for n in NODES:
        out = londiste(n, 'seqs')
        for sq in SEQS:
            if not re.search(r'^%s\s+True\s+\d+' % re.escape(sq), out, re.M):
                fail('seqs on %s does not list %s:\n%s' % (n, sq, out))
        out = londiste(n, 'node-info')
        if not re.search(r'Node: %s\s+Type: %s\s+Queue: %s' % (n, n, QUEUE), out):
            fail('node-info on %s:\n%s' % (n, out))
        out = londiste(n, 'node-status')
        if not re.search(r'\b%s \(%s\)' % (n, n), out):
            fail('node-status on %s:\n%s' % (n, out))
    print(londiste('branch', 'node-status'))
    print(londiste('leaf', 'node-info'))
    londiste('leaf', 'wait-provider', timeout=60)
    londiste('leaf', 'wait-root', timeout=60)


@step('tables with sqltriga/jsontriga triggers (add-table --create on subscribers), TRUNCATE')
def s_trigger_kinds():
    extra = {'digoal.t_sql': 'Q', 'digoal.t_json': 'J'}
    for t in extra:
        q('root', 'create table %s (id int primary key, txt text, num numeric, ts timestamptz, '
                  'arr int[], js jsonb, "Odd Col" text)' % t)
    for t, flags in extra.items():
        londiste('root', 'add-table', t, '--trigger-flags=' + flags)
        for n in ('branch', 'leaf'):
            londiste(n, 'add-table', t, '--create', '--trigger-flags=' + flags)
        TABLES.append(t)
    for n in ('branch', 'leaf'):
        wait_for('sqltriga/jsontriga tables ok on %s' % n,
                 lambda: table_states(n) == {t: 'ok' for t in TABLES}, 120, 0.5)
    for t in extra:
        q('root', "insert into %s select g, case g %% 5 when 0 then null when 1 then E'quote '' back\\\\slash' "
                  "when 2 then 'Příliš žluťoučký 🐘' when 3 then E'tab\\there\\nnewline' else '' end, "
                  "g * 1.5, '2024-02-29 12:00+01'::timestamptz + g * interval '1 minute', "
                  "array[g, null, -g], jsonb_build_object('k', g, 'q', 'a\"b'), 'odd ' || g "
                  "from generate_series(1, 300) g" % t)
        q('root', "update %s set txt = txt || ' upd', js = null where id %% 7 = 0" % t)
        # (a primary key update is refused by the triggers, as in the original:
        # "primary key update not allowed")
        try:
            q('root', "update %s set id = id + 1000 where id = 11" % t)
        except psycopg2.Error as e:
            if 'primary key update not allowed' not in str(e):
                raise
        else:
            fail('%s: primary key update accepted' % t)
        q('root', "delete from %s where id %% 13 = 0" % t)
    converge('root', ['branch', 'leaf'], 'sqltriga/jsontriga tables')
    q('root', 'truncate digoal.t_sql')
    q('root', "insert into digoal.t_sql (id, txt) values (1, 'after truncate')")
    converge('root', ['branch', 'leaf'], 'after TRUNCATE')
    if q1('leaf', 'select count(*) from digoal.t_sql') != 1:
        fail('TRUNCATE did not reach the leaf')


@step('takeover: branch becomes root, load on the new root reaches every node')
def s_takeover():
    londiste('branch', 'takeover', 'root')
    check_topology({'branch': ('root', 'branch'), 'root': ('branch', 'branch'), 'leaf': ('leaf', 'branch')},
                   'after takeover')
    # the new root is ticked by its own in-server ticker, the old root no longer ticks
    ext = dict(q('branch', 'select queue_name, queue_external_ticker from pgq.queue'))
    if ext.get(QUEUE) is not False:
        fail('new root: queue_external_ticker = %s' % ext.get(QUEUE))
    ext = dict(q('root', 'select queue_name, queue_external_ticker from pgq.queue'))
    if ext.get(QUEUE) is not True:
        fail('old root: queue_external_ticker = %s' % ext.get(QUEUE))
    p = pgbench('branch', LOAD_SECONDS)
    n = wait_pgbench('branch', p)
    if n < 10:
        fail('pgbench on the new root did only %d transactions' % n)
    log('  %d login/logout transactions on the new root' % n)
    converge('branch', ['root', 'leaf'], 'after takeover')
    refuses_writes('root', 'old root')
    out = londiste('branch', 'status')
    print(out)
    if not re.search(r'\bbranch \(root\)', out) or not re.search(r'\broot \(branch\)', out):
        fail('status after takeover:\n%s' % out)
    for n in ('root', 'leaf'):
        out = londiste(n, 'compare')
        if 'do not match' in out or out.count('dstdb:') != len(TABLES):
            fail('compare on %s after takeover:\n%s' % (n, out))


@step('drop-node: the leaf leaves the cascade')
def s_drop_node():
    w = PROCS.pop('worker_leaf')
    w.terminate()
    w.wait(timeout=20)
    londiste('branch', 'drop-node', 'leaf')
    for n in ('branch', 'root'):
        locs = [r[0] for r in q(n, 'select node_name from pgq_node.get_queue_locations(%s) order by 1', [QUEUE])]
        if locs != ['branch', 'root']:
            fail('members on %s after drop-node: %s' % (n, locs))
    if subscribers('branch') != ['root']:
        fail('subscribers of the new root after drop-node: %s' % subscribers('branch'))
    if q('leaf', 'select * from pgq_node.node_info'):
        fail('leaf still has node_info rows')


@step('remove-table and remove-seq on the new root reach the old root')
def s_remove():
    londiste('branch', 'remove-table', 'digoal.user_logout_rec')
    londiste('branch', 'remove-seq', 'digoal.user_logout_rec_id_seq')
    tick = sync_point('branch')
    wait_caught_up(tick, ['root'])
    for n in ('branch', 'root'):
        tabs = set(r[0] for r in q(n, 'select table_name from londiste.get_table_list(%s)', [QUEUE]))
        if 'digoal.user_logout_rec' in tabs or len(tabs) != len(TABLES) - 1:
            fail('tables on %s after remove-table: %s' % (n, sorted(tabs)))
        seqs = [r[0] for r in q(n, 'select seq_name from londiste.get_seq_list(%s)', [QUEUE])]
        if seqs != ['digoal.user_login_rec_id_seq']:
            fail('sequences on %s after remove-seq: %s' % (n, seqs))
        trg = q1(n, "select count(*) from pg_trigger where tgrelid = 'digoal.user_logout_rec'::regclass "
                    "and not tgisinternal")
        if trg != 0:
            fail('%s: %s triggers left on user_logout_rec' % (n, trg))
    # the removed table is a plain local table now, writable on the new root, not replicated
    q('branch', "insert into digoal.user_logout_rec (userid) values (1)")
    n = wait_pgbench('branch', pgbench('branch', 2))
    tick = sync_point('branch')
    wait_caught_up(tick, ['root'])
    want, got = checksums('branch'), checksums('root')
    for t in TABLES:
        if (t == 'digoal.user_logout_rec') == (want[t] == got[t]):
            fail('after remove-table: %s %s on the new root, %s on the old root' % (t, want[t], got[t]))
    log('  removed table diverges, the other three are equal after %d more transactions' % n)


@step('failover: the new root dies, takeover --dead-root makes the old root root again')
def s_failover():
    w = PROCS.pop('worker_branch')
    w.terminate()
    w.wait(timeout=20)
    subprocess.run(['sudo', '-u', 'postgres', os.path.join(PG_BIN, 'pg_ctl'), '-D', DIRS['branch'],
                    '-m', 'immediate', '-w', 'stop'], check=True, stdout=subprocess.DEVNULL)
    londiste('root', 'takeover', 'branch', '--dead-root')
    info = node_info('root')
    if info[0] != 'root':
        fail('after failover root is %s' % (info,))
    dead = dict(q('root', 'select node_name, dead from pgq_node.get_queue_locations(%s)', [QUEUE]))
    if dead != {'root': False, 'branch': True}:
        fail('members after failover: %s' % dead)
    ext = q1('root', 'select queue_external_ticker from pgq.queue where queue_name = %s', [QUEUE])
    if ext is not False:
        fail('promoted root: queue_external_ticker = %s' % ext)
    # writable again, and its own in-server ticker ticks it (sync_point needs new ticks)
    n = wait_pgbench('root', pgbench('root', 2))
    ev = q1('root', 'select count(*) from pgq.event_%s' % q1('root', 'select queue_id from pgq.queue '
                                                                   'where queue_name = %s', [QUEUE]))
    if n < 10 or not ev:
        fail('after failover: %s transactions, %s events in the queue' % (n, ev))
    sync_point('root')
    log('  %d transactions on the promoted root, %d events queued, ticks made in-server' % (n, ev))


def main():
    return run_steps('cascade scenario', 1, width=70, on_failure=lambda n: '  %s worker log tail:\n%s' % (
        n, tail(os.path.join(WORK, n + '.log'), 15)))


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())


