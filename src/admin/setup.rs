//! Creating and dropping nodes (docs/admin.md "Nodes"): the steps of the CLI's
//! create-root / create-branch / create-leaf / drop-node.

use super::{
    arg, col, col_i64, in_subxact, local_node, members, node_view, own_transaction, Member, Peer,
    REGISTER_LOCATION, UNREGISTER_SUBSCRIBER,
};
use crate::errors::{PgqError, PgqResult, SqlState};
use crate::logic::node::NodeType;
use crate::outrec::OutRec;
use pgrx::prelude::*;

/// `location` must reach this very database: the session it opens there shows up here,
/// in this database's pg_stat_activity (same pid, same start time).
fn check_location(node: &str, location: &str) -> PgqResult<()> {
    let mut there = Peer::connect(node, location)?;
    let theirs = there.row(
        "reading the location's session",
        "select pg_catalog.pg_backend_pid()::text, \
                extract(epoch from a.backend_start)::text, pg_catalog.current_database()::text \
         from pg_catalog.pg_stat_activity a where a.pid = pg_catalog.pg_backend_pid()",
        &[],
    )?;
    let mut me = Peer::local(node);
    me.query(
        "refreshing the activity snapshot",
        "select pg_catalog.pg_stat_clear_snapshot()::text",
        &[],
    )?;
    let here = super::col_bool(
        &me.row(
            "looking for the location's session here",
            "select exists (select 1 from pg_catalog.pg_stat_activity a \
              where a.pid = $1::int4 and extract(epoch from a.backend_start)::text = $2 \
                and a.datname = pg_catalog.current_database())::text",
            &[col(&theirs, 0), col(&theirs, 1)],
        )?,
        0,
    );
    if !here {
        return Err(PgqError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("the location given for node \"{node}\" does not reach this database"),
        )
        .detail(format!(
            "It reaches database \"{}\" of another server, or another database.",
            col(&theirs, 2).unwrap_or("?")
        ))
        .hint("The location is the connection string other nodes use to reach this one."));
    }
    Ok(())
}

fn not_initialized(queue: &str) -> PgqResult<()> {
    let mut me = Peer::local("local");
    if let Some(v) = node_view(&mut me, queue)? {
        return Err(PgqError::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "queue \"{queue}\" already has a node on this database: \"{}\" ({})",
                v.node_name, v.node_type
            ),
        ));
    }
    Ok(())
}

fn check_name(node: &str) -> PgqResult<()> {
    if node.starts_with('.') || node.contains(char::is_whitespace) {
        return Err(PgqError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("invalid node name \"{node}\": it must not start with a dot or contain spaces"),
        ));
    }
    Ok(())
}

#[pg_extern(sql = false)]
fn pgq_cascade_create_root(
    i_queue_name: Option<&str>,
    i_node_name: Option<&str>,
    i_location: Option<&str>,
    i_worker_name: Option<&str>,
    i_ticker_max_lag: Option<pgrx::datum::Interval>,
) -> OutRec {
    // the interval as text, for pgq.set_queue_config
    let lag = i_ticker_max_lag.map(|l| format!("{} microseconds", l.as_micros()));
    create_root(
        i_queue_name,
        i_node_name,
        i_location,
        i_worker_name,
        lag.as_deref(),
    )
    .unwrap_or_else(|e| e.report())
}

pub fn create_root(
    queue: Option<&str>,
    node: Option<&str>,
    location: Option<&str>,
    worker: Option<&str>,
    ticker_max_lag: Option<&str>,
) -> PgqResult<OutRec> {
    let queue = arg(queue, "queue name")?;
    let node = arg(node, "node name")?;
    let location = arg(location, "location")?;
    let worker = worker.unwrap_or(node);
    check_name(node)?;
    not_initialized(queue)?;
    check_location(node, location)?;
    let mut me = Peer::local(node);
    me.call(
        "registering the node's location",
        REGISTER_LOCATION,
        &[Some(queue), Some(node), Some(location), Some("false")],
    )?;
    me.call(
        "creating the root node",
        "select ret_code::text, ret_note::text from \
         pgq_node.create_node($1, 'root', $2, $3, null, null, null)",
        &[Some(queue), Some(node), Some(worker)],
    )?;
    if let Some(lag) = ticker_max_lag {
        // a replication queue ticks soon after each commit (docs/replication.md, "Delay")
        me.query(
            "setting the queue's ticker_max_lag",
            "select pgq.set_queue_config($1, 'ticker_max_lag', $2)::text",
            &[Some(queue), Some(lag)],
        )?;
    }
    Ok(OutRec::ret(
        200,
        format!("Node \"{node}\" initialized as root of queue \"{queue}\""),
    ))
}

