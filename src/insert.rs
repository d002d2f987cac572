//! The producer hot path: `insert_event` / `insert_event_raw`.
//!
//! Per backend we cache, per queue name, what an insert needs (queue id, current
//! event table, event sequence, insert flags) and, per event table, a kept SPI plan
//! for the INSERT. A statement trigger on `pgq.queue` sends a relcache invalidation
//! for `pgq.queue` whenever a queue row changes (rotation, config, drop); our relcache
//! callback marks the queue cache stale.
//!
//! Ordering that keeps rotation safe: the transaction id is assigned *before* pending
//! invalidations are accepted and the cache consulted. A rotation we have not seen yet
//! then has its step2 txid above ours, which is exactly the case in which writing to the
//! previous table is still read by consumers (spec §10). A refill reads `pgq.queue`
//! with the latest snapshot, never an older transaction snapshot.

use crate::errors::{raise, raise_internal, SpiResultExt};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

unsafe extern "C-unwind" {
    // commands/sequence.h; not in pgrx's bindings. Called through
    // pg_guard_ffi_boundary so an ERROR inside unwinds properly.
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

fn nextval(seq: pg_sys::Oid) -> i64 {
    unsafe { pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| nextval_internal(seq, false)) }
}

#[derive(Clone)]
pub struct QueueInfo {
    pub queue_id: i32,
    pub table: String,
    pub table_oid: pg_sys::Oid,
    pub event_seq: pg_sys::Oid,
    pub disable_insert: bool,
    pub per_tx_limit: Option<i32>,
}

thread_local! {
    static QUEUES: RefCell<HashMap<String, Rc<QueueInfo>>> = RefCell::new(HashMap::new());
    static INSERT_PLANS: RefCell<HashMap<String, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
    static LOOKUP_PLAN: Cell<pg_sys::SPIPlanPtr> = const { Cell::new(std::ptr::null_mut()) };
    static TX_COUNTS: RefCell<HashMap<i32, (pg_sys::TransactionId, i64)>> = RefCell::new(HashMap::new());
}

static mut QUEUE_RELID: pg_sys::Oid = pg_sys::InvalidOid;
static mut QUEUE_OWNER: pg_sys::Oid = pg_sys::InvalidOid;
static mut STALE: bool = false;

/// Relcache callback: only flags the caches; it may run in the middle of an SPI call,
/// so it must not free anything.
#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    unsafe {
        // any relation may be an event table or one of its indexes: shapes are rebuilt
        SHAPE_GENERATION += 1;
        if relid == pg_sys::InvalidOid || relid == QUEUE_RELID {
            STALE = true;
            // pgq.queue itself may have been dropped (DROP EXTENSION): resolve it again
            QUEUE_RELID = pg_sys::InvalidOid;
        }
    }
}

pub fn init() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0));
    }
}

/// Called by the `pgq.queue` statement trigger.
pub fn invalidate_queue_cache(queue_relid: pg_sys::Oid) {
    unsafe {
        pg_sys::CacheInvalidateRelcacheByRelid(queue_relid);
        // our own session sees its change at the next command as well
        STALE = true;
    }
}

fn is_replica_role() -> bool {
    unsafe { pg_sys::SessionReplicationRole == pg_sys::SESSION_REPLICATION_ROLE_REPLICA as i32 }
}

