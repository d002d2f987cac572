-- A replaced pgq.insert_event / pgq.insert_event_raw is what the triggers and the
-- insert_event forms call (by name, as the original does); once restored, events
-- land in the queue again. Expected output produced by the original (SkyTools
-- pgq 3.5): its insert_event is PL/pgSQL, ours C, so the definitions are saved with
-- pg_get_functiondef and restored from that text.
\set VERBOSITY terse
SET client_min_messages = warning;
SELECT pgq.create_queue('rq');
CREATE TEMP TABLE saved_defs AS
SELECT p.oid::regprocedure::text AS sig, pg_catalog.pg_get_functiondef(p.oid) AS def
  FROM pg_catalog.pg_proc p
 WHERE p.oid IN ('pgq.insert_event(text,text,text,text,text,text,text)'::regprocedure,
                 'pgq.insert_event_raw(text,bigint,timestamptz,integer,integer,text,text,text,text,text,text)'::regprocedure);
SELECT sig FROM saved_defs ORDER BY sig;
CREATE FUNCTION pg_temp.restore_defs() RETURNS void LANGUAGE plpgsql AS $$
DECLARE d text;
BEGIN
    FOR d IN SELECT def FROM saved_defs ORDER BY sig LOOP
        EXECUTE d;
    END LOOP;
END $$;
RESET client_min_messages;

-- tables with every trigger kind and option
CREATE TABLE rt_base (id int4 PRIMARY KEY, txt text, val float8);
CREATE TABLE rt_nopk (nr int4, col1 text, col2 text);
CREATE TABLE rt_skip (id int4 PRIMARY KEY, txt text);
CREATE TABLE rt_magic (id int4 PRIMARY KEY, txt text, _pgq_ev_type text DEFAULT 'mt', _pgq_ev_extra4 text DEFAULT 'm4');
CREATE TRIGGER l1 AFTER INSERT OR UPDATE OR DELETE ON rt_base FOR EACH ROW EXECUTE PROCEDURE pgq.logutriga('rq', 'backup');
CREATE TRIGGER s1 AFTER INSERT OR UPDATE OR DELETE ON rt_base FOR EACH ROW EXECUTE PROCEDURE pgq.sqltriga('rq', 'ignore=val');
CREATE TRIGGER j1 AFTER INSERT OR UPDATE OR DELETE ON rt_base FOR EACH ROW EXECUTE PROCEDURE pgq.jsontriga('rq', 'backup');
CREATE TRIGGER lt AFTER TRUNCATE ON rt_base FOR EACH STATEMENT EXECUTE PROCEDURE pgq.logutriga('rq');
CREATE TRIGGER st AFTER TRUNCATE ON rt_base FOR EACH STATEMENT EXECUTE PROCEDURE pgq.sqltriga('rq');
CREATE TRIGGER jt AFTER TRUNCATE ON rt_base FOR EACH STATEMENT EXECUTE PROCEDURE pgq.jsontriga('rq');
CREATE TRIGGER l2 AFTER INSERT OR UPDATE OR DELETE ON rt_nopk FOR EACH ROW EXECUTE PROCEDURE pgq.logutriga('rq', 'pkey=nr,col1',
    'ev_extra1=(nr+3)::text', 'ev_extra2=col1||col2', 'ev_extra3=$$333$$', 'ev_extra4=$$444$$', 'ev_type=$$custom$$', 'when=col2 <> $$skip$$');
CREATE TRIGGER s2 AFTER INSERT OR UPDATE OR DELETE ON rt_nopk FOR EACH ROW EXECUTE PROCEDURE pgq.sqltriga('rq', 'pkey=nr,col1', 'ev_data=$$d:$$||col2');
CREATE TRIGGER j2 AFTER INSERT OR UPDATE OR DELETE ON rt_nopk FOR EACH ROW EXECUTE PROCEDURE pgq.jsontriga('rq', 'pkey=nr', 'when=nr > 1');
CREATE TRIGGER k1 BEFORE INSERT OR UPDATE OR DELETE ON rt_skip FOR EACH ROW EXECUTE PROCEDURE pgq.logutriga('rq', 'SKIP');
CREATE TRIGGER k2 BEFORE INSERT OR UPDATE OR DELETE ON rt_skip FOR EACH ROW EXECUTE PROCEDURE pgq.sqltriga('rq', 'SKIP');
CREATE TRIGGER m1 AFTER INSERT OR UPDATE ON rt_magic FOR EACH ROW EXECUTE PROCEDURE pgq.logutriga('rq');
CREATE TRIGGER m2 AFTER INSERT OR UPDATE ON rt_magic FOR EACH ROW EXECUTE PROCEDURE pgq.jsontriga('rq', 'ev_extra3=$$x3$$');

