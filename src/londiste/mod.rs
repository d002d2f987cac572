//! The `londiste` schema: table and sequence registry, trigger installation, EXECUTE
//! bookkeeping, pending foreign keys, partition helpers; one submodule per job:
//!
//! * `names`: fqname helpers and catalog lookups (find_*_oid, find_column_types,
//!   is_replica_func);
//! * `tables`: the table registry and copy coordination (table_info, get_table_list,
//!   coordinate_copy, local/global add and remove, table state and attributes);
//! * `triggers`: capture trigger DDL (create_trigger, drop_table_triggers and the
//!   table_info trigger);
//! * `seqs`: the sequence registry and publishing (root_check_seqs, ...);
//! * `execute`: EXECUTE bookkeeping (applied_execute);
//! * `fkeys`: dropped and pending foreign keys;
//! * `partitions`: partition creation and retention.
//!
//! This file holds what they share: the pinned search_path, the return records, the
//! text-in/text-out SPI helpers, node lookups and event insertion, and the few
//! schema-level functions (version, upgrade_schema, set_session_replication_role,
//! periodic_maintenance, root_notify_change).
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
use crate::logic::londiste::{self as lg, TableState};
use crate::logic::node::NodeType;
use crate::logic::quote::literal as quote_literal;
use crate::names::{quote_fqname as quote_fq, quote_ident};
use crate::outrec::OutRec as Rec;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

mod execute;
mod fkeys;
mod names;
mod partitions;
mod seqs;
mod tables;
mod triggers;

use names::find_rel_oid;
use seqs::local_remove_seq_impl;
use triggers::{create_trigger_impl, drop_table_triggers_impl};

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

fn read_rows(sql: &'static str, args: &[Option<&str>]) -> Vec<Row> {
    crate::db::read("londiste", |c| {
        text_rows(c.read("query", sql, &text_args(args))?)
    })
    .or_report()
}

fn write_rows(sql: &'static str, args: &[Option<&str>]) -> Vec<Row> {
    crate::db::write("londiste", |c| {
        text_rows(c.write("statement", sql, &text_args(args))?)
    })
    .or_report()
}

fn read_row(sql: &'static str, args: &[Option<&str>]) -> Option<Row> {
    read_rows(sql, args).into_iter().next()
}

fn write_row(sql: &'static str, args: &[Option<&str>]) -> Option<Row> {
    write_rows(sql, args).into_iter().next()
}

fn read_val(sql: &'static str, args: &[Option<&str>]) -> Option<String> {
    read_row(sql, args).and_then(|r| r.into_iter().next().flatten())
}

fn write_val(sql: &'static str, args: &[Option<&str>]) -> Option<String> {
    write_row(sql, args).and_then(|r| r.into_iter().next().flatten())
}

fn exec(sql: &'static str, args: &[Option<&str>]) {
    crate::db::write("londiste", |c| {
        c.execute("statement", sql, &text_args(args))
    })
    .or_report();
}

/// [`exec`] of a statement built at run time (DDL on named objects).
fn exec_dyn(sql: &str, args: &[Option<&str>]) {
    crate::db::write("londiste", |c| {
        c.execute_dyn("statement", sql, &text_args(args))
    })
    .or_report();
}

fn truth(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("t") | Some("true"))
}

/// What londiste needs of a queue's node (pgq_node::get_node_info).
struct NodeInfo {
    node_type: Option<NodeType>,
    combined_queue: Option<String>,
    combined_type: Option<NodeType>,
}

/// pgq_node.get_node_info() through the Rust API; None when it reports an error (>= 400).
fn node_info(queue: Option<&str>) -> Option<NodeInfo> {
    let ni = crate::db::read("londiste", |c| crate::pgq_node::get_node_info(c, queue)).or_report();
    if ni.ret_code >= 400 {
        return None;
    }
    Some(NodeInfo {
        node_type: ni.kind(),
        combined_type: ni.combined_type.as_deref().and_then(NodeType::parse),
        combined_queue: ni.combined_queue,
    })
}

/// The local node row of a queue (pgq_node::load_node); `lock`: FOR UPDATE.
fn load_node(queue: Option<&str>, lock: bool) -> Option<crate::pgq_node::Node> {
    if lock {
        crate::db::write("londiste", |c| crate::pgq_node::load_node(c, true, queue))
    } else {
        crate::db::read("londiste", |c| crate::pgq_node::load_node(c, false, queue))
    }
    .or_report()
}

/// pgq_node.is_root_node(): raises for an unknown queue, as the original.
fn is_root_node(queue: Option<&str>) -> bool {
    crate::db::read("londiste", |c| crate::pgq_node::node_type(c, queue)).or_report()
        == Some(NodeType::Root)
}

/// Root check that does not raise: node_info row of type root.
fn node_is_root(queue: &str) -> bool {
    load_node(Some(queue), false).and_then(|n| n.kind()) == Some(NodeType::Root)
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
// schema-level functions
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

#[pg_extern(sql = false)]
fn lnd_root_notify_change(
    i_queue_name: Option<&str>,
    i_ev_type: Option<&str>,
    i_ev_data: Option<&str>,
) -> i32 {
    root_notify_change_impl(i_queue_name, i_ev_type, i_ev_data)
}
