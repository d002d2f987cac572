-- pgq_node: membership, node lifecycle, watermarks, demote/promote (docs/pgq_node.md)
\set SHOW_CONTEXT never
-- prelude: the original needs CREATE EXTENSION pgq_node; ours has the schema already
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
SELECT pgq_node.version();
-- events of a queue (root nodes emit cascade events)
CREATE FUNCTION public.node_events(q text)
RETURNS TABLE (ev_id bigint, ev_type text, ev_data text, ev_extra1 text, ev_extra2 text, ev_extra3 text, ev_extra4 text)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE 'SELECT ev_id, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4 FROM '
    || (SELECT queue_data_pfx FROM pgq.queue WHERE queue_name = q) || ' ORDER BY ev_id';
END $$;
-- pgq consumers of a queue and their positions
CREATE FUNCTION public.node_consumers(q text)
RETURNS TABLE (consumer text, last_tick bigint)
LANGUAGE sql AS $$
  SELECT c.co_name, s.sub_last_tick FROM pgq.subscription s
    JOIN pgq.queue qq ON qq.queue_id = s.sub_queue JOIN pgq.consumer c ON c.co_id = s.sub_consumer
   WHERE qq.queue_name = q ORDER BY 1
$$;
CREATE FUNCTION public.node_ticks(q text) RETURNS SETOF bigint LANGUAGE sql AS $$
  SELECT t.tick_id FROM pgq.tick t JOIN pgq.queue qq ON qq.queue_id = t.tick_queue
   WHERE qq.queue_name = q ORDER BY 1
$$;

-- ---------------------------------------------------------------- locations
select * from pgq_node.register_location('nq_a', 'node1', 'dbname=node1', false);
select * from pgq_node.register_location('nq_a', 'node2', 'dbname=node2', false);
select * from pgq_node.register_location('nq_a', 'node3', 'dbname=node3', false);
select * from pgq_node.register_location('nq_a', 'node4', 'dbname=node44', false);
select * from pgq_node.register_location('nq_a', 'node4', 'dbname=node4', false);
select * from pgq_node.register_location('nq_a', 'node5', 'dbname=node5', false);
-- NULL location: keeps the old string, changes dead
select * from pgq_node.register_location('nq_a', 'node5', null, true);
-- NULL location for an unknown node: nothing is stored
select * from pgq_node.register_location('nq_a', 'node6', null, true);
select * from pgq_node.get_queue_locations('nq_a') order by 1;
select * from pgq_node.unregister_location('nq_a', 'node5');
select * from pgq_node.unregister_location('nq_a', 'node5');
select * from pgq_node.get_queue_locations('nq_unknown');
-- NULL dead flag
select try($$select * from pgq_node.register_location('nq_a', 'node4', 'x', null)$$);
select try($$select * from pgq_node.register_location('nq_a', 'node7', 'x', null)$$);

-- ---------------------------------------------------------------- create_node errors
select * from pgq_node.create_node('nq_a', 'root', 'node1', 'node1_worker', 'node2', null, null);
select * from pgq_node.create_node('nq_a', 'root', 'node1', 'node1_worker', null, 5, null);
select * from pgq_node.create_node('nq_a', 'root', 'node1', 'node1_worker', null, null, 'cq');
select * from pgq_node.create_node('nq_b', 'branch', 'node2', 'node2_worker', null, 1, null);
select * from pgq_node.create_node('nq_b', 'branch', 'node2', 'node2_worker', 'node1', null, null);
select * from pgq_node.create_node('nq_m', 'leaf', 'node2', 'node2_worker', 'node1', 1, 'no_such_queue');
-- unknown type: the row is rejected by the CHECK constraint
select try($$select * from pgq_node.create_node('nq_a', 'trunk', 'node1', 'node1_worker', null, null, null)$$);
-- node location missing
select try($$select * from pgq_node.create_node('nq_x', 'root', 'nodex', 'nodex_worker', null, null, null)$$);
-- worker missing
select try($$select * from pgq_node.create_node('nq_a', 'root', 'node1', null, null, null, null)$$);
select count(*) from pgq.queue where queue_name in ('nq_a', 'nq_b', 'nq_m', 'nq_x');

