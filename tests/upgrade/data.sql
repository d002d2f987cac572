-- tests/upgrade/data.sql: the rows of extension pgq's own tables and the state of its
-- sequences, one sorted line each (row counts and an md5 of the sorted rows), for
-- comparing two databases that should hold the same data (a fresh install against an
-- updated one: an update script must leave the same rows a fresh install has).
-- Run with psql -XAtq.
SELECT line FROM (
SELECT concat_ws(' | ', 'data', c.oid::regclass, c.relkind,
       (pg_catalog.xpath('/row/x/text()', pg_catalog.query_to_xml(
            CASE c.relkind
              WHEN 'S' THEN pg_catalog.format('SELECT last_value || '','' || is_called AS x FROM %s', c.oid::regclass)
              ELSE pg_catalog.format('SELECT count(*) || '' rows, md5 '' || coalesce(md5(string_agg(t::text, E''\n'' ORDER BY t::text)), ''-'') AS x FROM ONLY %s t', c.oid::regclass)
            END, false, true, '')))[1]::text) AS line
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
   AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'pgq')
   AND c.relkind IN ('r', 'p', 'S')
) facts ORDER BY line COLLATE "C";
