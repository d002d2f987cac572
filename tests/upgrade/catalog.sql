-- tests/upgrade/catalog.sql: a text description of everything extension pgq owns in the
-- current database, one sorted line per fact, so that two databases can be diffed
-- (tests/upgrade/catalog-diff.sh: a fresh CREATE EXTENSION against an updated one).
-- Independent of OIDs, of the order objects were created or granted in, and of column
-- numbers left behind by dropped columns. Run with psql -XAtq.
WITH ext AS (
    SELECT e.* FROM pg_catalog.pg_extension e WHERE e.extname = 'pgq'
), member AS (
    SELECT d.classid, d.objid, d.objsubid FROM pg_catalog.pg_depend d, ext
     WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext.oid
       AND d.deptype = 'e'
),
facts(line) AS (
    -- the extension itself
    SELECT concat_ws(' | ', 'extension', extname, extversion, extrelocatable,
                     extnamespace::regnamespace, pg_catalog.pg_get_userbyid(extowner))
      FROM ext
    UNION ALL
    SELECT concat_ws(' | ', 'extconfig', c::regclass, cond)
      FROM ext, unnest(extconfig, extcondition) AS u(c, cond)
    UNION ALL
    -- membership: every object, whatever its catalog
    SELECT concat_ws(' | ', 'member', pg_catalog.pg_describe_object(classid, objid, objsubid))
      FROM member
    UNION ALL
    -- schemas
    SELECT concat_ws(' | ', 'schema', n.nspname, pg_catalog.pg_get_userbyid(n.nspowner),
                     (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(n.nspacl) x),
                     pg_catalog.obj_description(n.oid, 'pg_namespace'))
      FROM pg_catalog.pg_namespace n JOIN member m
        ON m.classid = 'pg_catalog.pg_namespace'::regclass AND m.objid = n.oid
    UNION ALL
    -- functions: signature, result, attributes, body, privileges
    SELECT concat_ws(' | ', 'function',
                     p.pronamespace::regnamespace || '.' || p.proname
                       || '(' || pg_catalog.pg_get_function_arguments(p.oid) || ')',
                     'returns ' || pg_catalog.pg_get_function_result(p.oid),
                     p.prokind, l.lanname, p.provolatile, p.proparallel,
                     CASE WHEN p.proisstrict THEN 'strict' END,
                     CASE WHEN p.prosecdef THEN 'security definer' END,
                     CASE WHEN p.proleakproof THEN 'leakproof' END,
                     'cost ' || p.procost, 'rows ' || p.prorows,
                     pg_catalog.array_to_string(p.proconfig, ','),
                     pg_catalog.pg_get_userbyid(p.proowner),
                     'acl ' || (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(p.proacl) x),
                     'bin ' || p.probin,
                     CASE WHEN l.lanname = 'c' THEN 'symbol ' || p.prosrc
                          ELSE 'src md5 ' || pg_catalog.md5(p.prosrc) END,
                     'support ' || nullif(p.prosupport::regproc::text, '-'),
                     pg_catalog.obj_description(p.oid, 'pg_proc'))
      FROM pg_catalog.pg_proc p JOIN member m
        ON m.classid = 'pg_catalog.pg_proc'::regclass AND m.objid = p.oid
      JOIN pg_catalog.pg_language l ON l.oid = p.prolang
    UNION ALL
    -- relations: kind, persistence, options, owner, privileges
    SELECT concat_ws(' | ', 'relation', c.oid::regclass, c.relkind, c.relpersistence,
                     pg_catalog.array_to_string(c.reloptions, ','),
                     CASE WHEN c.relrowsecurity THEN 'rls' END,
                     CASE WHEN c.relforcerowsecurity THEN 'force rls' END,
                     c.relreplident, pg_catalog.pg_get_userbyid(c.relowner),
                     'acl ' || (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(c.relacl) x),
                     pg_catalog.obj_description(c.oid, 'pg_class'))
      FROM pg_catalog.pg_class c JOIN member m
        ON m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = c.oid
    UNION ALL
    -- columns, by position among the live ones
    SELECT concat_ws(' | ', 'column', a.attrelid::regclass,
                     pg_catalog.row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum),
                     a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                     CASE WHEN a.attnotnull THEN 'not null' END,
                     'default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid),
                     nullif(a.attidentity, ''), nullif(a.attgenerated, ''),
                     'collate ' || co.collname, a.attstorage,
                     -- (pg_attver=: a per-database stamp some PostgreSQL builds add)
                     (SELECT string_agg(o, ',' ORDER BY o) FROM unnest(a.attoptions) o
                       WHERE o NOT LIKE 'pg\_attver=%'),
                     'acl ' || (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a.attacl) x),
                     pg_catalog.col_description(a.attrelid, a.attnum))
      FROM pg_catalog.pg_attribute a JOIN member m
        ON m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = a.attrelid
      LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
      LEFT JOIN pg_catalog.pg_collation co
        ON co.oid = a.attcollation AND a.attcollation <> 'pg_catalog.default'::regcollation
     WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    -- constraints, indexes, triggers, policies, rules, inheritance of member tables
    SELECT concat_ws(' | ', 'constraint', r.conrelid::regclass, r.conname,
                     pg_catalog.pg_get_constraintdef(r.oid),
                     CASE WHEN r.condeferrable THEN 'deferrable' END)
      FROM pg_catalog.pg_constraint r JOIN member m
        ON m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = r.conrelid
    UNION ALL
    SELECT concat_ws(' | ', 'index', i.indrelid::regclass, pg_catalog.pg_get_indexdef(i.indexrelid),
                     CASE WHEN i.indisclustered THEN 'clustered' END)
      FROM pg_catalog.pg_index i JOIN member m
        ON m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = i.indrelid
    UNION ALL
    SELECT concat_ws(' | ', 'trigger', t.tgrelid::regclass, pg_catalog.pg_get_triggerdef(t.oid),
                     t.tgenabled)
      FROM pg_catalog.pg_trigger t JOIN member m
        ON m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = t.tgrelid
     WHERE NOT t.tgisinternal
    UNION ALL
    SELECT concat_ws(' | ', 'policy', po.schemaname || '.' || po.tablename, po.policyname,
                     po.permissive, po.roles::text, po.cmd, po.qual, po.with_check)
      FROM pg_catalog.pg_policies po JOIN member m
        ON m.classid = 'pg_catalog.pg_class'::regclass
       AND m.objid = (pg_catalog.quote_ident(po.schemaname) || '.' || pg_catalog.quote_ident(po.tablename))::regclass
    UNION ALL
    SELECT concat_ws(' | ', 'rule', ru.ev_class::regclass, ru.rulename,
                     pg_catalog.pg_get_ruledef(ru.oid))
      FROM pg_catalog.pg_rewrite ru JOIN member m
        ON m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = ru.ev_class
    UNION ALL
    SELECT concat_ws(' | ', 'inherits', h.inhrelid::regclass, h.inhparent::regclass, h.inhseqno)
      FROM pg_catalog.pg_inherits h JOIN member m
        ON m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = h.inhrelid
    UNION ALL
    -- sequences: parameters and the column that owns them
    SELECT concat_ws(' | ', 'sequence', s.seqrelid::regclass, s.seqtypid::regtype, s.seqstart,
                     s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle,
                     (SELECT 'owned by ' || d.refobjid::regclass || '.' || a.attname
                        FROM pg_catalog.pg_depend d
                        JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                       WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = s.seqrelid
                         AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')))
      FROM pg_catalog.pg_sequence s JOIN member m
        ON m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = s.seqrelid
    UNION ALL
    -- views
    SELECT concat_ws(' | ', 'view', c.oid::regclass, pg_catalog.md5(pg_catalog.pg_get_viewdef(c.oid)))
      FROM pg_catalog.pg_class c JOIN member m
        ON m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = c.oid
     WHERE c.relkind IN ('v', 'm')
    UNION ALL
    -- types of the extension's own (enums, domains, composites made by CREATE TYPE)
    SELECT concat_ws(' | ', 'type', ty.oid::regtype, ty.typtype,
                     pg_catalog.format_type(ty.typbasetype, ty.typtypmod),
                     (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                        FROM pg_catalog.pg_enum e WHERE e.enumtypid = ty.oid),
                     'acl ' || (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(ty.typacl) x))
      FROM pg_catalog.pg_type ty JOIN member m
        ON m.classid = 'pg_catalog.pg_type'::regclass AND m.objid = ty.oid
    UNION ALL
    -- the privileges pg_dump treats as the extension's own (recorded at CREATE/UPDATE)
    SELECT concat_ws(' | ', 'init_privs', pg_catalog.pg_describe_object(ip.classoid, ip.objoid, ip.objsubid),
                     ip.privtype,
                     (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(ip.initprivs) x))
      FROM pg_catalog.pg_init_privs ip JOIN member m
        ON m.classid = ip.classoid AND m.objid = ip.objoid
    UNION ALL
    -- cluster-wide roles the install creates
    SELECT concat_ws(' | ', 'role', r.rolname, r.rolcanlogin, r.rolinherit, r.rolsuper,
                     (SELECT string_agg(g.rolname, ',' ORDER BY g.rolname)
                        FROM pg_catalog.pg_auth_members am JOIN pg_catalog.pg_roles g ON g.oid = am.roleid
                       WHERE am.member = r.oid))
      FROM pg_catalog.pg_roles r WHERE r.rolname IN ('pgq_reader', 'pgq_writer', 'pgq_admin')
)
SELECT line FROM facts ORDER BY line COLLATE "C";
