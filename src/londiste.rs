//! The `londiste` schema: table and sequence registry, trigger installation, EXECUTE
//! bookkeeping, pending foreign keys, partition helpers.
//!
//! Every function is `#[pg_extern(sql = false)]` (symbol `lnd_<name>_wrapper`); the
//! `CREATE FUNCTION` statements with the original's argument names, OUT columns,
//! strictness, volatility and grants are in sql/londiste_schema.sql, because most
//! functions return a single `record` with OUT parameters, which pgrx cannot declare.
//! Pure logic (names, states, trigger planning) is in logic/londiste.rs.
//!
//! None of these is SECURITY DEFINER except set_session_replication_role (as in the
//! original), so all SQL below is schema-qualified and runs with the caller's rights.
// pgrx needs the name!() columns of set-returning functions spelled out in signatures
#![allow(clippy::type_complexity)]

use crate::errors::{raise, OrReport, PgqResult, SpiResultExt};
use crate::logic::londiste as lg;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// The `search_path` every londiste function runs its own statements with. Most get it
/// from their `SET` clause; the few that also run the caller's SQL (stored DDL and
/// fkey definitions) or render definitions for the caller are declared without one and
/// set it themselves around everything else (`pinned`).
const LND_PATH: &str = "pg_catalog, londiste, pg_temp";

/// Run `f` with the pinned search_path; `f` gets the caller's search_path to use for
/// the caller's own SQL.
fn pinned<R>(f: impl FnOnce(&str) -> R) -> R {
    let caller = crate::db::current_search_path();
    crate::db::with_search_path(LND_PATH, || f(&caller))
}

// ---------------------------------------------------------------------------
// single-record results
// ---------------------------------------------------------------------------

use crate::outrec::OutRec as Rec;

fn from_ret(r: &Ret) -> Rec {
    Rec::ret(r.0, r.1.clone())
}

/// (ret_code, ret_note) as computed internally.
#[derive(Debug, Clone)]
pub struct Ret(i32, Option<String>);

fn ret(code: i32, note: impl Into<String>) -> Ret {
    Ret(code, Some(note.into()))
}

// ---------------------------------------------------------------------------
// SPI helpers: text in, text out (queries cast their columns to text)
// ---------------------------------------------------------------------------

type Row = Vec<Option<String>>;

fn text_args(args: &[Option<&str>]) -> Vec<DatumWithOid<'static>> {
    args.iter()
        .map(|v| match v {
            Some(s) => DatumWithOid::from(s.to_string()),
            None => DatumWithOid::null::<String>(),
        })
        .collect()
}

/// Every row of a result, each column as text (the queries cast to text).
fn text_rows(t: pgrx::spi::SpiTupleTable<'_>) -> PgqResult<Vec<Row>> {
    const W: &str = "londiste: reading rows";
    let n = t.columns().ctx(W)?;
    let mut out = Vec::new();
    for row in t {
        let mut r = Vec::with_capacity(n);
        for i in 1..=n {
            r.push(crate::db::get::<String>(&row, i, W)?);
        }
        out.push(r);
    }
    Ok(out)
}

fn read_rows(sql: &str, args: &[Option<&str>]) -> Vec<Row> {
    crate::db::read("londiste", |c| {
        text_rows(c.read("query", sql, &text_args(args))?)
    })
    .or_report()
}

fn write_rows(sql: &str, args: &[Option<&str>]) -> Vec<Row> {
    crate::db::write("londiste", |c| {
        text_rows(c.write("statement", sql, &text_args(args))?)
    })
    .or_report()
}

fn read_row(sql: &str, args: &[Option<&str>]) -> Option<Row> {
    read_rows(sql, args).into_iter().next()
}

fn write_row(sql: &str, args: &[Option<&str>]) -> Option<Row> {
    write_rows(sql, args).into_iter().next()
}

fn read_val(sql: &str, args: &[Option<&str>]) -> Option<String> {
    read_row(sql, args).and_then(|r| r.into_iter().next().flatten())
}

fn write_val(sql: &str, args: &[Option<&str>]) -> Option<String> {
    write_row(sql, args).and_then(|r| r.into_iter().next().flatten())
}

fn exec(sql: &str, args: &[Option<&str>]) {
    crate::db::write("londiste", |c| {
        c.execute("statement", sql, &text_args(args))
    })
    .or_report();
}

fn truth(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("t") | Some("true"))
}

use crate::logic::quote::literal as quote_literal;
use crate::names::{quote_fqname as quote_fq, quote_ident};

fn find_rel_oid(fqname: &str, kind: &str) -> Option<String> {
    let (s, n) = lg::split_fqname(fqname);
    read_val(
        "select c.oid::text from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
          where n.nspname = $1 and c.relname = $2 and c.relkind::text = $3",
        &[Some(&s), Some(&n), Some(kind)],
    )
}

struct NodeInfo {
    node_type: Option<String>,
    combined_queue: Option<String>,
    combined_type: Option<String>,
}

/// pgq_node.get_node_info(); None when it reports an error (>= 400).
fn node_info(queue: Option<&str>) -> Option<NodeInfo> {
    let r = read_row(
        "select ret_code::text, node_type, combined_queue, combined_type from pgq_node.get_node_info($1)",
        &[queue],
    )?;
    let code: i32 = r[0].as_deref().and_then(|s| s.parse().ok()).unwrap_or(500);
    if code >= 400 {
        return None;
    }
    Some(NodeInfo {
        node_type: r[1].clone(),
        combined_queue: r[2].clone(),
        combined_type: r[3].clone(),
    })
}

/// pgq_node.is_root_node(): raises for an unknown queue, as the original.
fn is_root_node(queue: Option<&str>) -> bool {
    truth(&read_val(
        "select pgq_node.is_root_node($1)::text",
        &[queue],
    ))
}

/// Root check that does not raise: node_info row of type root.
fn node_is_root(queue: &str) -> bool {
    read_val(
        "select node_type from pgq_node.node_info where queue_name = $1",
        &[Some(queue)],
    )
    .as_deref()
        == Some("root")
}

