#!/usr/bin/python3
"""The crash scenario of in-server replay (driven by tests/robust/run.sh).

A root → branch → leaf cascade of this extension, one cluster each, set up with the
original Python `londiste` CLI and replicated by the extension's `pgq replay` background
workers alone: no `londiste worker` and no pgqd serves these clusters at any time
(checked while waiting). Load is pgbench on the root (the seed workload's login/logout
scripts plus updates of digoal.bulk), rate-limited, in short runs restarted while a phase
wants load. The kill moments are random (RANDOM_SEED, printed, repeats a run).

Steps:
  1. (run.sh) three preloaded clusters, seed schema everywhere, data on the root only
  2. digoal.bulk (BULK_ROWS rows on the root, empty elsewhere); create-root/-branch/
     -leaf, add-table (the workers copy every table), add-seq; equal data; audit
     triggers (below) installed while idle
  3. kill -9 of a `pgq replay` backend under load, WORKER_KILLS times, branch and leaf
     alternately (each makes the postmaster restart that cluster's backends); the worker
     must come back with a new pid each time; then the checks below
  4. kill -9 of the branch's copy worker while pg_stat_progress_copy shows its COPY of
     digoal.bulk (after `londiste resync`), COPY_KILLS times under load (a copy that
     ends before its kill is resynced again); then one completed copy per resync (copy
     lines in the log, the root's row count), state ok, the copy snapshot dropped, no
     COPY left running, no copy transaction left open on the root; the checks below
  4b. kill -9 of the branch's copy worker in its hand-off: digoal.bulk resynced, the
     branch's replay worker paused (`londiste pause`) once the copy runs, so the copy
     worker catches up and waits in `wanna-sync:T`; killed there HANDOFF_KILLS times, it
     comes back waiting at the same T; `londiste resume`: `do-sync:C`, ok; the checks
     below
  5. the leaf's copy of digoal.bulk (after `londiste resync` on the leaf) loses its
     provider connection half way, COPY_CUTS times (the branch's backend serving the
     COPY TO terminated): a replay_error row naming the table each time, the same
     worker copies again; one completed copy; the checks below
  6. kill -9 of the leaf's or the branch's postmaster (alternately) under load, PM_KILLS
     times: every process of the old postmaster must exit, the cluster starts again, the
     worker comes back; then the checks below
  7. the branch (the leaf's provider) stopped for OUTAGE_SECONDS under load: the leaf
     shows the connection error (pgq.worker_status() last_error/last_sqlstate,
     pgq_node.get_consumer_info cur_error, pgq_cascade.replay_error rows; the retries
     fail before any batch), retries with backoff in the same worker (no crash loop);
     the branch started again: branch and leaf catch up (times printed), the errors
     clear; then the checks below
  8. server logs: every "terminated by signal" line is one of the test's SIGKILLs, no
     PANIC, no replay failure logged but connection losses to a provider that went
     away (none reported as a remote command ignoring a cancel), no replay worker
     ending by an ERROR

The checks after each phase (converge: the root ticks after the load, branch and leaf
apply that tick):
  * count + hash sum of every table equal on root, branch and leaf;
  * audit: an ENABLE ALWAYS row trigger on the four workload tables of every node logs
    each applied INSERT/UPDATE/DELETE in a table of its own (committed with the change,
    so a rolled-back batch leaves nothing). A batch applied twice shows as more rows on
    the subscriber than on the root (an update applied twice leaves the same data, so
    the data compare alone would not see it), a lost one as fewer: the counts per table
    and operation must be equal on all three nodes;
  * the branch's queue (what the leaf reads): every root tick since the audit baseline
    is a branch tick with the same tick_event_seq, and the branch's events of those
    ticks are the root's events of the same ticks, each ev_id once (a batch forwarded
    twice would repeat its ev_ids in a later tick, a lost one would miss them);
  * pgq_node positions agree: the leaf's completed tick is its position in the branch's
    queue, the branch's is its position in the root's;
  * no replay_error row of a data conflict, a lost position or a wrong branch tick.

Env (set by run.sh): WORK, NODES, NODE_DIRS, PG_BIN, WORKLOAD_DIR, ROWS, BULK_ROWS;
WORKER_KILLS, COPY_KILLS, COPY_CUTS, PM_KILLS, OUTAGE_SECONDS, LOAD_RATE, RANDOM_SEED.
"""

import os
import random
import re
import signal
import subprocess
import sys
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from cascadetest import *  # noqa: E402,F401,F403  (the shared multi-node helpers)
import cascadetest  # noqa: E402

SUBSCRIBERS = ['branch', 'leaf']
PROVIDER = {'root': 'root', 'branch': 'root', 'leaf': 'branch'}
BULK = 'digoal.bulk'
BULK_ROWS = int(os.environ.get('BULK_ROWS', '1000000'))
ALL_TABLES = TABLES + [BULK]
WORKER_KILLS = int(os.environ.get('WORKER_KILLS', '20'))
COPY_KILLS = int(os.environ.get('COPY_KILLS', '20'))
COPY_CUTS = int(os.environ.get('COPY_CUTS', '3'))
HANDOFF_KILLS = int(os.environ.get('HANDOFF_KILLS', '5'))
PM_KILLS = int(os.environ.get('PM_KILLS', '20'))
OUTAGE = int(os.environ.get('OUTAGE_SECONDS', '60'))
LOAD_RATE = int(os.environ.get('LOAD_RATE', '200'))
SEED = int(os.environ.get('RANDOM_SEED') or time.time())
RNG = random.Random(SEED)
CATCH_UP = 180      # seconds a subscriber may take to apply the root's tick after a phase

WATCH.append(check_no_external_workers)

COPY_LINE = re.compile(r'pgq (?:replay|copy): node "([^"]+)": copied table (\S+): (\d+) rows, (\d+) bytes in (\d+) ms')


