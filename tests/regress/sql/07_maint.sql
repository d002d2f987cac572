-- maintenance: rotation, retry mover, vacuum list, maint_operations, upgrade
\set SHOW_CONTEXT never
SELECT count(*) AS queues_left FROM pgq.queue;
SELECT pgq.create_queue('tq_maint');
SELECT queue_id AS qid FROM pgq.queue WHERE queue_name = 'tq_maint' \gset
SELECT pgq.set_queue_config('tq_maint', 'ticker_max_count', '1');
SELECT pgq.set_queue_config('tq_maint', 'ticker_max_lag', '1 hour');
SELECT pgq.set_queue_config('tq_maint', 'ticker_idle_period', '1 hour');
-- nothing due
SELECT * FROM pgq.maint_operations() WHERE func_name NOT LIKE 'londiste.%';
SELECT pgq.maint_rotate_tables_step1('tq_maint');
SELECT pgq.maint_rotate_tables_step1('no_such_queue');
SELECT pgq.maint_rotate_tables_step1(NULL);
SELECT pgq.maint_rotate_tables_step2();
SELECT * FROM pgq.maint_tables_to_vacuum();
SELECT queue_cur_table FROM pgq.queue WHERE queue_name = 'tq_maint';
-- rotation due by switch time
SELECT pgq.insert_event('tq_maint', 'r', 'in table 0');
UPDATE pgq.queue SET queue_switch_time = now() - '3 hours'::interval WHERE queue_name = 'tq_maint';
SELECT * FROM pgq.maint_operations() WHERE func_name NOT LIKE 'londiste.%';
SELECT pgq.maint_rotate_tables_step1('tq_maint');
SELECT queue_cur_table, queue_switch_step2 IS NULL AS in_flight FROM pgq.queue WHERE queue_name = 'tq_maint';
-- step2 pending is reported, a second step1 does nothing
SELECT * FROM pgq.maint_operations() WHERE func_name NOT LIKE 'londiste.%';
SELECT pgq.maint_rotate_tables_step1('tq_maint');
SELECT queue_cur_table FROM pgq.queue WHERE queue_name = 'tq_maint';
SELECT pgq.insert_event('tq_maint', 'r', 'in table 1');
SELECT regexp_replace(pgq.current_event_table('tq_maint'), '_[0-9]+_', '_N_') AS cur;
SELECT pgq.maint_rotate_tables_step2();
SELECT queue_switch_step2 IS NOT NULL AS step2_done, queue_switch_step2 > queue_switch_step1 AS ordered FROM pgq.queue WHERE queue_name = 'tq_maint';
SELECT * FROM pgq.maint_operations() WHERE func_name NOT LIKE 'londiste.%';
-- rotation_period 0 makes rotation due immediately
SELECT pgq.set_queue_config('tq_maint', 'rotation_period', '0');
SELECT * FROM pgq.maint_operations() WHERE func_name NOT LIKE 'londiste.%';
-- a consumer whose position is older than the last switch blocks rotation
SELECT pgq.register_consumer_at('tq_maint', 'slow', 1);
SELECT pgq.maint_rotate_tables_step1('tq_maint');
SELECT queue_cur_table FROM pgq.queue WHERE queue_name = 'tq_maint';
-- the slow consumer reads a batch spanning both tables
SELECT pgq.ticker('tq_maint');
SELECT pgq.next_batch('tq_maint', 'slow') AS b1 \gset
SELECT regexp_replace(t, '_[0-9]+_', '_N_') AS tbl FROM pgq.batch_event_tables(:b1) t;
SELECT ev_data FROM pgq.get_batch_events(:b1);
SELECT pgq.finish_batch(:b1);
-- consumer now past step2: rotation proceeds
SELECT pgq.maint_rotate_tables_step1('tq_maint');
SELECT queue_cur_table FROM pgq.queue WHERE queue_name = 'tq_maint';
SELECT pgq.maint_rotate_tables_step2();
SELECT pgq.insert_event('tq_maint', 'r', 'in table 2');
-- old ticks are cleaned up on rotation
SELECT tick_id FROM pgq.tick WHERE tick_queue = :qid ORDER BY 1;
SELECT pgq.ticker('tq_maint');
SELECT pgq.next_batch('tq_maint', 'slow') AS b2 \gset
SELECT regexp_replace(t, '_[0-9]+_', '_N_') AS tbl FROM pgq.batch_event_tables(:b2) t;
SELECT ev_data FROM pgq.get_batch_events(:b2);
SELECT pgq.finish_batch(:b2);
-- wrap around: table 0 is truncated when it becomes current again
SELECT pgq.maint_rotate_tables_step1('tq_maint');
SELECT pgq.maint_rotate_tables_step2();
SELECT queue_cur_table FROM pgq.queue WHERE queue_name = 'tq_maint';
SELECT ev_data FROM pgq.event_template ORDER BY ev_id;
-- step1 inside a transaction block (rolled back)
SELECT pgq.ticker('tq_maint');
SELECT pgq.insert_event('tq_maint', 'r', 'x');
SELECT pgq.ticker('tq_maint');
SELECT pgq.next_batch('tq_maint', 'slow') AS b3 \gset
SELECT pgq.finish_batch(:b3);
BEGIN;
SELECT pgq.maint_rotate_tables_step1('tq_maint');
SELECT queue_cur_table FROM pgq.queue WHERE queue_name = 'tq_maint';
ROLLBACK;
-- step1 with a missing tick for the slowest consumer
BEGIN;
UPDATE pgq.subscription SET sub_last_tick = 9999 WHERE sub_queue = :qid;
SELECT try($$select pgq.maint_rotate_tables_step1('tq_maint')$$);
ROLLBACK;
SELECT pgq.set_queue_config('tq_maint', 'rotation_period', '2 hours');
SELECT pgq.maint_rotate_tables_step2();
SELECT * FROM pgq.maint_operations() WHERE func_name NOT LIKE 'londiste.%';

