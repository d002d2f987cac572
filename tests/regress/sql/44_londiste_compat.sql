-- londiste: cases from the original's own suites and the compatibility issues:
-- create_partition with names that need quoting, retention by partition name with
-- odd suffixes, and the queue that restores a pending fkey in merge setups
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgq_node') THEN
    CREATE EXTENSION IF NOT EXISTS pgq_node;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'londiste') THEN
    CREATE EXTENSION IF NOT EXISTS londiste;
  END IF;
END $$;

-- ---------------------------------------------------------------------------
-- create_partition: quoted schema, parent, partition, triggers, rules, grants, owner
-- ---------------------------------------------------------------------------
CREATE ROLE "regress_Part Owner";
CREATE ROLE "regress_Odd ""Role""";
CREATE ROLE regress_plain_reader;
CREATE SCHEMA "Part S";
CREATE FUNCTION "Part S"."Trg Fn"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TABLE "Part S"."Ev Log" (id int4 PRIMARY KEY, "Ts" timestamptz NOT NULL, v text);
CREATE TABLE "Part S".audit (id int4);
ALTER TABLE "Part S".audit OWNER TO "regress_Part Owner";
CREATE TRIGGER "Fooza" AFTER INSERT ON "Part S"."Ev Log" FOR EACH ROW EXECUTE PROCEDURE "Part S"."Trg Fn"();
CREATE TRIGGER plain_trg BEFORE UPDATE OF v ON "Part S"."Ev Log" FOR EACH ROW EXECUTE PROCEDURE "Part S"."Trg Fn"();
CREATE TRIGGER "x ON ""Part S"".""Ev Log"" y" AFTER DELETE ON "Part S"."Ev Log" FOR EACH ROW EXECUTE PROCEDURE "Part S"."Trg Fn"();
CREATE TRIGGER "Off Trg" AFTER INSERT ON "Part S"."Ev Log" FOR EACH ROW EXECUTE PROCEDURE "Part S"."Trg Fn"();
ALTER TABLE "Part S"."Ev Log" DISABLE TRIGGER "Off Trg";
CREATE TRIGGER "Rep Trg" AFTER INSERT ON "Part S"."Ev Log" FOR EACH ROW EXECUTE PROCEDURE "Part S"."Trg Fn"();
ALTER TABLE "Part S"."Ev Log" ENABLE REPLICA TRIGGER "Rep Trg";
CREATE TRIGGER always_trg AFTER INSERT ON "Part S"."Ev Log" FOR EACH ROW EXECUTE PROCEDURE "Part S"."Trg Fn"();
ALTER TABLE "Part S"."Ev Log" ENABLE ALWAYS TRIGGER always_trg;
CREATE RULE "My Rule" AS ON DELETE TO "Part S"."Ev Log" DO ALSO INSERT INTO "Part S".audit VALUES (old.id);
CREATE RULE quiet_rule AS ON UPDATE TO "Part S"."Ev Log" WHERE new.v = 'x' DO INSTEAD NOTHING;
ALTER TABLE "Part S"."Ev Log" DISABLE RULE quiet_rule;
GRANT SELECT ON "Part S"."Ev Log" TO public;
GRANT SELECT, INSERT ON "Part S"."Ev Log" TO "regress_Odd ""Role""" WITH GRANT OPTION;
GRANT UPDATE ON "Part S"."Ev Log" TO regress_plain_reader;
ALTER TABLE "Part S"."Ev Log" OWNER TO "regress_Part Owner";
SELECT londiste.create_partition('Part S.Ev Log', 'Part S.Ev Log_2020_01', 'id', 'Ts', '2020-01-15 10:00+00', 'month');
SELECT londiste.create_partition('Part S.Ev Log', 'Part S.Ev Log_2020_01', 'id', 'Ts', '2020-01-15 10:00+00', 'month');
-- a partition in another schema, and one without a time check
SELECT londiste.create_partition('Part S.Ev Log', 'public.Ev Log_2020_02', 'id', 'Ts', '2020-02-03 04:05+00', 'month');
SELECT londiste.create_partition('Part S.Ev Log', 'Part S.Ev Log_plain', NULL, '', NULL, NULL);
SELECT londiste.create_partition('Part S.Ev Log', 'Part S.Ev Log_plain', NULL, '', NULL, NULL);
SELECT c.oid::regclass AS part, pg_get_userbyid(c.relowner) AS owner, c.relacl::text AS acl
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = '"Part S"."Ev Log"'::regclass ORDER BY c.oid::regclass::text;
SELECT tgrelid::regclass AS tbl, tgname, tgenabled, pg_get_triggerdef(oid) AS def
  FROM pg_trigger WHERE tgrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = '"Part S"."Ev Log"'::regclass)
   AND NOT tgisinternal ORDER BY tgrelid::regclass::text, tgname;
