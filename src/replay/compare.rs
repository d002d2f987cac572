//! `pgq_cascade.compare` and `pgq_cascade.repair` (docs/admin.md, "Compare and
//! repair"): a subscriber node replayed in-server compares its tables with its
//! provider's, both read at one tick T, without locking the provider's tables.
//!
//! 1. The tick and the provider's snapshot, over two libpq connections A and B:
//!    * provider is the root: A `BEGIN ISOLATION LEVEL REPEATABLE READ`, `LOCK TABLE
//!      pgq.tick IN SHARE ROW EXCLUSIVE MODE` (before A has a snapshot: every tick in
//!      progress commits first, and none can commit until A ends; held for
//!      milliseconds), `pgq.force_tick` + `pgq.ticker(queue)`: tick T, whose snapshot is
//!      A's transaction snapshot, which `pg_export_snapshot()` exports; B `BEGIN
//!      ISOLATION LEVEL REPEATABLE READ`, `SET TRANSACTION SNAPSHOT`. B now sees
//!      exactly the data of tick T.
//!    * provider is a branch: A `SELECT last_tick_id ... FROM pgq_node.local_state ...
//!      FOR UPDATE` of the branch's worker (waits for the batch it is applying; the
//!      branch then cannot commit another) gives T; B takes its snapshot; A rolls back.
//! 2. Before A lets go, this node's replay worker is held at T (its shared-memory
//!    slot: `hold_tick`, `hold_pid`): it applies no batch past T and, once it has
//!    completed exactly T, stands still and says so (`hold_state` = held). T is a new
//!    tick (root) or the provider's own position (branch), so this node is never past
//!    it; if it is, the compare fails.
//! 3. Once the worker stands at T, the local side is read (fresh snapshots of this
//!    READ COMMITTED transaction) and the hold let go; B's snapshot stays that of T,
//!    so a compare reads the provider's checksums after that, and the worker stands
//!    still only while the local checksums are computed. A repair reads the provider's
//!    bucket sums first (while the worker catches up), then the local sums and rows,
//!    and lets go at the end of the call, or, when it applied statements, when the
//!    transaction ends (its writes must be committed before replay goes on past T).
//!    The hold goes away on every exit path ([`Hold`]'s Drop, and xact callbacks); the
//!    worker drops a hold whose backend is gone.
//!
//! The SQL and the diff are in `logic::compare`.

use super::rerr;
use crate::bgworker::shmem::{self, HoldState, Kind, STATE};
use crate::db::{self, Db};
use crate::errors::{OrReport, PgqError, PgqResult, SqlState};
use crate::logic::compare as cmp;
use crate::logic::londiste::make_fqname;
use crate::logic::node::NodeType;
use crate::logic::quote;
use crate::remote::{ConnectOptions, Connection};
use pgrx::prelude::*;
use pgrx::AnyNumeric;
use std::collections::BTreeMap;
use std::str::FromStr;

const M: &str = "pgq_cascade";
/// A hold that sees the worker make no progress for this long fails.
const NO_PROGRESS: i64 = 60 * 1_000_000;

type CompareRow = (
    String,
    i64,
    String,
    i64,
    Option<AnyNumeric>,
    i64,
    Option<AnyNumeric>,
    bool,
);

#[allow(clippy::type_complexity)]
#[pg_extern(sql = false)]
fn pgq_cascade_compare(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(table_name, String),
        name!(tick_id, i64),
        name!(source_node, String),
        name!(source_rows, i64),
        name!(source_checksum, Option<AnyNumeric>),
        name!(local_rows, i64),
        name!(local_checksum, Option<AnyNumeric>),
        name!(equal, bool),
    ),
> {
    TableIterator::new(db::write(M, |c| compare(c, i_queue_name, i_table_name)).or_report())
}

#[pg_extern(sql = false)]
fn pgq_cascade_repair(
    i_queue_name: Option<&str>,
    i_table_name: Option<&str>,
    i_apply: Option<bool>,
) -> TableIterator<
    'static,
    (
        name!(table_name, String),
        name!(tick_id, i64),
        name!(op, String),
        name!(statement, String),
    ),
> {
    TableIterator::new(
        db::write(M, |c| {
            repair(c, i_queue_name, i_table_name, i_apply.unwrap_or(false))
        })
        .or_report(),
    )
}

fn err(code: SqlState, msg: impl Into<String>) -> PgqError {
    PgqError::new(code, msg)
}

