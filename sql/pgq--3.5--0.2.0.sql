-- Extension pgq: update from version 3.5 to 0.2.0 (ALTER EXTENSION pgq UPDATE).
-- Brings a 3.5 install to exactly what CREATE EXTENSION pgq of 0.2.0 creates;
-- tests/upgrade/catalog-diff.sh compares the two and names what is missing here.
\echo Use "ALTER EXTENSION pgq UPDATE" to load this file. \quit

-- 0.2.0 separates the extension version from the PgQ API version: pgq.version()
-- keeps returning the API version clients test for, whatever extversion says.
CREATE OR REPLACE FUNCTION pgq.version() RETURNS text
LANGUAGE sql SET search_path = pg_catalog, pgq, pg_temp AS $$
    SELECT '3.5'::text
$$;
