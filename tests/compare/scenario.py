#!/usr/bin/python3
"""The compare-and-repair scenario (driven by tests/compare/run.sh).

A root → branch → leaf cascade of this extension, one cluster each, set up with the
Python `londiste` CLI and replicated by the extension's `pgq replay` workers alone.
pgq_cascade.compare / pgq_cascade.repair run on branch (provider: the root) and leaf
(provider: the branch).

Steps (every one checked by SQL; a failing step fails the run and skips the rest,
checks after which the nodes stay consistent fail the step and the run but the next
steps still run):
  1. (run.sh) three preloaded clusters, seed schema everywhere, data on the root only
  2. digoal.big everywhere, its rows on the root; create-root/-branch/-leaf, add-table
     of every table (the replay workers copy, 1M rows of digoal.big included), add-seq
  3. compare of every table on branch and leaf while pgbench runs on the root: equal,
     source node and tick as expected, one row per table; times printed
  4. the load stopped and everything applied: on the branch the numbers equal what
     `londiste compare` prints (its srcdb / dstdb lines), on the leaf they equal the
     same checksum query run on leaf and branch
  5. rows of digoal.big changed by hand on the leaf (as replica: one update, one delete,
     one insert): compare reports it unequal; repair lists exactly the three statements
     that undo it; repair with apply makes it equal (compare equal afterwards)
  6. a repair that applied holds the leaf's replay until its transaction ends: the leaf
     stands at the tick while the root goes on ticking, a compare from another session
     gets 55006, rollback lets go (the leaf catches up, the change is still there);
     terminating the holding backend lets go too; repaired in autocommit
  7. compares cancelled by statement_timeout let the leaf go at once (the session
     still open)
  8. a writer committing single-row updates of the root's digoal.big (1M rows)
     throughout compares of that table on the branch and on the leaf: compare time,
     writer commits and its longest commit wait printed; a wait over 5 s fails (a lock)
  9. bad input: NULL queue (22004), unknown queue (42704), unknown table (42P01), the
     root (55000), repair without a table (22004), REPEATABLE READ (25000), a node not
     replayed in-server (55000), a role that is not a superuser with no password in
     the provider location (2F003, the dblink rule)
  10. replay still runs everywhere (the leaf catches up with a new root tick); no crash,
     PANIC or replay worker ERROR in any server log
"""

import os
import re
import sys
import threading
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from cascadetest import *  # noqa: E402,F401,F403  (the shared multi-node helpers)
import cascadetest  # noqa: E402

BIG = 'digoal.big'
ALL = TABLES + [BIG]
SUBSCRIBERS = ['branch', 'leaf']
PROVIDER = {'branch': 'root', 'leaf': 'branch'}
BIG_ROWS = int(os.environ.get('BIG_ROWS', '1000000'))
WATCH.append(check_no_external_workers)
MAX_WRITER_WAIT = 5.0


def londiste(node, *args, timeout=180):
    assert 'worker' not in args
    return cascadetest.londiste(node, *args, timeout=timeout)


def compare(node, table=None):
    """pgq_cascade.compare rows as dicts, and the call's time in seconds."""
    t = time.time()
    rows = qdict(node, 'select * from pgq_cascade.compare(%s, %s)', [QUEUE, table])
    return rows, time.time() - t


def repair(node, table, apply=False):
    return qdict(node, 'select * from pgq_cascade.repair(%s, %s, %s)', [QUEUE, table, apply])


def check_equal(node, rows, want_tables, label):
    got = sorted(r['table_name'] for r in rows)
    if got != sorted(want_tables):
        fail('%s: compare on %s returned tables %s, expected %s' % (label, node, got, sorted(want_tables)))
    ticks = set(r['tick_id'] for r in rows)
    if len(ticks) != 1:
        fail('%s: compare on %s read the tables at several ticks: %s' % (label, node, ticks))
    for r in rows:
        if r['source_node'] != PROVIDER[node]:
            fail('%s: %s compared against %r, expected %r' % (label, node, r['source_node'], PROVIDER[node]))
        same = (r['source_rows'], r['source_checksum']) == (r['local_rows'], r['local_checksum'])
        if not r['equal'] or not same:
            fail('%s: %s on %s differs at tick %s: %s' % (label, r['table_name'], node, r['tick_id'], r))
    return ticks.pop()


