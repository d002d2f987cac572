#!/usr/bin/python3
"""The interop scenarios (driven by tests/interop/run.sh): `scenario.py A` or `B`.

Every cascade here is replicated by this extension's `pgq replay` background workers
alone, administered with the Python `londiste` CLI; no `londiste worker` serves any of
these clusters at any time, and pgqd only the node of the original stack (checked before
and after every step and while waiting). Every step is checked with SQL against the
nodes; a failing step fails the run, names the step and skips the rest.

A. Mixed versions (how users migrate one node at a time): root = the ORIGINAL stack
   (PgQ 3.5, pgq_node 3.5, londiste 3.8 SQL; ticked by pgqd), branch and leaf = this
   extension.
    1. (run.sh) clusters, seed workload (data on the root only)
    2. the versions are what they should be; create-root on the original,
       create-branch/-leaf on ours
    3. add-table/add-seq: the branch's worker copies every table from the original root,
       the leaf's from the branch (copy lines, rows as on the root); equal data
    4. a `pgq replay` worker on branch and leaf, none on the root; the root serves the
       branch worker's connection; pgqd ticks the root
    5. pgbench load on the original root; branch and leaf catch up (drain time)
    6. same data everywhere (count + hash sum per table), sequences, `londiste compare`
       on the branch
    7. change-provider of the leaf under the original root, under load: its worker
       replays from there; equal data; `londiste compare` on the leaf
    8. TRUNCATE and an EXECUTE'd DDL script on the original root reach branch and leaf
    9. server logs and pgq_cascade.replay_error of our nodes: no crash, no PANIC, no
       replay error
   The original root runs no londiste worker either: pgqd's maintenance publishes its
   sequences (londiste.root_check_seqs through pgq.maint_operations).

B. Topology changes with in-server replay, every node this extension:
   root -> branch1 -> leaf, and branch2 under the root.
    1. (run.sh) clusters, seed workload
    2. create-root/-branch/-leaf/-branch
    3. add-table/add-seq on every node, the workers copy; equal data
    4. a replay worker on branch1, leaf, branch2, none on the root
    5. pause and resume of the leaf with the CLI under load: nothing applied while
       paused (its position and data stay while branch1 moves on), the same worker
       process, everything after resume (times printed)
    6. change-provider of the leaf to branch2 under load and back to branch1: the
       worker follows the new provider (worker_status), equal data after each move
    7. takeover (switchover) of the root by branch1: the new root's replay worker stops,
       the old root (now a branch) gets one from its manager, writes on the new root
       reach every node (branch2 now through the old root), the old root refuses local
       writes, `londiste status` on the new root, `londiste compare` on the old root
    8. takeover --dead-root after the current root (branch1) is stopped and the workers
       of its subscribers (root, leaf) have failed to connect 4 times (their backoff is
       8 s then): the old root is root again, its replay worker stops, the leaf is
       re-pointed to it and its worker replays from there, branch2 goes on; writes on
       the root reach leaf and branch2; `londiste compare` on the leaf (the takeover's
       time is printed: the CLI's pauses wait for the workers' acknowledgements)
    9. server logs and pgq_cascade.replay_error: no crash, no PANIC, no replay error but
       the connection failures to the stopped node

Env (set by run.sh): WORK, NODES ("name=PORT ..."), NODE_DIRS, PG_BIN (pgbench, pg_ctl),
REF_BIN, WORKLOAD_DIR, ROWS, LOAD_SECONDS.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from cascadetest import *  # noqa: E402,F401,F403  (the shared multi-node helpers)
import cascadetest  # noqa: E402

SCENARIO = sys.argv[1] if len(sys.argv) > 1 else ''
if SCENARIO not in ('A', 'B'):
    sys.exit('usage: scenario.py A|B')

# the nodes of this scenario, in run.sh's order
cascadetest.NODES[:] = [kv.split('=')[0] for kv in os.environ['NODES'].split()]
ALL = list(cascadetest.NODES)
ORIGINAL = ['root'] if SCENARIO == 'A' else []     # nodes of the original stack
OURS = [n for n in ALL if n not in ORIGINAL]
DEAD = set()                                       # nodes stopped on purpose

WATCH.append(lambda: check_no_external_workers(pgqd_for=ORIGINAL))


def check_pgqd():
    """The original root's pgqd must keep running (it is the root's only ticker)."""
    for n in ORIGINAL:
        with open(os.path.join(WORK, 'pgqd-%s.started' % n)) as f:
            pid = int(f.read().strip())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            fail('pgqd of %s (pid %d) is gone; its log:\n%s' % (
                n, pid, tail(os.path.join(WORK, 'pgqd-interop%s-%s.log' % (SCENARIO, n)))))


WATCH.append(check_pgqd)


def londiste(node, *args, timeout=120):
    """An admin command of the CLI (never `worker`: nothing replays here but the
    extension); a non-zero exit fails the step."""
    assert 'worker' not in args
    return cascadetest.londiste(node, *args, timeout=timeout)


def timed_londiste(node, *args, timeout=120):
    t = time.time()
    out = londiste(node, *args, timeout=timeout)
    return out, time.time() - t


# ---------------------------------------------------------------- checks

def wait_seqs_published(root, timeout=30):
    """Every replicated sequence published (londiste.seq_info) at or above last_value
    on root; returns the values. Nobody calls londiste.root_check_seqs here: our roots'
    managers do, and pgqd's maintenance (pgq.maint_operations) on the original root."""
    def published():
        vals = {}
        for s in SEQS:
            real = q1(root, 'select last_value from %s' % s)
            pub = q1(root, 'select last_value from londiste.seq_info where queue_name = %s '
                           'and seq_name = %s and local', [QUEUE, s])
            if pub is None or pub < real:
                return None
            vals[s] = real
        return vals
    return wait_for('%s to publish its sequences (londiste.root_check_seqs)' % root, published, timeout)


