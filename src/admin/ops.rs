//! Operations on a running cascade (docs/admin.md "Operations"): pause and resume,
//! change_provider, takeover (switchover and failover), execute.
//!
//! Where the CLI pauses a worker and waits until it acknowledges, these functions lock
//! the worker's `pgq_node.local_state` row instead ("freeze"): the lock waits for the
//! batch in flight, and no other batch can complete until the operation commits. The
//! in-server replay worker takes that lock at the start of each batch; a Python worker
//! is held at its `set_consumer_completed`. So nothing waits on an acknowledgement
//! that this transaction's own uncommitted pause could never produce.

use super::{
    arg, col_i64, in_subxact, local_node, members, node_view, own_transaction, peer_of, ret_of,
    Member, NodeView, Peer, REGISTER_LOCATION, UNREGISTER_SUBSCRIBER,
};
use crate::errors::{PgqError, PgqResult, SqlState};
use crate::outrec::OutRec;
use pgrx::prelude::*;
use std::time::{Duration, Instant};

const REGISTER_SUBSCRIBER_AT: &str =
    "select ret_code::text, ret_note::text from pgq_node.register_subscriber($1, $2, $3, $4::int8)";
const SET_PAUSED: &str =
    "select ret_code::text, ret_note::text from pgq_node.set_consumer_paused($1, $2, $3::bool)";

fn state_error(msg: String) -> PgqError {
    PgqError::new(SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE, msg)
}

/// The node called `name` (None: this one) with its view.
fn target(queue: &str, name: Option<&str>) -> PgqResult<(Peer, NodeView, Vec<Member>, NodeView)> {
    let (mut me, my_view) = local_node(queue)?;
    let known = members(&mut me, queue)?;
    match name.filter(|n| *n != my_view.node_name) {
        None => Ok((me, my_view.clone(), known, my_view)),
        Some(n) => {
            let mut p = peer_of(queue, &my_view, &known, n)?;
            let v = node_view(&mut p, queue)?.ok_or_else(|| {
                state_error(format!("node \"{n}\" has no node of queue \"{queue}\""))
            })?;
            Ok((p, v, known, my_view))
        }
    }
}

#[pg_extern(sql = false)]
fn pgq_cascade_pause(i_queue_name: Option<&str>, i_node_name: Option<&str>) -> OutRec {
    set_paused(i_queue_name, i_node_name, true).unwrap_or_else(|e| e.report())
}

#[pg_extern(sql = false)]
fn pgq_cascade_resume(i_queue_name: Option<&str>, i_node_name: Option<&str>) -> OutRec {
    set_paused(i_queue_name, i_node_name, false).unwrap_or_else(|e| e.report())
}

/// Pause or resume a node's worker. It does not wait: the worker acknowledges within a
/// second of the commit (`uptodate` in pgq_cascade.nodes()).
pub fn set_paused(queue: Option<&str>, node: Option<&str>, paused: bool) -> PgqResult<OutRec> {
    let queue = arg(queue, "queue name")?;
    let (mut p, v, _, _) = target(queue, node)?;
    if !p.is_local() {
        own_transaction(if paused {
            "pgq_cascade.pause()"
        } else {
            "pgq_cascade.resume()"
        });
    }
    let worker = v
        .worker_name
        .clone()
        .ok_or_else(|| state_error(format!("node \"{}\" has no worker", v.node_name)))?;
    let flag = if paused { "true" } else { "false" };
    let r = p.call(
        "setting the pause flag",
        SET_PAUSED,
        &[Some(queue), Some(&worker), Some(flag)],
    )?;
    Ok(ret_of(&r))
}

/// Freeze a node's worker in the node's current transaction; its completed tick.
fn freeze(p: &mut Peer, queue: &str, worker: &str) -> PgqResult<i64> {
    let r = p.row(
        "locking the worker's position",
        "select last_tick_id::text from pgq_node.local_state \
         where queue_name = $1 and consumer_name = $2 for update",
        &[Some(queue), Some(worker)],
    )?;
    col_i64(&r, 0)
        .ok_or_else(|| state_error(format!("node \"{}\": the worker has no position", p.name)))
}

fn begin(p: &mut Peer) -> PgqResult<()> {
    if !p.is_local() {
        p.query("beginning a transaction", "begin", &[])?;
    }
    Ok(())
}

