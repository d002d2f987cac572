-- sqltriga with pkey= naming a column the table does not have: UPDATE and DELETE
-- are refused (the original emitted an empty or partial WHERE clause); INSERT, and
-- logutriga/jsontriga, which only name the keys in ev_type, are unaffected.
\set VERBOSITY terse
SET client_min_messages = warning;
SELECT pgq.create_queue('pkq');
RESET client_min_messages;
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN others THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
CREATE TABLE pk_t (id int4, v text);
INSERT INTO pk_t VALUES (1, 'a'), (2, 'b');
CREATE TRIGGER s1 AFTER INSERT OR UPDATE OR DELETE ON pk_t FOR EACH ROW EXECUTE PROCEDURE pgq.sqltriga('pkq', 'pkey=nope');
SELECT pg_temp.try('INSERT INTO pk_t VALUES (3, ''c'')');
SELECT pg_temp.try('UPDATE pk_t SET v = ''x'' WHERE id = 1');
SELECT pg_temp.try('DELETE FROM pk_t WHERE id = 1');
DROP TRIGGER s1 ON pk_t;
-- one of two keys missing: the WHERE clause would match too much
CREATE TRIGGER s2 AFTER INSERT OR UPDATE OR DELETE ON pk_t FOR EACH ROW EXECUTE PROCEDURE pgq.sqltriga('pkq', 'pkey=id,"V"');
SELECT pg_temp.try('UPDATE pk_t SET v = ''x'' WHERE id = 1');
DROP TRIGGER s2 ON pk_t;
-- keys that exist (also in another order, with spaces) work
CREATE TRIGGER s3 AFTER INSERT OR UPDATE OR DELETE ON pk_t FOR EACH ROW EXECUTE PROCEDURE pgq.sqltriga('pkq', 'pkey= v , id');
SELECT pg_temp.try('UPDATE pk_t SET v = v WHERE id = 2');
SELECT pg_temp.try('DELETE FROM pk_t WHERE id = 2');
DROP TRIGGER s3 ON pk_t;
-- a magic column is no key
ALTER TABLE pk_t ADD COLUMN _pgq_ev_extra3 text;
CREATE TRIGGER s4 AFTER UPDATE ON pk_t FOR EACH ROW EXECUTE PROCEDURE pgq.sqltriga('pkq', 'pkey=id,_pgq_ev_extra3');
SELECT pg_temp.try('UPDATE pk_t SET v = ''y'' WHERE id = 3');
DROP TRIGGER s4 ON pk_t;
-- logutriga and jsontriga: as before
CREATE TRIGGER l1 AFTER UPDATE ON pk_t FOR EACH ROW EXECUTE PROCEDURE pgq.logutriga('pkq', 'pkey=nope');
CREATE TRIGGER j1 AFTER UPDATE ON pk_t FOR EACH ROW EXECUTE PROCEDURE pgq.jsontriga('pkq', 'pkey=nope');
SELECT pg_temp.try('UPDATE pk_t SET v = ''z'' WHERE id = 3');
SELECT ev_type, ev_data FROM pgq.event_template e JOIN pgq.queue q ON e.tableoid::regclass::text LIKE q.queue_data_pfx || '%'
 WHERE q.queue_name = 'pkq' ORDER BY ev_id;
DROP TABLE pk_t;
SELECT pgq.drop_queue('pkq');
