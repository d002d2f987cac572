//! The replay worker process: one per cascaded node with in-server replay, started by
//! its database's manager (bgworker/manager.rs). It attaches to its slot (kind
//! `replay`, object = the queue name), connects to the database, becomes the node's
//! replay role (`pgq_cascade.node_replay.replay_role`: whoever created the node or last
//! turned in-server replay on) and runs the replay loop of `crate::replay::worker`.

use super::shmem::{self, Kind, STATE};
use super::worker::{self as w, in_txn};
use crate::errors::SpiResultExt;
use crate::gucs;
use crate::replay::worker::{Replay, Round, IN_REPLAY_WORKER};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use std::time::Duration;

/// The role the node's replay acts as, if in-server replay is on for it.
fn replay_role(queue: &str) -> Result<Option<(pg_sys::Oid, String)>, crate::errors::PgqError> {
    Spi::connect(|c| {
        let t = c
            .select(
                "select r.replay_role::text from pgq_cascade.node_replay r \
                  where r.queue_name operator(pg_catalog.=) $1 and r.in_server",
                Some(1),
                &[queue.into()],
            )
            .ctx("reading pgq_cascade.node_replay")?;
        if t.is_empty() {
            return Ok(None);
        }
        let Some(name) = t
            .first()
            .get::<String>(1)
            .ctx("reading pgq_cascade.node_replay")?
        else {
            return Ok(None);
        };
        let c = std::ffi::CString::new(name.clone())
            .map_err(|_| crate::errors::PgqError::internal("replay role name contains NUL"))?;
        // SAFETY: catalog lookup inside a transaction; missing_ok so no ERROR.
        let oid = unsafe { pg_sys::get_role_oid(c.as_ptr(), true) };
        if oid == pg_sys::InvalidOid {
            return Err(crate::errors::PgqError::new(
                crate::errors::SqlState::UNDEFINED_OBJECT,
                format!("replay role \"{name}\" of queue \"{queue}\" does not exist"),
            ));
        }
        Ok(Some((oid, name)))
    })
}

/// Look the replay role up and become it, in the caller's transaction (the privilege
/// lookups read the catalogs).
pub(super) fn become_replay_role(
    queue: &str,
) -> Result<Option<(String, bool)>, crate::errors::PgqError> {
    let Some((oid, name)) = replay_role(queue)? else {
        return Ok(None);
    };
    // SAFETY: inside a transaction; the process authenticated as the bootstrap
    // superuser, which may take any session authorization; `oid` exists (looked up
    // just now in this transaction).
    let is_superuser = unsafe {
        let su = pg_sys::superuser_arg(oid);
        pg_sys::SetSessionAuthorization(oid, su);
        su
    };
    Ok(Some((name, is_superuser)))
}

/// The start of a replay or copy worker (`who`): signal handlers, the slot it was
/// started for (kind, generation; checked again under the lock once connected), its
/// database, its exit callback. Returns the slot index, generation and object, or None
/// (logged) when it must not run.
pub(super) fn attach_child(
    arg: pg_sys::Datum,
    kind: Kind,
    who: &'static str,
) -> Option<(usize, u32, String)> {
    let (slot_index, generation) = shmem::parse_start_arg(arg);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    super::terminate_on_sigterm();
    w::set_who(who);
    if super::binary_upgrade() {
        return None;
    }
    let (dboid, object) = match w::attach_check(slot_index, generation, kind) {
        Ok(slot) => (slot.dboid, slot.object().to_string()),
        Err(why) => {
            log!("{who}: not starting: {why}");
            return None;
        }
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(dboid)), None);
    w::pin_session();
    {
        let mut s = STATE.exclusive();
        if let Err(why) = w::attach_check_locked(&s, slot_index, generation, kind) {
            drop(s);
            log!("{who}: not starting: {why}");
            return None;
        }
        w::SLOT.store(slot_index, std::sync::atomic::Ordering::Relaxed);
        let slot = &mut s.slots[slot_index];
        slot.phase = shmem::Phase::Running;
        slot.pid = super::my_pid();
        slot.started_at = shmem::now();
        slot.no_extension = false;
        slot.events = 0;
    }
    // SAFETY: registers a callback of this process, run once at its exit.
    unsafe {
        pg_sys::before_shmem_exit(Some(w::on_exit), pg_sys::Datum::from(0));
    }
    Some((slot_index, generation, object))
}

/// The rounds of a replay or copy worker (`who`) until one says stop, in-server replay
/// is turned off, or the process is told to end.
pub(super) fn run_rounds(who: &'static str, make: impl FnOnce() -> Replay) {
    IN_REPLAY_WORKER.store(true, std::sync::atomic::Ordering::Relaxed);
    super::run_main(who, || {
        let mut replay = make();
        crate::replay::worker::enter_replica_session();
        loop {
            if BackgroundWorker::sighup_received() {
                super::reload_config();
                w::pin_session();
            }
            if !gucs::ENABLED.get() || !gucs::REPLAY.get() {
                log!("{who}: in-server replay is off (pgq.enabled / pgq.replay); exiting");
                break;
            }
            if let Some(wait_ms) = w::version_gate() {
                w::wait_latch(wait_ms);
                continue;
            }
            match replay.round() {
                Round::Busy => {
                    pg_sys::check_for_interrupts!();
                }
                Round::Idle(d) => replay.wait(d.min(Duration::from_secs(60))),
                Round::Stop(why) => {
                    log!("{who}: {why}; exiting");
                    break;
                }
            }
        }
        w::with_slot(|s| s.restarts = 0);
    });
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgq_replay_main(arg: pg_sys::Datum) {
    let Some((slot_index, generation, queue)) = attach_child(arg, Kind::Replay, "pgq replay")
    else {
        return;
    };
    let (role, is_superuser) =
        match in_txn("replay role", || become_replay_role(&queue)).and_then(|r| r) {
            Ok(Some(r)) => r,
            Ok(None) => {
                log!("pgq replay: in-server replay of queue \"{queue}\" is off; exiting");
                w::with_slot(|s| s.restarts = 0);
                return;
            }
            Err(e) => {
                w::record_error("replay role", &e);
                return;
            }
        };
    log!(
        "pgq replay for queue \"{queue}\" has started as role \"{role}\" (slot {slot_index}, generation {generation})"
    );
    run_rounds("pgq replay", || Replay::new(queue, role, is_superuser));
}
