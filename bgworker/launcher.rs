//! The launcher: one static background worker per cluster, connected to no database.
//! It lists pg_database, keeps one ticker worker running per connectable,
//! non-template database that has the extension, restarts crashed workers with
//! backoff, and stays away from databases the utility hook has reserved.

use super::shmem::{self, STATE};
use crate::gucs;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;
use std::time::Duration;

use crate::logic::supervise::{self, Decision, SEC};
use shmem::{Kind, Phase};

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

/// Start a ticker for `db` in slot `i` (generation `g`).
fn start_worker(db: &Db, i: usize, g: u32) {
    let name = format!("pgq ticker {}", db.name);
    if !super::start_dynamic(&name, "pgq ticker", "pgq_ticker_main", i, g) {
        log!(
            "pgq launcher: could not start a ticker for database \"{}\" (max_worker_processes reached?)",
            db.name
        );
    }
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
    // the slots are the record of what runs: a second launcher (or one restarted while
    // the first still exits) must not supervise the same workers
    {
        let mut st = STATE.exclusive();
        let other = st.launcher_pid;
        if other > 0 && other != super::my_pid() && shmem::alive(other) {
            drop(st);
            log!("pgq launcher: another launcher (pid {other}) is running; exiting");
            return;
        }
        st.launcher_pid = super::my_pid();
    }
    // SAFETY: registers a callback of this process, run once at its exit.
    unsafe { pg_sys::before_shmem_exit(Some(launcher_exit), pg_sys::Datum::from(0)) };
    BackgroundWorker::connect_worker_to_spi(None, None);
    super::run_main("pgq launcher", supervise_loop);
}

/// The launcher's rounds: decide for every ticker slot, start what is due, sleep.
fn supervise_loop() {
    loop {
        if BackgroundWorker::sighup_received() {
            super::reload_config();
        }
        let now = shmem::now();
        let enabled = gucs::ENABLED.get();
        let mut nap = gucs::LAUNCHER_NAPTIME_S.get() as i64 * SEC;
        let dbs = if enabled {
            list_databases()
        } else {
            Vec::new()
        };
        let reprobe = std::mem::replace(&mut STATE.exclusive().reprobe, false);
        let mut to_start = Vec::new();
        {
            let mut st = STATE.exclusive();
            for i in 0..st.slots.len() {
                let slot = &mut st.slots[i];
                if !slot.in_use {
                    continue;
                }
                let db = dbs.iter().find(|d| d.oid == slot.dboid);
                if slot.kind != Kind::Ticker {
                    // a manager supervises its children; the launcher only forgets
                    // the slots of a database that is gone
                    if enabled && db.is_none() && !shmem::alive(slot.pid) {
                        *slot = shmem::WorkerSlot::default();
                    }
                    continue;
                }
                match supervise::decide(&slot.view(enabled && db.is_some()), now) {
                    Decision::Busy => {
                        if !enabled {
                            // pgq.enabled = off: workers exit by themselves at their
                            // reload; this covers one that missed it
                            shmem::terminate(slot.pid);
                        }
                    }
                    Decision::Reap {
                        restarts,
                        next_start,
                    } => {
                        slot.reap(restarts, next_start);
                        if next_start <= now {
                            nap = 0;
                        } else {
                            nap = nap.min(next_start - now);
                        }
                    }
                    Decision::Start => {
                        if let Some(db) = db {
                            to_start.push((i, db));
                        }
                    }
                    Decision::WaitUntil(t) => nap = nap.min(t - now),
                    Decision::Nothing => {
                        // a database that is gone is forgotten
                        if enabled && db.is_none() {
                            *slot = shmem::WorkerSlot::default();
                        }
                    }
                }
                // CREATE EXTENSION somewhere: probe the databases that had none again
                if reprobe && slot.in_use && slot.no_extension && slot.phase == Phase::Idle {
                    slot.next_start = 0;
                    nap = 0;
                }
            }
            // databases seen for the first time get a slot
            for db in &dbs {
                if st.slot_of(db.oid).is_none() {
                    if let Some(i) = st.slot_for(db.oid) {
                        to_start.push((i, db));
                    }
                }
            }
        }
        for (i, db) in to_start {
            let g = STATE.exclusive().new_generation(i, now);
            start_worker(db, i, g);
        }
        let ms = (nap / 1000).clamp(10, 3_600_000);
        // WL_EXIT_ON_PM_DEATH: after the postmaster's death the launcher ends at once
        // (pgrx's BackgroundWorker::wait_latch only reports the death, and the loop
        // went on round after round without sleeping until a failed worker start
        // ended it, holding the shared memory a new postmaster needs)
        super::worker::wait_latch(ms);
    }
}
