//! pgq: PgQ, pgq_node, pgq_ext, pgq_coop and the SQL side of Londiste as one
//! PostgreSQL extension, with in-server background workers (bgworker/).
//!
//! Layout: `logic/` is pure Rust (snapshots, batch SQL, tick policy); `insert.rs`,
//! `batch.rs`, `ticker.rs` are the SPI hot paths; `api.rs` is the `#[pg_extern]` glue;
//! `sql/` holds the DDL and the SQL-natural part of the API.

use pgrx::prelude::*;

pub mod logic;

mod admin;
mod api;
mod batch;
#[path = "../bgworker/mod.rs"]
pub mod bgworker;
mod db;
mod errors;
mod guards;
mod gucs;
mod insert;
mod londiste;
mod names;
mod outrec;
mod pgq_coop;
mod pgq_ext;
mod pgq_node;
pub mod remote;
pub mod replay;
mod ticker;
mod triggers;

pgrx::pg_module_magic!();

extension_sql_file!("../sql/pgq_schema.sql", name = "pgq_schema", bootstrap);
extension_sql_file!(
    "../sql/pgq_triggers.sql",
    name = "pgq_triggers",
    requires = ["pgq_schema"]
);
extension_sql_file!(
    "../sql/londiste_schema.sql",
    name = "londiste_schema",
    requires = ["pgq_schema", "pgq_node_schema"]
);
extension_sql_file!("../sql/pgq_functions.sql", name = "pgq_functions", finalize);
// pgq_node, pgq_ext, pgq_coop: tables, function declarations (Rust bodies) and grants
extension_sql_file!("../sql/pgq_node_schema.sql", name = "pgq_node_schema");
extension_sql_file!(
    "../sql/pgq_node_functions.sql",
    name = "pgq_node_functions",
    requires = ["pgq_node_schema"]
);
extension_sql_file!(
    "../sql/pgq_cascade.sql",
    name = "pgq_cascade",
    requires = ["pgq_node_schema", "pgq_node_functions"]
);
extension_sql_file!(
    "../sql/pgq_cascade_admin.sql",
    name = "pgq_cascade_admin",
    requires = ["pgq_cascade", "londiste_schema"]
);
extension_sql_file!("../sql/pgq_ext.sql", name = "pgq_ext");
extension_sql_file!("../sql/pgq_coop.sql", name = "pgq_coop");

