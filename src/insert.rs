//! The producer hot path: `insert_event` / `insert_event_raw`.
//!
//! Per backend we cache, per queue name, what an insert needs (queue id, current
//! event table, event sequence, insert flags) and, per event table, its shape (see
//! [`Shape`]) and a kept SPI plan for the INSERT. A statement trigger on `pgq.queue`
//! sends a relcache invalidation for `pgq.queue` whenever a queue row changes
//! (rotation, config, drop); our relcache callback marks the queue cache stale.
//!
//! Ordering that keeps rotation safe: the transaction id is assigned *before* pending
//! invalidations are accepted and the cache consulted. A rotation we have not seen yet
//! then has its step2 txid above ours, which is exactly the case in which writing to the
//! previous table is still read by consumers (spec §10). A refill reads `pgq.queue`
//! with the latest snapshot, never an older transaction snapshot.
//!
//! Text is handled as bytes in the server encoding throughout ([`TextArg`] for the SQL
//! arguments, `&[u8]` in [`NewEvent`]), so any server encoding works byte for byte.
//!
//! Replaced functions: the original's triggers call `pgq.insert_event` (7 arguments)
//! by name, and its `insert_event` forms call `pgq.insert_event_raw`. While both are
//! the extension's own definitions we insert directly; when one was replaced (see
//! [`replaced`]) it is called through SQL, the way the original calls it.

use crate::errors::{raise, raise_code, raise_internal};
use crate::guards::{
    att_name, spi_first_value, spi_processed, spi_result_type, KeptPlan, OpenRel, OwnedContext,
    UserSwitch,
};
use pgrx::callconv::{Arg, ArgAbi};
use pgrx::nullable::Nullable;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable,
};
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_char;
use std::rc::Rc;

unsafe extern "C-unwind" {
    // commands/sequence.h; not in pgrx's bindings. Called through
    // pg_guard_ffi_boundary so an ERROR inside unwinds properly.
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

fn nextval(seq: pg_sys::Oid) -> i64 {
    // SAFETY: nextval_internal takes an OID (an ERROR for a missing or non-sequence
    // relation); the boundary turns an ERROR into a Rust unwind as for pg_sys calls.
    unsafe { pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| nextval_internal(seq, false)) }
}

// ---------------------------------------------------------------------------------
// Text as bytes
// ---------------------------------------------------------------------------------

/// A `text` argument read as its bytes in the server encoding (pgrx's `&str` insists
/// on UTF-8, which a LATIN1 or SQL_ASCII database does not give). Declared as `text`
/// in SQL.
#[derive(Clone, Copy)]
pub struct TextArg<'a>(pub &'a [u8]);

impl<'a> FromDatum for TextArg<'a> {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null || datum.is_null() {
            return None;
        }
        // SAFETY: a non-null text datum; the detoasted copy (if any) lives in the
        // function call's memory context, which outlives the call's use of it.
        unsafe {
            let p = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
            let len = pgrx::varlena::varsize_any_exhdr(p);
            let data = pgrx::varlena::vardata_any(p) as *const u8;
            Some(TextArg(std::slice::from_raw_parts(data, len)))
        }
    }
}

// SAFETY: unboxes a text datum with FromDatum above; NULL is handled by
// unbox_nullable_arg (by-reference type).
unsafe impl<'fcx> ArgAbi<'fcx> for TextArg<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: the caller guarantees a text argument.
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: as above; NULL gives Nullable::Null.
        unsafe { arg.unbox_arg_using_from_datum::<TextArg<'fcx>>() }.into()
    }
}

// SAFETY: the SQL type is text, which is what FromDatum reads.
unsafe impl SqlTranslatable for TextArg<'_> {
    const TYPE_IDENT: &'static str = "pgq::insert::TextArg";
    const TYPE_ORIGIN: pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin =
        pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("text"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("text")));
}

/// The bytes of an optional text argument.
pub fn arg_bytes<'a>(a: Option<TextArg<'a>>) -> Option<&'a [u8]> {
    a.map(|t| t.0)
}

/// A text datum built with [`text_datum`], as an SPI argument of type text.
pub struct TextDatum(pub pg_sys::Datum);

impl IntoDatum for TextDatum {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::TEXTOID
    }
}

/// A text datum (palloc'd in the current memory context) holding `b` as it is.
pub fn text_datum(b: &[u8]) -> pg_sys::Datum {
    // SAFETY: copies `b.len()` bytes from a valid slice; lengths of text values are
    // below 1 GB.
    unsafe {
        pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
            b.as_ptr() as *const c_char,
            b.len() as i32,
        ))
    }
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

// ---------------------------------------------------------------------------------
// Queue cache
// ---------------------------------------------------------------------------------

