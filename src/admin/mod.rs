//! Replication administered in SQL on the node itself (docs/admin.md).
//!
//! Each `pgq_cascade` administration function runs on the node it concerns and makes
//! every remote step itself over the libpq client ([`crate::remote`]): the calls of the
//! Python CLI's admin operations, in the same order, so every row the Python tools read
//! is the same. This node is reached through SPI, the others over libpq; both through
//! [`Peer`], so each step is written once whichever node it runs on.
//!
//! Functions that change other nodes refuse to run inside a transaction block (as
//! `CREATE SUBSCRIPTION ... WITH (create_slot)` does): remote steps commit at once, so
//! only a function that is its own transaction can undo them when a later step fails.
//! They check everything they can before the first write, and when a local step fails
//! after remote ones, they roll the local steps back (a subtransaction) and undo the
//! remote ones before the error is raised.

pub mod ops;
pub mod setup;
pub mod status;
pub mod tables;

use crate::db;
use crate::errors::{PgqError, PgqResult, SqlState};
use crate::remote::{self, ConnectOptions, Connection};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::panic::AssertUnwindSafe;

/// pgq_node calls more than one operation makes.
pub const REGISTER_LOCATION: &str =
    "select ret_code::text, ret_note::text from pgq_node.register_location($1, $2, $3, $4::bool)";
pub const UNREGISTER_SUBSCRIBER: &str =
    "select ret_code::text, ret_note::text from pgq_node.unregister_subscriber($1, $2)";

/// Rows of text (every admin query casts its columns to text, so one shape serves
/// SPI and libpq).
pub type Rows = Vec<Vec<Option<String>>>;

enum Link {
    Local,
    Remote(Box<Connection>),
}

/// A node an operation talks to.
pub struct Peer {
    pub name: String,
    link: Link,
}

impl Peer {
    /// This node, through SPI (in the calling transaction).
    pub fn local(name: &str) -> Peer {
        Peer {
            name: name.to_string(),
            link: Link::Local,
        }
    }

    /// Another node, over libpq, as the calling role: a role that is not a superuser
    /// must give a password in the location (the client's rule, as dblink's).
    pub fn connect(name: &str, location: &str) -> PgqResult<Peer> {
        let opts = ConnectOptions::new(location, "admin")
            .node(name)
            .superuser(remote::current_role_is_superuser());
        let conn = Connection::connect(&opts).map_err(|e| {
            let mut err = PgqError::from(&e);
            err.message = format!("node \"{name}\": {}", err.message);
            err
        })?;
        Ok(Peer {
            name: name.to_string(),
            link: Link::Remote(Box::new(conn)),
        })
    }

    pub fn is_local(&self) -> bool {
        matches!(self.link, Link::Local)
    }

    /// Run one statement; text parameters, text results.
    pub fn query(
        &mut self,
        what: &str,
        sql: &'static str,
        params: &[Option<&str>],
    ) -> PgqResult<Rows> {
        self.query_any(what, Ok(sql), params)
    }

    /// [`query`](Self::query) of a statement built at run time.
    pub fn query_dyn(&mut self, what: &str, sql: &str, params: &[Option<&str>]) -> PgqResult<Rows> {
        self.query_any(what, Err(sql), params)
    }

    fn query_any(
        &mut self,
        what: &str,
        sql: Result<&'static str, &str>,
        params: &[Option<&str>],
    ) -> PgqResult<Rows> {
        match &mut self.link {
            Link::Local => local_query(what, sql, params),
            Link::Remote(conn) => {
                let text = match sql {
                    Ok(s) | Err(s) => s,
                };
                let r = conn.exec(text, params).map_err(|e| {
                    let mut err = PgqError::from(&e);
                    err.message = format!("node \"{}\": {what}: {}", self.name, err.message);
                    err
                })?;
                let mut rows = Vec::with_capacity(r.ntuples());
                for i in 0..r.ntuples() {
                    let mut row = Vec::with_capacity(r.nfields());
                    for j in 0..r.nfields() {
                        row.push(r.get::<String>(i, j).map_err(|e| PgqError::from(&e))?);
                    }
                    rows.push(row);
                }
                Ok(rows)
            }
        }
    }

