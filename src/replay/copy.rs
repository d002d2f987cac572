//! Initial copy of a table in-server (docs/replication.md, "Initial copy").
//!
//! The replay worker copies a newly subscribed table itself, between two batches,
//! while its position stands at the completed tick C:
//!
//! 1. Provider: `BEGIN ISOLATION LEVEL REPEATABLE READ`, `txid_current_snapshot()` =
//!    S, then `COPY (SELECT <common columns> FROM ONLY <table>) TO STDOUT`.
//! 2. Local, one transaction: the table's state is `in-copy` (committed before, so
//!    status shows it); foreign keys to and from the table are parked in
//!    `londiste.pending_fkeys`; `TRUNCATE ONLY` (unless `skip_truncate`); after a
//!    TRUNCATE, the indexes and PRIMARY KEY / UNIQUE / EXCLUDE constraints are dropped
//!    (what logic/copy_indexes.rs decides can be put back exactly); the COPY data
//!    streams straight into PostgreSQL's COPY FROM through a data callback (no file, no
//!    row-by-row inserts; `pg_stat_progress_copy` shows it); the dropped ones are
//!    rebuilt as they were; `ANALYZE`; then `local_set_table_state(q, t, S, 'ok')`;
//!    commit.
//!
//! Why this meets replay with no gap and no duplicate: every transaction of the
//! batches up to C committed before tick C was taken, hence before S: the copy has it.
//! A later batch's event belongs to the copy exactly when its transaction is visible
//! in S, and replay skips exactly those (the `custom_snapshot` filter). Once a batch
//! ends at a tick whose snapshot's xmin is past S's xmax, no later batch can hold a
//! transaction visible in S, and the snapshot is dropped (state `ok`, snapshot NULL),
//! after which the parked foreign keys are restored.
//!
//! A crash before the local commit leaves the table `in-copy`; the worker copies it
//! again (truncating what the aborted copy never committed anyway).

use super::rerr;
use crate::errors::{PgqError, SpiResultExt, SqlState};
use crate::logic::copy_indexes;
use crate::logic::quote;
use crate::remote::{Connection, CopyOut};
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::{c_int, c_void, CString};

/// What the COPY FROM data callback reads from: the remote COPY OUT and the part of
/// the current chunk not handed out yet.
struct Feed<'a, 'c> {
    out: &'a mut CopyOut<'c>,
    chunk: Vec<u8>,
    pos: usize,
    bytes: u64,
}

thread_local! {
    /// The feed of the COPY FROM running in this backend (null otherwise). Set only
    /// for the duration of `CopyFrom`.
    static FEED: Cell<*mut c_void> = const { Cell::new(std::ptr::null_mut()) };
}

#[pg_guard]
unsafe extern "C-unwind" fn copy_source(
    outbuf: *mut c_void,
    _minread: c_int,
    maxread: c_int,
) -> c_int {
    let p = FEED.with(|f| f.get());
    if p.is_null() {
        crate::errors::raise_internal("COPY data callback without a feed");
    }
    // SAFETY: `p` points at the Feed on the stack of `copy_in`, which is inside the
    // CopyFrom call that calls us; nothing else touches it meanwhile.
    let feed = unsafe { &mut *(p as *mut Feed<'_, '_>) };
    while feed.pos >= feed.chunk.len() {
        match feed.out.next_chunk() {
            Ok(Some(c)) => {
                feed.chunk.clear();
                feed.chunk.extend_from_slice(&c);
                feed.pos = 0;
            }
            Ok(None) => return 0,
            Err(e) => rerr(e).report(),
        }
    }
    let n = (feed.chunk.len() - feed.pos).min(maxread.max(0) as usize);
    // SAFETY: COPY FROM gives a buffer of at least `maxread` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(feed.chunk.as_ptr().add(feed.pos), outbuf as *mut u8, n);
    }
    feed.pos += n;
    feed.bytes += n as u64;
    n as c_int
}

/// Column names of a local table in attribute order.
fn local_columns(relid: pg_sys::Oid) -> Result<Vec<String>, PgqError> {
    Spi::connect(|c| {
        let t = c
            .select(
                "select attname::text from pg_catalog.pg_attribute \
                  where attrelid operator(pg_catalog.=) $1 and attnum > 0 and not attisdropped \
                    and attgenerated operator(pg_catalog.=) '' order by attnum",
                None,
                &[relid.into()],
            )
            .ctx("reading the destination's columns")?;
        let mut out = Vec::new();
        for r in t {
            out.push(crate::db::req::<String>(
                &r,
                1,
                "reading the destination's columns",
            )?);
        }
        Ok(out)
    })
}

