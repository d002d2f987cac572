-- ticker: internal (0 and 1 argument), external (4 arguments), paused, sanity checks
\set SHOW_CONTEXT never
SELECT pgq.create_queue('tq_tick');
SELECT pgq.create_queue('tq_tick2');
SELECT queue_id AS qid FROM pgq.queue WHERE queue_name = 'tq_tick' \gset
SELECT pgq.set_queue_config('tq_tick', 'ticker_max_count', '3');
SELECT pgq.set_queue_config('tq_tick', 'ticker_max_lag', '1 hour');
SELECT pgq.set_queue_config('tq_tick', 'ticker_idle_period', '1 hour');
SELECT pgq.set_queue_config('tq_tick2', 'ticker_max_count', '1');
SELECT pgq.set_queue_config('tq_tick2', 'ticker_max_lag', '1 hour');
SELECT pgq.set_queue_config('tq_tick2', 'ticker_idle_period', '1 hour');
-- only one tick so far: the idle ticker ticks once, then backs off
SELECT pgq.ticker('tq_tick');
SELECT pgq.ticker('tq_tick');
SELECT pgq.ticker('tq_tick');
-- below max_count: no tick
SELECT pgq.insert_event('tq_tick', 't', '1');
SELECT pgq.ticker('tq_tick');
SELECT pgq.insert_event('tq_tick', 't', '2');
SELECT pgq.ticker('tq_tick');
SELECT pgq.insert_event('tq_tick', 't', '3');
SELECT pgq.ticker('tq_tick');
SELECT pgq.ticker('tq_tick');
SELECT tick_id, tick_event_seq FROM pgq.tick WHERE tick_queue = :qid ORDER BY 1;
-- max_lag reached
SELECT pgq.insert_event('tq_tick', 't', '4');
SELECT pgq.ticker('tq_tick');
SELECT pgq.set_queue_config('tq_tick', 'ticker_max_lag', '0');
SELECT pgq.ticker('tq_tick');
-- idle: max_lag 0 and idle_period 0 make every idle call tick
-- (with a non-zero idle_period the back-off depends on elapsed time, so it is not tested here)
SELECT pgq.set_queue_config('tq_tick', 'ticker_idle_period', '0');
SELECT pgq.ticker('tq_tick');
SELECT pgq.ticker('tq_tick');
SELECT pgq.set_queue_config('tq_tick', 'ticker_max_lag', '1 hour');
SELECT pgq.set_queue_config('tq_tick', 'ticker_idle_period', '1 hour');
SELECT tick_id, tick_event_seq FROM pgq.tick WHERE tick_queue = :qid ORDER BY 1;
-- tick snapshot / time sanity
SELECT bool_and(tick_snapshot IS NOT NULL) AS snapshots, bool_and(tick_time IS NOT NULL) AS times
  FROM pgq.tick WHERE tick_queue = :qid;
-- ticker(): number of queues ticked
SELECT pgq.ticker('tq_tick2');
SELECT pgq.ticker();
SELECT pgq.insert_event('tq_tick2', 't', '1');
SELECT pgq.ticker();
SELECT pgq.insert_event('tq_tick', 't', '5');
SELECT pgq.insert_event('tq_tick', 't', '6');
SELECT pgq.insert_event('tq_tick', 't', '7');
SELECT pgq.insert_event('tq_tick2', 't', '2');
SELECT pgq.ticker();
SELECT pgq.ticker();
-- errors
SELECT try($$select pgq.ticker('no_such_queue')$$);
SELECT try($$select pgq.ticker(NULL::text)$$);
SELECT pgq.set_queue_config('tq_tick2', 'ticker_paused', 'true');
SELECT try($$select pgq.ticker('tq_tick2')$$);
SELECT pgq.insert_event('tq_tick2', 't', '3');
-- paused queue skipped by ticker()
SELECT pgq.ticker();
SELECT pgq.set_queue_config('tq_tick2', 'ticker_paused', 'false');
SELECT pgq.set_queue_config('tq_tick2', 'external_ticker', 'true');
SELECT try($$select pgq.ticker('tq_tick2')$$);
SELECT pgq.ticker();
-- external ticker
SELECT val($$select pgq.ticker('tq_tick', 100, '2020-01-01 00:00:00+00', 500)$$);
SELECT max(tick_id) AS t2_last FROM pgq.tick t JOIN pgq.queue q ON q.queue_id = t.tick_queue WHERE q.queue_name = 'tq_tick2';
SELECT pgq.ticker('tq_tick2', 100, '2020-01-01 00:00:00+00', 500);
SELECT tick_id, tick_time = '2020-01-01 00:00:00+00' AS time_kept, tick_event_seq, tick_snapshot IS NOT NULL AS has_snapshot
  FROM pgq.tick t JOIN pgq.queue q ON q.queue_id = t.tick_queue WHERE q.queue_name = 'tq_tick2' AND tick_id >= 100;