    /// The first row of a query (an error when there is none).
    pub fn row(
        &mut self,
        what: &str,
        sql: &'static str,
        params: &[Option<&str>],
    ) -> PgqResult<Vec<Option<String>>> {
        let name = self.name.clone();
        self.query(what, sql, params)?
            .into_iter()
            .next()
            .ok_or_else(|| PgqError::internal(format!("node \"{name}\": {what}: no row")))
    }

    /// A call of a function that answers `(ret_code, ret_note, ...)`, the pgq_node
    /// style: a code of 400 or more is an error (SQLSTATE 55000, the note as message).
    pub fn call(
        &mut self,
        what: &str,
        sql: &'static str,
        params: &[Option<&str>],
    ) -> PgqResult<Vec<Option<String>>> {
        let row = self.row(what, sql, params)?;
        let code: i32 = row
            .first()
            .and_then(|c| c.as_deref())
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                PgqError::internal(format!("node \"{}\": {what}: no ret_code", self.name))
            })?;
        if code >= 400 {
            let note = row.get(1).cloned().flatten().unwrap_or_default();
            return Err(PgqError::new(
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("node \"{}\": {what}: {note}", self.name),
            )
            .detail(format!("ret_code {code}")));
        }
        Ok(row)
    }
}

/// A statement here: fixed (`Ok`: its plan is kept) or built at run time (`Err`).
fn local_query(
    what: &str,
    sql: Result<&'static str, &str>,
    params: &[Option<&str>],
) -> PgqResult<Rows> {
    db::write("pgq_cascade", |c| {
        let args: Vec<pgrx::datum::DatumWithOid> = params.iter().map(|p| (*p).into()).collect();
        let t = match sql {
            Ok(fixed) => c.write(what, fixed, &args)?,
            Err(built) => c.write_dyn(what, built, &args)?,
        };
        if t.is_empty() {
            return Ok(Vec::new());
        }
        let n = t
            .columns()
            .map_err(|e| PgqError::internal(format!("{what}: {e}")))?;
        let mut rows = Vec::new();
        for row in t {
            let mut out = Vec::with_capacity(n);
            for i in 1..=n {
                out.push(db::get::<String>(&row, i, what)?);
            }
            rows.push(out);
        }
        Ok(rows)
    })
}

/// The `(ret_code, ret_note)` of a londiste/pgq_node call as this function's answer.
pub fn ret_of(row: &[Option<String>]) -> crate::outrec::OutRec {
    crate::outrec::OutRec::ret(
        col(row, 0).and_then(|c| c.parse().ok()).unwrap_or(200),
        col(row, 1).unwrap_or("").to_string(),
    )
}

/// Text of column `i` (None: NULL or no such column).
pub fn col(row: &[Option<String>], i: usize) -> Option<&str> {
    row.get(i).and_then(|c| c.as_deref())
}

/// A boolean column as PostgreSQL's text output gives it.
pub fn col_bool(row: &[Option<String>], i: usize) -> bool {
    matches!(col(row, i), Some("t") | Some("true"))
}

pub fn col_i64(row: &[Option<String>], i: usize) -> Option<i64> {
    col(row, i).and_then(|v| v.parse().ok())
}

/// Refuse to run inside a transaction block (the function makes remote steps that
/// commit at once; see the module note).
pub fn own_transaction(function: &str) {
    let name = std::ffi::CString::new(function).unwrap_or_default();
    // SAFETY: PreventInTransactionBlock reads the transaction state and raises an
    // ERROR (caught by pgrx at this FFI boundary) inside a block; `name` outlives the
    // call.
    unsafe { pg_sys::PreventInTransactionBlock(true, name.as_ptr()) }
}