#[pg_extern(sql = false)]
fn pgq_cascade_create_branch(
    i_queue_name: Option<&str>,
    i_node_name: Option<&str>,
    i_location: Option<&str>,
    i_provider_location: Option<&str>,
    i_worker_name: Option<&str>,
    i_sync_watermark: Option<&str>,
) -> OutRec {
    own_transaction("pgq_cascade.create_branch()");
    create_subscriber(
        NodeType::Branch,
        i_queue_name,
        i_node_name,
        i_location,
        i_provider_location,
        i_worker_name,
        i_sync_watermark,
    )
    .unwrap_or_else(|e| e.report())
}

#[pg_extern(sql = false)]
fn pgq_cascade_create_leaf(
    i_queue_name: Option<&str>,
    i_node_name: Option<&str>,
    i_location: Option<&str>,
    i_provider_location: Option<&str>,
    i_worker_name: Option<&str>,
) -> OutRec {
    own_transaction("pgq_cascade.create_leaf()");
    create_subscriber(
        NodeType::Leaf,
        i_queue_name,
        i_node_name,
        i_location,
        i_provider_location,
        i_worker_name,
        None,
    )
    .unwrap_or_else(|e| e.report())
}

/// Walk up from the provider to the root: (root peer, root's members).
fn find_root(queue: &str, provider_location: &str) -> PgqResult<(Peer, Vec<Member>)> {
    let mut loc = provider_location.to_string();
    let mut seen = Vec::new();
    for _ in 0..32 {
        let mut p = Peer::connect("provider", &loc)?;
        let v = node_view(&mut p, queue)?.ok_or_else(|| {
            PgqError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("a node on the way to the root has no node of queue \"{queue}\""),
            )
        })?;
        p.name = v.node_name.clone();
        if v.node_type == "root" {
            let m = members(&mut p, queue)?;
            return Ok((p, m));
        }
        if seen.contains(&v.node_name) {
            break;
        }
        seen.push(v.node_name.clone());
        loc = v.provider_location.ok_or_else(|| {
            PgqError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "node \"{}\" of queue \"{queue}\" has no provider",
                    v.node_name
                ),
            )
        })?;
    }
    Err(PgqError::new(
        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("no root found above the provider of queue \"{queue}\" (a loop: {seen:?})"),
    ))
}

