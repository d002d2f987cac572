//! Every `pgq.*` setting, in one place. Defined in `_PG_init`; documented in the
//! README (name, default, context). All reload on SIGHUP.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

pub static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static TICKER_PERIOD_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static TICKER_WAKEUP: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static TICKER_MIN_PERIOD_MS: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static MAINT_PERIOD_S: GucSetting<i32> = GucSetting::<i32>::new(120);
pub static RETRY_PERIOD_S: GucSetting<i32> = GucSetting::<i32>::new(30);
pub static LAUNCHER_NAPTIME_S: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static NOTIFY: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static APPLY_DIRECT: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static WORKER_ROLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static WORKER_LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static REPLAY: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static REPLAY_IDLE_WAIT_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static MAX_PARALLEL_COPIES: GucSetting<i32> = GucSetting::<i32>::new(2);
pub static REPLAY_ERROR_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 86_400);
pub static REPLAY_WATERMARK_PERIOD_S: GucSetting<i32> = GucSetting::<i32>::new(300);

/// `pgq.worker_role`, or None when empty (the workers then run as the extension owner).
pub fn worker_role() -> Option<String> {
    WORKER_ROLE
        .get()
        .map(|c| c.to_string_lossy().trim().to_string())
        .filter(|s| !s.is_empty())
}

pub fn init() {
    GucRegistry::define_bool_guc(
        c"pgq.enabled",
        c"Run the pgq launcher and per-database ticker/maintenance workers.",
        c"Off stops every pgq background worker; queues then need an external ticker (pgqd).",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgq.ticker_period",
        c"How often each database's queues are checked for a new tick.",
        c"Whether a queue gets a tick is decided by its ticker_max_count / ticker_max_lag / ticker_idle_period.",
        &TICKER_PERIOD_MS,
        10,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"pgq.ticker_wakeup",
        c"Producers wake the database's ticker when a transaction that inserted events commits.",
        c"With a low queue ticker_max_lag this delivers events within milliseconds instead of a ticker period.",
        &TICKER_WAKEUP,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgq.ticker_min_period",
        c"Minimum time between two ticker runs in one database when woken by producers.",
        c"",
        &TICKER_MIN_PERIOD_MS,
        1,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pgq.maint_period",
        c"How often maintenance runs (table rotation, extra maintenance, VACUUM of pgq tables).",
        c"",
        &MAINT_PERIOD_S,
        1,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pgq.retry_period",
        c"How often due retry events are moved back into their queues.",
        c"",
        &RETRY_PERIOD_S,
        1,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pgq.launcher_naptime",
        c"How often the pgq launcher rescans the list of databases.",
        c"CREATE EXTENSION pgq wakes the launcher at once; the rescan finds databases created from templates.",
        &LAUNCHER_NAPTIME_S,
        1,
        3600,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"pgq.apply_direct",
        c"Replay applies row changes through the executor's replication entry points where that is equivalent to a kept plan.",
        c"Off applies every row change through kept SPI plans (INSERT / UPDATE / DELETE statements).",
        &APPLY_DIRECT,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pgq.notify",
        c"Send NOTIFY on channel \"pgq_<queue name>\" with the tick id whenever a tick is made.",
        c"Consumers can LISTEN instead of polling next_batch.",
        &NOTIFY,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pgq.worker_role",
        c"Role the per-database pgq workers run as; empty means the owner of the extension.",
        c"The role needs the rights of pgq_admin in each database (and ownership of the pgq tables for their VACUUM). Workers restart when it changes.",
        &WORKER_ROLE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"pgq.worker_lock_timeout",
        c"lock_timeout of the pgq workers' sessions.",
        c"A lock held by another session makes a worker's step fail after this long; the step is retried at its next period. 0 waits forever.",
        &WORKER_LOCK_TIMEOUT_MS,
        0,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"pgq.replay",
        c"Replay cascaded nodes in-server: each database's manager runs one replay worker per local branch or leaf node.",
        c"Per node, pgq_cascade.set_in_server_replay() turns it off so that an external londiste worker can consume the node instead.",
        &REPLAY,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgq.replay_idle_wait",
        c"How long a replay worker with no batch waits for its provider's tick notification before asking again.",
        c"The worker LISTENs on the provider's queue channel, so a tick wakes it at once; this bounds the wait when notifications are off.",
        &REPLAY_IDLE_WAIT_MS,
        10,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pgq.replay_error_retention",
        c"How long rows of pgq_cascade.replay_error are kept; 0 keeps them all.",
        c"A replay or copy worker that records an error deletes its queue's rows older than this.",
        &REPLAY_ERROR_RETENTION_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pgq.max_parallel_copies",
        c"How many tables of one replayed node are in their initial copy at once, each in a copy worker.",
        c"Further tables wait in state NULL until a copy hands its table to the replay worker.",
        &MAX_PARALLEL_COPIES,
        1,
        64,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgq.replay_watermark_period",
        c"How often a replay worker sends its node's local watermark to the provider.",
        c"After a batch, at most once per period; a node with the sync_watermark attribute then also syncs its global watermark with the nodes it lists.",
        &REPLAY_WATERMARK_PERIOD_S,
        1,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    // SAFETY: _PG_init, after the pgq.* settings are defined; the prefix is static.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"pgq".as_ptr()) };
}
