-- row-capture triggers: pgq.logutriga, pgq.sqltriga, pgq.jsontriga (docs/triggers.md)
-- Expected output is what the original (pgq 3.5 C triggers) produces.
\set SHOW_CONTEXT never
SET DateStyle = 'ISO, YMD';
SET TimeZone = 'UTC';
SET bytea_output = 'hex';
SET extra_float_digits = 0;
SET IntervalStyle = 'postgres_verbose';
SELECT pgq.create_queue('trg_q');
CREATE SCHEMA trg;
SET search_path = trg, public;
-- events of trg_q since the last call, then forget them
CREATE FUNCTION trg.ev() RETURNS TABLE (t text, d text, e1 text, e2 text, e3 text, e4 text)
LANGUAGE plpgsql AS $$
DECLARE tbl text := pgq.current_event_table('trg_q');
BEGIN
  RETURN QUERY EXECUTE 'SELECT ev_type, ev_data, coalesce(ev_extra1, ''<NULL>''), coalesce(ev_extra2, ''<NULL>''), '
    || 'coalesce(ev_extra3, ''<NULL>''), coalesce(ev_extra4, ''<NULL>'') FROM ' || tbl || ' ORDER BY ev_id';
  EXECUTE 'DELETE FROM ' || tbl;
END $$;
-- attach one flavour (AFTER I/U/D) to a table, dropping the previous one
CREATE FUNCTION trg.attach(tbl text, fn text, VARIADIC args text[] DEFAULT '{}') RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DROP TRIGGER IF EXISTS cap ON %s', tbl);
  EXECUTE format('CREATE TRIGGER cap AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION pgq.%s(%s)',
                 tbl, fn, (SELECT string_agg(quote_literal(a), ', ') FROM unnest('{trg_q}'::text[] || args) a));
END $$;

-- 1. base table, spec vectors 1-4, all three flavours
CREATE TABLE trigger_base (id serial PRIMARY KEY, txt text, val float);
SELECT attach('trigger_base', 'logutriga');
INSERT INTO trigger_base (txt) VALUES ('text1');
INSERT INTO trigger_base (val) VALUES (1.5);
UPDATE trigger_base SET txt = 'text2' WHERE id = 1;
DELETE FROM trigger_base WHERE id = 2;
SELECT * FROM ev();
SELECT attach('trigger_base', 'sqltriga');
INSERT INTO trigger_base (id, txt) VALUES (3, 'text1');
INSERT INTO trigger_base (id, val) VALUES (4, 1.5);
UPDATE trigger_base SET txt = 'text2' WHERE id = 3;
UPDATE trigger_base SET txt = txt WHERE id = 3;
DELETE FROM trigger_base WHERE id = 4;
SELECT * FROM ev();
SELECT attach('trigger_base', 'jsontriga');
INSERT INTO trigger_base (id, txt) VALUES (5, 'text1');
INSERT INTO trigger_base (id, val) VALUES (6, 1.5);
UPDATE trigger_base SET txt = 'text2' WHERE id = 5;
DELETE FROM trigger_base WHERE id = 6;
SELECT * FROM ev();
-- primary key update
SELECT try('UPDATE trg.trigger_base SET id = 60 WHERE id = 5');
SELECT attach('trigger_base', 'sqltriga');
SELECT try('UPDATE trg.trigger_base SET id = 60 WHERE id = 5');
SELECT attach('trigger_base', 'logutriga');
SELECT try('UPDATE trg.trigger_base SET id = 60 WHERE id = 5');
SELECT * FROM ev();