SELECT ev_class::regclass AS tbl, rulename, ev_enabled, pg_get_ruledef(oid) AS def
  FROM pg_rewrite WHERE ev_class IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = '"Part S"."Ev Log"'::regclass)
 ORDER BY ev_class::regclass::text, rulename;
SELECT conrelid::regclass AS tbl, contype, pg_get_constraintdef(oid) AS def
  FROM pg_constraint WHERE conrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = '"Part S"."Ev Log"'::regclass)
 ORDER BY conrelid::regclass::text, contype, 3;
-- the copied rule and trigger work on the partition
INSERT INTO "Part S"."Ev Log_2020_01" VALUES (1, '2020-01-20', 'a');
DELETE FROM "Part S"."Ev Log_2020_01";
SELECT * FROM "Part S".audit;
-- errors
SELECT londiste.create_partition('Part S.nosuch', 'Part S.nosuch_1', NULL, NULL, NULL, NULL);
SELECT londiste.create_partition(NULL, 'Part S.x', NULL, NULL, NULL, NULL);
SELECT londiste.create_partition('Part S.Ev Log', 'Part S.Ev Log_bad', 'id', 'Ts', '2020-01-15', 'fortnight');
SELECT count(*) FROM pg_class WHERE relname = 'Ev Log_bad';

-- ---------------------------------------------------------------------------
-- retention by partition name: suffixes that are not valid dates are compared as
-- text and never fail, names that do not match are skipped
-- ---------------------------------------------------------------------------
SELECT n, p, londiste.is_obsolete_partition(n, '1 month', p) AS obsolete
  FROM (VALUES ('Part S.Ev Log_2020_01', 'month'), ('Part S.Ev Log_2020_13', 'month'),
               ('Part S.Ev Log_2020_00', 'monthly'), ('x_2020_02_31', 'day'), ('x_0000_01', 'month'),
               ('x_2020_01_01_25', 'hourly'), ('x_2020', 'year'), ('x_2999_01', 'month'),
               ('x_2020_1', 'month'), ('x_2020_01_01', 'month'), ('x_20x0_01', 'month'),
               ('_2020_01', 'month'), ('x_99999_01', 'month'), ('plain', 'month')) v(n, p)
 ORDER BY 1, 2;
SELECT londiste.is_obsolete_partition(NULL, '1 month', 'month');
SELECT londiste.is_obsolete_partition('x_2020_01', NULL, 'month');
SELECT londiste.is_obsolete_partition('x_2020_01', '1 month', 'Month');
SELECT londiste.is_obsolete_partition('x_2020_01', '1 month', NULL);
CREATE TABLE "Part S"."Ev Log_2020_13" () INHERITS ("Part S"."Ev Log");
CREATE TABLE "Part S"."Ev Log_2020_1x" () INHERITS ("Part S"."Ev Log");
CREATE TABLE "Part S"."Ev Log_2999_01" () INHERITS ("Part S"."Ev Log");
CREATE TABLE "Part S"."Ev Log_2019_12_31" ();
CREATE TABLE "Part S"."Ev Log_old" () INHERITS ("Part S"."Ev Log");
SELECT * FROM londiste.list_obsolete_partitions('Part S.Ev Log', '1 month', 'month');
SELECT * FROM londiste.list_obsolete_partitions('Part S.Ev Log', '1 day', 'day');
SELECT * FROM londiste.list_obsolete_partitions('Part S.Ev Log', NULL, 'month');
SELECT * FROM londiste.list_obsolete_partitions('Part S.Ev Log', '1 month', 'weekly');
SELECT * FROM londiste.list_obsolete_partitions(NULL, '1 month', 'month');
SELECT * FROM londiste.list_obsolete_partitions('Ev Log', '1 month', 'month');
SELECT * FROM londiste.drop_obsolete_partitions('Part S.Ev Log', '1 month', 'month');
SELECT c.relname FROM pg_class c WHERE c.relnamespace = '"Part S"'::regnamespace AND c.relkind = 'r' ORDER BY 1;
SELECT * FROM londiste.drop_obsolete_partitions('Part S.Ev Log', '1 day', 'daily');
DROP SCHEMA "Part S" CASCADE;
DROP ROLE "regress_Part Owner";
DROP ROLE "regress_Odd ""Role""";
DROP ROLE regress_plain_reader;

