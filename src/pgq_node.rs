//! Schema `pgq_node`: cascaded queues (spec/pgq_node.md).
//!
//! Every function is `#[pg_extern(sql = false)]`: its `CREATE FUNCTION` (argument
//! names, OUT columns, SECURITY DEFINER, grants) is in sql/pgq_node_functions.sql,
//! because the original's `(ret_code, ret_note, ...)` functions return a single
//! record with OUT parameters, which pgrx cannot declare. The Rust symbol names carry
//! a `pgq_node_` prefix so they cannot clash with other schemas' functions.

use crate::errors::raise;
use crate::logic::node::{
    self, create_node_arg_error, demote_step, watermark_move, DemoteStep, NodeType, WatermarkMove,
    GLOBAL_WATERMARK,
};
use crate::outrec::OutRec;
use crate::spi_util::{col, exec, first, found, one, run};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

type Client<'a, 'c> = &'a mut SpiClient<'c>;

/// `format!` with SQL `||` semantics for the notes: any NULL (None) argument makes
/// the whole note NULL, as string concatenation did in the original.
macro_rules! nfmt {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[allow(clippy::redundant_closure_call)]
        let note = (|| -> Option<String> { Some(format!($fmt $(, $arg?)*)) })();
        note
    }};
}

// ---------------------------------------------------------------------------
// Shared lookups
// ---------------------------------------------------------------------------

/// The local node row of a queue.
struct Node {
    node_type: Option<String>,
    node_name: Option<String>,
    worker_name: Option<String>,
    combined_queue: Option<String>,
}

fn load_node(c: Client, rw: bool, lock: bool, queue: Option<&str>) -> Option<Node> {
    let sql = if lock {
        "select node_type, node_name, worker_name, combined_queue \
           from pgq_node.node_info where queue_name operator(pg_catalog.=) $1 for update"
    } else {
        "select node_type, node_name, worker_name, combined_queue \
           from pgq_node.node_info where queue_name operator(pg_catalog.=) $1"
    };
    let t = run(c, rw || lock, sql, &[queue.into()]);
    first(t).map(|r| Node {
        node_type: col(&r, 1),
        node_name: col(&r, 2),
        worker_name: col(&r, 3),
        combined_queue: col(&r, 4),
    })
}

fn node_type_of(n: &Node) -> Option<NodeType> {
    n.node_type.as_deref().and_then(NodeType::parse)
}

/// Latest tick id of a pgq queue (NULL if the queue or its ticks are missing).
fn latest_tick(c: Client, rw: bool, queue: Option<&str>) -> Option<i64> {
    one(
        c,
        rw,
        "select t.tick_id from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
          where q.queue_name = $1 order by t.tick_queue desc, t.tick_id desc limit 1",
        &[queue.into()],
    )
}

/// Position (sub_last_tick) of a pgq consumer: None if not subscribed, Some(None) if
/// subscribed with a NULL position.
fn consumer_position(
    c: Client,
    rw: bool,
    queue: Option<&str>,
    consumer: Option<&str>,
) -> Option<Option<i64>> {
    let t = run(
        c,
        rw,
        "select s.sub_last_tick from pgq.subscription s \
           join pgq.queue q on q.queue_id = s.sub_queue \
           join pgq.consumer co on co.co_id = s.sub_consumer \
          where q.queue_name = $1 and co.co_name = $2",
        &[queue.into(), consumer.into()],
    );
    first(t).map(|r| col::<i64>(&r, 1))
}

fn global_watermark(c: Client, rw: bool, queue: Option<&str>) -> Option<i64> {
    consumer_position(c, rw, queue, Some(GLOBAL_WATERMARK)).flatten()
}

/// Lowest position of every consumer of the queue except `.global_watermark`;
/// the latest tick when there is none.
fn local_watermark(c: Client, rw: bool, queue: Option<&str>) -> Option<i64> {
    let wm: Option<i64> = one(
        c,
        rw,
        "select min(s.sub_last_tick) from pgq.subscription s \
           join pgq.queue q on q.queue_id = s.sub_queue \
           join pgq.consumer co on co.co_id = s.sub_consumer \
          where q.queue_name = $1 and co.co_name <> '.global_watermark'",
        &[queue.into()],
    );
    wm.or_else(|| latest_tick(c, rw, queue))
}

fn target_for(c: Client, rw: bool, queue: Option<&str>) -> Option<Vec<String>> {
    one(
        c,
        rw,
        "select array_agg(queue_name order by queue_name) from pgq_node.node_info \
          where combined_queue = $1",
        &[queue.into()],
    )
}

fn node_type_of_queue(c: Client, rw: bool, queue: Option<&str>) -> Option<String> {
    one(
        c,
        rw,
        "select node_type from pgq_node.node_info where queue_name = $1",
        &[queue.into()],
    )
}

fn location_of(
    c: Client,
    rw: bool,
    queue: Option<&str>,
    node: Option<&str>,
) -> Option<Option<String>> {
    let t = run(
        c,
        rw,
        "select node_location from pgq_node.node_location where queue_name = $1 and node_name = $2",
        &[queue.into(), node.into()],
    );
    first(t).map(|r| col::<String>(&r, 1))
}

fn queue_exists(c: Client, rw: bool, queue: Option<&str>) -> bool {
    found(
        c,
        rw,
        "select 1 from pgq.queue where queue_name = $1",
        &[queue.into()],
    )
}

fn insert_event(c: Client, queue: Option<&str>, ev_type: &str, fields: [Option<&str>; 4]) {
    let args: [DatumWithOid; 6] = [
        queue.into(),
        ev_type.into(),
        fields[0].into(),
        fields[1].into(),
        fields[2].into(),
        fields[3].into(),
    ];
    run(
        c,
        true,
        "select pgq.insert_event($1, $2, $3, $4, $5, $6, null)",
        &args,
    );
}

fn register_consumer_at(c: Client, queue: Option<&str>, consumer: &str, tick: Option<i64>) {
    run(
        c,
        true,
        "select pgq.register_consumer_at($1, $2, $3)",
        &[queue.into(), consumer.into(), tick.into()],
    );
}

fn unregister_pgq_consumer(c: Client, queue: Option<&str>, consumer: Option<&str>) {
    run(
        c,
        true,
        "select pgq.unregister_consumer($1, $2)",
        &[queue.into(), consumer.into()],
    );
}