/// Read one queue row with the latest snapshot (not the transaction's).
fn fetch_queue(name: &str) -> Option<QueueInfo> {
    Spi::connect(|_client| unsafe {
        let mut plan = LOOKUP_PLAN.get();
        if plan.is_null() {
            let sql = c"select queue_id, queue_data_pfx operator(pg_catalog.||) '_' operator(pg_catalog.||) queue_cur_table::text, \
                pg_catalog.to_regclass(queue_event_seq)::oid, queue_disable_insert, queue_per_tx_limit, \
                pg_catalog.to_regclass(queue_data_pfx operator(pg_catalog.||) '_' \
                operator(pg_catalog.||) queue_cur_table::text)::oid \
                from pgq.queue where queue_name operator(pg_catalog.=) $1";
            let mut argtypes = [pg_sys::TEXTOID];
            plan = pg_sys::SPI_prepare(sql.as_ptr(), 1, argtypes.as_mut_ptr());
            if plan.is_null() {
                raise("pgq: could not prepare queue lookup");
            }
            pg_sys::SPI_keepplan(plan);
            LOOKUP_PLAN.set(plan);
        }
        let arg = name.into_datum().unwrap();
        let mut values = [arg];
        let nulls = [b' ' as std::ffi::c_char];
        let snap = pg_sys::GetLatestSnapshot();
        let rc = pg_sys::SPI_execute_snapshot(
            plan,
            values.as_mut_ptr(),
            nulls.as_ptr(),
            snap,
            std::ptr::null_mut(),
            true,
            false,
            1,
        );
        if rc != pg_sys::SPI_OK_SELECT as i32 {
            raise(format!("pgq: queue lookup failed ({rc})"));
        }
        if pg_sys::SPI_processed == 0 {
            return None;
        }
        let tt = pg_sys::SPI_tuptable;
        let tup = *(*tt).vals;
        let desc = (*tt).tupdesc;
        let get = |n: i32| {
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(tup, desc, n, &mut isnull);
            (d, isnull)
        };
        let (d, _) = get(1);
        let queue_id = i32::from_datum(d, false).unwrap();
        let (d, n) = get(2);
        let table = String::from_datum(d, n).unwrap_or_default();
        let (d, n) = get(3);
        let event_seq = pg_sys::Oid::from_datum(d, n).unwrap_or(pg_sys::InvalidOid);
        let (d, n) = get(4);
        let disable_insert = bool::from_datum(d, n).unwrap_or(false);
        let (d, n) = get(5);
        let per_tx_limit = i32::from_datum(d, n);
        let (d, n) = get(6);
        let table_oid = pg_sys::Oid::from_datum(d, n).unwrap_or(pg_sys::InvalidOid);
        Some(QueueInfo {
            queue_id,
            table,
            table_oid,
            event_seq,
            disable_insert,
            per_tx_limit,
        })
    })
}

fn queue_relid() -> pg_sys::Oid {
    unsafe {
        if QUEUE_RELID == pg_sys::InvalidOid {
            let (oid, owner) = Spi::get_two::<pg_sys::Oid, pg_sys::Oid>(
                "select c.oid, c.relowner from pg_catalog.pg_class c where c.oid = 'pgq.queue'::pg_catalog.regclass",
            )
            .or_raise("resolving pgq.queue");
            QUEUE_RELID = oid.unwrap_or(pg_sys::InvalidOid);
            QUEUE_OWNER = owner.unwrap_or(pg_sys::InvalidOid);
        }
        QUEUE_RELID
    }
}

