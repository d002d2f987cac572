#!/usr/bin/python3
"""The merge scenario: londiste merge-leaf nodes (driven by tests/merge/run.sh).

Four clusters, one per node. part1 and part2 are roots of their own queues (part1_q,
part2_q), each with a disjoint part of the rows of digoal.user_info and
digoal.user_session (part1 the odd user ids, part2 the even ones). full1 is the root of
the queue `combined` and holds two merge leaves, one per part queue (create-leaf
--merge=combined): they apply their part's changes to full1's tables and copy them into
`combined`. full2 is a branch of `combined` under full1 and holds two merge leaves of
the part queues as well; those apply nothing (the data comes through `combined`), their
position in the part queue follows the pgq.tick-id events of `combined`.

MERGE_REPLAY (run.sh sets it): `python` runs one Python `londiste <ini> worker` per node
and queue with in-server replay off; `server` (the default) has in-server replay on and
no londiste worker and no pgqd anywhere (checked on every wait).

Steps:
  1. the parts' rows; create-root part1/part2/full1, create-leaf --merge=combined on
     full1 and full2, create-branch full2; node info (type, provider, combined queue and
     type); every node but the roots replays (its completed tick moves); `members` and
     `status` of every node list all nodes of its queue
  2. add-table on the part roots, add-table --merge-all on the merge leaves of full1:
     both parts copy into the same tables (copy roles), all ok; full1 = part1 + part2
     (count + hash sum per table), primary keys in place; then the same on full2 (its
     combined branch copies from full1): full2 = full1 = part1 + part2
  3. load on part1 and part2 at once (keys of each part only); caught up: full1 = full2
     = part1 + part2; the data events of `combined` are exactly those of the part
     queues
  4. the merge leaves of full2 stand where full1's stand in their part queue (never
     ahead of them while they move)
  5. kill -9 of full1's merge leaf replay under load, several times (server: its `pgq
     replay` backend; python: its worker process): nothing lost or doubled, one
     pgq.tick-id event per part tick in `combined`, in tick order, the last one at the
     merge leaf's position; data events of `combined` = those of the part queues
  6. `londiste compare` of full2's combined branch against full1 (a merge leaf has no
     provider holding the same rows: its compare is skipped, the reason is logged)
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

MODE = os.environ.get('MERGE_REPLAY', 'server')
if MODE not in ('python', 'server'):
    print('merge: MERGE_REPLAY must be python or server, not %r' % MODE, file=sys.stderr)
    sys.exit(2)
PYTHON = MODE == 'python'

NODES[:] = ['part1', 'part2', 'full1', 'full2']     # the clusters
TABLES[:] = ['digoal.user_info', 'digoal.user_session']
PARTS = ['part1', 'part2']
FULLS = ['full1', 'full2']
COMBINED = 'combined'
PQ = {'part1': 'part1_q', 'part2': 'part2_q'}
PARITY = {'part1': 1, 'part2': 0}                   # userid % 2 of each part's rows
KILLS = int(os.environ.get('MERGE_KILLS', '4'))
SEED = os.environ.get('MERGE_SEED', str(os.getpid()))   # the kills' timing
RNG = random.Random(SEED)

# the londiste nodes: ini name (= node name) -> (cluster, queue)
INIS = {
    'part1': ('part1', 'part1_q'),
    'part2': ('part2', 'part2_q'),
    'full1': ('full1', COMBINED),
    'full2': ('full2', COMBINED),
}
for _p in PARTS:
    for _f in FULLS:
        INIS['%s_%s' % (_p, _f)] = (_f, PQ[_p])
ROOTS = ['part1', 'part2', 'full1']


def leaf(part, full):
    """The ini / node name of the merge leaf of part's queue on cluster full."""
    return '%s_%s' % (part, full)


def queues_on(cluster):
    return [qn for c, qn in INIS.values() if c == cluster]


def check_mode():
    for n in NODES:
        v = q1(n, "select current_setting('pgq.replay', true)")
        want = 'off' if PYTHON else 'on'
        if v != want:
            fail('%s: pgq.replay is %r, this mode (%s) needs %r' % (n, v, MODE, want))


# ---------------------------------------------------------------- workers (python mode)

KILLED = set()          # worker processes this scenario SIGKILLed