// ---------------------------------------------------------------------------
// get_node_info
// ---------------------------------------------------------------------------

pub struct NodeInfo {
    pub ret_code: i32,
    pub ret_note: Option<String>,
    pub node_type: Option<String>,
    pub node_name: Option<String>,
    pub global_watermark: Option<i64>,
    pub local_watermark: Option<i64>,
    pub provider_node: Option<String>,
    pub provider_location: Option<String>,
    pub combined_queue: Option<String>,
    pub combined_type: Option<String>,
    pub worker_name: Option<String>,
    pub worker_paused: Option<bool>,
    pub worker_uptodate: Option<bool>,
    pub worker_last_tick: Option<i64>,
    pub node_attrs: Option<String>,
    pub target_for: Option<Vec<String>>,
}

fn node_info(c: Client, rw: bool, queue: Option<&str>) -> NodeInfo {
    let t = run(
        c,
        rw,
        "select n.node_type, n.node_name, n.worker_name, n.combined_queue, n.node_attrs, \
                s.provider_node, l.node_location, s.paused, s.uptodate, s.last_tick_id, \
                (select cn.node_type from pgq_node.node_info cn \
                  where cn.queue_name = n.combined_queue) \
           from pgq_node.node_info n \
           left join pgq_node.local_state s \
             on s.queue_name = n.queue_name and s.consumer_name = n.worker_name \
           left join pgq_node.node_location l \
             on l.queue_name = n.queue_name and l.node_name = s.provider_node \
          where n.queue_name = $1",
        &[queue.into()],
    );
    let Some(r) = first(t) else {
        return NodeInfo {
            ret_code: 404,
            ret_note: nfmt!("Unknown queue: {}", queue),
            node_type: None,
            node_name: None,
            global_watermark: None,
            local_watermark: None,
            provider_node: None,
            provider_location: None,
            combined_queue: None,
            combined_type: None,
            worker_name: None,
            worker_paused: None,
            worker_uptodate: None,
            worker_last_tick: None,
            node_attrs: None,
            target_for: None,
        };
    };
    let mut ni = NodeInfo {
        ret_code: 100,
        ret_note: Some("Ok".to_string()),
        node_type: col(&r, 1),
        node_name: col(&r, 2),
        worker_name: col(&r, 3),
        combined_queue: col(&r, 4),
        node_attrs: col(&r, 5),
        provider_node: col(&r, 6),
        provider_location: col(&r, 7),
        worker_paused: col(&r, 8),
        worker_uptodate: col(&r, 9),
        worker_last_tick: col(&r, 10),
        combined_type: col(&r, 11),
        global_watermark: None,
        local_watermark: None,
        target_for: None,
    };
    match ni.node_type.as_deref().and_then(NodeType::parse) {
        Some(t) if t.has_queue() => {
            ni.global_watermark = global_watermark(c, rw, queue);
            ni.local_watermark = local_watermark(c, rw, queue);
            ni.target_for = target_for(c, rw, queue);
            if t == NodeType::Root {
                ni.worker_last_tick = latest_tick(c, rw, queue);
            }
        }
        _ => {
            ni.local_watermark = ni.worker_last_tick;
        }
    }
    ni
}

#[pg_extern(sql = false)]
fn pgq_node_get_node_info(i_queue_name: Option<&str>) -> OutRec {
    let ni = Spi::connect_mut(|c| node_info(c, false, i_queue_name));
    OutRec::new()
        .col(Some(ni.ret_code))
        .col(Some(ni.ret_note))
        .col(ni.node_type)
        .col(ni.node_name)
        .col(ni.global_watermark)
        .col(ni.local_watermark)
        .col(ni.provider_node)
        .col(ni.provider_location)
        .col(ni.combined_queue)
        .col(ni.combined_type)
        .col(ni.worker_name)
        .col(ni.worker_paused)
        .col(ni.worker_uptodate)
        .col(ni.worker_last_tick)
        .col(ni.node_attrs)
        .col(ni.target_for)
}

// ---------------------------------------------------------------------------
// Membership
// ---------------------------------------------------------------------------

#[pg_extern(sql = false)]
fn pgq_node_register_location(
    i_queue_name: Option<&str>,
    i_node_name: Option<&str>,
    i_node_location: Option<&str>,
    i_dead: Option<bool>,
) -> OutRec {
    Spi::connect_mut(|c| {
        let nd = load_node(c, true, true, i_queue_name);
        let updated = exec(
            c,
            "update pgq_node.node_location \
                set node_location = coalesce($3, node_location), dead = $4 \
              where queue_name = $1 and node_name = $2",
            &[
                i_queue_name.into(),
                i_node_name.into(),
                i_node_location.into(),
                i_dead.into(),
            ],
        );
        if updated == 0 && i_node_location.is_some() {
            exec(
                c,
                "insert into pgq_node.node_location (queue_name, node_name, node_location, dead) \
                 values ($1, $2, $3, $4)",
                &[
                    i_queue_name.into(),
                    i_node_name.into(),
                    i_node_location.into(),
                    i_dead.into(),
                ],
            );
        }
        if nd.as_ref().and_then(node_type_of) == Some(NodeType::Root) {
            let dead = i_dead.map(|d| if d { "true" } else { "false" });
            insert_event(
                c,
                i_queue_name,
                "pgq.location-info",
                [i_node_name, i_queue_name, i_node_location, dead],
            );
        }
    });
    OutRec::ret(200, "Location registered")
}

fn unregister_location(c: Client, queue: Option<&str>, node: Option<&str>) -> OutRec {
    let nd = load_node(c, true, true, queue);
    if let Some(n) = &nd {
        if n.node_name.as_deref() == node && node.is_some() {
            return OutRec::ret(403, "Cannot drop node's own location");
        }
        if node_type_of(n) != Some(NodeType::Root) {
            let prov: Option<String> = one(
                c,
                true,
                "select provider_node from pgq_node.local_state \
                  where queue_name = $1 and consumer_name = $2",
                &[queue.into(), n.worker_name.as_deref().into()],
            );
            if prov.is_some() && prov.as_deref() == node {
                return OutRec::ret(403, "Cannot drop location of node's parent");
            }
        }
    }
    unregister_subscriber(c, queue, node);
    let deleted = exec(
        c,
        "delete from pgq_node.node_location where queue_name = $1 and node_name = $2",
        &[queue.into(), node.into()],
    );
    if nd.as_ref().and_then(node_type_of) == Some(NodeType::Root) {
        insert_event(
            c,
            queue,
            "pgq.unregister-location",
            [node, queue, None, None],
        );
    }
    if deleted > 0 {
        OutRec::ret(200, "Ok")
    } else {
        OutRec::ret(301, nfmt!("Location not found: {}/{}", queue, node))
    }
}

