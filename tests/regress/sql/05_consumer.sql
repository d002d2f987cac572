-- consumer side: registration, batches, events, cursors, retry, finish
\set SHOW_CONTEXT never
SELECT pgq.create_queue('tq_cons');
-- make ticking depend only on new events (no time based ticks)
SELECT pgq.set_queue_config('tq_cons', 'ticker_max_count', '1');
SELECT pgq.set_queue_config('tq_cons', 'ticker_max_lag', '1 hour');
SELECT pgq.set_queue_config('tq_cons', 'ticker_idle_period', '1 hour');
SELECT queue_id AS qid FROM pgq.queue WHERE queue_name = 'tq_cons' \gset
-- helper: fetch from an open cursor, only deterministic columns
CREATE FUNCTION public.fetch_ev(cur text, n int) RETURNS TABLE (ev_id int8, ev_type text, ev_retry int4)
LANGUAGE plpgsql AS $$
DECLARE c refcursor := cur; r record; i int := 0;
BEGIN
  WHILE i < n LOOP
    FETCH c INTO r;
    EXIT WHEN NOT FOUND;
    ev_id := r.ev_id; ev_type := r.ev_type; ev_retry := r.ev_retry;
    RETURN NEXT;
    i := i + 1;
  END LOOP;
END $$;

-- registration
SELECT pgq.register_consumer('tq_cons', 'c1');
SELECT pgq.register_consumer('tq_cons', 'c1');
SELECT pgq.register_consumer('tq_cons', 'c2');
SELECT try($$select pgq.register_consumer('no_such_queue', 'c1')$$);
SELECT try($$select pgq.register_consumer(NULL, 'c1')$$);
SELECT try($$select pgq.register_consumer('tq_cons', NULL)$$);
SELECT try($$select pgq.register_consumer_at('tq_cons', 'c3', 999)$$);
SELECT try($$select pgq.register_consumer_at('no_such_queue', 'c3', 1)$$);
SELECT try($$select pgq.register_consumer_at(NULL, NULL, NULL)$$);
SELECT co_name FROM pgq.consumer ORDER BY 1;
SELECT c.co_name, s.sub_last_tick, s.sub_batch, s.sub_next_tick
  FROM pgq.subscription s JOIN pgq.consumer c ON c.co_id = s.sub_consumer
 WHERE s.sub_queue = :qid ORDER BY 1;
SELECT queue_name, consumer_name, last_tick, current_batch, next_tick, pending_events,
       lag IS NOT NULL AS has_lag, last_seen IS NOT NULL AS has_last_seen
  FROM pgq.get_consumer_info('tq_cons') ORDER BY 2;

-- no tick yet: a row of NULLs
SELECT * FROM pgq.next_batch_info('tq_cons', 'c1');
SELECT pgq.next_batch('tq_cons', 'c1');
SELECT * FROM pgq.next_batch_custom('tq_cons', 'c1', NULL, NULL, NULL);
SELECT count(*) FROM pgq.next_batch_info('tq_cons', 'c1');
-- not subscribed
SELECT try($$select pgq.next_batch('tq_cons', 'nobody')$$);
SELECT try($$select pgq.next_batch_info('no_such_queue', 'c1')$$);
SELECT try($$select pgq.next_batch_custom(NULL, NULL, NULL, NULL, NULL)$$);
SELECT try($$select pgq.next_batch(NULL, 'c1')$$);

-- idle ticker on a queue with a single tick always ticks
SELECT pgq.ticker('tq_cons');
-- idle again: skipped
SELECT pgq.ticker('tq_cons');
SELECT pgq.insert_event('tq_cons', 'a', '1');
SELECT pgq.insert_event('tq_cons', 'b', '2', 'x1', 'x2', 'x3', 'x4');
SELECT pgq.insert_event('tq_cons', 'c', '3');
SELECT pgq.ticker('tq_cons');
SELECT tick_id, tick_event_seq FROM pgq.tick WHERE tick_queue = :qid ORDER BY tick_id;