def start_worker(name):
    logf = open(os.path.join(WORK, name + '.worker.out'), 'a')
    p = subprocess.Popen(LONDISTE + [ini(name), 'worker'], stdout=logf, stderr=subprocess.STDOUT,
                         cwd=WORK)
    remember_pid(p.pid)
    PROCS['worker_' + name] = p
    return p


def check_workers():
    for key, p in PROCS.items():
        if key.startswith('worker_') and p.pid not in KILLED and p.poll() is not None:
            name = key[len('worker_'):]
            fail('londiste worker %s exited with %s; log tail:\n%s' % (
                name, p.returncode, tail(os.path.join(WORK, name + '.log'))))


if PYTHON:
    WATCH.append(check_workers)
else:
    WATCH.append(check_no_external_workers)


def start_workers(names):
    if PYTHON:
        for n in names:
            start_worker(n)


# ---------------------------------------------------------------- in-server workers

def replay_pid_of(cluster, queue):
    """The pid of the `pgq replay` backend of cluster that replays queue, as both
    pgq.worker_status() (object = the queue) and pg_stat_activity show it; else None."""
    rows = [r for r in replay_rows(cluster) if r.get('object') == queue and r.get('pid')]
    backs = [b[0] for b in replay_backends(cluster)]
    if len(rows) != 1 or rows[0]['pid'] not in backs:
        return None
    return rows[0]['pid']


def replay_state(cluster, queue):
    """What cluster tells about the replay of queue (for failure messages)."""
    errs = [e for e in consumer_errors_of(cluster) if e[0] == queue]
    out = ['consumer error: %s' % e[2] for e in errs]
    if not PYTHON:
        rows = [r for r in replay_rows(cluster) if r.get('object') == queue]
        out += ['worker_status: pid %s, last error %s %s' % (r.get('pid'), r.get('last_sqlstate'),
                                                            r.get('last_error')) for r in rows]
        if not rows:
            out.append('no replay row in pgq.worker_status()')
    return '; '.join(out) or 'no error recorded'


def worker_pid(name):
    """The process that replays merge leaf `name` now (server: its backend, python: its
    londiste worker), or None."""
    cluster, queue = INIS[name]
    if PYTHON:
        p = PROCS.get('worker_' + name)
        return p.pid if p and p.poll() is None else None
    return replay_pid_of(cluster, queue)