fn state_err(msg: impl Into<String>) -> PgqError {
    err(SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE, msg)
}

// ---------------------------------------------------------------------------------
// this node

/// The node this runs on, as a compare needs it.
struct Node {
    queue: String,
    name: String,
    provider: String,
    location: String,
}

fn local_node(c: &mut Db<'_, '_>, queue: Option<&str>) -> PgqResult<Node> {
    let Some(queue) = queue else {
        return Err(err(
            SqlState::NULL_VALUE_NOT_ALLOWED,
            "queue name must not be NULL",
        ));
    };
    // SAFETY: reads a backend global.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return Err(err(
            SqlState::INVALID_TRANSACTION_STATE,
            "compare and repair must run in a READ COMMITTED transaction",
        )
        .detail("They read this node's tables once its replay stands at the compared tick, with fresh snapshots."));
    }
    let ni = crate::pgq_node::get_node_info(c, Some(queue))?;
    let Some(kind) = ni.kind() else {
        return Err(err(
            SqlState::UNDEFINED_OBJECT,
            format!("queue {queue} has no cascaded node on this database"),
        ));
    };
    let name = ni.node_name.clone().unwrap_or_default();
    match kind {
        NodeType::Root => {
            return Err(state_err(format!(
                "node {name} is the root of queue {queue}: compare and repair run on a branch or leaf, against its provider"
            )))
        }
        NodeType::Branch | NodeType::Leaf => {}
    }
    if let Some(cq) = &ni.combined_queue {
        return Err(err(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!("merge-leaf node {name}: its tables hold the rows of every part queue of combined queue {cq}, the provider only its own; compare the combined queue's nodes"),
        ));
    }
    if !super::control::replay_runs() {
        return Err(state_err(
            "in-server replay does not run (pgq not preloaded, or pgq.enabled / pgq.replay off): compare needs this node's replay worker",
        ));
    }
    let in_server = c
        .one::<bool>(
            "reading pgq_cascade.node_replay",
            "select in_server from pgq_cascade.node_replay where queue_name = $1",
            &[queue.into()],
        )?
        .unwrap_or(false);
    if !in_server {
        return Err(state_err(format!(
            "node {name} of queue {queue} is not replayed in-server: compare holds this node's replay worker at a tick"
        ))
        .hint(format!(
            "select * from pgq_cascade.set_in_server_replay({}, true)",
            quote::literal(queue)
        )));
    }
    let (Some(provider), Some(location)) = (ni.provider_node.clone(), ni.provider_location.clone())
    else {
        return Err(state_err(format!(
            "node {name} of queue {queue} has no provider location"
        )));
    };
    Ok(Node {
        queue: queue.to_string(),
        name,
        provider,
        location,
    })
}

/// A table to compare: its name in the queue, and its local table.
struct Target {
    name: String,
    dest: String,
    relid: pg_sys::Oid,
    /// local columns (attribute order) and which of them are generated
    columns: Vec<String>,
    generated: Vec<String>,
}