-- first batch of c1: ticks 1 -> 2 (empty)
SELECT batch_id IS NOT NULL AS got_batch, prev_tick_id, cur_tick_id, prev_tick_event_seq, cur_tick_event_seq,
       cur_tick_time >= prev_tick_time AS times_ok
  FROM pgq.next_batch_info('tq_cons', 'c1');
SELECT pgq.next_batch('tq_cons', 'c1') AS b1 \gset
-- the open batch is returned again
SELECT pgq.next_batch('tq_cons', 'c1') = :b1 AS same_batch;
SELECT batch_id = :b1 AS same_batch, prev_tick_id, cur_tick_id FROM pgq.next_batch_custom('tq_cons', 'c1', '1 hour', 1000, '1 hour');
SELECT count(*) AS events FROM pgq.get_batch_events(:b1);
SELECT pgq.finish_batch(:b1);
-- second batch: ticks 2 -> 3 with the three events
SELECT pgq.next_batch('tq_cons', 'c1') AS b2 \gset
SELECT :b2 > :b1 AS increasing;
SELECT ev_id, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4,
       ev_txid IS NOT NULL AS has_txid, ev_time IS NOT NULL AS has_time
  FROM pgq.get_batch_events(:b2);
SELECT queue_name, consumer_name, prev_tick_id, tick_id, seq_start, seq_end,
       batch_end >= batch_start AS times_ok, lag IS NOT NULL AS has_lag
  FROM pgq.get_batch_info(:b2);
SELECT queue_name, consumer_name, last_tick, current_batch = :b2 AS has_batch, next_tick, pending_events
  FROM pgq.get_consumer_info('tq_cons', 'c1');
SELECT regexp_replace(t, '_[0-9]+_', '_N_') FROM pgq.batch_event_tables(:b2) t;
SELECT pgq.batch_event_sql(:b2) LIKE '% order by 1' AS ends_with_order_by;
SELECT val('select string_agg(ev_id::text, '','' order by ev_id) from (' || pgq.batch_event_sql(:b2) || ') e') AS sql_events;
SELECT val('select count(*) from (' || pgq.batch_event_sql(:b2) || ') e') AS sql_count;
-- get_batch_cursor, 3 arguments
BEGIN;
SELECT ev_id, ev_type FROM pgq.get_batch_cursor(:b2, 'walker', 2);
SELECT * FROM fetch_ev('walker', 10);
CLOSE walker;
COMMIT;
-- 4 arguments, NULL filter
BEGIN;
SELECT ev_id FROM pgq.get_batch_cursor(:b2, 'walker', 1, NULL);
SELECT * FROM fetch_ev('walker', 1);
SELECT * FROM fetch_ev('walker', 1);
SELECT * FROM fetch_ev('walker', 1);
CLOSE walker;
COMMIT;
-- with filter
BEGIN;
SELECT ev_id, ev_type FROM pgq.get_batch_cursor(:b2, 'walker', 10, 'ev_type in (''a'', ''c'')');
CLOSE walker;
SELECT ev_id, ev_type FROM pgq.get_batch_cursor(:b2, 'walker', 0, 'ev_extra1 = ''x1''');
SELECT * FROM fetch_ev('walker', 1000);
CLOSE walker;
COMMIT;
-- quick limit <= 0, odd cursor name
BEGIN;
SELECT count(*) FROM pgq.get_batch_cursor(:b2, 'My "Cursor"', -1);
SELECT * FROM fetch_ev('My "Cursor"', 1000);
COMMIT;
-- NULL arguments: empty, no cursor
BEGIN;
SELECT count(*) FROM pgq.get_batch_cursor(NULL, 'walker', 10, NULL);
SELECT count(*) FROM pgq.get_batch_cursor(:b2, NULL, 10, NULL);
SELECT count(*) FROM pgq.get_batch_cursor(:b2, 'walker', NULL, NULL);
SELECT count(*) FROM pgq.get_batch_cursor(NULL, 'walker', 10);
SELECT count(*) FROM pgq.get_batch_cursor(:b2, 'walker', NULL);
SELECT count(*) FROM pg_cursors WHERE name = 'walker';
COMMIT;
-- bad filter and duplicate cursor
BEGIN;
SELECT try(format('select pgq.get_batch_cursor(%s, %L, 10, %L)', :b2, 'walker', 'no_such_column = 1'));
SELECT count(*) FROM pgq.get_batch_cursor(:b2, 'walker', 10);
SELECT try(format('select pgq.get_batch_cursor(%s, %L, 10)', :b2, 'walker'));
COMMIT;

