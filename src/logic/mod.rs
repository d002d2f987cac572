//! Pure logic, free of pgrx: unit-tested with plain `cargo test`.
#![deny(unsafe_code)]

pub mod admin;
pub mod apply;
pub mod batch_sql;
pub mod compare;
pub mod copy_indexes;
#[cfg(test)]
mod declarations;
pub mod londiste;
pub mod node;
pub mod pg_keywords;
pub mod quote;
pub mod remote;
pub mod replay;
pub mod snapshot;
pub mod sqlstate;
pub mod supervise;
pub mod tick_policy;
pub mod triggers;
pub mod version;
pub mod worker_policy;
