//! Small SPI helpers shared by the pgq_node / pgq_ext / pgq_coop modules.
//!
//! Every statement goes through `run`: `rw = true` uses `SpiClient::update` (needed
//! for DML, `FOR UPDATE` and calls of volatile functions that write), `rw = false`
//! uses `select`, which does not assign a transaction id (read-only lookups such as
//! `get_node_info` are polled by every worker loop).

use crate::errors::SpiResultExt;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiTupleTable};

pub fn run<'c>(
    c: &mut SpiClient<'c>,
    rw: bool,
    sql: &str,
    args: &[DatumWithOid],
) -> SpiTupleTable<'c> {
    if rw {
        c.update(sql, None, args).or_raise("statement")
    } else {
        c.select(sql, None, args).or_raise("statement")
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
