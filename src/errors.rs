//! Errors: one type, `PgqError` (SQLSTATE, message, DETAIL, HINT), turned into an
//! `ereport` in exactly one place (`PgqError::report`).
//!
//! Internal functions return `PgqResult<T>`; the `#[pg_extern]` wrappers raise with
//! `.or_report()`. Workers catch a step's ERROR as a `PgqError` (`from_caught`) and
//! decide retry or stop by its SQLSTATE class (`disposition`, logic/sqlstate.rs).
//!
//! An ERROR that PostgreSQL raises inside an SPI statement does not come back as an
//! `Err`: it unwinds to the nearest catch (the function call, or a worker's
//! transaction), which is right, because the transaction is aborted either way.
//!
//! The original raised its errors from PL/pgSQL `raise exception`, i.e. SQLSTATE
//! P0001; clients match on the message text, so both are kept.

pub use crate::logic::sqlstate::{Disposition, SqlState};
use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use pgrx::spi::SpiError;

/// An error with its SQLSTATE, message, DETAIL and HINT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgqError {
    pub code: SqlState,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

pub type PgqResult<T> = Result<T, PgqError>;

impl PgqError {
    pub fn new(code: SqlState, message: impl Into<String>) -> Self {
        PgqError {
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// With a pgrx error code.
    pub fn with_code(code: PgSqlErrorCode, message: impl Into<String>) -> Self {
        PgqError::new(SqlState::from_packed(code as i32), message)
    }

    /// SQLSTATE P0001, as PL/pgSQL `raise exception`.
    pub fn exception(message: impl Into<String>) -> Self {
        PgqError::new(SqlState::RAISE_EXCEPTION, message)
    }

    /// SQLSTATE XX000, as the original's C code (`elog(ERROR)`) raised.
    pub fn internal(message: impl Into<String>) -> Self {
        PgqError::new(SqlState::INTERNAL_ERROR, message)
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The SQLSTATE as text.
    pub fn sqlstate(&self) -> &str {
        self.code.as_str()
    }

    /// Retry or stop, by the SQLSTATE class.
    pub fn disposition(&self) -> Disposition {
        crate::logic::sqlstate::disposition(self.code)
    }

    /// The error an ERROR (or a panic) caught by PgTryBuilder carries. DETAIL loses
    /// the Rust backtrace pgrx may have appended to it.
    pub fn from_caught(e: &CaughtError) -> Self {
        match e {
            CaughtError::PostgresError(r)
            | CaughtError::ErrorReport(r)
            | CaughtError::RustPanic { ereport: r, .. } => PgqError {
                code: SqlState::from_packed(r.sql_error_code() as i32),
                message: r.message().to_string(),
                detail: r
                    .detail()
                    .and_then(crate::logic::node::strip_backtrace)
                    .map(str::to_string),
                hint: r.hint().map(str::to_string),
            },
        }
    }

    fn report_at(self, level: PgLogLevel) {
        debug_assert!(
            pgrx_knows(self.code),
            "pgrx cannot raise SQLSTATE {}",
            self.code
        );
        let mut r = ErrorReport::new(PgSqlErrorCode::from(self.code.packed()), self.message, "");
        if let Some(d) = self.detail {
            r = r.set_detail(d);
        }
        if let Some(h) = self.hint {
            r = r.set_hint(h);
        }
        r.report(level);
    }

    /// Raise as an ERROR: the one place a `PgqError` becomes an `ereport`.
    pub fn report(self) -> ! {
        self.report_at(PgLogLevel::ERROR);
        unreachable!("an ERROR does not return")
    }

    /// Emit as a WARNING (the code should be a 01xxx one).
    pub fn warn(self) {
        self.report_at(PgLogLevel::WARNING);
    }
}

impl std::fmt::Display for PgqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PgqError {}

/// Errors without a SQLSTATE of their own (a worker's own checks) are internal.
impl From<String> for PgqError {
    fn from(message: String) -> Self {
        PgqError::internal(message)
    }
}

/// Whether pgrx can raise `code`: it carries only the SQLSTATEs PostgreSQL defines (a
/// remote server's user-defined code cannot be raised as itself).
pub fn pgrx_knows(code: SqlState) -> bool {
    let raw = code.packed();
    PgSqlErrorCode::from(raw) as isize == raw as isize
}

/// `.or_report()`: the `#[pg_extern]` wrappers' way of raising an internal `Err`.
pub trait OrReport<T> {
    fn or_report(self) -> T;
}

impl<T> OrReport<T> for PgqResult<T> {
    fn or_report(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.report(),
        }
    }
}

/// ERROR with SQLSTATE P0001 (as PL/pgSQL `raise exception`).
pub fn raise(msg: impl Into<String>) -> ! {
    PgqError::exception(msg).report()
}

/// ERROR with an explicit SQLSTATE.
pub fn raise_code(code: PgSqlErrorCode, msg: impl Into<String>) -> ! {
    PgqError::with_code(code, msg).report()
}

/// ERROR with SQLSTATE XX000, as the original's C code (`elog(ERROR)`) raised.
pub fn raise_internal(msg: impl Into<String>) -> ! {
    PgqError::internal(msg).report()
}

/// WARNING (SQLSTATE 01000), as PL/pgSQL `raise warning`.
pub fn warning(msg: impl Into<String>) {
    PgqError::with_code(PgSqlErrorCode::ERRCODE_WARNING, msg).warn()
}

/// An SPI failure that comes back as `Err` (a datum of the wrong type, a bad
/// argument list, ...): internal, since the statement text is ours, with its purpose.
pub fn spi_error(what: &str, e: SpiError) -> PgqError {
    let code = match e {
        SpiError::DatumError(_) => SqlState::DATATYPE_MISMATCH,
        _ => SqlState::INTERNAL_ERROR,
    };
    PgqError::new(code, format!("pgq: {what}: {e}"))
}

/// SPI failures are internal errors: the statement text is ours, not the user's.
pub trait SpiResultExt<T> {
    /// The value, or the failure as a `PgqError` naming `what` the statement was for.
    fn ctx(self, what: &str) -> PgqResult<T>;
    /// The value, or raise the failure.
    fn or_raise(self, what: &str) -> T;
}

impl<T> SpiResultExt<T> for Result<T, SpiError> {
    fn ctx(self, what: &str) -> PgqResult<T> {
        self.map_err(|e| spi_error(what, e))
    }

    fn or_raise(self, what: &str) -> T {
        self.ctx(what).or_report()
    }
}

/// Render an optional value the way PgQ's messages do (`NULL` for NULL).
pub fn or_null<T: std::fmt::Display>(v: Option<T>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "NULL".to_string(),
    }
}
