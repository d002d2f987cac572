-- pgq regression suite: installation
\set SHOW_CONTEXT never
CREATE EXTENSION pgq;
SELECT extname, extversion, extrelocatable FROM pg_extension WHERE extname = 'pgq';
SELECT nspname FROM pg_namespace WHERE nspname = 'pgq';
SELECT pgq.version();
SELECT substr(pgq.version(), 1, 1) >= '3' AS pgqd_accepts_version;
-- roles created by the install
SELECT rolname, rolcanlogin, rolinherit FROM pg_roles
 WHERE rolname IN ('pgq_reader', 'pgq_writer', 'pgq_admin') ORDER BY 1;
SELECT r.rolname AS role, m.rolname AS member_of
  FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.member JOIN pg_roles m ON m.oid = a.roleid
 WHERE r.rolname LIKE 'pgq\_%' ORDER BY 1, 2;
-- schema usage for public
SELECT has_schema_privilege('public', 'pgq', 'USAGE') AS public_usage;
-- a second CREATE fails
CREATE EXTENSION pgq;
-- upgrade_schema is idempotent on a fresh install
SELECT pgq.upgrade_schema();
SELECT pgq.upgrade_schema();
-- helper used by later tests: run a statement, report "ok" or SQLSTATE and message
CREATE FUNCTION public.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE sql;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN sqlstate || ': ' || sqlerrm;
END $$;
-- helper: first value of a query, or the error
CREATE FUNCTION public.val(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  EXECUTE sql INTO r;
  RETURN coalesce(r, '<NULL>');
EXCEPTION WHEN OTHERS THEN
  RETURN sqlstate || ': ' || sqlerrm;
END $$;
GRANT EXECUTE ON FUNCTION public.try(text), public.val(text) TO public;
SELECT try('select 1/0'), val('select 42');
