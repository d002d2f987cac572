//! Partition helpers: creating a partition like its parent (privileges, triggers,
//! rules), and finding or dropping partitions past their retention period.

use super::*;

/// `schema.name` split at the first dot (no dot: `public`), each part quoted.
fn quote_split(name: &str) -> (String, String, String) {
    let (s, n) = lg::split_fqname(name);
    (s, n, quote_fq(name))
}

#[pg_extern(sql = false)]
fn lnd_create_partition(
    i_table: Option<&str>,
    i_part: Option<&str>,
    i_pkeys: Option<&str>,
    i_part_field: Option<&str>,
    i_part_time: Option<pgrx::datum::TimestampWithTimeZone>,
    i_part_period: Option<&str>,
) -> i32 {
    // the key columns come with LIKE ... INCLUDING ALL; the original ignores i_pkeys too
    let _ = i_pkeys;
    let (Some(parent), Some(part)) = (i_table, i_part) else {
        raise("need table and part")
    };
    let (parent_schema, parent_name, qparent) = quote_split(parent);
    let (part_schema, part_name, qpart) = quote_split(part);
    // concurrent creators of partitions wait for each other (as the original)
    exec(
        "lock table londiste.table_info in share update exclusive mode",
        &[],
    );
    // raises `relation "..." does not exist` for a missing parent
    let parent_oid = read_val(
        "select $1::pg_catalog.regclass::pg_catalog.oid::text",
        &[Some(&qparent)],
    )
    .unwrap_or_else(|| raise("create_partition: parent table not found"));
    let exists = truth(&read_val(
        "select exists (select 1 from pg_catalog.pg_class t join pg_catalog.pg_namespace s on s.oid = t.relnamespace \
          where s.nspname = $1 and t.relname = $2)::text",
        &[Some(&part_schema), Some(&part_name)],
    ));
    if exists {
        return 0;
    }
    exec_dyn(
        &format!("create table {qpart} (like {qparent} including all) inherits ({qparent})"),
        &[],
    );
    // the parent's owner, unless that is who creates it
    let owner = read_row(
        "select o.rolname::text, (o.rolname operator(pg_catalog.<>) current_user)::text \
           from pg_catalog.pg_class t join pg_catalog.pg_roles o on o.oid = t.relowner \
          where t.oid = $1::pg_catalog.oid",
        &[Some(&parent_oid)],
    );
    if let Some(o) = owner.filter(|o| truth(&o[1])) {
        exec_dyn(
            &format!(
                "alter table {qpart} owner to {}",
                quote_ident(o[0].as_deref().unwrap_or_default())
            ),
            &[],
        );
    }
    if let Some(field) = i_part_field.filter(|f| !f.is_empty()) {
        let ts = i_part_time.map(|t| t.to_string());
        let bounds = read_row(
            "select pg_catalog.to_char(b.s, 'YYYY-MM-DD HH24:MI:SS'), pg_catalog.to_char(b.e, 'YYYY-MM-DD HH24:MI:SS') \
               from (select pg_catalog.date_trunc($2, $1::timestamptz) as s, \
                            pg_catalog.date_trunc($2, $1::timestamptz) \
                              operator(pg_catalog.+) ('1 ' operator(pg_catalog.||) $2)::pg_catalog.interval as e) b",
            &[ts.as_deref(), i_part_period],
        )
        .unwrap_or_default();
        let (Some(start), Some(end)) = (
            bounds.first().cloned().flatten(),
            bounds.get(1).cloned().flatten(),
        ) else {
            // a NULL time or period: the original's EXECUTE got a NULL statement
            crate::errors::raise_code(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "query string argument of EXECUTE is null",
            )
        };
        let f = quote_ident(field);
        exec_dyn(
            &format!(
                "alter table {qpart} add check ({f} >= {} and {f} < {})",
                quote_literal(&start),
                quote_literal(&end)
            ),
            &[],
        );
    }
    // the parent's privileges, as the caller sees them (information_schema), grant
    // options and PUBLIC included
    let grants = read_rows(
        "select grantee::text, privilege_type::text, is_grantable::text \
           from information_schema.table_privileges \
          where table_schema operator(pg_catalog.=) $1 and table_name operator(pg_catalog.=) $2",
        &[Some(&parent_schema), Some(&parent_name)],
    );
    for g in grants {
        let grantee = match g[0].as_deref() {
            Some("PUBLIC") => "public".to_string(),
            Some(r) => quote_ident(r),
            None => continue,
        };
        let privilege = match g[1].as_deref() {
            Some(
                p @ ("SELECT" | "INSERT" | "UPDATE" | "DELETE" | "TRUNCATE" | "REFERENCES"
                | "TRIGGER"),
            ) => p,
            _ => continue,
        };
        exec_dyn(
            &format!(
                "grant {privilege} on {qpart} to {grantee}{}",
                if g[2].as_deref() == Some("YES") {
                    " with grant option"
                } else {
                    ""
                }
            ),
            &[],
        );
    }
    // triggers and rules of the parent, re-pointed at the partition, with their
    // enabled state
    let parent_rel = read_val(
        "select pg_catalog.quote_ident(n.nspname) operator(pg_catalog.||) '.' \
                operator(pg_catalog.||) pg_catalog.quote_ident(c.relname) \
           from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
          where c.oid = $1::pg_catalog.oid",
        &[Some(&parent_oid)],
    )
    .unwrap_or_default();
    let triggers = read_rows(
        "select tgname::text, tgenabled::text, pg_catalog.pg_get_triggerdef(oid) from pg_catalog.pg_trigger \
          where tgrelid = $1::pg_catalog.oid and not tgisinternal order by tgname",
        &[Some(&parent_oid)],
    );
    for t in triggers {
        let name = t[0].clone().unwrap_or_default();
        let def = t[2].clone().unwrap_or_default();
        let qname = quote_ident(&name);
        let head = ["CREATE TRIGGER ", "CREATE CONSTRAINT TRIGGER "]
            .iter()
            .map(|h| format!("{h}{qname}"))
            .find(|h| def.starts_with(h.as_str()))
            .unwrap_or_default();
        let Some(sql) = lg::repoint_definition(&def, &head, " ON ", &parent_rel, &qpart) else {
            raise(format!("Failed to reconstruct the trigger: {def}"))
        };
        exec_dyn(&sql, &[]);
        let extra = match t[1].as_deref() {
            Some("O") => None,
            Some("D") => Some("disable trigger"),
            Some("A") => Some("enable always trigger"),
            Some("R") => Some("enable replica trigger"),
            other => raise(format!(
                "Unknown trigger mode: {}",
                other.unwrap_or_default()
            )),
        };
        if let Some(x) = extra {
            exec_dyn(&format!("alter table {qpart} {x} {qname}"), &[]);
        }
    }
    let rules = read_rows(
        "select rulename::text, ev_enabled::text, pg_catalog.pg_get_ruledef(oid) from pg_catalog.pg_rewrite \
          where ev_class = $1::pg_catalog.oid and rulename operator(pg_catalog.<>) '_RETURN' order by rulename",
        &[Some(&parent_oid)],
    );
    for r in rules {
        let name = r[0].clone().unwrap_or_default();
        let def = r[2].clone().unwrap_or_default();
        let qname = quote_ident(&name);
        let head = format!("CREATE RULE {qname} AS");
        if !def.starts_with(&head) {
            raise("failed to match rule name");
        }
        let Some(sql) = lg::repoint_definition(&def, &head, " TO ", &parent_rel, &qpart) else {
            raise("failed to find original table name")
        };
        exec_dyn(&sql, &[]);
        let extra = match r[1].as_deref() {
            Some("O") => None,
            Some("R") => Some("enable replica rule"),
            Some("A") => Some("enable always rule"),
            Some("D") => Some("disable rule"),
            other => raise(format!(
                "unknown rule option: {}",
                other.unwrap_or_default()
            )),
        };
        if let Some(x) = extra {
            exec_dyn(&format!("alter table {qpart} {x} {qname}"), &[]);
        }
    }
    1
}