#[pg_extern(sql = false)]
fn pgq_node_unregister_location(i_queue_name: Option<&str>, i_node_name: Option<&str>) -> OutRec {
    Spi::connect_mut(|c| unregister_location(c, i_queue_name, i_node_name))
}

#[pg_extern(sql = false)]
fn pgq_node_get_queue_locations(
    i_queue_name: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(node_name, Option<String>),
        name!(node_location, Option<String>),
        name!(dead, Option<bool>),
    ),
> {
    let rows = Spi::connect_mut(|c| {
        run(
            c,
            false,
            "select node_name, node_location, dead from pgq_node.node_location \
              where queue_name = $1",
            &[i_queue_name.into()],
        )
        .map(|r| {
            (
                r.get::<String>(1).ok().flatten(),
                r.get::<String>(2).ok().flatten(),
                r.get::<bool>(3).ok().flatten(),
            )
        })
        .collect::<Vec<_>>()
    });
    TableIterator::new(rows)
}

// ---------------------------------------------------------------------------
// Node lifecycle
// ---------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
#[pg_extern(sql = false)]
fn pgq_node_create_node(
    i_queue_name: Option<&str>,
    i_node_type: Option<&str>,
    i_node_name: Option<&str>,
    i_worker_name: Option<&str>,
    i_provider_name: Option<&str>,
    i_global_watermark: Option<i64>,
    i_combined_queue: Option<&str>,
) -> OutRec {
    Spi::connect_mut(|c| {
        if found(
            c,
            true,
            "select 1 from pgq_node.node_info where queue_name = $1",
            &[i_queue_name.into()],
        ) {
            return OutRec::ret(401, "Node already initialized");
        }
        if let Some(note) = create_node_arg_error(
            i_node_type,
            i_provider_name,
            i_global_watermark,
            i_combined_queue,
        ) {
            return OutRec::ret(401, note);
        }
        let ntype = i_node_type.and_then(NodeType::parse);
        let mut wm = i_global_watermark;
        let mut provider = i_provider_name;
        match ntype {
            Some(NodeType::Root) => {
                provider = i_node_name;
                run(
                    c,
                    true,
                    "select pgq.create_queue($1)",
                    &[i_queue_name.into()],
                );
                run(
                    c,
                    true,
                    "select pgq.register_consumer($1, '.global_watermark')",
                    &[i_queue_name.into()],
                );
                wm = global_watermark(c, true, i_queue_name);
            }
            Some(NodeType::Branch) => {
                run(
                    c,
                    true,
                    "select pgq.create_queue($1)",
                    &[i_queue_name.into()],
                );
                exec(
                    c,
                    "update pgq.queue set queue_external_ticker = true, queue_disable_insert = true \
                      where queue_name = $1",
                    &[i_queue_name.into()],
                );
                if wm.unwrap_or(0) > 1 {
                    run(
                        c,
                        true,
                        "select pgq.ticker($1, $2, pg_catalog.now(), 1)",
                        &[i_queue_name.into(), wm.into()],
                    );
                }
                register_consumer_at(c, i_queue_name, GLOBAL_WATERMARK, wm);
            }
            Some(NodeType::Leaf)
                if i_combined_queue.is_some() && !queue_exists(c, true, i_combined_queue) =>
            {
                return OutRec::ret(
                    401,
                    nfmt!("non-existing queue on leaf side: {}", i_combined_queue),
                );
            }
            // leaf: no queue; unknown type: the CHECK constraint rejects the row below
            Some(NodeType::Leaf) | None => {}
        }
        exec(
            c,
            "insert into pgq_node.node_info (queue_name, node_type, node_name, worker_name, combined_queue) \
             values ($1, $2, $3, $4, $5)",
            &[
                i_queue_name.into(),
                i_node_type.into(),
                i_node_name.into(),
                i_worker_name.into(),
                i_combined_queue.into(),
            ],
        );
        let (code, note) = register_consumer(c, i_queue_name, i_worker_name, provider, wm);
        if code != 200 {
            return OutRec::ret(code, note);
        }
        OutRec::ret(
            200,
            nfmt!(
                "Node \"{}\" initialized for queue \"{}\" with type \"{}\"",
                i_node_name,
                i_queue_name,
                i_node_type
            ),
        )
    })
}

#[pg_extern(sql = false)]
fn pgq_node_drop_node(i_queue_name: Option<&str>, i_node_name: Option<&str>) -> OutRec {
    Spi::connect_mut(|c| {
        let t = run(
            c,
            true,
            "select n.node_name = $2, s.provider_node = $2 \
               from pgq_node.node_info n \
               left join pgq_node.local_state s \
                 on s.queue_name = n.queue_name and s.consumer_name = n.worker_name \
              where n.queue_name = $1 for update of n",
            &[i_queue_name.into(), i_node_name.into()],
        );
        let (is_local, is_prov) = match first(t) {
            Some(r) => (
                col::<bool>(&r, 1).unwrap_or(false),
                col::<bool>(&r, 2).unwrap_or(false),
            ),
            None => (true, false),
        };
        if is_local {
            let q: [DatumWithOid; 1] = [i_queue_name.into()];
            exec(
                c,
                "delete from pgq_node.subscriber_info where queue_name = $1",
                &q,
            );
            exec(
                c,
                "delete from pgq_node.local_state where queue_name = $1",
                &q,
            );
            exec(
                c,
                "delete from pgq_node.node_info where queue_name = $1",
                &q,
            );
            if queue_exists(c, true, i_queue_name) {
                run(c, true, "select pgq.drop_queue($1, true)", &q);
            }
            exec(
                c,
                "delete from pgq_node.node_location where queue_name = $1 and node_name <> $2",
                &[i_queue_name.into(), i_node_name.into()],
            );
        } else if is_prov {
            return OutRec::ret(405, nfmt!("Cannot drop provider node: {}", i_node_name));
        } else {
            unregister_subscriber(c, i_queue_name, i_node_name);
        }
        let _ = unregister_location(c, i_queue_name, i_node_name);
        OutRec::ret(200, nfmt!("Node dropped: {}", i_node_name))
    })
}

