//! Schema `pgq_node`: cascaded queues (docs/pgq_node.md).
//!
//! Every function is `#[pg_extern(sql = false)]`: its `CREATE FUNCTION` (argument
//! names, OUT columns, SECURITY DEFINER, grants) is in sql/pgq_node_functions.sql,
//! because the original's `(ret_code, ret_note, ...)` functions return a single
//! record with OUT parameters, which pgrx cannot declare. The Rust symbol names carry
//! a `pgq_node_` prefix so they cannot clash with other schemas' functions.

use crate::db::{self, first, get, req, Db};
use crate::errors::{OrReport, PgqError, PgqResult};
use crate::logic::node::{
    self, create_node_arg_error, demote_step, watermark_move, DemoteStep, NodeType, WatermarkMove,
    GLOBAL_WATERMARK,
};
use crate::outrec::OutRec;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// The data-access handle every function of this module takes.
pub type Client<'a, 'b, 'c> = &'a mut Db<'b, 'c>;

const M: &str = "pgq_node";

/// `format!` with SQL `||` semantics for the notes: any NULL (None) argument makes
/// the whole note NULL, as string concatenation did in the original.
macro_rules! nfmt {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[allow(clippy::redundant_closure_call)]
        let note = (|| -> Option<String> { Some(format!($fmt $(, $arg?)*)) })();
        note
    }};
}

/// PL/pgSQL `raise exception` (P0001) as an `Err`.
fn exception<T>(msg: impl Into<String>) -> PgqResult<T> {
    Err(PgqError::exception(msg))
}

// ---------------------------------------------------------------------------
// Shared lookups
// ---------------------------------------------------------------------------

/// The local node row of a queue.
pub struct Node {
    pub node_type: Option<String>,
    pub node_name: Option<String>,
    pub worker_name: Option<String>,
    pub combined_queue: Option<String>,
}

impl Node {
    /// The node type; None for a value the CHECK constraint would not allow.
    pub fn kind(&self) -> Option<NodeType> {
        self.node_type.as_deref().and_then(NodeType::parse)
    }
}

/// The local node row of a queue; `lock`: FOR UPDATE.
pub fn load_node(c: Client, lock: bool, queue: Option<&str>) -> PgqResult<Option<Node>> {
    const W: &str = "reading node info";
    let t = if lock {
        c.write(
            W,
            "select node_type, node_name, worker_name, combined_queue \
               from pgq_node.node_info where queue_name operator(pg_catalog.=) $1 for update",
            &[queue.into()],
        )?
    } else {
        c.read(
            W,
            "select node_type, node_name, worker_name, combined_queue \
               from pgq_node.node_info where queue_name operator(pg_catalog.=) $1",
            &[queue.into()],
        )?
    };
    let Some(r) = first(t) else {
        return Ok(None);
    };
    Ok(Some(Node {
        node_type: get(&r, 1, W)?,
        node_name: get(&r, 2, W)?,
        worker_name: get(&r, 3, W)?,
        combined_queue: get(&r, 4, W)?,
    }))
}

fn node_type_of(n: &Node) -> Option<NodeType> {
    n.kind()
}

/// Latest tick id of a pgq queue (NULL if the queue or its ticks are missing).
pub fn latest_tick(c: Client, queue: Option<&str>) -> PgqResult<Option<i64>> {
    c.one(
        "reading the latest tick",
        "select t.tick_id from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
          where q.queue_name = $1 order by t.tick_queue desc, t.tick_id desc limit 1",
        &[queue.into()],
    )
}

/// Position (sub_last_tick) of a pgq consumer: None if not subscribed, Some(None) if
/// subscribed with a NULL position.
pub fn consumer_position(
    c: Client,
    queue: Option<&str>,
    consumer: Option<&str>,
) -> PgqResult<Option<Option<i64>>> {
    const W: &str = "reading a consumer position";
    let t = c.read(
        W,
        "select s.sub_last_tick from pgq.subscription s \
           join pgq.queue q on q.queue_id = s.sub_queue \
           join pgq.consumer co on co.co_id = s.sub_consumer \
          where q.queue_name = $1 and co.co_name = $2",
        &[queue.into(), consumer.into()],
    )?;
    first(t).map(|r| get::<i64>(&r, 1, W)).transpose()
}

pub fn global_watermark(c: Client, queue: Option<&str>) -> PgqResult<Option<i64>> {
    Ok(consumer_position(c, queue, Some(GLOBAL_WATERMARK))?.flatten())
}

/// Lowest position of every consumer of the queue except `.global_watermark`;
/// the latest tick when there is none.
pub fn local_watermark(c: Client, queue: Option<&str>) -> PgqResult<Option<i64>> {
    let wm: Option<i64> = c.one(
        "reading the local watermark",
        "select min(s.sub_last_tick) from pgq.subscription s \
           join pgq.queue q on q.queue_id = s.sub_queue \
           join pgq.consumer co on co.co_id = s.sub_consumer \
          where q.queue_name = $1 and co.co_name <> '.global_watermark'",
        &[queue.into()],
    )?;
    match wm {
        Some(w) => Ok(Some(w)),
        None => latest_tick(c, queue),
    }
}

fn target_for(c: Client, queue: Option<&str>) -> PgqResult<Option<Vec<String>>> {
    c.one(
        "reading combined queues",
        "select array_agg(queue_name order by queue_name) from pgq_node.node_info \
          where combined_queue = $1",
        &[queue.into()],
    )
}

fn node_type_of_queue(c: Client, queue: Option<&str>) -> PgqResult<Option<String>> {
    c.one(
        "reading a node type",
        "select node_type from pgq_node.node_info where queue_name = $1",
        &[queue.into()],
    )
}

/// A node's location: None if unknown, Some(None) if NULL.
pub fn location_of(
    c: Client,
    queue: Option<&str>,
    node: Option<&str>,
) -> PgqResult<Option<Option<String>>> {
    const W: &str = "reading a node location";
    let t = c.read(
        W,
        "select node_location from pgq_node.node_location where queue_name = $1 and node_name = $2",
        &[queue.into(), node.into()],
    )?;
    first(t).map(|r| get::<String>(&r, 1, W)).transpose()
}

fn queue_exists(c: Client, queue: Option<&str>) -> PgqResult<bool> {
    c.exists(
        "checking the queue",
        "select 1 from pgq.queue where queue_name = $1",
        &[queue.into()],
    )
}

fn insert_event(
    c: Client,
    queue: Option<&str>,
    ev_type: &str,
    fields: [Option<&str>; 4],
) -> PgqResult<()> {
    let args: [DatumWithOid; 6] = [
        queue.into(),
        ev_type.into(),
        fields[0].into(),
        fields[1].into(),
        fields[2].into(),
        fields[3].into(),
    ];
    c.write(
        "inserting an event",
        "select pgq.insert_event($1, $2, $3, $4, $5, $6, null)",
        &args,
    )?;
    Ok(())
}