fn part_suffix_or_raise(period: Option<&str>) -> lg::PartSuffix {
    period.and_then(lg::part_suffix).unwrap_or_else(|| {
        raise(format!(
            "not supported i_partition_period: {}",
            period.unwrap_or("<NULL>")
        ))
    })
}

/// Is a partition older than the retention period? Its name suffix (`_YYYY_MM`, ...)
/// is compared as text with the same suffix of `now() - retention`, as the original
/// does, so a suffix that is not a valid date never fails. NULL when the name does not
/// end in the period's suffix.
#[pg_extern(sql = false)]
fn lnd_is_obsolete_partition(
    i_partition_table: Option<&str>,
    i_retention_period: Option<pgrx::datum::Interval>,
    i_partition_period: Option<&str>,
) -> Option<bool> {
    let suffix = part_suffix_or_raise(i_partition_period);
    let table = i_partition_table?;
    let base = lg::partition_base(table, suffix).filter(|b| !b.is_empty())?;
    let retention = i_retention_period.map(|r| r.to_string());
    let older = read_val(
        "select ($1::text operator(pg_catalog.<) ($2::text operator(pg_catalog.||) \
                 pg_catalog.to_char(pg_catalog.now() operator(pg_catalog.-) $3::pg_catalog.interval, $4)))::text",
        &[Some(table), Some(base), retention.as_deref(), Some(suffix.to_char)],
    );
    Some(truth(&older))
}