fn local_relid(dest: &str) -> Result<pg_sys::Oid, PgqError> {
    Spi::connect(|c| {
        c.select(
            "select pg_catalog.to_regclass($1)::oid",
            Some(1),
            &[quote::fqname(dest, false).as_str().into()],
        )
        .and_then(|t| t.first().get::<pg_sys::Oid>(1))
        .ctx("looking up the destination table")
    })?
    .filter(|o| *o != pg_sys::InvalidOid)
    .ok_or_else(|| {
        PgqError::new(
            SqlState::UNDEFINED_TABLE,
            format!("initial copy: destination table {dest} does not exist"),
        )
    })
}

/// The result of one copy.
pub struct Copied {
    pub rows: u64,
    pub bytes: u64,
    pub snapshot: String,
    /// a lead copy: what it dropped, to restore once every part is copied
    pub dropped_ddl: Option<String>,
}

/// How a copy treats the destination's existing rows and indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMode {
    /// the one source of the table: empty it (unless `skip_truncate`), drop its
    /// indexes, copy, rebuild them
    Whole,
    /// the first of several part queues feeding the table on a merge node: empty it
    /// and drop its indexes as `Whole` does, copy, and leave the rebuild to the end
    /// (the statements come back in `Copied::dropped_ddl`)
    Lead,
    /// a later part queue: copy into the table as the lead left it, touching neither
    /// its rows nor its indexes
    Follow,
}

