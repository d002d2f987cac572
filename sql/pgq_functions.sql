-- pgq core: the part of the SQL API that is administrative or naturally SQL.
-- The hot paths (insert_event*, ticker(), ticker(text), next_batch*, the batch
-- query, get_batch_events, get_batch_cursor, finish_batch) are Rust (src/api.rs).
-- Loaded last by the generated install script (finalize).

-- ---------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------

-- The PgQ API version clients test for (pgqd wants >= 3), not the extension version
-- (pg_extension.extversion): README, "Versions and upgrades".
CREATE FUNCTION pgq.version() RETURNS text
LANGUAGE sql SET search_path = pg_catalog, pgq, pg_temp AS $$
    SELECT '3.5'::text
$$;

CREATE FUNCTION pgq.quote_fqname(i_name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    dot int := pg_catalog.strpos(i_name, '.');
BEGIN
    IF dot = 0 THEN
        RETURN 'public.' || pg_catalog.quote_ident(i_name);
    END IF;
    RETURN pg_catalog.quote_ident(pg_catalog.substr(i_name, 1, dot - 1)) || '.'
        || pg_catalog.quote_ident(pg_catalog.substr(i_name, dot + 1));
END;
$$;

CREATE FUNCTION pgq.seq_getval(i_seq_name text) RETURNS bigint
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    v bigint;
BEGIN
    -- last_value straight from the relation: counts nextval() of uncommitted and
    -- rolled-back transactions too, which is what the ticker wants.
    EXECUTE 'SELECT last_value FROM ' || pgq.quote_fqname(i_seq_name) INTO v;
    RETURN v;
END;
$$;

CREATE FUNCTION pgq.seq_setval(i_seq_name text, i_new_value bigint) RETURNS bigint
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    fq text := pgq.quote_fqname(i_seq_name);
    v bigint;
BEGIN
    EXECUTE 'SELECT last_value FROM ' || fq INTO v;
    IF i_new_value > v THEN
        v := pg_catalog.setval(fq::regclass, i_new_value);
    END IF;
    RETURN v;
END;
$$;

CREATE FUNCTION pgq.upgrade_schema() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pgq, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                WHERE attrelid = 'pgq.subscription'::regclass AND attname = 'sub_last_tick' AND attnotnull) THEN
        ALTER TABLE pgq.subscription ALTER COLUMN sub_last_tick DROP NOT NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgq_reader') THEN
        CREATE ROLE pgq_reader;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgq_writer') THEN
        CREATE ROLE pgq_writer;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgq_admin') THEN
        CREATE ROLE pgq_admin IN ROLE pgq_reader, pgq_writer;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                    WHERE attrelid = 'pgq.queue'::regclass AND attname = 'queue_extra_maint'
                      AND NOT attisdropped) THEN
        ALTER TABLE pgq.queue ADD COLUMN queue_extra_maint text[];
    END IF;
    RETURN 0;
END;
$$;

-- ---------------------------------------------------------------------------
-- Queue administration
-- ---------------------------------------------------------------------------

CREATE FUNCTION pgq._grant_perms_from(src_schema text, src_table text, dst_schema text, dst_table text)
RETURNS integer LANGUAGE plpgsql STRICT SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    src regclass := (pg_catalog.quote_ident(src_schema) || '.' || pg_catalog.quote_ident(src_table))::regclass;
    dst text := pg_catalog.quote_ident(dst_schema) || '.' || pg_catalog.quote_ident(dst_table);
    g record;
