//! The data-access layer: every SQL statement the extension runs through SPI goes
//! through here.
//!
//! * Reads and writes are separate calls. A `Db` handle is opened as a reader or a
//!   writer ([`read`] / [`write`]): a reader's statements use `SpiClient::select`
//!   (read-only SPI: the calling statement's snapshot, no transaction id, no command
//!   counter increment); a writer's reads run like its writes (`update`: a fresh
//!   snapshot that sees the function's own earlier writes), which statements after a
//!   write need. `SELECT ... FOR UPDATE` is a write.
//! * One cache of kept plans ([`kept`]), for the fixed statements of the hot paths.
//!   Every statement whose text is fixed (`&'static str`: [`Db::read`], [`Db::write`],
//!   [`run`]) is parsed and planned once per backend and kept, as PL/pgSQL keeps
//!   the plans of its static SQL; PostgreSQL's plan cache re-plans it after DDL on
//!   what it uses or a changed `search_path`. Statements built at run time
//!   ([`Db::read_dyn`], [`Db::write_dyn`]) are parsed at every call, as EXECUTE is.
//! * Typed decoding ([`get`], [`req`]): a column of another type than asked raises
//!   (42804 datatype_mismatch), never turns into NULL; [`req`] also raises on a NULL in
//!   a column the schema declares NOT NULL.
//! * Every error of ours names the module and the statement's purpose
//!   (`pgq_node: reading node info: ...`). ERRORs that PostgreSQL raises while a
//!   statement runs keep their text (clients match on it) and lose only the Rust
//!   backtrace pgrx would append ([`plain_errors`]).

use crate::errors::{OrReport, PgqError, PgqResult, SpiResultExt};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiError, SpiHeapTupleData, SpiTupleTable};
use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

/// A client for one function call: an SPI connection, its access mode and the module
/// its statements belong to (for error messages).
pub struct Db<'a, 'c> {
    c: &'a mut SpiClient<'c>,
    writer: bool,
    module: &'static str,
}

/// The handle the Rust API functions of the cascade schemas take.
pub type Client<'a, 'b, 'c> = &'a mut Db<'b, 'c>;

/// Run `f` with a reader handle (read-only statements only).
pub fn read<R>(module: &'static str, f: impl FnOnce(&mut Db<'_, '_>) -> R) -> R {
    Spi::connect_mut(|c| {
        f(&mut Db {
            c,
            writer: false,
            module,
        })
    })
}

/// Run `f` with a writer handle.
pub fn write<R>(module: &'static str, f: impl FnOnce(&mut Db<'_, '_>) -> R) -> R {
    Spi::connect_mut(|c| {
        f(&mut Db {
            c,
            writer: true,
            module,
        })
    })
}

impl<'a, 'c> Db<'a, 'c> {
    /// The error of ours for a statement of this handle.
    pub fn error(&self, what: &str, msg: impl std::fmt::Display) -> PgqError {
        PgqError::internal(format!("{}: {what}: {msg}", self.module))
    }

    fn ctx<T>(&self, what: &str, r: Result<T, pgrx::spi::SpiError>) -> PgqResult<T> {
        r.ctx(&format!("{}: {what}", self.module))
    }

