//! RAII wrappers for the backend resources that the insert and trigger paths hold:
//! opened relations and indexes, kept SPI plans, memory contexts (and a switch into
//! one), and user-id switches. Each wrapper is a pointer-sized value whose `Drop`
//! makes the same call the code used to make by hand, so they cost nothing on the hot
//! paths; what they add is that the release also happens when an ERROR unwinds
//! through the frame that holds them.
//!
//! Errors and unwinding: every `pg_sys` call goes through pgrx's FFI boundary, which
//! catches a PostgreSQL ERROR (longjmp), copies it into a Rust value, flushes the
//! error state and panics; the panic unwinds the Rust frames (running these `Drop`s)
//! up to the `#[pg_guard]` entry point, which raises the ERROR again in PostgreSQL.
//! So a `Drop` here runs *before* the (sub)transaction abort, with the resource owner
//! and memory contexts still as they were when the resource was taken, exactly like
//! the cleanup in a PostgreSQL `PG_CATCH` block before `PG_RE_THROW`. The calls made
//! in `Drop` (relation_close, SPI_freeplan, MemoryContextDelete,
//! SetUserIdAndSecContext) do not raise in practice; if one did while unwinding, Rust
//! would abort the process, which the postmaster treats as a backend crash.
//!
//! None of the guards is `Send` or `Sync`: a backend is one thread, and these values
//! belong to it.

use pgrx::pg_sys;
use std::ffi::{c_char, CStr};
use std::marker::PhantomData;

/// Marker that makes a guard neither `Send` nor `Sync`.
type NotSend = PhantomData<*const ()>;

// ---------------------------------------------------------------------------------
// Relations and indexes
// ---------------------------------------------------------------------------------

/// An opened relation (or index), closed on drop.
pub struct OpenRel {
    rel: pg_sys::Relation,
    /// the lock released at close (NoLock: kept until the end of the transaction)
    close_lock: pg_sys::LOCKMODE,
    index: bool,
    _not_send: NotSend,
}

impl OpenRel {
    /// `relation_open(relid, lock)`: any relkind. Closed on drop, releasing
    /// `close_lock` (`NoLock` keeps the lock to the end of the transaction).
    pub fn relation(relid: pg_sys::Oid, lock: u32, close_lock: u32) -> OpenRel {
        // SAFETY: relation_open raises an ERROR (never returns NULL) for a missing
        // relation; the returned relcache entry stays valid while we hold the
        // reference, which only Drop gives back.
        let rel = unsafe { pg_sys::relation_open(relid, lock as pg_sys::LOCKMODE) };
        OpenRel {
            rel,
            close_lock: close_lock as pg_sys::LOCKMODE,
            index: false,
            _not_send: PhantomData,
        }
    }

    /// `index_open(relid, lock)`: an index (ERROR otherwise). Closed with
    /// `index_close` on drop, releasing `close_lock`.
    pub fn index(relid: pg_sys::Oid, lock: u32, close_lock: u32) -> OpenRel {
        // SAFETY: as in `relation`; index_open also checks the relkind.
        let rel = unsafe { pg_sys::index_open(relid, lock as pg_sys::LOCKMODE) };
        OpenRel {
            rel,
            close_lock: close_lock as pg_sys::LOCKMODE,
            index: true,
            _not_send: PhantomData,
        }
    }

    /// The relcache entry, valid while `self` lives.
    pub fn as_ptr(&self) -> pg_sys::Relation {
        self.rel
    }

    /// The relation as a [`RelRef`] for as long as `self` is borrowed.
    pub fn rel_ref(&self) -> RelRef<'_> {
        // SAFETY: we hold the relation open until Drop, which the borrow precedes.
        unsafe { RelRef::new(self.rel) }
    }
}

