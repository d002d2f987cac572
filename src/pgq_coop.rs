//! Schema `pgq_coop`: cooperative sub-consumers sharing one consumer's batches
//! (docs/pgq_node.md). All SECURITY DEFINER; declarations in sql/pgq_coop.sql.
//!
//! Model: the main consumer `C` is an ordinary subscription that never keeps a batch
//! open; sub-consumer `C.S` is another pgq consumer whose subscription row carries
//! the main row's `sub_id` (so retry events belong to the main consumer) and NULL
//! tick columns while idle. next_batch takes a batch for the main consumer, closes it
//! there at once and moves batch id and ticks onto the `C.S` row.

use crate::db::{self, first, get, req, Client};
use crate::errors::{warning, OrReport, PgqError, PgqResult};
use crate::logic::node::subconsumer_name;
use pgrx::prelude::*;

const M: &str = "pgq_coop";

fn not_subscriber(queue: Option<&str>, consumer: &str) -> PgqError {
    PgqError::exception(format!(
        "Not subscriber to queue: {}/{consumer}",
        queue.unwrap_or("")
    ))
}

/// (queue_id, consumer_id, sub_id, sub_batch) of a subscription.
type SubRow = (i32, i32, i32, Option<i64>);

/// (consumer_id, sub_batch, sub_last_tick, sub_next_tick) of a dead sub-consumer.
type VictimRow = (i32, Option<i64>, Option<i64>, Option<i64>);

/// A subscription, locked.
fn lock_sub(c: Client, queue: Option<&str>, consumer: &str) -> PgqResult<Option<SubRow>> {
    const W: &str = "locking a subscription";
    let t = c.write(
        W,
        "select s.sub_queue, s.sub_consumer, s.sub_id, s.sub_batch \
           from pgq.subscription s \
           join pgq.queue q on q.queue_id = s.sub_queue \
           join pgq.consumer co on co.co_id = s.sub_consumer \
          where q.queue_name = $1 and co.co_name = $2 \
          for update of s",
        &[queue.into(), consumer.into()],
    )?;
    // the three ids are NOT NULL columns
    first(t)
        .map(|r| {
            Ok((
                req(&r, 1, W)?,
                req(&r, 2, W)?,
                req(&r, 3, W)?,
                get(&r, 4, W)?,
            ))
        })
        .transpose()
}

/// Register sub-consumer `sub` of `consumer`: 1 if it was new, 0 if it existed.
pub fn register_subconsumer(
    c: Client,
    queue: Option<&str>,
    consumer: &str,
    sub: &str,
) -> PgqResult<i32> {
    const W: &str = "register_subconsumer";
    let subcon = subconsumer_name(consumer, sub);
    c.write(
        W,
        "select pgq.register_consumer($1, $2)",
        &[queue.into(), consumer.into()],
    )?;
    let created: Option<i32> = {
        let t = c.write(
            W,
            "select pgq.register_consumer($1, $2)",
            &[queue.into(), subcon.as_str().into()],
        )?;
        first(t).map(|r| get(&r, 1, W)).transpose()?.flatten()
    };
    if created != Some(1) {
        return Ok(0);
    }
    let Some((qid, _, main_sub_id, _)) = lock_sub(c, queue, consumer)? else {
        return Err(not_subscriber(queue, consumer));
    };
    c.execute(
        W,
        "update pgq.subscription s \
            set sub_id = $3, sub_last_tick = null, sub_next_tick = null, sub_batch = null \
           from pgq.consumer co \
          where s.sub_queue = $1 and co.co_id = s.sub_consumer and co.co_name = $2",
        &[qid.into(), subcon.as_str().into(), main_sub_id.into()],
    )?;
    Ok(1)
}

fn need(v: Option<&str>, what: &str) -> PgqResult<String> {
    match v {
        Some(v) => Ok(v.to_string()),
        None => Err(PgqError::exception(format!("{what} must not be NULL"))),
    }
}

#[pg_extern(sql = false)]
fn pgq_coop_register_subconsumer(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_subconsumer_name: Option<&str>,
) -> Option<i32> {
    let consumer = need(i_consumer_name, "consumer name").or_report();
    let sub = need(i_subconsumer_name, "subconsumer name").or_report();
    Some(
        db::write(M, |c| {
            register_subconsumer(c, i_queue_name, &consumer, &sub)
        })
        .or_report(),
    )
}

