#!/usr/bin/python3
"""The sync_watermark node attribute in in-server replay (driven by tests/syncwm/run.sh).

Nodes: root; branches b1 and b2 under the root, each created with sync_watermark naming
the other; leaf under b1. A branch with sync_watermark sends the root only its own
position (the batch start), not what its subtree needs; its global watermark is not
the root's but the lowest of its own local watermark, the root's and the listed
nodes' local watermarks. So b2 keeps what the leaf would need after a failover of b1,
while the root may drop it.

Steps:
  1. CREATE EXTENSION pgq; create_root, create_branch b1 and b2 (i_sync_watermark),
     create_leaf under b1; node_attrs on b1 and b2
  2. add_table / add_seq everywhere; the replay workers copy; equal data; the root
     announces its global watermark: both branches' global watermarks follow it
  3. the leaf paused (position P), load and global-watermark announcements on the
     root: the root's global watermark goes past P (b1 sends its own position up), but
     b1's and b2's stay at or below P once b2 has read an announcement past P; the
     pgq.global-watermark events b1 copied for the leaf carry b1's watermark (at or
     below P) instead of the root's
  4. resume: the leaf catches up, equal data on every node; the root's announcements
     past P take both branches' global watermarks past P, and b1's copies follow
  5. b2's replay worker ended (a new one starts): it knows no global watermark from the
     root yet, so b2's stays where it was (LOG says why) until the root announces again
  6. b1's server stopped: b2 replicates on; its global watermark stays (LOG: b1 is not
     reachable), no replay error on b2
"""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from cascadetest import *  # noqa: E402,F401,F403  (the shared multi-node helpers)

NODES[:] = ['root', 'b1', 'b2', 'leaf']
SUBS = ['b1', 'b2', 'leaf']
WATCH.append(check_no_external_workers)
HELD = {}
ALIVE = set(NODES)


def call(node, fn, *args, **named):
    """pgq_cascade.<fn>(args, name => value) on node; returns (ret_code, ret_note)."""
    parts = ['%s'] * len(args) + ['%s => %%s' % k for k in named]
    sql = 'select * from pgq_cascade.%s(%s)' % (fn, ', '.join(parts))
    r = q(node, sql, list(args) + list(named.values()))
    log('  %s: %s -> %s' % (node, fn, r[0] if r else None))
    return r[0] if r else None


def info(node, col):
    return q1(node, 'select %s from pgq_node.get_node_info(%%s)' % col, [QUEUE])


def gw(node):
    return info(node, 'global_watermark')


def announce():
    """What the root's maintenance does when its watermark is old: set the global
    watermark from the subscribers' and send it down (pgq.global-watermark); then a
    tick, so that the event goes out at once."""
    q('root', 'select * from pgq_node.set_global_watermark(%s, null)', [QUEUE])
    q('root', 'select pgq.force_tick(%s)', [QUEUE])


def gw_events(node):
    """ev_id -> tick id of the pgq.global-watermark events in node's queue."""
    pfx = q1(node, 'select queue_data_pfx from pgq.queue where queue_name = %s', [QUEUE])
    return {r[0]: int(r[1]) for r in q(node, "select ev_id, ev_data from %s "
                                             "where ev_type = 'pgq.global-watermark'" % pfx)}


def converge(label, nodes=SUBS):
    tick = sync_point('root')
    wait_caught_up(tick, nodes, 120)
    compare_data('root', nodes, label)
    return tick


def all_ok(node):
    return table_states(node) and all(s == 'ok' for s in table_states(node).values())


def passed(node, tick):
    return (node_info(node)[3] or 0) >= tick


# ---------------------------------------------------------------- steps

@step('create the cascade: root, b1 and b2 with sync_watermark naming each other, leaf under b1')
def s_create():
    for n in NODES:
        q(n, 'create extension pgq')
    call('root', 'create_root', QUEUE, 'root', connstr('root'))
    call('b1', 'create_branch', QUEUE, 'b1', connstr('b1'), connstr('root'), i_sync_watermark='b2')
    call('b2', 'create_branch', QUEUE, 'b2', connstr('b2'), connstr('root'), i_sync_watermark='b1')
    call('leaf', 'create_leaf', QUEUE, 'leaf', connstr('leaf'), connstr('b1'))
    for n, want in (('b1', 'sync_watermark=b2'), ('b2', 'sync_watermark=b1'), ('root', None)):
        if info(n, 'node_attrs') != want:
            fail('%s: node_attrs %r, expected %r' % (n, info(n, 'node_attrs'), want))
    wait_for('every node to know all members',
             lambda: all(len(q(n, 'select 1 from pgq_node.get_queue_locations(%s)', [QUEUE])) == 4
                         for n in NODES), 30)
    period = q1('b1', "select setting from pg_settings where name = 'pgq.replay_watermark_period'")
    if period != '1':
        fail('pgq.replay_watermark_period is %r' % period)


@step('add_table / add_seq everywhere; copies; the branches follow the root\'s global watermark')
def s_tables():
    for n in NODES:
        for t in TABLES:
            call(n, 'add_table', QUEUE, t)
        for s in SEQS:
            call(n, 'add_seq', QUEUE, s)
    for n in SUBS:
        wait_for('%s: every table ok (%s)' % (n, table_states(n)), lambda: all_ok(n), 120, 0.5)
    tick = converge('after the copy')

    def followed():
        announce()
        return all((gw(n) or 0) >= tick for n in ('root', 'b1', 'b2'))
    wait_for(lambda: 'global watermarks of root, b1, b2 at or past tick %d (%s)' % (
        tick, [gw(n) for n in ('root', 'b1', 'b2')]), followed, 60, 0.5)
    log('  global watermarks: root %s, b1 %s, b2 %s (tick %d)' % (gw('root'), gw('b1'), gw('b2'), tick))


