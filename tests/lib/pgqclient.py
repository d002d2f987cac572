"""tests/lib/pgqclient.py — the one Python client of the test layers and benchmarks.

psycopg2 (Debian python3-psycopg2) plumbing and the PgQ consumer loop that
tests/bgworker/pgqtool.py, tests/security/scenarios.py, tests/lib/cascadetest.py (the multi-node
scenarios) and
bench/ticker_bench.py share. Import it with

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    import pgqclient

(bench/: "..", "tests", "lib"). The compatibility layer's consumer (tests/compat/consumer.py)
uses the original's own Python library instead, on purpose: that is what it tests.

Connections
    connect(dsn, autocommit=False, retry_for=0, **kw)  retry_for > 0 keeps retrying a
        refused connection that many seconds (a server in crash-restart or restart)
    reconnect(conn, dsn, retry_for)                     close quietly, connect again
    rows(conn, sql, args) / one(conn, sql, args)        all rows ([] without a result) /
        the first column of the first row (None without one)
    wait_until(seconds, fn, step)                       poll fn() until it is true or the
        time is up; returns its last value
PgQ consumer side
    register(conn, queue, consumer)                     pgq.register_consumer, committed
    work_batch(conn, queue, consumer, handle, columns, commit_next)
        one batch: pgq.next_batch; none -> commit, None. Else the batch's events
        (pgq.get_batch_events, the given columns) go to handle(cur, batch_id, events),
        which may tag retries (event_retry) and store rows in the same transaction;
        then pgq.finish_batch and commit. Returns (batch_id, handle's result).
        commit_next=True commits the next_batch call on its own first (the shape the
        benchmarks have always measured).
    event_retry(cur, batch_id, ev_id, delay)            pgq.event_retry
    drain(conn, queue, consumer, until_empty, stop)     fetch every event of every batch
        to the client with COPY (one line = one event); returns (events, batches)
"""

import io
import time

import psycopg2


def connect(dsn=None, autocommit=False, retry_for=0.0, **kw):
    deadline = time.time() + retry_for
    while True:
        try:
            c = psycopg2.connect(dsn, **kw) if dsn is not None else psycopg2.connect(**kw)
            c.autocommit = autocommit
            return c
        except psycopg2.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def reconnect(conn, dsn, retry_for=0.0, **kw):
    try:
        conn.close()
    except Exception:
        pass
    return connect(dsn, retry_for=retry_for, **kw)


def rows(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else []


def one(conn, sql, args=None):
    r = rows(conn, sql, args)
    return r[0][0] if r else None


def wait_until(seconds, fn, step=0.1):
    end = time.time() + seconds
    while True:
        v = fn()
        if v or time.time() >= end:
            return v
        time.sleep(step)


def register(conn, queue, consumer):
    rows(conn, "select pgq.register_consumer(%s, %s)", (queue, consumer))
    if not conn.autocommit:
        conn.commit()


def event_retry(cur, batch_id, ev_id, delay=0):
    cur.execute("select pgq.event_retry(%s, %s, %s)", (batch_id, ev_id, delay))


def _next_batch(conn, cur, queue, consumer, commit_next):
    cur.execute("select pgq.next_batch(%s, %s)", (queue, consumer))
    batch_id = cur.fetchone()[0]
    if batch_id is None or commit_next:
        conn.commit()
    return batch_id


def work_batch(conn, queue, consumer, handle, columns="*", commit_next=False):
    cur = conn.cursor()
    batch_id = _next_batch(conn, cur, queue, consumer, commit_next)
    if batch_id is None:
        return None
    # columns is the caller's fixed column list, never user input
    cur.execute("select %s from pgq.get_batch_events(%%s)" % columns, (batch_id,))
    result = handle(cur, batch_id, cur.fetchall())
    cur.execute("select pgq.finish_batch(%s)", (batch_id,))
    conn.commit()
    return batch_id, result


def drain(conn, queue, consumer, until_empty=True, stop=lambda: False, idle_sleep=0.1):
    cur = conn.cursor()
    events = batches = 0
    while not stop():
        batch_id = _next_batch(conn, cur, queue, consumer, True)
        if batch_id is None:
            if until_empty:
                break
            time.sleep(idle_sleep)
            continue
        # COPY (text) instead of Python tuples: building Python objects costs more than
        # the server side of a batch, the same for every server, and would only hide what
        # a benchmark measures. Every row still travels to the client (COPY escapes
        # newlines, so one line = one event).
        sink = io.BytesIO()
        cur.copy_expert("copy (select * from pgq.get_batch_events(%d)) to stdout" % int(batch_id), sink)
        events += sink.getvalue().count(b"\n")
        cur.execute("select pgq.finish_batch(%s)", (batch_id,))
        conn.commit()
        batches += 1
    return events, batches
