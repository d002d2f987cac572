//! Schema `pgq_coop`: cooperative sub-consumers sharing one consumer's batches
//! (spec/pgq_node.md §7). All SECURITY DEFINER; declarations in sql/pgq_coop.sql.
//!
//! Model: the main consumer `C` is an ordinary subscription that never keeps a batch
//! open; sub-consumer `C.S` is another pgq consumer whose subscription row carries
//! the main row's `sub_id` (so retry events belong to the main consumer) and NULL
//! tick columns while idle. next_batch takes a batch for the main consumer, closes it
//! there at once and moves batch id and ticks onto the `C.S` row.

use crate::errors::{raise, warning};
use crate::logic::node::subconsumer_name;
use crate::spi_util::{col, exec, first, one, run};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

/// (queue_id, consumer_id, sub_id, sub_batch) of a subscription, locked.
fn lock_sub(
    c: &mut SpiClient<'_>,
    queue: Option<&str>,
    consumer: &str,
) -> Option<(i32, i32, i32, Option<i64>)> {
    let t = run(
        c,
        true,
        "select s.sub_queue, s.sub_consumer, s.sub_id, s.sub_batch \
           from pgq.subscription s \
           join pgq.queue q on q.queue_id = s.sub_queue \
           join pgq.consumer co on co.co_id = s.sub_consumer \
          where q.queue_name = $1 and co.co_name = $2 \
          for update of s",
        &[queue.into(), consumer.into()],
    );
    first(t).map(|r| {
        (
            col::<i32>(&r, 1).unwrap_or(0),
            col::<i32>(&r, 2).unwrap_or(0),
            col::<i32>(&r, 3).unwrap_or(0),
            col::<i64>(&r, 4),
        )
    })
}

fn register_subconsumer(
    c: &mut SpiClient<'_>,
    queue: Option<&str>,
    consumer: &str,
    sub: &str,
) -> i32 {
    let subcon = subconsumer_name(consumer, sub);
    run(
        c,
        true,
        "select pgq.register_consumer($1, $2)",
        &[queue.into(), consumer.into()],
    );
    let created: Option<i32> = one(
        c,
        true,
        "select pgq.register_consumer($1, $2)",
        &[queue.into(), subcon.as_str().into()],
    );
    if created != Some(1) {
        return 0;
    }
    let Some((qid, _, main_sub_id, _)) = lock_sub(c, queue, consumer) else {
        raise(format!(
            "Not subscriber to queue: {}/{consumer}",
            queue.unwrap_or("")
        ))
    };
    exec(
        c,
        "update pgq.subscription s \
            set sub_id = $3, sub_last_tick = null, sub_next_tick = null, sub_batch = null \
           from pgq.consumer co \
          where s.sub_queue = $1 and co.co_id = s.sub_consumer and co.co_name = $2",
        &[qid.into(), subcon.as_str().into(), main_sub_id.into()],
    );
    1
}

fn need(v: Option<&str>, what: &str) -> String {
    match v {
        Some(v) => v.to_string(),
        None => raise(format!("{what} must not be NULL")),
    }
}

#[pg_extern(sql = false)]
fn pgq_coop_register_subconsumer(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_subconsumer_name: Option<&str>,
) -> Option<i32> {
    let consumer = need(i_consumer_name, "consumer name");
    let sub = need(i_subconsumer_name, "subconsumer name");
    Some(Spi::connect_mut(|c| {
        register_subconsumer(c, i_queue_name, &consumer, &sub)
    }))
}

#[pg_extern(sql = false)]
fn pgq_coop_unregister_subconsumer(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_subconsumer_name: Option<&str>,
    i_batch_handling: Option<i32>,
) -> Option<i32> {
    let consumer = need(i_consumer_name, "consumer name");
    let sub = need(i_subconsumer_name, "subconsumer name");
    let subcon = subconsumer_name(&consumer, &sub);
    Some(Spi::connect_mut(|c| {
        let Some((qid, co_id, _, batch)) = lock_sub(c, i_queue_name, &subcon) else {
            return 0;
        };
        if batch.is_some() && i_batch_handling != Some(1) {
            raise("subconsumer has active batch");
        }
        // handling 1: the open batch is dropped with the row
        exec(
            c,
            "delete from pgq.subscription where sub_queue = $1 and sub_consumer = $2",
            &[qid.into(), co_id.into()],
        );
        1
    }))
}