impl Drop for OpenRel {
    fn drop(&mut self) {
        // SAFETY: the reference was taken by relation_open/index_open in this
        // transaction and is given back exactly once, here.
        unsafe {
            if self.index {
                pg_sys::index_close(self.rel, self.close_lock);
            } else {
                pg_sys::relation_close(self.rel, self.close_lock);
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Kept SPI plans
// ---------------------------------------------------------------------------------

/// An SPI plan saved with `SPI_keepplan` (it lives in its own memory context under
/// CacheMemoryContext and is revalidated by the plan cache), freed on drop. Shared
/// through `Rc` by the caches, so a plan that a cache drops while it runs stays alive
/// until the run is over.
pub struct KeptPlan {
    plan: pg_sys::SPIPlanPtr,
    /// parameters the plan was prepared with
    nargs: usize,
    _not_send: NotSend,
}

impl KeptPlan {
    /// Prepare and keep `sql` with parameter types `types`. Must be called inside an
    /// SPI connection (`client` is the proof). Raises an internal ERROR naming `what`
    /// when SPI returns no plan (a syntax error raises by itself).
    pub fn prepare(
        _client: &pgrx::spi::SpiClient<'_>,
        sql: &CStr,
        types: &[pg_sys::Oid],
        what: &str,
    ) -> KeptPlan {
        let mut types = types.to_vec();
        // SAFETY: inside an SPI connection (the client borrow); `sql` is
        // NUL-terminated and `types` holds as many OIDs as we pass.
        let plan =
            unsafe { pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr()) };
        if plan.is_null() {
            crate::errors::raise_internal(format!("pgq: could not prepare {what}"));
        }
        // SAFETY: a valid unsaved plan from SPI_prepare; after this it no longer
        // belongs to the SPI procedure context and only our Drop frees it.
        let rc = unsafe { pg_sys::SPI_keepplan(plan) };
        if rc != 0 {
            crate::errors::raise_internal(format!("pgq: could not keep the plan of {what}"));
        }
        KeptPlan {
            plan,
            nargs: types.len(),
            _not_send: PhantomData,
        }
    }

    /// `SPI_execute_plan` with `values`/`nulls` (one per parameter, `'n'` for NULL);
    /// the SPI return code. A `snapshot` runs the plan with that snapshot
    /// (`SPI_execute_snapshot`, read-only) instead of the transaction's.
    pub fn execute(
        &self,
        _client: &pgrx::spi::SpiClient<'_>,
        values: &mut [pg_sys::Datum],
        nulls: &[c_char],
        read_only: bool,
        count: i64,
    ) -> i32 {
        self.check_args(values, nulls);
        // SAFETY: inside an SPI connection; the plan is alive (we own it) and was
        // prepared with as many parameters as `values`/`nulls` hold (checked); the
        // callers pass datums of the declared types, alive in the current context.
        unsafe {
            pg_sys::SPI_execute_plan(
                self.plan,
                values.as_mut_ptr(),
                nulls.as_ptr(),
                read_only,
                count,
            )
        }
    }

    /// As [`execute`](Self::execute), read-only, with the latest snapshot rather than
    /// the transaction snapshot.
    pub fn execute_latest(
        &self,
        _client: &pgrx::spi::SpiClient<'_>,
        values: &mut [pg_sys::Datum],
        nulls: &[c_char],
        count: i64,
    ) -> i32 {
        self.check_args(values, nulls);
        // SAFETY: as in `execute`; GetLatestSnapshot returns a static snapshot valid
        // until the next call, and SPI registers it for the duration of the run.
        unsafe {
            let snap = pg_sys::GetLatestSnapshot();
            pg_sys::SPI_execute_snapshot(
                self.plan,
                values.as_mut_ptr(),
                nulls.as_ptr(),
                snap,
                std::ptr::null_mut(),
                true,
                false,
                count,
            )
        }
    }
}

impl KeptPlan {
    fn check_args(&self, values: &[pg_sys::Datum], nulls: &[c_char]) {
        if values.len() != self.nargs || nulls.len() != self.nargs {
            crate::errors::raise_internal(format!(
                "pgq: a plan of {} parameters run with {}",
                self.nargs,
                values.len()
            ));
        }
    }
}

impl Drop for KeptPlan {
    fn drop(&mut self) {
        // SAFETY: a plan made by SPI_keepplan and owned only by this value. Callers
        // drop cached plans only outside SPI runs (never from invalidation
        // callbacks), and SPI_freeplan does not need an SPI connection.
        unsafe { pg_sys::SPI_freeplan(self.plan) };
    }
}

/// Processed row count and column `col` (1-based) of the first row of the last SPI
/// result: `None` when there is no row, else the datum and its null flag. The datum
/// points into SPI's result memory (valid until the SPI connection ends).
pub fn spi_first_value(
    _client: &pgrx::spi::SpiClient<'_>,
    col: i32,
) -> Option<(pg_sys::Datum, bool)> {
    // SAFETY: inside an SPI connection, right after a successful execution: when
    // SPI_processed > 0, SPI_tuptable holds that many tuples with its descriptor;
    // SPI_getbinval checks `col` against the descriptor (ERROR when out of range).
    unsafe {
        if pg_sys::SPI_processed == 0 || pg_sys::SPI_tuptable.is_null() {
            return None;
        }
        let tt = pg_sys::SPI_tuptable;
        let mut isnull = false;
        let d = pg_sys::SPI_getbinval(*(*tt).vals, (*tt).tupdesc, col, &mut isnull);
        Some((d, isnull))
    }
}

/// The text output of column `col` (1-based) of the first row of the last SPI result
/// (`None` for NULL or no row), copied out.
pub fn spi_first_text(_client: &pgrx::spi::SpiClient<'_>, col: i32) -> Option<Vec<u8>> {
    // SAFETY: as in `spi_first_value`; SPI_getvalue returns NULL for a NULL value or
    // a palloc'd NUL-terminated string, copied before anything resets its context.
    unsafe {
        if pg_sys::SPI_processed == 0 || pg_sys::SPI_tuptable.is_null() {
            return None;
        }
        let tt = pg_sys::SPI_tuptable;
        let p = pg_sys::SPI_getvalue(*(*tt).vals, (*tt).tupdesc, col);
        (!p.is_null()).then(|| CStr::from_ptr(p).to_bytes().to_vec())
    }
}

/// A relation that someone (the trigger manager, or an [`OpenRel`]) keeps open for
/// `'a`: its relcache entry, descriptor and attributes stay valid for that long.
#[derive(Clone, Copy)]
pub struct RelRef<'a> {
    rel: pg_sys::Relation,
    _open: PhantomData<&'a pg_sys::RelationData>,
}

impl<'a> RelRef<'a> {
    /// # Safety
    /// `rel` is an open relation that stays open for `'a`.
    pub unsafe fn new(rel: pg_sys::Relation) -> RelRef<'a> {
        RelRef {
            rel,
            _open: PhantomData,
        }
    }

    pub fn as_ptr(&self) -> pg_sys::Relation {
        self.rel
    }

    pub fn relid(&self) -> pg_sys::Oid {
        // SAFETY: an open relation (the type's invariant).
        unsafe { (*self.rel).rd_id }
    }

    /// The attributes of the relation's tuple descriptor.
    pub fn attributes(&self) -> &'a [pg_sys::FormData_pg_attribute] {
        // SAFETY: an open relation's descriptor holds `natts` attributes, valid while
        // the relation is open ('a).
        unsafe {
            let desc = (*self.rel).rd_att;
            std::slice::from_raw_parts((*desc).attrs.as_ptr(), (*desc).natts as usize)
        }
    }