def sqlerr(node, sql, args=None):
    """The psycopg2 error of sql on node (None when it succeeds)."""
    try:
        q(node, sql, args)
    except psycopg2.Error as e:
        return e
    return None


def wait_all_ok():
    want = {t: 'ok' for t in ALL}
    for n in SUBSCRIBERS:
        wait_for(lambda: '%s: every table ok (states %s)' % (n, table_states(n)),
                 lambda: table_states(n) == want, 240, 0.5)
    for n in SUBSCRIBERS:
        wait_for(lambda: '%s: the copy snapshots to be cleared' % n,
                 lambda: q1(n, 'select count(*) from londiste.get_table_list(%s) '
                               'where local and custom_snapshot is not null', [QUEUE]) == 0, 60)


# ---------------------------------------------------------------- steps

BIG_DDL = """
CREATE TABLE digoal.big (
    id      int PRIMARY KEY,
    grp     int NOT NULL,
    name    text,
    amount  numeric(12,2),
    flag    bool,
    ts      timestamptz,
    tags    text[]
)"""
# several types, NULLs, quotes and a backslash in text
BIG_ROWS_SQL = """
INSERT INTO digoal.big
SELECT n, n %% 97,
       CASE WHEN n %% 11 = 0 THEN NULL ELSE E'row ' || n || E' it''s \\\\ "q"' END,
       (n %% 100000) / 100.0,
       CASE n %% 3 WHEN 0 THEN true WHEN 1 THEN false END,
       timestamptz '2024-01-01 00:00:00+00' + n * interval '1 second',
       ARRAY['t' || n %% 5, 'x']
  FROM generate_series(1, %s) AS n"""


@step('create-root/-branch/-leaf, add-table (the workers copy, 1M rows of digoal.big too), add-seq')
def s_setup():
    t = time.time()
    for n in NODES:
        q(n, BIG_DDL)
    q('root', BIG_ROWS_SQL, [BIG_ROWS])
    q('root', 'analyze digoal.big')
    log('  %s: %d rows on the root in %.1fs' % (BIG, BIG_ROWS, time.time() - t))
    for n in NODES:
        write_ini(n)
    londiste('root', 'create-root', 'root', connstr('root'))
    londiste('branch', 'create-branch', 'branch', connstr('branch'), '--provider=' + connstr('root'))
    londiste('leaf', 'create-leaf', 'leaf', connstr('leaf'), '--provider=' + connstr('branch'))
    q('root', "select pgq.set_queue_config(%s, 'ticker_max_lag', '200 milliseconds'), "
              "pgq.set_queue_config(%s, 'ticker_idle_period', '1 second')", [QUEUE, QUEUE])
    londiste('root', 'add-table', *ALL)
    t = time.time()
    for n in SUBSCRIBERS:
        londiste(n, 'add-table', *ALL)
    for n in NODES:
        londiste(n, 'add-seq', *SEQS)
    wait_all_ok()
    log('  every table ok on branch and leaf %.1fs after add-table (%d rows of %s copied twice)' % (
        time.time() - t, BIG_ROWS, BIG))
    compare_data('root', SUBSCRIBERS, 'after the initial copy', ALL)