#[pg_extern(sql = false)]
fn pgq_node_set_node_attrs(i_queue_name: Option<&str>, i_node_attrs: Option<&str>) -> OutRec {
    let n = Spi::connect_mut(|c| {
        exec(
            c,
            "update pgq_node.node_info set node_attrs = $2 where queue_name = $1",
            &[i_queue_name.into(), i_node_attrs.into()],
        )
    });
    if n > 0 {
        OutRec::ret(200, "Node attributes updated")
    } else {
        OutRec::ret(404, "Node not found")
    }
}

/// Latest tick id of a queue, with the queue's sequence names.
fn queue_seqs(c: Client, queue: Option<&str>) -> Option<(String, String, String)> {
    let t = run(
        c,
        true,
        "select queue_tick_seq, queue_event_seq, queue_data_pfx from pgq.queue where queue_name = $1",
        &[queue.into()],
    );
    first(t).map(|r| {
        (
            col::<String>(&r, 1).unwrap_or_default(),
            col::<String>(&r, 2).unwrap_or_default(),
            col::<String>(&r, 3).unwrap_or_default(),
        )
    })
}

#[pg_extern(sql = false)]
fn pgq_node_promote_branch(i_queue_name: Option<&str>) -> OutRec {
    Spi::connect_mut(|c| {
        let Some(nd) = load_node(c, true, true, i_queue_name) else {
            return OutRec::ret(
                404,
                nfmt!("Node not initialized for queue: {}", i_queue_name),
            );
        };
        if node_type_of(&nd) != Some(NodeType::Branch) {
            return OutRec::ret(301, "Node not branch");
        }
        exec(
            c,
            "update pgq.queue set queue_disable_insert = false, queue_external_ticker = false \
              where queue_name = $1",
            &[i_queue_name.into()],
        );
        let last = latest_tick(c, true, i_queue_name);
        if let Some((tick_seq, _, _)) = queue_seqs(c, i_queue_name) {
            run(
                c,
                true,
                "select pgq.seq_setval($1, $2)",
                &[tick_seq.as_str().into(), last.into()],
            );
        }
        exec(
            c,
            "update pgq_node.node_info set node_type = 'root' where queue_name = $1",
            &[i_queue_name.into()],
        );
        exec(
            c,
            "update pgq_node.local_state \
                set provider_node = $3, last_tick_id = $4, uptodate = false \
              where queue_name = $1 and consumer_name = $2",
            &[
                i_queue_name.into(),
                nd.worker_name.as_deref().into(),
                nd.node_name.as_deref().into(),
                last.into(),
            ],
        );
        OutRec::ret(200, "Branch node promoted to root")
    })
}

#[pg_extern(sql = false)]
fn pgq_node_demote_root(
    i_queue_name: Option<&str>,
    i_step: Option<i32>,
    i_new_provider: Option<&str>,
) -> OutRec {
    Spi::connect_mut(|c| {
        let Some(nd) = load_node(c, true, true, i_queue_name) else {
            return OutRec::ret(
                404,
                nfmt!("Node not initialized for queue: {}", i_queue_name),
            )
            .col(None::<i64>);
        };
        if node_type_of(&nd) != Some(NodeType::Root) {
            return OutRec::ret(301, "Node not root").col(None::<i64>);
        }
        if i_step.unwrap_or(0) > 1 {
            let ok: Option<bool> = one(
                c,
                true,
                "select queue_disable_insert and queue_external_ticker from pgq.queue \
                  where queue_name = $1 for update",
                &[i_queue_name.into()],
            );
            if ok != Some(true) {
                raise("steps in wrong order");
            }
        }
        match demote_step(i_step) {
            Some(DemoteStep::DisableWrites) => {
                exec(
                    c,
                    "update pgq.queue set queue_disable_insert = true, queue_external_ticker = true \
                      where queue_name = $1",
                    &[i_queue_name.into()],
                );
                OutRec::ret(200, nfmt!("Step 1: Writing disabled for: {}", i_queue_name))
                    .col(None::<i64>)
            }
            Some(DemoteStep::LastTick) => {
                let (tick_seq, ev_seq, data_pfx) =
                    queue_seqs(c, i_queue_name).unwrap_or_else(|| raise("queue not found"));
                run(
                    c,
                    true,
                    "set local session_replication_role = 'replica'",
                    &[],
                );
                let table: String = one(
                    c,
                    true,
                    "select pgq.quote_fqname($1)",
                    &[data_pfx.as_str().into()],
                )
                .unwrap_or_default();
                run(
                    c,
                    true,
                    &["lock table ", &table, " in exclusive mode"].concat(),
                    &[],
                );
                let last: Option<i64> = one(
                    c,
                    true,
                    "select pg_catalog.nextval($1::regclass)",
                    &[tick_seq.as_str().into()],
                );
                let ev: Option<i64> = one(
                    c,
                    true,
                    "select pg_catalog.nextval($1::regclass)",
                    &[ev_seq.as_str().into()],
                );
                run(
                    c,
                    true,
                    "select pgq.ticker($1, $2, pg_catalog.now(), $3)",
                    &[i_queue_name.into(), last.into(), ev.into()],
                );
                OutRec::ret(200, nfmt!("Step 2: Inserted last tick: {}", i_queue_name)).col(last)
            }
            Some(DemoteStep::Demote) => {
                let last = latest_tick(c, true, i_queue_name);
                exec(
                    c,
                    "update pgq_node.node_info set node_type = 'branch' where queue_name = $1",
                    &[i_queue_name.into()],
                );
                exec(
                    c,
                    "update pgq_node.local_state \
                        set provider_node = $3, last_tick_id = $4, uptodate = false \
                      where queue_name = $1 and consumer_name = $2",
                    &[
                        i_queue_name.into(),
                        nd.worker_name.as_deref().into(),
                        i_new_provider.into(),
                        last.into(),
                    ],
                );
                OutRec::ret(
                    200,
                    nfmt!("Step 3: Demoted root to branch: {}", i_queue_name),
                )
                .col(last)
            }
            None => raise("incorrect step number"),
        }
    })
}