def londiste(node, *args, timeout=120):
    """An admin command of the CLI (never `worker`: nothing replays here but the
    extension); a non-zero exit fails the step."""
    assert 'worker' not in args
    return cascadetest.londiste(node, *args, timeout=timeout)


# ---------------------------------------------------------------- load

class Load:
    """pgbench on the root in runs of CHUNK seconds, a new run started whenever one ends
    while the load is on (poll() is in WATCH, so every wait keeps it going)."""
    CHUNK = 4

    def __init__(self):
        self.p = None
        self.on = False
        self.tx = 0
        self.runs = 0
        self.files = None

    def _files(self):
        if self.files is None:
            self.files = []
            for name in ('login.pgbench', 'logout.pgbench'):
                with open(os.path.join(WORKLOAD_DIR, name)) as f:
                    text = f.read().replace('random(1, 200000)', 'random(1, %d)' % ROWS)
                path = os.path.join(WORK, name)
                with open(path, 'w') as f:
                    f.write(text)
                self.files += ['-f', path]
            path = os.path.join(WORK, 'bulk.pgbench')
            with open(path, 'w') as f:
                f.write('\\set id random(1, %d)\n'
                        'UPDATE digoal.bulk SET n = n + 1, touched = now() WHERE id = :id;\n' % BULK_ROWS)
            self.files += ['-f', path]
        return self.files

    def _spawn(self):
        self.out = os.path.join(WORK, 'pgbench-%d.out' % self.runs)
        self.p = subprocess.Popen(
            [os.path.join(PG_BIN, 'pgbench'), '-n', '-c', '2', '-j', '2', '-R', str(LOAD_RATE),
             '-T', str(self.CHUNK), '-h', '127.0.0.1', '-p', PORTS['root'], '-U', 'postgres']
            + self._files() + ['digoal'],
            stdout=open(self.out, 'w'), stderr=subprocess.STDOUT)
        remember_pid(self.p.pid)
        PROCS['pgbench-%d' % self.runs] = self.p
        self.runs += 1

    def _collect(self):
        rc = self.p.wait()
        txt = open(self.out).read()
        self.p = None
        if rc != 0:
            fail('pgbench on the root failed (exit %d):\n%s' % (rc, txt[-2000:]))
        m = re.findall(r'number of transactions actually processed: (\d+)', txt)
        self.tx += int(m[-1]) if m else 0

    def start(self):
        self.on = True
        self.tx = 0
        if self.p is None:
            self._spawn()

    def poll(self):
        if self.p is not None and self.p.poll() is not None:
            self._collect()
            if self.on:
                self._spawn()

    def stop(self):
        """End the load (the current run ends by itself within CHUNK seconds); return
        the transactions done since start()."""
        self.on = False
        if self.p is not None:
            deadline = time.time() + self.CHUNK + 30
            while self.p.poll() is None:
                if time.time() > deadline:
                    fail('pgbench on the root did not end')
                time.sleep(0.1)
            self._collect()
        if self.tx < 10:
            fail('pgbench on the root did only %d transactions' % self.tx)
        return self.tx


LOAD = Load()
WATCH.append(LOAD.poll)


def pause(seconds):
    """Sleep, keeping the load and the watch checks going."""
    end = time.time() + seconds
    while True:
        watch()
        left = end - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))


# ---------------------------------------------------------------- processes and clusters

KILLED = {n: set() for n in NODES}   # pids this scenario SIGKILLed, per cluster
DOWN = set()                         # nodes whose postmaster is down (killed or stopped)
ORPHANS = {}                         # node -> processes of its killed postmaster


def kill9(node, pid):
    KILLED[node].add(pid)
    os.kill(pid, signal.SIGKILL)


def postmaster_pid(node):
    with open(os.path.join(DIRS[node], 'postmaster.pid')) as f:
        return int(f.readline())


def children(pid):
    r = subprocess.run(['ps', '-o', 'pid=', '--ppid', str(pid)], stdout=subprocess.PIPE)
    return [int(x) for x in r.stdout.split()]