/// Tables of the parent's schema named `<parent>_<suffix>` whose suffix is older than
/// the retention period (text comparison, as is_obsolete_partition), quoted, sorted.
fn list_obsolete(
    parent: Option<&str>,
    retention: Option<String>,
    period: Option<&str>,
) -> Vec<String> {
    let Some(parent) = parent else {
        crate::errors::raise_code(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "null value cannot be assigned to variable \"_schema\" declared NOT NULL",
        )
    };
    let suffix = part_suffix_or_raise(period);
    // split_part semantics: `a.b.c` is table b of schema a, `t` is public.t
    let mut it = parent.split('.');
    let mut schema = it.next().unwrap_or_default().to_string();
    let mut table = it.next().unwrap_or_default().to_string();
    if table.is_empty() {
        table = schema;
        schema = "public".to_string();
    }
    let rows = read_rows(
        "select t.tablename::text, pg_catalog.quote_ident(t.schemaname) operator(pg_catalog.||) '.' \
                operator(pg_catalog.||) pg_catalog.quote_ident(t.tablename) \
           from pg_catalog.pg_tables t \
          where t.schemaname operator(pg_catalog.=) $1 \
            and t.tablename::text operator(pg_catalog.<) ($2 operator(pg_catalog.||) \
                pg_catalog.to_char(pg_catalog.now() operator(pg_catalog.-) $3::pg_catalog.interval, $4)) \
          order by 2",
        &[Some(&schema), Some(&table), retention.as_deref(), Some(suffix.to_char)],
    );
    rows.into_iter()
        .filter_map(|r| {
            let name = r[0].clone()?;
            (lg::partition_base(&name, suffix) == Some(table.as_str())).then(|| r[1].clone())?
        })
        .collect()
}

#[pg_extern(sql = false)]
fn lnd_list_obsolete_partitions(
    i_parent_table: Option<&str>,
    i_retention_period: Option<pgrx::datum::Interval>,
    i_partition_period: Option<&str>,
) -> SetOfIterator<'static, String> {
    SetOfIterator::new(list_obsolete(
        i_parent_table,
        i_retention_period.map(|r| r.to_string()),
        i_partition_period,
    ))
}

#[pg_extern(sql = false)]
fn lnd_drop_obsolete_partitions(
    i_parent_table: Option<&str>,
    i_retention_period: Option<pgrx::datum::Interval>,
    i_partition_period: Option<&str>,
) -> SetOfIterator<'static, String> {
    let v = list_obsolete(
        i_parent_table,
        i_retention_period.map(|r| r.to_string()),
        i_partition_period,
    );
    // the names come quoted from list_obsolete
    for t in &v {
        exec_dyn(&format!("drop table {t}"), &[]);
    }
    SetOfIterator::new(v)
}
