//! `pgq.ticker()` and `pgq.ticker(queue)`: one query reads every queue's thresholds,
//! event-sequence position and two latest ticks; the decision is pure Rust
//! (logic::tick_policy); ticks are inserted only for queues that need one.

use crate::errors::{raise, warning, SpiResultExt};
use crate::logic::tick_policy::{decide, due_in, Decision, Thresholds, TickState};
use crate::plans::kept;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::cell::Cell;

struct QueueTickRow {
    queue_id: i32,
    name: String,
    tick_seq: String,
    external: bool,
    paused: bool,
    th: Thresholds,
    state: TickState,
    last_xmin: Option<i64>,
    last_xmax: Option<i64>,
}

const STATE_ALL: &str = concat!(
    "select q.queue_id, q.queue_tick_seq, q.queue_external_ticker, q.queue_ticker_paused, ",
    "q.queue_ticker_max_count::int8, ",
    "extract(epoch from q.queue_ticker_max_lag)::float8, ",
    "extract(epoch from q.queue_ticker_idle_period)::float8, ",
    "coalesce(pg_catalog.pg_sequence_last_value(sq.seqrelid), sq.seqstart), ",
    "t1.tick_id, t1.tick_event_seq, ",
    "extract(epoch from pg_catalog.now() - t1.tick_time)::float8, ",
    "extract(epoch from t1.tick_time - t2.tick_time)::float8, ",
    "pg_catalog.txid_snapshot_xmin(t1.tick_snapshot), pg_catalog.txid_snapshot_xmax(t1.tick_snapshot), ",
    "pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()), q.queue_name ",
    "from pgq.queue q ",
    "left join pg_catalog.pg_sequence sq on sq.seqrelid = pg_catalog.to_regclass(q.queue_event_seq) ",
    "left join lateral (select tick_id, tick_time, tick_event_seq, tick_snapshot from pgq.tick ",
    "where tick_queue = q.queue_id order by tick_queue desc, tick_id desc limit 1) t1 on true ",
    "left join lateral (select tick_time from pgq.tick ",
    "where tick_queue = q.queue_id and tick_id < t1.tick_id ",
    "order by tick_queue desc, tick_id desc limit 1) t2 on true "
);
const WHERE_ALL: &str =
    "where not q.queue_external_ticker and not q.queue_ticker_paused order by q.queue_name";
const WHERE_ONE: &str = "where q.queue_name = $1";
const INSERT_TICK: &str = "insert into pgq.tick (tick_queue, tick_id, tick_event_seq) \
     values ($1, pg_catalog.nextval(pg_catalog.to_regclass($2)), $3) returning tick_id";
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
fn read_states(client: &SpiClient<'_>, queue: Option<&str>) -> (Vec<QueueTickRow>, i64) {
    let rows = match queue {
        Some(name) => {
            let plan = kept(client, state_sql(true), &[pg_sys::TEXTOID], false);
            client.select(&*plan, None, &[name.into()])
        }
        None => {
            let plan = kept(client, state_sql(false), &[], false);
            client.select(&*plan, None, &[])
        }
    }
    .or_raise("reading ticker state");
    let mut next_xid = 0;
    let mut out = Vec::new();
    for r in rows {
        let last_tick: Option<i64> = r.get(9).or_raise("tick_id");
        let last_seq: Option<i64> = r.get(10).or_raise("tick_event_seq");
        let lag: Option<f64> = r.get(11).or_raise("lag");
        out.push(QueueTickRow {
            queue_id: r.get(1).or_raise("queue_id").unwrap_or(0),
            name: r.get(16).or_raise("queue_name").unwrap_or_default(),
            tick_seq: r.get(2).or_raise("queue_tick_seq").unwrap_or_default(),
            external: r.get(3).or_raise("external").unwrap_or(false),
            paused: r.get(4).or_raise("paused").unwrap_or(false),
            th: Thresholds {
                max_count: r.get(5).or_raise("max_count").unwrap_or(500),
                max_lag: r.get(6).or_raise("max_lag").unwrap_or(3.0),
                idle_period: r.get(7).or_raise("idle_period").unwrap_or(60.0),
            },
            state: TickState {
                event_seq: r.get(8).or_raise("event seq").unwrap_or(0),
                last: match (last_tick, last_seq) {
                    (Some(_), Some(seq)) => Some((seq, lag.unwrap_or(0.0))),
                    _ => None,
                },
                prev_gap: r.get(12).or_raise("gap"),
            },
            last_xmin: r.get(13).or_raise("xmin"),
            last_xmax: r.get(14).or_raise("xmax"),
        });
        next_xid = r.get(15).or_raise("next txid").unwrap_or(0);
    }
    (out, next_xid)
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
    let insert = kept(
        client,
        INSERT_TICK,
        &[pg_sys::INT4OID, pg_sys::TEXTOID, pg_sys::INT8OID],
        true,
    );
    let rows = client
        .update(
            &*insert,
            None,
            &[
                q.queue_id.into(),
                q.tick_seq.as_str().into(),
                q.state.event_seq.into(),
            ],
        )
        .or_raise("inserting tick");
    let tick: Option<i64> = rows.first().get(1).or_raise("tick_id");
    if let Some(t) = tick {
        notify_tick(client, &q.name, t);
    }
    tick
}

/// NOTIFY "pgq_<queue>" with the tick id, so consumers can LISTEN instead of polling.
/// Channel names are limited to 63 bytes; longer queue names get no notification.
fn notify_tick(client: &mut SpiClient<'_>, queue: &str, tick: i64) {
    if !crate::gucs::NOTIFY.get() {
        return;
    }
    let channel = format!("pgq_{queue}");
    if channel.len() >= pg_sys::NAMEDATALEN as usize {
        return;
    }
    let notify = kept(client, NOTIFY, &[pg_sys::TEXTOID, pg_sys::TEXTOID], true);
    client
        .update(
            &*notify,
            None,
            &[channel.as_str().into(), tick.to_string().as_str().into()],
        )
        .or_raise("notifying tick");
}

/// Key of the transaction-level advisory lock every ticker form takes first, so ticks
/// of one database are made by one session at a time (the in-server ticker, pgqd or a
/// manual call), keeping tick ids and snapshots in the same order.
pub const TICKER_LOCK_KEY: i64 = 0x7067_715f_7469_636b; // "pgq_tick"

unsafe extern "C-unwind" {
    // utils/fmgrprotos.h; used through DirectFunctionCall, which traps its ERRORs
    #[link_name = "pg_advisory_xact_lock_int8"]
    fn advisory_xact_lock_int8(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
}

pub fn lock_ticker() {
    unsafe {
        pg_sys::DirectFunctionCall1Coll(
            Some(advisory_xact_lock_int8),
            pg_sys::InvalidOid,
            pg_sys::Datum::from(TICKER_LOCK_KEY),
        );
    }
}

pub fn ticker_queue(queue: &str) -> Option<i64> {
    lock_ticker();
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
    lock_ticker();
    Spi::connect_mut(|client| {
        let (states, nx) = read_states(client, None);
        let mut n = 0;
        let mut due: Option<f64> = None;
        for q in &states {
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
