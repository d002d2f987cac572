//! Foreign keys: finding them, dropping them into `londiste.pending_fkeys` while a
//! table copies, and restoring them once every copy is in sync.

use super::*;

type FkeyRow = (
    name!(from_table, Option<String>),
    name!(to_table, Option<String>),
    name!(fkey_name, Option<String>),
    name!(fkey_def, Option<String>),
);

fn to_fkeys(rows: Vec<Row>) -> TableIterator<'static, FkeyRow> {
    TableIterator::new(
        rows.into_iter()
            .map(|r| (r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone()))
            .collect::<Vec<_>>(),
    )
}

/// FKeys from or to a table. `caller_path`: the search_path the definitions are
/// rendered with (pg_get_constraintdef names a referenced table without its schema
/// when the path finds it), as the original, which ran with the caller's path; the
/// statement itself qualifies every operator, so that path cannot change it.
fn find_table_fkeys_rows(table: &str, caller_path: &str) -> Vec<Row> {
    let fq = lg::make_fqname(table);
    let Some(oid) = find_rel_oid(&fq, "r") else {
        return vec![];
    };
    let rows = crate::db::with_search_path(caller_path, || {
        read_rows(
            "select fn.nspname::pg_catalog.text operator(pg_catalog.||) '.' operator(pg_catalog.||) fc.relname::pg_catalog.text, \
                    tn.nspname::pg_catalog.text operator(pg_catalog.||) '.' operator(pg_catalog.||) tc.relname::pg_catalog.text, \
                    c.conname::pg_catalog.text, pg_catalog.pg_get_constraintdef(c.oid), \
                    pg_catalog.quote_ident(fn.nspname) operator(pg_catalog.||) '.' \
                      operator(pg_catalog.||) pg_catalog.quote_ident(fc.relname) \
               from pg_catalog.pg_constraint c \
               join pg_catalog.pg_class fc on fc.oid operator(pg_catalog.=) c.conrelid \
               join pg_catalog.pg_namespace fn on fn.oid operator(pg_catalog.=) fc.relnamespace \
               join pg_catalog.pg_class tc on tc.oid operator(pg_catalog.=) c.confrelid \
               join pg_catalog.pg_namespace tn on tn.oid operator(pg_catalog.=) tc.relnamespace \
              where c.contype operator(pg_catalog.=) 'f' \
                and (c.conrelid operator(pg_catalog.=) $1::pg_catalog.oid \
                     or c.confrelid operator(pg_catalog.=) $1::pg_catalog.oid) \
              order by 1, 3",
            &[Some(&oid)],
        )
    });
    rows.into_iter()
        .map(|r| {
            // the table as the catalog names it: a schema with a dot in its name
            // would be split wrongly by quote_fqname
            let qfrom = r[4].clone().unwrap_or_default();
            let name = r[2].clone().unwrap_or_default();
            let def = format!(
                "alter table only {} add constraint {} {}",
                qfrom,
                quote_ident(&name),
                r[3].clone().unwrap_or_default()
            );
            vec![r[0].clone(), r[1].clone(), r[2].clone(), Some(def)]
        })
        .collect()
}

#[pg_extern(sql = false)]
fn lnd_find_table_fkeys(
    i_table_name: &str,
) -> TableIterator<
    'static,
    (
        name!(from_table, Option<String>),
        name!(to_table, Option<String>),
        name!(fkey_name, Option<String>),
        name!(fkey_def, Option<String>),
    ),
> {
    pinned(|caller| to_fkeys(find_table_fkeys_rows(i_table_name, caller)))
}

#[pg_extern(sql = false)]
fn lnd_drop_table_fkey(i_from_table: &str, i_fkey_name: &str) -> i32 {
    pinned(|caller| drop_table_fkey_impl(i_from_table, i_fkey_name, caller))
}

fn drop_table_fkey_impl(i_from_table: &str, i_fkey_name: &str, caller_path: &str) -> i32 {
    let fq = lg::make_fqname(i_from_table);
    let Some(fk) = find_table_fkeys_rows(&fq, caller_path)
        .into_iter()
        .find(|r| r[0].as_deref() == Some(fq.as_str()) && r[2].as_deref() == Some(i_fkey_name))
    else {
        return 0;
    };
    exec(
        "insert into londiste.pending_fkeys (from_table, to_table, fkey_name, fkey_def) values ($1, $2, $3, $4)",
        &[fk[0].as_deref(), fk[1].as_deref(), fk[2].as_deref(), fk[3].as_deref()],
    );
    exec_dyn(
        &format!(
            "alter table only {} drop constraint {}",
            quote_fq(&fq),
            quote_ident(i_fkey_name)
        ),
        &[],
    );
    1
}

#[pg_extern(sql = false)]
fn lnd_restore_table_fkey(i_from_table: &str, i_fkey_name: &str, i_lazy: bool) -> String {
    pinned(|caller| restore_table_fkey_impl(i_from_table, i_fkey_name, i_lazy, caller))
}

