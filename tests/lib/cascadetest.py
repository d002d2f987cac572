"""tests/lib/cascadetest.py — what the multi-node scenarios share (tests/cascade,
tests/replay, tests/robust): the nodes of one root → branch → leaf cascade, SQL on
them, the Python `londiste` CLI, pgbench load with the seed workload, data checks and
the step runner.

The driver (run.sh) has started one cluster per node and exports
    WORK        work dir (ini files, commands.log, pid list for its cleanup)
    NODES       "root=PORT branch=PORT leaf=PORT"
    NODE_DIRS   data dirs, same form
    PG_BIN      bin dir (pgbench)
    WORKLOAD_DIR, ROWS, LOAD_SECONDS
A scenario imports this module (sys.path has tests/lib) and registers its steps with
@step; run_steps() runs them in order and prints the summary. WATCH holds checks run
while waiting (a scenario appends its own, e.g. "no external replication process").
"""

import os
import re
import subprocess
import sys
import time
import traceback

import psycopg2

import pgqclient

WORK = os.environ['WORK']
PG_BIN = os.environ.get('PG_BIN', '/usr/lib/postgresql/15/bin')
WORKLOAD_DIR = os.environ['WORKLOAD_DIR']
ROWS = int(os.environ.get('ROWS', '20000'))
LOAD_SECONDS = int(os.environ.get('LOAD_SECONDS', '8'))
QUEUE = 'replika'
LONDISTE = ['/usr/bin/python3', '/usr/bin/londiste']
PORTS = dict(kv.split('=') for kv in os.environ['NODES'].split())
DIRS = dict(kv.split('=', 1) for kv in os.environ.get('NODE_DIRS', '').split())
NODES = ['root', 'branch', 'leaf']
TABLES = ['digoal.user_info', 'digoal.user_session', 'digoal.user_login_rec',
          'digoal.user_logout_rec']
SEQS = ['digoal.user_login_rec_id_seq', 'digoal.user_logout_rec_id_seq']
T0 = time.time()

WATCH = []     # callables run on every poll of wait_for / wait_pgbench
PROCS = {}     # name -> Popen of what the scenario started outside the servers


def log(msg):
    print('[%6.1fs] %s' % (time.time() - T0, msg), flush=True)


class Failed(Exception):
    pass


def fail(msg):
    raise Failed(msg)


DEFERRED = []


def fail_later(msg):
    """A failed check after which the scenario can go on (the nodes stay consistent):
    the step is reported FAILED when it ends and the run fails, but later steps run."""
    log('  CHECK FAILED: %s' % msg)
    DEFERRED.append(msg)


def watch():
    for fn in WATCH:
        fn()


# ---------------------------------------------------------------- SQL

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
    """Poll cond() until it returns a true value or the deadline passes; `what` (a text
    or a callable giving one) names what was waited for in the failure."""
    deadline = time.time() + timeout
    err = None
    while True:
        watch()
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
            fail('timed out after %ds waiting for %s%s' % (
                timeout, what, (' (last error: %s)' % err) if err else ''))
        time.sleep(period)


# ---------------------------------------------------------------- processes

def remember_pid(pid):
    """run.sh's cleanup stops every pid listed here."""
    with open(os.path.join(WORK, 'pids'), 'a') as f:
        f.write('%d\n' % pid)


def ini(node):
    return os.path.join(WORK, node + '.ini')


def write_ini(node, *extra, db=None, queue=None):
    """node's londiste ini file; extra: more `key = value` lines. db: the cluster it
    serves (default: the cluster named node), queue: its queue (default QUEUE); a
    database with several queues (a merge setup) has one ini file per queue, each named
    differently."""
    with open(ini(node), 'w') as f:
        f.write('[londiste]\n'
                'job_name = worker_%s\n'
                'db = %s\n'
                'queue_name = %s\n'
                'logfile = %s/%s.log\n'
                'pidfile = %s/%s.pid\n'
                'loop_delay = 0.2\n'
                'lock_timeout = 30\n' % (node, connstr(db or node), queue or QUEUE, WORK, node,
                                         WORK, node))
        for line in extra:
            f.write(line + '\n')


