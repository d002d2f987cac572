-- Event tables that are no longer as pgq created them: the insert goes through the
-- executor (constraints, casts, defaults, views, partition routing apply) or fails
-- with a clear error; nothing is written behind the table's back and later reads
-- work. Every case inserts once before the change, so a cached shape is in use.
\set VERBOSITY terse
SET client_min_messages = warning;
-- try(sql): run it; 'ok' or the SQLSTATE and message (event table numbers masked)
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN others THEN
    RETURN SQLSTATE || ': ' || pg_catalog.regexp_replace(SQLERRM, 'event_[0-9]+(_[0-9]+)?', 'event_N', 'g');
END $$;
-- ins(queue, type, data, extra1, extra2): one insert_event through try()
CREATE FUNCTION pg_temp.ins(q text, t text, d text, e1 text DEFAULT NULL, e2 text DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
    SELECT pg_temp.try(pg_catalog.format('SELECT pgq.insert_event(%L, %L, %L, %L, %L, NULL, NULL)', q, t, d, e1, e2))
$$;

-- 1. ev_extra1 text -> int8 (the direct path would store a pointer). A column type
-- can only change once the table no longer inherits.
SELECT pgq.create_queue('shape_int8');
SELECT queue_data_pfx AS pfx, queue_data_pfx || '_0' AS cur FROM pgq.queue WHERE queue_name = 'shape_int8' \gset
SELECT pg_temp.ins('shape_int8', 'before', 'd', '7');
ALTER TABLE :cur NO INHERIT :pfx;
ALTER TABLE :cur ALTER COLUMN ev_extra1 TYPE int8 USING ev_extra1::int8;
SELECT pg_temp.ins('shape_int8', 'after', 'd', '8');
SELECT pg_temp.ins('shape_int8', 'after', 'd', NULL);
SELECT ev_type, ev_data, ev_extra1 FROM :cur ORDER BY ev_id;

-- 2. ev_extra2 text -> uuid
SELECT pgq.create_queue('shape_uuid');
SELECT queue_data_pfx AS pfx, queue_data_pfx || '_0' AS cur FROM pgq.queue WHERE queue_name = 'shape_uuid' \gset
SELECT pg_temp.ins('shape_uuid', 'before', 'd', NULL, NULL);
ALTER TABLE :cur NO INHERIT :pfx;
ALTER TABLE :cur ALTER COLUMN ev_extra2 TYPE uuid USING ev_extra2::uuid;
SELECT pg_temp.ins('shape_uuid', 'after', 'd', NULL, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
SELECT pg_temp.ins('shape_uuid', 'after', 'd', NULL, NULL);
SELECT ev_type, ev_extra2 FROM :cur ORDER BY ev_id;

-- 3. ev_data text -> jsonb
SELECT pgq.create_queue('shape_jsonb');
SELECT queue_data_pfx AS pfx, queue_data_pfx || '_0' AS cur FROM pgq.queue WHERE queue_name = 'shape_jsonb' \gset
SELECT pg_temp.ins('shape_jsonb', 'before', '{"a": 1}');
ALTER TABLE :cur NO INHERIT :pfx;
ALTER TABLE :cur ALTER COLUMN ev_data TYPE jsonb USING ev_data::jsonb;
SELECT pg_temp.ins('shape_jsonb', 'after', '{"b": 2}');
SELECT pg_temp.ins('shape_jsonb', 'after', NULL);
SELECT ev_type, ev_data, ev_data -> 'a' AS a FROM :cur ORDER BY ev_id;

-- 4. ev_type text -> varchar(3): the length is checked
SELECT pgq.create_queue('shape_varchar');
SELECT queue_data_pfx AS pfx, queue_data_pfx || '_0' AS cur FROM pgq.queue WHERE queue_name = 'shape_varchar' \gset
SELECT pg_temp.ins('shape_varchar', 'abc', 'd');
ALTER TABLE :cur NO INHERIT :pfx;
ALTER TABLE :cur ALTER COLUMN ev_type TYPE varchar(3);
SELECT pg_temp.ins('shape_varchar', 'xyz', 'd');
SELECT pg_temp.ins('shape_varchar', 'toolong', 'd');
SELECT ev_type, ev_data FROM :cur ORDER BY ev_id;

-- 5. NOT NULL added to ev_extra1 of the current table
SELECT pgq.create_queue('shape_notnull');
SELECT queue_data_pfx || '_0' AS cur FROM pgq.queue WHERE queue_name = 'shape_notnull' \gset
SELECT pg_temp.ins('shape_notnull', 'before', 'd', 'e0');
ALTER TABLE :cur ALTER COLUMN ev_extra1 SET NOT NULL;
SELECT pg_temp.ins('shape_notnull', 'after', 'd', NULL);
SELECT pg_temp.ins('shape_notnull', 'after', 'd', 'e1');
-- the triggers insert through the same path
CREATE TABLE shape_src (id int PRIMARY KEY, v text);
CREATE TRIGGER shape_src_trg AFTER INSERT ON shape_src FOR EACH ROW
    EXECUTE PROCEDURE pgq.logutriga('shape_notnull', 'ev_extra1=NULL');
SELECT pg_temp.try('INSERT INTO shape_src VALUES (1, ''x'')');
DROP TRIGGER shape_src_trg ON shape_src;
SELECT ev_type, ev_data, ev_extra1 FROM :cur ORDER BY ev_id;

-- 6. a default of ev_txid that is not txid_current() is applied
SELECT pgq.create_queue('shape_default');
SELECT queue_data_pfx || '_0' AS cur FROM pgq.queue WHERE queue_name = 'shape_default' \gset
SELECT pg_temp.ins('shape_default', 'before', 'd');
ALTER TABLE :cur ALTER COLUMN ev_txid SET DEFAULT 42;
SELECT pg_temp.ins('shape_default', 'after', 'd');
SELECT ev_type, ev_txid = 42 AS default_applied FROM :cur ORDER BY ev_id;

-- 7. the current table replaced by a view
SELECT pgq.create_queue('shape_view');
SELECT queue_data_pfx || '_0' AS cur, queue_data_pfx || '_0_old' AS old, 'event_' || queue_id || '_0_old' AS oldname,
       'event_' || queue_id || '_0' AS curname
  FROM pgq.queue WHERE queue_name = 'shape_view' \gset
SELECT pg_temp.ins('shape_view', 'before', 'd');
ALTER TABLE :cur RENAME TO :oldname;
-- an updatable view: the insert lands in the table under it
CREATE VIEW :cur AS SELECT * FROM :old;
SELECT pg_temp.ins('shape_view', 'via view', 'd');
SELECT ev_type FROM :old ORDER BY ev_id;
-- a view that is not updatable
DROP VIEW :cur;
CREATE VIEW :cur AS SELECT DISTINCT * FROM :old;
SELECT pg_temp.ins('shape_view', 'refused', 'd');
-- with an INSTEAD OF trigger
CREATE FUNCTION pg_temp.view_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.ev_type := 'instead: ' || NEW.ev_type;
    NEW.ev_txid := pg_catalog.txid_current();
    EXECUTE pg_catalog.format('INSERT INTO %s SELECT ($1).*', TG_ARGV[0]) USING NEW;
    RETURN NEW;
END $$;
CREATE TRIGGER view_ins INSTEAD OF INSERT ON :cur FOR EACH ROW EXECUTE PROCEDURE pg_temp.view_ins(:'old');
SELECT pg_temp.ins('shape_view', 'trigger', 'd');
SELECT ev_type FROM :cur ORDER BY ev_id;
-- the table back in place: the queue works as before
DROP VIEW :cur;
ALTER TABLE :old RENAME TO :curname;
SELECT pg_temp.ins('shape_view', 'back', 'd');
SELECT ev_type FROM :cur ORDER BY ev_id;

-- 8. the current table replaced by a partitioned table
SELECT pgq.create_queue('shape_part');
SELECT queue_data_pfx || '_0' AS cur, queue_data_pfx || '_0_old' AS old, 'event_' || queue_id || '_0_old' AS oldname,
       'event_' || queue_id || '_0' AS curname, queue_data_pfx || '_0_p' AS part
  FROM pgq.queue WHERE queue_name = 'shape_part' \gset
SELECT pg_temp.ins('shape_part', 'before', 'd');
ALTER TABLE :cur RENAME TO :oldname;
CREATE TABLE :cur (LIKE pgq.event_template INCLUDING DEFAULTS) PARTITION BY LIST (ev_type);
-- no partition for the row yet
SELECT pg_temp.ins('shape_part', 'p1', 'd');
CREATE TABLE :part PARTITION OF :cur FOR VALUES IN ('p1');
SELECT pg_temp.ins('shape_part', 'p1', 'd');
SELECT pg_temp.ins('shape_part', 'p2', 'd');
SELECT ev_type, ev_data FROM :cur ORDER BY ev_id;
SELECT ev_type, ev_data FROM :part ORDER BY ev_id;
DROP TABLE :cur;
ALTER TABLE :old RENAME TO :curname;
SELECT pg_temp.ins('shape_part', 'back', 'd');
SELECT ev_type, ev_data FROM :cur ORDER BY ev_id;

-- 9. the current table dropped: a clear error, not an internal one
SELECT pgq.create_queue('shape_gone');
SELECT queue_data_pfx AS pfx, queue_data_pfx || '_0' AS cur FROM pgq.queue WHERE queue_name = 'shape_gone' \gset
SELECT pg_temp.ins('shape_gone', 'before', 'd');
DROP TABLE :cur;
SELECT pg_temp.ins('shape_gone', 'after', 'd');
CREATE TABLE :cur () INHERITS (:pfx);
SELECT pg_temp.ins('shape_gone', 'again', 'd');
SELECT ev_type FROM :cur ORDER BY ev_id;

-- every table can still be read whole
SELECT q.queue_name, (SELECT pg_temp.try('SELECT count(*), max(ev_id), string_agg(ev_data::text, '','') FROM ' || q.queue_data_pfx)) AS read
  FROM pgq.queue q WHERE q.queue_name LIKE 'shape\_%' ORDER BY 1;

DROP TABLE shape_src;
SELECT queue_name, pg_temp.try(pg_catalog.format('SELECT pgq.drop_queue(%L, true)', queue_name))
  FROM pgq.queue WHERE queue_name LIKE 'shape\_%' ORDER BY queue_name;