    /// The OIDs of the relation's indexes (RelationGetIndexList, freed here).
    pub fn index_oids(&self) -> Vec<pg_sys::Oid> {
        // SAFETY: an open relation; the list is a palloc'd (possibly NIL) OID list
        // that we own and free after copying it.
        unsafe {
            let list = pg_sys::RelationGetIndexList(self.rel);
            if list.is_null() {
                return Vec::new();
            }
            let oids = (0..(*list).length as usize)
                .map(|k| (*(*list).elements.add(k)).oid_value)
                .collect();
            pg_sys::list_free(list);
            oids
        }
    }
}

/// The name of an attribute (bytes in the server encoding).
pub fn att_name(att: &pg_sys::FormData_pg_attribute) -> &[u8] {
    // SAFETY: attname is a NUL-terminated NameData inside the attribute.
    unsafe { CStr::from_ptr(att.attname.data.as_ptr()) }.to_bytes()
}

/// The type of column `col` (1-based) of the last SPI result (InvalidOid when there
/// is no result or no such column).
pub fn spi_result_type(_client: &pgrx::spi::SpiClient<'_>, col: i32) -> pg_sys::Oid {
    // SAFETY: inside an SPI connection; SPI_gettypeid checks `col` against the
    // result's descriptor (InvalidOid and SPI_result set when out of range).
    unsafe {
        if pg_sys::SPI_tuptable.is_null() {
            return pg_sys::InvalidOid;
        }
        pg_sys::SPI_gettypeid((*pg_sys::SPI_tuptable).tupdesc, col)
    }
}

/// Rows processed by the last SPI execution.
pub fn spi_processed(_client: &pgrx::spi::SpiClient<'_>) -> u64 {
    // SAFETY: reading SPI's global counter inside a connection.
    unsafe { pg_sys::SPI_processed }
}

// ---------------------------------------------------------------------------------
// Memory contexts
// ---------------------------------------------------------------------------------