fn commit(p: &mut Peer) -> PgqResult<()> {
    if !p.is_local() {
        p.query("committing", "commit", &[])?;
    }
    Ok(())
}

fn rollback(p: &mut Peer) {
    if !p.is_local() {
        let _ = p.query("rolling back", "rollback", &[]);
    }
}

#[pg_extern(sql = false)]
fn pgq_cascade_change_provider(
    i_queue_name: Option<&str>,
    i_new_provider: Option<&str>,
    i_node_name: Option<&str>,
) -> OutRec {
    own_transaction("pgq_cascade.change_provider()");
    change_provider(i_queue_name, i_new_provider, i_node_name).unwrap_or_else(|e| e.report())
}

pub fn change_provider(
    queue: Option<&str>,
    new: Option<&str>,
    node: Option<&str>,
) -> PgqResult<OutRec> {
    let queue = arg(queue, "queue name")?;
    let new = arg(new, "new provider")?;
    let (mut n, nv, known, my_view) = target(queue, node)?;
    if nv.node_type == "root" {
        return Err(state_error(format!(
            "node \"{}\" is the root: it has no provider",
            nv.node_name
        )));
    }
    if new == nv.node_name {
        return Err(PgqError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("node \"{new}\" cannot be its own provider"),
        ));
    }
    if nv.provider_node.as_deref() == Some(new) {
        return Ok(OutRec::ret(
            200,
            format!("Node \"{}\" already has provider \"{new}\"", nv.node_name),
        ));
    }
    let mut np = peer_of(queue, &my_view, &known, new)?;
    let npv = node_view(&mut np, queue)?
        .ok_or_else(|| state_error(format!("node \"{new}\" has no node of queue \"{queue}\"")))?;
    if npv.node_type == "leaf" {
        return Err(state_error(format!(
            "node \"{new}\" is a leaf: a leaf cannot be a provider"
        )));
    }
    // no loop: the new provider must not be below the node
    let mut up = npv.provider_node.clone();
    for _ in 0..64 {
        let Some(u) = up.take() else { break };
        if u == nv.node_name {
            return Err(state_error(format!(
                "node \"{new}\" is below \"{}\": it cannot be its provider",
                nv.node_name
            )));
        }
        if u == my_view.node_name {
            up = my_view.provider_node.clone();
            continue;
        }
        let Some(m) = known.iter().find(|m| m.name == u && !m.dead) else {
            break;
        };
        let mut p = Peer::connect(&m.name, &m.location)?;
        up = node_view(&mut p, queue)?.and_then(|v| v.provider_node);
    }
    let node_loc = known
        .iter()
        .find(|m| m.name == nv.node_name)
        .map(|m| m.location.clone())
        .ok_or_else(|| state_error(format!("node \"{}\" has no location", nv.node_name)))?;
    move_node(queue, &mut n, &nv, &node_loc, &mut np, &known, &my_view)?;
    Ok(OutRec::ret(
        200,
        format!("Node \"{}\" moved to provider \"{new}\"", nv.node_name),
    ))
}

/// The steps of change-provider once everything is checked: freeze the node, subscribe
/// it at its position on the new provider, switch, commit, unsubscribe from the old.
fn move_node(
    queue: &str,
    n: &mut Peer,
    nv: &NodeView,
    node_loc: &str,
    np: &mut Peer,
    known: &[Member],
    my_view: &NodeView,
) -> PgqResult<()> {
    let worker = nv
        .worker_name
        .clone()
        .ok_or_else(|| state_error(format!("node \"{}\" has no worker", nv.node_name)))?;
    begin(n)?;
    let r = (|| -> PgqResult<()> {
        let tick = freeze(n, queue, &worker)?.to_string();
        np.call(
            "registering the node's location at the new provider",
            REGISTER_LOCATION,
            &[
                Some(queue),
                Some(&nv.node_name),
                Some(node_loc),
                Some("false"),
            ],
        )?;
        np.call(
            "subscribing the node at the new provider",
            REGISTER_SUBSCRIBER_AT,
            &[Some(queue), Some(&nv.node_name), Some(&worker), Some(&tick)],
        )?;
        let switched = n
            .call(
                "switching the node's provider",
                "select ret_code::text, ret_note::text from pgq_node.change_consumer_provider($1, $2, $3)",
                &[Some(queue), Some(&worker), Some(&np.name)],
            )
            .and_then(|_| commit(n));
        if let Err(e) = switched {
            let _ = np.call(
                "undoing the subscription",
                UNREGISTER_SUBSCRIBER,
                &[Some(queue), Some(&nv.node_name)],
            );
            return Err(e);
        }
        Ok(())
    })();
    if let Err(e) = r {
        rollback(n);
        return Err(e);
    }
    // the old provider forgets the node; failures are warnings, as in the CLI
    if let Some(old) = nv.provider_node.as_deref().filter(|o| *o != np.name) {
        let res = peer_of(queue, my_view, known, old).and_then(|mut op| {
            op.call(
                "unsubscribing the node at the old provider",
                UNREGISTER_SUBSCRIBER,
                &[Some(queue), Some(&nv.node_name)],
            )
        });
        if let Err(e) = res {
            crate::errors::warning(format!("pgq_cascade: {}", e.message));
        }
    }
    Ok(())
}

