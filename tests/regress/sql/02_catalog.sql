-- catalog shape of the pgq schema
\set SHOW_CONTEXT never
-- relations owned by the schema
SELECT c.relname, c.relkind FROM pg_class c
 WHERE c.relnamespace = 'pgq'::regnamespace ORDER BY 1;
-- columns of the core tables
SELECT table_name, ordinal_position, column_name, data_type, is_nullable, column_default
  FROM information_schema.columns
 WHERE table_schema = 'pgq'
 ORDER BY table_name, ordinal_position;
-- constraints
SELECT conrelid::regclass AS tbl, conname, contype,
       (SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute
         WHERE attrelid = conrelid AND attnum = ANY (conkey)) AS cols,
       confrelid::regclass AS ref
  FROM pg_constraint WHERE connamespace = 'pgq'::regnamespace
 ORDER BY 1::text, 2;
-- indexes
SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'pgq' ORDER BY 1, 2;
-- inheritance
SELECT inhrelid::regclass, inhparent::regclass FROM pg_inherits
 WHERE inhparent::regclass::text LIKE 'pgq.%' ORDER BY 1::text;
-- table privileges
SELECT table_name, grantee, privilege_type, is_grantable
  FROM information_schema.table_privileges
 WHERE table_schema = 'pgq' AND grantee <> 'postgres'
 ORDER BY 1, 2, 3;
-- sequence privileges
SELECT c.relname, a.grantee::regrole AS grantee, a.privilege_type
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.relnamespace = 'pgq'::regnamespace AND c.relkind = 'S' AND a.grantee <> 'postgres'::regrole
 ORDER BY 1, 2::text, 3;
-- extension config dump
-- (pgq schema only: our extension also owns pgq_node and pgq_ext tables)
SELECT dumped FROM (SELECT unnest(extconfig)::regclass::text AS dumped FROM pg_extension WHERE extname = 'pgq') x
 WHERE dumped LIKE 'pgq.%' ORDER BY 1;
-- extension members (tables and sequences)
SELECT classid::regclass, objid::regclass::text FROM pg_depend
 WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgq')
   AND deptype = 'e' AND classid = 'pg_class'::regclass AND objid::regclass::text LIKE 'pgq.%' ORDER BY 2;
-- public functions: signature, result, flags (internal helpers starting with "_" other
-- than _grant_perms_from are an implementation detail and are not listed)
CREATE TEMP VIEW pgq_funcs AS
SELECT p.oid, p.proname,
       oidvectortypes(p.proargtypes) AS inargs,
       p.proretset, p.prorettype::regtype AS rettype,
       (SELECT string_agg(n || ' ' || t::regtype, ', ' ORDER BY i)
          FROM unnest(p.proallargtypes, p.proargmodes, p.proargnames) WITH ORDINALITY AS u(t, m, n, i)
         WHERE m IN ('o', 't', 'b')) AS outcols,
       p.prosecdef, p.proisstrict, p.provolatile
  FROM pg_proc p
 WHERE p.pronamespace = 'pgq'::regnamespace
   AND (p.proname NOT LIKE '\_%' OR p.proname = '_grant_perms_from')
   AND p.proname <> 'worker_status';  -- ours only: in-server worker monitoring
SELECT proname, inargs AS inargs, proretset, rettype, outcols
  FROM pgq_funcs ORDER BY 1, 2;
SELECT proname, inargs AS inargs, proisstrict, provolatile
  FROM pgq_funcs ORDER BY 1, 2;
-- SECURITY DEFINER functions (next_batch / finish_batch checked separately: their
-- security mode is an implementation choice as long as privileges work)
SELECT proname, inargs AS inargs, prosecdef
  FROM pgq_funcs WHERE proname NOT IN ('next_batch', 'finish_batch', 'next_batch_info')
 ORDER BY 1, 2;
-- any configuration attached to a function must pin search_path
SELECT proname FROM pg_proc p
 WHERE p.pronamespace = 'pgq'::regnamespace AND p.proconfig IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%');
-- EXECUTE grants (PUBLIC shows as "public")
SELECT f.proname, f.inargs AS inargs,
       string_agg(CASE WHEN a.grantee = 0 THEN 'public' ELSE a.grantee::regrole::text END, ',' ORDER BY 1) AS execute_granted_to
  FROM pgq_funcs f JOIN pg_proc p ON p.oid = f.oid, aclexplode(p.proacl) a
 WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> 'postgres'::regrole
 GROUP BY 1, 2 ORDER BY 1, 2;

-- no function is executable by PUBLIC unless intended
SELECT proname FROM pgq_funcs f
 WHERE has_function_privilege('public', f.oid, 'EXECUTE') ORDER BY 1;
DROP VIEW pgq_funcs;