-- ---------------------------------------------------------------- root
select * from pgq_node.create_node('nq_a', 'root', 'node1', 'node1_worker', null, null, null);
select * from pgq_node.create_node('nq_a', 'root', 'node1', 'node1_worker', null, null, null);
select queue_name, queue_external_ticker, queue_disable_insert from pgq.queue where queue_name = 'nq_a';
select * from public.node_consumers('nq_a');
select * from pgq_node.get_consumer_info('nq_a');
select pgq_node.is_root_node('nq_a'), pgq_node.is_leaf_node('nq_a');
select try($$select pgq_node.is_root_node('nq_nope')$$);
select try($$select pgq_node.is_leaf_node('nq_nope')$$);
-- location changes on a root are broadcast as events
select * from pgq_node.register_location('nq_a', 'node5', 'dbname=node5', false);
select * from pgq_node.unregister_location('nq_a', 'node5');
select * from pgq_node.unregister_location('nq_a', 'node5');
select * from pgq_node.register_location('nq_a', 'node6', null, true);
select ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4 from public.node_events('nq_a');
-- own location cannot go
select * from pgq_node.unregister_location('nq_a', 'node1');

-- subscribers
select * from pgq_node.register_subscriber('nq_a', 'node2', 'node2_worker', null);
select * from public.node_consumers('nq_a');
select * from pgq_node.get_subscriber_info('nq_a');
select * from pgq_node.get_worker_state('nq_a');
select * from pgq_node.get_node_info('nq_a');
-- make ticks 2 and 3 by hand (no ticker runs in the test)
update pgq.queue set queue_external_ticker = true where queue_name = 'nq_a';
select pgq.ticker('nq_a', 2, now(), 10);
select pgq.ticker('nq_a', 3, now(), 20);
update pgq.queue set queue_external_ticker = false where queue_name = 'nq_a';
select * from pgq_node.set_subscriber_watermark('nq_a', 'node2', 3);
select * from pgq_node.set_subscriber_watermark('nq_a', 'node2', 3);
select * from pgq_node.set_subscriber_watermark('nq_a', 'node2', 2);
select * from pgq_node.set_subscriber_watermark('nq_a', 'node9', 2);
select try($$select * from pgq_node.set_subscriber_watermark('nq_a', 'node2', 99)$$);
select * from pgq_node.get_subscriber_info('nq_a');
select * from pgq_node.get_node_info('nq_a');
-- subscriber without a location row / twice / unknown queue / custom tick
select try($$select * from pgq_node.register_subscriber('nq_a', 'node9', 'node9_worker', null)$$);
select try($$select * from pgq_node.register_subscriber('nq_a', 'node2', 'node2_worker', null)$$);
select * from pgq_node.register_subscriber('nq_unknown', 'node2', 'node2_worker', null);
select * from pgq_node.register_subscriber('nq_a', 'node3', 'node3_worker', 2);
select try($$select * from pgq_node.register_subscriber('nq_a', 'node4', 'node4_worker', 77)$$);
-- the root registering itself as its own subscriber
select try($$select * from pgq_node.register_subscriber('nq_a', 'node1', 'node1_worker', null)$$);
select * from public.node_consumers('nq_a');
select * from pgq_node.get_node_info('nq_a');
select * from pgq_node.unregister_subscriber('nq_a', 'node3');
select * from pgq_node.unregister_subscriber('nq_a', 'node3');
select * from pgq_node.unregister_subscriber('nq_a', 'node1');
select * from public.node_consumers('nq_a');