def client_ports(pid, cluster):
    """The local ports of process pid's TCP connections to cluster (ss -tnp)."""
    r = subprocess.run(['ss', '-tnpH', 'dst', '127.0.0.1:%s' % PORTS[cluster]],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    ports = []
    for line in r.stdout.decode(errors='replace').splitlines():
        f = line.split()
        if len(f) >= 6 and ('pid=%d,' % pid) in line:
            ports.append(int(f[3].rsplit(':', 1)[1]))
    return ports


def in_transaction(name, pid):
    """Whether the replay of merge leaf `name` (process pid) has a transaction open on
    its cluster now (server: its backend; python: a session of the worker process)."""
    cluster = INIS[name][0]
    if PYTHON:
        ports = client_ports(pid, cluster)
        if not ports:
            return False
        return bool(q1(cluster, 'select count(*) from pg_stat_activity where client_port = any(%s) '
                                'and xact_start is not null', [ports]))
    return bool(q1(cluster, 'select count(*) from pg_stat_activity where pid = %s and xact_start is not null',
                   [pid]))


def aim(name, pid, patience=1.5):
    """Wait (at most patience seconds) until the replay of `name` is inside a
    transaction, so that the kill lands there; whether it did."""
    end = time.time() + patience
    while time.time() < end:
        watch()
        try:
            if in_transaction(name, pid):
                return True
        except psycopg2.Error:
            return False
        time.sleep(0.005)
    return False


# ---------------------------------------------------------------- SQL helpers

def consumer_errors_of(cluster):
    out = []
    for qn in queues_on(cluster):
        try:
            out += [(qn,) + tuple(r) for r in q(
                cluster, 'select consumer_name, cur_error from pgq_node.get_consumer_info(%s) '
                         'where cur_error is not null', [qn])]
        except psycopg2.Error:
            pass
    return out


def node_row(cluster, queue):
    r = qdict(cluster, 'select * from pgq_node.get_node_info(%s)', [queue])
    return r[0] if r else {}


def leaf_tick(part, full):
    """The completed tick of the merge leaf of part's queue on full."""
    return node_info(full, PQ[part])[3]


def queue_config(cluster, queue, idle='1 second'):
    """Tick at least every 200 ms while events come and every `idle` when none come (as
    one would tune pgqd), so that the waits for ticks below are short."""
    q(cluster, "select pgq.set_queue_config(%s, 'ticker_max_lag', '200 milliseconds'), "
               "pgq.set_queue_config(%s, 'ticker_idle_period', %s)", [queue, queue, idle])


def event_table(cluster, queue):
    pfx = q1(cluster, 'select queue_data_pfx from pgq.queue where queue_name = %s', [queue])
    if not pfx:
        fail('%s: no queue %s' % (cluster, queue))
    return pfx


DATA_EVENT = "left(ev_type, 4) <> 'pgq.' and left(ev_type, 9) <> 'londiste.'"


def data_events(cluster, queue):
    """table -> (events, hash sum of type + data) of the data events of queue on
    cluster (every event table of the queue: nothing is rotated away in this run)."""
    return {r[0]: (r[1], r[2]) for r in q(
        cluster, "select ev_extra1, count(*), coalesce(sum(hashtext(ev_type || '/' || "
                 "coalesce(ev_data, ''))::bigint), 0) from %s where %s group by 1"
                 % (event_table(cluster, queue), DATA_EVENT))}


def check_rotation_off():
    """The event checks read whole queues: no event table of them may have been
    rotated away (the queues' rotation_period is the default, hours)."""
    for c, qn in (('part1', 'part1_q'), ('part2', 'part2_q'), ('full1', COMBINED)):
        rot = q1(c, 'select extract(epoch from queue_rotation_period) from pgq.queue '
                    'where queue_name = %s', [qn])
        if rot is None or rot < 3600:
            fail('%s: rotation_period of %s is %s s: the event checks need the whole queue' % (c, qn, rot))


def check_combined_events(label):
    """The data events of `combined` on full1 are those of the two part queues: the
    same number per table and the same hash sum (each event copied once, none lost);
    no cascade event of a part queue leaked into `combined` but pgq.tick-id."""
    want = {}
    for p in PARTS:
        for t, (n, h) in data_events(p, PQ[p]).items():
            a = want.get(t, (0, 0))
            want[t] = (a[0] + n, a[1] + h)
    got = data_events('full1', COMBINED)
    if got != want:
        fail('%s: data events of %s on full1 %s, the part queues have %s' % (label, COMBINED, got, want))
    leaked = q('full1', "select ev_type, ev_extra1, count(*) from %s where left(ev_type, 4) = 'pgq.' "
                        "and ev_type <> 'pgq.tick-id' and ev_extra1 = any(%%s) group by 1, 2"
                        % event_table('full1', COMBINED), [list(PQ.values())])
    if leaked:
        fail('%s: cascade events of the part queues in %s: %s' % (label, COMBINED, leaked))
    log('  %s: %s on full1 has the part queues\' data events, once each: %s' % (
        label, COMBINED, ', '.join('%s %d' % (t.split('.')[1], v[0]) for t, v in sorted(want.items()))))


def check_tick_events(label):
    """One pgq.tick-id event per (part queue, part tick) in `combined` on full1, in
    tick order by event id, one at the merge leaf's completed tick and none past it
    (the part roots tick on while idle: the position is read before and after the
    events); every part tick it names is a tick of that part queue."""
    check_rotation_off()
    pos0 = {p: leaf_tick(p, 'full1') for p in PARTS}
    rows = q('full1', "select ev_extra1, ev_data::bigint, ev_id from %s where ev_type = 'pgq.tick-id' "
                      "order by ev_id" % event_table('full1', COMBINED))
    for p in PARTS:
        ticks = [r[1] for r in rows if r[0] == PQ[p]]
        if not ticks:
            fail('%s: no pgq.tick-id event of %s in %s' % (label, PQ[p], COMBINED))
        seen, dups = set(), set()
        for t in ticks:
            (dups if t in seen else seen).add(t)
        if dups:
            fail('%s: %s has pgq.tick-id events of %s ticks %s more than once (%d events, %d ticks)' % (
                label, COMBINED, PQ[p], sorted(dups)[:10], len(ticks), len(seen)))
        back = [(a, b) for a, b in zip(ticks, ticks[1:]) if b <= a]
        if back:
            fail('%s: pgq.tick-id events of %s not in tick order: %s' % (label, PQ[p], back[:5]))
        known = set(r[0] for r in q(p, 'select t.tick_id from pgq.tick t join pgq.queue q on '
                                       'q.queue_id = t.tick_queue where q.queue_name = %s', [PQ[p]]))
        unknown = sorted(seen - known)
        if unknown:
            fail('%s: pgq.tick-id events name ticks %s that %s does not have' % (label, unknown[:10], PQ[p]))
        pos = leaf_tick(p, 'full1')
        if pos0[p] not in seen or ticks[-1] > pos:
            fail('%s: the merge leaf of %s on full1 completed tick %s (then %s), the pgq.tick-id events '
                 'of it in %s end with %s' % (label, PQ[p], pos0[p], pos, COMBINED, ticks[-5:]))
        log('  %s: %d pgq.tick-id events of %s, each tick once, in order, the last at %d '
            '(the merge leaf\'s position)' % (label, len(ticks), PQ[p], ticks[-1]))


def check_union(label):
    """full1 and full2 hold exactly the rows of part1 and part2 (which are disjoint):
    count and hash sum per table; on a difference, the first keys that differ."""
    want = {t: (0, 0) for t in TABLES}
    for p in PARTS:
        for t in TABLES:
            wrong = q1(p, 'select count(*) from only %s where mod(userid, 2) <> %%s' % t, [PARITY[p]])
            if wrong:
                fail('%s: %s has %d rows of the other part in %s' % (label, p, wrong, t))
        for t, (n, h) in checksums(p).items():
            want[t] = (want[t][0] + n, want[t][1] + h)
    for f in FULLS:
        got = checksums(f)
        for t in TABLES:
            if got[t] != want[t]:
                fail('%s: %s on %s has %d rows, hash sum %d; part1 + part2 have %d rows, hash sum %d; %s' % (
                    label, t, f, got[t][0], got[t][1], want[t][0], want[t][1], row_diff(f, t)))
    log('  %s: full1 = full2 = part1 + part2: %s' % (
        label, ', '.join('%s %d rows' % (t.split('.')[1], want[t][0]) for t in TABLES)))


def row_diff(full, table):
    def rows(c):
        return dict(q(c, 'select userid, hashtext(x::text) from only %s x' % table))
    union = rows('part1')
    union.update(rows('part2'))
    have = rows(full)
    missing = sorted(k for k in union if k not in have)
    extra = sorted(k for k in have if k not in union)
    changed = sorted(k for k in union if k in have and have[k] != union[k])
    return 'missing userids %s, extra %s, different %s' % (missing[:8], extra[:8], changed[:8])


def check_keys(label):
    for f in FULLS:
        for t in TABLES:
            if not q1(f, 'select count(*) from pg_index where indrelid = %s::regclass and indisprimary', [t]):
                fail('%s: %s on %s has no primary key' % (label, t, f))
            bad = q1(f, 'select count(*) from pg_index where indrelid = %s::regclass and not indisvalid', [t])
            if bad:
                fail('%s: %s on %s has %d invalid indexes' % (label, t, f, bad))


def no_consumer_errors(label):
    for c in NODES:
        errs = consumer_errors_of(c)
        if errs:
            fail('%s: %s: consumer errors %s' % (label, c, errs))


def converge(label):
    """Ticks on the part roots after everything so far; full1's merge leaves past
    them; a tick of `combined` on full1 after that; full2's combined branch past it;
    then the data checks."""
    for p in PARTS:
        t = sync_point(p, PQ[p])
        wait_caught_up(t, ['full1'], 120, PQ[p])
    c = sync_point('full1', COMBINED)
    wait_caught_up(c, ['full2'], 120, COMBINED)
    check_union(label)
    no_consumer_errors(label)


# ---------------------------------------------------------------- load

PGBENCH_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'part.pgbench')