fn local_targets(c: &mut Db<'_, '_>, node: &Node, table: Option<&str>) -> PgqResult<Vec<Target>> {
    const W: &str = "reading the node's tables";
    let want = table.map(make_fqname);
    let t = c.read(
        W,
        "select table_name::text, coalesce(dest_table, table_name)::text, merge_state::text \
           from londiste.table_info \
          where queue_name = $1 and local and ($2::text is null or table_name = $2) \
          order by table_name",
        &[node.queue.as_str().into(), want.as_deref().into()],
    )?;
    let mut rows = Vec::new();
    for r in t {
        rows.push((
            db::req::<String>(&r, 1, W)?,
            db::req::<String>(&r, 2, W)?,
            db::get::<String>(&r, 3, W)?,
        ));
    }
    if let Some(w) = &want {
        match rows.first() {
            None => {
                return Err(err(
                    SqlState::UNDEFINED_TABLE,
                    format!(
                        "table {w} is not replicated to node {} (queue {})",
                        node.name, node.queue
                    ),
                ))
            }
            Some((_, _, st)) if st.as_deref() != Some("ok") => {
                return Err(state_err(format!(
                    "table {w} is in state {} on node {}, not ok",
                    st.as_deref().unwrap_or("NULL"),
                    node.name
                )))
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (name, dest, st) in rows {
        if st.as_deref() != Some("ok") {
            continue;
        }
        let relid = c
            .one::<pg_sys::Oid>(
                "looking up the local table",
                "select pg_catalog.to_regclass($1)::oid",
                &[quote::fqname(&dest, false).as_str().into()],
            )?
            .filter(|o| *o != pg_sys::InvalidOid)
            .ok_or_else(|| {
                err(
                    SqlState::UNDEFINED_TABLE,
                    format!(
                        "table {dest} (of {name}) does not exist on node {}",
                        node.name
                    ),
                )
            })?;
        let (columns, generated) = local_columns(c, relid)?;
        out.push(Target {
            name,
            dest,
            relid,
            columns,
            generated,
        });
    }
    Ok(out)
}

fn local_columns(c: &mut Db<'_, '_>, relid: pg_sys::Oid) -> PgqResult<(Vec<String>, Vec<String>)> {
    const W: &str = "reading the local table's columns";
    let t = c.read(
        W,
        "select attname::text, attgenerated <> '' from pg_catalog.pg_attribute \
          where attrelid = $1 and attnum > 0 and not attisdropped order by attnum",
        &[relid.into()],
    )?;
    let (mut cols, mut generated) = (Vec::new(), Vec::new());
    for r in t {
        let n = db::req::<String>(&r, 1, W)?;
        if db::req::<bool>(&r, 2, W)? {
            generated.push(n.clone());
        }
        cols.push(n);
    }
    Ok((cols, generated))
}

fn local_pkey(c: &mut Db<'_, '_>, relid: pg_sys::Oid) -> PgqResult<Vec<String>> {
    const W: &str = "reading the local table's primary key";
    let t = c.read(
        W,
        "select a.attname::text from pg_catalog.pg_index i \
           join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey) \
          where i.indrelid = $1 and i.indisprimary \
          order by pg_catalog.array_position(i.indkey::int2[], a.attnum)",
        &[relid.into()],
    )?;
    t.map(|r| db::req::<String>(&r, 1, W)).collect()
}

/// A row-count estimate of a local table (for the number of buckets).
fn local_estimate(c: &mut Db<'_, '_>, relid: pg_sys::Oid) -> PgqResult<f64> {
    Ok(c.one::<f64>(
        "estimating the local table's size",
        "select case when reltuples >= 0 then reltuples::float8 \
                         else pg_catalog.pg_relation_size(oid) / 64.0 end \
               from pg_catalog.pg_class where oid = $1",
        &[relid.into()],
    )?
    .unwrap_or(0.0))
}

/// At T (the worker stands there): the table is still ok here and its copy snapshot
/// gone, so its data is exactly that of the batches up to T.
fn check_local_at_tick(c: &mut Db<'_, '_>, node: &Node, t: &Target, tick: i64) -> PgqResult<()> {
    const W: &str = "reading the table's state";
    let r = c.read(
        W,
        "select merge_state::text, custom_snapshot is not null from londiste.table_info \
          where queue_name = $1 and table_name = $2 and local",
        &[node.queue.as_str().into(), t.name.as_str().into()],
    )?;
    let Some(r) = db::first(r) else {
        return Err(state_err(format!(
            "table {} was removed from node {} during the compare",
            t.name, node.name
        )));
    };
    let st = db::get::<String>(&r, 1, W)?;
    let snap = db::get::<bool>(&r, 2, W)?.unwrap_or(false);
    if st.as_deref() != Some("ok") {
        return Err(state_err(format!(
            "table {} is in state {} on node {} at tick {tick}, not ok",
            t.name,
            st.as_deref().unwrap_or("NULL"),
            node.name
        )));
    }
    if snap {
        return Err(state_err(format!(
            "table {} on node {} is still catching up after its initial copy (copy snapshot set at tick {tick})",
            t.name, node.name
        ))
        .hint("Try again once the provider has ticked past the copy."));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// the hold on this node's replay worker

/// This backend holds `queue`'s replay worker at `tick`. Dropping it lets go (also
/// while an ERROR unwinds); [`Hold::until_transaction_end`] hands the release to the
/// transaction's end instead.
struct Hold {
    queue: String,
    dboid: u32,
    pid: i32,
    tick: i64,
    started: i64,
    done: bool,
}

thread_local! {
    /// Queues this backend holds until its transaction ends (a repair that applied).
    static HELD_TO_END: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn release_slot(dboid: u32, queue: &str, pid: i32, tick: i64) {
    if !shmem::available() {
        return;
    }
    let worker = {
        let mut s = STATE.exclusive();
        match s.find(Kind::Replay, dboid, queue) {
            Some(i) if s.slots[i].hold_pid == pid && s.slots[i].hold_tick == tick => {
                s.slots[i].clear_hold();
                s.slots[i].pid
            }
            _ => 0,
        }
    };
    shmem::wake(worker);
}

impl Hold {
    fn acquire(queue: &str, tick: i64) -> PgqResult<Hold> {
        if !shmem::available() {
            return Err(state_err("pgq is not preloaded: no replay worker to hold"));
        }
        if HELD_TO_END.with(|h| h.borrow().iter().any(|q| q == queue)) {
            return Err(err(
                SqlState::OBJECT_IN_USE,
                format!("a repair earlier in this transaction holds the replay of queue {queue} until the transaction ends"),
            )
            .hint("Commit (or roll back) first."));
        }
        // SAFETY: a backend global.
        let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
        let me = crate::bgworker::my_pid();
        let worker = {
            let mut s = STATE.exclusive();
            let Some(i) = s.find(Kind::Replay, dboid, queue) else {
                return Err(state_err(format!(
                    "no replay worker runs for queue {queue} on this database (pgq.worker_status())"
                )));
            };
            let slot = &mut s.slots[i];
            if slot.pid == 0 || !shmem::alive(slot.pid) {
                return Err(state_err(format!(
                    "the replay worker of queue {queue} is not running (pgq.worker_status())"
                )));
            }
            if slot.hold_tick > 0 && slot.hold_pid != me && shmem::alive(slot.hold_pid) {
                return Err(err(
                    SqlState::OBJECT_IN_USE,
                    format!(
                        "another compare (pid {}) holds the replay of queue {queue}",
                        slot.hold_pid
                    ),
                ));
            }
            slot.hold_tick = tick;
            slot.hold_pid = me;
            slot.hold_state = HoldState::Requested;
            slot.hold_position = 0;
            slot.pid
        };
        shmem::wake(worker);
        Ok(Hold {
            queue: queue.to_string(),
            dboid,
            pid: me,
            tick,
            started: shmem::now(),
            done: false,
        })
    }

    /// Wait until the worker has completed exactly the hold tick and stands still.
    fn wait_held(&self) -> PgqResult<()> {
        let mut last_tick = i64::MIN;
        let mut progress_at = shmem::now();
        loop {
            let slot = {
                let s = STATE.share();
                s.find(Kind::Replay, self.dboid, &self.queue)
                    .map(|i| s.slots[i])
            };
            let Some(slot) = slot else {
                return Err(state_err(format!(
                    "the replay worker of queue {} went away during the compare",
                    self.queue
                )));
            };
            if slot.hold_pid != self.pid || slot.hold_tick != self.tick {
                return Err(state_err(format!(
                    "the hold of the replay of queue {} at tick {} was dropped",
                    self.queue, self.tick
                )));
            }
            if slot.hold_state == HoldState::Held && slot.hold_position == self.tick {
                return Ok(());
            }
            if let Some(m) = cmp::hold_failure(slot.hold_state, self.tick, slot.hold_position) {
                return Err(
                    state_err(format!("queue {}: {m}", self.queue)).hint("Run the compare again.")
                );
            }
            let now = shmem::now();
            if slot.last_error_time > self.started {
                if let Some(e) = slot.error_text() {
                    return Err(state_err(format!(
                        "the replay of queue {} failed while catching up to tick {}: {e}",
                        self.queue, self.tick
                    )));
                }
            }
            if slot.tick_id != last_tick {
                last_tick = slot.tick_id;
                progress_at = now;
            } else if now - progress_at > NO_PROGRESS {
                return Err(state_err(format!(
                    "the replay of queue {} made no progress towards tick {} for {} s (it is at tick {})",
                    self.queue,
                    self.tick,
                    NO_PROGRESS / 1_000_000,
                    slot.tick_id
                )));
            }
            // SAFETY: waits on this backend's own latch (the worker sets it when it
            // gets to the tick); WL_EXIT_ON_PM_DEATH ends the backend if the postmaster
            // dies.
            unsafe {
                pg_sys::WaitLatch(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH)
                        as i32,
                    100,
                    pg_sys::PG_WAIT_EXTENSION,
                );
                pg_sys::ResetLatch(pg_sys::MyLatch);
            }
            pg_sys::check_for_interrupts!();
        }
    }

    /// Keep the hold until this transaction ends (commit or abort): the repair's writes
    /// must be committed before the worker applies anything past the tick.
    fn until_transaction_end(mut self) {
        self.done = true;
        let (dboid, queue, pid, tick) = (self.dboid, self.queue.clone(), self.pid, self.tick);
        HELD_TO_END.with(|h| h.borrow_mut().push(queue.clone()));
        let release = move || {
            HELD_TO_END.with(|h| h.borrow_mut().retain(|q| *q != queue));
            release_slot(dboid, &queue, pid, tick);
        };
        let again = release.clone();
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, release);
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, again);
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::PrePrepare, || {
            PgqError::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                "cannot PREPARE a transaction in which pgq_cascade.repair applied statements",
            )
            .report()
        });
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            release_slot(self.dboid, &self.queue, self.pid, self.tick);
        }
    }
}