fn register_consumer_at(
    c: Client,
    queue: Option<&str>,
    consumer: &str,
    tick: Option<i64>,
) -> PgqResult<()> {
    c.write(
        "registering a consumer",
        "select pgq.register_consumer_at($1, $2, $3)",
        &[queue.into(), consumer.into(), tick.into()],
    )?;
    Ok(())
}

fn unregister_pgq_consumer(
    c: Client,
    queue: Option<&str>,
    consumer: Option<&str>,
) -> PgqResult<()> {
    c.write(
        "unregistering a consumer",
        "select pgq.unregister_consumer($1, $2)",
        &[queue.into(), consumer.into()],
    )?;
    Ok(())
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

/// get_node_info of a queue (ret_code 404 for an unknown queue).
pub fn get_node_info(c: Client, queue: Option<&str>) -> PgqResult<NodeInfo> {
    const W: &str = "reading node info";
    let t = c.read(
        W,
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
    )?;
    let Some(r) = first(t) else {
        return Ok(NodeInfo {
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
        });
    };
    let mut ni = NodeInfo {
        ret_code: 100,
        ret_note: Some("Ok".to_string()),
        node_type: get(&r, 1, W)?,
        node_name: get(&r, 2, W)?,
        worker_name: get(&r, 3, W)?,
        combined_queue: get(&r, 4, W)?,
        node_attrs: get(&r, 5, W)?,
        provider_node: get(&r, 6, W)?,
        provider_location: get(&r, 7, W)?,
        worker_paused: get(&r, 8, W)?,
        worker_uptodate: get(&r, 9, W)?,
        worker_last_tick: get(&r, 10, W)?,
        combined_type: get(&r, 11, W)?,
        global_watermark: None,
        local_watermark: None,
        target_for: None,
    };
    match ni.kind() {
        Some(t) if t.has_queue() => {
            ni.global_watermark = global_watermark(c, queue)?;
            ni.local_watermark = local_watermark(c, queue)?;
            ni.target_for = target_for(c, queue)?;
            if t == NodeType::Root {
                ni.worker_last_tick = latest_tick(c, queue)?;
            }
        }
        _ => {
            ni.local_watermark = ni.worker_last_tick;
        }
    }
    Ok(ni)
}

impl NodeInfo {
    /// The node type; None for an unknown queue.
    pub fn kind(&self) -> Option<NodeType> {
        self.node_type.as_deref().and_then(NodeType::parse)
    }

    fn into_rec(self) -> OutRec {
        OutRec::new()
            .col(Some(self.ret_code))
            .col(Some(self.ret_note))
            .col(self.node_type)
            .col(self.node_name)
            .col(self.global_watermark)
            .col(self.local_watermark)
            .col(self.provider_node)
            .col(self.provider_location)
            .col(self.combined_queue)
            .col(self.combined_type)
            .col(self.worker_name)
            .col(self.worker_paused)
            .col(self.worker_uptodate)
            .col(self.worker_last_tick)
            .col(self.node_attrs)
            .col(self.target_for)
    }
}

#[pg_extern(sql = false)]
fn pgq_node_get_node_info(i_queue_name: Option<&str>) -> OutRec {
    db::read(M, |c| get_node_info(c, i_queue_name))
        .or_report()
        .into_rec()
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
    db::write(M, |c| {
        register_location(c, i_queue_name, i_node_name, i_node_location, i_dead)
    })
    .or_report()
}

pub fn register_location(
    c: Client,
    i_queue_name: Option<&str>,
    i_node_name: Option<&str>,
    i_node_location: Option<&str>,
    i_dead: Option<bool>,
) -> PgqResult<OutRec> {
    const W: &str = "register_location";
    let nd = load_node(c, true, i_queue_name)?;
    let updated = c.execute(
        W,
        "update pgq_node.node_location \
            set node_location = coalesce($3, node_location), dead = $4 \
          where queue_name = $1 and node_name = $2",
        &[
            i_queue_name.into(),
            i_node_name.into(),
            i_node_location.into(),
            i_dead.into(),
        ],
    )?;
    if updated == 0 && i_node_location.is_some() {
        c.execute(
            W,
            "insert into pgq_node.node_location (queue_name, node_name, node_location, dead) \
             values ($1, $2, $3, $4)",
            &[
                i_queue_name.into(),
                i_node_name.into(),
                i_node_location.into(),
                i_dead.into(),
            ],
        )?;
    }
    if nd.as_ref().and_then(node_type_of) == Some(NodeType::Root) {
        let dead = i_dead.map(|d| if d { "true" } else { "false" });
        insert_event(
            c,
            i_queue_name,
            "pgq.location-info",
            [i_node_name, i_queue_name, i_node_location, dead],
        )?;
    }
    Ok(OutRec::ret(200, "Location registered"))
}

pub fn unregister_location(
    c: Client,
    queue: Option<&str>,
    node: Option<&str>,
) -> PgqResult<OutRec> {
    let nd = load_node(c, true, queue)?;
    if let Some(n) = &nd {
        if n.node_name.as_deref() == node && node.is_some() {
            return Ok(OutRec::ret(403, "Cannot drop node's own location"));
        }
        if node_type_of(n) != Some(NodeType::Root) {
            let prov: Option<String> = c.one(
                "unregister_location",
                "select provider_node from pgq_node.local_state \
                  where queue_name = $1 and consumer_name = $2",
                &[queue.into(), n.worker_name.as_deref().into()],
            )?;
            if prov.is_some() && prov.as_deref() == node {
                return Ok(OutRec::ret(403, "Cannot drop location of node's parent"));
            }
        }
    }
    unregister_subscriber(c, queue, node)?;
    let deleted = c.execute(
        "unregister_location",
        "delete from pgq_node.node_location where queue_name = $1 and node_name = $2",
        &[queue.into(), node.into()],
    )?;
    if nd.as_ref().and_then(node_type_of) == Some(NodeType::Root) {
        insert_event(
            c,
            queue,
            "pgq.unregister-location",
            [node, queue, None, None],
        )?;
    }
    Ok(if deleted > 0 {
        OutRec::ret(200, "Ok")
    } else {
        OutRec::ret(301, nfmt!("Location not found: {}/{}", queue, node))
    })
}

#[pg_extern(sql = false)]
fn pgq_node_unregister_location(i_queue_name: Option<&str>, i_node_name: Option<&str>) -> OutRec {
    db::write(M, |c| unregister_location(c, i_queue_name, i_node_name)).or_report()
}

type LocationRow = (Option<String>, Option<String>, Option<bool>);

pub fn get_queue_locations(c: Client, queue: Option<&str>) -> PgqResult<Vec<LocationRow>> {
    const W: &str = "get_queue_locations";
    c.read(
        W,
        "select node_name, node_location, dead from pgq_node.node_location \
          where queue_name = $1",
        &[queue.into()],
    )?
    .map(|r| Ok((get(&r, 1, W)?, get(&r, 2, W)?, get(&r, 3, W)?)))
    .collect()
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
    TableIterator::new(db::read(M, |c| get_queue_locations(c, i_queue_name)).or_report())
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
    db::write(M, |c| {
        create_node(
            c,
            i_queue_name,
            i_node_type,
            i_node_name,
            i_worker_name,
            i_provider_name,
            i_global_watermark,
            i_combined_queue,
        )
    })
    .or_report()
}

#[allow(clippy::too_many_arguments)]
pub fn create_node(
    c: Client,
    i_queue_name: Option<&str>,
    i_node_type: Option<&str>,
    i_node_name: Option<&str>,
    i_worker_name: Option<&str>,
    i_provider_name: Option<&str>,
    i_global_watermark: Option<i64>,
    i_combined_queue: Option<&str>,
) -> PgqResult<OutRec> {
    if c.exists(
        "create_node",
        "select 1 from pgq_node.node_info where queue_name = $1",
        &[i_queue_name.into()],
    )? {
        return Ok(OutRec::ret(401, "Node already initialized"));
    }
    if let Some(note) = create_node_arg_error(
        i_node_type,
        i_provider_name,
        i_global_watermark,
        i_combined_queue,
    ) {
        return Ok(OutRec::ret(401, note));
    }
    let ntype = i_node_type.and_then(NodeType::parse);
    let mut wm = i_global_watermark;
    let mut provider = i_provider_name;
    match ntype {
        Some(NodeType::Root) => {
            provider = i_node_name;
            c.write(
                "create_node",
                "select pgq.create_queue($1)",
                &[i_queue_name.into()],
            )?;
            c.write(
                "create_node",
                "select pgq.register_consumer($1, '.global_watermark')",
                &[i_queue_name.into()],
            )?;
            wm = global_watermark(c, i_queue_name)?;
        }
        Some(NodeType::Branch) => {
            c.write(
                "create_node",
                "select pgq.create_queue($1)",
                &[i_queue_name.into()],
            )?;
            c.execute(
                "create_node",
                "update pgq.queue set queue_external_ticker = true, queue_disable_insert = true \
                  where queue_name = $1",
                &[i_queue_name.into()],
            )?;
            if wm.unwrap_or(0) > 1 {
                c.write(
                    "create_node",
                    "select pgq.ticker($1, $2, pg_catalog.now(), 1)",
                    &[i_queue_name.into(), wm.into()],
                )?;
            }
            register_consumer_at(c, i_queue_name, GLOBAL_WATERMARK, wm)?;
        }
        Some(NodeType::Leaf)
            if i_combined_queue.is_some() && !queue_exists(c, i_combined_queue)? =>
        {
            return Ok(OutRec::ret(
                401,
                nfmt!("non-existing queue on leaf side: {}", i_combined_queue),
            ));
        }
        // leaf: no queue; unknown type: the CHECK constraint rejects the row below
        Some(NodeType::Leaf) | None => {}
    }
    c.execute("create_node", "insert into pgq_node.node_info (queue_name, node_type, node_name, worker_name, combined_queue) \
         values ($1, $2, $3, $4, $5)",
        &[
            i_queue_name.into(),
            i_node_type.into(),
            i_node_name.into(),
            i_worker_name.into(),
            i_combined_queue.into(),
        ])?;
    let (code, note) = register_consumer(c, i_queue_name, i_worker_name, provider, wm)?;
    if code != 200 {
        return Ok(OutRec::ret(code, note));
    }
    crate::replay::control::record_new_node(c, i_queue_name)?;
    Ok(OutRec::ret(
        200,
        nfmt!(
            "Node \"{}\" initialized for queue \"{}\" with type \"{}\"",
            i_node_name,
            i_queue_name,
            i_node_type
        ),
    ))
}

#[pg_extern(sql = false)]
fn pgq_node_drop_node(i_queue_name: Option<&str>, i_node_name: Option<&str>) -> OutRec {
    db::write(M, |c| drop_node(c, i_queue_name, i_node_name)).or_report()
}

pub fn drop_node(
    c: Client,
    i_queue_name: Option<&str>,
    i_node_name: Option<&str>,
) -> PgqResult<OutRec> {
    let t = c.write(
        "drop_node",
        "select n.node_name = $2, s.provider_node = $2 \
           from pgq_node.node_info n \
           left join pgq_node.local_state s \
             on s.queue_name = n.queue_name and s.consumer_name = n.worker_name \
          where n.queue_name = $1 for update of n",
        &[i_queue_name.into(), i_node_name.into()],
    )?;
    // a NULL comparison (no worker state) is "no", as in the original's IF
    let (is_local, is_prov) = match first(t) {
        Some(r) => (
            get::<bool>(&r, 1, "drop_node")?.unwrap_or(false),
            get::<bool>(&r, 2, "drop_node")?.unwrap_or(false),
        ),
        None => (true, false),
    };
    if is_local {
        let q: [DatumWithOid; 1] = [i_queue_name.into()];
        c.execute(
            "drop_node",
            "delete from pgq_node.subscriber_info where queue_name = $1",
            &q,
        )?;
        c.execute(
            "drop_node",
            "delete from pgq_node.local_state where queue_name = $1",
            &q,
        )?;
        c.execute(
            "drop_node",
            "delete from pgq_node.node_info where queue_name = $1",
            &q,
        )?;
        if queue_exists(c, i_queue_name)? {
            c.write("drop_node", "select pgq.drop_queue($1, true)", &q)?;
        }
        c.execute(
            "drop_node",
            "delete from pgq_node.node_location where queue_name = $1 and node_name <> $2",
            &[i_queue_name.into(), i_node_name.into()],
        )?;
    } else if is_prov {
        return Ok(OutRec::ret(
            405,
            nfmt!("Cannot drop provider node: {}", i_node_name),
        ));
    } else {
        unregister_subscriber(c, i_queue_name, i_node_name)?;
    }
    // the location's own result code does not change drop_node's (as in the original)
    unregister_location(c, i_queue_name, i_node_name)?;
    Ok(OutRec::ret(200, nfmt!("Node dropped: {}", i_node_name)))
}

#[pg_extern(sql = false)]
fn pgq_node_set_node_attrs(i_queue_name: Option<&str>, i_node_attrs: Option<&str>) -> OutRec {
    db::write(M, |c| set_node_attrs(c, i_queue_name, i_node_attrs)).or_report()
}

pub fn set_node_attrs(
    c: Client,
    i_queue_name: Option<&str>,
    i_node_attrs: Option<&str>,
) -> PgqResult<OutRec> {
    let n = c.execute(
        "set_node_attrs",
        "update pgq_node.node_info set node_attrs = $2 where queue_name = $1",
        &[i_queue_name.into(), i_node_attrs.into()],
    )?;
    Ok(if n > 0 {
        OutRec::ret(200, "Node attributes updated")
    } else {
        OutRec::ret(404, "Node not found")
    })
}

/// A queue's tick and event sequences and data table prefix (NOT NULL columns).
fn queue_seqs(c: Client, queue: Option<&str>) -> PgqResult<Option<(String, String, String)>> {
    const W: &str = "reading queue sequences";
    let t = c.read(
        W,
        "select queue_tick_seq, queue_event_seq, queue_data_pfx from pgq.queue where queue_name = $1",
        &[queue.into()],
    )?;
    first(t)
        .map(|r| Ok((req(&r, 1, W)?, req(&r, 2, W)?, req(&r, 3, W)?)))
        .transpose()
}

#[pg_extern(sql = false)]
fn pgq_node_promote_branch(i_queue_name: Option<&str>) -> OutRec {
    db::write(M, |c| promote_branch(c, i_queue_name)).or_report()
}

pub fn promote_branch(c: Client, i_queue_name: Option<&str>) -> PgqResult<OutRec> {
    let Some(nd) = load_node(c, true, i_queue_name)? else {
        return Ok(OutRec::ret(
            404,
            nfmt!("Node not initialized for queue: {}", i_queue_name),
        ));
    };
    if node_type_of(&nd) != Some(NodeType::Branch) {
        return Ok(OutRec::ret(301, "Node not branch"));
    }
    c.execute(
        "promote_branch",
        "update pgq.queue set queue_disable_insert = false, queue_external_ticker = false \
          where queue_name = $1",
        &[i_queue_name.into()],
    )?;
    let last = latest_tick(c, i_queue_name)?;
    if let Some((tick_seq, _, _)) = queue_seqs(c, i_queue_name)? {
        c.write(
            "promote_branch",
            "select pgq.seq_setval($1, $2)",
            &[tick_seq.as_str().into(), last.into()],
        )?;
    }
    c.execute(
        "promote_branch",
        "update pgq_node.node_info set node_type = 'root' where queue_name = $1",
        &[i_queue_name.into()],
    )?;
    c.execute(
        "promote_branch",
        "update pgq_node.local_state \
            set provider_node = $3, last_tick_id = $4, uptodate = false \
          where queue_name = $1 and consumer_name = $2",
        &[
            i_queue_name.into(),
            nd.worker_name.as_deref().into(),
            nd.node_name.as_deref().into(),
            last.into(),
        ],
    )?;
    Ok(OutRec::ret(200, "Branch node promoted to root"))
}

#[pg_extern(sql = false)]
fn pgq_node_demote_root(
    i_queue_name: Option<&str>,
    i_step: Option<i32>,
    i_new_provider: Option<&str>,
) -> OutRec {
    db::write(M, |c| demote_root(c, i_queue_name, i_step, i_new_provider)).or_report()
}

pub fn demote_root(
    c: Client,
    i_queue_name: Option<&str>,
    i_step: Option<i32>,
    i_new_provider: Option<&str>,
) -> PgqResult<OutRec> {
    let Some(nd) = load_node(c, true, i_queue_name)? else {
        return Ok(OutRec::ret(
            404,
            nfmt!("Node not initialized for queue: {}", i_queue_name),
        )
        .col(None::<i64>));
    };
    if node_type_of(&nd) != Some(NodeType::Root) {
        return Ok(OutRec::ret(301, "Node not root").col(None::<i64>));
    }
    if i_step.unwrap_or(0) > 1 {
        let ok: Option<bool> = c.one(
            "demote_root",
            "select queue_disable_insert and queue_external_ticker from pgq.queue \
              where queue_name = $1 for update",
            &[i_queue_name.into()],
        )?;
        if ok != Some(true) {
            return exception("steps in wrong order");
        }
    }
    Ok(match demote_step(i_step) {
        Some(DemoteStep::DisableWrites) => {
            c.execute(
                "demote_root",
                "update pgq.queue set queue_disable_insert = true, queue_external_ticker = true \
                  where queue_name = $1",
                &[i_queue_name.into()],
            )?;
            OutRec::ret(200, nfmt!("Step 1: Writing disabled for: {}", i_queue_name))
                .col(None::<i64>)
        }
        Some(DemoteStep::LastTick) => {
            let (tick_seq, ev_seq, data_pfx) = queue_seqs(c, i_queue_name)?
                .ok_or_else(|| PgqError::exception("queue not found"))?;
            c.write(
                "demote_root",
                "set local session_replication_role = 'replica'",
                &[],
            )?;
            let table: String = c
                .one(
                    "demote_root",
                    "select pgq.quote_fqname($1)",
                    &[data_pfx.as_str().into()],
                )?
                .unwrap_or_default();
            c.write_dyn(
                "demote_root",
                &["lock table ", &table, " in exclusive mode"].concat(),
                &[],
            )?;
            let last: Option<i64> = c.one(
                "demote_root",
                "select pg_catalog.nextval($1::regclass)",
                &[tick_seq.as_str().into()],
            )?;
            let ev: Option<i64> = c.one(
                "demote_root",
                "select pg_catalog.nextval($1::regclass)",
                &[ev_seq.as_str().into()],
            )?;
            c.write(
                "demote_root",
                "select pgq.ticker($1, $2, pg_catalog.now(), $3)",
                &[i_queue_name.into(), last.into(), ev.into()],
            )?;
            OutRec::ret(200, nfmt!("Step 2: Inserted last tick: {}", i_queue_name)).col(last)
        }
        Some(DemoteStep::Demote) => {
            let last = latest_tick(c, i_queue_name)?;
            c.execute(
                "demote_root",
                "update pgq_node.node_info set node_type = 'branch' where queue_name = $1",
                &[i_queue_name.into()],
            )?;
            c.execute(
                "demote_root",
                "update pgq_node.local_state \
                    set provider_node = $3, last_tick_id = $4, uptodate = false \
                  where queue_name = $1 and consumer_name = $2",
                &[
                    i_queue_name.into(),
                    nd.worker_name.as_deref().into(),
                    i_new_provider.into(),
                    last.into(),
                ],
            )?;
            OutRec::ret(
                200,
                nfmt!("Step 3: Demoted root to branch: {}", i_queue_name),
            )
            .col(last)
        }
        None => return exception("incorrect step number"),
    })
}

/// The node type of a queue's local node; raises for a queue without one (as
/// is_root_node/is_leaf_node do). None: a type the CHECK constraint would refuse.
pub fn node_type(c: Client, i_queue_name: Option<&str>) -> PgqResult<Option<NodeType>> {
    const W: &str = "reading the node type";
    let t = c.read(
        W,
        "select node_type from pgq_node.node_info where queue_name = $1",
        &[i_queue_name.into()],
    )?;
    match first(t).map(|r| get::<String>(&r, 1, W)).transpose()? {
        None => exception(format!(
            "queue does not exist: {}",
            i_queue_name.unwrap_or("<NULL>")
        )),
        Some(nt) => Ok(nt.as_deref().and_then(NodeType::parse)),
    }
}

#[pg_extern(sql = false)]
fn pgq_node_is_root_node(i_queue_name: Option<&str>) -> Option<bool> {
    let t = db::read(M, |c| node_type(c, i_queue_name)).or_report();
    Some(t == Some(NodeType::Root))
}

#[pg_extern(sql = false)]
fn pgq_node_is_leaf_node(i_queue_name: Option<&str>) -> Option<bool> {
    let t = db::read(M, |c| node_type(c, i_queue_name)).or_report();
    Some(t == Some(NodeType::Leaf))
}

// ---------------------------------------------------------------------------
// Node state
// ---------------------------------------------------------------------------

#[pg_extern(sql = false)]
fn pgq_node_get_worker_state(i_queue_name: Option<&str>) -> OutRec {
    db::read(M, |c| get_worker_state(c, i_queue_name)).or_report()
}

pub fn get_worker_state(c: Client, i_queue_name: Option<&str>) -> PgqResult<OutRec> {
    const NCOLS: usize = 16;
    {
        let Some(nd) = load_node(c, false, i_queue_name)? else {
            return Ok(OutRec::ret(404, nfmt!("Unknown queue: {}", i_queue_name)).pad(NCOLS));
        };
        let t = c.read(
            "get_worker_state",
            "select last_tick_id, provider_node, paused, uptodate, cur_error \
               from pgq_node.local_state where queue_name = $1 and consumer_name = $2",
            &[i_queue_name.into(), nd.worker_name.as_deref().into()],
        )?;
        let st = first(t)
            .map(|r| -> PgqResult<_> {
                Ok((
                    get::<i64>(&r, 1, "get_worker_state")?,
                    get::<String>(&r, 2, "get_worker_state")?,
                    get::<bool>(&r, 3, "get_worker_state")?,
                    get::<bool>(&r, 4, "get_worker_state")?,
                    get::<String>(&r, 5, "get_worker_state")?,
                ))
            })
            .transpose()?;
        let head = |code: i32, note: Option<String>| {
            OutRec::ret(code, note)
                .col(nd.node_type.clone())
                .col(nd.node_name.clone())
        };
        let Some((completed, provider, paused, uptodate, cur_error)) = st else {
            return Ok(head(
                404,
                nfmt!(
                    "Unknown consumer: {}/{}",
                    i_queue_name,
                    nd.worker_name.as_deref()
                ),
            )
            .pad(10)
            .col(nd.worker_name.clone())
            .pad(NCOLS));
        };
        let Some(prov_loc) = location_of(c, i_queue_name, provider.as_deref())? else {
            return Ok(head(
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
            .pad(NCOLS));
        };
        let mut combined_type = None;
        if nd.combined_queue.is_some() {
            combined_type = node_type_of_queue(c, nd.combined_queue.as_deref())?;
            if combined_type.is_none() {
                return Ok(head(
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
                .pad(NCOLS));
            }
        }
        let (gwm, lwm, top) = match node_type_of(&nd) {
            Some(t) if t.has_queue() => (
                global_watermark(c, i_queue_name)?,
                local_watermark(c, i_queue_name)?,
                latest_tick(c, i_queue_name)?,
            ),
            _ => (None, completed, None),
        };
        Ok(head(100, Some("Ok".to_string()))
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
            .col(combined_type))
    }
}

#[pg_extern(sql = false)]
fn pgq_node_get_consumer_state(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
) -> OutRec {
    db::read(M, |c| get_consumer_state(c, i_queue_name, i_consumer_name)).or_report()
}

pub fn get_consumer_state(
    c: Client,
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
) -> PgqResult<OutRec> {
    const NCOLS: usize = 10;
    {
        let Some(nd) = load_node(c, false, i_queue_name)? else {
            return Ok(OutRec::ret(404, nfmt!("Unknown queue: {}", i_queue_name)).pad(NCOLS));
        };
        let head = |code: i32, note: Option<String>| {
            OutRec::ret(code, note)
                .col(nd.node_type.clone())
                .col(nd.node_name.clone())
        };
        let t = c.read(
            "get_consumer_state",
            "select last_tick_id, provider_node, paused, uptodate, cur_error \
               from pgq_node.local_state where queue_name = $1 and consumer_name = $2",
            &[i_queue_name.into(), i_consumer_name.into()],
        )?;
        let st = first(t)
            .map(|r| -> PgqResult<_> {
                Ok((
                    get::<i64>(&r, 1, "get_consumer_state")?,
                    get::<String>(&r, 2, "get_consumer_state")?,
                    get::<bool>(&r, 3, "get_consumer_state")?,
                    get::<bool>(&r, 4, "get_consumer_state")?,
                    get::<String>(&r, 5, "get_consumer_state")?,
                ))
            })
            .transpose()?;
        let Some((completed, provider, paused, uptodate, cur_error)) = st else {
            return Ok(head(
                404,
                nfmt!("Unknown consumer: {}/{}", i_queue_name, i_consumer_name),
            )
            .pad(NCOLS));
        };
        let Some(prov_loc) = location_of(c, i_queue_name, provider.as_deref())? else {
            return Ok(head(
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
            .col(cur_error));
        };
        Ok(head(100, Some("Ok".to_string()))
            .col(completed)
            .col(provider)
            .col(prov_loc)
            .col(paused)
            .col(uptodate)
            .col(cur_error))
    }
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
    TableIterator::new(db::read(M, |c| get_consumer_info(c, i_queue_name)).or_report())
}

type ConsumerInfoRow = (
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<bool>,
    Option<bool>,
    Option<String>,
);

pub fn get_consumer_info(c: Client, i_queue_name: Option<&str>) -> PgqResult<Vec<ConsumerInfoRow>> {
    const W: &str = "get_consumer_info";
    c.read(
        W,
        "select consumer_name, provider_node, last_tick_id, paused, uptodate, cur_error \
           from pgq_node.local_state where queue_name = $1 order by consumer_name",
        &[i_queue_name.into()],
    )?
    .map(|r| {
        Ok((
            get(&r, 1, W)?,
            get(&r, 2, W)?,
            get(&r, 3, W)?,
            get(&r, 4, W)?,
            get(&r, 5, W)?,
            get(&r, 6, W)?,
        ))
    })
    .collect()
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
    TableIterator::new(db::read(M, |c| get_subscriber_info(c, i_queue_name)).or_report())
}

type SubscriberInfoRow = (Option<String>, Option<String>, Option<i64>);

pub fn get_subscriber_info(
    c: Client,
    i_queue_name: Option<&str>,
) -> PgqResult<Vec<SubscriberInfoRow>> {
    const W: &str = "get_subscriber_info";
    c.read(
        W,
        "select si.subscriber_node, si.worker_name, \
                (select s.sub_last_tick from pgq.subscription s \
                   join pgq.queue q on q.queue_id = s.sub_queue \
                   join pgq.consumer co on co.co_id = s.sub_consumer \
                  where q.queue_name = si.queue_name and co.co_name = si.watermark_name) \
           from pgq_node.subscriber_info si \
          where si.queue_name = $1 order by si.subscriber_node",
        &[i_queue_name.into()],
    )?
    .map(|r| Ok((get(&r, 1, W)?, get(&r, 2, W)?, get(&r, 3, W)?)))
    .collect()
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
    db::write(M, |c| {
        register_subscriber(
            c,
            i_queue_name,
            i_remote_node_name,
            i_remote_worker_name,
            i_custom_tick_id,
        )
    })
    .or_report()
}

pub fn register_subscriber(
    c: Client,
    i_queue_name: Option<&str>,
    i_remote_node_name: Option<&str>,
    i_remote_worker_name: Option<&str>,
    i_custom_tick_id: Option<i64>,
) -> PgqResult<OutRec> {
    let Some(nd) = load_node(c, true, i_queue_name)? else {
        return Ok(OutRec::ret(404, nfmt!("Unknown queue: {}", i_queue_name)).col(None::<i64>));
    };
    let gwm = global_watermark(c, i_queue_name)?;
    if !node_type_of(&nd).map(|t| t.has_queue()).unwrap_or(false) {
        return Ok(OutRec::ret(
            401,
            nfmt!("Cannot subscribe to {} node", nd.node_type.as_deref()),
        )
        .col(gwm));
    }
    let wm_name = i_remote_node_name.map(node::subscriber_watermark_name);
    c.write(
        "register_subscriber",
        "select pgq.register_consumer_at($1, $2, $3)",
        &[i_queue_name.into(), wm_name.as_deref().into(), gwm.into()],
    )?;
    c.write(
        "register_subscriber",
        "select pgq.register_consumer_at($1, $2, $3)",
        &[
            i_queue_name.into(),
            i_remote_worker_name.into(),
            i_custom_tick_id.or(gwm).into(),
        ],
    )?;
    c.execute("register_subscriber", "insert into pgq_node.subscriber_info (queue_name, subscriber_node, worker_name, watermark_name) \
         values ($1, $2, $3, $4)",
        &[
            i_queue_name.into(),
            i_remote_node_name.into(),
            i_remote_worker_name.into(),
            wm_name.as_deref().into(),
        ])?;
    Ok(OutRec::ret(200, nfmt!("Subscriber registered: {}", i_remote_node_name)).col(gwm))
}

pub fn unregister_subscriber(
    c: Client,
    queue: Option<&str>,
    node: Option<&str>,
) -> PgqResult<OutRec> {
    let t = c.write(
        "unregister_subscriber",
        "delete from pgq_node.subscriber_info where queue_name = $1 and subscriber_node = $2 \
         returning worker_name, watermark_name",
        &[queue.into(), node.into()],
    )?;
    let Some(r) = first(t) else {
        return Ok(OutRec::ret(304, "Subscriber not found"));
    };
    let worker: Option<String> = get(&r, 1, "unregister_subscriber")?;
    let wm_name: Option<String> = get(&r, 2, "unregister_subscriber")?;
    unregister_pgq_consumer(c, queue, wm_name.as_deref())?;
    unregister_pgq_consumer(c, queue, worker.as_deref())?;
    Ok(OutRec::ret(200, nfmt!("Subscriber unregistered: {}", node)))
}

#[pg_extern(sql = false)]
fn pgq_node_unregister_subscriber(
    i_queue_name: Option<&str>,
    i_remote_node_name: Option<&str>,
) -> OutRec {
    db::write(M, |c| {
        unregister_subscriber(c, i_queue_name, i_remote_node_name)
    })
    .or_report()
}

#[pg_extern(sql = false)]
fn pgq_node_set_subscriber_watermark(
    i_queue_name: Option<&str>,
    i_node_name: Option<&str>,
    i_watermark: Option<i64>,
) -> OutRec {
    db::write(M, |c| {
        set_subscriber_watermark(c, i_queue_name, i_node_name, i_watermark)
    })
    .or_report()
}

pub fn set_subscriber_watermark(
    c: Client,
    i_queue_name: Option<&str>,
    i_node_name: Option<&str>,
    i_watermark: Option<i64>,
) -> PgqResult<OutRec> {
    let wm_name = i_node_name.map(node::subscriber_watermark_name);
    // pgq.get_consumer_info treats a NULL consumer as "any", as the original did
    let t = c.write(
        "set_subscriber_watermark",
        "select last_tick from pgq.get_consumer_info($1, $2) limit 1",
        &[i_queue_name.into(), wm_name.as_deref().into()],
    )?;
    let Some(cur) = first(t)
        .map(|r| get::<i64>(&r, 1, "set_subscriber_watermark"))
        .transpose()?
    else {
        return Ok(OutRec::ret(
            404,
            nfmt!("node {} not subscribed to queue ", i_node_name),
        ));
    };
    Ok(match watermark_move(cur, i_watermark) {
        WatermarkMove::Backwards => OutRec::ret(405, "watermark must not be moved backwards"),
        WatermarkMove::Same => OutRec::ret(100, "watermark already set"),
        WatermarkMove::Forward => {
            c.write(
                "set_subscriber_watermark",
                "select pgq.register_consumer_at($1, $2, $3)",
                &[
                    i_queue_name.into(),
                    wm_name.as_deref().into(),
                    i_watermark.into(),
                ],
            )?;
            OutRec::ret(200, nfmt!("{} set to {}", wm_name.as_deref(), i_watermark))
        }
    })
}

// ---------------------------------------------------------------------------
// Subscriber side: the worker
// ---------------------------------------------------------------------------

pub fn set_global_watermark(c: Client, queue: Option<&str>, wm: Option<i64>) -> PgqResult<OutRec> {
    let Some(nd) = load_node(c, true, queue)? else {
        return Ok(OutRec::ret(404, nfmt!("Queue{} not found", queue)));
    };
    Ok(match node_type_of(&nd) {
        Some(NodeType::Root) => {
            let wm = match wm {
                Some(w) => w,
                None => {
                    let ni = get_node_info(c, queue)?;
                    if ni.ret_code >= 300 {
                        return Ok(OutRec::ret(ni.ret_code, ni.ret_note));
                    }
                    match ni.local_watermark {
                        Some(w) => w,
                        None => return exception("local_watermark not set"),
                    }
                }
            };
            register_consumer_at(c, queue, GLOBAL_WATERMARK, Some(wm))?;
            let wm_text = wm.to_string();
            insert_event(
                c,
                queue,
                "pgq.global-watermark",
                [Some(&wm_text), queue, None, None],
            )?;
            c.execute(
                "set_global_watermark",
                "update pgq_node.local_state set last_tick_id = $3 \
                  where queue_name = $1 and consumer_name = $2",
                &[queue.into(), nd.worker_name.as_deref().into(), wm.into()],
            )?;
            OutRec::ret(200, nfmt!("Global watermark set to {wm}"))
        }
        Some(NodeType::Branch) => {
            let Some(wm) = wm else {
                return Ok(OutRec::ret(500, "bad usage: wm=null on branch node"));
            };
            let exists = c.exists(
                "set_global_watermark",
                "select 1 from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
                  where q.queue_name = $1 and t.tick_id = $2",
                &[queue.into(), wm.into()],
            )?;
            if !exists {
                return Ok(OutRec::ret(
                    200,
                    nfmt!("Skipping global watermark update to {wm}"),
                ));
            }
            register_consumer_at(c, queue, GLOBAL_WATERMARK, Some(wm))?;
            OutRec::ret(200, nfmt!("Global watermark set to {wm}"))
        }
        _ => OutRec::ret(100, "Ignoring global watermark in leaf"),
    })
}

#[pg_extern(sql = false)]
fn pgq_node_set_global_watermark(i_queue_name: Option<&str>, i_watermark: Option<i64>) -> OutRec {
    db::write(M, |c| set_global_watermark(c, i_queue_name, i_watermark)).or_report()
}

#[pg_extern(sql = false)]
fn pgq_node_set_partition_watermark(
    i_combined_queue_name: Option<&str>,
    i_part_queue_name: Option<&str>,
    i_watermark: Option<i64>,
) -> OutRec {
    db::write(M, |c| {
        set_partition_watermark(c, i_combined_queue_name, i_part_queue_name, i_watermark)
    })
    .or_report()
}

pub fn set_partition_watermark(
    c: Client,
    i_combined_queue_name: Option<&str>,
    i_part_queue_name: Option<&str>,
    i_watermark: Option<i64>,
) -> PgqResult<OutRec> {
    let worker: Option<Option<String>> = {
        let t = c.write(
            "set_partition_watermark",
            "select n.worker_name from pgq_node.node_info n \
               join pgq_node.node_info cn on cn.queue_name = n.combined_queue \
              where n.queue_name = $1 and n.combined_queue = $2 \
                and n.node_type = 'leaf' and cn.node_type = 'branch' \
              for update of n",
            &[i_part_queue_name.into(), i_combined_queue_name.into()],
        )?;
        first(t)
            .map(|r| get::<String>(&r, 1, "set_partition_watermark"))
            .transpose()?
    };
    let Some(worker) = worker else {
        return Ok(OutRec::ret(201, "Part-queue does not exist"));
    };
    let n = c.execute(
        "set_partition_watermark",
        "update pgq_node.local_state set last_tick_id = $3 \
          where queue_name = $1 and consumer_name = $2",
        &[
            i_part_queue_name.into(),
            worker.as_deref().into(),
            i_watermark.into(),
        ],
    )?;
    if n == 0 {
        return Ok(OutRec::ret(401, "Worker registration not found"));
    }
    Ok(OutRec::ret(200, "Ok"))
}

// ---------------------------------------------------------------------------
// Subscriber side: any cascaded consumer
// ---------------------------------------------------------------------------

pub fn register_consumer(
    c: Client,
    queue: Option<&str>,
    consumer: Option<&str>,
    provider: Option<&str>,
    tick: Option<i64>,
) -> PgqResult<(i32, Option<String>)> {
    if load_node(c, true, queue)?.is_none() {
        return Ok((404, nfmt!("Unknown queue: {}", queue)));
    }
    let existing = c.exists("register_consumer", "select 1 from pgq_node.local_state where queue_name = $1 and consumer_name = $2 for update",
        &[queue.into(), consumer.into()])?;
    let args: [DatumWithOid; 4] = [queue.into(), consumer.into(), provider.into(), tick.into()];
    if existing {
        c.execute(
            "register_consumer",
            "update pgq_node.local_state set provider_node = $3, last_tick_id = $4 \
              where queue_name = $1 and consumer_name = $2",
            &args,
        )?;
        Ok((
            201,
            nfmt!("Consumer already registered: {}/{}", queue, consumer),
        ))
    } else {
        c.execute(
            "register_consumer",
            "insert into pgq_node.local_state \
                    (queue_name, consumer_name, provider_node, last_tick_id, paused, uptodate) \
             values ($1, $2, $3, $4, false, false)",
            &args,
        )?;
        Ok((
            200,
            nfmt!("Consumer {} registered on queue {}", consumer, queue),
        ))
    }
}

#[pg_extern(sql = false)]
fn pgq_node_register_consumer(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_provider_node: Option<&str>,
    i_custom_tick_id: Option<i64>,
) -> OutRec {
    let (code, note) = db::write(M, |c| {
        register_consumer(
            c,
            i_queue_name,
            i_consumer_name,
            i_provider_node,
            i_custom_tick_id,
        )
    })
    .or_report();
    OutRec::ret(code, note)
}

#[pg_extern(sql = false)]
fn pgq_node_unregister_consumer(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
) -> OutRec {
    db::write(M, |c| unregister_consumer(c, i_queue_name, i_consumer_name)).or_report()
}

pub fn unregister_consumer(
    c: Client,
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
) -> PgqResult<OutRec> {
    if load_node(c, true, i_queue_name)?.is_none() {
        return Ok(OutRec::ret(404, nfmt!("Unknown queue: {}", i_queue_name)));
    }
    c.execute(
        "unregister_consumer",
        "delete from pgq_node.local_state where queue_name = $1 and consumer_name = $2",
        &[i_queue_name.into(), i_consumer_name.into()],
    )?;
    Ok(OutRec::ret(
        200,
        nfmt!(
            "Consumer {} unregistered from {}",
            i_consumer_name,
            i_queue_name
        ),
    ))
}

#[pg_extern(sql = false)]
fn pgq_node_change_consumer_provider(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_new_provider: Option<&str>,
) -> OutRec {
    db::write(M, |c| {
        change_consumer_provider(c, i_queue_name, i_consumer_name, i_new_provider)
    })
    .or_report()
}

pub fn change_consumer_provider(
    c: Client,
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_new_provider: Option<&str>,
) -> PgqResult<OutRec> {
    if location_of(c, i_queue_name, i_new_provider)?.is_none() {
        return Ok(OutRec::ret(
            404,
            nfmt!("New node not found: {}", i_new_provider),
        ));
    }
    let n = c.execute(
        "change_consumer_provider",
        "update pgq_node.local_state set provider_node = $3, uptodate = false \
          where queue_name = $1 and consumer_name = $2",
        &[
            i_queue_name.into(),
            i_consumer_name.into(),
            i_new_provider.into(),
        ],
    )?;
    if n == 0 {
        return Ok(OutRec::ret(
            404,
            nfmt!("Unknown consumer: {}/{}", i_queue_name, i_consumer_name),
        ));
    }
    // the in-server worker reads its new provider (and acknowledges) at once, also
    // when it is backing off after errors (a dead provider)
    crate::bgworker::hooks::request_replay_wakeup(i_queue_name);
    Ok(OutRec::ret(
        200,
        nfmt!("Consumer provider node set to : {}", i_new_provider),
    ))
}

#[pg_extern(sql = false)]
fn pgq_node_set_consumer_uptodate(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_uptodate: Option<bool>,
) -> OutRec {
    db::write(M, |c| {
        set_consumer_uptodate(c, i_queue_name, i_consumer_name, i_uptodate)
    })
    .or_report()
}

pub fn set_consumer_uptodate(
    c: Client,
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_uptodate: Option<bool>,
) -> PgqResult<OutRec> {
    let n = c.execute(
        "set_consumer_uptodate",
        "update pgq_node.local_state set uptodate = $3 \
              where queue_name = $1 and consumer_name = $2",
        &[
            i_queue_name.into(),
            i_consumer_name.into(),
            i_uptodate.into(),
        ],
    )?;
    Ok(if n > 0 {
        // NULL never gets here: the column is NOT NULL
        let v = if i_uptodate == Some(true) { 1 } else { 0 };
        OutRec::ret(200, nfmt!("Consumer uptodate = {v}"))
    } else {
        OutRec::ret(
            404,
            nfmt!("Consumer not known: {}/{}", i_queue_name, i_consumer_name),
        )
    })
}

#[pg_extern(sql = false)]
fn pgq_node_set_consumer_paused(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_paused: Option<bool>,
) -> OutRec {
    db::write(M, |c| {
        set_consumer_paused(c, i_queue_name, i_consumer_name, i_paused)
    })
    .or_report()
}

pub fn set_consumer_paused(
    c: Client,
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_paused: Option<bool>,
) -> PgqResult<OutRec> {
    let t = c.write(
        "set_consumer_paused",
        "select paused from pgq_node.local_state \
          where queue_name = $1 and consumer_name = $2 for update",
        &[i_queue_name.into(), i_consumer_name.into()],
    )?;
    let Some(old) = first(t)
        .map(|r| get::<bool>(&r, 1, "set_consumer_paused"))
        .transpose()?
    else {
        return Ok(OutRec::ret(
            404,
            nfmt!("Unknown consumer: {}", i_consumer_name),
        ));
    };
    let word = node::paused_word(i_paused);
    if old.is_some() && old == i_paused {
        return Ok(OutRec::ret(
            201,
            nfmt!("Consumer {} already {word}", i_consumer_name),
        ));
    }
    c.execute(
        "set_consumer_paused",
        "update pgq_node.local_state set paused = $3, uptodate = false \
          where queue_name = $1 and consumer_name = $2",
        &[i_queue_name.into(), i_consumer_name.into(), i_paused.into()],
    )?;
    // admin tools wait for the acknowledgement: the in-server worker gives it at once,
    // also when it is backing off after errors (a takeover after its provider died)
    crate::bgworker::hooks::request_replay_wakeup(i_queue_name);
    Ok(OutRec::ret(
        200,
        nfmt!("Consumer {} tagged as {word}", i_consumer_name),
    ))
}

#[pg_extern(sql = false)]
fn pgq_node_set_consumer_completed(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_tick_id: Option<i64>,
) -> OutRec {
    db::write(M, |c| {
        set_consumer_completed(c, i_queue_name, i_consumer_name, i_tick_id)
    })
    .or_report()
}

pub fn set_consumer_completed(
    c: Client,
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_tick_id: Option<i64>,
) -> PgqResult<OutRec> {
    crate::replay::control::check_completion_allowed(c, i_queue_name, i_consumer_name)?;
    let n = c.execute(
        "set_consumer_completed",
        "update pgq_node.local_state set last_tick_id = $3, cur_error = null \
              where queue_name = $1 and consumer_name = $2",
        &[
            i_queue_name.into(),
            i_consumer_name.into(),
            i_tick_id.into(),
        ],
    )?;
    Ok(if n > 0 {
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
    })
}

#[pg_extern(sql = false)]
fn pgq_node_set_consumer_error(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_error_msg: Option<&str>,
) -> OutRec {
    db::write(M, |c| {
        set_consumer_error(c, i_queue_name, i_consumer_name, i_error_msg)
    })
    .or_report()
}

pub fn set_consumer_error(
    c: Client,
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_error_msg: Option<&str>,
) -> PgqResult<OutRec> {
    let n = c.execute(
        "set_consumer_error",
        "update pgq_node.local_state set cur_error = $3 \
              where queue_name = $1 and consumer_name = $2",
        &[
            i_queue_name.into(),
            i_consumer_name.into(),
            i_error_msg.into(),
        ],
    )?;
    Ok(if n > 0 {
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
    })
}

// ---------------------------------------------------------------------------
// Maintenance
// ---------------------------------------------------------------------------

/// Not SECURITY DEFINER: runs as the caller (pgqd, pgq_admin) and moves the global
/// watermark through the SECURITY DEFINER `set_global_watermark` when it is 5
/// minutes old.
#[pg_extern(sql = false)]
fn pgq_node_maint_watermark(i_queue_name: Option<&str>) -> Option<i32> {
    db::write(M, |c| maint_watermark(c, i_queue_name)).or_report();
    Some(0)
}

/// Move the global watermark of a root when it is 5 minutes old.
pub fn maint_watermark(c: Client, i_queue_name: Option<&str>) -> PgqResult<()> {
    {
        let Some(nd) = load_node(c, true, i_queue_name)? else {
            return Ok(());
        };
        if node_type_of(&nd) != Some(NodeType::Root) {
            return Ok(());
        }
        let old: Option<bool> = c.one(
            "maint_watermark",
            "select lag operator(pg_catalog.>=) '5 minutes'::pg_catalog.interval \
               from pgq.get_consumer_info($1, '.global_watermark')",
            &[i_queue_name.into()],
        )?;
        if old == Some(true) {
            c.write(
                "maint_watermark",
                "select * from pgq_node.set_global_watermark($1, null)",
                &[i_queue_name.into()],
            )?;
        }
        Ok(())
    }
}

#[pg_extern(sql = false)]
fn pgq_node_upgrade_schema() -> Option<i32> {
    let n = db::write(M, |c| -> PgqResult<i32> {
        let has: bool = c.exists(
            "upgrade_schema",
            "select 1 from pg_catalog.pg_attribute \
              where attrelid = 'pgq_node.node_info'::regclass and attname = 'node_attrs' \
                and not attisdropped",
            &[],
        )?;
        if has {
            Ok(0)
        } else {
            c.write(
                "upgrade_schema",
                "alter table pgq_node.node_info add column node_attrs text",
                &[],
            )?;
            Ok(1)
        }
    })
    .or_report();
    Some(n)
}
