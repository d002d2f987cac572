//! The replay loop of one cascaded node (docs/replication.md, "In-server replay"): what
//! the Python `londiste worker` does, inside the server. Each round:
//!
//! 1. Local: the node and its worker's consumer state (`pgq_node.get_node_info`,
//!    `get_consumer_state`); acknowledge `uptodate`; honour `paused`; clear a
//!    `cur_error` left by an earlier failure once a round succeeds.
//! 2. Provider (libpq, `provider_location`; reconnected when it changes):
//!    `pgq.next_batch_custom`. No batch: wait for the provider's tick notification.
//! 3. One local transaction per batch, with `session_replication_role = replica`: the
//!    worker's `local_state` row locked; the is-batch-done rule; the batch's events
//!    streamed from the provider in `ev_id` order and applied (row changes through
//!    kept plans, TRUNCATE, EXECUTE, londiste and cascade events); on a branch every
//!    event also copied into the local queue with its `ev_id`; on a merge leaf whose
//!    combined queue's node here is the root, every event but `pgq.*`/`londiste.*`
//!    copied into the combined queue with a new id, then a `pgq.tick-id` event;
//!    `pgq_node.set_consumer_completed`; commit. A merge leaf under a combined
//!    branch applies nothing: its batch is done once the combined branch's replay has
//!    moved its position to the batch's end (`set_partition_watermark`).
//! 4. On a branch, the local tick with the provider's tick id, time and event
//!    sequence; then `pgq.finish_batch` on the provider; now and then the local
//!    watermark up to the provider.
//!
//! An error rolls the batch back, is recorded (`pgq_node.set_consumer_error`, the
//! status slot, `pgq_cascade.replay_error`), and the round is retried after a backoff of
//! 1 s doubling to 60 s. A crash anywhere is repaired by step 3's rule: the batch is
//! applied again if the local commit did not happen, finished only if it did.

use super::rerr;
use crate::bgworker::shmem;
use crate::bgworker::worker::{self as w, in_txn, StepError};
use crate::errors::{PgqError, SpiResultExt, SqlState};
use crate::logic::apply::{self as plan, EventKind, LondisteEvent};
use crate::logic::compare::{self as hold, HoldState, HoldStep};
use crate::logic::londiste::{make_fqname, split_fqname};
use crate::logic::node::NodeType;
use crate::logic::quote;
use crate::logic::replay::{
    self as rules, BatchVerdict, BranchTick, CascadeEvent, CatchUp, CopyPhase, CopyTo, Duties,
    ExecDecision, HandOff,
};
use crate::logic::snapshot::Snapshot;
use crate::remote::{ConnectOptions, Connection};
use crate::replay::copy::CopyMode;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::collections::HashMap;
use std::time::Duration;

const SEC: i64 = 1_000_000;
/// How long a worker held by a compare waits between looks (the compare's release
/// wakes it at once).
const HOLD_IDLE: Duration = Duration::from_secs(1);
/// How often an idle replay worker looks for parked foreign keys to restore, and for
/// copy consumers nobody needs any more.
const HOUSEKEEPING_PERIOD: i64 = 5 * SEC;
/// How often the local watermark goes up to the provider, and a `sync_watermark` node
/// syncs its global watermark: `pgq.replay_watermark_period` (300 s by default, the
/// Python worker's period).
fn watermark_period() -> i64 {
    i64::from(crate::gucs::REPLAY_WATERMARK_PERIOD_S.get()) * SEC
}

/// Set in a replay worker process: `pgq_node.set_consumer_completed` refuses other
/// sessions while a node is replayed in-server, so two consumers never apply one batch.
pub static IN_REPLAY_WORKER: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

pub fn is_replay_worker() -> bool {
    IN_REPLAY_WORKER.load(std::sync::atomic::Ordering::Relaxed)
}

/// The node as this round read it.
#[derive(Debug, Clone)]
struct NodeState {
    node_type: NodeType,
    node_name: String,
    worker: String,
    combined_queue: Option<String>,
    /// the type of the combined queue's node in this database (merge leaves)
    combined_type: Option<NodeType>,
    local_watermark: Option<i64>,
    /// this node's global watermark (pgq_node.get_node_info)
    global_watermark: Option<i64>,
    /// the nodes its `sync_watermark` attribute lists (empty: none)
    sync_watermark: Vec<String>,
    provider_node: Option<String>,
    provider_location: Option<String>,
    paused: bool,
    uptodate: bool,
    cur_error: Option<String>,
    /// in-server replay is still on for the node, as the role this process acts as
    replay_here: bool,
    /// the worker's completed tick (pgq_node.local_state.last_tick_id)
    position: Option<i64>,
}

/// A batch the provider handed out.
#[derive(Debug, Clone, Copy)]
struct Batch {
    id: i64,
    cur_tick: i64,
    prev_tick: i64,
    /// the provider's tick time, microseconds since 2000-01-01 (TimestampTz)
    cur_tick_time: i64,
    cur_tick_seq: i64,
}

/// Where the current batch's failing event was, for the error history.
#[derive(Debug, Clone, Default)]
struct Position {
    batch_id: Option<i64>,
    tick_id: Option<i64>,
    ev_id: Option<i64>,
    ev_txid: Option<i64>,
    table: Option<String>,
}

