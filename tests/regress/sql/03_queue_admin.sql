-- queue administration: create_queue, drop_queue, set_queue_config, grant_perms, tune_storage
\set SHOW_CONTEXT never
SELECT pgq.create_queue('tq_admin');
-- second create of the same name returns 0
SELECT pgq.create_queue('tq_admin');
SELECT queue_name, queue_ntables, queue_cur_table, queue_rotation_period,
       queue_switch_step2 IS NOT NULL AS step2_set, queue_external_ticker, queue_disable_insert,
       queue_ticker_paused, queue_ticker_max_count, queue_ticker_max_lag, queue_ticker_idle_period,
       queue_per_tx_limit, queue_data_pfx = 'pgq.event_' || queue_id AS pfx_ok,
       queue_event_seq = 'pgq.event_' || queue_id || '_id_seq' AS evseq_ok,
       queue_tick_seq = 'pgq.event_' || queue_id || '_tick_seq' AS tickseq_ok, queue_extra_maint
  FROM pgq.queue WHERE queue_name = 'tq_admin';
-- create_queue makes tick 1 with event seq 1
SELECT t.tick_id, t.tick_event_seq FROM pgq.tick t JOIN pgq.queue q ON q.queue_id = t.tick_queue
 WHERE q.queue_name = 'tq_admin' ORDER BY 1;
-- per-queue objects
SELECT regexp_replace(c.relname, '^event_' || q.queue_id, 'event_N') AS rel, c.relkind,
       c.reloptions
  FROM pg_class c, pgq.queue q
 WHERE q.queue_name = 'tq_admin' AND c.relnamespace = 'pgq'::regnamespace
   AND c.relname LIKE 'event\_' || q.queue_id || '%'
 ORDER BY 1;
SELECT regexp_replace(inhrelid::regclass::text, '^pgq.event_' || q.queue_id, 'pgq.event_N') AS child,
       regexp_replace(inhparent::regclass::text, '^pgq.event_' || q.queue_id, 'pgq.event_N') AS parent
  FROM pg_inherits, pgq.queue q
 WHERE q.queue_name = 'tq_admin' AND inhparent::regclass::text LIKE 'pgq.event\_' || q.queue_id || '%'
 ORDER BY 1;
SELECT regexp_replace(table_name, '^event_' || q.queue_id, 'event_N') AS tbl, grantee, privilege_type, is_grantable
  FROM information_schema.table_privileges, pgq.queue q
 WHERE q.queue_name = 'tq_admin' AND table_schema = 'pgq' AND table_name LIKE 'event\_' || q.queue_id || '%'
   AND grantee <> 'postgres'
 ORDER BY 1, 2, 3;
SELECT regexp_replace(c.relname, '^event_' || q.queue_id, 'event_N') AS seq, a.grantee::regrole AS grantee, a.privilege_type
  FROM pg_class c, pgq.queue q, aclexplode(c.relacl) a
 WHERE q.queue_name = 'tq_admin' AND c.relnamespace = 'pgq'::regnamespace AND c.relkind = 'S'
   AND c.relname LIKE 'event\_' || q.queue_id || '%' AND a.grantee <> 'postgres'::regrole
 ORDER BY 1, 2::text, 3;
SELECT regexp_replace(c.relname, '^event_' || q.queue_id, 'event_N') AS rel, pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%_id_seq''::regclass)' AS ev_id_default
  FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum, pgq.queue q
 WHERE q.queue_name = 'tq_admin' AND c.relname LIKE 'event\_' || q.queue_id || '\_%' AND a.attname = 'ev_id'
 ORDER BY 1;
SELECT regexp_replace(indexname, '^event_' || q.queue_id, 'event_N') AS idx
  FROM pg_indexes, pgq.queue q
 WHERE q.queue_name = 'tq_admin' AND schemaname = 'pgq' AND tablename LIKE 'event\_' || q.queue_id || '%'
 ORDER BY 1;
