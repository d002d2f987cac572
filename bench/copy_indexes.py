#!/usr/bin/python3
"""The measurement of bench/copy_indexes.sh (see there)."""
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'lib'))
from cascadetest import *  # noqa: E402,F401,F403

ROWS_ = int(os.environ.get('BENCH_ROWS', '1000000'))
RUNS = int(os.environ.get('RUNS', '3'))
T = 'bench.t'
COPY_LINE = re.compile(r'copied table bench\.t: (\d+) rows, (\d+) bytes in (\d+) ms')
DDL = ['create schema bench',
       'create table bench.t (id bigint primary key, k int, email text, payload text)',
       'create index t_k on bench.t (k)',
       'create index t_email on bench.t (email)']


def setup():
    for n in ('root', 'leaf'):
        q(n, 'create extension if not exists pgq')
        for s in DDL:
            q(n, s)
    q('root', "insert into bench.t select i, (random() * 1e9)::int, md5(random()::text) || '@example.org', "
              "repeat('x', 60) from generate_series(1, %s) i", [ROWS_])
    q('root', 'vacuum analyze bench.t')
    q('root', "select * from pgq_cascade.create_root(%s, 'root', %s)", [QUEUE, connstr('root')])
    q('leaf', "select * from pgq_cascade.create_leaf(%s, 'leaf', %s, %s)",
      [QUEUE, connstr('leaf'), connstr('root')])
    q('root', 'select * from pgq_cascade.add_table(%s, %s)', [QUEUE, T])


def copy_once(keep):
    if T in table_states('leaf'):
        q('leaf', 'select * from pgq_cascade.remove_table(%s, %s)', [QUEUE, T])
    q('leaf', 'truncate %s' % T)
    q('leaf', 'checkpoint')
    off = log_size('leaf')
    q('leaf', 'select * from pgq_cascade.add_table(%s, %s, i_skip_truncate => %s)', [QUEUE, T, keep])
    wait_for('bench.t ok on the leaf', lambda: table_states('leaf').get(T) == 'ok', 600, 0.2)
    # the worker logs the copy just after its commit
    m = wait_for('the copy line in the leaf log', lambda: COPY_LINE.search(log_lines('leaf', off)[0]), 30)
    text, _ = log_lines('leaf', off)
    if int(m.group(1)) != ROWS_:
        fail('no copy line for %d rows in the leaf log: %s' % (ROWS_, text[-2000:]))
    rebuilt = 'indexes rebuilt after the COPY' in text
    if rebuilt == keep:
        fail('mode %s but the log %s a rebuild' % ('keep' if keep else 'drop', 'tells' if rebuilt else 'has no'))
    n = q1('leaf', 'select count(*) from %s' % T)
    if n != ROWS_:
        fail('leaf has %s rows of %s' % (n, ROWS_))
    idx = q1('leaf', "select sum(pg_relation_size(indexrelid)) from pg_index where indrelid = %s::regclass", [T])
    return int(m.group(3)), int(m.group(2)), int(idx)


def main():
    setup()
    times = {'drop': [], 'keep': []}
    sizes = {}
    order = []
    for r in range(RUNS):
        order += ['drop', 'keep'] if r % 2 == 0 else ['keep', 'drop']
    # one copy first that is not counted: the provider's table into its cache
    ms, size, _ = copy_once(False)
    log('  warm-up: %d ms' % ms)
    for mode in order:
        ms, size, sizes[mode] = copy_once(mode == 'keep')
        times[mode].append(ms)
        log('  %s: %d ms' % (mode, ms))
    print('\ninitial copy of %d rows (%d MB of COPY data; primary key + 2 indexes), ms per copy:' % (
        ROWS_, size // 1024 // 1024))
    print('| mode | runs | best | median | index size after |')
    print('|---|---|---:|---:|---:|')
    for mode, label in (('keep', 'indexes kept during the COPY'), ('drop', 'dropped, rebuilt after')):
        v = times[mode]
        print('| %s | %s | %d | %d | %d MB |' % (label, ' '.join(map(str, v)), min(v), statistics.median(v),
                                               sizes[mode] // 1024 // 1024))
    print('drop/rebuild: %.2fx the time of keeping them (medians)' % (
        statistics.median(times['drop']) / statistics.median(times['keep'])))


if __name__ == '__main__':
    main()