/// Copy `table` (global name) of the provider into `dest`, inside the caller's local
/// transaction (SPI available, replica role set). Leaves the provider connection idle.
pub fn copy_table(
    provider: &mut Connection,
    table: &str,
    dest: &str,
    skip_truncate: bool,
    mode: CopyMode,
) -> Result<Copied, PgqError> {
    let truncate = !skip_truncate && mode != CopyMode::Follow;
    let relid = local_relid(dest)?;
    let allowed = Spi::connect(|c| {
        c.select(
            "select pg_catalog.has_table_privilege($1, 'INSERT') \
                and pg_catalog.has_table_privilege($1, 'TRUNCATE')",
            Some(1),
            &[relid.into()],
        )
        .and_then(|t| t.first().get::<bool>(1))
        .ctx("checking privileges on the destination")
    })?
    .unwrap_or(false);
    if !allowed {
        return Err(PgqError::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!("initial copy: the replay role may not INSERT into and TRUNCATE {dest}"),
        ));
    }
    let dest_cols = local_columns(relid)?;
    // the provider's side, in one REPEATABLE READ transaction
    provider
        .exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", &[])
        .map_err(rerr)?;
    let r = (|| -> Result<Copied, PgqError> {
        let snap = provider
            .exec("select pg_catalog.txid_current_snapshot()::text", &[])
            .map_err(rerr)?
            .get::<String>(0, 0)
            .map_err(rerr)?
            .unwrap_or_default();
        let src = quote::fqname(table, false);
        let cols = provider
            .exec(
                "select a.attname::text from pg_catalog.pg_attribute a \
                  where a.attrelid operator(pg_catalog.=) pg_catalog.to_regclass($1) \
                    and a.attnum > 0 and not a.attisdropped order by a.attnum",
                &[Some(&src)],
            )
            .map_err(rerr)?;
        let mut common = Vec::new();
        for i in 0..cols.ntuples() {
            if let Some(name) = cols.get::<String>(i, 0).map_err(rerr)? {
                if dest_cols.contains(&name) {
                    common.push(name);
                }
            }
        }
        if common.is_empty() {
            return Err(PgqError::new(
                SqlState::UNDEFINED_COLUMN,
                format!("initial copy: {table} on the provider and {dest} here have no column in common"),
            ));
        }
        let list = common
            .iter()
            .map(|c| quote::ident(c, false))
            .collect::<Vec<_>>()
            .join(", ");
        // parked foreign keys, then an empty table (each a statement of its own)
        park_fkeys(dest)?;
        if truncate {
            Spi::connect_mut(|c| {
                c.update(
                    &format!("TRUNCATE ONLY {}", quote::fqname(dest, false)),
                    None,
                    &[],
                )
                .map(|_| ())
                .ctx("initial copy: truncating the destination")
            })?;
        }
        // the indexes and constraints of an emptied table are built once, after the data
        let plan = if truncate {
            index_plan(relid)?
        } else {
            copy_indexes::Plan::default()
        };
        run_sql(
            &plan.drop,
            "initial copy: dropping an index before the COPY",
        )?;
        let mut out = provider
            .copy_out(&format!("COPY (SELECT {list} FROM ONLY {src}) TO STDOUT"))
            .map_err(rerr)?;
        let (rows, bytes) = copy_in(relid, &common, &mut out)?;
        // the COPY OUT ended (the callback saw its end)
        drop(out);
        if mode == CopyMode::Lead {
            if !plan.drop.is_empty() {
                log!(
                    "pgq replay: initial copy of {dest}: {} indexes dropped until every part queue's copy is in",
                    plan.drop.len()
                );
            }
            return Ok(Copied {
                rows,
                bytes,
                snapshot: snap,
                dropped_ddl: copy_indexes::ddl_text(&plan.restore),
            });
        }
        restore_indexes(&plan.restore)?;
        if !plan.drop.is_empty() || !plan.kept.is_empty() {
            log!(
                "pgq replay: initial copy of {dest}: {} indexes rebuilt after the COPY{}",
                plan.drop.len(),
                if plan.kept.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", kept in place: {}",
                        plan.kept
                            .iter()
                            .map(|(n, why)| format!("{n} ({why})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
        }
        if mode == CopyMode::Whole {
            analyze(dest)?;
        }
        Ok(Copied {
            rows,
            bytes,
            snapshot: snap,
            dropped_ddl: None,
        })
    })();
    match r {
        Ok(c) => {
            provider.exec("COMMIT", &[]).map_err(rerr)?;
            Ok(c)
        }
        Err(e) => {
            let _ = provider.exec("ROLLBACK", &[]);
            Err(e)
        }
    }
}

/// ANALYZE the destination after its data came in.
pub fn analyze(dest: &str) -> Result<(), PgqError> {
    Spi::connect_mut(|c| {
        c.update(
            &format!("ANALYZE {}", quote::fqname(dest, false)),
            None,
            &[],
        )
        .map(|_| ())
        .ctx("initial copy: analyzing the destination")
    })
}

/// Run `stmts` in order, each a statement of its own.
fn run_sql(stmts: &[String], what: &str) -> Result<(), PgqError> {
    if stmts.is_empty() {
        return Ok(());
    }
    Spi::connect_mut(|c| {
        for s in stmts {
            c.update(s, None, &[]).ctx(what)?;
        }
        Ok(())
    })
}

/// What the catalogs say about `relid` and its indexes, and the plan made of it.
fn index_plan(relid: pg_sys::Oid) -> Result<copy_indexes::Plan, PgqError> {
    const WHAT: &str = "initial copy: reading the destination's indexes";
    Spi::connect(|c| {
        let t = c
            .select(
                "select pg_catalog.format('%I.%I', n.nspname, c.relname), \
                        pg_catalog.quote_ident(n.nspname), \
                        c.relkind operator(pg_catalog.=) 'p', c.relispartition, \
                        exists (select from pg_catalog.pg_inherits h \
                                 where h.inhparent operator(pg_catalog.=) c.oid), \
                        pg_catalog.pg_has_role(c.relowner, 'USAGE') \
                   from pg_catalog.pg_class c \
                   join pg_catalog.pg_namespace n on n.oid operator(pg_catalog.=) c.relnamespace \
                  where c.oid operator(pg_catalog.=) $1",
                Some(1),
                &[relid.into()],
            )
            .ctx(WHAT)?
            .first();
        let table = copy_indexes::TableFacts {
            qname: crate::db::req(&t, 1, WHAT)?,
            qschema: crate::db::req(&t, 2, WHAT)?,
            partitioned: crate::db::req(&t, 3, WHAT)?,
            partition: crate::db::req(&t, 4, WHAT)?,
            has_children: crate::db::req(&t, 5, WHAT)?,
            owned: crate::db::req(&t, 6, WHAT)?,
        };
        if copy_indexes::table_skip_reason(&table).is_some() {
            return Ok(copy_indexes::Plan::default());
        }
        // in OID order, the order they are rebuilt in
        let rows = c
            .select(
                "select ic.relname::text, pg_catalog.pg_get_indexdef(i.indexrelid), \
                        ts.spcname::text, \
                        ts.oid is null or pg_catalog.has_tablespace_privilege(ts.oid, 'CREATE'), \
                        i.indisclustered, i.indisreplident, \
                        i.indisvalid and i.indisready and i.indislive, \
                        ic.reloptions is not null, \
                        exists (select from pg_catalog.pg_depend d \
                                 where d.deptype operator(pg_catalog.=) 'n' \
                                   and ((d.refclassid operator(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
                                         and d.refobjid operator(pg_catalog.=) i.indexrelid) \
                                     or (d.refclassid operator(pg_catalog.=) 'pg_catalog.pg_constraint'::pg_catalog.regclass \
                                         and d.refobjid operator(pg_catalog.=) co.oid))), \
                        exists (select from pg_catalog.pg_attribute a \
                                 where a.attrelid operator(pg_catalog.=) i.indexrelid \
                                   and a.attstattarget operator(pg_catalog.>=) 0), \
                        exists (select from pg_catalog.pg_seclabel l \
                                 where l.objoid operator(pg_catalog.=) i.indexrelid \
                                   and l.classoid operator(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass), \
                        pg_catalog.obj_description(i.indexrelid, 'pg_class'), \
                        co.conname::text, co.contype::text, pg_catalog.pg_get_constraintdef(co.oid), \
                        co.condeferrable, co.condeferred, \
                        co.coninhcount operator(pg_catalog.>) 0 or not co.conislocal, \
                        pg_catalog.obj_description(co.oid, 'pg_constraint') \
                   from pg_catalog.pg_index i \
                   join pg_catalog.pg_class ic on ic.oid operator(pg_catalog.=) i.indexrelid \
                   left join pg_catalog.pg_tablespace ts on ts.oid operator(pg_catalog.=) ic.reltablespace \
                   left join pg_catalog.pg_constraint co \
                     on co.conindid operator(pg_catalog.=) i.indexrelid \
                    and co.conrelid operator(pg_catalog.=) i.indrelid \
                    and co.contype operator(pg_catalog.=) any ('{p,u,x}'::pg_catalog.\"char\"[]) \
                  where i.indrelid operator(pg_catalog.=) $1 \
                  order by i.indexrelid",
                None,
                &[relid.into()],
            )
            .ctx(WHAT)?;
        let mut indexes = Vec::new();
        for r in rows {
            let kind = crate::db::get::<String>(&r, 14, WHAT)?;
            let constraint = match kind
                .as_deref()
                .and_then(copy_indexes::ConKind::from_contype)
            {
                Some(kind) => Some(copy_indexes::ConFacts {
                    name: crate::db::req(&r, 13, WHAT)?,
                    kind,
                    def: crate::db::req(&r, 15, WHAT)?,
                    deferrable: crate::db::req(&r, 16, WHAT)?,
                    deferred: crate::db::req(&r, 17, WHAT)?,
                    inherited: crate::db::req(&r, 18, WHAT)?,
                    comment: crate::db::get(&r, 19, WHAT)?,
                }),
                None => None,
            };
            indexes.push(copy_indexes::IndexFacts {
                name: crate::db::req(&r, 1, WHAT)?,
                def: crate::db::req(&r, 2, WHAT)?,
                tablespace: crate::db::get(&r, 3, WHAT)?,
                tablespace_ok: crate::db::req(&r, 4, WHAT)?,
                clustered: crate::db::req(&r, 5, WHAT)?,
                replident: crate::db::req(&r, 6, WHAT)?,
                valid: crate::db::req(&r, 7, WHAT)?,
                has_reloptions: crate::db::req(&r, 8, WHAT)?,
                has_dependents: crate::db::req(&r, 9, WHAT)?,
                has_stattarget: crate::db::req(&r, 10, WHAT)?,
                has_seclabel: crate::db::req(&r, 11, WHAT)?,
                comment: crate::db::get(&r, 12, WHAT)?,
                constraint,
            });
        }
        Ok(copy_indexes::plan(&table, &indexes))
    })
}

/// Rebuild what `index_plan` dropped: each statement with `default_tablespace` as it
/// asks, the setting put back afterwards.
fn restore_indexes(stmts: &[copy_indexes::Stmt]) -> Result<(), PgqError> {
    const WHAT: &str = "initial copy: rebuilding an index after the COPY";
    if stmts.is_empty() {
        return Ok(());
    }
    Spi::connect_mut(|c| {
        let saved = c
            .select(
                "select pg_catalog.current_setting('default_tablespace')",
                Some(1),
                &[],
            )
            .ctx(WHAT)?
            .first()
            .get::<String>(1)
            .ctx(WHAT)?
            .unwrap_or_default();
        let mut current = saved.clone();
        for s in stmts {
            if let Some(ts) = &s.tablespace {
                if *ts != current {
                    c.update(
                        "select pg_catalog.set_config('default_tablespace', $1, true)",
                        Some(1),
                        &[ts.as_str().into()],
                    )
                    .ctx(WHAT)?;
                    current = ts.clone();
                }
            }
            c.update(&s.sql, None, &[]).ctx(WHAT)?;
        }
        if current != saved {
            c.update(
                "select pg_catalog.set_config('default_tablespace', $1, true)",
                Some(1),
                &[saved.as_str().into()],
            )
            .ctx(WHAT)?;
        }
        Ok(())
    })
}

/// Park every foreign key from or to `dest` in londiste.pending_fkeys (dropping it).
fn park_fkeys(dest: &str) -> Result<(), PgqError> {
    Spi::connect_mut(|c| {
        let t = c
            .update(
                "select from_table::text, fkey_name::text from londiste.find_table_fkeys($1)",
                None,
                &[dest.into()],
            )
            .ctx("initial copy: finding foreign keys")?;
        let mut keys = Vec::new();
        for r in t {
            keys.push((
                crate::db::req::<String>(&r, 1, "initial copy: finding foreign keys")?,
                crate::db::req::<String>(&r, 2, "initial copy: finding foreign keys")?,
            ));
        }
        for (from, name) in keys {
            c.update(
                "select londiste.drop_table_fkey($1, $2)",
                Some(1),
                &[from.as_str().into(), name.as_str().into()],
            )
            .ctx("initial copy: dropping a foreign key")?;
        }
        Ok(())
    })
}

/// COPY FROM the feed into `relid` (columns `cols`). Returns rows and bytes.
fn copy_in(
    relid: pg_sys::Oid,
    cols: &[String],
    out: &mut CopyOut<'_>,
) -> Result<(u64, u64), PgqError> {
    let names: Vec<CString> = cols
        .iter()
        .map(|c| CString::new(c.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| PgqError::internal("a column name holds a NUL byte"))?;
    let mut feed = Feed {
        out,
        chunk: Vec::new(),
        pos: 0,
        bytes: 0,
    };
    let rel = crate::guards::OpenRel::relation(relid, pg_sys::RowExclusiveLock, pg_sys::NoLock);
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            FEED.with(|f| f.set(std::ptr::null_mut()));
        }
    }
    FEED.with(|f| f.set(&mut feed as *mut Feed<'_, '_> as *mut c_void));
    let _reset = Reset;
    // SAFETY: BeginCopyFrom/CopyFrom/EndCopyFrom as logical replication's table
    // synchronization uses them: an open relation (locked RowExclusive for the rest of
    // the transaction), a parse state whose range table holds it, a list of column names (String nodes, palloc'd
    // in the current memory context) and the data callback, which reads from the feed
    // set just above and cleared on the way out (also when an ERROR unwinds).
    let rows = unsafe {
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        // CopyFrom opens its result relation as range table entry 1
        pg_sys::addRangeTableEntryForRelation(
            pstate,
            rel.as_ptr(),
            pg_sys::RowExclusiveLock as i32,
            std::ptr::null_mut(),
            false,
            false,
        );
        let mut list: *mut pg_sys::List = std::ptr::null_mut();
        for n in &names {
            let s = pg_sys::makeString(pg_sys::pstrdup(n.as_ptr()));
            list = pg_sys::lappend(list, s as *mut c_void);
        }
        let cstate = pg_sys::BeginCopyFrom(
            pstate,
            rel.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null(),
            false,
            Some(copy_source),
            list,
            std::ptr::null_mut(),
        );
        let rows = pg_sys::CopyFrom(cstate);
        pg_sys::EndCopyFrom(cstate);
        pg_sys::free_parsestate(pstate);
        rows
    };
    drop(rel);
    Ok((rows, feed.bytes))
}
