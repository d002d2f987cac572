-- londiste: installation, catalog shape, name helpers
\set SHOW_CONTEXT never
-- prelude: the original ships pgq_node and londiste as separate extensions; ours
-- creates every schema with CREATE EXTENSION pgq
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgq_node') THEN
    CREATE EXTENSION IF NOT EXISTS pgq_node;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'londiste') THEN
    CREATE EXTENSION IF NOT EXISTS londiste;
  END IF;
END $$;
SELECT nspname FROM pg_namespace WHERE nspname IN ('pgq', 'pgq_node', 'londiste') ORDER BY 1;
SELECT londiste.version();
SELECT londiste.upgrade_schema();
-- roles
SELECT r.rolname AS role, m.rolname AS member_of
  FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.member JOIN pg_roles m ON m.oid = a.roleid
 WHERE r.rolname LIKE 'londiste\_%' ORDER BY 1, 2;
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'londiste\_%' ORDER BY 1;
-- relations
SELECT c.relname, c.relkind FROM pg_class c
 WHERE c.relnamespace = 'londiste'::regnamespace ORDER BY 1;
SELECT table_name, ordinal_position, column_name, data_type, is_nullable, column_default
  FROM information_schema.columns
 WHERE table_schema = 'londiste'
 ORDER BY table_name, ordinal_position;
SELECT conrelid::regclass AS tbl, conname, contype,
       (SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute
         WHERE attrelid = conrelid AND attnum = ANY (conkey)) AS cols,
       confrelid::regclass AS ref, confdeltype, pg_get_constraintdef(oid) AS def
  FROM pg_constraint WHERE connamespace = 'londiste'::regnamespace
 ORDER BY 1::text, 2;
SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'londiste' ORDER BY 1, 2;
SELECT tgrelid::regclass, tgname, tgfoid::regproc, tgtype, tgenabled FROM pg_trigger
 WHERE tgrelid IN ('londiste.table_info'::regclass, 'londiste.seq_info'::regclass) AND NOT tgisinternal ORDER BY 1::text, 2;
SELECT table_name, grantee, privilege_type
  FROM information_schema.table_privileges
 WHERE table_schema = 'londiste' AND grantee <> 'postgres'
 ORDER BY 1, 2, 3;
SELECT c.relname, a.grantee::regrole AS grantee, a.privilege_type
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.relnamespace = 'londiste'::regnamespace AND c.relkind = 'S' AND a.grantee <> 'postgres'::regrole
 ORDER BY 1, 2::text, 3;
SELECT has_schema_privilege('public', 'londiste', 'USAGE') AS public_usage;
-- configuration tables dumped by pg_dump
SELECT x::regclass::text AS dumped FROM pg_extension e, unnest(e.extconfig) x
 WHERE x::regclass::text LIKE 'londiste.%' ORDER BY 1;
-- functions: signature, result, flags
CREATE TEMP VIEW londiste_funcs AS
SELECT p.oid, p.proname,
       oidvectortypes(p.proargtypes) AS inargs,
       p.proretset, p.prorettype::regtype AS rettype,
       (SELECT string_agg(n || ' ' || t::regtype, ', ' ORDER BY i)
          FROM unnest(p.proallargtypes, p.proargmodes, p.proargnames) WITH ORDINALITY AS u(t, m, n, i)
         WHERE m IN ('o', 't', 'b')) AS outcols,
       pg_get_function_arguments(p.oid) AS args,
       p.prosecdef, p.proisstrict, p.provolatile
  FROM pg_proc p
 WHERE p.pronamespace = 'londiste'::regnamespace;
SELECT proname, args, proretset, rettype, outcols FROM londiste_funcs ORDER BY 1, 2;
SELECT proname, inargs, proisstrict, provolatile, prosecdef FROM londiste_funcs ORDER BY 1, 2;
SELECT f.proname, f.inargs,
       string_agg(CASE WHEN a.grantee = 0 THEN 'public' ELSE a.grantee::regrole::text END, ',' ORDER BY CASE WHEN a.grantee = 0 THEN 'public' ELSE a.grantee::regrole::text END) AS execute_granted_to
  FROM londiste_funcs f JOIN pg_proc p ON p.oid = f.oid, aclexplode(p.proacl) a
 WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> 'postgres'::regrole
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT proname, inargs FROM londiste_funcs f
 WHERE has_function_privilege('public', f.oid, 'EXECUTE') ORDER BY 1, 2;
