-- Properties of this implementation beyond PgQ 3.5 (not compared with the original).
\set VERBOSITY terse
\set SHOW_CONTEXT never

-- every SECURITY DEFINER function pins search_path
SELECT p.oid::regprocedure AS unpinned_secdef
  FROM pg_proc p
 WHERE p.pronamespace = 'pgq'::regnamespace AND p.prosecdef
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%');
-- ... and so does every other SQL / PL/pgSQL function, except get_batch_cursor (it runs
-- the caller's own filter text, with the caller's rights and names)
SELECT p.oid::regprocedure AS unpinned
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'pgq'::regnamespace AND l.lanname IN ('sql', 'plpgsql')
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')
 ORDER BY 1::text;
-- the Rust (C) functions without a pinned path: the triggers (the writer's own
-- expressions), the producer hot path (fully qualified statements) and helpers that
-- run no SQL; a new function missing from this list must pin its search_path
SELECT p.oid::regprocedure AS unpinned_c
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'pgq'::regnamespace AND l.lanname = 'c'
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')
 ORDER BY 1::text;

-- worker_status(): with pgq.enabled = off only the launcher is there
SELECT worker, database IS NULL AS no_db, pid IS NOT NULL AS has_pid FROM pgq.worker_status();

-- the ticker forms hold the ticker lock for the rest of their transaction: an advisory
-- lock with a tag (objsubid 28785) that no pg_advisory_* function can take
SELECT pgq.create_queue('ours_q');
BEGIN;
SELECT pgq.ticker() >= 0 AS ticked;
SELECT count(*) AS ticker_locks FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND mode = 'ExclusiveLock'
   AND classid = 0 AND objid = x'7469636b'::int::oid AND objsubid = 28785;
ROLLBACK;
-- the old public key blocks nothing
SELECT pg_advisory_lock(8099567109638021995);
SELECT pgq.ticker() >= 0 AS ticked_while_key_held;
SELECT pg_advisory_unlock(8099567109638021995);

-- the insert cache follows rotation within the session
SELECT pgq.insert_event('ours_q', 'before', '1');
UPDATE pgq.queue SET queue_rotation_period = '0', queue_switch_time = now() - interval '1 hour'
 WHERE queue_name = 'ours_q';
SELECT pgq.maint_rotate_tables_step1('ours_q');
SELECT pgq.maint_rotate_tables_step2();
SELECT pgq.insert_event('ours_q', 'after', '2');
SELECT ev_type, tableoid::regclass::text = pgq.current_event_table('ours_q') AS in_current
  FROM pgq.event_template WHERE ev_type IN ('before', 'after') ORDER BY ev_id;

-- ... and config changes made with a plain UPDATE
UPDATE pgq.queue SET queue_disable_insert = true WHERE queue_name = 'ours_q';
SELECT pgq.insert_event('ours_q', 'refused', '3');
UPDATE pgq.queue SET queue_disable_insert = false WHERE queue_name = 'ours_q';
SELECT pgq.insert_event('ours_q', 'accepted', '4') > 0 AS ok;

-- an event table with a user trigger and an extra column goes through the general path
CREATE TABLE ours_seen (ev_id bigint, note text);
CREATE FUNCTION ours_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ours_seen VALUES (NEW.ev_id, NEW.ev_data);
    RETURN NEW;
END $$;
DO $$
BEGIN
    EXECUTE 'CREATE TRIGGER ours_trg AFTER INSERT ON ' || pgq.current_event_table('ours_q')
         || ' FOR EACH ROW EXECUTE FUNCTION ours_trg()';
    EXECUTE 'ALTER TABLE ' || pgq.current_event_table('ours_q') || ' ADD COLUMN ours_extra text DEFAULT ''dflt''';
END $$;
SELECT pgq.insert_event('ours_q', 'triggered', '5') AS id \gset
SELECT note FROM ours_seen WHERE ev_id = :id;
SELECT ev_data FROM pgq.event_template WHERE ev_id = :id;
DO $$
BEGIN
    EXECUTE 'DROP TRIGGER ours_trg ON ' || pgq.current_event_table('ours_q');
    EXECUTE 'ALTER TABLE ' || pgq.current_event_table('ours_q') || ' DROP COLUMN ours_extra';
