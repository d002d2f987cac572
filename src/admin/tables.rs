//! Tables and sequences of a replicated queue (docs/admin.md "Tables and sequences"):
//! the steps of the CLI's add-table, remove-table, add-seq, remove-seq and resync.

use super::{arg, col, col_bool, local_node, ret_of, NodeView, Peer};
use crate::errors::{PgqError, PgqResult, SqlState};
use crate::logic::admin::{add_table_args, array_literal, fq, AddTable};
use crate::logic::quote;
use crate::outrec::OutRec;
use pgrx::prelude::*;

fn provider(queue: &str, view: &NodeView) -> PgqResult<Peer> {
    let loc = view.provider_location.as_deref().ok_or_else(|| {
        PgqError::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "node \"{}\" of queue \"{queue}\" has no provider",
                view.node_name
            ),
        )
    })?;
    Peer::connect(view.provider_node.as_deref().unwrap_or("provider"), loc)
}

fn provider_has_table(p: &mut Peer, queue: &str, table: &str, local: bool) -> PgqResult<bool> {
    Ok(!p
        .query(
            "reading the provider's table list",
            "select 1::text from londiste.get_table_list($1) where table_name = $2 \
             and (local or not $3::bool)",
            &[
                Some(queue),
                Some(table),
                Some(if local { "true" } else { "false" }),
            ],
        )?
        .is_empty())
}

#[pg_extern(sql = false)]
#[allow(clippy::too_many_arguments)]
fn pgq_cascade_add_table(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_create: Option<bool>,
    i_skip_truncate: Option<bool>,
    i_expect_sync: Option<bool>,
    i_copy_node: Option<&str>,
    i_when: Option<&str>,
    i_trigger_args: Option<Vec<Option<String>>>,
    i_dest_table: Option<&str>,
) -> OutRec {
    let o = AddTable {
        create: i_create.unwrap_or(false),
        skip_truncate: i_skip_truncate.unwrap_or(false),
        expect_sync: i_expect_sync.unwrap_or(false),
        copy_node: i_copy_node.filter(|s| !s.is_empty()),
        when: i_when.filter(|s| !s.is_empty()),
        trigger_args: i_trigger_args
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect(),
        dest_table: i_dest_table.filter(|s| !s.is_empty()),
    };
    add_table(i_queue_name, i_table_name, &o).unwrap_or_else(|e| e.report())
}

pub fn add_table(queue: Option<&str>, table: Option<&str>, o: &AddTable<'_>) -> PgqResult<OutRec> {
    let queue = arg(queue, "queue name")?;
    let table = fq(arg(table, "table name")?);
    let (mut me, view) = local_node(queue)?;
    let dest = o.dest_table.map(fq).unwrap_or_else(|| table.clone());
    // the copy source: `?` (the nearest node up that has the table, found by the copy
    // worker) or a live member of the cascade
    if let Some(n) = o
        .copy_node
        .filter(|n| *n != "?" && view.node_type != "root")
    {
        let known = col_bool(
            &me.row(
                "looking up the copy node",
                "select exists (select 1 from pgq_node.node_location \
                  where queue_name = $1 and node_name = $2 and not dead)::text",
                &[Some(queue), Some(n)],
            )?,
            0,
        );
        if !known {
            return Err(PgqError::new(
                SqlState::UNDEFINED_OBJECT,
                format!("copy_node \"{n}\" is not a live member of queue \"{queue}\""),
            ));
        }
    }
    let mut defn = None;
    if view.node_type != "root" {
        let mut p = provider(queue, &view)?;
        if !provider_has_table(&mut p, queue, &table, false)? {
            return Err(PgqError::new(
                SqlState::UNDEFINED_TABLE,
                format!("table \"{table}\" is not replicated by queue \"{queue}\" on the provider \"{}\"", p.name),
            )
            .hint("Add it on the root first."));
        }
        if o.create && !exists(&mut me, &dest, "r")? {
            defn = Some(table_definition(&mut p, &table)?);
        }
        // the provider's list first (the londiste.add-table event may not have been
        // replayed here yet), as the CLI syncs it
        me.call(
            "registering the provider's table",
            "select ret_code::text, ret_note::text from londiste.global_add_table($1, $2)",
            &[Some(queue), Some(&table)],
        )?;
    }
    if !exists(&mut me, &dest, "r")? {
        match defn {
            Some(cols) => create_table(&mut me, &dest, &cols)?,
            None => return Err(PgqError::new(
                SqlState::UNDEFINED_TABLE,
                format!("table \"{dest}\" does not exist on this node"),
            )
            .hint(if view.node_type == "root" {
                "Create it first."
            } else {
                "Create it, or pass i_create => true to create it from the provider's definition."
            })),
        }
    }
    let has_pk = col_bool(
        &me.row(
            "looking for the primary key",
            "select exists (select 1 from pg_catalog.pg_index i \
              where i.indrelid = pg_catalog.to_regclass($1) and i.indisprimary)::text",
            &[Some(&quote::fqname(&dest, false))],
        )?,
        0,
    );
    if !has_pk {
        return Err(PgqError::new(
            SqlState::INVALID_TABLE_DEFINITION,
            format!(
                "table \"{dest}\" has no primary key: londiste replicates tables by primary key"
            ),
        ));
    }
    let (tgargs, attrs) = add_table_args(o);
    let tg = array_literal(&tgargs);
    let dest_arg = o.dest_table.map(|_| dest.as_str());
    let r = me.call(
        "adding the table",
        "select ret_code::text, ret_note::text from \
         londiste.local_add_table($1, $2, $3::text[], $4, $5)",
        &[
            Some(queue),
            Some(&table),
            Some(&tg),
            attrs.as_deref(),
            dest_arg,
        ],
    )?;
    Ok(ret_of(&r))
}

