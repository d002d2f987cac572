-- pgq_coop: cooperative sub-consumers (docs/pgq_node.md).
-- No reference package: expected output checked by hand against the spec.
\set SHOW_CONTEXT never
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgq') THEN
    CREATE EXTENSION pgq;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgq_coop')
     AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgq_coop') THEN
    CREATE EXTENSION pgq_coop;
  END IF;
END $$;
SELECT pgq_coop.version();
SELECT p.proname, oidvectortypes(p.proargtypes) AS inargs, p.prorettype::regtype AS rettype,
       array_to_string(p.proargnames, ', ') AS argnames, p.prosecdef,
       (SELECT string_agg(CASE WHEN a.grantee = 0 THEN 'public' ELSE a.grantee::regrole::text END, ', ')
          FROM aclexplode(p.proacl) a WHERE a.grantee <> 'postgres'::regrole) AS execute
  FROM pg_proc p WHERE p.pronamespace = 'pgq_coop'::regnamespace ORDER BY 1, 2;
-- subscriptions of the test queue
CREATE FUNCTION public.coop_subs() RETURNS TABLE (consumer text, same_sub_id bool, last_tick bigint, next_tick bigint, has_batch bool)
LANGUAGE sql AS $$
  SELECT c.co_name, s.sub_id = (SELECT s2.sub_id FROM pgq.subscription s2 JOIN pgq.consumer c2 ON c2.co_id = s2.sub_consumer
                                 WHERE s2.sub_queue = s.sub_queue AND c2.co_name = 'maincons'),
         s.sub_last_tick, s.sub_next_tick, s.sub_batch IS NOT NULL
    FROM pgq.subscription s JOIN pgq.consumer c ON c.co_id = s.sub_consumer
    JOIN pgq.queue q ON q.queue_id = s.sub_queue
   WHERE q.queue_name = 'cq_coop' ORDER BY 1
$$;
CREATE FUNCTION public.coop_tick() RETURNS bigint LANGUAGE sql AS $$
  UPDATE pgq.queue SET queue_external_ticker = true WHERE queue_name = 'cq_coop';
  SELECT pgq.ticker('cq_coop', (SELECT max(t.tick_id) + 1 FROM pgq.tick t JOIN pgq.queue q ON q.queue_id = t.tick_queue
                                 WHERE q.queue_name = 'cq_coop'), now(),
                    (SELECT pgq.seq_getval(queue_event_seq) FROM pgq.queue WHERE queue_name = 'cq_coop'));
  UPDATE pgq.queue SET queue_external_ticker = false WHERE queue_name = 'cq_coop';
  SELECT max(t.tick_id) FROM pgq.tick t JOIN pgq.queue q ON q.queue_id = t.tick_queue WHERE q.queue_name = 'cq_coop';
$$;
select pgq.create_queue('cq_coop');

-- registration
select pgq_coop.register_subconsumer('cq_coop', 'maincons', 'sub1');
select pgq_coop.register_subconsumer('cq_coop', 'maincons', 'sub1');
select pgq_coop.register_subconsumer('cq_coop', 'maincons', 'sub2');
select * from public.coop_subs();
select try($$select pgq_coop.register_subconsumer('no_such_queue', 'maincons', 'sub1')$$);

-- nothing to do yet
select pgq_coop.next_batch('cq_coop', 'maincons', 'sub1');
select pgq.insert_event('cq_coop', 'ev', 'one');
select pgq.insert_event('cq_coop', 'ev', 'two');
select public.coop_tick();
-- sub1 gets the batch, the main consumer is moved past it at once
select pgq_coop.next_batch('cq_coop', 'maincons', 'sub1') AS b1 \gset
select :b1 IS NOT NULL AS got_batch;
select * from public.coop_subs();
select ev_type, ev_data from pgq.get_batch_events(:b1) order by ev_id;
-- asking again returns the same batch
select pgq_coop.next_batch('cq_coop', 'maincons', 'sub1') = :b1 AS same_batch;
-- sub2 gets the next batch
select pgq.insert_event('cq_coop', 'ev', 'three');
select public.coop_tick();
select pgq_coop.next_batch_custom('cq_coop', 'maincons', 'sub2', null, null, null) AS b2 \gset
select :b2 IS NOT NULL AND :b2 <> :b1 AS got_other_batch;
select ev_type, ev_data from pgq.get_batch_events(:b2) order by ev_id;
select * from public.coop_subs();
select pgq_coop.next_batch('cq_coop', 'maincons', 'sub3');
select * from public.coop_subs();
-- retry goes to the main consumer's queue position
select pgq.event_retry(:b2, (select min(ev_id) from pgq.get_batch_events(:b2)), 0);
select pgq_coop.finish_batch(:b2);
-- a second finish warns (the id depends on earlier tests, so it is not shown)
SET client_min_messages = error;
select pgq_coop.finish_batch(:b2);
RESET client_min_messages;
select pgq_coop.finish_batch(999999);
select pgq_coop.finish_batch(null);
select * from public.coop_subs();
-- a batch open on the main consumer is refused
select pgq.insert_event('cq_coop', 'ev', 'four');
select public.coop_tick();
select pgq.next_batch('cq_coop', 'maincons') IS NOT NULL AS main_took_batch;
select try($$select pgq_coop.next_batch('cq_coop', 'maincons', 'sub2')$$);
select pgq.finish_batch(pgq.next_batch('cq_coop', 'maincons'));
-- dead sub-consumer takeover: sub1 still holds b1
update pgq.subscription set sub_active = now() - '2 hours'::interval
  from pgq.consumer c where c.co_id = sub_consumer and c.co_name = 'maincons.sub1';
select pgq_coop.next_batch('cq_coop', 'maincons', 'sub2', '3 hours') IS NULL AS not_dead_yet;
select pgq_coop.next_batch('cq_coop', 'maincons', 'sub2', '1 hour') = :b1 AS took_over;
select * from public.coop_subs();
select pgq_coop.finish_batch(:b1);
-- next_batch_custom with a dead interval
select pgq_coop.next_batch_custom('cq_coop', 'maincons', 'sub2', null, 1000, null, '1 hour');

-- unregister
select pgq_coop.unregister_subconsumer('cq_coop', 'maincons', 'nosuch', 0);
select pgq.insert_event('cq_coop', 'ev', 'five');
select public.coop_tick();
select pgq_coop.next_batch('cq_coop', 'maincons', 'sub2') IS NOT NULL AS got_batch;
select try($$select pgq_coop.unregister_subconsumer('cq_coop', 'maincons', 'sub2', 0)$$);
select pgq_coop.unregister_subconsumer('cq_coop', 'maincons', 'sub2', 1);
select pgq_coop.unregister_subconsumer('cq_coop', 'maincons', 'sub3', 0);
select * from public.coop_subs();

-- privileges
SET client_min_messages = warning;
CREATE ROLE regress_coop_none NOLOGIN;
CREATE ROLE regress_coop_reader NOLOGIN IN ROLE pgq_reader;
RESET client_min_messages;
SET ROLE regress_coop_reader;
select pgq_coop.register_subconsumer('cq_coop', 'maincons', 'sub9');
select pgq_coop.next_batch('cq_coop', 'maincons', 'sub9');
RESET ROLE;
SET ROLE regress_coop_none;
select pgq_coop.version();
select try($$select pgq_coop.next_batch('cq_coop', 'maincons', 'sub9')$$);
RESET ROLE;
DROP ROLE regress_coop_none, regress_coop_reader;
select pgq.drop_queue('cq_coop', true);
DROP FUNCTION public.coop_subs();
DROP FUNCTION public.coop_tick();
