//! `pgq.ticker()` and `pgq.ticker(queue)`: one query reads every queue's thresholds,
//! event-sequence position and two latest ticks; the decision is pure Rust
//! (logic::tick_policy); ticks are inserted only for queues that need one.

use crate::db::{get, kept, req};
use crate::errors::{raise, warning, OrReport, SpiResultExt};
use crate::insert::{text_datum, TextDatum};
use crate::logic::tick_policy::{decide, due_in, Decision, Thresholds, TickState};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::cell::Cell;

struct QueueTickRow {
    queue_id: i32,
    /// the queue name's bytes in the server encoding (not necessarily UTF-8)
    name: Vec<u8>,
    /// the queue's tick sequence, resolved; None when queue_tick_seq names no sequence
    tick_seq: Option<pg_sys::Oid>,
    /// false when queue_event_seq names no sequence
    event_seq_ok: bool,
    /// false when a tick time of the queue is not finite (a broken external tick)
    times_ok: bool,
    external: bool,
    paused: bool,
    th: Thresholds,
    state: TickState,
    last_xmin: Option<i64>,
    last_xmax: Option<i64>,
}

const STATE_ALL: &str = concat!(
    "select q.queue_id, ts.seqrelid, q.queue_external_ticker, q.queue_ticker_paused, ",
    "q.queue_ticker_max_count::int8, ",
    "extract(epoch from q.queue_ticker_max_lag)::float8, ",
    "extract(epoch from q.queue_ticker_idle_period)::float8, ",
    "coalesce(pg_catalog.pg_sequence_last_value(sq.seqrelid), sq.seqstart), ",
    "t1.tick_id, t1.tick_event_seq, ",
    // tick times may be +-infinity (the external ticker takes any timestamp): such a
    // queue reads NULL here and is skipped, instead of failing the query for all queues
    "case when pg_catalog.isfinite(t1.tick_time) then ",
    "extract(epoch from pg_catalog.now() operator(pg_catalog.-) t1.tick_time)::float8 end, ",
    "case when pg_catalog.isfinite(t1.tick_time) and pg_catalog.isfinite(t2.tick_time) then ",
    "extract(epoch from t1.tick_time operator(pg_catalog.-) t2.tick_time)::float8 end, ",
    "pg_catalog.txid_snapshot_xmin(t1.tick_snapshot), pg_catalog.txid_snapshot_xmax(t1.tick_snapshot), ",
    "pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()), ",
    // the name as bytes: in a LATIN1 or SQL_ASCII database it need not be UTF-8
    "pg_catalog.convert_to(q.queue_name, pg_catalog.getdatabaseencoding()), ",
    "t1.tick_time is not null and not pg_catalog.isfinite(t1.tick_time) ",
    "from pgq.queue q ",
    "left join pg_catalog.pg_sequence sq ",
    "on sq.seqrelid operator(pg_catalog.=) pgq._stored_seq(q.queue_event_seq) ",
    "left join pg_catalog.pg_sequence ts ",
    "on ts.seqrelid operator(pg_catalog.=) pgq._stored_seq(q.queue_tick_seq) ",
    "left join lateral (select tick_id, tick_time, tick_event_seq, tick_snapshot from pgq.tick ",
    "where tick_queue operator(pg_catalog.=) q.queue_id ",
    "order by tick_queue desc, tick_id desc limit 1) t1 on true ",
    "left join lateral (select tick_time from pgq.tick ",
    "where tick_queue operator(pg_catalog.=) q.queue_id ",
    "and tick_id operator(pg_catalog.<) t1.tick_id ",
    "order by tick_queue desc, tick_id desc limit 1) t2 on true "
);
const WHERE_ALL: &str =
    "where not q.queue_external_ticker and not q.queue_ticker_paused order by q.queue_name";
const WHERE_ONE: &str = "where q.queue_name operator(pg_catalog.=) $1";
const INSERT_TICK: &str = "insert into pgq.tick (tick_queue, tick_id, tick_event_seq) \
     values ($1, pg_catalog.nextval($2::pg_catalog.regclass), $3) returning tick_id";
const NOTIFY: &str = "select pg_catalog.pg_notify($1, $2)";

