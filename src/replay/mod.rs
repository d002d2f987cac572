//! In-server replay (being built; docs/replication.md): the pgrx side of applying a
//! provider's batches. `apply` applies decoded row changes (`logic::apply`) through
//! kept plans.

pub mod apply;
pub mod control;
pub mod copy;
pub mod worker;
