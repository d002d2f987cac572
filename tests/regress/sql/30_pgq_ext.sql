-- pgq_ext: batch / tick / event tracking on the target (docs/pgq_node.md).
-- No reference package: expected output checked by hand against the spec.
\set SHOW_CONTEXT never
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgq') THEN
    CREATE EXTENSION pgq;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgq_ext')
     AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgq_ext') THEN
    CREATE EXTENSION pgq_ext;
  END IF;
END $$;
SELECT pgq_ext.version();
SELECT pgq_ext.upgrade_schema();
SELECT c.relname, c.relkind FROM pg_class c WHERE c.relnamespace = 'pgq_ext'::regnamespace ORDER BY 1;
SELECT table_name, ordinal_position, column_name, data_type, is_nullable
  FROM information_schema.columns WHERE table_schema = 'pgq_ext' ORDER BY 1, 2;
SELECT p.proname, oidvectortypes(p.proargtypes) AS inargs, p.prorettype::regtype AS rettype,
       array_to_string(p.proargnames, ', ') AS argnames, p.prosecdef,
       (SELECT string_agg(CASE WHEN a.grantee = 0 THEN 'public' ELSE a.grantee::regrole::text END, ', ')
          FROM aclexplode(p.proacl) a WHERE a.grantee <> 'postgres'::regrole) AS execute
  FROM pg_proc p WHERE p.pronamespace = 'pgq_ext'::regnamespace ORDER BY 1, 2;

-- ticks
select pgq_ext.get_last_tick('c1');
select pgq_ext.set_last_tick('c1', 10);
select pgq_ext.get_last_tick('c1');
select pgq_ext.set_last_tick('c1', 11);
select pgq_ext.get_last_tick('c1');
select pgq_ext.set_last_tick('c1', 'sub', 5);
select pgq_ext.get_last_tick('c1', 'sub'), pgq_ext.get_last_tick('c1', '');
select pgq_ext.set_last_tick('c1', null);
select pgq_ext.get_last_tick('c1'), pgq_ext.get_last_tick('c1', 'sub');
select * from pgq_ext.completed_tick order by 1, 2;

-- batches
select pgq_ext.is_batch_done('c1', 1);
select pgq_ext.set_batch_done('c1', 1);
select pgq_ext.is_batch_done('c1', 1);
select pgq_ext.set_batch_done('c1', 1);
select pgq_ext.is_batch_done('c1', 2);
select pgq_ext.set_batch_done('c1', 2);
select pgq_ext.is_batch_done('c1', 1), pgq_ext.is_batch_done('c1', 2);
select pgq_ext.set_batch_done('c1', 'sub', 2);
select pgq_ext.is_batch_done('c1', 'sub', 2), pgq_ext.is_batch_done('c1', 'other', 2);
-- batch id 0 is not stored
select pgq_ext.set_batch_done('c2', 0);
select pgq_ext.is_batch_done('c2', 0);
select * from pgq_ext.completed_batch order by 1, 2;

-- events
select pgq_ext.is_event_done('c1', 5, 100);
select pgq_ext.set_event_done('c1', 5, 100);
select pgq_ext.set_event_done('c1', 5, 100);
select pgq_ext.set_event_done('c1', 5, 101);
select pgq_ext.is_event_done('c1', 5, 100), pgq_ext.is_event_done('c1', 5, 101), pgq_ext.is_event_done('c1', 5, 102);
select * from pgq_ext.partial_batch order by 1, 2;
-- a new batch forgets the events of the previous one
select pgq_ext.set_event_done('c1', 6, 200);
select pgq_ext.is_event_done('c1', 5, 100), pgq_ext.is_event_done('c1', 6, 200);
select pgq_ext.set_event_done('c1', 'sub', 6, 200);
select pgq_ext.is_event_done('c1', 'sub', 6, 200);
select * from pgq_ext.partial_batch order by 1, 2;
select * from pgq_ext.completed_event order by 1, 2, 3, 4;

-- privileges: pgq_writer may call everything; others only version()
SET client_min_messages = warning;
CREATE ROLE regress_ext_none NOLOGIN;
CREATE ROLE regress_ext_writer NOLOGIN IN ROLE pgq_writer;
RESET client_min_messages;
SET ROLE regress_ext_writer;
select pgq_ext.set_batch_done('cw', 7), pgq_ext.is_batch_done('cw', 7), pgq_ext.set_last_tick('cw', 3),
       pgq_ext.get_last_tick('cw'), pgq_ext.set_event_done('cw', 7, 1), pgq_ext.is_event_done('cw', 7, 1);
RESET ROLE;
SET ROLE regress_ext_none;
select pgq_ext.version();
select try($$select pgq_ext.is_batch_done('cw', 7)$$);
select try($$select pgq_ext.is_batch_done('cw', '', 7)$$);
select try($$select * from pgq_ext.completed_batch$$);
RESET ROLE;
DROP ROLE regress_ext_none, regress_ext_writer;
DELETE FROM pgq_ext.completed_tick;
DELETE FROM pgq_ext.completed_batch;
DELETE FROM pgq_ext.completed_event;
DELETE FROM pgq_ext.partial_batch;
