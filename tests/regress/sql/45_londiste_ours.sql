-- cascade schemas: behaviour where this extension deliberately differs from the
-- original (expected output is ours): pinned search_path, operators a user puts
-- before pg_catalog, trigger names of long queue names, hostile names
\set SHOW_CONTEXT never
SET client_min_messages = warning;

-- every function of the cascade schemas pins search_path; the five listed run the
-- caller's stored SQL with the caller's path and pin it themselves for the rest
SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) AS args
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname IN ('pgq_node', 'londiste', 'pgq_ext', 'pgq_coop')
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=pg\_catalog,%')
 ORDER BY 1, 2, 3;
SELECT count(*) > 90 AS many_functions FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname IN ('pgq_node', 'londiste', 'pgq_ext', 'pgq_coop');

-- a schema before pg_catalog with operators that shadow the ones the maintenance
-- functions use: they must not run
CREATE SCHEMA regress_evil;
CREATE TABLE regress_evil.fired (op text);
CREATE FUNCTION regress_evil.lt_tstz(timestamptz, timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$ BEGIN INSERT INTO regress_evil.fired VALUES ('<'); RETURN $1 OPERATOR(pg_catalog.<) $2; END $$;
CREATE OPERATOR regress_evil.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = regress_evil.lt_tstz);
CREATE FUNCTION regress_evil.eq_text(text, text) RETURNS boolean
LANGUAGE plpgsql AS $$ BEGIN INSERT INTO regress_evil.fired VALUES ('='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR regress_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_evil.eq_text);
CREATE FUNCTION regress_evil.ge_interval(interval, interval) RETURNS boolean
LANGUAGE plpgsql AS $$ BEGIN INSERT INTO regress_evil.fired VALUES ('>='); RETURN $1 OPERATOR(pg_catalog.>=) $2; END $$;
CREATE OPERATOR regress_evil.>= (LEFTARG = interval, RIGHTARG = interval, FUNCTION = regress_evil.ge_interval);
SELECT * FROM pgq_node.register_location('rq_evil', 'e1', 'dbname=e1', false);
SELECT * FROM pgq_node.create_node('rq_evil', 'root', 'e1', 'ew', NULL, NULL, NULL);
CREATE SEQUENCE public.evil_seq;
SELECT * FROM londiste.local_add_seq('rq_evil', 'public.evil_seq');
SET search_path = regress_evil, pg_catalog, public;
SELECT 'a'::text = 'a'::text AS shadowed;
SELECT count(*) AS fired_by_us FROM regress_evil.fired;
TRUNCATE regress_evil.fired;
SELECT londiste.periodic_maintenance();
SELECT * FROM londiste.root_check_seqs('rq_evil');
SELECT * FROM londiste.root_check_seqs('rq_evil', 100);
SELECT pgq_node.maint_watermark('rq_evil');
SELECT * FROM londiste.get_table_list('rq_evil');
SELECT * FROM londiste.get_seq_list('rq_evil');
SELECT * FROM pgq_node.get_node_info('rq_evil');
SELECT * FROM londiste.get_valid_pending_fkeys('rq_evil');
-- the functions that keep the caller's path for the caller's SQL
CREATE TABLE public.evil_parent (id int4 PRIMARY KEY);
CREATE TABLE public.evil_child (id int4 PRIMARY KEY, pid int4 CONSTRAINT evil_fk REFERENCES public.evil_parent);
SELECT * FROM londiste.local_add_table('rq_evil', 'public.evil_child');
SELECT * FROM londiste.find_table_fkeys('public.evil_child');
SELECT londiste.drop_table_fkey('public.evil_child', 'evil_fk');
SELECT londiste.restore_table_fkey('public.evil_child', 'evil_fk');
SELECT conname FROM pg_catalog.pg_constraint WHERE conrelid OPERATOR(pg_catalog.=) 'public.evil_child'::pg_catalog.regclass AND contype OPERATOR(pg_catalog.=) 'f';
SELECT * FROM londiste.local_remove_table('rq_evil', 'public.evil_child');
SELECT * FROM londiste.global_remove_table('rq_evil', 'public.evil_child');
SELECT count(*) AS fired FROM regress_evil.fired;
RESET search_path;
SELECT * FROM londiste.local_remove_seq('rq_evil', 'public.evil_seq');
DROP SEQUENCE public.evil_seq;
DROP TABLE public.evil_child, public.evil_parent;
SELECT * FROM pgq_node.drop_node('rq_evil', 'e1');
DROP SCHEMA regress_evil CASCADE;