/// Drop sub-consumer `sub`: 1 if it existed; an open batch raises unless
/// `batch_handling` is 1 (then it is dropped with the row).
pub fn unregister_subconsumer(
    c: Client,
    queue: Option<&str>,
    consumer: &str,
    sub: &str,
    batch_handling: Option<i32>,
) -> PgqResult<i32> {
    let subcon = subconsumer_name(consumer, sub);
    let Some((qid, co_id, _, batch)) = lock_sub(c, queue, &subcon)? else {
        return Ok(0);
    };
    if batch.is_some() && batch_handling != Some(1) {
        return Err(PgqError::exception("subconsumer has active batch"));
    }
    c.execute(
        "unregister_subconsumer",
        "delete from pgq.subscription where sub_queue = $1 and sub_consumer = $2",
        &[qid.into(), co_id.into()],
    )?;
    Ok(1)
}

#[pg_extern(sql = false)]
fn pgq_coop_unregister_subconsumer(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_subconsumer_name: Option<&str>,
    i_batch_handling: Option<i32>,
) -> Option<i32> {
    let consumer = need(i_consumer_name, "consumer name").or_report();
    let sub = need(i_subconsumer_name, "subconsumer name").or_report();
    Some(
        db::write(M, |c| {
            unregister_subconsumer(c, i_queue_name, &consumer, &sub, i_batch_handling)
        })
        .or_report(),
    )
}

/// What next_batch waits for (pgq.next_batch_custom's arguments) and when another
/// sub-consumer counts as dead.
#[derive(Default, Clone, Copy)]
pub struct BatchWait {
    pub min_lag: Option<Interval>,
    pub min_count: Option<i32>,
    pub min_interval: Option<Interval>,
    pub dead_interval: Option<Interval>,
}

/// The next batch of a sub-consumer (None: no batch yet).
pub fn next_batch(
    c: Client,
    queue: Option<&str>,
    consumer: Option<&str>,
    sub: Option<&str>,
    wait: BatchWait,
) -> PgqResult<Option<i64>> {
    const W: &str = "next_batch";
    let consumer = need(consumer, "consumer name")?;
    let sub = need(sub, "subconsumer name")?;
    let subcon = subconsumer_name(&consumer, &sub);
    // 1. the main subscription, registered on first use; it must be idle
    let main = match lock_sub(c, queue, &consumer)? {
        Some(m) => m,
        None => {
            c.write(
                W,
                "select pgq.register_consumer($1, $2)",
                &[queue.into(), consumer.as_str().into()],
            )?;
            lock_sub(c, queue, &consumer)?.ok_or_else(|| not_subscriber(queue, &consumer))?
        }
    };
    let (qid, main_co, main_sub_id, main_batch) = main;
    if main_batch.is_some() {
        return Err(PgqError::exception("main consumer has batch open?"));
    }
    // 2. the sub-consumer, registered on first use
    let me = match lock_sub(c, queue, &subcon)? {
        Some(s) => s,
        None => {
            // 0 (it exists after all) is fine: the lock below finds it
            register_subconsumer(c, queue, &consumer, &sub)?;
            lock_sub(c, queue, &subcon)?.ok_or_else(|| not_subscriber(queue, &subcon))?
        }
    };
    let (_, my_co, _, my_batch) = me;
    // 3. a batch already handed to this sub-consumer
    if let Some(b) = my_batch {
        c.execute(
            W,
            "update pgq.subscription set sub_active = pg_catalog.now() \
              where sub_queue = $1 and sub_consumer = $2",
            &[qid.into(), my_co.into()],
        )?;
        return Ok(Some(b));
    }
    // 4. take over the batch of a sub-consumer that has been silent too long
    if let Some(dead) = wait.dead_interval {
        let t = c.write(
            W,
            "select sub_consumer, sub_batch, sub_last_tick, sub_next_tick \
               from pgq.subscription \
              where sub_queue = $1 and sub_id = $2 and sub_consumer <> $3 and sub_consumer <> $4 \
                and sub_active < pg_catalog.now() - $5 \
              order by sub_active limit 1 for update",
            &[
                qid.into(),
                main_sub_id.into(),
                main_co.into(),
                my_co.into(),
                dead.into(),
            ],
        )?;
        let victim: Option<VictimRow> = first(t)
            .map(|r| -> PgqResult<_> {
                Ok((
                    req(&r, 1, W)?,
                    get(&r, 2, W)?,
                    get(&r, 3, W)?,
                    get(&r, 4, W)?,
                ))
            })
            .transpose()?;
        if let Some((dead_co, batch, last, next)) = victim {
            c.execute(
                W,
                "delete from pgq.subscription where sub_queue = $1 and sub_consumer = $2",
                &[qid.into(), dead_co.into()],
            )?;
            if let Some(b) = batch {
                c.execute(
                    W,
                    "update pgq.subscription \
                        set sub_batch = $3, sub_last_tick = $4, sub_next_tick = $5, \
                            sub_active = pg_catalog.now() \
                      where sub_queue = $1 and sub_consumer = $2",
                    &[qid.into(), my_co.into(), b.into(), last.into(), next.into()],
                )?;
                return Ok(Some(b));
            }
        }
    }
    // 5. a new batch for the main consumer ...
    let t = c.write(
        W,
        "select batch_id, prev_tick_id, cur_tick_id \
           from pgq.next_batch_custom($1, $2, $3, $4, $5)",
        &[
            queue.into(),
            consumer.as_str().into(),
            wait.min_lag.into(),
            wait.min_count.into(),
            wait.min_interval.into(),
        ],
    )?;
    let (batch, prev, cur): (Option<i64>, Option<i64>, Option<i64>) = match first(t) {
        Some(r) => (get(&r, 1, W)?, get(&r, 2, W)?, get(&r, 3, W)?),
        None => (None, None, None),
    };
    let Some(batch) = batch else {
        return Ok(None);
    };
    // 6. ... closed on the main row at once and handed to the sub-consumer
    c.execute(
        W,
        "update pgq.subscription \
            set sub_last_tick = sub_next_tick, sub_next_tick = null, sub_batch = null \
          where sub_queue = $1 and sub_consumer = $2",
        &[qid.into(), main_co.into()],
    )?;
    c.execute(
        W,
        "update pgq.subscription \
            set sub_batch = $3, sub_last_tick = $4, sub_next_tick = $5, \
                sub_active = pg_catalog.now() \
          where sub_queue = $1 and sub_consumer = $2",
        &[
            qid.into(),
            my_co.into(),
            batch.into(),
            prev.into(),
            cur.into(),
        ],
    )?;
    Ok(Some(batch))
}

