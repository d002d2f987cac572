-- privileges: which role may call what
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE ROLE regress_none NOLOGIN;
CREATE ROLE regress_reader NOLOGIN IN ROLE pgq_reader;
CREATE ROLE regress_writer NOLOGIN IN ROLE pgq_writer;
CREATE ROLE regress_admin NOLOGIN IN ROLE pgq_admin;
RESET client_min_messages;
SELECT pgq.create_queue('tq_priv');
SELECT pgq.set_queue_config('tq_priv', 'ticker_max_count', '1');
SELECT pgq.set_queue_config('tq_priv', 'ticker_max_lag', '1 hour');
SELECT pgq.set_queue_config('tq_priv', 'ticker_idle_period', '1 hour');
SELECT pgq.register_consumer('tq_priv', 'cp');
SELECT pgq.insert_event('tq_priv', 'p', '1');
SELECT pgq.ticker('tq_priv');
SELECT pgq.next_batch('tq_priv', 'cp') AS pb \gset
SELECT queue_event_seq AS evseq, queue_data_pfx || '_0' AS evtbl FROM pgq.queue WHERE queue_name = 'tq_priv' \gset

-- run a statement as a role; every call is rolled back so all see the same state
CREATE FUNCTION public.as_role(r text, sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE res text;
BEGIN
  BEGIN
    EXECUTE format('SET LOCAL ROLE %I', r);
    EXECUTE sql;
    RAISE EXCEPTION USING ERRCODE = 'ZZ999', MESSAGE = 'rollback';
  EXCEPTION WHEN OTHERS THEN
    IF sqlstate = 'ZZ999' THEN res := 'ok'; ELSE res := sqlstate || ': ' || regexp_replace(sqlerrm, 'event_[0-9]+', 'event_N', 'g'); END IF;
  END;
  RETURN res;
END $$;
CREATE TEMP TABLE calls (n serial, label text, sql text);
INSERT INTO calls (label, sql) VALUES
 ('version', 'select pgq.version()'),
 ('get_queue_info()', 'select * from pgq.get_queue_info()'),
 ('get_queue_info(q)', 'select * from pgq.get_queue_info(''tq_priv'')'),
 ('get_consumer_info()', 'select * from pgq.get_consumer_info()'),
 ('get_consumer_info(q)', 'select * from pgq.get_consumer_info(''tq_priv'')'),
 ('get_consumer_info(q,c)', 'select * from pgq.get_consumer_info(''tq_priv'', ''cp'')'),
 ('quote_fqname', 'select pgq.quote_fqname(''a.b'')'),
 ('seq_getval', 'select pgq.seq_getval(' || quote_literal(:'evseq') || ')'),
 ('insert_event(3)', 'select pgq.insert_event(''tq_priv'', ''t'', ''d'')'),
 ('insert_event(7)', 'select pgq.insert_event(''tq_priv'', ''t'', ''d'', null, null, null, null)'),
 ('current_event_table', 'select pgq.current_event_table(''tq_priv'')'),
 ('register_consumer', 'select pgq.register_consumer(''tq_priv'', ''newc'')'),
 ('register_consumer_at', 'select pgq.register_consumer_at(''tq_priv'', ''cp'', 1)'),
 ('unregister_consumer', 'select pgq.unregister_consumer(''tq_priv'', ''cp'')'),
 ('next_batch', 'select pgq.next_batch(''tq_priv'', ''cp'')'),
 ('next_batch_info', 'select * from pgq.next_batch_info(''tq_priv'', ''cp'')'),
 ('next_batch_custom', 'select * from pgq.next_batch_custom(''tq_priv'', ''cp'', null, 1, null)'),
 ('find_tick_helper', 'select * from pgq.find_tick_helper(1, 1, now(), 1, 1, null)'),
 ('get_batch_events', 'select * from pgq.get_batch_events(' || :pb || ')'),
 ('get_batch_cursor(3)', 'select * from pgq.get_batch_cursor(' || :pb || ', ''c'', 10)'),
 ('get_batch_cursor(4)', 'select * from pgq.get_batch_cursor(' || :pb || ', ''c'', 10, ''true'')'),
 ('batch_event_sql', 'select pgq.batch_event_sql(' || :pb || ')'),
 ('batch_event_tables', 'select pgq.batch_event_tables(' || :pb || ')'),
 ('get_batch_info', 'select * from pgq.get_batch_info(' || :pb || ')'),
 ('event_retry(int)', 'select pgq.event_retry(' || :pb || ', 1, 10)'),
 ('event_retry(ts)', 'select pgq.event_retry(' || :pb || ', 1, now())'),
 ('batch_retry', 'select pgq.batch_retry(' || :pb || ', 10)'),
 ('finish_batch', 'select pgq.finish_batch(' || :pb || ')'),
 ('force_tick', 'select pgq.force_tick(''tq_priv'')'),
 ('ticker()', 'select pgq.ticker()'),
 ('ticker(q)', 'select pgq.ticker(''tq_priv'')'),
 ('ticker(q,id,t,seq)', 'select pgq.ticker(''tq_priv'', 100, now(), 100)'),
 ('maint_retry_events', 'select pgq.maint_retry_events()'),
 ('maint_rotate_tables_step1', 'select pgq.maint_rotate_tables_step1(''tq_priv'')'),
 ('maint_rotate_tables_step2', 'select pgq.maint_rotate_tables_step2()'),
 ('maint_tables_to_vacuum', 'select * from pgq.maint_tables_to_vacuum()'),
 ('maint_operations', 'select * from pgq.maint_operations()'),
 ('upgrade_schema', 'select pgq.upgrade_schema()'),
 ('grant_perms', 'select pgq.grant_perms(''tq_priv'')'),
 ('_grant_perms_from', 'select pgq._grant_perms_from(''pgq'', ''event_template'', ''pgq'', ''event_template'')'),
 ('tune_storage', 'select pgq.tune_storage(''tq_priv'')'),
 ('seq_setval', 'select pgq.seq_setval(' || quote_literal(:'evseq') || ', 1000)'),
 ('create_queue', 'select pgq.create_queue(''tq_priv_new'')'),
 ('drop_queue(q)', 'select pgq.drop_queue(''tq_priv'')'),
 ('drop_queue(q,force)', 'select pgq.drop_queue(''tq_priv'', true)'),
 ('set_queue_config', 'select pgq.set_queue_config(''tq_priv'', ''ticker_max_count'', ''10'')'),
 ('insert_event_raw', 'select pgq.insert_event_raw(''tq_priv'', null, now(), null, null, ''t'', ''d'', null, null, null, null)'),
 ('event_retry_raw', 'select pgq.event_retry_raw(''tq_priv'', ''cp'', now(), null, now(), 0, ''t'', ''d'', null, null, null, null)'),
 ('select queue', 'select * from pgq.queue'),
 ('select tick', 'select * from pgq.tick'),
 ('select consumer', 'select * from pgq.consumer'),
 ('select subscription', 'select * from pgq.subscription'),
 ('select retry_queue', 'select * from pgq.retry_queue'),
 ('select event_template', 'select * from pgq.event_template'),
 ('select event table', 'select * from ' || :'evtbl'),
 ('insert event table', 'insert into ' || :'evtbl' || ' (ev_time, ev_type) values (now(), ''x'')'),
 ('update queue', 'update pgq.queue set queue_ticker_max_count = 5'),
 ('delete tick', 'delete from pgq.tick where false'),
 ('insert retry_queue', 'insert into pgq.retry_queue select * from pgq.retry_queue where false'),
 ('truncate event table', 'truncate ' || :'evtbl'),
 ('nextval event seq', 'select nextval(' || quote_literal(:'evseq') || ')'),
 ('usage batch_id_seq', 'select nextval(''pgq.batch_id_seq'')');
\x on
SELECT label,
       as_role('regress_none', sql) AS "none",
       as_role('regress_reader', sql) AS reader,
       as_role('regress_writer', sql) AS writer,
       as_role('regress_admin', sql) AS admin
  FROM calls ORDER BY n;
\x off
-- nothing changed
SELECT count(*) AS queues FROM pgq.queue;
SELECT pgq.next_batch('tq_priv', 'cp') = :pb AS same_batch;

-- non-owner admin: creates, configures and drops queues through SECURITY DEFINER functions
SET ROLE regress_admin;
SELECT pgq.create_queue('tq_by_admin');
SELECT pgq.set_queue_config('tq_by_admin', 'ticker_max_count', '1');
SELECT pgq.insert_event('tq_by_admin', 'a', 'b');
SELECT pgq.ticker('tq_by_admin');
SELECT pgq.register_consumer('tq_by_admin', 'admin_c');
SELECT pgq.drop_queue('tq_by_admin', true);
RESET ROLE;
SELECT count(*) AS queues FROM pgq.queue WHERE queue_name = 'tq_by_admin';
-- reader working on someone else's registration: no ownership check
SET ROLE regress_reader;
SELECT count(*) FROM pgq.get_batch_events(:pb);
SELECT pgq.event_retry(:pb, 1, 60);
SELECT pgq.finish_batch(:pb);
SELECT pgq.finish_batch(:pb);
SELECT pgq.register_consumer('tq_priv', 'reader_c');
SELECT pgq.unregister_consumer('tq_priv', 'reader_c');
RESET ROLE;
-- writer inserting, reader cannot
SET ROLE regress_writer;
SELECT pgq.insert_event('tq_priv', 'w', 'x') > 0 AS inserted;
RESET ROLE;
SET ROLE regress_reader;
SELECT pgq.insert_event('tq_priv', 'w', 'x');
RESET ROLE;
-- a role without membership
SET ROLE regress_none;
SELECT pgq.version();
SELECT count(*) FROM pgq.get_queue_info();
SELECT pgq.register_consumer('tq_priv', 'x');
SELECT pgq.create_queue('x');
RESET ROLE;

DELETE FROM pgq.retry_queue;
SELECT pgq.drop_queue('tq_priv', true);
DROP FUNCTION public.as_role(text, text);
DROP ROLE regress_none;
DROP ROLE regress_reader;
DROP ROLE regress_writer;
DROP ROLE regress_admin;
