//! The SQL surface implemented in Rust (schema `pgq`). Thin glue: the logic lives in
//! insert.rs, batch.rs, ticker.rs and logic/. Everything else of the API is SQL in
//! sql/pgq_functions.sql.

use pgrx::prelude::*;

#[pg_schema]
#[allow(clippy::type_complexity)] // pgrx needs the name!() columns spelled out in signatures
pub mod pgq {
    use crate::batch::{self, BatchRow};
    use crate::insert::{self, arg_bytes, NewEvent, TextArg};
    use crate::ticker;
    use pgrx::prelude::*;

    /// insert_event(queue, type, data): one event with no extra fields. Not SECURITY
    /// DEFINER (as in the original, where it calls the 7-argument SD form): the insert
    /// itself runs as the extension owner, see insert::as_owner. When the 7-argument
    /// form was replaced, it is called by name, as the original does.
    #[pg_extern(name = "insert_event", volatile, parallel_unsafe)]
    fn insert_event3(
        queue_name: Option<TextArg<'_>>,
        ev_type: Option<TextArg<'_>>,
        ev_data: Option<TextArg<'_>>,
    ) -> Option<i64> {
        let (q, t, d) = (
            arg_bytes(queue_name),
            arg_bytes(ev_type),
            arg_bytes(ev_data),
        );
        if insert::replaced().insert_event {
            return insert::call_insert_event_sql(q, t, d, [None; 4]);
        }
        insert::as_owner(|| insert::insert_event7(q, t, d, [None; 4]))
    }

    /// insert_event(queue, type, data, extra1..4): calls insert_event_raw (directly
    /// while that is the extension's own, else by name).
    #[allow(clippy::too_many_arguments)]
    #[pg_extern(name = "insert_event", security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pgq, pg_temp)]
    fn insert_event7(
        queue_name: Option<TextArg<'_>>,
        ev_type: Option<TextArg<'_>>,
        ev_data: Option<TextArg<'_>>,
        ev_extra1: Option<TextArg<'_>>,
        ev_extra2: Option<TextArg<'_>>,
        ev_extra3: Option<TextArg<'_>>,
        ev_extra4: Option<TextArg<'_>>,
    ) -> Option<i64> {
        insert::insert_event7(
            arg_bytes(queue_name),
            arg_bytes(ev_type),
            arg_bytes(ev_data),
            [
                arg_bytes(ev_extra1),
                arg_bytes(ev_extra2),
                arg_bytes(ev_extra3),
                arg_bytes(ev_extra4),
            ],
        )
    }

    #[allow(clippy::too_many_arguments)]
    #[pg_extern(volatile, parallel_unsafe)]
    fn insert_event_raw(
        queue_name: Option<TextArg<'_>>,
        ev_id: Option<i64>,
        ev_time: Option<TimestampWithTimeZone>,
        ev_owner: Option<i32>,
        ev_retry: Option<i32>,
        ev_type: Option<TextArg<'_>>,
        ev_data: Option<TextArg<'_>>,
        ev_extra1: Option<TextArg<'_>>,
        ev_extra2: Option<TextArg<'_>>,
        ev_extra3: Option<TextArg<'_>>,
        ev_extra4: Option<TextArg<'_>>,
    ) -> Option<i64> {
        Some(insert::insert_event_raw(
            arg_bytes(queue_name),
            NewEvent {
                ev_id,
                ev_time,
                ev_owner,
                ev_retry,
                ev_type: arg_bytes(ev_type),
                ev_data: arg_bytes(ev_data),
                extra: [
                    arg_bytes(ev_extra1),
                    arg_bytes(ev_extra2),
                    arg_bytes(ev_extra3),
                    arg_bytes(ev_extra4),
                ],
            },
        ))
    }