-- per-queue tables are not extension members
SELECT count(*) AS member_objects FROM pg_depend d, pgq.queue q
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgq') AND d.deptype = 'e'
   AND d.classid = 'pg_class'::regclass AND q.queue_name = 'tq_admin'
   AND d.objid::regclass::text LIKE 'pgq.event\_' || q.queue_id || '%';

-- set_queue_config: every accepted parameter
SELECT pgq.set_queue_config('tq_admin', 'ticker_max_count', '1000');
SELECT pgq.set_queue_config('tq_admin', 'ticker_max_lag', '10 seconds');
SELECT pgq.set_queue_config('tq_admin', 'ticker_idle_period', '5 minutes');
SELECT pgq.set_queue_config('tq_admin', 'ticker_paused', 'true');
SELECT pgq.set_queue_config('tq_admin', 'rotation_period', '1 day');
SELECT pgq.set_queue_config('tq_admin', 'external_ticker', 'on');
SELECT queue_ticker_max_count, queue_ticker_max_lag, queue_ticker_idle_period, queue_ticker_paused,
       queue_rotation_period, queue_external_ticker
  FROM pgq.queue WHERE queue_name = 'tq_admin';
-- with the queue_ prefix already given
SELECT try($$select pgq.set_queue_config('tq_admin', 'queue_ticker_max_count', '7')$$);
SELECT pgq.set_queue_config('tq_admin', 'ticker_paused', 'false');
SELECT pgq.set_queue_config('tq_admin', 'external_ticker', 'f');
SELECT pgq.set_queue_config('tq_admin', 'ticker_max_count', '500');
-- values go through normal input casting
SELECT try($$select pgq.set_queue_config('tq_admin', 'ticker_max_count', 'abc')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'ticker_max_count', '99999999999')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'ticker_max_count', '-5')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'ticker_max_lag', 'forever')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'ticker_paused', 'maybe')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'rotation_period', NULL)$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'ticker_max_count', '')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'ticker_max_lag', 'it''s')$$);
SELECT queue_ticker_max_count, queue_ticker_max_lag, queue_rotation_period FROM pgq.queue WHERE queue_name = 'tq_admin';
-- parameters that cannot be changed
SELECT try($$select pgq.set_queue_config('tq_admin', 'foo', '1')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'ntables', '5')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'disable_insert', 'true')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'per_tx_limit', '5')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'extra_maint', '{x}')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'cur_table', '1')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'name', 'x')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', 'TICKER_MAX_COUNT', '5')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', '', '5')$$);
-- NULL and unknown queue
SELECT try($$select pgq.set_queue_config(NULL, 'ticker_max_count', '5')$$);
SELECT try($$select pgq.set_queue_config('tq_admin', NULL, '5')$$);
SELECT try($$select pgq.set_queue_config('no_such_queue', 'ticker_max_count', '5')$$);
SELECT try($$select pgq.set_queue_config('no_such_queue', 'foo', '5')$$);

-- create_queue with bad input
SELECT try($$select pgq.create_queue(NULL)$$);
-- odd but legal names
SELECT pgq.create_queue('tq with spaces');
SELECT pgq.create_queue('tq.with.dots');
SELECT pgq.create_queue('tq"quote''s');
SELECT pgq.create_queue('tq_ünï_кю');
SELECT pgq.create_queue('');
SELECT pgq.create_queue('TQ_Admin');
SELECT queue_name FROM pgq.queue ORDER BY queue_name;
SELECT queue_name FROM pgq.get_queue_info() ORDER BY 1;
SELECT pgq.insert_event('tq"quote''s', 'q', 'x') AS ev_id;
SELECT pgq.insert_event('tq.with.dots', 'q', 'x') AS ev_id;
SELECT pgq.insert_event('tq_ünï_кю', 'q', 'x') AS ev_id;
SELECT pgq.register_consumer('tq with spaces', 'c "1"');
SELECT pgq.register_consumer('tq_ünï_кю', 'потребитель');
SELECT queue_name, consumer_name FROM pgq.get_consumer_info() ORDER BY 1, 2;
SELECT pgq.set_queue_config('tq"quote''s', 'ticker_max_count', '3');
SELECT pgq.grant_perms('tq.with.dots');
SELECT pgq.tune_storage('tq with spaces');
SELECT pgq.unregister_consumer('tq with spaces', 'c "1"');
SELECT pgq.unregister_consumer('tq_ünï_кю', 'потребитель');
SELECT pgq.drop_queue('tq with spaces');
SELECT pgq.drop_queue('tq.with.dots');
SELECT pgq.drop_queue('tq"quote''s');
SELECT pgq.drop_queue('tq_ünï_кю');
SELECT pgq.drop_queue('');
SELECT pgq.drop_queue('TQ_Admin');