#[pg_extern(sql = false)]
fn pgq_cascade_takeover(
    i_queue_name: Option<&str>,
    i_old_node: Option<&str>,
    i_dead: Option<bool>,
    i_timeout: Option<pgrx::datum::Interval>,
) -> OutRec {
    own_transaction("pgq_cascade.takeover()");
    let timeout = i_timeout
        .map(|t| Duration::from_micros(t.as_micros().clamp(0, i64::MAX as i128) as u64))
        .unwrap_or(Duration::from_secs(60));
    takeover(i_queue_name, i_old_node, i_dead.unwrap_or(false), timeout)
        .unwrap_or_else(|e| e.report())
}

/// Poll `cond` every 100 ms (interruptible) until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> PgqResult<bool>) -> PgqResult<bool> {
    let start = Instant::now();
    loop {
        if cond()? {
            return Ok(true);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        crate::bgworker::worker::wait_latch(100);
    }
}

/// takeover: this node becomes the root in place of `old`.
pub fn takeover(
    queue: Option<&str>,
    old: Option<&str>,
    dead: bool,
    timeout: Duration,
) -> PgqResult<OutRec> {
    let queue = arg(queue, "queue name")?;
    let old = arg(old, "old node")?;
    let (mut me, my_view) = local_node(queue)?;
    let known = members(&mut me, queue)?;
    if old == my_view.node_name {
        return Err(state_error(format!("node \"{old}\" is this node")));
    }
    let old_member = known
        .iter()
        .find(|m| m.name == old)
        .cloned()
        .ok_or_else(|| {
            PgqError::new(
                SqlState::UNDEFINED_OBJECT,
                format!("node \"{old}\" is not a member of queue \"{queue}\""),
            )
        })?;
    if my_view.node_type != "branch" {
        return Err(state_error(format!(
            "node \"{}\" is a {}: only a branch can take over the root",
            my_view.node_name, my_view.node_type
        )));
    }
    let my_worker = my_view
        .worker_name
        .clone()
        .ok_or_else(|| state_error("this node has no worker".into()))?;
    if dead {
        return failover(queue, &mut me, &my_view, &my_worker, &old_member, &known);
    }
    let mut op = Peer::connect(old, &old_member.location)?;
    let ov = node_view(&mut op, queue)?
        .ok_or_else(|| state_error(format!("node \"{old}\" has no node of queue \"{queue}\"")))?;
    if ov.node_type != "root" {
        return Err(PgqError::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!("node \"{old}\" is a {}: takeover in SQL takes over a root; move other nodes with pgq_cascade.change_provider", ov.node_type),
        ));
    }
    let old_worker = ov
        .worker_name
        .clone()
        .ok_or_else(|| state_error(format!("node \"{old}\" has no worker")))?;
    let demote = "select ret_code::text, ret_note::text, last_tick::text from pgq_node.demote_root($1, $2::int4, $3)";
    let me_name = my_view.node_name.clone();
    // 1-2: the old root stops taking events and makes its last tick
    op.call(
        "pausing the old root",
        SET_PAUSED,
        &[Some(queue), Some(&old_worker), Some("true")],
    )?;
    op.call(
        "disabling writes on the old root",
        demote,
        &[Some(queue), Some("1"), Some(&me_name)],
    )?;
    let undo_old = |op: &mut Peer| {
        for (k, v) in [("disable_insert", "0"), ("external_ticker", "0")] {
            let _ = op.query(
                "re-enabling the old root",
                "select pgq.set_queue_config($1, $2, $3)::text",
                &[Some(queue), Some(k), Some(v)],
            );
        }
        let _ = op.call(
            "resuming the old root",
            SET_PAUSED,
            &[Some(queue), Some(&old_worker), Some("false")],
        );
    };
    let last = match op
        .call(
            "making the old root's last tick",
            demote,
            &[Some(queue), Some("2"), Some(&me_name)],
        )
        .and_then(|r| {
            col_i64(&r, 2).ok_or_else(|| PgqError::internal("demote_root gave no last tick"))
        }) {
        Ok(t) => t,
        Err(e) => {
            undo_old(&mut op);
            return Err(e);
        }
    };
    // 3: this node applies everything up to that tick
    let caught_up = wait_until(timeout, || {
        Ok(node_view(&mut me, queue)?
            .and_then(|v| v.last_tick)
            .unwrap_or(0)
            >= last)
    });
    match caught_up {
        Ok(true) => {}
        Ok(false) => {
            undo_old(&mut op);
            return Err(PgqError::new(
                SqlState::QUERY_CANCELED,
                format!("node \"{me_name}\" did not reach the old root's last tick {last} in {timeout:?}"),
            )
            .hint("The old root takes writes again. Check the node's replay (pgq_cascade.nodes) and retry."));
        }
        Err(e) => {
            undo_old(&mut op);
            return Err(e);
        }
    }
    // 4-5: promote this node, subscribe the old root to it
    let local = in_subxact(|| promote(&mut me, queue, &my_worker, old, &old_worker, last));
    if let Err(e) = local {
        undo_old(&mut op);
        return Err(e);
    }
    // 6: the previous provider forgets this node (the old root itself, or a branch)
    if let Some(prev) = my_view.provider_node.as_deref() {
        let res = if prev == old {
            op.call(
                "unsubscribing this node at the old root",
                UNREGISTER_SUBSCRIBER,
                &[Some(queue), Some(&me_name)],
            )
        } else {
            peer_of(queue, &my_view, &known, prev).and_then(|mut p| {
                p.call(
                    "unsubscribing this node at its provider",
                    UNREGISTER_SUBSCRIBER,
                    &[Some(queue), Some(&me_name)],
                )
            })
        };
        if let Err(e) = res {
            crate::errors::warning(format!("pgq_cascade: {}", e.message));
        }
    }
    // 7: the old root becomes a branch under this node
    op.call(
        "demoting the old root",
        demote,
        &[Some(queue), Some("3"), Some(&me_name)],
    )?;
    op.call(
        "resuming the old root's worker",
        SET_PAUSED,
        &[Some(queue), Some(&old_worker), Some("false")],
    )?;
    Ok(OutRec::ret(
        200,
        format!("Node \"{me_name}\" is the root of queue \"{queue}\"; \"{old}\" is a branch under it from tick {last}"),
    ))
}

