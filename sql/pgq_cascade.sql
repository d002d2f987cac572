-- pgq_cascade: what this extension adds to cascaded queues, kept out of the schemas
-- the original has (pgq_node, londiste keep exactly the original's catalog). In-server
-- replay (docs/replication.md): who replays a node and as whom, the error history.

CREATE SCHEMA pgq_cascade;
GRANT USAGE ON SCHEMA pgq_cascade TO public;

-- In-server replay of a node (docs/replication.md): whether the extension's own replay
-- worker consumes this node's provider, and the role it acts as. Rows are written only
-- by pgq_node.create_node and pgq_cascade.set_in_server_replay, which record the role
-- that called them: nobody can make a worker act as some other role, so the table
-- gets no DML grants.
CREATE TABLE pgq_cascade.node_replay (
    queue_name   text    NOT NULL PRIMARY KEY
                         REFERENCES pgq_node.node_info ON DELETE CASCADE,
    replay_role  name    NOT NULL,
    in_server    boolean NOT NULL DEFAULT true,
    changed_at   timestamptz NOT NULL DEFAULT now()
);

-- Errors of in-server replay, newest last: what failed, where, and whether an operator
-- skipped it (pgq_cascade.skip_replay_error).
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

-- In-server replay of a node (not in the original; docs/replication.md): on or off,
-- and the calling role becomes the role the replay worker acts as.
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

-- Skip the event (or batch) the node's replay fails on: the newest error of the queue
-- is marked skipped; the worker leaves it out and goes on at once.
CREATE FUNCTION pgq_cascade.skip_replay_error(
    i_queue_name text,
    OUT ret_code int4,
    OUT ret_note text)
RETURNS record LANGUAGE c VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER SET search_path = pg_catalog, pgq_cascade, pgq_node, pgq, pg_temp
AS 'MODULE_PATHNAME', 'pgq_cascade_skip_replay_error_wrapper';
REVOKE ALL ON FUNCTION pgq_cascade.skip_replay_error(text) FROM public;
GRANT EXECUTE ON FUNCTION pgq_cascade.skip_replay_error(text) TO pgq_admin;

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
