#!/usr/bin/python3
"""Producer and consumer for tests/bgworker/run.sh (psycopg2 from Debian).

Both survive server crash-restarts and restarts: they reconnect and carry on, and the
bookkeeping is transactional, so the database tables are the truth.

  pgqtool.py produce DSN QUEUE TAG N_TX PER_TX SLEEP_MS
      N_TX transactions of PER_TX events (ev_data = 'TAG:<n>'); each transaction also
      inserts its numbers into bg_sent(tag, n), so a commit lost in a crash is simply
      looked up again after reconnecting.
  pgqtool.py consume DSN QUEUE CONSUMER STOPFILE [RETRY_EVERY]
      next_batch / get_batch_events / finish_batch loop (poll every 50 ms); every event
      is stored in bg_recv(consumer, ev_id, ev_data, ev_retry) in the batch's
      transaction. With RETRY_EVERY=k, events whose number is a multiple of k and that
      were never retried are handed to pgq.event_retry(batch, ev_id, 0) instead, once.
      Exits when STOPFILE exists.
"""
import os
import sys
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import pgqclient  # noqa: E402

RECONNECT_FOR = 90.0


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def connect(dsn):
    return pgqclient.connect(dsn, retry_for=RECONNECT_FOR, connect_timeout=3)


def reconnect(c, dsn):
    return pgqclient.reconnect(c, dsn, retry_for=RECONNECT_FOR, connect_timeout=3)


def produce(dsn, queue, tag, n_tx, per_tx, sleep_ms):
    n_tx, per_tx, sleep_ms = int(n_tx), int(per_tx), int(sleep_ms)
    c = connect(dsn)
    i = 0
    errors = 0
    while i < n_tx:
        lo = i * per_tx
        hi = lo + per_tx - 1
        try:
            cur = c.cursor()
            cur.execute(
                "insert into bg_sent (tag, n) select %s, g from generate_series(%s, %s) g",
                (tag, lo, hi),
            )
            cur.execute(
                "select count(pgq.insert_event(%s, 'bg', %s || ':' || g)) from generate_series(%s, %s) g",
                (queue, tag, lo, hi),
            )
            c.commit()
            i += 1
        except psycopg2.Error:
            errors += 1
            c = reconnect(c, dsn)
            if pgqclient.one(c, "select 1 from bg_sent where tag = %s and n = %s", (tag, lo)):
                i += 1  # that commit made it before the connection broke
            c.rollback()
            continue
        if sleep_ms:
            time.sleep(sleep_ms / 1000.0)
    log("produced %d events (%s), %d reconnects" % (n_tx * per_tx, tag, errors))


def consume(dsn, queue, consumer, stopfile, retry_every="0"):
    retry_every = int(retry_every)
    c = connect(dsn)
    pgqclient.register(c, queue, consumer)
    n = retried = errors = 0

    def handle(cur, batch_id, events):
        nonlocal retried
        keep = []
        for ev_id, data, ev_retry in events:
            num = int(data.rsplit(":", 1)[1])
            if retry_every and num % retry_every == 0 and not ev_retry:
                pgqclient.event_retry(cur, batch_id, ev_id, 0)
                retried += 1
            else:
                keep.append((consumer, ev_id, data, ev_retry))
        if keep:
            cur.executemany(
                "insert into bg_recv (consumer, ev_id, ev_data, ev_retry) values (%s, %s, %s, %s)",
                keep,
            )
        return len(keep)

    while not os.path.exists(stopfile):
        try:
            done = pgqclient.work_batch(c, queue, consumer, handle, "ev_id, ev_data, ev_retry")
        except psycopg2.Error:
            errors += 1
            c = reconnect(c, dsn)
            continue
        if done is None:
            time.sleep(0.05)
        else:
            n += done[1]
    log("consumer %s: %d events stored, %d retried, %d reconnects" % (consumer, n, retried, errors))


def main():
    a = sys.argv[1:]
    if a and a[0] == "produce":
        produce(*a[1:])
    elif a and a[0] == "consume":
        consume(*a[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
