-- Extension pgq: update from version 0.3.0 to 0.4.0 (ALTER EXTENSION pgq UPDATE).
-- 0.4.0 brings replication administered in SQL (docs/admin.md): the pgq_cascade
-- functions that set up and change a cascade from the node itself, the status
-- functions, and the lock-free compare and repair.
\echo Use "ALTER EXTENSION pgq UPDATE" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Compare and repair (docs/admin.md, "Compare and repair"): run on a branch or leaf
-- that is replayed in-server; the provider's tables are read at one tick T with no
-- lock on them, this node's replay worker is held at T meanwhile.
-- ---------------------------------------------------------------------------

-- One row per table (all local tables in state ok when i_table is NULL): the row
-- count and the checksum `londiste compare` prints, on the provider and here, at tick
-- T.
CREATE FUNCTION pgq_cascade.compare(
    i_queue text,
    i_table text DEFAULT NULL,
    OUT table_name text,
    OUT tick_id int8,
    OUT source_node text,
    OUT source_rows int8,
    OUT source_checksum numeric,
    OUT local_rows int8,
    OUT local_checksum numeric,
    OUT equal bool)
RETURNS SETOF record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pgq_cascade, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_compare_wrapper';
REVOKE ALL ON FUNCTION pgq_cascade.compare(text, text) FROM public;
GRANT EXECUTE ON FUNCTION pgq_cascade.compare(text, text) TO pgq_admin;

-- The row-level statements that make the local table equal to the provider's at tick
-- T; with i_apply they are run here (session_replication_role = replica) while this
-- node still stands at T, and replay goes on once the transaction ends.
CREATE FUNCTION pgq_cascade.repair(
    i_queue text,
    i_table text,
    i_apply bool DEFAULT false,
    OUT table_name text,
    OUT tick_id int8,
    OUT op text,
    OUT statement text)
RETURNS SETOF record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pgq_cascade, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_repair_wrapper';
REVOKE ALL ON FUNCTION pgq_cascade.repair(text, text, bool) FROM public;
GRANT EXECUTE ON FUNCTION pgq_cascade.repair(text, text, bool) TO pgq_admin;
