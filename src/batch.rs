//! Consumer hot path: next_batch, the batch query, get_batch_events/get_batch_cursor,
//! finish_batch.

use crate::db::{get, kept, req};
use crate::errors::{or_null, raise, warning, OrReport, SpiResultExt};
use crate::insert::{text_datum, TextDatum};
use crate::logic::batch_sql::{batch_sql, batch_tables, QueueTables};
use crate::logic::snapshot::Snapshot;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

pub struct BatchDef {
    pub sub_id: i32,
    pub tables: Vec<String>,
    pub sn1: Snapshot,
    pub sn2: Snapshot,
}

fn snap(text: &str) -> Snapshot {
    Snapshot::parse(text).unwrap_or_else(|e| raise(e.to_string()))
}

/// The batch's subscription, queue rotation state and tick snapshots; None if unknown.
pub fn load_batch(client: &SpiClient<'_>, batch_id: i64) -> Option<BatchDef> {
    const SQL: &str = "select s.sub_id, q.queue_data_pfx, q.queue_cur_table, q.queue_ntables, \
                    q.queue_switch_step1, q.queue_switch_step2, \
                    t1.tick_snapshot::text, t2.tick_snapshot::text \
               from pgq.subscription s \
               join pgq.queue q on q.queue_id = s.sub_queue \
               join pgq.tick t1 on t1.tick_queue = s.sub_queue and t1.tick_id = s.sub_last_tick \
               join pgq.tick t2 on t2.tick_queue = s.sub_queue and t2.tick_id = s.sub_next_tick \
              where s.sub_batch = $1";
    let plan = kept(client, SQL, &[pg_sys::INT8OID], false);
    let rows = client
        .select(&*plan, Some(1), &[batch_id.into()])
        .or_raise("reading batch");
    let row = rows.first();
    if row.is_empty() {
        return None;
    }
    // every column but queue_switch_step2 is NOT NULL in the schema
    const W: &str = "reading batch";
    let sub_id: i32 = req(&row, 1, W).or_report();
    let pfx: String = req(&row, 2, W).or_report();
    let cur_table: i32 = req(&row, 3, W).or_report();
    let ntables: i32 = req(&row, 4, W).or_report();
    let step1: i64 = req(&row, 5, W).or_report();
    let step2: Option<i64> = get(&row, 6, W).or_report();
    let sn1 = snap(&req::<String>(&row, 7, W).or_report());
    let sn2 = snap(&req::<String>(&row, 8, W).or_report());
    let qt = QueueTables {
        data_pfx: &pfx,
        cur_table,
        ntables,
        switch_step1: step1,
        switch_step2: step2,
    };
    let tables = batch_tables(&qt, sn1.xmin, sn2.xmax);
    Some(BatchDef {
        sub_id,
        tables,
        sn1,
        sn2,
    })
}

pub fn batch_event_sql(batch_id: i64) -> String {
    Spi::connect(|client| {
        let Some(b) = load_batch(client, batch_id) else {
            raise("batch not found")
        };
        // the stored prefix is data: each table name is quoted as pgq.quote_fqname does
        let quoted: Vec<String> = b
            .tables
            .iter()
            .map(|t| crate::names::quote_fqname(t))
            .collect();
        batch_sql(&b.sn1, &b.sn2, &quoted, b.sub_id)
    })
}

pub fn batch_event_tables(batch_id: i64) -> Vec<String> {
    Spi::connect(|client| {
        let Some(b) = load_batch(client, batch_id) else {
            raise(format!("Cannot find data for batch {batch_id}"))
        };
        b.tables
    })
}

pub fn finish_batch(batch_id: i64) -> i32 {
    let done = Spi::connect_mut(|client| {
        const SQL: &str = "update pgq.subscription \
                    set sub_active = pg_catalog.now(), sub_last_tick = sub_next_tick, \
                        sub_next_tick = null, sub_batch = null \
                  where sub_batch = $1 returning sub_id";
        let plan = kept(client, SQL, &[pg_sys::INT8OID], true);
        let rows = client
            .update(&*plan, None, &[batch_id.into()])
            .or_raise("finishing batch");
        rows.len()
    });
    if done == 0 {
        warning(format!("finish_batch: batch {batch_id} not found"));
        return 0;
    }
    1
}

pub type BatchRow = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    Option<i64>,
    Option<i64>,
);

const NO_BATCH: BatchRow = (None, None, None, None, None, None, None);