-- extra maintenance functions
UPDATE pgq.queue SET queue_extra_maint = ARRAY['pgq.no_such_func', 'public.other'] WHERE queue_name = 'tq_maint';
SELECT * FROM pgq.maint_operations() WHERE func_name NOT LIKE 'londiste.%';
UPDATE pgq.queue SET queue_extra_maint = NULL WHERE queue_name = 'tq_maint';

-- retry mover works in chunks of 10
SELECT pgq.event_retry_raw('tq_maint', 'slow', now() - '1 minute'::interval, i, now(), 0, 'rt', i::text, NULL, NULL, NULL, NULL)
  FROM generate_series(1001, 1013) i ORDER BY 1 LIMIT 3;
SELECT pgq.event_retry_raw('tq_maint', 'slow', now() + '1 day'::interval, 2000, now(), 0, 'later', NULL, NULL, NULL, NULL, NULL);
SELECT count(*) FROM pgq.retry_queue;
SELECT pgq.maint_retry_events();
SELECT pgq.maint_retry_events();
SELECT pgq.maint_retry_events();
SELECT count(*) AS still_waiting FROM pgq.retry_queue;
SELECT ev_id, ev_retry, ev_owner IS NOT NULL AS owned FROM pgq.event_template WHERE ev_type = 'rt' ORDER BY 1 LIMIT 3;
SELECT count(*) AS moved FROM pgq.event_template WHERE ev_type = 'rt';
-- disable_insert blocks the mover unless in replica role
UPDATE pgq.retry_queue SET ev_retry_after = now() - '1 minute'::interval;
UPDATE pgq.queue SET queue_disable_insert = true WHERE queue_name = 'tq_maint';
SELECT try($$select pgq.maint_retry_events()$$);
SET session_replication_role = replica;
SELECT pgq.maint_retry_events();
RESET session_replication_role;
UPDATE pgq.queue SET queue_disable_insert = false WHERE queue_name = 'tq_maint';
SELECT count(*) FROM pgq.retry_queue;

-- vacuum list (autovacuum is on in the test cluster)
SELECT current_setting('autovacuum') AS autovacuum;
SELECT count(*) FROM pgq.maint_tables_to_vacuum();

-- upgrade_schema / version
SELECT pgq.upgrade_schema();
SELECT pgq.version();
SELECT pgq.unregister_consumer('tq_maint', 'slow');
SELECT pgq.drop_queue('tq_maint');
SELECT * FROM pgq.maint_operations() WHERE func_name NOT LIKE 'londiste.%';
