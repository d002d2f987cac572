#!/usr/bin/python3
"""The in-server replay scenario (driven by tests/replay/run.sh).

A root → branch → leaf cascade of this extension, one cluster each, set up with the
original Python `londiste` CLI and replicated by the extension's `pgq replay` background
workers alone: no `londiste worker` and no pgqd serves these clusters at any time (checked
before and after every step and while waiting). run.sh has already seeded the root and
copied its data by hand to branch and leaf, so the subscribers add the tables with
`add-table --expect-sync`.

Steps (every one checked by SQL against the nodes; a failing step fails the run, names
the step and skips the rest):
  1. (run.sh) three preloaded clusters, seed schema everywhere, data on the root, copied
  2. create-root/-branch/-leaf, add-table (root; --expect-sync on branch and leaf), add-seq
  3. a `pgq replay` worker on branch and leaf (pgq.worker_status(), pg_stat_activity)
  4. pgbench load on the root; the leaf catches up with the root's tick after the load
     (drain time printed)
  5. the same data on every node (count + hash sum per table), sequences at or above the
     root's, `londiste compare` on the branch
  6. replay worker of the branch terminated twice under load: it comes back (new pid),
     no row lost or doubled
  7. TRUNCATE on the root empties the table on branch and leaf
  8. `londiste execute` of a DDL script on the root reaches branch and leaf
  9. `londiste status` and `members` on the leaf
 10. no crash, PANIC or replay worker ERROR in any server log (server.log next to each
     data dir; log_line_prefix names the backend type)

Env (set by run.sh): WORK (work dir: ini files, commands.log, pid list), NODES ("root=PORT
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
import pgqclient  # noqa: E402

WORK = os.environ['WORK']
PG_BIN = os.environ.get('PG_BIN', '/usr/lib/postgresql/15/bin')
WORKLOAD_DIR = os.environ['WORKLOAD_DIR']
ROWS = int(os.environ.get('ROWS', '20000'))
LOAD_SECONDS = int(os.environ.get('LOAD_SECONDS', '8'))
QUEUE = 'replika'
LONDISTE = ['/usr/bin/python3', '/usr/bin/londiste']
PORTS = dict(kv.split('=') for kv in os.environ['NODES'].split())
DIRS = dict(kv.split('=', 1) for kv in os.environ['NODE_DIRS'].split())   # data dirs
NODES = ['root', 'branch', 'leaf']
SUBSCRIBERS = ['branch', 'leaf']
PROVIDER = {'root': 'root', 'branch': 'root', 'leaf': 'branch'}
TABLES = ['digoal.user_info', 'digoal.user_session', 'digoal.user_login_rec', 'digoal.user_logout_rec']
SEQS = ['digoal.user_login_rec_id_seq', 'digoal.user_logout_rec_id_seq']
REPLAY_BACKEND = 'pgq replay'
T0 = time.time()


def log(msg):
    print('[%6.1fs] %s' % (time.time() - T0, msg), flush=True)


class Failed(Exception):
    pass


def fail(msg):
    raise Failed(msg)


def connstr(node):
    return 'host=127.0.0.1 port=%s dbname=digoal user=postgres' % PORTS[node]


def q(node, sql, args=None):
    """Run one statement in autocommit on node, return all rows (or [] for no result)."""
    con = pgqclient.connect(connstr(node), autocommit=True)
    try:
        return pgqclient.rows(con, sql, args)
    finally:
        con.close()


def q1(node, sql, args=None):
    rows = q(node, sql, args)
    return rows[0][0] if rows else None


def qdict(node, sql, args=None):
    """Rows as dicts keyed by column name."""
    con = pgqclient.connect(connstr(node), autocommit=True)
    try:
        with con.cursor() as cur:
            cur.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        con.close()


def wait_for(what, cond, timeout=60, period=0.2):
    """Poll cond() until it returns a true value or the deadline passes."""
    deadline = time.time() + timeout
    last = err = None
    while True:
        check_no_external_workers()
        try:
            last = cond()
        except psycopg2.Error as e:
            last = None
            err = str(e).strip()
        else:
            err = None
        if last:
            return last
        if time.time() > deadline:
            if callable(what):
                what = what()
            fail('timed out after %ds waiting for %s%s' % (timeout, what,
                                                       (' (last error: %s)' % err) if err else ''))
        time.sleep(period)


# ---------------------------------------------------------------- processes

PROCS = {}   # name -> Popen (pgbench only: nothing else runs outside the servers)


def remember_pid(pid):
    with open(os.path.join(WORK, 'pids'), 'a') as f:
        f.write('%d\n' % pid)


def ini(node):
    return os.path.join(WORK, node + '.ini')


def write_ini(node):
    with open(ini(node), 'w') as f:
        f.write('[londiste]\n'
                'job_name = worker_%s\n'
                'db = %s\n'
                'queue_name = %s\n'
                'logfile = %s/%s.log\n'
                'pidfile = %s/%s.pid\n'
                'loop_delay = 0.2\n'
                'lock_timeout = 30\n' % (node, connstr(node), QUEUE, WORK, node, WORK, node))


def londiste(node, *args, timeout=120):
    """Run `londiste <node>.ini args...` (an admin command, never `worker`); return its
    output (stdout + stderr); a non-zero exit fails the step."""
    assert 'worker' not in args
    cmd = LONDISTE + [ini(node)] + list(args)
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, cwd=WORK)
    except subprocess.TimeoutExpired as e:
        fail('`londiste %s.ini %s` did not finish in %ds:\n%s' % (
            node, ' '.join(args), timeout, (e.output or b'').decode(errors='replace')))
    out = r.stdout.decode(errors='replace')
    with open(os.path.join(WORK, 'commands.log'), 'a') as f:
        f.write('$ londiste %s.ini %s  [exit %d]\n%s\n' % (node, ' '.join(args), r.returncode, out))
    if r.returncode != 0:
        fail('`londiste %s.ini %s` exited with %d:\n%s' % (node, ' '.join(args), r.returncode, out))
    return out


def tail(path, n=30):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-n:])
    except OSError:
        return '(no log)'


def stop_all():
    for p in PROCS.values():
        if p.poll() is None:
            p.terminate()
    for p in PROCS.values():
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


OUR_MARKERS = None


def check_no_external_workers():
    """No pgqd and no `londiste ... worker` may serve these clusters: every such process
    on the machine (pgrep) is looked at, and it is ours if its ini file lies in WORK or
    names one of our ports. Processes of other test runs on other clusters are ignored."""
    global OUR_MARKERS
    if OUR_MARKERS is None:
        OUR_MARKERS = [re.compile(r'port\s*=\s*%s\b' % p) for p in PORTS.values()]
    r = subprocess.run(['pgrep', '-a', '-f', r'(^|/)pgqd( |$)|londiste.* worker( |$)'],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for line in r.stdout.decode(errors='replace').splitlines():
        pid, _, cmd = line.partition(' ')
        if int(pid) == os.getpid():
            continue
        words = cmd.split()
        if not (any(os.path.basename(w) == 'pgqd' for w in words[:2])
                or ('worker' in words and any('londiste' in w for w in words[:2]))):
            continue
        for w in words:
            if not w.endswith('.ini'):
                continue
            path = os.path.realpath(w) if os.path.isabs(w) else w
            ours = path.startswith(os.path.realpath(WORK) + '/')
            try:
                with open(path, errors='replace') as f:
                    text = f.read()
                ours = ours or any(m.search(text) for m in OUR_MARKERS)
            except OSError:
                pass
            if ours:
                fail('an external replication process serves these clusters: pid %s: %s' % (pid, cmd))


def pgbench(node, seconds):
    """Start the workload's login/logout pgbench scripts against node (background)."""
    files = []
    for name in ('login.pgbench', 'logout.pgbench'):
        with open(os.path.join(WORKLOAD_DIR, name)) as f:
            text = f.read().replace('random(1, 200000)', 'random(1, %d)' % ROWS)
        path = os.path.join(WORK, name)
        with open(path, 'w') as f:
            f.write(text)
        files += ['-f', path]
    out = open(os.path.join(WORK, 'pgbench-%s.out' % node), 'a')
    p = subprocess.Popen([os.path.join(PG_BIN, 'pgbench'), '-n', '-c', '2', '-j', '2',
                          '-T', str(seconds), '-h', '127.0.0.1', '-p', PORTS[node],
                          '-U', 'postgres'] + files + ['digoal'],
                         stdout=out, stderr=subprocess.STDOUT)
    remember_pid(p.pid)
    PROCS['pgbench_' + node] = p
    return p


