//! The launcher: one static background worker per cluster, connected to no database.
//! It lists pg_database, keeps one ticker worker running per connectable,
//! non-template database that has the extension, restarts crashed workers with
//! backoff, and stays away from databases the utility hook has reserved.

use super::shmem::{self, STATE};
use crate::gucs;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime,
    DynamicBackgroundWorker, SignalWakeFlags,
};
use pgrx::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

const SEC: i64 = 1_000_000;
/// How long a database without the extension waits before it is probed again
/// (CREATE EXTENSION wakes the launcher at once anyway).
const REPROBE_AFTER: i64 = 300 * SEC;

pub fn register() {
    BackgroundWorkerBuilder::new("pgq launcher")
        .set_type("pgq launcher")
        .set_library("pgq")
        .set_function("pgq_launcher_main")
        .enable_shmem_access(None)
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

struct Db {
    oid: u32,
    name: String,
}

/// Connectable, non-template databases, read straight from the shared catalog.
fn list_databases() -> Vec<Db> {
    let mut out = Vec::new();
    // SAFETY: a read-only catalog scan of pg_database (a shared catalog, readable
    // without a database connection) in a transaction of its own; tuples are read
    // while the scan holds them.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let rel = pg_sys::table_open(
            pg_sys::DatabaseRelationId,
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        loop {
            let tup = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tup.is_null() {
                break;
            }
            let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tup);
            if (*form).datistemplate || !(*form).datallowconn {
                continue;
            }
            let name = std::ffi::CStr::from_ptr((*form).datname.data.as_ptr())
                .to_string_lossy()
                .into_owned();
            out.push(Db {
                oid: (*form).oid.to_u32(),
                name,
            });
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
        pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
    }
    out
}

fn start_worker(db: &Db, arg: pg_sys::Datum) -> Option<DynamicBackgroundWorker> {
    let mut name = format!("pgq ticker {}", db.name);
    if name.len() > 90 {
        let mut n = 90;
        while !name.is_char_boundary(n) {
            n -= 1;
        }
        name.truncate(n);
    }
    let r = BackgroundWorkerBuilder::new(&name)
        .set_type("pgq ticker")
        .set_library("pgq")
        .set_function("pgq_ticker_main")
        .set_argument(Some(arg))
        .enable_shmem_access(None)
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .set_notify_pid(super::my_pid())
        .load_dynamic();
    match r {
        Ok(h) => Some(h),
        Err(_) => {
            log!("pgq launcher: could not start a ticker for database \"{}\" (max_worker_processes reached?)", db.name);
            None
        }
    }
}

fn backoff(restarts: i32) -> i64 {
    let s = 1i64 << restarts.clamp(0, 6);
    s.min(60) * SEC
}

/// The launcher's pid is cleared when it exits (a restarted one writes its own).
///
/// # Safety
/// Called once by PostgreSQL at process exit (before_shmem_exit).
#[pg_guard]
unsafe extern "C-unwind" fn launcher_exit(_code: i32, _arg: pg_sys::Datum) {
    let mut s = STATE.exclusive();
    if s.launcher_pid == super::my_pid() {
        s.launcher_pid = 0;
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgq_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // SIGTERM ends the launcher with exit 1, so the postmaster starts it again (after
    // bgw_restart_time) unless the server is shutting down
    super::terminate_on_sigterm();
    if super::binary_upgrade() {
        return;
    }
    BackgroundWorker::connect_worker_to_spi(None, None);
    STATE.exclusive().launcher_pid = super::my_pid();
    // SAFETY: registers a callback of this process, run once at its exit.
    unsafe { pg_sys::before_shmem_exit(Some(launcher_exit), pg_sys::Datum::from(0)) };
    let mut workers: HashMap<u32, DynamicBackgroundWorker> = HashMap::new();
    loop {
        if BackgroundWorker::sighup_received() {
            super::reload_config();
        }
        let now = shmem::now();
        // reap workers that have exited
        // NotYetStarted is not an exit: the postmaster may not have forked it yet
        let exited: Vec<u32> = workers
            .iter()
            .filter(|(_, h)| {
                matches!(
                    h.pid(),
                    Err(BackgroundWorkerStatus::Stopped)
                        | Err(BackgroundWorkerStatus::PostmasterDied)
                )
            })
            .map(|(oid, _)| *oid)
            .collect();
        for oid in exited {
            workers.remove(&oid);
            let mut s = STATE.exclusive();
            if let Some(i) = s.slot_of(oid) {
                let slot = &mut s.slots[i];
                slot.pid = 0;
                if slot.no_extension {
                    slot.next_start = now + REPROBE_AFTER;
                } else if slot.blocked_until > now || !gucs::ENABLED.get() {
                    // stopped on purpose
                } else {
                    // crashed or stopped by an error: restart with backoff
                    slot.restarts += 1;
                    slot.next_start = now + backoff(slot.restarts);
                }
            }
        }
        let mut nap = gucs::LAUNCHER_NAPTIME_S.get() as i64 * SEC;
        if gucs::ENABLED.get() {
            let dbs = list_databases();
            let reprobe = {
                let mut s = STATE.exclusive();
                std::mem::replace(&mut s.reprobe, false)
            };
            {
                // forget databases that are gone
                let mut s = STATE.exclusive();
                for slot in s.slots.iter_mut() {
                    if slot.in_use && slot.pid == 0 && !dbs.iter().any(|d| d.oid == slot.dboid) {
                        *slot = shmem::WorkerSlot::default();
                    }
                }
            }
            for db in &dbs {
                if workers.contains_key(&db.oid) {
                    continue;
                }
                let start = {
                    let mut s = STATE.exclusive();
                    let Some(i) = s.slot_for(db.oid) else {
                        continue;
                    };
                    let slot = &mut s.slots[i];
                    // a worker this launcher did not start (it was restarted) is alive
                    if slot.pid > 0 && shmem::alive(slot.pid) {
                        continue;
                    }
                    if reprobe && slot.no_extension {
                        slot.next_start = 0;
                    }
                    let wait = slot.next_start.max(slot.blocked_until);
                    if wait > now {
                        nap = nap.min(wait - now);
                        None
                    } else {
                        Some(shmem::start_arg(i, s.new_generation(i)))
                    }
                };
                if let Some(arg) = start {
                    if let Some(h) = start_worker(db, arg) {
                        workers.insert(db.oid, h);
                    }
                }
            }
        } else {
            for (_, h) in workers.drain() {
                let _ = h.terminate();
            }
        }
        let ms = (nap / 1000).clamp(10, 3_600_000);
        BackgroundWorker::wait_latch(Some(Duration::from_millis(ms as u64)));
        pg_sys::check_for_interrupts!();
    }
}
