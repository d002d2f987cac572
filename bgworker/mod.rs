//! Background workers: the launcher (static, one per cluster) and one ticker /
//! maintenance worker per database that has the extension. Compiled into the
//! extension's library; active only when `pgq` is in shared_preload_libraries.
//!
//! Also here: the commit-time wakeups (producers wake their database's ticker,
//! CREATE EXTENSION wakes the launcher) and the utility hook that moves a ticker out
//! of the way of DROP DATABASE, CREATE DATABASE ... TEMPLATE, ALTER DATABASE RENAME /
//! SET TABLESPACE.

pub mod copy;
pub mod hooks;
pub mod launcher;
pub mod manager;
pub mod replay;
pub mod shmem;
pub mod worker;

use pgrx::prelude::*;

static PRELOADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `_PG_init` part: register the launcher, shared memory, hooks. Only while
/// shared_preload_libraries is being processed, never in binary-upgrade mode.
pub fn init() {
    hooks::register_xact_callback();
    // SAFETY: reads PostgreSQL globals of this process during _PG_init.
    if unsafe { !pg_sys::process_shared_preload_libraries_in_progress || pg_sys::IsBinaryUpgrade } {
        return;
    }
    PRELOADED.store(true, std::sync::atomic::Ordering::Relaxed);
    shmem::init();
    hooks::register_utility_hook();
    launcher::register();
}

/// Register a dynamic pgq worker (`pgq ticker`, `pgq replay`) for slot `i`, generation
/// `g`, with this process as its supervisor, and wait until the postmaster has forked
/// it, so the slot knows the pid before the next supervision round looks at it.
/// Returns false when it could not be registered (max_worker_processes reached).
pub fn start_dynamic(name: &str, kind: &str, function: &str, i: usize, g: u32) -> bool {
    use pgrx::bgworkers::{BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime};
    let mut name = name.to_string();
    if name.len() > 90 {
        let mut n = 90;
        while !name.is_char_boundary(n) {
            n -= 1;
        }
        name.truncate(n);
    }
    let r = BackgroundWorkerBuilder::new(&name)
        .set_type(kind)
        .set_library("pgq")
        .set_function(function)
        .set_argument(Some(shmem::start_arg(i, g)))
        .enable_shmem_access(None)
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .set_notify_pid(my_pid())
        .load_dynamic();
    match r {
        Ok(h) => {
            let pid = match h.wait_for_startup() {
                Ok(pid) => Some(pid),
                Err(BackgroundWorkerStatus::PostmasterDied) => {
                    // SAFETY: ends this process, as WL_EXIT_ON_PM_DEATH would.
                    unsafe { pg_sys::proc_exit(1) }
                }
                Err(_) => None,
            };
            shmem::STATE.exclusive().launched(i, g, pid);
            true
        }
        Err(_) => {
            shmem::STATE.exclusive().launch_failed(i, g);
            false
        }
    }
}

/// This process's pid.
pub fn my_pid() -> i32 {
    // SAFETY: a PostgreSQL global set once at process start.
    unsafe { pg_sys::MyProcPid }
}

/// Whether the server runs in binary-upgrade mode (pg_upgrade): no worker then.
pub fn binary_upgrade() -> bool {
    // SAFETY: a PostgreSQL global set at postmaster start.
    unsafe { pg_sys::IsBinaryUpgrade }
}

/// Re-read postgresql.conf after SIGHUP (pgrx's handler only sets the flag).
pub fn reload_config() {
    // SAFETY: what PostgreSQL's own processes do on ConfigReloadPending, outside any
    // transaction, on the process's main thread.
    unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
}

pub fn preloaded() -> bool {
    PRELOADED.load(std::sync::atomic::Ordering::Relaxed)
}