pub struct QueueInfo {
    pub queue_id: i32,
    /// `queue_data_pfx || '_' || queue_cur_table`
    pub table: Vec<u8>,
    /// that name resolved (InvalidOid: no such relation), and the NAME_GENERATION
    /// it was resolved in: a rename, drop or create of any relation resolves it again
    /// (an event table replaced by a view or a partitioned table is followed, as the
    /// original's plan, which names the table, follows it)
    table_oid: Cell<(u64, pg_sys::Oid)>,
    pub event_seq: pg_sys::Oid,
    pub disable_insert: bool,
    pub per_tx_limit: Option<i32>,
}

impl QueueInfo {
    /// The current event table's OID, resolved again after relation name changes.
    pub fn table_oid(&self) -> pg_sys::Oid {
        let (generation, oid) = self.table_oid.get();
        let now = NAME_GENERATION.get();
        if generation == now {
            return oid;
        }
        let oid = resolve_relation(&self.table);
        self.table_oid.set((now, oid));
        oid
    }
}

/// A relation name (possibly qualified) resolved like to_regclass: InvalidOid when
/// there is no such relation.
fn resolve_relation(name: &[u8]) -> pg_sys::Oid {
    let Ok(c) = std::ffi::CString::new(name) else {
        return pg_sys::InvalidOid;
    };
    // SAFETY: parses a qualified name (an ERROR on bad syntax, as to_regclass) and
    // looks it up without a lock; the caller locks when it opens the relation.
    unsafe {
        let list = pg_sys::stringToQualifiedNameList(c.as_ptr());
        let rv = pg_sys::makeRangeVarFromNameList(list);
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    }
}

/// An INSERT plan and the quoted table name it was made with.
type NamedPlan = (Vec<u8>, Rc<KeptPlan>);

/// A kept plan slot of the backend (filled on first use).
type PlanSlot = RefCell<Option<Rc<KeptPlan>>>;

// Backend-local state. A backend runs one thread, and the invalidation callbacks run
// on it, so `thread_local!` is the right home: with `const` initialisers of types
// without `Drop` each access is a plain thread-local load or store (no lazy
// initialisation, no destructor registration), as cheap as the `static mut` it
// replaces, and `Cell`/`RefCell` make the borrow rules explicit.
thread_local! {
    static QUEUES: RefCell<HashMap<Vec<u8>, Rc<QueueInfo>>> = RefCell::new(HashMap::new());
    /// per event table: the quoted name the plan was made with, and the plan
    static INSERT_PLANS: RefCell<HashMap<pg_sys::Oid, NamedPlan>> = RefCell::new(HashMap::new());
    static LOOKUP_PLAN: PlanSlot = const { RefCell::new(None) };
    static TX_COUNTS: RefCell<HashMap<i32, (pg_sys::TransactionId, i64)>> = RefCell::new(HashMap::new());
    /// pgq.queue's OID and owner; InvalidOid: resolve again
    static QUEUE_REL: Cell<(pg_sys::Oid, pg_sys::Oid)> =
        const { Cell::new((pg_sys::InvalidOid, pg_sys::InvalidOid)) };
    /// the queue cache and the INSERT plans must be dropped before the next use
    static STALE: Cell<bool> = const { Cell::new(false) };
    /// Bumped when any relation is created, dropped or renamed (pg_class name cache).
    static NAME_GENERATION: Cell<u64> = const { Cell::new(0) };
    /// Bumped by every relcache invalidation this backend sees (in `relcache_callback`):
    /// any change to any table may be a change to an event table or its indexes, and
    /// rebuilding a shape is cheap.
    static SHAPE_GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// pg_class name cache callback: a relation name may now mean another relation.
#[pg_guard]
unsafe extern "C-unwind" fn relname_callback(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    NAME_GENERATION.set(NAME_GENERATION.get().wrapping_add(1));
}

/// Relcache callback: only flags the caches; it may run in the middle of an SPI call,
/// so it must not free anything.
#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    // any relation may be an event table or one of its indexes: shapes are rebuilt
    SHAPE_GENERATION.set(SHAPE_GENERATION.get().wrapping_add(1));
    if relid == pg_sys::InvalidOid || relid == QUEUE_REL.get().0 {
        STALE.set(true);
        // pgq.queue itself may have been dropped (DROP EXTENSION): resolve it again
        QUEUE_REL.set((pg_sys::InvalidOid, pg_sys::InvalidOid));
    }
}

/// pg_proc callback: pgq.insert_event / pgq.insert_event_raw may have been replaced.
#[pg_guard]
unsafe extern "C-unwind" fn proc_callback(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    REPLACED.with(|r| r.set(None));
}

pub fn init() {
    // SAFETY: registering callbacks at load time (from _PG_init), as PostgreSQL's
    // own modules do; the callbacks are `#[pg_guard]` functions that only set flags.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0));
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::RELNAMENSP as i32,
            Some(relname_callback),
            pg_sys::Datum::from(0),
        );
        for cache in [
            pg_sys::SysCacheIdentifier::PROCOID,
            // the owner check compares with pg_extension.extowner; a role rename or
            // drop also resets it
            pg_sys::SysCacheIdentifier::AUTHOID,
        ] {
            pg_sys::CacheRegisterSyscacheCallback(
                cache as i32,
                Some(proc_callback),
                pg_sys::Datum::from(0),
            );
        }
    }
}