def alive(pid):
    """pid runs (a zombie no longer counts: it holds no shared memory)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().replace(b'\0', b' ').decode(errors='replace').strip()
    except OSError:
        return '(gone)'


def pg_ctl(node, *args):
    r = subprocess.run(['sudo', '-u', 'postgres', '-H', '--', os.path.join(PG_BIN, 'pg_ctl'),
                        '-D', DIRS[node]] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    if r.returncode != 0:
        fail('pg_ctl %s on %s: exit %d:\n%s\n%s' % (' '.join(args), node, r.returncode,
                                                   r.stdout.decode(errors='replace'), tail(server_log(node))))


def start_node(node):
    pg_ctl(node, '-l', server_log(node), '-w', '-t', '60', 'start')
    DOWN.discard(node)


def stop_node(node):
    DOWN.add(node)
    pg_ctl(node, '-m', 'fast', '-w', '-t', '60', 'stop')


def in_transaction(node, pid):
    return q1(node, 'select xact_start is not null from pg_stat_activity where pid = %s', [pid])


def aim(node, pid, within=1.0):
    """Wait (at most `within` seconds) for the worker to be inside a transaction (a batch
    being applied, mostly), so the kill lands mid-batch; returns whether it is. Every
    other pair of kills is not aimed: those land anywhere, also between a batch's commit
    and its branch tick or finish_batch."""
    deadline = time.time() + within
    while True:
        try:
            if in_transaction(node, pid):
                return True
        except psycopg2.Error:
            return False
        if time.time() > deadline:
            return False
        time.sleep(0.01)


def wait_worker(node, old=None, timeout=60):
    """The replay worker of node, a new one if old is given; returns its pid."""
    return wait_for(lambda: 'a replay worker on %s%s:\n%s' % (
                        node, ' other than pid %d' % old if old else '', describe_workers(node)),
                    lambda: (lambda p: p if p and p != old else None)(replay_pid(node)), timeout, 0.1)


# ---------------------------------------------------------------- checks

def worker_name(node):
    return q1(node, 'select worker_name from pgq_node.get_node_info(%s)', [QUEUE])


def last_error_id(node):
    return q1(node, 'select coalesce(max(error_id), 0) from pgq_cascade.replay_error') or 0


def replay_errors(node, since_id=0):
    return qdict(node, 'select * from pgq_cascade.replay_error where queue_name = %s and error_id > %s '
                       'order by error_id', [QUEUE, since_id])


# replay errors that mean lost or doubled work (a data conflict: a row applied twice; a
# lost position; a branch tick that does not fit)
BAD_ERROR = re.compile(r'duplicate key|Lost position|is_batch_done|last branch tick|'
                       r'violates|does not exist', re.I)


def error_summary(node, since):
    errs = replay_errors(node, since)
    bad = [e for e in errs if e['sqlstate'] == '23505' or BAD_ERROR.search(e['message'] or '')]
    if bad:
        fail('%s: %d replay error(s) of lost or doubled work, first: %s' % (
            node, len(bad), {k: bad[0][k] for k in ('error_id', 'batch_id', 'tick_id', 'ev_id',
                                                    'sqlstate', 'message')}))
    kinds = {}
    for e in errs:
        kinds[e['sqlstate']] = kinds.get(e['sqlstate'], 0) + 1
    return '%d replay_error row(s)%s' % (len(errs), ' (%s)' % ', '.join(
        '%s x%d' % kv for kv in sorted(kinds.items())) if kinds else '')


AUDIT_SQL = '''
create schema robust_audit;
create table robust_audit.applied (tbl text not null, op text not null);
create function robust_audit.log() returns trigger language plpgsql as $f$
begin
    insert into robust_audit.applied (tbl, op) values (tg_table_name, tg_op);
    return null;
end
$f$;
'''


def install_audit():
    for n in NODES:
        q(n, AUDIT_SQL)
        for t in TABLES:
            q(n, 'create trigger zz_robust_audit after insert or update or delete on %s '
                 'for each row execute function robust_audit.log(); '
                 'alter table %s enable always trigger zz_robust_audit' % (t, t))


def audit_counts(node):
    return dict(((t, op), c) for t, op, c in q(
        node, 'select tbl, op, count(*) from robust_audit.applied group by 1, 2'))


def check_audit(label):
    want = audit_counts('root')
    for n in SUBSCRIBERS:
        got = audit_counts(n)
        if got != want:
            diff = ['%s %s: root %d, %s %d' % (k[0], k[1], want.get(k, 0), n, got.get(k, 0))
                    for k in sorted(set(want) | set(got)) if want.get(k, 0) != got.get(k, 0)]
            fail('%s: applied changes on %s differ from the root (a batch lost or applied twice): %s' % (
                label, n, '; '.join(diff)))
    return sum(want.values())


def tick_row(node, tick):
    return q(node, 'select t.tick_id, t.tick_snapshot::text, t.tick_event_seq from pgq.tick t '
                   'join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = %s '
                   'and t.tick_id = %s', [QUEUE, tick])


def batch_events(node, t0, t1):
    """ev_ids of node's queue in the batches (t0, t1], with repeats."""
    pfx = q1(node, 'select queue_data_pfx from pgq.queue where queue_name = %s', [QUEUE])
    (s0,), (s1,) = [[r[1] for r in tick_row(node, t)] for t in (t0, t1)]
    return [r[0] for r in q(node, 'select ev_id from %s where txid_visible_in_snapshot(ev_txid, %%s) '
                                  'and not txid_visible_in_snapshot(ev_txid, %%s)' % pfx, [s1, s0])]


def check_branch_queue(label, t0, t1):
    """The branch's ticks and events in (t0, t1] are the root's."""
    ticks = {}
    for n in ('root', 'branch'):
        ticks[n] = dict(q(n, 'select t.tick_id, t.tick_event_seq from pgq.tick t join pgq.queue q '
                             'on q.queue_id = t.tick_queue where q.queue_name = %s '
                             'and t.tick_id between %s and %s', [QUEUE, t0, t1]))
    if ticks['branch'] != ticks['root']:
        only_root = sorted(set(ticks['root']) - set(ticks['branch']))
        only_branch = sorted(set(ticks['branch']) - set(ticks['root']))
        seq = [t for t in ticks['root'] if t in ticks['branch'] and ticks['root'][t] != ticks['branch'][t]]
        fail('%s: the branch\'s ticks %d..%d differ from the root\'s: missing on the branch %s, '
             'only on the branch %s, other event seq %s' % (label, t0, t1, only_root[:10], only_branch[:10], seq[:10]))
    root_ev = batch_events('root', t0, t1)
    branch_ev = batch_events('branch', t0, t1)
    pfx = q1('branch', 'select queue_data_pfx from pgq.queue where queue_name = %s', [QUEUE])
    dup = q('branch', 'select ev_id, count(*) from %s group by 1 having count(*) > 1 order by 1 limit 5' % pfx)
    if dup:
        fail('%s: ev_ids repeated in the branch\'s queue (a batch forwarded twice): %s' % (label, dup))
    if len(root_ev) != len(set(root_ev)):
        fail('%s: the root\'s own queue repeats ev_ids' % label)
    if sorted(branch_ev) != sorted(root_ev):
        lost = sorted(set(root_ev) - set(branch_ev))
        extra = sorted(set(branch_ev) - set(root_ev))
        fail('%s: events of ticks %d..%d: root %d, branch %d; lost on the branch %s, '
             'not of the root\'s batches %s' % (label, t0, t1, len(root_ev), len(branch_ev), lost[:10], extra[:10]))
    return len(ticks['root']), len(root_ev)


def branch_position_of(node):
    """node's position (last_tick) in its provider's queue."""
    return q1(PROVIDER[node], 'select last_tick from pgq.get_consumer_info(%s, %s)', [QUEUE, worker_name(node)])