// ---------------------------------------------------------------------------------
// the provider

/// The provider read at tick `tick`: connection B inside its REPEATABLE READ
/// transaction, and this node's worker held at the same tick.
struct AtTick {
    b: Connection,
    tick: i64,
    hold: Hold,
}

fn connect(node: &Node) -> PgqResult<Connection> {
    let purpose = format!("compare {}", node.queue);
    let opts = ConnectOptions::new(&node.location, &purpose)
        .node(&node.provider)
        .superuser(crate::remote::current_role_is_superuser());
    Connection::connect(&opts).map_err(rerr)
}

fn text_settings(c: &mut Db<'_, '_>) -> PgqResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for name in cmp::TEXT_SETTINGS {
        let v = c
            .one::<String>(
                "reading a session setting",
                "select pg_catalog.current_setting($1)",
                &[name.into()],
            )?
            .unwrap_or_default();
        out.push((name.to_string(), v));
    }
    Ok(out)
}

/// Steps 1 and 2 of the module doc.
fn snapshot_at_tick(c: &mut Db<'_, '_>, node: &Node) -> PgqResult<AtTick> {
    let q = node.queue.as_str();
    let mut a = connect(node)?;
    let mut b = connect(node)?;
    let info = a
        .exec(
            "select node_type::text, worker_name::text from pgq_node.get_node_info($1)",
            &[Some(q)],
        )
        .map_err(rerr)?;
    let ptype = info.get::<String>(0, 0).map_err(rerr)?;
    let pworker = info.get::<String>(0, 1).map_err(rerr)?;
    // values are written as text alike on both sides
    for (name, value) in text_settings(c)? {
        b.exec(
            "select pg_catalog.set_config($1, $2, false)",
            &[Some(&name), Some(&value)],
        )
        .map_err(rerr)?;
    }
    let ptype = ptype.as_deref().and_then(NodeType::parse);
    let (tick, hold) = match ptype {
        Some(NodeType::Root) => {
            // tick inserts queue up behind a LOCK that waits (for a VACUUM of
            // pgq.tick, say): give up rather than stall the provider's ticker
            a.exec("SET lock_timeout = '5s'", &[]).map_err(rerr)?;
            a.exec("BEGIN ISOLATION LEVEL REPEATABLE READ", &[])
                .map_err(rerr)?;
            // before the transaction's snapshot: ticks in progress commit first, and no
            // other tick can be inserted until A ends
            a.exec("LOCK TABLE pgq.tick IN SHARE ROW EXCLUSIVE MODE", &[])
                .map_err(rerr)?;
            a.exec("select pgq.force_tick($1)", &[Some(q)])
                .map_err(rerr)?;
            let t = a
                .exec(
                    "select pgq.ticker($1), pg_catalog.pg_export_snapshot()",
                    &[Some(q)],
                )
                .map_err(rerr)?;
            let tick = t.get::<i64>(0, 0).map_err(rerr)?.ok_or_else(|| {
                state_err(format!(
                    "the provider {} made no tick for queue {q}",
                    node.provider
                ))
            })?;
            let snap = t.get::<String>(0, 1).map_err(rerr)?.unwrap_or_default();
            b.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", &[])
                .map_err(rerr)?;
            b.exec(
                &format!("SET TRANSACTION SNAPSHOT {}", quote::literal(&snap)),
                &[],
            )
            .map_err(rerr)?;
            let hold = Hold::acquire(q, tick)?;
            a.exec("COMMIT", &[]).map_err(rerr)?;
            (tick, hold)
        }
        Some(NodeType::Branch) => {
            let worker = pworker.ok_or_else(|| {
                state_err(format!("the provider {} has no worker name", node.provider))
            })?;
            a.exec("BEGIN", &[]).map_err(rerr)?;
            let t = a
                .exec(
                    "select last_tick_id from pgq_node.local_state \
                      where queue_name operator(pg_catalog.=) $1 \
                        and consumer_name operator(pg_catalog.=) $2 for update",
                    &[Some(q), Some(&worker)],
                )
                .map_err(rerr)?;
            let tick = if t.ntuples() > 0 {
                t.get::<i64>(0, 0).map_err(rerr)?
            } else {
                None
            }
            .ok_or_else(|| {
                state_err(format!(
                    "the provider {} (a branch) has no position for its worker {worker}",
                    node.provider
                ))
            })?;
            b.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", &[])
                .map_err(rerr)?;
            b.exec("select 1", &[]).map_err(rerr)?;
            let hold = Hold::acquire(q, tick)?;
            a.exec("ROLLBACK", &[]).map_err(rerr)?;
            (tick, hold)
        }
        other => {
            return Err(state_err(format!(
                "the provider {} of node {} is {} for queue {q}: compare needs a root or a branch there",
                node.provider,
                node.name,
                other.map(|t| t.as_str()).unwrap_or("no node")
            )))
        }
    };
    Ok(AtTick { b, tick, hold })
}