def wait_pgbench(node, p, seconds):
    deadline = time.time() + seconds + 60
    while p.poll() is None:
        check_no_external_workers()
        if time.time() > deadline:
            fail('pgbench on %s did not finish' % node)
        time.sleep(0.2)
    txt = open(os.path.join(WORK, 'pgbench-%s.out' % node)).read()
    if p.returncode != 0:
        fail('pgbench on %s failed:\n%s' % (node, txt[-2000:]))
    m = re.findall(r'number of transactions actually processed: (\d+)', txt)
    n = int(m[-1]) if m else 0
    if n < 10:
        fail('pgbench on %s did only %d transactions' % (node, n))
    return n


# ---------------------------------------------------------------- replay workers

def status_rows(node):
    """pgq.worker_status() rows as dicts (columns read by name)."""
    return qdict(node, 'select * from pgq.worker_status()')


def kind_of(row):
    return row.get('kind', row.get('worker'))


def replay_rows(node):
    return [r for r in status_rows(node) if kind_of(r) == 'replay']


def replay_backends(node):
    return q(node, "select pid, application_name from pg_stat_activity where backend_type = %s "
                   "order by pid", [REPLAY_BACKEND])


def replay_pid(node):
    """The pid of node's one running replay worker, as both pgq.worker_status() and
    pg_stat_activity show it; None while there is none (or they disagree)."""
    rows = [r for r in replay_rows(node) if r.get('pid')]
    backs = replay_backends(node)
    if len(rows) != 1 or len(backs) != 1 or rows[0]['pid'] != backs[0][0]:
        return None
    return rows[0]['pid']