fn state_sql(one: bool) -> &'static str {
    // built once per backend; the plan cache is keyed by the text
    thread_local! {
        static SQL: (&'static str, &'static str) = (
            Box::leak(format!("{STATE_ALL}{WHERE_ALL}").into_boxed_str()),
            Box::leak(format!("{STATE_ALL}{WHERE_ONE}").into_boxed_str()),
        );
    }
    SQL.with(|s| if one { s.1 } else { s.0 })
}

/// Each queue's tick state, and the next txid to be assigned (read from the current
/// snapshot, so the ticker does not assign itself a txid when nothing ticks).
fn read_states(client: &SpiClient<'_>, queue: Option<&[u8]>) -> (Vec<QueueTickRow>, i64) {
    let rows = match queue {
        Some(name) => {
            let plan = kept(client, state_sql(true), &[pg_sys::TEXTOID], false);
            client.select(&*plan, None, &[TextDatum(text_datum(name)).into()])
        }
        None => {
            let plan = kept(client, state_sql(false), &[], false);
            client.select(&*plan, None, &[])
        }
    }
    .or_raise("reading ticker state");
    let mut next_xid = 0;
    let mut out = Vec::new();
    // columns of NOT NULL expressions are decoded with `req` (a NULL there raises);
    // the ones a LEFT JOIN or a CASE can make NULL stay Options
    const W: &str = "reading ticker state";
    for r in rows {
        let last_tick: Option<i64> = get(&r, 9, W).or_report();
        let last_seq: Option<i64> = get(&r, 10, W).or_report();
        let lag: Option<f64> = get(&r, 11, W).or_report();
        let infinite: bool = req(&r, 17, W).or_report();
        let event_seq: Option<i64> = get(&r, 8, W).or_report();
        out.push(QueueTickRow {
            queue_id: req(&r, 1, W).or_report(),
            name: req::<Vec<u8>>(&r, 16, W).or_report(),
            tick_seq: get(&r, 2, W).or_report(),
            event_seq_ok: event_seq.is_some(),
            times_ok: !infinite,
            external: req(&r, 3, W).or_report(),
            paused: req(&r, 4, W).or_report(),
            th: Thresholds {
                max_count: req(&r, 5, W).or_report(),
                max_lag: req(&r, 6, W).or_report(),
                idle_period: req(&r, 7, W).or_report(),
            },
            state: TickState {
                // without a sequence the queue is skipped (`broken`), never ticked
                event_seq: event_seq.unwrap_or(0),
                last: match (last_tick, last_seq) {
                    // the lag is NULL only for a tick time that is not finite, and
                    // such a queue is skipped (times_ok)
                    (Some(_), Some(seq)) => Some((seq, lag.unwrap_or(0.0))),
                    _ => None,
                },
                prev_gap: get(&r, 12, W).or_report(),
            },
            last_xmin: get(&r, 13, W).or_report(),
            last_xmax: get(&r, 14, W).or_report(),
        });
        next_xid = req(&r, 15, W).or_report();
    }
    (out, next_xid)
}

impl QueueTickRow {
    /// The name for messages (lossy where it is not UTF-8).
    fn display_name(&self) -> String {
        crate::names::display(&self.name)
    }
}

/// Why a queue's row cannot be ticked at all (reported, and the queue skipped).
fn broken(q: &QueueTickRow) -> Option<String> {
    if q.tick_seq.is_none() {
        return Some("queue_tick_seq names no sequence".into());
    }
    if !q.event_seq_ok {
        return Some("queue_event_seq names no sequence".into());
    }
    if !q.times_ok {
        return Some("its last tick time is not finite".into());
    }
    None
}