    /// A read: `select` in a reader, `update` (fresh snapshot) in a writer. The
    /// statement's plan is kept (see the module comment).
    pub fn read(
        &mut self,
        what: &str,
        sql: &'static str,
        args: &[DatumWithOid],
    ) -> PgqResult<SpiTupleTable<'c>> {
        let writer = self.writer;
        let c = &mut *self.c;
        let r = plain_errors(|| run(c, sql, args, writer));
        self.ctx(what, r)
    }

    /// A read of a statement built at run time (parsed at every call).
    pub fn read_dyn(
        &mut self,
        what: &str,
        sql: &str,
        args: &[DatumWithOid],
    ) -> PgqResult<SpiTupleTable<'c>> {
        let writer = self.writer;
        let c = &mut *self.c;
        let r = plain_errors(|| {
            if writer {
                c.update(sql, None, args)
            } else {
                c.select(sql, None, args)
            }
        });
        self.ctx(what, r)
    }

    /// A write (DML, `FOR UPDATE`, calls of functions that write). A reader handle
    /// refuses: that would be a bug of ours. The statement's plan is kept.
    pub fn write(
        &mut self,
        what: &str,
        sql: &'static str,
        args: &[DatumWithOid],
    ) -> PgqResult<SpiTupleTable<'c>> {
        if !self.writer {
            return Err(self.error(what, "write through a read-only handle"));
        }
        let c = &mut *self.c;
        let r = plain_errors(|| run(c, sql, args, true));
        self.ctx(what, r)
    }

    /// A write of a statement built at run time (parsed at every call).
    pub fn write_dyn(
        &mut self,
        what: &str,
        sql: &str,
        args: &[DatumWithOid],
    ) -> PgqResult<SpiTupleTable<'c>> {
        if !self.writer {
            return Err(self.error(what, "write through a read-only handle"));
        }
        let c = &mut *self.c;
        let r = plain_errors(|| c.update(sql, None, args));
        self.ctx(what, r)
    }

    /// Column 1 of the first row of a read (None: no row, or NULL).
    pub fn one<T: IntoDatum + FromDatum>(
        &mut self,
        what: &str,
        sql: &'static str,
        args: &[DatumWithOid],
    ) -> PgqResult<Option<T>> {
        let t = self.read(what, sql, args)?;
        if t.is_empty() {
            return Ok(None);
        }
        get(&t.first(), 1, what)
    }

    /// Whether a read returns any row.
    pub fn exists(
        &mut self,
        what: &str,
        sql: &'static str,
        args: &[DatumWithOid],
    ) -> PgqResult<bool> {
        Ok(!self.read(what, sql, args)?.is_empty())
    }

    /// Run a write and return the number of rows it processed.
    pub fn execute(
        &mut self,
        what: &str,
        sql: &'static str,
        args: &[DatumWithOid],
    ) -> PgqResult<usize> {
        Ok(self.write(what, sql, args)?.len())
    }

    /// [`execute`](Self::execute) of a statement built at run time.
    pub fn execute_dyn(
        &mut self,
        what: &str,
        sql: &str,
        args: &[DatumWithOid],
    ) -> PgqResult<usize> {
        Ok(self.write_dyn(what, sql, args)?.len())
    }
}

/// The first row of a result, or None when there are no rows.
pub fn first(t: SpiTupleTable<'_>) -> Option<SpiTupleTable<'_>> {
    if t.is_empty() {
        None
    } else {
        Some(t.first())
    }
}

/// A row to decode: the current row of a result, or a row of its iterator.
pub trait Row {
    fn column<T: IntoDatum + FromDatum>(&self, i: usize) -> Result<Option<T>, SpiError>;
}

impl Row for SpiTupleTable<'_> {
    fn column<T: IntoDatum + FromDatum>(&self, i: usize) -> Result<Option<T>, SpiError> {
        self.get(i)
    }
}

impl Row for SpiHeapTupleData<'_> {
    fn column<T: IntoDatum + FromDatum>(&self, i: usize) -> Result<Option<T>, SpiError> {
        self.get(i)
    }
}

/// Column `i` (1-based) of a row, typed: a column of another type raises.
pub fn get<T: IntoDatum + FromDatum>(t: &impl Row, i: usize, what: &str) -> PgqResult<Option<T>> {
    t.column(i).ctx(&format!("{what}, column {i}"))
}

/// Column `i` of a NOT NULL column: a NULL raises instead of becoming a default.
pub fn req<T: IntoDatum + FromDatum>(t: &impl Row, i: usize, what: &str) -> PgqResult<T> {
    get(t, i, what)?.ok_or_else(|| {
        PgqError::new(
            crate::errors::SqlState::NOT_NULL_VIOLATION,
            format!("pgq: {what}, column {i}: unexpected NULL"),
        )
    })
}

// ---------------------------------------------------------------------------
// kept plans
// ---------------------------------------------------------------------------

thread_local! {
    static PLANS: RefCell<HashMap<&'static str, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
}

/// The kept plan of `sql` (argument types `args`), parsed and planned once per
/// backend; `mutating` for statements that write.
pub fn kept(
    client: &SpiClient<'_>,
    sql: &'static str,
    args: &[pg_sys::Oid],
    mutating: bool,
) -> Rc<OwnedPreparedStatement> {
    if let Some(p) = PLANS.with(|p| p.borrow().get(sql).cloned()) {
        return p;
    }
    let types: Vec<PgOid> = args.iter().map(|&o| PgOid::from(o)).collect();
    let prepared = if mutating {
        client.prepare_mut(sql, &types)
    } else {
        client.prepare(sql, &types)
    };
    let plan = Rc::new(prepared.ctx("preparing statement").or_report().keep());
    PLANS.with(|p| p.borrow_mut().insert(sql, plan.clone()));
    plan
}

/// A fixed statement as it was prepared: its text, argument types and whether it ran
/// as a write.
type StatementKey = (&'static str, Vec<pg_sys::Oid>, bool);

thread_local! {
    /// The kept plans of the fixed statements [`run`] executed.
    static STATEMENTS: RefCell<HashMap<StatementKey, Rc<OwnedPreparedStatement>>> =
        RefCell::new(HashMap::new());
}

/// Run the fixed statement `sql` with `args` through its kept plan (prepared at its
/// first run in this backend); `mutating`: as `SpiClient::update` (a write, or a read
/// that must see this transaction's own earlier writes), else as `select`. A
/// statement of several commands runs unprepared.
pub fn run<'c>(
    c: &SpiClient<'c>,
    sql: &'static str,
    args: &[DatumWithOid],
    mutating: bool,
) -> Result<SpiTupleTable<'c>, SpiError> {
    execute(c, sql, None, args, mutating)
}

