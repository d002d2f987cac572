#!/usr/bin/python3
"""The measurement of bench/cascade_latency.sh (see there)."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'lib'))
from cascadetest import *  # noqa: E402,F401,F403

RATE = int(os.environ.get('RATE', '1000'))
SECS = int(os.environ.get('SECONDS_RUN', '20'))
LAGS = [x for x in os.environ.get('MAX_LAGS').split('|') if x]


def setup():
    for n in NODES:
        q(n, 'create extension if not exists pgq')
        q(n, 'create table digoal.lat (id bigserial primary key, '
             'created timestamptz not null default clock_timestamp())')
        if n != 'root':
            q(n, 'alter table digoal.lat add column arrived timestamptz default clock_timestamp()')
    q('root', "select * from pgq_cascade.create_root(%s, 'root', %s)", [QUEUE, connstr('root')])
    q('branch', "select * from pgq_cascade.create_branch(%s, 'branch', %s, %s)",
      [QUEUE, connstr('branch'), connstr('root')])
    q('leaf', "select * from pgq_cascade.create_leaf(%s, 'leaf', %s, %s)",
      [QUEUE, connstr('leaf'), connstr('branch')])
    for n in NODES:
        q(n, "select * from pgq_cascade.add_table(%s, 'digoal.lat')", [QUEUE])
    for n in ('branch', 'leaf'):
        wait_for('lat ok on ' + n, lambda: table_states(n).get('digoal.lat') == 'ok', 60)


def run(lag):
    q('root', 'select pgq.set_queue_config(%s, %s, %s)', [QUEUE, 'ticker_max_lag', lag])
    start = q1('root', 'select coalesce(max(id), 0) from digoal.lat')
    script = os.path.join(WORK, 'lat.pgbench')
    with open(script, 'w') as f:
        f.write('insert into digoal.lat default values;\n')
    os.chmod(script, 0o644)
    out = subprocess.run([os.path.join(PG_BIN, 'pgbench'), '-n', '-c', '2', '-j', '2', '-R', str(RATE),
                          '-T', str(SECS), '-h', '127.0.0.1', '-p', PORTS['root'], '-U', 'postgres',
                          '-f', script, 'digoal'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if out.returncode != 0:
        fail('pgbench: %s' % out.stdout.decode()[-500:])
    end = q1('root', 'select max(id) from digoal.lat')
    tick = sync_point('root')
    wait_caught_up(tick, ['branch', 'leaf'], 120)
    res = {}
    for n in ('branch', 'leaf'):
        r = q(n, "select count(*), "
                 "percentile_cont(array[0.5, 0.9, 0.99]) within group (order by extract(epoch from arrived - created)), "
                 "max(extract(epoch from arrived - created)) "
                 "from digoal.lat where id > %s and id <= %s", [start, end])[0]
        if r[0] != end - start:
            fail('%s has %s of the %s rows' % (n, r[0], end - start))
        res[n] = (r[0], [x * 1000 for x in r[1]], float(r[2]) * 1000)
    return res


def main():
    setup()
    print('\nrow delay root -> node at %d rows/s for %d s (ms; in-server replay, 3 clusters on this machine)' % (RATE, SECS))
    print('%-18s %-7s %7s %7s %7s %7s %7s' % ('ticker_max_lag', 'node', 'rows', 'p50', 'p90', 'p99', 'max'))
    for lag in LAGS:
        for n, (cnt, p, mx) in run(lag).items():
            print('%-18s %-7s %7d %7.1f %7.1f %7.1f %7.1f' % (lag, n, cnt, p[0], p[1], p[2], mx), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
