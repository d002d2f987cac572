-- londiste: table registry, local/global add/remove, triggers, states
\set SHOW_CONTEXT never
-- helpers: the events of a queue; the triggers on the lt schema's tables
CREATE FUNCTION public.lq_events(q text) RETURNS TABLE (ev_type text, ev_data text, ev_extra1 text, ev_extra2 text)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE 'select ev_type, ev_data, ev_extra1, ev_extra2 from '
    || (SELECT queue_data_pfx FROM pgq.queue WHERE queue_name = q) || ' order by ev_id';
END $$;
CREATE VIEW public.lt_triggers AS
SELECT tgrelid::regclass::text AS tbl, tgname, tgfoid::regproc AS func,
       CASE WHEN tgtype & 2 = 2 THEN 'before' ELSE 'after' END AS timing,
       CASE WHEN tgtype & 1 = 1 THEN 'row' ELSE 'stmt' END AS level,
       concat_ws(',', CASE WHEN tgtype & 4 = 4 THEN 'I' END, CASE WHEN tgtype & 16 = 16 THEN 'U' END,
                      CASE WHEN tgtype & 8 = 8 THEN 'D' END, CASE WHEN tgtype & 32 = 32 THEN 'R' END) AS events,
       replace(encode(tgargs, 'escape'), '\000', '|') AS args
  FROM pg_trigger
 WHERE NOT tgisinternal AND tgrelid::regclass::text NOT LIKE 'londiste.%'
   AND tgrelid::regclass::text NOT LIKE 'pgq%';
-- nodes: root lq (n1), branch lqb (n2 under n1), leaf lql (n3 under n1)
SELECT * FROM pgq_node.register_location('lq', 'n1', 'dbname=n1', false);
SELECT * FROM pgq_node.create_node('lq', 'root', 'n1', 'w1', NULL, NULL, NULL);
SELECT * FROM pgq_node.register_location('lqb', 'n1', 'dbname=n1', false);
SELECT * FROM pgq_node.register_location('lqb', 'n2', 'dbname=n2', false);
SELECT * FROM pgq_node.create_node('lqb', 'branch', 'n2', 'w2', 'n1', 1, NULL);
SELECT * FROM pgq_node.register_location('lql', 'n1', 'dbname=n1', false);
SELECT * FROM pgq_node.register_location('lql', 'n3', 'dbname=n3', false);
SELECT * FROM pgq_node.create_node('lql', 'leaf', 'n3', 'w3', 'n1', 1, NULL);
CREATE TABLE lt.t2 (id int4 PRIMARY KEY, v text);
CREATE TABLE lt.t3 (id int4 PRIMARY KEY, v text);
CREATE TABLE lt.t4 (id int4 PRIMARY KEY, v text);
CREATE TABLE lt.t5 (id int4 PRIMARY KEY, v text);
CREATE TABLE lt.t6 (id int4 PRIMARY KEY, v text);
CREATE TABLE lt.t7 (id int4 PRIMARY KEY, v text);
CREATE TABLE lt.dst (id int4 PRIMARY KEY, v text);
CREATE TABLE lt."q'uote" (id int4 PRIMARY KEY);
CREATE SCHEMA "LT";
CREATE TABLE "LT"."Mixed Case" (id int4 PRIMARY KEY);