fn restore_table_fkey_impl(
    i_from_table: &str,
    i_fkey_name: &str,
    i_lazy: bool,
    caller_path: &str,
) -> String {
    let fq = lg::make_fqname(i_from_table);
    let Some(def) = read_val(
        "select fkey_def from londiste.pending_fkeys where from_table = $1 and fkey_name = $2",
        &[Some(&fq), Some(i_fkey_name)],
    ) else {
        return String::new();
    };
    let forget = || {
        exec(
            "delete from londiste.pending_fkeys where from_table = $1 and fkey_name = $2",
            &[Some(&fq), Some(i_fkey_name)],
        )
    };
    if !i_lazy {
        // the stored definition runs as written, with the caller's search_path
        crate::db::with_search_path(caller_path, || exec_dyn(&def, &[]));
        forget();
        return String::new();
    }
    let validated = find_rel_oid(&fq, "r").and_then(|oid| {
        read_val(
            "select convalidated::text from pg_catalog.pg_constraint \
              where conrelid = $1::oid and conname = $2 and contype = 'f'",
            &[Some(&oid), Some(i_fkey_name)],
        )
    });
    match validated.as_deref() {
        None => format!("{def} not valid"),
        Some("false") | Some("f") => format!(
            "alter table only {} validate constraint {}",
            quote_fq(&fq),
            quote_ident(i_fkey_name)
        ),
        Some(_) => {
            forget();
            String::new()
        }
    }
}

#[pg_extern(sql = false)]
fn lnd_get_table_pending_fkeys(
    i_table_name: &str,
) -> TableIterator<
    'static,
    (
        name!(from_table, Option<String>),
        name!(to_table, Option<String>),
        name!(fkey_name, Option<String>),
        name!(fkey_def, Option<String>),
    ),
> {
    let fq = lg::make_fqname(i_table_name);
    to_fkeys(read_rows(
        "select from_table, to_table, fkey_name, fkey_def from londiste.pending_fkeys \
          where from_table = $1 or to_table = $1 order by 1, 3",
        &[Some(&fq)],
    ))
}

#[pg_extern(sql = false)]
fn lnd_get_valid_pending_fkeys(
    i_queue_name: &str,
) -> TableIterator<
    'static,
    (
        name!(from_table, Option<String>),
        name!(to_table, Option<String>),
        name!(fkey_name, Option<String>),
        name!(fkey_def, Option<String>),
    ),
> {
    // A pending fkey is restored once every local copy (any queue) of both tables is
    // `ok` with no custom snapshot, by one queue only, and only if that queue holds at
    // least one of the tables. The queue chosen among the local rows of either table:
    // the smallest part queue whose combined node is a root, else the smallest
    // combined queue that is a branch (the merge target itself), else the smallest
    // queue name.
    to_fkeys(read_rows(
        "with st as (select p.from_table, p.to_table, p.fkey_name, p.fkey_def, \
                            f.total as f_total, f.matching as f_matching, f.ok as f_ok, \
                            t.total as t_total, t.matching as t_matching, t.ok as t_ok \
                       from londiste.pending_fkeys p \
                       cross join lateral ( \
                            select count(*) as total, \
                                   count(*) filter (where i.queue_name operator(pg_catalog.=) $1) as matching, \
                                   count(*) filter (where i.merge_state operator(pg_catalog.=) 'ok' \
                                                      and i.custom_snapshot is null) as ok \
                              from londiste.table_info i \
                             where i.local and coalesce(i.dest_table, i.table_name) operator(pg_catalog.=) p.from_table) f \
                       cross join lateral ( \
                            select count(*) as total, \
                                   count(*) filter (where i.queue_name operator(pg_catalog.=) $1) as matching, \
                                   count(*) filter (where i.merge_state operator(pg_catalog.=) 'ok' \
                                                      and i.custom_snapshot is null) as ok \
                              from londiste.table_info i \
                             where i.local and coalesce(i.dest_table, i.table_name) operator(pg_catalog.=) p.to_table) t) \
         select st.from_table, st.to_table, st.fkey_name, st.fkey_def from st \
          where st.f_total operator(pg_catalog.>) 0 and st.t_total operator(pg_catalog.>) 0 \
            and st.f_ok operator(pg_catalog.=) st.f_total and st.t_ok operator(pg_catalog.=) st.t_total \
            and (st.f_matching operator(pg_catalog.>) 0 or st.t_matching operator(pg_catalog.>) 0) \
            and $1 operator(pg_catalog.=) ( \
                select coalesce(min(case when c.node_type operator(pg_catalog.=) 'root' then i.queue_name end), \
                                min(case when c.node_type operator(pg_catalog.=) 'branch' then c.queue_name end), \
                                min(i.queue_name)) \
                  from londiste.table_info i \
                  join pgq_node.node_info n on n.queue_name operator(pg_catalog.=) i.queue_name \
                  left join pgq_node.node_info c on c.queue_name operator(pg_catalog.=) n.combined_queue \
                 where i.local and coalesce(i.dest_table, i.table_name) in (st.to_table, st.from_table)) \
          order by st.from_table, st.to_table, st.fkey_name",
        &[Some(i_queue_name)],
    ))
}
