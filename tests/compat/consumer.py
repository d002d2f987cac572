#!/usr/bin/python3
"""consumer.py — compatibility consumer built on Debian's python3-pgq (`pgq.Consumer`).

    consumer.py CONSUMER.INI --register     register on the queue, exit
    consumer.py CONSUMER.INI                drain the queue, exit when done
    consumer.py CONSUMER.INI --unregister

A plain skytools DBScript consumer: the library allocates batches
(pgq.next_batch_custom), reads them through a cursor (pgq.get_batch_cursor + FETCH),
calls process_batch(), tags retries (pgq.event_retry) and finishes the batch
(pgq.finish_batch). process_batch() stores every accepted event in the table named by
`recv_table`, in the same transaction as finish_batch, so each row means "this event was
delivered in a finished batch".

Extra ini keys (besides the usual job_name, db, queue_name, loop_delay, ...):
  recv_table    table with columns (batch_id, ev_id, ev_time, ev_txid, ev_retry, ev_type,
                ev_data, ev_extra1..4)
  retry_every   tag every Nth event (ev_id % N == 0) for retry on first delivery (0 = off)
  end_type      ev_type of the end marker; the consumer stops after the batch holding it
                has been finished and every event it tagged for retry has come back
  idle_timeout  seconds without any event before giving up (exit status 3)
"""
import sys
import time

import psycopg2.extras
import pgq


class CompatConsumer(pgq.Consumer):
    def reload(self):
        super().reload()
        self.recv_table = self.cf.get("recv_table")
        self.retry_every = self.cf.getint("retry_every", 0)
        self.end_type = self.cf.get("end_type", "compat-end")
        self.idle_timeout = self.cf.getfloat("idle_timeout", 60)

    def startup(self):
        super().startup()
        self.seen_end = False
        self.pending_retry = set()   # ev_ids tagged for retry, not yet re-delivered
        self.n_events = 0
        self.n_batches = 0
        self.n_retry = 0
        self.failed = False
        self.last_event_time = time.time()

    def process_batch(self, db, batch_id, ev_list):
        rows = []
        retry_now = 0
        for ev in ev_list:
            if ev.type == self.end_type:
                self.seen_end = True
                continue
            if (self.retry_every and ev.id % self.retry_every == 0 and not ev.retry):
                ev.tag_retry(0)          # -> pgq.event_retry(batch, ev_id, 0)
                self.pending_retry.add(ev.id)
                retry_now += 1
                continue
            ev.tag_done()
            self.pending_retry.discard(ev.id)
            rows.append((batch_id, ev.id, ev.time, ev.txid, ev.retry, ev.type, ev.data,
                         ev.extra1, ev.extra2, ev.extra3, ev.extra4))
        if rows:
            curs = db.cursor()
            psycopg2.extras.execute_values(
                curs,
                "insert into %s (batch_id, ev_id, ev_time, ev_txid, ev_retry, ev_type,"
                " ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4) values %%s"
                % self.recv_table, rows, page_size=1000)
        self.n_batches += 1
        self.n_events += len(rows)
        self.n_retry += retry_now
        if rows or retry_now:
            self.last_event_time = time.time()

    def work(self):
        # BaseConsumer.work(): next_batch_custom, get_batch_cursor/fetch,
        # process_batch, event_retry, finish_batch, commits.
        res = super().work()
        if self.seen_end and not self.pending_retry:
            self.log.info("end marker seen and all retries returned, stopping")
            self.looping = 0
        elif time.time() - self.last_event_time > self.idle_timeout:
            self.log.error("no events for %.0f s (end marker seen: %s, retries pending: %d)",
                           self.idle_timeout, self.seen_end, len(self.pending_retry))
            self.failed = True
            self.looping = 0
        return res

    def exception_hook(self, det, emsg):
        # a test must not sleep and retry: log, then let run_func_safely exit(1)
        super().exception_hook(det, emsg)
        self.failed = True
        self.looping = 0

    def shutdown(self):
        self.log.info("consumed %d events in %d batches, %d retry tags",
                      self.n_events, self.n_batches, self.n_retry)
        super().shutdown()


if __name__ == "__main__":
    script = CompatConsumer("compat_consumer", "db", sys.argv[1:])
    script.start()
    sys.exit(3 if getattr(script, "failed", False) else 0)
