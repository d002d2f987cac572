//! The copy worker process: one per table of a replayed node in the middle of its
//! initial copy (docs/replication.md, "Initial copy"), started by its database's
//! manager. It attaches to its slot (kind `copy`, object `<table_info.nr> <table>`),
//! connects to the database, becomes the node's replay role, and runs the copy and
//! catch-up of `crate::replay::worker` for that one table until the table is handed to
//! the node's replay worker (state `ok`).

use super::shmem::{self, Kind};
use super::worker::{self as w, in_txn};
use crate::errors::{PgqError, SpiResultExt};
use crate::replay::worker::Replay;
use pgrx::prelude::*;

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
    let Some((slot_index, generation, object)) =
        super::replay::attach_child(arg, Kind::Copy, "pgq copy")
    else {
        return;
    };
    let Some(nr) = shmem::copy_object_nr(&object) else {
        log!("pgq copy: not starting: slot {slot_index} names no table");
        return;
    };
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
    log!(
        "pgq copy for table {table} of queue \"{queue}\" has started as role \"{role}\" (slot {slot_index}, generation {generation})"
    );
    super::replay::run_rounds("pgq copy", || {
        Replay::new_copy(queue, role, is_superuser, nr, table)
    });
}