SELECT pgq.seq_getval(queue_tick_seq) AS tick_seq, pgq.seq_getval(queue_event_seq) AS event_seq FROM pgq.queue WHERE queue_name = 'tq_tick2';
-- sequences never go backwards
SELECT pgq.ticker('tq_tick2', 101, '2020-01-01 00:00:01+00', 400);
SELECT pgq.seq_getval(queue_tick_seq) AS tick_seq, pgq.seq_getval(queue_event_seq) AS event_seq FROM pgq.queue WHERE queue_name = 'tq_tick2';
SELECT try($$select pgq.ticker('tq_tick2', 101, '2020-01-01 00:00:01+00', 400)$$);
SELECT val($$select pgq.ticker('tq_tick2', 50, '2019-01-01 00:00:00+00', 1)$$);
SELECT pgq.seq_getval(queue_tick_seq) AS tick_seq FROM pgq.queue WHERE queue_name = 'tq_tick2';
SELECT val($$select pgq.ticker('tq_tick2', NULL, now(), 1)$$);
SELECT val($$select pgq.ticker('no_such_queue', 1, now(), 1)$$);
SELECT val($$select pgq.ticker(NULL, 1, now(), 1)$$);
SELECT pgq.set_queue_config('tq_tick2', 'ticker_paused', 'true');
SELECT val($$select pgq.ticker('tq_tick2', 102, now(), 600)$$);
SELECT pgq.set_queue_config('tq_tick2', 'ticker_paused', 'false');
SELECT pgq.set_queue_config('tq_tick2', 'external_ticker', 'false');
-- back to internal: continues from the tick sequence
SELECT pgq.insert_event('tq_tick2', 't', '4') AS ev_id;
SELECT pgq.ticker('tq_tick2');
-- sanity: latest tick claims more events than the sequence has
UPDATE pgq.tick SET tick_event_seq = tick_event_seq + 100000
 WHERE tick_queue = :qid AND tick_id = (SELECT max(tick_id) FROM pgq.tick WHERE tick_queue = :qid);
SELECT pgq.set_queue_config('tq_tick', 'ticker_max_lag', '0');
SELECT pgq.set_queue_config('tq_tick', 'ticker_idle_period', '0');
SELECT pgq.ticker('tq_tick') IS NOT NULL AS ticked;
-- sanity: latest tick snapshot from the future
BEGIN;
UPDATE pgq.tick SET tick_snapshot = '9999999999:9999999999:'
 WHERE tick_queue = :qid AND tick_id = (SELECT max(tick_id) FROM pgq.tick WHERE tick_queue = :qid);
SELECT regexp_replace(try($$select pgq.ticker('tq_tick')$$), '[0-9]+', 'N', 'g') AS err;
ROLLBACK;
BEGIN;
UPDATE pgq.tick SET tick_snapshot = '1:9999999999:'
 WHERE tick_queue = :qid AND tick_id = (SELECT max(tick_id) FROM pgq.tick WHERE tick_queue = :qid);
-- (the WARNING carries a txid, so it is not shown)
SET LOCAL client_min_messages = error;
SELECT pgq.ticker('tq_tick') IS NOT NULL AS ticked;
ROLLBACK;
SELECT pgq.drop_queue('tq_tick');
SELECT pgq.drop_queue('tq_tick2');