thread_local! {
    /// The event being applied, written before each one: an ERROR that PostgreSQL
    /// raises while applying it unwinds past the batch code straight to the
    /// transaction's catch, and the error history still names the event.
    static CURRENT_EVENT: std::cell::RefCell<Position> = std::cell::RefCell::new(Position::default());
    /// On a `sync_watermark` node: the tick of the last `pgq.global-watermark` event
    /// read from the provider (remembered, not applied; None until one arrives after
    /// the worker started). One queue per worker process, so one value. A batch that
    /// rolls back may have set it: still a tick the root announced, so a safe bound.
    static RECEIVED_GLOBAL_WATERMARK: std::cell::Cell<Option<i64>> = const { std::cell::Cell::new(None) };
    /// On a combined branch: the part queues whose merge leaves' positions the batch
    /// moved (`pgq.tick-id`); their replay workers are woken after the commit.
    static MOVED_PARTS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The replay of one queue, kept across rounds.
pub struct Replay {
    queue: String,
    /// the role this process acts as (pgq_cascade.node_replay.replay_role at start)
    role: String,
    /// whether that role is a superuser (read at start, inside a transaction: the
    /// lookup reads the catalogs)
    role_is_superuser: bool,
    provider: Option<(String, Connection)>,
    failures: u32,
    last_failed: bool,
    last_watermark: i64,
    pos: Position,
    /// a copy snapshot was dropped: parked foreign keys may go back
    restore_fkeys: bool,
    /// look for tables to copy: the last batch's table list had one waiting, or the
    /// last round found no batch (a new add-table shows in the next batch's list too)
    copy_check: bool,
    /// a compare holds this worker: the tick it stands at, since when (logged when
    /// the hold ends)
    held: Option<(i64, i64)>,
    /// set in a copy worker: the one table it copies and catches up
    copy: Option<CopyTask>,
    /// when parked foreign keys were last looked for while idle, and stale copy
    /// consumers last dropped
    last_housekeeping: i64,
    last_cleanup: i64,
    /// when the provider may next be asked whether it has a waiting table complete
    next_copy_probe: i64,
    /// this merge leaf waited behind a combined branch: after a takeover made the
    /// combined node the root, batches its position already passed are only finished
    was_behind: bool,
}

/// The table of a copy worker.
#[derive(Debug, Clone)]
struct CopyTask {
    /// londiste.table_info.nr
    nr: i32,
    /// the global table name
    table: String,
    /// the previous look for a batch found none, at a tick past the copy's snapshot:
    /// the catch-up has caught up
    caught_up: bool,
    /// a tick was asked for since the last batch
    asked: bool,
}

/// How a round ended.
pub enum Round {
    /// a batch was applied (or finished): go on at once
    Busy,
    /// nothing to do now: wait this long (or for a notification)
    Idle(Duration),
    /// the node is gone or no longer replayed here: the worker exits
    Stop(String),
}

impl Replay {
    pub fn new(queue: String, role: String, role_is_superuser: bool) -> Replay {
        Replay {
            queue,
            role,
            role_is_superuser,
            provider: None,
            failures: 0,
            last_failed: false,
            last_watermark: 0,
            pos: Position::default(),
            restore_fkeys: false,
            copy_check: true,
            held: None,
            copy: None,
            last_housekeeping: 0,
            last_cleanup: 0,
            next_copy_probe: 0,
            was_behind: false,
        }
    }

    /// The copy and catch-up of one table (`nr`, `table`) of the queue's node: what a
    /// copy worker runs.
    pub fn new_copy(
        queue: String,
        role: String,
        role_is_superuser: bool,
        nr: i32,
        table: String,
    ) -> Replay {
        let mut r = Replay::new(queue, role, role_is_superuser);
        r.copy = Some(CopyTask {
            nr,
            table,
            caught_up: false,
            asked: false,
        });
        r
    }

    /// One round; errors are recorded here and turned into a backoff.
    pub fn round(&mut self) -> Round {
        self.pos = Position::default();
        let r = if self.copy.is_some() {
            self.copy_round()
        } else {
            self.try_round()
        };
        match r {
            Ok(r) => {
                self.failures = 0;
                self.last_failed = false;
                r
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                self.last_failed = true;
                self.fail(&e);
                Round::Idle(Duration::from_micros(rules::retry_delay_after(
                    self.failures,
                    e.sqlstate(),
                ) as u64))
            }
        }
    }

    /// Wait for the provider's tick notification (or the latch, or `timeout`). Without
    /// a provider connection (a backoff after an error) the whole `timeout` is waited,
    /// unless an operator asks for a retry (pgq_cascade.skip_replay_error); a SIGHUP
    /// meanwhile is handled and the wait goes on.
    pub fn wait(&mut self, timeout: Duration) {
        if let Some((_, conn)) = self.provider.as_mut() {
            if conn.wait_notifications(timeout).is_err() {
                self.provider = None;
            }
            return;
        }
        let deadline = shmem::now() + timeout.as_micros() as i64;
        loop {
            let left = deadline - shmem::now();
            if left <= 0 {
                return;
            }
            w::wait_latch((left / 1000).max(1));
            if pgrx::bgworkers::BackgroundWorker::sighup_received() {
                crate::bgworker::reload_config();
                w::pin_session();
            }
            let mut woken = false;
            w::with_slot(|s| woken = std::mem::take(&mut s.wake_requested));
            if woken || !crate::gucs::ENABLED.get() || !crate::gucs::REPLAY.get() {
                return;
            }
        }
    }

    fn fail(&mut self, e: &StepError) {
        // an error may leave the provider connection in any state (a transaction
        // open, a COPY half read): the next round starts with a new one
        self.provider = None;
        let q = self.queue.clone();
        let mut pos = self.pos.clone();
        let current = CURRENT_EVENT.with(|c| std::mem::take(&mut *c.borrow_mut()));
        if pos.ev_id.is_none() && current.ev_id.is_some() {
            pos.ev_id = current.ev_id;
            pos.ev_txid = current.ev_txid;
            pos.table = current.table;
        }
        // the reason a remote failure gives (libpq's text) is in DETAIL
        let mut msg = match &e.detail {
            Some(d) if !d.is_empty() => format!("{}: {d}", e.message),
            _ => e.message.clone(),
        };
        if let (Some(ev), Some(tx)) = (pos.ev_id, pos.ev_txid) {
            if !msg.starts_with("[ev_id=") {
                msg = format!("[ev_id={ev},ev_txid={tx}] {msg}");
            }
        }
        let code = e.sqlstate().to_string();
        let mut shown = e.clone();
        shown.message = msg.clone();
        let copy_table = self.copy.as_ref().map(|t| t.table.clone());
        let what = match &copy_table {
            Some(t) => format!("copy of table {t} (queue \"{q}\")"),
            None => format!("replay of queue \"{q}\""),
        };
        w::record_error(&what, &shown);
        let r = in_txn("record replay error", || {
            Spi::connect_mut(|c| -> Result<(), PgqError> {
                let worker = crate::db::select(c,
                        "select worker_name::text from pgq_node.node_info where queue_name operator(pg_catalog.=) $1",
                        Some(1),
                        &[q.as_str().into()],
                    )
                    .ctx("reading the node's worker")?;
                let Some(mut worker) = worker.first().get::<String>(1).ctx("reading the node's worker")? else {
                    return Ok(());
                };
                if let Some(t) = &copy_table {
                    worker = rules::copy_consumer(&worker, t);
                }
                crate::db::update(c,
                    "select ret_code from pgq_node.set_consumer_error($1, $2, $3)",
                    Some(1),
                    &[q.as_str().into(), worker.as_str().into(), msg.as_str().into()],
                )
                .ctx("recording the error in pgq_node.local_state")?;
                record_history(c, &q, &worker, &pos, &code, &msg)
            })
        })
        .and_then(|r| r);
        if let Err(e2) = r {
            w::record_error("record replay error", &e2);
        }
    }

    fn try_round(&mut self) -> Result<Round, StepError> {
        let node = match in_txn("read consumer state", || self.read_state()).and_then(|r| r)? {
            Some(n) => n,
            None => {
                return Ok(Round::Stop(format!(
                    "queue \"{}\" has no cascaded node here any more",
                    self.queue
                )))
            }
        };
        if !node.replay_here {
            return Ok(Round::Stop(format!(
                "in-server replay of queue \"{}\" was turned off or now acts as another role",
                self.queue
            )));
        }
        if !matches!(node.node_type, NodeType::Branch | NodeType::Leaf) {
            return Ok(Round::Stop(format!(
                "node \"{}\" is a {} now: nothing to replay",
                node.node_name,
                node.node_type.as_str()
            )));
        }
        let duties = rules::duties(
            node.node_type,
            node.combined_queue.as_deref(),
            node.combined_type,
        )
        .map_err(|m| {
            StepError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("node \"{}\": {m}", node.node_name),
            )
        })?;
        w::with_slot(|s| s.set_provider(node.provider_node.as_deref().unwrap_or("")));
        // a compare holding the replay at a tick (src/replay/compare.rs): standing
        // there, nothing that writes tables runs (no batch, no copy)
        if self.hold_step(&node) == HoldStep::Stand {
            return Ok(Round::Idle(HOLD_IDLE));
        }
        if node.paused {
            return Ok(Round::Idle(Duration::from_secs(1)));
        }
        let location = node.provider_location.clone().ok_or_else(|| {
            StepError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("node \"{}\" has no provider location", node.node_name),
            )
        })?;
        self.ensure_provider(
            node.provider_node.as_deref().unwrap_or("provider"),
            &location,
        )?;
        if duties.wait_behind {
            return self.behind_round(&node);
        }
        self.start_copies(&node)?;
        let batch = self.next_batch(&node.worker)?;
        let Some(batch) = batch else {
            self.copy_check = true;
            // idle: now and then, look for parked foreign keys that may go back
            if shmem::now() - self.last_housekeeping >= HOUSEKEEPING_PERIOD {
                self.restore_fkeys = true;
            }
            return Ok(Round::Idle(Duration::from_millis(
                crate::gucs::REPLAY_IDLE_WAIT_MS.get() as u64,
            )));
        };
        if !self.batch_within_hold(&batch) {
            return Ok(Round::Idle(HOLD_IDLE));
        }
        self.pos.batch_id = Some(batch.id);
        self.pos.tick_id = Some(batch.cur_tick);
        let worker = node.worker.clone();
        MOVED_PARTS.with(|m| m.borrow_mut().clear());
        let applied = in_txn("apply batch", || {
            match self.apply_batch(&worker, &node, &duties, &batch) {
                Ok(v) => v,
                Err(e) => e.report(),
            }
        })?;
        // the merge leaves whose positions this batch moved go on at once
        for part in MOVED_PARTS.with(|m| std::mem::take(&mut *m.borrow_mut())) {
            crate::bgworker::wake_replay(&part);
        }
        if let Applied::SyncWait = applied {
            // a copy worker takes its table up to this batch's tick; it wakes us when
            // it hands the table over; then the table's parked foreign keys may go
            // back, and the next waiting table may start
            self.restore_fkeys = true;
            self.copy_check = true;
            crate::bgworker::wake_copies();
            w::report(Some("waiting for a copy worker's hand-off"));
            return Ok(Round::Idle(Duration::from_secs(1)));
        }
        if duties.create_tick {
            let need_tick = match applied {
                Applied::Events(_) => true,
                Applied::AlreadyDone => self.branch_tick_missing(&batch)?,
                Applied::SyncWait => false,
            };
            if need_tick {
                self.make_tick(&batch)?;
            }
        }
        self.finish_batch(&batch)?;
        let now = note_batch(&batch, &applied);
        if now - self.last_watermark >= watermark_period() {
            self.publish_watermark(&node, &batch)?;
            self.last_watermark = now;
        }
        Ok(Round::Busy)
    }

    /// A merge leaf under a combined branch: its data arrives through the combined
    /// queue, so it applies nothing. The combined branch's replay moves this worker's
    /// position with each `pgq.tick-id` it replays (and wakes this worker); a batch
    /// the position has reached is only finished on the provider, so that the leaf
    /// stands where the combined root's leaf stands and the branch can take over.
    fn behind_round(&mut self, node: &NodeState) -> Result<Round, StepError> {
        self.was_behind = true;
        let Some(batch) = self.next_batch(&node.worker)? else {
            return Ok(Round::Idle(Duration::from_millis(
                crate::gucs::REPLAY_IDLE_WAIT_MS.get() as u64,
            )));
        };
        let now = shmem::now();
        if now - self.last_watermark >= watermark_period() {
            self.publish_watermark(node, &batch)?;
            self.last_watermark = now;
        }
        if !rules::behind_done(node.position, batch.cur_tick) {
            w::report(Some(&format!(
                "waiting behind the combined branch: at tick {}, batch ends at tick {}",
                node.position
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "NULL".into()),
                batch.cur_tick
            )));
            return Ok(Round::Idle(Duration::from_millis(
                crate::gucs::REPLAY_IDLE_WAIT_MS.get() as u64,
            )));
        }
        self.finish_batch(&batch)?;
        note_batch(&batch, &Applied::AlreadyDone);
        Ok(Round::Busy)
    }

    /// The hold a compare put on this worker, if any: stand still at its tick, report
    /// that the worker is past it or paused short of it, or go on. A hold whose
    /// backend is gone is dropped here.
    fn hold_step(&mut self, node: &NodeState) -> HoldStep {
        let mut step = HoldStep::Proceed;
        let mut wake = 0;
        let mut gone = None;
        let mut held_at = None;
        w::with_slot(|s| {
            if s.hold_tick <= 0 {
                return;
            }
            if !shmem::alive(s.hold_pid) {
                gone = Some((s.hold_pid, s.hold_tick));
                s.clear_hold();
                return;
            }
            step = hold::hold_step(s.hold_tick, node.position, node.paused);
            let state = match step {
                HoldStep::Proceed => return,
                HoldStep::Stand => {
                    held_at = Some((s.hold_tick, s.hold_pid));
                    HoldState::Held
                }
                HoldStep::Report(st) => st,
            };
            let pos = node.position.unwrap_or(0);
            if s.hold_state != state || s.hold_position != pos {
                s.hold_state = state;
                s.hold_position = pos;
                wake = s.hold_pid;
            }
        });
        shmem::wake(wake);
        if let Some((pid, tick)) = gone {
            log!(
                "pgq replay: queue \"{}\": the compare holding tick {tick} (pid {pid}) is gone; replay goes on",
                self.queue
            );
        }
        match (held_at, self.held) {
            (Some((tick, pid)), None) => {
                self.held = Some((tick, shmem::now()));
                w::report(Some(&format!(
                    "held at tick {tick} by a compare (pid {pid})"
                )));
            }
            (Some((tick, _)), Some((was, _))) if tick != was => {
                self.held = Some((tick, shmem::now()));
            }
            (None, Some((tick, since))) => {
                self.held = None;
                log!(
                    "pgq replay: queue \"{}\": stood at tick {tick} for {} ms for a compare",
                    self.queue,
                    (shmem::now() - since) / 1000
                );
            }
            _ => {}
        }
        step
    }

    /// Whether `batch` may be applied under the hold (if any); if not, the compare is
    /// told (the provider has no tick equal to the hold tick after our position).
    fn batch_within_hold(&self, batch: &Batch) -> bool {
        let mut ok = true;
        let mut wake = 0;
        w::with_slot(|s| {
            if hold::batch_allowed(s.hold_tick, batch.cur_tick) {
                return;
            }
            ok = false;
            if s.hold_state != HoldState::Beyond {
                s.hold_state = HoldState::Beyond;
                s.hold_position = batch.prev_tick;
                wake = s.hold_pid;
            }
        });
        shmem::wake(wake);
        ok
    }

    fn read_state(&mut self) -> Result<Option<NodeState>, PgqError> {
        let q = self.queue.as_str();
        let last_failed = self.last_failed;
        let role = self.role.clone();
        Spi::connect_mut(|c| {
            let replay_here = !crate::db::select(
                c,
                "select 1 from pgq_cascade.node_replay \
                      where queue_name operator(pg_catalog.=) $1 and in_server \
                        and replay_role operator(pg_catalog.=) $2::name",
                Some(1),
                &[q.into(), role.as_str().into()],
            )
            .ctx("reading pgq_cascade.node_replay")?
            .is_empty();
            let t = crate::db::update(
                c,
                "select ret_code, node_type::text, node_name::text, worker_name::text, \
                            combined_queue::text, local_watermark, global_watermark, \
                            node_attrs::text, combined_type::text \
                       from pgq_node.get_node_info($1)",
                Some(1),
                &[q.into()],
            )
            .ctx("reading pgq_node.get_node_info")?;
            let r = t.first();
            let code = r
                .get::<i32>(1)
                .ctx("reading pgq_node.get_node_info")?
                .unwrap_or(0);
            let ntype = r.get::<String>(2).ctx("reading pgq_node.get_node_info")?;
            let (Some(ntype), true) = (ntype, code < 300) else {
                return Ok(None);
            };
            let Some(node_type) = NodeType::parse(&ntype) else {
                return Ok(None);
            };
            let node_name = r
                .get::<String>(3)
                .ctx("reading node info")?
                .unwrap_or_default();
            let Some(worker) = r.get::<String>(4).ctx("reading node info")? else {
                return Ok(None);
            };
            let combined_queue = r.get::<String>(5).ctx("reading node info")?;
            let local_watermark = r.get::<i64>(6).ctx("reading node info")?;
            let global_watermark = r.get::<i64>(7).ctx("reading node info")?;
            let node_attrs = r.get::<String>(8).ctx("reading node info")?;
            let combined_type = r
                .get::<String>(9)
                .ctx("reading node info")?
                .and_then(|t| NodeType::parse(&t));
            let sync_watermark =
                rules::sync_watermark_nodes(node_attrs.as_deref()).map_err(|m| {
                    PgqError::new(
                        SqlState::DATA_EXCEPTION,
                        format!("node \"{node_name}\": {m}"),
                    )
                })?;
            if node_type == NodeType::Root {
                return Ok(Some(NodeState {
                    node_type,
                    node_name,
                    worker,
                    combined_queue,
                    combined_type,
                    local_watermark,
                    global_watermark,
                    sync_watermark,
                    provider_node: None,
                    provider_location: None,
                    paused: false,
                    uptodate: true,
                    cur_error: None,
                    replay_here,
                    position: None,
                }));
            }
            let t = crate::db::update(
                c,
                "select ret_code, provider_node::text, provider_location::text, paused, \
                            uptodate, cur_error::text, completed_tick \
                       from pgq_node.get_consumer_state($1, $2)",
                Some(1),
                &[q.into(), worker.as_str().into()],
            )
            .ctx("reading pgq_node.get_consumer_state")?;
            let r = t.first();
            let code = r.get::<i32>(1).ctx("reading consumer state")?.unwrap_or(0);
            if code >= 300 {
                return Err(PgqError::new(
                    SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!(
                        "consumer \"{worker}\" of queue \"{q}\" is not registered on this node"
                    ),
                ));
            }
            let node = NodeState {
                node_type,
                node_name,
                worker,
                combined_queue,
                combined_type,
                local_watermark,
                global_watermark,
                sync_watermark,
                provider_node: r.get::<String>(2).ctx("reading consumer state")?,
                provider_location: r.get::<String>(3).ctx("reading consumer state")?,
                paused: r
                    .get::<bool>(4)
                    .ctx("reading consumer state")?
                    .unwrap_or(false),
                uptodate: r
                    .get::<bool>(5)
                    .ctx("reading consumer state")?
                    .unwrap_or(false),
                cur_error: r.get::<String>(6).ctx("reading consumer state")?,
                replay_here,
                position: r.get::<i64>(7).ctx("reading consumer state")?,
            };
            // the acknowledgement admin tools wait for (pause, change-provider, ...)
            if !node.uptodate {
                crate::db::update(
                    c,
                    "select ret_code from pgq_node.set_consumer_uptodate($1, $2, true)",
                    Some(1),
                    &[q.into(), node.worker.as_str().into()],
                )
                .ctx("acknowledging uptodate")?;
            }
            if node.cur_error.is_some() && !last_failed {
                crate::db::update(
                    c,
                    "select ret_code from pgq_node.set_consumer_error($1, $2, NULL)",
                    Some(1),
                    &[q.into(), node.worker.as_str().into()],
                )
                .ctx("clearing cur_error")?;
            }
            Ok(Some(node))
        })
    }

    fn ensure_provider(&mut self, node_name: &str, location: &str) -> Result<(), StepError> {
        if let Some((loc, conn)) = &self.provider {
            if loc == location && conn.is_open() {
                return Ok(());
            }
        }
        self.provider = None;
        let purpose = match self.copy {
            Some(_) => format!("copy {}", self.queue),
            None => format!("replay {}", self.queue),
        };
        let opts = ConnectOptions::new(location, &purpose)
            .node(node_name)
            .superuser(self.role_is_superuser);
        let mut conn = Connection::connect(&opts).map_err(rerr)?;
        // tick notifications of the queue wake the worker (pgq.notify on the provider)
        conn.exec(
            &format!(
                "LISTEN {}",
                quote::ident(&format!("pgq_{}", self.queue), false)
            ),
            &[],
        )
        .map_err(rerr)?;
        self.provider = Some((location.to_string(), conn));
        Ok(())
    }

    fn conn(&mut self) -> Result<&mut Connection, StepError> {
        match self.provider.as_mut() {
            Some((_, c)) => Ok(c),
            None => Err(StepError::new(
                SqlState::CONNECTION_DOES_NOT_EXIST,
                "no connection to the provider",
            )),
        }
    }

    fn next_batch(&mut self, worker: &str) -> Result<Option<Batch>, StepError> {
        let q = self.queue.clone();
        let conn = self.conn()?;
        let r = conn
            .exec(
                "select batch_id, cur_tick_id, prev_tick_id, \
                        (extract(epoch from cur_tick_time) * 1000000)::int8, cur_tick_event_seq \
                   from pgq.next_batch_custom($1, $2, NULL, NULL, NULL)",
                &[Some(&q), Some(worker)],
            )
            .map_err(rerr)?;
        let Some(id) = r.get::<i64>(0, 0).map_err(rerr)? else {
            return Ok(None);
        };
        let need = |v: Option<i64>, what: &str| {
            v.ok_or_else(|| {
                StepError::new(
                    SqlState::DATA_EXCEPTION,
                    format!("pgq.next_batch_custom returned batch {id} without {what}"),
                )
            })
        };
        let unix = need(r.get::<i64>(0, 3).map_err(rerr)?, "cur_tick_time")?;
        Ok(Some(Batch {
            id,
            cur_tick: need(r.get::<i64>(0, 1).map_err(rerr)?, "cur_tick_id")?,
            prev_tick: need(r.get::<i64>(0, 2).map_err(rerr)?, "prev_tick_id")?,
            // Unix epoch → PostgreSQL epoch (2000-01-01)
            cur_tick_time: unix - 946_684_800 * SEC,
            cur_tick_seq: r.get::<i64>(0, 4).map_err(rerr)?.unwrap_or(0),
        }))
    }

    /// Apply `batch` as `worker` (the node's worker, or in a copy worker its table's
    /// copy consumer), in the caller's transaction.
    fn apply_batch(
        &mut self,
        worker: &str,
        node: &NodeState,
        duties: &Duties,
        batch: &Batch,
    ) -> Result<Applied, PgqError> {
        let q = self.queue.clone();
        let worker = worker.to_string();
        let copy_of = self.copy.as_ref().map(|t| t.table.clone());
        // the worker's row, locked: a second consumer of the same position waits here,
        // and one that completed the batch meanwhile is seen
        let completed = Spi::connect_mut(|c| {
            let t = crate::db::update(
                c,
                "select last_tick_id from pgq_node.local_state \
                      where queue_name operator(pg_catalog.=) $1 \
                        and consumer_name operator(pg_catalog.=) $2 for update",
                Some(1),
                &[q.as_str().into(), worker.as_str().into()],
            )
            .ctx("locking the worker's local_state row")?;
            if t.is_empty() {
                return Ok::<_, PgqError>(None);
            }
            t.first().get::<i64>(1).ctx("reading last_tick_id")
        })?;
        // a merge leaf that waited behind a combined branch, the combined node a root
        // now: the batches its position already passed were applied through the
        // combined queue
        if self.was_behind && copy_of.is_none() {
            if completed.is_some_and(|c| batch.cur_tick <= c) {
                return Ok(Applied::AlreadyDone);
            }
            self.was_behind = false;
        }
        match rules::batch_verdict(batch.prev_tick, batch.cur_tick, completed) {
            BatchVerdict::Apply => {}
            BatchVerdict::AlreadyDone => return Ok(Applied::AlreadyDone),
            BatchVerdict::Lost(m) => {
                return Err(PgqError::new(SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE, m))
            }
        }
        replica_role()?;
        let mut tables = Tables::load(&q)?;
        tables.copy_of = copy_of.clone();
        if copy_of.is_none() {
            self.copy_check |= tables
                .by_name
                .values()
                .any(|t| t.local && t.state.is_none());
            // a copy worker's hand-off (docs/replication.md, "Initial copy")
            let states = tables
                .by_name
                .iter()
                .filter(|(_, t)| t.local)
                .map(|(n, t)| (n.as_str(), t.state.as_deref()));
            match rules::hand_off(states, batch.cur_tick) {
                HandOff::Apply => {}
                HandOff::Wait => return Ok(Applied::SyncWait),
                HandOff::DoSync(list) => {
                    let to = format!("do-sync:{}", batch.cur_tick);
                    for (table, from) in list {
                        set_table_state_if(&q, &table, &from, &to)?;
                        log!(
                            "pgq replay: queue \"{q}\": table {table} ({from}) syncs at tick {}",
                            batch.cur_tick
                        );
                    }
                    return Ok(Applied::SyncWait);
                }
            }
        }
        // what an operator asked to skip in this batch (pgq_cascade.skip_replay_error)
        let (skip_events, skip_batch) = Spi::connect(|c| {
            let t = crate::db::select(c,
                    "select ev_id from pgq_cascade.replay_error \
                      where queue_name operator(pg_catalog.=) $1 and skipped \
                        and batch_id operator(pg_catalog.=) $2 and tick_id operator(pg_catalog.=) $3 \
                        and consumer_name operator(pg_catalog.=) $4",
                    None,
                    &[
                        q.as_str().into(),
                        batch.id.into(),
                        batch.cur_tick.into(),
                        worker.as_str().into(),
                    ],
                )
                .ctx("reading skip requests")?;
            let mut evs = std::collections::HashSet::new();
            let mut whole = false;
            for r in t {
                match crate::db::get::<i64>(&r, 1, "reading skip requests")? {
                    Some(e) => {
                        evs.insert(e);
                    }
                    None => whole = true,
                }
            }
            Ok::<_, PgqError>((evs, whole))
        })?;
        // a copy worker applies its table's changes and copies nothing
        let copy_to = if copy_of.is_none() {
            duties.copy_to.clone()
        } else {
            CopyTo::Nowhere
        };
        let mut count = 0i64;
        let bid = batch.id.to_string();
        let conn = self.conn()?;
        let mut stream = conn
            .query_stream(
                "select ev_id, (extract(epoch from ev_time) * 1000000)::int8, ev_txid, ev_retry, \
                        ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4 \
                   from pgq.get_batch_events($1::int8)",
                &[Some(&bid)],
            )
            .map_err(rerr)?;
        CURRENT_EVENT.with(|c| *c.borrow_mut() = Position::default());
        let mut pos = Position {
            batch_id: Some(batch.id),
            tick_id: Some(batch.cur_tick),
            ..Position::default()
        };
        // one SPI connection for the batch: the applier's kept plans run in it
        let result = Spi::connect_mut(|_spi| -> Result<(), PgqError> {
            while let Some(row) = stream.next_row().map_err(rerr)? {
                let ev = Event::from_row(&row)?;
                pos.ev_id = Some(ev.id);
                pos.ev_txid = Some(ev.txid);
                CURRENT_EVENT.with(|c| {
                    let mut c = c.borrow_mut();
                    c.ev_id = Some(ev.id);
                    c.ev_txid = Some(ev.txid);
                    c.table = ev.extra[0]
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned());
                });
                pos.table = ev.extra[0]
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned());

                if copy_of.is_some()
                    && !matches!(
                        plan::classify(&ev.ev_type),
                        EventKind::Data | EventKind::Truncate
                    )
                {
                    // a copy worker applies only its table's row changes
                } else if skip_batch || skip_events.contains(&ev.id) {
                    log!(
                        "pgq replay: queue \"{q}\": event {} of batch {} skipped as asked",
                        ev.id,
                        batch.id
                    );
                } else {
                    apply_event(&q, node, duties, &mut tables, &ev).map_err(|e| prefix(e, &ev))?;
                }
                match &copy_to {
                    CopyTo::Nowhere => {}
                    CopyTo::OwnQueue => copy_event(&q, node, &ev).map_err(|e| prefix(e, &ev))?,
                    CopyTo::Combined(cq) => {
                        if rules::goes_to_combined(&ev.ev_type) {
                            merge_event(cq, &ev).map_err(|e| prefix(e, &ev))?
                        }
                    }
                }
                count += 1;
            }
            Ok(())
        });
        drop(stream);
        if let Err(e) = result {
            self.pos = pos;
            return Err(e);
        }
        self.pos = pos;
        CURRENT_EVENT.with(|c| *c.borrow_mut() = Position::default());
        // copy snapshots no later batch can need any more are dropped (by the replay
        // worker, once the table is its own)
        let has_snapshot = |t: &TableInfo| {
            t.snapshot.is_some() && matches!(t.state.as_deref(), Some("ok") | Some("?"))
        };
        if copy_of.is_none() && tables.by_name.values().any(has_snapshot) {
            let cur = self.tick_snapshot(batch.cur_tick)?;
            for (name, t) in &tables.by_name {
                if has_snapshot(t) && t.snapshot.as_ref().is_some_and(|s| s.xmax <= cur.xmin) {
                    set_table_state(&q, name, None, Some("ok"))?;
                    self.restore_fkeys = true;
                }
            }
        }
        // the combined queue's readers learn which part tick the merged events end
        if let (CopyTo::Combined(cq), true) = (&copy_to, duties.send_tick_event) {
            merge_tick_event(cq, &q, batch.cur_tick)?;
        }
        Spi::connect_mut(|c| {
            call_ret(
                c,
                "pgq_node.set_consumer_completed",
                "select ret_code, ret_note from pgq_node.set_consumer_completed($1, $2, $3)",
                &[
                    q.as_str().into(),
                    worker.as_str().into(),
                    batch.cur_tick.into(),
                ],
            )
        })?;
        Ok(Applied::Events(count))
    }

    /// After a crash between a branch's batch commit and its tick: is the tick missing?
    fn branch_tick_missing(&mut self, batch: &Batch) -> Result<bool, StepError> {
        let q = self.queue.clone();
        let last = in_txn("check branch tick", || {
            Spi::connect(|c| {
                crate::db::select(
                    c,
                    "select t.tick_id from pgq.tick t join pgq.queue q \
                       on q.queue_id operator(pg_catalog.=) t.tick_queue \
                      where q.queue_name operator(pg_catalog.=) $1 \
                      order by t.tick_queue desc, t.tick_id desc limit 1",
                    Some(1),
                    &[q.as_str().into()],
                )
                .and_then(|t| {
                    if t.is_empty() {
                        Ok(None)
                    } else {
                        t.first().get::<i64>(1)
                    }
                })
                .ctx("reading the branch's last tick")
            })
        })
        .and_then(|r| r)?;
        match rules::branch_tick(last, batch.prev_tick, batch.cur_tick) {
            BranchTick::Present => Ok(false),
            BranchTick::Missing => Ok(true),
            BranchTick::Wrong(m) => Err(StepError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                m,
            )),
        }
    }

    fn make_tick(&mut self, batch: &Batch) -> Result<(), StepError> {
        let q = self.queue.clone();
        let b = *batch;
        in_txn("branch tick", || {
            Spi::connect_mut(|c| {
                let ts = TimestampWithTimeZone::try_from(b.cur_tick_time).map_err(|_| {
                    PgqError::new(
                        SqlState::DATA_EXCEPTION,
                        format!("bad tick time {}", b.cur_tick_time),
                    )
                })?;
                crate::db::update(
                    c,
                    "select pgq.ticker($1, $2, $3, $4)",
                    Some(1),
                    &[
                        q.as_str().into(),
                        b.cur_tick.into(),
                        ts.into(),
                        b.cur_tick_seq.into(),
                    ],
                )
                .ctx("creating the branch tick")?;
                // wake the nodes below, as the ticker does for its own ticks
                let channel = format!("pgq_{q}");
                if crate::gucs::NOTIFY.get() && channel.len() < 64 {
                    crate::db::update(
                        c,
                        "select pg_catalog.pg_notify($1, $2)",
                        Some(1),
                        &[
                            channel.as_str().into(),
                            b.cur_tick.to_string().as_str().into(),
                        ],
                    )
                    .ctx("notifying the branch tick")?;
                }
                Ok::<_, PgqError>(())
            })
        })
        .and_then(|r| r)
    }

    /// The snapshot of a provider tick.
    fn tick_snapshot(&mut self, tick: i64) -> Result<Snapshot, PgqError> {
        let q = self.queue.clone();
        let t = tick.to_string();
        let r = self
            .conn()?
            .exec(
                "select t.tick_snapshot::text from pgq.tick t join pgq.queue q \
                   on q.queue_id operator(pg_catalog.=) t.tick_queue \
                  where q.queue_name operator(pg_catalog.=) $1 \
                    and t.tick_id operator(pg_catalog.=) $2::int8",
                &[Some(&q), Some(&t)],
            )
            .map_err(rerr)?;
        let text = r.get::<String>(0, 0).map_err(rerr)?.ok_or_else(|| {
            PgqError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("tick {tick} of queue {q} is gone from the provider"),
            )
        })?;
        Snapshot::parse(&text).map_err(|e| PgqError::new(SqlState::DATA_EXCEPTION, e.to_string()))
    }

    /// Start the initial copy of tables that wait for it (state NULL): up to
    /// `pgq.max_parallel_copies` tables of the node are `in-copy` or later at once,
    /// each copied by a copy worker the manager starts for it. A table is started once
    /// the provider has it complete (`ok`, no copy snapshot of its own), or at once
    /// with a `copy_node` attribute (the copy worker then waits for its source).
    /// Copy consumers left over by finished or abandoned copies go first.
    fn start_copies(&mut self, node: &NodeState) -> Result<(), StepError> {
        // housekeeping never fails the round (a foreign key that cannot go back, a
        // copy source that is down): it is logged and tried again later
        if std::mem::take(&mut self.restore_fkeys) {
            self.last_housekeeping = shmem::now();
            if let Err(e) = self.restore_pending_fkeys() {
                w::record_error("restoring parked foreign keys", &e);
            }
        }
        if !std::mem::replace(&mut self.copy_check, false) {
            return Ok(());
        }
        let q = self.queue.clone();
        let tables = in_txn("read table states", || Tables::load(&q)).and_then(|r| r)?;
        if shmem::now() - self.last_cleanup >= HOUSEKEEPING_PERIOD {
            self.last_cleanup = shmem::now();
            if let Err(e) = self.drop_stale_copy_consumers(node, &tables) {
                w::record_error("dropping stale copy consumers", &e);
            }
        }
        let mut active = tables
            .by_name
            .values()
            .filter(|t| {
                t.local
                    && CopyPhase::parse(t.state.as_deref())
                        .map(CopyPhase::copying)
                        .unwrap_or(false)
            })
            .count();
        let max = crate::gucs::MAX_PARALLEL_COPIES.get().max(1) as usize;
        let mut waiting: Vec<(String, bool)> = tables
            .by_name
            .iter()
            .filter(|(_, t)| t.local && t.state.is_none())
            .map(|(n, t)| (n.clone(), copy_node_attr(t.attrs.as_deref()).is_some()))
            .collect();
        waiting.sort();
        let mut started = false;
        let mut not_ready = false;
        for (table, own_source) in waiting {
            if active >= max {
                // more tables wait: look again when a copy is handed over
                self.copy_check = true;
                break;
            }
            if !own_source {
                // the provider is asked at most once a second (not at every batch)
                if shmem::now() < self.next_copy_probe {
                    continue;
                }
                if !self.provider_has_complete(&table)? {
                    not_ready = true;
                    continue;
                }
            }
            let moved = in_txn("mark table in-copy", || {
                Spi::connect_mut(|c| {
                    crate::db::update(
                        c,
                        "update londiste.table_info set merge_state = 'in-copy' \
                          where queue_name operator(pg_catalog.=) $1 \
                            and table_name operator(pg_catalog.=) $2 and local \
                            and merge_state is null returning 1",
                        Some(1),
                        &[q.as_str().into(), table.as_str().into()],
                    )
                    .map(|t| !t.is_empty())
                    .ctx("setting a table in-copy")
                })
            })
            .and_then(|r| r)?;
            if moved {
                active += 1;
                log!(
                    "pgq replay: node \"{}\": table {table} goes to a copy worker ({active} of at most {max} copies)",
                    node.node_name
                );
                started = true;
            }
        }
        if not_ready {
            self.next_copy_probe = shmem::now() + SEC;
        }
        if started {
            crate::bgworker::request_supervision();
        }
        Ok(())
    }

    /// Whether the provider holds `table` complete: its copy there is done and its own
    /// copy snapshot gone, so every event it skipped for that copy (and still passed
    /// on, with its own txid) committed before a copy taken now; and on a combined
    /// root, the merge leaves that feed the table there have copied their parts too
    /// (their copies put no events into the combined queue).
    fn provider_has_complete(&mut self, table: &str) -> Result<bool, StepError> {
        let q = self.queue.clone();
        let ready = self
            .conn()?
            .exec(
                "select l.merge_state::text from londiste.get_table_list($1) l \
                  where l.table_name operator(pg_catalog.=) $2 and l.local \
                    and l.custom_snapshot is null \
                    and not exists ( \
                        select from londiste.table_info p \
                          join pgq_node.node_info n \
                            on n.queue_name operator(pg_catalog.=) p.queue_name \
                         where n.combined_queue operator(pg_catalog.=) $1 and p.local \
                           and coalesce(p.dest_table, p.table_name) \
                               operator(pg_catalog.=) coalesce(l.dest_table, l.table_name) \
                           and p.merge_state is distinct from 'ok')",
                &[Some(&q), Some(table)],
            )
            .map_err(rerr)?;
        let state = if ready.ntuples() > 0 {
            ready.get::<String>(0, 0).map_err(rerr)?
        } else {
            None
        };
        Ok(matches!(state.as_deref(), Some("ok") | Some("?")))
    }

    /// Unregister the copy consumers (`<worker>.copy.<table>`) of tables no copy worker
    /// works on any more: a copy handed over (a crash may have kept its consumer), a
    /// table resynced or removed meanwhile. Here first, in a transaction that finds the
    /// table out of its copy states under a row lock (a copy worker moves it on only
    /// with its consumer's row locked), then on the consumer's source. Consumers left
    /// on the provider with no row here (a crash between the two) go too.
    fn drop_stale_copy_consumers(
        &mut self,
        node: &NodeState,
        tables: &Tables,
    ) -> Result<(), StepError> {
        let q = self.queue.clone();
        let worker = node.worker.clone();
        let prefix = rules::copy_consumer(&worker, "");
        let copying = |t: Option<&TableInfo>| {
            t.is_some_and(|t| {
                t.local
                    && CopyPhase::parse(t.state.as_deref())
                        .map(CopyPhase::copying)
                        .unwrap_or(true)
            })
        };
        // here: rows whose table is out of its copy states, deleted under the lock
        let dropped = in_txn("drop stale copy consumers", || {
            Spi::connect_mut(|c| {
                let t = crate::db::update(
                    c,
                    "delete from pgq_node.local_state s \
                          using (select s2.consumer_name from pgq_node.local_state s2 \
                                  where s2.queue_name operator(pg_catalog.=) $1 \
                                    and pg_catalog.starts_with(s2.consumer_name, $2) \
                                    and not exists (select 1 from londiste.table_info t \
                                          where t.queue_name operator(pg_catalog.=) $1 and t.local \
                                            and $2 operator(pg_catalog.||) t.table_name \
                                                operator(pg_catalog.=) s2.consumer_name \
                                            and (t.merge_state in ('in-copy', 'catching-up') \
                                                 or t.merge_state like 'wanna-sync:%' \
                                                 or t.merge_state like 'do-sync:%')) \
                                  for update of s2) d \
                          where s.queue_name operator(pg_catalog.=) $1 \
                            and s.consumer_name operator(pg_catalog.=) d.consumer_name \
                         returning s.consumer_name::text, \
                                   (select l.node_location::text from pgq_node.node_location l \
                                     where l.queue_name operator(pg_catalog.=) $1 \
                                       and l.node_name operator(pg_catalog.=) s.provider_node)",
                    None,
                    &[q.as_str().into(), prefix.as_str().into()],
                )
                .ctx("dropping stale copy consumers")?;
                let mut v = Vec::new();
                for r in t {
                    v.push((
                        crate::db::req::<String>(&r, 1, "dropping stale copy consumers")?,
                        crate::db::get::<String>(&r, 2, "dropping stale copy consumers")?,
                    ));
                }
                Ok::<_, PgqError>(v)
            })
        })
        .and_then(|r| r)?;
        let provider_loc = self.provider.as_ref().map(|(l, _)| l.clone());
        for (consumer, location) in &dropped {
            let Some(loc) = location else { continue };
            let sql = "select pgq.unregister_consumer($1, $2)";
            if provider_loc.as_deref() == Some(loc.as_str()) {
                self.conn()?
                    .exec(sql, &[Some(&q), Some(consumer)])
                    .map_err(rerr)?;
            } else {
                let purpose = format!("replay {q}");
                let opts = ConnectOptions::new(loc, &purpose)
                    .node("copy source")
                    .superuser(self.role_is_superuser);
                let mut conn = Connection::connect(&opts).map_err(rerr)?;
                conn.exec(sql, &[Some(&q), Some(consumer)]).map_err(rerr)?;
            }
            log!("pgq replay: queue \"{q}\": dropped the copy consumer {consumer}");
        }
        // on the provider: copy consumers of this node with no row here
        let here = in_txn("read copy consumers", || {
            Spi::connect(|c| {
                let t = crate::db::select(
                    c,
                    "select consumer_name::text from pgq_node.local_state \
                          where queue_name operator(pg_catalog.=) $1 \
                            and pg_catalog.starts_with(consumer_name, $2)",
                    None,
                    &[q.as_str().into(), prefix.as_str().into()],
                )
                .ctx("reading copy consumers")?;
                let mut v = Vec::new();
                for r in t {
                    v.push(crate::db::req::<String>(&r, 1, "reading copy consumers")?);
                }
                Ok::<_, PgqError>(v)
            })
        })
        .and_then(|r| r)?;
        let r = self
            .conn()?
            .exec(
                "select consumer_name::text from pgq.get_consumer_info($1) \
                  where pg_catalog.starts_with(consumer_name, $2)",
                &[Some(&q), Some(&prefix)],
            )
            .map_err(rerr)?;
        let mut orphans = Vec::new();
        for i in 0..r.ntuples() {
            if let Some(c) = r.get::<String>(i, 0).map_err(rerr)? {
                let table = rules::copy_consumer_table(&worker, &c).unwrap_or("");
                if !here.contains(&c) && !copying(tables.by_name.get(table)) {
                    orphans.push(c);
                }
            }
        }
        for c in orphans {
            self.conn()?
                .exec(
                    "select pgq.unregister_consumer($1, $2)",
                    &[Some(&q), Some(&c)],
                )
                .map_err(rerr)?;
            log!("pgq replay: queue \"{q}\": dropped the copy consumer {c} left on the provider");
        }
        Ok(())
    }

    /// One round of a copy worker (docs/replication.md, "Initial copy"): register the
    /// table's copy consumer on the copy source, copy the table (`in-copy` →
    /// `catching-up` with the copy snapshot), apply the table's events from the copy
    /// consumer's batches until it has caught up, announce `wanna-sync:T`, and once the
    /// replay worker answers `do-sync:C`, apply up to C and hand the table over (`ok`).
    fn copy_round(&mut self) -> Result<Round, StepError> {
        let (nr, table, caught_up) = match &self.copy {
            Some(t) => (t.nr, t.table.clone(), t.caught_up),
            None => return Ok(Round::Stop("not a copy worker".into())),
        };
        let q = self.queue.clone();
        let role = self.role.clone();
        let view = match in_txn("read copy state", || read_copy_view(&q, &role, nr, &table))
            .and_then(|r| r)?
        {
            Ok(v) => v,
            Err(why) => return Ok(Round::Stop(why)),
        };
        self.pos.table = Some(table.clone());
        let phase = CopyPhase::parse(view.state.as_deref())
            .map_err(|m| StepError::new(SqlState::DATA_EXCEPTION, format!("table {table}: {m}")))?;
        if !phase.copying() {
            return Ok(Round::Stop(format!(
                "table {table} is in state {} now, not copied",
                view.state.as_deref().unwrap_or("NULL")
            )));
        }
        // the copy consumer, registered on the copy source before the copy's snapshot
        // is taken: its position precedes the copy
        let (source, location) = match &view.registered {
            Some((Some(n), Some(l))) => (n.clone(), l.clone()),
            Some((n, _)) => {
                return Err(StepError::new(
                    SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!(
                        "copy source node \"{}\" of table {table} has no location here",
                        n.as_deref().unwrap_or("")
                    ),
                ))
            }
            None if phase != CopyPhase::InCopy => {
                // the consumer whose position the copy relies on is gone (dropped as
                // stale during a resync): registered anew it would start past the
                // copy's snapshot, so the table is copied again
                in_txn("copy the table again", || {
                    Spi::connect_mut(|c| {
                        crate::db::update(c,
                            "update londiste.table_info set merge_state = 'in-copy', custom_snapshot = null \
                              where nr operator(pg_catalog.=) $1 and queue_name operator(pg_catalog.=) $2 \
                                and merge_state is not distinct from $3",
                            Some(1),
                            &[nr.into(), q.as_str().into(), view.state.as_deref().into()],
                        )
                        .map(|_| ())
                        .ctx("setting the table in-copy again")
                    })
                })
                .and_then(|r| r)?;
                log!(
                    "pgq copy: queue \"{q}\": table {table} is {} but its copy consumer is gone: copied again",
                    view.state.as_deref().unwrap_or("NULL")
                );
                return Ok(Round::Busy);
            }
            None => {
                self.register_copy_consumer(&view)?;
                return Ok(Round::Busy);
            }
        };
        w::with_slot(|s| s.set_provider(&source));
        self.ensure_provider(&source, &location)?;
        // several part queues feeding one table of a merge node take turns
        // (docs/replication.md, "Merge leaves")
        let role = view.copy_role.as_deref();
        if phase == CopyPhase::InCopy {
            if role == Some("wait-copy") {
                w::report(Some(&format!(
                    "{table}: waiting for the lead copy of {} (another part queue)",
                    view.dest
                )));
                return Ok(Round::Idle(Duration::from_secs(1)));
            }
            if view.copy_pos >= crate::gucs::MAX_PARALLEL_COPIES.get() {
                w::report(Some(&format!(
                    "{table}: waiting, {} copies of other part queues come first",
                    view.copy_pos
                )));
                return Ok(Round::Idle(Duration::from_secs(1)));
            }
            let mode = match role {
                Some("lead") => CopyMode::Lead,
                Some(_) => CopyMode::Follow,
                None => CopyMode::Whole,
            };
            return self.copy_table_now(&view, &source, mode);
        }
        if phase == CopyPhase::CatchingUp {
            if matches!(role, Some("lead") | Some("wait-replay")) {
                w::report(Some(&format!(
                    "{table}: copied, waiting for the other part queues' copies of {}",
                    view.dest
                )));
                return Ok(Round::Idle(Duration::from_secs(1)));
            }
            if let Some(ddl) = view.dropped_ddl.clone() {
                self.restore_dropped_ddl(&view, &ddl)?;
                return Ok(Round::Busy);
            }
        }
        let Some(batch) = self.next_batch(&view.consumer)? else {
            // caught up at the source's last tick: if the replay worker stands at the
            // same tick, the table is its own from here, with no tick to wait for
            if phase == CopyPhase::CatchingUp
                && view.node.provider_node.as_deref() == Some(source.as_str())
                && self.hand_over_here(&view)?
            {
                return Ok(Round::Stop(format!(
                    "table {table} of queue \"{q}\" is handed to the replay worker at its position"
                )));
            }
            // caught up only at a tick past the copy's snapshot: the announced tick
            // then comes after every transaction the snapshot sees, so the batches
            // the replay worker applies after the hand-over hold none of them and the
            // snapshot can go (docs/replication.md, "Initial copy")
            let past = phase == CopyPhase::CatchingUp && self.past_snapshot(&view)?;
            let ask = match self.copy.as_mut() {
                Some(t) => {
                    if past {
                        t.caught_up = true;
                    }
                    !std::mem::replace(&mut t.asked, true)
                }
                None => false,
            };
            if ask && phase == CopyPhase::CatchingUp {
                // the announcement needs the source's next tick
                self.ask_for_tick();
            }
            return Ok(Round::Idle(Duration::from_millis(
                crate::gucs::REPLAY_IDLE_WAIT_MS.get() as u64,
            )));
        };
        if let Some(t) = self.copy.as_mut() {
            t.caught_up = false;
            t.asked = false;
        }
        self.pos.batch_id = Some(batch.id);
        self.pos.tick_id = Some(batch.cur_tick);
        let step = rules::catch_up(phase, batch.cur_tick, caught_up).map_err(|m| {
            StepError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("table {table}: {m}"),
            )
        })?;
        match step {
            CatchUp::Announce => {
                let to = format!("wanna-sync:{}", batch.cur_tick);
                let done = in_txn("announce the copy caught up", || {
                    set_table_state_if(&q, &table, "catching-up", &to)
                })
                .and_then(|r| r)?;
                if done {
                    crate::bgworker::wake_replay(&q);
                    w::report(Some(&format!(
                        "{table}: {to}, waiting for the replay worker"
                    )));
                }
                Ok(Round::Idle(Duration::from_secs(1)))
            }
            CatchUp::Wait => Ok(Round::Idle(Duration::from_secs(1))),
            CatchUp::HandOver => {
                self.hand_over(&view, &batch)?;
                Ok(Round::Stop(format!(
                    "table {table} of queue \"{q}\" is handed to the replay worker at tick {}",
                    batch.cur_tick
                )))
            }
            CatchUp::Apply => {
                let node = view.node.clone();
                let consumer = view.consumer.clone();
                let applied = in_txn("catch up", || {
                    match self.apply_batch(&consumer, &node, &Duties::apply_only(), &batch) {
                        Ok(v) => v,
                        Err(e) => e.report(),
                    }
                })?;
                self.finish_batch(&batch)?;
                note_batch(&batch, &applied);
                Ok(Round::Busy)
            }
        }
    }

    /// Register the table's copy consumer on its copy source (the provider, or the
    /// node the `copy_node` attribute names; `?`: the nearest node up the cascade that
    /// has the table), then here at the position it got there.
    fn register_copy_consumer(&mut self, view: &CopyView) -> Result<(), StepError> {
        let q = self.queue.clone();
        let (source, location) = self.copy_source(view)?;
        w::with_slot(|s| s.set_provider(&source));
        self.ensure_provider(&source, &location)?;
        let consumer = view.consumer.clone();
        let conn = self.conn()?;
        conn.exec(
            "select pgq.register_consumer($1, $2)",
            &[Some(&q), Some(&consumer)],
        )
        .map_err(rerr)?;
        let r = conn
            .exec(
                "select last_tick from pgq.get_consumer_info($1, $2)",
                &[Some(&q), Some(&consumer)],
            )
            .map_err(rerr)?;
        let tick = if r.ntuples() > 0 {
            r.get::<i64>(0, 0).map_err(rerr)?
        } else {
            None
        }
        .ok_or_else(|| {
            StepError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("copy consumer {consumer} has no position on node \"{source}\""),
            )
        })?;
        in_txn("register the copy consumer", || {
            Spi::connect_mut(|c| {
                call_ret(
                    c,
                    "pgq_node.register_consumer",
                    "select ret_code, ret_note from pgq_node.register_consumer($1, $2, $3, $4)",
                    &[
                        q.as_str().into(),
                        consumer.as_str().into(),
                        source.as_str().into(),
                        tick.into(),
                    ],
                )
            })
        })
        .and_then(|r| r)?;
        log!(
            "pgq copy: queue \"{q}\": copy consumer {consumer} registered on node \"{source}\" at tick {tick}"
        );
        Ok(())
    }

    /// The node a table is copied from, and its location.
    fn copy_source(&mut self, view: &CopyView) -> Result<(String, String), StepError> {
        let q = self.queue.clone();
        let provider = || -> Result<(String, String), StepError> {
            match (&view.node.provider_node, &view.node.provider_location) {
                (Some(n), Some(l)) => Ok((n.clone(), l.clone())),
                _ => Err(StepError::new(
                    SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("node \"{}\" has no provider", view.node.node_name),
                )),
            }
        };
        let Some(wanted) = copy_node_attr(view.attrs.as_deref()) else {
            return provider();
        };
        if wanted != "?" {
            let loc = in_txn("read the copy node's location", || {
                Spi::connect(|c| {
                    crate::db::select(
                        c,
                        "select node_location::text from pgq_node.node_location \
                          where queue_name operator(pg_catalog.=) $1 \
                            and node_name operator(pg_catalog.=) $2 and not dead",
                        Some(1),
                        &[q.as_str().into(), wanted.as_str().into()],
                    )
                    .and_then(|t| {
                        if t.is_empty() {
                            Ok(None)
                        } else {
                            t.first().get::<String>(1)
                        }
                    })
                    .ctx("reading pgq_node.node_location")
                })
            })
            .and_then(|r| r)?
            .ok_or_else(|| {
                StepError::new(
                    SqlState::UNDEFINED_OBJECT,
                    format!(
                        "copy_node \"{wanted}\" of table {} is not a live member of queue \"{q}\"",
                        view.table
                    ),
                )
            })?;
            return Ok((wanted, loc));
        }
        // `?`: walk up from the provider to the first node that has the table
        let (mut name, mut loc) = provider()?;
        for _ in 0..64 {
            let purpose = format!("replay {q}");
            let opts = ConnectOptions::new(&loc, &purpose)
                .node(&name)
                .superuser(self.role_is_superuser);
            let mut conn = Connection::connect(&opts).map_err(rerr)?;
            let has = conn
                .exec(
                    "select 1 from londiste.get_table_list($1) \
                      where table_name operator(pg_catalog.=) $2 and local",
                    &[Some(&q), Some(&view.table)],
                )
                .map_err(rerr)?
                .ntuples()
                > 0;
            if has {
                return Ok((name, loc));
            }
            let up = conn
                .exec(
                    "select provider_node::text, provider_location::text from pgq_node.get_node_info($1)",
                    &[Some(&q)],
                )
                .map_err(rerr)?;
            match (
                up.get::<String>(0, 0).map_err(rerr)?,
                up.get::<String>(0, 1).map_err(rerr)?,
            ) {
                (Some(n), Some(l)) if n != name => {
                    name = n;
                    loc = l;
                }
                _ => break,
            }
        }
        Err(StepError::new(
            SqlState::UNDEFINED_TABLE,
            format!(
                "no node up the cascade of queue \"{q}\" has table {} to copy from",
                view.table
            ),
        ))
    }

    /// `in-copy`: copy the table from the source once the source has it complete, in
    /// one local transaction that ends with the state `catching-up` and the copy's
    /// snapshot; then ask the source for a tick, so the catch-up need not wait for one.
    fn copy_table_now(
        &mut self,
        view: &CopyView,
        source: &str,
        mode: CopyMode,
    ) -> Result<Round, StepError> {
        let q = self.queue.clone();
        let table = view.table.clone();
        let consumer = view.consumer.clone();
        let nr = self.copy.as_ref().map(|t| t.nr).unwrap_or(0);
        if !self.provider_has_complete(&table)? {
            w::report(Some(&format!(
                "waiting for node \"{source}\" to have {table} complete"
            )));
            return Ok(Round::Idle(Duration::from_secs(1)));
        }
        let dest = view.dest.clone();
        let skip_truncate = view
            .attrs
            .as_deref()
            .is_some_and(|a| a.split('&').any(|kv| kv == "skip_truncate=1"));
        w::report(Some(&format!("initial copy of {table}")));
        let started = shmem::now();
        let conn = match self.provider.as_mut() {
            Some((_, c)) => c,
            None => return Ok(Round::Busy),
        };
        let done = in_txn("initial copy", || {
            let r = (|| -> Result<crate::replay::copy::Copied, PgqError> {
                replica_role()?;
                let copied =
                    crate::replay::copy::copy_table(conn, &table, &dest, skip_truncate, mode)?;
                // the copy counts only if its consumer (whose position precedes the
                // copy's snapshot) is still there, and the table is still this one in
                // in-copy: a resync or a remove and add meanwhile makes it copy again
                let ok = Spi::connect_mut(|c| {
                    let held = !crate::db::update(
                        c,
                        "select 1 from pgq_node.local_state \
                              where queue_name operator(pg_catalog.=) $1 \
                                and consumer_name operator(pg_catalog.=) $2 for share",
                        Some(1),
                        &[q.as_str().into(), consumer.as_str().into()],
                    )
                    .ctx("locking the copy consumer")?
                    .is_empty();
                    if !held {
                        return Ok::<_, PgqError>(false);
                    }
                    // a lead copy's dropped indexes and constraints, rebuilt once the
                    // other part queues' copies are in
                    if let Some(ddl) = copied.dropped_ddl.as_deref() {
                        call_ret(
                            c,
                            "londiste.local_set_table_struct",
                            "select ret_code, ret_note from londiste.local_set_table_struct($1, $2, $3)",
                            &[q.as_str().into(), table.as_str().into(), ddl.into()],
                        )?;
                    }
                    let t = crate::db::update(
                        c,
                        "update londiste.table_info \
                                set merge_state = 'catching-up', custom_snapshot = $4 \
                              where nr operator(pg_catalog.=) $1 \
                                and queue_name operator(pg_catalog.=) $2 \
                                and table_name operator(pg_catalog.=) $3 and local \
                                and merge_state operator(pg_catalog.=) 'in-copy' returning 1",
                        Some(1),
                        &[
                            nr.into(),
                            q.as_str().into(),
                            table.as_str().into(),
                            copied.snapshot.as_str().into(),
                        ],
                    )
                    .ctx("setting the table catching-up")?;
                    Ok(!t.is_empty())
                })?;
                if !ok {
                    return Err(PgqError::new(
                        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                        format!(
                            "table {table} left state in-copy, or its copy consumer went, during its copy; it is copied again if it still waits"
                        ),
                    ));
                }
                Ok(copied)
            })();
            match r {
                Ok(v) => v,
                Err(e) => e.report(),
            }
        })?;
        log!(
            "pgq copy: node \"{}\": copied table {table}: {} rows, {} bytes in {} ms (from node \"{source}\")",
            view.node.node_name,
            done.rows,
            done.bytes,
            (shmem::now() - started) / 1000
        );
        if let Some(t) = self.copy.as_mut() {
            t.caught_up = false;
        }
        self.ask_for_tick();
        Ok(Round::Busy)
    }

    /// A lead copy whose sibling part queues have all copied: rebuild what it dropped
    /// from the destination (the stored `dropped_ddl`), in one transaction with the
    /// row's `dropped_ddl` cleared.
    fn restore_dropped_ddl(&mut self, view: &CopyView, ddl: &str) -> Result<(), StepError> {
        let q = self.queue.clone();
        let table = view.table.clone();
        let dest = view.dest.clone();
        let started = shmem::now();
        w::report(Some(&format!("{table}: rebuilding the indexes of {dest}")));
        in_txn("restore the dropped indexes", || {
            Spi::connect_mut(|c| {
                c.update(ddl, None, &[])
                    .map(|_| ())
                    .ctx("restoring the indexes and constraints a merged copy dropped")?;
                call_ret(
                    c,
                    "londiste.local_set_table_struct",
                    "select ret_code, ret_note from londiste.local_set_table_struct($1, $2, NULL)",
                    &[q.as_str().into(), table.as_str().into()],
                )
            })?;
            crate::replay::copy::analyze(&dest)
        })
        .and_then(|r| r)?;
        log!(
            "pgq copy: queue \"{q}\": indexes and constraints of {dest} rebuilt after every part queue's copy, in {} ms",
            (shmem::now() - started) / 1000
        );
        Ok(())
    }

    /// Whether the copy consumer's completed tick is past the copy's snapshot: every
    /// transaction the snapshot sees had ended by that tick.
    fn past_snapshot(&mut self, view: &CopyView) -> Result<bool, StepError> {
        let Some(done) = view.completed else {
            return Ok(false);
        };
        let Some(snap) = view.snapshot.as_deref() else {
            return Ok(true);
        };
        let s = Snapshot::parse(snap).map_err(|e| {
            StepError::new(
                SqlState::DATA_EXCEPTION,
                format!("table {}: {e}", view.table),
            )
        })?;
        Ok(self.tick_snapshot(done)?.xmin >= s.xmax)
    }

    /// Ask the copy source for a tick now, so that no step of the copy waits for the
    /// source's idle period: `pgq.force_tick`, and on a source of this extension that
    /// ticks the queue itself, `pgq.ticker(queue)` (this extension's ticker takes a lock,
    /// so it may run beside the source's own; the original's may not, so there only
    /// `force_tick`, which its next ticker run honours). Best effort.
    fn ask_for_tick(&mut self) {
        let q = self.queue.clone();
        let Some((_, c)) = self.provider.as_mut() else {
            return;
        };
        let own = c
            .exec(
                "select pgq.force_tick($1) is not null \
                    and pg_catalog.to_regnamespace('pgq_cascade') is not null \
                    and exists (select 1 from pgq.queue where queue_name operator(pg_catalog.=) $1 \
                                   and not queue_external_ticker and not queue_ticker_paused)",
                &[Some(&q)],
            )
            .ok()
            .and_then(|r| r.get::<bool>(0, 0).ok().flatten())
            .unwrap_or(false);
        if own {
            let _ = c.exec("select pgq.ticker($1)", &[Some(&q)]);
        }
    }

    /// `do-sync:C` and the copy consumer's next batch ends at C: everything up to C is
    /// applied, the replay worker applies that batch and on. State `ok` with no copy
    /// snapshot, then the copy consumer goes from the source and from here; the replay
    /// worker is woken (and restores the table's parked foreign keys).
    fn hand_over(&mut self, view: &CopyView, batch: &Batch) -> Result<(), StepError> {
        let q = self.queue.clone();
        let table = view.table.clone();
        let from = format!("do-sync:{}", batch.cur_tick);
        // the copy snapshot goes too: the copy announced only once it stood at a tick
        // past the snapshot (past_snapshot), and the replay worker applies the batches
        // after that, which hold no transaction the snapshot sees
        let worker = view.node.worker.clone();
        let start = view.completed;
        let moved = in_txn("hand the table over", || {
            Spi::connect_mut(|c| {
                // the replay worker's batch ending at C starts where the copy stands:
                // the two read the same ticks (else a row would be lost or doubled)
                let t = crate::db::update(c,
                        "select last_tick_id from pgq_node.local_state \
                          where queue_name operator(pg_catalog.=) $1 \
                            and consumer_name operator(pg_catalog.=) $2 for update",
                        Some(1),
                        &[q.as_str().into(), worker.as_str().into()],
                    )
                    .ctx("locking the replay worker's local_state row")?;
                let main = if t.is_empty() {
                    None
                } else {
                    t.first().get::<i64>(1).ctx("reading last_tick_id")?
                };
                if main != start {
                    return Err(PgqError::new(
                        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                        format!(
                            "Invalid table state: {from}, but the replay worker stands at tick {} and the copy at {} (their sources' ticks differ)",
                            main.map(|v| v.to_string()).unwrap_or_else(|| "NULL".into()),
                            start.map(|v| v.to_string()).unwrap_or_else(|| "NULL".into())
                        ),
                    ));
                }
                crate::db::update(c,
                    "update londiste.table_info set merge_state = 'ok', custom_snapshot = null \
                      where queue_name operator(pg_catalog.=) $1 \
                        and table_name operator(pg_catalog.=) $2 and local \
                        and merge_state operator(pg_catalog.=) $3 returning 1",
                    Some(1),
                    &[q.as_str().into(), table.as_str().into(), from.as_str().into()],
                )
                .map(|t| !t.is_empty())
                .ctx("handing the table over")
            })
        })
        .and_then(|r| r)?;
        if !moved {
            return Err(StepError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("table {table} left state {from} before its hand-over"),
            ));
        }
        crate::bgworker::wake_replay(&q);
        let consumer = view.consumer.clone();
        self.drop_copy_consumer(&consumer)
    }

    /// Unregister the copy consumer on the source (this connection) and here.
    fn drop_copy_consumer(&mut self, consumer: &str) -> Result<(), StepError> {
        let q = self.queue.clone();
        self.conn()?
            .exec(
                "select pgq.unregister_consumer($1, $2)",
                &[Some(&q), Some(consumer)],
            )
            .map_err(rerr)?;
        in_txn("unregister the copy consumer", || {
            Spi::connect_mut(|c| {
                crate::db::update(
                    c,
                    "select ret_code from pgq_node.unregister_consumer($1, $2)",
                    Some(1),
                    &[q.as_str().into(), consumer.into()],
                )
                .map(|_| ())
                .ctx("unregistering the copy consumer")
            })
        })
        .and_then(|r| r)
    }

    /// The hand-over without a tick: the copy consumer has no batch left (it completed
    /// the source's last tick P), the source is the replay worker's provider, and the
    /// replay worker has completed P too and is not inside a batch (its `local_state`
    /// row, which it locks for every batch, is locked here). Then the copy has applied
    /// the table's changes up to P, the replay worker everything else up to P, and from
    /// P on the table is the replay worker's: state `ok`. The copy snapshot stays (the
    /// replay worker's batches come from the same source, so it filters them right)
    /// until the replay worker drops it. Returns whether it handed over.
    fn hand_over_here(&mut self, view: &CopyView) -> Result<bool, StepError> {
        let q = self.queue.clone();
        let table = view.table.clone();
        let worker = view.node.worker.clone();
        let consumer = view.consumer.clone();
        // where the copy consumer stands (only this process moves it), and whether the
        // copy snapshot can go with the hand-over: the tick is past it, so no later
        // batch holds a transaction it sees (the replay worker's own rule)
        let (mine, snap) = in_txn("read the copy position", || {
            Spi::connect(|c| {
                let t = crate::db::select(
                    c,
                    "select s.last_tick_id, t.custom_snapshot::text \
                           from pgq_node.local_state s, londiste.table_info t \
                          where s.queue_name operator(pg_catalog.=) $1 \
                            and s.consumer_name operator(pg_catalog.=) $2 \
                            and t.queue_name operator(pg_catalog.=) $1 \
                            and t.table_name operator(pg_catalog.=) $3 and t.local",
                    Some(1),
                    &[
                        q.as_str().into(),
                        consumer.as_str().into(),
                        table.as_str().into(),
                    ],
                )
                .ctx("reading the copy position")?;
                if t.is_empty() {
                    return Ok::<_, PgqError>((None, None));
                }
                let r = t.first();
                Ok((
                    r.get::<i64>(1).ctx("reading the copy position")?,
                    r.get::<String>(2).ctx("reading the copy position")?,
                ))
            })
        })
        .and_then(|r| r)?;
        let Some(mine) = mine else {
            return Ok(false);
        };
        let drop_snapshot = match snap.as_deref().map(Snapshot::parse) {
            Some(Ok(s)) => self.tick_snapshot(mine)?.xmin >= s.xmax,
            _ => true,
        };
        let moved = in_txn("hand the table over at the worker's position", || {
            Spi::connect_mut(|c| {
                let tick = |who: &str| -> Result<Option<i64>, PgqError> {
                    let t = crate::db::update(
                        c,
                        "select last_tick_id from pgq_node.local_state \
                              where queue_name operator(pg_catalog.=) $1 \
                                and consumer_name operator(pg_catalog.=) $2 for update",
                        Some(1),
                        &[q.as_str().into(), who.into()],
                    )
                    .ctx("locking a consumer's local_state row")?;
                    if t.is_empty() {
                        return Ok(None);
                    }
                    t.first().get::<i64>(1).ctx("reading last_tick_id")
                };
                let main = tick(&worker)?;
                if main != Some(mine) || tick(&consumer)? != Some(mine) {
                    return Ok(false);
                }
                let t = crate::db::update(
                    c,
                    "update londiste.table_info set merge_state = 'ok', \
                                custom_snapshot = case when $3 then null else custom_snapshot end \
                          where queue_name operator(pg_catalog.=) $1 \
                            and table_name operator(pg_catalog.=) $2 and local \
                            and merge_state operator(pg_catalog.=) 'catching-up' returning 1",
                    Some(1),
                    &[
                        q.as_str().into(),
                        table.as_str().into(),
                        drop_snapshot.into(),
                    ],
                )
                .ctx("handing the table over")?;
                Ok::<_, PgqError>(!t.is_empty())
            })
        })
        .and_then(|r| r)?;
        if !moved {
            return Ok(false);
        }
        crate::bgworker::wake_replay(&q);
        self.drop_copy_consumer(&consumer)?;
        if drop_snapshot {
            // the table's parked foreign keys may go back now (best effort: the replay
            // worker also looks for them whenever it is idle)
            if let Err(e) = self.restore_pending_fkeys() {
                w::record_error("restoring foreign keys", &e);
            }
        }
        Ok(true)
    }

    /// Put back the foreign keys an initial copy parked, once both sides are complete.
    fn restore_pending_fkeys(&mut self) -> Result<(), StepError> {
        let q = self.queue.clone();
        let keys = in_txn("read pending foreign keys", || {
            Spi::connect(|c| {
                let t = crate::db::select(c,
                        "select from_table::text, fkey_name::text from londiste.get_valid_pending_fkeys($1)",
                        None,
                        &[q.as_str().into()],
                    )
                    .ctx("reading londiste.get_valid_pending_fkeys")?;
                let mut v = Vec::new();
                for r in t {
                    v.push((
                        crate::db::req::<String>(&r, 1, "reading pending foreign keys")?,
                        crate::db::req::<String>(&r, 2, "reading pending foreign keys")?,
                    ));
                }
                Ok::<_, PgqError>(v)
            })
        })
        .and_then(|r| r)?;
        for (from, name) in keys {
            in_txn("restore a foreign key", || {
                Spi::connect_mut(|c| {
                    crate::db::update(
                        c,
                        "select londiste.restore_table_fkey($1, $2)",
                        Some(1),
                        &[from.as_str().into(), name.as_str().into()],
                    )
                    .map(|_| ())
                    .ctx("restoring a foreign key")
                })
            })
            .and_then(|r| r)?;
        }
        Ok(())
    }

    fn finish_batch(&mut self, batch: &Batch) -> Result<(), StepError> {
        let id = batch.id.to_string();
        self.conn()?
            .exec("select pgq.finish_batch($1::int8)", &[Some(&id)])
            .map_err(rerr)?;
        Ok(())
    }

    /// The local watermark up to the provider; on a `sync_watermark` node then the sync
    /// of its global watermark with the listed nodes.
    fn publish_watermark(&mut self, node: &NodeState, batch: &Batch) -> Result<(), StepError> {
        let sync = !node.sync_watermark.is_empty();
        let wm =
            rules::published_watermark(node.local_watermark, sync, batch.prev_tick, batch.cur_tick);
        let q = self.queue.clone();
        let wm = wm.to_string();
        self.conn()?
            .exec(
                "select ret_code from pgq_node.set_subscriber_watermark($1, $2, $3::int8)",
                &[Some(&q), Some(&node.node_name), Some(&wm)],
            )
            .map_err(rerr)?;
        if sync {
            self.sync_global_watermark(node)?;
        }
        Ok(())
    }

    /// A `sync_watermark` node's global watermark: the lowest of its own local
    /// watermark, the last one its provider sent and the local watermarks of the live
    /// listed nodes (asked on their locations), or left where it is when one of them is
    /// unknown (rules::synced_global_watermark).
    fn sync_global_watermark(&mut self, node: &NodeState) -> Result<(), StepError> {
        let q = self.queue.clone();
        let received = RECEIVED_GLOBAL_WATERMARK.with(|r| r.get());
        let members = in_txn("read queue locations", || {
            Spi::connect(|c| {
                let t = crate::db::select(
                    c,
                    "select node_name::text, node_location::text, dead \
                           from pgq_node.get_queue_locations($1)",
                    None,
                    &[q.as_str().into()],
                )
                .ctx("reading pgq_node.get_queue_locations")?;
                let mut m = HashMap::new();
                for r in t {
                    let name = crate::db::req::<String>(&r, 1, "reading queue locations")?;
                    let loc = crate::db::get::<String>(&r, 2, "reading queue locations")?;
                    let dead = crate::db::get::<bool>(&r, 3, "reading queue locations")?;
                    m.insert(name, (loc, dead.unwrap_or(false)));
                }
                Ok::<_, PgqError>(m)
            })
        })
        .and_then(|r| r)?;
        let mut peers = Vec::new();
        if received.is_some() {
            for name in &node.sync_watermark {
                let p = if *name == node.node_name {
                    rules::PeerWatermark::Known(node.local_watermark)
                } else {
                    match members.get(name) {
                        None => rules::PeerWatermark::NotMember,
                        Some((_, true)) => rules::PeerWatermark::Dead,
                        Some((None, false)) => {
                            rules::PeerWatermark::Unreachable("no location".to_string())
                        }
                        Some((Some(loc), false)) => self.peer_watermark(name, loc),
                    }
                };
                peers.push((name.clone(), p));
            }
        }
        match rules::synced_global_watermark(node.local_watermark, received, &peers) {
            rules::SyncedWatermark::Set(wm) => {
                in_txn("sync global watermark", || {
                    Spi::connect_mut(|c| {
                        crate::db::update(
                            c,
                            "select ret_code from pgq_node.set_global_watermark($1, $2)",
                            Some(1),
                            &[q.as_str().into(), wm.into()],
                        )
                        .map(|_| ())
                        .ctx("pgq_node.set_global_watermark")
                    })
                })
                .and_then(|r| r)?;
                debug1!(
                    "pgq replay: queue \"{q}\": global watermark synced to {wm} (sync_watermark={})",
                    node.sync_watermark.join(",")
                );
            }
            rules::SyncedWatermark::Keep(why) => {
                log!(
                    "pgq replay: queue \"{q}\": global watermark kept at {}: {why}",
                    node.global_watermark
                        .map_or_else(|| "NULL".to_string(), |w| w.to_string())
                );
            }
        }
        Ok(())
    }

    /// The local watermark of a node `sync_watermark` lists, from its own
    /// `pgq_node.get_node_info`, on a connection made as the provider's is (the replay
    /// role's rules for passwords; errors come without secrets).
    fn peer_watermark(&self, name: &str, location: &str) -> rules::PeerWatermark {
        let purpose = format!("replay {} sync_watermark", self.queue);
        let opts = ConnectOptions::new(location, &purpose)
            .node(name)
            .superuser(self.role_is_superuser);
        let asked = Connection::connect(&opts).and_then(|mut c| {
            c.exec(
                "select ret_code, ret_note::text, local_watermark from pgq_node.get_node_info($1)",
                &[Some(&self.queue)],
            )
        });
        let r = match asked {
            Ok(r) => r,
            Err(e) => return rules::PeerWatermark::Unreachable(reason(&e)),
        };
        let read = || -> Result<rules::PeerWatermark, crate::remote::RemoteError> {
            let code = r.get::<i32>(0, 0)?.unwrap_or(0);
            if code >= 300 {
                let note = r.get::<String>(0, 1)?.unwrap_or_default();
                return Ok(rules::PeerWatermark::Unreachable(format!(
                    "no node of the queue there ({code} {note})"
                )));
            }
            Ok(rules::PeerWatermark::Known(r.get::<i64>(0, 2)?))
        };
        read().unwrap_or_else(|e| rules::PeerWatermark::Unreachable(reason(&e)))
    }
}

