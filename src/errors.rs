//! Error reporting with PgQ's texts and SQLSTATEs.
//!
//! The original raised its errors from PL/pgSQL `raise exception`, i.e. SQLSTATE
//! P0001; clients match on the message text, so both are kept.

use pgrx::prelude::*;
use pgrx::spi::SpiError;

/// ERROR with SQLSTATE P0001 (as PL/pgSQL `raise exception`).
pub fn raise(msg: impl Into<String>) -> ! {
    ereport!(ERROR, PgSqlErrorCode::ERRCODE_RAISE_EXCEPTION, msg.into());
}

/// ERROR with an explicit SQLSTATE.
pub fn raise_code(code: PgSqlErrorCode, msg: impl Into<String>) -> ! {
    ereport!(ERROR, code, msg.into());
}

/// ERROR with SQLSTATE XX000, as the original's C code (`elog(ERROR)`) raised.
pub fn raise_internal(msg: impl Into<String>) -> ! {
    ereport!(ERROR, PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, msg.into());
}

/// WARNING (SQLSTATE 01000), as PL/pgSQL `raise warning`.
pub fn warning(msg: impl Into<String>) {
    ereport!(WARNING, PgSqlErrorCode::ERRCODE_WARNING, msg.into());
}

/// SPI failures are internal errors: the statement text is ours, not the user's.
pub trait SpiResultExt<T> {
    fn or_raise(self, what: &str) -> T;
}

impl<T> SpiResultExt<T> for Result<T, SpiError> {
    fn or_raise(self, what: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise_code(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!("pgq: {what}: {e}"),
            ),
        }
    }
}

/// Render an optional value the way PgQ's messages do (`NULL` for NULL).
pub fn or_null<T: std::fmt::Display>(v: Option<T>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "NULL".to_string(),
    }
}
