//! The per-database ticker / maintenance worker (what `pgqd` did from outside):
//! `pgq.ticker()` every ticker period (or sooner when a producer's commit wakes it),
//! due retry events every retry period, and every maintenance period the operations
//! `pgq.maint_operations()` lists: rotation step 1 and step 2 in separate
//! transactions, extra maintenance functions, VACUUM of the hot pgq tables.

use super::shmem::{self, STATE};
use crate::errors::{SpiResultExt, SqlState};
use crate::gucs;
use crate::logic::supervise::{may_attach, AttachRefusal};
use crate::logic::tick_policy::{before_sleep, Sleep};
use crate::logic::worker_policy::{may_call, MaintFunction};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use std::ffi::CString;
use std::panic::AssertUnwindSafe;

const SEC: i64 = 1_000_000;
/// How often the worker re-reads pg_extension when the queue tables are idle anyway.
/// This worker's slot in shared memory (usize::MAX until it has one).
pub static SLOT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);

pub fn my_slot() -> Option<usize> {
    let i = SLOT.load(std::sync::atomic::Ordering::Relaxed);
    (i != usize::MAX).then_some(i)
}

pub fn with_slot(f: impl FnOnce(&mut shmem::WorkerSlot)) {
    if let Some(i) = my_slot() {
        let mut s = STATE.exclusive();
        f(&mut s.slots[i]);
    }
}

pub fn report(activity: Option<&str>) {
    // SAFETY: pgstat_report_activity copies the NUL-terminated text (or takes null).
    unsafe {
        match activity {
            Some(a) => {
                let c = CString::new(a).unwrap_or_default();
                pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, c.as_ptr());
            }
            None => {
                pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null())
            }
        }
    }
}

/// An ERROR a worker step caught: the one error type (SQLSTATE, message, DETAIL,
/// HINT); `disposition()` tells retry from stop.
pub type StepError = crate::errors::PgqError;

fn caught_error(e: &pg_sys::panic::CaughtError) -> StepError {
    StepError::from_caught(e)
}

/// Run `f` in its own transaction; an ERROR rolls it back and comes back as Err.
pub fn in_txn<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, StepError> {
    report(Some(what));
    // SAFETY: the worker's main loop is never inside a transaction here; the matching
    // commit or abort follows below, whatever `f` does.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let r = PgTryBuilder::new(AssertUnwindSafe(|| Ok(f())))
        .catch_others(|e| Err(caught_error(&e)))
        .execute();
    // SAFETY: ends the transaction started above: commit after success, abort (which
    // also releases the snapshot) after an ERROR; then back to the loop's context.
    unsafe {
        match &r {
            Ok(_) => {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            Err(_) => {
                pg_sys::AbortCurrentTransaction();
            }
        }
        pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        // let autovacuum see what the ticker wrote (pgq.tick, pgq.subscription, ...)
        pg_sys::pgstat_report_stat(false);
    }
    report(None);
    r
}

thread_local! {
    /// the last error logged, and when: a repeating error is logged once a minute
    static LAST_LOGGED: std::cell::RefCell<(String, i64)> = const { std::cell::RefCell::new((String::new(), 0)) };
}

/// Who this process is in log lines ("pgq ticker", "pgq replay").
static WHO: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

pub fn set_who(who: &'static str) {
    let _ = WHO.set(who);
}

pub fn who() -> &'static str {
    WHO.get().copied().unwrap_or("pgq ticker")
}

pub fn record_error(what: &str, err: &StepError) {
    let text = format!("{what}: {}", err.message);
    let now = shmem::now();
    let log_it = LAST_LOGGED.with(|l| {
        let mut l = l.borrow_mut();
        if l.0 != text || now - l.1 >= 60 * SEC {
            *l = (text.clone(), now);
            true
        } else {
            false
        }
    });
    if log_it {
        log!("{}: {text} (SQLSTATE {})", who(), err.sqlstate());
    }
    with_slot(|s| s.set_error(now, Some(err.sqlstate()), &text));
}

enum Stop {
    /// disabled (pgq.enabled = off): the launcher starts no worker until it is on again
    Clean,
    NoExtension,
    /// pgq.worker_role changed: exit, the launcher starts a worker as the new role
    RoleChanged,
}

