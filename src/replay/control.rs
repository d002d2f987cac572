//! Who replays a node, and as whom (docs/replication.md, "In-server replay").
//!
//! * `pgq_node.create_node` records the role that called it (the session's role, not
//!   the SECURITY DEFINER owner) in `pgq_cascade.node_replay`, with in-server replay on.
//! * `pgq_cascade.set_in_server_replay(queue, on)` turns it on or off; turning it on
//!   records the caller as the role the worker acts as.
//! * While a node is replayed in-server, `pgq_node.set_consumer_completed` for the
//!   node's worker refuses every session but the replay worker: an external
//!   `londiste worker` left running cannot commit a batch the in-server worker also
//!   applies. The in-server worker in turn locks the worker's `local_state` row and
//!   re-checks the position before it applies anything.

use crate::db::{self, Db};
use crate::errors::{OrReport, PgqError, PgqResult, SqlState};
use crate::outrec::OutRec;
use pgrx::prelude::*;

/// The role of the session: the one that called a SECURITY DEFINER function, or the
/// one SET ROLE chose.
fn calling_role() -> PgqResult<String> {
    // SAFETY: reads a backend variable and looks its name up in the syscache; missing
    // (a dropped role) gives NULL.
    let name = unsafe {
        let p = pg_sys::GetUserNameFromId(pg_sys::GetOuterUserId(), true);
        (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
    };
    name.ok_or_else(|| PgqError::internal("the calling role does not exist"))
}

/// Whether the installed SQL has the replay tables (not when an older version's SQL
/// runs with this library, before ALTER EXTENSION pgq UPDATE).
fn have_replay_tables(c: &mut Db<'_, '_>) -> PgqResult<bool> {
    Ok(c.one::<bool>(
        "looking for pgq_cascade.node_replay",
        "select pg_catalog.to_regclass('pgq_cascade.node_replay') is not null",
        &[],
    )?
    .unwrap_or(false))
}

/// Record that `queue`'s node is replayed in-server as the calling role (create_node).
pub fn record_new_node(c: &mut Db<'_, '_>, queue: Option<&str>) -> PgqResult<()> {
    if !have_replay_tables(c)? {
        return Ok(());
    }
    let role = calling_role()?;
    c.execute(
        "recording the node's replay role",
        "insert into pgq_cascade.node_replay (queue_name, replay_role, in_server) values ($1, $2, true) \
         on conflict (queue_name) do update set replay_role = excluded.replay_role, \
             in_server = true, changed_at = pg_catalog.now()",
        &[queue.into(), role.as_str().into()],
    )?;
    Ok(())
}

#[pg_extern(sql = false)]
fn pgq_cascade_set_in_server_replay(
    i_queue_name: Option<&str>,
    i_in_server: Option<bool>,
) -> OutRec {
    db::write("pgq_cascade", |c| {
        set_in_server_replay(c, i_queue_name, i_in_server)
    })
    .or_report()
}

pub fn set_in_server_replay(
    c: &mut Db<'_, '_>,
    queue: Option<&str>,
    on: Option<bool>,
) -> PgqResult<OutRec> {
    let (Some(queue), Some(on)) = (queue, on) else {
        return Err(PgqError::new(
            SqlState::NULL_VALUE_NOT_ALLOWED,
            "queue name and setting must not be NULL",
        ));
    };
    let node = c
        .read(
            "reading the node",
            "select node_name::text, node_type::text from pgq_node.node_info where queue_name = $1 for update",
            &[queue.into()],
        )?;
    if node.is_empty() {
        return Ok(OutRec::ret(404, Some(format!("Unknown queue: {queue}"))));
    }
    let r = node.first();
    let node_name = db::req::<String>(&r, 1, "reading the node")?;
    let role = calling_role()?;
    c.execute(
        "setting in-server replay",
        "insert into pgq_cascade.node_replay (queue_name, replay_role, in_server) values ($1, $2, $3) \
         on conflict (queue_name) do update set \
             replay_role = case when excluded.in_server then excluded.replay_role \
                                else pgq_cascade.node_replay.replay_role end, \
             in_server = excluded.in_server, changed_at = pg_catalog.now()",
        &[queue.into(), role.as_str().into(), on.into()],
    )?;
    Ok(OutRec::ret(
        200,
        Some(if on {
            format!(
                "In-server replay on for node {node_name} of queue {queue}, acting as role {role}"
            )
        } else {
            format!("In-server replay off for node {node_name} of queue {queue}")
        }),
    ))
}

/// Whether in-server replay runs in this cluster at all.
pub(crate) fn replay_runs() -> bool {
    crate::bgworker::preloaded() && crate::gucs::ENABLED.get() && crate::gucs::REPLAY.get()
}

/// The refusal of `set_consumer_completed` for another session while `consumer` of
/// `queue` is replayed in-server.
pub fn check_completion_allowed(
    c: &mut Db<'_, '_>,
    queue: Option<&str>,
    consumer: Option<&str>,
) -> PgqResult<()> {
    if crate::replay::worker::is_replay_worker() || !replay_runs() || !have_replay_tables(c)? {
        return Ok(());
    }
    let busy = c.exists(
        "checking in-server replay",
        "select 1 from pgq_cascade.node_replay r join pgq_node.node_info n using (queue_name) \
          where r.queue_name = $1 and r.in_server and n.node_type in ('branch', 'leaf') \
            and (n.worker_name = $2 \
                 or pg_catalog.starts_with($2, n.worker_name operator(pg_catalog.||) '.copy.'))",
        &[queue.into(), consumer.into()],
    )?;
    if busy {
        return Err(PgqError::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "consumer {} of queue {} is replayed in-server",
                consumer.unwrap_or(""),
                queue.unwrap_or("")
            ),
        )
        .hint(format!(
            "Run select * from pgq_cascade.set_in_server_replay({}, false) before running another worker for it.",
            crate::logic::quote::literal(queue.unwrap_or(""))
        )));
    }
    Ok(())
}