/// `SpiClient::update` of a fixed statement, through its kept plan.
pub fn update<'c>(
    c: &SpiClient<'c>,
    sql: &'static str,
    limit: Option<libc::c_long>,
    args: &[DatumWithOid],
) -> Result<SpiTupleTable<'c>, SpiError> {
    execute(c, sql, limit, args, true)
}

/// `SpiClient::select` of a fixed statement, through its kept plan.
pub fn select<'c>(
    c: &SpiClient<'c>,
    sql: &'static str,
    limit: Option<libc::c_long>,
    args: &[DatumWithOid],
) -> Result<SpiTupleTable<'c>, SpiError> {
    execute(c, sql, limit, args, false)
}

fn execute<'c>(
    c: &SpiClient<'c>,
    sql: &'static str,
    limit: Option<libc::c_long>,
    args: &[DatumWithOid],
    mutating: bool,
) -> Result<SpiTupleTable<'c>, SpiError> {
    if sql.contains(';') {
        if mutating {
            mark_mutable();
        }
        return c.select(sql, limit, args);
    }
    let types: Vec<pg_sys::Oid> = args.iter().map(|a| a.oid()).collect();
    let key = (sql, types, mutating);
    let plan = match STATEMENTS.with(|m| m.borrow().get(&key).cloned()) {
        Some(p) => p,
        None => {
            let oids: Vec<PgOid> = key.1.iter().map(|&o| PgOid::from(o)).collect();
            let prepared = if mutating {
                c.prepare_mut(sql, &oids)?
            } else {
                c.prepare(sql, &oids)?
            };
            let plan = Rc::new(prepared.keep());
            STATEMENTS.with(|m| m.borrow_mut().insert(key, plan.clone()));
            plan
        }
    };
    // a mutating plan runs read-write (a fresh snapshot per statement); a plain one
    // read-only while the transaction has written nothing, as `select` does
    if mutating {
        mark_mutable();
    }
    c.select(&*plan, limit, args)
}

/// What `SpiClient::update` does before it runs a statement: the transaction gets its
/// id, so that later read-only statements of this transaction take fresh snapshots.
fn mark_mutable() {
    // SAFETY: assigns (or returns) the current transaction's id; in a transaction.
    unsafe {
        let _ = pg_sys::GetCurrentTransactionId();
    }
}

// ---------------------------------------------------------------------------
// errors of PostgreSQL, search_path
// ---------------------------------------------------------------------------

/// Run `f`; an ERROR that PostgreSQL raises inside it is raised again as the same
/// error (SQLSTATE, message, DETAIL, HINT), but without the Rust backtrace that pgrx
/// would otherwise append to DETAIL when RUST_BACKTRACE is set in the server's
/// environment. Errors raised from Rust and panics pass through unchanged.
pub fn plain_errors<R>(f: impl FnOnce() -> R) -> R {
    let mut f = Some(f);
    PgTryBuilder::new(AssertUnwindSafe(|| match f.take() {
        Some(f) => f(),
        None => unreachable!("the guarded closure runs once"),
    }))
    .catch_others(|e| match e {
        CaughtError::PostgresError(_) => PgqError::from_caught(&e).report(),
        other => other.rethrow(),
    })
    .execute()
}

/// Run `f` with `search_path` set to `path`, and the previous value back afterwards,
/// the way a function's `SET search_path` clause works. On an ERROR inside `f` the
/// (sub)transaction abort restores it.
pub fn with_search_path<R>(path: &str, f: impl FnOnce() -> R) -> R {
    let name = c"search_path";
    let value = std::ffi::CString::new(path)
        .unwrap_or_else(|_| crate::errors::raise("search_path must not contain NUL"));
    // SAFETY: plain calls into the GUC machinery with valid NUL-terminated strings
    // that outlive them; the nest level opened here is closed below (or, on error, by
    // the transaction abort), as fmgr does for a function's SET clause.
    let level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        level
    };
    let r = f();
    // SAFETY: closes the nest level opened above; `true` keeps nothing of it.
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
    r
}

/// The session's current `search_path` setting.
pub fn current_search_path() -> String {
    read("pgq", |db| {
        db.one::<String>(
            "reading search_path",
            "select pg_catalog.current_setting('search_path')",
            &[],
        )
    })
    .or_report()
    .unwrap_or_default()
}