fn insert_event(
    queue: &str,
    ev_type: &str,
    data: Option<&str>,
    extra1: Option<&str>,
    extra2: Option<&str>,
) {
    exec(
        "select pgq.insert_event($1, $2, $3, $4, $5, null, null)",
        &[Some(queue), Some(ev_type), data, extra1, extra2],
    );
}

fn root_notify_change_impl(queue: Option<&str>, ev_type: Option<&str>, data: Option<&str>) -> i32 {
    if !is_root_node(queue) {
        raise("only root node can send events");
    }
    exec(
        "select pgq.insert_event($1, $2, $3)",
        &[queue, ev_type, data],
    );
    1
}

fn text_array(a: Option<Vec<Option<String>>>) -> Vec<String> {
    a.unwrap_or_default().into_iter().flatten().collect()
}

// ---------------------------------------------------------------------------
// helpers and metadata
// ---------------------------------------------------------------------------

#[pg_extern(sql = false)]
fn lnd_version() -> &'static str {
    "3.8"
}

#[pg_extern(sql = false)]
fn lnd_upgrade_schema() -> i32 {
    0
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

#[pg_extern(sql = false)]
fn lnd_set_session_replication_role(val_: Option<&str>, is_local: Option<bool>) {
    match val_ {
        Some(v @ ("origin" | "replica" | "local")) => {
            let l = if is_local.unwrap_or(false) {
                "true"
            } else {
                "false"
            };
            exec(
                "select pg_catalog.set_config('session_replication_role', $1, $2::bool)",
                &[Some(v), Some(l)],
            );
        }
        _ => raise("bad value for session_replication_role"),
    }
}

#[pg_extern(sql = false)]
fn lnd_periodic_maintenance() -> i32 {
    exec(
        "delete from londiste.applied_execute \
          where execute_time operator(pg_catalog.<) \
                (pg_catalog.now() operator(pg_catalog.-) '3 months'::pg_catalog.interval)",
        &[],
    );
    0
}

// ---------------------------------------------------------------------------
// table registry
// ---------------------------------------------------------------------------

type TableRow = (
    name!(table_name, Option<String>),
    name!(local, Option<bool>),
    name!(merge_state, Option<String>),
    name!(custom_snapshot, Option<String>),
    name!(table_attrs, Option<String>),
    name!(dropped_ddl, Option<String>),
    name!(copy_role, Option<String>),
    name!(copy_pos, Option<i32>),
    name!(dest_table, Option<String>),
);

#[pg_extern(sql = false)]
fn lnd_get_table_list(
    i_queue_name: &str,
) -> TableIterator<
    'static,
    (
        name!(table_name, Option<String>),
        name!(local, Option<bool>),
        name!(merge_state, Option<String>),
        name!(custom_snapshot, Option<String>),
        name!(table_attrs, Option<String>),
        name!(dropped_ddl, Option<String>),
        name!(copy_role, Option<String>),
        name!(copy_pos, Option<i32>),
        name!(dest_table, Option<String>),
    ),
> {
    let rows = read_rows(
        "select table_name, local::text, merge_state, custom_snapshot, table_attrs, dropped_ddl, dest_table \
           from londiste.table_info where queue_name = $1 order by nr, table_name",
        &[Some(i_queue_name)],
    );
    let out: Vec<TableRow> = rows
        .into_iter()
        .map(|r| {
            let (role, pos) = match r[2].as_deref() {
                Some("in-copy") | Some("catching-up") => {
                    coordinate_copy(i_queue_name, r[0].as_deref().unwrap_or(""))
                }
                _ => (None, 0),
            };
            (
                r[0].clone(),
                Some(truth(&r[1])),
                r[2].clone(),
                r[3].clone(),
                r[4].clone(),
                r[5].clone(),
                role,
                Some(pos),
                r[6].clone(),
            )
        })
        .collect();
    TableIterator::new(out)
}

/// Copy coordination between part queues feeding one destination table on a merge
/// node: (copy_role, copy_pos).
fn coordinate_copy(queue: &str, table: &str) -> (Option<String>, i32) {
    let Some(r) = read_row(
        "with me as (select t.merge_state, t.dropped_ddl, coalesce(t.dest_table, t.table_name) as dest, n.combined_queue \
                       from londiste.table_info t join pgq_node.node_info n on n.queue_name = t.queue_name \
                      where t.queue_name = $1 and t.table_name = $2), \
              sib as (select t2.* from me, londiste.table_info t2 \
                        join pgq_node.node_info n2 on n2.queue_name = t2.queue_name \
                       where n2.combined_queue is not distinct from me.combined_queue \
                         and coalesce(t2.dest_table, t2.table_name) = me.dest \
                         and (t2.merge_state is null or t2.merge_state <> 'ok')) \
         select me.merge_state, (me.dropped_ddl is not null)::text, me.combined_queue, \
                (select min(queue_name) from sib where local), \
                (select min(queue_name) from sib where local and dropped_ddl is not null), \
                (select count(*) from sib where local)::text, \
                (select count(*) from sib where local and merge_state <> 'in-copy')::text, \
                (select count(*) from sib where queue_name < $1 and me.merge_state = 'in-copy' \
                                            and merge_state = 'in-copy')::text \
           from me",
        &[Some(queue), Some(table)],
    ) else {
        return (None, 0);
    };
    let state = r[0].clone();
    let has_ddl = truth(&r[1]);
    let combined = r[2].clone();
    let part1 = r[3].clone();
    let part_ddl = r[4].clone();
    let n_parts: i64 = r[5].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
    let n_done: i64 = r[6].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
    let pos: i32 = r[7].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
    if combined.is_none() || n_parts <= 1 {
        return (None, pos);
    }
    let lead = part_ddl.clone().or(part1);
    let is_lead = lead.as_deref() == Some(queue);
    let role = match (state.as_deref(), is_lead) {
        (Some("in-copy"), true) => {
            if !has_ddl && n_done > 0 {
                Some("wait-replay")
            } else {
                Some("lead")
            }
        }
        (Some("catching-up"), true) => {
            if has_ddl && n_done < n_parts {
                Some("wait-replay")
            } else {
                None
            }
        }
        (Some("in-copy"), false) => {
            if part_ddl.is_some() || n_done > 0 {
                Some("wait-replay")
            } else {
                Some("wait-copy")
            }
        }
        (Some("catching-up"), false) => {
            if part_ddl.is_some() {
                Some("wait-replay")
            } else {
                None
            }
        }
        _ => None,
    };
    (role.map(String::from), pos)
}

#[pg_extern(sql = false)]
fn lnd_coordinate_copy(i_queue_name: &str, i_table_name: &str) -> Rec {
    let (role, pos) = coordinate_copy(i_queue_name, i_table_name);
    Rec::new().col(role).col(Some(pos))
}

#[pg_extern(sql = false)]
fn lnd_get_seq_list(
    i_queue_name: &str,
) -> TableIterator<
    'static,
    (
        name!(seq_name, Option<String>),
        name!(last_value, Option<i64>),
        name!(local, Option<bool>),
    ),
> {
    let rows = read_rows(
        "select seq_name, last_value::text, local::text from londiste.seq_info \
          where queue_name = $1 order by nr, seq_name",
        &[Some(i_queue_name)],
    );
    TableIterator::new(
        rows.into_iter()
            .map(|r| {
                (
                    r[0].clone(),
                    r[1].as_deref().and_then(|s| s.parse().ok()),
                    Some(truth(&r[2])),
                )
            })
            .collect::<Vec<_>>(),
    )
}

#[pg_extern(sql = false)]
fn lnd_local_show_missing(
    i_queue_name: &str,
) -> TableIterator<
    'static,
    (
        name!(obj_kind, Option<String>),
        name!(obj_name, Option<String>),
    ),
> {
    let rows = if is_root_node(Some(i_queue_name)) {
        read_rows(
            "select c.relkind::text, n.nspname || '.' || c.relname \
               from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
              where c.relkind in ('r', 'S') \
                and n.nspname not in ('pgq', 'pgq_ext', 'pgq_node', 'londiste', 'pg_catalog', 'information_schema') \
                and n.nspname !~ '^pg_(toast|temp)' \
                and not exists (select 1 from londiste.table_info t \
                                 where t.queue_name = $1 and t.local \
                                   and coalesce(t.dest_table, t.table_name) = n.nspname || '.' || c.relname) \
              order by 1, 2",
            &[Some(i_queue_name)],
        )
    } else {
        read_rows(
            "select * from (select 'S'::text, seq_name from londiste.seq_info where queue_name = $1 and not local \
                            union all \
                            select 'r'::text, table_name from londiste.table_info where queue_name = $1 and not local) x \
              order by 1, 2",
            &[Some(i_queue_name)],
        )
    };
    TableIterator::new(
        rows.into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect::<Vec<_>>(),
    )
}

fn global_add_table_impl(queue: &str, table: &str) -> Ret {
    let fq = lg::make_fqname(table);
    let Some(node) = read_row(
        "select combined_queue from pgq_node.node_info where queue_name = $1",
        &[Some(queue)],
    ) else {
        return ret(400, format!("No such queue: {queue}"));
    };
    let inserted = write_rows(
        "insert into londiste.table_info (queue_name, table_name) values ($1, $2) \
         on conflict (queue_name, table_name) do nothing returning '1'::text",
        &[Some(queue), Some(&fq)],
    );
    if inserted.is_empty() {
        return ret(200, format!("Table already added: {fq}"));
    }
    if let Some(cq) = node[0].as_deref() {
        global_add_table_impl(cq, &fq);
    }
    ret(200, format!("Table added: {table}"))
}

#[pg_extern(sql = false)]
fn lnd_global_add_table(i_queue_name: &str, i_table_name: &str) -> Rec {
    from_ret(&global_add_table_impl(i_queue_name, i_table_name))
}

#[pg_extern(sql = false)]
fn lnd_global_remove_table(i_queue_name: &str, i_table_name: &str) -> Rec {
    pinned(|caller| global_remove_table_impl(i_queue_name, i_table_name, caller))
}

fn global_remove_table_impl(i_queue_name: &str, i_table_name: &str, caller_path: &str) -> Rec {
    let fq = lg::make_fqname(i_table_name);
    if !node_is_root(i_queue_name) {
        local_remove_table_impl(i_queue_name, i_table_name, caller_path);
    }
    let del = write_rows(
        "delete from londiste.table_info where queue_name = $1 and table_name = $2 returning '1'::text",
        &[Some(i_queue_name), Some(&fq)],
    );
    if del.is_empty() {
        Rec::ret(400, format!("Table not found: {fq}"))
    } else {
        Rec::ret(200, format!("Table removed: {i_table_name}"))
    }
}

fn local_add_table_impl(
    queue: Option<&str>,
    table: Option<&str>,
    trg_args: Vec<String>,
    attrs: Option<String>,
    dest: Option<&str>,
) -> Ret {
    let fq = lg::make_fqname(table.unwrap_or_default());
    let dest_fq = match dest {
        Some(d) => lg::make_fqname(d),
        None => fq.clone(),
    };
    let desc = if dest_fq == fq {
        fq.clone()
    } else {
        format!("{fq}({dest_fq})")
    };
    let flags = lg::AddTableFlags::parse(&trg_args);
    let mut attrs = attrs;
    if flags.skip_truncate {
        attrs = Some(lg::attrs_with_skip_truncate(attrs.as_deref()));
    }
    if flags.merge_all && flags.no_merge {
        return ret(405, "Cannot use merge-all and no-merge together");
    }
    if !flags.virtual_table {
        let Some(oid) = find_rel_oid(&dest_fq, "r") else {
            return ret(404, format!("Table does not exist: {desc}"));
        };
        let has_pk = truth(&read_val(
            "select exists (select 1 from pg_catalog.pg_index where indrelid = $1::oid and indisprimary)::text",
            &[Some(&oid)],
        ));
        if !has_pk {
            // a sibling part queue may have dropped the key while copying
            let dropped = truth(&read_val(
                "select exists (select 1 from londiste.table_info where coalesce(dest_table, table_name) = $1 \
                   and queue_name is distinct from $2 and dropped_ddl is not null)::text",
                &[Some(&dest_fq), queue],
            ));
            if !dropped {
                return ret(400, format!("Primary key missing on table: {desc}"));
            }
        }
    }
    let Some(node) = node_info(queue) else {
        return ret(400, format!("No such set: {}", queue.unwrap_or_default()));
    };
    let queue = queue.unwrap_or_default();
    let node_type = node.node_type.clone().unwrap_or_default();
    let load = || {
        read_row(
            "select local::text, table_attrs from londiste.table_info where queue_name = $1 and table_name = $2",
            &[Some(queue), Some(&fq)],
        )
    };
    let row = match load() {
        Some(r) => r,
        None => {
            if node_type != "root" {
                return ret(404, format!("Table not available on queue: {desc}"));
            }
            let r = global_add_table_impl(queue, &fq);
            if r.0 != 200 {
                return r;
            }
            load().unwrap_or_else(|| raise(format!("lost table: {fq}")))
        }
    };
    if truth(&row[0]) {
        if row[1] != attrs {
            return ret(
                410,
                format!(
                    "Table {desc} already added, but with different args: {}",
                    row[1].clone().unwrap_or_default()
                ),
            );
        }
        return ret(200, format!("Table already added: {desc}"));
    }
    // a root owns the data, a merge leaf gets it through its combined branch, and
    // expect_sync means the table is known to be in sync already: no copy needed
    let in_sync = node_type == "root"
        || (node_type == "leaf" && node.combined_type.as_deref() == Some("branch"))
        || flags.expect_sync;
    let new_state: Option<&str> = if in_sync { Some("ok") } else { None };
    let dest_store = if dest_fq == fq {
        None
    } else {
        Some(dest_fq.as_str())
    };
    exec(
        "update londiste.table_info set local = true, merge_state = $3, \
                table_attrs = coalesce($4, table_attrs), dest_table = $5 \
          where queue_name = $1 and table_name = $2",
        &[
            Some(queue),
            Some(&fq),
            new_state,
            attrs.as_deref(),
            dest_store,
        ],
    );
    if node_type == "root" {
        root_notify_change_impl(Some(queue), Some("londiste.add-table"), Some(&fq));
    }
    if node_type == "leaf" && !flags.no_merge {
        let sibs = read_rows(
            "select t2.queue_name, t2.table_name, t2.local::text \
               from londiste.table_info t \
               join pgq_node.node_info n on n.queue_name = t.queue_name \
               join pgq_node.node_info n2 on n2.combined_queue is not distinct from n.combined_queue \
               join londiste.table_info t2 on t2.queue_name = n2.queue_name \
                and coalesce(t2.dest_table, t2.table_name) = coalesce(t.dest_table, t.table_name) \
              where t.queue_name = $1 and t.table_name = $2 and t2.queue_name <> $1",
            &[Some(queue), Some(&fq)],
        );
        for s in sibs {
            let not_ok = new_state != Some("ok");
            if truth(&s[2]) && not_ok {
                return ret(
                    405,
                    format!(
                        "Found local table {desc} in queue {}, use remove-table first to remove all previous table subscriptions",
                        s[0].clone().unwrap_or_default()
                    ),
                );
            }
            if !flags.merge_all && not_ok {
                return ret(
                    405,
                    format!("Found multiple sources for table {desc}, use merge-all or no-merge to continue"),
                );
            }
            exec(
                "update londiste.table_info set local = true, merge_state = $3, table_attrs = coalesce($4, table_attrs) \
                  where queue_name = $1 and table_name = $2",
                &[s[0].as_deref(), s[1].as_deref(), new_state, attrs.as_deref()],
            );
        }
        // the combined queue's node on this database needs the table too
        if let Some(cq) = node.combined_queue.as_deref() {
            let has = truth(&read_val(
                "select exists (select 1 from londiste.table_info where queue_name = $1 and table_name = $2 and local)::text",
                &[Some(cq), Some(&fq)],
            ));
            if !has {
                let r = local_add_table_impl(
                    Some(cq),
                    Some(&fq),
                    trg_args.clone(),
                    attrs.clone(),
                    Some(&dest_fq),
                );
                if r.0 >= 300 {
                    return r;
                }
            }
        }
    }
    let t = create_trigger_impl(queue, &fq, &trg_args, Some(&dest_fq), &node_type);
    if t.0 > 299 {
        return ret(
            t.0,
            format!(
                "Trigger creation failed for table {desc}: {}",
                t.1.unwrap_or_default()
            ),
        );
    }
    if t.0 == 201 {
        return ret(200, format!("Table added with no triggers: {desc}"));
    }
    ret(200, format!("Table added: {desc}"))
}

#[pg_extern(sql = false)]
fn lnd_local_add_table2(i_queue_name: &str, i_table_name: &str) -> Rec {
    from_ret(&local_add_table_impl(
        Some(i_queue_name),
        Some(i_table_name),
        vec![],
        None,
        None,
    ))
}

#[pg_extern(sql = false)]
fn lnd_local_add_table3(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_trg_args: Option<Vec<Option<String>>>,
) -> Rec {
    from_ret(&local_add_table_impl(
        i_queue_name,
        i_table_name,
        text_array(i_trg_args),
        None,
        None,
    ))
}

#[pg_extern(sql = false)]
fn lnd_local_add_table4(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_trg_args: Option<Vec<Option<String>>>,
    i_table_attrs: Option<&str>,
) -> Rec {
    from_ret(&local_add_table_impl(
        i_queue_name,
        i_table_name,
        text_array(i_trg_args),
        i_table_attrs.map(String::from),
        None,
    ))
}

#[pg_extern(sql = false)]
fn lnd_local_add_table5(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_trg_args: Option<Vec<Option<String>>>,
    i_table_attrs: Option<&str>,
    i_dest_table: Option<&str>,
) -> Rec {
    from_ret(&local_add_table_impl(
        i_queue_name,
        i_table_name,
        text_array(i_trg_args),
        i_table_attrs.map(String::from),
        i_dest_table,
    ))
}

/// Drop every pgq capture trigger of `queue` from the table registered as `table`.
fn drop_table_triggers_impl(queue: &str, table: &str) {
    let fq = lg::make_fqname(table);
    let Some(dest) = read_val(
        "select coalesce(dest_table, table_name) from londiste.table_info where queue_name = $1 and table_name = $2",
        &[Some(queue), Some(&fq)],
    ) else {
        return;
    };
    let Some(oid) = find_rel_oid(&dest, "r") else {
        return;
    };
    let trigs = read_rows(
        "select t.tgname::text, encode(t.tgargs, 'hex') from pg_catalog.pg_trigger t \
           join pg_catalog.pg_proc p on p.oid = t.tgfoid \
           join pg_catalog.pg_namespace n on n.oid = p.pronamespace \
          where t.tgrelid = $1::oid and not t.tgisinternal and n.nspname = 'pgq' \
            and p.proname in ('sqltriga', 'logutriga', 'jsontriga')",
        &[Some(&oid)],
    );
    for t in trigs {
        let args = lg::decode_tgargs(&lg::hex_decode(t[1].as_deref().unwrap_or("")));
        if args.first().map(String::as_str) == Some(queue) {
            let name = t[0].clone().unwrap_or_default();
            exec(
                &format!("drop trigger {} on {}", quote_ident(&name), quote_fq(&dest)),
                &[],
            );
        }
    }
}

#[pg_extern(sql = false)]
fn lnd_drop_table_triggers(i_queue_name: &str, i_table_name: &str) {
    drop_table_triggers_impl(i_queue_name, i_table_name)
}

#[pg_trigger(sql = false)]
fn lnd_table_info_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    let old = trigger.old();
    if let Some(old) = &old {
        let qn: Option<String> = old.get_by_name("queue_name").unwrap_or(None);
        let tn: Option<String> = old.get_by_name("table_name").unwrap_or(None);
        if let (Some(qn), Some(tn)) = (qn, tn) {
            drop_table_triggers_impl(&qn, &tn);
        }
    }
    Ok(old)
}

