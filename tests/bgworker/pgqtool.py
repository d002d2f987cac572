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

RECONNECT_FOR = 90.0


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def connect(dsn):
    deadline = time.time() + RECONNECT_FOR
    while True:
        try:
            c = psycopg2.connect(dsn, connect_timeout=3)
            c.autocommit = False
            return c
        except psycopg2.OperationalError as e:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


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
        except psycopg2.Error as e:
            errors += 1
            try:
                c.close()
            except Exception:
                pass
            c = connect(dsn)
            cur = c.cursor()
            cur.execute("select 1 from bg_sent where tag = %s and n = %s", (tag, lo))
            if cur.fetchone():
                i += 1  # that commit made it before the connection broke
            c.rollback()
            continue
        if sleep_ms:
            time.sleep(sleep_ms / 1000.0)
    log("produced %d events (%s), %d reconnects" % (n_tx * per_tx, tag, errors))


def consume(dsn, queue, consumer, stopfile, retry_every="0"):
    retry_every = int(retry_every)
    c = connect(dsn)
    cur = c.cursor()
    cur.execute("select pgq.register_consumer(%s, %s)", (queue, consumer))
    c.commit()
    n = retried = errors = 0
    while not os.path.exists(stopfile):
        try:
            cur = c.cursor()
            cur.execute("select pgq.next_batch(%s, %s)", (queue, consumer))
            b = cur.fetchone()[0]
            if b is None:
                c.commit()
                time.sleep(0.05)
                continue
            cur.execute("select ev_id, ev_data, ev_retry from pgq.get_batch_events(%s)", (b,))
            keep = []
            for ev_id, data, ev_retry in cur.fetchall():
                num = int(data.rsplit(":", 1)[1])
                if retry_every and num % retry_every == 0 and not ev_retry:
                    cur.execute("select pgq.event_retry(%s, %s, 0)", (b, ev_id))
                    retried += 1
                else:
                    keep.append((consumer, ev_id, data, ev_retry))
            if keep:
                cur.executemany(
                    "insert into bg_recv (consumer, ev_id, ev_data, ev_retry) values (%s, %s, %s, %s)",
                    keep,
                )
            cur.execute("select pgq.finish_batch(%s)", (b,))
            c.commit()
            n += len(keep)
        except psycopg2.Error as e:
            errors += 1
            try:
                c.close()
            except Exception:
                pass
            c = connect(dsn)
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
