-- pgq_node: function declarations and privileges. The bodies are Rust
-- (src/pgq_node.rs, symbol pgq_node_<name>_wrapper); declared here because the
-- original's functions return one record with OUT columns, which pgrx cannot emit.
-- Generated once from a table of signatures, then maintained by hand.

CREATE FUNCTION pgq_node.register_location(
    i_queue_name text,
    i_node_name text,
    i_node_location text,
    i_dead bool,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_register_location_wrapper';

CREATE FUNCTION pgq_node.unregister_location(
    i_queue_name text,
    i_node_name text,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_unregister_location_wrapper';

CREATE FUNCTION pgq_node.get_queue_locations(
    i_queue_name text,
    OUT node_name text,
    OUT node_location text,
    OUT dead bool)
RETURNS SETOF record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_get_queue_locations_wrapper';

CREATE FUNCTION pgq_node.create_node(
    i_queue_name text,
    i_node_type text,
    i_node_name text,
    i_worker_name text,
    i_provider_name text,
    i_global_watermark int8,
    i_combined_queue text,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_create_node_wrapper';

CREATE FUNCTION pgq_node.drop_node(
    i_queue_name text,
    i_node_name text,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_drop_node_wrapper';

CREATE FUNCTION pgq_node.set_node_attrs(
    i_queue_name text,
    i_node_attrs text,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_set_node_attrs_wrapper';

CREATE FUNCTION pgq_node.promote_branch(
    i_queue_name text,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_promote_branch_wrapper';

CREATE FUNCTION pgq_node.demote_root(
    i_queue_name text,
    i_step int4,
    i_new_provider text,
    OUT ret_code int4,
    OUT ret_note text,
    OUT last_tick int8)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_demote_root_wrapper';

CREATE FUNCTION pgq_node.is_root_node(
    i_queue_name text)
RETURNS bool LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_is_root_node_wrapper';

CREATE FUNCTION pgq_node.is_leaf_node(
    i_queue_name text)
RETURNS bool LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_is_leaf_node_wrapper';

CREATE FUNCTION pgq_node.get_node_info(
    i_queue_name text,
    OUT ret_code int4,
    OUT ret_note text,
    OUT node_type text,
    OUT node_name text,
    OUT global_watermark int8,
    OUT local_watermark int8,
    OUT provider_node text,
    OUT provider_location text,
    OUT combined_queue text,
    OUT combined_type text,
    OUT worker_name text,
    OUT worker_paused bool,
    OUT worker_uptodate bool,
    OUT worker_last_tick int8,
    OUT node_attrs text,
    OUT target_for text[])
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_get_node_info_wrapper';

CREATE FUNCTION pgq_node.get_worker_state(
    i_queue_name text,
    OUT ret_code int4,
    OUT ret_note text,
    OUT node_type text,
    OUT node_name text,
    OUT completed_tick int8,
    OUT provider_node text,
    OUT provider_location text,
    OUT paused bool,
    OUT uptodate bool,
    OUT cur_error text,
    OUT worker_name text,
    OUT global_watermark int8,
    OUT local_watermark int8,
    OUT local_queue_top int8,
    OUT combined_queue text,
    OUT combined_type text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_get_worker_state_wrapper';

CREATE FUNCTION pgq_node.get_consumer_state(
    i_queue_name text,
    i_consumer_name text,
    OUT ret_code int4,
    OUT ret_note text,
    OUT node_type text,
    OUT node_name text,
    OUT completed_tick int8,
    OUT provider_node text,
    OUT provider_location text,
    OUT paused bool,
    OUT uptodate bool,
    OUT cur_error text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_get_consumer_state_wrapper';

CREATE FUNCTION pgq_node.get_consumer_info(
    i_queue_name text,
    OUT consumer_name text,
    OUT provider_node text,
    OUT last_tick_id int8,
    OUT paused bool,
    OUT uptodate bool,
    OUT cur_error text)
RETURNS SETOF record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_get_consumer_info_wrapper';

CREATE FUNCTION pgq_node.get_subscriber_info(
    i_queue_name text,
    OUT node_name text,
    OUT worker_name text,
    OUT node_watermark int8)
RETURNS SETOF record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_get_subscriber_info_wrapper';

CREATE FUNCTION pgq_node.version()
RETURNS text LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_version_wrapper';

CREATE FUNCTION pgq_node.register_subscriber(
    i_queue_name text,
    i_remote_node_name text,
    i_remote_worker_name text,
    i_custom_tick_id int8,
    OUT ret_code int4,
    OUT ret_note text,
    OUT global_watermark int8)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_register_subscriber_wrapper';

CREATE FUNCTION pgq_node.unregister_subscriber(
    i_queue_name text,
    i_remote_node_name text,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_unregister_subscriber_wrapper';

CREATE FUNCTION pgq_node.set_subscriber_watermark(
    i_queue_name text,
    i_node_name text,
    i_watermark int8,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_set_subscriber_watermark_wrapper';

CREATE FUNCTION pgq_node.set_global_watermark(
    i_queue_name text,
    i_watermark int8,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_set_global_watermark_wrapper';

CREATE FUNCTION pgq_node.set_partition_watermark(
    i_combined_queue_name text,
    i_part_queue_name text,
    i_watermark int8,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_set_partition_watermark_wrapper';

CREATE FUNCTION pgq_node.register_consumer(
    i_queue_name text,
    i_consumer_name text,
    i_provider_node text,
    i_custom_tick_id int8,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_register_consumer_wrapper';

CREATE FUNCTION pgq_node.unregister_consumer(
    i_queue_name text,
    i_consumer_name text,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_unregister_consumer_wrapper';

CREATE FUNCTION pgq_node.change_consumer_provider(
    i_queue_name text,
    i_consumer_name text,
    i_new_provider text,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_change_consumer_provider_wrapper';

CREATE FUNCTION pgq_node.set_consumer_uptodate(
    i_queue_name text,
    i_consumer_name text,
    i_uptodate bool,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_set_consumer_uptodate_wrapper';

CREATE FUNCTION pgq_node.set_consumer_paused(
    i_queue_name text,
    i_consumer_name text,
    i_paused bool,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_set_consumer_paused_wrapper';

CREATE FUNCTION pgq_node.set_consumer_completed(
    i_queue_name text,
    i_consumer_name text,
    i_tick_id int8,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_set_consumer_completed_wrapper';

CREATE FUNCTION pgq_node.set_consumer_error(
    i_queue_name text,
    i_consumer_name text,
    i_error_msg text,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_set_consumer_error_wrapper';

CREATE FUNCTION pgq_node.maint_watermark(
    i_queue_name text)
RETURNS int4 LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_maint_watermark_wrapper';

CREATE FUNCTION pgq_node.upgrade_schema()
RETURNS int4 LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_node_upgrade_schema_wrapper';

-- ---------------------------------------------------------------------------
-- Privileges (docs/pgq_node.md)
-- ---------------------------------------------------------------------------

SELECT pgq._install_grants('pgq_node', NULL, NULL);

-- public
GRANT EXECUTE ON FUNCTION
    pgq_node.is_root_node(text), pgq_node.is_leaf_node(text), pgq_node.version()
TO public;

-- consumer: any cascaded consumer
GRANT EXECUTE ON FUNCTION
    pgq_node.register_consumer(text, text, text, int8),
    pgq_node.unregister_consumer(text, text),
    pgq_node.change_consumer_provider(text, text, text),
    pgq_node.set_consumer_uptodate(text, text, bool),
    pgq_node.set_consumer_paused(text, text, bool),
    pgq_node.set_consumer_completed(text, text, int8),
    pgq_node.set_consumer_error(text, text, text)
TO pgq_writer, pgq_admin;

-- worker and admin
GRANT EXECUTE ON FUNCTION
    pgq_node.create_node(text, text, text, text, text, int8, text),
    pgq_node.drop_node(text, text),
    pgq_node.demote_root(text, int4, text),
    pgq_node.promote_branch(text),
    pgq_node.set_node_attrs(text, text),
    pgq_node.get_worker_state(text),
    pgq_node.set_global_watermark(text, int8),
    pgq_node.set_partition_watermark(text, text, int8),
    pgq_node.register_location(text, text, text, bool),
    pgq_node.unregister_location(text, text),
    pgq_node.upgrade_schema(),
    pgq_node.maint_watermark(text)
TO pgq_admin;

-- remote: called by other nodes and by the admin tools
GRANT EXECUTE ON FUNCTION
    pgq_node.get_consumer_info(text),
    pgq_node.get_consumer_state(text, text),
    pgq_node.get_queue_locations(text),
    pgq_node.get_node_info(text),
    pgq_node.get_subscriber_info(text),
    pgq_node.register_subscriber(text, text, text, int8),
    pgq_node.unregister_subscriber(text, text),
    pgq_node.set_subscriber_watermark(text, text, int8)
TO pgq_reader, pgq_writer, pgq_admin;