-- retry
SELECT pgq.event_retry(:b2, 2, 0);
SELECT pgq.event_retry(:b2, 2, 0);
SELECT pgq.event_retry(:b2, 3::int8, now() + '1 hour'::interval);
SELECT try(format('select pgq.event_retry(%s, 999, 0)', :b2));
SELECT try(format('select pgq.event_retry(%s, 999, now())', :b2));
SELECT pgq.batch_retry(:b2, 0);
SELECT pgq.batch_retry(:b2, 0);
SELECT r.ev_id, r.ev_retry, r.ev_type, r.ev_data, r.ev_extra1, r.ev_txid, r.ev_queue = :qid AS queue_ok,
       r.ev_owner = s.sub_id AS owner_ok, r.ev_retry_after > now() AS later
  FROM pgq.retry_queue r JOIN pgq.subscription s ON s.sub_id = r.ev_owner ORDER BY r.ev_id;
SELECT pgq.finish_batch(:b2);
-- finishing twice warns and returns 0
SELECT pgq.finish_batch(:b2);
SELECT pgq.finish_batch(-1);
SELECT pgq.finish_batch(NULL);
SELECT try(format('select pgq.event_retry(%s, 1, 0)', :b2));
SELECT try(format('select pgq.batch_retry(%s, 0)', :b2));
SELECT try($$select pgq.batch_retry(NULL, 0)$$);
SELECT try(format('select * from pgq.get_batch_events(%s)', :b2));
SELECT try(format('select pgq.batch_event_sql(%s)', :b2));
SELECT try(format('select pgq.batch_event_tables(%s)', :b2));
SELECT try($$select pgq.batch_event_sql(NULL)$$);
SELECT * FROM pgq.get_batch_info(:b2);
SELECT count(*) FROM pgq.get_batch_info(NULL);
-- move due retry events back into the queue: only the two with retry_after <= now
SELECT pgq.maint_retry_events();
SELECT pgq.maint_retry_events();
SELECT ev_id, ev_retry FROM pgq.retry_queue ORDER BY 1;
SELECT pgq.ticker('tq_cons');
-- c1 sees its retried events, with retry counts
SELECT pgq.next_batch('tq_cons', 'c1') AS b3 \gset
SELECT ev_id, ev_retry, ev_type FROM pgq.get_batch_events(:b3);
SELECT pgq.finish_batch(:b3);
-- c2 reads 1->2, 2->3, 3->4 and never sees c1's retries
SELECT pgq.next_batch('tq_cons', 'c2') AS b4 \gset
SELECT count(*) FROM pgq.get_batch_events(:b4);
SELECT pgq.finish_batch(:b4);
SELECT pgq.next_batch('tq_cons', 'c2') AS b5 \gset
SELECT ev_id, ev_retry FROM pgq.get_batch_events(:b5);
SELECT pgq.finish_batch(:b5);
SELECT pgq.next_batch('tq_cons', 'c2') AS b6 \gset
SELECT ev_id, ev_retry FROM pgq.get_batch_events(:b6);
SELECT pgq.finish_batch(:b6);
SELECT pgq.next_batch('tq_cons', 'c2') IS NULL AS no_more;

-- event_retry_raw
SELECT pgq.event_retry_raw('tq_cons', 'c1', now() + '1 day'::interval, 500, now(), 2, 'rt', 'rd', 'e1', NULL, NULL, 'e4');
SELECT pgq.event_retry_raw('tq_cons', 'c1', now() + '1 day'::interval, NULL, now(), NULL, 'rt2', NULL, NULL, NULL, NULL, NULL) =
       (SELECT pgq.seq_getval(queue_event_seq) FROM pgq.queue WHERE queue_name = 'tq_cons') AS id_from_seq;