-- ROOT
SELECT * FROM londiste.get_table_list('lq');
SELECT * FROM londiste.local_add_table('lq', 'lt.t_pk');
SELECT * FROM londiste.local_add_table('lq', 'lt.t_pk');
SELECT * FROM londiste.local_add_table('lq', 'lt.t_pk', NULL, 'handler=foo');
SELECT * FROM londiste.local_add_table('lq', 'lt.t_pk', array[]::text[], NULL);
SELECT * FROM londiste.local_add_table('lq', 'lt.t_nopk');
SELECT * FROM londiste.local_add_table('lq', 'lt.nosuch');
SELECT * FROM londiste.local_add_table('lq', 'nosuch');
SELECT * FROM londiste.local_add_table('noq', 'lt.t_pk');
SELECT * FROM londiste.local_add_table('noq', 'lt.nosuch');
SELECT * FROM londiste.local_add_table('lq', 'lt_pub');
SELECT * FROM londiste.local_add_table('lq', 'lt.Weird.Name');
SELECT * FROM londiste.local_add_table('lq', 'lt.q''uote');
SELECT * FROM londiste.local_add_table('lq', 'LT.Mixed Case');
SELECT * FROM londiste.local_add_table('lq', 'lt.mixed case');
SELECT * FROM londiste.local_add_table('lq', 'lt.t2', array['tgflags=BIU', 'skip', 'pkey=id']);
SELECT * FROM londiste.local_add_table('lq', 'lt.t3', array['backup', 'ignore=v', 'ev_extra3=''x''', 'when=true'], 'handler=bulk&skip_truncate=1');
SELECT * FROM londiste.local_add_table('lq', 'lt.t4', array['tgflags=Q', 'skip_truncate']);
SELECT * FROM londiste.local_add_table('lq', 'lt.t5', array['tgflags=jd', 'expect_sync']);
SELECT * FROM londiste.local_add_table('lq', 'lt.t6', array['no_triggers']);
SELECT * FROM londiste.local_add_table('lq', 'lt.virt', array['virtual_table']);
SELECT * FROM londiste.local_add_table('lq', 'lt.t7', array['merge_all', 'no_merge']);
SELECT * FROM londiste.local_add_table('lq', 'lt.t7', array['tgflags=LQ', 'tgflags=A']);
SELECT * FROM londiste.local_add_table('lq', 'lt.src', NULL, NULL, 'lt.dst');
SELECT * FROM lt_triggers ORDER BY 1, 2;
-- SKIP handling on a second queue
SELECT * FROM pgq_node.register_location('lq2', 'n1', 'dbname=n1', false);
SELECT * FROM pgq_node.create_node('lq2', 'root', 'n1', 'w1', NULL, NULL, NULL);
SELECT * FROM londiste.local_add_table('lq2', 'lt.t2');
SELECT * FROM londiste.local_add_table('lq2', 'lt.t4', array['tgflags=B', 'SKIP']);
SELECT * FROM pgq_node.register_location('lq3', 'n1', 'dbname=n1', false);
SELECT * FROM pgq_node.create_node('lq3', 'root', 'n1', 'w1', NULL, NULL, NULL);
SELECT * FROM londiste.local_add_table('lq3', 'lt.t4', array['tgflags=B', 'skip']);
SELECT * FROM londiste.local_add_table('lq3', 'lt.t2', array['tgflags=B', 'skip']);
SELECT * FROM lt_triggers WHERE tbl IN ('lt.t2', 'lt.t4') ORDER BY 1, 2;
-- create_trigger directly
SELECT * FROM londiste.create_trigger('lq3', 'lt.t6', array['tgflags=BSI'], NULL, 'root');
SELECT * FROM londiste.create_trigger('lq3', 'lt.t6', array['tgflags=BSI'], NULL, 'root');
SELECT * FROM londiste.create_trigger('lq3', 'lt.t6', array['tgflags=BI', 'backup'], 'lt.t6', 'root');
SELECT * FROM londiste.create_trigger('lq3', 'lt.t6', array['no_triggers'], NULL, 'root');
SELECT * FROM londiste.create_trigger('lq3', 'lt.nosuch', NULL, NULL, 'root');
SELECT * FROM lt_triggers WHERE tbl = 'lt.t6' ORDER BY 1, 2;
SELECT londiste.drop_table_triggers('lq3', 'lt.t6');
SELECT londiste.drop_table_triggers('lq3', 'lt.nosuch');
SELECT * FROM lt_triggers WHERE tbl = 'lt.t6' ORDER BY 1, 2;
-- registry
SELECT * FROM londiste.get_table_list('lq');
SELECT * FROM londiste.get_table_list('noq');
SELECT * FROM londiste.local_show_missing('lq') WHERE obj_name LIKE 'lt.%' OR obj_name LIKE 'LT.%' OR obj_name LIKE 'public.lt%';
SELECT * FROM londiste.local_show_missing('noq') WHERE obj_name LIKE 'lt.%';
-- states
SELECT * FROM londiste.local_set_table_state('lq', 'lt.t_pk', '10:20:', 'in-copy');
SELECT * FROM londiste.local_set_table_state('lq', 't_pk', NULL, 'catching-up');
SELECT * FROM londiste.local_set_table_state('lq', 'lt_pub', NULL, 'wanna-sync:5');
SELECT * FROM londiste.local_set_table_state('lq', 'lt_pub', NULL, NULL);
SELECT * FROM londiste.local_set_table_state('lq', 'lt.nosuch', NULL, 'ok');
SELECT * FROM londiste.local_set_table_state('noq', 'lt.t_pk', NULL, 'ok');
SELECT * FROM londiste.local_set_table_struct('lq', 'lt.t_pk', 'create index x on lt.t_pk (v)');
SELECT * FROM londiste.local_set_table_struct('lq', 'lt.nosuch', 'x');
SELECT try($$select * from londiste.local_set_table_struct('lq', 'lt.t2', 'x')$$);
SELECT * FROM londiste.local_set_table_attrs('lq', 'lt.t_pk', 'handler=x&copy_node=n9');
SELECT * FROM londiste.local_set_table_attrs('lq', 'lt_pub', 'a=1');
SELECT * FROM londiste.local_set_table_attrs('lq', 'lt.nosuch', 'a=1');
SELECT * FROM londiste.get_table_list('lq') WHERE table_name IN ('lt.t_pk', 'public.lt_pub');
SELECT * FROM londiste.local_set_table_state('lq', 'lt.t_pk', NULL, 'ok');
SELECT * FROM londiste.local_set_table_struct('lq', 'lt.t_pk', NULL);
SELECT * FROM londiste.local_change_handler('lq', 'lt.t_pk', array['tgflags=Q'], 'handler=y');
SELECT * FROM londiste.local_change_handler('lq', 'lt.t6', array['no_triggers'], 'handler=z');
SELECT * FROM londiste.local_change_handler('lq', 'lt.nosuch', NULL, 'handler=z');
SELECT * FROM londiste.local_change_handler('noq', 'lt.t_pk', NULL, 'handler=z');
SELECT * FROM lt_triggers WHERE tbl = 'lt.t_pk' ORDER BY 1, 2;
-- removal on root
SELECT * FROM londiste.local_remove_table('lq', 'lt.t7');
SELECT * FROM londiste.local_remove_table('lq', 'lt.t7');
SELECT * FROM londiste.local_remove_table('lq', 'lt.nosuch');
SELECT * FROM londiste.local_remove_table('noq', 'lt.t_pk');
SELECT * FROM londiste.global_remove_table('lq', 'lt.src');
SELECT * FROM londiste.global_remove_table('lq', 'lt.src');
SELECT * FROM londiste.global_remove_table('lq', 'lt_pub');
SELECT * FROM lt_triggers WHERE tbl IN ('lt.t7', 'lt.dst', 'public.lt_pub') ORDER BY 1, 2;
SELECT * FROM londiste.global_add_table('lq', 'lt.t7');
SELECT * FROM londiste.global_add_table('lq', 'lt.t7');
SELECT * FROM londiste.global_add_table('lq', 't7');
SELECT * FROM londiste.global_add_table('noq', 'lt.t7');
SELECT table_name, local, merge_state FROM londiste.get_table_list('lq');
SELECT * FROM londiste.root_notify_change('lq', 'londiste.custom', 'data');
SELECT try($$select londiste.root_notify_change('lqb', 'x', 'y')$$);
SELECT try($$select londiste.root_notify_change('noq', 'x', 'y')$$);
SELECT * FROM lq_events('lq');