/// A libpq failure in one line: the message and libpq's reason (DETAIL); the client
/// already took any password out.
/// A replay or copy worker runs with `session_replication_role = replica` for its
/// whole session (set once at its start): a change of the setting empties the plan
/// cache of the process (PostgreSQL re-plans every kept statement after it), so
/// setting it for each batch would re-plan the applier's statements at every batch.
pub fn enter_replica_session() {
    let r = in_txn("set session_replication_role", || set_replica(false)).and_then(|r| r);
    if let Err(e) = r {
        log!(
            "pgq replay: session_replication_role stays as it is for the session ({}); each batch sets it",
            e.message
        );
    }
    // short transactions that see the latest committed rows, whatever the server's or
    // the role's default (the direct apply's row lookup assumes it)
    let r = in_txn("set default_transaction_isolation", || {
        Spi::connect_mut(|c| {
            crate::db::update(
                c,
                "select pg_catalog.set_config('default_transaction_isolation', 'read committed', false)",
                None,
                &[],
            )
            .map(|_| ())
            .ctx("setting default_transaction_isolation")
        })
    })
    .and_then(|r| r);
    if let Err(e) = r {
        log!(
            "pgq replay: could not set default_transaction_isolation ({})",
            e.message
        );
    }
}

/// Make sure the current transaction runs as `replica` (the session's setting, or for
/// this transaction when something changed it).
fn replica_role() -> Result<(), PgqError> {
    if crate::insert::is_replica_role() {
        return Ok(());
    }
    set_replica(true)
}