SELECT ev_id > 0 AS id_ok, ev_retry, ev_type, ev_data, ev_extra1, ev_extra4 FROM pgq.retry_queue WHERE ev_type LIKE 'rt%' ORDER BY ev_type;
SELECT try($$select pgq.event_retry_raw('tq_cons', 'nobody', now(), 1, now(), 0, 't', 'd', NULL, NULL, NULL, NULL)$$);
SELECT try($$select pgq.event_retry_raw('no_such_queue', 'c1', now(), 1, now(), 0, 't', 'd', NULL, NULL, NULL, NULL)$$);
SELECT try($$select pgq.event_retry_raw(NULL, NULL, now(), 1, now(), 0, 't', 'd', NULL, NULL, NULL, NULL)$$);
SELECT try($$select pgq.event_retry_raw('tq_cons', 'c1', now(), 500, now(), 0, 't', 'd', NULL, NULL, NULL, NULL)$$);
DELETE FROM pgq.retry_queue;

-- next_batch_custom / find_tick_helper: build ticks 5..10 with known event counts
SELECT pgq.insert_event('tq_cons', 'n', '1');
SELECT pgq.ticker('tq_cons');
SELECT pgq.insert_event('tq_cons', 'n', '2');
SELECT pgq.insert_event('tq_cons', 'n', '3');
SELECT pgq.ticker('tq_cons');
SELECT pgq.insert_event('tq_cons', 'n', '4');
SELECT pgq.ticker('tq_cons');
SELECT pgq.insert_event('tq_cons', 'n', '5');
SELECT pgq.insert_event('tq_cons', 'n', '6');
SELECT pgq.insert_event('tq_cons', 'n', '7');
SELECT pgq.ticker('tq_cons');
SELECT tick_id, tick_event_seq FROM pgq.tick WHERE tick_queue = :qid ORDER BY tick_id;
SELECT c.co_name, s.sub_last_tick FROM pgq.subscription s JOIN pgq.consumer c ON c.co_id = s.sub_consumer
 WHERE s.sub_queue = :qid ORDER BY 1;
-- find_tick_helper from tick 4
SELECT tick_id AS t4, tick_time AS t4time, tick_event_seq AS t4seq FROM pgq.tick WHERE tick_queue = :qid AND tick_id = 4 \gset
SELECT next_tick_id, next_tick_seq FROM pgq.find_tick_helper(:qid, :t4, :'t4time', :t4seq, 1, NULL);
SELECT next_tick_id, next_tick_seq FROM pgq.find_tick_helper(:qid, :t4, :'t4time', :t4seq, 3, NULL);
SELECT next_tick_id, next_tick_seq FROM pgq.find_tick_helper(:qid, :t4, :'t4time', :t4seq, 4, NULL);
SELECT next_tick_id, next_tick_seq FROM pgq.find_tick_helper(:qid, :t4, :'t4time', :t4seq, 7, NULL);
SELECT next_tick_id, next_tick_seq FROM pgq.find_tick_helper(:qid, :t4, :'t4time', :t4seq, 100, NULL);
SELECT next_tick_id, next_tick_seq FROM pgq.find_tick_helper(:qid, :t4, :'t4time', :t4seq, NULL, '1 hour');
SELECT next_tick_id, next_tick_seq FROM pgq.find_tick_helper(:qid, :t4, :'t4time', :t4seq, 100, '0 seconds');
SELECT next_tick_id, next_tick_seq FROM pgq.find_tick_helper(:qid, :t4, :'t4time', :t4seq, NULL, NULL);
SELECT next_tick_id, next_tick_seq FROM pgq.find_tick_helper(:qid, 8, NULL, NULL, 1, NULL);
SELECT next_tick_id, next_tick_seq FROM pgq.find_tick_helper(-1, 1, now(), 1, 1, NULL);
SELECT count(*) FROM pgq.find_tick_helper(-1, 1, now(), 1, 1, NULL);
-- c2 is at tick 4
SELECT batch_id IS NULL AS no_batch, cur_tick_id FROM pgq.next_batch_custom('tq_cons', 'c2', NULL, 100, NULL);
SELECT batch_id IS NULL AS no_batch, cur_tick_id FROM pgq.next_batch_custom('tq_cons', 'c2', NULL, NULL, '1 hour');
SELECT batch_id IS NULL AS no_batch, cur_tick_id FROM pgq.next_batch_custom('tq_cons', 'c2', '1 hour', NULL, NULL);
SELECT batch_id IS NULL AS no_batch, cur_tick_id FROM pgq.next_batch_custom('tq_cons', 'c2', '1 hour', 1, NULL);
SELECT count(*) FROM pgq.subscription WHERE sub_batch IS NOT NULL;
SELECT batch_id IS NULL AS no_batch, prev_tick_id, cur_tick_id, prev_tick_event_seq, cur_tick_event_seq
  FROM pgq.next_batch_custom('tq_cons', 'c2', '0 seconds', 3, NULL);
