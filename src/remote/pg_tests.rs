//! In-backend tests of the libpq client: each test connects over libpq to the server it
//! runs in (its own port and first unix socket directory). Built only with the
//! `pg_test` feature (functions `tests.remote_*`); tests/remote/run.sh runs them on a
//! private cluster.

#[pgrx::pg_schema]
mod tests {
    use std::ffi::c_int;
    use std::time::{Duration, Instant};

    use pgrx::prelude::*;

    use crate::remote::{open_connections, redact, ConnectOptions, Connection, OrRaise};

    /// PostgreSQL 15's TimeoutId STATEMENT_TIMEOUT (utils/timeout.h).
    const STATEMENT_TIMEOUT: c_int = 3;

    unsafe extern "C-unwind" {
        // utils/timeout.h; not in pgrx's bindings
        fn enable_timeout_after(id: c_int, delay_ms: c_int);
        fn disable_timeout(id: c_int, keep_indicator: bool);
    }

    /// What `statement_timeout = ms` arms at the start of a statement.
    fn arm_statement_timeout(ms: c_int) {
        // SAFETY: arming a core timeout in a backend; errors unwind through the guard.
        unsafe {
            pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
                enable_timeout_after(STATEMENT_TIMEOUT, ms)
            })
        }
    }

    fn disarm_statement_timeout() {
        // SAFETY: as above.
        unsafe {
            pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
                disable_timeout(STATEMENT_TIMEOUT, false)
            })
        }
    }

    /// A conninfo for this very server, through its first unix socket directory (or
    /// localhost), as the current user.
    fn self_conninfo() -> String {
        let (port, dir, db, user) = Spi::connect(|c| {
            let t = c
                .select(
                    "select current_setting('port'), \
                            split_part(current_setting('unix_socket_directories'), ',', 1), \
                            current_database()::text, current_user::text",
                    None,
                    &[],
                )?
                .first();
            Ok::<_, pgrx::spi::SpiError>((
                t.get::<String>(1)?.unwrap(),
                t.get::<String>(2)?.unwrap_or_default(),
                t.get::<String>(3)?.unwrap(),
                t.get::<String>(4)?.unwrap(),
            ))
        })
        .unwrap();
        let host = if dir.trim().is_empty() {
            "localhost".to_string()
        } else {
            dir.trim().to_string()
        };
        format!(
            "host='{}' port={} dbname='{}' user='{}'",
            host.replace('\'', "\\'"),
            port,
            db.replace('\'', "\\'"),
            user.replace('\'', "\\'")
        )
    }

    fn connect(purpose: &str) -> Connection {
        let ci = self_conninfo();
        Connection::connect(
            &ConnectOptions::new(&ci, purpose)
                .superuser(true)
                .node("self"),
        )
        .or_raise()
    }

    /// Run `f`, which must raise an ERROR; the error's SQLSTATE and full text.
    fn expect_error(f: impl FnOnce()) -> (PgSqlErrorCode, String) {
        let f = std::panic::AssertUnwindSafe(f);
        PgTryBuilder::new(move || {
            f();
            panic!("no error was raised");
        })
        .catch_others(|e| match e {
            pg_sys::panic::CaughtError::PostgresError(r)
            | pg_sys::panic::CaughtError::ErrorReport(r)
            | pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => {
                let text = format!(
                    "{} | {} | {} | {}",
                    r.message(),
                    r.detail().unwrap_or(""),
                    r.hint().unwrap_or(""),
                    r.sql_error_code()
                );
                (r.sql_error_code(), text)
            }
        })
        .execute()
    }

    /// How many of the server's backends run with this application_name (seen from a
    /// separate connection).
    fn remote_backends(app: &str, active_only: bool) -> i64 {
        let mut probe = connect("probe");
        let sql = if active_only {
            "select count(*) from pg_stat_activity where application_name = $1 and state = 'active'"
        } else {
            "select count(*) from pg_stat_activity where application_name = $1"
        };
        let r = probe.exec(sql, &[Some(app)]).or_raise();
        r.get::<i64>(0, 0).or_raise().unwrap()
    }

    #[pg_test]
    fn remote_connect_and_typed_rows() {
        let mut c = connect("test typed");
        let r = c
            .exec(
                "select g::int4 as n, 'x y'::text as t, g % 2 = 0 as even, null::int8 as nothing, \
                        g / 2.0::float8 as half \
                 from generate_series(1, 3) g",
                &[],
            )
            .or_raise();
        assert_eq!(r.ntuples(), 3);
        assert_eq!(r.nfields(), 5);
        assert_eq!(r.field_name(1).as_deref(), Some("t"));
        assert_eq!(r.field_type(0), Some(u32::from(pg_sys::INT4OID)));
        assert_eq!(r.column("even"), Some(2));
        assert_eq!(r.get::<i32>(2, 0).or_raise(), Some(3));
        assert_eq!(r.get::<String>(0, 1).or_raise().as_deref(), Some("x y"));
        assert_eq!(r.get::<bool>(1, 2).or_raise(), Some(true));
        assert_eq!(r.get::<i64>(0, 3).or_raise(), None);
        assert_eq!(r.get::<f64>(0, 4).or_raise(), Some(0.5));
        let e = r.get::<i32>(0, 1).err().unwrap();
        assert_eq!(e.sqlstate, "22P02");

        let r = c
            .exec("select $1::int + 1, $2::text is null", &[Some("41"), None])
            .or_raise();
        assert_eq!(r.get::<i64>(0, 0).or_raise(), Some(42));
        assert_eq!(r.get::<bool>(0, 1).or_raise(), Some(true));

        // the remote session: our application_name, our encoding, keepalives asked for
        let r = c
            .exec(
                "select current_setting('application_name'), current_setting('client_encoding')",
                &[],
            )
            .or_raise();
        assert_eq!(
            r.get::<String>(0, 0).or_raise().as_deref(),
            Some("pgq test typed")
        );
        let local_enc = Spi::get_one::<String>("select pg_encoding_to_char(encoding)::text from pg_database where datname = current_database()")
            .unwrap()
            .unwrap();
        assert_eq!(r.get::<String>(0, 1).or_raise(), Some(local_enc));
        assert!(c.backend_pid().is_some());
        assert!(c.parameter_status("server_version").is_some());
    }

    #[pg_test]
    fn remote_stream_single_row_100k() {
        let mut c = connect("test stream");
        let (mut n, mut sum) = (0i64, 0i64);
        {
            let rows = c
                .query_stream(
                    "select g, md5(g::text) from generate_series(1, $1::int) g",
                    &[Some("100000")],
                )
                .or_raise();
            for row in rows {
                let row = row.or_raise();
                sum += row.get::<i64>(0).or_raise().unwrap();
                assert_eq!(row.bytes(1).unwrap().len(), 32);
                n += 1;
            }
        }
        assert_eq!(n, 100_000);
        assert_eq!(sum, 100_000 * 100_001 / 2);
        // the connection is idle again
        assert_eq!(
            c.exec("select 7", &[])
                .or_raise()
                .get::<i32>(0, 0)
                .or_raise(),
            Some(7)
        );
    }

    #[pg_test]
    fn remote_stream_error_midway() {
        let mut c = connect("test stream error");
        let mut rows = c
            .query_stream(
                "select 10 / (5000 - g) from generate_series(1, 10000) g",
                &[],
            )
            .or_raise();
        let mut n = 0;
        let err = loop {
            match rows.next_row() {
                Ok(Some(_)) => n += 1,
                Ok(None) => panic!("no error"),
                Err(e) => break e,
            }
        };
        drop(rows);
        assert_eq!(err.sqlstate, "22012");
        assert!(n < 5000, "{n} rows before the error");
        assert_eq!(c.exec("select 1", &[]).or_raise().ntuples(), 1);
    }

    #[pg_test]
    fn remote_stream_dropped_early_is_cancelled() {
        let mut c = connect("test stream drop");
        // a set-returning function in the target list streams (FROM would materialize)
        let mut rows = c
            .query_stream("select generate_series(1, 500000000)", &[])
            .or_raise();
        for _ in 0..10 {
            rows.next_row().or_raise().unwrap();
        }
        let t0 = Instant::now();
        drop(rows);
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        assert!(c.is_open(), "the cancel worked, so the connection is kept");
        assert_eq!(remote_backends("pgq test stream drop", true), 0);
        assert_eq!(c.exec("select 1", &[]).or_raise().ntuples(), 1);
    }

    #[pg_test]
    fn remote_copy_out_100k() {
        let mut c = connect("test copy out");
        let (mut n, mut sum, mut bytes) = (0i64, 0i64, 0usize);
        {
            let mut copy = c
                .copy_out(
                    "copy (select g, repeat('x', 50) from generate_series(1, 100000) g) to stdout",
                )
                .or_raise();
            while let Some(chunk) = copy.next_chunk().or_raise() {
                let line = std::str::from_utf8(&chunk).unwrap();
                let (g, rest) = line.split_once('\t').unwrap();
                assert_eq!(rest, format!("{}\n", "x".repeat(50)));
                sum += g.parse::<i64>().unwrap();
                bytes += chunk.len();
                n += 1;
            }
        }
        assert_eq!(n, 100_000);
        assert_eq!(sum, 100_000 * 100_001 / 2);
        assert!(bytes > 5_000_000);
        let e = c.copy_out("copy (select 1/0) to stdout").err().unwrap();
        assert_eq!(e.sqlstate, "22012");
        let e = c.copy_out("select 1").err().unwrap();
        assert_eq!(e.sqlstate, "XX000");
        assert_eq!(c.exec("select 1", &[]).or_raise().ntuples(), 1);
    }

    #[pg_test]
    fn remote_copy_in() {
        let mut c = connect("test copy in");
        c.exec("create temp table ci (a int primary key, b text)", &[])
            .or_raise();
        {
            let mut w = c.copy_in("copy ci from stdin").or_raise();
            w.write(b"1\tone\n2\ttw").or_raise();
            w.write(b"o\n").or_raise();
            let big: String = (3..20003).map(|i| format!("{i}\tv{i}\n")).collect();
            w.write(big.as_bytes()).or_raise();
            assert_eq!(w.finish().or_raise(), 20002);
        }
        let r = c
            .exec("select count(*), max(b) filter (where a = 2) from ci", &[])
            .or_raise();
        assert_eq!(r.get::<i64>(0, 0).or_raise(), Some(20002));
        assert_eq!(r.get::<String>(0, 1).or_raise().as_deref(), Some("two"));

        // aborted: nothing lands
        let mut w = c.copy_in("copy ci from stdin").or_raise();
        w.write(b"100000\tx\n").or_raise();
        let e = w.abort("test abort");
        assert_eq!(e.sqlstate, "57014", "{e}");
        assert!(e.message.contains("test abort"), "{e}");
        // a bad row: the remote error comes back from finish
        let mut w = c.copy_in("copy ci from stdin").or_raise();
        w.write(b"1\tduplicate\n").or_raise();
        let e = w.finish().err().unwrap();
        assert_eq!(e.sqlstate, "23505", "{e}");
        // dropped unfinished: the remote COPY fails, the connection stays usable
        {
            let mut w = c.copy_in("copy ci from stdin").or_raise();
            w.write(b"200000\tx\n").or_raise();
        }
        let r = c.exec("select count(*) from ci", &[]).or_raise();
        assert_eq!(r.get::<i64>(0, 0).or_raise(), Some(20002));
    }

    #[pg_test]
    fn remote_errors_keep_sqlstate_and_fields() {
        let mut c = connect("test errors");
        let e = c.exec("select 1/0", &[]).err().unwrap();
        assert_eq!(e.sqlstate, "22012");
        assert_eq!(e.message, "division by zero");
        assert_eq!(e.context.as_deref(), Some("remote node \"self\""));
        let e = c
            .exec(
                "do $$ begin raise exception 'boom %', 1 using errcode = 'P0001', detail = 'the detail', hint = 'the hint'; end $$",
                &[],
            )
            .err().unwrap();
        assert_eq!(
            (
                e.sqlstate.as_str(),
                e.message.as_str(),
                e.detail.as_deref(),
                e.hint.as_deref()
            ),
            ("P0001", "boom 1", Some("the detail"), Some("the hint"))
        );
        assert!(
            e.remote_context
                .as_deref()
                .unwrap_or("")
                .contains("PL/pgSQL"),
            "{e}"
        );
        // raised locally: same SQLSTATE, message, hint; the context ends the detail
        let (code, text) = expect_error(|| e.raise());
        assert_eq!(code, PgSqlErrorCode::ERRCODE_RAISE_EXCEPTION);
        assert!(text.starts_with("boom 1 | the detail\n"), "{text}");
        assert!(
            text.contains("remote node \"self\"") && text.contains("the hint"),
            "{text}"
        );
        // a user-defined SQLSTATE that pgrx cannot carry is named in the detail
        let e = c
            .exec(
                "do $$ begin raise exception 'mine' using errcode = 'AB123'; end $$",
                &[],
            )
            .err()
            .unwrap();
        assert_eq!(e.sqlstate, "AB123");
        let (code, text) = expect_error(|| e.raise());
        assert_eq!(code, PgSqlErrorCode::ERRCODE_INTERNAL_ERROR);
        assert!(text.contains("Remote SQLSTATE: AB123"), "{text}");
        // still usable
        assert_eq!(c.exec("select 1", &[]).or_raise().ntuples(), 1);
    }

    #[pg_test]
    fn remote_notices_are_received() {
        let mut c = connect("test notices");
        let before = c.inner.notices_seen.get();
        c.exec(
            "do $$ begin raise notice 'hello %', 'there'; raise warning 'careful'; end $$",
            &[],
        )
        .or_raise();
        assert_eq!(c.inner.notices_seen.get(), before + 2);
    }

    #[pg_test]
    fn remote_statement_timeout_interrupts_and_cancels() {
        let mut c = connect("test timeout");
        let pid = c.backend_pid().unwrap();
        let t0 = Instant::now();
        arm_statement_timeout(500);
        let (code, text) = expect_error(|| {
            c.exec("select pg_sleep(30)", &[]).or_raise();
        });
        disarm_statement_timeout();
        let took = t0.elapsed();
        assert_eq!(code, PgSqlErrorCode::ERRCODE_QUERY_CANCELED, "{text}");
        assert!(text.contains("statement timeout"), "{text}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
        // the remote query was cancelled, and the connection kept
        assert!(c.is_open());
        assert_eq!(c.backend_pid(), Some(pid));
        assert_eq!(remote_backends("pgq test timeout", true), 0);
        assert_eq!(c.exec("select 1", &[]).or_raise().ntuples(), 1);
    }

    #[pg_test]
    fn remote_query_cancel_interrupts() {
        let mut c = connect("test cancel");
        let mut other = connect("test canceller");
        // SAFETY: this backend's pid
        let me = unsafe { pg_sys::MyProcPid }.to_string();
        // the other connection cancels this backend in 300 ms, while we wait on `c`
        other
            .send(
                "select pg_sleep(0.3), pg_cancel_backend($1::int)",
                &[Some(&me)],
                false,
            )
            .or_raise();
        let t0 = Instant::now();
        let (code, text) = expect_error(|| {
            c.exec("select pg_sleep(30)", &[]).or_raise();
        });
        assert_eq!(code, PgSqlErrorCode::ERRCODE_QUERY_CANCELED, "{text}");
        assert!(text.contains("user request"), "{text}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert_eq!(remote_backends("pgq test cancel", true), 0);
        other.finish_command().or_raise();
    }

    #[pg_test]
    fn remote_cancel_deadline_drops_the_connection() {
        // a remote that ignores the cancel for longer than the deadline: pg_sleep in a
        // loop that swallows query_canceled
        let ci = self_conninfo();
        let mut c = Connection::connect(
            &ConnectOptions::new(&ci, "test stubborn")
                .superuser(true)
                .cancel_timeout(Duration::from_secs(1)),
        )
        .or_raise();
        let t0 = Instant::now();
        arm_statement_timeout(300);
        let (code, _) = expect_error(|| {
            c.exec(
                "do $$ begin for i in 1..100 loop begin perform pg_sleep(0.1); \
                 exception when query_canceled then null; end; end loop; \
                 perform pg_sleep(10); end $$",
                &[],
            )
            .or_raise();
        });
        disarm_statement_timeout();
        assert_eq!(code, PgSqlErrorCode::ERRCODE_QUERY_CANCELED);
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(1200) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert!(!c.is_open(), "dropped after the cancel deadline");
        let e = c.exec("select 1", &[]).err().unwrap();
        assert_eq!(e.sqlstate, "08003");
    }

    #[pg_test]
    fn remote_password_required_for_non_superusers() {
        let ci = self_conninfo();
        let e = Connection::connect(&ConnectOptions::new(&ci, "test pw"))
            .err()
            .unwrap();
        assert_eq!(
            (e.sqlstate.as_str(), e.message.as_str()),
            ("2F003", "password is required")
        );
        assert_eq!(
            e.detail.as_deref(),
            Some("Non-superusers must provide a password in the connection string.")
        );
        let (code, _) = expect_error(|| e.raise());
        assert_eq!(
            code,
            PgSqlErrorCode::ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED
        );

        // a password given, but this server (trust) never asks for it: refused too
        let with_pw = format!("{ci} password=Unused5ecret");
        let n0 = open_connections();
        let e = Connection::connect(&ConnectOptions::new(&with_pw, "test pw"))
            .err()
            .unwrap();
        assert_eq!(e.sqlstate, "2F003");
        assert!(
            e.detail
                .as_deref()
                .unwrap()
                .contains("does not request a password"),
            "{e}"
        );
        assert!(!e.to_string().contains("Unused5ecret"), "{e}");
        assert_eq!(open_connections(), n0, "the refused connection is closed");
        // a superuser may
        Connection::connect(&ConnectOptions::new(&with_pw, "test pw").superuser(true)).or_raise();
    }

    #[pg_test]
    fn remote_failed_connect_is_redacted() {
        let t0 = Instant::now();
        let ci = "host=127.0.0.1 port=1 dbname=x user=u password=Hunter2Secret connect_timeout=5";
        let e = Connection::connect(&ConnectOptions::new(ci, "test fail"))
            .err()
            .unwrap();
        assert_eq!(
            (e.sqlstate.as_str(), e.message.as_str()),
            ("08001", "could not establish connection"),
            "{e}"
        );
        let shown = e.to_string();
        assert!(!shown.contains("Hunter2Secret"), "{shown}");
        assert!(shown.contains("port=1"), "{shown}");
        let (code, text) = expect_error(|| e.raise());
        assert_eq!(
            code,
            PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
        );
        assert!(
            !text.contains("Hunter2Secret") && text.contains("127.0.0.1"),
            "{text}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));

        let uri = "postgresql://u:Hunter2Secret@127.0.0.1:1/x";
        let e = Connection::connect(&ConnectOptions::new(uri, "test fail"))
            .err()
            .unwrap();
        assert_eq!(e.sqlstate, "08001");
        assert!(!e.to_string().contains("Hunter2Secret"), "{e}");
        assert!(!redact(uri).contains("Hunter2Secret"));

        let e = Connection::connect(&ConnectOptions::new("host=h password Hunter2Secret", "x"))
            .err()
            .unwrap();
        assert_eq!(e.sqlstate, "42601");
        assert!(!e.to_string().contains("Hunter2Secret"), "{e}");
    }

    #[pg_test]
    fn remote_connect_timeout() {
        // a listening socket that never answers the startup packet
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let ci = format!("host=127.0.0.1 port={port} dbname=x user=u connect_timeout=2");
        let t0 = Instant::now();
        let e = Connection::connect(&ConnectOptions::new(&ci, "test slow").superuser(true))
            .err()
            .unwrap();
        let took = t0.elapsed();
        assert_eq!(e.sqlstate, "08001");
        assert!(
            e.detail
                .as_deref()
                .unwrap_or("")
                .contains("timeout expired"),
            "{e}"
        );
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
            "{took:?}"
        );
        drop(l);
    }

    #[pg_test]
    fn remote_error_unwinding_closes_the_connection() {
        let n0 = open_connections();
        let pid = std::cell::Cell::new(0);
        let (code, _) = expect_error(|| {
            let c = connect("test unwind");
            pid.set(c.backend_pid().unwrap());
            assert_eq!(open_connections(), n0 + 1);
            error!("local failure while a connection is open");
        });
        assert_eq!(code, PgSqlErrorCode::ERRCODE_INTERNAL_ERROR);
        assert_eq!(open_connections(), n0, "Drop ran during unwinding");
        // the remote session ends (PQfinish sent Terminate)
        let t0 = Instant::now();
        while remote_backends("pgq test unwind", false) > 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "remote backend still there"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
