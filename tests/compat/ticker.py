#!/usr/bin/python3
"""ticker.py — a minimal stand-in for pgqd, used by tests/compat/run.sh.

    ticker.py CONNSTR [--period S] [--maint-period S]

Loops until SIGTERM/SIGINT:
  * `select pgq.ticker()` every --period seconds, each call its own transaction;
  * every --maint-period seconds (0 = never): `pgq.maint_retry_events()` until it
    returns 0, then the operations listed by `pgq.maint_operations()`, each in its own
    transaction and repeated while it returns a non-zero first column (pgqd's contract).
Prints a summary line on exit. Any database error ends it with status 1.
"""
import argparse
import signal
import sys
import time

import psycopg2
import psycopg2.extensions

stop = False


def on_signal(signum, frame):
    global stop
    stop = True


def scalar(cur, sql, args=None):
    cur.execute(sql, args)
    row = cur.fetchone()
    return row[0] if row else None


def run_maint(cur, stats):
    while True:
        n = scalar(cur, "select pgq.maint_retry_events()")
        stats["retry_moved"] += n or 0
        if not n:
            break
    cur.execute("select func_name, func_arg from pgq.maint_operations()")
    for func, arg in cur.fetchall():
        if func.lower() in ("vacuum", "vacuum analyze"):
            cur.execute("%s %s" % (func, arg))
            continue
        stats["maint_ops"] += 1
        if func == "pgq.maint_rotate_tables_step1":
            stats["rotate_step1"] += 1
        # quote_ident per part, as pgqd does for "schema.func"
        fq = ".".join(psycopg2.extensions.quote_ident(p, cur) for p in func.split("."))
        for _ in range(1000):
            if arg is None:
                cur.execute("select %s()" % fq)
            else:
                cur.execute("select %s(%%s)" % fq, [arg])
            res = cur.fetchone()
            if not res or not isinstance(res[0], int) or res[0] == 0:
                break


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("connstr")
    ap.add_argument("--period", type=float, default=0.1)
    ap.add_argument("--maint-period", type=float, default=1.0)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    db = psycopg2.connect(a.connstr, application_name="compat_ticker")
    db.autocommit = True  # every statement is its own transaction
    cur = db.cursor()
    stats = dict(calls=0, ticks=0, maint_runs=0, maint_ops=0, rotate_step1=0, retry_moved=0)
    last_maint = time.time()
    try:
        while not stop:
            stats["ticks"] += scalar(cur, "select pgq.ticker()") or 0
            stats["calls"] += 1
            if a.maint_period > 0 and time.time() - last_maint >= a.maint_period:
                run_maint(cur, stats)
                stats["maint_runs"] += 1
                last_maint = time.time()
            time.sleep(a.period)
    except psycopg2.Error as e:
        print("ticker: database error: %s" % str(e).strip(), file=sys.stderr)
        return 1
    print("ticker: " + " ".join("%s=%d" % kv for kv in stats.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