/// Run `f` in an internal subtransaction (as a PL/pgSQL EXCEPTION block does): its
/// writes are kept when it returns Ok, rolled back when it returns Err or raises.
pub fn in_subxact<R>(f: impl FnOnce() -> PgqResult<R>) -> PgqResult<R> {
    // SAFETY: the subtransaction API as PL/pgSQL uses it: begin, then release or roll
    // back exactly once, and restore the caller's memory context and resource owner.
    let (cxt, owner) = unsafe {
        let saved = (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner);
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        saved
    };
    let r = PgTryBuilder::new(AssertUnwindSafe(f))
        .catch_others(|e: CaughtError| Err(PgqError::from_caught(&e)))
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

/// A required text argument.
pub fn arg<'a>(v: Option<&'a str>, name: &str) -> PgqResult<&'a str> {
    match v {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(PgqError::new(
            SqlState::NULL_VALUE_NOT_ALLOWED,
            format!("{name} must not be NULL or empty"),
        )),
    }
}

/// What a node is for a queue (pgq_node.get_node_info).
#[derive(Debug, Clone)]
pub struct NodeView {
    pub node_type: String,
    pub node_name: String,
    pub provider_node: Option<String>,
    pub provider_location: Option<String>,
    pub worker_name: Option<String>,
    pub paused: bool,
    pub uptodate: bool,
    pub last_tick: Option<i64>,
}

pub const NODE_INFO_SQL: &str = "select node_type::text, node_name::text, provider_node::text, \
     provider_location::text, worker_name::text, worker_paused::text, worker_uptodate::text, \
     worker_last_tick::text from pgq_node.get_node_info($1)";

/// `p`'s node of `queue`; None when the queue has no node there.
pub fn node_view(p: &mut Peer, queue: &str) -> PgqResult<Option<NodeView>> {
    let r = p.row("reading the node", NODE_INFO_SQL, &[Some(queue)])?;
    let Some(node_type) = col(&r, 0) else {
        return Ok(None);
    };
    Ok(Some(NodeView {
        node_type: node_type.to_string(),
        node_name: col(&r, 1).unwrap_or_default().to_string(),
        provider_node: col(&r, 2).map(str::to_string),
        provider_location: col(&r, 3).map(str::to_string),
        worker_name: col(&r, 4).map(str::to_string),
        paused: col_bool(&r, 5),
        uptodate: col_bool(&r, 6),
        last_tick: col_i64(&r, 7),
    }))
}

/// This node's view of `queue`, which must exist.
pub fn local_node(queue: &str) -> PgqResult<(Peer, NodeView)> {
    let mut me = Peer::local("local");
    let v = node_view(&mut me, queue)?.ok_or_else(|| {
        PgqError::new(
            SqlState::UNDEFINED_OBJECT,
            format!("queue \"{queue}\" has no cascade node on this database"),
        )
        .hint("Create one with pgq_cascade.create_root, create_branch or create_leaf.")
    })?;
    me.name = v.node_name.clone();
    Ok((me, v))
}

/// A member of the queue's cascade, as a node knows it.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub location: String,
    pub dead: bool,
}

pub fn members(p: &mut Peer, queue: &str) -> PgqResult<Vec<Member>> {
    Ok(p.query(
        "reading the members",
        "select node_name::text, node_location::text, dead::text \
         from pgq_node.get_queue_locations($1) order by node_name",
        &[Some(queue)],
    )?
    .into_iter()
    .map(|r| Member {
        name: col(&r, 0).unwrap_or_default().to_string(),
        location: col(&r, 1).unwrap_or_default().to_string(),
        dead: col_bool(&r, 2),
    })
    .collect())
}

/// The member called `name`, connected (this node through SPI).
pub fn peer_of(queue: &str, me: &NodeView, known: &[Member], name: &str) -> PgqResult<Peer> {
    if name == me.node_name {
        return Ok(Peer::local(name));
    }
    let m = known.iter().find(|m| m.name == name).ok_or_else(|| {
        PgqError::new(
            SqlState::UNDEFINED_OBJECT,
            format!("node \"{name}\" is not a member of queue \"{queue}\""),
        )
    })?;
    if m.dead {
        return Err(PgqError::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("node \"{name}\" of queue \"{queue}\" is tagged dead"),
        ));
    }
    Peer::connect(name, &m.location)
}
