#!/usr/bin/python3
"""Helpers for bench/latency.sh and bench/bloat.sh (psycopg2 from Debian).

  ticker_bench.py produce  DSN QUEUE RATE SECONDS [PER_TX]
      insert RATE events/s for SECONDS, PER_TX events per transaction (default: as
      many as needed for <= 500 transactions/s); each event's ev_data is the
      producer's time.time() taken just before COMMIT is sent (ev_extra1 = seq no).
  ticker_bench.py consume  DSN QUEUE CONSUMER MODE OUTFILE [STOPFILE]
      MODE listen: LISTEN "pgq_<queue>", work off batches on every notification,
                   fallback poll every 1 s;  MODE poll: next_batch every 10 ms.
      For every event writes "<seq> <recv_time - ev_data>" to OUTFILE at exit.
      Stops when STOPFILE exists and no batch came for 3 s (or on SIGTERM).
  ticker_bench.py drain    DSN QUEUE CONSUMER
      simple consumer (poll every 100 ms) that keeps a queue drained until SIGTERM.
  ticker_bench.py hold     DSN
      BEGIN; SELECT txid_current(); then stay idle in the transaction until SIGTERM.
  ticker_bench.py stats    FILE...
      print count / p50 / p90 / p99 / max of latency files (ms) plus dup/missing info.
"""
import os
import select
import signal
import sys
import time

import psycopg2

STOP = False


def _term(_sig, _frm):
    global STOP
    STOP = True


signal.signal(signal.SIGTERM, _term)
signal.signal(signal.SIGINT, _term)


def connect(dsn, autocommit=False):
    c = psycopg2.connect(dsn)
    c.autocommit = autocommit
    return c


def produce(dsn, queue, rate, seconds, per_tx=None):
    rate = float(rate)
    seconds = float(seconds)
    if per_tx is None:
        per_tx = max(1, int(rate / 500 + 0.999))
    per_tx = int(per_tx)
    c = connect(dsn)
    cur = c.cursor()
    interval = per_tx / rate
    start = time.time()
    seq = 0
    n_tx = 0
    while not STOP:
        due = start + n_tx * interval
        if due - start >= seconds:
            break
        now = time.time()
        if due > now:
            time.sleep(due - now)
        # one statement inserts per_tx events; the timestamp is taken right before commit
        t = repr(time.time())
        cur.execute(
            "select pgq.insert_event(%s, 'lat', %s, (%s + g)::text, null, null, null) "
            "from generate_series(0, %s - 1) g",
            (queue, t, seq, per_tx),
        )
        c.commit()
        seq += per_tx
        n_tx += 1
    c.close()
    print("produced %d events in %d tx, %.1f s" % (seq, n_tx, time.time() - start))


def _work_batches(cur, queue, consumer, out):
    """Process all batches that are ready; returns number of batches."""
    n = 0
    while True:
        cur.execute("select pgq.next_batch(%s, %s)", (queue, consumer))
        b = cur.fetchone()[0]
        if b is None:
            cur.connection.commit()
            return n
        cur.execute("select ev_data, ev_extra1 from pgq.get_batch_events(%s)", (b,))
        rows = cur.fetchall()
        now = time.time()
        for d, s in rows:
            out.append((s, now - float(d)))
        cur.execute("select pgq.finish_batch(%s)", (b,))
        cur.connection.commit()
        n += 1


def consume(dsn, queue, consumer, mode, outfile, stopfile=None):
    c = connect(dsn)
    cur = c.cursor()
    cur.execute("select pgq.register_consumer(%s, %s)", (queue, consumer))
    c.commit()
    lc = None
    if mode == "listen":
        lc = connect(dsn, autocommit=True)
        lc.cursor().execute('listen "pgq_%s"' % queue)
    out = []
    last_batch = time.time()
    while not STOP:
        if _work_batches(cur, queue, consumer, out):
            last_batch = time.time()
        elif stopfile and os.path.exists(stopfile) and time.time() - last_batch > 3:
            break
        if lc is not None:
            # wait for a tick notification; fallback poll after 1 s
            if not lc.notifies:
                select.select([lc], [], [], 1.0)
                lc.poll()
            del lc.notifies[:]
        else:
            time.sleep(0.01)
    with open(outfile, "w") as f:
        for s, lat in out:
            f.write("%s %.6f\n" % (s, lat))
    print("consumed %d events" % len(out))


def drain(dsn, queue, consumer):
    c = connect(dsn)
    cur = c.cursor()
    cur.execute("select pgq.register_consumer(%s, %s)", (queue, consumer))
    c.commit()
    n = 0
    while not STOP:
        cur.execute("select pgq.next_batch(%s, %s)", (queue, consumer))
        b = cur.fetchone()[0]
        if b is None:
            c.commit()
            time.sleep(0.1)
            continue
        cur.execute("select count(*) from pgq.get_batch_events(%s)", (b,))
        n += cur.fetchone()[0]
        cur.execute("select pgq.finish_batch(%s)", (b,))
        c.commit()
    print("drained %d events" % n)


def hold(dsn):
    c = connect(dsn)
    cur = c.cursor()
    cur.execute("select txid_current()")
    print("holding transaction txid %s open" % cur.fetchone()[0], flush=True)
    while not STOP:
        time.sleep(0.2)
    c.rollback()


def pct(v, p):
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def stats(files):
    lat = []
    seqs = []
    for fn in files:
        with open(fn) as f:
            for line in f:
                s, l = line.split()
                seqs.append(int(s))
                lat.append(float(l) * 1000.0)
    lat.sort()
    dup = len(seqs) - len(set(seqs))
    missing = (max(seqs) + 1 - len(set(seqs))) if seqs else 0
    print(
        "n=%d p50=%.1f p90=%.1f p99=%.1f max=%.1f dup=%d missing=%d"
        % (len(lat), pct(lat, 50), pct(lat, 90), pct(lat, 99), lat[-1] if lat else float("nan"), dup, missing)
    )


def main():
    a = sys.argv[1:]
    cmd = a[0]
    if cmd == "produce":
        produce(*a[1:])
    elif cmd == "consume":
        consume(*a[1:])
    elif cmd == "drain":
        drain(*a[1:])
    elif cmd == "hold":
        hold(*a[1:])
    elif cmd == "stats":
        stats(a[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