/// Run `f` with the privileges of the extension owner (the owner of pgq.queue), the
/// way a SECURITY DEFINER function would, but without the per-call GUC work. If `f`
/// raises an ERROR, (sub)transaction abort restores the user id.
pub fn as_owner<T>(f: impl FnOnce() -> T) -> T {
    queue_relid();
    unsafe {
        let mut uid = pg_sys::InvalidOid;
        let mut ctx = 0;
        pg_sys::GetUserIdAndSecContext(&mut uid, &mut ctx);
        pg_sys::SetUserIdAndSecContext(
            QUEUE_OWNER,
            ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        let r = f();
        pg_sys::SetUserIdAndSecContext(uid, ctx);
        r
    }
}

/// Current info for a queue, from the cache when still valid.
pub fn lookup(name: &str) -> Option<Rc<QueueInfo>> {
    queue_relid();
    unsafe {
        pg_sys::AcceptInvalidationMessages();
        if STALE {
            STALE = false;
            QUEUES.with(|q| q.borrow_mut().clear());
        }
    }
    if let Some(qi) = QUEUES.with(|q| q.borrow().get(name).cloned()) {
        return Some(qi);
    }
    let qi = Rc::new(fetch_queue(name)?);
    QUEUES.with(|q| q.borrow_mut().insert(name.to_string(), qi.clone()));
    Some(qi)
}

pub struct NewEvent<'a> {
    pub ev_id: Option<i64>,
    pub ev_time: Option<TimestampWithTimeZone>,
    pub ev_owner: Option<i32>,
    pub ev_retry: Option<i32>,
    pub ev_type: Option<&'a str>,
    pub ev_data: Option<&'a str>,
    pub extra: [Option<&'a str>; 4],
}

/// Insert one event; the semantics of the original's `insert_event_raw`.
pub fn insert_event_raw(queue_name: Option<&str>, ev: NewEvent<'_>) -> i64 {
    let Some(queue_name) = queue_name else {
        raise_internal("Queue name must not be NULL")
    };
    // Assign our txid first: see the module comment.
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
                "Queue '{queue_name}' allows max {limit} events from one TX"
            ));
        }
    }
    let values = EventValues {
        ev_id,
        ev_time,
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
    if !unsafe { heap_insert_event(q.table_oid, &values) } {
        spi_insert_event(&q.table, &values);
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
    text: [Option<&'a str>; 6],
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

/// What the direct path needs to know about an event table, built once and kept until
/// the next relcache invalidation in this backend: which of our columns each attribute
/// is, and the table's indexes with their IndexInfo (in a memory context of its own).
struct Shape {
    generation: u64,
    /// per attribute: index into EVENT_COLUMNS, or -1 for a dropped column
    colmap: Vec<i8>,
    /// (index oid, IndexInfo, unique)
    indexes: Vec<(pg_sys::Oid, *mut pg_sys::IndexInfo, bool)>,
    /// false: the table has something the direct path does not handle
    direct: bool,
    cxt: pg_sys::MemoryContext,
}

impl Drop for Shape {
    fn drop(&mut self) {
        if !self.cxt.is_null() {
            unsafe { pg_sys::MemoryContextDelete(self.cxt) };
        }
    }
}

thread_local! {
    static SHAPES: RefCell<HashMap<pg_sys::Oid, Rc<Shape>>> = RefCell::new(HashMap::new());
}

/// Bumped by every relcache invalidation this backend sees (in `relcache_callback`):
/// any change to any table may be a change to an event table or its indexes, and
/// rebuilding a shape is cheap.
static mut SHAPE_GENERATION: u64 = 0;

unsafe fn build_shape(rel: pg_sys::Relation) -> Shape {
    unsafe {
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        let cxt = pg_sys::AllocSetContextCreateExtended(
            pg_sys::TopMemoryContext,
            c"pgq event table shape".as_ptr(),
            pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
            pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
            pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
        );
        let mut shape = Shape {
            generation: SHAPE_GENERATION,
            colmap: Vec::with_capacity(natts),
            indexes: Vec::new(),
            direct: natts <= 64,
            cxt,
        };
        for i in 0..natts {
            let att = (*desc).attrs.as_ptr().add(i);
            if (*att).attisdropped {
                shape.colmap.push(-1);
                continue;
            }
            let name = std::ffi::CStr::from_ptr((*att).attname.data.as_ptr()).to_bytes();
            match EVENT_COLUMNS.iter().position(|c| c.as_bytes() == name) {
                Some(col) => shape.colmap.push(col as i8),
                None => {
                    // a column we do not fill: its default is the executor's business
                    shape.direct = false;
                    shape.colmap.push(-1);
                }
            }
        }
        let old = pg_sys::MemoryContextSwitchTo(cxt);
        let list = pg_sys::RelationGetIndexList(rel);
        let nidx = if list.is_null() {
            0
        } else {
            (*list).length as usize
        };
        for k in 0..nidx {
            let oid = (*(*list).elements.add(k)).oid_value;
            let idx = pg_sys::index_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            let info = pg_sys::BuildIndexInfo(idx);
            // only plain column indexes (the txid index pgq creates)
            if !(*info).ii_Expressions.is_null()
                || !(*info).ii_Predicate.is_null()
                || !(*info).ii_ExclusionOps.is_null()
                || !(*(*idx).rd_index).indimmediate
            {
                shape.direct = false;
            }
            (*info).ii_Context = cxt;
            shape
                .indexes
                .push((oid, info, (*(*idx).rd_index).indisunique));
            pg_sys::index_close(idx, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
        pg_sys::MemoryContextSwitchTo(old);
        shape
    }
}

/// The direct path: form the tuple and insert it into the heap and its indexes,
/// without planner or executor. Taken only for tables that look exactly like a
/// pgq event table (our columns only, no triggers, CHECK constraints, row security,
/// expression or partial indexes); returns false (nothing done) otherwise, and the
/// caller goes through SPI, which handles anything a user may have added.
unsafe fn heap_insert_event(relid: pg_sys::Oid, v: &EventValues<'_>) -> bool {
    unsafe {
        if relid == pg_sys::InvalidOid {
            return false;
        }
        let acl = pg_sys::pg_class_aclcheck(
            relid,
            pg_sys::GetUserId(),
            pg_sys::ACL_INSERT as pg_sys::AclMode,
        );
        if acl != pg_sys::AclResult::ACLCHECK_OK {
            // let the SPI path raise the standard permission error
            return false;
        }
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let constr = (*(*rel).rd_att).constr;
        if !(*rel).trigdesc.is_null()
            || (*(*rel).rd_rel).relrowsecurity
            || (!constr.is_null() && (*constr).num_check > 0)
        {
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            return false;
        }
        let cached = SHAPES.with(|s| s.borrow().get(&relid).cloned());
        let shape = match cached {
            Some(sh)
                if sh.generation == SHAPE_GENERATION
                    && sh.colmap.len() == (*(*rel).rd_att).natts as usize =>
            {
                sh
            }
            _ => {
                let sh = Rc::new(build_shape(rel));
                SHAPES.with(|s| s.borrow_mut().insert(relid, sh.clone()));
                sh
            }
        };
        if !shape.direct {
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
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
                n => v.text[n as usize - 5].into_datum(),
            };
            if let Some(d) = d {
                values[i] = d;
                nulls[i] = false;
            }
        }
        let tuple = pg_sys::heap_form_tuple((*rel).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::simple_heap_insert(rel, tuple);
        for &(oid, info, unique) in &shape.indexes {
            let idx = pg_sys::index_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            if (*(*idx).rd_index).indisready {
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
                    idx,
                    iv.as_mut_ptr(),
                    inull.as_mut_ptr(),
                    &mut (*tuple).t_self,
                    rel,
                    check,
                    false,
                    info,
                );
            }
            pg_sys::index_close(idx, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
        pg_sys::heap_freetuple(tuple);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        true
    }
}

/// The general path: a kept INSERT plan per event table.
fn spi_insert_event(table: &str, v: &EventValues<'_>) {
    let args: [DatumWithOid; 10] = [
        v.ev_id.into(),
        v.ev_time.into(),
        v.ev_owner.into(),
        v.ev_retry.into(),
        v.text[0].into(),
        v.text[1].into(),
        v.text[2].into(),
        v.text[3].into(),
        v.text[4].into(),
        v.text[5].into(),
    ];
    Spi::connect_mut(|client| {
        let plan = INSERT_PLANS.with(|plans| plans.borrow().get(table).cloned());
        let plan = match plan {
            Some(p) => p,
            None => {
                let sql = format!(
                    "insert into {table} (ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data, \
                     ev_extra1, ev_extra2, ev_extra3, ev_extra4) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                );
                let types = [
                    PgOid::from(pg_sys::INT8OID),
                    PgOid::from(pg_sys::TIMESTAMPTZOID),
                    PgOid::from(pg_sys::INT4OID),
                    PgOid::from(pg_sys::INT4OID),
                    PgOid::from(pg_sys::TEXTOID),
                    PgOid::from(pg_sys::TEXTOID),
                    PgOid::from(pg_sys::TEXTOID),
                    PgOid::from(pg_sys::TEXTOID),
                    PgOid::from(pg_sys::TEXTOID),
                    PgOid::from(pg_sys::TEXTOID),
                ];
                let p = Rc::new(
                    client
                        .prepare_mut(sql.as_str(), &types)
                        .or_raise("preparing event insert")
                        .keep(),
                );
                INSERT_PLANS.with(|plans| plans.borrow_mut().insert(table.to_string(), p.clone()));
                p
            }
        };
        client
            .update(&*plan, None, &args)
            .or_raise("inserting event");
    });
}
