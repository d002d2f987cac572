-- Extension pgq: update from version 0.3.0 to 0.4.0 (ALTER EXTENSION pgq UPDATE).
-- 0.4.0 brings replication administered in SQL (docs/admin.md): the pgq_cascade
-- functions that set up and change a cascade from the node itself, the status
-- functions, and the lock-free compare and repair.
\echo Use "ALTER EXTENSION pgq UPDATE" to load this file. \quit
