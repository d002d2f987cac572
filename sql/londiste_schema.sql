-- londiste: table/sequence registry of Londiste replication (schema of londiste 3.8).
-- Tables, roles and grants are here; every function is implemented in Rust
-- (src/londiste.rs, symbols lnd_*_wrapper) and only declared here, because most of
-- them return one record with OUT parameters, which pgrx cannot declare itself.

CREATE SCHEMA londiste;
GRANT USAGE ON SCHEMA londiste TO public;

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'londiste_writer') THEN
        CREATE ROLE londiste_writer IN ROLE pgq_admin;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'londiste_reader') THEN
        CREATE ROLE londiste_reader IN ROLE pgq_reader;
    END IF;
END
$roles$;

CREATE TABLE londiste.table_info (
    nr              serial NOT NULL,
    queue_name      text NOT NULL,
    table_name      text NOT NULL,
    local           boolean NOT NULL DEFAULT false,
    merge_state     text,
    custom_snapshot text,
    dropped_ddl     text,
    table_attrs     text,
    dest_table      text,
    PRIMARY KEY (queue_name, table_name),
    FOREIGN KEY (queue_name) REFERENCES pgq_node.node_info (queue_name) ON DELETE CASCADE,
    CHECK (dropped_ddl IS NULL OR merge_state IN ('in-copy', 'catching-up'))
);

CREATE TABLE londiste.seq_info (
    nr          serial NOT NULL,
    queue_name  text NOT NULL,
    seq_name    text NOT NULL,
    local       boolean NOT NULL DEFAULT false,
    last_value  int8 NOT NULL,
    PRIMARY KEY (queue_name, seq_name),
    FOREIGN KEY (queue_name) REFERENCES pgq_node.node_info (queue_name) ON DELETE CASCADE
);

CREATE TABLE londiste.applied_execute (
    queue_name      text NOT NULL,
    execute_file    text NOT NULL,
    execute_time    timestamptz NOT NULL DEFAULT now(),
    execute_sql     text NOT NULL,
    execute_attrs   text,
    PRIMARY KEY (execute_file)
);

CREATE TABLE londiste.pending_fkeys (
    from_table  text NOT NULL,
    to_table    text NOT NULL,
    fkey_name   text NOT NULL,
    fkey_def    text NOT NULL,
    PRIMARY KEY (from_table, fkey_name)
);

SELECT pg_catalog.pg_extension_config_dump('londiste.table_info', '');
SELECT pg_catalog.pg_extension_config_dump('londiste.seq_info', '');
SELECT pg_catalog.pg_extension_config_dump('londiste.applied_execute', '');
SELECT pg_catalog.pg_extension_config_dump('londiste.pending_fkeys', '');

GRANT SELECT ON londiste.table_info, londiste.seq_info, londiste.applied_execute, londiste.pending_fkeys
    TO londiste_reader, public;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON londiste.table_info, londiste.seq_info, londiste.applied_execute, londiste.pending_fkeys
    TO pgq_admin;
GRANT USAGE ON londiste.table_info_nr_seq, londiste.seq_info_nr_seq TO londiste_writer;

-- ---------------------------------------------------------------------------
-- Functions (Rust)
-- ---------------------------------------------------------------------------
-- Every function pins search_path with a SET clause, except the five that also run
-- or render the caller's SQL with the caller's search_path (local_remove_table and
-- global_remove_table run the stored dropped_ddl, restore_table_fkey the stored
-- fkey_def, find_table_fkeys and drop_table_fkey render definitions as the original
-- did): they set the same path themselves around all of their own statements.