@step('leaf paused: the root\'s global watermark moves on, b1\'s and b2\'s stay at the leaf')
def s_paused():
    call('root', 'pause', QUEUE, 'leaf')
    wait_for('the leaf to acknowledge the pause',
             lambda: q1('leaf', 'select worker_paused and worker_uptodate from pgq_node.get_node_info(%s)',
                        [QUEUE]), 10)
    p = node_info('leaf')[3]
    HELD['p'] = p
    log('  the leaf stands at tick %s' % p)
    wait_pgbench('root', pgbench('root', 3))

    def root_past():
        announce()
        return (gw('root') or 0) > p
    wait_for(lambda: "the root's global watermark past the leaf's tick %d (it is %s)" % (p, gw('root')),
             root_past, 60, 0.5)
    tick = sync_point('root')
    # b2 has read an announcement past P, and had a few watermark periods since
    for i in range(3):
        wait_caught_up(tick, ['b1', 'b2'], 60)
        time.sleep(1.2)
        announce()
        tick = sync_point('root')
    wait_caught_up(tick, ['b1', 'b2'], 60)
    if node_info('leaf')[3] != p:
        fail('the paused leaf moved from tick %s to %s' % (p, node_info('leaf')[3]))
    for n in ('b1', 'b2'):
        if gw(n) is None or gw(n) > p:
            fail("%s's global watermark is %s, past the paused leaf's tick %d (root's: %s)" % (
                n, gw(n), p, gw('root')))
    log('  global watermarks: root %s, b1 %s, b2 %s; the leaf at %d' % (gw('root'), gw('b1'), gw('b2'), p))
    # the root's announcements past P, by event id, and b1's copies of them
    root_ev = {e: t for e, t in gw_events('root').items() if t > p}
    first = min(root_ev)
    copies = gw_events('b1')
    seen = [e for e in root_ev if e in copies]
    if not seen:
        fail('b1 copied none of the announcements %s' % sorted(root_ev))
    for e in seen:
        if copies[e] > p:
            fail('b1 copied announcement %d with tick %d (the root sent %d), past the leaf at %d' % (
                e, copies[e], root_ev[e], p))
    log('  b1 copied %d announcements past %d (from event %d) with its own watermark: %s' % (
        len(seen), p, first, sorted(set(copies[e] for e in seen))))


@step('resume: the leaf catches up, equal data; the branches\' global watermarks move on')
def s_resume():
    p = HELD['p']
    call('root', 'resume', QUEUE, 'leaf')
    wait_pgbench('root', pgbench('root', 3))
    tick = converge('after resume')

    def moved():
        announce()
        return all((gw(n) or 0) > p for n in ('root', 'b1', 'b2'))
    wait_for(lambda: 'global watermarks of root, b1, b2 past %d (%s)' % (
        p, [gw(n) for n in ('root', 'b1', 'b2')]), moved, 60, 0.5)
    log('  global watermarks: root %s, b1 %s, b2 %s (tick %d)' % (gw('root'), gw('b1'), gw('b2'), tick))
    wait_for('b1 to copy an announcement past %d' % p,
             lambda: announce() or any(t > p for t in gw_events('b1').values()), 60, 0.5)
    converge('at the end')


def log_has(node, start, text):
    return text in log_lines(node, start)[0]


@step('b2\'s worker restarted: its global watermark is kept until the root announces again')
def s_restart():
    before = gw('b2')
    start = log_size('b2')
    old = replay_pid('b2')
    if not old or not q1('b2', 'select pg_terminate_backend(%s)', [old]):
        fail('could not end the replay worker of b2 (pid %s)' % old)
    wait_for('a new replay worker on b2', lambda: replay_pid('b2') not in (None, old), 60)
    wait_pgbench('root', pgbench('root', 2))
    kept = 'global watermark kept at %s: no pgq.global-watermark event received' % before

    def said():
        sync_point('root')
        return log_has('b2', start, kept)
    wait_for('b2 to log "%s"' % kept, said, 60, 0.5)
    if gw('b2') != before:
        fail("b2's global watermark moved from %s to %s without an announcement" % (before, gw('b2')))

    def moved():
        announce()
        return (gw('b2') or 0) > before
    wait_for(lambda: "b2's global watermark past %s after announcements (%s)" % (before, gw('b2')),
             moved, 60, 0.5)
    log('  b2 kept %s until the next announcement, then %s' % (before, gw('b2')))


@step('b1 stopped: b2 replicates on and keeps its global watermark (b1 unreachable)')
def s_peer_down():
    start = log_size('b2')
    subprocess.run(['sudo', '-u', 'postgres', os.path.join(PG_BIN, 'pg_ctl'), '-D', DIRS['b1'],
                    '-m', 'fast', '-w', 'stop'], check=True, stdout=subprocess.DEVNULL)
    ALIVE.discard('b1')
    wait_pgbench('root', pgbench('root', 2))
    converge('with b1 down', ['b2'])
    before = gw('b2')

    def said():
        announce()
        sync_point('root')
        return log_has('b2', start, 'global watermark kept at %s: node b1 is not reachable' % before)
    wait_for('b2 to log that b1 is not reachable', said, 60, 0.5)
    if gw('b2') != before:
        fail("b2's global watermark moved from %s to %s with b1 unreachable" % (before, gw('b2')))
    errs = consumer_errors('b2')
    if errs:
        fail('b2: %s' % errs)
    log('  b2 replicates, its global watermark stays at %s (root: %s)' % (before, gw('root')))


def main():
    return run_steps('syncwm scenario', 1, width=90,
                     on_failure=lambda n: '  %s pgq workers:\n%s' % (n, describe_workers(n)) if n in ALIVE else '')


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