def part_load(part, seconds, clients=2):
    """pgbench of part.pgbench on part's root: changes of that part's keys only."""
    out = open(os.path.join(WORK, 'pgbench-%s.out' % part), 'a')
    p = subprocess.Popen([os.path.join(PG_BIN, 'pgbench'), '-n', '-c', str(clients), '-j', str(clients),
                          '-T', str(seconds), '-h', '127.0.0.1', '-p', PORTS[part], '-U', 'postgres',
                          '-D', 'parity=%d' % PARITY[part], '-D', 'imax=%d' % (ROWS * 3 // 4),
                          '-f', PGBENCH_SCRIPT, 'digoal'],
                         stdout=out, stderr=subprocess.STDOUT)
    remember_pid(p.pid)
    PROCS['pgbench_' + part] = p
    return p


def load(seconds):
    return {p: part_load(p, seconds) for p in PARTS}


def wait_load(procs, seconds):
    n = {p: wait_pgbench(p, pr, seconds) for p, pr in procs.items()}
    log('  load: %s' % ', '.join('%s %d transactions' % (p, c) for p, c in n.items()))
    return n


# ---------------------------------------------------------------- steps

def expect_node(cluster, queue, typ, provider, combined=None, ctype=None):
    r = node_row(cluster, queue)
    got = (r.get('node_type'), r.get('provider_node'), r.get('combined_queue'), r.get('combined_type'))
    if got != (typ, provider, combined, ctype):
        fail('%s: node of %s is (type, provider, combined queue, combined type) %s, expected %s' % (
            cluster, queue, got, (typ, provider, combined, ctype)))


@step('part rows; create-root part1/part2/full1, merge leaves on full1, branch + merge leaves on full2; '
      'status, members')
def s_setup():
    check_mode()
    # part2 gets the seed rows too; then each part keeps its own half
    r = subprocess.run([os.path.join(PG_BIN, 'psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-v',
                        'rows=%d' % ROWS, '-h', '127.0.0.1', '-p', PORTS['part2'], '-U', 'postgres',
                        '-d', 'digoal', '-f', os.path.join(WORKLOAD_DIR, 'seed.sql')],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode:
        fail('seed.sql on part2: %s' % r.stdout.decode(errors='replace'))
    for p in PARTS:
        for t in ('digoal.user_session', 'digoal.user_info'):
            q(p, 'delete from %s where mod(userid, 2) <> %%s' % t, [PARITY[p]])
    for f in FULLS:
        for t in TABLES:
            if q1(f, 'select count(*) from %s' % t):
                fail('%s: %s is not empty before the setup' % (f, t))
    log('  part1: %s; part2: %s' % (checksums('part1'), checksums('part2')))
    for name, (cluster, queue) in INIS.items():
        write_ini(name, db=cluster, queue=queue)
    for p in PARTS:
        londiste(p, 'create-root', p, connstr(p))
        queue_config(p, PQ[p])
    londiste('full1', 'create-root', 'full1', connstr('full1'))
    queue_config('full1', COMBINED)
    for p in PARTS:
        n = leaf(p, 'full1')
        londiste(n, 'create-leaf', n, connstr('full1'), '--provider=' + connstr(p), '--merge=' + COMBINED)
    londiste('full2', 'create-branch', 'full2', connstr('full2'), '--provider=' + connstr('full1'))
    for p in PARTS:
        n = leaf(p, 'full2')
        londiste(n, 'create-leaf', n, connstr('full2'), '--provider=' + connstr(p), '--merge=' + COMBINED)
    for p in PARTS:
        expect_node(p, PQ[p], 'root', p)
        expect_node('full1', PQ[p], 'leaf', p, COMBINED, 'root')
        expect_node('full2', PQ[p], 'leaf', p, COMBINED, 'branch')
    expect_node('full1', COMBINED, 'root', 'full1')
    expect_node('full2', COMBINED, 'branch', 'full1')
    before = {n: node_info(c, qn)[3] for n, (c, qn) in INIS.items() if n not in ROOTS}
    start_workers(INIS)
    # every node but the roots replays: its completed tick moves (full2's merge leaves
    # through the pgq.tick-id events its combined branch applies)
    for n, (c, qn) in INIS.items():
        if n in ROOTS:
            continue
        wait_for(lambda: '%s (%s on %s) to replay: its completed tick stays at %s; %s' % (
            n, qn, c, node_info(c, qn)[3], replay_state(c, qn)),
            lambda: (node_info(c, qn)[3] or 0) > (before[n] or 0), 30, 0.2)
    log('  every node replays: completed ticks %s' % ', '.join(
        '%s %s -> %s' % (n, before[n], node_info(c, qn)[3]) for n, (c, qn) in INIS.items() if n not in ROOTS))
    members = {PQ[p]: {p, leaf(p, 'full1'), leaf(p, 'full2')} for p in PARTS}
    members[COMBINED] = {'full1', 'full2'}
    # a node learns the members created after it from the pgq.location-info events
    # its replay applies
    for name, (cluster, queue) in INIS.items():
        holder = {}

        def listed():
            out = holder['out'] = londiste(name, 'members')
            return set(re.findall(r'^(\S+)\s+(?:False|True)\s', out, re.M)) == members[queue]
        wait_for(lambda: '`londiste %s.ini members` to list %s:\n%s' % (
            name, sorted(members[queue]), holder.get('out')), listed, 30, 0.5)
    status = {name: wait_status(name, members[queue]) for name, (cluster, queue) in INIS.items()}
    log('  nodes: %s; status and members of each list its queue\'s nodes' % ', '.join(
        '%s (%s on %s)' % (n, qn, c) for n, (c, qn) in INIS.items()))
    for name in ('part1_full1', 'full2'):
        log('  status of %s:\n%s' % (name, '\n'.join('      ' + line for line in status[name].splitlines())))


def wait_status(name, nodes):
    """`londiste <name>.ini status` shows every node of the queue; returns its output."""
    holder = {}

    def good():
        out = londiste(name, 'status')
        holder['out'] = out
        return all(re.search(r'(^|\s)%s\b' % re.escape(n), out) for n in nodes) and 'ERR' not in out
    wait_for(lambda: '`londiste %s.ini status` to show %s without errors:\n%s' % (
        name, sorted(nodes), holder.get('out')), good, 30, 1)
    return holder['out']


def known_tables(cluster, queue):
    return [r[0] for r in q(cluster, 'select table_name from londiste.get_table_list(%s)', [queue])]


def all_ok(cluster, queue):
    st = table_states(cluster, queue)
    return set(st) == set(TABLES) and all(s == 'ok' for s in st.values())


def states(cluster):
    return {qn: table_states(cluster, qn) for qn in queues_on(cluster)}


@step('initial copy: add-table on the roots, --merge-all on the merge leaves; all ok on full1, then '
      'on full2; full1 = full2 = part1 + part2')
def s_copy():
    for p in PARTS:
        londiste(p, 'add-table', *TABLES)
    # the replay of full1's merge leaves registers the part roots' tables (their
    # londiste.add-table events); only then can one add-table --merge-all take both part
    # queues. (full2's merge leaves skip their batches: add-table registers the tables
    # there, from the provider's list.)
    for p in PARTS:
        wait_for(lambda: 'full1: the merge leaf of %s to know the tables %s of its part root (it knows %s)' % (
            PQ[p], TABLES, known_tables('full1', PQ[p])),
            lambda: set(TABLES) <= set(known_tables('full1', PQ[p])), 60, 0.2)
    t0 = time.time()
    londiste(leaf('part1', 'full1'), 'add-table', '--merge-all', *TABLES)
    # --merge-all registered the tables in the other part queue and in `combined` too
    for qn in queues_on('full1'):
        if set(table_states('full1', qn)) != set(TABLES):
            fail('full1: local tables of %s after add-table --merge-all: %s' % (qn, table_states('full1', qn)))
    # the same on the other merge leaf: they are there already
    out = londiste(leaf('part2', 'full1'), 'add-table', '--merge-all', *TABLES)
    if any('%s already processed' % t not in out for t in TABLES):
        fail('add-table --merge-all on %s after %s: expected "<table> already processed" for each table:\n%s' % (
            leaf('part2', 'full1'), leaf('part1', 'full1'), out))
    if table_states('full1', COMBINED) != {t: 'ok' for t in TABLES}:
        fail('full1: tables of the combined root %s, expected all ok' % table_states('full1', COMBINED))
    roles = set()

    def copied():
        # the copy roles the part queues' copies took (logged: which ones a run
        # sees depends on timing)
        for qn in PQ.values():
            roles.update('%s:%s' % (qn, r[0]) for r in q(
                'full1', 'select copy_role from londiste.get_table_list(%s) where copy_role is not null', [qn]))
        return all(all_ok('full1', qn) for qn in PQ.values())
    wait_for(lambda: 'full1: all tables ok (%s)' % states('full1'), copied, 180, 0.2)
    log('  full1: both part queues copied, all ok %.1fs after add-table; copy roles seen: %s' % (
        time.time() - t0, ', '.join(sorted(roles)) or 'none'))
    # the combined root's triggers: one row + one truncate trigger per table
    trg = q1('full1', "select count(*) from pg_trigger where tgname like %s", ['\\_londiste\\_' + COMBINED + '%'])
    if trg != 2 * len(TABLES):
        fail('full1: %s londiste triggers of %s, expected %d' % (trg, COMBINED, 2 * len(TABLES)))
    t = sync_point('full1', COMBINED)
    wait_caught_up(t, ['full2'], 60, COMBINED)
    got = checksums('full1')
    want = {t_: tuple(map(sum, zip(*(checksums(p)[t_] for p in PARTS)))) for t_ in TABLES}
    if got != want:
        fail('after the copy on full1: full1 %s, part1 + part2 %s; %s' % (
            got, want, '; '.join('%s: %s' % (t_, row_diff('full1', t_)) for t_ in TABLES if got[t_] != want[t_])))
    log('  full1 = part1 + part2: %s' % got)
    t0 = time.time()
    for p in PARTS:
        londiste(leaf(p, 'full2'), 'add-table', '--merge-all', *TABLES)
    for p in PARTS:
        st = table_states('full2', PQ[p])
        if st != {t_: 'ok' for t_ in TABLES}:
            fail('full2: tables of the merge leaf of %s are %s: under a combined branch they need no '
                 'copy (ok at once)' % (PQ[p], st))
    if set(table_states('full2', COMBINED)) != set(TABLES):
        fail('full2: add-table --merge-all did not register the tables in %s: %s' % (
            COMBINED, table_states('full2', COMBINED)))
    wait_for(lambda: 'full2: all tables of %s ok (%s)' % (COMBINED, states('full2')),
             lambda: all_ok('full2', COMBINED), 180, 0.5)
    log('  full2: the combined branch copied from full1, all ok %.1fs after add-table' % (time.time() - t0))
    converge('after the initial copy')
    check_keys('after the initial copy')


@step('load on part1 and part2 at once; caught up: full1 = full2 = part1 + part2; combined has '
      'the parts\' data events')
def s_load():
    wait_load(load(LOAD_SECONDS), LOAD_SECONDS)
    converge('after the load')
    check_rotation_off()
    check_combined_events('after the load')


@step("full2's merge leaves stand where full1's stand in the part queues (never ahead)")
def s_positions():
    # no idle ticks in the part queues for a while: once both are past the last
    # tick, they stand still and must be equal
    for p in PARTS:
        queue_config(p, PQ[p], '1 hour')
    try:
        ticks = {p: sync_point(p, PQ[p]) for p in PARTS}
        ahead = []

        def same():
            ok = True
            for p in PARTS:
                b = leaf_tick(p, 'full2')       # full2 first: full1's only grows
                a = leaf_tick(p, 'full1')
                if b is not None and a is not None and b > a:
                    ahead.append((p, a, b))
                ok = ok and a is not None and a >= ticks[p] and b == a
            if ahead:
                fail("full2's merge leaf ahead of full1's (part, full1 tick, full2 tick): %s" % ahead[:5])
            return ok
        wait_for(lambda: "full2's merge leaves at full1's position past ticks %s: %s" % (
            ticks, {p: (leaf_tick(p, 'full1'), leaf_tick(p, 'full2')) for p in PARTS}), same, 60, 0.2)
        for p in PARTS:
            # the provider's view: full2's leaf has finished its batches up to there
            def finished():
                return q1(p, 'select last_tick from pgq.get_consumer_info(%s, %s)',
                          [PQ[p], 'worker_' + leaf(p, 'full2')]) == leaf_tick(p, 'full1')
            wait_for(lambda: "%s: full2's merge leaf to finish its batches up to tick %s on the provider "
                             "(consumer info %s)" % (p, leaf_tick(p, 'full1'), qdict(
                                 p, 'select * from pgq.get_consumer_info(%s)', [PQ[p]])), finished, 60, 0.2)
        log('  part ticks %s: merge leaves on full1 and full2 at %s' % (
            ticks, {PQ[p]: leaf_tick(p, 'full1') for p in PARTS}))
    finally:
        for p in PARTS:
            queue_config(p, PQ[p])


@step("kill -9 of full1's merge leaf replay under load, %d times: nothing lost or doubled, each part "
      "tick once in combined" % KILLS)
def s_kill():
    seconds = max(LOAD_SECONDS, 2 * KILLS + 2)
    procs = load(seconds)
    t_end = time.time() + seconds
    back, hits = [], 0
    for i in range(KILLS):
        p = PARTS[i % 2]
        name = leaf(p, 'full1')
        pid = wait_for('a replay of %s on full1' % name, lambda: worker_pid(name), 60, 0.1)
        pause = RNG.uniform(0.3, 1.2)
        end = time.time() + pause
        while time.time() < end:
            watch()
            time.sleep(0.05)
        pid = wait_for('a replay of %s on full1' % name, lambda: worker_pid(name), 60, 0.1)
        hit = aim(name, pid)
        hits += hit
        KILLED.add(pid)
        os.kill(pid, signal.SIGKILL)
        t = time.time()
        if PYTHON:
            try:
                PROCS['worker_' + name].wait(10)
            except subprocess.TimeoutExpired:
                fail('worker %s (pid %d) did not die of SIGKILL' % (name, pid))
            start_worker(name)
        new = wait_for('the replay of %s on full1 back after kill %d of pid %d' % (name, i + 1, pid),
                       lambda: (lambda n: n if n and n != pid else None)(worker_pid(name)), 60, 0.1)
        back.append(time.time() - t)
        log('  kill %d: %s pid %d (%s) -> pid %d after %.1fs' % (
            i + 1, name, pid, 'in a transaction' if hit else 'between transactions', new, back[-1]))
    log('  %d kills, %d of them in a transaction of the replay%s' % (
        KILLS, hits, '' if time.time() <= t_end else '; the kills took longer than the load'))
    wait_load(procs, seconds)
    converge('after %d kills' % KILLS)
    check_combined_events('after %d kills' % KILLS)
    check_tick_events('after %d kills' % KILLS)


@step('`londiste compare`: full2\'s combined branch against full1')
def s_compare():
    converge('before compare')
    out = londiste('full2', 'compare', timeout=180)
    pairs = re.findall(r'srcdb: (\d+ rows, checksum=-?\d+)\s.*?dstdb: (\d+ rows, checksum=-?\d+)', out, re.S)
    if len(pairs) != len(TABLES) or any(a != b for a, b in pairs):
        fail('compare on full2: %s\n%s' % (pairs, out))
    if 'do not match' in out:
        fail('compare on full2 reports a mismatch:\n%s' % out)
    log('  compare on full2 (%s under full1): %d tables equal: %s' % (COMBINED, len(pairs), pairs))
    log('  compare on a merge leaf: skipped: its provider (a part root) holds one part of the rows, '
        'the leaf\'s tables the union of all parts, so the counts cannot match')
    no_consumer_errors('after compare')


def on_failure(cluster):
    out = []
    for qn in queues_on(cluster):
        try:
            out.append('  %s %s: node %s; tables %s' % (cluster, qn, node_info(cluster, qn),
                                                        table_states(cluster, qn)))
        except (psycopg2.Error, IndexError) as e:
            out.append('  %s %s: (%s)' % (cluster, qn, str(e).strip()))
    for e in consumer_errors_of(cluster):
        out.append('  %s: consumer error %s' % (cluster, e))
    if PYTHON:
        for name, (c, qn) in INIS.items():
            if c == cluster:
                lines = [line for line in tail(os.path.join(WORK, name + '.log'), 400).splitlines()
                         if '{count: ' not in line]
                out.append('  log of %s:\n%s' % (name, '\n'.join(lines[-12:])))
    else:
        out.append('  %s pgq workers:\n%s' % (cluster, describe_workers(cluster)))
    return '\n'.join(out)


def main():
    log('merge layer, MERGE_REPLAY=%s, MERGE_SEED=%s' % (MODE, SEED))
    return run_steps('merge scenario (MERGE_REPLAY=%s)' % MODE, 1, width=100, on_failure=on_failure)


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