#[allow(clippy::too_many_arguments)]
pub fn create_subscriber(
    kind: NodeType,
    queue: Option<&str>,
    node: Option<&str>,
    location: Option<&str>,
    provider_location: Option<&str>,
    worker: Option<&str>,
    sync_watermark: Option<&str>,
) -> PgqResult<OutRec> {
    let queue = arg(queue, "queue name")?;
    let node = arg(node, "node name")?;
    let location = arg(location, "location")?;
    let provider_location = arg(provider_location, "provider location")?;
    let worker = worker.unwrap_or(node);
    check_name(node)?;
    not_initialized(queue)?;
    check_location(node, location)?;

    // everything read first: the provider, the root, the members
    let mut provider = Peer::connect("provider", provider_location)?;
    let pv = node_view(&mut provider, queue)?.ok_or_else(|| {
        PgqError::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("the provider location has no node of queue \"{queue}\""),
        )
    })?;
    provider.name = pv.node_name.clone();
    if pv.node_type == "leaf" {
        return Err(PgqError::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "node \"{}\" is a leaf: a leaf cannot be a provider",
                pv.node_name
            ),
        ));
    }
    let (mut root, known) = find_root(queue, provider_location)?;
    if known.iter().any(|m| m.name == node) {
        return Err(PgqError::new(
            SqlState::DUPLICATE_OBJECT,
            format!("node name \"{node}\" is already a member of queue \"{queue}\""),
        ));
    }
    if !known.iter().any(|m| m.name == pv.node_name) {
        return Err(PgqError::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "the provider \"{}\" is not a member of queue \"{queue}\" at its root",
                pv.node_name
            ),
        ));
    }
    let has_londiste = super::col_bool(
        &provider.row(
            "looking for londiste on the provider",
            "select (pg_catalog.to_regproc('londiste.get_table_list') is not null)::text",
            &[],
        )?,
        0,
    );
    let (tables, seqs) = if has_londiste {
        (
            provider.query(
                "reading the provider's tables",
                "select table_name::text from londiste.get_table_list($1)",
                &[Some(queue)],
            )?,
            provider.query(
                "reading the provider's sequences",
                "select seq_name::text, last_value::text from londiste.get_seq_list($1)",
                &[Some(queue)],
            )?,
        )
    } else {
        (Vec::new(), Vec::new())
    };

    // remote steps: the root announces the new location, the provider subscribes it
    let args = [Some(queue), Some(node), Some(location), Some("false")];
    root.call(
        "registering the new node at the root",
        REGISTER_LOCATION,
        &args,
    )?;
    let step = (|| -> PgqResult<i64> {
        if provider.name != root.name {
            provider.call(
                "registering the new node at the provider",
                REGISTER_LOCATION,
                &args,
            )?;
        }
        let r = provider.call(
            "subscribing the new node at the provider",
            "select ret_code::text, ret_note::text, global_watermark::text \
             from pgq_node.register_subscriber($1, $2, $3, null)",
            &[Some(queue), Some(node), Some(worker)],
        )?;
        col_i64(&r, 2)
            .ok_or_else(|| PgqError::internal("register_subscriber gave no global watermark"))
    })();
    let gwm = match step {
        Ok(w) => w,
        Err(e) => {
            undo(queue, node, None, &mut root);
            return Err(e);
        }
    };

    // local steps, all or none
    let gwm_text = gwm.to_string();
    let local = in_subxact(|| {
        let mut me = Peer::local(node);
        me.call(
            "registering this node's location",
            REGISTER_LOCATION,
            &[Some(queue), Some(node), Some(location), Some("false")],
        )?;
        for m in &known {
            let dead = if m.dead { "true" } else { "false" };
            me.call(
                "registering a member's location",
                REGISTER_LOCATION,
                &[Some(queue), Some(&m.name), Some(&m.location), Some(dead)],
            )?;
        }
        me.call(
            "creating the node",
            "select ret_code::text, ret_note::text from \
             pgq_node.create_node($1, $2, $3, $4, $5, $6::int8, null)",
            &[
                Some(queue),
                Some(kind.as_str()),
                Some(node),
                Some(worker),
                Some(&pv.node_name),
                Some(&gwm_text),
            ],
        )?;
        for t in &tables {
            me.call(
                "registering a table of the provider",
                "select ret_code::text, ret_note::text from londiste.global_add_table($1, $2)",
                &[Some(queue), col(t, 0)],
            )?;
        }
        for s in &seqs {
            me.call(
                "registering a sequence of the provider",
                "select ret_code::text, ret_note::text from londiste.global_update_seq($1, $2, $3::int8)",
                &[Some(queue), col(s, 0), col(s, 1)],
            )?;
        }
        if let Some(wm) = sync_watermark.filter(|w| !w.is_empty()) {
            let attrs = format!("sync_watermark={wm}");
            me.call(
                "setting sync_watermark",
                "select ret_code::text, ret_note::text from pgq_node.set_node_attrs($1, $2)",
                &[Some(queue), Some(&attrs)],
            )?;
        }
        Ok(())
    });
    if let Err(e) = local {
        undo(queue, node, Some(&mut provider), &mut root);
        return Err(e);
    }
    Ok(OutRec::ret(
        200,
        format!(
            "Node \"{node}\" initialized as {} of queue \"{queue}\" under \"{}\" at tick {gwm}",
            kind.as_str(),
            pv.node_name
        ),
    ))
}

/// Undo the remote steps of a failed create: the provider's subscription, the root's
/// location (its unregister-location event removes it everywhere). Failures are
/// warnings: the error that made us undo is the one raised.
fn undo(queue: &str, node: &str, provider: Option<&mut Peer>, root: &mut Peer) {
    let args = [Some(queue), Some(node)];
    let mut steps: Vec<(&mut Peer, &str, &str)> = Vec::new();
    if let Some(p) = provider {
        steps.push((p, "undoing the subscription", UNREGISTER_SUBSCRIBER));
    }
    steps.push((
        root,
        "undoing the location",
        "select ret_code::text, ret_note::text from pgq_node.unregister_location($1, $2)",
    ));
    for (peer, what, sql) in steps {
        if let Err(e) = peer.call(what, sql, &args) {
            crate::errors::warning(format!("pgq_cascade: {}", e.message));
        }
    }
}

