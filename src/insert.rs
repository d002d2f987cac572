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

use crate::errors::{raise, SpiResultExt};
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
    pub event_seq: pg_sys::Oid,
    pub disable_insert: bool,
    pub per_tx_limit: Option<i32>,
}

thread_local! {
    static QUEUES: RefCell<HashMap<String, QueueInfo>> = RefCell::new(HashMap::new());
    static INSERT_PLANS: RefCell<HashMap<String, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
    static LOOKUP_PLAN: Cell<pg_sys::SPIPlanPtr> = const { Cell::new(std::ptr::null_mut()) };
    static TX_COUNTS: RefCell<HashMap<i32, (pg_sys::TransactionId, i64)>> = RefCell::new(HashMap::new());
}

static mut QUEUE_RELID: pg_sys::Oid = pg_sys::InvalidOid;
static mut STALE: bool = false;

/// Relcache callback: only flags the cache; it may run in the middle of an SPI call,
/// so it must not free anything.
#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    unsafe {
        if relid == pg_sys::InvalidOid || relid == QUEUE_RELID {
            STALE = true;
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
            let sql = c"select queue_id, queue_data_pfx || '_' || queue_cur_table::text, \
                pg_catalog.to_regclass(queue_event_seq)::oid, queue_disable_insert, queue_per_tx_limit \
                from pgq.queue where queue_name = $1";
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
        Some(QueueInfo {
            queue_id,
            table,
            event_seq,
            disable_insert,
            per_tx_limit,
        })
    })
}

fn queue_relid() -> pg_sys::Oid {
    unsafe {
        if QUEUE_RELID == pg_sys::InvalidOid {
            let oid = Spi::get_one::<pg_sys::Oid>("select 'pgq.queue'::regclass::oid")
                .or_raise("resolving pgq.queue")
                .unwrap_or(pg_sys::InvalidOid);
            QUEUE_RELID = oid;
        }
        QUEUE_RELID
    }
}

/// Current info for a queue, from the cache when still valid.
pub fn lookup(name: &str) -> Option<QueueInfo> {
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
    let qi = fetch_queue(name)?;
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
        raise("Queue name must not be NULL")
    };
    // Assign our txid first: see the module comment.
    let xid = unsafe { pg_sys::GetTopTransactionId() };
    let Some(q) = lookup(queue_name) else {
        raise("No such queue")
    };
    // The sequence moves on every call, even when the id is given or the insert fails:
    // that is how the ticker notices activity.
    let seq_id = nextval(q.event_seq);
    if q.disable_insert && !is_replica_role() {
        raise("Insert into queue disallowed");
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
            raise(format!(
                "Queue '{queue_name}' allows max {limit} events from one TX"
            ));
        }
    }
    let args: [DatumWithOid; 10] = [
        ev_id.into(),
        ev_time.into(),
        ev.ev_owner.into(),
        ev.ev_retry.into(),
        ev.ev_type.into(),
        ev.ev_data.into(),
        ev.extra[0].into(),
        ev.extra[1].into(),
        ev.extra[2].into(),
        ev.extra[3].into(),
    ];
    Spi::connect_mut(|client| {
        let plan = INSERT_PLANS.with(|plans| plans.borrow().get(&q.table).cloned());
        let plan = match plan {
            Some(p) => p,
            None => {
                let sql = format!(
                    "insert into {} (ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data, \
                     ev_extra1, ev_extra2, ev_extra3, ev_extra4) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    q.table
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
                INSERT_PLANS.with(|plans| plans.borrow_mut().insert(q.table.clone(), p.clone()));
                p
            }
        };
        client
            .update(&*plan, None, &args)
            .or_raise("inserting event");
    });
    ev_id
}
