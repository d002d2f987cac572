-- pgq_node: catalog shape and privileges
\set SHOW_CONTEXT never
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgq') THEN
    CREATE EXTENSION pgq;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgq_node')
     AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgq_node') THEN
    CREATE EXTENSION pgq_node;
  END IF;
END $$;
SELECT has_schema_privilege('public', 'pgq_node', 'USAGE') AS public_usage;
SELECT c.relname, c.relkind FROM pg_class c
 WHERE c.relnamespace = 'pgq_node'::regnamespace ORDER BY 1;
SELECT table_name, ordinal_position, column_name, data_type, is_nullable, column_default
  FROM information_schema.columns
 WHERE table_schema = 'pgq_node'
 ORDER BY table_name, ordinal_position;
SELECT conrelid::regclass AS tbl, conname, contype,
       (SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute
         WHERE attrelid = conrelid AND attnum = ANY (conkey)) AS cols,
       confrelid::regclass AS ref,
       (SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute
         WHERE attrelid = confrelid AND attnum = ANY (confkey)) AS refcols
  FROM pg_constraint WHERE connamespace = 'pgq_node'::regnamespace
 ORDER BY 1::text, 2;
SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'pgq_node' ORDER BY 1, 2;
SELECT table_name, grantee, privilege_type, is_grantable
  FROM information_schema.table_privileges
 WHERE table_schema = 'pgq_node' AND grantee <> 'postgres'
 ORDER BY 1, 2, 3;
SELECT c.relname FROM pg_class c, pg_extension e, unnest(e.extconfig) x
 WHERE c.oid = x AND c.relnamespace = 'pgq_node'::regnamespace ORDER BY 1;
-- functions: signature, result, flags, grants
CREATE TEMP VIEW pgq_node_funcs AS
SELECT p.oid, p.proname,
       oidvectortypes(p.proargtypes) AS inargs,
       p.proretset, p.prorettype::regtype AS rettype,
       (SELECT string_agg(n || ' ' || t::regtype, ', ' ORDER BY i)
          FROM unnest(p.proallargtypes, p.proargmodes, p.proargnames) WITH ORDINALITY AS u(t, m, n, i)
         WHERE m IN ('o', 't', 'b')) AS outcols,
       (SELECT string_agg(n, ', ' ORDER BY i)
          FROM unnest(p.proargnames) WITH ORDINALITY AS u(n, i)) AS argnames,
       p.prosecdef, p.proisstrict, p.provolatile
  FROM pg_proc p
 WHERE p.pronamespace = 'pgq_node'::regnamespace;
SELECT proname, inargs, proretset, rettype, outcols FROM pgq_node_funcs ORDER BY 1, 2;
SELECT proname, argnames FROM pgq_node_funcs ORDER BY 1, 2;
SELECT proname, inargs, prosecdef, proisstrict, provolatile FROM pgq_node_funcs ORDER BY 1, 2;
SELECT f.proname, f.inargs,
       (SELECT string_agg(CASE WHEN a.grantee = 0 THEN 'public' ELSE a.grantee::regrole::text END, ', '
                          ORDER BY CASE WHEN a.grantee = 0 THEN 'public' ELSE a.grantee::regrole::text END)
          FROM pg_proc p, aclexplode(p.proacl) a
         WHERE p.oid = f.oid AND a.privilege_type = 'EXECUTE' AND a.grantee <> 'postgres'::regrole) AS execute
  FROM pgq_node_funcs f ORDER BY 1, 2;