fn create_trigger_impl(
    queue: &str,
    table: &str,
    trg_args: &[String],
    dest: Option<&str>,
    node_type: &str,
) -> Ret {
    let dest_name = dest.unwrap_or(table);
    let req = lg::TriggerRequest::parse(trg_args, table, dest_name);
    if req.no_triggers {
        return ret(201, "Trigger not created");
    }
    let mut deny = false;
    if node_type == "leaf" {
        let have = truth(&read_val(
            "select exists (select 1 from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace \
              where n.nspname = 'pgq' and p.proname in ('sqltriga', 'logutriga'))::text",
            &[],
        ));
        if !have {
            return ret(201, "Trigger not created");
        }
        deny = true;
    }
    let Some(dest) = dest else {
        crate::errors::raise_code(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "query string argument of EXECUTE is null",
        )
    };
    let Some(oid) = find_rel_oid(dest, "r") else {
        crate::errors::raise_code(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation \"{}\" does not exist", quote_fq(dest)),
        )
    };
    let qdest = quote_fq(dest);
    let names = lg::queue_trigger_names(queue);
    let base = names.main;
    let skip_name = names.skip;
    // other SKIP triggers on the table (ours of this queue are replaced below)
    let skips = read_rows(
        "select tgname::text from pg_catalog.pg_trigger \
          where tgrelid = $1::oid and not tgisinternal and tgname not in ($2, $3) \
            and position('\\x00534b495000'::bytea in '\\x00'::bytea || tgargs) > 0",
        &[Some(&oid), Some(&base), Some(&skip_name)],
    );
    let mut args: Vec<String> = vec![queue.to_string()];
    args.extend(req.args.iter().cloned());
    if deny {
        args.push("deny".into());
    }
    let mut name = base.clone();
    match lg::skip_plan(req.before, req.skip, skips.len() as i64) {
        lg::SkipPlan::Fail(code, note) => return ret(code, note),
        lg::SkipPlan::Normal => {}
        lg::SkipPlan::OwnSkip => {
            name = skip_name.clone();
            args.push("SKIP".into());
        }
        lg::SkipPlan::RenameOther => {
            let other = skips[0][0].clone().unwrap_or_default();
            if !other.starts_with("zzz_") {
                exec(
                    &format!(
                        "alter trigger {} on {} rename to {}",
                        quote_ident(&other),
                        qdest,
                        quote_ident(&lg::fit_ident(&format!("zzz_{other}")))
                    ),
                    &[],
                );
            }
        }
    }
    let func = req.func.sql_name();
    // the other spelling of our own trigger goes away
    for n in [&base, &skip_name] {
        let exists = truth(&read_val(
            "select exists (select 1 from pg_catalog.pg_trigger where tgrelid = $1::oid and tgname = $2)::text",
            &[Some(&oid), Some(n)],
        ));
        if *n != name && exists {
            exec(
                &format!("drop trigger {} on {}", quote_ident(n), qdest),
                &[],
            );
        }
    }
    let existing = read_row(
        "select encode(t.tgargs, 'hex'), t.tgtype::text, t.tgfoid::regproc::text from pg_catalog.pg_trigger t \
          where t.tgrelid = $1::oid and t.tgname = $2",
        &[Some(&oid), Some(&name)],
    );
    let want_type = req.tgtype().to_string();
    let mut create = true;
    if let Some(e) = existing {
        let same = lg::hex_decode(e[0].as_deref().unwrap_or("")) == lg::encode_tgargs(&args)
            && e[1].as_deref() == Some(want_type.as_str())
            && e[2].as_deref() == Some(func);
        if same {
            create = false;
        } else {
            exec(
                &format!("drop trigger {} on {}", quote_ident(&name), qdest),
                &[],
            );
        }
    }
    if create {
        let arglist: Vec<String> = args.iter().map(|a| quote_literal(a)).collect();
        exec(
            &format!(
                "create trigger {} {} {} on {} for each row execute procedure {}({})",
                quote_ident(&name),
                if req.before { "before" } else { "after" },
                req.events_sql(),
                qdest,
                func,
                arglist.join(", ")
            ),
            &[],
        );
    }
    let trunc = names.truncate;
    let has_trunc = truth(&read_val(
        "select exists (select 1 from pg_catalog.pg_trigger where tgrelid = $1::oid and tgname = $2)::text",
        &[Some(&oid), Some(&trunc)],
    ));
    if !has_trunc {
        let mut targs = vec![quote_literal(queue)];
        if deny {
            targs.push(quote_literal("deny"));
        }
        exec(
            &format!(
                "create trigger {} after truncate on {} for each statement execute procedure pgq.sqltriga({})",
                quote_ident(&trunc),
                qdest,
                targs.join(", ")
            ),
            &[],
        );
    }
    ret(200, "OK")
}

