-- Text as bytes in the server encoding: triggers and insert_event in a LATIN1 and
-- an SQL_ASCII database. The file stays ASCII: non-ASCII bytes are made with
-- decode(), and payloads are shown escaped (encode(convert_to(...), 'escape')).
-- Expected output produced by the original (SkyTools pgq 3.5).
\set VERBOSITY terse
SELECT current_database() AS orig_db \gset
CREATE DATABASE pgq_enc_latin1 ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C';
CREATE DATABASE pgq_enc_ascii ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C';

-- the same statements in both databases
\c pgq_enc_latin1
SELECT pg_catalog.getdatabaseencoding();
SET client_min_messages = warning;
CREATE EXTENSION pgq;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
SET TimeZone = 'UTC';
-- x(hex): the bytes as text in the server encoding; show(text): them escaped
CREATE FUNCTION x(h text) RETURNS text LANGUAGE sql AS
  $$ SELECT pg_catalog.convert_from(pg_catalog.decode(h, 'hex'), pg_catalog.getdatabaseencoding()) $$;
CREATE FUNCTION show(t text) RETURNS text LANGUAGE sql AS
  $$ SELECT pg_catalog.encode(pg_catalog.convert_to(t, pg_catalog.getdatabaseencoding()), 'escape') $$;
SELECT pgq.create_queue('encq');

-- a table whose name, column names and values hold bytes 0xe9, 0xff, 0xa0
DO $$ BEGIN
  EXECUTE pg_catalog.format('CREATE TABLE %I (id int4 PRIMARY KEY, %I text, v text, ts timestamptz)',
    x('74e9'), x('6be9'));
END $$;
SELECT show(relname) FROM pg_class WHERE relname = x('74e9');
DO $$ BEGIN
  EXECUTE pg_catalog.format('CREATE TRIGGER tl AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE PROCEDURE pgq.logutriga(%L, %L)', x('74e9'), 'encq', 'backup');
  EXECUTE pg_catalog.format('CREATE TRIGGER ts AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE PROCEDURE pgq.sqltriga(%L, %L)', x('74e9'), 'encq', 'backup');
  EXECUTE pg_catalog.format('CREATE TRIGGER tj AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE PROCEDURE pgq.jsontriga(%L, %L)', x('74e9'), 'encq', 'backup');
  -- expressions and lists naming the non-ASCII column; a non-ASCII literal
  EXECUTE pg_catalog.format('CREATE TRIGGER tx AFTER INSERT ON %I FOR EACH ROW EXECUTE PROCEDURE pgq.logutriga(%L, %L, %L, %L, %L)',
    x('74e9'), 'encq', 'ignore=' || x('6be9'), 'ev_extra3=' || pg_catalog.quote_literal(x('e9ffa0')) || ' || v',
    'ev_extra4=' || pg_catalog.quote_literal(x('e9')), 'when=v <> ' || pg_catalog.quote_literal(x('ff')));
  EXECUTE pg_catalog.format('CREATE TRIGGER tk AFTER INSERT OR UPDATE ON %I FOR EACH ROW EXECUTE PROCEDURE pgq.sqltriga(%L, %L)',
    x('74e9'), 'encq', 'pkey=id,' || x('6be9'));
END $$;

DO $$ BEGIN
  EXECUTE pg_catalog.format('INSERT INTO %I VALUES (1, %L, %L, %L)', x('74e9'), x('e9'),
    x('636166e9202278220127') || E'\\' || x('a0ff'), '2020-01-02 03:04:05+02');
  EXECUTE pg_catalog.format('INSERT INTO %I VALUES (2, NULL, %L, NULL)', x('74e9'), x('ff'));
  EXECUTE pg_catalog.format('UPDATE %I SET v = v || %L WHERE id = 1', x('74e9'), x('e9'));
  EXECUTE pg_catalog.format('DELETE FROM %I WHERE id = 2', x('74e9'));
END $$;

-- insert_event and insert_event_raw with such text
SELECT pgq.insert_event('encq', x('e9'), x('64e9'));
SELECT pgq.insert_event('encq', x('74ff'), x('64ff'), x('31e9'), x('32e9'), x('33e9'), x('34e9'));
SELECT pgq.insert_event_raw('encq', 1000, '2001-02-03 04:05:06+00', 7, 2, x('72e9'), x('64e9'), x('31a0'), NULL, NULL, x('34a0'));
-- the queue name is text too (renamed in the table: here only insert_event is tested)
SELECT pgq.create_queue('encq2');
UPDATE pgq.queue SET queue_name = x('71e9') WHERE queue_name = 'encq2';
SELECT pgq.insert_event(x('71e9'), 'plain', x('e9'));
SELECT show(ev_type), show(ev_data) FROM pgq.event_2;
SELECT pgq.insert_event(x('71ea'), 'no such', 'queue');

SELECT ev_id > 999 AS raw, show(ev_type) AS t, show(ev_data) AS d, show(ev_extra1) AS e1,
       show(ev_extra2) AS e2, show(ev_extra3) AS e3, show(ev_extra4) AS e4,
       octet_length(ev_data) AS len
  FROM pgq.event_1 ORDER BY ev_id;