@step('compare on branch and leaf under load on the root: every table equal, one tick')
def s_compare_under_load():
    p = pgbench('root', LOAD_SECONDS)
    time.sleep(1.0)
    seen = {}
    rounds = 0
    while p.poll() is None and rounds < 3:
        for n in SUBSCRIBERS:
            rows, secs = compare(n)
            tick = check_equal(n, rows, ALL, 'under load')
            seen.setdefault(n, []).append((tick, secs))
        rounds += 1
    wait_pgbench('root', p, LOAD_SECONDS)
    for n in SUBSCRIBERS:
        if not seen.get(n):
            fail('no compare on %s ran while pgbench did' % n)
        log('  %s: %d compares of %d tables under load, all equal: ticks %s, %s s' % (
            n, len(seen[n]), len(ALL), [t for t, _ in seen[n]],
            ', '.join('%.2f' % s for _, s in seen[n])))
    # the ticks go forward
    for n in SUBSCRIBERS:
        ticks = [t for t, _ in seen[n]]
        if ticks != sorted(ticks):
            fail('%s: compare ticks went backwards: %s' % (n, ticks))


CLI = re.compile(r'Counting (\S+)\s.*?srcdb: (\d+) rows, checksum=(-?\d+|None)\s.*?'
                 r'dstdb: (\d+) rows, checksum=(-?\d+|None)', re.S)


def num(v):
    return None if v in (None, 'None') else int(v)


@step('the numbers equal `londiste compare` (branch) and the checksum query on leaf and branch')
def s_cli_numbers():
    tick = sync_point('root')
    wait_caught_up(tick, SUBSCRIBERS)
    out = londiste('branch', 'compare')
    cli = {m.group(1): (int(m.group(2)), num(m.group(3)), int(m.group(4)), num(m.group(5)))
           for m in CLI.finditer(out)}
    if sorted(cli) != sorted(ALL):
        fail('`londiste compare` on the branch reported %s:\n%s' % (sorted(cli), out))
    rows, secs = compare('branch')
    check_equal('branch', rows, ALL, 'after load')
    for r in rows:
        ours = (r['source_rows'], num(str(r['source_checksum']) if r['source_checksum'] is not None else None),
                r['local_rows'], num(str(r['local_checksum']) if r['local_checksum'] is not None else None))
        if ours != cli[r['table_name']]:
            fail('branch: %s: compare gives %s, `londiste compare` printed %s' % (
                r['table_name'], ours, cli[r['table_name']]))
    log('  branch: %d tables, the same rows and checksums as `londiste compare` (%.2fs; e.g. %s: %s rows, checksum=%s)' % (
        len(rows), secs, BIG, cli[BIG][0], cli[BIG][1]))
    rows, secs = compare('leaf')
    check_equal('leaf', rows, ALL, 'after load')
    for r in rows:
        cols = [c for c, in q('branch', "select a.attname from pg_attribute a where a.attrelid = %s::regclass "
                                        "and a.attnum > 0 and not a.attisdropped order by a.attnum",
                              [r['table_name']])]
        sql = 'select count(1), sum(hashtext((%s)::text)::bigint) from only %s' % (
            ','.join('"%s"' % c for c in cols), r['table_name'])
        want_src = tuple(q('branch', sql)[0])
        want_loc = tuple(q('leaf', sql)[0])
        if (r['source_rows'], r['source_checksum']) != want_src or \
           (r['local_rows'], r['local_checksum']) != want_loc:
            fail('leaf: %s: compare gives %s / %s, the query gives %s / %s' % (
                r['table_name'], (r['source_rows'], r['source_checksum']),
                (r['local_rows'], r['local_checksum']), want_src, want_loc))
    log('  leaf: %d tables, the same numbers as the checksum query on branch and leaf (%.2fs)' % (len(rows), secs))


def pick_del_id():
    """A row of digoal.big to delete on the leaf: name not NULL, flag not NULL."""
    i = BIG_ROWS * 3 // 4 + 1
    while i % 11 == 0 or i % 3 == 2:
        i += 1
    return i


DEL_ID = pick_del_id()


def big_row(node, i):
    return q(node, 'select * from %s where id = %%s' % BIG, [i])


def hand_edit_leaf():
    """One update, one delete, one insert on the leaf's digoal.big, as replica."""
    q('leaf', "set session_replication_role = replica; "
              "update digoal.big set name = E'changed on the leaf \\\\ it''s', flag = null where id = 4242; "
              "delete from digoal.big where id = %s; "
              "insert into digoal.big (id, grp, name, amount, flag, ts, tags) "
              "values (%s, 1, 'only on the leaf', 1.5, true, now(), '{a,b}')", [DEL_ID, BIG_ROWS + 10])