END $$;
SELECT pgq.insert_event('ours_q', 'plain again', '6') > 0 AS ok;

-- large payloads are TOASTed by the direct path
SELECT pgq.insert_event('ours_q', 'big', repeat('x', 100000)) AS big \gset
SELECT length(ev_data) FROM pgq.event_template WHERE ev_id = :big;

-- batches see all of it
SELECT pgq.register_consumer('ours_q', 'c1');
SELECT pgq.insert_event('ours_q', 'last', '7') > 0 AS ok;
SELECT pgq.force_tick('ours_q') IS NOT NULL AS forced;
SELECT pgq.ticker('ours_q') IS NOT NULL AS ticked;
SELECT pgq.next_batch('ours_q', 'c1') IS NOT NULL AS got_batch;
SELECT ev_type, left(ev_data, 10) AS data, length(ev_data) AS len FROM pgq.get_batch_events(
    (SELECT current_batch FROM pgq.get_consumer_info('ours_q', 'c1')));
SELECT pgq.drop_queue('ours_q', true);
DROP TABLE ours_seen;
DROP FUNCTION ours_trg();

-- stored names are quoted wherever they reach SQL: a crafted name is just a name
SELECT pgq.create_queue('ours_names');
UPDATE pgq.queue SET queue_tick_seq = 'pgq.event_x; select 1'
 WHERE queue_name = 'ours_names';
SELECT pgq.grant_perms('ours_names');
-- the ticker reports that queue and ticks the others
SELECT pgq.create_queue('ours_fine');
SELECT pgq.force_tick('ours_fine') IS NOT NULL AS forced;
SELECT pgq.ticker() >= 1 AS others_ticked;
SELECT pgq.ticker('ours_names');
UPDATE pgq.queue SET queue_tick_seq = 'pgq.event_' || queue_id || '_tick_seq'
 WHERE queue_name = 'ours_names';
UPDATE pgq.queue SET queue_data_pfx = 'pgq.event_x; select 1; --'
 WHERE queue_name = 'ours_names';
SELECT pgq.tune_storage('ours_names');
UPDATE pgq.queue SET queue_data_pfx = 'pgq.event_' || queue_id
 WHERE queue_name = 'ours_names';
SELECT pgq.tune_storage('ours_names');
SELECT pgq.drop_queue('ours_names');

-- the external ticker refuses tick times that are not finite
UPDATE pgq.queue SET queue_external_ticker = true WHERE queue_name = 'ours_fine';
SELECT pgq.ticker('ours_fine', 1000, 'infinity', 1);
-- a bad tick already stored (written by hand) does not stop the others
INSERT INTO pgq.tick (tick_queue, tick_id, tick_time, tick_event_seq)
SELECT queue_id, 1001, 'infinity', 1 FROM pgq.queue WHERE queue_name = 'ours_fine';
UPDATE pgq.queue SET queue_external_ticker = false WHERE queue_name = 'ours_fine';
SELECT pgq.create_queue('ours_fine2');
SELECT pgq.force_tick('ours_fine2') IS NOT NULL AS forced;
SELECT pgq.ticker() >= 1 AS others_ticked;
SELECT pgq.drop_queue('ours_fine');
SELECT pgq.drop_queue('ours_fine2');

-- batch queries name every operator explicitly and quote the tables
SELECT pgq.create_queue('ours_bq');
SELECT pgq.register_consumer('ours_bq', 'c');
SELECT pgq.insert_event('ours_bq', 't', 'd') > 0 AS ok;
SELECT pgq.force_tick('ours_bq') IS NOT NULL AS forced;
SELECT pgq.ticker('ours_bq') IS NOT NULL AS ticked;
SELECT pgq.next_batch('ours_bq', 'c') AS b \gset
SELECT regexp_replace(pgq.batch_event_sql(:b), '[0-9]+', 'N', 'g') AS batch_sql;
SELECT pgq.finish_batch(:b);
SELECT pgq.unregister_consumer('ours_bq', 'c');
SELECT pgq.drop_queue('ours_bq');