/// Whether the worker, running as `role` because pgq.worker_role was empty, should now
/// run as another role (the setting was cleared after naming some other role).
fn extowner_changed(role: &str) -> bool {
    in_txn("worker role", || {
        Spi::connect(|c| {
            c.select(
                "select pg_catalog.pg_get_userbyid(e.extowner)::text from pg_catalog.pg_extension e \
                 where e.extname operator(pg_catalog.=) 'pgq'",
                Some(1),
                &[],
            )
            .and_then(|t| t.first().get::<String>(1))
            .ctx("reading the extension owner")
        })
    })
    .and_then(|r| r)
    // a failed check keeps the current role: the next SIGHUP checks again (and the
    // error is in the log)
    .inspect_err(|e| record_error("worker role", e))
    .ok()
    .flatten()
    .is_some_and(|owner| owner != role)
}

pub fn extension_present() -> bool {
    // SAFETY: catalog lookup inside a transaction (callers run it in in_txn); missing_ok.
    unsafe { pg_sys::get_extension_oid(c"pgq".as_ptr(), true) != pg_sys::InvalidOid }
}

fn run_ticker() -> Result<i64, StepError> {
    in_txn("pgq.ticker()", || {
        if !extension_present() {
            return None;
        }
        Some(Spi::connect(|c| {
            c.select("select pgq.ticker()", Some(1), &[])
                .and_then(|t| t.first().get::<i64>(1))
                .ctx("running pgq.ticker()")
                // NULL: no queue was ticked
                .map(|n| n.unwrap_or(0))
        }))
    })
    .and_then(|r| {
        r.unwrap_or_else(|| {
            Err(StepError::new(
                SqlState::UNDEFINED_OBJECT,
                "extension pgq is not installed",
            ))
        })
    })
}

// ---------------------------------------------------------------------------
// The installed SQL and the loaded library must be the same extension version
// (logic::version; README, "Versions and upgrades")
// ---------------------------------------------------------------------------

thread_local! {
    static VERSION_GATE: std::cell::RefCell<crate::logic::version::VersionGate> =
        std::cell::RefCell::new(crate::logic::version::VersionGate::new(crate::logic::version::LIBRARY_VERSION));
}

fn installed_version() -> Option<String> {
    Spi::connect(|c| {
        c.select(
            "select e.extversion::text from pg_catalog.pg_extension e \
             where e.extname operator(pg_catalog.=) 'pgq'",
            Some(1),
            &[],
        )
        .ok()
        .and_then(|t| t.first().get::<String>(1).ok().flatten())
    })
}

/// None: do the work. Some(ms): the database's extension is at another version than
/// this library (an ALTER EXTENSION pgq UPDATE not run yet, or a server still running
/// an older library): wait that long and ask again. The first look and every change
/// log one line; the mismatch shows in pgq.worker_status().last_error.
pub fn version_gate() -> Option<i64> {
    let now = shmem::now();
    let verdict = VERSION_GATE.with(|g| {
        let mut g = g.borrow_mut();
        if !g.due(now) {
            return g.current(now);
        }
        // a failed look is reported; the work goes on (its own steps report theirs)
        let installed = match in_txn("check extension version", installed_version) {
            Ok(v) => v,
            Err(e) => {
                record_error("check extension version", &e);
                return crate::logic::version::Verdict::Run;
            }
        };
        let (verdict, notice) = g.observe(now, installed.as_deref());
        match notice {
            Some(crate::logic::version::Notice::Mismatch(m)) => {
                ereport!(
                    WARNING,
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("{}: {m}", who())
                );
                let text = format!("extension version: {m}");
                with_slot(|s| {
                    s.set_error(now, Some(crate::logic::version::MISMATCH_SQLSTATE), &text)
                });
            }
            Some(crate::logic::version::Notice::Resumed(m)) => log!("{}: {m}", who()),
            None => {}
        }
        verdict
    });
    match verdict {
        crate::logic::version::Verdict::Run => None,
        crate::logic::version::Verdict::Wait { wait_us } => Some((wait_us / 1000).clamp(1, 60_000)),
    }
}

pub fn wait_for_version(timeout_ms: i64) {
    wait_latch(timeout_ms)
}

/// Wait on this process's latch (SIGHUP, SIGTERM, wakeups set it) for at most
/// `timeout_ms`; SIGTERM ends the process at the interrupt check after it.
pub fn wait_latch(timeout_ms: i64) {
    // SAFETY: waits on this process's own latch (SIGHUP, SIGTERM and producers set
    // it); WL_EXIT_ON_PM_DEATH ends the process if the postmaster dies.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            timeout_ms,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
}