/// The provider's side of one table, read in B.
struct SourceTable {
    /// the provider's table, quoted
    table: String,
    common: Vec<String>,
    estimate: f64,
}

fn source_table(b: &mut Connection, node: &Node, t: &Target) -> PgqResult<SourceTable> {
    let q = node.queue.as_str();
    let r = b
        .exec(
            "select coalesce(dest_table, table_name)::text, local, merge_state::text, \
                    custom_snapshot is not null \
               from londiste.table_info \
              where queue_name operator(pg_catalog.=) $1 and table_name operator(pg_catalog.=) $2",
            &[Some(q), Some(&t.name)],
        )
        .map_err(rerr)?;
    let ready = r.ntuples() > 0
        && r.get::<bool>(0, 1).map_err(rerr)? == Some(true)
        && r.get::<String>(0, 2).map_err(rerr)?.as_deref() == Some("ok")
        && r.get::<bool>(0, 3).map_err(rerr)? == Some(false);
    if !ready {
        let state = if r.ntuples() == 0 {
            "not registered".to_string()
        } else {
            format!(
                "local {}, state {}{}",
                r.get::<String>(0, 1).map_err(rerr)?.unwrap_or_default(),
                r.get::<String>(0, 2)
                    .map_err(rerr)?
                    .unwrap_or_else(|| "NULL".into()),
                if r.get::<bool>(0, 3).map_err(rerr)? == Some(true) {
                    ", catching up after its copy"
                } else {
                    ""
                }
            )
        };
        return Err(state_err(format!(
            "table {} is not local and ok on the provider {} ({state})",
            t.name, node.provider
        )));
    }
    let dest = r.get::<String>(0, 0).map_err(rerr)?.unwrap_or_default();
    let table = quote::fqname(&dest, false);
    let cols = b
        .exec(
            "select a.attname::text from pg_catalog.pg_attribute a \
              where a.attrelid operator(pg_catalog.=) pg_catalog.to_regclass($1) \
                and a.attnum > 0 and not a.attisdropped order by a.attnum",
            &[Some(&table)],
        )
        .map_err(rerr)?;
    let mut source_cols = Vec::new();
    for i in 0..cols.ntuples() {
        if let Some(n) = cols.get::<String>(i, 0).map_err(rerr)? {
            source_cols.push(n);
        }
    }
    if source_cols.is_empty() {
        return Err(err(
            SqlState::UNDEFINED_TABLE,
            format!(
                "table {dest} does not exist on the provider {}",
                node.provider
            ),
        ));
    }
    let common = cmp::common_columns(&source_cols, &t.columns);
    if common.is_empty() {
        return Err(err(
            SqlState::UNDEFINED_COLUMN,
            format!(
                "table {} has no column in common with {dest} on the provider {}",
                t.dest, node.provider
            ),
        ));
    }
    let est = b
        .exec(
            "select case when reltuples >= 0 then reltuples::float8 \
                         else pg_catalog.pg_relation_size(oid) / 64.0 end \
               from pg_catalog.pg_class where oid operator(pg_catalog.=) pg_catalog.to_regclass($1)",
            &[Some(&table)],
        )
        .map_err(rerr)?;
    let estimate = if est.ntuples() > 0 {
        est.get::<f64>(0, 0).map_err(rerr)?.unwrap_or(0.0)
    } else {
        0.0
    };
    Ok(SourceTable {
        table,
        common,
        estimate,
    })
}

