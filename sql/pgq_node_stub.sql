-- TEMPORARY STUB (branch londiste only): the minimum of pgq_node and of the pgq
-- capture triggers that londiste needs, until branches pgq-node and triggers are
-- merged. Replaced by their real implementations at merge time.
CREATE SCHEMA pgq_node;
CREATE TABLE pgq_node.node_location (queue_name text NOT NULL, node_name text NOT NULL,
    node_location text NOT NULL, dead boolean NOT NULL DEFAULT false, PRIMARY KEY (queue_name, node_name));
CREATE TABLE pgq_node.node_info (queue_name text PRIMARY KEY, node_type text NOT NULL, node_name text NOT NULL,
    worker_name text, combined_queue text, node_attrs text);
CREATE TABLE pgq_node.local_state (queue_name text NOT NULL REFERENCES pgq_node.node_info,
    consumer_name text NOT NULL, provider_node text NOT NULL, last_tick_id int8 NOT NULL,
    cur_error text, paused boolean NOT NULL DEFAULT false, uptodate boolean NOT NULL DEFAULT false,
    PRIMARY KEY (queue_name, consumer_name));
CREATE FUNCTION pgq_node.register_location(i_queue_name text, i_node_name text, i_node_location text,
    i_dead boolean, OUT ret_code int4, OUT ret_note text) LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO pgq_node.node_location VALUES (i_queue_name, i_node_name, i_node_location, i_dead)
    ON CONFLICT (queue_name, node_name) DO UPDATE SET node_location = excluded.node_location, dead = excluded.dead;
  ret_code := 200; ret_note := 'Location registered';
END $$;
CREATE FUNCTION pgq_node.create_node(i_queue_name text, i_node_type text, i_node_name text, i_worker_name text,
    i_provider_name text, i_global_watermark int8, i_combined_queue text, OUT ret_code int4, OUT ret_note text)
LANGUAGE plpgsql AS $$
BEGIN
  IF i_node_type IN ('root', 'branch') THEN
    PERFORM pgq.create_queue(i_queue_name);
  END IF;
  INSERT INTO pgq_node.node_info VALUES (i_queue_name, i_node_type, i_node_name, i_worker_name, i_combined_queue);
  ret_code := 200;
  ret_note := 'Node "' || i_node_name || '" initialized for queue "' || i_queue_name || '" with type "' || i_node_type || '"';
END $$;
CREATE FUNCTION pgq_node.drop_node(i_queue_name text, i_node_name text, OUT ret_code int4, OUT ret_note text)
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM pgq_node.node_info WHERE queue_name = i_queue_name;
  IF EXISTS (SELECT 1 FROM pgq.queue WHERE queue_name = i_queue_name) THEN
    PERFORM pgq.drop_queue(i_queue_name, true);
  END IF;
  DELETE FROM pgq_node.node_location WHERE queue_name = i_queue_name;
  ret_code := 200; ret_note := 'Node dropped: ' || i_node_name;
END $$;
CREATE FUNCTION pgq_node.get_node_info(i_queue_name text, OUT ret_code int4, OUT ret_note text,
    OUT node_type text, OUT node_name text, OUT global_watermark int8, OUT local_watermark int8,
    OUT provider_node text, OUT provider_location text, OUT combined_queue text, OUT combined_type text,
    OUT worker_name text, OUT worker_paused bool, OUT worker_uptodate bool, OUT worker_last_tick int8,
    OUT node_attrs text, OUT target_for text[]) LANGUAGE plpgsql AS $$
BEGIN
  SELECT 100, 'Ok', n.node_type, n.node_name, n.combined_queue, c.node_type, n.worker_name
    INTO ret_code, ret_note, node_type, node_name, combined_queue, combined_type, worker_name
    FROM pgq_node.node_info n LEFT JOIN pgq_node.node_info c ON c.queue_name = n.combined_queue
   WHERE n.queue_name = i_queue_name;
  IF NOT FOUND THEN
    ret_code := 404; ret_note := 'Unknown queue: ' || coalesce(i_queue_name, '');
  END IF;
END $$;
CREATE FUNCTION pgq_node.is_root_node(i_queue_name text) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE t text;
BEGIN
  SELECT node_type INTO t FROM pgq_node.node_info WHERE queue_name = i_queue_name;
  IF NOT FOUND THEN RAISE EXCEPTION 'queue does not exist: %', i_queue_name; END IF;
  RETURN t = 'root';
END $$;
CREATE FUNCTION pgq.logutriga() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE FUNCTION pgq.sqltriga() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE FUNCTION pgq.jsontriga() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
GRANT USAGE ON SCHEMA pgq_node TO public;
GRANT SELECT ON pgq_node.node_location, pgq_node.node_info, pgq_node.local_state TO pgq_reader, pgq_writer, pgq_admin;