EXPECTED = [
    ('delete', re.compile(r'^delete from digoal\.big where id = \'%d\'$' % (BIG_ROWS + 10))),
    # row 4242 on the root: name "row 4242 it's \ "q"", flag true
    ('update', re.compile(r"^update digoal\.big set name = E'row 4242 it''s \\\\ \"q\"', flag = 't' "
                          r"where id = '4242'$")),
    # the deleted row, as run.sh made it
    ('insert', re.compile(r"^insert into digoal\.big \(id, grp, name, amount, flag, ts, tags\) values "
                          r"\('%d', '%d', E'row %d it''s \\\\ \"q\"', '%s', '%s', '[^']+', "
                          r"'\{t%d,x\}'\)$" % (DEL_ID, DEL_ID % 97, DEL_ID, re.escape('%.2f' % ((DEL_ID % 100000) / 100.0)),
                                                 't' if DEL_ID % 3 == 0 else 'f', DEL_ID % 5))),
]


@step('a row changed by hand on the leaf: compare unequal, repair lists it, repair with apply fixes it')
def s_repair():
    hand_edit_leaf()
    rows, secs = compare('leaf', BIG)
    if len(rows) != 1 or rows[0]['equal']:
        fail('compare of %s on the leaf after a hand edit: %s' % (BIG, rows))
    r = rows[0]
    if r['local_rows'] != r['source_rows']:
        fail('leaf: %s rows %s vs %s (one deleted, one inserted: the same count)' % (
            BIG, r['local_rows'], r['source_rows']))
    log('  compare: %s unequal on the leaf at tick %s (checksum %s here, %s on the branch; %.2fs)' % (
        BIG, r['tick_id'], r['local_checksum'], r['source_checksum'], secs))
    t = time.time()
    st = repair('leaf', BIG)
    secs = time.time() - t
    got = [(s['op'], s['statement']) for s in st]
    if len(got) != 3 or any(op != w[0] or not w[1].match(sql) for (op, sql), w in zip(got, EXPECTED)):
        fail('repair of %s on the leaf listed:\n  %s' % (BIG, '\n  '.join('%s: %s' % g for g in got)))
    if any(s['table_name'] != BIG or s['tick_id'] is None for s in st):
        fail('repair rows: %s' % st)
    log('  repair (%.2fs) lists:\n    %s' % (secs, '\n    '.join('%s: %s' % g for g in got)))
    # nothing applied yet
    if big_row('leaf', DEL_ID):
        fail('repair without apply changed the leaf')
    st2 = repair('leaf', BIG, True)
    if [(s['op']) for s in st2] != ['delete', 'update', 'insert']:
        fail('repair with apply: %s' % st2)
    rows, _ = compare('leaf', BIG)
    check_equal('leaf', rows, [BIG], 'after repair')
    for i in (4242, DEL_ID, BIG_ROWS + 10):
        if big_row('leaf', i) != big_row('branch', i):
            fail('row %d of %s: leaf %s, branch %s' % (i, BIG, big_row('leaf', i), big_row('branch', i)))
    log('  repair with apply: 3 statements run; compare equal at tick %s' % rows[0]['tick_id'])


def leaf_position():
    return node_info('leaf')[3]