-- the payloads in hex for the bytes that escape shows as octal
SELECT pg_catalog.encode(pg_catalog.convert_to(ev_data, pg_catalog.getdatabaseencoding()), 'hex')
  FROM pgq.event_1 WHERE ev_type = 'I:id' ORDER BY ev_id;
\c pgq_enc_ascii
SELECT pg_catalog.getdatabaseencoding();
SET client_min_messages = warning;
CREATE EXTENSION pgq;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
SET TimeZone = 'UTC';
-- x(hex): the bytes as text in the server encoding; show(text): them escaped
CREATE FUNCTION x(h text) RETURNS text LANGUAGE sql AS
  $$ SELECT pg_catalog.convert_from(pg_catalog.decode(h, 'hex'), pg_catalog.getdatabaseencoding()) $$;
CREATE FUNCTION show(t text) RETURNS text LANGUAGE sql AS
  $$ SELECT pg_catalog.encode(pg_catalog.convert_to(t, pg_catalog.getdatabaseencoding()), 'escape') $$;
SELECT pgq.create_queue('encq');

-- a table whose name, column names and values hold bytes 0xe9, 0xff, 0xa0
DO $$ BEGIN
  EXECUTE pg_catalog.format('CREATE TABLE %I (id int4 PRIMARY KEY, %I text, v text, ts timestamptz)',
    x('74e9'), x('6be9'));
END $$;
SELECT show(relname) FROM pg_class WHERE relname = x('74e9');
DO $$ BEGIN
  EXECUTE pg_catalog.format('CREATE TRIGGER tl AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE PROCEDURE pgq.logutriga(%L, %L)', x('74e9'), 'encq', 'backup');
  EXECUTE pg_catalog.format('CREATE TRIGGER ts AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE PROCEDURE pgq.sqltriga(%L, %L)', x('74e9'), 'encq', 'backup');
  EXECUTE pg_catalog.format('CREATE TRIGGER tj AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE PROCEDURE pgq.jsontriga(%L, %L)', x('74e9'), 'encq', 'backup');
  -- expressions and lists naming the non-ASCII column; a non-ASCII literal
  EXECUTE pg_catalog.format('CREATE TRIGGER tx AFTER INSERT ON %I FOR EACH ROW EXECUTE PROCEDURE pgq.logutriga(%L, %L, %L, %L, %L)',
    x('74e9'), 'encq', 'ignore=' || x('6be9'), 'ev_extra3=' || pg_catalog.quote_literal(x('e9ffa0')) || ' || v',
    'ev_extra4=' || pg_catalog.quote_literal(x('e9')), 'when=v <> ' || pg_catalog.quote_literal(x('ff')));
  EXECUTE pg_catalog.format('CREATE TRIGGER tk AFTER INSERT OR UPDATE ON %I FOR EACH ROW EXECUTE PROCEDURE pgq.sqltriga(%L, %L)',
    x('74e9'), 'encq', 'pkey=id,' || x('6be9'));
END $$;

DO $$ BEGIN
  EXECUTE pg_catalog.format('INSERT INTO %I VALUES (1, %L, %L, %L)', x('74e9'), x('e9'),
    x('636166e9202278220127') || E'\\' || x('a0ff'), '2020-01-02 03:04:05+02');
  EXECUTE pg_catalog.format('INSERT INTO %I VALUES (2, NULL, %L, NULL)', x('74e9'), x('ff'));
  EXECUTE pg_catalog.format('UPDATE %I SET v = v || %L WHERE id = 1', x('74e9'), x('e9'));
  EXECUTE pg_catalog.format('DELETE FROM %I WHERE id = 2', x('74e9'));
END $$;

-- insert_event and insert_event_raw with such text
SELECT pgq.insert_event('encq', x('e9'), x('64e9'));
SELECT pgq.insert_event('encq', x('74ff'), x('64ff'), x('31e9'), x('32e9'), x('33e9'), x('34e9'));
SELECT pgq.insert_event_raw('encq', 1000, '2001-02-03 04:05:06+00', 7, 2, x('72e9'), x('64e9'), x('31a0'), NULL, NULL, x('34a0'));
-- the queue name is text too (renamed in the table: here only insert_event is tested)
SELECT pgq.create_queue('encq2');
UPDATE pgq.queue SET queue_name = x('71e9') WHERE queue_name = 'encq2';
SELECT pgq.insert_event(x('71e9'), 'plain', x('e9'));
SELECT show(ev_type), show(ev_data) FROM pgq.event_2;
SELECT pgq.insert_event(x('71ea'), 'no such', 'queue');

SELECT ev_id > 999 AS raw, show(ev_type) AS t, show(ev_data) AS d, show(ev_extra1) AS e1,
       show(ev_extra2) AS e2, show(ev_extra3) AS e3, show(ev_extra4) AS e4,
       octet_length(ev_data) AS len
  FROM pgq.event_1 ORDER BY ev_id;
-- the payloads in hex for the bytes that escape shows as octal
SELECT pg_catalog.encode(pg_catalog.convert_to(ev_data, pg_catalog.getdatabaseencoding()), 'hex')
  FROM pgq.event_1 WHERE ev_type = 'I:id' ORDER BY ev_id;

\c :orig_db
DROP DATABASE pgq_enc_latin1;
DROP DATABASE pgq_enc_ascii;