def check_seqs(root_vals, root, others, label):
    for s in SEQS:
        tbl = 'digoal.' + s.split('.')[1][:-len('_id_seq')]
        maxid = q1(root, 'select coalesce(max(id), 0) from %s' % tbl)
        for n in others:
            v = q1(n, 'select last_value from %s' % s)
            if v < root_vals[s] or v < maxid:
                fail('%s: %s on %s is %s, the root %s has %s (max(id) %s)' % (
                    label, s, n, v, root, root_vals[s], maxid))
    log('  %s: sequences on %s at or above the root\'s (%s)' % (
        label, ', '.join(others), ', '.join('%s %d' % (s.split('.')[1], v) for s, v in root_vals.items())))


STATUS_SEEN = {}


def check_status_row(node, provider, tick, label):
    """node's replay row in pgq.worker_status(): the expected provider, at or past tick,
    no error."""
    def good():
        rows = [r for r in replay_rows(node) if r.get('pid')]
        if len(rows) != 1:
            STATUS_SEEN[node] = ['%d replay rows with a pid' % len(rows)]
            return None
        r = rows[0]
        bad = []
        if r.get('provider') != provider:
            bad.append('provider %r' % r.get('provider'))
        if (r.get('tick_id') or 0) < tick:
            bad.append('tick_id %s' % r.get('tick_id'))
        if r.get('last_error'):
            bad.append('last_error %r (sqlstate %s)' % (r['last_error'], r.get('last_sqlstate')))
        STATUS_SEEN[node] = bad
        return r if not bad else None
    wait_for(lambda: '%s: worker_status to show the replay from %s at tick %d (%s)' % (
        node, provider, tick, ', '.join(STATUS_SEEN.get(node, ['no row']))), good, 15)


def converge(root, others, label, since=None, providers=None):
    """Sequences published, a tick on root after now, every node of others at or past
    it, then the same rows and sequences as on root. since: when the load ended (drain
    time printed); providers: node -> expected provider in its worker_status row."""
    seqs = wait_seqs_published(root)
    tick = sync_point(root)
    wait_caught_up(tick, others)
    if since is not None:
        log('  %s: %s caught up with tick %d of %s %.1fs after the load ended' % (
            label, ', '.join(others), tick, root, time.time() - since))
    for n, p in (providers or {}).items():
        check_status_row(n, p, tick, label)
    compare_data(root, others, label)
    check_seqs(seqs, root, others, label)
    return tick


def check_topology(expect, label):
    """expect: node -> (type, provider); a root's provider is the root itself."""
    for n, (typ, prov) in expect.items():
        info = node_info(n)
        if (info[0], info[2]) != (typ, prov):
            fail('%s: %s is %s with provider %s, expected %s with provider %s' % (
                label, n, info[0], info[2], typ, prov))


def subscribers(node):
    return [r[0] for r in q(node, 'select node_name from pgq_node.get_subscriber_info(%s) '
                                  'order by 1', [QUEUE])]


def refuses_writes(node, label):
    """A replicated table rejects a local write on node; its data stays as is."""
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


def wait_replay_worker(node, label, timeout=30):
    pid = wait_for(lambda: '%s: a replay worker on %s (worker_status and pg_stat_activity):\n%s' % (
                       label, node, describe_workers(node)),
                   lambda: replay_pid(node), timeout, 0.2)
    return pid


def wait_no_replay(node, label, timeout=20):
    wait_for(lambda: '%s: the replay worker of %s to go away:\n%s' % (label, node, describe_workers(node)),
             lambda: not replay_backends(node) and not [r for r in replay_rows(node) if r.get('pid')],
             timeout)


def replay_errors(node, since_id=0):
    return qdict(node, 'select * from pgq_cascade.replay_error where queue_name = %s and error_id > %s '
                       'order by error_id', [QUEUE, since_id])


def last_error_id(node):
    return q1(node, 'select coalesce(max(error_id), 0) from pgq_cascade.replay_error') or 0


def compare_cli(node):
    """`londiste compare` on node: every table with equal counts and checksums."""
    out, secs = timed_londiste(node, 'compare')
    pairs = re.findall(r'srcdb: (\d+ rows, checksum=-?\d+)\s.*?dstdb: (\d+ rows, checksum=-?\d+)', out, re.S)
    if len(pairs) != len(TABLES) or any(a != b for a, b in pairs):
        fail('compare on %s: %s\n%s' % (node, pairs, out))
    if 'do not match' in out:
        fail('compare on %s reports a mismatch:\n%s' % (node, out))
    log('  `londiste compare` on %s: %d tables equal (%.1fs)' % (node, len(TABLES), secs))