/// `session_replication_role = replica`, for this transaction (`local`) or the session.
fn set_replica(local: bool) -> Result<(), PgqError> {
    Spi::connect_mut(|c| {
        crate::db::update(
            c,
            "select londiste.set_session_replication_role('replica', $1)",
            None,
            &[local.into()],
        )
        .map(|_| ())
        .ctx("setting session_replication_role")
    })
}

fn reason(e: &crate::remote::RemoteError) -> String {
    match &e.detail {
        Some(d) if !d.is_empty() => format!("{}: {d}", e.message),
        _ => e.message.clone(),
    }
}

/// A batch applied (or finished) by this worker, in its status slot; returns the time.
fn note_batch(batch: &Batch, applied: &Applied) -> i64 {
    let events = match applied {
        Applied::Events(n) => *n,
        Applied::AlreadyDone | Applied::SyncWait => 0,
    };
    let now = shmem::now();
    w::with_slot(|s| {
        s.batch_id = batch.id;
        s.tick_id = batch.cur_tick;
        s.tick_time = batch.cur_tick_time;
        s.events += events;
        s.ticks += 1;
        s.last_tick = now;
        s.clear_error();
    });
    now
}

enum Applied {
    Events(i64),
    AlreadyDone,
    /// not applied: a copy worker's hand-off is in progress
    SyncWait,
}