BEGIN
    FOR g IN
        SELECT a.privilege_type, a.is_grantable,
               CASE WHEN a.grantee = 0 THEN 'public'
                    ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee
          FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
         WHERE c.oid = src AND a.grantee <> c.relowner
         ORDER BY 3, 1
    LOOP
        EXECUTE pg_catalog.format('GRANT %s ON %s TO %s%s', g.privilege_type, dst, g.grantee,
                                  CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    RETURN 1;
END;
$$;

CREATE FUNCTION pgq.grant_perms(x_queue_name text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    q pgq.queue%ROWTYPE;
    i int;
BEGIN
    SELECT * INTO q FROM pgq.queue WHERE queue_name = x_queue_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Queue not found';
    END IF;
    -- stored names are data: always quoted (pgq.quote_fqname), never spliced raw
    EXECUTE 'GRANT SELECT ON ' || pgq.quote_fqname(q.queue_tick_seq) || ' TO public';
    EXECUTE 'GRANT SELECT ON ' || pgq.quote_fqname(q.queue_event_seq) || ' TO public';
    EXECUTE 'GRANT USAGE ON ' || pgq.quote_fqname(q.queue_event_seq) || ' TO pgq_admin';
    PERFORM pgq._grant_perms_from('pgq', 'event_template', 'pgq', 'event_' || q.queue_id::text);
    FOR i IN 0 .. q.queue_ntables - 1 LOOP
        PERFORM pgq._grant_perms_from('pgq', 'event_template', 'pgq',
                                      'event_' || q.queue_id::text || '_' || i::text);
    END LOOP;
    RETURN 1;
END;
$$;

CREATE FUNCTION pgq.tune_storage(i_queue_name text) RETURNS integer
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    q pgq.queue%ROWTYPE;
    i int;
BEGIN
    SELECT * INTO q FROM pgq.queue WHERE queue_name = i_queue_name;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    FOR i IN 0 .. q.queue_ntables - 1 LOOP
        EXECUTE 'ALTER TABLE ' || pgq.quote_fqname(q.queue_data_pfx || '_' || i::text)
             || ' SET (fillfactor = 100, autovacuum_enabled = off, toast.autovacuum_enabled = off)';
    END LOOP;
    RETURN 1;
END;
$$;

CREATE FUNCTION pgq.create_queue(i_queue_name text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    qid int;
    pfx text;
    rel text;
    nt int;
    i int;
BEGIN
    IF i_queue_name IS NULL THEN
        RAISE EXCEPTION 'Invalid NULL value';
    END IF;
    PERFORM 1 FROM pgq.queue WHERE queue_name = i_queue_name;
    IF FOUND THEN
        RETURN 0;
    END IF;

    qid := nextval('pgq.queue_queue_id_seq');
    rel := 'event_' || qid::text;
    pfx := 'pgq.' || rel;
    INSERT INTO pgq.queue (queue_id, queue_name, queue_data_pfx, queue_event_seq, queue_tick_seq)
    VALUES (qid, i_queue_name, pfx, pfx || '_id_seq', pfx || '_tick_seq')
    RETURNING queue_ntables INTO nt;

    EXECUTE 'CREATE SEQUENCE ' || pfx || '_tick_seq';
    EXECUTE 'CREATE SEQUENCE ' || pfx || '_id_seq';
    EXECUTE 'CREATE TABLE ' || pfx || ' () INHERITS (pgq.event_template)';
    -- pfx is built here from the queue id: a plain identifier, safe to splice
    FOR i IN 0 .. nt - 1 LOOP
        EXECUTE 'CREATE TABLE ' || pfx || '_' || i::text || ' () INHERITS (' || pfx || ')';
        EXECUTE 'ALTER TABLE ' || pfx || '_' || i::text || ' ALTER COLUMN ev_id SET DEFAULT nextval('
             || quote_literal(pfx || '_id_seq') || ')';
        EXECUTE 'CREATE INDEX ' || rel || '_' || i::text || '_txid_idx ON ' || pfx || '_' || i::text || ' (ev_txid)';
    END LOOP;

    PERFORM pgq.grant_perms(i_queue_name);
    PERFORM pgq.ticker(i_queue_name);
    PERFORM pgq.tune_storage(i_queue_name);
    RETURN 1;
END;
$$;

CREATE FUNCTION pgq.drop_queue(x_queue_name text, x_force boolean) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    q pgq.queue%ROWTYPE;
    c text;
    i int;
BEGIN
    SELECT * INTO q FROM pgq.queue WHERE queue_name = x_queue_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'No such event queue';
    END IF;
    IF x_force THEN
        FOR c IN SELECT co.co_name FROM pgq.subscription s JOIN pgq.consumer co ON co.co_id = s.sub_consumer
                  WHERE s.sub_queue = q.queue_id ORDER BY 1
        LOOP
            PERFORM pgq.unregister_consumer(q.queue_name, c);
        END LOOP;
    ELSE
        PERFORM 1 FROM pgq.subscription WHERE sub_queue = q.queue_id;
        IF FOUND THEN
            RAISE EXCEPTION 'cannot drop queue, consumers still attached';
        END IF;
    END IF;

    FOR i IN 0 .. q.queue_ntables - 1 LOOP
        EXECUTE 'DROP TABLE ' || pgq.quote_fqname(q.queue_data_pfx || '_' || i::text);
    END LOOP;
    EXECUTE 'DROP TABLE ' || pgq.quote_fqname(q.queue_data_pfx);
    DELETE FROM pgq.retry_queue WHERE ev_queue = q.queue_id;
    DELETE FROM pgq.tick WHERE tick_queue = q.queue_id;
    EXECUTE 'DROP SEQUENCE ' || pgq.quote_fqname(q.queue_tick_seq);
    EXECUTE 'DROP SEQUENCE ' || pgq.quote_fqname(q.queue_event_seq);
    DELETE FROM pgq.queue WHERE queue_id = q.queue_id;
    RETURN 1;
END;
$$;

CREATE FUNCTION pgq.drop_queue(x_queue_name text) RETURNS integer
LANGUAGE sql STRICT SET search_path = pg_catalog, pgq, pg_temp AS $$
    SELECT pgq.drop_queue(x_queue_name, false)
$$;

CREATE FUNCTION pgq.set_queue_config(x_queue_name text, x_param_name text, x_param_value text)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    col text;
BEGIN
    IF x_queue_name IS NULL OR x_param_name IS NULL THEN
        RAISE EXCEPTION 'Invalid NULL value';
    END IF;
    PERFORM 1 FROM pgq.queue WHERE queue_name = x_queue_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'No such event queue';
    END IF;
    col := 'queue_' || x_param_name;
    IF col NOT IN ('queue_ticker_max_count', 'queue_ticker_max_lag', 'queue_ticker_idle_period',
                   'queue_ticker_paused', 'queue_rotation_period', 'queue_external_ticker') THEN
        -- the original's message carries a stray "s" after the name; clients may match it
        RAISE EXCEPTION 'cannot change parameter "%s"', x_param_name;
    END IF;
    -- a NULL value makes the statement NULL and EXECUTE refuses it (22004), as in the original
    EXECUTE 'UPDATE pgq.queue SET ' || pg_catalog.quote_ident(col) || ' = '
         || pg_catalog.quote_literal(x_param_value) || ' WHERE queue_name = $1'
      USING x_queue_name;
    RETURN 1;
END;
$$;

CREATE FUNCTION pgq.current_event_table(x_queue_name text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    pfx text;
    cur int;
    disabled bool;
BEGIN
    SELECT queue_data_pfx, queue_cur_table, queue_disable_insert INTO pfx, cur, disabled
      FROM pgq.queue WHERE queue_name = x_queue_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Event queue not found';
    END IF;
    IF disabled AND pg_catalog.current_setting('session_replication_role') <> 'replica' THEN
        RAISE EXCEPTION 'Writing to queue disabled';
    END IF;
    RETURN pfx || '_' || cur::text;
END;
$$;

-- ---------------------------------------------------------------------------
-- Consumers
-- ---------------------------------------------------------------------------

CREATE FUNCTION pgq.register_consumer_at(x_queue_name text, x_consumer_name text, x_tick_pos bigint)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    qid int;
    cid int;
    pos bigint := x_tick_pos;
BEGIN
    SELECT queue_id INTO qid FROM pgq.queue WHERE queue_name = x_queue_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Event queue not created yet';
    END IF;

    SELECT co_id INTO cid FROM pgq.consumer WHERE co_name = x_consumer_name FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO pgq.consumer (co_name) VALUES (x_consumer_name) RETURNING co_id INTO cid;
    END IF;

    IF pos IS NOT NULL THEN
        PERFORM 1 FROM pgq.tick WHERE tick_queue = qid AND tick_id = pos;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'cannot reposition, tick not found: %', pos;
        END IF;
    END IF;

    PERFORM 1 FROM pgq.subscription WHERE sub_queue = qid AND sub_consumer = cid FOR UPDATE;
    IF FOUND THEN
        IF pos IS NOT NULL THEN
            UPDATE pgq.subscription
               SET sub_last_tick = pos, sub_batch = NULL, sub_next_tick = NULL, sub_active = now()
             WHERE sub_queue = qid AND sub_consumer = cid;
        END IF;
        RETURN 0;
    END IF;

    IF pos IS NULL THEN
        SELECT tick_id INTO pos FROM pgq.tick WHERE tick_queue = qid
         ORDER BY tick_queue DESC, tick_id DESC LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'No ticks for this queue.  Please run ticker on database.';
        END IF;
    END IF;
    INSERT INTO pgq.subscription (sub_queue, sub_consumer, sub_last_tick) VALUES (qid, cid, pos);
    RETURN 1;
END;
$$;

CREATE FUNCTION pgq.register_consumer(x_queue_name text, x_consumer_id text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
BEGIN
    RETURN pgq.register_consumer_at(x_queue_name, x_consumer_id, NULL);
END;
$$;

CREATE FUNCTION pgq.unregister_consumer(x_queue_name text, x_consumer_name text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    s record;
    shared int;
    n int;
BEGIN
    SELECT sb.sub_id, sb.sub_queue, sb.sub_consumer, sb.sub_last_tick, sb.sub_next_tick INTO s
      FROM pgq.subscription sb
      JOIN pgq.queue q ON q.queue_id = sb.sub_queue
      JOIN pgq.consumer c ON c.co_id = sb.sub_consumer
     WHERE q.queue_name = x_queue_name AND c.co_name = x_consumer_name
       FOR UPDATE OF sb;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;

    SELECT count(*) INTO shared FROM pgq.subscription WHERE sub_id = s.sub_id;
    -- a cooperative sub-consumer has both tick columns NULL (idle) or both set
    IF shared > 1 AND ((s.sub_last_tick IS NULL) = (s.sub_next_tick IS NULL)) THEN
        DELETE FROM pgq.subscription WHERE sub_queue = s.sub_queue AND sub_consumer = s.sub_consumer;
        RETURN 1;
    END IF;

    DELETE FROM pgq.retry_queue WHERE ev_owner = s.sub_id;
    DELETE FROM pgq.subscription WHERE sub_id = s.sub_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM 1 FROM pgq.subscription WHERE sub_consumer = s.sub_consumer;
    IF NOT FOUND THEN
        DELETE FROM pgq.consumer WHERE co_id = s.sub_consumer;
    END IF;
    RETURN n;
END;
$$;

CREATE FUNCTION pgq.find_tick_helper(
    i_queue_id integer, i_prev_tick_id bigint, i_prev_tick_time timestamptz,
    i_prev_tick_seq bigint, i_min_count bigint, i_min_interval interval,
    OUT next_tick_id bigint, OUT next_tick_time timestamptz, OUT next_tick_seq bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    t record;
BEGIN
    SELECT tick_id, tick_time, tick_event_seq INTO t FROM pgq.tick
     WHERE tick_queue = i_queue_id AND tick_id > i_prev_tick_id
     ORDER BY tick_queue DESC, tick_id DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF (i_min_count IS NOT NULL AND t.tick_event_seq - i_prev_tick_seq > 2 * i_min_count)
       OR (i_min_interval IS NOT NULL AND t.tick_time - i_prev_tick_time > 2 * i_min_interval) THEN
        -- far past the thresholds: take the first tick that reaches one of them
        SELECT tick_id, tick_time, tick_event_seq INTO t FROM pgq.tick
         WHERE tick_queue = i_queue_id AND tick_id > i_prev_tick_id
           AND ((i_min_count IS NOT NULL AND tick_event_seq - i_prev_tick_seq >= i_min_count)
             OR (i_min_interval IS NOT NULL AND tick_time - i_prev_tick_time >= i_min_interval))
         ORDER BY tick_queue ASC, tick_id ASC LIMIT 1;
    ELSIF NOT ((i_min_count IS NOT NULL AND t.tick_event_seq - i_prev_tick_seq >= i_min_count)
            OR (i_min_interval IS NOT NULL AND t.tick_time - i_prev_tick_time >= i_min_interval)) THEN
        RETURN;
    END IF;
    next_tick_id := t.tick_id;
    next_tick_time := t.tick_time;
    next_tick_seq := t.tick_event_seq;
END;
$$;

CREATE FUNCTION pgq.next_batch_custom(
    i_queue_name text, i_consumer_name text, i_min_lag interval, i_min_count integer, i_min_interval interval,
    OUT batch_id bigint, OUT cur_tick_id bigint, OUT prev_tick_id bigint,
    OUT cur_tick_time timestamptz, OUT prev_tick_time timestamptz,
    OUT cur_tick_event_seq bigint, OUT prev_tick_event_seq bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
BEGIN
    SELECT * INTO batch_id, cur_tick_id, prev_tick_id, cur_tick_time, prev_tick_time,
                  cur_tick_event_seq, prev_tick_event_seq
      FROM pgq._next_batch_custom(i_queue_name, i_consumer_name, i_min_lag, i_min_count, i_min_interval);
END;
$$;

CREATE FUNCTION pgq.next_batch_info(
    i_queue_name text, i_consumer_name text,
    OUT batch_id bigint, OUT cur_tick_id bigint, OUT prev_tick_id bigint,
    OUT cur_tick_time timestamptz, OUT prev_tick_time timestamptz,
    OUT cur_tick_event_seq bigint, OUT prev_tick_event_seq bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pgq, pg_temp AS $$
BEGIN
    SELECT * INTO batch_id, cur_tick_id, prev_tick_id, cur_tick_time, prev_tick_time,
                  cur_tick_event_seq, prev_tick_event_seq
      FROM pgq.next_batch_custom(i_queue_name, i_consumer_name, NULL, NULL, NULL);
END;
$$;

-- The batch query is built in Rust (pgq.batch_event_sql: both tick snapshots inlined as
-- constants, so the scan is an index range scan with no per-row function calls); rows
-- are streamed by PL/pgSQL's RETURN QUERY EXECUTE straight into the result.
CREATE FUNCTION pgq.get_batch_events(
    x_batch_id bigint,
    OUT ev_id bigint, OUT ev_time timestamptz, OUT ev_txid bigint, OUT ev_retry integer,
    OUT ev_type text, OUT ev_data text, OUT ev_extra1 text, OUT ev_extra2 text,
    OUT ev_extra3 text, OUT ev_extra4 text)
RETURNS SETOF record LANGUAGE plpgsql SET search_path = pg_catalog, pgq, pg_temp AS $$
BEGIN
    RETURN QUERY EXECUTE pgq.batch_event_sql(x_batch_id);
END;
$$;

CREATE FUNCTION pgq.get_batch_cursor(
    i_batch_id bigint, i_cursor_name text, i_quick_limit integer, i_extra_where text,
    OUT ev_id bigint, OUT ev_time timestamptz, OUT ev_txid bigint, OUT ev_retry integer,
    OUT ev_type text, OUT ev_data text, OUT ev_extra1 text, OUT ev_extra2 text,
    OUT ev_extra3 text, OUT ev_extra4 text)
RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE
    q text;
    cname text;
BEGIN
    IF i_batch_id IS NULL OR i_cursor_name IS NULL OR i_quick_limit IS NULL THEN
        RETURN;
    END IF;
    q := pgq.batch_event_sql(i_batch_id);
    IF i_extra_where IS NOT NULL THEN
        IF pg_catalog.right(q, 11) = ' order by 1' THEN
            q := pg_catalog.left(q, -11);
        END IF;
        q := 'select * from (' || q || ') _evs where ' || i_extra_where || ' order by 1';
    END IF;
    cname := pg_catalog.quote_ident(i_cursor_name);
    EXECUTE 'DECLARE ' || cname || ' NO SCROLL CURSOR FOR ' || q;
    IF i_quick_limit > 0 THEN
        RETURN QUERY EXECUTE 'FETCH ' || i_quick_limit || ' FROM ' || cname;
    END IF;
END;
$$;

CREATE FUNCTION pgq.get_batch_cursor(
    i_batch_id bigint, i_cursor_name text, i_quick_limit integer,
    OUT ev_id bigint, OUT ev_time timestamptz, OUT ev_txid bigint, OUT ev_retry integer,
    OUT ev_type text, OUT ev_data text, OUT ev_extra1 text, OUT ev_extra2 text,
    OUT ev_extra3 text, OUT ev_extra4 text)
RETURNS SETOF record LANGUAGE sql STRICT AS $$
    SELECT * FROM pgq.get_batch_cursor(i_batch_id, i_cursor_name, i_quick_limit, NULL)
$$;

CREATE FUNCTION pgq.event_retry(x_batch_id bigint, x_event_id bigint, x_retry_time timestamptz)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    sub record;
    ev record;
    n int;
BEGIN
    SELECT sub_id, sub_queue INTO sub FROM pgq.subscription WHERE sub_batch = x_batch_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event not found';
    END IF;
    EXECUTE 'SELECT * FROM (' || pgq.batch_event_sql(x_batch_id) || ') _ev WHERE ev_id = $1'
       INTO ev USING x_event_id;
    IF ev.ev_id IS NULL THEN
        RAISE EXCEPTION 'event not found';
    END IF;
    INSERT INTO pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time, ev_txid, ev_owner, ev_retry,
                                 ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)
    VALUES (x_retry_time, sub.sub_queue, ev.ev_id, ev.ev_time, NULL, sub.sub_id,
            coalesce(ev.ev_retry, 0) + 1, ev.ev_type, ev.ev_data,
            ev.ev_extra1, ev.ev_extra2, ev.ev_extra3, ev.ev_extra4)
    ON CONFLICT (ev_owner, ev_id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

CREATE FUNCTION pgq.event_retry(x_batch_id bigint, x_event_id bigint, x_retry_seconds integer)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
BEGIN
    RETURN pgq.event_retry(x_batch_id, x_event_id,
                           current_timestamp + x_retry_seconds * interval '1 second');
END;
$$;

CREATE FUNCTION pgq.batch_retry(i_batch_id bigint, i_retry_seconds integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    sub record;
    n int;
BEGIN
    SELECT sub_id, sub_queue INTO sub FROM pgq.subscription WHERE sub_batch = i_batch_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'batch_retry: batch % not found', i_batch_id;
    END IF;
    EXECUTE 'INSERT INTO pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time, ev_txid, ev_owner, '
         || 'ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4) '
         || 'SELECT $1, $2, ev_id, ev_time, NULL, $3, coalesce(ev_retry, 0) + 1, ev_type, ev_data, '
         || 'ev_extra1, ev_extra2, ev_extra3, ev_extra4 FROM (' || pgq.batch_event_sql(i_batch_id)
         || ') _ev ON CONFLICT (ev_owner, ev_id) DO NOTHING'
      USING current_timestamp + i_retry_seconds * interval '1 second', sub.sub_queue, sub.sub_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

CREATE FUNCTION pgq.event_retry_raw(
    x_queue text, x_consumer text, x_retry_after timestamptz, x_ev_id bigint, x_ev_time timestamptz,
    x_ev_retry integer, x_ev_type text, x_ev_data text,
    x_ev_extra1 text, x_ev_extra2 text, x_ev_extra3 text, x_ev_extra4 text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    s record;
    id bigint := x_ev_id;
BEGIN
    SELECT sb.sub_id, q.queue_id, q.queue_event_seq INTO s
      FROM pgq.subscription sb
      JOIN pgq.queue q ON q.queue_id = sb.sub_queue
      JOIN pgq.consumer c ON c.co_id = sb.sub_consumer
     WHERE q.queue_name = x_queue AND c.co_name = x_consumer;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consumer not registered';
    END IF;
    IF id IS NULL THEN
        id := nextval(s.queue_event_seq::regclass);
    END IF;
    INSERT INTO pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time, ev_txid, ev_owner, ev_retry,
                                 ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)
    VALUES (x_retry_after, s.queue_id, id, x_ev_time, NULL, s.sub_id, x_ev_retry,
            x_ev_type, x_ev_data, x_ev_extra1, x_ev_extra2, x_ev_extra3, x_ev_extra4);
    RETURN id;
END;
$$;

CREATE FUNCTION pgq.force_tick(i_queue_name text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    q pgq.queue%ROWTYPE;
    last bigint;
BEGIN
    SELECT * INTO q FROM pgq.queue WHERE queue_name = i_queue_name;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF NOT q.queue_external_ticker AND NOT q.queue_ticker_paused THEN
        -- push the event sequence far enough that the next ticker run sees
        -- "enough new events"; running the ticker here would race the real one
        PERFORM setval(q.queue_event_seq::regclass,
                       nextval(q.queue_event_seq::regclass) + q.queue_ticker_max_count * 2 + 1000);
    END IF;
    SELECT tick_id INTO last FROM pgq.tick WHERE tick_queue = q.queue_id
     ORDER BY tick_queue DESC, tick_id DESC LIMIT 1;
    RETURN last;
END;
$$;

-- ---------------------------------------------------------------------------
-- External ticker (cascade branches)
-- ---------------------------------------------------------------------------

CREATE FUNCTION pgq.ticker(i_queue_name text, i_tick_id bigint, i_orig_timestamp timestamptz, i_event_seq bigint)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    q pgq.queue%ROWTYPE;
BEGIN
    -- External queues are ticked only by this form (the other ticker forms skip or
    -- refuse them), so it needs no database-wide ticker lock.
    IF NOT pg_catalog.isfinite(i_orig_timestamp) THEN
        RAISE EXCEPTION 'invalid tick time: %', i_orig_timestamp
            USING ERRCODE = 'datetime_field_overflow';
    END IF;
    SELECT * INTO q FROM pgq.queue
     WHERE queue_name = i_queue_name AND queue_external_ticker AND NOT queue_ticker_paused;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'queue not found or ticker disabled: %', i_queue_name;
    END IF;
    INSERT INTO pgq.tick (tick_queue, tick_id, tick_time, tick_event_seq)
    VALUES (q.queue_id, i_tick_id, i_orig_timestamp, i_event_seq);
    PERFORM pgq.seq_setval(q.queue_tick_seq, i_tick_id);
    PERFORM pgq.seq_setval(q.queue_event_seq, i_event_seq);
    RETURN i_tick_id;
END;
$$;

-- ---------------------------------------------------------------------------
-- Information
-- ---------------------------------------------------------------------------

CREATE FUNCTION pgq.get_queue_info(
    i_queue_name text,
    OUT queue_name text, OUT queue_ntables integer, OUT queue_cur_table integer,
    OUT queue_rotation_period interval, OUT queue_switch_time timestamptz,
    OUT queue_external_ticker boolean, OUT queue_ticker_paused boolean,
    OUT queue_ticker_max_count integer, OUT queue_ticker_max_lag interval,
    OUT queue_ticker_idle_period interval, OUT ticker_lag interval,
    OUT ev_per_sec double precision, OUT ev_new bigint, OUT last_tick_id bigint)
RETURNS SETOF record LANGUAGE sql SET search_path = pg_catalog, pgq, pg_temp AS $$
    SELECT q.queue_name, q.queue_ntables, q.queue_cur_table, q.queue_rotation_period, q.queue_switch_time,
           q.queue_external_ticker, q.queue_ticker_paused, q.queue_ticker_max_count,
           q.queue_ticker_max_lag, q.queue_ticker_idle_period,
           current_timestamp - t.tick_time,
           CASE WHEN t.tick_time > r.tick_time
                THEN (t.tick_event_seq - r.tick_event_seq)::float8
                     / extract(epoch FROM t.tick_time - r.tick_time)::float8 END,
           coalesce(pg_catalog.pg_sequence_last_value(sq.seqrelid), sq.seqstart) - t.tick_event_seq,
           t.tick_id
      FROM pgq.queue q
      LEFT JOIN pg_catalog.pg_sequence sq ON sq.seqrelid = pgq._stored_seq(q.queue_event_seq)
      LEFT JOIN LATERAL (SELECT tick_id, tick_time, tick_event_seq FROM pgq.tick
                          WHERE tick_queue = q.queue_id
                          ORDER BY tick_queue DESC, tick_id DESC LIMIT 1) t ON true
      LEFT JOIN LATERAL (SELECT tick_time, tick_event_seq FROM pgq.tick
                          WHERE tick_queue = q.queue_id AND tick_id >= t.tick_id - 20
                          ORDER BY tick_queue, tick_id LIMIT 1) r ON true
     WHERE i_queue_name IS NULL OR q.queue_name = i_queue_name
     ORDER BY q.queue_name
$$;

CREATE FUNCTION pgq.get_queue_info(
    OUT queue_name text, OUT queue_ntables integer, OUT queue_cur_table integer,
    OUT queue_rotation_period interval, OUT queue_switch_time timestamptz,
    OUT queue_external_ticker boolean, OUT queue_ticker_paused boolean,
    OUT queue_ticker_max_count integer, OUT queue_ticker_max_lag interval,
    OUT queue_ticker_idle_period interval, OUT ticker_lag interval,
    OUT ev_per_sec double precision, OUT ev_new bigint, OUT last_tick_id bigint)
RETURNS SETOF record LANGUAGE sql SET search_path = pg_catalog, pgq, pg_temp AS $$
    SELECT * FROM pgq.get_queue_info(NULL)
$$;

CREATE FUNCTION pgq.get_consumer_info(
    i_queue_name text, i_consumer_name text,
    OUT queue_name text, OUT consumer_name text, OUT lag interval, OUT last_seen interval,
    OUT last_tick bigint, OUT current_batch bigint, OUT next_tick bigint, OUT pending_events bigint)
RETURNS SETOF record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
    SELECT q.queue_name, c.co_name,
           current_timestamp - t.tick_time, current_timestamp - s.sub_active,
           s.sub_last_tick, s.sub_batch, s.sub_next_tick,
           lt.tick_event_seq - t.tick_event_seq
      FROM pgq.subscription s
      JOIN pgq.queue q ON q.queue_id = s.sub_queue
      JOIN pgq.consumer c ON c.co_id = s.sub_consumer
      LEFT JOIN pgq.tick t ON t.tick_queue = s.sub_queue AND t.tick_id = s.sub_last_tick
      LEFT JOIN LATERAL (SELECT tick_event_seq FROM pgq.tick WHERE tick_queue = s.sub_queue
                          ORDER BY tick_queue DESC, tick_id DESC LIMIT 1) lt ON true
     WHERE (i_queue_name IS NULL OR q.queue_name = i_queue_name)
       AND (i_consumer_name IS NULL OR c.co_name = i_consumer_name)
     ORDER BY 1, 2
$$;

CREATE FUNCTION pgq.get_consumer_info(
    i_queue_name text,
    OUT queue_name text, OUT consumer_name text, OUT lag interval, OUT last_seen interval,
    OUT last_tick bigint, OUT current_batch bigint, OUT next_tick bigint, OUT pending_events bigint)
RETURNS SETOF record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
    SELECT * FROM pgq.get_consumer_info(i_queue_name, NULL)
$$;

CREATE FUNCTION pgq.get_consumer_info(
    OUT queue_name text, OUT consumer_name text, OUT lag interval, OUT last_seen interval,
    OUT last_tick bigint, OUT current_batch bigint, OUT next_tick bigint, OUT pending_events bigint)
RETURNS SETOF record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
    SELECT * FROM pgq.get_consumer_info(NULL, NULL)
$$;

CREATE FUNCTION pgq.get_batch_info(
    x_batch_id bigint,
    OUT queue_name text, OUT consumer_name text, OUT batch_start timestamptz, OUT batch_end timestamptz,
    OUT prev_tick_id bigint, OUT tick_id bigint, OUT lag interval, OUT seq_start bigint, OUT seq_end bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgq, pg_temp AS $$
BEGIN
    SELECT q.queue_name, c.co_name, prev.tick_time, cur.tick_time, s.sub_last_tick, s.sub_next_tick,
           current_timestamp - cur.tick_time, prev.tick_event_seq, cur.tick_event_seq
      INTO queue_name, consumer_name, batch_start, batch_end, prev_tick_id, tick_id, lag, seq_start, seq_end
      FROM pgq.subscription s
      JOIN pgq.queue q ON q.queue_id = s.sub_queue
      JOIN pgq.consumer c ON c.co_id = s.sub_consumer
      LEFT JOIN pgq.tick prev ON prev.tick_queue = s.sub_queue AND prev.tick_id = s.sub_last_tick
      LEFT JOIN pgq.tick cur ON cur.tick_queue = s.sub_queue AND cur.tick_id = s.sub_next_tick
     WHERE s.sub_batch = x_batch_id;
END;
$$;

-- ---------------------------------------------------------------------------
-- Maintenance (what pgqd calls, and the in-server worker: README "How it works")
-- ---------------------------------------------------------------------------

CREATE FUNCTION pgq.maint_rotate_tables_step1(i_queue_name text) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    q pgq.queue%ROWTYPE;
    lowest bigint;
    low_xmin bigint;
    nr int;
    tbl text;
BEGIN
    SELECT * INTO q FROM pgq.queue
     WHERE queue_name = i_queue_name
       AND queue_rotation_period IS NOT NULL
       AND queue_switch_step2 IS NOT NULL
       AND queue_switch_time + queue_rotation_period < current_timestamp
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF txid_current() < q.queue_switch_step1 THEN
        RAISE EXCEPTION 'queue % maint failure: step1=%, current=%',
            i_queue_name, q.queue_switch_step1, txid_current();
    END IF;

    -- the slowest consumer must not need the table about to be emptied
    PERFORM 1 FROM pgq.subscription WHERE sub_queue = q.queue_id;
    IF FOUND THEN
        SELECT min(sub_last_tick) INTO lowest FROM pgq.subscription WHERE sub_queue = q.queue_id;
        SELECT txid_snapshot_xmin(tick_snapshot) INTO low_xmin FROM pgq.tick
         WHERE tick_queue = q.queue_id AND tick_id = lowest;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'queue % maint failure: tick % not found', i_queue_name, lowest;
        END IF;
        IF low_xmin <= q.queue_switch_step2 THEN
            RETURN 0;
        END IF;
    END IF;

    nr := (q.queue_cur_table + 1) % q.queue_ntables;
    tbl := pgq.quote_fqname(q.queue_data_pfx || '_' || nr::text);
    BEGIN
        EXECUTE 'LOCK TABLE ' || tbl || ' NOWAIT';
    EXCEPTION WHEN lock_not_available THEN
        -- someone (pg_dump?) holds it; try again at the next maintenance run
        RETURN 0;
    END;
    EXECUTE 'TRUNCATE ' || tbl;

    UPDATE pgq.queue
       SET queue_cur_table = nr, queue_switch_time = current_timestamp,
           queue_switch_step1 = txid_current(), queue_switch_step2 = NULL
     WHERE queue_id = q.queue_id;

    DELETE FROM pgq.tick
     WHERE tick_queue = q.queue_id AND txid_snapshot_xmin(tick_snapshot) < q.queue_switch_step2;
    RETURN 0;
END;
$$;

CREATE FUNCTION pgq.maint_rotate_tables_step2() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pgq, pg_temp AS $$
BEGIN
    UPDATE pgq.queue SET queue_switch_step2 = txid_current() WHERE queue_switch_step2 IS NULL;
    RETURN 0;
END;
$$;

CREATE FUNCTION pgq.maint_retry_events() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    r record;
    moved int := 0;
BEGIN
    -- one mover at a time; producers of new retry rows are not blocked
    LOCK TABLE pgq.retry_queue IN SHARE UPDATE EXCLUSIVE MODE;
    FOR r IN
        SELECT q.queue_name, rq.ev_id, rq.ev_time, rq.ev_owner, rq.ev_retry, rq.ev_type, rq.ev_data,
               rq.ev_extra1, rq.ev_extra2, rq.ev_extra3, rq.ev_extra4
          FROM pgq.retry_queue rq JOIN pgq.queue q ON q.queue_id = rq.ev_queue
         WHERE rq.ev_retry_after <= current_timestamp
         ORDER BY rq.ev_retry_after
         LIMIT 10
    LOOP
        PERFORM pgq.insert_event_raw(r.queue_name, r.ev_id, r.ev_time, r.ev_owner, r.ev_retry,
                                     r.ev_type, r.ev_data, r.ev_extra1, r.ev_extra2, r.ev_extra3, r.ev_extra4);
        DELETE FROM pgq.retry_queue WHERE ev_owner = r.ev_owner AND ev_id = r.ev_id;
        moved := moved + 1;
    END LOOP;
    RETURN moved;
END;
$$;

CREATE FUNCTION pgq.maint_tables_to_vacuum() RETURNS SETOF text
LANGUAGE plpgsql SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    t text;
BEGIN
    IF pg_catalog.current_setting('autovacuum') = 'on' THEN
        RETURN;
    END IF;
    FOREACH t IN ARRAY ARRAY['pgq.subscription', 'pgq.consumer', 'pgq.queue', 'pgq.tick', 'pgq.retry_queue',
                             'pgq_ext.completed_tick', 'pgq_ext.completed_batch', 'pgq_ext.completed_event',
                             'pgq_ext.partial_batch', 'pgq_node.local_state', 'londiste.seq_info',
                             'txid.epoch', 'londiste.completed']
    LOOP
        IF pg_catalog.to_regclass(t) IS NOT NULL THEN
            RETURN NEXT t;
        END IF;
    END LOOP;
END;
$$;

CREATE FUNCTION pgq.maint_operations(OUT func_name text, OUT func_arg text)
RETURNS SETOF record LANGUAGE plpgsql SET search_path = pg_catalog, pgq, pg_temp AS $$
DECLARE
    q text;
    f text;
    qrec record;
    rotations int := 0;
BEGIN
    FOR q IN SELECT queue_name FROM pgq.queue
              WHERE queue_rotation_period IS NOT NULL AND queue_switch_step2 IS NOT NULL
                AND queue_switch_time + queue_rotation_period < current_timestamp
              ORDER BY queue_name
    LOOP
        func_name := 'pgq.maint_rotate_tables_step1';
        func_arg := q;
        rotations := rotations + 1;
        RETURN NEXT;
    END LOOP;
    IF rotations > 0 OR EXISTS (SELECT 1 FROM pgq.queue WHERE queue_switch_step2 IS NULL) THEN
        func_name := 'pgq.maint_rotate_tables_step2';
        func_arg := NULL;
        RETURN NEXT;
    END IF;

    FOR qrec IN SELECT queue_name, queue_extra_maint FROM pgq.queue
                 WHERE queue_extra_maint IS NOT NULL ORDER BY queue_name
    LOOP
        FOREACH f IN ARRAY qrec.queue_extra_maint LOOP
            func_name := f;
            func_arg := qrec.queue_name;
            RETURN NEXT;
        END LOOP;
    END LOOP;

    FOR q IN SELECT * FROM pgq.maint_tables_to_vacuum() LOOP
        func_name := 'vacuum';
        func_arg := q;
        RETURN NEXT;
    END LOOP;

    -- cascade and londiste hooks, when those schemas are present
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'pgq_node' AND p.proname = 'maint_watermark') THEN
        FOR q IN EXECUTE 'SELECT queue_name FROM pgq_node.node_info WHERE node_type = ''root'' ORDER BY 1' LOOP
            func_name := 'pgq_node.maint_watermark';
            func_arg := q;
            RETURN NEXT;
        END LOOP;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'londiste' AND p.proname = 'root_check_seqs') THEN
        FOR q IN EXECUTE 'SELECT DISTINCT n.queue_name FROM pgq_node.node_info n '
                      || 'JOIN londiste.seq_info s ON s.queue_name = n.queue_name '
                      || 'WHERE n.node_type = ''root'' AND s.local ORDER BY 1' LOOP
            func_name := 'londiste.root_check_seqs';
            func_arg := q;
            RETURN NEXT;
        END LOOP;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'londiste' AND p.proname = 'periodic_maintenance') THEN
        func_name := 'londiste.periodic_maintenance';
        func_arg := NULL;
        RETURN NEXT;
    END IF;
END;
$$;

-- ---------------------------------------------------------------------------
-- Keep every backend's insert cache (src/insert.rs) in step with pgq.queue.
-- ---------------------------------------------------------------------------

CREATE TRIGGER queue_cache_inval
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgq.queue
    FOR EACH STATEMENT EXECUTE FUNCTION pgq._queue_cache_inval();

-- ---------------------------------------------------------------------------
-- Function privileges (README "Roles and privileges")
-- ---------------------------------------------------------------------------

-- The launcher (when preloaded) picks this database up at commit.
SELECT pgq._wake_launcher();

-- pgrx marks argument-less functions STRICT; the original's ticker() is not
ALTER FUNCTION pgq.ticker() CALLED ON NULL INPUT;

SELECT pgq._install_grants('pgq', NULL, NULL);

GRANT EXECUTE ON FUNCTION
    pgq.seq_getval(text), pgq.get_queue_info(), pgq.get_queue_info(text),
    pgq.get_consumer_info(), pgq.get_consumer_info(text), pgq.get_consumer_info(text, text),
    pgq.quote_fqname(text), pgq.version(), pgq.worker_status(), pgq._stored_seq(text)
TO public;

GRANT EXECUTE ON FUNCTION
    pgq.batch_event_sql(bigint), pgq.batch_event_tables(bigint),
    pgq.find_tick_helper(integer, bigint, timestamptz, bigint, bigint, interval),
    pgq.register_consumer(text, text), pgq.register_consumer_at(text, text, bigint),
    pgq.unregister_consumer(text, text),
    pgq.next_batch_info(text, text), pgq.next_batch(text, text),
    pgq.next_batch_custom(text, text, interval, integer, interval),
    pgq.get_batch_events(bigint), pgq.get_batch_info(bigint),
    pgq.get_batch_cursor(bigint, text, integer, text), pgq.get_batch_cursor(bigint, text, integer),
    pgq.event_retry(bigint, bigint, timestamptz), pgq.event_retry(bigint, bigint, integer),
    pgq.batch_retry(bigint, integer), pgq.force_tick(text), pgq.finish_batch(bigint)
TO pgq_reader;

GRANT EXECUTE ON FUNCTION
    pgq.insert_event(text, text, text), pgq.insert_event(text, text, text, text, text, text, text),
    pgq.current_event_table(text)
TO pgq_writer;

GRANT EXECUTE ON FUNCTION
    pgq.ticker(), pgq.ticker(text), pgq.ticker(text, bigint, timestamptz, bigint),
    pgq.maint_retry_events(), pgq.maint_rotate_tables_step1(text), pgq.maint_rotate_tables_step2(),
    pgq.maint_tables_to_vacuum(), pgq.maint_operations(), pgq.upgrade_schema(),
    pgq.grant_perms(text), pgq._grant_perms_from(text, text, text, text), pgq.tune_storage(text),
    pgq.seq_setval(text, bigint), pgq.create_queue(text), pgq.drop_queue(text), pgq.drop_queue(text, boolean),
    pgq.set_queue_config(text, text, text),
    pgq.insert_event_raw(text, bigint, timestamptz, integer, integer, text, text, text, text, text, text),
    pgq.event_retry_raw(text, text, timestamptz, bigint, timestamptz, integer, text, text, text, text, text, text)
TO pgq_admin;

-- the install-time helper of sql/pgq_schema.sql has served every schema's grants
DROP FUNCTION pgq._install_grants(regnamespace, text, text);