CREATE FUNCTION londiste.version() RETURNS text
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_version_wrapper';
CREATE FUNCTION londiste.upgrade_schema() RETURNS int4
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_upgrade_schema_wrapper';
CREATE FUNCTION londiste.make_fqname(i_name text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_make_fqname_wrapper';
CREATE FUNCTION londiste.split_fqname(i_fqname text, OUT schema_part text, OUT name_part text) RETURNS record
    LANGUAGE c IMMUTABLE STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_split_fqname_wrapper';
CREATE FUNCTION londiste.quote_fqname(i_name text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_quote_fqname_wrapper';
CREATE FUNCTION londiste.find_rel_oid(i_fqname text, i_kind text) RETURNS oid
    LANGUAGE c STABLE STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_find_rel_oid_wrapper';
CREATE FUNCTION londiste.find_table_oid(tbl text) RETURNS oid
    LANGUAGE c STABLE STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_find_table_oid_wrapper';
CREATE FUNCTION londiste.find_seq_oid(seq text) RETURNS oid
    LANGUAGE c STABLE STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_find_seq_oid_wrapper';
CREATE FUNCTION londiste.find_column_types(tbl text) RETURNS text
    LANGUAGE c STABLE STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_find_column_types_wrapper';
CREATE FUNCTION londiste.is_replica_func(func_oid oid) RETURNS boolean
    LANGUAGE c STABLE STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_is_replica_func_wrapper';
-- SECURITY DEFINER: lets londiste roles switch session_replication_role (superuser GUC)
CREATE FUNCTION londiste.set_session_replication_role(val text, is_local boolean) RETURNS void
    LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'lnd_set_session_replication_role_wrapper';
CREATE FUNCTION londiste.periodic_maintenance() RETURNS int4
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_periodic_maintenance_wrapper';

CREATE FUNCTION londiste.get_table_list(i_queue_name text,
    OUT table_name text, OUT local boolean, OUT merge_state text, OUT custom_snapshot text,
    OUT table_attrs text, OUT dropped_ddl text, OUT copy_role text, OUT copy_pos int4, OUT dest_table text)
    RETURNS SETOF record
    LANGUAGE c STABLE STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_get_table_list_wrapper';
CREATE FUNCTION londiste._coordinate_copy(i_queue_name text, i_table_name text,
    OUT copy_role text, OUT copy_pos int4) RETURNS record
    LANGUAGE c STABLE STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_coordinate_copy_wrapper';
CREATE FUNCTION londiste.get_seq_list(i_queue_name text,
    OUT seq_name text, OUT last_value int8, OUT local boolean) RETURNS SETOF record
    LANGUAGE c STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_get_seq_list_wrapper';
CREATE FUNCTION londiste.local_show_missing(i_queue_name text, OUT obj_kind text, OUT obj_name text)
    RETURNS SETOF record
    LANGUAGE c STABLE STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_local_show_missing_wrapper';

CREATE FUNCTION londiste.global_add_table(i_queue_name text, i_table_name text,
    OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_global_add_table_wrapper';
CREATE FUNCTION londiste.global_remove_table(i_queue_name text, i_table_name text,
    OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'lnd_global_remove_table_wrapper';
CREATE FUNCTION londiste.local_add_table(i_queue_name text, i_table_name text,
    OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_local_add_table2_wrapper';
CREATE FUNCTION londiste.local_add_table(i_queue_name text, i_table_name text, i_trg_args text[],
    OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_local_add_table3_wrapper';
CREATE FUNCTION londiste.local_add_table(i_queue_name text, i_table_name text, i_trg_args text[],
    i_table_attrs text, OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_local_add_table4_wrapper';
CREATE FUNCTION londiste.local_add_table(i_queue_name text, i_table_name text, i_trg_args text[],
    i_table_attrs text, i_dest_table text, OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_local_add_table5_wrapper';
CREATE FUNCTION londiste.local_remove_table(i_queue_name text, i_table_name text,
    OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'lnd_local_remove_table_wrapper';
CREATE FUNCTION londiste.local_change_handler(i_queue_name text, i_table_name text, i_trg_args text[],
    i_table_attrs text, OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_local_change_handler_wrapper';
CREATE FUNCTION londiste.local_set_table_state(i_queue_name text, i_table_name text, i_snapshot text,
    i_merge_state text, OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_local_set_table_state_wrapper';
CREATE FUNCTION londiste.local_set_table_attrs(i_queue_name text, i_table_name text, i_table_attrs text,
    OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_local_set_table_attrs_wrapper';
CREATE FUNCTION londiste.local_set_table_struct(i_queue_name text, i_table_name text, i_dropped_ddl text,
    OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_local_set_table_struct_wrapper';
CREATE FUNCTION londiste.create_trigger(i_queue_name text, i_table_name text, i_trg_args text[],
    i_dest_table text, i_node_type text, OUT ret_code int4, OUT ret_note text, OUT trigger_name text)
    RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_create_trigger_wrapper';
CREATE FUNCTION londiste.drop_table_triggers(i_queue_name text, i_table_name text) RETURNS void
    LANGUAGE c STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_drop_table_triggers_wrapper';
CREATE FUNCTION londiste.table_info_trigger() RETURNS trigger
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_table_info_trigger_wrapper';
CREATE TRIGGER table_info_trigger_sync BEFORE DELETE ON londiste.table_info
    FOR EACH ROW EXECUTE PROCEDURE londiste.table_info_trigger();
CREATE FUNCTION londiste.root_notify_change(i_queue_name text, i_ev_type text, i_ev_data text) RETURNS int4
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_root_notify_change_wrapper';

CREATE FUNCTION londiste.root_check_seqs(i_queue_name text, OUT ret_code int4, OUT ret_note text)
    RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_root_check_seqs1_wrapper';
CREATE FUNCTION londiste.root_check_seqs(i_queue_name text, i_buffer int8,
    OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_root_check_seqs2_wrapper';
CREATE FUNCTION londiste.local_add_seq(i_queue_name text, i_seq_name text,
    OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_local_add_seq_wrapper';
CREATE FUNCTION londiste.local_remove_seq(i_queue_name text, i_seq_name text,
    OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_local_remove_seq_wrapper';
CREATE FUNCTION londiste.global_remove_seq(i_queue_name text, i_seq_name text,
    OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_global_remove_seq_wrapper';
CREATE FUNCTION londiste.global_update_seq(i_queue_name text, i_seq_name text, i_value int8,
    OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_global_update_seq_wrapper';

CREATE FUNCTION londiste.execute_start(i_queue_name text, i_file_name text, i_sql text,
    i_expect_root boolean, OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_execute_start4_wrapper';
CREATE FUNCTION londiste.execute_start(i_queue_name text, i_file_name text, i_sql text,
    i_expect_root boolean, i_attrs text, OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_execute_start5_wrapper';
CREATE FUNCTION londiste.execute_finish(i_queue_name text, i_file_name text,
    OUT ret_code int4, OUT ret_note text) RETURNS record
    LANGUAGE c STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_execute_finish_wrapper';

CREATE FUNCTION londiste.find_table_fkeys(i_table_name text) RETURNS SETOF londiste.pending_fkeys
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'lnd_find_table_fkeys_wrapper';
CREATE FUNCTION londiste.drop_table_fkey(i_from_table text, i_fkey_name text) RETURNS int4
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'lnd_drop_table_fkey_wrapper';
CREATE FUNCTION londiste.restore_table_fkey(i_from_table text, i_fkey_name text, i_lazy boolean DEFAULT false)
    RETURNS text
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'lnd_restore_table_fkey_wrapper';
CREATE FUNCTION londiste.get_table_pending_fkeys(i_table_name text) RETURNS SETOF londiste.pending_fkeys
    LANGUAGE c STABLE STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_get_table_pending_fkeys_wrapper';
CREATE FUNCTION londiste.get_valid_pending_fkeys(i_queue_name text) RETURNS SETOF londiste.pending_fkeys
    LANGUAGE c STABLE STRICT SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_get_valid_pending_fkeys_wrapper';

CREATE FUNCTION londiste.create_partition(i_table text, i_part text, i_pkeys text, i_part_field text,
    i_part_time timestamptz, i_part_period text) RETURNS int4
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_create_partition_wrapper';
CREATE FUNCTION londiste.is_obsolete_partition(i_partition_table text, i_retention_period interval,
    i_partition_period text) RETURNS boolean
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_is_obsolete_partition_wrapper';
CREATE FUNCTION londiste.list_obsolete_partitions(i_parent_table text, i_retention_period interval,
    i_partition_period text) RETURNS SETOF text
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_list_obsolete_partitions_wrapper';
CREATE FUNCTION londiste.drop_obsolete_partitions(i_parent_table text, i_retention_period interval,
    i_partition_period text) RETURNS SETOF text
    LANGUAGE c SET search_path = pg_catalog, londiste, pg_temp AS 'MODULE_PATHNAME', 'lnd_drop_obsolete_partitions_wrapper';

-- ---------------------------------------------------------------------------
-- Function privileges (as londiste 3.8)
-- ---------------------------------------------------------------------------

-- local_change_handler keeps PUBLIC's EXECUTE: the original never revoked it
SELECT pgq._install_grants('londiste', NULL, 'local_change_handler');

GRANT EXECUTE ON FUNCTION
    londiste.find_column_types(text), londiste.find_table_fkeys(text), londiste.find_rel_oid(text, text),
    londiste.find_table_oid(text), londiste.find_seq_oid(text), londiste.is_replica_func(oid),
    londiste.quote_fqname(text), londiste.make_fqname(text), londiste.split_fqname(text),
    londiste.version()
TO public;

GRANT EXECUTE ON FUNCTION
    londiste.get_seq_list(text), londiste.get_table_list(text), londiste._coordinate_copy(text, text)
TO londiste_writer, londiste_reader;

GRANT EXECUTE ON FUNCTION
    londiste.local_add_seq(text, text), londiste.local_add_table(text, text),
    londiste.local_add_table(text, text, text[]), londiste.local_add_table(text, text, text[], text),
    londiste.local_add_table(text, text, text[], text, text),
    londiste.local_remove_seq(text, text), londiste.local_remove_table(text, text),
    londiste.local_set_table_attrs(text, text, text), londiste.local_set_table_state(text, text, text, text),
    londiste.local_set_table_struct(text, text, text), londiste.local_show_missing(text),
    londiste.global_add_table(text, text), londiste.global_remove_seq(text, text),
    londiste.global_remove_table(text, text), londiste.global_update_seq(text, text, int8),
    londiste.drop_table_fkey(text, text), londiste.restore_table_fkey(text, text, boolean),
    londiste.get_table_pending_fkeys(text), londiste.get_valid_pending_fkeys(text),
    londiste.execute_start(text, text, text, boolean), londiste.execute_start(text, text, text, boolean, text),
    londiste.execute_finish(text, text), londiste.root_notify_change(text, text, text),
    londiste.drop_table_triggers(text, text), londiste.table_info_trigger(),
    londiste.create_partition(text, text, text, text, timestamptz, text),
    londiste.is_obsolete_partition(text, interval, text), londiste.list_obsolete_partitions(text, interval, text),
    londiste.drop_obsolete_partitions(text, interval, text),
    londiste.create_trigger(text, text, text[], text, text),
    londiste.set_session_replication_role(text, boolean), londiste.upgrade_schema()
TO londiste_writer;

GRANT EXECUTE ON FUNCTION
    londiste.periodic_maintenance(), londiste.root_check_seqs(text), londiste.root_check_seqs(text, int8)
TO londiste_writer, pgq_admin;
