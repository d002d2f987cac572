//! Commit-time wakeups and the database-level utility hook.

use super::shmem::{self, STATE};
use crate::gucs;
use crate::logic::replay::PendingWakes;
use pgrx::prelude::*;
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;

/// This transaction inserted events: wake the database's ticker at commit.
static WAKE_TICKER: AtomicBool = AtomicBool::new(false);
/// This transaction created the extension: wake the launcher at commit.
static WAKE_LAUNCHER: AtomicBool = AtomicBool::new(false);
/// The ProcessUtility hook that was installed before ours.
static PREV_UTILITY_HOOK: OnceLock<pg_sys::ProcessUtility_hook_type> = OnceLock::new();

thread_local! {
    /// Replay workers this transaction wakes at commit (request_replay_wakeup).
    static WAKE_REPLAY: std::cell::RefCell<PendingWakes> =
        const { std::cell::RefCell::new(PendingWakes::new()) };
}

/// The insert path calls this: at commit, wake this database's ticker.
#[inline]
pub fn note_event_inserted() {
    if !WAKE_TICKER.load(Relaxed) && super::preloaded() && gucs::TICKER_WAKEUP.get() {
        WAKE_TICKER.store(true, Relaxed);
    }
}

/// A change the node's replay worker must see at once (a pause or resume, a new
/// provider: what admin tools then wait for it to acknowledge; a skip request): wake
/// `queue`'s replay worker in this database when the transaction commits. Not from the
/// replay worker itself.
pub fn request_replay_wakeup(queue: Option<&str>) {
    let Some(queue) = queue else { return };
    if !super::preloaded() || crate::replay::worker::is_replay_worker() {
        return;
    }
    WAKE_REPLAY.with(|w| w.borrow_mut().add(queue));
}

/// CREATE EXTENSION calls this (pgq._wake_launcher()): at commit the launcher
/// looks for the new database at once.
pub fn request_launcher_wakeup() {
    WAKE_LAUNCHER.store(true, Relaxed);
}

pub fn register_xact_callback() {
    // SAFETY: registers a callback for this process's transactions; the callback is a
    // guarded extern fn that never raises.
    unsafe { pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut()) };
}

/// Must never raise: only reads shared memory and sends signals.
///
/// # Safety
/// Called by PostgreSQL at transaction events of this backend.
#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    // SAFETY: reads MyDatabaseId and shared memory under its lock; sends signals. No
    // palloc (the replay wake list is Rust-owned and only freed here), nothing that can
    // raise (an ERROR here would abort the backend).
    unsafe {
        match event {
            pg_sys::XactEvent::XACT_EVENT_COMMIT
            | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
                // (try_borrow: never a panic here; the list is only borrowed briefly)
                let replay = WAKE_REPLAY
                    .with(|w| w.try_borrow_mut().map(|mut w| w.take()).unwrap_or_default());
                for q in &replay {
                    super::wake_replay(q);
                }
                let wt = WAKE_TICKER.swap(false, Relaxed);
                let wl = WAKE_LAUNCHER.swap(false, Relaxed);
                if !(wt || wl) {
                    return;
                }
                if !shmem::available() {
                    return;
                }
                let (ticker, launcher) = {
                    let mut s = STATE.exclusive();
                    if wl {
                        s.reprobe = true;
                    }
                    // the ticker is signalled only when it asked for it (it sleeps
                    // long); else it sees the count move before it sleeps
                    let t = match s.slot_of(pg_sys::MyDatabaseId.to_u32()) {
                        Some(i) if wt => {
                            let slot = &mut s.slots[i];
                            slot.event_commits = slot.event_commits.wrapping_add(1);
                            if std::mem::take(&mut slot.wake_armed) {
                                slot.pid
                            } else {
                                0
                            }
                        }
                        _ => 0,
                    };
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
                WAKE_TICKER.store(false, Relaxed);
                WAKE_LAUNCHER.store(false, Relaxed);
                WAKE_REPLAY.with(|w| {
                    if let Ok(mut w) = w.try_borrow_mut() {
                        w.clear();
                    }
                });
            }
            pg_sys::XactEvent::XACT_EVENT_PREPARE => {
                WAKE_REPLAY.with(|w| {
                    if let Ok(mut w) = w.try_borrow_mut() {
                        w.clear();
                    }
                });
            }
            _ => {}
        }
    }
}

pub fn register_utility_hook() {
    // SAFETY: _PG_init of the postmaster (preloading), single-threaded; chains to the
    // hook installed before ours.
    unsafe {
        let _ = PREV_UTILITY_HOOK.set(pg_sys::ProcessUtility_hook);
        pg_sys::ProcessUtility_hook = Some(utility_hook);
    }
}