-- calls as the role groups (each rolled back)
SET client_min_messages = warning;
CREATE ROLE regress_node_none NOLOGIN;
CREATE ROLE regress_node_reader NOLOGIN IN ROLE pgq_reader;
CREATE ROLE regress_node_writer NOLOGIN IN ROLE pgq_writer;
CREATE ROLE regress_node_admin NOLOGIN IN ROLE pgq_admin;
RESET client_min_messages;
CREATE FUNCTION public.node_as_role(r text, sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE res text;
BEGIN
  BEGIN
    EXECUTE format('SET LOCAL ROLE %I', r);
    EXECUTE sql;
    RAISE EXCEPTION USING ERRCODE = 'ZZ999', MESSAGE = 'rollback';
  EXCEPTION WHEN OTHERS THEN
    IF sqlstate = 'ZZ999' THEN res := 'ok'; ELSE res := sqlstate || ': ' || sqlerrm; END IF;
  END;
  RETURN res;
END $$;
select * from pgq_node.register_location('nq_p', 'p1', 'dbname=p1', false);
select * from pgq_node.register_location('nq_p', 'p2', 'dbname=p2', false);
select * from pgq_node.create_node('nq_p', 'root', 'p1', 'p1_worker', null, null, null);
-- pgqd's maintenance list includes the root queues' watermark upkeep
SELECT func_name, func_arg FROM pgq.maint_operations() WHERE func_name LIKE 'pgq_node.%';
CREATE TEMP TABLE node_calls (n serial, sql text);
INSERT INTO node_calls (sql) VALUES
 ('select pgq_node.version()'),
 ('select pgq_node.is_root_node(''nq_p'')'),
 ('select pgq_node.is_leaf_node(''nq_p'')'),
 ('select * from pgq_node.get_node_info(''nq_p'')'),
 ('select * from pgq_node.get_queue_locations(''nq_p'')'),
 ('select * from pgq_node.get_consumer_info(''nq_p'')'),
 ('select * from pgq_node.get_consumer_state(''nq_p'', ''p1_worker'')'),
 ('select * from pgq_node.get_subscriber_info(''nq_p'')'),
 ('select * from pgq_node.get_worker_state(''nq_p'')'),
 ('select * from pgq_node.register_subscriber(''nq_p'', ''p2'', ''p2_worker'', null)'),
 ('select * from pgq_node.unregister_subscriber(''nq_p'', ''p2'')'),
 ('select * from pgq_node.set_subscriber_watermark(''nq_p'', ''p2'', 1)'),
 ('select * from pgq_node.register_consumer(''nq_p'', ''cx'', ''p1'', 1)'),
 ('select * from pgq_node.unregister_consumer(''nq_p'', ''p1_worker'')'),
 ('select * from pgq_node.set_consumer_paused(''nq_p'', ''p1_worker'', true)'),
 ('select * from pgq_node.set_consumer_uptodate(''nq_p'', ''p1_worker'', true)'),
 ('select * from pgq_node.set_consumer_completed(''nq_p'', ''p1_worker'', 1)'),
 ('select * from pgq_node.set_consumer_error(''nq_p'', ''p1_worker'', ''e'')'),
 ('select * from pgq_node.change_consumer_provider(''nq_p'', ''p1_worker'', ''p2'')'),
 ('select * from pgq_node.register_location(''nq_p'', ''p3'', ''dbname=p3'', false)'),
 ('select * from pgq_node.unregister_location(''nq_p'', ''p2'')'),
 ('select * from pgq_node.set_node_attrs(''nq_p'', ''a=1'')'),
 ('select * from pgq_node.set_global_watermark(''nq_p'', null)'),
 ('select * from pgq_node.set_partition_watermark(''nq_p'', ''nq_p'', 1)'),
 ('select * from pgq_node.demote_root(''nq_p'', 1, ''p2'')'),
 ('select * from pgq_node.promote_branch(''nq_p'')'),
 ('select * from pgq_node.drop_node(''nq_p'', ''p2'')'),
 ('select * from pgq_node.create_node(''nq_p2'', ''root'', ''p1'', ''w'', null, null, null)'),
 ('select pgq_node.maint_watermark(''nq_p'')'),
 ('select pgq_node.upgrade_schema()'),
 ('select * from pgq_node.node_info'),
 ('update pgq_node.node_info set node_attrs = null');
SELECT n, substr(sql, 1, 60) AS sql,
       node_as_role('regress_node_none', sql) AS none,
       node_as_role('regress_node_reader', sql) AS reader,
       node_as_role('regress_node_writer', sql) AS writer,
       node_as_role('regress_node_admin', sql) AS admin
  FROM node_calls ORDER BY n;
select * from pgq_node.drop_node('nq_p', 'p1');
DROP FUNCTION public.node_as_role(text, text);
DROP ROLE regress_node_none, regress_node_reader, regress_node_writer, regress_node_admin;