/// An event as read from the provider.
struct Event {
    id: i64,
    /// TimestampTz microseconds
    time: i64,
    txid: i64,
    ev_type: Vec<u8>,
    data: Option<Vec<u8>>,
    extra: [Option<Vec<u8>>; 4],
}

impl Event {
    fn from_row(row: &crate::remote::Row) -> Result<Event, PgqError> {
        let int = |i: usize, what: &str| -> Result<i64, PgqError> {
            row.get::<i64>(i).map_err(rerr)?.ok_or_else(|| {
                PgqError::new(SqlState::DATA_EXCEPTION, format!("event without {what}"))
            })
        };
        if row.bytes(3).is_some() {
            return Err(PgqError::new(
                SqlState::DATA_EXCEPTION,
                "a retry event reached the replay worker (ev_retry is set)",
            ));
        }
        let b = |i: usize| row.bytes(i).map(<[u8]>::to_vec);
        Ok(Event {
            id: int(0, "ev_id")?,
            time: int(1, "ev_time")? - 946_684_800 * SEC,
            txid: int(2, "ev_txid")?,
            ev_type: b(4).unwrap_or_default(),
            data: b(5),
            extra: [b(6), b(7), b(8), b(9)],
        })
    }

    fn text(v: &Option<Vec<u8>>) -> Option<String> {
        v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

fn prefix(mut e: PgqError, ev: &Event) -> PgqError {
    e.message = format!("[ev_id={},ev_txid={}] {}", ev.id, ev.txid, e.message);
    e
}

/// The local tables of the queue, as `londiste.get_table_list` shows them.
struct Tables {
    /// global name → table
    by_name: HashMap<String, TableInfo>,
    /// in a copy worker: the one table it applies, whatever its state
    copy_of: Option<String>,
}

struct TableInfo {
    local: bool,
    state: Option<String>,
    snapshot: Option<Snapshot>,
    attrs: Option<String>,
    dest: String,
}

impl Tables {
    fn load(queue: &str) -> Result<Tables, PgqError> {
        Spi::connect(|c| {
            let t = crate::db::select(
                c,
                "select table_name::text, local, merge_state::text, custom_snapshot::text, \
                            table_attrs::text, dest_table::text \
                       from londiste.get_table_list($1)",
                None,
                &[queue.into()],
            )
            .ctx("reading londiste.get_table_list")?;
            let mut by_name = HashMap::new();
            for row in t {
                let name = crate::db::req::<String>(&row, 1, "reading londiste.get_table_list")?;
                let snapshot = match crate::db::get::<String>(&row, 4, "reading the table list")? {
                    Some(s) => Some(Snapshot::parse(&s).map_err(|e| {
                        PgqError::new(
                            SqlState::INVALID_TEXT_REPRESENTATION,
                            format!("table {name}: {e}"),
                        )
                    })?),
                    None => None,
                };
                let dest = crate::db::get::<String>(&row, 6, "reading the table list")?
                    .unwrap_or_else(|| name.clone());
                by_name.insert(
                    name,
                    TableInfo {
                        local: crate::db::get::<bool>(&row, 2, "reading the table list")?
                            .unwrap_or(false),
                        state: crate::db::get::<String>(&row, 3, "reading the table list")?,
                        snapshot,
                        attrs: crate::db::get::<String>(&row, 5, "reading the table list")?,
                        dest,
                    },
                );
            }
            Ok(Tables {
                by_name,
                copy_of: None,
            })
        })
    }

    /// The table a data or TRUNCATE event is for, if this node replays it now.
    fn replayed(&self, ev: &Event) -> Result<Option<&TableInfo>, PgqError> {
        let Some(name) = Event::text(&ev.extra[0]) else {
            return Err(PgqError::new(
                SqlState::DATA_EXCEPTION,
                "data event without a table name (ev_extra1)",
            ));
        };
        let fq = make_fqname(&name);
        let Some(t) = self.by_name.get(&fq) else {
            return Ok(None);
        };
        let ok = match &self.copy_of {
            Some(mine) => *mine == fq,
            // `?` is the legacy spelling of ok
            None => matches!(t.state.as_deref(), Some("ok") | Some("?")),
        };
        if !t.local || !ok {
            return Ok(None);
        }
        if let Some(s) = &t.snapshot {
            if s.visible(ev.txid) {
                return Ok(None); // the initial copy has it
            }
        }
        Ok(Some(t))
    }
}

/// A copy worker's view of its table, read at the start of each round.
struct CopyView {
    node: NodeState,
    table: String,
    dest: String,
    state: Option<String>,
    attrs: Option<String>,
    /// `<worker>.copy.<table>`
    consumer: String,
    /// the copy's snapshot (catching-up and later)
    snapshot: Option<String>,
    /// the copy consumer's completed tick
    completed: Option<i64>,
    /// the copy consumer's row here: its source node and that node's location
    registered: Option<(Option<String>, Option<String>)>,
    /// on a merge node where several part queues feed the destination: this copy's
    /// part in their coordination (`londiste._coordinate_copy`: lead, wait-copy,
    /// wait-replay or None) and how many sibling copies come before it
    copy_role: Option<String>,
    copy_pos: i32,
    /// what a lead copy dropped from the destination, to be restored once every part
    /// is copied (`londiste.table_info.dropped_ddl`)
    dropped_ddl: Option<String>,
}

/// The copy worker's node, table and consumer; Err(why) when there is nothing to do
/// any more (node or table gone, replay off or as another role).
fn read_copy_view(
    q: &str,
    role: &str,
    nr: i32,
    table: &str,
) -> Result<Result<CopyView, String>, PgqError> {
    Spi::connect(|c| {
        let replay_here = !crate::db::select(
            c,
            "select 1 from pgq_cascade.node_replay \
                  where queue_name operator(pg_catalog.=) $1 and in_server \
                    and replay_role operator(pg_catalog.=) $2::name",
            Some(1),
            &[q.into(), role.into()],
        )
        .ctx("reading pgq_cascade.node_replay")?
        .is_empty();
        if !replay_here {
            return Ok(Err(format!(
                "in-server replay of queue \"{q}\" was turned off or now acts as another role"
            )));
        }
        let t = crate::db::select(
            c,
            "select node_type::text, node_name::text, worker_name::text, provider_node::text, \
                        provider_location::text, combined_queue::text \
                   from pgq_node.get_node_info($1) where ret_code < 300",
            Some(1),
            &[q.into()],
        )
        .ctx("reading pgq_node.get_node_info")?;
        if t.is_empty() {
            return Ok(Err(format!(
                "queue \"{q}\" has no cascaded node here any more"
            )));
        }
        let r = t.first();
        let ntype = r
            .get::<String>(1)
            .ctx("reading node info")?
            .unwrap_or_default();
        let node_type = match NodeType::parse(&ntype) {
            Some(t @ (NodeType::Branch | NodeType::Leaf)) => t,
            _ => {
                return Ok(Err(format!(
                    "the node of queue \"{q}\" is not a branch or leaf"
                )))
            }
        };
        let combined_queue = r.get::<String>(6).ctx("reading node info")?;
        let Some(worker) = r.get::<String>(3).ctx("reading node info")? else {
            return Ok(Err(format!("the node of queue \"{q}\" has no worker")));
        };
        let node = NodeState {
            node_type,
            node_name: r
                .get::<String>(2)
                .ctx("reading node info")?
                .unwrap_or_default(),
            worker: worker.clone(),
            combined_queue: combined_queue.clone(),
            // a copy worker copies no events anywhere
            combined_type: None,
            local_watermark: None,
            // a copy worker neither applies cascade events nor moves watermarks
            global_watermark: None,
            sync_watermark: Vec::new(),
            provider_node: r.get::<String>(4).ctx("reading node info")?,
            provider_location: r.get::<String>(5).ctx("reading node info")?,
            paused: false,
            uptodate: true,
            cur_error: None,
            replay_here,
            position: None,
        };
        let t = crate::db::select(
            c,
            "select merge_state::text, table_attrs::text, coalesce(dest_table, table_name)::text, \
                        custom_snapshot::text, dropped_ddl \
                   from londiste.table_info \
                  where nr operator(pg_catalog.=) $1 and queue_name operator(pg_catalog.=) $2 \
                    and table_name operator(pg_catalog.=) $3 and local",
            Some(1),
            &[nr.into(), q.into(), table.into()],
        )
        .ctx("reading londiste.table_info")?;
        if t.is_empty() {
            return Ok(Err(format!(
                "table {table} is not replayed by queue \"{q}\" any more"
            )));
        }
        let r = t.first();
        let state = r.get::<String>(1).ctx("reading londiste.table_info")?;
        let attrs = r.get::<String>(2).ctx("reading londiste.table_info")?;
        let dest = r
            .get::<String>(3)
            .ctx("reading londiste.table_info")?
            .unwrap_or_else(|| table.to_string());
        let snapshot = r.get::<String>(4).ctx("reading londiste.table_info")?;
        let dropped_ddl = r.get::<String>(5).ctx("reading londiste.table_info")?;
        let (copy_role, copy_pos) = if combined_queue.is_some() {
            let t = crate::db::select(
                c,
                "select copy_role::text, copy_pos from londiste._coordinate_copy($1, $2)",
                Some(1),
                &[q.into(), table.into()],
            )
            .ctx("reading the copy's role (londiste._coordinate_copy)")?;
            if t.is_empty() {
                (None, 0)
            } else {
                let r = t.first();
                (
                    r.get::<String>(1).ctx("reading the copy's role")?,
                    r.get::<i32>(2).ctx("reading the copy's role")?.unwrap_or(0),
                )
            }
        } else {
            (None, 0)
        };
        let consumer = rules::copy_consumer(&worker, table);
        let t = crate::db::select(
            c,
            "select s.provider_node::text, l.node_location::text, s.last_tick_id \
                   from pgq_node.local_state s \
                   left join pgq_node.node_location l \
                     on l.queue_name operator(pg_catalog.=) s.queue_name \
                    and l.node_name operator(pg_catalog.=) s.provider_node \
                  where s.queue_name operator(pg_catalog.=) $1 \
                    and s.consumer_name operator(pg_catalog.=) $2",
            Some(1),
            &[q.into(), consumer.as_str().into()],
        )
        .ctx("reading the copy consumer")?;
        let (registered, completed) = if t.is_empty() {
            (None, None)
        } else {
            let r = t.first();
            (
                Some((
                    r.get::<String>(1).ctx("reading the copy consumer")?,
                    r.get::<String>(2).ctx("reading the copy consumer")?,
                )),
                r.get::<i64>(3).ctx("reading the copy consumer")?,
            )
        };
        Ok(Ok(CopyView {
            node,
            table: table.to_string(),
            dest,
            state,
            attrs,
            consumer,
            snapshot,
            completed,
            registered,
            copy_role,
            copy_pos,
            dropped_ddl,
        }))
    })
}

/// The `copy_node` table attribute (urlencoded in `table_attrs`), if set.
fn copy_node_attr(attrs: Option<&str>) -> Option<String> {
    let v = attrs?
        .split('&')
        .find_map(|kv| kv.strip_prefix("copy_node="))?;
    let v = crate::logic::triggers::urldecode(v).ok()?;
    let v = String::from_utf8(v).ok()?;
    (!v.is_empty()).then_some(v)
}

/// Move a table from state `from` to `to`, only if it is still in `from` (the row is
/// locked): the copy worker and the replay worker each own some transitions.
fn set_table_state_if(queue: &str, table: &str, from: &str, to: &str) -> Result<bool, PgqError> {
    Spi::connect_mut(|c| {
        let t = crate::db::update(
            c,
            "update londiste.table_info set merge_state = $4 \
                  where queue_name operator(pg_catalog.=) $1 \
                    and table_name operator(pg_catalog.=) $2 and local \
                    and merge_state operator(pg_catalog.=) $3 returning 1",
            Some(1),
            &[queue.into(), table.into(), from.into(), to.into()],
        )
        .ctx("setting a table's copy state")?;
        Ok(!t.is_empty())
    })
}

fn set_table_state(
    queue: &str,
    table: &str,
    snapshot: Option<&str>,
    state: Option<&str>,
) -> Result<(), PgqError> {
    Spi::connect_mut(|c| {
        call_ret(
            c,
            "londiste.local_set_table_state",
            "select ret_code, ret_note from londiste.local_set_table_state($1, $2, $3, $4)",
            &[queue.into(), table.into(), snapshot.into(), state.into()],
        )
    })
}

/// Call a function that answers (ret_code, ret_note); a code of 300 or more is an error
/// naming the function and its note.
fn call_ret(
    c: &mut SpiClient<'_>,
    what: &str,
    sql: &'static str,
    args: &[pgrx::datum::DatumWithOid],
) -> Result<(), PgqError> {
    let t = crate::db::update(c, sql, Some(1), args).ctx(what)?;
    let r = t.first();
    let code = r.get::<i32>(1).ctx(what)?.unwrap_or(0);
    if code >= 300 {
        let note = r.get::<String>(2).ctx(what)?.unwrap_or_default();
        return Err(PgqError::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{what}: {note}"),
        ));
    }
    Ok(())
}

fn handler_of(t: &TableInfo, name: &str) -> Result<plan::Handler, PgqError> {
    plan::handler_of_attrs(t.attrs.as_deref())
        .and_then(|h| plan::parse_handler(h.as_deref()))
        .map_err(|m| {
            PgqError::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!("table {name}: {m}"),
            )
        })
}

