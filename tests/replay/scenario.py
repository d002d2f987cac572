#!/usr/bin/python3
"""The in-server replay scenario (driven by tests/replay/run.sh).

A root → branch → leaf cascade of this extension, one cluster each, set up with the
original Python `londiste` CLI and replicated by the extension's `pgq replay` background
workers alone: no `londiste worker` and no pgqd serves these clusters at any time (checked
before and after every step and while waiting). run.sh has seeded the root only: the
replay workers of branch and leaf copy the tables themselves.

Steps (every one checked by SQL against the nodes; a failing step fails the run, names
the step and skips the rest, except checks after which the nodes are still consistent:
those fail the step and the run, and the next steps still run):
  1. (run.sh) three preloaded clusters, seed schema everywhere, data on the root only
  2. create-root/-branch/-leaf, add-table on the root, on branch and leaf without
     --expect-sync (the workers copy: every table ok in bounded time, one copy line per
     table in the server log with the root's row count, copy times printed) except one
     table empty on the root that takes the --expect-sync path; add-seq; equal data;
     the indexes and constraints of user_info on branch and leaf (a deferred unique
     constraint, a partial index with storage parameters in a tablespace, an
     expression index, a replica identity index, a clustered index, comments) are the
     same after the copy as before it, each rebuilt (new OID); user_session's primary
     key, which a view needs, kept (same OID, logged); the copied tables analyzed
  3. a `pgq replay` worker on branch and leaf (pgq.worker_status(), pg_stat_activity)
  4. pgbench load on the root; the leaf catches up with the root's tick after the load
     (drain time printed); the copy snapshots (custom_snapshot) are cleared
  5. the same data on every node (count + hash sum per table), sequences at or above the
     root's, `londiste compare` on the branch
  6. an apply conflict on the leaf (a row the root inserts next, put there as replica):
     the error in pgq_cascade.replay_error (sqlstate 23505, ev_id, ev_txid, table),
     worker_status (last_sqlstate 23505), cur_error and `londiste status` (ERR:); later
     changes held back; three failures with growing gaps; skip_replay_error skips that
     event only (the other rows of the same root transaction arrive), replay resumes,
     the error row is marked skipped, a second skip finds nothing (404), cur_error
     clears; the leaf's row fixed by hand
  7. set_in_server_replay(false) on the leaf: its worker goes away, root changes stop
     there (set_consumer_completed allowed); on again: a new worker, the changes
     arrive; while on, set_consumer_completed from psql fails with 55000
  8. replay worker of the branch terminated twice under load: it comes back (new pid),
     no row lost or doubled
  9. TRUNCATE on the root empties the table on branch and leaf
 10. `londiste execute` of a DDL script on the root reaches branch and leaf
 11. a wrong password in the leaf's location of the branch (which asks that role for
     its password, scram): the connect fails with the reason shown on the leaf,
     retries back off, the password appears in no server log, worker_status,
     replay_error or local_state; the location restored, the leaf catches up
 12. `londiste status` and `members` on the leaf
 13. no crash, PANIC or replay worker ERROR (but the deliberate ones of steps 6 and 11)
     in any server log (server.log next to each data dir; log_line_prefix names the
     backend type)
 14. in-server replay turned on by a role that is not a superuser (SET ROLE): the
     worker acts as it; without a password in the provider location it fails with
     2F003, with a wrong one on the connect, backing off; no crash; restored as
     postgres, the leaf catches up; the password in no log or status. Last, since a
     failure here may leave the leaf unusable.

Env (set by run.sh): WORK (work dir: ini files, commands.log, pid list), NODES ("root=PORT
branch=PORT leaf=PORT"), NODE_DIRS (data dirs, same form), PG_BIN (pgbench), WORKLOAD_DIR, ROWS, LOAD_SECONDS.
"""

import os
import pwd
import re
import signal
import sys
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from cascadetest import *  # noqa: E402,F401,F403  (the shared multi-node helpers)
import cascadetest  # noqa: E402

SUBSCRIBERS = ['branch', 'leaf']
PROVIDER = {'root': 'root', 'branch': 'root', 'leaf': 'branch'}
WATCH.append(check_no_external_workers)


def londiste(node, *args, timeout=120):
    """An admin command of the CLI (never `worker`: nothing replays here but the
    extension); a non-zero exit fails the step."""
    assert 'worker' not in args
    return cascadetest.londiste(node, *args, timeout=timeout)


# ---------------------------------------------------------------- data checks











def wait_seqs_published(timeout=30):
    """The root's maintenance (londiste.root_check_seqs, in-server) publishes every
    replicated sequence at or above its last_value; returns the published values."""
    def published():
        vals = {}
        for s in SEQS:
            real = q1('root', 'select last_value from %s' % s)
            pub = q1('root', 'select last_value from londiste.seq_info where queue_name = %s '
                             'and seq_name = %s and local', [QUEUE, s])
            if pub is None or pub < real:
                return None
            vals[s] = real
        return vals
    return wait_for('the root to publish its sequences (londiste.root_check_seqs in the '
                    'in-server maintenance)', published, timeout)




def check_same_data(label):
    return compare_data('root', SUBSCRIBERS, label)


def check_seqs(root_vals, label):
    for s in SEQS:
        for n in SUBSCRIBERS:
            v = q1(n, 'select last_value from %s' % s)
            if v < root_vals[s]:
                fail('%s: %s on %s is %s, below the root\'s %s' % (label, s, n, v, root_vals[s]))
    log('  %s: sequences on branch and leaf at or above the root\'s (%s)' % (
        label, ', '.join('%s %d' % (s.split('.')[1], v) for s, v in root_vals.items())))


def check_status_row(node, tick, label):
    """node's replay row in pgq.worker_status() tells the truth once the node applied
    tick: its provider, a tick at or past it, events applied, a small lag, no error.
    Columns are read by name; one this build does not have is not checked."""
    def good():
        rows = [r for r in replay_rows(node) if r.get('pid')]
        if len(rows) != 1:
            return None
        r = rows[0]
        bad = []
        if 'provider' in r and r['provider'] != PROVIDER[node]:
            bad.append('provider %r' % r['provider'])
        if 'tick_id' in r and (r['tick_id'] or 0) < tick:
            bad.append('tick_id %s' % r['tick_id'])
        if 'events' in r and not r['events']:
            bad.append('events %s' % r['events'])
        if 'lag' in r and (r['lag'] is None or r['lag'].total_seconds() > 10):
            bad.append('lag %s' % r['lag'])
        if r.get('last_error'):
            bad.append('last_error %r (sqlstate %s)' % (r['last_error'], r.get('sqlstate', r.get('last_sqlstate'))))
        STATUS_SEEN[node] = (r, bad)
        return r if not bad else None
    wait_for(lambda: '%s: worker_status to show the replay at tick %d (%s)' % (
        node, tick, ', '.join(STATUS_SEEN.get(node, (None, ['no row']))[1])), good, 10)


