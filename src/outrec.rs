//! `OutRec`: the return value of a function declared in SQL as
//! `RETURNS record` with OUT parameters (not SETOF), like the original's
//! `(ret_code, ret_note, ...)` functions.
//!
//! pgrx can only emit `RETURNS TABLE(...)` (a set) for multi-column results, so the
//! pgq_node / pgq_ext / pgq_coop functions are `#[pg_extern(sql = false)]` and their
//! `CREATE FUNCTION` statements (with the exact OUT columns) live in
//! sql/pgq_node_functions.sql. The row is formed against the call's result tuple
//! descriptor, so the column types pushed here must match the SQL declaration.

use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable,
};
use pgrx::prelude::*;

/// A ret_note: a text, or NULL.
pub trait Note {
    fn note(self) -> Option<String>;
}

impl Note for &str {
    fn note(self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Note for String {
    fn note(self) -> Option<String> {
        Some(self)
    }
}

impl Note for Option<String> {
    fn note(self) -> Option<String> {
        self
    }
}

/// The OUT columns: each value (None = NULL) with the type OID of the Rust value.
#[derive(Default)]
pub struct OutRec(Vec<(Option<pg_sys::Datum>, pg_sys::Oid)>);

impl OutRec {
    pub fn new() -> Self {
        OutRec(Vec::with_capacity(16))
    }

    /// Append the next OUT column (`None` = NULL).
    pub fn col<T: IntoDatum>(mut self, v: Option<T>) -> Self {
        self.0.push((v.and_then(|v| v.into_datum()), T::type_oid()));
        self
    }

    /// `(ret_code, ret_note)`.
    pub fn ret(code: i32, note: impl Note) -> Self {
        OutRec::new().col(Some(code)).col(note.note())
    }

    /// `(ret_code, NULL ret_note)`.
    pub fn ret_null_note(code: i32) -> Self {
        OutRec::new().col(Some(code)).col(None::<String>)
    }

    /// Pad with NULLs up to `n` columns (NULLs of any declared type).
    pub fn pad(mut self, n: usize) -> Self {
        while self.0.len() < n {
            self.0.push((None, pg_sys::InvalidOid));
        }
        self
    }
}

/// Whether a value of type `ours` may stand in a column declared `declared`: the same
/// type, or binary-coercible to it (text for varchar), or a padding NULL.
fn type_fits(ours: pg_sys::Oid, declared: pg_sys::Oid) -> bool {
    // SAFETY: IsBinaryCoercible is a syscache lookup on two type OIDs.
    ours == pg_sys::InvalidOid
        || ours == declared
        || unsafe { pg_sys::IsBinaryCoercible(ours, declared) }
}

fn type_name(oid: pg_sys::Oid) -> String {
    // SAFETY: format_type_be returns a palloc'd NUL-terminated name (or "???" for an
    // unknown OID), copied out at once.
    unsafe {
        std::ffi::CStr::from_ptr(pg_sys::format_type_be(oid))
            .to_string_lossy()
            .into_owned()
    }
}

// SAFETY: box_into returns a composite Datum built for the function's own declared
// result type, which is what BoxRet requires.
unsafe impl BoxRet for OutRec {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        // SAFETY: `fcinfo` is the live call frame pgrx hands us; get_call_result_type
        // fills `tupdesc` from the declaration (checked non-null and composite before
        // use); the column count is checked against ours, so heap_form_tuple reads
        // exactly `natts` values and nulls from the two vectors, which outlive the call;
        // every column's Rust type is checked against the declared type first (42804
        // on a mismatch), so heap_form_tuple never reads a Datum as another type.
        unsafe {
            let raw = fcinfo.as_mut_ptr();
            let mut tupdesc: pg_sys::TupleDesc = std::ptr::null_mut();
            let class = pg_sys::get_call_result_type(raw, std::ptr::null_mut(), &mut tupdesc);
            if class != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE || tupdesc.is_null() {
                crate::errors::raise_internal("pgq: function must be declared to return a record");
            }
            let tupdesc = pg_sys::BlessTupleDesc(tupdesc);
            let natts = (*tupdesc).natts as usize;
            if natts != self.0.len() {
                crate::errors::raise_code(
                    PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                    format!(
                        "pgq: result has {} columns, declaration has {natts}",
                        self.0.len()
                    ),
                );
            }
            for (i, (_, ours)) in self.0.iter().enumerate() {
                let att = (*tupdesc).attrs.as_slice(natts)[i];
                if !type_fits(*ours, att.atttypid) {
                    let col = std::ffi::CStr::from_ptr(att.attname.data.as_ptr()).to_string_lossy();
                    crate::errors::PgqError::new(
                        crate::errors::SqlState::DATATYPE_MISMATCH,
                        format!(
                            "pgq: result column {} ({col}) is {}, the declaration says {}",
                            i + 1,
                            type_name(*ours),
                            type_name(att.atttypid)
                        ),
                    )
                    .report();
                }
            }
            let mut values: Vec<pg_sys::Datum> = Vec::with_capacity(natts);
            let mut nulls: Vec<bool> = Vec::with_capacity(natts);
            for (v, _) in &self.0 {
                match v {
                    Some(d) => {
                        values.push(*d);
                        nulls.push(false);
                    }
                    None => {
                        values.push(pg_sys::Datum::from(0usize));
                        nulls.push(true);
                    }
                }
            }
            let tuple = pg_sys::heap_form_tuple(tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
            fcinfo.return_raw_datum(pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data))
        }
    }
}

// SAFETY: the SQL mapping is `record`, which is what box_into returns.
unsafe impl SqlTranslatable for OutRec {
    const TYPE_IDENT: &'static str = "pgq::outrec::OutRec";
    const TYPE_ORIGIN: pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin =
        pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> =
        Err(ArgumentError::NotValidAsArgument("OutRec"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("record")));
}
