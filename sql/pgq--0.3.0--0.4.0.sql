-- Extension pgq: update from version 0.3.0 to 0.4.0 (ALTER EXTENSION pgq UPDATE).
-- 0.4.0 brings replication administered in SQL (docs/admin.md): the pgq_cascade
-- functions that set up and change a cascade from the node itself, the status
-- functions, and the lock-free compare and repair.
\echo Use "ALTER EXTENSION pgq UPDATE" to load this file. \quit

-- ---- administration in SQL (sql/pgq_cascade_admin.sql)

CREATE FUNCTION pgq_cascade.create_root(
    i_queue_name text, i_node_name text, i_location text,
    i_worker_name text DEFAULT NULL, i_ticker_max_lag interval DEFAULT '20 milliseconds',
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_create_root_wrapper';

CREATE FUNCTION pgq_cascade.create_branch(
    i_queue_name text, i_node_name text, i_location text, i_provider_location text,
    i_worker_name text DEFAULT NULL, i_sync_watermark text DEFAULT NULL,
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_create_branch_wrapper';

CREATE FUNCTION pgq_cascade.create_leaf(
    i_queue_name text, i_node_name text, i_location text, i_provider_location text,
    i_worker_name text DEFAULT NULL,
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_create_leaf_wrapper';

CREATE FUNCTION pgq_cascade.drop_node(
    i_queue_name text, i_node_name text DEFAULT NULL,
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_drop_node_wrapper';

CREATE FUNCTION pgq_cascade.add_table(
    i_queue_name text, i_table_name text,
    i_create bool DEFAULT false, i_skip_truncate bool DEFAULT false,
    i_expect_sync bool DEFAULT false, i_copy_node text DEFAULT NULL,
    i_when text DEFAULT NULL, i_trigger_args text[] DEFAULT NULL,
    i_dest_table text DEFAULT NULL,
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_add_table_wrapper';

CREATE FUNCTION pgq_cascade.remove_table(
    i_queue_name text, i_table_name text,
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_remove_table_wrapper';

CREATE FUNCTION pgq_cascade.add_seq(
    i_queue_name text, i_seq_name text,
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_add_seq_wrapper';

CREATE FUNCTION pgq_cascade.remove_seq(
    i_queue_name text, i_seq_name text,
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_remove_seq_wrapper';

CREATE FUNCTION pgq_cascade.resync(
    i_queue_name text, i_table_name text,
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_resync_wrapper';

CREATE FUNCTION pgq_cascade.pause(
    i_queue_name text, i_node_name text DEFAULT NULL,
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_pause_wrapper';

CREATE FUNCTION pgq_cascade.resume(
    i_queue_name text, i_node_name text DEFAULT NULL,
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_resume_wrapper';

CREATE FUNCTION pgq_cascade.change_provider(
    i_queue_name text, i_new_provider text, i_node_name text DEFAULT NULL,
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_change_provider_wrapper';

CREATE FUNCTION pgq_cascade.takeover(
    i_queue_name text, i_old_node text, i_dead bool DEFAULT false,
    i_timeout interval DEFAULT '60 s',
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_takeover_wrapper';

-- no pinned search_path: the script runs with the caller's, as with the CLI
CREATE FUNCTION pgq_cascade.execute(
    i_queue_name text, i_name text, i_sql text,
    OUT ret_code int4, OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'pgq_cascade_execute_wrapper';

CREATE FUNCTION pgq_cascade.nodes(
    i_queue_name text,
    OUT node_name text, OUT node_type text, OUT provider_node text, OUT lag interval,
    OUT last_tick int8, OUT paused bool, OUT uptodate bool, OUT in_server_replay bool,
    OUT replay_pid int4, OUT tables_ok int4, OUT tables_pending int4, OUT error text)
RETURNS SETOF record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_nodes_wrapper';

CREATE FUNCTION pgq_cascade.members(
    i_queue_name text,
    OUT node_name text, OUT location text, OUT dead bool)
RETURNS SETOF record LANGUAGE c STABLE CALLED ON NULL INPUT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_members_wrapper';

-- This node's tables of the queue, with the progress of a copy in flight.
CREATE FUNCTION pgq_cascade.tables(
    i_queue_name text,
    OUT table_name text, OUT local bool, OUT merge_state text, OUT dest_table text,
    OUT table_attrs text, OUT copy_rows int8, OUT copy_bytes int8)
RETURNS SETOF record LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY
    SELECT t.table_name, t.local, t.merge_state, t.dest_table, t.table_attrs,
           p.tuples_processed, p.bytes_processed
      FROM londiste.get_table_list(i_queue_name) t
      LEFT JOIN pg_catalog.pg_stat_progress_copy p
        ON t.merge_state = 'in-copy'
       AND p.datid = (SELECT d.oid FROM pg_catalog.pg_database d
                       WHERE d.datname = pg_catalog.current_database())
       AND p.relid = pg_catalog.to_regclass(pgq.quote_fqname(coalesce(t.dest_table, t.table_name)));
END;
$$;

CREATE FUNCTION pgq_cascade.seqs(
    i_queue_name text,
    OUT seq_name text, OUT local bool, OUT last_value int8)
RETURNS SETOF record LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY
    SELECT s.seq_name, s.local, s.last_value FROM londiste.get_seq_list(i_queue_name) s;
END;
$$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'create_root(text, text, text, text, interval)',
        'create_branch(text, text, text, text, text, text)',
        'create_leaf(text, text, text, text, text)',
        'drop_node(text, text)',
        'add_table(text, text, bool, bool, bool, text, text, text[], text)',
        'remove_table(text, text)', 'add_seq(text, text)', 'remove_seq(text, text)',
        'resync(text, text)', 'pause(text, text)', 'resume(text, text)',
        'change_provider(text, text, text)', 'takeover(text, text, bool, interval)',
        'execute(text, text, text)']
    LOOP
        EXECUTE 'REVOKE ALL ON FUNCTION pgq_cascade.' || f || ' FROM public';
        EXECUTE 'GRANT EXECUTE ON FUNCTION pgq_cascade.' || f || ' TO pgq_admin';
    END LOOP;
    FOREACH f IN ARRAY ARRAY['nodes(text)', 'members(text)', 'tables(text)', 'seqs(text)']
    LOOP
        EXECUTE 'REVOKE ALL ON FUNCTION pgq_cascade.' || f || ' FROM public';
        EXECUTE 'GRANT EXECUTE ON FUNCTION pgq_cascade.' || f || ' TO pgq_reader, pgq_writer, pgq_admin';
    END LOOP;
END;
$$;

-- ---------------------------------------------------------------------------
-- Compare and repair (docs/admin.md, "Compare and repair"): run on a branch or leaf
-- that is replayed in-server; the provider's tables are read at one tick T with no
-- lock on them, this node's replay worker is held at T meanwhile.
-- ---------------------------------------------------------------------------

-- One row per table (all local tables in state ok when i_table is NULL): the row
-- count and the checksum `londiste compare` prints, on the provider and here, at tick
-- T.
CREATE FUNCTION pgq_cascade.compare(
    i_queue_name text,
    i_table_name text DEFAULT NULL,
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
    i_queue_name text,
    i_table_name text,
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