def applied_or_broken(node, tick):
    """Whether node applied tick; a replay stopped by an error of lost or doubled work
    (cur_error) fails at once instead of at the end of the wait."""
    if (node_info(node)[3] or 0) >= tick:
        return True
    err = q1(node, 'select cur_error from pgq_node.get_consumer_info(%s) where consumer_name = %s',
             [QUEUE, worker_name(node)])
    if err and BAD_ERROR.search(err):
        fail('%s: replay stopped by %r' % (node, err))
    return False


def converge(label, timeout=CATCH_UP):
    """The root ticks after everything so far; branch and leaf apply that tick (their
    completed tick, the branch's own tick, their position at the provider). Returns the
    tick."""
    tick = sync_point('root')
    for n in SUBSCRIBERS:
        wait_for(lambda: '%s to apply tick %d (its worker_last_tick is %s)' % (n, tick, node_info(n)[3]),
                 lambda: applied_or_broken(n, tick), timeout)
    wait_for('the branch\'s own tick %d' % tick, lambda: tick_row('branch', tick), 30)
    for n in SUBSCRIBERS:
        wait_for(lambda: '%s: its position at %s to be tick %d (completed %s, there %s)' % (
                     n, PROVIDER[n], tick, node_info(n)[3], branch_position_of(n)),
                 lambda: branch_position_of(n) == node_info(n)[3] >= tick, 30)
    return tick


BASE = {}


def verify(label, since):
    """The checks after a phase (module docstring); since: replay_error ids per node
    at the phase's start."""
    t = time.time()
    tick = converge(label)
    log('  %s: branch and leaf applied root tick %d %.1fs after the load ended' % (label, tick, time.time() - t))
    want = compare_data('root', SUBSCRIBERS, label, ALL_TABLES)
    changes = check_audit(label)
    nticks, nev = check_branch_queue(label, BASE['tick'], tick)
    for n in SUBSCRIBERS:
        st = table_states(n)
        if st != {t: 'ok' for t in ALL_TABLES}:
            fail('%s: %s table states %s' % (label, n, st))
    log('  %s: %d rows compared per node; %d applied row changes, equal per table and operation '
        'on every node; branch queue since the baseline: %d ticks, %d events, as the root\'s; %s' % (
            label, sum(v[0] for v in want.values()), changes, nticks, nev,
            '; '.join('%s %s' % (n, error_summary(n, since[n])) for n in SUBSCRIBERS)))
    return tick


def phase_start():
    return {n: last_error_id(n) for n in SUBSCRIBERS}


# ---------------------------------------------------------------- the scenario

COPY_MS = {}


BULK_SQL = '''
create table digoal.bulk (id int primary key, n bigint not null default 0, touched timestamptz, pad text);
insert into digoal.bulk (id, pad) select g, md5(g::text) || ' bulk row ' || g from generate_series(1, %d) g;
'''


@step('digoal.bulk (%d rows on the root); create-root/-branch/-leaf, add-table (the workers copy), '
      'add-seq; audit triggers' % BULK_ROWS)
def s_setup():
    # the table the COPY phases resync: big enough that its copy takes a second or more
    for n in NODES:
        q(n, BULK_SQL % (BULK_ROWS if n == 'root' else 0))
    for n in NODES:
        write_ini(n)
    londiste('root', 'create-root', 'root', connstr('root'))
    londiste('branch', 'create-branch', 'branch', connstr('branch'), '--provider=' + connstr('root'))
    londiste('leaf', 'create-leaf', 'leaf', connstr('leaf'), '--provider=' + connstr('branch'))
    q('root', "select pgq.set_queue_config(%s, 'ticker_max_lag', '200 milliseconds'), "
              "pgq.set_queue_config(%s, 'ticker_idle_period', '1 second')", [QUEUE, QUEUE])
    londiste('root', 'add-table', *ALL_TABLES)
    t = time.time()
    for n in SUBSCRIBERS:
        londiste(n, 'add-table', *ALL_TABLES)
    for n in NODES:
        londiste(n, 'add-seq', *SEQS)
    want = {x: 'ok' for x in ALL_TABLES}
    for n in SUBSCRIBERS:
        wait_for(lambda: '%s: every table ok after the initial copy (states %s)' % (n, table_states(n)),
                 lambda: table_states(n) == want, 180, 0.2)
    log('  every table ok on branch and leaf %.1fs after add-table' % (time.time() - t))
    for n in SUBSCRIBERS:
        text, _ = log_lines(n)
        for m in COPY_LINE.finditer(text):
            if m.group(2) == BULK:
                COPY_MS[n] = int(m.group(5))
                if int(m.group(3)) != BULK_ROWS:
                    fail('%s: the copy of %s logged %s rows, the root has %d' % (n, BULK, m.group(3), BULK_ROWS))
        if n not in COPY_MS:
            fail('%s: no copy line for %s in the server log' % (n, BULK))
    log('  copy of %s (%d rows): %s' % (BULK, BULK_ROWS, ', '.join('%s %d ms' % kv for kv in sorted(COPY_MS.items()))))
    for n in NODES:
        info = node_info(n)
        if (info[0], info[2]) != (n, PROVIDER[n]):
            fail('%s is %s with provider %s' % (n, info[0], info[2]))
    for n in SUBSCRIBERS:
        wait_worker(n)
    tick = converge('after the initial copy')
    compare_data('root', SUBSCRIBERS, 'after the initial copy', ALL_TABLES)
    # the audit (and the baseline of the queue check) starts while nothing changes
    install_audit()
    BASE['tick'] = converge('audit baseline')
    log('  audit triggers on %s; baseline root tick %d (initial copy done at tick %d)' % (
        ', '.join(TABLES), BASE['tick'], tick))


@step('kill -9 of a replay worker under load (branch and leaf alternately): back each time; '
      'nothing lost or doubled')
