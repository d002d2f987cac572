//! In-server replay (being built; docs/replication.md): the pgrx side of applying a
//! provider's batches. `apply` applies decoded row changes (`logic::apply`) through
//! kept plans.

pub mod apply;
pub mod compare;
pub mod control;
pub mod copy;
pub mod direct;
pub mod worker;

/// A libpq client error as the crate's error type.
pub(crate) fn rerr(e: crate::remote::RemoteError) -> crate::errors::PgqError {
    crate::errors::PgqError::from(&e)
}