#[pg_extern(sql = false)]
fn pgq_cascade_skip_replay_error(i_queue_name: Option<&str>) -> OutRec {
    db::write("pgq_cascade", |c| skip_replay_error(c, i_queue_name)).or_report()
}

/// Skip what the node's replay fails on: the newest error of the queue not skipped yet
/// is marked `skipped`; the worker then leaves out that event (or, for an error outside
/// any event, the whole batch) the next time it applies the batch, and is woken to do
/// so when this transaction commits. An event skipped on a branch is still passed on
/// to the nodes below.
pub fn skip_replay_error(c: &mut Db<'_, '_>, queue: Option<&str>) -> PgqResult<OutRec> {
    let Some(queue) = queue else {
        return Err(PgqError::new(
            SqlState::NULL_VALUE_NOT_ALLOWED,
            "queue name must not be NULL",
        ));
    };
    let t = c.write(
        "marking the error skipped",
        "update pgq_cascade.replay_error e set skipped = true \
          where e.error_id = (select max(x.error_id) from pgq_cascade.replay_error x \
                               where x.queue_name = $1) \
            and not e.skipped and e.batch_id is not null \
         returning e.error_id, e.batch_id, e.ev_id",
        &[queue.into()],
    )?;
    if t.is_empty() {
        return Ok(OutRec::ret(
            404,
            Some(format!("No replay error to skip for queue {queue}")),
        ));
    }
    let r = t.first();
    let id = db::req::<i64>(&r, 1, "marking the error skipped")?;
    let batch = db::req::<i64>(&r, 2, "marking the error skipped")?;
    let ev = db::get::<i64>(&r, 3, "marking the error skipped")?;
    crate::bgworker::hooks::request_replay_wakeup(Some(queue));
    Ok(OutRec::ret(
        200,
        Some(match ev {
            Some(ev) => format!("Error {id}: event {ev} of batch {batch} will be skipped"),
            None => format!("Error {id}: batch {batch} will be skipped"),
        }),
    ))
}