fn run_retry() {
    for _ in 0..10_000 {
        let r = in_txn("pgq.maint_retry_events()", || {
            Spi::connect_mut(|c| {
                c.update("select pgq.maint_retry_events()", Some(1), &[])
                    .and_then(|t| t.first().get::<i32>(1))
                    .ctx("running pgq.maint_retry_events()")
                    // NULL: nothing was moved
                    .map(|n| n.unwrap_or(0))
            })
        })
        .and_then(|r| r);
        match r {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => {
                record_error("maint_retry_events", &e);
                break;
            }
        }
    }
    with_slot(|s| s.last_retry = shmem::now());
}

fn split_qualified(name: &str) -> String {
    match name.split_once('.') {
        Some((schema, func)) => format!("{}.{}", quote_identifier(schema), quote_identifier(func)),
        None => quote_identifier(name),
    }
}

/// Resolve a maintenance function (`name(text)` or `name()`) and decide whether the
/// worker may call it (logic::worker_policy::may_call). Ok: the statement that calls
/// exactly that function; Err: why it is skipped.
fn maint_call(func: &str, with_arg: bool) -> Result<Result<String, String>, StepError> {
    let signature = format!(
        "{}({})",
        split_qualified(func),
        if with_arg { "text" } else { "" }
    );
    const SQL: &str = "select n.nspname::text, p.proname::text, p.proowner, n.oid \
        from pg_catalog.pg_proc p join pg_catalog.pg_namespace n \
          on n.oid operator(pg_catalog.=) p.pronamespace \
        where p.oid operator(pg_catalog.=) pg_catalog.to_regprocedure($1)";
    let found = Spi::connect(|c| -> Result<_, pgrx::spi::SpiError> {
        let t = c.select(SQL, Some(1), &[signature.as_str().into()])?;
        if t.is_empty() {
            return Ok(None);
        }
        let r = t.first();
        // the four columns are NOT NULL in the catalogs
        Ok(Some((
            r.get::<String>(1)?.unwrap_or_default(),
            r.get::<String>(2)?.unwrap_or_default(),
            r.get::<pg_sys::Oid>(3)?.unwrap_or_default(),
            r.get::<pg_sys::Oid>(4)?.unwrap_or_default(),
        )))
    })
    .ctx("resolving a maintenance function")?;
    let Some((nsp, name, owner, nsp_oid)) = found else {
        return Ok(Err(format!(
            "function {signature} not found (name it with its schema: the worker's search_path is pg_catalog)"
        )));
    };
    // SAFETY: catalog lookups of this backend inside a transaction; all arguments are
    // plain OIDs.
    let facts = unsafe {
        let me = pg_sys::GetUserId();
        MaintFunction {
            owner_is_superuser: pg_sys::superuser_arg(owner),
            owner_has_worker_rights: pg_sys::has_privs_of_role(owner, me),
            in_temp_schema: pg_sys::isAnyTempNamespace(nsp_oid),
        }
    };
    if let Err(why) = may_call(&facts) {
        return Ok(Err(format!("function {signature} is not called: {why}")));
    }
    let callee = format!("{}.{}", quote_identifier(&nsp), quote_identifier(&name));
    Ok(Ok(if with_arg {
        format!("select ({callee}($1::text))::text")
    } else {
        format!("select ({callee}())::text")
    }))
}

