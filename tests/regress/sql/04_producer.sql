-- producer side: insert_event, insert_event_raw, current_event_table, queue flags, sequences
\set SHOW_CONTEXT never
SELECT pgq.create_queue('tq_prod');
-- 3 and 7 argument forms
SELECT pgq.insert_event('tq_prod', 'type1', 'data1');
SELECT pgq.insert_event('tq_prod', 'type2', 'data2', 'e1', 'e2', 'e3', 'e4');
SELECT pgq.insert_event('tq_prod', NULL, NULL);
SELECT pgq.insert_event('tq_prod', NULL, NULL, NULL, NULL, NULL, NULL);
SELECT pgq.insert_event('tq_prod', 'ü', repeat('x', 10), '', ' ', NULL, 'ключ');
SELECT ev_id, ev_owner, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4,
       ev_txid IS NOT NULL AS has_txid, ev_time IS NOT NULL AS has_time
  FROM pgq.event_template ORDER BY ev_id;
-- events land in the current table
SELECT pgq.current_event_table('tq_prod') = (SELECT queue_data_pfx || '_' || queue_cur_table FROM pgq.queue WHERE queue_name = 'tq_prod') AS cur_table_ok;
SELECT regexp_replace(pgq.current_event_table('tq_prod'), '[0-9]+_', 'N_') AS cur_table;
SELECT val($$select count(*) from $$ || pgq.current_event_table('tq_prod')) AS rows_in_cur_table;
-- errors
SELECT try($$select pgq.insert_event(NULL, 'a', 'b')$$);
SELECT try($$select pgq.insert_event(NULL, 'a', 'b', NULL, NULL, NULL, NULL)$$);
SELECT try($$select pgq.insert_event('no_such_queue', 'a', 'b')$$);
SELECT try($$select pgq.insert_event('no_such_queue', 'a', 'b', 'c', 'd', 'e', 'f')$$);
SELECT try($$select pgq.insert_event_raw(NULL, NULL, now(), NULL, NULL, 'a', 'b', NULL, NULL, NULL, NULL)$$);
SELECT try($$select pgq.insert_event_raw('no_such_queue', NULL, now(), NULL, NULL, 'a', 'b', NULL, NULL, NULL, NULL)$$);
SELECT try($$select pgq.current_event_table('no_such_queue')$$);
SELECT try($$select pgq.current_event_table(NULL)$$);

-- insert_event_raw: explicit id, owner, retry; the event sequence is bumped anyway
SELECT pgq.seq_getval(queue_event_seq) AS seq_before FROM pgq.queue WHERE queue_name = 'tq_prod';
SELECT pgq.insert_event_raw('tq_prod', 1000, '2001-02-03 04:05:06+00', 7, 3, 'raw', 'rawdata', 'x1', NULL, NULL, 'x4');
SELECT pgq.seq_getval(queue_event_seq) AS seq_after FROM pgq.queue WHERE queue_name = 'tq_prod';
SELECT pgq.insert_event_raw('tq_prod', NULL, NULL, NULL, NULL, 'raw2', NULL, NULL, NULL, NULL, NULL);
SELECT ev_id, ev_time = '2001-02-03 04:05:06+00' AS time_kept, ev_owner, ev_retry, ev_type, ev_data, ev_extra1, ev_extra4
  FROM pgq.event_template WHERE ev_type LIKE 'raw%' ORDER BY ev_id;
SELECT ev_time IS NOT NULL AS time_defaulted FROM pgq.event_template WHERE ev_type = 'raw2';
-- duplicate explicit id is accepted by the table (no unique index), the bump still happens
SELECT pgq.insert_event_raw('tq_prod', 1000, now(), NULL, NULL, 'dup', NULL, NULL, NULL, NULL, NULL);
SELECT pgq.seq_getval(queue_event_seq) AS seq_after_dup FROM pgq.queue WHERE queue_name = 'tq_prod';
-- a failed insert (unknown queue) does not touch other queues; a rolled back one still bumps
BEGIN;
SELECT pgq.insert_event('tq_prod', 'rolled', 'back');
ROLLBACK;
SELECT pgq.seq_getval(queue_event_seq) AS seq_after_rollback FROM pgq.queue WHERE queue_name = 'tq_prod';
SELECT count(*) AS rolled_back_rows FROM pgq.event_template WHERE ev_type = 'rolled';

-- queue_disable_insert and session_replication_role
UPDATE pgq.queue SET queue_disable_insert = true WHERE queue_name = 'tq_prod';
SELECT pgq.seq_getval(queue_event_seq) AS seq_before_refused FROM pgq.queue WHERE queue_name = 'tq_prod';
SELECT try($$select pgq.insert_event('tq_prod', 'x', 'origin')$$);
SELECT try($$select pgq.insert_event('tq_prod', 'x', 'origin', NULL, NULL, NULL, NULL)$$);
SELECT try($$select pgq.insert_event_raw('tq_prod', 5000, now(), NULL, NULL, 'x', 'origin', NULL, NULL, NULL, NULL)$$);
SELECT try($$select pgq.current_event_table('tq_prod')$$);
-- the refused inserts still bumped the sequence
SELECT pgq.seq_getval(queue_event_seq) AS seq_after_refused FROM pgq.queue WHERE queue_name = 'tq_prod';
SET session_replication_role = local;
SELECT try($$select pgq.insert_event('tq_prod', 'x', 'local')$$);
SELECT try($$select pgq.current_event_table('tq_prod')$$);
SET session_replication_role = replica;
SELECT pgq.insert_event('tq_prod', 'x', 'replica');
SELECT regexp_replace(pgq.current_event_table('tq_prod'), '[0-9]+_', 'N_') AS cur_table;
SET session_replication_role = origin;
SELECT try($$select pgq.insert_event('tq_prod', 'x', 'origin again')$$);
RESET session_replication_role;
UPDATE pgq.queue SET queue_disable_insert = false WHERE queue_name = 'tq_prod';
SELECT ev_type, ev_data FROM pgq.event_template WHERE ev_type = 'x' ORDER BY ev_id;

