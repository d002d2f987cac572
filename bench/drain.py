#!/usr/bin/python3
"""drain.py CONNSTR QUEUE CONSUMER — drain one consumer's backlog, print events/s.

Loop until no batch is left: `pgq.next_batch` (commit), `select * from
pgq.get_batch_events(batch)` with every row fetched to the client (COPY), `pgq.finish_batch`
(commit). Prints "events=N batches=M seconds=S events_per_sec=R" on stdout.

The rows are fetched with COPY (text format) instead of being turned into Python
tuples one by one: building Python objects costs more than the whole server side of a
batch and is the same for both sides, so it would only hide what is being measured.
Every row still travels to the client (COPY text escapes newlines, so one line = one
event).
"""
import io
import sys
import time

import psycopg2


def main():
    connstr, queue, consumer = sys.argv[1:4]
    db = psycopg2.connect(connstr, application_name="bench_drain")
    cur = db.cursor()
    events = batches = 0
    t0 = time.perf_counter()
    while True:
        cur.execute("select pgq.next_batch(%s, %s)", [queue, consumer])
        batch_id = cur.fetchone()[0]
        db.commit()
        if batch_id is None:
            break
        sink = io.BytesIO()
        cur.copy_expert("copy (select * from pgq.get_batch_events(%d)) to stdout" % int(batch_id), sink)
        events += sink.getvalue().count(b"\n")
        cur.execute("select pgq.finish_batch(%s)", [batch_id])
        db.commit()
        batches += 1
    secs = time.perf_counter() - t0
    print("events=%d batches=%d seconds=%.3f events_per_sec=%.1f"
          % (events, batches, secs, events / secs if secs > 0 else 0))


if __name__ == "__main__":
    main()