/// VACUUM one table, outside any transaction block, as autovacuum does.
fn vacuum_table(table: &str) -> Result<(), StepError> {
    let (schema, rel) = table.split_once('.').unwrap_or(("public", table));
    let (schema, rel) = (
        CString::new(schema).unwrap_or_default(),
        CString::new(rel).unwrap_or_default(),
    );
    report(Some(&format!("VACUUM {table}")));
    // SAFETY: VACUUM outside a transaction block, as autovacuum runs it: a fresh
    // transaction, a memory context of its own (deleted at the end) that also serves as
    // PortalContext, which vacuum() needs; errors roll back and come back as Err.
    let r = unsafe {
        let cxt = pg_sys::AllocSetContextCreateExtended(
            pg_sys::TopMemoryContext,
            c"pgq vacuum".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        let saved_portal = pg_sys::PortalContext;
        pg_sys::PortalContext = cxt;
        let r = PgTryBuilder::new(AssertUnwindSafe(|| {
            let old = pg_sys::MemoryContextSwitchTo(cxt);
            let rv = pg_sys::makeRangeVar(
                pg_sys::pstrdup(schema.as_ptr()),
                pg_sys::pstrdup(rel.as_ptr()),
                -1,
            );
            let vrel = pg_sys::makeVacuumRelation(rv, pg_sys::InvalidOid, std::ptr::null_mut());
            let list = pg_sys::lappend(std::ptr::null_mut(), vrel as *mut std::ffi::c_void);
            pg_sys::MemoryContextSwitchTo(old);
            let mut params = pg_sys::VacuumParams {
                options: pg_sys::VACOPT_VACUUM | pg_sys::VACOPT_PROCESS_TOAST,
                freeze_min_age: -1,
                freeze_table_age: -1,
                multixact_freeze_min_age: -1,
                multixact_freeze_table_age: -1,
                is_wraparound: false,
                log_min_duration: -1,
                index_cleanup: pg_sys::VacOptValue::VACOPTVALUE_UNSPECIFIED,
                truncate: pg_sys::VacOptValue::VACOPTVALUE_UNSPECIFIED,
                nworkers: -1,
            };
            pg_sys::vacuum(list, &mut params, std::ptr::null_mut(), true);
            Ok(())
        }))
        .catch_others(|e| Err(caught_error(&e)))
        .execute();
        match &r {
            Ok(_) => pg_sys::CommitTransactionCommand(),
            Err(_) => pg_sys::AbortCurrentTransaction(),
        }
        pg_sys::PortalContext = saved_portal;
        pg_sys::pgstat_report_stat(false);
        pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        pg_sys::MemoryContextDelete(cxt);
        r
    };
    report(None);
    r
}

fn run_maintenance() {
    let ops = in_txn("pgq.maint_operations()", || {
        Spi::connect(|c| -> Result<_, pgrx::spi::SpiError> {
            let mut v = Vec::new();
            let t = c.select(
                "select func_name, func_arg from pgq.maint_operations()",
                None,
                &[],
            )?;
            for row in t {
                let f: Option<String> = row.get(1)?;
                let a: Option<String> = row.get(2)?;
                // a row without a function name names nothing to run
                if let Some(f) = f {
                    v.push((f, a));
                }
            }
            Ok(v)
        })
        .ctx("reading pgq.maint_operations()")
    })
    .and_then(|r| r);
    let ops = match ops {
        Ok(o) => o,
        Err(e) => {
            record_error("maint_operations", &e);
            return;
        }
    };
    // The hot metadata tables are vacuumed every maintenance run, whether or not
    // autovacuum is on (maint_tables_to_vacuum() names them only when it is off):
    // they are tiny, and a busy queue dirties them many times a second.
    let mut to_vacuum: Vec<String> = HOT_TABLES.iter().map(|t| t.to_string()).collect();
    for (func, arg) in ops {
        let lower = func.to_ascii_lowercase();
        if lower == "vacuum" || lower == "vacuum analyze" {
            if let Some(t) = arg {
                if !to_vacuum.contains(&t) {
                    to_vacuum.push(t);
                }
            }
            continue;
        }
        let sql = match in_txn("check maintenance function", || {
            maint_call(&func, arg.is_some())
        })
        .and_then(|r| r)
        {
            Ok(Ok(sql)) => sql,
            Ok(Err(why)) => {
                // someone else's code would run with the worker's rights: never
                ereport!(
                    WARNING,
                    PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                    format!("pgq ticker: maintenance skipped: {why}")
                );
                record_error(
                    &func,
                    &StepError::new(SqlState::INSUFFICIENT_PRIVILEGE, why),
                );
                continue;
            }
            Err(e) => {
                record_error(&func, &e);
                continue;
            }
        };
        // errors name the operation and its argument (the queue), for the log and status
        let what = match &arg {
            Some(a) => format!("{func}({a})"),
            None => format!("{func}()"),
        };
        // an operation returning non-zero wants to be called again
        for _ in 0..1000 {
            let r = in_txn(&func, || {
                Spi::connect_mut(|c| {
                    let t = match &arg {
                        Some(a) => c.update(sql.as_str(), Some(1), &[a.as_str().into()]),
                        None => c.update(sql.as_str(), Some(1), &[]),
                    };
                    t.and_then(|t| t.first().get::<String>(1))
                        .ctx("running a maintenance operation")
                })
            })
            .and_then(|r| r);
            match r {
                // a result that is not a number (or NULL) means "done", as pgqd read it
                Ok(Some(v)) if v.trim().parse::<i64>().map(|n| n != 0).unwrap_or(false) => continue,
                Ok(_) => break,
                Err(e) => {
                    record_error(&what, &e);
                    break;
                }
            }
        }
    }
    for t in &to_vacuum {
        if let Err(e) = vacuum_table(t) {
            record_error(&format!("vacuum {t}"), &e);
        }
    }
    with_slot(|s| s.last_maint = shmem::now());
}

const HOT_TABLES: [&str; 4] = [
    "pgq.tick",
    "pgq.subscription",
    "pgq.queue",
    "pgq.retry_queue",
];

fn main_loop(role: &str) -> Stop {
    let mut now = shmem::now();
    let mut next_tick = now;
    let mut next_retry = now + 5 * SEC;
    let mut next_maint = now + 5 * SEC;
    let mut last_tick_run = 0i64;
    // the database's event commits as counted before the last ticker run (see below)
    let mut commits_seen = 0u64;
    let mut next_supervise = now;
    loop {
        if BackgroundWorker::sighup_received() {
            super::reload_config();
            pin_session();
            let wanted = gucs::worker_role();
            if wanted.as_deref().is_some_and(|w| w != role)
                || (wanted.is_none() && extowner_changed(role))
            {
                log!("pgq ticker: pgq.worker_role changed; restarting as the new role");
                return Stop::RoleChanged;
            }
        }
        if !gucs::ENABLED.get() {
            return Stop::Clean;
        }
        // no work while the installed SQL is not this library's (see version_gate)
        if let Some(wait_ms) = version_gate() {
            wait_for_version(wait_ms);
            continue;
        }
        now = shmem::now();
        if now >= next_tick {
            with_slot(|s| commits_seen = s.event_commits);
            match run_ticker() {
                Ok(n) => {
                    with_slot(|s| {
                        s.last_tick = now;
                        s.ticks += n;
                    });
                    if let Some(skipped) = crate::ticker::take_skipped() {
                        record_error("ticker", &skipped.into());
                    }
                }
                Err(e) => {
                    // a failed check counts as "still there": the ticker's error is
                    // recorded below and the next period checks again
                    let gone = in_txn("check extension", extension_present)
                        .map(|p| !p)
                        .unwrap_or(false);
                    if gone {
                        return Stop::NoExtension;
                    }
                    record_error("ticker", &e);
                }
            }
            last_tick_run = now;
            next_tick = now + gucs::TICKER_PERIOD_MS.get() as i64 * 1000;
            // wake exactly when the first queue reaches its lag/idle threshold
            if let Some(due) = crate::ticker::take_next_due() {
                let at = now + (due * 1e6) as i64 + 1000;
                let earliest = now + gucs::TICKER_MIN_PERIOD_MS.get() as i64 * 1000;
                next_tick = next_tick.min(at.max(earliest));
            }
        }
        if now >= next_retry {
            run_retry();
            next_retry = shmem::now() + gucs::RETRY_PERIOD_S.get() as i64 * SEC;
        }
        if now >= next_maint {
            run_maintenance();
            next_maint = shmem::now() + gucs::MAINT_PERIOD_S.get() as i64 * SEC;
        }
        if now >= next_supervise {
            // the manager's part: this database's replay workers, root duties
            // SAFETY: a PostgreSQL global of this process, set when it connected.
            let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
            let latest = super::manager::round(dboid, now);
            next_supervise = latest.min(shmem::now() + SEC);
        }
        now = shmem::now();
        // A long sleep asks the next event commit to wake us (so a producer signals
        // only a sleeping ticker, not at every commit); see tick_policy::before_sleep
        if gucs::TICKER_WAKEUP.get() {
            let until = next_tick
                .min(next_retry)
                .min(next_maint)
                .min(next_supervise);
            let min_period = gucs::TICKER_MIN_PERIOD_MS.get() as i64 * 1000;
            let mut plan = Sleep::Plain;
            with_slot(|s| {
                plan = before_sleep(
                    now,
                    until,
                    next_tick,
                    last_tick_run,
                    min_period,
                    s.event_commits != commits_seen,
                );
                s.wake_armed = plan == Sleep::Arm;
            });
            if let Sleep::Short(at) = plan {
                next_tick = at;
            }
        }
        let until = next_tick
            .min(next_retry)
            .min(next_maint)
            .min(next_supervise);
        let timeout_ms = ((until - now) / 1000).clamp(1, 60_000);
        // SAFETY: waits on this process's own latch; WL_EXIT_ON_PM_DEATH ends the
        // process if the postmaster dies.
        let rc = unsafe {
            let rc = pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                timeout_ms,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
            rc
        };
        // SIGTERM (PostgreSQL's `die`) ends the process here, or in any wait before
        pg_sys::check_for_interrupts!();
        let mut supervise_now = false;
        with_slot(|s| {
            supervise_now = std::mem::take(&mut s.supervise_requested);
            s.wake_armed = false;
        });
        if supervise_now {
            next_supervise = shmem::now();
        }
        if rc & pg_sys::WL_LATCH_SET as i32 != 0 {
            // a producer committed events: tick soon, but not more often than the minimum period
            let earliest = last_tick_run + gucs::TICKER_MIN_PERIOD_MS.get() as i64 * 1000;
            next_tick = next_tick.min(earliest.max(shmem::now()));
        }
    }
}

/// # Safety
/// Called once by PostgreSQL at process exit (before_shmem_exit).
#[pg_guard]
pub unsafe extern "C-unwind" fn on_exit(_code: i32, _arg: pg_sys::Datum) {
    let Some(i) = my_slot() else { return };
    if !shmem::available() {
        return;
    }
    let (launcher, manager) = {
        let mut s = STATE.exclusive();
        let slot = &mut s.slots[i];
        let (kind, dboid) = (slot.kind, slot.dboid);
        if slot.pid == super::my_pid() {
            slot.pid = 0;
            slot.phase = shmem::Phase::Exited;
        }
        // a child's supervisor is its database's manager
        let manager = if kind == shmem::Kind::Ticker {
            0
        } else {
            s.slot_of(dboid).map(|m| s.slots[m].pid).unwrap_or(0)
        };
        (s.launcher_pid, manager)
    };
    shmem::wake(launcher);
    shmem::wake(manager);
}

/// Why a worker started for (slot, generation) must not take the slot, if it must not.
pub fn attach_check_locked(
    s: &shmem::Shared,
    slot_index: usize,
    generation: u32,
    kind: shmem::Kind,
) -> Result<shmem::WorkerSlot, String> {
    let Some(slot) = s
        .slots
        .get(slot_index)
        .filter(|x| x.in_use && x.kind == kind)
    else {
        return Err(format!("slot {slot_index} is not a {} slot", kind.name()));
    };
    if slot.blocked_until > shmem::now() {
        return Err(format!(
            "database {} is reserved by a command in progress",
            slot.dboid
        ));
    }
    let holder = slot.pid;
    match may_attach(
        generation,
        slot.generation,
        holder,
        shmem::alive(holder),
        super::my_pid(),
    ) {
        Ok(()) => Ok(*slot),
        Err(AttachRefusal::StaleGeneration) => Err(format!(
            "started for slot {slot_index} generation {generation}, which is now generation {}",
            slot.generation
        )),
        Err(AttachRefusal::HeldBy(pid)) if kind == shmem::Kind::Ticker => Err(format!(
            "database {} already has a ticker (pid {pid})",
            slot.dboid
        )),
        Err(AttachRefusal::HeldBy(pid)) => Err(format!(
            "{} worker of \"{}\" in database {} is running already (pid {pid})",
            kind.name(),
            slot.object(),
            slot.dboid
        )),
    }
}

pub fn attach_check(
    slot_index: usize,
    generation: u32,
    kind: shmem::Kind,
) -> Result<shmem::WorkerSlot, String> {
    attach_check_locked(&STATE.share(), slot_index, generation, kind)
}

/// Session settings of a worker, for its whole life: a search_path nobody else can
/// influence (set at the same level autovacuum uses, above ALTER DATABASE/ROLE SET),
/// a lock_timeout so a lock held by some session fails a step instead of stalling the
/// worker, and the application_name operators see.
pub fn pin_session() {
    let lock_timeout =
        CString::new(gucs::WORKER_LOCK_TIMEOUT_MS.get().to_string()).unwrap_or_default();
    let app = CString::new(who()).unwrap_or_default();
    // SAFETY: GUC assignments of this process with static, NUL-terminated names and
    // values that are valid for these settings.
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
        pg_sys::SetConfigOption(
            c"lock_timeout".as_ptr(),
            lock_timeout.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
        pg_sys::SetConfigOption(
            c"application_name".as_ptr(),
            app.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
        );
    }
}

/// The role the worker acts as: `pgq.worker_role` when set, else the owner of the
/// extension. The process connects as the bootstrap superuser (a background worker
/// must name some role before it can read pg_extension) and switches right away, before
/// running anything of the extension's.
pub fn become_worker_role() -> Result<String, String> {
    let role = match gucs::worker_role() {
        Some(name) => {
            let c = CString::new(name.clone()).map_err(|_| "bad role name".to_string())?;
            // SAFETY: catalog lookup inside a transaction; missing_ok so no ERROR.
            let oid = unsafe { pg_sys::get_role_oid(c.as_ptr(), true) };
            if oid == pg_sys::InvalidOid {
                return Err(format!("pgq.worker_role \"{name}\" does not exist"));
            }
            oid
        }
        None => Spi::connect(|c| {
            c.select(
                "select e.extowner from pg_catalog.pg_extension e \
                 where e.extname operator(pg_catalog.=) 'pgq'",
                Some(1),
                &[],
            )
            .and_then(|t| t.first().get::<pg_sys::Oid>(1))
        })
        .map_err(|e| format!("reading the extension owner: {e}"))?
        .ok_or_else(|| "extension pgq is not installed".to_string())?,
    };
    // SAFETY: the process authenticated as the bootstrap superuser, which may take any
    // session authorization; `role` exists (looked up in this transaction).
    unsafe {
        pg_sys::SetSessionAuthorization(role, pg_sys::superuser_arg(role));
        let name = pg_sys::GetUserNameFromId(role, true);
        Ok(if name.is_null() {
            role.to_u32().to_string()
        } else {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        })
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgq_ticker_main(arg: pg_sys::Datum) {
    let (slot_index, generation) = shmem::parse_start_arg(arg);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    super::terminate_on_sigterm();
    if super::binary_upgrade() {
        return;
    }
    // the slot says which database; a slot reused since the launcher asked for this
    // worker (another generation) is not ours, nor one a live process holds
    let dboid = match attach_check(slot_index, generation, shmem::Kind::Ticker) {
        Ok(slot) => slot.dboid,
        Err(why) => {
            log!("pgq ticker: not starting: {why}");
            return;
        }
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(dboid)), None);
    pin_session();
    {
        let mut s = STATE.exclusive();
        if let Err(why) = attach_check_locked(&s, slot_index, generation, shmem::Kind::Ticker) {
            drop(s);
            log!("pgq ticker: not starting: {why}");
            return;
        }
        SLOT.store(slot_index, std::sync::atomic::Ordering::Relaxed);
        let slot = &mut s.slots[slot_index];
        slot.phase = shmem::Phase::Running;
        slot.pid = super::my_pid();
        slot.started_at = shmem::now();
        slot.no_extension = false;
    }
    log!(
        "pgq ticker for database \"{}\" has started (slot {slot_index}, generation {generation})",
        in_txn("database name", || super::database_name(
            // SAFETY: a PostgreSQL global of this process, set when it connected.
            unsafe { pg_sys::MyDatabaseId }
        ))
        .ok()
        .flatten()
        .unwrap_or_else(|| dboid.to_string())
    );
    // SAFETY: registers a callback of this process, run once at its exit.
    unsafe {
        pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(0));
    }
    crate::ticker::set_try_lock_only();
    let present = in_txn("check extension", extension_present).unwrap_or(false);
    if !present {
        with_slot(|s| s.no_extension = true);
        with_slot(|s| s.restarts = 0);
        return;
    }
    let role = match in_txn("worker role", become_worker_role) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            record_error("worker role", &e.into());
            return;
        }
        Err(e) => {
            record_error("worker role", &e);
            return;
        }
    };
    super::run_main("pgq ticker", || {
        let stop = main_loop(&role);
        if let Stop::NoExtension = stop {
            with_slot(|s| s.no_extension = true);
        }
        with_slot(|s| s.restarts = 0);
    });
}