def londiste(node, *args, check=True, timeout=120):
    """Run `londiste <node>.ini args...` and return its output (stdout + stderr); with
    check, a non-zero exit fails the step. Every call is logged in commands.log."""
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
    if check and r.returncode != 0:
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


def pgbench(node, seconds, clients=2):
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
    p = subprocess.Popen([os.path.join(PG_BIN, 'pgbench'), '-n', '-c', str(clients),
                          '-j', str(clients), '-T', str(seconds), '-h', '127.0.0.1',
                          '-p', PORTS[node], '-U', 'postgres'] + files + ['digoal'],
                         stdout=out, stderr=subprocess.STDOUT)
    remember_pid(p.pid)
    PROCS['pgbench_' + node] = p
    return p


def wait_pgbench(node, p, seconds=None, min_tx=10):
    """Wait for a pgbench started by pgbench(); fail if it failed or did fewer than
    min_tx transactions; return how many it did."""
    deadline = time.time() + (seconds or LOAD_SECONDS) + 60
    while p.poll() is None:
        watch()
        if time.time() > deadline:
            fail('pgbench on %s did not finish' % node)
        time.sleep(0.2)
    txt = open(os.path.join(WORK, 'pgbench-%s.out' % node)).read()
    if p.returncode != 0:
        fail('pgbench on %s failed:\n%s' % (node, txt[-2000:]))
    m = re.findall(r'number of transactions actually processed: (\d+)', txt)
    n = int(m[-1]) if m else 0
    if n < min_tx:
        fail('pgbench on %s did only %d transactions' % (node, n))
    return n


# ---------------------------------------------------------------- data checks

def node_info(node, queue=None):
    """(node_type, node_name, provider_node, worker_last_tick) of node (of its queue
    `queue`, default QUEUE)."""
    return q(node, 'select node_type, node_name, provider_node, worker_last_tick '
                   'from pgq_node.get_node_info(%s)', [queue or QUEUE])[0]


def table_states(node, queue=None):
    return dict(q(node, 'select table_name, merge_state from londiste.get_table_list(%s) '
                        'where local', [queue or QUEUE]))


def checksums(node, tables=None):
    """table -> (rows, sum of the row hashes): independent of row order and of ctid."""
    res = {}
    for t in tables or TABLES:
        res[t] = tuple(q(node, 'select count(*), coalesce(sum(hashtext(x::text)::bigint), 0) '
                               'from only %s x' % t)[0])
    return res


def newest_tick(node, queue=None):
    return q1(node, 'select last_tick_id from pgq.get_queue_info(%s)', [queue or QUEUE])


def sync_point(root, queue=None):
    """Make root tick after everything committed so far; return that tick id (of its
    queue `queue`, default QUEUE).

    force_tick only lowers the thresholds: the tick itself is made by the in-server
    ticker (nobody calls pgq.ticker() here)."""
    queue = queue or QUEUE
    t_end = q1(root, 'select now()')
    first = newest_tick(root, queue)

    def ticked():
        q(root, 'select pgq.force_tick(%s)', [queue])
        r = q(root, 'select t.tick_id, t.tick_time > %s from pgq.tick t join pgq.queue q '
                    'on q.queue_id = t.tick_queue where q.queue_name = %s '
                    'order by t.tick_id desc limit 1', [t_end, queue])
        return r[0][0] if r and r[0][1] and r[0][0] > first else None
    return wait_for('a tick of %s on %s after %s (in-server ticker)' % (queue, root, t_end), ticked, 30)


def wait_caught_up(tick, nodes, timeout=120, queue=None):
    for n in nodes:
        wait_for(lambda: '%s to apply tick %d of %s (its worker_last_tick is %s)' % (
                     n, tick, queue or QUEUE, node_info(n, queue)[3]),
                 lambda: (node_info(n, queue)[3] or 0) >= tick, timeout)


def compare_data(root, others, label, tables=None):
    """The same rows on every node of others as on root (count + hash sum per table)."""
    want = checksums(root, tables)
    for n in others:
        got = checksums(n, tables)
        for t in want:
            if got[t] != want[t]:
                fail('%s: %s differs on %s: %s rows, hash sum %s; %s has %s rows, hash sum %s' % (
                    label, t, n, got[t][0], got[t][1], root, want[t][0], want[t][1]))
    log('  %s: equal on %s: %s' % (label, ', '.join([root] + list(others)),
                                   ', '.join('%s %d rows' % (t.split('.')[1], want[t][0])
                                             for t in want)))
    return want