/// Called by the `pgq.queue` statement trigger.
pub fn invalidate_queue_cache(queue_relid: pg_sys::Oid) {
    // SAFETY: queues a relcache invalidation of an existing relation (the trigger's
    // own table), sent at commit.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(queue_relid) };
    // our own session sees its change at the next command as well
    STALE.set(true);
}

pub fn is_replica_role() -> bool {
    // SAFETY: reading a GUC variable of this backend.
    unsafe { pg_sys::SessionReplicationRole == pg_sys::SESSION_REPLICATION_ROLE_REPLICA as i32 }
}

/// The kept plan in `slot`, prepared from `sql` on first use.
fn slot_plan(
    slot: &'static std::thread::LocalKey<PlanSlot>,
    client: &pgrx::spi::SpiClient<'_>,
    sql: &std::ffi::CStr,
    types: &[pg_sys::Oid],
    what: &str,
) -> Rc<KeptPlan> {
    if let Some(p) = slot.with(|c| c.borrow().clone()) {
        return p;
    }
    let p = Rc::new(KeptPlan::prepare(client, sql, types, what));
    slot.with(|c| *c.borrow_mut() = Some(p.clone()));
    p
}

/// Read one queue row with the latest snapshot (not the transaction's).
fn fetch_queue(name: &[u8]) -> Option<QueueInfo> {
    // read before the lookup, so that a change during it resolves the name again
    let generation = NAME_GENERATION.get();
    Spi::connect(|client| {
        let plan = slot_plan(
            &LOOKUP_PLAN,
            client,
            c"select queue_id, queue_data_pfx operator(pg_catalog.||) '_' operator(pg_catalog.||) queue_cur_table::text, \
                pg_catalog.to_regclass(queue_event_seq)::oid, queue_disable_insert, queue_per_tx_limit, \
                pg_catalog.to_regclass(queue_data_pfx operator(pg_catalog.||) '_' \
                operator(pg_catalog.||) queue_cur_table::text)::oid \
                from pgq.queue where queue_name operator(pg_catalog.=) $1",
            &[pg_sys::TEXTOID],
            "queue lookup",
        );
        let mut values = [text_datum(name)];
        let rc = plan.execute_latest(client, &mut values, &[b' ' as c_char], 1);
        if rc != pg_sys::SPI_OK_SELECT as i32 {
            raise(format!("pgq: queue lookup failed ({rc})"));
        }
        let get = |n: i32| spi_first_value(client, n);
        let (d, _) = get(1)?;
        // SAFETY (the from_datum calls below): each column is of the type the select
        // list above gives it (int4, text, oid, bool, int4, oid), read from the first
        // row of the result, which lives until the connection ends.
        let queue_id = unsafe { i32::from_datum(d, false) }.unwrap();
        let (d, n) = get(2)?;
        // SAFETY: as above (text); copied out before the connection ends.
        let table = unsafe { TextArg::from_datum(d, n) }
            .map(|t| t.0.to_vec())
            .unwrap_or_default();
        let (d, n) = get(3)?;
        // SAFETY: as above (oid).
        let event_seq = unsafe { pg_sys::Oid::from_datum(d, n) }.unwrap_or(pg_sys::InvalidOid);
        let (d, n) = get(4)?;
        // SAFETY: as above (bool).
        let disable_insert = unsafe { bool::from_datum(d, n) }.unwrap_or(false);
        let (d, n) = get(5)?;
        // SAFETY: as above (int4).
        let per_tx_limit = unsafe { i32::from_datum(d, n) };
        let (d, n) = get(6)?;
        // SAFETY: as above (oid).
        let table_oid = unsafe { pg_sys::Oid::from_datum(d, n) }.unwrap_or(pg_sys::InvalidOid);
        Some(QueueInfo {
            queue_id,
            table,
            table_oid: Cell::new((generation, table_oid)),
            event_seq,
            disable_insert,
            per_tx_limit,
        })
    })
}

/// pgq.queue's OID and owner (the extension owner), resolved once per backend and
/// again after pgq.queue's relcache entry was invalidated.
fn queue_rel() -> (pg_sys::Oid, pg_sys::Oid) {
    let known = QUEUE_REL.get();
    if known.0 != pg_sys::InvalidOid {
        return known;
    }
    let (oid, owner) = Spi::get_two::<pg_sys::Oid, pg_sys::Oid>(
        "select c.oid, c.relowner from pg_catalog.pg_class c where c.oid = 'pgq.queue'::pg_catalog.regclass",
    )
    .unwrap_or_else(|e| raise_internal(format!("pgq: resolving pgq.queue: {e}")));
    let rel = (
        oid.unwrap_or(pg_sys::InvalidOid),
        owner.unwrap_or(pg_sys::InvalidOid),
    );
    QUEUE_REL.set(rel);
    rel
}