fn apply_event(
    queue: &str,
    node: &NodeState,
    duties: &Duties,
    tables: &mut Tables,
    ev: &Event,
) -> Result<(), PgqError> {
    match plan::classify(&ev.ev_type) {
        EventKind::Data => {
            let Some(t) = tables.replayed(ev)? else {
                return Ok(());
            };
            let name = Event::text(&ev.extra[0]).unwrap_or_default();
            handler_of(t, &name)?;
            let change =
                plan::decode(&ev.ev_type, ev.data.as_deref().unwrap_or(b"")).map_err(|e| {
                    PgqError::new(SqlState::DATA_EXCEPTION, format!("table {name}: {}", e.0))
                })?;
            crate::replay::apply::apply(t.dest.as_bytes(), &change)?;
            Ok(())
        }
        EventKind::Truncate => {
            let Some(t) = tables.replayed(ev)? else {
                return Ok(());
            };
            let name = Event::text(&ev.extra[0]).unwrap_or_default();
            if handler_of(t, &name)?.ignore_truncate {
                return Ok(());
            }
            let sql = format!("TRUNCATE {} CASCADE", quote::fqname(&t.dest, false));
            Spi::connect_mut(|c| {
                c.update(&sql, None, &[])
                    .map(|_| ())
                    .ctx("replaying TRUNCATE")
            })
        }
        EventKind::Execute => {
            execute_script(queue, tables, ev)?;
            // the script may have changed the tables' registrations
            *tables = Tables::load(queue)?;
            Ok(())
        }
        EventKind::Londiste(kind) => {
            let data = Event::text(&ev.data);
            let extra1 = Event::text(&ev.extra[0]);
            let (sql, args): (&str, Vec<Option<String>>) = match kind {
                LondisteEvent::AddTable => (
                    "select ret_code from londiste.global_add_table($1, $2)",
                    vec![data],
                ),
                LondisteEvent::RemoveTable => (
                    "select ret_code from londiste.global_remove_table($1, $2)",
                    vec![data],
                ),
                LondisteEvent::RemoveSeq => (
                    "select ret_code from londiste.global_remove_seq($1, $2)",
                    vec![data],
                ),
                LondisteEvent::UpdateSeq => (
                    "select ret_code from londiste.global_update_seq($1, $2, $3::int8)",
                    vec![extra1, data],
                ),
            };
            Spi::connect_mut(|c| {
                let mut a: Vec<pgrx::datum::DatumWithOid> = vec![queue.into()];
                for v in &args {
                    a.push(v.as_deref().into());
                }
                crate::db::update(c, sql, Some(1), &a)
                    .map(|_| ())
                    .ctx("applying a londiste event")
            })?;
            if !matches!(kind, LondisteEvent::UpdateSeq) {
                *tables = Tables::load(queue)?;
            }
            Ok(())
        }
        EventKind::Cascade => {
            let t = String::from_utf8_lossy(&ev.ev_type).into_owned();
            let ce = rules::cascade_event(
                queue,
                &t,
                Event::text(&ev.data).as_deref(),
                Event::text(&ev.extra[0]).as_deref(),
                Event::text(&ev.extra[1]).as_deref(),
                Event::text(&ev.extra[2]).as_deref(),
            )
            .map_err(|m| PgqError::new(SqlState::DATA_EXCEPTION, m))?;
            Spi::connect_mut(|c| {
                match ce {
                    CascadeEvent::LocationInfo {
                        node: n,
                        location,
                        dead,
                    } => crate::db::update(
                        c,
                        "select ret_code from pgq_node.register_location($1, $2, $3, $4)",
                        Some(1),
                        &[
                            queue.into(),
                            n.as_str().into(),
                            location.as_deref().into(),
                            dead.into(),
                        ],
                    )
                    .map(|_| ()),
                    CascadeEvent::UnregisterLocation { node: n } => crate::db::update(
                        c,
                        "select ret_code from pgq_node.unregister_location($1, $2)",
                        Some(1),
                        &[queue.into(), n.as_str().into()],
                    )
                    .map(|_| ()),
                    // a sync_watermark node syncs its own in publish_watermark
                    CascadeEvent::GlobalWatermark(tick) if !node.sync_watermark.is_empty() => {
                        RECEIVED_GLOBAL_WATERMARK.with(|r| r.set(Some(tick)));
                        Ok(())
                    }
                    CascadeEvent::GlobalWatermark(tick) => crate::db::update(
                        c,
                        "select ret_code from pgq_node.set_global_watermark($1, $2)",
                        Some(1),
                        &[queue.into(), tick.into()],
                    )
                    .map(|_| ()),
                    // a combined branch: the part queue's merge leaf here stands where
                    // the combined root's merge leaf stood when it sent the event
                    CascadeEvent::TickId { part_queue, tick } if duties.apply_tick_event => {
                        MOVED_PARTS.with(|m| m.borrow_mut().push(part_queue.clone()));
                        crate::db::update(
                            c,
                            "select ret_code from pgq_node.set_partition_watermark($1, $2, $3)",
                            Some(1),
                            &[queue.into(), part_queue.as_str().into(), tick.into()],
                        )
                        .map(|_| ())
                    }
                    CascadeEvent::TickId { .. } => Ok(()),
                }
                .ctx("applying a cascade event")
            })
        }
        EventKind::Unknown => Err(PgqError::new(
            SqlState::DATA_EXCEPTION,
            format!(
                "Unhandled event type in queue: {}",
                String::from_utf8_lossy(&ev.ev_type)
            ),
        )),
    }
}