-- ---------------------------------------------------------------------------
-- get_valid_pending_fkeys in merge setups: part queues whose leaves merge into a
-- combined queue (a root, or a branch), and a plain root queue
-- ---------------------------------------------------------------------------
CREATE SCHEMA mg;
CREATE TABLE mg.r_to (id int4 PRIMARY KEY);
CREATE TABLE mg.r_from (id int4 PRIMARY KEY, tid int4);
CREATE TABLE mg.b_to (id int4 PRIMARY KEY);
CREATE TABLE mg.b_from (id int4 PRIMARY KEY, tid int4);
-- combined root mc_root with part leaves mp_r1, mp_r2
SELECT * FROM pgq_node.register_location('mc_root', 'mn0', 'dbname=mn0', false);
SELECT * FROM pgq_node.create_node('mc_root', 'root', 'mn0', 'mw0', NULL, NULL, NULL);
SELECT * FROM pgq_node.register_location('mp_r1', 'mn1', 'dbname=mn1', false);
SELECT * FROM pgq_node.register_location('mp_r1', 'mn0', 'dbname=mn0', false);
SELECT * FROM pgq_node.create_node('mp_r1', 'leaf', 'mn0', 'mw1', 'mn1', 1, 'mc_root');
SELECT * FROM pgq_node.register_location('mp_r2', 'mn2', 'dbname=mn2', false);
SELECT * FROM pgq_node.register_location('mp_r2', 'mn0', 'dbname=mn0', false);
SELECT * FROM pgq_node.create_node('mp_r2', 'leaf', 'mn0', 'mw2', 'mn2', 1, 'mc_root');
-- combined branch mc_br with part leaves mp_b1, mp_b2
SELECT * FROM pgq_node.register_location('mc_br', 'mn9', 'dbname=mn9', false);
SELECT * FROM pgq_node.register_location('mc_br', 'mn0', 'dbname=mn0', false);
SELECT * FROM pgq_node.create_node('mc_br', 'branch', 'mn0', 'mw9', 'mn9', 1, NULL);
SELECT * FROM pgq_node.register_location('mp_b1', 'mn3', 'dbname=mn3', false);
SELECT * FROM pgq_node.register_location('mp_b1', 'mn0', 'dbname=mn0', false);
SELECT * FROM pgq_node.create_node('mp_b1', 'leaf', 'mn0', 'mw3', 'mn3', 1, 'mc_br');
SELECT * FROM pgq_node.register_location('mp_b2', 'mn4', 'dbname=mn4', false);
SELECT * FROM pgq_node.register_location('mp_b2', 'mn0', 'dbname=mn0', false);
SELECT * FROM pgq_node.create_node('mp_b2', 'leaf', 'mn0', 'mw4', 'mn4', 1, 'mc_br');
-- a plain root queue
SELECT * FROM pgq_node.register_location('m_solo', 'mn0', 'dbname=mn0', false);
SELECT * FROM pgq_node.create_node('m_solo', 'root', 'mn0', 'mw5', NULL, NULL, NULL);
SELECT queue_name, node_type, combined_queue FROM pgq_node.node_info WHERE queue_name LIKE 'm%' ORDER BY 1;
-- every copy of both tables local and in sync
INSERT INTO londiste.table_info (queue_name, table_name, local, merge_state)
SELECT q, t, true, 'ok'
  FROM unnest(array['mc_root', 'mp_r1', 'mp_r2']) q, unnest(array['mg.r_from', 'mg.r_to']) t
UNION ALL
SELECT q, t, true, 'ok'
  FROM unnest(array['mc_br', 'mp_b1', 'mp_b2']) q, unnest(array['mg.b_from', 'mg.b_to']) t;
INSERT INTO londiste.pending_fkeys (from_table, to_table, fkey_name, fkey_def) VALUES
  ('mg.r_from', 'mg.r_to', 'r_fk', 'alter table only mg.r_from add constraint r_fk foreign key (tid) references mg.r_to(id)'),
  ('mg.b_from', 'mg.b_to', 'b_fk', 'alter table only mg.b_from add constraint b_fk foreign key (tid) references mg.b_to(id)'),
  ('mg.b_from', 'mg.r_to', 'x_fk', 'alter table only mg.b_from add constraint x_fk foreign key (tid) references mg.r_to(id)');