STATUS_SEEN = {}


def converge(label, since=None):
    """Wait until branch and leaf applied the root's first tick after now (sequences
    published first), then compare data and sequences. `since`: when the load ended,
    for the drain time."""
    seqs = wait_seqs_published()
    tick = sync_point('root')
    wait_caught_up(tick, SUBSCRIBERS)
    for n in SUBSCRIBERS:
        check_status_row(n, tick, label)
    if since is not None:
        log('  %s: leaf caught up with root tick %d %.1fs after the load ended' % (
            label, tick, time.time() - since))
    check_same_data(label)
    check_seqs(seqs, label)


# ---------------------------------------------------------------- the scenario


# Copied by the replay workers (add-table without --expect-sync); the rest, empty on
# the root at setup, takes the --expect-sync path (state ok at once, nothing copied).
COPIED = ['digoal.user_info', 'digoal.user_session', 'digoal.user_login_rec']
EXPECT_SYNC = [t for t in TABLES if t not in COPIED]
COPY_LINE = re.compile(r'pgq (?:replay|copy): node "([^"]+)": copied table (\S+): (\d+) rows, (\d+) bytes in (\d+) ms')








# The copy drops the indexes and constraints of an emptied destination before its COPY
# and rebuilds them after it: user_info gets one of each kind worth keeping, on every
# node (the destination's own definitions are what must come back).
IDX_TABLE = 'digoal.user_info'
IDX_DDL = [
    "alter table digoal.user_info add constraint user_info_uid_email_key "
    "unique (userid, email) deferrable initially deferred",
    "create index user_info_dba_name on digoal.user_info (engname) with (fillfactor = 70) "
    "tablespace copy_ts where occupation = 'DBA'",
    "create index on digoal.user_info (lower(email))",
    "create unique index user_info_ri on digoal.user_info (userid) include (cnname)",
    "alter table digoal.user_info replica identity using index user_info_ri",
    "alter table digoal.user_info cluster on user_info_lower_idx",
    "alter index digoal.user_info_pkey set tablespace copy_ts",
    "comment on index digoal.user_info_dba_name is 'DBAs by name'",
    "comment on constraint user_info_pkey on digoal.user_info is 'the user''s id'",
    # a view that needs user_session's primary key (GROUP BY it): that key cannot be
    # dropped, the copy keeps it in place
    "create view digoal.session_last as select s.userid, s.logintime from digoal.user_session s "
    "group by s.userid",
]
KEPT_INDEX = 'user_session_pkey'


def add_copy_indexes(node):
    ts = os.path.join(os.path.dirname(DIRS[node]), 'copy_ts')
    os.makedirs(ts, exist_ok=True)
    pw = pwd.getpwnam('postgres')
    os.chown(ts, pw.pw_uid, pw.pw_gid)
    q(node, "create tablespace copy_ts location '%s'" % ts)
    for sql in IDX_DDL:
        q(node, sql)


def index_shape(node, table):
    """Everything about the indexes and constraints of table a copy must keep: index
    definitions, tablespaces, storage parameters, flags, comments, constraint
    definitions and deferrability, the replica identity; and the index OIDs (which a
    rebuild changes)."""
    idx = q(node, """
        select ic.relname::text, pg_get_indexdef(i.indexrelid), coalesce(ts.spcname::text, ''),
               coalesce(array_to_string(ic.reloptions, ','), ''), i.indisprimary, i.indisunique,
               i.indimmediate, i.indisclustered, i.indisreplident, i.indisvalid,
               coalesce(obj_description(i.indexrelid, 'pg_class'), '')
          from pg_index i join pg_class ic on ic.oid = i.indexrelid
          left join pg_tablespace ts on ts.oid = ic.reltablespace
         where i.indrelid = %s::regclass order by 1""", [table])
    cons = q(node, """
        select conname::text, contype::text, pg_get_constraintdef(oid), condeferrable, condeferred,
               coalesce((select relname::text from pg_class where oid = conindid), ''),
               coalesce(obj_description(oid, 'pg_constraint'), '')
          from pg_constraint where conrelid = %s::regclass order by 1""", [table])
    ident = q1(node, 'select relreplident::text from pg_class where oid = %s::regclass', [table])
    oids = dict(q(node, 'select indexrelid::regclass::text, indexrelid::int8 from pg_index '
                        'where indrelid = %s::regclass', [table]))
    return (idx, cons, ident), oids


def check_copy_indexes(before):
    """After the initial copy: on branch and leaf the same index and constraint shape as
    before it, every index of user_info rebuilt (new OIDs), user_session's primary key
    (a view depends on it) kept (same OID), and the tables analyzed."""
    for n in SUBSCRIBERS:
        (shape0, oids0), (shape1, oids1) = before[n], index_shape(n, IDX_TABLE)
        if shape1 != shape0:
            fail('%s: the indexes/constraints of %s differ after the initial copy:\n before %s\n after  %s' % (
                n, IDX_TABLE, shape0, shape1))
        idx, cons, ident = shape1
        # the shape has what the scenario made: a clustered index, a replica identity
        # index, a deferred unique constraint, two indexes in copy_ts, comments
        if ident != 'i' or sum(r[7] for r in idx) != 1 or sum(r[8] for r in idx) != 1 \
                or not any(r[4] for r in cons) or sum(r[2] == 'copy_ts' for r in idx) != 2 \
                or len(idx) != 5:
            fail('%s: %s does not have the indexes the scenario made: %s %s %s' % (n, IDX_TABLE, idx, cons, ident))
        same = sorted(k for k in oids1 if oids0.get(k) == oids1[k])
        if same:
            fail('%s: indexes of %s not rebuilt by the copy (same OID): %s' % (n, IDX_TABLE, same))
        kept = 'digoal.' + KEPT_INDEX
        s0 = before[n + ':session']
        now = index_shape(n, 'digoal.user_session')
        if now[0] != s0[0]:
            fail('%s: the indexes of user_session differ after the copy:\n before %s\n after  %s' % (
                n, s0[0], now[0]))
        if now[1].get(kept) != s0[1].get(kept):
            fail('%s: %s was dropped though a view depends on it' % (n, KEPT_INDEX))
        text, _ = log_lines(n)
        if '%s (other objects depend on it)' % KEPT_INDEX not in text:
            fail('%s: no log line tells that %s was kept in place' % (n, KEPT_INDEX))
        never = [t for t in COPIED if q1(n, 'select last_analyze from pg_stat_user_tables '
                                            'where relid = %s::regclass', [t]) is None]
        if never:
            fail('%s: not analyzed after the copy: %s' % (n, never))
    log('  branch, leaf: the %d indexes and %d constraints of %s rebuilt after the copy as they were '
        '(tablespaces, clustered, replica identity, deferrable, comments); %s kept (a view needs it); '
        'tables analyzed' % (len(before['branch'][0][0]), len(before['branch'][0][1]), IDX_TABLE, KEPT_INDEX))