fn exists(me: &mut Peer, name: &str, kind: &str) -> PgqResult<bool> {
    let (schema, rel) = name.split_once('.').unwrap_or(("public", name));
    Ok(!me
        .query(
            "looking for the relation",
            "select 1::text from pg_catalog.pg_class c join pg_catalog.pg_namespace n \
             on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2 \
             and c.relkind::text = any (string_to_array($3, ','))",
            &[
                Some(schema),
                Some(rel),
                Some(if kind == "r" { "r,p" } else { kind }),
            ],
        )?
        .is_empty())
}

/// The provider's column list and primary key of `table`, as SQL text.
fn table_definition(p: &mut Peer, table: &str) -> PgqResult<String> {
    let r = p.row(
        "reading the table's definition on the provider",
        "select (select pg_catalog.string_agg(pg_catalog.quote_ident(a.attname) || ' ' \
                  || pg_catalog.format_type(a.atttypid, a.atttypmod) \
                  || case when a.attnotnull then ' not null' else '' end, ', ' order by a.attnum) \
                 from pg_catalog.pg_attribute a \
                 where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), \
                (select pg_catalog.pg_get_constraintdef(k.oid) from pg_catalog.pg_constraint k \
                 where k.conrelid = c.oid and k.contype = 'p') \
         from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = split_part($1, '.', 1) and c.relname = substr($1, strpos($1, '.') + 1)",
        &[Some(table)],
    );
    let r = match r {
        Ok(r) => r,
        Err(_) => {
            return Err(PgqError::new(
                SqlState::UNDEFINED_TABLE,
                format!(
                    "table \"{table}\" does not exist on the provider \"{}\"",
                    p.name
                ),
            ))
        }
    };
    let cols = col(&r, 0).ok_or_else(|| {
        PgqError::new(
            SqlState::UNDEFINED_TABLE,
            format!("table \"{table}\" has no columns on the provider"),
        )
    })?;
    let pk = col(&r, 1).ok_or_else(|| {
        PgqError::new(
            SqlState::INVALID_TABLE_DEFINITION,
            format!(
                "table \"{table}\" has no primary key on the provider \"{}\"",
                p.name
            ),
        )
    })?;
    Ok(format!("{cols}, {pk}"))
}

fn create_table(me: &mut Peer, dest: &str, body: &str) -> PgqResult<()> {
    let (schema, _) = dest.split_once('.').unwrap_or(("public", dest));
    me.query_dyn(
        "creating the schema",
        &format!(
            "create schema if not exists {}",
            quote::ident(schema, false)
        ),
        &[],
    )?;
    me.query_dyn(
        "creating the table from the provider's definition",
        &format!("create table {} ({body})", quote::fqname(dest, false)),
        &[],
    )?;
    Ok(())
}

#[pg_extern(sql = false)]
fn pgq_cascade_remove_table(i_queue_name: Option<&str>, i_table_name: Option<&str>) -> OutRec {
    simple(i_queue_name, i_table_name, "table name", |me, q, t| {
        me.call(
            "removing the table",
            "select ret_code::text, ret_note::text from londiste.local_remove_table($1, $2)",
            &[Some(q), Some(t)],
        )
    })
}

