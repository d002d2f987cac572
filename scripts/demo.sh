#!/bin/bash
# demo.sh — the README's demo command: sets everything up (setup.sh), starts a
# throwaway PostgreSQL 15 cluster on a free local port, and walks through the queue
# life cycle: create a queue, register a consumer, produce events, tick, consume a
# batch, finish it, and show get_queue_info / get_consumer_info. The cluster is
# stopped and removed at the end (KEEP_CLUSTERS=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${SKIP_SETUP:-}" ] || scripts/setup.sh
source tests/lib/cluster.sh
cluster_init
cluster_start demo
echo "demo cluster: host=$PGHOST port=$PGPORT"
psql -X -d postgres -v ON_ERROR_STOP=1 -e <<'SQL'
CREATE EXTENSION pgq;
SELECT pgq.version();
SELECT pgq.create_queue('orders');
SELECT pgq.register_consumer('orders', 'mailer');
-- producers: each call is part of the caller's transaction
BEGIN;
SELECT pgq.insert_event('orders', 'order.created', 'id=1&amount=10.50');
SELECT pgq.insert_event('orders', 'order.created', 'id=2&amount=99.00', 'public.orders', NULL, NULL, NULL);
COMMIT;
SELECT pgq.insert_event('orders', 'order.paid', 'id=1');
-- the ticker cuts the event stream into batches: with shared_preload_libraries = 'pgq'
-- the in-server ticker does it by itself at the queue's thresholds; this demo cluster
-- is not preloaded (hence the WARNING above), so we force one tick now)
SELECT pgq.force_tick('orders');
SELECT pgq.ticker();
-- the consumer: take a batch, read it, finish it
SELECT batch_id, prev_tick_id, cur_tick_id FROM pgq.next_batch_info('orders', 'mailer');
SELECT ev_id, ev_type, ev_data, ev_extra1
  FROM pgq.get_batch_events((SELECT current_batch FROM pgq.get_consumer_info('orders', 'mailer')));
SELECT pgq.finish_batch((SELECT current_batch FROM pgq.get_consumer_info('orders', 'mailer')));
SELECT queue_name, queue_ntables, queue_cur_table, ev_new, last_tick_id FROM pgq.get_queue_info();
SELECT queue_name, consumer_name, last_tick, current_batch, pending_events FROM pgq.get_consumer_info();
SQL
echo "demo finished"