fn node_type_check(i_queue_name: Option<&str>, want: NodeType) -> Option<bool> {
    let t: Option<Option<String>> = Spi::connect_mut(|c| {
        let t = run(
            c,
            false,
            "select node_type from pgq_node.node_info where queue_name = $1",
            &[i_queue_name.into()],
        );
        first(t).map(|r| col::<String>(&r, 1))
    });
    match t {
        None => raise(format!(
            "queue does not exist: {}",
            i_queue_name.unwrap_or("<NULL>")
        )),
        Some(nt) => Some(nt.as_deref().and_then(NodeType::parse) == Some(want)),
    }
}

#[pg_extern(sql = false)]
fn pgq_node_is_root_node(i_queue_name: Option<&str>) -> Option<bool> {
    node_type_check(i_queue_name, NodeType::Root)
}

#[pg_extern(sql = false)]
fn pgq_node_is_leaf_node(i_queue_name: Option<&str>) -> Option<bool> {
    node_type_check(i_queue_name, NodeType::Leaf)
}

// ---------------------------------------------------------------------------
// Node state
// ---------------------------------------------------------------------------

#[pg_extern(sql = false)]
fn pgq_node_get_worker_state(i_queue_name: Option<&str>) -> OutRec {
    const NCOLS: usize = 16;
    Spi::connect_mut(|c| {
        let Some(nd) = load_node(c, false, false, i_queue_name) else {
            return OutRec::ret(404, nfmt!("Unknown queue: {}", i_queue_name)).pad(NCOLS);
        };
        let t = run(
            c,
            false,
            "select last_tick_id, provider_node, paused, uptodate, cur_error \
               from pgq_node.local_state where queue_name = $1 and consumer_name = $2",
            &[i_queue_name.into(), nd.worker_name.as_deref().into()],
        );
        let st = first(t).map(|r| {
            (
                col::<i64>(&r, 1),
                col::<String>(&r, 2),
                col::<bool>(&r, 3),
                col::<bool>(&r, 4),
                col::<String>(&r, 5),
            )
        });
        let head = |code: i32, note: Option<String>| {
            OutRec::ret(code, note)
                .col(nd.node_type.clone())
                .col(nd.node_name.clone())
        };
        let Some((completed, provider, paused, uptodate, cur_error)) = st else {
            return head(
                404,
                nfmt!(
                    "Unknown consumer: {}/{}",
                    i_queue_name,
                    nd.worker_name.as_deref()
                ),
            )
            .pad(10)
            .col(nd.worker_name.clone())
            .pad(NCOLS);
        };
        let Some(prov_loc) = location_of(c, false, i_queue_name, provider.as_deref()) else {
            return head(
                404,
                nfmt!(
                    "Unknown provider node: {}/{}",
                    i_queue_name,
                    provider.as_deref()
                ),
            )
            .col(completed)
            .col(provider)
            .col(None::<String>)
            .col(paused)
            .col(uptodate)
            .col(cur_error)
            .col(nd.worker_name.clone())
            .pad(NCOLS);
        };
        let mut combined_type = None;
        if nd.combined_queue.is_some() {
            combined_type = node_type_of_queue(c, false, nd.combined_queue.as_deref());
            if combined_type.is_none() {
                return head(
                    404,
                    nfmt!(
                        "Combinde queue node not found: {}",
                        nd.combined_queue.as_deref()
                    ),
                )
                .col(completed)
                .col(provider)
                .col(prov_loc)
                .col(paused)
                .col(uptodate)
                .col(cur_error)
                .col(nd.worker_name.clone())
                .pad(NCOLS);
            }
        }
        let (gwm, lwm, top) = match node_type_of(&nd) {
            Some(t) if t.has_queue() => (
                global_watermark(c, false, i_queue_name),
                local_watermark(c, false, i_queue_name),
                latest_tick(c, false, i_queue_name),
            ),
            _ => (None, completed, None),
        };
        head(100, Some("Ok".to_string()))
            .col(completed)
            .col(provider)
            .col(prov_loc)
            .col(paused)
            .col(uptodate)
            .col(cur_error)
            .col(nd.worker_name.clone())
            .col(gwm)
            .col(lwm)
            .col(top)
            .col(nd.combined_queue.clone())
            .col(combined_type)
    })
}

#[pg_extern(sql = false)]
fn pgq_node_get_consumer_state(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
) -> OutRec {
    const NCOLS: usize = 10;
    Spi::connect_mut(|c| {
        let Some(nd) = load_node(c, false, false, i_queue_name) else {
            return OutRec::ret(404, nfmt!("Unknown queue: {}", i_queue_name)).pad(NCOLS);
        };
        let head = |code: i32, note: Option<String>| {
            OutRec::ret(code, note)
                .col(nd.node_type.clone())
                .col(nd.node_name.clone())
        };
        let t = run(
            c,
            false,
            "select last_tick_id, provider_node, paused, uptodate, cur_error \
               from pgq_node.local_state where queue_name = $1 and consumer_name = $2",
            &[i_queue_name.into(), i_consumer_name.into()],
        );
        let st = first(t).map(|r| {
            (
                col::<i64>(&r, 1),
                col::<String>(&r, 2),
                col::<bool>(&r, 3),
                col::<bool>(&r, 4),
                col::<String>(&r, 5),
            )
        });
        let Some((completed, provider, paused, uptodate, cur_error)) = st else {
            return head(
                404,
                nfmt!("Unknown consumer: {}/{}", i_queue_name, i_consumer_name),
            )
            .pad(NCOLS);
        };
        let Some(prov_loc) = location_of(c, false, i_queue_name, provider.as_deref()) else {
            return head(
                404,
                nfmt!(
                    "Unknown provider node: {}/{}",
                    i_queue_name,
                    provider.as_deref()
                ),
            )
            .col(completed)
            .col(provider)
            .col(None::<String>)
            .col(paused)
            .col(uptodate)
            .col(cur_error);
        };
        head(100, Some("Ok".to_string()))
            .col(completed)
            .col(provider)
            .col(prov_loc)
            .col(paused)
            .col(uptodate)
            .col(cur_error)
    })
}

