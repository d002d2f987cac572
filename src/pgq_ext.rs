//! Schema `pgq_ext`: exactly-once tracking on the consumer's target database
//! (docs/pgq_node.md). The full-argument forms are Rust and SECURITY DEFINER; the
//! short forms that only pass `''` as the sub-consumer are one-line SQL functions in
//! sql/pgq_ext.sql (not SECURITY DEFINER, as in the original).

use crate::db::{self, first, get, Client};
use crate::errors::{OrReport, PgqResult};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

const M: &str = "pgq_ext";

/// UPDATE the row, or INSERT it when there was none (`args` serve both statements).
fn update_or_insert(
    c: Client,
    what: &str,
    update: &'static str,
    insert: &'static str,
    args: &[DatumWithOid],
) -> PgqResult<()> {
    if c.execute(what, update, args)? == 0 {
        c.execute(what, insert, args)?;
    }
    Ok(())
}

pub fn get_last_tick(
    c: Client,
    consumer: Option<&str>,
    sub: Option<&str>,
) -> PgqResult<Option<i64>> {
    c.one(
        "reading the last tick",
        "select last_tick_id from pgq_ext.completed_tick \
          where consumer_id = $1 and subconsumer_id = $2",
        &[consumer.into(), sub.into()],
    )
}

#[pg_extern(sql = false)]
fn pgq_ext_get_last_tick(a_consumer: Option<&str>, a_subconsumer: Option<&str>) -> Option<i64> {
    db::read(M, |c| get_last_tick(c, a_consumer, a_subconsumer)).or_report()
}

/// Record the last tick (NULL: forget it).
pub fn set_last_tick(
    c: Client,
    consumer: Option<&str>,
    sub: Option<&str>,
    tick: Option<i64>,
) -> PgqResult<()> {
    const W: &str = "set_last_tick";
    if tick.is_none() {
        c.execute(
            W,
            "delete from pgq_ext.completed_tick where consumer_id = $1 and subconsumer_id = $2",
            &[consumer.into(), sub.into()],
        )?;
        return Ok(());
    }
    update_or_insert(
        c,
        W,
        "update pgq_ext.completed_tick set last_tick_id = $3 \
          where consumer_id = $1 and subconsumer_id = $2",
        "insert into pgq_ext.completed_tick (consumer_id, subconsumer_id, last_tick_id) \
         values ($1, $2, $3)",
        &[consumer.into(), sub.into(), tick.into()],
    )
}

#[pg_extern(sql = false)]
fn pgq_ext_set_last_tick(
    a_consumer: Option<&str>,
    a_subconsumer: Option<&str>,
    a_tick_id: Option<i64>,
) -> Option<i32> {
    db::write(M, |c| {
        set_last_tick(c, a_consumer, a_subconsumer, a_tick_id)
    })
    .or_report();
    Some(1)
}

/// Whether the batch is the last one recorded (NULL when the comparison is).
pub fn is_batch_done(
    c: Client,
    consumer: Option<&str>,
    sub: Option<&str>,
    batch: Option<i64>,
) -> PgqResult<Option<bool>> {
    const W: &str = "is_batch_done";
    let t = c.read(
        W,
        "select last_batch_id = $3 from pgq_ext.completed_batch \
          where consumer_id = $1 and subconsumer_id = $2",
        &[consumer.into(), sub.into(), batch.into()],
    )?;
    match first(t) {
        None => Ok(Some(false)),
        Some(r) => get::<bool>(&r, 1, W),
    }
}

#[pg_extern(sql = false)]
fn pgq_ext_is_batch_done(
    a_consumer: Option<&str>,
    a_subconsumer: Option<&str>,
    a_batch_id: Option<i64>,
) -> Option<bool> {
    db::read(M, |c| {
        is_batch_done(c, a_consumer, a_subconsumer, a_batch_id)
    })
    .or_report()
}

