//! Schema `pgq_ext`: exactly-once tracking on the consumer's target database
//! (spec/pgq_node.md §6). The full-argument forms are Rust and SECURITY DEFINER; the
//! short forms that only pass `''` as the sub-consumer are one-line SQL functions in
//! sql/pgq_ext.sql (not SECURITY DEFINER, as in the original).

use crate::spi_util::{col, exec, first, found, one, run};
use pgrx::prelude::*;

#[pg_extern(sql = false)]
fn pgq_ext_get_last_tick(a_consumer: Option<&str>, a_subconsumer: Option<&str>) -> Option<i64> {
    Spi::connect_mut(|c| {
        one(
            c,
            false,
            "select last_tick_id from pgq_ext.completed_tick \
              where consumer_id = $1 and subconsumer_id = $2",
            &[a_consumer.into(), a_subconsumer.into()],
        )
    })
}

#[pg_extern(sql = false)]
fn pgq_ext_set_last_tick(
    a_consumer: Option<&str>,
    a_subconsumer: Option<&str>,
    a_tick_id: Option<i64>,
) -> Option<i32> {
    Spi::connect_mut(|c| {
        if a_tick_id.is_none() {
            exec(
                c,
                "delete from pgq_ext.completed_tick where consumer_id = $1 and subconsumer_id = $2",
                &[a_consumer.into(), a_subconsumer.into()],
            );
            return;
        }
        let args = [a_consumer.into(), a_subconsumer.into(), a_tick_id.into()];
        let n = exec(
            c,
            "update pgq_ext.completed_tick set last_tick_id = $3 \
              where consumer_id = $1 and subconsumer_id = $2",
            &args,
        );
        if n == 0 {
            exec(
                c,
                "insert into pgq_ext.completed_tick (consumer_id, subconsumer_id, last_tick_id) \
                 values ($1, $2, $3)",
                &args,
            );
        }
    });
    Some(1)
}

fn is_batch_done(
    c: &mut pgrx::spi::SpiClient<'_>,
    consumer: Option<&str>,
    sub: Option<&str>,
    batch: Option<i64>,
) -> Option<bool> {
    let t = run(
        c,
        false,
        "select last_batch_id = $3 from pgq_ext.completed_batch \
          where consumer_id = $1 and subconsumer_id = $2",
        &[consumer.into(), sub.into(), batch.into()],
    );
    match first(t) {
        None => Some(false),
        Some(r) => col::<bool>(&r, 1),
    }
}

#[pg_extern(sql = false)]
fn pgq_ext_is_batch_done(
    a_consumer: Option<&str>,
    a_subconsumer: Option<&str>,
    a_batch_id: Option<i64>,
) -> Option<bool> {
    Spi::connect_mut(|c| is_batch_done(c, a_consumer, a_subconsumer, a_batch_id))
}

#[pg_extern(sql = false)]
fn pgq_ext_set_batch_done(
    a_consumer: Option<&str>,
    a_subconsumer: Option<&str>,
    a_batch_id: Option<i64>,
) -> Option<bool> {
    Spi::connect_mut(|c| {
        if is_batch_done(c, a_consumer, a_subconsumer, a_batch_id) == Some(true) {
            return Some(false);
        }
        if a_batch_id.unwrap_or(0) > 0 {
            let args = [a_consumer.into(), a_subconsumer.into(), a_batch_id.into()];
            let n = exec(
                c,
                "update pgq_ext.completed_batch set last_batch_id = $3 \
                  where consumer_id = $1 and subconsumer_id = $2",
                &args,
            );
            if n == 0 {
                exec(
                    c,
                    "insert into pgq_ext.completed_batch (consumer_id, subconsumer_id, last_batch_id) \
                     values ($1, $2, $3)",
                    &args,
                );
            }
        }
        Some(true)
    })
}

fn is_event_done(
    c: &mut pgrx::spi::SpiClient<'_>,
    consumer: Option<&str>,
    sub: Option<&str>,
    batch: Option<i64>,
    event: Option<i64>,
) -> bool {
    found(
        c,
        false,
        "select 1 from pgq_ext.completed_event \
          where consumer_id = $1 and subconsumer_id = $2 and batch_id = $3 and event_id = $4",
        &[consumer.into(), sub.into(), batch.into(), event.into()],
    )
}

#[pg_extern(sql = false)]
fn pgq_ext_is_event_done(
    a_consumer: Option<&str>,
    a_subconsumer: Option<&str>,
    a_batch_id: Option<i64>,
    a_event_id: Option<i64>,
) -> Option<bool> {
    Some(Spi::connect_mut(|c| {
        is_event_done(c, a_consumer, a_subconsumer, a_batch_id, a_event_id)
    }))
}

#[pg_extern(sql = false)]
fn pgq_ext_set_event_done(
    a_consumer: Option<&str>,
    a_subconsumer: Option<&str>,
    a_batch_id: Option<i64>,
    a_event_id: Option<i64>,
) -> Option<bool> {
    Spi::connect_mut(|c| {
        if is_event_done(c, a_consumer, a_subconsumer, a_batch_id, a_event_id) {
            return Some(false);
        }
        let t = run(
            c,
            true,
            "select cur_batch_id from pgq_ext.partial_batch \
              where consumer_id = $1 and subconsumer_id = $2 for update",
            &[a_consumer.into(), a_subconsumer.into()],
        );
        let cur: Option<Option<i64>> = first(t).map(|r| col::<i64>(&r, 1));
        match cur {
            None => {
                exec(
                    c,
                    "insert into pgq_ext.partial_batch (consumer_id, subconsumer_id, cur_batch_id) \
                     values ($1, $2, $3)",
                    &[a_consumer.into(), a_subconsumer.into(), a_batch_id.into()],
                );
            }
            Some(old) if old != a_batch_id => {
                // a new batch: the events of the previous one are no longer needed
                exec(
                    c,
                    "delete from pgq_ext.completed_event \
                      where consumer_id = $1 and subconsumer_id = $2 and batch_id = $3",
                    &[a_consumer.into(), a_subconsumer.into(), old.into()],
                );
                exec(
                    c,
                    "update pgq_ext.partial_batch set cur_batch_id = $3 \
                      where consumer_id = $1 and subconsumer_id = $2",
                    &[a_consumer.into(), a_subconsumer.into(), a_batch_id.into()],
                );
            }
            Some(_) => {}
        }
        exec(
            c,
            "insert into pgq_ext.completed_event (consumer_id, subconsumer_id, batch_id, event_id) \
             values ($1, $2, $3, $4)",
            &[
                a_consumer.into(),
                a_subconsumer.into(),
                a_batch_id.into(),
                a_event_id.into(),
            ],
        );
        Some(true)
    })
}

/// Tables of pgq_ext 3.1 already have every column; nothing to upgrade.
#[pg_extern(sql = false)]
fn pgq_ext_upgrade_schema() -> Option<i32> {
    Some(0)
}

#[pg_extern(sql = false)]
fn pgq_ext_version() -> Option<String> {
    Some("3.1".to_string())
}
