-- pgq_node: cascaded consumers (register, pause/resume, completed, error, provider)
\set SHOW_CONTEXT never
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgq') THEN
    CREATE EXTENSION pgq;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgq_node')
     AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgq_node') THEN
    CREATE EXTENSION pgq_node;
  END IF;
END $$;
select * from pgq_node.register_location('nq_c', 'node1', 'dbname=node1', false);
select * from pgq_node.register_location('nq_c', 'node2', 'dbname=node2', false);
select * from pgq_node.register_location('nq_c', 'node3', 'dbname=node3', false);
select * from pgq_node.create_node('nq_c', 'branch', 'node2', 'node2_worker', 'node1', 1, null);

-- register_consumer
select * from pgq_node.register_consumer('nq_unknown', 'c1', 'node1', 1);
select * from pgq_node.register_consumer('nq_c', 'c1', 'node1', 1);
select * from pgq_node.register_consumer('nq_c', 'c1', 'node3', 5);
select * from pgq_node.register_consumer('nq_c', 'c2', 'node1', 1);
select try($$select * from pgq_node.register_consumer('nq_c', 'c3', 'node9', 1)$$);
select try($$select * from pgq_node.register_consumer('nq_c', 'c3', 'node1', null)$$);
select * from pgq_node.get_consumer_info('nq_c');
select * from pgq_node.get_consumer_info('nq_unknown');

-- get_consumer_state
select * from pgq_node.get_consumer_state('nq_c', 'c1');
select * from pgq_node.get_consumer_state('nq_c', 'nobody');
select * from pgq_node.get_consumer_state('nq_unknown', 'c1');
select * from pgq_node.get_consumer_state('nq_c', 'node2_worker');

-- error / completed
select * from pgq_node.set_consumer_error('nq_c', 'c2', 'failure');
select * from pgq_node.get_consumer_state('nq_c', 'c2');
select * from pgq_node.set_consumer_error('nq_c', 'c2', null);
select cur_error from pgq_node.get_consumer_state('nq_c', 'c2');
select * from pgq_node.set_consumer_error('nq_c', 'c2', 'failure again');
select * from pgq_node.set_consumer_error('nq_c', 'nobody', 'x');
select * from pgq_node.set_consumer_error('nq_unknown', 'c2', 'x');
select * from pgq_node.set_consumer_completed('nq_c', 'c2', 2);
select * from pgq_node.get_consumer_state('nq_c', 'c2');
select * from pgq_node.set_consumer_completed('nq_c', 'nobody', 2);
select try($$select * from pgq_node.set_consumer_completed('nq_c', 'c2', null)$$);

-- pause / resume / uptodate
select * from pgq_node.set_consumer_paused('nq_c', 'c2', true);
select * from pgq_node.set_consumer_paused('nq_c', 'c2', true);
select paused, uptodate from pgq_node.get_consumer_state('nq_c', 'c2');
select * from pgq_node.set_consumer_uptodate('nq_c', 'c2', true);
select paused, uptodate from pgq_node.get_consumer_state('nq_c', 'c2');
select * from pgq_node.set_consumer_paused('nq_c', 'c2', false);
select * from pgq_node.set_consumer_paused('nq_c', 'c2', false);
select paused, uptodate from pgq_node.get_consumer_state('nq_c', 'c2');
select * from pgq_node.set_consumer_uptodate('nq_c', 'c2', false);
select * from pgq_node.set_consumer_uptodate('nq_c', 'nobody', true);
select try($$select * from pgq_node.set_consumer_uptodate('nq_c', 'c2', null)$$);
select * from pgq_node.set_consumer_paused('nq_c', 'nobody', true);
select try($$select * from pgq_node.set_consumer_paused('nq_c', 'c2', null)$$);
select * from pgq_node.set_consumer_uptodate('nq_c', 'c2', true);

-- change_consumer_provider
select * from pgq_node.change_consumer_provider('nq_c', 'c2', 'node3');
select * from pgq_node.get_consumer_state('nq_c', 'c2');
select * from pgq_node.change_consumer_provider('nq_c', 'c2', 'node9');
select * from pgq_node.change_consumer_provider('nq_c', 'nobody', 'node3');
select * from pgq_node.change_consumer_provider('nq_unknown', 'c2', 'node3');
-- a consumer pointed at its own node
select * from pgq_node.change_consumer_provider('nq_c', 'c2', 'node2');
select * from pgq_node.get_consumer_state('nq_c', 'c2');

-- unregister
select * from pgq_node.unregister_consumer('nq_c', 'c1');
select * from pgq_node.unregister_consumer('nq_c', 'c1');
select * from pgq_node.unregister_consumer('nq_unknown', 'c1');
select * from pgq_node.get_consumer_info('nq_c');

-- NULL arguments
select * from pgq_node.get_node_info(null);
select * from pgq_node.get_consumer_state(null, null);
select * from pgq_node.get_worker_state(null);
select * from pgq_node.set_global_watermark(null, 1);
select * from pgq_node.set_node_attrs(null, null);
select * from pgq_node.promote_branch(null);
select * from pgq_node.demote_root(null, 1, null);
select * from pgq_node.unregister_subscriber(null, null);
select * from pgq_node.set_subscriber_watermark('nq_c', null, 1);
select * from pgq_node.register_consumer(null, 'c', 'p', 1);
select * from pgq_node.unregister_location(null, null);
select * from pgq_node.drop_node('nq_c', 'node2');