DROP VIEW londiste_funcs;

-- name helpers
SELECT londiste.make_fqname('tbl'), londiste.make_fqname('s.tbl'), londiste.make_fqname('a.b.c'),
       londiste.make_fqname('"Mixed"'), londiste.make_fqname(''), londiste.make_fqname(NULL);
SELECT * FROM londiste.split_fqname('tbl');
SELECT * FROM londiste.split_fqname('s.tbl');
SELECT * FROM londiste.split_fqname('a.b.c');
SELECT * FROM londiste.split_fqname('.x');
SELECT * FROM londiste.split_fqname(NULL);
SELECT londiste.quote_fqname('tbl'), londiste.quote_fqname('s.tbl'), londiste.quote_fqname('My Schema.Tbl'),
       londiste.quote_fqname('a.b.c'), londiste.quote_fqname('public.select'), londiste.quote_fqname('x."y"');
CREATE SCHEMA lt;
CREATE TABLE lt.t_pk (id int4 PRIMARY KEY, v text);
CREATE TABLE lt.t_nopk (id int4, v text);
CREATE TABLE lt.t_multi (a int4, b text, c int8, d date, PRIMARY KEY (c, a));
CREATE TABLE lt."Weird.Name" (id int4 PRIMARY KEY);
CREATE TABLE public.lt_pub (id int4 PRIMARY KEY);
CREATE SEQUENCE lt.s1;
CREATE VIEW lt.v1 AS SELECT 1 AS x;
SELECT londiste.find_rel_oid('lt.t_pk', 'r') = 'lt.t_pk'::regclass AS t_pk,
       londiste.find_rel_oid('lt.t_pk', 'S') IS NULL AS wrong_kind,
       londiste.find_rel_oid('lt.nosuch', 'r') IS NULL AS missing,
       londiste.find_rel_oid('lt_pub', 'r') = 'public.lt_pub'::regclass AS default_public,
       londiste.find_rel_oid('LT.T_PK', 'r') IS NULL AS case_sensitive;
SELECT londiste.find_table_oid('lt.t_pk') = 'lt.t_pk'::regclass AS tbl,
       londiste.find_table_oid('lt.s1') IS NULL AS seq_is_not_table,
       londiste.find_seq_oid('lt.s1') = 'lt.s1'::regclass AS seq,
       londiste.find_seq_oid('lt.t_pk') IS NULL AS table_is_not_seq,
       londiste.find_table_oid('lt.Weird.Name') = 'lt."Weird.Name"'::regclass AS dotted,
       londiste.find_table_oid('lt.v1') IS NULL AS view_is_not_table;
SELECT try($$select londiste.find_rel_oid('lt.t_pk', 'x')$$);
SELECT londiste.find_column_types('lt.t_pk') AS t_pk, londiste.find_column_types('lt.t_nopk') AS t_nopk,
       londiste.find_column_types('lt.t_multi') LIKE '%k%' AS multi_has_k,
       length(londiste.find_column_types('lt.t_multi')) AS multi_len,
       londiste.find_column_types('lt.nosuch') AS missing;
SELECT londiste.is_replica_func('pgq.insert_event(text,text,text)'::regprocedure) AS insert_event,
       londiste.is_replica_func(0) AS zero, londiste.is_replica_func(NULL) AS null_arg;
SELECT p.proname, londiste.is_replica_func(p.oid) FROM pg_proc p
 WHERE p.pronamespace = 'pgq'::regnamespace AND p.proname IN ('logutriga', 'sqltriga', 'jsontriga') ORDER BY 1;
-- session_replication_role switch
SELECT londiste.set_session_replication_role('replica', false);
SHOW session_replication_role;
BEGIN;
SELECT londiste.set_session_replication_role('local', true);
SHOW session_replication_role;
ROLLBACK;
SHOW session_replication_role;
SELECT londiste.set_session_replication_role('origin', false);
SHOW session_replication_role;
SELECT try($$select londiste.set_session_replication_role('bogus', false)$$);
SELECT try($$select londiste.set_session_replication_role(NULL, false)$$);
SELECT londiste.periodic_maintenance();