/// A memory context we created, deleted on drop (with everything allocated in it).
pub struct OwnedContext {
    cxt: pg_sys::MemoryContext,
    _not_send: NotSend,
}

impl OwnedContext {
    /// An AllocSet context under `parent` with the given block sizes.
    pub fn new(
        parent: pg_sys::MemoryContext,
        name: &'static CStr,
        min: u32,
        init: u32,
        max: u32,
    ) -> OwnedContext {
        // SAFETY: `parent` is a live context (the callers pass TopMemoryContext or
        // CacheMemoryContext); the name is static, as the API requires.
        let cxt = unsafe {
            pg_sys::AllocSetContextCreateExtended(
                parent,
                name.as_ptr(),
                min as usize,
                init as usize,
                max as usize,
            )
        };
        OwnedContext {
            cxt,
            _not_send: PhantomData,
        }
    }

    pub fn as_ptr(&self) -> pg_sys::MemoryContext {
        self.cxt
    }

    /// Make this the current context until the returned guard drops.
    pub fn switch_to(&self) -> ContextSwitch<'_> {
        // SAFETY: switching to a live context; the guard switches back.
        let old = unsafe { pg_sys::MemoryContextSwitchTo(self.cxt) };
        ContextSwitch {
            old,
            _cxt: PhantomData,
        }
    }
}

impl Drop for OwnedContext {
    fn drop(&mut self) {
        // SAFETY: the context is ours; whoever points into it (FmgrInfos, IndexInfos)
        // is owned by the same value that owns this guard and dies with it. A
        // ContextSwitch into it borrows it, so it is no longer current here.
        unsafe { pg_sys::MemoryContextDelete(self.cxt) };
    }
}

/// Make `cxt`, a context this code does not own (an executor state's, say), the current
/// context until the returned guard drops, also when an ERROR unwinds through it.
///
/// # Safety
/// `cxt` must stay alive until the guard drops.
pub unsafe fn switch_to_context(cxt: pg_sys::MemoryContext) -> ContextSwitch<'static> {
    // SAFETY: the caller keeps `cxt` alive for the guard's life.
    let old = unsafe { pg_sys::MemoryContextSwitchTo(cxt) };
    ContextSwitch {
        old,
        _cxt: PhantomData,
    }
}

/// Restores the previous current memory context on drop.
pub struct ContextSwitch<'a> {
    old: pg_sys::MemoryContext,
    _cxt: PhantomData<&'a OwnedContext>,
}

impl Drop for ContextSwitch<'_> {
    fn drop(&mut self) {
        // SAFETY: `old` was current when the guard was made and outlives it (contexts
        // are deleted parents-last, and ours is a child of a long-lived one).
        unsafe { pg_sys::MemoryContextSwitchTo(self.old) };
    }
}

// ---------------------------------------------------------------------------------
// User-id switches
// ---------------------------------------------------------------------------------

/// Runs code as another role, the way a SECURITY DEFINER function does (with
/// SECURITY_LOCAL_USERID_CHANGE), and restores the previous user id and security
/// context on drop: at the end of the scope, and when an ERROR unwinds through it.
///
/// On an ERROR the restore runs during unwinding, before the (sub)transaction abort;
/// the abort then sets the user id and security context saved at the start of the
/// (sub)transaction, as it always does. The two do not conflict: the value we restore
/// is the one the caller had, which is at or inside the same (sub)transaction, so the
/// abort's value is the final one, and anything that runs between the unwinding and
/// the abort (other `Drop`s, a Rust catch of the error) runs as the caller, not as
/// the role we switched to.
pub struct UserSwitch {
    uid: pg_sys::Oid,
    sec_context: i32,
    _not_send: NotSend,
}

impl UserSwitch {
    pub fn to(role: pg_sys::Oid) -> UserSwitch {
        let mut uid = pg_sys::InvalidOid;
        let mut sec_context = 0;
        // SAFETY: reads and sets two backend variables (no catalog access, no ERROR).
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut uid, &mut sec_context);
            pg_sys::SetUserIdAndSecContext(
                role,
                sec_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            );
        }
        UserSwitch {
            uid,
            sec_context,
            _not_send: PhantomData,
        }
    }
}

impl Drop for UserSwitch {
    fn drop(&mut self) {
        // SAFETY: sets the two backend variables back to the values read in `to`.
        unsafe { pg_sys::SetUserIdAndSecContext(self.uid, self.sec_context) };
    }
}
