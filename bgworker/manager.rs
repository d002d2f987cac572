//! The database's manager: the per-database worker (the ticker) also supervises that
//! database's in-server replay workers, one per local branch or leaf node that has
//! in-server replay on (`pgq_cascade.node_replay`, GUC `pgq.replay`), and their copy
//! workers, one per table of such a node in the middle of its initial copy (states
//! `in-copy`, `catching-up`, `wanna-sync:T`, `do-sync:C`), and does the root duties of
//! each local root node (`londiste.root_check_seqs`).
//!
//! Like the launcher, the manager keeps no record of its own: the shared slots of kinds
//! `replay` and `copy` are the record, so a restarted manager finds the children already running
//! and starts no second one. Children that exit are restarted with backoff
//! (`logic::supervise::decide`); children no longer wanted (node dropped, turned into
//! a root, in-server replay turned off) are stopped with SIGTERM.

use super::shmem::{self, Kind, STATE};
use super::worker::{in_txn, record_error, StepError};
use crate::errors::SpiResultExt;
use crate::gucs;
use crate::logic::node::NodeType;
use crate::logic::supervise::{self, Decision};
use pgrx::prelude::*;

/// One node of this database as the manager sees it.
struct Node {
    queue: String,
    node_type: Option<NodeType>,
    in_server: bool,
}

/// A table of a node: its copy worker's slot object, its queue, and whether it is in
/// the middle of its initial copy or catch-up.
struct Copying {
    queue: String,
    object: String,
    copying: bool,
}

fn read_nodes() -> Result<(Vec<Node>, Vec<Copying>), StepError> {
    in_txn("read cascade nodes", || {
        Spi::connect(|c| {
            let t = crate::db::select(c,
                    "select n.queue_name::text, n.node_type::text, \
                            coalesce(r.in_server, false) \
                       from pgq_node.node_info n \
                       left join pgq_cascade.node_replay r \
                         on r.queue_name operator(pg_catalog.=) n.queue_name \
                      order by 1",
                    None,
                    &[],
                )
                .ctx("reading pgq_node.node_info")?;
            let mut out = Vec::new();
            for row in t {
                let queue = crate::db::req::<String>(&row, 1, "reading pgq_node.node_info")?;
                let ntype = crate::db::req::<String>(&row, 2, "reading pgq_node.node_info")?;
                let in_server = crate::db::req::<bool>(&row, 3, "reading pgq_node.node_info")?;
                out.push(Node {
                    queue,
                    node_type: NodeType::parse(&ntype),
                    in_server,
                });
            }
            // the tables a copy worker works on (the replay worker moved them from NULL
            // to in-copy; the copy worker takes them on to ok)
            let t = crate::db::select(c,
                    "select nr, queue_name::text, table_name::text, \
                            local and (merge_state in ('in-copy', 'catching-up') \
                                 or merge_state like 'wanna-sync:%' or merge_state like 'do-sync:%') \
                       from londiste.table_info order by nr",
                    None,
                    &[],
                )
                .ctx("reading londiste.table_info")?;
            let mut copies = Vec::new();
            for row in t {
                let nr = crate::db::req::<i32>(&row, 1, "reading londiste.table_info")?;
                let queue = crate::db::req::<String>(&row, 2, "reading londiste.table_info")?;
                let table = crate::db::req::<String>(&row, 3, "reading londiste.table_info")?;
                let copying = crate::db::get::<bool>(&row, 4, "reading londiste.table_info")?
                    .unwrap_or(false);
                copies.push(Copying {
                    queue,
                    object: shmem::copy_object(nr, &table),
                    copying,
                });
            }
            Ok((out, copies))
        })
    })
    .and_then(|r| r)
}

fn wants_replay(n: &Node) -> bool {
    n.in_server && matches!(n.node_type, Some(NodeType::Branch) | Some(NodeType::Leaf))
}

/// Start a worker of `kind` for `object` in slot `i` (generation `g`).
fn start_child(kind: Kind, object: &str, i: usize, g: u32) {
    let (name, btype, function) = match kind {
        Kind::Copy => (format!("pgq copy {object}"), "pgq copy", "pgq_copy_main"),
        _ => (
            format!("pgq replay {object}"),
            "pgq replay",
            "pgq_replay_main",
        ),
    };
    if !super::start_dynamic(&name, btype, function, i, g) {
        record_error(
            &format!("{} worker of \"{object}\"", kind.name()),
            &StepError::new(
                crate::errors::SqlState::CONFIGURATION_LIMIT_EXCEEDED,
                format!(
                    "could not start a {} worker (max_worker_processes reached?)",
                    kind.name()
                ),
            ),
        );
    }
}