-- queue_per_tx_limit
UPDATE pgq.queue SET queue_per_tx_limit = 2 WHERE queue_name = 'tq_prod';
BEGIN;
SELECT pgq.insert_event('tq_prod', 'lim', '1');
SELECT pgq.insert_event('tq_prod', 'lim', '2');
SELECT pgq.insert_event('tq_prod', 'lim', '3');
ROLLBACK;
BEGIN;
SELECT pgq.insert_event('tq_prod', 'lim', 'a') > 0 AS ok;
SELECT pgq.insert_event('tq_prod', 'lim', 'b', NULL, NULL, NULL, NULL) > 0 AS ok;
SELECT try($$select pgq.insert_event_raw('tq_prod', NULL, now(), NULL, NULL, 'lim', 'c', NULL, NULL, NULL, NULL)$$);
COMMIT;
-- every new transaction starts counting again
SELECT pgq.insert_event('tq_prod', 'lim', 'd') > 0 AS ok;
SELECT pgq.insert_event('tq_prod', 'lim', 'e') > 0 AS ok;
-- subtransactions count towards the top-level transaction
BEGIN;
SELECT pgq.insert_event('tq_prod', 'lim', 'f') > 0 AS ok;
SAVEPOINT s1;
SELECT pgq.insert_event('tq_prod', 'lim', 'g') > 0 AS ok;
ROLLBACK TO s1;
SELECT try($$select pgq.insert_event('tq_prod', 'lim', 'h')$$);
COMMIT;
UPDATE pgq.queue SET queue_per_tx_limit = 0 WHERE queue_name = 'tq_prod';
SELECT try($$select pgq.insert_event('tq_prod', 'lim', 'zero')$$);
-- the limit applies per queue
SELECT pgq.create_queue('tq_prod2');
BEGIN;
SELECT try($$select pgq.insert_event('tq_prod', 'lim', 'zero')$$);
SELECT pgq.insert_event('tq_prod2', 'other', 'queue');
COMMIT;
UPDATE pgq.queue SET queue_per_tx_limit = NULL WHERE queue_name = 'tq_prod';
SELECT pgq.insert_event('tq_prod', 'lim', 'unlimited') > 0 AS ok;
SELECT ev_data FROM pgq.event_template WHERE ev_type = 'lim' ORDER BY ev_id;

-- seq_getval / seq_setval / quote_fqname
CREATE SEQUENCE public.regress_seq;
SELECT pgq.seq_getval('public.regress_seq');
SELECT pgq.seq_getval('regress_seq');
SELECT nextval('regress_seq');
SELECT pgq.seq_getval('regress_seq');
BEGIN;
SELECT nextval('regress_seq');
ROLLBACK;
SELECT pgq.seq_getval('regress_seq') AS nontransactional;
SELECT pgq.seq_setval('regress_seq', 10);
SELECT pgq.seq_setval('regress_seq', 5);
SELECT pgq.seq_getval('regress_seq');
SELECT nextval('regress_seq');
SELECT pgq.seq_setval('public.regress_seq', 11);
SELECT pgq.seq_setval('regress_seq', 12);
SELECT pgq.seq_getval(NULL) IS NULL AS strict_null;
SELECT pgq.seq_setval(NULL, 1) IS NULL AS strict_null, pgq.seq_setval('regress_seq', NULL) IS NULL AS strict_null2;
SELECT try($$select pgq.seq_getval('no_such_seq')$$);
SELECT try($$select pgq.seq_setval('no_such_seq', 1)$$);
SELECT try($$select pgq.seq_getval('no_such_schema.seq')$$);
CREATE SEQUENCE public."Mixed.Seq";
SELECT pgq.seq_getval('public.Mixed.Seq');
SELECT pgq.seq_setval('public.Mixed.Seq', 3);
DROP SEQUENCE public."Mixed.Seq";
DROP SEQUENCE public.regress_seq;
SELECT pgq.quote_fqname('foo');
SELECT pgq.quote_fqname('foo.bar');
SELECT pgq.quote_fqname('Foo.Bar.Baz');
SELECT pgq.quote_fqname('public.table');
SELECT pgq.quote_fqname('with space.x"y');
SELECT pgq.quote_fqname('.x');
SELECT pgq.quote_fqname('x.');
SELECT pgq.quote_fqname('');
SELECT pgq.quote_fqname(NULL) IS NULL AS strict_null;

SELECT pgq.drop_queue('tq_prod');
SELECT pgq.drop_queue('tq_prod2');
