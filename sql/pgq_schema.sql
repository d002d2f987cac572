-- pgq core schema: tables, sequences, role groups, table privileges.
-- Loaded first by the generated install script (see src/lib.rs, bootstrap).
-- Layout and names are those of PgQ 3.5, so existing clients keep working.

CREATE SCHEMA IF NOT EXISTS pgq;
GRANT USAGE ON SCHEMA pgq TO public;

-- Role groups are cluster-wide and may already exist (another database, an
-- earlier install); create only what is missing and never drop them.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgq_reader') THEN
        CREATE ROLE pgq_reader;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgq_writer') THEN
        CREATE ROLE pgq_writer;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgq_admin') THEN
        CREATE ROLE pgq_admin IN ROLE pgq_reader, pgq_writer;
    END IF;
END
$roles$;

CREATE SEQUENCE pgq.batch_id_seq;

CREATE TABLE pgq.consumer (
    co_id       serial,
    co_name     text        NOT NULL,
    CONSTRAINT consumer_pkey PRIMARY KEY (co_id),
    CONSTRAINT consumer_name_uq UNIQUE (co_name)
);

CREATE TABLE pgq.queue (
    queue_id                    serial,
    queue_name                  text        NOT NULL,
    queue_ntables               integer     NOT NULL DEFAULT 3,
    queue_cur_table             integer     NOT NULL DEFAULT 0,
    queue_rotation_period       interval    NOT NULL DEFAULT '2 hours',
    queue_switch_step1          bigint      NOT NULL DEFAULT pg_catalog.txid_current(),
    queue_switch_step2          bigint               DEFAULT pg_catalog.txid_current(),
    queue_switch_time           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    queue_external_ticker       boolean     NOT NULL DEFAULT false,
    queue_disable_insert        boolean     NOT NULL DEFAULT false,
    queue_ticker_paused         boolean     NOT NULL DEFAULT false,
    queue_ticker_max_count      integer     NOT NULL DEFAULT 500,
    queue_ticker_max_lag        interval    NOT NULL DEFAULT '3 seconds',
    queue_ticker_idle_period    interval    NOT NULL DEFAULT '1 minute',
    queue_per_tx_limit          integer,
    queue_data_pfx              text        NOT NULL,
    queue_event_seq             text        NOT NULL,
    queue_tick_seq              text        NOT NULL,
    queue_extra_maint           text[],
    CONSTRAINT queue_pkey PRIMARY KEY (queue_id),
    CONSTRAINT queue_name_uq UNIQUE (queue_name)
);

CREATE TABLE pgq.tick (
    tick_queue          integer         NOT NULL,
    tick_id             bigint          NOT NULL,
    tick_time           timestamptz     NOT NULL DEFAULT pg_catalog.now(),
    tick_snapshot       txid_snapshot   NOT NULL DEFAULT pg_catalog.txid_current_snapshot(),
    tick_event_seq      bigint          NOT NULL,
    CONSTRAINT tick_pkey PRIMARY KEY (tick_queue, tick_id),
    CONSTRAINT tick_queue_fkey FOREIGN KEY (tick_queue) REFERENCES pgq.queue (queue_id)
);

CREATE TABLE pgq.subscription (
    sub_id              serial          NOT NULL,
    sub_queue           integer         NOT NULL,
    sub_consumer        integer         NOT NULL,
    sub_last_tick       bigint,
    sub_active          timestamptz     NOT NULL DEFAULT pg_catalog.now(),
    sub_batch           bigint,
    sub_next_tick       bigint,
    CONSTRAINT subscription_pkey PRIMARY KEY (sub_queue, sub_consumer),
    CONSTRAINT subscription_batch_idx UNIQUE (sub_batch),
    CONSTRAINT sub_queue_fkey FOREIGN KEY (sub_queue) REFERENCES pgq.queue (queue_id),
    CONSTRAINT sub_consumer_fkey FOREIGN KEY (sub_consumer) REFERENCES pgq.consumer (co_id)
);

CREATE TABLE pgq.event_template (
    ev_id       bigint          NOT NULL,
    ev_time     timestamptz     NOT NULL,
    ev_txid     bigint          NOT NULL DEFAULT pg_catalog.txid_current(),
    ev_owner    integer,
    ev_retry    integer,
    ev_type     text,
    ev_data     text,
    ev_extra1   text,
    ev_extra2   text,
    ev_extra3   text,
    ev_extra4   text
);

CREATE TABLE pgq.retry_queue (
    ev_retry_after  timestamptz NOT NULL,
    ev_queue        integer     NOT NULL,
    LIKE pgq.event_template,
    CONSTRAINT rq_pkey PRIMARY KEY (ev_owner, ev_id),
    CONSTRAINT rq_queue_id_fkey FOREIGN KEY (ev_queue) REFERENCES pgq.queue (queue_id)
);
ALTER TABLE pgq.retry_queue ALTER COLUMN ev_owner SET NOT NULL;
ALTER TABLE pgq.retry_queue ALTER COLUMN ev_txid DROP NOT NULL;
CREATE INDEX rq_retry_idx ON pgq.retry_queue (ev_retry_after);

-- Table privileges (as in PgQ 3.5; README "Roles and privileges").
GRANT SELECT ON TABLE pgq.event_template TO pgq_reader;
GRANT SELECT, INSERT, TRUNCATE ON TABLE pgq.event_template TO pgq_admin;
GRANT SELECT ON TABLE pgq.queue, pgq.consumer, pgq.tick, pgq.subscription TO public;
GRANT SELECT ON TABLE pgq.queue, pgq.consumer, pgq.tick, pgq.subscription TO pgq_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE pgq.queue, pgq.consumer, pgq.tick, pgq.subscription TO pgq_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE pgq.retry_queue TO pgq_admin;

-- pg_dump keeps the contents of these extension-owned tables.
SELECT pg_catalog.pg_extension_config_dump('pgq.queue', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.consumer', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.tick', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.subscription', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.event_template', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.retry_queue', '');
SELECT pg_catalog.pg_extension_config_dump('pgq.batch_id_seq', '');

-- Install-time helper, used by the grants of every schema's functions (pgq, pgq_node,
-- pgq_ext, pgq_coop, londiste) and dropped again at the end of the install script
-- (sql/pgq_functions.sql), so it is no part of the installed extension: revoke
-- EXECUTE from public on every function of i_schema except those named i_keep, and
-- grant it to i_role (if not NULL) on all of them but the schema's version().
CREATE FUNCTION pgq._install_grants(i_schema regnamespace, i_role text, i_keep text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS sig, p.proname, p.pronargs FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = i_schema AND p.proname IS DISTINCT FROM i_keep
    LOOP
        EXECUTE 'REVOKE ALL ON FUNCTION ' || f.sig || ' FROM public';
        IF i_role IS NOT NULL AND NOT (f.proname = 'version' AND f.pronargs = 0) THEN
            EXECUTE 'GRANT EXECUTE ON FUNCTION ' || f.sig || ' TO ' || quote_ident(i_role);
        END IF;
    END LOOP;
END
$$;