/// Supervise this database's workers of `kind`: start the wanted ones that do not run,
/// restart the ones that exited (with backoff), stop the ones no longer wanted that
/// `stop` names (a copy worker whose table merely left its copy states is left to end by
/// itself, its last steps after handing the table over included).
#[allow(clippy::too_many_arguments)]
fn supervise(
    kind: Kind,
    dboid: u32,
    wanted: &[&str],
    stop: &dyn Fn(&str) -> bool,
    now: i64,
    next: &mut i64,
    to_start: &mut Vec<(Kind, usize, String)>,
    problems: &mut Vec<String>,
) {
    let mut st = STATE.exclusive();
    for o in wanted {
        if st.find(kind, dboid, o).is_none() && st.find_or_add(kind, dboid, o).is_none() {
            problems.push(if o.len() > shmem::OBJECT_LEN {
                format!(
                    "queue \"{o}\" is not replayed in-server: its name is longer than {} bytes",
                    shmem::OBJECT_LEN
                )
            } else {
                format!(
                    "no {} worker for \"{o}\": all {} pgq worker slots are taken",
                    kind.name(),
                    shmem::MAX_WORKERS
                )
            });
        }
    }
    for i in 0..st.slots.len() {
        let slot = &mut st.slots[i];
        if !slot.in_use || slot.kind != kind || slot.dboid != dboid {
            continue;
        }
        let is_wanted = wanted.contains(&slot.object());
        match supervise::decide(&slot.view(is_wanted), now) {
            Decision::Busy => {
                if !is_wanted && stop(slot.object()) {
                    shmem::terminate(slot.pid);
                }
            }
            Decision::Reap {
                restarts,
                next_start,
            } => {
                slot.reap(restarts, next_start);
                *next = (*next).min(next_start.max(now));
            }
            Decision::Start => to_start.push((kind, i, slot.object().to_string())),
            Decision::WaitUntil(t) => *next = (*next).min(t),
            Decision::Nothing => {
                if !is_wanted {
                    *slot = shmem::WorkerSlot::default();
                }
            }
        }
    }
}

/// One supervision round. Returns the latest time the next round should run.
pub fn round(dboid: u32, now: i64) -> i64 {
    let mut next = now + 5 * supervise::SEC;
    let (nodes, copies) = match read_nodes() {
        Ok(n) => n,
        Err(e) => {
            record_error("supervising replay", &e);
            return next;
        }
    };
    let replay_on = gucs::REPLAY.get() && gucs::ENABLED.get();
    let wanted: Vec<&str> = nodes
        .iter()
        .filter(|n| replay_on && wants_replay(n))
        .map(|n| n.queue.as_str())
        .collect();
    // copy workers only for nodes replayed here
    let copy_wanted: Vec<&str> = copies
        .iter()
        .filter(|c| {
            c.copying
                && nodes
                    .iter()
                    .any(|n| n.queue == c.queue && wanted.contains(&n.queue.as_str()))
        })
        .map(|c| c.object.as_str())
        .collect();
    // a copy worker whose node is no longer replayed here (dropped, turned off, a
    // root now) stops at once, as the replay worker does: another worker (a Python
    // londiste worker's copy process) may take the table over
    let stop_copy = |object: &str| {
        copies
            .iter()
            .find(|c| c.object == object)
            .is_some_and(|c| !wanted.contains(&c.queue.as_str()))
    };
    let mut to_start = Vec::new();
    let mut problems = Vec::new();
    supervise(
        Kind::Replay,
        dboid,
        &wanted,
        &|_| true,
        now,
        &mut next,
        &mut to_start,
        &mut problems,
    );
    supervise(
        Kind::Copy,
        dboid,
        &copy_wanted,
        &stop_copy,
        now,
        &mut next,
        &mut to_start,
        &mut problems,
    );
    for p in problems {
        record_error(
            "supervising replay",
            &StepError::new(crate::errors::SqlState::PROGRAM_LIMIT_EXCEEDED, p),
        );
    }
    for (kind, i, object) in to_start {
        let g = STATE.exclusive().new_generation(i, now);
        start_child(kind, &object, i, g);
    }
    // root duties: publish sequence positions, acknowledge the worker state (what the
    // Python worker did on a root)
    for n in nodes.iter().filter(|n| n.node_type == Some(NodeType::Root)) {
        let r = in_txn("londiste.root_check_seqs", || {
            Spi::connect_mut(|c| {
                crate::db::update(
                    c,
                    "select ret_code from londiste.root_check_seqs($1)",
                    Some(1),
                    &[n.queue.as_str().into()],
                )
                .ctx("running londiste.root_check_seqs")?;
                // the root's worker state is acknowledged as a root worker would
                // (admin tools wait for uptodate after changing it)
                crate::db::update(
                    c,
                    "select u.ret_code from pgq_node.node_info n \
                       join pgq_node.local_state s \
                         on s.queue_name operator(pg_catalog.=) n.queue_name \
                        and s.consumer_name operator(pg_catalog.=) n.worker_name, \
                       lateral pgq_node.set_consumer_uptodate(n.queue_name, n.worker_name, true) u \
                      where n.queue_name operator(pg_catalog.=) $1 and not s.uptodate",
                    None,
                    &[n.queue.as_str().into()],
                )
                .map(|_| ())
                .ctx("acknowledging the root worker's state")
            })
        })
        .and_then(|r| r);
        if let Err(e) = r {
            record_error(&format!("root_check_seqs({})", n.queue), &e);
        }
    }
    next
}