unsafe extern "C-unwind" {
    // tcop/tcopprot.h: the raw C symbol (pgrx's `pg_sys::die` is a guarded Rust wrapper,
    // not something a signal can call)
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

/// SIGTERM handling of every pgq worker: PostgreSQL's own `die`, so that SIGTERM (a
/// shutdown, pg_terminate_backend, the utility hook moving a ticker away) interrupts
/// whatever the worker waits on — a lock, a long statement, the latch — at the next
/// CHECK_FOR_INTERRUPTS, instead of only being noticed when the main loop comes round.
pub fn terminate_on_sigterm() {
    // SAFETY: replaces this process's SIGTERM handler (installed by pgrx a moment
    // before) with PostgreSQL's standard backend handler; `die` only sets flags and the
    // latch, as a signal handler must.
    unsafe {
        pg_sys::pqsignal(libc::SIGTERM, Some(postgres_die));
    }
}

/// Run a worker's main body. An ERROR that escapes it (a query cancel at an interrupt
/// check outside any step, a failure of the supervision code itself) is logged with
/// its SQLSTATE, and the process exits with code 1: the launcher is then restarted by
/// the postmaster, a ticker by the launcher (with backoff). Without this the ERROR
/// would end the process with no line in the log saying why.
pub fn run_main(who: &str, body: impl FnOnce()) {
    PgTryBuilder::new(std::panic::AssertUnwindSafe(body))
        .catch_others(|e| {
            let err = crate::errors::PgqError::from_caught(&e);
            log!(
                "{who}: {} (SQLSTATE {}); exiting",
                err.message,
                err.sqlstate()
            );
            // SAFETY: ends this process the way PostgreSQL ends a background worker
            // after an ERROR (exit code 1: restarted by its supervisor); exit
            // callbacks (slot release, transaction abort) run.
            unsafe { pg_sys::proc_exit(1) }
        })
        .execute()
}

/// Wake the replay worker of `queue` in this database now (hooks::request_replay_wakeup
/// asks for it at commit).
pub fn wake_replay(queue: &str) {
    if !shmem::available() || !preloaded() {
        return;
    }
    // SAFETY: a PostgreSQL global of this backend.
    let mine = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let pid = {
        let mut s = shmem::STATE.exclusive();
        match s.find(shmem::Kind::Replay, mine, queue) {
            Some(i) => {
                s.slots[i].wake_requested = true;
                s.slots[i].pid
            }
            None => 0,
        }
    };
    shmem::wake(pid);
}

/// Wake the copy workers of this database (a table's hand-off state changed).
pub fn wake_copies() {
    if !shmem::available() || !preloaded() {
        return;
    }
    // SAFETY: a PostgreSQL global of this backend.
    let mine = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let pids: Vec<i32> = {
        let mut s = shmem::STATE.exclusive();
        s.slots
            .iter_mut()
            .filter(|x| x.in_use && x.kind == shmem::Kind::Copy && x.dboid == mine)
            .map(|x| {
                x.wake_requested = true;
                x.pid
            })
            .collect()
    };
    for p in pids {
        shmem::wake(p);
    }
}

/// Ask this database's manager for a supervision round now (a table waits for its
/// copy worker).
pub fn request_supervision() {
    if !shmem::available() || !preloaded() {
        return;
    }
    // SAFETY: a PostgreSQL global of this backend.
    let mine = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let pid = {
        let mut s = shmem::STATE.exclusive();
        match s.slot_of(mine) {
            Some(i) => {
                s.slots[i].supervise_requested = true;
                s.slots[i].pid
            }
            None => 0,
        }
    };
    shmem::wake(pid);
}

/// Whether the current user may see every database's worker rows (superusers and
/// members of pg_monitor); others see the launcher and their own database only.
fn sees_all_databases() -> bool {
    // SAFETY: privilege lookups for the current user, inside the calling transaction.
    unsafe {
        let me = pg_sys::GetUserId();
        pg_sys::superuser_arg(me)
            || pg_sys::has_privs_of_role(me, pg_sys::Oid::from(pg_sys::ROLE_PG_MONITOR))
    }
}

/// The name of a database (non-UTF-8 bytes escaped, as names::display does), None if
/// it is gone. Needs a transaction.
pub fn database_name(oid: pg_sys::Oid) -> Option<String> {
    // SAFETY: catalog lookup by OID inside the caller's transaction; NULL if gone.
    unsafe {
        let p = pg_sys::get_database_name(oid);
        (!p.is_null()).then(|| crate::names::display(std::ffi::CStr::from_ptr(p).to_bytes()))
    }
}

pub type StatusRow = (
    String,
    Option<String>,
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
    Option<String>,
    Option<TimestampWithTimeZone>,
);

/// A status row with the replay columns: provider node, last batch, its end tick, how
/// far behind the provider's clock that tick is, events applied.
pub type StatusRowV2 = (
    StatusRow,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<pgrx::datum::Interval>,
    Option<i64>,
);

fn ts(t: i64) -> Option<TimestampWithTimeZone> {
    if t == 0 {
        None
    } else {
        TimestampWithTimeZone::try_from(t).ok()
    }
}

/// Rows of pgq.worker_status() as 0.2.0 declared it (14 columns).
pub fn status_rows() -> Vec<StatusRow> {
    status_rows_v2().into_iter().map(|r| r.0).collect()
}

/// Rows of pgq.worker_status(); empty when the library was not preloaded.
pub fn status_rows_v2() -> Vec<StatusRowV2> {
    if !shmem::available() || !preloaded() {
        return Vec::new();
    }
    let s = *shmem::STATE.share();
    let now = shmem::now();
    let mut out = Vec::new();
    let lp = s.launcher_pid;
    out.push((
        (
            "launcher".to_string(),
            None,
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
            None,
        ),
        None,
        None,
        None,
        None,
        None,
    ));
    let all = sees_all_databases();
    // SAFETY: a PostgreSQL global of this backend.
    let mine = unsafe { pg_sys::MyDatabaseId }.to_u32();
    for slot in s
        .slots
        .iter()
        .filter(|x| x.in_use && (all || x.dboid == mine))
    {
        let name = database_name(pg_sys::Oid::from(slot.dboid));
        let replay = matches!(slot.kind, shmem::Kind::Replay | shmem::Kind::Copy);
        out.push((
            (
                slot.kind.name().to_string(),
                name,
                (slot.object_len > 0).then(|| slot.object().to_string()),
                if slot.pid > 0 { Some(slot.pid) } else { None },
                ts(slot.started_at),
                ts(slot.last_tick),
                ts(slot.last_maint),
                ts(slot.last_retry),
                slot.ticks,
                slot.restarts,
                slot.no_extension,
                slot.error_text(),
                slot.sqlstate_text(),
                ts(slot.last_error_time),
            ),
            (replay && slot.provider_len > 0).then(|| slot.provider().to_string()),
            (replay && slot.batch_id > 0).then_some(slot.batch_id),
            (replay && slot.tick_id > 0).then_some(slot.tick_id),
            (replay && slot.tick_time != 0)
                .then(|| pgrx::datum::Interval::from_micros((now - slot.tick_time).max(0))),
            replay.then_some(slot.events),
        ));
    }
    out
}