/// EXECUTE: the root's DDL script, run here once (londiste.execute_start records it),
/// with `session_replication_role = local`, if the objects it names are here.
fn execute_script(queue: &str, tables: &Tables, ev: &Event) -> Result<(), PgqError> {
    let file = Event::text(&ev.extra[0]).unwrap_or_default();
    let sql = Event::text(&ev.data).unwrap_or_default();
    let attrs_text = Event::text(&ev.extra[1]);
    run_script(queue, tables, &file, &sql, attrs_text.as_deref(), false).map(|_| ())
}

/// `pgq_cascade.execute` on the root: the same steps; execute_finish sends the
/// EXECUTE event down the cascade. (ret_code, ret_note) of the step that decided.
pub fn run_script_on_root(
    queue: &str,
    file: &str,
    sql: &str,
    attrs_text: Option<&str>,
) -> Result<(i32, String), PgqError> {
    let tables = Tables::load(queue)?;
    run_script(queue, &tables, file, sql, attrs_text, true)
}

fn run_script(
    queue: &str,
    tables: &Tables,
    file: &str,
    sql: &str,
    attrs_text: Option<&str>,
    on_root: bool,
) -> Result<(i32, String), PgqError> {
    let attrs = rules::ExecAttrs::parse(attrs_text)
        .map_err(|m| PgqError::new(SqlState::DATA_EXCEPTION, format!("EXECUTE {file}: {m}")))?;
    Spi::connect_mut(|c| -> Result<(i32, String), PgqError> {
        crate::db::update(
            c,
            "select londiste.set_session_replication_role('local', true)",
            None,
            &[],
        )
        .ctx("EXECUTE: setting session_replication_role")?;
        let t = crate::db::update(
            c,
            "select ret_code, ret_note from londiste.execute_start($1, $2, $3, $5, $4)",
            Some(1),
            &[
                queue.into(),
                file.into(),
                sql.into(),
                attrs_text.into(),
                on_root.into(),
            ],
        )
        .ctx("EXECUTE: londiste.execute_start")?;
        let first = t.first();
        let mut code = first
            .get::<i32>(1)
            .ctx("EXECUTE: londiste.execute_start")?
            .unwrap_or(0);
        let mut note = first
            .get::<String>(2)
            .ctx("EXECUTE: londiste.execute_start")?
            .unwrap_or_default();
        if code >= 400 {
            return Err(PgqError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("EXECUTE {file}: {note}"),
            ));
        }
        if code <= 200 {
            let seqs = local_sequences(c, queue)?;
            let here = Here {
                tables,
                seqs: &seqs,
                c: std::cell::RefCell::new(c),
            };
            let decision = rules::exec_decision(&attrs, &here).map_err(|m| {
                PgqError::new(
                    SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("EXECUTE {file}: {m}"),
                )
            })?;
            let c = here.c.into_inner();
            if let ExecDecision::Run(subst) = decision {
                let script = rules::substitute(sql, &subst, |n| quote::fqname(n, false));
                crate::db::plain_errors(|| c.update(&script, None, &[]))
                    .ctx(&format!("EXECUTE {file}"))?;
            }
            let t = crate::db::update(
                c,
                "select ret_code, ret_note from londiste.execute_finish($1, $2)",
                Some(1),
                &[queue.into(), file.into()],
            )
            .ctx("EXECUTE: londiste.execute_finish")?;
            let first = t.first();
            code = first
                .get::<i32>(1)
                .ctx("EXECUTE: londiste.execute_finish")?
                .unwrap_or(0);
            note = first
                .get::<String>(2)
                .ctx("EXECUTE: londiste.execute_finish")?
                .unwrap_or_default();
        }
        c.update(
            if on_root {
                "select londiste.set_session_replication_role('origin', true)"
            } else {
                "select londiste.set_session_replication_role('replica', true)"
            },
            None,
            &[],
        )
        .ctx("EXECUTE: setting session_replication_role")?;
        Ok((code, note))
    })
}

