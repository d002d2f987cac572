-- londiste: EXECUTE bookkeeping, pending foreign keys, maintenance
\set SHOW_CONTEXT never
-- execute on root
SELECT * FROM londiste.execute_start('lq', 'a.sql', 'create table lt.ex1 (id int);', true);
SELECT * FROM londiste.execute_start('lq', 'a.sql', 'create table lt.ex1 (id int);', true);
SELECT * FROM londiste.execute_finish('lq', 'a.sql');
SELECT * FROM londiste.execute_start('lq', 'b.sql', 'select 1;', true, 'local-table=lt.t_pk');
SELECT * FROM londiste.execute_finish('lq', 'b.sql');
SELECT * FROM londiste.execute_finish('lq', 'nosuch.sql');
SELECT * FROM londiste.execute_start('lqb', 'c.sql', 'select 2;', true);
SELECT * FROM londiste.execute_start('lqb', 'c.sql', 'select 2;', false);
SELECT * FROM londiste.execute_finish('lqb', 'c.sql');
SELECT * FROM londiste.execute_start('lqb', 'a.sql', 'other', false);
SELECT try($$select * from londiste.execute_start('noq', 'd.sql', 'x', false)$$);
SELECT try($$select * from londiste.execute_start('lq', NULL, 'x', true)$$);
SELECT * FROM londiste.execute_start(NULL, 'e.sql', 'x', false);
SELECT queue_name, execute_file, execute_sql, execute_attrs, execute_time = now() AS now FROM londiste.applied_execute ORDER BY 2;
SELECT ev_type, ev_data, ev_extra1, ev_extra2 FROM lq_events('lq') WHERE ev_type = 'EXECUTE';
SELECT count(*) FROM lq_events('lqb') WHERE ev_type = 'EXECUTE';
-- maintenance drops old execute records
UPDATE londiste.applied_execute SET execute_time = now() - interval '4 months' WHERE execute_file = 'a.sql';
SELECT londiste.periodic_maintenance();
SELECT execute_file FROM londiste.applied_execute ORDER BY 1;
SELECT * FROM pgq.maint_operations() WHERE func_name LIKE 'londiste.%' ORDER BY 1, 2;

-- foreign keys
CREATE TABLE lt.fk_parent (id int4 PRIMARY KEY, id2 int4 UNIQUE);
CREATE TABLE lt.fk_child (id int4 PRIMARY KEY, pid int4 CONSTRAINT child_pid_fk REFERENCES lt.fk_parent,
    pid2 int4 CONSTRAINT child_pid2_fk REFERENCES lt.fk_parent (id2) ON DELETE CASCADE DEFERRABLE);
