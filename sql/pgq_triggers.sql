-- Row-capture triggers (docs/triggers.md): version-1 C functions in this module.
-- Not SECURITY DEFINER; EXECUTE to pgq_writer (the finalize block revokes PUBLIC).

CREATE FUNCTION pgq.logutriga() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgq_logutriga';
CREATE FUNCTION pgq.sqltriga() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgq_sqltriga';
CREATE FUNCTION pgq.jsontriga() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgq_jsontriga';

GRANT EXECUTE ON FUNCTION pgq.logutriga(), pgq.sqltriga(), pgq.jsontriga() TO pgq_writer;
