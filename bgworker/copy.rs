//! The copy worker process: one per table of a replayed node in the middle of its
//! initial copy (docs/replication.md, "Initial copy"), started by its database's
//! manager. It attaches to its slot (kind `copy`, object `<table_info.nr> <table>`),
//! connects to the database, becomes the node's replay role, and runs the copy and
//! catch-up of `crate::replay::worker` for that one table until the table is handed to
//! the node's replay worker (state `ok`).

use super::shmem::{self, Kind, STATE};
use super::worker::{self as w, in_txn};
use crate::errors::{PgqError, SpiResultExt};
use crate::gucs;
use crate::replay::worker::{Replay, Round, IN_REPLAY_WORKER};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use std::time::Duration;

/// The queue and table of `londiste.table_info` row `nr`, if it is still there.
fn table_of(nr: i32) -> Result<Option<(String, String)>, PgqError> {
    Spi::connect(|c| {
        let t = c
            .select(
                "select queue_name::text, table_name::text from londiste.table_info \
                  where nr operator(pg_catalog.=) $1 and local",
                Some(1),
                &[nr.into()],
            )
            .ctx("reading londiste.table_info")?;
        if t.is_empty() {
            return Ok(None);
        }
        let r = t.first();
        Ok(r.get::<String>(1)
            .ctx("reading londiste.table_info")?
            .zip(r.get::<String>(2).ctx("reading londiste.table_info")?))
    })
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgq_copy_main(arg: pg_sys::Datum) {
    let (slot_index, generation) = shmem::parse_start_arg(arg);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    super::terminate_on_sigterm();
    w::set_who("pgq copy");
    if super::binary_upgrade() {
        return;
    }
    let (dboid, nr) = match w::attach_check(slot_index, generation, Kind::Copy) {
        Ok(slot) => match shmem::copy_object_nr(slot.object()) {
            Some(nr) => (slot.dboid, nr),
            None => {
                log!("pgq copy: not starting: slot {slot_index} names no table");
                return;
            }
        },
        Err(why) => {
            log!("pgq copy: not starting: {why}");
            return;
        }
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(dboid)), None);
    w::pin_session();
    {
        let mut s = STATE.exclusive();
        if let Err(why) = w::attach_check_locked(&s, slot_index, generation, Kind::Copy) {
            drop(s);
            log!("pgq copy: not starting: {why}");
            return;
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
    let found = in_txn("copy worker start", || -> Result<_, PgqError> {
        let Some((queue, table)) = table_of(nr)? else {
            return Ok(None);
        };
        Ok(super::replay::become_replay_role(&queue)?.map(|r| (queue, table, r)))
    })
    .and_then(|r| r);
    let (queue, table, role, is_superuser) = match found {
        Ok(Some((q, t, (role, su)))) => (q, t, role, su),
        Ok(None) => {
            log!("pgq copy: table {nr} is gone or its node is not replayed in-server; exiting");
            w::with_slot(|s| s.restarts = 0);
            return;
        }
        Err(e) => {
            w::record_error("copy worker start", &e);
            return;
        }
    };
    IN_REPLAY_WORKER.store(true, std::sync::atomic::Ordering::Relaxed);
    log!(
        "pgq copy for table {table} of queue \"{queue}\" has started as role \"{role}\" (slot {slot_index}, generation {generation})"
    );
    super::run_main("pgq copy", || {
        let mut copy =
            Replay::new_copy(queue.clone(), role.clone(), is_superuser, nr, table.clone());
        loop {
            if BackgroundWorker::sighup_received() {
                super::reload_config();
                w::pin_session();
            }
            if !gucs::ENABLED.get() || !gucs::REPLAY.get() {
                log!("pgq copy: in-server replay is off (pgq.enabled / pgq.replay); exiting");
                break;
            }
            if let Some(wait_ms) = w::version_gate() {
                w::wait_latch(wait_ms);
                continue;
            }
            match copy.round() {
                Round::Busy => {
                    pg_sys::check_for_interrupts!();
                }
                Round::Idle(d) => copy.wait(d.min(Duration::from_secs(60))),
                Round::Stop(why) => {
                    log!("pgq copy: {why}; exiting");
                    break;
                }
            }
        }
        w::with_slot(|s| s.restarts = 0);
    });
}