#[pg_extern(sql = false)]
fn lnd_create_trigger(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_trg_args: Option<Vec<Option<String>>>,
    i_dest_table: Option<&str>,
    i_node_type: Option<&str>,
) -> Rec {
    let r = create_trigger_impl(
        i_queue_name.unwrap_or_default(),
        i_table_name.unwrap_or_default(),
        &text_array(i_trg_args),
        i_dest_table,
        i_node_type.unwrap_or_default(),
    );
    from_ret(&r).col(None::<String>)
}

/// `caller_path`: the search_path the caller's stored `dropped_ddl` runs with.
fn local_remove_table_impl(queue: &str, table: &str, caller_path: &str) -> Ret {
    let fq = lg::make_fqname(table);
    let Some(row) = read_row(
        "select local::text, dropped_ddl, coalesce(dest_table, table_name) from londiste.table_info \
          where queue_name = $1 and table_name = $2",
        &[Some(queue), Some(&fq)],
    ) else {
        return ret(400, format!("Table not found: {fq}"));
    };
    let root = node_is_root(queue);
    if truth(&row[0]) {
        drop_table_triggers_impl(queue, &fq);
        let dest = row[2].clone().unwrap_or_default();
        if let Some(ddl) = row[1].as_deref() {
            exec(&format!("truncate only {}", quote_fq(&dest)), &[]);
            // the stored DDL is the caller's (the londiste CLI's): it runs as written,
            // with the caller's search_path, as in the original
            crate::db::with_search_path(caller_path, || exec(ddl, &[]));
        }
        exec(
            "update londiste.table_info set local = false, custom_snapshot = null, table_attrs = null, \
                    dropped_ddl = null, merge_state = null, dest_table = null \
              where queue_name = $1 and table_name = $2",
            &[Some(queue), Some(&fq)],
        );
        // serial sequences of the table stop being replicated too
        if let Some(oid) = find_rel_oid(&dest, "r") {
            let seqs = read_rows(
                "select s from (select pg_catalog.pg_get_serial_sequence($2, a.attname) as s \
                                  from pg_catalog.pg_attribute a \
                                  join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum \
                                 where a.attrelid = $1::oid and a.attnum > 0 and not a.attisdropped \
                                   and a.atttypid in ('int4'::regtype, 'int8'::regtype)) x \
                  where s is not null order by 1",
                &[Some(&oid), Some(&quote_fq(&dest))],
            );
            for s in seqs.into_iter().filter_map(|r| r[0].clone()) {
                local_remove_seq_impl(queue, &s);
            }
        }
    } else if !root {
        return ret(400, format!("Table not registered locally: {fq}"));
    }
    if root {
        exec(
            "delete from londiste.table_info where queue_name = $1 and table_name = $2",
            &[Some(queue), Some(&fq)],
        );
        root_notify_change_impl(Some(queue), Some("londiste.remove-table"), Some(&fq));
    }
    ret(200, format!("Table removed: {fq}"))
}

