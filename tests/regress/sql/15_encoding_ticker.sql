-- Queues with names that are not UTF-8 (this implementation only: the bytes of a LATIN1
-- or SQL_ASCII database all the way through the ticker and its notifications). The file
-- stays ASCII: names are made with decode().
\set VERBOSITY terse
SELECT current_database() AS orig_db \gset
CREATE DATABASE pgq_enc_tick ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C';
\c pgq_enc_tick
SET client_min_messages = warning;
CREATE EXTENSION pgq;
RESET client_min_messages;
CREATE FUNCTION x(h text) RETURNS text LANGUAGE sql AS
  $$ SELECT pg_catalog.convert_from(pg_catalog.decode(h, 'hex'), pg_catalog.getdatabaseencoding()) $$;
CREATE FUNCTION show(t text) RETURNS text LANGUAGE sql AS
  $$ SELECT pg_catalog.encode(pg_catalog.convert_to(t, pg_catalog.getdatabaseencoding()), 'escape') $$;
-- 'qé' (0xe9): create_queue ticks it at once through pgq.ticker(text)
SELECT pgq.create_queue(x('71e9'));
SELECT pgq.create_queue('plain');
SELECT pgq.register_consumer(x('71e9'), 'c');
SELECT pgq.insert_event(x('71e9'), 't', x('64e9')) > 0 AS inserted;
-- the ticker over all queues, and the one-queue form, with the notification
SELECT pgq.force_tick(x('71e9')) IS NOT NULL AS forced;
SELECT pgq.ticker() >= 1 AS ticked_all;
SELECT pgq.force_tick(x('71e9')) IS NOT NULL AS forced;
SELECT pgq.ticker(x('71e9')) IS NOT NULL AS ticked_one;
SELECT show(queue_name), last_tick_id >= 3 AS ticks FROM pgq.get_queue_info() ORDER BY 1;
SELECT pgq.next_batch(x('71e9'), 'c') IS NOT NULL AS got_batch;
SELECT show(ev_data) FROM pgq.get_batch_events(
    (SELECT current_batch FROM pgq.get_consumer_info(x('71e9'), 'c')));
-- a broken queue with such a name is reported (bytes escaped in the message) and skipped
UPDATE pgq.queue SET queue_tick_seq = 'nowhere.seq' WHERE queue_name = x('71e9');
SELECT pgq.force_tick('plain') IS NOT NULL AS forced;
SELECT pgq.ticker() >= 1 AS others_ticked;
\c :orig_db
DROP DATABASE pgq_enc_tick;