-- global watermark on root
select * from pgq_node.set_global_watermark('nq_a', null);
select * from pgq_node.set_global_watermark('nq_a', 2);
select try($$select * from pgq_node.set_global_watermark('nq_a', 55)$$);
select * from pgq_node.set_global_watermark('nq_unknown', 2);
select * from public.node_consumers('nq_a');
select * from pgq_node.get_consumer_info('nq_a');
select ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4 from public.node_events('nq_a') where ev_type = 'pgq.global-watermark';
select pgq_node.maint_watermark('nq_a');
select pgq_node.maint_watermark('nq_unknown');
select * from pgq_node.set_node_attrs('nq_a', 'sync_watermark=node2');
select * from pgq_node.set_node_attrs('nq_unknown', 'x=1');
select node_attrs from pgq_node.get_node_info('nq_a');
select pgq_node.upgrade_schema();

-- ---------------------------------------------------------------- branch
select * from pgq_node.register_location('nq_b', 'node1', 'dbname=node1', false);
select * from pgq_node.register_location('nq_b', 'node2', 'dbname=node2', false);
select * from pgq_node.register_location('nq_b', 'node3', 'dbname=node3', false);
select * from pgq_node.create_node('nq_b', 'branch', 'node2', 'node2_worker', 'node1', 5, null);
select queue_name, queue_external_ticker, queue_disable_insert from pgq.queue where queue_name = 'nq_b';
select * from public.node_ticks('nq_b');
select * from public.node_consumers('nq_b');
select * from pgq_node.get_consumer_info('nq_b');
select pgq_node.is_root_node('nq_b'), pgq_node.is_leaf_node('nq_b');
-- branch queues refuse local inserts
select try($$select pgq.insert_event('nq_b', 'x', 'y')$$);
select * from pgq_node.get_node_info('nq_b');
select * from pgq_node.get_worker_state('nq_b');
-- no events on a branch for location changes
select * from pgq_node.register_location('nq_b', 'node4', 'dbname=node4', false);
select count(*) from public.node_events('nq_b');
-- the provider's location cannot go
select * from pgq_node.unregister_location('nq_b', 'node1');
select * from pgq_node.unregister_location('nq_b', 'node2');
select * from pgq_node.unregister_location('nq_b', 'node4');
-- global watermark on branch
select * from pgq_node.set_global_watermark('nq_b', null);
select * from pgq_node.set_global_watermark('nq_b', 7);
select pgq.ticker('nq_b', 7, now(), 30);
select * from pgq_node.set_global_watermark('nq_b', 7);
select * from public.node_consumers('nq_b');
select pgq_node.maint_watermark('nq_b');
-- a branch can be subscribed to
select * from pgq_node.register_subscriber('nq_b', 'node3', 'node3_worker', null);
select * from pgq_node.get_node_info('nq_b');
-- drop_node of the provider is refused
select * from pgq_node.drop_node('nq_b', 'node1');
-- promote
select * from pgq_node.promote_branch('nq_a');
select * from pgq_node.promote_branch('nq_unknown');
select * from pgq_node.promote_branch('nq_b');
select queue_name, queue_external_ticker, queue_disable_insert from pgq.queue where queue_name = 'nq_b';
select pgq.seq_getval(queue_tick_seq) from pgq.queue where queue_name = 'nq_b';
select * from pgq_node.get_worker_state('nq_b');
select * from pgq_node.promote_branch('nq_b');

-- ---------------------------------------------------------------- demote_root
select * from pgq_node.demote_root('nq_unknown', 1, 'node2');
select try($$select * from pgq_node.demote_root('nq_a', 2, 'node3')$$);
select try($$select * from pgq_node.demote_root('nq_a', 0, 'node3')$$);
select * from pgq_node.demote_root('nq_a', 1, 'node3');
select * from pgq_node.demote_root('nq_a', 1, 'node3');
select queue_name, queue_external_ticker, queue_disable_insert from pgq.queue where queue_name = 'nq_a';
select try($$select pgq.insert_event('nq_a', 'x', 'y')$$);
select try($$select * from pgq_node.demote_root('nq_a', 4, 'node3')$$);
select * from pgq_node.demote_root('nq_a', 2, 'node3');
select * from pgq_node.demote_root('nq_a', 2, 'node3');
select * from public.node_ticks('nq_a');
select * from pgq_node.demote_root('nq_a', 3, 'node3');
select * from pgq_node.demote_root('nq_a', 3, 'node3');
select * from pgq_node.get_worker_state('nq_a');
select pgq_node.is_root_node('nq_a');