SELECT pgq.next_batch('tq_cons', 'c2') AS b7 \gset
SELECT ev_data FROM pgq.get_batch_events(:b7);
SELECT pgq.finish_batch(:b7);
SELECT batch_id IS NULL AS no_batch, prev_tick_id, cur_tick_id FROM pgq.next_batch_custom('tq_cons', 'c2', NULL, 3, NULL);
SELECT pgq.next_batch('tq_cons', 'c2') AS b8 \gset
SELECT ev_data FROM pgq.get_batch_events(:b8);
SELECT pgq.finish_batch(:b8);
SELECT batch_id IS NULL AS no_batch, cur_tick_id FROM pgq.next_batch_custom('tq_cons', 'c2', NULL, NULL, NULL);

-- register_consumer_at / reposition
SELECT pgq.register_consumer_at('tq_cons', 'c3', 5);
SELECT pgq.register_consumer_at('tq_cons', 'c3', 5);
SELECT pgq.next_batch('tq_cons', 'c3') IS NOT NULL AS got_batch;
SELECT sub_last_tick, sub_next_tick, sub_batch IS NOT NULL AS open_batch FROM pgq.subscription s JOIN pgq.consumer c ON c.co_id = s.sub_consumer WHERE co_name = 'c3';
-- reposition drops the open batch
SELECT pgq.register_consumer_at('tq_cons', 'c3', 2);
SELECT sub_last_tick, sub_next_tick, sub_batch IS NOT NULL AS open_batch FROM pgq.subscription s JOIN pgq.consumer c ON c.co_id = s.sub_consumer WHERE co_name = 'c3';
SELECT pgq.register_consumer_at('tq_cons', 'c3', NULL);
SELECT pgq.register_consumer('tq_cons', 'c3');
SELECT try($$select pgq.register_consumer_at('tq_cons', 'c3', 999)$$);
SELECT sub_last_tick FROM pgq.subscription s JOIN pgq.consumer c ON c.co_id = s.sub_consumer WHERE co_name = 'c3';
SELECT pgq.next_batch('tq_cons', 'c3') AS b9 \gset
SELECT prev_tick_id, tick_id FROM pgq.get_batch_info(:b9);
SELECT ev_data FROM pgq.get_batch_events(:b9);
-- the old consumer of c3 sees the same consumer name on two queues
SELECT pgq.create_queue('tq_cons2');
SELECT pgq.register_consumer('tq_cons2', 'c3');
SELECT queue_name, consumer_name FROM pgq.get_consumer_info(NULL, 'c3') ORDER BY 1;
SELECT queue_name, consumer_name FROM pgq.get_consumer_info(NULL) ORDER BY 1, 2;
SELECT queue_name, consumer_name FROM pgq.get_consumer_info(NULL, NULL) ORDER BY 1, 2;
SELECT queue_name, consumer_name FROM pgq.get_consumer_info('tq_cons2', NULL) ORDER BY 1, 2;
SELECT count(*) FROM pgq.get_consumer_info('no_such_queue');
SELECT count(*) FROM pgq.get_consumer_info('tq_cons', 'nobody');
SELECT queue_name, consumer_name, last_tick, current_batch IS NOT NULL AS in_batch, next_tick, pending_events
  FROM pgq.get_consumer_info() ORDER BY 1, 2;