# ---------------------------------------------------------------- in-server workers

REPLAY_BACKEND = 'pgq replay'

OUR_MARKERS = None


def check_no_external_workers(pgqd_for=()):
    """No pgqd and no `londiste ... worker` may serve these clusters: every such process
    on the machine (pgrep) is looked at, and it is ours if its ini file lies in WORK or
    names one of our ports. Processes of other test runs on other clusters are ignored.
    pgqd_for: nodes whose own pgqd is expected (a node of the original stack): a pgqd
    whose ini names their ports and no other of ours is allowed."""
    global OUR_MARKERS
    if OUR_MARKERS is None:
        OUR_MARKERS = [re.compile(r'port\s*=\s*%s\b' % p) for p in PORTS.values()]
    allowed = [re.compile(r'port\s*=\s*%s\b' % PORTS[n]) for n in pgqd_for]
    others = [re.compile(r'port\s*=\s*%s\b' % p) for n, p in PORTS.items() if n not in pgqd_for]
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
            text = ''
            try:
                with open(path, errors='replace') as f:
                    text = f.read()
                ours = ours or any(m.search(text) for m in OUR_MARKERS)
            except OSError:
                pass
            if ours and 'worker' not in words and any(m.search(text) for m in allowed) \
                    and not any(m.search(text) for m in others):
                continue   # the expected pgqd of a node of the original stack
            if ours:
                fail('an external replication process serves these clusters: pid %s: %s' % (pid, cmd))


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


def server_log(node):
    return os.path.join(os.path.dirname(DIRS[node]), 'server.log')


def log_lines(node, start=0):
    """node's server.log from byte offset start: (text, offset at its end)."""
    with open(server_log(node), 'rb') as f:
        f.seek(start)
        data = f.read()
    return data.decode(errors='replace'), start + len(data)


def log_size(node):
    return os.path.getsize(server_log(node))


# ---------------------------------------------------------------- steps

STEPS = []


def step(name):
    def deco(fn):
        STEPS.append((name, fn))
        return fn
    return deco


def consumer_errors(node):
    try:
        return q(node, 'select consumer_name, cur_error from pgq_node.get_consumer_info(%s) '
                       'where cur_error is not null', [QUEUE])
    except psycopg2.Error:
        return []


def run_steps(title, first=1, on_failure=None, width=80, prelude=()):
    """Run the registered steps in order; a failing step (Failed or any exception) ends
    the run, one with deferred failures (fail_later) fails it but the next steps run.
    on_failure(node) gives extra text to log per node. prelude: (name, result) lines
    printed first (steps done by run.sh). Returns the exit code."""
    ok = True
    results = []
    try:
        watch()
        for i, (name, fn) in enumerate(STEPS, first):
            t = time.time()
            log('STEP %d: %s' % (i, name))
            try:
                del DEFERRED[:]
                fn()
                watch()
            except Exception as e:
                if not isinstance(e, Failed):
                    traceback.print_exc()
                results.append((name, 'FAILED: %s' % str(e).splitlines()[0]))
                log('STEP %d FAILED: %s' % (i, e))
                for n in NODES:
                    for c, e2 in consumer_errors(n):
                        log('  %s: consumer %s error: %s' % (n, c, e2))
                    if on_failure:
                        log(on_failure(n))
                ok = False
                break
            if DEFERRED:
                ok = False
                results.append((name, 'FAILED (%d check(s), the run went on): %s' % (
                    len(DEFERRED), DEFERRED[0].splitlines()[0])))
                log('STEP %d FAILED: %s' % (i, '; '.join(DEFERRED)))
                continue
            results.append((name, 'ok (%.1fs)' % (time.time() - t)))
    finally:
        stop_all()
    print('\n%s:' % title)
    k = 1
    for name, res in prelude:
        print('  %2d. %-*s %s' % (k, width, name, res))
        k += 1
    for i, (name, res) in enumerate(results, first):
        print('  %2d. %-*s %s' % (i, width, name, res))
    for name, _ in STEPS[len(results):]:
        print('      %-*s not run' % (width, name))
    sys.stdout.flush()
    return 0 if ok else 1
