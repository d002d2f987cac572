//! Small SPI helpers shared by the pgq_node / pgq_ext / pgq_coop modules.
//!
//! Every statement goes through `run`: `rw = true` uses `SpiClient::update` (needed
//! for DML, `FOR UPDATE` and calls of volatile functions that write), `rw = false`
//! uses `select`, which does not assign a transaction id (read-only lookups such as
//! `get_node_info` are polled by every worker loop).

use crate::errors::SpiResultExt;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiTupleTable};
use std::panic::AssertUnwindSafe;

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
        CaughtError::PostgresError(r) => {
            let mut plain = ErrorReport::new(r.sql_error_code(), r.message().to_string(), "");
            if let Some(d) = r.detail().and_then(crate::logic::node::strip_backtrace) {
                plain = plain.set_detail(d);
            }
            if let Some(h) = r.hint() {
                plain = plain.set_hint(h);
            }
            plain.report(PgLogLevel::ERROR);
            unreachable!("an ERROR does not return")
        }
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
    Spi::connect_mut(|c| {
        one::<String>(
            c,
            false,
            "select pg_catalog.current_setting('search_path')",
            &[],
        )
    })
    .unwrap_or_default()
}

pub fn run<'c>(
    c: &mut SpiClient<'c>,
    rw: bool,
    sql: &str,
    args: &[DatumWithOid],
) -> SpiTupleTable<'c> {
    let r = plain_errors(|| {
        if rw {
            c.update(sql, None, args)
        } else {
            c.select(sql, None, args)
        }
    });
    r.or_raise("statement")
}

/// The first row of a result, or None when there are no rows.
pub fn first(t: SpiTupleTable<'_>) -> Option<SpiTupleTable<'_>> {
    if t.is_empty() {
        None
    } else {
        Some(t.first())
    }
}

/// Column `i` (1-based) of the current row.
pub fn col<T: IntoDatum + FromDatum>(t: &SpiTupleTable<'_>, i: usize) -> Option<T> {
    t.get(i).or_raise("reading column")
}

/// Run and return column 1 of the first row (None for no row or NULL).
pub fn one<T: IntoDatum + FromDatum>(
    c: &mut SpiClient<'_>,
    rw: bool,
    sql: &str,
    args: &[DatumWithOid],
) -> Option<T> {
    let t = run(c, rw, sql, args);
    first(t).and_then(|r| col::<T>(&r, 1))
}

/// Run and tell whether any row came back / was affected.
pub fn found(c: &mut SpiClient<'_>, rw: bool, sql: &str, args: &[DatumWithOid]) -> bool {
    let t = run(c, rw, sql, args);
    !t.is_empty()
}

/// Run a DML statement and return the number of rows it processed.
pub fn exec(c: &mut SpiClient<'_>, sql: &str, args: &[DatumWithOid]) -> usize {
    run(c, true, sql, args).len()
}
