//! Names stored in `pgq.queue` (queue_data_pfx, queue_event_seq, queue_tick_seq) are
//! data, written by create_queue but changeable by any pgq_admin. They are read the way
//! `pgq.quote_fqname` reads them — `schema.name` split at the first dot, each part taken
//! literally, no dot meaning schema `public` — and resolved through the catalog, never
//! parsed as SQL: a malformed value resolves to nothing instead of raising a syntax
//! error (which would stop the ticker for every queue) or injecting SQL.

use pgrx::prelude::*;
use std::ffi::CString;

/// A name's bytes (server encoding) for a message: as is when they are UTF-8, else
/// ASCII kept and every other byte written `\xNN` (messages cross pgrx as UTF-8).
pub fn display(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => b
            .iter()
            .map(|&c| {
                if c.is_ascii() {
                    (c as char).to_string()
                } else {
                    format!("\\x{c:02x}")
                }
            })
            .collect(),
    }
}

/// This session's `quote_all_identifiers` setting.
pub fn quote_all_identifiers() -> bool {
    // SAFETY: reading a GUC variable of this backend.
    unsafe { pg_sys::quote_all_identifiers }
}

/// `quote_ident` as PostgreSQL's quote_identifier gives it in this session
/// (logic/quote.rs, with `quote_all_identifiers`).
pub fn quote_ident(s: &str) -> String {
    crate::logic::quote::ident(s, quote_all_identifiers())
}

/// A stored `schema.name` quoted as `pgq.quote_fqname` does it.
pub fn quote_fqname(name: &str) -> String {
    crate::logic::quote::fqname(name, quote_all_identifiers())
}

/// `schema.relation` quoted, as PostgreSQL's quote_qualified_identifier.
pub fn quote_qualified(schema: &[u8], rel: &[u8]) -> Vec<u8> {
    crate::logic::quote::qualified(schema, rel, quote_all_identifiers())
}

/// A stored name's schema and relation parts: split at the first dot, no dot meaning
/// `public` (pgq.quote_fqname's rule).
pub fn parts(name: &str) -> (&str, &str) {
    name.split_once('.').unwrap_or(("public", name))
}

/// The two parts of a stored name, or None when one is empty or holds a NUL.
pub fn split_stored(name: &str) -> Option<(CString, CString)> {
    let (schema, rel) = parts(name);
    if schema.is_empty() || rel.is_empty() {
        return None;
    }
    Some((CString::new(schema).ok()?, CString::new(rel).ok()?))
}

/// The relation a stored name denotes, if any.
pub fn stored_relid(name: &str) -> Option<pg_sys::Oid> {
    let (schema, rel) = split_stored(name)?;
    // SAFETY: syscache lookups with NUL-terminated names; missing_ok, so a name that
    // denotes nothing gives InvalidOid rather than an ERROR.
    unsafe {
        let ns = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        if ns == pg_sys::InvalidOid {
            return None;
        }
        let oid = pg_sys::get_relname_relid(rel.as_ptr(), ns);
        (oid != pg_sys::InvalidOid).then_some(oid)
    }
}

/// The sequence a stored name denotes; None when it denotes none, or not a sequence.
pub fn stored_seqid(name: &str) -> Option<pg_sys::Oid> {
    let oid = stored_relid(name)?;
    // SAFETY: relkind lookup of an existing relation OID.
    let kind = unsafe { pg_sys::get_rel_relkind(oid) } as u8;
    (kind == pg_sys::RELKIND_SEQUENCE).then_some(oid)
}