#[pg_extern(sql = false)]
fn lnd_local_remove_table(i_queue_name: &str, i_table_name: &str) -> Rec {
    pinned(|caller| from_ret(&local_remove_table_impl(i_queue_name, i_table_name, caller)))
}

#[pg_extern(sql = false)]
fn lnd_local_set_table_state(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_snapshot: Option<&str>,
    i_merge_state: Option<&str>,
) -> Rec {
    let fq = lg::make_fqname(i_table_name.unwrap_or_default());
    let upd = write_rows(
        "update londiste.table_info set custom_snapshot = $3, merge_state = $4 \
          where queue_name = $1 and table_name = $2 and local returning '1'::text",
        &[i_queue_name, Some(&fq), i_snapshot, i_merge_state],
    );
    if upd.is_empty() {
        return Rec::ret(404, format!("No such table: {fq}"));
    }
    Rec::ret(200, lg::state_note(&fq, i_merge_state))
}

fn set_table_attrs_impl(queue: Option<&str>, table: Option<&str>, attrs: Option<&str>) -> Ret {
    let upd = write_rows(
        "update londiste.table_info set table_attrs = $3 \
          where queue_name = $1 and table_name = $2 and local returning '1'::text",
        &[queue, table, attrs],
    );
    let t = table.unwrap_or_default();
    if upd.is_empty() {
        ret(404, format!("no such local table: {t}"))
    } else {
        ret(200, format!("{t}: Table attributes stored"))
    }
}