def describe_workers(node):
    try:
        rows = status_rows(node)
        backs = q(node, "select pid, backend_type, application_name, state, "
                        "left(coalesce(query, ''), 80) from pg_stat_activity "
                        "where backend_type like 'pgq%%' order by pid")
    except psycopg2.Error as e:
        return '  (%s)' % str(e).strip()
    out = ['  worker_status: %s' % ({k: v for k, v in r.items() if v is not None and v != 0 and v is not False})
           for r in rows]
    out += ['  pg_stat_activity: %s' % (b,) for b in backs]
    return '\n'.join(out) or '  (no pgq workers)'


# ---------------------------------------------------------------- data checks

def node_info(node):
    return q(node, 'select node_type, node_name, provider_node, worker_last_tick '
                   'from pgq_node.get_node_info(%s)', [QUEUE])[0]


def table_states(node):
    return dict(q(node, 'select table_name, merge_state from londiste.get_table_list(%s) '
                        'where local', [QUEUE]))


def checksums(node):
    """table -> (rows, sum of the row hashes): independent of row order and of ctid."""
    res = {}
    for t in TABLES:
        res[t] = tuple(q(node, 'select count(*), coalesce(sum(hashtext(x::text)::bigint), 0) '
                               'from only %s x' % t)[0])
    return res


def newest_tick(node):
    return q1(node, 'select last_tick_id from pgq.get_queue_info(%s)', [QUEUE])


def sync_point(root):
    """Make the root tick after everything committed so far; return that tick id.

    force_tick only lowers the thresholds: the tick itself is made by the in-server
    ticker (nobody calls pgq.ticker() here)."""
    t_end = q1(root, 'select now()')
    first = newest_tick(root)

    def ticked():
        q(root, 'select pgq.force_tick(%s)', [QUEUE])
        r = q(root, 'select t.tick_id, t.tick_time > %s from pgq.tick t join pgq.queue q '
                    'on q.queue_id = t.tick_queue where q.queue_name = %s '
                    'order by t.tick_id desc limit 1', [t_end, QUEUE])
        return r[0][0] if r and r[0][1] and r[0][0] > first else None
    return wait_for('a tick on %s after %s (in-server ticker)' % (root, t_end), ticked, 30)


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


def wait_caught_up(tick, nodes, timeout=120):
    for n in nodes:
        wait_for(lambda: '%s to apply tick %d (its worker_last_tick is %s)' % (n, tick, node_info(n)[3]),
                 lambda: (node_info(n)[3] or 0) >= tick, timeout)


def check_same_data(label):
    want = checksums('root')
    for n in SUBSCRIBERS:
        got = checksums(n)
        for t in TABLES:
            if got[t] != want[t]:
                fail('%s: %s differs on %s: %s rows, hash sum %s; root has %s rows, hash sum %s' % (
                    label, t, n, got[t][0], got[t][1], want[t][0], want[t][1]))
    log('  %s: equal on every node: %s' % (
        label, ', '.join('%s %d rows' % (t.split('.')[1], want[t][0]) for t in TABLES)))
    return want


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