-- ---------------------------------------------------------------- leaf, merge leaf
select * from pgq_node.register_location('nq_m', 'node1', 'dbname=node1', false);
select * from pgq_node.register_location('nq_m', 'node2', 'dbname=node2', false);
select * from pgq_node.create_node('nq_m', 'leaf', 'node2', 'node2_worker', 'node1', 13, 'nq_a');
select * from pgq_node.get_worker_state('nq_m');
select * from pgq_node.get_node_info('nq_m');
select * from pgq_node.get_node_info('nq_a');
select pgq_node.is_leaf_node('nq_m');
select count(*) from pgq.queue where queue_name = 'nq_m';
select * from pgq_node.register_subscriber('nq_m', 'node3', 'node3_worker', null);
select * from pgq_node.set_global_watermark('nq_m', 3);
select * from pgq_node.set_partition_watermark('nq_a', 'nq_m', 20);
select * from pgq_node.set_partition_watermark('nq_b', 'nq_m', 20);
select * from pgq_node.set_partition_watermark('nq_a', 'nq_x', 20);
select last_tick_id from pgq_node.local_state where queue_name = 'nq_m';
-- leaf without combined queue, without provider
select * from pgq_node.register_location('nq_l', 'node5', 'dbname=node5', false);
select * from pgq_node.register_location('nq_l', 'node1', 'dbname=node1', false);
select try($$select * from pgq_node.create_node('nq_l', 'leaf', 'node5', 'node5_worker', null, 1, null)$$);
select try($$select * from pgq_node.create_node('nq_l', 'leaf', 'node5', 'node5_worker', 'node1', null, null)$$);
select * from pgq_node.create_node('nq_l', 'leaf', 'node5', 'node5_worker', 'node1', 1, null);
select * from pgq_node.get_worker_state('nq_l');
select * from pgq_node.get_consumer_info('nq_l');

-- ---------------------------------------------------------------- worker state 404s
delete from pgq_node.local_state where queue_name = 'nq_l';
select * from pgq_node.get_worker_state('nq_l');
select * from pgq_node.get_worker_state('nq_unknown');
insert into pgq_node.node_location values ('nq_l', 'node7', 'dbname=node7', false);
insert into pgq_node.local_state (queue_name, consumer_name, provider_node, last_tick_id) values ('nq_l', 'node5_worker', 'node7', 4);
delete from pgq_node.node_location where queue_name = 'nq_l' and node_name = 'node7';
select * from pgq_node.get_node_info('nq_l');
select * from pgq_node.get_worker_state('nq_l');
select * from pgq_node.get_consumer_state('nq_l', 'node5_worker');

-- ---------------------------------------------------------------- drop_node
select * from pgq_node.drop_node('nq_unknown', 'nodez');
select * from pgq_node.drop_node('nq_b', 'node3');
select * from pgq_node.get_subscriber_info('nq_b');
select * from pgq_node.drop_node('nq_b', 'nodez');
select * from pgq_node.drop_node('nq_m', 'node2');
select * from pgq_node.get_queue_locations('nq_m');
select * from pgq_node.get_node_info('nq_m');
select * from pgq_node.drop_node('nq_b', 'node2');
select count(*) from pgq.queue where queue_name = 'nq_b';
select * from pgq_node.get_queue_locations('nq_b');
select * from pgq_node.drop_node('nq_a', 'node1');
select * from pgq_node.drop_node('nq_l', 'node5');
select count(*) from pgq_node.node_info;
select count(*) from pgq_node.local_state;
select count(*) from pgq_node.subscriber_info;
select * from pgq_node.node_location order by 1, 2;