// ---------------------------------------------------------------------------------
// compare

fn compare(
    c: &mut Db<'_, '_>,
    queue: Option<&str>,
    table: Option<&str>,
) -> PgqResult<Vec<CompareRow>> {
    let node = local_node(c, queue)?;
    let targets = local_targets(c, &node, table)?;
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let AtTick { mut b, tick, hold } = snapshot_at_tick(c, &node)?;
    // the provider's table and columns first (catalog reads), so the local side can be
    // read and the worker let go as soon as it stands at T; B's snapshot stays T
    let mut sources = Vec::new();
    for t in &targets {
        sources.push(source_table(&mut b, &node, t)?);
    }
    hold.wait_held()?;
    let mut local = Vec::new();
    for (t, s) in targets.iter().zip(&sources) {
        check_local_at_tick(c, &node, t, tick)?;
        const W: &str = "computing the local checksum";
        let r = c.read_dyn(
            W,
            &cmp::checksum_sql(&quote::fqname(&t.dest, false), &s.common),
            &[],
        )?;
        let r = r.first();
        let rows = db::get::<i64>(&r, 1, W)?.unwrap_or(0);
        let sum = db::get::<AnyNumeric>(&r, 2, W)?;
        local.push((rows, sum));
    }
    drop(hold);
    let mut out = Vec::new();
    for ((t, s), (rows, sum)) in targets.iter().zip(&sources).zip(local) {
        let r = b
            .exec(&cmp::checksum_sql(&s.table, &s.common), &[])
            .map_err(rerr)?;
        let src_rows = r.get::<i64>(0, 0).map_err(rerr)?.unwrap_or(0);
        let src_sum = r.get::<String>(0, 1).map_err(rerr)?;
        let sum_text = sum.as_ref().map(|n| n.to_string());
        let equal = cmp::same_checksum((src_rows, src_sum.as_deref()), (rows, sum_text.as_deref()));
        let src_num = match &src_sum {
            Some(v) => Some(AnyNumeric::from_str(v).map_err(|e| {
                err(
                    SqlState::INVALID_TEXT_REPRESENTATION,
                    format!("the provider's checksum {v}: {e}"),
                )
            })?),
            None => None,
        };
        out.push((
            t.name.clone(),
            tick,
            node.provider.clone(),
            src_rows,
            src_num,
            rows,
            sum,
            equal,
        ));
    }
    let _ = b.exec("COMMIT", &[]);
    Ok(out)
}

