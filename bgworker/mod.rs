//! Background workers: the launcher (static, one per cluster) and one ticker /
//! maintenance worker per database that has the extension. Compiled into the
//! extension's library; active only when `pgq` is in shared_preload_libraries.
//!
//! Also here: the commit-time wakeups (producers wake their database's ticker,
//! CREATE EXTENSION wakes the launcher) and the utility hook that moves a ticker out
//! of the way of DROP DATABASE, CREATE DATABASE ... TEMPLATE, ALTER DATABASE RENAME /
//! SET TABLESPACE.

pub mod hooks;
pub mod launcher;
pub mod shmem;
pub mod worker;

use pgrx::prelude::*;

static mut PRELOADED: bool = false;

/// `_PG_init` part: register the launcher, shared memory, hooks. Only while
/// shared_preload_libraries is being processed, never in binary-upgrade mode.
pub fn init() {
    unsafe {
        hooks::register_xact_callback();
        if !pg_sys::process_shared_preload_libraries_in_progress || pg_sys::IsBinaryUpgrade {
            return;
        }
        PRELOADED = true;
    }
    shmem::init();
    hooks::register_utility_hook();
    launcher::register();
}

pub fn preloaded() -> bool {
    unsafe { PRELOADED }
}

pub type StatusRow = (
    String,
    Option<String>,
    Option<i32>,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    i64,
    i32,
    bool,
    Option<String>,
    Option<TimestampWithTimeZone>,
);

fn ts(t: i64) -> Option<TimestampWithTimeZone> {
    if t == 0 {
        None
    } else {
        TimestampWithTimeZone::try_from(t).ok()
    }
}

/// Rows of pgq.worker_status(); empty when the library was not preloaded.
pub fn status_rows() -> Vec<StatusRow> {
    if !shmem::available() || !preloaded() {
        return Vec::new();
    }
    let s = *shmem::STATE.share();
    let mut out = Vec::new();
    let lp = s.launcher_pid;
    out.push((
        "launcher".to_string(),
        None,
        if lp > 0 { Some(lp) } else { None },
        None,
        None,
        None,
        None,
        0,
        0,
        false,
        None,
        None,
    ));
    for slot in s.slots.iter().filter(|x| x.in_use) {
        let name = unsafe {
            let p = pg_sys::get_database_name(pg_sys::Oid::from(slot.dboid));
            if p.is_null() {
                None
            } else {
                Some(std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
            }
        };
        out.push((
            "ticker".to_string(),
            name,
            if slot.pid > 0 { Some(slot.pid) } else { None },
            ts(slot.started_at),
            ts(slot.last_tick),
            ts(slot.last_maint),
            ts(slot.last_retry),
            slot.ticks,
            slot.restarts,
            slot.no_extension,
            slot.error_text(),
            ts(slot.last_error_time),
        ));
    }
    out
}
