-- Properties of this implementation beyond PgQ 3.5 (not compared with the original).
\set VERBOSITY terse
\set SHOW_CONTEXT never

-- every SECURITY DEFINER function pins search_path
SELECT p.oid::regprocedure AS unpinned_secdef
  FROM pg_proc p
 WHERE p.pronamespace = 'pgq'::regnamespace AND p.prosecdef
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%');

-- worker_status(): with pgq.enabled = off only the launcher is there
SELECT worker, database IS NULL AS no_db, pid IS NOT NULL AS has_pid FROM pgq.worker_status();

-- every ticker form holds the ticker advisory lock for the rest of its transaction
SELECT pgq.create_queue('ours_q');
BEGIN;
SELECT pgq.ticker() >= 0 AS ticked;
SELECT count(*) AS ticker_locks FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid()
   AND classid = (8099567109638021995 >> 32)::oid AND objid = (8099567109638021995 & 4294967295)::oid;
ROLLBACK;

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
