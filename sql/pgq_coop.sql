-- pgq_coop: cooperative sub-consumers (docs/pgq_node.md). Bodies in src/pgq_coop.rs.

CREATE SCHEMA pgq_coop;
GRANT USAGE ON SCHEMA pgq_coop TO public;

CREATE FUNCTION pgq_coop.register_subconsumer(
    i_queue_name text,
    i_consumer_name text,
    i_subconsumer_name text)
RETURNS int4 LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_coop_register_subconsumer_wrapper';

CREATE FUNCTION pgq_coop.unregister_subconsumer(
    i_queue_name text,
    i_consumer_name text,
    i_subconsumer_name text,
    i_batch_handling int4)
RETURNS int4 LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_coop_unregister_subconsumer_wrapper';

CREATE FUNCTION pgq_coop.next_batch(
    i_queue_name text,
    i_consumer_name text,
    i_subconsumer_name text)
RETURNS int8 LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_coop_next_batch_wrapper';

CREATE FUNCTION pgq_coop.next_batch(
    i_queue_name text,
    i_consumer_name text,
    i_subconsumer_name text,
    i_dead_interval interval)
RETURNS int8 LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_coop_next_batch_dead_wrapper';

CREATE FUNCTION pgq_coop.next_batch_custom(
    i_queue_name text,
    i_consumer_name text,
    i_subconsumer_name text,
    i_min_lag interval,
    i_min_count int4,
    i_min_interval interval)
RETURNS int8 LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_coop_next_batch_custom_wrapper';

CREATE FUNCTION pgq_coop.next_batch_custom(
    i_queue_name text,
    i_consumer_name text,
    i_subconsumer_name text,
    i_min_lag interval,
    i_min_count int4,
    i_min_interval interval,
    i_dead_interval interval)
RETURNS int8 LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_coop_next_batch_custom_dead_wrapper';

CREATE FUNCTION pgq_coop.finish_batch(
    i_batch_id bigint)
RETURNS int4 LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_coop_finish_batch_wrapper';

CREATE FUNCTION pgq_coop.version()
RETURNS text LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pgq_coop, pg_temp
AS 'MODULE_PATHNAME', 'pgq_coop_version_wrapper';

SELECT pgq._install_grants('pgq_coop', 'pgq_reader', NULL);
GRANT EXECUTE ON FUNCTION pgq_coop.version() TO public;