fn next_batch_wrapper(
    queue: Option<&str>,
    consumer: Option<&str>,
    sub: Option<&str>,
    wait: BatchWait,
) -> Option<i64> {
    db::write(M, |c| next_batch(c, queue, consumer, sub, wait)).or_report()
}

#[pg_extern(sql = false)]
fn pgq_coop_next_batch(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_subconsumer_name: Option<&str>,
) -> Option<i64> {
    next_batch_wrapper(
        i_queue_name,
        i_consumer_name,
        i_subconsumer_name,
        BatchWait::default(),
    )
}

#[pg_extern(sql = false)]
fn pgq_coop_next_batch_dead(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_subconsumer_name: Option<&str>,
    i_dead_interval: Option<Interval>,
) -> Option<i64> {
    next_batch_wrapper(
        i_queue_name,
        i_consumer_name,
        i_subconsumer_name,
        BatchWait {
            dead_interval: i_dead_interval,
            ..Default::default()
        },
    )
}

#[pg_extern(sql = false)]
fn pgq_coop_next_batch_custom(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_subconsumer_name: Option<&str>,
    i_min_lag: Option<Interval>,
    i_min_count: Option<i32>,
    i_min_interval: Option<Interval>,
) -> Option<i64> {
    pgq_coop_next_batch_custom_dead(
        i_queue_name,
        i_consumer_name,
        i_subconsumer_name,
        i_min_lag,
        i_min_count,
        i_min_interval,
        None,
    )
}

#[allow(clippy::too_many_arguments)]
#[pg_extern(sql = false)]
fn pgq_coop_next_batch_custom_dead(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_subconsumer_name: Option<&str>,
    i_min_lag: Option<Interval>,
    i_min_count: Option<i32>,
    i_min_interval: Option<Interval>,
    i_dead_interval: Option<Interval>,
) -> Option<i64> {
    next_batch_wrapper(
        i_queue_name,
        i_consumer_name,
        i_subconsumer_name,
        BatchWait {
            min_lag: i_min_lag,
            min_count: i_min_count,
            min_interval: i_min_interval,
            dead_interval: i_dead_interval,
        },
    )
}

/// Close a sub-consumer's batch: false (with a WARNING) if no one has it.
pub fn finish_batch(c: Client, batch_id: Option<i64>) -> PgqResult<bool> {
    let done = c.execute(
        "finish_batch",
        "update pgq.subscription \
            set sub_next_tick = null, sub_batch = null, sub_last_tick = null, \
                sub_active = pg_catalog.now() \
          where sub_batch = $1",
        &[batch_id.into()],
    )?;
    if done == 0 {
        let b = batch_id.map_or_else(|| "<NULL>".to_string(), |b| b.to_string());
        warning(format!("coop_finish_batch: batch {b} not found"));
        return Ok(false);
    }
    Ok(true)
}

#[pg_extern(sql = false)]
fn pgq_coop_finish_batch(i_batch_id: Option<i64>) -> Option<i32> {
    let done = db::write(M, |c| finish_batch(c, i_batch_id)).or_report();
    Some(if done { 1 } else { 0 })
}

#[pg_extern(sql = false)]
fn pgq_coop_version() -> Option<String> {
    Some("3.1.1".to_string())
}