@step('a repair that applied holds the leaf until its transaction ends (rollback, terminate)')
def s_hold_to_end():
    for ending in ('rollback', 'terminate'):
        hand_edit_leaf()
        con = cascadetest.pgqclient.connect(connstr('leaf'))
        try:
            with con.cursor() as cur:
                cur.execute('select pg_backend_pid()')
                pid = cur.fetchone()[0]
                cur.execute('select count(*) from pgq_cascade.repair(%s, %s, true)', [QUEUE, BIG])
                n = cur.fetchone()[0]
            if n != 3:
                fail('repair with apply in a transaction returned %d statements' % n)
            held = leaf_position()
            # the root goes on ticking; the branch goes on; the leaf stands
            q('root', 'update digoal.big set amount = amount + 1 where id = 1')
            sync_point('root')
            sync_point('root')
            time.sleep(1.5)
            now = leaf_position()
            if now != held:
                fail('the leaf moved from tick %s to %s while a repair transaction held it' % (held, now))
            if (node_info('branch')[3] or 0) <= held:
                fail('the branch stood still too (tick %s) while the leaf was held' % node_info('branch')[3])
            e = sqlerr('leaf', 'select * from pgq_cascade.compare(%s, %s)', [QUEUE, BIG])
            if e is None or e.pgcode != '55006':
                fail('a compare while another session holds the leaf: %s' % (
                    'succeeded' if e is None else '%s %s' % (e.pgcode, e)))
            log('  %s: the leaf stood at tick %s while the root ticked to %s; another compare: %s' % (
                ending, held, newest_tick('root'), str(e).strip().splitlines()[0]))
            t = time.time()
            if ending == 'rollback':
                con.rollback()
            else:
                q('root', 'select 1')
                q('leaf', 'select pg_terminate_backend(%s)', [pid])
            tick = sync_point('root')
            wait_caught_up(tick, ['leaf'], 30)
            log('  %s: the leaf went on and caught up with root tick %s in %.1fs' % (ending, tick, time.time() - t))
        finally:
            try:
                con.close()
            except Exception:
                pass
        rows, _ = compare('leaf', BIG)
        if rows[0]['equal']:
            fail('after the %s the repair\'s writes should be gone, but compare is equal' % ending)
        st = repair('leaf', BIG, True)
        if len(st) != 3:
            fail('repair after the %s: %s' % (ending, st))
        rows, _ = compare('leaf', BIG)
        check_equal('leaf', rows, [BIG], 'after the %s and a repair' % ending)


@step('a compare cancelled by statement_timeout while it holds the leaf lets go at once')
def s_cancel():
    con = cascadetest.pgqclient.connect(connstr('leaf'), autocommit=True)
    try:
        cur = con.cursor()
        codes = []
        for ms in (150, 400, 800):
            cur.execute("set statement_timeout = '%dms'" % ms)
            try:
                cur.execute('select * from pgq_cascade.compare(%s, %s)', [QUEUE, BIG])
                codes.append('done')
            except psycopg2.Error as e:
                if e.pgcode != '57014':
                    fail('compare under statement_timeout %d ms: %s %s' % (ms, e.pgcode, e))
                codes.append(e.pgcode)
        if '57014' not in codes:
            fail('no compare of %s was cancelled by statement_timeout (%s)' % (BIG, codes))
        cur.execute('reset statement_timeout')
        # the session is still there: only the call's own unwinding can have let go
        tick = sync_point('root')
        wait_caught_up(tick, ['leaf'], 30)
        rows, _ = compare('leaf', BIG)
        check_equal('leaf', rows, [BIG], 'after cancelled compares')
        log('  compares under statement_timeout 150/400/800 ms: %s; the leaf went on to tick %s with '
            'the session still open' % (', '.join(codes), tick))
    finally:
        con.close()


STOOD = re.compile(r'pgq replay: queue "%s": stood at tick (\d+) for (\d+) ms for a compare' % QUEUE)