#[pg_extern(sql = false)]
fn lnd_local_set_table_attrs(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_table_attrs: Option<&str>,
) -> Rec {
    from_ret(&set_table_attrs_impl(
        i_queue_name,
        i_table_name,
        i_table_attrs,
    ))
}

#[pg_extern(sql = false)]
fn lnd_local_set_table_struct(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_dropped_ddl: Option<&str>,
) -> Rec {
    let upd = write_rows(
        "update londiste.table_info set dropped_ddl = $3 \
          where queue_name = $1 and table_name = $2 and local returning '1'::text",
        &[i_queue_name, i_table_name, i_dropped_ddl],
    );
    if upd.is_empty() {
        Rec::ret(
            404,
            format!("no such local table: {}", i_table_name.unwrap_or_default()),
        )
    } else {
        Rec::ret(200, "Table struct stored")
    }
}

#[pg_extern(sql = false)]
fn lnd_local_change_handler(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_trg_args: Option<Vec<Option<String>>>,
    i_table_attrs: Option<&str>,
) -> Rec {
    let fq = lg::make_fqname(i_table_name.unwrap_or_default());
    let Some(node) = node_info(i_queue_name) else {
        return Rec::ret(
            400,
            format!("No such set: {}", i_queue_name.unwrap_or_default()),
        );
    };
    let queue = i_queue_name.unwrap_or_default();
    let r = set_table_attrs_impl(Some(queue), Some(&fq), i_table_attrs);
    if r.0 != 200 {
        return from_ret(&r);
    }
    let dest = read_val(
        "select coalesce(dest_table, table_name) from londiste.table_info where queue_name = $1 and table_name = $2",
        &[Some(queue), Some(&fq)],
    );
    drop_table_triggers_impl(queue, &fq);
    let t = create_trigger_impl(
        queue,
        &fq,
        &text_array(i_trg_args),
        dest.as_deref(),
        node.node_type.as_deref().unwrap_or_default(),
    );
    if t.0 > 299 {
        return Rec::ret(
            t.0,
            format!(
                "Trigger creation failed for table {fq}: {}",
                t.1.unwrap_or_default()
            ),
        );
    }
    if t.0 == 201 {
        return Rec::ret(200, format!("Table handler updated with no triggers: {fq}"));
    }
    Rec::ret(200, format!("Handler changed for table: {fq}"))
}