/// next_batch_custom: (batch_id, cur_tick_id, prev_tick_id, cur_tick_time,
/// prev_tick_time, cur_tick_event_seq, prev_tick_event_seq).
/// `queue` and `consumer` are the names' bytes in the server encoding.
pub fn next_batch_custom(
    queue: Option<&[u8]>,
    consumer: Option<&[u8]>,
    min_lag: Option<Interval>,
    min_count: Option<i32>,
    min_interval: Option<Interval>,
) -> BatchRow {
    Spi::connect_mut(|client| {
        let text = |b: Option<&[u8]>| b.map(|b| TextDatum(text_datum(b)));
        let args: [DatumWithOid; 2] = [text(queue).into(), text(consumer).into()];
        let queue = queue.map(crate::names::display);
        let consumer = consumer.map(crate::names::display);
        const SUB: &str = "select s.sub_queue, s.sub_consumer, s.sub_batch, s.sub_last_tick, \
                        t1.tick_id, t1.tick_time, t1.tick_event_seq, \
                        t2.tick_id, t2.tick_time, t2.tick_event_seq \
                   from pgq.queue q \
                   join pgq.subscription s on s.sub_queue = q.queue_id \
                   join pgq.consumer c on c.co_id = s.sub_consumer \
                   left join pgq.tick t1 on t1.tick_queue = s.sub_queue and t1.tick_id = s.sub_last_tick \
                   left join pgq.tick t2 on t2.tick_queue = s.sub_queue and t2.tick_id = s.sub_next_tick \
                  where q.queue_name = $1 and c.co_name = $2";
        let plan = kept(client, SUB, &[pg_sys::TEXTOID, pg_sys::TEXTOID], false);
        let rows = client
            .select(&*plan, Some(1), &args)
            .or_raise("reading subscription");
        let row = rows.first();
        if row.is_empty() {
            raise(format!(
                "Not subscriber to queue: {}/{}",
                or_null(queue.as_deref()),
                or_null(consumer.as_deref())
            ));
        }
        let sub_queue: i32 = req(&row, 1, "reading subscription").or_report();
        let sub_consumer: i32 = req(&row, 2, "reading subscription").or_report();
        let sub_batch: Option<i64> = row.get(3).or_raise("sub_batch");
        let prev_id: Option<i64> = row.get(5).or_raise("tick_id");
        let prev_time: Option<TimestampWithTimeZone> = row.get(6).or_raise("tick_time");
        let prev_seq: Option<i64> = row.get(7).or_raise("tick_event_seq");
        let Some(prev_id) = prev_id else {
            raise(format!(
                "PgQ corruption: Consumer {} on queue {} does not see tick <NULL>",
                or_null(consumer.as_deref()),
                or_null(queue.as_deref())
            ))
        };
        if let Some(batch) = sub_batch {
            // an open batch is handed out again, unchanged
            return (
                Some(batch),
                row.get(8).or_raise("tick_id"),
                Some(prev_id),
                row.get(9).or_raise("tick_time"),
                prev_time,
                row.get(10).or_raise("tick_event_seq"),
                prev_seq,
            );
        }
        let next = if min_count.is_none() && min_interval.is_none() {
            const NEXT: &str = "select tick_id, tick_time, tick_event_seq, \
                            ($3::interval is not null and pg_catalog.now() - tick_time < $3::interval) \
                       from pgq.tick where tick_queue = $1 and tick_id > $2 \
                      order by tick_queue, tick_id limit 1";
            let plan = kept(
                client,
                NEXT,
                &[pg_sys::INT4OID, pg_sys::INT8OID, pg_sys::INTERVALOID],
                false,
            );
            client
                .select(
                    &*plan,
                    Some(1),
                    &[sub_queue.into(), prev_id.into(), min_lag.into()],
                )
                .or_raise("finding next tick")
        } else {
            client
                .select(
                    "select h.next_tick_id, h.next_tick_time, h.next_tick_seq, \
                            ($7::interval is not null and pg_catalog.now() - h.next_tick_time < $7::interval) \
                       from pgq.find_tick_helper($1, $2, $3, $4, $5, $6) h \
                      where h.next_tick_id is not null",
                    Some(1),
                    &[
                        sub_queue.into(),
                        prev_id.into(),
                        prev_time.into(),
                        prev_seq.into(),
                        min_count.map(i64::from).into(),
                        min_interval.into(),
                        min_lag.into(),
                    ],
                )
                .or_raise("finding next tick")
        };
        let next = next.first();
        if next.is_empty() {
            return NO_BATCH;
        }
        let next_id: Option<i64> = next.get(1).or_raise("tick_id");
        let next_time: Option<TimestampWithTimeZone> = next.get(2).or_raise("tick_time");
        let next_seq: Option<i64> = next.get(3).or_raise("tick_event_seq");
        // `$n is not null and ...` over a NOT NULL tick_time: never NULL
        let too_young: bool = req(&next, 4, "finding next tick").or_report();
        if next_id.is_none() || too_young {
            return NO_BATCH;
        }
        // No "sub_batch is null" guard: like the original, a concurrent caller that
        // waited on the row lock replaces the other session's batch with its own.
        const OPEN: &str = "update pgq.subscription \
                    set sub_batch = pg_catalog.nextval('pgq.batch_id_seq'), sub_next_tick = $3, \
                        sub_active = pg_catalog.now() \
                  where sub_queue = $1 and sub_consumer = $2 \
                  returning sub_batch";
        let plan = kept(
            client,
            OPEN,
            &[pg_sys::INT4OID, pg_sys::INT4OID, pg_sys::INT8OID],
            true,
        );
        let upd = client
            .update(
                &*plan,
                None,
                &[sub_queue.into(), sub_consumer.into(), next_id.into()],
            )
            .or_raise("opening batch");
        if upd.is_empty() {
            raise(format!(
                "Not subscriber to queue: {}/{}",
                or_null(queue.as_deref()),
                or_null(consumer.as_deref())
            ));
        }
        let batch: Option<i64> = upd.first().get(1).or_raise("sub_batch");
        (
            batch,
            next_id,
            Some(prev_id),
            next_time,
            prev_time,
            next_seq,
            prev_seq,
        )
    })
}
