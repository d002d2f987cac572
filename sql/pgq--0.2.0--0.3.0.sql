-- Extension pgq: update from version 0.2.0 to 0.3.0 (ALTER EXTENSION pgq UPDATE).
-- 0.3.0 brings in-server replay (docs/replication.md): the per-node replay setting and
-- role, the replay error history, pgq_cascade.set_in_server_replay(), and the replay
-- columns of pgq.worker_status().
\echo Use "ALTER EXTENSION pgq UPDATE" to load this file. \quit

CREATE SCHEMA pgq_cascade;
GRANT USAGE ON SCHEMA pgq_cascade TO public;

CREATE TABLE pgq_cascade.node_replay (
    queue_name   text    NOT NULL PRIMARY KEY
                         REFERENCES pgq_node.node_info ON DELETE CASCADE,
    replay_role  name    NOT NULL,
    in_server    boolean NOT NULL DEFAULT true,
    changed_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pgq_cascade.replay_error (
    error_id     bigserial   PRIMARY KEY,
    queue_name   text        NOT NULL,
    consumer_name text       NOT NULL,
    batch_id     bigint,
    tick_id      bigint,
    ev_id        bigint,
    ev_txid      bigint,
    table_name   text,
    sqlstate     text        NOT NULL,
    message      text        NOT NULL,
    error_time   timestamptz NOT NULL DEFAULT now(),
    skipped      boolean     NOT NULL DEFAULT false
);
CREATE INDEX replay_error_queue_idx ON pgq_cascade.replay_error (queue_name, error_id);

GRANT SELECT ON TABLE pgq_cascade.node_replay, pgq_cascade.replay_error
    TO pgq_reader, pgq_writer, pgq_admin;

SELECT pg_catalog.pg_extension_config_dump('pgq_cascade.node_replay', '');
SELECT pg_catalog.pg_extension_config_dump('pgq_cascade.replay_error', '');
SELECT pg_catalog.pg_extension_config_dump('pgq_cascade.replay_error_error_id_seq', '');

-- Nodes that exist already get no node_replay row: they keep the external londiste
-- worker that replays them now, until pgq_cascade.set_in_server_replay(queue, true).

CREATE FUNCTION pgq_cascade.set_in_server_replay(
    i_queue_name text,
    i_in_server bool,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_cascade, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_set_in_server_replay_wrapper';
REVOKE ALL ON FUNCTION pgq_cascade.set_in_server_replay(text, bool) FROM public;
GRANT EXECUTE ON FUNCTION pgq_cascade.set_in_server_replay(text, bool) TO pgq_admin;

CREATE FUNCTION pgq_cascade.skip_replay_error(
    i_queue_name text,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_cascade, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_skip_replay_error_wrapper';
REVOKE ALL ON FUNCTION pgq_cascade.skip_replay_error(text) FROM public;
GRANT EXECUTE ON FUNCTION pgq_cascade.skip_replay_error(text) TO pgq_admin;

DROP FUNCTION pgq.worker_status();
CREATE FUNCTION pgq."worker_status"() RETURNS TABLE (
	"worker" TEXT,
	"database" TEXT,
	"object" TEXT,
	"pid" INT,
	"started_at" timestamp with time zone,
	"last_tick" timestamp with time zone,
	"last_maint" timestamp with time zone,
	"last_retry" timestamp with time zone,
	"ticks" bigint,
	"restarts" INT,
	"no_extension" bool,
	"last_error" TEXT,
	"last_sqlstate" TEXT,
	"last_error_time" timestamp with time zone,
	"provider" TEXT,
	"batch_id" bigint,
	"tick_id" bigint,
	"lag" interval,
	"events" bigint
)
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pgq, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_status_v2_wrapper';
REVOKE ALL ON FUNCTION pgq.worker_status() FROM public;
GRANT EXECUTE ON FUNCTION pgq.worker_status() TO public;