thread_local! {
    /// queue id -> when its breakage was last reported (once a minute per queue)
    static REPORTED: std::cell::RefCell<std::collections::HashMap<i32, i64>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

thread_local! {
    /// the last queue skipped in this backend's last ticker run (the in-server worker
    /// shows it in pgq.worker_status().last_error)
    static SKIPPED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// What the last `ticker_all` run of this backend skipped, if anything.
pub fn take_skipped() -> Option<String> {
    SKIPPED.with(|s| s.borrow_mut().take())
}

fn report_broken(q: &QueueTickRow, msg: &str) {
    SKIPPED.with(|s| *s.borrow_mut() = Some(msg.to_string()));
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let due = REPORTED.with(|r| {
        let mut r = r.borrow_mut();
        match r.get(&q.queue_id) {
            Some(&t) if now - t < 60_000_000 => false,
            _ => {
                r.insert(q.queue_id, now);
                true
            }
        }
    });
    if due {
        warning(msg);
    }
}

/// Returns the new tick id, or None when the queue does not need a tick now.
fn tick_one(client: &mut SpiClient<'_>, q: &QueueTickRow, next_xid: i64) -> Option<i64> {
    if let (Some(xmin), Some(xmax)) = (q.last_xmin, q.last_xmax) {
        if xmin > next_xid {
            raise(format!(
                "Invalid PgQ state: old xmin={xmin}, old xmax={xmax}, cur txid={next_xid}"
            ));
        }
        if xmax > next_xid {
            warning(format!(
                "Dubious PgQ state: old xmax={xmax}, cur txid={next_xid}"
            ));
        }
    }
    if let Some((seq, _)) = q.state.last {
        if q.state.event_seq < seq {
            warning(format!(
                "Negative new_events?  old={seq} cur={}",
                q.state.event_seq
            ));
        }
    }
    if decide(&q.th, &q.state) == Decision::Skip {
        return None;
    }
    let tick_seq = q.tick_seq?;
    let insert = kept(
        client,
        INSERT_TICK,
        &[pg_sys::INT4OID, pg_sys::OIDOID, pg_sys::INT8OID],
        true,
    );
    let rows = client
        .update(
            &*insert,
            None,
            &[
                q.queue_id.into(),
                DatumWithOid::from(tick_seq),
                q.state.event_seq.into(),
            ],
        )
        .or_raise("inserting tick");
    let tick: i64 = req(&rows.first(), 1, "inserting tick").or_report();
    notify_tick(client, &q.name, tick);
    Some(tick)
}

/// NOTIFY "pgq_<queue>" with the tick id, so consumers can LISTEN instead of polling.
/// Channel names are limited to 63 bytes; longer queue names get no notification.
fn notify_tick(client: &mut SpiClient<'_>, queue: &[u8], tick: i64) {
    if !crate::gucs::NOTIFY.get() {
        return;
    }
    let channel = [b"pgq_".as_slice(), queue].concat();
    if channel.len() >= pg_sys::NAMEDATALEN as usize {
        return;
    }
    let notify = kept(client, NOTIFY, &[pg_sys::TEXTOID, pg_sys::TEXTOID], true);
    client
        .update(
            &*notify,
            None,
            &[
                TextDatum(text_datum(&channel)).into(),
                tick.to_string().as_str().into(),
            ],
        )
        .or_raise("notifying tick");
}

/// Ticks of one database are made by one session at a time (the in-server ticker,
/// pgqd or a manual call), which keeps tick ids and snapshots in the same order. The
/// lock is a transaction-level advisory lock whose tag no SQL function can build
/// (`locktag_field4` is 1 or 2 for `pg_advisory_*`, this one uses 0x7071 "pq"), so a
/// user who can merely connect cannot take it and stall ticking. It shows in
/// pg_locks as locktype `advisory`, objid 0x7469636b ("tick"), objsubid 28785.
const TICKER_LOCK_FIELD4: u16 = 0x7071;
const TICKER_LOCK_KEY: u32 = 0x7469_636b;

thread_local! {
    /// Set in the in-server worker: it only tries the lock and skips the run when a
    /// manual ticker holds it (it comes back a ticker period later).
    static TRY_ONLY: Cell<bool> = const { Cell::new(false) };
}

pub fn set_try_lock_only() {
    TRY_ONLY.with(|t| t.set(true));
}

/// Whether this transaction holds `pgq.tick` in SHARE ROW EXCLUSIVE mode or stronger.
/// That lock conflicts with every other writer of the table and with itself, and a
/// ticker's INSERT takes its snapshot only after its table lock is granted: it
/// serializes ticks at least as strictly as the ticker lock does. A compare
/// (pgq_cascade.compare on a subscriber, src/replay/compare.rs) takes it before its
/// REPEATABLE READ snapshot and then ticks in that transaction; waiting for the ticker
/// lock there could deadlock with a ticker that holds the ticker lock and waits for
/// the table.
fn holds_tick_table_lock() -> bool {
    let Some(relid) = crate::names::stored_relid("pgq.tick") else {
        return false;
    };
    [
        pg_sys::ShareRowExclusiveLock,
        pg_sys::ExclusiveLock,
        pg_sys::AccessExclusiveLock,
    ]
    .iter()
    .any(|&mode| {
        let tag = pg_sys::LOCKTAG {
            // SAFETY: a PostgreSQL global of this backend.
            locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            locktag_field2: relid.to_u32(),
            locktag_field3: 0,
            locktag_field4: 0,
            locktag_type: pg_sys::LockTagType::LOCKTAG_RELATION as u8,
            locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
        };
        // SAFETY: looks the tag up in this backend's local lock table; no locking, no
        // ERROR.
        unsafe { pg_sys::LockHeldByMe(&tag, mode as pg_sys::LOCKMODE) }
    })
}

/// Take the ticker lock; false only in try-only mode when someone else holds it. A
/// transaction that holds `pgq.tick` in SHARE ROW EXCLUSIVE mode or stronger needs no
/// ticker lock (see [`holds_tick_table_lock`]).
pub fn lock_ticker() -> bool {
    if holds_tick_table_lock() {
        return true;
    }
    let tag = pg_sys::LOCKTAG {
        // SAFETY: a PostgreSQL global of this backend.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: 0,
        locktag_field3: TICKER_LOCK_KEY,
        locktag_field4: TICKER_LOCK_FIELD4,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    };
    let dont_wait = TRY_ONLY.with(|t| t.get());
    // SAFETY: `tag` is a fully initialised LOCKTAG living across the call; LockAcquire
    // copies it. ExclusiveLock on a transaction-level (not session) lock is released by
    // the transaction's end, commit or abort. An ERROR inside (deadlock, cancel) unwinds
    // through pg_guard_ffi_boundary like any other.
    let r = unsafe {
        pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
            pg_sys::LockAcquire(
                &tag,
                pg_sys::ExclusiveLock as pg_sys::LOCKMODE,
                false,
                dont_wait,
            )
        })
    };
    r != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}