-- grant_perms / tune_storage
SELECT pgq.grant_perms('tq_admin');
SELECT try($$select pgq.grant_perms('no_such_queue')$$);
SELECT try($$select pgq.grant_perms(NULL)$$);
SELECT pgq.tune_storage('tq_admin');
SELECT pgq.tune_storage('no_such_queue');
SELECT pgq.tune_storage(NULL) IS NULL AS strict_null;
-- grant_perms copies privileges added to event_template
GRANT SELECT ON pgq.event_template TO pgq_writer;
SELECT pgq.grant_perms('tq_admin');
SELECT regexp_replace(table_name, '^event_' || q.queue_id, 'event_N') AS tbl, privilege_type
  FROM information_schema.table_privileges, pgq.queue q
 WHERE q.queue_name = 'tq_admin' AND table_schema = 'pgq' AND table_name LIKE 'event\_' || q.queue_id || '%'
   AND grantee = 'pgq_writer'
 ORDER BY 1, 2;
REVOKE SELECT ON pgq.event_template FROM pgq_writer;
-- _grant_perms_from
SELECT pgq._grant_perms_from(NULL, 'event_template', 'pgq', 'queue') IS NULL AS strict_null;

-- drop_queue
SELECT try($$select pgq.drop_queue('no_such_queue')$$);
SELECT try($$select pgq.drop_queue('no_such_queue', true)$$);
SELECT try($$select pgq.drop_queue(NULL, true)$$);
SELECT pgq.drop_queue(NULL) IS NULL AS strict_null;
-- NULL force behaves like false
SELECT try($$select pgq.drop_queue('tq_admin', NULL)$$);
SELECT pgq.create_queue('tq_admin');
SELECT pgq.register_consumer('tq_admin', 'c1');
SELECT pgq.register_consumer('tq_admin', 'c2');
SELECT try($$select pgq.drop_queue('tq_admin')$$);
SELECT try($$select pgq.drop_queue('tq_admin', false)$$);
SELECT pgq.drop_queue('tq_admin', true);
SELECT count(*) AS queues FROM pgq.queue WHERE queue_name = 'tq_admin';
SELECT count(*) AS subs FROM pgq.subscription;
SELECT count(*) AS consumers FROM pgq.consumer WHERE co_name IN ('c1', 'c2');
SELECT count(*) AS ticks FROM pgq.tick t WHERE NOT EXISTS (SELECT 1 FROM pgq.queue q WHERE q.queue_id = t.tick_queue);
SELECT count(*) AS leftover_rels FROM pg_class c
 WHERE c.relnamespace = 'pgq'::regnamespace AND c.relname LIKE 'event\_%' AND c.relname <> 'event_template';
SELECT try($$select pgq.drop_queue('tq_admin')$$);
-- drop queue with retry events
SELECT pgq.create_queue('tq_admin2');
SELECT pgq.register_consumer('tq_admin2', 'c1');
SELECT pgq.event_retry_raw('tq_admin2', 'c1', now(), 1, now(), 0, 't', 'd', NULL, NULL, NULL, NULL);
SELECT count(*) AS retry_rows FROM pgq.retry_queue;
SELECT pgq.drop_queue('tq_admin2', true);
SELECT count(*) AS retry_rows FROM pgq.retry_queue;
-- the queue id sequence keeps counting; names are reusable
SELECT pgq.create_queue('tq_admin');
SELECT pgq.drop_queue('tq_admin');