// ---------------------------------------------------------------------------------
// repair

type RepairRow = (String, i64, String, String);

fn bucket_sums(
    rows: impl Iterator<Item = PgqResult<(i64, i64, Option<String>)>>,
) -> PgqResult<BTreeMap<i64, cmp::BucketSum>> {
    let mut m = BTreeMap::new();
    for r in rows {
        let (b, n, s) = r?;
        m.insert(b, (n, s));
    }
    Ok(m)
}

fn repair(
    c: &mut Db<'_, '_>,
    queue: Option<&str>,
    table: Option<&str>,
    apply: bool,
) -> PgqResult<Vec<RepairRow>> {
    let node = local_node(c, queue)?;
    if table.is_none() {
        return Err(err(
            SqlState::NULL_VALUE_NOT_ALLOWED,
            "table name must not be NULL: repair works on one table",
        ));
    }
    let targets = local_targets(c, &node, table)?;
    let Some(t) = targets.into_iter().next() else {
        return Err(err(
            SqlState::UNDEFINED_TABLE,
            format!(
                "table {} is not replicated to node {}",
                table.unwrap_or(""),
                node.name
            ),
        ));
    };
    let pkey = local_pkey(c, t.relid)?;
    let local_est = local_estimate(c, t.relid)?;
    let local_table = quote::fqname(&t.dest, false);
    let AtTick { mut b, tick, hold } = snapshot_at_tick(c, &node)?;
    let s = source_table(&mut b, &node, &t)?;
    let shape = cmp::Shape::new(local_table.clone(), s.common.clone(), &pkey, &t.generated)
        .map_err(|m| {
            err(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!("table {} cannot be repaired row by row: {m}", t.dest),
            )
        })?;
    let keys = shape.key_names();
    let n = cmp::bucket_count(local_est.max(s.estimate));
    // the provider's bucket sums, then (the worker at T) the local ones
    let r = b
        .exec(&cmp::bucket_sums_sql(&s.table, &s.common, &keys, n), &[])
        .map_err(rerr)?;
    let source_sums = bucket_sums((0..r.ntuples()).map(|i| {
        Ok((
            r.get::<i64>(i, 0).map_err(rerr)?.unwrap_or(0),
            r.get::<i64>(i, 1).map_err(rerr)?.unwrap_or(0),
            r.get::<String>(i, 2).map_err(rerr)?,
        ))
    }))?;
    drop(r);
    hold.wait_held()?;
    check_local_at_tick(c, &node, &t, tick)?;
    const W: &str = "computing the local bucket sums";
    let lt = c.read_dyn(
        W,
        &cmp::bucket_sums_sql(&local_table, &s.common, &keys, n),
        &[],
    )?;
    let local_sums = bucket_sums(lt.map(|r| {
        Ok((
            db::req::<i64>(&r, 1, W)?,
            db::req::<i64>(&r, 2, W)?,
            db::get::<String>(&r, 3, W)?,
        ))
    }))?;
    let differ = cmp::differing_buckets(&source_sums, &local_sums);
    let arr = cmp::bucket_array(&differ);
    let width = s.common.len();
    // the local rows of the differing buckets, at T
    let mut local_rows = Vec::new();
    if !differ.is_empty() {
        const WR: &str = "reading the local rows of differing buckets";
        let lt = c.read_dyn(
            WR,
            &cmp::bucket_rows_sql(&local_table, &s.common, &keys, n),
            &[arr.as_str().into()],
        )?;
        for r in lt {
            let mut v = Vec::with_capacity(width);
            for i in 1..=width {
                v.push(db::get::<String>(&r, i, WR)?);
            }
            local_rows.push(v);
        }
    }
    // without apply, nothing more is read here: the worker may go on (B stays at T)
    let hold = if apply {
        Some(hold)
    } else {
        drop(hold);
        None
    };
    let mut statements = Vec::new();
    if !differ.is_empty() {
        let mut source_rows = Vec::new();
        {
            let mut stream = b
                .query_stream(
                    &cmp::bucket_rows_sql(&s.table, &s.common, &keys, n),
                    &[Some(&arr)],
                )
                .map_err(rerr)?;
            while let Some(row) = stream.next_row().map_err(rerr)? {
                let mut v = Vec::with_capacity(width);
                for i in 0..width {
                    v.push(row.get::<String>(i).map_err(rerr)?);
                }
                source_rows.push(v);
            }
        }
        statements = cmp::diff_rows(&shape, source_rows, local_rows).map_err(|m| {
            err(
                SqlState::DATA_EXCEPTION,
                format!("repair of table {}: {m}", t.name),
            )
        })?;
    }
    if apply && !statements.is_empty() {
        let prev = c
            .one::<String>(
                "reading session_replication_role",
                "select pg_catalog.current_setting('session_replication_role')",
                &[],
            )?
            .unwrap_or_else(|| "origin".into());
        c.write(
            "setting session_replication_role",
            "select londiste.set_session_replication_role('replica', true)",
            &[],
        )?;
        for st in &statements {
            let n = c.execute_dyn("applying a repair statement", &st.sql, &[])?;
            if n != 1 {
                return Err(err(
                    SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!(
                        "repair of table {}: {} changed {n} rows, expected 1: {}",
                        t.name,
                        st.op.as_str(),
                        st.sql
                    ),
                ));
            }
        }
        c.write(
            "restoring session_replication_role",
            "select londiste.set_session_replication_role($1, true)",
            &[prev.as_str().into()],
        )?;
        // the writes commit with the caller's transaction: until then the worker stays
        if let Some(h) = hold {
            h.until_transaction_end();
        }
    } else {
        drop(hold);
    }
    let _ = b.exec("COMMIT", &[]);
    Ok(statements
        .into_iter()
        .map(|st| (t.name.clone(), tick, st.op.as_str().to_string(), st.sql))
        .collect())
}