-- 2. table without primary key
CREATE TABLE nopk (dat text);
SELECT attach('nopk', 'logutriga');
INSERT INTO nopk VALUES ('foo');
SELECT try($$UPDATE trg.nopk SET dat = 'bar'$$), try('DELETE FROM trg.nopk');
SELECT attach('nopk', 'jsontriga');
INSERT INTO nopk VALUES ('foo2');
SELECT attach('nopk', 'sqltriga');
INSERT INTO nopk VALUES ('foo3');
SELECT try($$UPDATE trg.nopk SET dat = 'bar'$$), try('DELETE FROM trg.nopk');
SELECT * FROM ev();
-- pkey= on a table without a key
CREATE TABLE custom_pkey (nr int, col1 text, col2 text);
SELECT attach('custom_pkey', 'logutriga', 'pkey=nr,col1');
INSERT INTO custom_pkey VALUES (1, 'col1', 'col2');
UPDATE custom_pkey SET col2 = 'col2x';
SELECT attach('custom_pkey', 'sqltriga', 'pkey=nr,col1');
UPDATE custom_pkey SET col2 = 'col2y';
SELECT try($$UPDATE trg.custom_pkey SET col1 = 'x'$$);
SELECT attach('custom_pkey', 'jsontriga', 'pkey=nr,col1');
UPDATE custom_pkey SET col2 = 'col2z';
SELECT attach('custom_pkey', 'sqltriga', 'pkey= nr col1');
DELETE FROM custom_pkey;
SELECT * FROM ev();
-- NULL key value in sqltriga
INSERT INTO custom_pkey VALUES (NULL, 'a', 'b');
SELECT try($$UPDATE trg.custom_pkey SET col2 = 'c'$$);
SELECT try($$DELETE FROM trg.custom_pkey$$);
SELECT * FROM ev();

-- 3. types (logutriga, sqltriga, jsontriga side by side)
CREATE TABLE types (id int PRIMARY KEY, val text, arr text[]);
CREATE FUNCTION trg.typecheck(typ text, VARIADIC vals text[]) RETURNS TABLE (flavour text, d text)
LANGUAGE plpgsql AS $$
DECLARE fl text; v text;
BEGIN
  EXECUTE 'DROP TABLE IF EXISTS trg.tt';
  EXECUTE format('CREATE TABLE trg.tt (id serial PRIMARY KEY, val %s, arr %s[])', typ, typ);
  FOREACH fl IN ARRAY ARRAY['logutriga', 'sqltriga', 'jsontriga'] LOOP
    PERFORM trg.attach('trg.tt', fl);
    FOREACH v IN ARRAY vals LOOP
      IF v IS NULL THEN
        EXECUTE 'INSERT INTO trg.tt (val, arr) VALUES (NULL, NULL)';
      ELSE
        EXECUTE format('INSERT INTO trg.tt (val, arr) VALUES (%L::%s, ARRAY[%L::%s, %L::%s])', v, typ, v, typ, v, typ);
      END IF;
    END LOOP;
  END LOOP;
  RETURN QUERY SELECT regexp_replace(e.t, '[:{].*', ''), e.d FROM trg.ev() e;
