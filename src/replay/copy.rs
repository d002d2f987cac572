//! Initial copy of a table in-server (docs/replication.md, "Initial copy").
//!
//! The replay worker copies a newly subscribed table itself, between two batches,
//! while its position stands at the completed tick C:
//!
//! 1. Provider: `BEGIN ISOLATION LEVEL REPEATABLE READ`, `txid_current_snapshot()` =
//!    S, then `COPY (SELECT <common columns> FROM ONLY <table>) TO STDOUT`.
//! 2. Local, one transaction: the table's state is `in-copy` (committed before, so
//!    status shows it); foreign keys to and from the table are parked in
//!    `londiste.pending_fkeys`; `TRUNCATE ONLY` (unless `skip_truncate`); the COPY
//!    data streams straight into PostgreSQL's COPY FROM through a data callback (no
//!    file, no row-by-row inserts; `pg_stat_progress_copy` shows it); then
//!    `local_set_table_state(q, t, S, 'ok')`; commit.
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
}

/// Copy `table` (global name) of the provider into `dest`, inside the caller's local
/// transaction (SPI available, replica role set). Leaves the provider connection idle.
pub fn copy_table(
    provider: &mut Connection,
    table: &str,
    dest: &str,
    skip_truncate: bool,
) -> Result<Copied, PgqError> {
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
        if !skip_truncate {
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
        let mut out = provider
            .copy_out(&format!("COPY (SELECT {list} FROM ONLY {src}) TO STDOUT"))
            .map_err(rerr)?;
        let (rows, bytes) = copy_in(relid, &common, &mut out)?;
        // the COPY OUT ended (the callback saw its end)
        drop(out);
        Ok(Copied {
            rows,
            bytes,
            snapshot: snap,
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