#[pg_extern(sql = false)]
fn lnd_root_notify_change(
    i_queue_name: Option<&str>,
    i_ev_type: Option<&str>,
    i_ev_data: Option<&str>,
) -> i32 {
    root_notify_change_impl(i_queue_name, i_ev_type, i_ev_data)
}

// ---------------------------------------------------------------------------
// sequences
// ---------------------------------------------------------------------------

fn root_check_seqs_impl(queue: Option<&str>, buffer: Option<i64>) -> Ret {
    let buffer = lg::seq_buffer(buffer);
    let Some(node) = write_row(
        "select node_type from pgq_node.node_info where queue_name operator(pg_catalog.=) $1 for update",
        &[queue],
    ) else {
        return Ret(404, queue.map(|q| format!("Queue not found: {q}")));
    };
    if node[0].as_deref() != Some("root") {
        return ret(402, "Not a root node");
    }
    let queue = queue.unwrap_or_default();
    let seqs = read_rows(
        "select seq_name, last_value::pg_catalog.text from londiste.seq_info \
          where queue_name operator(pg_catalog.=) $1 and local order by nr",
        &[Some(queue)],
    );
    for s in seqs {
        let name = s[0].clone().unwrap_or_default();
        let published: i64 = s[1].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        let real: i64 = write_val("select pgq.seq_getval($1)::pg_catalog.text", &[Some(&name)])
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if let Some(new) = lg::seq_publish(real, published, buffer) {
            let nv = new.to_string();
            insert_event(queue, "londiste.update-seq", Some(&nv), Some(&name), None);
            exec(
                "update londiste.seq_info set last_value = $3::pg_catalog.int8 \
                  where queue_name operator(pg_catalog.=) $1 and seq_name operator(pg_catalog.=) $2",
                &[Some(queue), Some(&name), Some(&nv)],
            );
        }
    }
    ret(100, "Sequences updated")
}

#[pg_extern(sql = false)]
fn lnd_root_check_seqs1(i_queue_name: Option<&str>) -> Rec {
    from_ret(&root_check_seqs_impl(i_queue_name, None))
}

#[pg_extern(sql = false)]
fn lnd_root_check_seqs2(i_queue_name: Option<&str>, i_buffer: Option<i64>) -> Rec {
    from_ret(&root_check_seqs_impl(i_queue_name, i_buffer))
}

#[pg_extern(sql = false)]
fn lnd_local_add_seq(i_queue_name: Option<&str>, i_seq_name: Option<&str>) -> Rec {
    let fq = lg::make_fqname(i_seq_name.unwrap_or_default());
    if find_rel_oid(&fq, "S").is_none() {
        return Rec::ret(400, format!("Sequence not found: {fq}"));
    }
    let root = is_root_node(i_queue_name);
    let queue = i_queue_name.unwrap_or_default();
    let row = read_row(
        "select local::text, last_value::text from londiste.seq_info where queue_name = $1 and seq_name = $2",
        &[Some(queue), Some(&fq)],
    );
    if root {
        match row {
            Some(r) if truth(&r[0]) => return Rec::ret(201, format!("Sequence already added: {fq}")),
            Some(_) => exec(
                "update londiste.seq_info set local = true where queue_name = $1 and seq_name = $2",
                &[Some(queue), Some(&fq)],
            ),
            None => exec(
                "insert into londiste.seq_info (queue_name, seq_name, local, last_value) values ($1, $2, true, 0)",
                &[Some(queue), Some(&fq)],
            ),
        }
        root_check_seqs_impl(Some(queue), None);
    } else {
        let Some(r) = row else {
            return Rec::ret(404, format!("Unknown sequence: {fq}"));
        };
        if truth(&r[0]) {
            return Rec::ret(201, format!("Sequence already added: {fq}"));
        }
        exec(
            "update londiste.seq_info set local = true where queue_name = $1 and seq_name = $2",
            &[Some(queue), Some(&fq)],
        );
        exec(
            "select pgq.seq_setval($1, $2::int8)",
            &[Some(&fq), r[1].as_deref()],
        );
    }
    Rec::ret(200, format!("Sequence added: {fq}"))
}

