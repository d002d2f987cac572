//! Name helpers: `schema.name` handling as Londiste stores names, and catalog
//! lookups of relations, column kinds and capture trigger functions.

use super::*;

/// The OID (as text) of relation `fqname` of relkind `kind`.
pub(super) fn find_rel_oid(fqname: &str, kind: &str) -> Option<String> {
    let (s, n) = lg::split_fqname(fqname);
    read_val(
        "select c.oid::text from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
          where n.nspname = $1 and c.relname = $2 and c.relkind::text = $3",
        &[Some(&s), Some(&n), Some(kind)],
    )
}

#[pg_extern(sql = false)]
fn lnd_make_fqname(i_name: &str) -> String {
    lg::make_fqname(i_name)
}

#[pg_extern(sql = false)]
fn lnd_split_fqname(i_fqname: &str) -> Rec {
    let (s, n) = lg::split_fqname(i_fqname);
    Rec::new().col(Some(s)).col(Some(n))
}

#[pg_extern(sql = false)]
fn lnd_quote_fqname(i_name: &str) -> String {
    quote_fq(i_name)
}

#[pg_extern(sql = false)]
fn lnd_find_rel_oid(i_fqname: &str, i_kind: &str) -> Option<pg_sys::Oid> {
    find_rel_oid(i_fqname, i_kind)
        .and_then(|s| s.parse::<u32>().ok())
        .map(pg_sys::Oid::from)
}

#[pg_extern(sql = false)]
fn lnd_find_table_oid(tbl: &str) -> Option<pg_sys::Oid> {
    lnd_find_rel_oid(tbl, "r")
}

#[pg_extern(sql = false)]
fn lnd_find_seq_oid(seq: &str) -> Option<pg_sys::Oid> {
    lnd_find_rel_oid(seq, "S")
}

#[pg_extern(sql = false)]
fn lnd_find_column_types(tbl: &str) -> Option<String> {
    let oid = find_rel_oid(tbl, "r")?;
    read_val(
        "select string_agg(case when pk.k then 'k' else 'v' end, '' order by a.attnum) \
           from pg_catalog.pg_attribute a \
           left join lateral (select true as k from pg_catalog.pg_index i \
                               where i.indrelid = a.attrelid and i.indisprimary \
                                 and a.attnum = any (i.indkey::int2[])) pk on true \
          where a.attrelid = $1::oid and a.attnum > 0 and not a.attisdropped",
        &[Some(&oid)],
    )
}

#[pg_extern(sql = false)]
fn lnd_is_replica_func(func_oid: pg_sys::Oid) -> bool {
    let o = u32::from(func_oid).to_string();
    truth(&read_val(
        "select exists (select 1 from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace \
          where p.oid = $1::oid and n.nspname = 'pgq' and p.proname in ('sqltriga', 'logutriga', 'jsontriga'))::text",
        &[Some(&o)],
    ))
}