/// Promote this node (its worker frozen) and subscribe the old root to it as
/// `old_worker` at `tick`: the old root's worker after a switchover, the gravestone
/// after a failover.
fn promote(
    me: &mut Peer,
    queue: &str,
    my_worker: &str,
    old: &str,
    old_worker: &str,
    tick: i64,
) -> PgqResult<()> {
    freeze(me, queue, my_worker)?;
    me.call(
        "promoting this node",
        "select ret_code::text, ret_note::text from pgq_node.promote_branch($1)",
        &[Some(queue)],
    )?;
    me.call(
        "subscribing the old root",
        REGISTER_SUBSCRIBER_AT,
        &[
            Some(queue),
            Some(old),
            Some(old_worker),
            Some(&tick.to_string()),
        ],
    )?;
    Ok(())
}

/// takeover of a dead root: every member learns it is dead, this node is promoted at
/// its own position with a gravestone subscription for the old root, and the old
/// root's other subscribers move under this node.
fn failover(
    queue: &str,
    me: &mut Peer,
    my_view: &NodeView,
    my_worker: &str,
    old: &Member,
    known: &[Member],
) -> PgqResult<OutRec> {
    let me_name = my_view.node_name.clone();
    // the other alive members and what they say
    let mut others = Vec::new();
    for m in known
        .iter()
        .filter(|m| !m.dead && m.name != old.name && m.name != me_name)
    {
        match Peer::connect(&m.name, &m.location).and_then(|mut p| {
            let v = node_view(&mut p, queue)?;
            Ok((p, v))
        }) {
            Ok((p, Some(v))) => others.push((m.clone(), p, v)),
            Ok((_, None)) => {}
            Err(e) => crate::errors::warning(format!(
                "pgq_cascade: skipping node \"{}\": {}",
                m.name, e.message
            )),
        }
    }
    let my_tick = col_i64(
        &me.row(
            "reading this node's last tick",
            "select last_tick_id::text from pgq.get_queue_info($1)",
            &[Some(queue)],
        )?,
        0,
    )
    .unwrap_or(0);
    if let Some((m, _, v)) = others.iter().find(|(_, _, v)| {
        v.provider_node.as_deref() == Some(&old.name) && v.last_tick.unwrap_or(0) > my_tick
    }) {
        return Err(state_error(format!(
            "node \"{}\" is ahead of this node (tick {} > {my_tick}): take over from there, or move this node under it first",
            m.name,
            v.last_tick.unwrap_or(0)
        )));
    }
    // tag the old root dead everywhere (remote members at once, this node below)
    for (m, p, _) in others.iter_mut() {
        if let Err(e) = p.call(
            "tagging the old root dead",
            REGISTER_LOCATION,
            &[Some(queue), Some(&old.name), None, Some("true")],
        ) {
            crate::errors::warning(format!("pgq_cascade: node \"{}\": {}", m.name, e.message));
        }
    }
    let gravestone = format!("{}.gravestone", old.name);
    in_subxact(|| {
        me.call(
            "tagging the old root dead",
            REGISTER_LOCATION,
            &[Some(queue), Some(&old.name), None, Some("true")],
        )?;
        promote(me, queue, my_worker, &old.name, &gravestone, my_tick)
    })?;
    // the old root's other subscribers move under this node
    let mut moved = Vec::new();
    for (m, p, v) in others
        .iter_mut()
        .filter(|(_, _, v)| v.provider_node.as_deref() == Some(&old.name))
    {
        let mut here = Peer::local(&me_name);
        match move_node(queue, p, v, &m.location, &mut here, known, my_view) {
            Ok(()) => moved.push(m.name.clone()),
            Err(e) => crate::errors::warning(format!(
                "pgq_cascade: moving node \"{}\": {}",
                m.name, e.message
            )),
        }
    }
    Ok(OutRec::ret(
        200,
        format!(
            "Node \"{me_name}\" is the root of queue \"{queue}\" from tick {my_tick}; \"{}\" is tagged dead{}",
            old.name,
            if moved.is_empty() { String::new() } else { format!("; moved under it: {}", moved.join(", ")) }
        ),
    ))
}

