//! Per-backend cache of kept SPI plans for the fixed statements of the hot paths:
//! each statement is parsed and planned once per backend, then re-executed.

use crate::errors::SpiResultExt;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    static PLANS: RefCell<HashMap<&'static str, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
}

/// The kept plan of `sql` (argument types `args`); `mutating` for statements that write.
pub fn kept(
    client: &SpiClient<'_>,
    sql: &'static str,
    args: &[pg_sys::Oid],
    mutating: bool,
) -> Rc<OwnedPreparedStatement> {
    if let Some(p) = PLANS.with(|p| p.borrow().get(sql).cloned()) {
        return p;
    }
    let types: Vec<PgOid> = args.iter().map(|&o| PgOid::from(o)).collect();
    let prepared = if mutating {
        client.prepare_mut(sql, &types)
    } else {
        client.prepare(sql, &types)
    };
    let plan = Rc::new(prepared.or_raise("preparing statement").keep());
    PLANS.with(|p| p.borrow_mut().insert(sql, plan.clone()));
    plan
}