-- the same statements, fired three times: replaced insert_event, replaced
-- insert_event_raw, restored definitions
CREATE FUNCTION pg_temp.fire_all(round int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING '--- round %', round;
    INSERT INTO rt_base VALUES (round, 'text' || round, 1.5);
    UPDATE rt_base SET txt = 'upd' WHERE id = round;
    UPDATE rt_base SET val = 2.5 WHERE id = round;       -- sqltriga: ignored column only
    DELETE FROM rt_base WHERE id = round;
    TRUNCATE rt_base;
    INSERT INTO rt_nopk VALUES (round, 'c1', 'c2');
    INSERT INTO rt_nopk VALUES (round + 10, 'c1', 'skip');
    UPDATE rt_nopk SET col2 = 'c2x' WHERE nr = round;
    DELETE FROM rt_nopk WHERE nr = round;
    INSERT INTO rt_skip VALUES (round, 'skipped');
    INSERT INTO rt_magic (id, txt) VALUES (round, 'm');
    UPDATE rt_magic SET txt = 'm2', _pgq_ev_type = NULL WHERE id = round;
    -- replica: these triggers do not fire; local: they fire and do nothing
    SET LOCAL session_replication_role = replica;
    INSERT INTO rt_base VALUES (100 + round, 'replica', NULL);
    SET LOCAL session_replication_role = local;
    INSERT INTO rt_base VALUES (200 + round, 'local', NULL);
    INSERT INTO rt_skip VALUES (200 + round, 'local passes');
    SET LOCAL session_replication_role = origin;
    DELETE FROM rt_base WHERE id > 100;
    DELETE FROM rt_skip;
    PERFORM pgq.insert_event('rq', 'direct3', 'd3');
    PERFORM pgq.insert_event('rq', 'direct7', 'd7', 'e1', 'e2', 'e3', 'e4');
END $$;

-- 1. pgq.insert_event replaced by a function that only reports its arguments
CREATE OR REPLACE FUNCTION pgq.insert_event(queue_name text, ev_type text, ev_data text,
    ev_extra1 text, ev_extra2 text, ev_extra3 text, ev_extra4 text)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'insert_event(%, %, %, %, %, %, %)', queue_name, ev_type, ev_data,
        ev_extra1, ev_extra2, ev_extra3, ev_extra4;
    RETURN 1;
END $$;
SELECT pg_temp.fire_all(1);
SELECT pgq.insert_event('rq', 'ret', 'value');
-- the replacement decides about queues too: this one does not exist
CREATE TABLE rt_noq (id int4 PRIMARY KEY);
CREATE TRIGGER n1 AFTER INSERT ON rt_noq FOR EACH ROW EXECUTE PROCEDURE pgq.logutriga('no_such_queue');
INSERT INTO rt_noq VALUES (1);
SELECT pgq.insert_event('no_such_queue', 'x', 'y');
SELECT count(*) AS events_in_queue FROM pgq.event_template e JOIN pgq.queue q ON e.tableoid::regclass::text LIKE q.queue_data_pfx || '%' WHERE q.queue_name = 'rq';
SELECT pg_temp.restore_defs();

-- 2. pgq.insert_event_raw replaced: insert_event (both forms) and the triggers reach it
CREATE OR REPLACE FUNCTION pgq.insert_event_raw(queue_name text, ev_id bigint, ev_time timestamptz,
    ev_owner integer, ev_retry integer, ev_type text, ev_data text,
    ev_extra1 text, ev_extra2 text, ev_extra3 text, ev_extra4 text)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'insert_event_raw(%, %, time %, %, %, %, %, %, %, %, %)', queue_name, ev_id,
        CASE WHEN ev_time IS NULL THEN 'null' ELSE 'set' END, ev_owner, ev_retry, ev_type, ev_data,
        ev_extra1, ev_extra2, ev_extra3, ev_extra4;
    RETURN 2;
END $$;
SELECT pg_temp.fire_all(2);
SELECT pgq.insert_event('rq', 'ret', 'value');
SELECT pgq.insert_event('rq', 'ret', 'value', NULL, NULL, NULL, 'x');
SELECT count(*) AS events_in_queue FROM pgq.event_template e JOIN pgq.queue q ON e.tableoid::regclass::text LIKE q.queue_data_pfx || '%' WHERE q.queue_name = 'rq';

-- 3. both restored: the events are stored
SELECT pg_temp.restore_defs();
SELECT pg_temp.fire_all(3);
SELECT pgq.insert_event('rq', 'ret', 'value') > 0 AS stored;
INSERT INTO rt_noq VALUES (2);
SELECT pgq.insert_event('no_such_queue', 'x', 'y');
SELECT ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4
  FROM pgq.event_template e JOIN pgq.queue q ON e.tableoid::regclass::text LIKE q.queue_data_pfx || '%'
 WHERE q.queue_name = 'rq' ORDER BY ev_id;

DROP TABLE rt_base, rt_nopk, rt_skip, rt_magic, rt_noq;
SELECT pgq.drop_queue('rq');