-- BRANCH
SELECT * FROM londiste.local_add_table('lqb', 'lt.t_pk');
SELECT * FROM londiste.global_add_table('lqb', 'lt.t_pk');
SELECT * FROM londiste.global_add_table('lqb', 'lt.t2');
SELECT * FROM londiste.global_add_table('lqb', 'lt.t3');
SELECT * FROM londiste.global_add_table('lqb', 'lt.nosuch');
SELECT * FROM londiste.local_add_table('lqb', 'lt.t_pk');
SELECT * FROM londiste.local_add_table('lqb', 'lt.t2', array['expect_sync']);
SELECT * FROM londiste.local_add_table('lqb', 'lt.t3', array['skip_truncate'], 'handler=x');
SELECT * FROM londiste.local_add_table('lqb', 'lt.nosuch');
SELECT * FROM londiste.get_table_list('lqb');
SELECT * FROM londiste.local_show_missing('lqb');
SELECT * FROM lt_triggers WHERE args LIKE 'lqb%' ORDER BY 1, 2;
SELECT * FROM londiste.local_remove_table('lqb', 'lt.nosuch');
SELECT * FROM londiste.local_remove_table('lqb', 'lt.t2');
SELECT * FROM londiste.local_remove_table('lqb', 'lt.t2');
SELECT * FROM londiste.global_remove_table('lqb', 'lt.t3');
SELECT * FROM londiste.global_remove_table('lqb', 'lt.t3');
SELECT * FROM londiste.get_table_list('lqb');
SELECT * FROM lt_triggers WHERE args LIKE 'lqb%' ORDER BY 1, 2;
SELECT count(*) FROM lq_events('lqb');

-- LEAF
SELECT * FROM londiste.global_add_table('lql', 'lt.t_pk');
SELECT * FROM londiste.global_add_table('lql', 'lt.t5');
SELECT * FROM londiste.local_add_table('lql', 'lt.t_pk');
SELECT * FROM londiste.local_add_table('lql', 'lt.t5', array['tgflags=BI', 'skip']);
SELECT * FROM lt_triggers WHERE args LIKE 'lql%' ORDER BY 1, 2;
SELECT * FROM londiste.get_table_list('lql');
-- deleting registry rows drops the triggers
DELETE FROM londiste.table_info WHERE queue_name = 'lql' AND table_name = 'lt.t_pk';
SELECT * FROM lt_triggers WHERE args LIKE 'lql%' ORDER BY 1, 2;
-- dropping the node drops its tables and triggers
SELECT * FROM pgq_node.drop_node('lql', 'n3');
SELECT * FROM lt_triggers WHERE args LIKE 'lql%' ORDER BY 1, 2;
SELECT count(*) FROM londiste.table_info WHERE queue_name = 'lql';