#[pg_extern(sql = false)]
fn pgq_cascade_execute(
    i_queue_name: Option<&str>,
    i_name: Option<&str>,
    i_sql: Option<&str>,
) -> OutRec {
    execute(i_queue_name, i_name, i_sql).unwrap_or_else(|e| e.report())
}

/// Run a DDL script on the root and send it down the cascade (an EXECUTE event):
/// `londiste execute` of one file, its meta-comments and `@name@` substitution
/// included.
pub fn execute(queue: Option<&str>, name: Option<&str>, sql: Option<&str>) -> PgqResult<OutRec> {
    let queue = arg(queue, "queue name")?;
    let name = arg(name, "script name")?;
    let sql = arg(sql, "script")?;
    let (_, view) = local_node(queue)?;
    if view.node_type != "root" {
        return Err(state_error(format!(
            "node \"{}\" is a {}: scripts are executed on the root, which sends them down the cascade",
            view.node_name, view.node_type
        )));
    }
    let attrs = crate::logic::replay::ExecAttrs::from_script(sql)
        .map_err(|e| PgqError::new(SqlState::INVALID_PARAMETER_VALUE, e))?
        .encode();
    let (code, note) =
        crate::replay::worker::run_script_on_root(queue, name, sql, attrs.as_deref())?;
    Ok(OutRec::ret(code, note))
}
