#!/usr/bin/python3
"""Helpers for bench/latency.sh and bench/bloat.sh (psycopg2 from Debian).

  ticker_bench.py produce  DSN QUEUE RATE SECONDS [PER_TX [COUNTFILE]]
      insert RATE events/s for SECONDS, PER_TX events per transaction (default: as
      many as needed for <= 500 transactions/s); each event's ev_data is the
      producer's time.time() taken just before COMMIT is sent (ev_extra1 = seq no).
  ticker_bench.py consume  DSN QUEUE CONSUMER MODE OUTFILE [STOPFILE]
      MODE listen: LISTEN "pgq_<queue>", work off batches on every notification,
                   fallback poll every 1 s;  MODE poll: next_batch every 10 ms.
      For every event writes "<seq> <recv_time - ev_data>" to OUTFILE at exit.
      STOPFILE (written after the producer ends) holds the number of events produced:
      stops once it has them all, or 15 s without a batch after that (or on SIGTERM).
  ticker_bench.py drain    DSN QUEUE CONSUMER [--until-empty]
      simple consumer (poll every 100 ms) that keeps a queue drained until SIGTERM;
      every event is fetched to the client (COPY). --until-empty (bench/bench.sh's
      drain workload): stop at the first empty next_batch and print
      "events=N batches=M seconds=S events_per_sec=R".
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import pgqclient  # noqa: E402

STOP = False


def _term(_sig, _frm):
    global STOP
    STOP = True


signal.signal(signal.SIGTERM, _term)
signal.signal(signal.SIGINT, _term)


def connect(dsn, autocommit=False):
    return pgqclient.connect(dsn, autocommit=autocommit)


def produce(dsn, queue, rate, seconds, per_tx=None, countfile=None):
    rate = float(rate)
    seconds = float(seconds)
    if per_tx in (None, "", "0"):
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
    if countfile:
        with open(countfile, "w") as f:
            f.write("%d\n" % seq)


def _work_batches(conn, queue, consumer, out):
    """Process all batches that are ready; returns number of batches."""
    def handle(_cur, _batch_id, events):
        now = time.time()
        for d, s in events:
            out.append((s, now - float(d)))

    n = 0
    while pgqclient.work_batch(conn, queue, consumer, handle, "ev_data, ev_extra1"):
        n += 1
    return n


def consume(dsn, queue, consumer, mode, outfile, stopfile=None):
    c = connect(dsn)
    pgqclient.register(c, queue, consumer)
    lc = None
    if mode == "listen":
        lc = connect(dsn, autocommit=True)
        lc.cursor().execute('listen "pgq_%s"' % queue)
    out = []
    last_batch = time.time()
    expected = None
    while not STOP:
        if _work_batches(c, queue, consumer, out):
            last_batch = time.time()
        if expected is None and stopfile and os.path.exists(stopfile):
            with open(stopfile) as f:
                txt = f.read().strip()
            expected = int(txt) if txt else 0
        if expected is not None and (len(out) >= expected or time.time() - last_batch > 15):
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


def drain(dsn, queue, consumer, until_empty=None):
    c = pgqclient.connect(dsn, application_name="bench_drain")
    if until_empty == "--until-empty":
        t0 = time.perf_counter()
        events, batches = pgqclient.drain(c, queue, consumer, until_empty=True)
        secs = time.perf_counter() - t0
        print("events=%d batches=%d seconds=%.3f events_per_sec=%.1f"
              % (events, batches, secs, events / secs if secs > 0 else 0))
        return
    pgqclient.register(c, queue, consumer)
    n, _ = pgqclient.drain(c, queue, consumer, until_empty=False, stop=lambda: STOP)
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