fn global_remove_seq_impl(queue: &str, seq: &str) -> Ret {
    let fq = lg::make_fqname(seq);
    let del = write_rows(
        "delete from londiste.seq_info where queue_name = $1 and seq_name = $2 returning '1'::text",
        &[Some(queue), Some(&fq)],
    );
    if del.is_empty() {
        return ret(400, format!("Sequence not found: {fq}"));
    }
    if node_is_root(queue) {
        root_notify_change_impl(Some(queue), Some("londiste.remove-seq"), Some(&fq));
    }
    ret(200, format!("Sequence removed: {fq}"))
}

fn local_remove_seq_impl(queue: &str, seq: &str) -> Ret {
    let fq = lg::make_fqname(seq);
    if is_root_node(Some(queue)) {
        return global_remove_seq_impl(queue, &fq);
    }
    let upd = write_rows(
        "update londiste.seq_info set local = false where queue_name = $1 and seq_name = $2 and local returning '1'::text",
        &[Some(queue), Some(&fq)],
    );
    if upd.is_empty() {
        return ret(404, format!("Sequence not found: {fq}"));
    }
    ret(200, format!("Sequence removed: {fq}"))
}

#[pg_extern(sql = false)]
fn lnd_local_remove_seq(i_queue_name: &str, i_seq_name: &str) -> Rec {
    from_ret(&local_remove_seq_impl(i_queue_name, i_seq_name))
}

#[pg_extern(sql = false)]
fn lnd_global_remove_seq(i_queue_name: &str, i_seq_name: &str) -> Rec {
    from_ret(&global_remove_seq_impl(i_queue_name, i_seq_name))
}

#[pg_extern(sql = false)]
fn lnd_global_update_seq(
    i_queue_name: Option<&str>,
    i_seq_name: Option<&str>,
    i_value: Option<i64>,
) -> Rec {
    let Some(node) = read_row(
        "select node_type from pgq_node.node_info where queue_name = $1",
        &[i_queue_name],
    ) else {
        return Rec::ret(
            404,
            format!("Set not found: {}", i_queue_name.unwrap_or_default()),
        );
    };
    if node[0].as_deref() == Some("root") {
        return Rec::ret(402, "Must not run on root node");
    }
    let fq = lg::make_fqname(i_seq_name.unwrap_or_default());
    let v = i_value.map(|v| v.to_string());
    let row = write_row(
        "update londiste.seq_info set last_value = $3::int8 where queue_name = $1 and seq_name = $2 \
         returning local::text",
        &[i_queue_name, Some(&fq), v.as_deref()],
    );
    match row {
        None => exec(
            "insert into londiste.seq_info (queue_name, seq_name, last_value) values ($1, $2, $3::int8)",
            &[i_queue_name, Some(&fq), v.as_deref()],
        ),
        Some(r) if truth(&r[0]) => exec("select pgq.seq_setval($1, $2::int8)", &[Some(&fq), v.as_deref()]),
        Some(_) => {}
    }
    Rec::ret(200, "Sequence updated")
}

// ---------------------------------------------------------------------------
// EXECUTE
// ---------------------------------------------------------------------------

fn execute_start_impl(
    queue: Option<&str>,
    file: Option<&str>,
    sql: Option<&str>,
    expect_root: Option<bool>,
    attrs: Option<&str>,
) -> Rec {
    let root = is_root_node(queue);
    if expect_root == Some(true) && !root {
        return Rec::ret(
            401,
            format!("Node is not root node: {}", queue.unwrap_or_default()),
        );
    }
    let ins = write_rows(
        "insert into londiste.applied_execute (queue_name, execute_file, execute_sql, execute_attrs) \
         values ($1, $2, $3, $4) on conflict do nothing returning '1'::text",
        &[queue, file, sql, attrs],
    );
    let f = file.unwrap_or_default();
    if ins.is_empty() {
        return Rec::ret(201, format!("EXECUTE: \"{f}\" already applied, skipping"));
    }
    Rec::ret(200, format!("Executing: {f}"))
}

#[pg_extern(sql = false)]
fn lnd_execute_start4(
    i_queue_name: Option<&str>,
    i_file_name: Option<&str>,
    i_sql: Option<&str>,
    i_expect_root: Option<bool>,
) -> Rec {
    execute_start_impl(i_queue_name, i_file_name, i_sql, i_expect_root, None)
}

#[pg_extern(sql = false)]
fn lnd_execute_start5(
    i_queue_name: Option<&str>,
    i_file_name: Option<&str>,
    i_sql: Option<&str>,
    i_expect_root: Option<bool>,
    i_attrs: Option<&str>,
) -> Rec {
    execute_start_impl(i_queue_name, i_file_name, i_sql, i_expect_root, i_attrs)
}

#[pg_extern(sql = false)]
fn lnd_execute_finish(i_queue_name: &str, i_file_name: &str) -> Rec {
    let Some(r) = read_row(
        "select execute_sql, execute_attrs from londiste.applied_execute where execute_file = $1",
        &[Some(i_file_name)],
    ) else {
        return Rec::ret(404, "execute_file called without execute_start");
    };
    if is_root_node(Some(i_queue_name)) {
        insert_event(
            i_queue_name,
            "EXECUTE",
            r[0].as_deref(),
            Some(i_file_name),
            r[1].as_deref(),
        );
    }
    Rec::ret(200, format!("Execute finished: {i_file_name}"))
}

// ---------------------------------------------------------------------------
// foreign keys
// ---------------------------------------------------------------------------

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
    exec(
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
        crate::db::with_search_path(caller_path, || exec(&def, &[]));
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

// ---------------------------------------------------------------------------
// partition helpers
// ---------------------------------------------------------------------------

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
    exec(
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
        exec(
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
        exec(
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
        exec(
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
        exec(&sql, &[]);
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
            exec(&format!("alter table {qpart} {x} {qname}"), &[]);
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
        exec(&sql, &[]);
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
            exec(&format!("alter table {qpart} {x} {qname}"), &[]);
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
        exec(&format!("drop table {t}"), &[]);
    }
    SetOfIterator::new(v)
}