/// Record a batch as done; false if it already was.
pub fn set_batch_done(
    c: Client,
    consumer: Option<&str>,
    sub: Option<&str>,
    batch: Option<i64>,
) -> PgqResult<bool> {
    const W: &str = "set_batch_done";
    if is_batch_done(c, consumer, sub, batch)? == Some(true) {
        return Ok(false);
    }
    if batch.unwrap_or(0) > 0 {
        update_or_insert(
            c,
            W,
            "update pgq_ext.completed_batch set last_batch_id = $3 \
              where consumer_id = $1 and subconsumer_id = $2",
            "insert into pgq_ext.completed_batch (consumer_id, subconsumer_id, last_batch_id) \
             values ($1, $2, $3)",
            &[consumer.into(), sub.into(), batch.into()],
        )?;
    }
    Ok(true)
}

#[pg_extern(sql = false)]
fn pgq_ext_set_batch_done(
    a_consumer: Option<&str>,
    a_subconsumer: Option<&str>,
    a_batch_id: Option<i64>,
) -> Option<bool> {
    Some(
        db::write(M, |c| {
            set_batch_done(c, a_consumer, a_subconsumer, a_batch_id)
        })
        .or_report(),
    )
}

pub fn is_event_done(
    c: Client,
    consumer: Option<&str>,
    sub: Option<&str>,
    batch: Option<i64>,
    event: Option<i64>,
) -> PgqResult<bool> {
    c.exists(
        "is_event_done",
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
    Some(
        db::read(M, |c| {
            is_event_done(c, a_consumer, a_subconsumer, a_batch_id, a_event_id)
        })
        .or_report(),
    )
}

/// Record an event as done; false if it already was.
pub fn set_event_done(
    c: Client,
    consumer: Option<&str>,
    sub: Option<&str>,
    batch: Option<i64>,
    event: Option<i64>,
) -> PgqResult<bool> {
    const W: &str = "set_event_done";
    if is_event_done(c, consumer, sub, batch, event)? {
        return Ok(false);
    }
    let t = c.write(
        W,
        "select cur_batch_id from pgq_ext.partial_batch \
          where consumer_id = $1 and subconsumer_id = $2 for update",
        &[consumer.into(), sub.into()],
    )?;
    let cur: Option<Option<i64>> = first(t).map(|r| get::<i64>(&r, 1, W)).transpose()?;
    match cur {
        None => {
            c.execute(
                W,
                "insert into pgq_ext.partial_batch (consumer_id, subconsumer_id, cur_batch_id) \
                 values ($1, $2, $3)",
                &[consumer.into(), sub.into(), batch.into()],
            )?;
        }
        Some(old) if old != batch => {
            // a new batch: the events of the previous one are no longer needed
            c.execute(
                W,
                "delete from pgq_ext.completed_event \
                  where consumer_id = $1 and subconsumer_id = $2 and batch_id = $3",
                &[consumer.into(), sub.into(), old.into()],
            )?;
            c.execute(
                W,
                "update pgq_ext.partial_batch set cur_batch_id = $3 \
                  where consumer_id = $1 and subconsumer_id = $2",
                &[consumer.into(), sub.into(), batch.into()],
            )?;
        }
        Some(_) => {}
    }
    c.execute(
        W,
        "insert into pgq_ext.completed_event (consumer_id, subconsumer_id, batch_id, event_id) \
         values ($1, $2, $3, $4)",
        &[consumer.into(), sub.into(), batch.into(), event.into()],
    )?;
    Ok(true)
}

#[pg_extern(sql = false)]
fn pgq_ext_set_event_done(
    a_consumer: Option<&str>,
    a_subconsumer: Option<&str>,
    a_batch_id: Option<i64>,
    a_event_id: Option<i64>,
) -> Option<bool> {
    Some(
        db::write(M, |c| {
            set_event_done(c, a_consumer, a_subconsumer, a_batch_id, a_event_id)
        })
        .or_report(),
    )
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
