//! pgq: PgQ, pgq_node, pgq_ext, pgq_coop and the SQL side of Londiste as one
//! PostgreSQL extension, with in-server background workers (bgworker/).
//!
//! Layout: `logic/` is pure Rust (snapshots, batch SQL, tick policy); `insert.rs`,
//! `batch.rs`, `ticker.rs` are the SPI hot paths; `api.rs` is the `#[pg_extern]` glue;
//! `sql/` holds the DDL and the SQL-natural part of the API.

use pgrx::prelude::*;

pub mod logic;

mod api;
mod batch;
#[path = "../bgworker/mod.rs"]
pub mod bgworker;
mod db;
mod errors;
mod gucs;
mod insert;
mod londiste;
mod names;
mod outrec;
mod pgq_coop;
mod pgq_ext;
mod pgq_node;
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
    bgworker::init();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn version_is_dotted_numeric() {
        let v = Spi::get_one::<String>("select pgq.version()")
            .unwrap()
            .unwrap();
        assert!(v.split('.').all(|p| p.parse::<u32>().is_ok()), "{v}");
    }

    #[pg_test]
    fn insert_lands_in_current_table() {
        Spi::run("select pgq.create_queue('t_q')").unwrap();
        let id = Spi::get_one::<i64>("select pgq.insert_event('t_q', 'ty', 'data')")
            .unwrap()
            .unwrap();
        let table = Spi::get_one::<String>("select pgq.current_event_table('t_q')")
            .unwrap()
            .unwrap();
        let n = Spi::get_one::<i64>(&format!("select count(*) from {table} where ev_id = {id}"))
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);
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