/// PostgreSQL errors that pass through Rust frames are re-raised by pgrx, which appends
/// a Rust backtrace to DETAIL whenever RUST_BACKTRACE is set in the server's
/// environment. Users must get the error as PostgreSQL raised it: the standard library
/// decides once per process whether to capture backtraces, so decide "no" here, once,
/// before anything could capture one (RUST_LIB_BACKTRACE=0 overrides RUST_BACKTRACE for
/// library captures), and leave the environment as it was.
fn plain_errors() {
    let saved = std::env::var_os("RUST_LIB_BACKTRACE");
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    let _ = std::backtrace::Backtrace::capture();
    match saved {
        Some(v) => std::env::set_var("RUST_LIB_BACKTRACE", v),
        None => std::env::remove_var("RUST_LIB_BACKTRACE"),
    }
}

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    plain_errors();
    gucs::init();
    insert::init();
    triggers::init();
    replay::apply::init();
    bgworker::init();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    // In-backend tests (`cargo pgrx test`): each runs in one transaction that is rolled
    // back afterwards. They cover what only a live backend shows: the insert path's
    // caches following relcache and name invalidations within a transaction, the
    // user-id switch being undone when an ERROR unwinds through it, and the trigger
    // paths (payload, cache rebuild after ALTER TABLE, expressions, SKIP).
    use pgrx::pg_sys::panic::CaughtError;
    use pgrx::prelude::*;
    use std::cell::Cell;
    use std::panic::AssertUnwindSafe;

    fn user_id() -> pg_sys::Oid {
        // SAFETY: reads a backend variable.
        unsafe { pg_sys::GetUserId() }
    }

    fn val<T: FromDatum + IntoDatum>(sql: &str) -> T {
        Spi::get_one::<T>(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_else(|| panic!("{sql}: NULL"))
    }

    fn run(sql: &str) {
        Spi::run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// What a caught ERROR looked like: its message, and the user id in force right
    /// after the unwinding, before the subtransaction was rolled back.
    #[derive(Debug)]
    struct Caught {
        message: String,
        code: PgSqlErrorCode,
        user_at_catch: pg_sys::Oid,
    }

    /// Run `f` in an internal subtransaction, the way a PL/pgSQL EXCEPTION block does:
    /// released when `f` returns, rolled back when an ERROR escapes it.
    fn in_subxact<R>(f: impl FnOnce() -> R) -> Result<R, Caught> {
        // SAFETY: the subtransaction API as PL/pgSQL uses it: begin, then release or
        // roll back exactly once, and restore the caller's memory context and
        // resource owner afterwards.
        let (cxt, owner) = unsafe {
            let saved = (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner);
            pg_sys::BeginInternalSubTransaction(std::ptr::null());
            saved
        };
        let r = PgTryBuilder::new(AssertUnwindSafe(|| Ok(f())))
            .catch_others(|e| {
                let (message, code) = match e {
                    CaughtError::PostgresError(r)
                    | CaughtError::ErrorReport(r)
                    | CaughtError::RustPanic { ereport: r, .. } => {
                        (r.message().to_string(), r.sql_error_code())
                    }
                };
                Err(Caught {
                    message,
                    code,
                    user_at_catch: user_id(),
                })
            })
            .execute();
        // SAFETY: see above.
        unsafe {
            if r.is_ok() {
                pg_sys::ReleaseCurrentSubTransaction();
            } else {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
            pg_sys::MemoryContextSwitchTo(cxt);
            pg_sys::CurrentResourceOwner = owner;
        }
        r
    }

    /// The ERROR message of `sql`, which must fail.
    fn error_of(sql: &str) -> String {
        match in_subxact(|| run(sql)) {
            Ok(()) => panic!("{sql}: succeeded, an ERROR was expected"),
            Err(c) => c.message,
        }
    }

    fn count(sql: &str) -> i64 {
        val::<i64>(&format!("select count(*) from ({sql}) s"))
    }

    /// (ev_type, ev_data, ev_extra1) of every event in the queue's current table.
    fn events(queue: &str) -> Vec<(String, String, String)> {
        let table = val::<String>(&format!("select pgq.current_event_table('{queue}')"));
        let sql = format!(
            "select ev_type, coalesce(ev_data, '<NULL>'), coalesce(ev_extra1, '<NULL>') \
             from {table} order by ev_id"
        );
        Spi::connect(|c| {
            c.select(sql.as_str(), None, &[])
                .unwrap()
                .map(|r| {
                    (
                        r.get::<String>(1).unwrap().unwrap(),
                        r.get::<String>(2).unwrap().unwrap(),
                        r.get::<String>(3).unwrap().unwrap(),
                    )
                })
                .collect()
        })
    }

    fn ev(t: &str, d: &str, e1: &str) -> (String, String, String) {
        (t.to_string(), d.to_string(), e1.to_string())
    }

    #[pg_test]
    fn version_is_dotted_numeric() {
        let v = val::<String>("select pgq.version()");
        assert!(v.split('.').all(|p| p.parse::<u32>().is_ok()), "{v}");
    }

    /// The queue cache follows a change of the current table (what rotation does) in
    /// the same transaction: pgq.queue's statement trigger invalidates it.
    #[pg_test]
    fn insert_follows_current_table_change() {
        run("select pgq.create_queue('t_rot')");
        let first = val::<String>("select pgq.current_event_table('t_rot')");
        let id1 = val::<i64>("select pgq.insert_event('t_rot', 'a', '1')");
        assert_eq!(
            count(&format!("select 1 from {first} where ev_id = {id1}")),
            1
        );
        run(
            "update pgq.queue set queue_cur_table = (queue_cur_table + 1) % queue_ntables \
             where queue_name = 't_rot'",
        );
        let second = val::<String>("select pgq.current_event_table('t_rot')");
        assert_ne!(first, second);
        let id2 = val::<i64>("select pgq.insert_event('t_rot', 'b', '2')");
        assert_eq!(
            count(&format!("select 1 from {second} where ev_id = {id2}")),
            1
        );
        assert_eq!(
            count(&format!("select 1 from {first} where ev_id = {id2}")),
            0
        );
    }

    /// A queue whose stored event-sequence name resolves to no sequence is not ticked
    /// with a made-up position: ticker(queue) refuses it, ticker() skips it and ticks
    /// the others.
    #[pg_test]
    fn ticker_refuses_queue_without_event_seq() {
        run("select pgq.create_queue('t_noseq')");
        run("select pgq.create_queue('t_seqok')");
        run(
            "update pgq.queue set queue_event_seq = 'pgq.t_no_such_seq' \
             where queue_name = 't_noseq'",
        );
        let ticks = |q: &str| {
            count(&format!(
                "select 1 from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
                 where q.queue_name = '{q}'"
            ))
        };
        let (noseq, ok) = (ticks("t_noseq"), ticks("t_seqok"));
        let msg = error_of("select pgq.ticker('t_noseq')");
        assert_eq!(
            msg,
            "cannot tick queue \"t_noseq\": queue_event_seq names no sequence"
        );
        run("select pgq.insert_event('t_seqok', 'a', '1')");
        run("update pgq.queue set queue_ticker_max_count = 1");
        val::<i64>("select pgq.ticker()");
        assert_eq!(ticks("t_noseq"), noseq);
        assert_eq!(ticks("t_seqok"), ok + 1);
    }

    /// OutRec forms its row against the function's declared OUT columns: a column of
    /// another type than the Rust value raises 42804 (instead of a Datum read as the
    /// wrong type), so does a column count that differs; a binary-coercible type
    /// (varchar for text) is accepted. The same symbol as londiste.split_fqname, which
    /// returns (text, text), declared three ways.
    #[pg_test]
    fn outrec_checks_declared_column_types() {
        let decl = |name: &str, outs: &str| {
            run(&format!(
                "create function public.{name}(i_fqname text, {outs}) returns record \
                 language c strict as '$libdir/pgq', 'lnd_split_fqname_wrapper'"
            ))
        };
        decl("t_outrec_int", "out schema_part int4, out name_part text");
        decl("t_outrec_three", "out a text, out b text, out c text");
        decl("t_outrec_varchar", "out s varchar, out n text");
        let caught = in_subxact(|| run("select * from public.t_outrec_int('a.b')"))
            .expect_err("an int4 column for a text value must fail");
        assert_eq!(caught.code, PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH);
        assert_eq!(
            caught.message,
            "pgq: result column 1 (schema_part) is text, the declaration says integer"
        );
        let caught = in_subxact(|| run("select * from public.t_outrec_three('a.b')"))
            .expect_err("three columns for two values must fail");
        assert_eq!(caught.code, PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH);
        assert_eq!(
            caught.message,
            "pgq: result has 2 columns, declaration has 3"
        );
        assert_eq!(
            val::<String>("select s || '|' || n from public.t_outrec_varchar('x.y')"),
            "x|y"
        );
        // and the real declaration
        assert_eq!(
            val::<String>("select name_part from londiste.split_fqname('s.t')"),
            "t"
        );
    }

    /// The direct insert path's cached table shape is dropped by a relcache
    /// invalidation: a CHECK constraint added after a first insert applies to the next
    /// one (the direct path would not check it).
    #[pg_test]
    fn insert_shape_follows_alter_table() {
        run("select pgq.create_queue('t_shape')");
        let table = val::<String>("select pgq.current_event_table('t_shape')");
        val::<i64>("select pgq.insert_event('t_shape', 'bad', 'before the constraint')");
        run(&format!(
            "alter table {table} add constraint t_shape_no_bad check (ev_type <> 'bad') not valid"
        ));
        let msg = error_of("select pgq.insert_event('t_shape', 'bad', 'after')");
        assert!(msg.contains("t_shape_no_bad"), "{msg}");
        val::<i64>("select pgq.insert_event('t_shape', 'good', 'after')");
        assert_eq!(
            count(&format!("select 1 from {table} where ev_type = 'bad'")),
            1
        );
        assert_eq!(
            count(&format!("select 1 from {table} where ev_type = 'good'")),
            1
        );
    }

    /// The event table is resolved again after a rename (pg_class name invalidation):
    /// renamed away, the insert fails; renamed back, it works.
    #[pg_test]
    fn insert_follows_event_table_rename() {
        run("select pgq.create_queue('t_ren')");
        let table = val::<String>("select pgq.current_event_table('t_ren')");
        val::<i64>("select pgq.insert_event('t_ren', 'a', '1')");
        let bare = table.rsplit('.').next().unwrap().to_string();
        run(&format!("alter table {table} rename to t_ren_moved"));
        let msg = error_of("select pgq.insert_event('t_ren', 'b', '2')");
        assert!(msg.contains("does not exist"), "{msg}");
        run(&format!("alter table pgq.t_ren_moved rename to {bare}"));
        val::<i64>("select pgq.insert_event('t_ren', 'c', '3')");
        assert_eq!(count(&format!("select 1 from {table}")), 2);
    }

    /// An ERROR raised while running as the extension owner (insert::as_owner) gives
    /// the caller's user id back as it unwinds, before any rollback restores it.
    #[pg_test]
    fn user_id_restored_after_error_as_owner() {
        let owner =
            val::<pg_sys::Oid>("select relowner from pg_class where oid = 'pgq.queue'::regclass");
        run("select pgq.create_queue('t_owner')");
        run("create role pgq_t_caller");
        let caller = val::<pg_sys::Oid>("select oid from pg_roles where rolname = 'pgq_t_caller'");
        assert_ne!(owner, caller);
        run("set local role pgq_t_caller");
        assert_eq!(user_id(), caller);
        let inside = Cell::new(pg_sys::InvalidOid);
        let r = in_subxact(|| {
            crate::insert::as_owner(|| {
                inside.set(user_id());
                crate::insert::insert_event7(Some(b"t_no_such_queue"), None, None, [None; 4])
            })
        });
        let caught = r.expect_err("insert into a missing queue must fail");
        assert_eq!(caught.message, "No such queue");
        assert_eq!(inside.get(), owner, "as_owner did not switch");
        assert_eq!(
            caught.user_at_catch, caller,
            "user id not restored by the unwinding"
        );
        assert_eq!(user_id(), caller);
        // and after a successful call
        let id = crate::insert::as_owner(|| {
            crate::insert::insert_event7(Some(b"t_owner"), Some(b"t"), Some(b"d"), [None; 4])
        });
        assert!(id.is_some());
        assert_eq!(user_id(), caller);
    }

    /// The same through a trigger: the firing switches to the owner to insert, the
    /// queue is missing, and the ERROR reaches the caller with its own user id.
    #[pg_test]
    fn user_id_restored_after_error_in_trigger() {
        run("create role pgq_t_writer");
        let writer = val::<pg_sys::Oid>("select oid from pg_roles where rolname = 'pgq_t_writer'");
        run("create table public.t_trg_noq (id int primary key)");
        run("grant insert on public.t_trg_noq to pgq_t_writer");
        run("grant execute on function \
             pgq.insert_event(text, text, text, text, text, text, text) to pgq_t_writer");
        run("create trigger cap after insert on public.t_trg_noq \
             for each row execute function pgq.logutriga('t_no_such_queue')");
        run("set local role pgq_t_writer");
        let caught = in_subxact(|| run("insert into public.t_trg_noq values (1)"))
            .expect_err("the trigger must fail");
        assert!(
            caught.message.contains("No such queue"),
            "{}",
            caught.message
        );
        assert_eq!(caught.user_at_catch, writer);
        assert_eq!(user_id(), writer);
    }

    /// logutriga: I/U/D payloads, and the per-table cache rebuilt after ALTER TABLE in
    /// the same transaction.
    #[pg_test]
    fn logutriga_rows_and_alter_table() {
        run("select pgq.create_queue('t_logu')");
        run("create table public.t_logu (id int primary key, txt text)");
        run(
            "create trigger cap after insert or update or delete on public.t_logu \
             for each row execute function pgq.logutriga('t_logu')",
        );
        run("insert into public.t_logu values (1, 'a b')");
        run("update public.t_logu set txt = 'c' where id = 1");
        run("alter table public.t_logu add column n int default 7");
        run("insert into public.t_logu (id, txt) values (2, null)");
        run("delete from public.t_logu where id = 1");
        assert_eq!(
            events("t_logu"),
            vec![
                ev("I:id", "id=1&txt=a+b", "public.t_logu"),
                ev("U:id", "id=1&txt=c", "public.t_logu"),
                ev("I:id", "id=2&txt&n=7", "public.t_logu"),
                ev("D:id", "id=1&txt=c&n=7", "public.t_logu"),
            ]
        );
        // a primary key change is refused
        let msg = error_of("update public.t_logu set id = 3 where id = 2");
        assert_eq!(msg, "primary key update not allowed");
    }

    /// sqltriga: an update of ignored columns only gives no event; `when=` and
    /// `ev_extra1=` expressions run through SPI inside the firing.
    #[pg_test]
    fn sqltriga_ignore_and_expressions() {
        run("select pgq.create_queue('t_sql')");
        run("create table public.t_sql (id int primary key, txt text, noise int)");
        run(
            "create trigger cap after insert or update or delete on public.t_sql \
             for each row execute function pgq.sqltriga('t_sql', 'ignore=noise', \
             'when=txt <> ''skip''', 'ev_extra1=''x:'' || id')",
        );
        run("insert into public.t_sql values (1, 'a', 0)");
        run("insert into public.t_sql values (2, 'skip', 0)");
        run("update public.t_sql set noise = 1 where id = 1");
        run("update public.t_sql set txt = 'b', noise = 2 where id = 1");
        run("delete from public.t_sql where id = 1");
        assert_eq!(
            events("t_sql"),
            vec![
                ev("I", "(id,txt) values ('1','a')", "x:1"),
                ev("U", "txt='b' where id='1'", "x:1"),
                ev("D", "id='1'", "x:1"),
            ]
        );
    }

    /// jsontriga, and a BEFORE trigger with SKIP: the event is written, the row is not.
    #[pg_test]
    fn jsontriga_and_skip() {
        run("select pgq.create_queue('t_json')");
        run("create table public.t_json (id int primary key, ok bool, txt text)");
        run("create trigger cap before insert on public.t_json \
             for each row execute function pgq.jsontriga('t_json', 'SKIP')");
        run("insert into public.t_json values (1, true, 'q\"t')");
        assert_eq!(count("select 1 from public.t_json"), 0);
        let evs = events("t_json");
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].1, r#"{"id":1,"ok":true,"txt":"q\"t"}"#);
        assert_eq!(evs[0].2, "public.t_json");
    }
}

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