class Writer(threading.Thread):
    """Single-row UPDATEs of the root's digoal.big in autocommit, as fast as they go;
    records each commit's duration."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.times = []
        self.error = None

    def run(self):
        try:
            con = cascadetest.pgqclient.connect(connstr('root'), autocommit=True)
            cur = con.cursor()
            i = 0
            while not self.stop.is_set():
                i += 1
                t = time.time()
                cur.execute('update digoal.big set amount = amount + 0.01, ts = now() where id = %s',
                            [(i * 7919) % BIG_ROWS + 1])
                self.times.append((t, time.time() - t))
                time.sleep(0.002)
            con.close()
        except Exception as e:  # reported by the step
            self.error = e

    def during(self, t0, t1):
        return [d for t, d in self.times if t0 <= t <= t1 or t <= t0 <= t + d]


@step('a writer on the root\'s 1M-row table keeps committing throughout compares (branch, leaf)')
def s_writer():
    w = Writer()
    w.start()
    try:
        time.sleep(1.0)
        for n in SUBSCRIBERS:
            pos0 = node_info('branch')[3]
            off = log_size(n)
            t0 = time.time()
            rows, secs = compare(n, BIG)
            t1 = time.time()
            check_equal(n, rows, [BIG], 'with a writer')
            stood = wait_for('%s: the replay worker\'s line on how long it stood for the compare' % n,
                             lambda: STOOD.search(log_lines(n, off)[0]), 10)
            if int(stood.group(1)) != rows[0]['tick_id']:
                fail('%s: the worker stood at tick %s, the compare read tick %s' % (
                    n, stood.group(1), rows[0]['tick_id']))
            d = w.during(t0, t1)
            if not d:
                fail('the writer committed nothing during the compare on %s' % n)
            extra = ''
            if n == 'leaf':
                extra = '; the branch applied ticks %s..%s meanwhile' % (pos0, node_info('branch')[3])
            log('  %s: compare of %s (%d rows) at tick %s took %.2fs, its replay stood still %s ms of it; '
                'the writer committed %d times meanwhile, longest commit %.0f ms%s' % (
                    n, BIG, rows[0]['source_rows'], rows[0]['tick_id'], secs, stood.group(2), len(d),
                    max(d) * 1000, extra))
            if max(d) > MAX_WRITER_WAIT:
                fail('a writer commit on the root waited %.1fs during the compare on %s: a lock' % (max(d), n))
            time.sleep(0.5)
    finally:
        w.stop.set()
        w.join(10)
    if w.error:
        fail('the writer failed: %s' % w.error)
    log('  writer: %d commits in all, longest %.0f ms' % (len(w.times), max(d for _, d in w.times) * 1000))
    tick = sync_point('root')
    wait_caught_up(tick, SUBSCRIBERS)
    compare_data('root', SUBSCRIBERS, 'after the writer', [BIG])


@step('bad input: NULL queue, unknown queue/table, root, no table, REPEATABLE READ, not in-server')
def s_bad_input():
    cases = [
        ('leaf', 'select * from pgq_cascade.compare(NULL)', None, '22004', 'must not be NULL'),
        ('leaf', 'select * from pgq_cascade.compare(%s)', ['nosuchqueue'], '42704', 'no cascaded node'),
        ('leaf', 'select * from pgq_cascade.compare(%s, %s)', [QUEUE, 'public.nosuchtable'], '42P01',
         'not replicated to node leaf'),
        ('leaf', 'select * from pgq_cascade.repair(%s, %s)', [QUEUE, 'nosuchtable'], '42P01',
         'public.nosuchtable'),
        ('root', 'select * from pgq_cascade.compare(%s)', [QUEUE], '55000', 'is the root'),
        ('branch', 'select * from pgq_cascade.repair(%s, NULL)', [QUEUE], '22004', 'repair works on one table'),
        ('leaf', 'select * from pgq_cascade.repair(NULL, %s, true)', [BIG], '22004', 'must not be NULL'),
        ('leaf', 'begin isolation level repeatable read; select * from pgq_cascade.compare(%s)', [QUEUE],
         '25000', 'READ COMMITTED'),
    ]
    for node, sql, args, code, text in cases:
        e = sqlerr(node, sql, args)
        if e is None or e.pgcode != code or text not in str(e):
            fail('%s: %s %s gave %s, expected %s (%s)' % (
                node, sql, args, 'no error' if e is None else '%s: %s' % (e.pgcode, str(e).strip()), code, text))
        log('  %-6s %-40s -> %s %s' % (node, (sql % tuple("'%s'" % a for a in (args or [])))[-40:],
                                         e.pgcode, str(e).strip().splitlines()[0]))
    # the dblink rule: a role that is not a superuser must give a password
    q('leaf', 'create role cmp_admin nologin in role pgq_admin; '
              'grant usage on schema digoal to cmp_admin; '
              'grant select on all tables in schema digoal to cmp_admin')
    try:
        e = sqlerr('leaf', 'set role cmp_admin; select * from pgq_cascade.compare(%s)', [QUEUE])
        if e is None or e.pgcode != '2F003' or 'password is required' not in str(e):
            fail('compare as a pgq_admin role that is not a superuser, no password in the location: %s' % (
                'no error' if e is None else '%s %s' % (e.pgcode, e)))
        log('  leaf, as a non-superuser pgq_admin member -> %s %s' % (e.pgcode, str(e).strip().splitlines()[0]))
    finally:
        q('leaf', 'drop owned by cmp_admin; drop role cmp_admin')
    # a node handed to an external worker
    ret = q('leaf', 'select * from pgq_cascade.set_in_server_replay(%s, false)', [QUEUE])[0]
    try:
        e = sqlerr('leaf', 'select * from pgq_cascade.compare(%s)', [QUEUE])
        if e is None or e.pgcode != '55000' or 'not replayed in-server' not in str(e):
            fail('compare on a leaf not replayed in-server: %s' % (
                'no error' if e is None else '%s %s' % (e.pgcode, e)))
        log('  leaf, in-server replay off (%s) -> %s %s' % (ret[1], e.pgcode, str(e).strip().splitlines()[0]))
    finally:
        q('leaf', 'select * from pgq_cascade.set_in_server_replay(%s, true)', [QUEUE])
    wait_for('the leaf\'s replay worker back', lambda: replay_pid('leaf'), 60, 0.5)
    # privileges: EXECUTE only for pgq_admin
    acl = q1('leaf', "select string_agg(distinct grantee::regrole::text, ',' order by grantee::regrole::text) "
                     "from (select (aclexplode(proacl)).grantee from pg_proc p "
                     "where p.pronamespace = 'pgq_cascade'::regnamespace and proname in ('compare', 'repair')) x")
    if set(acl.split(',')) != {'postgres', 'pgq_admin'}:
        fail('EXECUTE on compare/repair granted to %s' % acl)
    secdef = q('leaf', "select proname, prosecdef from pg_proc where pronamespace = 'pgq_cascade'::regnamespace "
                       "and proname in ('compare', 'repair')")
    if any(s for _, s in secdef) or len(secdef) != 2:
        fail('compare/repair are not both SECURITY INVOKER: %s' % secdef)


@step('replay still runs everywhere; no crash or replay worker ERROR in any server log')
def s_end():
    tick = sync_point('root')
    wait_caught_up(tick, SUBSCRIBERS)
    compare_data('root', SUBSCRIBERS, 'at the end', ALL)
    for n in NODES:
        text, _ = log_lines(n)
        # the manager stops a worker whose node leaves in-server replay (step 9) with
        # SIGTERM: PostgreSQL logs that stop as a FATAL when it lands in a wait
        bad = [ln for ln in text.splitlines()
               if re.search(r'PANIC|terminated by signal|server process .* was terminated', ln)
               or (re.search(r'pgq replay.*(ERROR|FATAL)', ln)
                   and not re.search(r'terminating background worker "pgq (replay|copy)" '
                                     r'due to administrator command', ln))]
        if bad:
            fail('%s: server log:\n%s' % (n, '\n'.join(bad[:10])))
        # the compare's LOCK of pgq.tick never deadlocks with the in-server ticker
        ticker = [ln for ln in text.splitlines() if re.search(r'pgq ticker: (ERROR|FATAL)', ln)]
        if ticker:
            fail('%s: errors of the ticker:\n%s' % (n, '\n'.join(ticker[:10])))
        if re.search(r'password=\S', text):
            fail('%s: a password in the server log' % n)


if __name__ == '__main__':
    sys.exit(run_steps('compare scenario', first=2,
                       prelude=[('(run.sh) three preloaded clusters, seed data on the root', 'ok')],
                       on_failure=describe_workers))