/// Run `f` with the privileges of the extension owner (the owner of pgq.queue), the
/// way a SECURITY DEFINER function would, but without the per-call GUC work. The
/// previous user id is restored when `f` returns and when an ERROR unwinds out of it
/// (see [`UserSwitch`]).
pub fn as_owner<T>(f: impl FnOnce() -> T) -> T {
    let (_, owner) = queue_rel();
    let _as_owner = UserSwitch::to(owner);
    f()
}

/// Current info for a queue, from the cache when still valid.
pub fn lookup(name: &[u8]) -> Option<Rc<QueueInfo>> {
    queue_rel();
    // SAFETY: processes pending invalidation messages; our callbacks only set flags.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    if STALE.replace(false) {
        // dropping the maps' references is safe here (an insert in progress holds
        // its own Rc)
        let q = QUEUES.with(|q| std::mem::take(&mut *q.borrow_mut()));
        drop(q);
        // the statements name the tables: re-prepare after rotation, rename, drop
        let p = INSERT_PLANS.with(|p| std::mem::take(&mut *p.borrow_mut()));
        drop(p);
    }
    if let Some(qi) = QUEUES.with(|q| q.borrow().get(name).cloned()) {
        return Some(qi);
    }
    let qi = Rc::new(fetch_queue(name)?);
    QUEUES.with(|q| q.borrow_mut().insert(name.to_vec(), qi.clone()));
    Some(qi)
}

// ---------------------------------------------------------------------------------
// Replaced insert functions
// ---------------------------------------------------------------------------------

/// Which of the two functions the original calls by name are not the extension's own
/// definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replaced {
    /// pgq.insert_event(text x 7)
    pub insert_event: bool,
    /// pgq.insert_event_raw(...)
    pub insert_event_raw: bool,
}

thread_local! {
    /// None: not known (first use, or pg_proc changed since)
    static REPLACED: Cell<Option<Replaced>> = const { Cell::new(None) };
}

/// Whether `pgq.insert_event(7)` / `pgq.insert_event_raw` are still what the extension
/// created: a C function with our symbol in our module, owned by the extension's
/// owner, with the security mode the extension gave it. Anything else (another
/// language or body, another owner, missing) counts as replaced. Checked once, and
/// again after any pg_proc change.
pub fn replaced() -> Replaced {
    if let Some(r) = REPLACED.with(Cell::get) {
        return r;
    }
    let ours = |sig: &str, sym: &str, sd: bool| {
        format!(
            "coalesce((select p.prolang operator(pg_catalog.=) 13::pg_catalog.oid \
               and p.prosrc operator(pg_catalog.=) '{sym}' \
               and p.probin operator(pg_catalog.=) '$libdir/pgq' \
               and p.prosecdef operator(pg_catalog.=) {sd} \
               and p.proowner operator(pg_catalog.=) (select e.extowner from pg_catalog.pg_extension e \
                   where e.extname operator(pg_catalog.=) 'pgq') \
             from pg_catalog.pg_proc p \
             where p.oid operator(pg_catalog.=) pg_catalog.to_regprocedure('{sig}')::pg_catalog.oid), false)"
        )
    };
    let sql = format!(
        "select {}, {}",
        ours(
            "pgq.insert_event(text,text,text,text,text,text,text)",
            "insert_event7_wrapper",
            true
        ),
        ours(
            "pgq.insert_event_raw(text,bigint,timestamptz,integer,integer,text,text,text,text,text,text)",
            "insert_event_raw_wrapper",
            false
        )
    );
    let (ev, raw) = Spi::get_two::<bool, bool>(&sql)
        .unwrap_or_else(|e| raise_internal(format!("pgq: checking pgq.insert_event: {e}")));
    let r = Replaced {
        insert_event: !ev.unwrap_or(false),
        insert_event_raw: !raw.unwrap_or(false),
    };
    REPLACED.with(|c| c.set(Some(r)));
    r
}

thread_local! {
    static CALL7_PLAN: PlanSlot = const { RefCell::new(None) };
    static CALLRAW_PLAN: PlanSlot = const { RefCell::new(None) };
}

/// Run a kept `select <function call>` plan with text arguments; the int8 result.
fn call_plan(
    slot: &'static std::thread::LocalKey<PlanSlot>,
    sql: &std::ffi::CStr,
    args: &[Option<&[u8]>],
) -> Option<i64> {
    Spi::connect(|client| {
        let types = vec![pg_sys::TEXTOID; args.len()];
        // the Rc keeps the plan alive while it runs
        let plan = slot_plan(slot, client, sql, &types, "the insert_event call");
        let mut values: Vec<pg_sys::Datum> = args
            .iter()
            .map(|a| a.map_or(pg_sys::Datum::from(0), text_datum))
            .collect();
        let nulls: Vec<c_char> = args
            .iter()
            .map(|a| if a.is_some() { b' ' } else { b'n' } as c_char)
            .collect();
        let rc = plan.execute(client, &mut values, &nulls, false, 0);
        if rc != pg_sys::SPI_OK_SELECT as i32 {
            raise_internal(format!("pgq: insert_event call failed ({rc})"));
        }
        if spi_processed(client) != 1 {
            return None;
        }
        // a replacement declared with another result type gives no event id
        if spi_result_type(client, 1) != pg_sys::INT8OID {
            return None;
        }
        let (d, isnull) = spi_first_value(client, 1)?;
        // SAFETY: the result column is int8 (checked above).
        unsafe { i64::from_datum(d, isnull) }
    })
}