END $$;
SELECT * FROM typecheck('text', $$'"quoted\string$%,@"'$$, 'a b&c=d%é~!*()''', '', E'tab\there\nnl', 'ü€😀', NULL);
SELECT * FROM typecheck('bytea', E'\\x00FF01', '', 'abc');
SET bytea_output = 'escape';
SELECT * FROM typecheck('bytea', E'\\x00FF015C27', 'abc');
SET bytea_output = 'hex';
SELECT * FROM typecheck('bool', 'true', 'false');
SELECT * FROM typecheck('int2', '-32768');
SELECT * FROM typecheck('int4', '2147483647');
SELECT * FROM typecheck('int8', '9223372036854775807', '-1');
SELECT * FROM typecheck('numeric(40,15)', '100100.600500566501811');
SELECT * FROM typecheck('numeric', 'NaN', '-0.000001', '1e30');
SELECT * FROM typecheck('float8', '100100.6005005665', 'NaN', 'Infinity', '-Infinity', '-0', '1e-300');
SELECT * FROM typecheck('float4', '1.5', '3.4028235e38');
SET extra_float_digits = 3;
SELECT * FROM typecheck('float8', '100100.6005005665', '0.1');
SET extra_float_digits = 0;
SELECT * FROM typecheck('date', '1999-02-03', 'infinity', '-infinity', '0044-03-15 BC');
SELECT * FROM typecheck('timestamp', '2009-09-19 11:59:48.599', 'infinity', '2000-01-01');
SELECT * FROM typecheck('timestamptz', '2009-09-19 11:59:48.599', '-infinity', '2020-01-02 03:04:05.123456+02');
SELECT * FROM typecheck('time', '11:59:48.599');
SELECT * FROM typecheck('timetz', '11:59:48.599+03');
SELECT * FROM typecheck('interval', '2 minutes', '1 year 2 mons 3 days 04:05:06.7');
-- other DateStyle / TimeZone / IntervalStyle settings leak into the text output
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'America/New_York';
SET IntervalStyle = 'iso_8601';
SELECT * FROM typecheck('timestamptz', '2009-09-19 11:59:48.599+00');
SELECT * FROM typecheck('date', '1999-02-03');
SELECT * FROM typecheck('interval', '2 minutes');
SET DateStyle = 'German';
SET TimeZone = 'Asia/Kolkata';
SET IntervalStyle = 'sql_standard';
SELECT * FROM typecheck('timestamptz', '2009-09-19 11:59:48.599+00');
SELECT * FROM typecheck('timestamp', '2009-09-19 11:59:48');
SELECT * FROM typecheck('interval', '1 day 2 hours');
SET DateStyle = 'Postgres, MDY';
SET TimeZone = 'Australia/Adelaide';
SELECT * FROM typecheck('timestamptz', '2009-09-19 11:59:48.599+00');
SELECT * FROM typecheck('date', '1999-02-03');
SET DateStyle = 'ISO, YMD';
SET TimeZone = 'UTC';
SET IntervalStyle = 'postgres_verbose';
SELECT * FROM typecheck('json', '{"a": [1, "b"], "c": null}');
SELECT * FROM typecheck('jsonb', '{"a": [1, "b"], "c": null}');
SELECT * FROM typecheck('inet', '192.168.0.1/24', '::1');
SELECT * FROM typecheck('cidr', '10.0.0.0/8');
SELECT * FROM typecheck('uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
SELECT * FROM typecheck('money', '12.34');
SELECT * FROM typecheck('point', '(1,2)');
SELECT * FROM typecheck('oid', '12345');
SELECT * FROM typecheck('"char"', 'x');
SELECT * FROM typecheck('varchar(10)', 'abc');
SELECT * FROM typecheck('char(5)', 'ab');
SELECT * FROM typecheck('bit(4)', '1010');
SELECT * FROM typecheck('tsvector', 'a fat cat');
SELECT * FROM typecheck('int4range', '[1,5)');
SELECT * FROM typecheck('xml', '<a>x</a>');
-- int arrays, 2-D arrays, arrays with NULL
CREATE TABLE arrs (id int PRIMARY KEY, a int[], b text[][]);
SELECT attach('arrs', 'jsontriga');
INSERT INTO arrs VALUES (1, '{1,NULL}', '{{a,"b c"},{NULL,"d\"e"}}');
SELECT attach('arrs', 'logutriga');
INSERT INTO arrs VALUES (2, '{1,NULL}', '{{a,"b c"},{NULL,"d\"e"}}');
SELECT attach('arrs', 'sqltriga');
INSERT INTO arrs VALUES (3, '{1,NULL}', '{{a,"b c"},{NULL,"d\"e"}}');
-- array comparison uses text output: a no-op update is a no-op
UPDATE arrs SET a = '{1,NULL}', b = b WHERE id = 3;
UPDATE arrs SET a = '{1,2}' WHERE id = 3;
SELECT * FROM ev();
-- domains and composite
CREATE DOMAIN trg.dint AS int;
CREATE TYPE trg.pair AS (x int, y text);
CREATE TABLE dom (id dint PRIMARY KEY, p pair);
SELECT attach('dom', 'jsontriga');
INSERT INTO dom VALUES (1, ROW(1, 'a b'));
SELECT attach('dom', 'sqltriga');
INSERT INTO dom VALUES (2, ROW(2, 'x"y'));
UPDATE dom SET p = ROW(2, 'x"y') WHERE id = 2;
UPDATE dom SET p = ROW(3, 'z') WHERE id = 2;
SELECT * FROM ev();

-- 4. names: mixed case, keywords, quotes, non-ASCII, schema names
CREATE SCHEMA "Weird Schema";
CREATE TABLE "Weird Schema"."My Table" ("Id" int, "Name" text, "select" int, "user" text, "order" int,
    "a""b" text, "ключ" text, name text, data text, type text, z timestamptz, PRIMARY KEY ("Id", "Name"));
SELECT attach('"Weird Schema"."My Table"', 'logutriga');
INSERT INTO "Weird Schema"."My Table" VALUES (1, 'x\y''z', 3, 'u', 4, 'q', 'к', 'n', 'd', 't', '2020-01-02 03:04:05.123456+02');
SELECT attach('"Weird Schema"."My Table"', 'sqltriga');
INSERT INTO "Weird Schema"."My Table" VALUES (2, 'x\y''z', 3, 'u', 4, 'q', 'к', 'n', 'd', 't', NULL);
UPDATE "Weird Schema"."My Table" SET "select" = 5, z = NULL, "a""b" = 'Q', "ключ" = NULL WHERE "Id" = 1;
DELETE FROM "Weird Schema"."My Table" WHERE "Id" = 2;
SELECT attach('"Weird Schema"."My Table"', 'jsontriga');
UPDATE "Weird Schema"."My Table" SET "select" = 6 WHERE "Id" = 1;
SELECT * FROM ev();
SET quote_all_identifiers = on;
SELECT attach('"Weird Schema"."My Table"', 'sqltriga');
UPDATE "Weird Schema"."My Table" SET "select" = 7 WHERE "Id" = 1;
RESET quote_all_identifiers;
SELECT * FROM ev();
-- primary key order differs from column order; key names come from the index
CREATE TABLE pk2 (a int, b int, c text, PRIMARY KEY (b, a));
SELECT attach('pk2', 'logutriga');
INSERT INTO pk2 VALUES (1, 2, 'x');
SELECT attach('pk2', 'sqltriga');
UPDATE pk2 SET c = 'y';
SELECT attach('pk2', 'jsontriga');
DELETE FROM pk2;
SELECT * FROM ev();

-- 5. ignore=, backup, magic columns, expressions, when=
CREATE TABLE ign (dat1 text PRIMARY KEY, col1 text, col2 text);
SELECT attach('ign', 'logutriga', 'ignore=col2');
INSERT INTO ign VALUES ('a', 'col1', 'col2');
UPDATE ign SET col2 = 'col2z';
UPDATE ign SET col2 = col2;
UPDATE ign SET col1 = 'col1y';
SELECT attach('ign', 'sqltriga', 'ignore=col2');
UPDATE ign SET col2 = 'col2w';
UPDATE ign SET col2 = col2;
UPDATE ign SET col1 = 'col1x', col2 = 'c';
INSERT INTO ign VALUES ('b', 'col1', 'col2');
SELECT attach('ign', 'jsontriga', 'ignore=col1 col2');
UPDATE ign SET col1 = 'q' WHERE dat1 = 'b';
UPDATE ign SET dat1 = dat1 WHERE dat1 = 'b';
DELETE FROM ign WHERE dat1 = 'b';
SELECT * FROM ev();
CREATE TABLE bkp (nr int4 PRIMARY KEY, col1 text, stamp date);
SELECT attach('bkp', 'logutriga', 'backup');
INSERT INTO bkp VALUES (1, 'text', '1999-02-03');
UPDATE bkp SET col1 = 'col1x';
SELECT attach('bkp', 'sqltriga', 'backup');
UPDATE bkp SET col1 = 'col1y';
SELECT attach('bkp', 'jsontriga', 'backup', 'ignore=stamp');
UPDATE bkp SET col1 = 'col1z';
DELETE FROM bkp;
SELECT * FROM ev();
CREATE TABLE magic (id int PRIMARY KEY, val text, _pgq_ev_type text DEFAULT 'xt', _pgq_ev_extra1 text DEFAULT 'E1',
    _pgq_ev_extra2 text DEFAULT 'e2', _pgq_ev_extra3 text DEFAULT 'e3', _pgq_ev_extra4 text, _pgq_ev_data text);
SELECT attach('magic', 'logutriga');
INSERT INTO magic (id, val) VALUES (1, 'v');
SELECT attach('magic', 'jsontriga', 'ev_extra1=$$over$$');
UPDATE magic SET val = 'w', _pgq_ev_data = 'D';
SELECT attach('magic', 'sqltriga');
DELETE FROM magic;
SELECT * FROM ev();
CREATE TABLE badmagic (id int PRIMARY KEY, _pgq_ev_foo text);
SELECT attach('badmagic', 'logutriga');
SELECT try('INSERT INTO trg.badmagic VALUES (1)');
CREATE TABLE expr (nr int PRIMARY KEY, col1 text, col2 text, "select" int, "Val" text);
SELECT attach('expr', 'logutriga', 'ev_extra1=(nr+3)::text', 'ev_extra2=col1||col2', 'ev_extra3=$$333$$', 'ev_extra4=$$444$$', 'ev_type=$$badidea$$');
INSERT INTO expr VALUES (1, 'col1', 'col2');
SELECT attach('expr', 'sqltriga', 'ev_data=col1 || $$-$$ || nr', 'ev_extra3=null', 'ev_extra4=select', 'ev_extra2=Val');
INSERT INTO expr VALUES (2, 'a', 'b', 7, 'V');
UPDATE expr SET col1 = 'c' WHERE nr = 2;
SELECT attach('expr', 'jsontriga', $$ev_extra1=E'x\\y' || 'nr' || /* nr */ $q$nr$q$ -- nr$$, 'ev_extra2=', 'ev_extra3=NR');
SELECT try($$INSERT INTO trg.expr VALUES (3, 'a', 'b')$$);
SELECT attach('expr', 'jsontriga', $$ev_extra1=E'x\\y' || 'nr' || /* nr */ $q$nr$q$ -- nr$$, 'ev_extra2=', 'ev_extra3=nr::text || 1e3');
INSERT INTO expr VALUES (3, 'a', 'b');
SELECT attach('expr', 'logutriga', 'when=col2=$$foo$$');
INSERT INTO expr VALUES (4, 'col1', 'col2');
INSERT INTO expr VALUES (5, 'col1', 'foo');
UPDATE expr SET col1 = 'x' WHERE nr IN (4, 5);
SELECT * FROM ev();
-- expression errors
SELECT attach('expr', 'logutriga', 'when=nr');
SELECT try($$INSERT INTO trg.expr VALUES (10, 'a', 'b')$$);
SELECT attach('expr', 'logutriga', 'when=null::bool');
SELECT try($$INSERT INTO trg.expr VALUES (10, 'a', 'b')$$);
SELECT attach('expr', 'logutriga', 'ev_extra1=generate_series(1, nr)');
SELECT try($$INSERT INTO trg.expr VALUES (10, 'a', 'b')$$);
SELECT attach('expr', 'logutriga', 'ev_extra1=1 FROM pg_class WHERE false');
SELECT try($$INSERT INTO trg.expr VALUES (10, 'a', 'b')$$);
SELECT attach('expr', 'logutriga', 'ev_extra1="Val"');
SELECT try($$INSERT INTO trg.expr VALUES (10, 'a', 'b')$$);
SELECT attach('expr', 'logutriga', 'ev_extra1=''unterminated');
SELECT try($$INSERT INTO trg.expr VALUES (10, 'a', 'b')$$);
SELECT attach('expr', 'logutriga', 'ev_extra1=nosuchcol');
SELECT try($$INSERT INTO trg.expr VALUES (10, 'a', 'b')$$);
SELECT * FROM ev();

-- 6. argument and calling-convention errors
CREATE TABLE errs (id int PRIMARY KEY, v text);
CREATE TRIGGER e1 AFTER INSERT ON errs FOR EACH ROW EXECUTE FUNCTION pgq.logutriga();
SELECT try('INSERT INTO trg.errs VALUES (1)');
DROP TRIGGER e1 ON errs;
CREATE TRIGGER e1 AFTER INSERT ON errs FOR EACH STATEMENT EXECUTE FUNCTION pgq.sqltriga('trg_q');
SELECT try('INSERT INTO trg.errs VALUES (1)');
DROP TRIGGER e1 ON errs;
CREATE TRIGGER e1 AFTER INSERT ON errs FOR EACH ROW EXECUTE FUNCTION pgq.jsontriga('trg_q', 'skip');
SELECT try('INSERT INTO trg.errs VALUES (1)');
DROP TRIGGER e1 ON errs;
CREATE TRIGGER e1 AFTER INSERT ON errs FOR EACH ROW EXECUTE FUNCTION pgq.jsontriga('trg_q', 'SKIP', 'deny');
SELECT try('INSERT INTO trg.errs VALUES (1)');
DROP TRIGGER e1 ON errs;
CREATE TRIGGER e1 AFTER INSERT ON errs FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('no_such_queue');
SELECT try('INSERT INTO trg.errs VALUES (1)');
DROP TRIGGER e1 ON errs;
SELECT try($$CREATE TRIGGER e1 AFTER TRUNCATE ON trg.errs FOR EACH STATEMENT EXECUTE FUNCTION pgq.logutriga('trg_q', 'ignore=v')$$),
       try('TRUNCATE trg.errs');
DROP TRIGGER e1 ON errs;
CREATE TRIGGER e1 AFTER TRUNCATE ON errs FOR EACH STATEMENT EXECUTE FUNCTION pgq.logutriga('trg_q', 'pkey=v');
SELECT try('TRUNCATE trg.errs');
DROP TRIGGER e1 ON errs;
CREATE TRIGGER e1 AFTER TRUNCATE ON errs FOR EACH STATEMENT EXECUTE FUNCTION pgq.sqltriga('trg_q', 'backup');
SELECT try('TRUNCATE trg.errs');
DROP TRIGGER e1 ON errs;
CREATE TRIGGER e1 AFTER TRUNCATE ON errs FOR EACH STATEMENT EXECUTE FUNCTION pgq.jsontriga('trg_q', 'when=true');
SELECT try('TRUNCATE trg.errs');
DROP TRIGGER e1 ON errs;
CREATE TRIGGER e1 AFTER TRUNCATE ON errs FOR EACH STATEMENT EXECUTE FUNCTION pgq.jsontriga('trg_q', 'ev_extra1=1');
SELECT try('TRUNCATE trg.errs');
DROP TRIGGER e1 ON errs;
SELECT * FROM ev();

-- 7. TRUNCATE, deny, SKIP, BEFORE triggers, session_replication_role
CREATE TABLE trunc (dat1 text PRIMARY KEY, v text);
CREATE TRIGGER tl AFTER TRUNCATE ON trunc FOR EACH STATEMENT EXECUTE FUNCTION pgq.logutriga('trg_q');
TRUNCATE trunc;
DROP TRIGGER tl ON trunc;
CREATE TRIGGER ts BEFORE TRUNCATE ON trunc FOR EACH STATEMENT EXECUTE FUNCTION pgq.sqltriga('trg_q', 'SKIP');
TRUNCATE trunc;
DROP TRIGGER ts ON trunc;
CREATE TRIGGER tj AFTER TRUNCATE ON trunc FOR EACH STATEMENT EXECUTE FUNCTION pgq.jsontriga('trg_q');
TRUNCATE trunc;
DROP TRIGGER tj ON trunc;
SELECT * FROM ev();
CREATE TRIGGER td AFTER TRUNCATE ON trunc FOR EACH STATEMENT EXECUTE FUNCTION pgq.logutriga('trg_q', 'deny');
SELECT try('TRUNCATE trg.trunc');
DROP TRIGGER td ON trunc;
SELECT attach('trunc', 'sqltriga', 'deny');
SELECT try($$INSERT INTO trg.trunc VALUES ('a')$$);
SET session_replication_role = 'local';
INSERT INTO trunc VALUES ('a');
UPDATE trunc SET v = 'x';
SET session_replication_role = 'replica';
DELETE FROM trunc;
SET session_replication_role = 'origin';
SELECT try($$DELETE FROM trg.trunc$$);
SELECT * FROM trunc;
SELECT * FROM ev();
-- BEFORE triggers: the row passes, or is suppressed with SKIP (the event is produced)
CREATE TABLE bef (id int PRIMARY KEY, v text);
CREATE TRIGGER b BEFORE INSERT OR UPDATE OR DELETE ON bef FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('trg_q');
INSERT INTO bef VALUES (1, 'a');
UPDATE bef SET v = 'b';
SELECT * FROM bef;
DROP TRIGGER b ON bef;
CREATE TRIGGER b BEFORE INSERT OR UPDATE OR DELETE ON bef FOR EACH ROW EXECUTE FUNCTION pgq.jsontriga('trg_q', 'SKIP');
INSERT INTO bef VALUES (2, 'a');
UPDATE bef SET v = 'c';
DELETE FROM bef;
SELECT * FROM bef;
SET session_replication_role = 'local';
INSERT INTO bef VALUES (3, 'local');
SET session_replication_role = 'origin';
SELECT * FROM bef;
SELECT * FROM ev();

-- 8. schema changes mid-session: the cache follows ALTER TABLE at once
CREATE TABLE alt (id int PRIMARY KEY, a text, b text);
SELECT attach('alt', 'sqltriga');
INSERT INTO alt VALUES (1, 'a', 'b');
ALTER TABLE alt ADD COLUMN c int DEFAULT 7;
INSERT INTO alt VALUES (2, 'a', 'b');
ALTER TABLE alt DROP COLUMN a;
INSERT INTO alt VALUES (3, 'b', 8);
ALTER TABLE alt RENAME COLUMN b TO "B";
UPDATE alt SET "B" = 'bb' WHERE id = 3;
ALTER TABLE alt DROP CONSTRAINT alt_pkey;
SELECT try($$UPDATE trg.alt SET c = 9$$);
INSERT INTO alt VALUES (4, 'x', 9);
ALTER TABLE alt ADD PRIMARY KEY (id, c);
UPDATE alt SET "B" = 'y' WHERE id = 4;
ALTER TABLE alt ALTER COLUMN c TYPE text;
UPDATE alt SET "B" = 'z' WHERE id = 4;
ALTER TABLE alt RENAME TO alt2;
DELETE FROM alt2 WHERE id = 4;
SELECT * FROM ev();
-- CREATE OR REPLACE TRIGGER with other arguments takes effect at once
CREATE TABLE repl (id int PRIMARY KEY, v text);
CREATE TRIGGER r AFTER INSERT OR UPDATE ON repl FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('trg_q');
INSERT INTO repl VALUES (1, 'a');
CREATE OR REPLACE TRIGGER r AFTER INSERT OR UPDATE ON repl FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('trg_q', 'ignore=v', 'ev_extra4=v');
INSERT INTO repl VALUES (2, 'b');
UPDATE repl SET v = 'c';
CREATE OR REPLACE TRIGGER r AFTER INSERT OR UPDATE ON repl FOR EACH ROW EXECUTE FUNCTION pgq.jsontriga('trg_q');
UPDATE repl SET v = 'd' WHERE id = 1;
SELECT * FROM ev();
-- partitioned table: the trigger fires per partition
CREATE TABLE part (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE part_1 PARTITION OF part FOR VALUES FROM (0) TO (10);
CREATE TABLE part_2 PARTITION OF part FOR VALUES FROM (10) TO (20);
SELECT attach('part', 'logutriga');
INSERT INTO part VALUES (1, 'a'), (11, 'b');
UPDATE part SET v = 'c';
SELECT * FROM ev();
-- generated and dropped columns
CREATE TABLE gen (id int PRIMARY KEY, x int, drop_me text, y int GENERATED ALWAYS AS (x * 2) STORED);
ALTER TABLE gen DROP COLUMN drop_me;
SELECT attach('gen', 'logutriga');
INSERT INTO gen (id, x) VALUES (1, 5);
UPDATE gen SET x = 6;
SELECT attach('gen', 'jsontriga');
UPDATE gen SET x = 7;
SELECT * FROM ev();

-- 9. privileges: the trigger inserts as the extension owner; the user needs pgq_writer
CREATE ROLE trg_user;
CREATE TABLE priv (id int PRIMARY KEY);
GRANT USAGE ON SCHEMA trg TO trg_user;
GRANT ALL ON priv TO trg_user;
SELECT attach('priv', 'logutriga');
SET ROLE trg_user;
SELECT try('INSERT INTO trg.priv VALUES (1)');
RESET ROLE;
GRANT pgq_writer TO trg_user;
SET ROLE trg_user;
SELECT try('INSERT INTO trg.priv VALUES (2)');
RESET ROLE;
REVOKE pgq_writer FROM trg_user;
SET ROLE trg_user;
SELECT try('INSERT INTO trg.priv VALUES (20)');
RESET ROLE;
GRANT EXECUTE ON FUNCTION pgq.insert_event(text, text, text, text, text, text, text) TO trg_user;
SET ROLE trg_user;
SELECT try('INSERT INTO trg.priv VALUES (21)');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION pgq.insert_event(text, text, text, text, text, text, text) FROM trg_user;
SELECT * FROM ev();
-- disable_insert queue refuses the event, and so the change
UPDATE pgq.queue SET queue_disable_insert = true WHERE queue_name = 'trg_q';
SELECT try('INSERT INTO trg.priv VALUES (3)');
UPDATE pgq.queue SET queue_disable_insert = false WHERE queue_name = 'trg_q';
SELECT * FROM priv ORDER BY 1;

-- cleanup
RESET search_path;
DROP SCHEMA trg CASCADE;
DROP SCHEMA "Weird Schema" CASCADE;
DROP OWNED BY trg_user;
DROP ROLE trg_user;
SELECT pgq.drop_queue('trg_q');
RESET DateStyle;
RESET TimeZone;
RESET bytea_output;
RESET extra_float_digits;
RESET IntervalStyle;