def s_kill_workers():
    since = phase_start()
    LOAD.start()
    back, mid = [], 0
    for i in range(WORKER_KILLS):
        node = SUBSCRIBERS[i % 2]
        pid = wait_worker(node)
        pause(RNG.uniform(0.2, 1.5))
        pid = wait_worker(node)
        hit = aim(node, pid) if (i // 2) % 2 == 0 else bool(in_transaction(node, pid))
        mid += hit
        kill9(node, pid)
        t = time.time()
        new = wait_worker(node, pid)
        back.append(time.time() - t)
        log('  kill %2d: %s pid %d (%s) -> pid %d after %.1fs' % (
            i + 1, node, pid, 'in a transaction' if hit else 'between transactions', new, back[-1]))
    tx = LOAD.stop()
    log('  %d kills (%d in a transaction), worker back after %.1fs on average, %.1fs at most; '
        '%d transactions on the root' % (WORKER_KILLS, mid, sum(back) / len(back), max(back), tx))
    verify('after %d worker kills' % WORKER_KILLS, since)


def copy_progress(node):
    """(pid, tuples_processed) of a COPY into digoal.bulk running on node, or None."""
    r = q(node, "select pid, tuples_processed from pg_stat_progress_copy "
                "where relid = 'digoal.bulk'::regclass and command = 'COPY FROM'")
    return tuple(r[0]) if r else None


def until_copied(progress, node, pid):
    """Wait until the COPY of pid (progress(node): (pid, tuples_processed)) has done a
    random part (5% to 80%) of digoal.bulk's rows, whatever the copy's speed; returns
    its progress then, or None if that COPY ended first."""
    target = int(BULK_ROWS * RNG.uniform(0.05, 0.8))
    while True:
        watch()
        p = progress(node)
        if not p or p[0] != pid:
            return None
        if p[1] >= target:
            return p
        time.sleep(0.01)


def copy_lines(node, offset):
    text, _ = log_lines(node, offset)
    return [m for m in COPY_LINE.finditer(text) if m.group(2) == BULK]


@step('kill -9 of the branch\'s copy worker mid-COPY of digoal.bulk (after resync), under load: '
      'one complete copy at last, state ok, no copy snapshot left')
def s_kill_copy():
    since = phase_start()
    off = log_size('branch')
    LOAD.start()
    pause(1)
    londiste('branch', 'resync', BULK)
    kills, missed, at = 0, 0, []
    while kills < COPY_KILLS:
        pid, n0 = wait_for(lambda: 'the branch\'s COPY of %s (states %s):\n%s' % (
                               BULK, table_states('branch'), describe_workers('branch')),
                           lambda: copy_progress('branch'), 60, 0.05)
        btype = q1('branch', 'select backend_type from pg_stat_activity where pid = %s', [pid])
        if btype != 'pgq copy':
            fail('the COPY into %s on the branch runs in pid %d, a %r backend, not a copy worker' % (BULK, pid, btype))
        p = until_copied(copy_progress, 'branch', pid)
        if not p:
            # finished before the kill: not a mid-COPY kill; copy it again
            missed += 1
            if missed > COPY_KILLS:
                fail('the copy finished before the kill %d times' % missed)
            wait_for('%s ok on the branch' % BULK, lambda: table_states('branch').get(BULK) == 'ok', 60)
            log('  the copy by pid %d ended before the kill: resync again' % pid)
            londiste('branch', 'resync', BULK)
            continue
        # a SIGKILLed backend restarts the whole server: the replay worker comes back
        # as a new process too
        worker = wait_worker('branch')
        kill9('branch', pid)
        kills += 1
        at.append(p[1])
        t = time.time()
        new = wait_worker('branch', worker)
        state = table_states('branch').get(BULK)
        log('  kill %d: pid %d with %d of %d rows copied -> pid %d after %.1fs; %s is %r' % (
            kills, pid, p[1], BULK_ROWS, new, time.time() - t, BULK, state))
        if state == 'ok' and not copy_lines('branch', off):
            fail('%s is ok on the branch after the killed copy, and no copy completed' % BULK)
    t = time.time()
    wait_for(lambda: '%s ok on the branch after the last kill (states %s)' % (BULK, table_states('branch')),
             lambda: table_states('branch').get(BULK) == 'ok', 120)
    log('  the copy after the last kill completed %.1fs after the worker came back' % (time.time() - t))
    tx = LOAD.stop()
    # one completed copy per resync: the killed ones never complete
    lines = copy_lines('branch', off)
    if len(lines) != missed + 1:
        fail('%d completed copies of %s logged on the branch since the first resync, expected %d (one per '
             'resync): %s' % (len(lines), BULK, missed + 1, [m.group(0) for m in lines]))
    if any(int(m.group(3)) != BULK_ROWS for m in lines):
        fail('a copy of %s logged another row count than the root\'s %d: %s' % (
            BULK, BULK_ROWS, [m.group(0) for m in lines]))
    lines = lines[-1:]
    log('  %d kills mid-COPY (at %s rows), %d copies that ended before the kill; the last copy: %s rows in %s ms; '
        '%d transactions on the root' % (kills, ', '.join(map(str, at)), missed, lines[0].group(3),
                                         lines[0].group(5), tx))
    tick = verify('after %d kills mid-COPY' % kills, since)
    wait_for(lambda: 'the copy snapshot of %s on the branch to be dropped (%s)' % (BULK, q1(
                 'branch', 'select custom_snapshot from londiste.get_table_list(%s) where table_name = %s',
                 [QUEUE, BULK])),
             lambda: q1('branch', 'select count(*) from londiste.get_table_list(%s) '
                                  'where local and custom_snapshot is not null', [QUEUE]) == 0, 30)
    left = {
        'COPY running on the branch': q1('branch', 'select count(*) from pg_stat_progress_copy'),
        'parked foreign keys on the branch': q1('branch', 'select count(*) from londiste.pending_fkeys'),
        'transactions of the replay left open on the root': q1(
            'root', "select count(*) from pg_stat_activity where (application_name like 'pgq replay%%' or application_name like 'pgq copy%%') "
                    "and state like 'idle in transaction%%'"),
    }
    if any(left.values()):
        fail('after the copy: %s' % left)
    log('  after tick %d: state ok, no copy snapshot, no COPY running, no open copy transaction on the root' % tick)

def copy_worker_pid(node):
    r = q(node, "select pid from pg_stat_activity where backend_type = 'pgq copy' order by pid")
    return r[0][0] if len(r) == 1 else None


@step('kill -9 of the branch\'s copy worker while it waits for its hand-off (wanna-sync, the replay '
      'worker paused), under load: back waiting at the same tick; resumed: handed over, nothing lost or doubled')
def s_kill_handoff():
    since = phase_start()
    LOAD.start()
    pause(1)
    londiste('branch', 'resync', BULK)
    wait_for(lambda: '%s in-copy on the branch (%s)' % (BULK, table_states('branch')),
             lambda: table_states('branch').get(BULK) == 'in-copy', 60, 0.02)
    londiste('branch', 'pause')
    waiting = lambda: (lambda st: st if st and st.startswith('wanna-sync:') else None)(
        table_states('branch').get(BULK))
    first = wait_for(lambda: '%s in wanna-sync on the branch (%s):\n%s' % (
                         BULK, table_states('branch'), describe_workers('branch')), waiting, 120, 0.05)
    for i in range(HANDOFF_KILLS):
        pid = wait_for('a copy worker on the branch', lambda: copy_worker_pid('branch'), 60, 0.05)
        worker = wait_worker('branch')
        kill9('branch', pid)
        wait_worker('branch', worker)
        new = wait_for('the copy worker back on the branch', lambda: (lambda p: p if p and p != pid else None)(
            copy_worker_pid('branch')), 60, 0.05)
        pause(0.5)
        st = table_states('branch').get(BULK)
        log('  kill %d: copy worker %d in %s -> %d, %s is %r' % (i + 1, pid, first, new, BULK, st))
        if st != first:
            fail('after the kill the state of %s is %r, expected %r' % (BULK, st, first))
    t = time.time()
    londiste('branch', 'resume')
    wait_for(lambda: '%s ok on the branch after resume (%s)' % (BULK, table_states('branch')),
             lambda: table_states('branch').get(BULK) == 'ok', 60, 0.05)
    log('  resumed: %s ok %.2fs later' % (BULK, time.time() - t))
    tx = LOAD.stop()
    log('  %d kills of the copy worker in %s; %d transactions on the root' % (HANDOFF_KILLS, first, tx))
    verify('after %d kills in the hand-off' % HANDOFF_KILLS, since)
    left = q1('branch', "select count(*) from pgq_node.local_state where consumer_name like '%%.copy.%%'") + \
        q1('root', "select count(*) from pgq.get_consumer_info(%s) where consumer_name like '%%.copy.%%'", [QUEUE])
    if left:
        fail('%d copy consumers left registered after the hand-off' % left)


def provider_copy(node):
    """(pid, tuples_processed) of the COPY TO that node's provider runs for node's
    copy worker (its connection's application_name), or None."""
    r = q(PROVIDER[node], "select p.pid, p.tuples_processed from pg_stat_progress_copy p "
                          "join pg_stat_activity a using (pid) "
                          "where p.command = 'COPY TO' and a.application_name = %s", ['pgq copy ' + QUEUE])
    return tuple(r[0]) if r else None


@step('the leaf\'s copy of digoal.bulk (after resync) loses its provider connection half way, under load: '
      'error recorded, copied again, one complete copy')
def s_cut_copy():
    since = phase_start()
    off = log_size('leaf')
    LOAD.start()
    pause(1)
    londiste('leaf', 'resync', BULK)
    cuts, missed = 0, 0
    while cuts < COPY_CUTS:
        pid, _ = wait_for(lambda: 'the branch\'s COPY TO for the leaf\'s copy of %s (leaf states %s):\n%s' % (
                              BULK, table_states('leaf'), describe_workers('leaf')),
                          lambda: provider_copy('leaf'), 60, 0.05)
        p = until_copied(provider_copy, 'leaf', pid)
        if not p:
            missed += 1
            if missed > COPY_CUTS:
                fail('the copy finished before the cut %d times' % missed)
            wait_for('%s ok on the leaf' % BULK, lambda: table_states('leaf').get(BULK) == 'ok', 60)
            log('  the copy ended before the cut: resync again')
            londiste('leaf', 'resync', BULK)
            continue
        worker = replay_pid('leaf')
        n_err = len(replay_errors('leaf', since['leaf']))
        if not q1('branch', 'select pg_terminate_backend(%s)', [pid]):
            fail('pg_terminate_backend(%d) on the branch returned false' % pid)
        cuts += 1
        e = wait_for(lambda: 'a replay_error row on the leaf for the cut copy (%s)' % replay_errors('leaf', since['leaf']),
                     lambda: (lambda x: x[n_err] if len(x) > n_err else None)(replay_errors('leaf', since['leaf'])), 30)
        if e['table_name'] != BULK or not e['sqlstate']:
            fail('the cut copy\'s replay_error row names table %r, sqlstate %r: %s' % (e['table_name'], e['sqlstate'], e))
        state = table_states('leaf').get(BULK)
        if state == 'ok' and not copy_lines('leaf', off):
            fail('%s is ok on the leaf after the cut copy, and no copy completed' % BULK)
        log('  cut %d: the branch\'s COPY TO backend %d ended with %d of %d rows sent; leaf: %s %s, %s is %r' % (
            cuts, pid, p[1], BULK_ROWS, e['sqlstate'], (e['message'] or '')[:80], BULK, state))
        if replay_pid('leaf') != worker:
            fail('the leaf\'s replay worker changed (%s -> %s): a lost provider must be retried in the worker' % (
                worker, replay_pid('leaf')))
    t = time.time()
    wait_for(lambda: '%s ok on the leaf after the last cut (states %s)' % (BULK, table_states('leaf')),
             lambda: table_states('leaf').get(BULK) == 'ok', 120)
    log('  the copy after the last cut completed %.1fs later' % (time.time() - t))
    tx = LOAD.stop()
    lines = copy_lines('leaf', off)
    if len(lines) != missed + 1 or any(int(m.group(3)) != BULK_ROWS for m in lines):
        fail('completed copies of %s on the leaf since the first resync: %s, expected %d of %d rows' % (
            BULK, [m.group(0) for m in lines], missed + 1, BULK_ROWS))
    log('  %d cuts mid-COPY, %d copies that ended before the cut; the last copy: %s rows in %s ms; '
        '%d transactions on the root' % (cuts, missed, lines[-1].group(3), lines[-1].group(5), tx))
    tick = verify('after %d cut copies' % cuts, since)
    wait_for('the copy snapshot of %s on the leaf to be dropped' % BULK,
             lambda: q1('leaf', 'select count(*) from londiste.get_table_list(%s) '
                                'where local and custom_snapshot is not null', [QUEUE]) == 0, 30)
    left = {
        'COPY running on the leaf': q1('leaf', 'select count(*) from pg_stat_progress_copy'),
        'transactions of the replay left open on the branch': q1(
            'branch', "select count(*) from pg_stat_activity where (application_name like 'pgq replay%%' or application_name like 'pgq copy%%') "
                      "and state like 'idle in transaction%%'"),
    }
    if any(left.values()):
        fail('after the copy: %s' % left)
    log('  after tick %d: state ok, no copy snapshot, no COPY running, no open copy transaction on the branch' % tick)


@step('kill -9 of a subscriber\'s postmaster under load (leaf and branch alternately): every old '
      'process exits, restart, worker back; nothing lost or doubled')
def s_kill_postmaster():
    since = phase_start()
    LOAD.start()
    back, mid, gone = [], 0, []
    for i in range(PM_KILLS):
        node = ['leaf', 'branch'][i % 2]
        pid = wait_worker(node)
        pause(RNG.uniform(0.2, 1.5))
        pid = wait_worker(node)
        hit = aim(node, pid) if (i // 2) % 2 == 0 else bool(in_transaction(node, pid))
        mid += hit
        pm = postmaster_pid(node)
        kids = children(pm)
        if pid not in kids:
            fail('%s: the replay worker %d is not a child of the postmaster %d (%s)' % (node, pid, pm, kids))
        t = time.time()
        DOWN.add(node)
        ORPHANS[node] = kids
        kill9(node, pm)
        names = {k: cmdline(k) for k in kids}
        names[pm] = 'postmaster'
        last = []

        def all_gone():
            left = sorted(set(names[k] for k in names if alive(k)))
            if left:
                last[:] = left      # the ones still there at the last look
            return not left
        wait_for(lambda: '%s: the processes of the killed postmaster %d to exit: %s' % (
                     node, pm, ['%d %s' % (k, cmdline(k)) for k in names if alive(k)]), all_gone, 30, 0.02)
        gone.append(time.time() - t)
        # the killed postmaster itself must also be reaped (by init, here): the new
        # one refuses to start while the pid in postmaster.pid exists, a zombie too
        wait_for('%s: the killed postmaster %d to be reaped' % (node, pm),
                 lambda: not os.path.exists('/proc/%d' % pm), 30, 0.05)
        start_node(node)
        new = wait_worker(node, pid)
        back.append(time.time() - t)
        log('  kill %2d: %s postmaster %d (worker %d %s) -> its %d processes gone after %.2fs (last: %s), '
            'started, worker %d after %.1fs' % (i + 1, node, pm, pid, 'in a transaction' if hit else 'idle',
                                                len(kids), gone[-1], ', '.join(last), new, back[-1]))
    tx = LOAD.stop()
    log('  %d postmaster kills (worker in a transaction %d times); old processes gone after %.2fs at most; '
        'worker back after %.1fs on average, %.1fs at most; %d transactions on the root' % (
            PM_KILLS, mid, max(gone), sum(back) / len(back), max(back), tx))
    verify('after %d postmaster kills' % PM_KILLS, since)


def leaf_status():
    rows = replay_rows('leaf')
    return rows[0] if len(rows) == 1 else None


def leaf_cur_error():
    return q1('leaf', 'select cur_error from pgq_node.get_consumer_info(%s) where consumer_name = %s',
              [QUEUE, worker_name('leaf')])


@step('the branch (the leaf\'s provider) down for %ds under load: the leaf shows the error and '
      'retries in the same worker; restarted: caught up, nothing lost or doubled' % OUTAGE)
def s_outage():
    since = phase_start()
    LOAD.start()
    pause(2)
    pid = wait_worker('leaf')
    t0 = time.time()
    stop_node('branch')
    log('  branch stopped (%.1fs)' % (time.time() - t0))

    def shown():
        r = leaf_status()
        ce = leaf_cur_error()
        errs = [e for e in replay_errors('leaf', since['leaf']) if e['batch_id'] is None]
        if r and r.get('last_error') and (r.get('last_sqlstate') or '').startswith('08') and ce and errs:
            return r, ce, errs
        return None
    r, ce, errs = wait_for(lambda: 'the leaf to show the provider\'s absence: worker_status %s, cur_error %r, '
                                   'replay_error %s' % (leaf_status(), leaf_cur_error(),
                                                        replay_errors('leaf', since['leaf'])), shown, 30)
    log('  leaf %.1fs after the stop: worker_status %s %r; cur_error %r; replay_error %d row(s), sqlstate %s' % (
        time.time() - t0, r['last_sqlstate'], r['last_error'][:100], ce[:100], len(errs), errs[-1]['sqlstate']))
    pause(max(0.0, t0 + OUTAGE - time.time()))
    errs = replay_errors('leaf', since['leaf'])
    # (the first may name the batch the stop cut short; the retries fail on the connect)
    if any(e['batch_id'] is not None for e in errs[1:]):
        fail('while the branch is down, retries fail inside a batch: %s' % [e for e in errs[1:] if e['batch_id']][:3])
    times = [e['error_time'] for e in errs]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    now = replay_pid('leaf')
    if now != pid:
        fail('the leaf\'s replay worker changed while the branch was down (%s -> %s): the errors must be '
             'retried in the worker, not by restarting it:\n%s' % (pid, now, describe_workers('leaf')))
    log('  %ds down: %d failed rounds on the leaf (retry gaps %s), same worker %d' % (
        OUTAGE, len(errs), ', '.join('%.1fs' % g for g in gaps), pid))
    start_node('branch')
    t_up = time.time()
    target = sync_point('root')
    for n in SUBSCRIBERS:
        wait_for(lambda: '%s to apply root tick %d after the branch came back (at %s)' % (n, target, node_info(n)[3]),
                 lambda: (node_info(n)[3] or 0) >= target, CATCH_UP, 0.1)
        log('  %s caught up with root tick %d (the newest when the branch was up) %.1fs after the start' % (
            n, target, time.time() - t_up))
    pause(2)
    tx = LOAD.stop()
    log('  %d transactions on the root during the phase' % tx)
    verify('after %ds without the provider' % OUTAGE, since)
    wait_for(lambda: 'the leaf\'s errors to clear (worker_status %s, cur_error %r)' % (leaf_status(), leaf_cur_error()),
             lambda: leaf_cur_error() is None and not (leaf_status() or {}).get('last_error'), 15)
    if replay_pid('leaf') != pid:
        fail('the leaf\'s replay worker changed after the branch came back (%d -> %s)' % (pid, replay_pid('leaf')))


# what a replay worker may log about its replay failing here: it lost its provider
# (killed, crash-restarted, stopped) or could not connect to it meanwhile
CONNECTION_LOSS = re.compile(
    r'lost connection to the remote server|could not establish connection|no connection to the provider|'
    r'server closed the connection|terminating connection|the database system is (starting up|shutting down|'
    r'in recovery mode|not yet accepting connections)|Connection refused')
REPLAY_FAILED = re.compile(r'pgq (?:replay|copy): LOG:  pgq (?:replay|copy): '
                           r'(?:replay of queue "[^"]*"|copy of table \S+ \(queue "[^"]*"\)): (.*)')


@step('server logs: every crash is one of the SIGKILLs; no PANIC; replay failures only of lost connections')
def s_logs():
    found = []
    counts = {}
    for n in NODES:
        kills = failures = 0
        text, _ = log_lines(n)
        for line in text.splitlines():
            m = re.search(r'\(PID (\d+)\) was terminated by signal (\d+)', line)
            if m:
                if int(m.group(1)) in KILLED[n] and m.group(2) == '9':
                    kills += 1
                else:
                    found.append('%s: %s' % (n, line))
            elif re.search(r'PANIC:|terminated by (signal|exception)|exited with exit code (?![01]$)', line):
                found.append('%s: %s' % (n, line))
            # every remote failure here is a lost connection: none ignored a cancel
            if 'did not stop within' in line:
                found.append('%s: %s' % (n, line))
            m = REPLAY_FAILED.search(line)
            if m:
                failures += 1
                if not CONNECTION_LOSS.search(m.group(1)):
                    found.append('%s: %s' % (n, line))
            # a replay worker ends by an ERROR or FATAL only when the server shuts down
            if re.search(r'pgq (replay|copy): (ERROR|FATAL):', line) and \
                    not re.search(r'terminating background worker "pgq (replay|copy)" due to administrator command', line):
                found.append('%s: %s' % (n, line))
        counts[n] = (kills, failures)
    log('  crashes logged (each one a SIGKILL of this test): %s; replay failures logged (all lost '
        'connections): %s' % (', '.join('%s %d' % (n, c[0]) for n, c in counts.items()),
                              ', '.join('%s %d' % (n, c[1]) for n, c in counts.items())))
    if found:
        fail('%d bad line(s) in the server logs:\n%s' % (len(found), '\n'.join(found[:20])))


def restore_down():
    """On the way out: a node left down by a failed step is started again, so that
    run.sh's cleanup stops it like the others (the processes of a killed postmaster
    end by themselves once they see it gone)."""
    for n in sorted(DOWN):
        left = [k for k in ORPHANS.get(n, []) if alive(k) and cmdline(k).startswith('postgres')]
        if left:
            log('  %s: %d process(es) of the killed postmaster still run; killing them: %s' % (
                n, len(left), ['%d %s' % (k, cmdline(k)) for k in left]))
            for k in left:
                os.kill(k, signal.SIGKILL)
            time.sleep(0.5)
        try:
            start_node(n)
        except Exception as e:   # the cleanup must go on
            log('  could not start %s again: %s' % (n, e))


def main():
    log('RANDOM_SEED=%d; WORKER_KILLS=%d COPY_KILLS=%d PM_KILLS=%d OUTAGE_SECONDS=%d LOAD_RATE=%d '
        'ROWS=%d BULK_ROWS=%d' % (SEED, WORKER_KILLS, COPY_KILLS, PM_KILLS, OUTAGE, LOAD_RATE, ROWS, BULK_ROWS))
    try:
        return run_steps('robust scenario', 2, width=96, on_failure=lambda n: '  %s pgq workers:\n%s' % (
            n, describe_workers(n)), prelude=[('clusters, seed workload (data on the root only)', 'ok (run.sh)')])
    finally:
        restore_down()


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