-- get_queue_info
SELECT queue_name, queue_ntables, queue_cur_table, queue_rotation_period, queue_external_ticker,
       queue_ticker_paused, queue_ticker_max_count, queue_ticker_max_lag, queue_ticker_idle_period,
       ticker_lag IS NOT NULL AS has_lag, ev_new, last_tick_id, queue_switch_time IS NOT NULL AS has_switch_time
  FROM pgq.get_queue_info() ORDER BY 1;
SELECT queue_name, last_tick_id, ev_new FROM pgq.get_queue_info('tq_cons');
SELECT count(*) FROM pgq.get_queue_info(NULL);
SELECT count(*) FROM pgq.get_queue_info('no_such_queue');
SELECT pgq.insert_event('tq_cons', 'z', 'z');
SELECT ev_new, ev_per_sec IS NULL OR ev_per_sec >= 0 AS ev_per_sec_ok FROM pgq.get_queue_info('tq_cons');

-- force_tick
SELECT pgq.force_tick('tq_cons');
SELECT pgq.seq_getval(queue_event_seq) AS seq_after_force FROM pgq.queue WHERE queue_name = 'tq_cons';
SELECT pgq.ticker('tq_cons');
SELECT pgq.force_tick('tq_cons');
SELECT val($$select pgq.force_tick('no_such_queue')$$);
SELECT pgq.force_tick(NULL);
-- paused / external ticker: no bump, latest tick returned
SELECT pgq.set_queue_config('tq_cons2', 'ticker_paused', 'true');
SELECT pgq.seq_getval(queue_event_seq) AS seq_before FROM pgq.queue WHERE queue_name = 'tq_cons2';
SELECT pgq.force_tick('tq_cons2');
SELECT pgq.seq_getval(queue_event_seq) AS seq_after FROM pgq.queue WHERE queue_name = 'tq_cons2';
SELECT pgq.set_queue_config('tq_cons2', 'ticker_paused', 'false');
SELECT pgq.set_queue_config('tq_cons2', 'external_ticker', 'true');
SELECT pgq.force_tick('tq_cons2');
SELECT pgq.seq_getval(queue_event_seq) AS seq_after FROM pgq.queue WHERE queue_name = 'tq_cons2';

-- corruption: start tick missing
BEGIN;
DELETE FROM pgq.tick WHERE tick_queue = :qid AND tick_id = (SELECT sub_last_tick FROM pgq.subscription s JOIN pgq.consumer c ON c.co_id = s.sub_consumer WHERE co_name = 'c2' AND sub_queue = :qid);
SELECT try($$select pgq.next_batch('tq_cons', 'c2')$$);
ROLLBACK;

-- unregister
SELECT pgq.unregister_consumer('tq_cons', 'c3');
SELECT pgq.unregister_consumer('tq_cons', 'c3');
SELECT count(*) AS c3_row FROM pgq.consumer WHERE co_name = 'c3';
SELECT pgq.unregister_consumer('tq_cons2', 'c3');
SELECT count(*) AS c3_row FROM pgq.consumer WHERE co_name = 'c3';
SELECT val($$select pgq.unregister_consumer('no_such_queue', 'c1')$$);
SELECT val($$select pgq.unregister_consumer('tq_cons', 'nobody')$$);
SELECT val($$select pgq.unregister_consumer(NULL, NULL)$$);
-- unregister with an open batch and retry events
SELECT pgq.next_batch('tq_cons', 'c1') IS NOT NULL AS got_batch;
SELECT pgq.event_retry_raw('tq_cons', 'c1', now(), NULL, now(), 0, 't', 'd', NULL, NULL, NULL, NULL) > 0 AS ok;
SELECT pgq.unregister_consumer('tq_cons', 'c1');
SELECT count(*) AS retry_rows FROM pgq.retry_queue;
SELECT try($$select pgq.next_batch('tq_cons', 'c1')$$);
SELECT pgq.drop_queue('tq_cons', true);
SELECT pgq.drop_queue('tq_cons2', true);
SELECT count(*) AS consumers FROM pgq.consumer;
DROP FUNCTION public.fetch_ev(text, int);