COPY_LINE = re.compile(r'pgq (?:replay|copy): node "([^"]+)": copied table (\S+): (\d+) rows, (\d+) bytes in (\d+) ms')


def check_copies(node, provider):
    """The copies node's worker logged: one per table, rows as on provider."""
    text, _ = log_lines(node)
    copies = {}
    for m in COPY_LINE.finditer(text):
        if m.group(1) != node:
            fail('%s: the copy line names node %r: %s' % (node, m.group(1), m.group(0)))
        if m.group(2) in copies:
            fail('%s: %s copied twice' % (node, m.group(2)))
        copies[m.group(2)] = (int(m.group(3)), int(m.group(4)), int(m.group(5)))
    if set(copies) != set(TABLES):
        fail('%s: the worker logged copies of %s, expected %s' % (node, sorted(copies), TABLES))
    for t, (rows, _, _) in copies.items():
        want = q1(provider, 'select count(*) from %s' % t)
        if rows != want:
            fail('%s: copy of %s logged %d rows, %s has %d' % (node, t, rows, provider, want))
    log('  %s (from %s): %s; %d ms in all' % (
        node, provider, ', '.join('%s %d rows/%d kB %d ms' % (t.split('.')[1], r, b // 1024, ms)
                                  for t, (r, b, ms) in sorted(copies.items())),
        sum(c[2] for c in copies.values())))


def setup_tables(order):
    """add-table/add-seq on every node (the root first, then order), the subscribers'
    tables copied by their replay workers; wait until all are ok."""
    root = ALL[0]
    londiste(root, 'add-table', *TABLES)
    londiste(root, 'add-seq', *SEQS)
    for n in order:
        if any(q1(n, 'select count(*) from %s' % t) for t in TABLES):
            fail('%s has rows before add-table: the copy would not be the worker\'s' % n)
    started = {}
    for n in order:
        started[n] = time.time()
        londiste(n, 'add-table', *TABLES)
        londiste(n, 'add-seq', *SEQS)
    want = {t: 'ok' for t in TABLES}
    for n in order:
        wait_for(lambda: '%s: every table ok after the initial copy (states %s)' % (n, table_states(n)),
                 lambda: table_states(n) == want, 120, 0.2)
        log('  %s: all %d tables ok %.1fs after its add-table' % (n, len(TABLES), time.time() - started[n]))
    for n in ALL:
        seqs = set(r[0] for r in q(n, 'select seq_name from londiste.get_seq_list(%s) where local', [QUEUE]))
        if seqs != set(SEQS):
            fail('%s: local sequences %s' % (n, sorted(seqs)))
    trg = q1(root, "select count(*) from pg_trigger where tgname like '\\_londiste\\_%%' "
                   "and tgrelid::regclass::text like 'digoal.%%'")
    if trg != 2 * len(TABLES):
        fail('%s: %s londiste triggers, expected %d (row + truncate per table)' % (root, trg, 2 * len(TABLES)))


def tune_queue(nodes):
    """Tick at least every 200 ms while events come and every second when idle (as one
    would tune pgqd): the waits for ticks are short. On every node that is or may become
    a root."""
    for n in nodes:
        q(n, "select pgq.set_queue_config(%s, 'ticker_max_lag', '200 milliseconds'), "
             "pgq.set_queue_config(%s, 'ticker_idle_period', '1 second')", [QUEUE, QUEUE])


def check_logs(nodes, accepted=()):
    """No crash, PANIC, replay worker ERROR or replay error (logged at LOG level, once a
    minute at most) in the nodes' server logs; accepted: (node, log offset from, regex)
    of expected errors."""
    bad = re.compile(r'PANIC:|terminated by signal|was terminated by exception|'
                     r'all server processes terminated|pgq replay: ERROR:|pgq ticker: ERROR:|'
                     r'pgq replay: replay of queue')
    found = []
    n_acc = 0
    for n in nodes:
        pos = 0
        with open(server_log(n), 'rb') as f:
            for raw in f:
                line = raw.decode(errors='replace')
                start, pos = pos, pos + len(raw)
                if not bad.search(line):
                    continue
                if any(a_n == n and start >= a_off and rx.search(line) for a_n, a_off, rx in accepted):
                    n_acc += 1
                    continue
                found.append('%s: %s' % (n, line.rstrip()))
    if n_acc:
        log('  %d accepted error line(s) (connections to the stopped node)' % n_acc)
    if found:
        fail('%d bad line(s) in the server logs:\n%s' % (len(found), '\n'.join(found[:20])))
    log('  no crash, PANIC or replay error in the logs of %s' % ', '.join(nodes))


def check_replay_errors(nodes, accepted=()):
    """pgq_cascade.replay_error on each of nodes holds no error but the accepted ones:
    (node, error_id after which, regex). A replay error the retries healed would pass
    every data check: this one does not let it."""
    for n in nodes:
        bad = []
        ok = 0
        for e in replay_errors(n):
            if any(a_n == n and e['error_id'] > a_id and rx.search(e['message']) for a_n, a_id, rx in accepted):
                ok += 1
            else:
                bad.append(e)
        if bad:
            fail('%s: %d replay error(s) recorded: %s' % (n, len(bad), '; '.join(
                '%s %s %s' % (e['error_time'], e['sqlstate'], e['message'].splitlines()[0][:160]) for e in bad[:5])))
        log('  %s: no replay error recorded%s' % (n, ' but %d failed connect(s) to the stopped node' % ok if ok else ''))


def execute_and_truncate(root, others):
    """TRUNCATE of a replicated table and an EXECUTE'd DDL script on root reach others."""
    t = 'digoal.user_logout_rec'
    if not q1(root, 'select count(*) from %s' % t):
        fail('%s is empty on %s before the TRUNCATE' % (t, root))
    q(root, 'truncate %s' % t)
    for n in others:
        wait_for('%s to be empty on %s' % (t, n), lambda: q1(n, 'select count(*) from %s' % t) == 0, 60)
    log('  TRUNCATE %s on %s reached %s' % (t, root, ', '.join(others)))
    path = os.path.join(WORK, 'add_note.sql')
    with open(path, 'w') as f:
        f.write("--*-- Local-Table: digoal.user_info\n"
                "alter table @digoal.user_info@ add column note text;\n"
                "update @digoal.user_info@ set note = 'vip ' || userid where userid % 1000 = 7;\n")
    londiste(root, 'execute', path)
    for n in [root] + others:
        wait_for('column note of digoal.user_info on %s' % n,
                 lambda: q1(n, "select count(*) from information_schema.columns where table_schema = 'digoal' "
                               "and table_name = 'user_info' and column_name = 'note'") == 1, 60)
        if q1(n, 'select count(*) from londiste.applied_execute where execute_file = %s', ['add_note.sql']) != 1:
            fail('londiste.applied_execute on %s has no add_note.sql' % n)
    q(root, "update digoal.user_info set note = 'changed' where userid between 1 and 5")
    q(root, "insert into digoal.user_logout_rec (userid, logout_time) values (1, now())")
    converge(root, others, 'after TRUNCATE and EXECUTE')
    want = q1(root, "select count(*) from digoal.user_info where note like 'vip %'")
    if not want:
        fail('execute: the script updated no row on %s' % root)
    for n in others:
        got = q1(n, "select count(*) from digoal.user_info where note like 'vip %'")
        if got != want:
            fail('execute: %s has %s rows with a vip note, %s has %d' % (n, got, root, want))
    log('  EXECUTE add_note.sql on %s ran on %s' % (root, ', '.join(others)))


# ================================================================ A: mixed versions

A_STEPS = []
B_STEPS = []


def a_step(name):
    def deco(fn):
        A_STEPS.append((name, fn))
        return fn
    return deco


def b_step(name):
    def deco(fn):
        B_STEPS.append((name, fn))
        return fn
    return deco


@a_step('versions: the original stack on the root, this extension on branch and leaf; '
        'create-root/-branch/-leaf')
def a_create():
    ext = dict(q('root', "select extname::text, extversion from pg_extension "
                         "where extname in ('pgq', 'pgq_node', 'londiste')"))
    if not (ext.get('pgq', '').startswith('3.5') and 'pgq_node' in ext and 'londiste' in ext):
        fail('the root does not run the original stack: extensions %s' % ext)
    if q1('root', "select current_setting('shared_preload_libraries')"):
        fail('the root preloads %r' % q1('root', "select current_setting('shared_preload_libraries')"))
    if q1('root', "select count(*) from pg_proc where proname = 'worker_status' "
                  "and pronamespace = 'pgq'::regnamespace"):
        fail('the root has pgq.worker_status(): not the original pgq')
    log('  root: original %s, pgq.version() %s' % (
        ', '.join('%s %s' % kv for kv in sorted(ext.items())), q1('root', 'select pgq.version()')))
    for n in ALL:
        write_ini(n)
    londiste('root', 'create-root', 'root', connstr('root'))
    # (the CLI creates the extension on branch and leaf)
    londiste('branch', 'create-branch', 'branch', connstr('branch'), '--provider=' + connstr('root'))
    londiste('leaf', 'create-leaf', 'leaf', connstr('leaf'), '--provider=' + connstr('branch'))
    for n in OURS:
        if q1(n, "select current_setting('pgq.replay', true)") != 'on':
            fail('%s: pgq.replay is not on' % n)
        exts = dict(q(n, "select extname::text, extversion from pg_extension where extname like 'pgq%%' "
                         "or extname = 'londiste'"))
        if list(exts) != ['pgq'] or not q1(n, "select count(*) from pg_proc where proname = 'worker_status' "
                                              "and pronamespace = 'pgq'::regnamespace"):
            fail('%s: not this extension: extensions %s' % (n, exts))
        log('  %s: this extension (pgq %s), pgq.version() %s' % (n, exts['pgq'], q1(n, 'select pgq.version()')))
    tune_queue(['root'])
    check_topology({'root': ('root', 'root'), 'branch': ('branch', 'root'), 'leaf': ('leaf', 'branch')},
                   'create')
    for n in OURS:
        r = q(n, 'select replay_role::text, in_server from pgq_cascade.node_replay where queue_name = %s',
              [QUEUE])
        if r != [('postgres', True)]:
            fail('%s: pgq_cascade.node_replay is %s' % (n, r))


@a_step('add-table/add-seq: the branch copies every table from the original root, the leaf from '
        'the branch; equal data')
def a_tables():
    setup_tables(['branch', 'leaf'])
    check_copies('branch', 'root')
    check_copies('leaf', 'branch')
    compare_data('root', ['branch', 'leaf'], 'after the initial copy')


@a_step('a `pgq replay` worker on branch and leaf, none on the root; the root serves the '
        "branch worker's connection; pgqd ticks the root")
def a_workers():
    for n in OURS:
        log('  %s: replay worker pid %d' % (n, wait_replay_worker(n, 'start')))
    if q1('root', "select count(*) from pg_stat_activity where backend_type like 'pgq%%'"):
        fail('the root of the original stack runs pgq background workers')
    apps = q('root', "select application_name from pg_stat_activity where application_name like 'pgq replay%%'")
    if apps != [('pgq replay %s' % QUEUE,)]:
        fail('connections of replay workers on the root: %s (expected the branch\'s one)' % apps)
    apps = q('branch', "select application_name from pg_stat_activity where application_name like 'pgq replay %%'")
    if apps != [('pgq replay %s' % QUEUE,)]:
        fail('connections of replay workers on the branch: %s (expected the leaf\'s one)' % apps)
    t1 = newest_tick('root')
    tick = sync_point('root')
    log('  pgqd ticks the root (tick %s -> %s)' % (t1, tick))


@a_step('pgbench load on the original root; branch and leaf catch up (drain time)')
def a_load():
    pids = {n: replay_pid(n) for n in OURS}
    t = time.time()
    n = wait_pgbench('root', pgbench('root', LOAD_SECONDS), LOAD_SECONDS)
    t_end = time.time()
    log('  %d login/logout transactions on the root in %.1fs (%.0f/s)' % (n, t_end - t, n / (t_end - t)))
    converge('root', ['branch', 'leaf'], 'after load', since=t_end,
             providers={'branch': 'root', 'leaf': 'branch'})
    for nd in OURS:
        if replay_pid(nd) != pids[nd]:
            fail('%s: the replay worker changed under plain load (%s -> %s)' % (nd, pids[nd], replay_pid(nd)))
    for nd in OURS:
        r = replay_rows(nd)[0]
        log('  %s: worker_status events %s, ticks %s, lag %s' % (nd, r.get('events'), r.get('ticks'), r.get('lag')))


@a_step('same data on every node; sequences; `londiste compare` on the branch')
def a_compare():
    converge('root', ['branch', 'leaf'], 'before compare')
    compare_cli('branch')
    LOAD0[0] = q1('root', 'select count(*) from digoal.user_login_rec')


@a_step('change-provider under load: the leaf moves under the original root and replays from it; '
        '`londiste compare` on the leaf')
def a_leaf_under_root():
    pid = replay_pid('leaf')
    p = pgbench('root', LOAD_SECONDS)
    wait_for('some load on the root', lambda: q1('root', 'select count(*) from digoal.user_login_rec') > LOAD0[0],
             20, 0.1)
    t0 = node_info('leaf')[3]
    out, secs = timed_londiste('leaf', 'change-provider', '--provider=root')
    check_topology({'leaf': ('leaf', 'root'), 'branch': ('branch', 'root')}, 'leaf under the root')
    if subscribers('root') != ['branch', 'leaf'] or subscribers('branch') != []:
        fail('subscribers: root %s, branch %s' % (subscribers('root'), subscribers('branch')))
    wait_for(lambda: 'the leaf worker to replay from the root (worker_status %s)' % replay_rows('leaf'),
             lambda: [r for r in replay_rows('leaf') if r.get('provider') == 'root'
                      and (r.get('tick_id') or 0) > t0], 20, 0.1)
    log('  change-provider took %.1fs; the leaf worker (pid %s -> %s) replays from the original root' % (
        secs, pid, replay_pid('leaf')))
    n = wait_pgbench('root', p, LOAD_SECONDS)
    t_end = time.time()
    log('  %d transactions on the root meanwhile' % n)
    converge('root', ['branch', 'leaf'], 'leaf under the root', since=t_end,
             providers={'branch': 'root', 'leaf': 'root'})
    apps = q('root', "select count(*) from pg_stat_activity where application_name = %s", ['pgq replay ' + QUEUE])
    if apps != [(2,)]:
        fail('the root serves %s replay worker connections, expected 2 (branch and leaf)' % apps)
    compare_cli('leaf')


LOAD0 = [0]


@a_step('TRUNCATE and an EXECUTE\'d DDL script on the original root reach branch and leaf')
def a_execute():
    execute_and_truncate('root', ['branch', 'leaf'])


@a_step('server logs and pgq_cascade.replay_error of branch and leaf: no crash, no PANIC, no replay error')
def a_logs():
    check_logs(OURS)
    check_replay_errors(OURS)


# ================================================================ B: topology changes

B_PROVIDER = {'branch1': 'root', 'leaf': 'branch1', 'branch2': 'root'}
ACCEPTED_LOG = []     # (node, log offset, regex) of expected replay errors
ACCEPTED_ERRORS = []  # (node, replay_error id, regex) of the same
# what the subscribers of the stopped node record: its connection lost, connects refused
CONNECT_LOST = re.compile(r'could not establish connection|lost connection to the remote server|'
                          r'server closed the connection|no connection to the provider')


def pg_ctl_stop(node):
    with open(os.path.join(os.path.dirname(DIRS[node]), 'bin')) as f:
        bin_dir = f.read().strip()
    subprocess.run(['sudo', '-u', 'postgres', os.path.join(bin_dir, 'pg_ctl'), '-D', DIRS[node],
                    '-m', 'immediate', '-w', 'stop'], check=True, stdout=subprocess.DEVNULL)
    DEAD.add(node)


@b_step('create-root, create-branch branch1, create-leaf under branch1, create-branch branch2')
def b_create():
    for n in ALL:
        write_ini(n)
    londiste('root', 'create-root', 'root', connstr('root'))
    londiste('branch1', 'create-branch', 'branch1', connstr('branch1'), '--provider=' + connstr('root'))
    londiste('leaf', 'create-leaf', 'leaf', connstr('leaf'), '--provider=' + connstr('branch1'))
    londiste('branch2', 'create-branch', 'branch2', connstr('branch2'), '--provider=' + connstr('root'))
    tune_queue(['root', 'branch1', 'branch2'])
    check_topology({'root': ('root', 'root'), 'branch1': ('branch', 'root'), 'leaf': ('leaf', 'branch1'),
                    'branch2': ('branch', 'root')}, 'create')


@b_step('add-table/add-seq on every node: the replay workers copy; equal data')
def b_tables():
    setup_tables(['branch1', 'branch2', 'leaf'])
    for n, p in B_PROVIDER.items():
        check_copies(n, p)
    compare_data('root', ['branch1', 'leaf', 'branch2'], 'after the initial copy')


@b_step('a replay worker on branch1, leaf and branch2, none on the root')
def b_workers():
    for n in B_PROVIDER:
        log('  %s: replay worker pid %d' % (n, wait_replay_worker(n, 'start')))
    if replay_rows('root') or replay_backends('root'):
        fail('the root runs a replay worker:\n%s' % describe_workers('root'))
    converge('root', ['branch1', 'leaf', 'branch2'], 'idle', providers=B_PROVIDER)


@b_step('pause and resume the leaf with the CLI under load: nothing applied while paused, the '
        'same worker, everything after resume')
def b_pause():
    pid = replay_pid('leaf')
    p = pgbench('root', LOAD_SECONDS + 2)
    # the leaf follows the load before the pause
    t0 = node_info('leaf')[3]
    wait_for('the leaf to apply ticks under the load', lambda: node_info('leaf')[3] > t0, 20, 0.1)
    tick_at_cmd = node_info('leaf')[3]
    watcher = StateWatch('leaf', 'worker_leaf')
    try:
        out, secs = timed_londiste('leaf', 'pause')
    finally:
        seen = watcher.stop()
    t_paused = time.time()
    st = q('leaf', 'select paused, uptodate from pgq_node.get_consumer_state(%s, %s)', [QUEUE, 'worker_leaf'])
    if st != [(True, True)]:
        fail('the leaf\'s worker state after pause: %s' % st)
    tick_paused = node_info('leaf')[3]
    before = checksums('leaf')
    log('  `londiste pause` returned after %.1fs; the leaf at tick %s (%s when the command started)' % (
        secs, tick_paused, tick_at_cmd))
    log('  %s' % describe_pause(seen))
    # branch1 moves on by several batches with the load's events ...
    wait_for('branch1 to apply 5 ticks past the paused leaf',
             lambda: (node_info('branch1')[3] or 0) >= tick_paused + 5, 30, 0.1)
    # ... and the leaf takes none of them
    if node_info('leaf')[3] != tick_paused or checksums('leaf') != before:
        fail('the paused leaf applied batches: tick %s -> %s' % (tick_paused, node_info('leaf')[3]))
    if replay_pid('leaf') != pid:
        fail('the leaf\'s replay worker changed while paused (%s -> %s)' % (pid, replay_pid('leaf')))
    lag_ticks = node_info('branch1')[3] - tick_paused
    log('  paused %.1fs: branch1 %d ticks ahead, nothing applied on the leaf, worker pid %d kept' % (
        time.time() - t_paused, lag_ticks, pid))
    watcher = StateWatch('leaf', 'worker_leaf')
    try:
        out, secs = timed_londiste('leaf', 'resume')
        if q('leaf', 'select paused from pgq_node.get_consumer_state(%s, %s)', [QUEUE, 'worker_leaf']) != [(False,)]:
            fail('the leaf is still paused after resume')
        wait_for('the leaf to apply again after resume', lambda: node_info('leaf')[3] > tick_paused, 20, 0.02)
        time.sleep(0.05)
    finally:
        seen = watcher.stop()
    log('  `londiste resume` returned after %.1fs; %s' % (secs, describe_resume(seen, tick_paused)))
    n = wait_pgbench('root', p, LOAD_SECONDS + 2)
    log('  %d transactions on the root meanwhile' % n)
    converge('root', ['branch1', 'leaf', 'branch2'], 'after resume', since=time.time(), providers=B_PROVIDER)
    if replay_pid('leaf') != pid:
        fail('the leaf\'s replay worker changed (%s -> %s)' % (pid, replay_pid('leaf')))


POLL = 0.005


class StateWatch:
    """Polls a node's worker row in pgq_node.local_state (paused, uptodate, last_tick_id)
    every POLL seconds in a thread, with the time of each change, while an admin command
    runs."""

    def __init__(self, node, worker):
        self.rows = []
        self.done = threading.Event()
        self.node, self.worker = node, worker
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        con = pgqclient.connect(connstr(self.node), autocommit=True)
        try:
            last = None
            while not self.done.is_set():
                r = tuple(pgqclient.rows(con, 'select paused, uptodate, last_tick_id from pgq_node.local_state '
                                              'where queue_name = %s and consumer_name = %s',
                                         [QUEUE, self.worker])[0])
                if r != last:
                    self.rows.append((time.time(), r))
                    last = r
                time.sleep(POLL)
        finally:
            con.close()

    def stop(self):
        self.done.set()
        self.thread.join(10)
        return self.rows


def describe_pause(seen):
    """What the StateWatch rows of a pause show: how soon the worker acknowledged the
    committed pause; fails if the worker applied a batch after acknowledging it."""
    i = next((k for k, (_, (p, _, _)) in enumerate(seen) if p), None)
    if i is None:
        fail('pause: the poll never saw the pause: %s' % [r for _, r in seen])
    t_seen, (_, up, tick) = seen[i]
    after = [r for _, r in seen[i:] if r[1]]
    if any(r[2] != after[0][2] for r in after):
        fail('pause: the worker applied a batch after acknowledging the pause: %s' % [r for _, r in seen[i:]])
    if up:
        ack = 'within one poll (%d ms) of the commit' % (POLL * 1000)
    else:
        t_ack = next((t for t, r in seen[i:] if r[1]), None)
        ack = ('%.0f ms after the commit' % ((t_ack - t_seen) * 1000)) if t_ack else 'not while polled'
    return 'pause acknowledged by the worker %s, at tick %s (nothing applied after)' % (ack, after[0][2] if after else tick)


def describe_resume(seen, tick_paused):
    i = next((k for k, (_, (p, _, _)) in enumerate(seen) if not p), None)
    j = next((k for k, (_, (_, _, tick)) in enumerate(seen) if tick > tick_paused), None)
    if i is None or j is None:
        return 'the poll saw %s' % [r for _, r in seen][:8]
    return 'the worker applied its next batch %.0f ms after the resume was committed' % (
        (seen[j][0] - seen[i][0]) * 1000)


def move_leaf(new_provider, old_provider):
    pid = replay_pid('leaf')
    t0 = node_info('leaf')[3]
    out, secs = timed_londiste('leaf', 'change-provider', '--provider=' + new_provider)
    check_topology({'leaf': ('leaf', new_provider)}, 'leaf under %s' % new_provider)
    if 'leaf' not in subscribers(new_provider) or 'leaf' in subscribers(old_provider):
        fail('subscribers: %s %s, %s %s' % (new_provider, subscribers(new_provider), old_provider,
                                            subscribers(old_provider)))
    # the worker reads from the new provider: a tick it applies after the move came from there
    wait_for(lambda: 'the leaf worker to replay from %s (worker_status %s)' % (
                 new_provider, replay_rows('leaf')),
             lambda: [r for r in replay_rows('leaf') if r.get('provider') == new_provider
                      and (r.get('tick_id') or 0) > t0], 20, 0.1)
    log('  change-provider to %s took %.1fs; the leaf worker (pid %s -> %s) replays from %s' % (
        new_provider, secs, pid, replay_pid('leaf'), new_provider))


@b_step('change-provider: the leaf under branch2 under load, then back under branch1; equal data')
def b_change_provider():
    rows0 = q1('root', 'select count(*) from digoal.user_login_rec')
    p = pgbench('root', LOAD_SECONDS * 2)
    wait_for('some load on the root', lambda: q1('root', 'select count(*) from digoal.user_login_rec') > rows0,
             20, 0.1)
    move_leaf('branch2', 'branch1')
    time.sleep(1)     # let the leaf replay from branch2 under the load for a while (not a check)
    move_leaf('branch1', 'branch2')
    n = wait_pgbench('root', p, LOAD_SECONDS * 2)
    t_end = time.time()
    log('  %d transactions on the root during the moves' % n)
    converge('root', ['branch1', 'leaf', 'branch2'], 'after change-provider there and back', since=t_end,
             providers=B_PROVIDER)


@b_step('takeover: branch1 becomes root; its replay worker stops, the old root gets one; writes on '
        'the new root reach every node; the old root refuses writes')
def b_takeover():
    pids = {n: replay_pid(n) for n in ('leaf', 'branch2')}
    # events still in flight when the takeover starts
    wait_pgbench('root', pgbench('root', 2), 2)
    out, secs = timed_londiste('branch1', 'takeover', 'root')
    log('  takeover took %.1fs' % secs)
    check_topology({'branch1': ('root', 'branch1'), 'root': ('branch', 'branch1'),
                    'leaf': ('leaf', 'branch1'), 'branch2': ('branch', 'root')}, 'after takeover')
    ext = q1('branch1', 'select queue_external_ticker from pgq.queue where queue_name = %s', [QUEUE])
    if ext is not False:
        fail('new root: queue_external_ticker = %s' % ext)
    ext = q1('root', 'select queue_external_ticker from pgq.queue where queue_name = %s', [QUEUE])
    if ext is not True:
        fail('old root: queue_external_ticker = %s' % ext)
    wait_no_replay('branch1', 'the new root')
    t = time.time()
    pid = wait_replay_worker('root', 'the old root, now a branch')
    log('  branch1 (new root) has no replay worker; root (now a branch) has replay worker pid %d '
        '(seen %.1fs after the takeover)' % (pid, time.time() - t))
    t = time.time()
    n = wait_pgbench('branch1', pgbench('branch1', LOAD_SECONDS), LOAD_SECONDS)
    t_end = time.time()
    log('  %d login/logout transactions on the new root in %.1fs' % (n, t_end - t))
    converge('branch1', ['root', 'leaf', 'branch2'], 'after takeover', since=t_end,
             providers={'root': 'branch1', 'leaf': 'branch1', 'branch2': 'root'})
    for nd, p in pids.items():
        if replay_pid(nd) != p:
            log('  %s: replay worker pid %s -> %s' % (nd, p, replay_pid(nd)))
    refuses_writes('root', 'old root')
    out = londiste('branch1', 'status')
    for n, typ in (('branch1', 'root'), ('root', 'branch'), ('leaf', 'leaf'), ('branch2', 'branch')):
        if not re.search(r'\b%s \(%s\)' % (n, typ), out):
            fail('status on the new root does not show %s (%s):\n%s' % (n, typ, out))
    if 'ERR:' in out or 'failure' in out.lower():
        fail('status on the new root shows an error:\n%s' % out)
    log('  `londiste status` on the new root: branch1 (root), root (branch), leaf, branch2 (branch), no error')
    compare_cli('root')


@b_step('takeover --dead-root: branch1 (the root) stopped; the old root takes over; its replay '
        'worker stops, the leaf is re-pointed and replays from it, branch2 goes on')
def b_failover():
    converge('branch1', ['root', 'leaf', 'branch2'], 'before the failover')
    for n in ('root', 'leaf'):
        ACCEPTED_LOG.append((n, log_size(n), CONNECT_LOST))
    pids = {n: replay_pid(n) for n in ('leaf', 'branch2')}
    since = {n: last_error_id(n) for n in ('root', 'leaf')}
    for n in ('root', 'leaf'):
        ACCEPTED_ERRORS.append((n, since[n], CONNECT_LOST))
    pg_ctl_stop('branch1')
    t_stop = time.time()
    log('  branch1 stopped (immediate)')
    # the workers of its subscribers fail to connect and back off (1 s, 2 s, 4 s ...):
    # the operator comes when the backoff has grown
    for n in ('root', 'leaf'):
        errs = wait_for('%s: 4 failed connects to the stopped branch1 (replay_error rows %s)' % (
                            n, [e['message'][:60] for e in replay_errors(n, since[n])]),
                        lambda: (lambda e: e if len(e) >= 4 else None)(replay_errors(n, since[n])), 60, 0.5)
        log('  %s: %d failed connects to branch1 within %.1fs: %s' % (
            n, len(errs), time.time() - t_stop, errs[-1]['message'].splitlines()[0][:100]))
    out, secs = timed_londiste('root', 'takeover', 'branch1', '--dead-root')
    log('  takeover --dead-root took %.1fs' % secs)
    check_topology({'root': ('root', 'root'), 'leaf': ('leaf', 'root'), 'branch2': ('branch', 'root')},
                   'after the failover')
    dead = dict(q('root', 'select node_name, dead from pgq_node.get_queue_locations(%s)', [QUEUE]))
    if dead.get('branch1') is not True or any(dead[n] for n in ('root', 'leaf', 'branch2')):
        fail('members on the root after the failover: %s' % dead)
    ext = q1('root', 'select queue_external_ticker from pgq.queue where queue_name = %s', [QUEUE])
    if ext is not False:
        fail('the promoted root: queue_external_ticker = %s' % ext)
    wait_no_replay('root', 'the promoted root')
    t = time.time()
    n = wait_pgbench('root', pgbench('root', LOAD_SECONDS), LOAD_SECONDS)
    t_end = time.time()
    log('  %d login/logout transactions on the promoted root in %.1fs' % (n, t_end - t))
    converge('root', ['leaf', 'branch2'], 'after the failover', since=t_end,
             providers={'leaf': 'root', 'branch2': 'root'})
    for nd, p in pids.items():
        log('  %s: replay worker pid %s -> %s' % (nd, p, replay_pid(nd)))
    refuses_writes('leaf', 'leaf')
    compare_cli('leaf')


@b_step('server logs and pgq_cascade.replay_error: no crash, no PANIC, no replay error but the '
        'connection failures to the stopped node')
def b_logs():
    check_logs([n for n in ALL if n not in DEAD] + sorted(DEAD), ACCEPTED_LOG)
    check_replay_errors([n for n in ALL if n not in DEAD], ACCEPTED_ERRORS)


def main():
    cascadetest.STEPS[:] = A_STEPS if SCENARIO == 'A' else B_STEPS
    title = {'A': 'interop scenario A (mixed versions: original root, branch and leaf of this extension)',
             'B': 'interop scenario B (topology changes with in-server replay)'}[SCENARIO]

    def on_failure(n):
        if n in DEAD:
            return '  %s: stopped on purpose' % n
        if n in ORIGINAL:
            return '  %s: original stack' % n
        return '  %s pgq workers:\n%s' % (n, describe_workers(n))
    return run_steps(title, 2, width=92, on_failure=on_failure,
                     prelude=[('clusters, seed workload (data on the root only)', 'ok (run.sh)')])


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