#[pg_extern(sql = false)]
fn pgq_cascade_add_seq(i_queue_name: Option<&str>, i_seq_name: Option<&str>) -> OutRec {
    add_seq(i_queue_name, i_seq_name).unwrap_or_else(|e| e.report())
}

pub fn add_seq(queue: Option<&str>, seq: Option<&str>) -> PgqResult<OutRec> {
    let queue = arg(queue, "queue name")?;
    let seq = fq(arg(seq, "sequence name")?);
    let (mut me, view) = local_node(queue)?;
    if !exists(&mut me, &seq, "S")? {
        return Err(PgqError::new(
            SqlState::UNDEFINED_OBJECT,
            format!("sequence \"{seq}\" does not exist on this node"),
        ));
    }
    if view.node_type != "root" {
        // the provider's value first, as the CLI syncs the list before adding
        let mut p = provider(queue, &view)?;
        let rows = p.query(
            "reading the provider's sequences",
            "select last_value::text from londiste.get_seq_list($1) where seq_name = $2",
            &[Some(queue), Some(&seq)],
        )?;
        let Some(v) = rows.first().and_then(|r| col(r, 0)).map(str::to_string) else {
            return Err(PgqError::new(
                SqlState::UNDEFINED_OBJECT,
                format!("sequence \"{seq}\" is not replicated by queue \"{queue}\" on the provider \"{}\"", p.name),
            )
            .hint("Add it on the root first."));
        };
        me.call(
            "registering the provider's sequence",
            "select ret_code::text, ret_note::text from londiste.global_update_seq($1, $2, $3::int8)",
            &[Some(queue), Some(&seq), Some(&v)],
        )?;
    }
    let r = me.call(
        "adding the sequence",
        "select ret_code::text, ret_note::text from londiste.local_add_seq($1, $2)",
        &[Some(queue), Some(&seq)],
    )?;
    Ok(ret_of(&r))
}

#[pg_extern(sql = false)]
fn pgq_cascade_remove_seq(i_queue_name: Option<&str>, i_seq_name: Option<&str>) -> OutRec {
    simple(i_queue_name, i_seq_name, "sequence name", |me, q, s| {
        me.call(
            "removing the sequence",
            "select ret_code::text, ret_note::text from londiste.local_remove_seq($1, $2)",
            &[Some(q), Some(s)],
        )
    })
}

#[pg_extern(sql = false)]
fn pgq_cascade_resync(i_queue_name: Option<&str>, i_table_name: Option<&str>) -> OutRec {
    resync(i_queue_name, i_table_name).unwrap_or_else(|e| e.report())
}

/// resync: copy the table again (its state back to NULL); the provider must hold it.
pub fn resync(queue: Option<&str>, table: Option<&str>) -> PgqResult<OutRec> {
    let queue = arg(queue, "queue name")?;
    let table = fq(arg(table, "table name")?);
    let (mut me, view) = local_node(queue)?;
    if view.node_type == "root" {
        return Err(PgqError::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "node \"{}\" is the root of queue \"{queue}\": there is nothing to copy from",
                view.node_name
            ),
        ));
    }
    let mut p = provider(queue, &view)?;
    if !provider_has_table(&mut p, queue, &table, true)? {
        return Err(PgqError::new(
            SqlState::UNDEFINED_TABLE,
            format!(
                "table \"{table}\" is not local on the provider \"{}\"",
                p.name
            ),
        ));
    }
    let r = me.call(
        "resetting the table's state",
        "select ret_code::text, ret_note::text from londiste.local_set_table_state($1, $2, null, null)",
        &[Some(queue), Some(&table)],
    )?;
    Ok(ret_of(&r))
}

fn simple(
    queue: Option<&str>,
    name: Option<&str>,
    what: &str,
    f: impl FnOnce(&mut Peer, &str, &str) -> PgqResult<Vec<Option<String>>>,
) -> OutRec {
    (|| -> PgqResult<OutRec> {
        let queue = arg(queue, "queue name")?;
        let name = fq(arg(name, what)?);
        let (mut me, _) = local_node(queue)?;
        let r = f(&mut me, queue, &name)?;
        Ok(ret_of(&r))
    })()
    .unwrap_or_else(|e| e.report())
}