/// The string value of option `name` in a parse tree's DefElem list.
///
/// # Safety
/// `list` is null or a valid List of DefElem nodes (a statement's options).
unsafe fn defelem_string(list: *mut pg_sys::List, name: &str) -> Option<String> {
    // SAFETY: walks the list within its length; defGetString only reads the node.
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

/// Which database (if any) must have no pgq worker connected while this statement runs,
/// and the command (for its permission rules).
///
/// # Safety
/// `stmt` is null or a valid parse tree node of the statement being run.
unsafe fn database_needing_exclusive_access(stmt: *mut pg_sys::Node) -> Option<(String, Cmd)> {
    // SAFETY: reads fields of the node after checking its tag; names are NUL-terminated.
    unsafe {
        if stmt.is_null() {
            return None;
        }
        match (*stmt).type_ {
            pg_sys::NodeTag::T_DropdbStmt => {
                let s = stmt as *mut pg_sys::DropdbStmt;
                Some((
                    CStr::from_ptr((*s).dbname).to_string_lossy().into_owned(),
                    Cmd::Drop,
                ))
            }
            pg_sys::NodeTag::T_CreatedbStmt => {
                let s = stmt as *mut pg_sys::CreatedbStmt;
                Some((
                    defelem_string((*s).options, "template").unwrap_or_else(|| "template1".into()),
                    Cmd::CopyFrom,
                ))
            }
            pg_sys::NodeTag::T_RenameStmt => {
                let s = stmt as *mut pg_sys::RenameStmt;
                if (*s).renameType == pg_sys::ObjectType::OBJECT_DATABASE && !(*s).subname.is_null()
                {
                    Some((
                        CStr::from_ptr((*s).subname).to_string_lossy().into_owned(),
                        Cmd::Rename,
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
                    Cmd::SetTablespace,
                ))
            }
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Drop,
    CopyFrom,
    Rename,
    SetTablespace,
}

/// Whether the current user's command on database `dboid` will pass PostgreSQL's
/// permission checks (logic::worker_policy::may_evict): only then is the ticker moved
/// away, so a command that is going to fail cannot stop another database's ticking.
///
/// # Safety
/// Called inside a transaction (the statement's), as syscache lookups need.
unsafe fn command_allowed(cmd: Cmd, dboid: pg_sys::Oid) -> bool {
    use crate::logic::worker_policy::{may_evict, Caller, DbCommand};
    // SAFETY: syscache lookups by OID inside the statement's transaction; each tuple
    // found is released before returning.
    unsafe {
        let me = pg_sys::GetUserId();
        let createdb = {
            let tup = pg_sys::SearchSysCache1(
                pg_sys::SysCacheIdentifier::AUTHOID as i32,
                pg_sys::Datum::from(me),
            );
            if tup.is_null() {
                false
            } else {
                let v =
                    (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_authid>(tup)).rolcreatedb;
                pg_sys::ReleaseSysCache(tup);
                v
            }
        };
        let is_template = {
            let tup = pg_sys::SearchSysCache1(
                pg_sys::SysCacheIdentifier::DATABASEOID as i32,
                pg_sys::Datum::from(dboid),
            );
            if tup.is_null() {
                false
            } else {
                let v = (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tup))
                    .datistemplate;
                pg_sys::ReleaseSysCache(tup);
                v
            }
        };
        let caller = Caller {
            superuser: pg_sys::superuser_arg(me),
            owner: pg_sys::pg_database_ownercheck(dboid, me),
            createdb,
        };
        let cmd = match cmd {
            Cmd::Drop => DbCommand::Drop,
            Cmd::CopyFrom => DbCommand::CopyFrom { is_template },
            Cmd::Rename => DbCommand::Rename,
            Cmd::SetTablespace => DbCommand::SetTablespace,
        };
        may_evict(cmd, caller)
    }
}

/// Stop every pgq worker of `dboid` (its manager and the manager's replay children)
/// and keep them away for a while; returns once they are gone.
pub fn evict_worker(dboid: u32, for_secs: i64) {
    if !shmem::available() {
        return;
    }
    let pids: Vec<(usize, i32)> = {
        let mut s = STATE.exclusive();
        let until = shmem::now() + for_secs * 1_000_000;
        // no slot: no worker there (templates never get one)
        s.slots
            .iter_mut()
            .enumerate()
            .filter(|(_, x)| x.in_use && x.dboid == dboid)
            .map(|(i, x)| {
                x.blocked_until = until;
                (i, x.pid)
            })
            .filter(|(_, pid)| *pid > 0)
            .collect()
    };
    for &(_, pid) in &pids {
        shmem::terminate(pid);
    }
    // each worker clears its pid on exit; wait up to 10 s
    for _ in 0..1000 {
        let still = {
            let s = STATE.share();
            pids.iter()
                .any(|&(i, pid)| s.slots[i].pid == pid && shmem::alive(pid))
        };
        if !still {
            return;
        }
        // SAFETY: a plain sleep; interrupts are checked right after.
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
        for x in s.slots.iter_mut().filter(|x| x.in_use && x.dboid == dboid) {
            x.blocked_until = 0;
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
    // SAFETY: PostgreSQL's arguments are passed on unchanged to the previous (or the
    // standard) ProcessUtility; pstmt is a valid PlannedStmt for a utility statement.
    unsafe {
        let target = database_needing_exclusive_access((*pstmt).utilityStmt);
        let mut evicted: Option<(u32, Cmd)> = None;
        if let Some((name, cmd)) = target {
            if let Ok(cname) = std::ffi::CString::new(name) {
                let oid = pg_sys::get_database_oid(cname.as_ptr(), true);
                if oid != pg_sys::InvalidOid && command_allowed(cmd, oid) {
                    evict_worker(oid.to_u32(), 60);
                    evicted = Some((oid.to_u32(), cmd));
                }
            }
        }
        let run = || match PREV_UTILITY_HOOK.get().copied().flatten() {
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
        };
        match evicted {
            None => run(),
            Some((oid, cmd)) => {
                // the worker comes back at once if the command fails (other sessions
                // connected, ...), and after it unless the database is gone
                PgTryBuilder::new(run)
                    .catch_others(|e| {
                        release_worker(oid);
                        e.rethrow()
                    })
                    .execute();
                if cmd != Cmd::Drop {
                    release_worker(oid);
                }
            }
        }
    }
}