fn local_sequences(c: &mut SpiClient<'_>, queue: &str) -> Result<Vec<String>, PgqError> {
    let t = crate::db::select(
        c,
        "select seq_name::text from londiste.get_seq_list($1) where local",
        None,
        &[queue.into()],
    )
    .ctx("reading londiste.get_seq_list")?;
    let mut out = Vec::new();
    for row in t {
        out.push(crate::db::req::<String>(
            &row,
            1,
            "reading londiste.get_seq_list",
        )?);
    }
    Ok(out)
}

struct Here<'a, 'b, 'c> {
    tables: &'a Tables,
    seqs: &'a [String],
    c: std::cell::RefCell<&'b mut SpiClient<'c>>,
}

impl rules::LocalObjects for Here<'_, '_, '_> {
    fn local_table(&self, name: &str) -> Option<String> {
        self.tables
            .by_name
            .get(name)
            .filter(|t| t.local)
            .map(|t| t.dest.clone())
    }
    fn local_sequence(&self, name: &str) -> bool {
        self.seqs.iter().any(|s| s == name)
    }
    fn local_destination(&self, name: &str) -> bool {
        self.tables
            .by_name
            .values()
            .any(|t| t.local && t.dest == name)
    }
    fn exists(&self, key: &str, name: &str) -> Result<bool, String> {
        let (sql, arg) = match key {
            "need-table" => (
                "select pg_catalog.to_regclass($1) is not null and exists (select 1 from pg_catalog.pg_class \
                   where oid operator(pg_catalog.=) pg_catalog.to_regclass($1) and relkind in ('r', 'p'))",
                quote::fqname(name, false),
            ),
            "need-view" => (
                "select exists (select 1 from pg_catalog.pg_class \
                   where oid operator(pg_catalog.=) pg_catalog.to_regclass($1) and relkind in ('v', 'm'))",
                quote::fqname(name, false),
            ),
            "need-sequence" => (
                "select exists (select 1 from pg_catalog.pg_class \
                   where oid operator(pg_catalog.=) pg_catalog.to_regclass($1) and relkind operator(pg_catalog.=) 'S')",
                quote::fqname(name, false),
            ),
            "need-schema" => (
                "select exists (select 1 from pg_catalog.pg_namespace where nspname operator(pg_catalog.=) $1)",
                name.to_string(),
            ),
            "need-function" => {
                // name(nargs)
                let (f, n) = name
                    .trim_end_matches(')')
                    .split_once('(')
                    .ok_or_else(|| format!("need-function {name}: expected name(nargs)"))?;
                let nargs: i32 = n.trim().parse().map_err(|_| format!("need-function {name}: expected name(nargs)"))?;
                let (s, f) = split_fqname(f.trim());
                let c = self.c.borrow_mut();
                return crate::db::select(&c,
                        "select exists (select 1 from pg_catalog.pg_proc p join pg_catalog.pg_namespace n \
                            on n.oid operator(pg_catalog.=) p.pronamespace \
                          where n.nspname operator(pg_catalog.=) $1 and p.proname operator(pg_catalog.=) $2 \
                            and p.pronargs operator(pg_catalog.=) $3)",
                        Some(1),
                        &[s.as_str().into(), f.as_str().into(), (nargs as i16).into()],
                    )
                    .and_then(|t| t.first().get::<bool>(1))
                    .map(|b| b.unwrap_or(false))
                    .map_err(|e| e.to_string());
            }
            other => return Err(format!("unknown EXECUTE attribute {other}")),
        };
        let c = self.c.borrow_mut();
        c.select(sql, Some(1), &[arg.as_str().into()])
            .and_then(|t| t.first().get::<bool>(1))
            .map(|b| b.unwrap_or(false))
            .map_err(|e| e.to_string())
    }
}

/// Copy an event into this branch's own queue with its `ev_id`, for the nodes below.
/// On a `sync_watermark` node a `pgq.global-watermark` event goes on with this node's
/// own global watermark: the nodes below must not drop what the synced nodes need.
fn copy_event(queue: &str, node: &NodeState, ev: &Event) -> Result<(), PgqError> {
    let own_wm;
    let mut data = ev.data.as_deref();
    if !node.sync_watermark.is_empty() && ev.ev_type == b"pgq.global-watermark" {
        if let Some(wm) = node.global_watermark {
            own_wm = wm.to_string();
            data = Some(own_wm.as_bytes());
        }
    }
    insert_copy(queue, ev, Some(ev.id), data)
}

/// A merge leaf on the combined root: an event of the part queue goes on into the
/// combined queue with a new id (and this transaction's txid), as the combined root's
/// own events do.
fn merge_event(combined: &str, ev: &Event) -> Result<(), PgqError> {
    insert_copy(combined, ev, None, ev.data.as_deref())
}

/// Insert `ev` (with `data` as its ev_data) into `queue`: with id `ev_id`, or a new one.
fn insert_copy(
    queue: &str,
    ev: &Event,
    ev_id: Option<i64>,
    data: Option<&[u8]>,
) -> Result<(), PgqError> {
    let time = TimestampWithTimeZone::try_from(ev.time)
        .map_err(|_| PgqError::new(SqlState::DATA_EXCEPTION, format!("bad ev_time {}", ev.time)))?;
    crate::db::plain_errors(|| {
        crate::insert::insert_event_raw(
            Some(queue.as_bytes()),
            crate::insert::NewEvent {
                ev_id,
                ev_time: Some(time),
                ev_owner: None,
                ev_retry: None,
                ev_type: Some(&ev.ev_type),
                ev_data: data,
                extra: [
                    ev.extra[0].as_deref(),
                    ev.extra[1].as_deref(),
                    ev.extra[2].as_deref(),
                    ev.extra[3].as_deref(),
                ],
            },
        )
    });
    Ok(())
}

/// The `pgq.tick-id` event that ends a part queue's batch in the combined queue: the
/// part tick in `ev_data`, the part queue in `ev_extra1`.
fn merge_tick_event(combined: &str, part_queue: &str, tick: i64) -> Result<(), PgqError> {
    let data = tick.to_string();
    crate::db::plain_errors(|| {
        crate::insert::insert_event_raw(
            Some(combined.as_bytes()),
            crate::insert::NewEvent {
                ev_id: None,
                ev_time: None,
                ev_owner: None,
                ev_retry: None,
                ev_type: Some(b"pgq.tick-id"),
                ev_data: Some(data.as_bytes()),
                extra: [Some(part_queue.as_bytes()), None, None, None],
            },
        )
    });
    Ok(())
}

/// One row of `pgq_cascade.replay_error`. The replay role may only read the table, so the
/// fixed insert runs as the table's owner.
fn record_history(
    c: &mut SpiClient<'_>,
    queue: &str,
    worker: &str,
    pos: &Position,
    code: &str,
    msg: &str,
) -> Result<(), PgqError> {
    let owner = crate::db::select(
        c,
        "select c.relowner from pg_catalog.pg_class c \
              where c.oid operator(pg_catalog.=) 'pgq_cascade.replay_error'::pg_catalog.regclass",
        Some(1),
        &[],
    )
    .and_then(|t| t.first().get::<pg_sys::Oid>(1))
    .ctx("reading the owner of pgq_cascade.replay_error")?
    .ok_or_else(|| PgqError::internal("pgq_cascade.replay_error has no owner"))?;
    let _as_owner = crate::guards::UserSwitch::to(owner);
    crate::db::update(c,
        "insert into pgq_cascade.replay_error \
           (queue_name, consumer_name, batch_id, tick_id, ev_id, ev_txid, table_name, sqlstate, message) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        None,
        &[
            queue.into(),
            worker.into(),
            pos.batch_id.into(),
            pos.tick_id.into(),
            pos.ev_id.into(),
            pos.ev_txid.into(),
            pos.table.as_deref().into(),
            code.into(),
            msg.into(),
        ],
    )
    .ctx("recording the error in pgq_cascade.replay_error")?;
    // the history is bounded: the queue's rows older than pgq.replay_error_retention go
    // (0 keeps them all)
    let keep = crate::gucs::REPLAY_ERROR_RETENTION_S.get();
    if keep > 0 {
        crate::db::update(
            c,
            "delete from pgq_cascade.replay_error \
              where queue_name operator(pg_catalog.=) $1 \
                and error_time operator(pg_catalog.<) (pg_catalog.now() \
                    operator(pg_catalog.-) pg_catalog.make_interval(secs => $2))",
            None,
            &[queue.into(), (keep as f64).into()],
        )
        .ctx("pruning pgq_cascade.replay_error")?;
    }
    Ok(())
}
