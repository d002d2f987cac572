//! Commit-time wakeups and the database-level utility hook.

use super::shmem::{self, STATE};
use crate::gucs;
use pgrx::prelude::*;
use std::ffi::CStr;

static mut WAKE_TICKER: bool = false;
static mut WAKE_LAUNCHER: bool = false;
static mut PREV_UTILITY_HOOK: pg_sys::ProcessUtility_hook_type = None;

/// The insert path calls this: at commit, wake this database's ticker.
#[inline]
pub fn note_event_inserted() {
    unsafe {
        if !WAKE_TICKER && super::preloaded() && gucs::TICKER_WAKEUP.get() {
            WAKE_TICKER = true;
        }
    }
}

/// CREATE EXTENSION calls this (pgq._wake_launcher()): at commit the launcher
/// looks for the new database at once.
pub fn request_launcher_wakeup() {
    unsafe { WAKE_LAUNCHER = true };
}

pub fn register_xact_callback() {
    unsafe { pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut()) };
}

/// Must never raise: only reads shared memory and sends signals.
#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    unsafe {
        match event {
            pg_sys::XactEvent::XACT_EVENT_COMMIT
            | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
                if !(WAKE_TICKER || WAKE_LAUNCHER) {
                    return;
                }
                let (wt, wl) = (WAKE_TICKER, WAKE_LAUNCHER);
                WAKE_TICKER = false;
                WAKE_LAUNCHER = false;
                if !shmem::available() {
                    return;
                }
                let (ticker, launcher) = {
                    let mut s = STATE.exclusive();
                    if wl {
                        s.reprobe = true;
                    }
                    let t = s
                        .slot_of(pg_sys::MyDatabaseId.to_u32())
                        .map(|i| s.slots[i].pid)
                        .unwrap_or(0);
                    (t, s.launcher_pid)
                };
                if wt {
                    shmem::wake(ticker);
                }
                if wl {
                    shmem::wake(launcher);
                }
            }
            pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
                WAKE_TICKER = false;
                WAKE_LAUNCHER = false;
            }
            _ => {}
        }
    }
}

pub fn register_utility_hook() {
    unsafe {
        PREV_UTILITY_HOOK = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(utility_hook);
    }
}

unsafe fn defelem_string(list: *mut pg_sys::List, name: &str) -> Option<String> {
    unsafe {
        if list.is_null() {
            return None;
        }
        for i in 0..(*list).length as usize {
            let de = (*(*list).elements.add(i)).ptr_value as *mut pg_sys::DefElem;
            if de.is_null() || (*de).defname.is_null() {
                continue;
            }
            if CStr::from_ptr((*de).defname).to_bytes() == name.as_bytes() {
                let arg = (*de).arg;
                if arg.is_null() {
                    return None;
                }
                let s = pg_sys::defGetString(de);
                return Some(CStr::from_ptr(s).to_string_lossy().into_owned());
            }
        }
        None
    }
}

/// Which database (if any) must have no pgq worker connected while this statement runs.
unsafe fn database_needing_exclusive_access(stmt: *mut pg_sys::Node) -> Option<(String, bool)> {
    unsafe {
        if stmt.is_null() {
            return None;
        }
        match (*stmt).type_ {
            pg_sys::NodeTag::T_DropdbStmt => {
                let s = stmt as *mut pg_sys::DropdbStmt;
                Some((
                    CStr::from_ptr((*s).dbname).to_string_lossy().into_owned(),
                    true,
                ))
            }
            pg_sys::NodeTag::T_CreatedbStmt => {
                let s = stmt as *mut pg_sys::CreatedbStmt;
                Some((
                    defelem_string((*s).options, "template").unwrap_or_else(|| "template1".into()),
                    false,
                ))
            }
            pg_sys::NodeTag::T_RenameStmt => {
                let s = stmt as *mut pg_sys::RenameStmt;
                if (*s).renameType == pg_sys::ObjectType::OBJECT_DATABASE && !(*s).subname.is_null()
                {
                    Some((
                        CStr::from_ptr((*s).subname).to_string_lossy().into_owned(),
                        false,
                    ))
                } else {
                    None
                }
            }
            pg_sys::NodeTag::T_AlterDatabaseStmt => {
                let s = stmt as *mut pg_sys::AlterDatabaseStmt;
                defelem_string((*s).options, "tablespace")?;
                Some((
                    CStr::from_ptr((*s).dbname).to_string_lossy().into_owned(),
                    false,
                ))
            }
            _ => None,
        }
    }
}

/// Stop the ticker of `dboid` and keep it away for a while; returns once it is gone.
pub fn evict_worker(dboid: u32, for_secs: i64) {
    if !shmem::available() {
        return;
    }
    let pid = {
        let mut s = STATE.exclusive();
        // no slot: no worker there (templates never get one)
        match s.slot_of(dboid) {
            Some(i) => {
                s.slots[i].blocked_until = shmem::now() + for_secs * 1_000_000;
                s.slots[i].pid
            }
            None => 0,
        }
    };
    if pid == 0 {
        return;
    }
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // the worker clears its pid on exit; wait up to 10 s
    for _ in 0..1000 {
        let still = {
            let s = STATE.share();
            s.slot_of(dboid)
                .map(|i| s.slots[i].pid == pid)
                .unwrap_or(false)
        };
        if !still {
            return;
        }
        unsafe {
            pg_sys::pg_usleep(10_000);
        }
        pg_sys::check_for_interrupts!();
    }
}

fn release_worker(dboid: u32) {
    if !shmem::available() {
        return;
    }
    let launcher = {
        let mut s = STATE.exclusive();
        if let Some(i) = s.slot_of(dboid) {
            s.slots[i].blocked_until = 0;
        }
        s.launcher_pid
    };
    shmem::wake(launcher);
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn utility_hook(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    unsafe {
        let target = database_needing_exclusive_access((*pstmt).utilityStmt);
        let mut evicted: Option<(u32, bool)> = None;
        if let Some((name, dropping)) = target {
            if let Ok(cname) = std::ffi::CString::new(name) {
                let oid = pg_sys::get_database_oid(cname.as_ptr(), true);
                if oid != pg_sys::InvalidOid {
                    evict_worker(oid.to_u32(), 60);
                    evicted = Some((oid.to_u32(), dropping));
                }
            }
        }
        match PREV_UTILITY_HOOK {
            Some(prev) => prev(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
        // on ERROR we never get here; the block expires by itself
        if let Some((oid, dropping)) = evicted {
            if !dropping {
                release_worker(oid);
            }
        }
    }
}
