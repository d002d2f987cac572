-- pgq_node: cascaded queue membership and state (docs/pgq_node.md).
-- Loaded after the pgq core tables (bootstrap); functions are in pgq_node_functions.sql.

CREATE SCHEMA pgq_node;
GRANT USAGE ON SCHEMA pgq_node TO public;

-- Every node of a cascade, as the other nodes reach it (same content on all nodes).
CREATE TABLE pgq_node.node_location (
    queue_name      text    NOT NULL,
    node_name       text    NOT NULL,
    node_location   text    NOT NULL,
    dead            boolean NOT NULL DEFAULT false,
    PRIMARY KEY (queue_name, node_name)
);

-- The local node of each cascaded queue.
CREATE TABLE pgq_node.node_info (
    queue_name      text    NOT NULL PRIMARY KEY,
    node_type       text    NOT NULL CHECK (node_type IN ('root', 'branch', 'leaf')),
    node_name       text    NOT NULL,
    worker_name     text,
    combined_queue  text,
    node_attrs      text,
    FOREIGN KEY (queue_name, node_name) REFERENCES pgq_node.node_location,
    -- root and branch: a worker and no combined queue; leaf: a worker
    CHECK (CASE node_type
               WHEN 'root' THEN worker_name IS NOT NULL AND combined_queue IS NULL
               WHEN 'branch' THEN worker_name IS NOT NULL AND combined_queue IS NULL
               WHEN 'leaf' THEN worker_name IS NOT NULL
               ELSE false
           END)
);

-- Cascaded consumers writing into this node (the worker among them).
CREATE TABLE pgq_node.local_state (
    queue_name      text    NOT NULL REFERENCES pgq_node.node_info,
    consumer_name   text    NOT NULL,
    provider_node   text    NOT NULL,
    last_tick_id    bigint  NOT NULL,
    cur_error       text,
    paused          boolean NOT NULL DEFAULT false,
    uptodate        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (queue_name, consumer_name),
    FOREIGN KEY (queue_name, provider_node) REFERENCES pgq_node.node_location
);

-- Nodes that read this node's queue.
CREATE TABLE pgq_node.subscriber_info (
    queue_name      text    NOT NULL REFERENCES pgq_node.node_info,
    subscriber_node text    NOT NULL,
    worker_name     text    NOT NULL REFERENCES pgq.consumer (co_name),
    watermark_name  text    NOT NULL REFERENCES pgq.consumer (co_name),
    PRIMARY KEY (queue_name, subscriber_node),
    FOREIGN KEY (queue_name, subscriber_node) REFERENCES pgq_node.node_location
);

GRANT SELECT ON TABLE pgq_node.node_location, pgq_node.node_info,
                      pgq_node.local_state, pgq_node.subscriber_info
    TO pgq_reader, pgq_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE pgq_node.node_location, pgq_node.node_info,
                                              pgq_node.local_state, pgq_node.subscriber_info
    TO pgq_admin;

SELECT pg_catalog.pg_extension_config_dump('pgq_node.node_location', '');
SELECT pg_catalog.pg_extension_config_dump('pgq_node.node_info', '');
SELECT pg_catalog.pg_extension_config_dump('pgq_node.local_state', '');
SELECT pg_catalog.pg_extension_config_dump('pgq_node.subscriber_info', '');