CREATE TABLE lt."Fk Other" (id int4 PRIMARY KEY, pid int4 CONSTRAINT "Odd FK" REFERENCES lt.fk_child);
SELECT * FROM londiste.find_table_fkeys('lt.fk_parent') ORDER BY 1, 3;
SELECT * FROM londiste.find_table_fkeys('lt.fk_child') ORDER BY 1, 3;
SELECT * FROM londiste.find_table_fkeys('fk_child') ORDER BY 1, 3;
SELECT * FROM londiste.find_table_fkeys('lt.Fk Other') ORDER BY 1, 3;
SELECT * FROM londiste.find_table_fkeys('lt.nosuch');
SELECT londiste.drop_table_fkey('lt.fk_child', 'child_pid_fk');
SELECT londiste.drop_table_fkey('lt.fk_child', 'child_pid_fk');
SELECT londiste.drop_table_fkey('lt.Fk Other', 'Odd FK');
SELECT londiste.drop_table_fkey('lt.nosuch', 'x');
SELECT * FROM londiste.pending_fkeys ORDER BY 1, 3;
SELECT conname FROM pg_constraint WHERE contype = 'f' AND connamespace = 'lt'::regnamespace ORDER BY 1;
SELECT * FROM londiste.get_table_pending_fkeys('lt.fk_parent') ORDER BY 1, 3;
SELECT * FROM londiste.get_table_pending_fkeys('lt.fk_child') ORDER BY 1, 3;
SELECT * FROM londiste.get_table_pending_fkeys('lt.nosuch');
-- valid pending fkeys: both tables local and ok on the queue
SELECT * FROM londiste.get_valid_pending_fkeys('lq') ORDER BY 1, 3;
SELECT * FROM londiste.global_add_table('lq', 'lt.fk_parent');
SELECT * FROM londiste.global_add_table('lq', 'lt.fk_child');
SELECT * FROM londiste.local_add_table('lq', 'lt.fk_parent');
SELECT * FROM londiste.local_add_table('lq', 'lt.fk_child');
SELECT * FROM londiste.get_valid_pending_fkeys('lq') ORDER BY 1, 3;
SELECT * FROM londiste.local_set_table_state('lq', 'lt.fk_child', '1:2:', 'ok');
SELECT * FROM londiste.get_valid_pending_fkeys('lq') ORDER BY 1, 3;
SELECT * FROM londiste.local_set_table_state('lq', 'lt.fk_child', NULL, 'ok');
SELECT * FROM londiste.get_valid_pending_fkeys('lq') ORDER BY 1, 3;
SELECT * FROM londiste.get_valid_pending_fkeys('noq') ORDER BY 1, 3;
-- restore: lazy (not valid, then validate, then forget) and direct
SELECT londiste.restore_table_fkey('lt.fk_child', 'child_pid_fk', true);
SELECT londiste.restore_table_fkey('lt.fk_child', 'child_pid_fk', true) AS stmt \gset
:stmt;
SELECT londiste.restore_table_fkey('lt.fk_child', 'child_pid_fk', true) AS stmt \gset
SELECT :'stmt';
:stmt;
SELECT londiste.restore_table_fkey('lt.fk_child', 'child_pid_fk', true);
SELECT londiste.restore_table_fkey('lt.fk_child', 'child_pid_fk', true);
SELECT londiste.restore_table_fkey('lt.Fk Other', 'Odd FK');
SELECT londiste.restore_table_fkey('lt.Fk Other', 'Odd FK');
SELECT londiste.restore_table_fkey('lt.nosuch', 'x', false);
SELECT * FROM londiste.pending_fkeys ORDER BY 1, 3;
SELECT conname, convalidated, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'lt'::regnamespace ORDER BY 1;
-- drop_table_fkey + restore round trip keeps the definition
SELECT londiste.drop_table_fkey('lt.fk_child', 'child_pid2_fk');
SELECT londiste.restore_table_fkey('lt.fk_child', 'child_pid2_fk');
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'child_pid2_fk';

-- partition helpers
CREATE TABLE lt.events (id int4 PRIMARY KEY, ts timestamptz NOT NULL, v text);
SELECT londiste.create_partition('lt.events', 'lt.events_2020_01', 'id', 'ts', '2020-01-15 10:00+00', 'month');
SELECT londiste.create_partition('lt.events', 'lt.events_2020_01', 'id', 'ts', '2020-01-15 10:00+00', 'month');
SELECT londiste.create_partition('lt.events', 'lt.events_2020_01_02', 'id', 'ts', '2020-01-02 10:00+00', 'day');
SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'lt.events'::regclass ORDER BY 1::text;
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid IN ('lt.events_2020_01'::regclass, 'lt.events_2020_01_02'::regclass) ORDER BY 1;
SELECT londiste.is_obsolete_partition('lt.events_2020_01', '1 month', 'month');
SELECT londiste.is_obsolete_partition('lt.events_2020_01', '1000 years', 'month');
SELECT * FROM londiste.list_obsolete_partitions('lt.events', '1 month', 'month');
SELECT * FROM londiste.list_obsolete_partitions('lt.events', '1 day', 'day');
SELECT * FROM londiste.drop_obsolete_partitions('lt.events', '1 month', 'month');
SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'lt.events'::regclass ORDER BY 1::text;