#[allow(clippy::type_complexity)]
#[pg_extern(sql = false)]
fn pgq_node_get_consumer_info(
    i_queue_name: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(consumer_name, Option<String>),
        name!(provider_node, Option<String>),
        name!(last_tick_id, Option<i64>),
        name!(paused, Option<bool>),
        name!(uptodate, Option<bool>),
        name!(cur_error, Option<String>),
    ),
> {
    let rows = Spi::connect_mut(|c| {
        run(
            c,
            false,
            "select consumer_name, provider_node, last_tick_id, paused, uptodate, cur_error \
               from pgq_node.local_state where queue_name = $1 order by consumer_name",
            &[i_queue_name.into()],
        )
        .map(|r| {
            (
                r.get::<String>(1).ok().flatten(),
                r.get::<String>(2).ok().flatten(),
                r.get::<i64>(3).ok().flatten(),
                r.get::<bool>(4).ok().flatten(),
                r.get::<bool>(5).ok().flatten(),
                r.get::<String>(6).ok().flatten(),
            )
        })
        .collect::<Vec<_>>()
    });
    TableIterator::new(rows)
}

#[pg_extern(sql = false)]
fn pgq_node_get_subscriber_info(
    i_queue_name: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(node_name, Option<String>),
        name!(worker_name, Option<String>),
        name!(node_watermark, Option<i64>),
    ),
> {
    let rows = Spi::connect_mut(|c| {
        run(
            c,
            false,
            "select si.subscriber_node, si.worker_name, \
                    (select s.sub_last_tick from pgq.subscription s \
                       join pgq.queue q on q.queue_id = s.sub_queue \
                       join pgq.consumer co on co.co_id = s.sub_consumer \
                      where q.queue_name = si.queue_name and co.co_name = si.watermark_name) \
               from pgq_node.subscriber_info si \
              where si.queue_name = $1 order by si.subscriber_node",
            &[i_queue_name.into()],
        )
        .map(|r| {
            (
                r.get::<String>(1).ok().flatten(),
                r.get::<String>(2).ok().flatten(),
                r.get::<i64>(3).ok().flatten(),
            )
        })
        .collect::<Vec<_>>()
    });
    TableIterator::new(rows)
}

#[pg_extern(sql = false)]
fn pgq_node_version() -> Option<String> {
    Some("3.5".to_string())
}

// ---------------------------------------------------------------------------
// Provider side
// ---------------------------------------------------------------------------

#[pg_extern(sql = false)]
fn pgq_node_register_subscriber(
    i_queue_name: Option<&str>,
    i_remote_node_name: Option<&str>,
    i_remote_worker_name: Option<&str>,
    i_custom_tick_id: Option<i64>,
) -> OutRec {
    Spi::connect_mut(|c| {
        let Some(nd) = load_node(c, true, true, i_queue_name) else {
            return OutRec::ret(404, nfmt!("Unknown queue: {}", i_queue_name)).col(None::<i64>);
        };
        let gwm = global_watermark(c, true, i_queue_name);
        if !node_type_of(&nd).map(|t| t.has_queue()).unwrap_or(false) {
            return OutRec::ret(
                401,
                nfmt!("Cannot subscribe to {} node", nd.node_type.as_deref()),
            )
            .col(gwm);
        }
        let wm_name = i_remote_node_name.map(node::subscriber_watermark_name);
        run(
            c,
            true,
            "select pgq.register_consumer_at($1, $2, $3)",
            &[i_queue_name.into(), wm_name.as_deref().into(), gwm.into()],
        );
        run(
            c,
            true,
            "select pgq.register_consumer_at($1, $2, $3)",
            &[
                i_queue_name.into(),
                i_remote_worker_name.into(),
                i_custom_tick_id.or(gwm).into(),
            ],
        );
        exec(
            c,
            "insert into pgq_node.subscriber_info (queue_name, subscriber_node, worker_name, watermark_name) \
             values ($1, $2, $3, $4)",
            &[
                i_queue_name.into(),
                i_remote_node_name.into(),
                i_remote_worker_name.into(),
                wm_name.as_deref().into(),
            ],
        );
        OutRec::ret(200, nfmt!("Subscriber registered: {}", i_remote_node_name)).col(gwm)
    })
}

fn unregister_subscriber(c: Client, queue: Option<&str>, node: Option<&str>) -> OutRec {
    let t = run(
        c,
        true,
        "delete from pgq_node.subscriber_info where queue_name = $1 and subscriber_node = $2 \
         returning worker_name, watermark_name",
        &[queue.into(), node.into()],
    );
    let Some(r) = first(t) else {
        return OutRec::ret(304, "Subscriber not found");
    };
    let worker: Option<String> = col(&r, 1);
    let wm_name: Option<String> = col(&r, 2);
    unregister_pgq_consumer(c, queue, wm_name.as_deref());
    unregister_pgq_consumer(c, queue, worker.as_deref());
    OutRec::ret(200, nfmt!("Subscriber unregistered: {}", node))
}

#[pg_extern(sql = false)]
fn pgq_node_unregister_subscriber(
    i_queue_name: Option<&str>,
    i_remote_node_name: Option<&str>,
) -> OutRec {
    Spi::connect_mut(|c| unregister_subscriber(c, i_queue_name, i_remote_node_name))
}

#[pg_extern(sql = false)]
fn pgq_node_set_subscriber_watermark(
    i_queue_name: Option<&str>,
    i_node_name: Option<&str>,
    i_watermark: Option<i64>,
) -> OutRec {
    Spi::connect_mut(|c| {
        let wm_name = i_node_name.map(node::subscriber_watermark_name);
        // pgq.get_consumer_info treats a NULL consumer as "any", as the original did
        let t = run(
            c,
            true,
            "select last_tick from pgq.get_consumer_info($1, $2) limit 1",
            &[i_queue_name.into(), wm_name.as_deref().into()],
        );
        let Some(cur) = first(t).map(|r| col::<i64>(&r, 1)) else {
            return OutRec::ret(404, nfmt!("node {} not subscribed to queue ", i_node_name));
        };
        match watermark_move(cur, i_watermark) {
            WatermarkMove::Backwards => OutRec::ret(405, "watermark must not be moved backwards"),
            WatermarkMove::Same => OutRec::ret(100, "watermark already set"),
            WatermarkMove::Forward => {
                run(
                    c,
                    true,
                    "select pgq.register_consumer_at($1, $2, $3)",
                    &[
                        i_queue_name.into(),
                        wm_name.as_deref().into(),
                        i_watermark.into(),
                    ],
                );
                OutRec::ret(200, nfmt!("{} set to {}", wm_name.as_deref(), i_watermark))
            }
        }
    })
}

