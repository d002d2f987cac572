-- pgq_ext: exactly-once tracking on a consumer's target database (docs/pgq_node.md).
-- The full forms are Rust (src/pgq_ext.rs); the short forms only pass '' as the
-- sub-consumer, so they are one-line SQL functions (not SECURITY DEFINER, as in the
-- original: the call they make is).

CREATE SCHEMA pgq_ext;
GRANT USAGE ON SCHEMA pgq_ext TO public;

CREATE TABLE pgq_ext.completed_tick (
    consumer_id     text    NOT NULL,
    subconsumer_id  text    NOT NULL,
    last_tick_id    bigint  NOT NULL,
    PRIMARY KEY (consumer_id, subconsumer_id)
);

CREATE TABLE pgq_ext.completed_batch (
    consumer_id     text    NOT NULL,
    subconsumer_id  text    NOT NULL,
    last_batch_id   bigint  NOT NULL,
    PRIMARY KEY (consumer_id, subconsumer_id)
);

CREATE TABLE pgq_ext.completed_event (
    consumer_id     text    NOT NULL,
    subconsumer_id  text    NOT NULL,
    batch_id        bigint  NOT NULL,
    event_id        bigint  NOT NULL,
    PRIMARY KEY (consumer_id, subconsumer_id, batch_id, event_id)
);

CREATE TABLE pgq_ext.partial_batch (
    consumer_id     text    NOT NULL,
    subconsumer_id  text    NOT NULL,
    cur_batch_id    bigint  NOT NULL,
    PRIMARY KEY (consumer_id, subconsumer_id)
);

SELECT pg_catalog.pg_extension_config_dump('pgq_ext.completed_tick', '');
SELECT pg_catalog.pg_extension_config_dump('pgq_ext.completed_batch', '');
SELECT pg_catalog.pg_extension_config_dump('pgq_ext.completed_event', '');
SELECT pg_catalog.pg_extension_config_dump('pgq_ext.partial_batch', '');

CREATE FUNCTION pgq_ext.get_last_tick(
    a_consumer text,
    a_subconsumer text)
RETURNS int8 LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_ext, pg_temp
AS 'MODULE_PATHNAME', 'pgq_ext_get_last_tick_wrapper';

CREATE FUNCTION pgq_ext.set_last_tick(
    a_consumer text,
    a_subconsumer text,
    a_tick_id bigint)
RETURNS int4 LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_ext, pg_temp
AS 'MODULE_PATHNAME', 'pgq_ext_set_last_tick_wrapper';

CREATE FUNCTION pgq_ext.is_batch_done(
    a_consumer text,
    a_subconsumer text,
    a_batch_id bigint)
RETURNS boolean LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_ext, pg_temp
AS 'MODULE_PATHNAME', 'pgq_ext_is_batch_done_wrapper';

CREATE FUNCTION pgq_ext.set_batch_done(
    a_consumer text,
    a_subconsumer text,
    a_batch_id bigint)
RETURNS boolean LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_ext, pg_temp
AS 'MODULE_PATHNAME', 'pgq_ext_set_batch_done_wrapper';

CREATE FUNCTION pgq_ext.is_event_done(
    a_consumer text,
    a_subconsumer text,
    a_batch_id bigint,
    a_event_id bigint)
RETURNS boolean LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_ext, pg_temp
AS 'MODULE_PATHNAME', 'pgq_ext_is_event_done_wrapper';

CREATE FUNCTION pgq_ext.set_event_done(
    a_consumer text,
    a_subconsumer text,
    a_batch_id bigint,
    a_event_id bigint)
RETURNS boolean LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_ext, pg_temp
AS 'MODULE_PATHNAME', 'pgq_ext_set_event_done_wrapper';

CREATE FUNCTION pgq_ext.upgrade_schema()
RETURNS int4 LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pgq_ext, pg_temp
AS 'MODULE_PATHNAME', 'pgq_ext_upgrade_schema_wrapper';

CREATE FUNCTION pgq_ext.version()
RETURNS text LANGUAGE c VOLATILE CALLED ON NULL INPUT
SET search_path = pg_catalog, pgq_ext, pg_temp
AS 'MODULE_PATHNAME', 'pgq_ext_version_wrapper';

-- short forms: sub-consumer ''
CREATE FUNCTION pgq_ext.get_last_tick(a_consumer text) RETURNS int8
LANGUAGE sql SET search_path = pg_catalog, pgq_ext, pg_temp AS $$ SELECT pgq_ext.get_last_tick(a_consumer, '') $$;

CREATE FUNCTION pgq_ext.set_last_tick(a_consumer text, a_tick_id bigint) RETURNS int4
LANGUAGE sql SET search_path = pg_catalog, pgq_ext, pg_temp AS $$ SELECT pgq_ext.set_last_tick(a_consumer, '', a_tick_id) $$;

CREATE FUNCTION pgq_ext.is_batch_done(a_consumer text, a_batch_id bigint) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pgq_ext, pg_temp AS $$ SELECT pgq_ext.is_batch_done(a_consumer, '', a_batch_id) $$;

CREATE FUNCTION pgq_ext.set_batch_done(a_consumer text, a_batch_id bigint) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pgq_ext, pg_temp AS $$ SELECT pgq_ext.set_batch_done(a_consumer, '', a_batch_id) $$;

CREATE FUNCTION pgq_ext.is_event_done(a_consumer text, a_batch_id bigint, a_event_id bigint) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pgq_ext, pg_temp AS $$ SELECT pgq_ext.is_event_done(a_consumer, '', a_batch_id, a_event_id) $$;

CREATE FUNCTION pgq_ext.set_event_done(a_consumer text, a_batch_id bigint, a_event_id bigint) RETURNS boolean
LANGUAGE sql SET search_path = pg_catalog, pgq_ext, pg_temp AS $$ SELECT pgq_ext.set_event_done(a_consumer, '', a_batch_id, a_event_id) $$;

SELECT pgq._install_grants('pgq_ext', 'pgq_writer', NULL);
GRANT EXECUTE ON FUNCTION pgq_ext.version() TO public;