    /// Statement trigger on pgq.queue: tell every backend's insert cache.
    #[pg_trigger]
    fn _queue_cache_inval<'a>(
        trigger: &'a PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
        insert::invalidate_queue_cache(trigger.relid()?);
        Ok(None)
    }

    /// ticker(): tick every locally ticked queue that needs it; returns how many got a tick.
    #[pg_extern(name = "ticker", security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pgq, pg_temp)]
    fn ticker_all() -> Option<i64> {
        Some(ticker::ticker_all())
    }

    /// ticker(queue): tick one queue if its thresholds say so; returns the tick id or NULL.
    #[pg_extern(name = "ticker", security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pgq, pg_temp)]
    fn ticker_queue(i_queue_name: Option<TextArg<'_>>) -> Option<i64> {
        let Some(q) = arg_bytes(i_queue_name) else {
            crate::errors::raise("no such queue")
        };
        ticker::ticker_queue(q)
    }

    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pgq, pg_temp)]
    fn next_batch(
        i_queue_name: Option<TextArg<'_>>,
        i_consumer_name: Option<TextArg<'_>>,
    ) -> Option<i64> {
        batch::next_batch_custom(
            arg_bytes(i_queue_name),
            arg_bytes(i_consumer_name),
            None,
            None,
            None,
        )
        .0
    }

    /// Internal: the body of next_batch_custom/next_batch_info (wrapped in SQL so the
    /// public functions return a single record like the original).
    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pgq, pg_temp)]
    fn _next_batch_custom(
        i_queue_name: Option<TextArg<'_>>,
        i_consumer_name: Option<TextArg<'_>>,
        i_min_lag: Option<Interval>,
        i_min_count: Option<i32>,
        i_min_interval: Option<Interval>,
    ) -> TableIterator<
        'static,
        (
            name!(batch_id, Option<i64>),
            name!(cur_tick_id, Option<i64>),
            name!(prev_tick_id, Option<i64>),
            name!(cur_tick_time, Option<TimestampWithTimeZone>),
            name!(prev_tick_time, Option<TimestampWithTimeZone>),
            name!(cur_tick_event_seq, Option<i64>),
            name!(prev_tick_event_seq, Option<i64>),
        ),
    > {
        let row: BatchRow = batch::next_batch_custom(
            arg_bytes(i_queue_name),
            arg_bytes(i_consumer_name),
            i_min_lag,
            i_min_count,
            i_min_interval,
        );
        TableIterator::once(row)
    }

    #[pg_extern(security_definer, volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pgq, pg_temp)]
    fn finish_batch(x_batch_id: Option<i64>) -> Option<i32> {
        match x_batch_id {
            Some(b) => Some(batch::finish_batch(b)),
            None => {
                crate::errors::warning("finish_batch: batch <NULL> not found");
                Some(0)
            }
        }
    }

    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pgq, pg_temp)]
    fn batch_event_sql(x_batch_id: Option<i64>) -> Option<String> {
        let Some(b) = x_batch_id else {
            crate::errors::raise("batch not found")
        };
        Some(batch::batch_event_sql(b))
    }

    #[pg_extern(volatile, parallel_unsafe)]
    #[search_path(pg_catalog, pgq, pg_temp)]
    fn batch_event_tables(x_batch_id: Option<i64>) -> SetOfIterator<'static, String> {
        let Some(b) = x_batch_id else {
            crate::errors::raise("Cannot find data for batch <NULL>")
        };
        SetOfIterator::new(batch::batch_event_tables(b))
    }

    /// Internal: the sequence a name stored in pgq.queue denotes (read as
    /// pgq.quote_fqname reads it), or NULL; never a syntax error (src/names.rs).
    #[pg_extern(stable, strict, parallel_safe)]
    fn _stored_seq(name: &str) -> Option<pg_sys::Oid> {
        crate::names::stored_seqid(name)
    }

    /// Internal: called at the end of CREATE EXTENSION; wakes the launcher at commit
    /// so the new database gets its ticker at once, or says that nothing will tick.
    #[pg_extern(volatile, parallel_unsafe)]
    fn _wake_launcher() -> bool {
        if crate::bgworker::preloaded() {
            crate::bgworker::hooks::request_launcher_wakeup();
            true
        } else {
            // a WARNING: messages below that are not shown while an extension script runs
            ereport!(
                WARNING,
                PgSqlErrorCode::ERRCODE_WARNING,
                "pgq is not in shared_preload_libraries: queues are not ticked or maintained unless an external ticker (pgqd) runs"
            );
            false
        }
    }

    /// 0.2.0's worker_status (14 columns): kept for that version's SQL, which names
    /// this symbol, until ALTER EXTENSION pgq UPDATE.
    #[pg_extern(sql = false)]
    fn worker_status() -> TableIterator<
        'static,
        (
            name!(worker, String),
            name!(database, Option<String>),
            name!(object, Option<String>),
            name!(pid, Option<i32>),
            name!(started_at, Option<TimestampWithTimeZone>),
            name!(last_tick, Option<TimestampWithTimeZone>),
            name!(last_maint, Option<TimestampWithTimeZone>),
            name!(last_retry, Option<TimestampWithTimeZone>),
            name!(ticks, i64),
            name!(restarts, i32),
            name!(no_extension, bool),
            name!(last_error, Option<String>),
            name!(last_sqlstate, Option<String>),
            name!(last_error_time, Option<TimestampWithTimeZone>),
        ),
    > {
        TableIterator::new(crate::bgworker::status_rows())
    }

    /// The background workers: the launcher and one row per worker slot. `worker` is the
    /// kind (launcher, ticker, replay), `object` what a worker works on inside its
    /// database (a replay worker: the queue); the last five columns describe replay.
    #[pg_extern(volatile, parallel_unsafe, name = "worker_status")]
    #[search_path(pg_catalog, pgq, pg_temp)]
    fn worker_status_v2() -> TableIterator<
        'static,
        (
            name!(worker, String),
            name!(database, Option<String>),
            name!(object, Option<String>),
            name!(pid, Option<i32>),
            name!(started_at, Option<TimestampWithTimeZone>),
            name!(last_tick, Option<TimestampWithTimeZone>),
            name!(last_maint, Option<TimestampWithTimeZone>),
            name!(last_retry, Option<TimestampWithTimeZone>),
            name!(ticks, i64),
            name!(restarts, i32),
            name!(no_extension, bool),
            name!(last_error, Option<String>),
            name!(last_sqlstate, Option<String>),
            name!(last_error_time, Option<TimestampWithTimeZone>),
            name!(provider, Option<String>),
            name!(batch_id, Option<i64>),
            name!(tick_id, Option<i64>),
            name!(lag, Option<pgrx::datum::Interval>),
            name!(events, Option<i64>),
        ),
    > {
        TableIterator::new(crate::bgworker::status_rows_v2().into_iter().map(
            |(a, p, b, t, l, e)| {
                (
                    a.0, a.1, a.2, a.3, a.4, a.5, a.6, a.7, a.8, a.9, a.10, a.11, a.12, a.13, p, b,
                    t, l, e,
                )
            },
        ))
    }
}