@step('create-root/-branch/-leaf, add-table (the replay workers copy the data), add-seq')
def s_setup():
    for n in NODES:
        write_ini(n)
        add_copy_indexes(n)
    londiste('root', 'create-root', 'root', connstr('root'))
    londiste('branch', 'create-branch', 'branch', connstr('branch'), '--provider=' + connstr('root'))
    londiste('leaf', 'create-leaf', 'leaf', connstr('leaf'), '--provider=' + connstr('branch'))
    # tick at least every 200 ms while events come and every second when idle (as one
    # would tune pgqd), so the waits for ticks below are short
    q('root', "select pgq.set_queue_config(%s, 'ticker_max_lag', '200 milliseconds'), "
              "pgq.set_queue_config(%s, 'ticker_idle_period', '1 second')", [QUEUE, QUEUE])
    londiste('root', 'add-table', *TABLES)
    for t in EXPECT_SYNC:
        if q1('root', 'select count(*) from %s' % t):
            fail('%s is not empty on the root: it cannot take the --expect-sync path without a copy' % t)
    for n in SUBSCRIBERS:
        if any(q1(n, 'select count(*) from %s' % t) for t in TABLES):
            fail('%s has rows before add-table: the copy would not be the worker\'s' % n)
    before = {}
    for n in SUBSCRIBERS:
        before[n] = index_shape(n, IDX_TABLE)
        before[n + ':session'] = index_shape(n, 'digoal.user_session')
    started = {}
    for n in SUBSCRIBERS:
        started[n] = time.time()
        londiste(n, 'add-table', *COPIED)
        londiste(n, 'add-table', '--expect-sync', *EXPECT_SYNC)
        # (the copied ones may be done already: the copy lines below tell who copied)
        st = table_states(n)
        for t in EXPECT_SYNC:
            if st.get(t) != 'ok':
                fail('%s: %s added with --expect-sync is %r, expected ok' % (n, t, st.get(t)))
    for n in NODES:
        londiste(n, 'add-seq', *SEQS)
    want = {t: 'ok' for t in TABLES}
    for n in SUBSCRIBERS:
        wait_for(lambda: '%s: every table ok after the initial copy (states %s)' % (n, table_states(n)),
                 lambda: table_states(n) == want, 120, 0.2)
        log('  %s: all %d tables ok %.1fs after its add-table' % (n, len(TABLES), time.time() - started[n]))
    # the copies as the workers logged them: one per copied table and node, rows as on
    # the root, none of the --expect-sync table
    for n in SUBSCRIBERS:
        text, _ = log_lines(n)
        copies = {}
        for m in COPY_LINE.finditer(text):
            if m.group(1) != n:
                fail('%s: the copy line names node %r: %s' % (n, m.group(1), m.group(0)))
            if m.group(2) in copies:
                fail('%s: %s copied twice' % (n, m.group(2)))
            copies[m.group(2)] = (int(m.group(3)), int(m.group(4)), int(m.group(5)))
        if set(copies) != set(COPIED):
            fail('%s: the worker logged copies of %s, expected %s' % (n, sorted(copies), COPIED))
        for t, (rows, nbytes, ms) in copies.items():
            root_rows = q1('root', 'select count(*) from %s' % t)
            if rows != root_rows:
                fail('%s: copy of %s logged %d rows, the root has %d' % (n, t, rows, root_rows))
        log('  %s: copied %s; copy time %d ms in all' % (
            n, ', '.join('%s %d rows/%d kB in %d ms' % (t.split('.')[1], r, b // 1024, ms)
                         for t, (r, b, ms) in sorted(copies.items())),
            sum(c[2] for c in copies.values())))
    for n in NODES:
        info = node_info(n)
        if (info[0], info[2]) != (n, PROVIDER[n]):
            fail('%s is %s with provider %s, expected %s with provider %s' % (
                n, info[0], info[2], n, PROVIDER[n]))
        seqs = set(r[0] for r in q(n, 'select seq_name from londiste.get_seq_list(%s) where local', [QUEUE]))
        if seqs != set(SEQS):
            fail('%s: local sequences %s' % (n, sorted(seqs)))
    trg = q1('root', "select count(*) from pg_trigger where tgname like '\\_londiste\\_%%' "
                     "and tgrelid::regclass::text like 'digoal.%%'")
    if trg != 2 * len(TABLES):
        fail('root: %s londiste triggers, expected %d (row + truncate per table)' % (trg, 2 * len(TABLES)))
    check_same_data('after the initial copy')
    check_copy_indexes(before)


@step('a `pgq replay` worker runs on branch and leaf (worker_status, pg_stat_activity)')
def s_workers_up():
    for n in SUBSCRIBERS:
        guc = q1(n, "select current_setting('pgq.replay', true)")
        if guc != 'on':
            fail('%s: pgq.replay is %s' % (n, 'unknown to this build (no in-server replay)'
                                           if guc is None else repr(guc)))
        pid = wait_for('a replay worker on %s in pgq.worker_status() (kind replay, with a pid) '
                       'and pg_stat_activity (backend_type %r)' % (n, REPLAY_BACKEND),
                       lambda: replay_pid(n), 60, 0.5)
        row = [r for r in replay_rows(n) if r.get('pid') == pid][0]
        if row.get('object') != QUEUE:
            fail('%s: replay worker object is %r, expected the queue %r' % (n, row.get('object'), QUEUE))
        if row.get('database') not in (None, 'digoal'):
            fail('%s: replay worker database is %r' % (n, row.get('database')))
        app = dict(replay_backends(n))[pid]
        if app != REPLAY_BACKEND:
            fail('%s: replay worker application_name is %r, expected %r' % (n, app, REPLAY_BACKEND))
        log('  %s: replay worker pid %d' % (n, pid))
    if replay_rows('root') or replay_backends('root'):
        fail('the root runs a replay worker:\n%s' % describe_workers('root'))


@step('pgbench load on the root; branch and leaf catch up (drain time)')
def s_load():
    pids = {n: replay_pid(n) for n in SUBSCRIBERS}
    t = time.time()
    p = pgbench('root', LOAD_SECONDS)
    n = wait_pgbench('root', p, LOAD_SECONDS)
    t_end = time.time()
    ev = q1('root', 'select ev_new from pgq.get_queue_info(%s)', [QUEUE])
    log('  %d login/logout transactions on the root in %.1fs (%.0f/s); %s events not yet in a batch' % (
        n, t_end - t, n / (t_end - t), ev))
    converge('after load', since=t_end)
    # the copy snapshots are dropped once a batch ends past them
    for nd in SUBSCRIBERS:
        wait_for(lambda: '%s: the copy snapshots to be cleared (custom_snapshot %s)' % (nd, dict(
                     q(nd, 'select table_name, custom_snapshot from londiste.get_table_list(%s) '
                           'where local and custom_snapshot is not null', [QUEUE]))),
                 lambda: q1(nd, 'select count(*) from londiste.get_table_list(%s) '
                                'where local and custom_snapshot is not null', [QUEUE]) == 0, 30)
    for nd in SUBSCRIBERS:
        now = replay_pid(nd)
        if now != pids[nd]:
            fail('%s: replay worker pid changed under plain load (%s -> %s):\n%s' % (
                nd, pids[nd], now, describe_workers(nd)))


@step('same data everywhere; sequences; `londiste compare` on the branch')
def s_compare():
    converge('before compare')
    out = londiste('branch', 'compare')
    pairs = re.findall(r'srcdb: (\d+ rows, checksum=-?\d+)\s.*?dstdb: (\d+ rows, checksum=-?\d+)', out, re.S)
    if len(pairs) != len(TABLES) or any(a != b for a, b in pairs):
        fail('compare on the branch: %s\n%s' % (pairs, out))
    if 'do not match' in out:
        fail('compare on the branch reports a mismatch:\n%s' % out)
    log('  compare on the branch: %d tables equal' % len(TABLES))


# ---------------------------------------------------------------- errors, on/off

# deliberate replay errors: node -> list of (log offset from, log offset to, regex) of
# the server log lines of a replay worker that step s_logs accepts
EXPECTED_LOG = {n: [] for n in NODES}
CONFLICT_ID = ROWS + 1001     # user_info.userid of the conflicting row
LEAF_ONLY = 'leaf-only row'


def worker_name(node):
    return q1(node, 'select worker_name from pgq_node.get_node_info(%s)', [QUEUE])


def consumer_error(node):
    return q1(node, 'select cur_error from pgq_node.get_consumer_state(%s, %s)', [QUEUE, worker_name(node)])


def replay_status(node):
    rows = replay_rows(node)
    return rows[0] if len(rows) == 1 else None


def replay_errors(node, since_id=0):
    return qdict(node, 'select * from pgq_cascade.replay_error where queue_name = %s and error_id > %s '
                       'order by error_id', [QUEUE, since_id])


def last_error_id(node):
    return q1(node, 'select coalesce(max(error_id), 0) from pgq_cascade.replay_error') or 0


def check_backoff(errs, label):
    """The error_time gaps of consecutive errors grow (1 s, 2 s, 4 s ...)."""
    times = [e['error_time'] for e in errs]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    if len(gaps) < 2:
        fail('%s: %d error rows, need 3 for two gaps' % (label, len(errs)))
    if gaps[0] < 0.7 or any(b < a * 1.4 for a, b in zip(gaps, gaps[1:])):
        fail('%s: retry gaps %s do not grow like the backoff (1 s, 2 s, 4 s ...)' % (
            label, ', '.join('%.2fs' % g for g in gaps)))
    return gaps


def root_insert_user(userid, name, *more):
    """Insert user_info rows (userid, name[, userid, name ...]) on the root in one
    transaction; returns its txid."""
    rows = [(userid, name)] + list(zip(more[::2], more[1::2]))
    con = pgqclient.connect(connstr('root'))
    try:
        with con.cursor() as cur:
            for u, n in rows:
                cur.execute("insert into digoal.user_info (userid, engname, cnname, email, crt_time) "
                            "values (%s, %s, '冲突', 'c@example.org', now())", [u, n])
            cur.execute('select txid_current()')
            txid = cur.fetchone()[0]
        con.commit()
        return txid
    finally:
        con.close()


def has_user(node, userid):
    return q1(node, 'select count(*) from digoal.user_info where userid = %s', [userid]) == 1


def root_event_of(txid, table, pk):
    """ev_id of the root's event of txid on table whose data names pk."""
    pfx = q1('root', 'select queue_data_pfx from pgq.queue where queue_name = %s', [QUEUE])
    rows = q('root', 'select ev_id, ev_data from %s where ev_txid = %%s and ev_extra1 = %%s' % pfx,
             [txid, table])
    ids = [r[0] for r in rows if re.search(r'(^|&)userid=%d(&|$)' % pk, r[1] or '')]
    if len(ids) != 1:
        fail('the root has %d events of txid %s on %s for userid %d: %s' % (len(ids), txid, table, pk, rows))
    return ids[0]


@step('apply conflict on the leaf: error recorded (cur_error, worker_status 23505, replay_error), '
      'retries back off, skip_replay_error, replay resumes')
def s_conflict():
    k = CONFLICT_ID
    since = last_error_id('leaf')
    off = log_size('leaf')
    # a row the root will insert next, already on the leaf (its tables deny writes: as
    # replica)
    q('leaf', "set session_replication_role = replica; "
              "insert into digoal.user_info (userid, engname) values (%s, %s)", [k, LEAF_ONLY])
    # one transaction, so one batch: a row before the conflicting one, the conflicting
    # one, a row after it; skipping the event must keep the other two
    before, after = k + 2, k + 3
    txid = root_insert_user(before, 'same batch, before', k, 'root row', after, 'same batch, after')
    ev_id = root_event_of(txid, 'digoal.user_info', k)
    wait_for('the branch to get userid %d' % k, lambda: has_user('branch', k), 30)
    t_err = time.time()

    def first_error():
        errs = [e for e in replay_errors('leaf', since) if e['sqlstate'] == '23505']
        return errs[0] if errs else None
    e = wait_for(lambda: 'a 23505 row in pgq_cascade.replay_error on the leaf (rows: %s; worker: %s)' % (
                     replay_errors('leaf', since), replay_status('leaf')), first_error, 30)
    bad = []
    if e['ev_id'] != ev_id:
        bad.append('ev_id %s, expected %s' % (e['ev_id'], ev_id))
    # the leaf reads the branch's queue, where a copied event carries the txid of the
    # branch transaction that copied it (as with the original's branches)
    if e['ev_txid'] is None:
        bad.append('ev_txid is NULL')
    if e['table_name'] not in ('digoal.user_info', 'user_info'):
        bad.append('table_name %r' % e['table_name'])
    if e['batch_id'] is None or e['tick_id'] is None:
        bad.append('batch_id %s, tick_id %s' % (e['batch_id'], e['tick_id']))
    if e['skipped'] or e['consumer_name'] != worker_name('leaf'):
        bad.append('skipped %s, consumer %r' % (e['skipped'], e['consumer_name']))
    if 'duplicate key' not in e['message']:
        bad.append('message %r' % e['message'])
    log('  replay_error %d: ev_id %s (txid %s) on %s, batch %s, tick %s, %.1fs after the branch had the row: %s' % (
        e['error_id'], e['ev_id'], e['ev_txid'], e['table_name'], e['batch_id'], e['tick_id'],
        time.time() - t_err, e['message'][:100]))
    if bad:
        fail_later('replay_error row of the conflict (root event ev_id %d, txid %d): %s (row %s)' % (
            ev_id, txid, ', '.join(bad), e))

    def status_has_error():
        r = replay_status('leaf')
        return r if r and r.get('last_sqlstate') == '23505' and r.get('last_error') else None
    r = wait_for(lambda: "the leaf's worker_status to show the 23505 (%s)" % replay_status('leaf'),
                 status_has_error, 10)
    log('  worker_status: last_sqlstate %s, last_error %r' % (r['last_sqlstate'], r['last_error'][:100]))
    ce = wait_for("the leaf's cur_error (get_consumer_state)", lambda: consumer_error('leaf'), 10)
    if 'duplicate key' not in ce:
        fail('cur_error on the leaf is %r' % ce)
    out = londiste('leaf', 'status')
    if not re.search(r'ERR:.*duplicate key', out):
        fail('`londiste status` on the leaf shows no ERR: line with the conflict:\n%s' % out)
    # a later change of the root is held back with the failing batch
    txid2 = root_insert_user(k + 1, 'after the conflict')
    wait_for('the branch to get userid %d' % (k + 1), lambda: has_user('branch', k + 1), 30)
    # three failures: the two gaps between them grow
    errs = wait_for(lambda: 'three errors of the conflict (%d so far)' % len(replay_errors('leaf', since)),
                    lambda: (lambda x: x if len(x) >= 3 else None)(
                        [x for x in replay_errors('leaf', since) if x['sqlstate'] == '23505'
                         and (x['batch_id'], x['tick_id'], x['ev_id']) == (e['batch_id'], e['tick_id'], e['ev_id'])]),
                    30)
    gaps = check_backoff(errs[:3], 'conflict retries')
    log('  %d errors of the conflict so far; retry gaps %s' % (len(errs), ', '.join('%.2fs' % g for g in gaps)))
    if has_user('leaf', k + 1):
        fail('userid %d (txid %d) reached the leaf while the batch before it fails' % (k + 1, txid2))
    # skip it
    ret = q('leaf', 'select * from pgq_cascade.skip_replay_error(%s)', [QUEUE])[0]
    if ret[0] != 200:
        fail('skip_replay_error: %s' % (ret,))
    if 'event %d ' % ev_id not in ret[1]:
        fail_later('skip_replay_error does not skip the event %d: %s' % (ev_id, ret[1]))
    t_skip = time.time()
    log('  skip_replay_error: %s %s' % ret)
    wait_for('userid %d on the leaf after the skip' % (k + 1), lambda: has_user('leaf', k + 1), 30, 0.05)
    log('  replay resumed: the next change reached the leaf %.2fs after the skip' % (time.time() - t_skip))
    newest = replay_errors('leaf', since)[-1]
    if not (newest['skipped'] and newest['sqlstate'] == '23505' and
            (newest['batch_id'], newest['tick_id'], newest['ev_id']) == (e['batch_id'], e['tick_id'], e['ev_id'])):
        fail('the newest replay_error row is not the skipped conflict: %s' % newest)
    again = q('leaf', 'select * from pgq_cascade.skip_replay_error(%s)', [QUEUE])[0]
    if again[0] != 404:
        fail('a second skip_replay_error returned %s' % (again,))
    wait_for(lambda: "the leaf's cur_error to clear (%r)" % consumer_error('leaf'),
             lambda: consumer_error('leaf') is None, 15)
    wait_for(lambda: "the leaf's worker_status error to clear (%s)" % replay_status('leaf'),
             lambda: (lambda r: r and r.get('pid') and not r.get('last_error'))(replay_status('leaf')), 15)
    # the skipped event was left out: the leaf still has its own row; fix it by hand
    got = q1('leaf', 'select engname from digoal.user_info where userid = %s', [k])
    if got != LEAF_ONLY:
        fail('userid %d on the leaf is %r after the skip, expected the leaf-only row' % (k, got))
    fix = [k]
    lost = [u for u in (before, after) if not has_user('leaf', u)]
    if lost:
        fail_later('the skip left out more than the failing event: userid %s of the same root '
                   'transaction (txid %d) missing on the leaf' % (', '.join(map(str, lost)), txid))
        fix += lost
    for u in fix:
        row = q1('root', 'select row_to_json(u)::text from digoal.user_info u where userid = %s', [u])
        q('leaf', "set session_replication_role = replica; "
                  "delete from digoal.user_info where userid = %s; "
                  "insert into digoal.user_info select * from json_populate_record(null::digoal.user_info, %s::json)",
          [u, row])
    EXPECTED_LOG['leaf'].append((off, log_size('leaf'), re.compile(r'duplicate key|23505')))
    converge('after the skipped conflict')


@step('in-server replay off on the leaf: worker gone, changes held back; on again: back, caught up; '
      'set_consumer_completed refused (55000) while on')
def s_off_on():
    k = CONFLICT_ID + 10
    pid = replay_pid('leaf')
    if not pid:
        fail('no replay worker on the leaf before:\n%s' % describe_workers('leaf'))
    ret = q('leaf', 'select * from pgq_cascade.set_in_server_replay(%s, false)', [QUEUE])[0]
    if ret[0] != 200:
        fail('set_in_server_replay(false): %s' % (ret,))
    t = time.time()
    wait_for(lambda: 'the replay worker of the leaf to go away:\n%s' % describe_workers('leaf'),
             lambda: not replay_backends('leaf') and not [r for r in replay_rows('leaf') if r.get('pid')],
             20)
    log('  off: %s; worker %d gone after %.1fs' % (ret[1], pid, time.time() - t))
    tick_before = node_info('leaf')[3]
    root_insert_user(k, 'while off')
    tick = sync_point('root')
    wait_caught_up(tick, ['branch'])
    wait_for('userid %d on the branch' % k, lambda: has_user('branch', k), 30)
    time.sleep(2)
    if has_user('leaf', k) or node_info('leaf')[3] != tick_before:
        fail('the leaf moved while in-server replay is off (userid %d there: %s, tick %s -> %s)' % (
            k, has_user('leaf', k), tick_before, node_info('leaf')[3]))
    if replay_backends('leaf'):
        fail('a replay worker runs on the leaf while off:\n%s' % describe_workers('leaf'))
    # off: an external worker may complete batches (checked, then rolled back)
    con = pgqclient.connect(connstr('leaf'))
    try:
        r = pgqclient.rows(con, 'select ret_code from pgq_node.set_consumer_completed(%s, %s, %s)',
                           [QUEUE, worker_name('leaf'), tick_before])
        con.rollback()
    finally:
        con.close()
    if r[0][0] != 100:     # the original's "Consumer ... completed tick = ..."
        fail('set_consumer_completed while off returned %s' % r)
    ret = q('leaf', 'select * from pgq_cascade.set_in_server_replay(%s, true)', [QUEUE])[0]
    if ret[0] != 200 or 'acting as role postgres' not in ret[1]:
        fail('set_in_server_replay(true): %s' % (ret,))
    t = time.time()
    new = wait_for(lambda: 'a replay worker on the leaf again:\n%s' % describe_workers('leaf'),
                   lambda: (lambda x: x if x and x != pid else None)(replay_pid('leaf')), 20)
    wait_for('userid %d on the leaf after on' % k, lambda: has_user('leaf', k), 30, 0.05)
    log('  on: %s; worker %d; the held-back row arrived %.1fs after on' % (ret[1], new, time.time() - t))
    converge('after off/on')
    # on: any other session's set_consumer_completed for the leaf's worker is refused
    sql = ('\\set VERBOSITY verbose\n'
           "select * from pgq_node.set_consumer_completed('%s', '%s', %d);\n" % (
               QUEUE, worker_name('leaf'), node_info('leaf')[3]))
    r = subprocess.run([os.path.join(PG_BIN, 'psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1',
                        '-h', '127.0.0.1', '-p', PORTS['leaf'], '-U', 'postgres', '-d', 'digoal'],
                       input=sql.encode(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = r.stdout.decode(errors='replace')
    if r.returncode == 0 or 'ERROR:  55000:' not in out or 'replayed in-server' not in out:
        fail('set_consumer_completed from psql while in-server replay is on: exit %d:\n%s' % (r.returncode, out))
    log('  psql set_consumer_completed while on: %s' % out.strip().splitlines()[0])


@step("the branch's replay worker terminated twice under load: back with a new pid, nothing lost or doubled")
def s_terminate():
    # long enough that both terminations and both restarts (backoff 1, 2, 4 ... s) fall
    # inside the load, and the last worker resumes under load
    seconds = max(LOAD_SECONDS, 16)
    p = pgbench('root', seconds)
    seen = [replay_pid('branch')]
    if seen[0] is None:
        fail('no replay worker on the branch before the load:\n%s' % describe_workers('branch'))
    for i in (1, 2):
        time.sleep(2)
        old = seen[-1]
        if not q1('branch', 'select pg_terminate_backend(%s)', [old]):
            fail('pg_terminate_backend(%d) on the branch returned false' % old)
        t = time.time()
        new = wait_for('the branch replay worker to come back after termination %d of pid %d' % (i, old),
                       lambda: (lambda x: x if x and x not in seen else None)(replay_pid('branch')), 60, 0.2)
        seen.append(new)
        log('  termination %d: pid %d ended, pid %d running %.1fs later%s' % (
            i, old, new, time.time() - t, '' if p.poll() is None else ' (load already over)'))
        if q1('branch', 'select count(*) from pg_stat_activity where pid = %s', [old]):
            fail('the terminated replay worker %d still runs next to %d' % (old, new))
    n = wait_pgbench('root', p, seconds)
    t_end = time.time()
    log('  %d transactions on the root' % n)
    converge('after the terminations', since=t_end)
    if replay_pid('branch') != seen[-1]:
        fail('the branch replay worker changed again after the last termination:\n%s' % describe_workers('branch'))


@step('TRUNCATE on the root empties the table on branch and leaf')
def s_truncate():
    t = 'digoal.user_logout_rec'
    before = {n: q1(n, 'select count(*) from %s' % t) for n in NODES}
    if not all(before.values()):
        fail('%s is empty somewhere before the TRUNCATE: %s' % (t, before))
    q('root', 'truncate %s' % t)
    for n in SUBSCRIBERS:
        wait_for('%s to be empty on %s' % (t, n), lambda: q1(n, 'select count(*) from %s' % t) == 0, 60)
    log('  %s emptied on branch and leaf (had %s rows)' % (t, before['root']))
    # replay goes on after it: the next load reaches every node, also that table
    wait_pgbench('root', pgbench('root', 2), 2)
    converge('after TRUNCATE')
    if q1('leaf', 'select count(*) from %s' % t) == 0:
        fail('no new rows in %s on the leaf after the TRUNCATE' % t)


@step('`londiste execute` of a DDL script on the root reaches branch and leaf')
def s_execute():
    path = os.path.join(WORK, 'add_note.sql')
    with open(path, 'w') as f:
        f.write("--*-- Local-Table: digoal.user_info\n"
                "alter table @digoal.user_info@ add column note text;\n"
                "update @digoal.user_info@ set note = 'vip ' || userid where userid % 1000 = 7;\n")
    londiste('root', 'execute', path)
    for n in NODES:
        wait_for('column note of digoal.user_info on %s' % n,
                 lambda: q1(n, "select count(*) from information_schema.columns where table_schema = 'digoal' "
                               "and table_name = 'user_info' and column_name = 'note'") == 1, 60)
        if q1(n, 'select count(*) from londiste.applied_execute where execute_file = %s', ['add_note.sql']) != 1:
            fail('londiste.applied_execute on %s has no add_note.sql' % n)
    # a replicated change of the new column, then everything equal again
    q('root', "update digoal.user_info set note = 'changed' where userid between 1 and 5")
    converge('after execute')
    want = q1('root', "select count(*) from digoal.user_info where note like 'vip %'")
    if not want:
        fail('execute: the script updated no row on the root')
    for n in SUBSCRIBERS:
        got = q1(n, "select count(*) from digoal.user_info where note like 'vip %'")
        if got != want:
            fail('execute: %s has %s rows with a vip note, expected %d' % (n, got, want))


ROLE = 'rt_replayer'
RIGHT_SECRET = 'rightsecret-ABC'
WRONG_SECRET = 'wrongsecret-XYZ'


def node_replay(node):
    return q(node, 'select replay_role::text, in_server from pgq_cascade.node_replay where queue_name = %s',
             [QUEUE])[0]


def set_replay(node, on, role=None):
    """pgq_cascade.set_in_server_replay on node, as role (SET ROLE) or postgres."""
    con = pgqclient.connect(connstr(node), autocommit=True)
    try:
        if role:
            pgqclient.rows(con, 'set role %s' % role)
        r = pgqclient.rows(con, 'select * from pgq_cascade.set_in_server_replay(%s, %s)', [QUEUE, on])[0]
    finally:
        con.close()
    if r[0] != 200:
        fail('set_in_server_replay(%s) as %s on %s: %s' % (on, role or 'postgres', node, r))
    return r


def wait_no_replay(node):
    wait_for(lambda: 'the replay worker of %s to go away:\n%s' % (node, describe_workers(node)),
             lambda: not replay_backends(node) and not [r for r in replay_rows(node) if r.get('pid')], 20)


def secret_leaks(secret):
    """Where secret shows up: server logs, worker_status, replay_error, local_state."""
    where = []
    for n in NODES:
        with open(server_log(n), 'rb') as f:
            if secret.encode() in f.read():
                where.append('%s server.log' % n)
        for what, sql in (('worker_status', 'select string_agg(w::text, chr(10)) from pgq.worker_status() w'),
                          ('replay_error', 'select string_agg(e::text, chr(10)) from pgq_cascade.replay_error e'),
                          ('local_state', 'select string_agg(s::text, chr(10)) from pgq_node.local_state s')):
            if secret in (q1(n, sql) or ''):
                where.append('%s %s' % (n, what))
    return where


def no_crash_since(node, offset):
    """Fail at once when node's server log shows a crashed process after offset."""
    text, _ = log_lines(node, offset)
    bad = [l for l in text.splitlines() if re.search(r'terminated by signal|PANIC:', l)]
    if bad:
        ctx = [l for l in text.splitlines()
               if re.search(r'terminated by signal|Failed process was running|PANIC:|reinitializing', l)]
        fail('%s crashed (%d crash line(s) in its server log since the step began):\n%s' % (
            node, len(bad), '\n'.join(ctx[:8])))


def replay_failing(node, since, pattern, log_from=None):
    """node's replay row in worker_status and its replay_error rows since `since` once
    worker_status shows an error matching pattern."""
    if log_from is not None:
        no_crash_since(node, log_from)
    r = replay_status(node)
    if not (r and r.get('last_error') and re.search(pattern, r['last_error'])):
        return None
    errs = [e for e in replay_errors(node, since) if re.search(pattern, e['message'])]
    return (r, errs) if errs else None


ROLES_MADE = []


def make_password_role():
    """ROLE on the leaf (londiste_writer, pgq_admin, the digoal tables) and on the
    branch with a password the branch asks for (scram-sha-256, before the trust lines)."""
    if ROLES_MADE:
        return
    q('leaf', 'create role %s login; grant londiste_writer, pgq_admin to %s; '
              'grant usage on schema digoal to %s; grant all on all tables in schema digoal to %s' % (
                  ROLE, ROLE, ROLE, ROLE))
    q('branch', "create role %s login password '%s'; grant londiste_reader, pgq_admin to %s" % (
        ROLE, RIGHT_SECRET, ROLE))
    hba = os.path.join(DIRS['branch'], 'pg_hba.conf')
    with open(hba) as f:
        text = f.read()
    with open(hba, 'w') as f:
        f.write('host all %s 127.0.0.1/32 scram-sha-256\n' % ROLE + text)
    if not q1('branch', 'select pg_reload_conf()'):
        fail('pg_reload_conf() on the branch returned false')
    bad = q('branch', 'select line_number, error from pg_hba_file_rules where error is not null')
    if bad:
        fail('pg_hba.conf of the branch: %s' % bad)
    os.environ['PGPASSFILE'] = os.path.join(WORK, 'no-such-pgpass')   # no .pgpass helps
    os.environ.pop('PGPASSWORD', None)

    def refused(pw):
        try:
            psycopg2.connect('host=127.0.0.1 port=%s dbname=digoal user=%s%s' % (
                PORTS['branch'], ROLE, ' password=%s' % pw if pw else ''), connect_timeout=5).close()
            return False
        except psycopg2.OperationalError:
            return True
    wait_for('the branch to refuse %s without its password' % ROLE, lambda: refused(None), 10)
    if not refused(WRONG_SECRET) or refused(RIGHT_SECRET):
        fail('the branch does not check the password of %s' % ROLE)
    ROLES_MADE.append(ROLE)


def wrong_location():
    return 'host=127.0.0.1 port=%s dbname=digoal user=%s password=%s' % (PORTS['branch'], ROLE, WRONG_SECRET)


def set_location(node, provider, loc):
    if q1(node, 'select ret_code from pgq_node.register_location(%s, %s, %s, false)',
          [QUEUE, provider, loc]) != 200:
        fail('register_location of %s failed on %s' % (provider, node))


def check_no_leak():
    leaks = secret_leaks(WRONG_SECRET)
    if leaks:
        fail('the wrong password %s shows up in: %s' % (WRONG_SECRET, ', '.join(leaks)))


AUTH_FAILED = 'password authentication failed'
CONNECT_FAILED = r'could not establish connection|password authentication failed'


def wait_wrong_password(since, off, n):
    """The leaf's replay fails n times to connect with the wrong password (worker_status,
    replay_error); the reason (the branch's "password authentication failed") must be
    told somewhere on the leaf: worker_status, replay_error or cur_error."""
    r, errs = wait_for(lambda: 'the leaf replay to fail %d times to connect with the wrong password (%s)' % (
                           n, describe_workers('leaf')),
                       lambda: (lambda x: x if x and len(x[1]) >= n else None)(
                           replay_failing('leaf', since, CONNECT_FAILED, off)), 40)
    if not r.get('last_sqlstate'):
        fail('wrong password: no sqlstate in worker_status: %s' % r)
    if any(e['batch_id'] is not None for e in errs):
        fail('wrong password: replay_error rows name a batch: %s' % errs)
    log('  wrong password: worker_status %s: %s' % (r['last_sqlstate'], r['last_error']))
    ce = consumer_error('leaf') or ''
    if not any(AUTH_FAILED in t for t in [r['last_error'], ce] + [e['message'] for e in errs]):
        fail_later('wrong password: the reason (%r, in the branch\'s log) is told nowhere on the leaf: '
                   'worker_status last_error %r (%s), cur_error %r, replay_error messages %s' % (
                       AUTH_FAILED, r['last_error'], r['last_sqlstate'], ce,
                       sorted(set(e['message'] for e in errs))))
    return r, errs


def restore_leaf(label):
    set_location('leaf', 'branch', connstr('branch'))
    k = CONFLICT_ID + 20 + len(EXPECTED_LOG['leaf'])
    t = time.time()
    root_insert_user(k, label)
    wait_for('userid %d on the leaf after the restore' % k, lambda: has_user('leaf', k), 60, 0.1)
    log('  restored: the next root change on the leaf %.1fs later' % (time.time() - t))
    wait_for(lambda: "the leaf's cur_error to clear (%r)" % consumer_error('leaf'),
             lambda: consumer_error('leaf') is None, 15)
    converge(label)


@step('a wrong password in the provider location: auth error, backoff, the secret in no log or '
      'status; restored, caught up')
def s_wrong_password():
    off = log_size('leaf')
    make_password_role()
    pid = replay_pid('leaf')
    since = last_error_id('leaf')
    # the replay role is postgres (a superuser: a password is not required, but used
    # when the branch asks for one, as it does for ROLE)
    set_location('leaf', 'branch', wrong_location())
    r, errs = wait_wrong_password(since, off, 3)
    gaps = check_backoff(errs[:3], 'retries on the wrong password')
    log('  %d errors; retry gaps %s' % (len(errs), ', '.join('%.2fs' % g for g in gaps)))
    # the history is bounded: with pgq.replay_error_retention = 1s the next error's
    # insert deletes the queue's older rows
    last = max(e['error_id'] for e in errs)
    q('leaf', "alter system set pgq.replay_error_retention = '1s'")
    q('leaf', 'select pg_reload_conf()')
    try:
        rows = wait_for('the next error on the leaf to prune the older ones (%s)' % [
                            e['error_id'] for e in replay_errors('leaf', since)],
                        lambda: (lambda x: x if x and x[-1]['error_id'] > last and len(x) == 1 else None)(
                            replay_errors('leaf', since)), 30, 0.2)
        log('  pgq.replay_error_retention = 1s: error %d recorded, the %d rows before it gone' % (
            rows[0]['error_id'], len(errs)))
    finally:
        q('leaf', 'alter system reset pgq.replay_error_retention')
        q('leaf', 'select pg_reload_conf()')
    if replay_pid('leaf') != pid:
        fail('the leaf replay worker changed (%s -> %s): the errors are not retried in the worker' % (
            pid, replay_pid('leaf')))
    # (no `londiste status` here: the Python tool itself connects to the branch with
    # the leaf's location of it, and fails on the wrong password)
    ce = consumer_error('leaf') or ''
    if not re.search(CONNECT_FAILED, ce):
        fail('cur_error on the leaf is %r' % ce)
    check_no_leak()
    log('  %r in no server log, worker_status, replay_error or local_state' % WRONG_SECRET)
    EXPECTED_LOG['leaf'].append((off, log_size('leaf'), re.compile(CONNECT_FAILED)))
    restore_leaf('after the wrong password')
    check_no_leak()


@step('`londiste status` and `members` on the leaf')
def s_info():
    out = londiste('leaf', 'status')
    print(out, flush=True)
    for n in NODES:
        if not re.search(r'\b%s \(%s\)' % (n, n), out):
            fail('status on the leaf does not show %s (%s):\n%s' % (n, n, out))
    if 'ERR:' in out or 'failure' in out.lower():
        fail('status on the leaf shows an error:\n%s' % out)
    out = londiste('leaf', 'members')
    print(out, flush=True)
    for m in NODES:
        if not re.search(r'^%s\s+(False|f)\s+host=' % m, out, re.M):
            fail('members on the leaf does not list %s:\n%s' % (m, out))
    for n in SUBSCRIBERS:
        errs = q(n, 'select consumer_name, cur_error from pgq_node.get_consumer_info(%s) '
                    'where cur_error is not null', [QUEUE])
        if errs:
            fail('%s: consumer errors left: %s' % (n, errs))


@step('server logs: no crash, no PANIC, no ERROR of a replay worker but the deliberate ones')
def s_logs():
    bad = re.compile(r'PANIC:|terminated by signal|was terminated by exception|'
                     r'all server processes terminated|pgq replay: ERROR:')
    found = []
    accepted = 0
    for n in NODES:
        pos = 0
        with open(server_log(n), 'rb') as f:
            for raw in f:
                line = raw.decode(errors='replace')
                start, pos = pos, pos + len(raw)
                if not bad.search(line):
                    continue
                if 'pgq replay: ERROR:' in line and any(a <= start < b and rx.search(line)
                                                         for a, b, rx in EXPECTED_LOG[n]):
                    accepted += 1
                    continue
                found.append('%s: %s' % (n, line.rstrip()))
    if accepted:
        log('  %d ERROR line(s) of the deliberate replay errors (conflict, password)' % accepted)
    if found:
        fail('%d bad line(s) in the server logs:\n%s' % (len(found), '\n'.join(found[:20])))


@step('a replay role that is not a superuser: no password -> 2F003; a wrong password -> auth error; '
      'restored as postgres, caught up')
def s_nonsuper_role():
    off = log_size('leaf')
    make_password_role()
    set_replay('leaf', False)
    wait_no_replay('leaf')
    since = last_error_id('leaf')
    ret = set_replay('leaf', True, ROLE)
    if 'acting as role %s' % ROLE not in ret[1] or node_replay('leaf') != (ROLE, True):
        fail('set_in_server_replay as %s: %s; node_replay %s' % (ROLE, ret, node_replay('leaf')))
    log('  %s' % ret[1])
    # the provider location has no password
    r, errs = wait_for(lambda: 'the leaf replay, acting as %s, to fail for want of a password (%s)' % (
                           ROLE, describe_workers('leaf')),
                       lambda: replay_failing('leaf', since, 'password is required', off), 20)
    if r.get('last_sqlstate') != '2F003' or any(e['sqlstate'] != '2F003' for e in errs):
        fail('no password: sqlstate %s in worker_status, %s in replay_error' % (
            r.get('last_sqlstate'), [e['sqlstate'] for e in errs]))
    log('  no password: worker_status %s: %s' % (r['last_sqlstate'], r['last_error']))
    set_location('leaf', 'branch', wrong_location())
    wait_wrong_password(since, off, 2)
    all_errs = replay_errors('leaf', since)
    gaps = check_backoff(all_errs, 'retries of the replay role %s' % ROLE)
    log('  %d errors since the role switch; retry gaps %s' % (
        len(all_errs), ', '.join('%.2fs' % g for g in gaps)))
    check_no_leak()
    # back to postgres
    set_replay('leaf', False)
    wait_no_replay('leaf')
    set_replay('leaf', True)
    if node_replay('leaf') != ('postgres', True):
        fail('node_replay of the leaf after the restore: %s' % (node_replay('leaf'),))
    EXPECTED_LOG['leaf'].append((off, log_size('leaf'), re.compile(r'password|' + CONNECT_FAILED)))
    restore_leaf('after the non-superuser role')
    no_crash_since('leaf', off)
    check_no_leak()


def main():
    return run_steps('replay scenario', 2, width=92, on_failure=lambda n: '  %s pgq workers:\n%s' % (
        n, describe_workers(n)), prelude=[('clusters, seed workload (data on the root only)', 'ok (run.sh)')])


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