/// `pgq.insert_event(queue, type, data, extra1..4)` called by name through SQL, as the
/// current user (what the original's triggers and 3-argument form do).
pub fn call_insert_event_sql(
    queue: Option<&[u8]>,
    ev_type: Option<&[u8]>,
    ev_data: Option<&[u8]>,
    extra: [Option<&[u8]>; 4],
) -> Option<i64> {
    call_plan(
        &CALL7_PLAN,
        c"select pgq.insert_event($1, $2, $3, $4, $5, $6, $7)",
        &[
            queue, ev_type, ev_data, extra[0], extra[1], extra[2], extra[3],
        ],
    )
}

/// The body of `pgq.insert_event(7)` (the caller runs it as the extension owner):
/// `insert_event_raw(queue, NULL, now(), NULL, NULL, ...)`, by name through SQL when
/// that function was replaced, else directly.
pub fn insert_event7(
    queue: Option<&[u8]>,
    ev_type: Option<&[u8]>,
    ev_data: Option<&[u8]>,
    extra: [Option<&[u8]>; 4],
) -> Option<i64> {
    if replaced().insert_event_raw {
        return call_plan(
            &CALLRAW_PLAN,
            c"select pgq.insert_event_raw($1, null::pg_catalog.int8, pg_catalog.now(), \
              null::pg_catalog.int4, null::pg_catalog.int4, $2, $3, $4, $5, $6, $7)",
            &[
                queue, ev_type, ev_data, extra[0], extra[1], extra[2], extra[3],
            ],
        );
    }
    Some(insert_event_raw(
        queue,
        NewEvent {
            ev_id: None,
            ev_time: None,
            ev_owner: None,
            ev_retry: None,
            ev_type,
            ev_data,
            extra,
        },
    ))
}

// ---------------------------------------------------------------------------------
// insert_event_raw
// ---------------------------------------------------------------------------------

pub struct NewEvent<'a> {
    pub ev_id: Option<i64>,
    pub ev_time: Option<TimestampWithTimeZone>,
    pub ev_owner: Option<i32>,
    pub ev_retry: Option<i32>,
    pub ev_type: Option<&'a [u8]>,
    pub ev_data: Option<&'a [u8]>,
    pub extra: [Option<&'a [u8]>; 4],
}

/// Insert one event; the semantics of the original's `insert_event_raw`.
pub fn insert_event_raw(queue_name: Option<&[u8]>, ev: NewEvent<'_>) -> i64 {
    let Some(queue_name) = queue_name else {
        raise_internal("Queue name must not be NULL")
    };
    // Assign our txid first: see the module comment.
    // SAFETY: assigns (or returns) the top transaction id; we are in a transaction.
    let xid = unsafe { pg_sys::GetTopTransactionId() };
    let Some(q) = lookup(queue_name) else {
        raise_internal("No such queue")
    };
    // The sequence moves on every call, even when the id is given or the insert fails:
    // that is how the ticker notices activity.
    let seq_id = nextval(q.event_seq);
    if q.disable_insert && !is_replica_role() {
        raise_internal("Insert into queue disallowed");
    }
    let ev_id = ev.ev_id.unwrap_or(seq_id);
    // SAFETY: reads the transaction start time (a backend variable).
    let ev_time = ev.ev_time.unwrap_or_else(|| unsafe {
        TimestampWithTimeZone::try_from(pg_sys::GetCurrentTransactionStartTimestamp()).unwrap()
    });
    if let Some(limit) = q.per_tx_limit {
        let count = TX_COUNTS.with(|c| {
            let mut c = c.borrow_mut();
            let e = c.entry(q.queue_id).or_insert((xid, 0));
            if e.0 != xid {
                *e = (xid, 0);
            }
            e.1 += 1;
            e.1
        });
        if count > limit as i64 {
            raise_internal(format!(
                "Queue '{}' allows max {limit} events from one TX",
                lossy(queue_name)
            ));
        }
    }
    let values = EventValues {
        ev_id,
        ev_time,
        // SAFETY: the top transaction id, assigned above.
        ev_txid: unsafe { pg_sys::GetTopFullTransactionId().value as i64 },
        ev_owner: ev.ev_owner,
        ev_retry: ev.ev_retry,
        text: [
            ev.ev_type,
            ev.ev_data,
            ev.extra[0],
            ev.extra[1],
            ev.extra[2],
            ev.extra[3],
        ],
    };
    crate::bgworker::hooks::note_event_inserted();
    if !heap_insert_event(q.table_oid(), &values) {
        spi_insert_event(&q, &values);
    }
    ev_id
}