#[allow(clippy::too_many_arguments)]
fn next_batch(
    queue: Option<&str>,
    consumer: Option<&str>,
    sub: Option<&str>,
    min_lag: Option<Interval>,
    min_count: Option<i32>,
    min_interval: Option<Interval>,
    dead_interval: Option<Interval>,
) -> Option<i64> {
    let consumer = need(consumer, "consumer name");
    let sub = need(sub, "subconsumer name");
    let subcon = subconsumer_name(&consumer, &sub);
    Spi::connect_mut(|c| {
        // 1. the main subscription, registered on first use; it must be idle
        let main = match lock_sub(c, queue, &consumer) {
            Some(m) => m,
            None => {
                run(
                    c,
                    true,
                    "select pgq.register_consumer($1, $2)",
                    &[queue.into(), consumer.as_str().into()],
                );
                lock_sub(c, queue, &consumer).unwrap_or_else(|| {
                    raise(format!(
                        "Not subscriber to queue: {}/{consumer}",
                        queue.unwrap_or("")
                    ))
                })
            }
        };
        let (qid, main_co, main_sub_id, main_batch) = main;
        if main_batch.is_some() {
            raise("main consumer has batch open?");
        }
        // 2. the sub-consumer, registered on first use
        let me = match lock_sub(c, queue, &subcon) {
            Some(s) => s,
            None => {
                register_subconsumer(c, queue, &consumer, &sub);
                lock_sub(c, queue, &subcon).unwrap_or_else(|| {
                    raise(format!(
                        "Not subscriber to queue: {}/{subcon}",
                        queue.unwrap_or("")
                    ))
                })
            }
        };
        let (_, my_co, _, my_batch) = me;
        // 3. a batch already handed to this sub-consumer
        if let Some(b) = my_batch {
            exec(
                c,
                "update pgq.subscription set sub_active = pg_catalog.now() \
                  where sub_queue = $1 and sub_consumer = $2",
                &[qid.into(), my_co.into()],
            );
            return Some(b);
        }
        // 4. take over the batch of a sub-consumer that has been silent too long
        if let Some(dead) = dead_interval {
            let t = run(
                c,
                true,
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
            );
            let victim = first(t).map(|r| {
                (
                    col::<i32>(&r, 1).unwrap_or(0),
                    col::<i64>(&r, 2),
                    col::<i64>(&r, 3),
                    col::<i64>(&r, 4),
                )
            });
            if let Some((dead_co, batch, last, next)) = victim {
                exec(
                    c,
                    "delete from pgq.subscription where sub_queue = $1 and sub_consumer = $2",
                    &[qid.into(), dead_co.into()],
                );
                if let Some(b) = batch {
                    exec(
                        c,
                        "update pgq.subscription \
                            set sub_batch = $3, sub_last_tick = $4, sub_next_tick = $5, \
                                sub_active = pg_catalog.now() \
                          where sub_queue = $1 and sub_consumer = $2",
                        &[qid.into(), my_co.into(), b.into(), last.into(), next.into()],
                    );
                    return Some(b);
                }
            }
        }
        // 5. a new batch for the main consumer ...
        let t = run(
            c,
            true,
            "select batch_id, prev_tick_id, cur_tick_id \
               from pgq.next_batch_custom($1, $2, $3, $4, $5)",
            &[
                queue.into(),
                consumer.as_str().into(),
                min_lag.into(),
                min_count.into(),
                min_interval.into(),
            ],
        );
        let (batch, prev, cur) = match first(t) {
            Some(r) => (col::<i64>(&r, 1), col::<i64>(&r, 2), col::<i64>(&r, 3)),
            None => (None, None, None),
        };
        let batch = batch?;
        // 6. ... closed on the main row at once and handed to the sub-consumer
        exec(
            c,
            "update pgq.subscription \
                set sub_last_tick = sub_next_tick, sub_next_tick = null, sub_batch = null \
              where sub_queue = $1 and sub_consumer = $2",
            &[qid.into(), main_co.into()],
        );
        exec(
            c,
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
        );
        Some(batch)
    })
}

#[pg_extern(sql = false)]
fn pgq_coop_next_batch(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_subconsumer_name: Option<&str>,
) -> Option<i64> {
    next_batch(
        i_queue_name,
        i_consumer_name,
        i_subconsumer_name,
        None,
        None,
        None,
        None,
    )
}

#[pg_extern(sql = false)]
fn pgq_coop_next_batch_dead(
    i_queue_name: Option<&str>,
    i_consumer_name: Option<&str>,
    i_subconsumer_name: Option<&str>,
    i_dead_interval: Option<Interval>,
) -> Option<i64> {
    next_batch(
        i_queue_name,
        i_consumer_name,
        i_subconsumer_name,
        None,
        None,
        None,
        i_dead_interval,
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
    next_batch(
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
    next_batch(
        i_queue_name,
        i_consumer_name,
        i_subconsumer_name,
        i_min_lag,
        i_min_count,
        i_min_interval,
        i_dead_interval,
    )
}

#[pg_extern(sql = false)]
fn pgq_coop_finish_batch(i_batch_id: Option<i64>) -> Option<i32> {
    let done = Spi::connect_mut(|c| {
        exec(
            c,
            "update pgq.subscription \
                set sub_next_tick = null, sub_batch = null, sub_last_tick = null, \
                    sub_active = pg_catalog.now() \
              where sub_batch = $1",
            &[i_batch_id.into()],
        )
    });
    if done == 0 {
        let b = i_batch_id.map_or_else(|| "<NULL>".to_string(), |b| b.to_string());
        warning(format!("coop_finish_batch: batch {b} not found"));
        return Some(0);
    }
    Some(1)
}

#[pg_extern(sql = false)]
fn pgq_coop_version() -> Option<String> {
    Some("3.1.1".to_string())
}