#[pg_extern(sql = false)]
fn pgq_cascade_drop_node(i_queue_name: Option<&str>, i_node_name: Option<&str>) -> OutRec {
    own_transaction("pgq_cascade.drop_node()");
    drop_node(i_queue_name, i_node_name).unwrap_or_else(|e| e.report())
}

/// drop-node: the node must have no subscribers; the root forgets its location, the
/// node drops its own state, every other member forgets it. Runs on any member.
pub fn drop_node(queue: Option<&str>, node: Option<&str>) -> PgqResult<OutRec> {
    let queue = arg(queue, "queue name")?;
    let (mut me, view) = local_node(queue)?;
    let node = node.unwrap_or(&view.node_name).to_string();
    let known = members(&mut me, queue)?;
    let target = known.iter().find(|m| m.name == node).cloned();
    if target.is_none() && node != view.node_name {
        return Err(PgqError::new(
            SqlState::UNDEFINED_OBJECT,
            format!("node \"{node}\" is not a member of queue \"{queue}\""),
        ));
    }
    let alive = target.as_ref().is_some_and(|m| !m.dead);
    let mut peer = if node == view.node_name {
        Some(Peer::local(&node))
    } else if alive {
        target
            .as_ref()
            .map(|m| Peer::connect(&node, &m.location))
            .transpose()?
    } else {
        None
    };
    let mut target_type = None;
    if let Some(p) = peer.as_mut() {
        let subs = p.query(
            "reading the node's subscribers",
            "select node_name::text from pgq_node.get_subscriber_info($1)",
            &[Some(queue)],
        )?;
        if !subs.is_empty() {
            let names: Vec<&str> = subs.iter().filter_map(|r| col(r, 0)).collect();
            return Err(PgqError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "node \"{node}\" still has subscribers: {}",
                    names.join(", ")
                ),
            )
            .hint("Move them to another provider with pgq_cascade.change_provider first."));
        }
        target_type = node_view(p, queue)?.map(|v| v.node_type);
    }
    let root_name = find_root_name(queue, &view);
    // the root forgets the location (an event tells everyone), unless node is the root
    if target_type.as_deref() != Some("root") {
        if let Some(rn) = root_name.as_deref().filter(|rn| *rn != node) {
            let mut root = super::peer_of(queue, &view, &known, rn)?;
            root.call(
                "unregistering the node at the root",
                "select ret_code::text, ret_note::text from pgq_node.unregister_location($1, $2)",
                &[Some(queue), Some(&node)],
            )?;
        }
    }
    let drop_sql = "select ret_code::text, ret_note::text from pgq_node.drop_node($1, $2)";
    if let Some(p) = peer.as_mut().filter(|p| !p.is_local()) {
        p.call("dropping the node", drop_sql, &[Some(queue), Some(&node)])?;
    }
    for m in known
        .iter()
        .filter(|m| !m.dead && m.name != node && m.name != view.node_name)
    {
        match Peer::connect(&m.name, &m.location)
            .and_then(|mut p| p.call("forgetting the node", drop_sql, &[Some(queue), Some(&node)]))
        {
            Ok(_) => {}
            Err(e) => crate::errors::warning(format!("pgq_cascade: {}", e.message)),
        }
    }
    // this node last: its own state, or its record of the dropped one
    me.call(
        "dropping the node here",
        drop_sql,
        &[Some(queue), Some(&node)],
    )?;
    Ok(OutRec::ret(
        200,
        format!("Node \"{node}\" dropped from queue \"{queue}\""),
    ))
}

/// The root's name as this node sees it: this node, or the first root up the
/// providers (None when it cannot be reached).
fn find_root_name(queue: &str, view: &super::NodeView) -> Option<String> {
    if view.node_type == "root" {
        return Some(view.node_name.clone());
    }
    let loc = view.provider_location.as_deref()?;
    find_root(queue, loc).ok().map(|(p, _)| p.name)
}