struct EventValues<'a> {
    ev_id: i64,
    ev_time: TimestampWithTimeZone,
    ev_txid: i64,
    ev_owner: Option<i32>,
    ev_retry: Option<i32>,
    /// ev_type, ev_data, ev_extra1..4
    text: [Option<&'a [u8]>; 6],
}

/// Column names of an event table, in the order of [`EventValues`].
const EVENT_COLUMNS: [&str; 11] = [
    "ev_id",
    "ev_time",
    "ev_txid",
    "ev_owner",
    "ev_retry",
    "ev_type",
    "ev_data",
    "ev_extra1",
    "ev_extra2",
    "ev_extra3",
    "ev_extra4",
];

/// The column types pgq creates (pgq.event_template), in the order of EVENT_COLUMNS.
const EVENT_TYPES: [pg_sys::Oid; 11] = [
    pg_sys::INT8OID,
    pg_sys::TIMESTAMPTZOID,
    pg_sys::INT8OID,
    pg_sys::INT4OID,
    pg_sys::INT4OID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
];

/// Columns that pgq.event_template declares NOT NULL (ev_id, ev_time, ev_txid): the
/// direct path always fills them. A NOT NULL on any other column sends inserts
/// through the executor.
const EVENT_NOT_NULL_OK: usize = 3;

const EV_TXID: usize = 2;

/// What the direct path needs to know about an event table, built once and kept until
/// the next relcache invalidation in this backend: which of our columns each attribute
/// is, and the table's indexes with their IndexInfo (in a memory context of its own).
struct Shape {
    generation: u64,
    /// per attribute: index into EVENT_COLUMNS, or -1 for a dropped column
    colmap: Vec<i8>,
    /// (index oid, IndexInfo, unique); the IndexInfos live in `cxt`
    indexes: Vec<(pg_sys::Oid, *mut pg_sys::IndexInfo, bool)>,
    /// false: the table is not exactly as pgq creates it; the executor inserts
    direct: bool,
    /// held for its Drop; the last field, so it is dropped after everything that
    /// points into it
    _cxt: OwnedContext,
}

thread_local! {
    static SHAPES: RefCell<HashMap<pg_sys::Oid, Rc<Shape>>> = RefCell::new(HashMap::new());
}

/// Whether the default of ev_txid is `txid_current()`, as pgq.event_template has it
/// (the direct path writes the top transaction id itself).
fn txid_default_ok(rel: &OpenRel, attnum: i16) -> bool {
    // SAFETY: the relation is open, so its tuple descriptor and the defaults in it are
    // valid; `adbin` is a stored node string, which stringToNode parses into the
    // current memory context.
    unsafe {
        let constr = (*(*rel.as_ptr()).rd_att).constr;
        if constr.is_null() || (*constr).defval.is_null() {
            return false;
        }
        for k in 0..(*constr).num_defval as usize {
            let def = (*constr).defval.add(k);
            if (*def).adnum != attnum {
                continue;
            }
            let node = pg_sys::stringToNode((*def).adbin) as *mut pg_sys::Node;
            if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_FuncExpr {
                return false;
            }
            let f = node as *mut pg_sys::FuncExpr;
            return (*f).funcid == pg_sys::Oid::from(pg_sys::F_TXID_CURRENT) && (*f).args.is_null();
        }
        false
    }
}

/// A plain, permanent table, not a partition, with nothing the executor would apply:
/// triggers, rules, row security, CHECK constraints; at most 64 columns.
fn plain_table(rel: &OpenRel) -> bool {
    // SAFETY: the relation is open: rd_rel, rd_att and its constraints are valid.
    unsafe {
        let r = rel.as_ptr();
        let form = (*r).rd_rel;
        let constr = (*(*r).rd_att).constr;
        (*(*r).rd_att).natts <= 64
            && (*form).relkind == pg_sys::RELKIND_RELATION as c_char
            && (*form).relpersistence == pg_sys::RELPERSISTENCE_PERMANENT as c_char
            && !(*form).relispartition
            && (*r).trigdesc.is_null()
            && (*r).rd_rules.is_null()
            && !(*form).relrowsecurity
            && (constr.is_null() || (*constr).num_check == 0)
    }
}