pub fn ticker_queue(queue: &[u8]) -> Option<i64> {
    if !lock_ticker() {
        return None;
    }
    Spi::connect_mut(|client| {
        let (states, nx) = read_states(client, Some(queue));
        let Some(q) = states.first() else {
            raise("no such queue")
        };
        if q.external {
            raise("This queue has external tick source.");
        }
        if q.paused {
            raise("Ticker has been paused for this queue");
        }
        if let Some(why) = broken(q) {
            raise(format!("cannot tick queue \"{}\": {why}", q.display_name()));
        }
        tick_one(client, q, nx)
    })
}

thread_local! {
    /// After `ticker_all`: seconds until some queue will need a tick (if no new events
    /// arrive); the in-server ticker sleeps until then rather than a whole period.
    static NEXT_DUE: Cell<Option<f64>> = const { Cell::new(None) };
}

/// Take the value left by the last `ticker_all` call in this backend.
pub fn take_next_due() -> Option<f64> {
    NEXT_DUE.with(|d| d.take())
}

pub fn ticker_all() -> i64 {
    if !lock_ticker() {
        // a manual ticker is running: this run is skipped, the next one comes soon
        NEXT_DUE.with(|c| c.set(None));
        return 0;
    }
    Spi::connect_mut(|client| {
        let (states, nx) = read_states(client, None);
        let mut n = 0;
        let mut due: Option<f64> = None;
        for q in &states {
            // one broken queue row must not stop the ticks of all the others
            if let Some(why) = broken(q) {
                report_broken(
                    q,
                    &format!(
                        "queue \"{}\" skipped by the ticker: {why}",
                        q.display_name()
                    ),
                );
                continue;
            }
            if tick_one(client, q, nx).is_some() {
                n += 1;
                continue;
            }
            // A queue holding untick'd events gets its tick exactly when it reaches
            // ticker_max_lag, not up to a ticker period later. Idle queues keep the
            // period's rhythm (their ticks carry no events).
            let pending = matches!(q.state.last, Some((seq, _)) if q.state.event_seq > seq);
            if pending {
                let d = due_in(&q.th, &q.state);
                due = Some(due.map_or(d, |x: f64| x.min(d)));
            }
        }
        NEXT_DUE.with(|c| c.set(due));
        n
    })
}