CREATE VIEW mg.valid AS
SELECT q, f.fkey_name
  FROM unnest(array['mc_root', 'mp_r1', 'mp_r2', 'mc_br', 'mp_b1', 'mp_b2', 'm_solo', 'nosuch']) q,
       londiste.get_valid_pending_fkeys(q) f;
-- the part queue of the combined root; the combined branch queue itself
SELECT * FROM mg.valid ORDER BY 1, 2;
SELECT * FROM londiste.get_valid_pending_fkeys('mc_br');
-- a copy not in sync (any queue) holds the fkey back
UPDATE londiste.table_info SET merge_state = 'in-copy' WHERE queue_name = 'mp_r2' AND table_name = 'mg.r_to';
SELECT * FROM mg.valid ORDER BY 1, 2;
UPDATE londiste.table_info SET merge_state = 'ok', custom_snapshot = '1:2:' WHERE queue_name = 'mc_root' AND table_name = 'mg.r_from';
SELECT * FROM mg.valid ORDER BY 1, 2;
UPDATE londiste.table_info SET custom_snapshot = NULL WHERE queue_name = 'mc_root';
UPDATE londiste.table_info SET merge_state = NULL WHERE queue_name = 'mp_b1' AND table_name = 'mg.b_from';
SELECT * FROM mg.valid ORDER BY 1, 2;
UPDATE londiste.table_info SET merge_state = 'ok' WHERE queue_name = 'mp_b1';
-- copies that are not local do not count
UPDATE londiste.table_info SET local = false, merge_state = 'in-copy' WHERE queue_name = 'mp_r1' AND table_name = 'mg.r_to';
SELECT * FROM mg.valid ORDER BY 1, 2;
-- the smallest part queue of the root is gone: the next one
DELETE FROM londiste.table_info WHERE queue_name = 'mp_r1';
SELECT * FROM mg.valid ORDER BY 1, 2;
-- no part queue of a root left: the combined root is chosen by its name
DELETE FROM londiste.table_info WHERE queue_name = 'mp_r2';
SELECT * FROM mg.valid ORDER BY 1, 2;
-- the combined branch does not hold the tables: nobody restores the fkey
DELETE FROM londiste.table_info WHERE queue_name = 'mc_br';
SELECT * FROM mg.valid ORDER BY 1, 2;
-- tables of a plain root queue: the smallest queue name among the holders
INSERT INTO londiste.table_info (queue_name, table_name, local, merge_state) VALUES
  ('m_solo', 'mg.b_from', true, 'ok'), ('m_solo', 'mg.b_to', true, 'ok');
SELECT * FROM mg.valid ORDER BY 1, 2;
DELETE FROM londiste.table_info WHERE queue_name IN ('mp_b1', 'mp_b2');
SELECT * FROM mg.valid ORDER BY 1, 2;
-- only one of the tables local anywhere
DELETE FROM londiste.table_info WHERE table_name = 'mg.r_to';
SELECT * FROM mg.valid ORDER BY 1, 2;
-- rows come ordered by from_table, to_table, fkey_name
INSERT INTO londiste.table_info (queue_name, table_name, local, merge_state) VALUES ('m_solo', 'mg.r_to', true, 'ok');
INSERT INTO londiste.pending_fkeys (from_table, to_table, fkey_name, fkey_def) VALUES
  ('mg.b_from', 'mg.b_to', 'a_fk', 'alter table only mg.b_from add constraint a_fk foreign key (tid) references mg.b_to(id)');
SELECT * FROM londiste.get_valid_pending_fkeys('m_solo');
SELECT * FROM londiste.get_valid_pending_fkeys(NULL);
DROP VIEW mg.valid;
DELETE FROM londiste.pending_fkeys WHERE from_table LIKE 'mg.%';
SELECT * FROM pgq_node.drop_node('mp_r1', 'mn0');
SELECT * FROM pgq_node.drop_node('mp_r2', 'mn0');
SELECT * FROM pgq_node.drop_node('mp_b1', 'mn0');
SELECT * FROM pgq_node.drop_node('mp_b2', 'mn0');
SELECT * FROM pgq_node.drop_node('mc_root', 'mn0');
SELECT * FROM pgq_node.drop_node('mc_br', 'mn0');
SELECT * FROM pgq_node.drop_node('m_solo', 'mn0');
SELECT count(*) FROM pgq_node.node_info WHERE queue_name LIKE 'm%';
DROP SCHEMA mg CASCADE;