fn build_shape(rel: &OpenRel) -> Shape {
    let cxt = OwnedContext::new(
        // SAFETY: reading the address of a backend-global context.
        unsafe { pg_sys::TopMemoryContext },
        c"pgq event table shape",
        pg_sys::ALLOCSET_SMALL_MINSIZE,
        pg_sys::ALLOCSET_SMALL_INITSIZE,
        pg_sys::ALLOCSET_SMALL_MAXSIZE,
    );
    let attrs = rel.rel_ref().attributes();
    let mut direct = plain_table(rel);
    let mut colmap = Vec::with_capacity(attrs.len());
    let mut seen = [false; 11];
    for att in attrs {
        if att.attisdropped {
            colmap.push(-1);
            continue;
        }
        let name = att_name(att);
        match EVENT_COLUMNS.iter().position(|c| c.as_bytes() == name) {
            Some(col) => {
                seen[col] = true;
                // exactly the type pgq creates, no typmod, no identity or generated
                // value, nullable where the template is
                if att.atttypid != EVENT_TYPES[col]
                    || att.atttypmod != -1
                    || att.attidentity != 0
                    || att.attgenerated != 0
                    || (att.attnotnull && col >= EVENT_NOT_NULL_OK)
                    || (col == EV_TXID && !txid_default_ok(rel, att.attnum))
                {
                    direct = false;
                }
                colmap.push(col as i8);
            }
            None => {
                // a column we do not fill: its default is the executor's business
                direct = false;
                colmap.push(-1);
            }
        }
    }
    if seen.contains(&false) {
        direct = false;
    }
    let mut indexes = Vec::new();
    if direct {
        // the list and the IndexInfos below are allocated in our context
        let _in_cxt = cxt.switch_to();
        let oids = rel.rel_ref().index_oids();
        for oid in oids {
            let idx = OpenRel::index(oid, pg_sys::RowExclusiveLock, pg_sys::NoLock);
            // SAFETY: the index is open; BuildIndexInfo allocates in the current
            // context (ours), where the IndexInfo stays for the shape's lifetime;
            // rd_index is valid for an open index.
            unsafe {
                let info = pg_sys::BuildIndexInfo(idx.as_ptr());
                let form = (*idx.as_ptr()).rd_index;
                // only plain column indexes (the txid index pgq creates)
                if !(*info).ii_Expressions.is_null()
                    || !(*info).ii_Predicate.is_null()
                    || !(*info).ii_ExclusionOps.is_null()
                    || !(*form).indimmediate
                {
                    direct = false;
                }
                (*info).ii_Context = cxt.as_ptr();
                indexes.push((oid, info, (*form).indisunique));
            }
        }
    }
    Shape {
        // read after the index opens above: an invalidation they accepted is counted
        generation: SHAPE_GENERATION.get(),
        colmap,
        indexes,
        direct,
        _cxt: cxt,
    }
}

/// The shape of an open event table: the cached one while no relcache invalidation
/// came in since it was built (and the column count still matches), else rebuilt.
fn shape_of(rel: &OpenRel, relid: pg_sys::Oid) -> Rc<Shape> {
    let natts = rel.rel_ref().attributes().len();
    let cached = SHAPES.with(|s| s.borrow().get(&relid).cloned());
    match cached {
        Some(sh) if sh.generation == SHAPE_GENERATION.get() && sh.colmap.len() == natts => sh,
        _ => {
            let sh = Rc::new(build_shape(rel));
            SHAPES.with(|s| s.borrow_mut().insert(relid, sh.clone()));
            sh
        }
    }
}

/// The direct path: form the tuple and insert it into the heap and its indexes,
/// without planner or executor. Taken only for tables exactly as pgq creates them
/// (see [`build_shape`]); returns false (nothing done) otherwise, and the caller goes
/// through SPI, which handles anything a user may have added or changed.
fn heap_insert_event(relid: pg_sys::Oid, v: &EventValues<'_>) -> bool {
    if relid == pg_sys::InvalidOid {
        return false;
    }
    // SAFETY: a catalog lookup for an OID (a missing relation raises an ERROR).
    let acl = unsafe {
        pg_sys::pg_class_aclcheck(
            relid,
            pg_sys::GetUserId(),
            pg_sys::ACL_INSERT as pg_sys::AclMode,
        )
    };
    if acl != pg_sys::AclResult::ACLCHECK_OK {
        // let the SPI path raise the standard permission error
        return false;
    }
    // relation_open: any relkind (a view or partitioned table is refused by the shape
    // and goes through the executor); the lock is kept to the end of the transaction
    let rel = OpenRel::relation(relid, pg_sys::RowExclusiveLock, pg_sys::NoLock);
    let shape = shape_of(&rel, relid);
    if !shape.direct {
        return false;
    }
    let mut values = [pg_sys::Datum::from(0); 64];
    let mut nulls = [true; 64];
    for (i, &col) in shape.colmap.iter().enumerate() {
        let d = match col {
            -1 => None,
            0 => v.ev_id.into_datum(),
            1 => v.ev_time.into_datum(),
            2 => v.ev_txid.into_datum(),
            3 => v.ev_owner.into_datum(),
            4 => v.ev_retry.into_datum(),
            n => v.text[n as usize - 5].map(text_datum),
        };
        if let Some(d) = d {
            values[i] = d;
            nulls[i] = false;
        }
    }
    // SAFETY: the relation is open and locked; its descriptor has colmap.len() (at
    // most 64) attributes, and every non-null value is of exactly that attribute's
    // type (checked in build_shape); the tuple is palloc'd in the current context.
    let tuple = unsafe {
        let tuple = pg_sys::heap_form_tuple(
            (*rel.as_ptr()).rd_att,
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        );
        pg_sys::simple_heap_insert(rel.as_ptr(), tuple);
        tuple
    };
    for &(oid, info, unique) in &shape.indexes {
        let idx = OpenRel::index(oid, pg_sys::RowExclusiveLock, pg_sys::NoLock);
        // SAFETY: the index is open and locked; `info` was built for it (same OID, the
        // shape is rebuilt after any relcache invalidation) and lives in the shape's
        // context; the key columns are attributes of the heap tuple just inserted.
        unsafe {
            if !(*(*idx.as_ptr()).rd_index).indisready {
                continue;
            }
            let nkeys = (*info).ii_NumIndexAttrs as usize;
            let mut iv = [pg_sys::Datum::from(0); 32];
            let mut inull = [true; 32];
            for j in 0..nkeys {
                let attno = (*info).ii_IndexAttrNumbers[j] as usize;
                iv[j] = values[attno - 1];
                inull[j] = nulls[attno - 1];
            }
            let check = if unique {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
            } else {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
            };
            pg_sys::index_insert(
                idx.as_ptr(),
                iv.as_mut_ptr(),
                inull.as_mut_ptr(),
                &mut (*tuple).t_self,
                rel.as_ptr(),
                check,
                false,
                info,
            );
        }
    }
    // SAFETY: the tuple formed above; the heap and indexes keep their own copies.
    unsafe { pg_sys::heap_freetuple(tuple) };
    true
}