// ---------------------------------------------------------------------------
// Subscriber side: the worker
// ---------------------------------------------------------------------------

fn set_global_watermark(c: Client, queue: Option<&str>, wm: Option<i64>) -> OutRec {
    let Some(nd) = load_node(c, true, true, queue) else {
        return OutRec::ret(404, nfmt!("Queue{} not found", queue));
    };
    match node_type_of(&nd) {
        Some(NodeType::Root) => {
            let wm = match wm {
                Some(w) => w,
                None => {
                    let ni = node_info(c, true, queue);
                    if ni.ret_code >= 300 {
                        return OutRec::ret(ni.ret_code, ni.ret_note);
                    }
                    match ni.local_watermark {
                        Some(w) => w,
                        None => raise("local_watermark not set"),
                    }
                }
            };
            register_consumer_at(c, queue, GLOBAL_WATERMARK, Some(wm));
            let wm_text = wm.to_string();
            insert_event(
                c,
                queue,
                "pgq.global-watermark",
                [Some(&wm_text), queue, None, None],
            );
            exec(
                c,
                "update pgq_node.local_state set last_tick_id = $3 \
                  where queue_name = $1 and consumer_name = $2",
                &[queue.into(), nd.worker_name.as_deref().into(), wm.into()],
            );
            OutRec::ret(200, nfmt!("Global watermark set to {wm}"))
        }
        Some(NodeType::Branch) => {
            let Some(wm) = wm else {
                return OutRec::ret(500, "bad usage: wm=null on branch node");
            };
            let exists = found(
                c,
                true,
                "select 1 from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
                  where q.queue_name = $1 and t.tick_id = $2",
                &[queue.into(), wm.into()],
            );
            if !exists {
                return OutRec::ret(200, nfmt!("Skipping global watermark update to {wm}"));
            }
            register_consumer_at(c, queue, GLOBAL_WATERMARK, Some(wm));
            OutRec::ret(200, nfmt!("Global watermark set to {wm}"))
        }
        _ => OutRec::ret(100, "Ignoring global watermark in leaf"),
    }
}

#[pg_extern(sql = false)]
fn pgq_node_set_global_watermark(i_queue_name: Option<&str>, i_watermark: Option<i64>) -> OutRec {
    Spi::connect_mut(|c| set_global_watermark(c, i_queue_name, i_watermark))
}

#[pg_extern(sql = false)]
fn pgq_node_set_partition_watermark(
    i_combined_queue_name: Option<&str>,
    i_part_queue_name: Option<&str>,
    i_watermark: Option<i64>,
) -> OutRec {
    Spi::connect_mut(|c| {
        let worker: Option<Option<String>> = {
            let t = run(
                c,
                true,
                "select n.worker_name from pgq_node.node_info n \
                   join pgq_node.node_info cn on cn.queue_name = n.combined_queue \
                  where n.queue_name = $1 and n.combined_queue = $2 \
                    and n.node_type = 'leaf' and cn.node_type = 'branch' \
                  for update of n",
                &[i_part_queue_name.into(), i_combined_queue_name.into()],
            );
            first(t).map(|r| col::<String>(&r, 1))
        };
        let Some(worker) = worker else {
            return OutRec::ret(201, "Part-queue does not exist");
        };
        let n = exec(
            c,
            "update pgq_node.local_state set last_tick_id = $3 \
              where queue_name = $1 and consumer_name = $2",
            &[
                i_part_queue_name.into(),
                worker.as_deref().into(),
                i_watermark.into(),
            ],
        );
        if n == 0 {
            return OutRec::ret(401, "Worker registration not found");
        }
        OutRec::ret(200, "Ok")
    })
}

// ---------------------------------------------------------------------------
// Subscriber side: any cascaded consumer
// ---------------------------------------------------------------------------

fn register_consumer(
    c: Client,
    queue: Option<&str>,
    consumer: Option<&str>,
    provider: Option<&str>,
    tick: Option<i64>,
) -> (i32, Option<String>) {
    if load_node(c, true, true, queue).is_none() {
        return (404, nfmt!("Unknown queue: {}", queue));
    }
    let existing = found(
        c,
        true,
        "select 1 from pgq_node.local_state where queue_name = $1 and consumer_name = $2 for update",
        &[queue.into(), consumer.into()],
    );
    let args: [DatumWithOid; 4] = [queue.into(), consumer.into(), provider.into(), tick.into()];
    if existing {
        exec(
            c,
            "update pgq_node.local_state set provider_node = $3, last_tick_id = $4 \
              where queue_name = $1 and consumer_name = $2",
            &args,
        );
        (
            201,
            nfmt!("Consumer already registered: {}/{}", queue, consumer),
        )
    } else {
        exec(
            c,
            "insert into pgq_node.local_state \
                    (queue_name, consumer_name, provider_node, last_tick_id, paused, uptodate) \
             values ($1, $2, $3, $4, false, false)",
            &args,
        );
        (
            200,
            nfmt!("Consumer {} registered on queue {}", consumer, queue),
        )
    }
}

#[pg_extern(sql = false)]
fn pgq_node_register_consumer(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_provider_node: Option<&str>,
    i_custom_tick_id: Option<i64>,
) -> OutRec {
    let (code, note) = Spi::connect_mut(|c| {
        register_consumer(
            c,
            i_queue_name,
            i_consumer_name,
            i_provider_node,
            i_custom_tick_id,
        )
    });
    OutRec::ret(code, note)
}

#[pg_extern(sql = false)]
fn pgq_node_unregister_consumer(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
) -> OutRec {
    Spi::connect_mut(|c| {
        if load_node(c, true, true, i_queue_name).is_none() {
            return OutRec::ret(404, nfmt!("Unknown queue: {}", i_queue_name));
        }
        exec(
            c,
            "delete from pgq_node.local_state where queue_name = $1 and consumer_name = $2",
            &[i_queue_name.into(), i_consumer_name.into()],
        );
        OutRec::ret(
            200,
            nfmt!(
                "Consumer {} unregistered from {}",
                i_consumer_name,
                i_queue_name
            ),
        )
    })
}