-- trigger names stay unique and within 63 bytes for long queue names; the original's
-- names are kept while they fit
CREATE SCHEMA lng;
CREATE TABLE lng.t (id int4 PRIMARY KEY, v text);
CREATE TABLE lng.s (id int4 PRIMARY KEY, v text);
CREATE FUNCTION lng.mkroot(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgq_node.register_location(q, 'ln1', 'dbname=ln1', false);
  PERFORM pgq_node.create_node(q, 'root', 'ln1', 'lw', NULL, NULL, NULL);
END $$;
CREATE FUNCTION lng.events(q text) RETURNS TABLE (ev_type text, ev_data text, ev_extra1 text)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE 'select ev_type, ev_data, ev_extra1 from '
    || (SELECT queue_data_pfx FROM pgq.queue WHERE queue_name = q) || ' order by ev_id';
END $$;
CREATE VIEW lng.trg AS
SELECT tgrelid::regclass::text AS tbl, octet_length(tgname) AS len, tgname,
       CASE WHEN tgtype & 2 = 2 THEN 'before' ELSE 'after' END AS timing,
       split_part(encode(tgargs, 'escape'), '\000', 1) = (SELECT max(queue_name) FROM pgq_node.node_info WHERE queue_name LIKE 'lq%') AS own_queue
  FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN ('lng.t'::regclass, 'lng.s'::regclass);
SELECT lng.mkroot('lq' || repeat('x', 51));
SELECT * FROM londiste.local_add_table('lq' || repeat('x', 51), 'lng.t');
SELECT * FROM lng.trg ORDER BY tbl, tgname;
SELECT * FROM londiste.local_add_table('lq' || repeat('x', 51), 'lng.s', array['tgflags=BI', 'skip']);
SELECT * FROM lng.trg ORDER BY tbl, tgname;
SELECT * FROM londiste.local_remove_table('lq' || repeat('x', 51), 'lng.t');
SELECT * FROM londiste.local_remove_table('lq' || repeat('x', 51), 'lng.s');
SELECT count(*) FROM lng.trg;
SELECT * FROM pgq_node.drop_node('lq' || repeat('x', 51), 'ln1');
SELECT lng.mkroot('lq' || repeat('y', 98));
SELECT * FROM londiste.local_add_table('lq' || repeat('y', 98), 'lng.t');
SELECT * FROM londiste.local_add_table('lq' || repeat('y', 98), 'lng.t');
SELECT * FROM lng.trg ORDER BY tbl, tgname;
-- the triggers capture into the long-named queue
INSERT INTO lng.t VALUES (1, 'one');
TRUNCATE lng.t;
SELECT * FROM lng.events('lq' || repeat('y', 98));
SELECT * FROM londiste.local_change_handler('lq' || repeat('y', 98), 'lng.t', array['tgflags=BIUS'], NULL);
SELECT * FROM lng.trg ORDER BY tbl, tgname;
SELECT * FROM londiste.local_add_table('lq' || repeat('y', 98), 'lng.s', array['tgflags=BI', 'skip']);
SELECT * FROM lng.trg ORDER BY tbl, tgname;
SELECT * FROM londiste.drop_table_triggers('lq' || repeat('y', 98), 'lng.t');
SELECT * FROM lng.trg ORDER BY tbl, tgname;
SELECT * FROM londiste.local_remove_table('lq' || repeat('y', 98), 'lng.s');
SELECT count(*) FROM lng.trg;
SELECT * FROM pgq_node.drop_node('lq' || repeat('y', 98), 'ln1');

-- hostile names: a queue name with quotes, a semicolon, a dot and mixed case; tables
-- whose names need quoting; a schema with a dot in its name
SELECT lng.mkroot('Q.x''y"; drop table lng.t; --');
CREATE SCHEMA "Hos""tile";
CREATE TABLE "Hos""tile"."T'; drop table lng.t; --" (id int4 PRIMARY KEY, "V" text);
SELECT * FROM londiste.local_add_table('Q.x''y"; drop table lng.t; --', 'Hos"tile.T''; drop table lng.t; --', array['tgflags=BIUD', 'skip']);
SELECT tgname, replace(encode(tgargs, 'escape'), '\000', '|') AS args
  FROM pg_trigger WHERE tgrelid = '"Hos""tile"."T''; drop table lng.t; --"'::regclass ORDER BY 1;
INSERT INTO "Hos""tile"."T'; drop table lng.t; --" VALUES (1, 'x');
SELECT * FROM lng.events('Q.x''y"; drop table lng.t; --');
SELECT * FROM londiste.local_remove_table('Q.x''y"; drop table lng.t; --', 'Hos"tile.T''; drop table lng.t; --');
SELECT count(*) FROM pg_trigger WHERE tgrelid = '"Hos""tile"."T''; drop table lng.t; --"'::regclass;
SELECT count(*) AS lng_t_still_there FROM lng.t;
SELECT * FROM pgq_node.drop_node('Q.x''y"; drop table lng.t; --', 'ln1');
CREATE SCHEMA "d.s";
CREATE TABLE "d.s".child (id int4 PRIMARY KEY, pid int4 CONSTRAINT "c'fk" REFERENCES lng.t);
SELECT * FROM londiste.find_table_fkeys('lng.t');
SELECT fkey_def FROM londiste.find_table_fkeys('lng.t') \gset
ALTER TABLE "d.s".child DROP CONSTRAINT "c'fk";
:fkey_def;
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = '"d.s".child'::regclass AND contype = 'f';
DROP SCHEMA "d.s" CASCADE;
DROP SCHEMA "Hos""tile" CASCADE;
DROP SCHEMA lng CASCADE;