/// `schema.relation`, quoted, from the catalog (never from the stored queue text).
fn qualified_name(relid: pg_sys::Oid) -> Option<Vec<u8>> {
    // SAFETY: syscache lookups by OID (NULL when missing, checked); the strings are
    // palloc'd in the current context and copied out before it is reset.
    let (nsp, rel) = unsafe {
        let rel = pg_sys::get_rel_name(relid);
        if rel.is_null() {
            return None;
        }
        let nsp = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        if nsp.is_null() {
            return None;
        }
        (
            std::ffi::CStr::from_ptr(nsp).to_bytes().to_vec(),
            std::ffi::CStr::from_ptr(rel).to_bytes().to_vec(),
        )
    };
    Some(crate::names::quote_qualified(&nsp, &rel))
}

/// The general path: a kept INSERT plan per event table, run by the executor (which
/// applies constraints, triggers, rules, partition routing, casts).
fn spi_insert_event(q: &QueueInfo, v: &EventValues<'_>) {
    let relid = q.table_oid();
    let Some(name) = (relid != pg_sys::InvalidOid)
        .then(|| qualified_name(relid))
        .flatten()
    else {
        raise_code(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation \"{}\" does not exist", lossy(&q.table)),
        )
    };
    Spi::connect(|client| {
        // the Rc keeps the plan alive while it runs
        let plan = INSERT_PLANS.with(|plans| plans.borrow().get(&relid).cloned());
        let plan = match plan {
            Some((n, p)) if n == name => p,
            _ => {
                let mut sql = b"insert into ".to_vec();
                sql.extend_from_slice(&name);
                sql.extend_from_slice(
                    b" (ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data, \
                      ev_extra1, ev_extra2, ev_extra3, ev_extra4) \
                      values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                );
                let sql = std::ffi::CString::new(sql)
                    .unwrap_or_else(|_| raise_internal("pgq: bad event table name"));
                // every event column but ev_txid (its default fills it)
                let types: Vec<pg_sys::Oid> = EVENT_TYPES
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| EVENT_COLUMNS[i] != "ev_txid")
                    .map(|(_, &t)| t)
                    .collect();
                let p = Rc::new(KeptPlan::prepare(client, &sql, &types, "the event insert"));
                let old = INSERT_PLANS
                    .with(|plans| plans.borrow_mut().insert(relid, (name.clone(), p.clone())));
                drop(old);
                p
            }
        };
        let opt = |d: Option<pg_sys::Datum>| d.unwrap_or(pg_sys::Datum::from(0));
        let isnull = |n: bool| if n { b'n' } else { b' ' } as c_char;
        let mut values = [
            opt(v.ev_id.into_datum()),
            opt(v.ev_time.into_datum()),
            opt(v.ev_owner.into_datum()),
            opt(v.ev_retry.into_datum()),
            opt(v.text[0].map(text_datum)),
            opt(v.text[1].map(text_datum)),
            opt(v.text[2].map(text_datum)),
            opt(v.text[3].map(text_datum)),
            opt(v.text[4].map(text_datum)),
            opt(v.text[5].map(text_datum)),
        ];
        let nulls = [
            isnull(false),
            isnull(false),
            isnull(v.ev_owner.is_none()),
            isnull(v.ev_retry.is_none()),
            isnull(v.text[0].is_none()),
            isnull(v.text[1].is_none()),
            isnull(v.text[2].is_none()),
            isnull(v.text[3].is_none()),
            isnull(v.text[4].is_none()),
            isnull(v.text[5].is_none()),
        ];
        let rc = plan.execute(client, &mut values, &nulls, false, 0);
        if rc < 0 {
            raise_internal(format!("pgq: inserting event failed ({rc})"));
        }
    });
}