STEPS = []


def step(name):
    def deco(fn):
        STEPS.append((name, fn))
        return fn
    return deco


@step('create-root/-branch/-leaf, add-table (--expect-sync on branch and leaf), add-seq')
def s_setup():
    for n in NODES:
        write_ini(n)
    londiste('root', 'create-root', 'root', connstr('root'))
    londiste('branch', 'create-branch', 'branch', connstr('branch'), '--provider=' + connstr('root'))
    londiste('leaf', 'create-leaf', 'leaf', connstr('leaf'), '--provider=' + connstr('branch'))
    # tick at least every 200 ms while events come and every second when idle (as one
    # would tune pgqd), so the waits for ticks below are short
    q('root', "select pgq.set_queue_config(%s, 'ticker_max_lag', '200 milliseconds'), "
              "pgq.set_queue_config(%s, 'ticker_idle_period', '1 second')", [QUEUE, QUEUE])
    londiste('root', 'add-table', *TABLES)
    for n in SUBSCRIBERS:
        londiste(n, 'add-table', '--expect-sync', *TABLES)
    for n in NODES:
        londiste(n, 'add-seq', *SEQS)
    for n in NODES:
        info = node_info(n)
        if (info[0], info[2]) != (n, PROVIDER[n]):
            fail('%s is %s with provider %s, expected %s with provider %s' % (
                n, info[0], info[2], n, PROVIDER[n]))
        if table_states(n) != {t: 'ok' for t in TABLES}:
            fail('%s: table states %s, expected all ok' % (n, table_states(n)))
        seqs = set(r[0] for r in q(n, 'select seq_name from londiste.get_seq_list(%s) where local', [QUEUE]))
        if seqs != set(SEQS):
            fail('%s: local sequences %s' % (n, sorted(seqs)))
    trg = q1('root', "select count(*) from pg_trigger where tgname like '\\_londiste\\_%%' "
                     "and tgrelid::regclass::text like 'digoal.%%'")
    if trg != 2 * len(TABLES):
        fail('root: %s londiste triggers, expected %d (row + truncate per table)' % (trg, 2 * len(TABLES)))
    check_same_data('after the copy by hand')


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


@step('server logs: no crash, no PANIC, no ERROR of a replay worker')
def s_logs():
    bad = re.compile(r'PANIC:|terminated by signal|was terminated by exception|'
                     r'all server processes terminated|pgq replay: ERROR:')
    found = []
    for n in NODES:
        path = os.path.join(os.path.dirname(DIRS[n]), 'server.log')
        with open(path, errors='replace') as f:
            found += ['%s: %s' % (n, line.rstrip()) for line in f if bad.search(line)]
    if found:
        fail('%d bad line(s) in the server logs:\n%s' % (len(found), '\n'.join(found[:20])))


def main():
    ok = True
    results = []
    try:
        check_no_external_workers()
        for i, (name, fn) in enumerate(STEPS, 2):
            t = time.time()
            log('STEP %d: %s' % (i, name))
            try:
                fn()
                check_no_external_workers()
            except Exception as e:  # Failed, or anything unexpected: report the step
                if not isinstance(e, Failed):
                    import traceback
                    traceback.print_exc()
                results.append((name, 'FAILED: %s' % str(e).splitlines()[0]))
                log('STEP %d FAILED: %s' % (i, e))
                for n in NODES:
                    try:
                        errs = q(n, 'select consumer_name, cur_error from pgq_node.get_consumer_info(%s) '
                                    'where cur_error is not null', [QUEUE])
                    except psycopg2.Error:
                        errs = []
                    for c, e2 in errs:
                        log('  %s: consumer %s error: %s' % (n, c, e2))
                    log('  %s pgq workers:\n%s' % (n, describe_workers(n)))
                ok = False
                break
            results.append((name, 'ok (%.1fs)' % (time.time() - t)))
    finally:
        stop_all()
    print('\nreplay scenario:')
    print('   1. %-92s ok (run.sh)' % 'clusters, seed workload, data copied by hand')
    for i, (name, res) in enumerate(results, 2):
        print('  %2d. %-92s %s' % (i, name, res))
    for name, _ in STEPS[len(results):]:
        print('      %-92s not run' % name)
    return 0 if ok else 1


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