#[pg_extern(sql = false)]
fn pgq_node_change_consumer_provider(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_new_provider: Option<&str>,
) -> OutRec {
    Spi::connect_mut(|c| {
        if location_of(c, true, i_queue_name, i_new_provider).is_none() {
            return OutRec::ret(404, nfmt!("New node not found: {}", i_new_provider));
        }
        let n = exec(
            c,
            "update pgq_node.local_state set provider_node = $3, uptodate = false \
              where queue_name = $1 and consumer_name = $2",
            &[
                i_queue_name.into(),
                i_consumer_name.into(),
                i_new_provider.into(),
            ],
        );
        if n == 0 {
            return OutRec::ret(
                404,
                nfmt!("Unknown consumer: {}/{}", i_queue_name, i_consumer_name),
            );
        }
        OutRec::ret(
            200,
            nfmt!("Consumer provider node set to : {}", i_new_provider),
        )
    })
}

#[pg_extern(sql = false)]
fn pgq_node_set_consumer_uptodate(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_uptodate: Option<bool>,
) -> OutRec {
    let n = Spi::connect_mut(|c| {
        exec(
            c,
            "update pgq_node.local_state set uptodate = $3 \
              where queue_name = $1 and consumer_name = $2",
            &[
                i_queue_name.into(),
                i_consumer_name.into(),
                i_uptodate.into(),
            ],
        )
    });
    if n > 0 {
        // NULL never gets here: the column is NOT NULL
        let v = if i_uptodate == Some(true) { 1 } else { 0 };
        OutRec::ret(200, nfmt!("Consumer uptodate = {v}"))
    } else {
        OutRec::ret(
            404,
            nfmt!("Consumer not known: {}/{}", i_queue_name, i_consumer_name),
        )
    }
}

#[pg_extern(sql = false)]
fn pgq_node_set_consumer_paused(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_paused: Option<bool>,
) -> OutRec {
    Spi::connect_mut(|c| {
        let t = run(
            c,
            true,
            "select paused from pgq_node.local_state \
              where queue_name = $1 and consumer_name = $2 for update",
            &[i_queue_name.into(), i_consumer_name.into()],
        );
        let Some(old) = first(t).map(|r| col::<bool>(&r, 1)) else {
            return OutRec::ret(404, nfmt!("Unknown consumer: {}", i_consumer_name));
        };
        let word = node::paused_word(i_paused);
        if old.is_some() && old == i_paused {
            return OutRec::ret(201, nfmt!("Consumer {} already {word}", i_consumer_name));
        }
        exec(
            c,
            "update pgq_node.local_state set paused = $3, uptodate = false \
              where queue_name = $1 and consumer_name = $2",
            &[i_queue_name.into(), i_consumer_name.into(), i_paused.into()],
        );
        OutRec::ret(200, nfmt!("Consumer {} tagged as {word}", i_consumer_name))
    })
}

#[pg_extern(sql = false)]
fn pgq_node_set_consumer_completed(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_tick_id: Option<i64>,
) -> OutRec {
    let n = Spi::connect_mut(|c| {
        exec(
            c,
            "update pgq_node.local_state set last_tick_id = $3, cur_error = null \
              where queue_name = $1 and consumer_name = $2",
            &[
                i_queue_name.into(),
                i_consumer_name.into(),
                i_tick_id.into(),
            ],
        )
    });
    if n > 0 {
        OutRec::ret(
            100,
            nfmt!(
                "Consumer {} completed tick = {}",
                i_consumer_name,
                i_tick_id
            ),
        )
    } else {
        OutRec::ret(
            404,
            nfmt!("Consumer not known: {}/{}", i_queue_name, i_consumer_name),
        )
    }
}

#[pg_extern(sql = false)]
fn pgq_node_set_consumer_error(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_error_msg: Option<&str>,
) -> OutRec {
    let n = Spi::connect_mut(|c| {
        exec(
            c,
            "update pgq_node.local_state set cur_error = $3 \
              where queue_name = $1 and consumer_name = $2",
            &[
                i_queue_name.into(),
                i_consumer_name.into(),
                i_error_msg.into(),
            ],
        )
    });
    if n > 0 {
        match (i_consumer_name, i_error_msg) {
            (Some(cn), Some(msg)) => OutRec::ret(100, nfmt!("Consumer {cn} error = {msg}")),
            _ => OutRec::ret_null_note(100),
        }
    } else {
        OutRec::ret(
            101,
            nfmt!(
                "Consumer not known, ignoring: {}/{}",
                i_queue_name,
                i_consumer_name
            ),
        )
    }
}

// ---------------------------------------------------------------------------
// Maintenance
// ---------------------------------------------------------------------------

/// Not SECURITY DEFINER: runs as the caller (pgqd, pgq_admin) and moves the global
/// watermark through the SECURITY DEFINER `set_global_watermark` when it is 5
/// minutes old.
#[pg_extern(sql = false)]
fn pgq_node_maint_watermark(i_queue_name: Option<&str>) -> Option<i32> {
    Spi::connect_mut(|c| {
        let Some(nd) = load_node(c, true, true, i_queue_name) else {
            return;
        };
        if node_type_of(&nd) != Some(NodeType::Root) {
            return;
        }
        let old: Option<bool> = one(
            c,
            true,
            "select lag operator(pg_catalog.>=) '5 minutes'::pg_catalog.interval \
               from pgq.get_consumer_info($1, '.global_watermark')",
            &[i_queue_name.into()],
        );
        if old == Some(true) {
            run(
                c,
                true,
                "select * from pgq_node.set_global_watermark($1, null)",
                &[i_queue_name.into()],
            );
        }
    });
    Some(0)
}

#[pg_extern(sql = false)]
fn pgq_node_upgrade_schema() -> Option<i32> {
    let n = Spi::connect_mut(|c| {
        let has: bool = found(
            c,
            false,
            "select 1 from pg_catalog.pg_attribute \
              where attrelid = 'pgq_node.node_info'::regclass and attname = 'node_attrs' \
                and not attisdropped",
            &[],
        );
        if has {
            0
        } else {
            run(
                c,
                true,
                "alter table pgq_node.node_info add column node_attrs text",
                &[],
            );
            1
        }
    });
    Some(n)
}
