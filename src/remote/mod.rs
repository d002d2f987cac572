//! libpq client for talking to other PostgreSQL nodes from inside the server (replay
//! workers, admin functions). Internal: nothing here is callable from SQL.
//!
//! * libpq comes from `pq-sys`, linked dynamically to the system `libpq.so.5` (no
//!   bundled or static copy inside the server).
//! * Every network wait (connect, query, COPY, cancel) is a `WaitLatchOrSocket` on the
//!   connection's socket with `WL_LATCH_SET | WL_EXIT_ON_PM_DEATH` and wait event
//!   `Extension` (pg_stat_activity), followed by `CHECK_FOR_INTERRUPTS`: SIGTERM, query
//!   cancel, statement_timeout and postmaster death interrupt every one of them. When an
//!   interrupt (or any error) leaves a remote command running, the remote command is
//!   cancelled (`PQcancel`) and drained within `cancel_timeout`; a remote that does not
//!   stop in time loses its connection.
//! * Conninfo strings are libpq's own (`PQconninfoParse`; `.pgpass`, `service`, `sslmode`,
//!   unix sockets all as libpq does them). The local side adds `client_encoding` (the
//!   server's encoding), `application_name` (`pgq <purpose>`), `connect_timeout` (10 s,
//!   enforced for the whole connect) and TCP keepalives, unless the conninfo sets them.
//! * Passwords (`password`, `sslpassword`) never appear in any message: the conninfo is
//!   only ever shown through [`redact`], and every text that comes back from libpq or the
//!   remote is scrubbed of the connection's secrets.
//! * A role that is not a superuser must give a password, and the server must use it
//!   (dblink's rule): [`ConnectOptions::superuser`].
//! * RAII: [`Connection`] closes on drop, also when an ERROR unwinds through it; a
//!   process-exit callback closes any connection whose drop never ran. Results free
//!   their `PGresult` on drop.
//! * Streaming: [`Connection::query_stream`] (single-row mode), [`Connection::copy_out`]
//!   and [`Connection::copy_in`]: a result of millions of rows never sits in memory whole.
//!
//! The pure parts (option building, redaction, the error type) are in
//! `crate::logic::remote`.

mod conninfo;
#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pq_sys as pq;

use crate::errors::{PgqError, SqlState};
use crate::logic::remote as logic;
pub use crate::logic::remote::{FromText, RemoteError};
pub use conninfo::{parse as parse_conninfo, redact};

/// How long a cancelled remote command may take to stop before its connection is
/// dropped.
pub const DEFAULT_CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// The wait event every network wait reports (`Extension` / `Extension`).
pub const WAIT_EVENT: u32 = pg_sys::PG_WAIT_EXTENSION;

/// Notices kept per connection between two waits; more are counted, not kept.
const MAX_QUEUED_NOTICES: usize = 100;

/// What [`Connection::connect`] needs.
#[derive(Debug, Clone)]
pub struct ConnectOptions<'a> {
    pub conninfo: &'a str,
    /// What the connection is for: `application_name` becomes `pgq <purpose>`.
    pub purpose: &'a str,
    /// The remote's name in messages (else the redacted conninfo).
    pub node: Option<&'a str>,
    /// Whether the role the connection acts for is a superuser. When false (the
    /// default), the conninfo must give a password and the server must ask for it.
    pub superuser: bool,
    pub cancel_timeout: Duration,
}

impl<'a> ConnectOptions<'a> {
    pub fn new(conninfo: &'a str, purpose: &'a str) -> Self {
        ConnectOptions {
            conninfo,
            purpose,
            node: None,
            superuser: false,
            cancel_timeout: DEFAULT_CANCEL_TIMEOUT,
        }
    }
    pub fn node(mut self, node: &'a str) -> Self {
        self.node = Some(node);
        self
    }
    pub fn superuser(mut self, is_superuser: bool) -> Self {
        self.superuser = is_superuser;
        self
    }
    pub fn cancel_timeout(mut self, t: Duration) -> Self {
        self.cancel_timeout = t;
        self
    }
}

/// Whether the current role is a superuser (for [`ConnectOptions::superuser`]).
pub fn current_role_is_superuser() -> bool {
    // SAFETY: plain catalog lookup of the current user, in a backend.
    unsafe { pg_sys::superuser() }
}

// ---------------------------------------------------------------------------------
// errors

/// A remote error as the crate's error type: the remote's SQLSTATE when pgrx can carry
/// it (else XX000, with the remote code named in DETAIL), and the context lines at the
/// end of DETAIL (pgrx 0.18 carries no CONTEXT through unwinding).
impl From<&RemoteError> for PgqError {
    fn from(e: &RemoteError) -> Self {
        let mut detail: Vec<String> = e.detail.iter().cloned().collect();
        let code = match Some(e.sqlstate).filter(|c| crate::errors::pgrx_knows(*c)) {
            Some(c) => c,
            None => {
                detail.push(format!("Remote SQLSTATE: {}", e.sqlstate));
                SqlState::INTERNAL_ERROR
            }
        };
        if let Some(c) = e.full_context() {
            detail.push(format!("Context: {c}"));
        }
        let mut err = PgqError::new(code, e.message.clone());
        if !detail.is_empty() {
            err = err.detail(detail.join("\n"));
        }
        if let Some(h) = &e.hint {
            err = err.hint(h.clone());
        }
        err
    }
}

impl RemoteError {
    /// ereport(ERROR) this error, through [`PgqError::report`].
    pub fn raise(&self) -> ! {
        PgqError::from(self).report()
    }
}

/// `Result<T, RemoteError>` → `T` or ERROR.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, RemoteError> {
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.raise(),
        }
    }
}

// ---------------------------------------------------------------------------------
// results

/// A `PGresult`, freed (`PQclear`) on drop. Values are in the local server's encoding
/// (the connection's `client_encoding`).
pub struct QueryResult {
    res: *mut pq::PGresult,
}

impl Drop for QueryResult {
    fn drop(&mut self) {
        // SAFETY: `res` came from PQgetResult, is owned by us alone and freed once.
        unsafe { pq::PQclear(self.res) };
    }
}

impl QueryResult {
    fn status(&self) -> pq::ExecStatusType {
        // SAFETY: `res` is a live PGresult.
        unsafe { pq::PQresultStatus(self.res) }
    }

    fn field(&self, code: u8) -> Option<String> {
        // SAFETY: `res` is live; the returned string (or NULL) belongs to it.
        let p = unsafe { pq::PQresultErrorField(self.res, code as c_int) };
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    pub fn ntuples(&self) -> usize {
        // SAFETY: `res` is a live PGresult.
        unsafe { pq::PQntuples(self.res) }.max(0) as usize
    }

    pub fn nfields(&self) -> usize {
        // SAFETY: `res` is a live PGresult.
        unsafe { pq::PQnfields(self.res) }.max(0) as usize
    }

    pub fn field_name(&self, col: usize) -> Option<String> {
        if col >= self.nfields() {
            return None;
        }
        // SAFETY: `col` is in range; the name belongs to `res`.
        let p = unsafe { pq::PQfname(self.res, col as c_int) };
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    /// The column's type OID on the remote.
    pub fn field_type(&self, col: usize) -> Option<u32> {
        // SAFETY: `col` is checked; PQftype only reads `res`.
        (col < self.nfields()).then(|| unsafe { pq::PQftype(self.res, col as c_int) })
    }

    /// The column number of a name (exact match).
    pub fn column(&self, name: &str) -> Option<usize> {
        (0..self.nfields()).find(|&i| self.field_name(i).as_deref() == Some(name))
    }

    /// The raw text bytes of a value; `None` for NULL or out of range.
    pub fn bytes(&self, row: usize, col: usize) -> Option<&[u8]> {
        if row >= self.ntuples() || col >= self.nfields() {
            return None;
        }
        // SAFETY: row and col are in range; the value buffer belongs to `res` and lives
        // as long as `self`, which the returned slice borrows.
        unsafe {
            if pq::PQgetisnull(self.res, row as c_int, col as c_int) != 0 {
                return None;
            }
            let p = pq::PQgetvalue(self.res, row as c_int, col as c_int);
            let n = pq::PQgetlength(self.res, row as c_int, col as c_int).max(0) as usize;
            Some(std::slice::from_raw_parts(p as *const u8, n))
        }
    }

    /// A value converted from its text form (`t`/`f`, numbers, text). NULL is `None`;
    /// a value that does not convert is an error (22P02).
    pub fn get<T: FromText>(&self, row: usize, col: usize) -> Result<Option<T>, RemoteError> {
        let Some(b) = self.bytes(row, col) else {
            return Ok(None);
        };
        let name = self.field_name(col).unwrap_or_default();
        let tname = std::any::type_name::<T>();
        let s = std::str::from_utf8(b)
            .map_err(|_| logic::conversion_error(&name, &String::from_utf8_lossy(b), tname))?;
        T::from_text(s)
            .map(Some)
            .ok_or_else(|| logic::conversion_error(&name, s, tname))
    }

    /// The row count a command reports (`INSERT 0 5` → 5), if any.
    pub fn cmd_tuples(&self) -> Option<u64> {
        // SAFETY: `res` is live; the string belongs to it.
        let p = unsafe { pq::PQcmdTuples(self.res) };
        if p.is_null() {
            return None;
        }
        unsafe { CStr::from_ptr(p) }.to_str().ok()?.parse().ok()
    }
}

/// One row of a [`RowStream`] (a single-row `PGresult`).
pub struct Row(QueryResult);

impl Row {
    pub fn get<T: FromText>(&self, col: usize) -> Result<Option<T>, RemoteError> {
        self.0.get(0, col)
    }
    pub fn bytes(&self, col: usize) -> Option<&[u8]> {
        self.0.bytes(0, col)
    }
    pub fn len(&self) -> usize {
        self.0.nfields()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn result(&self) -> &QueryResult {
        &self.0
    }
}

/// One chunk of COPY OUT data (one row in text/csv format), freed on drop.
pub struct CopyData {
    ptr: *mut c_char,
    len: usize,
}

impl std::ops::Deref for CopyData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: libpq gave us `len` valid bytes at `ptr`, owned until drop.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for CopyData {
    fn drop(&mut self) {
        // SAFETY: allocated by PQgetCopyData, freed once.
        unsafe { pq::PQfreemem(self.ptr.cast()) };
    }
}

// ---------------------------------------------------------------------------------
// connection state shared with the notice receiver and the exit callback

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Idle,
    /// A command was sent and its results are not all read.
    Busy,
    CopyOut,
    CopyIn,
}

struct Notice {
    severity: String,
    message: String,
}

struct Inner {
    conn: *mut pq::PGconn,
    mode: Mode,
    fd_reserved: bool,
    notices: RefCell<Vec<Notice>>,
    notices_dropped: Cell<u64>,
    /// Notices received in the connection's life (for tests).
    notices_seen: Cell<u64>,
}

thread_local! {
    /// Every open connection of this process, for the process-exit callback.
    static OPEN: RefCell<Vec<*mut Inner>> = const { RefCell::new(Vec::new()) };
    static EXIT_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Connections still open at process exit (a FATAL such as SIGTERM's, which leaves
/// without unwinding): cancel what runs (waiting at most 1 s) and close them.
#[pg_guard]
unsafe extern "C-unwind" fn close_all_at_exit(_code: c_int, _arg: pg_sys::Datum) {
    let list = OPEN.with(|o| std::mem::take(&mut *o.borrow_mut()));
    let mut cancels = Vec::new();
    for &inner in &list {
        // SAFETY: registered pointers stay valid until their Connection unregisters
        // them on drop; a Connection that never dropped leaks its Inner with it.
        let inner = unsafe { &mut *inner };
        if !inner.conn.is_null() && inner.mode != Mode::Idle {
            cancels.extend(spawn_cancel(inner.conn));
        }
    }
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until && cancels.iter().any(|c| !c.done()) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for &inner in &list {
        // SAFETY: as above.
        let inner = unsafe { &mut *inner };
        if !inner.conn.is_null() {
            // SAFETY: the connection is open and owned by this Inner.
            unsafe { pq::PQfinish(inner.conn) };
            inner.conn = std::ptr::null_mut();
        }
    }
}

fn register(inner: *mut Inner) {
    if !EXIT_HOOK.with(|h| h.replace(true)) {
        // SAFETY: registering a guarded callback, once per process.
        unsafe { pg_sys::on_proc_exit(Some(close_all_at_exit), pg_sys::Datum::from(0usize)) };
    }
    OPEN.with(|o| o.borrow_mut().push(inner));
}

fn unregister(inner: *mut Inner) {
    OPEN.with(|o| o.borrow_mut().retain(|&p| p != inner));
}

/// How many connections of this process are open (tests, status).
pub fn open_connections() -> usize {
    OPEN.with(|o| o.borrow().len())
}

/// libpq calls this (from inside libpq, on our thread) for every NOTICE/WARNING the
/// remote sends: only queue it; it is logged after libpq returns. Never unwinds into
/// libpq.
unsafe extern "C" fn notice_receiver(arg: *mut c_void, res: *const pq::PGresult) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if arg.is_null() || res.is_null() {
            return;
        }
        // SAFETY: `arg` is the Inner registered with this connection, alive while the
        // connection is (PQfinish happens before the Inner is freed).
        let inner = unsafe { &*(arg as *const Inner) };
        let field = |code: u8| {
            // SAFETY: `res` is valid during this call; the field belongs to it.
            let p = unsafe { pq::PQresultErrorField(res, code as c_int) };
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        };
        let severity = field(pq::PG_DIAG_SEVERITY_NONLOCALIZED).unwrap_or_else(|| "NOTICE".into());
        let message = field(pq::PG_DIAG_MESSAGE_PRIMARY).unwrap_or_default();
        inner.notices_seen.set(inner.notices_seen.get() + 1);
        if let Ok(mut q) = inner.notices.try_borrow_mut() {
            if q.len() < MAX_QUEUED_NOTICES {
                q.push(Notice { severity, message });
                return;
            }
        }
        inner.notices_dropped.set(inner.notices_dropped.get() + 1);
    }));
}

/// A cancel request sent from a short-lived thread: `PQcancel` blocks (libpq 15 has no
/// non-blocking cancel), and a thread keeps that off the latch loop. The thread only
/// touches its own `PGcancel` object and runs with every signal blocked, so signals
/// still reach the backend's main thread.
struct CancelRequest(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl CancelRequest {
    fn done(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

struct SendCancel(*mut pq::PGcancel);
// SAFETY: a PGcancel is a self-contained copy of the connection's cancel key and
// address; libpq documents PQcancel as safe to call from any thread.
unsafe impl Send for SendCancel {}

fn spawn_cancel(conn: *mut pq::PGconn) -> Option<CancelRequest> {
    // SAFETY: `conn` is an open connection.
    let c = unsafe { pq::PQgetCancel(conn) };
    if c.is_null() {
        return None;
    }
    let c = SendCancel(c);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = done.clone();
    // SAFETY: sigset operations on local storage; the mask is restored right after the
    // spawn, so only the new thread (which inherits it) keeps every signal blocked.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
    }
    let spawned = std::thread::Builder::new()
        .name("pgq cancel".into())
        .spawn(move || {
            let c = c;
            let mut buf = [0 as c_char; 256];
            // SAFETY: `c.0` is ours; PQcancel writes at most 256 bytes into `buf`.
            unsafe {
                pq::PQcancel(c.0, buf.as_mut_ptr(), buf.len() as c_int);
                pq::PQfreeCancel(c.0);
            }
            done2.store(true, std::sync::atomic::Ordering::Release);
        });
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    match spawned {
        Ok(_) => Some(CancelRequest(done)),
        // the closure (and with it the PGcancel) was dropped unrun: libpq's object leaks
        // a few bytes, which is better than a double free
        Err(_) => None,
    }
}

/// HOLD_INTERRUPTS / RESUME_INTERRUPTS for the bounded, non-interruptible cleanup waits.
struct HoldInterrupts;

impl HoldInterrupts {
    fn new() -> Self {
        // SAFETY: backend-local counter, main thread.
        unsafe { pg_sys::InterruptHoldoffCount += 1 };
        HoldInterrupts
    }
}

impl Drop for HoldInterrupts {
    fn drop(&mut self) {
        // SAFETY: paired with the increment in new().
        unsafe { pg_sys::InterruptHoldoffCount -= 1 };
    }
}

enum Waited {
    /// The socket is ready for (some of) what was asked.
    Ready {
        readable: bool,
    },
    /// Woken by the latch only.
    Latch,
    TimedOut,
}

// ---------------------------------------------------------------------------------
// the connection

/// An open libpq connection. Closed (`PQfinish`) on drop; a command still running then
/// is cancelled first (bounded by the cancel timeout).
pub struct Connection {
    inner: Box<Inner>,
    label: String,
    secrets: Vec<String>,
    cancel_timeout: Duration,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.abandon();
        self.close();
    }
}

impl Connection {
    /// Connect without blocking the backend: PQconnectStartParams, then PQconnectPoll
    /// driven by latch waits, until connected, failed or past `connect_timeout`.
    pub fn connect(opts: &ConnectOptions<'_>) -> Result<Connection, RemoteError> {
        let parsed = conninfo::parse(opts.conninfo)
            .map_err(|e| e.context(logic::remote_label(opts.node, logic::UNPARSABLE_CONNINFO)))?;
        let secrets = logic::secrets(&parsed);
        let label = logic::remote_label(opts.node, &logic::render_redacted(&parsed));
        let fail = |e: RemoteError| e.context(label.clone()).scrubbed(&secrets);
        if !opts.superuser && !logic::gives_password(&parsed) {
            return Err(fail(RemoteError::password_not_given()));
        }
        // SAFETY: returns a pointer to a static string of the database encoding's name.
        let encoding = unsafe { CStr::from_ptr(pg_sys::GetDatabaseEncodingName()) }
            .to_string_lossy()
            .into_owned();
        let settings = logic::ConnectSettings {
            purpose: opts.purpose.to_string(),
            client_encoding: encoding,
        };
        let params = logic::connect_params(&parsed, &settings);
        let deadline = logic::connect_timeout(&params).map(|d| Instant::now() + d);
        let to_c = |s: &str| {
            CString::new(s).map_err(|_| {
                fail(
                    RemoteError::new(SqlState::SYNTAX_ERROR, "invalid connection string syntax")
                        .detail("A connection option contains a zero byte."),
                )
            })
        };
        let mut keys = Vec::with_capacity(params.len());
        let mut vals = Vec::with_capacity(params.len());
        for p in &params {
            keys.push(to_c(&p.keyword)?);
            vals.push(to_c(&p.value)?);
        }
        let mut kp: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
        let mut vp: Vec<*const c_char> = vals.iter().map(|v| v.as_ptr()).collect();
        kp.push(std::ptr::null());
        vp.push(std::ptr::null());

        // One PGconn is one long-lived file descriptor: obey fd.c's limit.
        // SAFETY: fd.c accounting in a backend.
        if !unsafe { pg_sys::AcquireExternalFD() } {
            return Err(fail(
                RemoteError::new(
                    SqlState::UNABLE_TO_ESTABLISH,
                    "could not establish connection",
                )
                .detail("There are too many open files on the local server.")
                .hint("Raise the server's \"max_files_per_process\" and/or \"ulimit -n\" limits."),
            ));
        }
        let mut c = Connection {
            inner: Box::new(Inner {
                conn: std::ptr::null_mut(),
                mode: Mode::Idle,
                fd_reserved: true,
                notices: RefCell::new(Vec::new()),
                notices_dropped: Cell::new(0),
                notices_seen: Cell::new(0),
            }),
            label,
            secrets,
            cancel_timeout: opts.cancel_timeout,
        };
        // SAFETY: NULL-terminated arrays of valid C strings that outlive the call;
        // expand_dbname = 0 since the options are already parsed.
        c.inner.conn = unsafe { pq::PQconnectStartParams(kp.as_ptr(), vp.as_ptr(), 0) };
        let inner_ptr: *mut Inner = &mut *c.inner;
        register(inner_ptr);
        if c.inner.conn.is_null() {
            return Err(c.err(RemoteError::connect_failed("out of memory")));
        }
        // SAFETY: the receiver gets the Inner, which outlives the PGconn (closed in drop
        // before the Box is freed).
        unsafe { pq::PQsetNoticeReceiver(c.inner.conn, Some(notice_receiver), inner_ptr.cast()) };
        if c.status_bad() {
            return Err(c.err(RemoteError::connect_failed(&c.error_message())));
        }
        let mut status = pq::PostgresPollingStatusType::PGRES_POLLING_WRITING;
        loop {
            let want = match status {
                pq::PostgresPollingStatusType::PGRES_POLLING_OK => break,
                pq::PostgresPollingStatusType::PGRES_POLLING_FAILED => {
                    return Err(c.err(RemoteError::connect_failed(&c.error_message())));
                }
                pq::PostgresPollingStatusType::PGRES_POLLING_READING => pg_sys::WL_SOCKET_READABLE,
                _ => pg_sys::WL_SOCKET_WRITEABLE,
            };
            match c.wait(want, deadline, true)? {
                Waited::TimedOut => {
                    let secs = logic::connect_timeout(&params)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    return Err(c.err(RemoteError::connect_failed(&format!(
                        "timeout expired after {secs} s (connect_timeout)"
                    ))));
                }
                Waited::Latch => continue,
                // SAFETY: the connection is open; PQconnectPoll does not block.
                Waited::Ready { .. } => status = unsafe { pq::PQconnectPoll(c.inner.conn) },
            }
        }
        // SAFETY: the connection is open.
        if !opts.superuser && unsafe { pq::PQconnectionUsedPassword(c.inner.conn) } == 0 {
            return Err(c.err(RemoteError::password_not_used()));
        }
        // SAFETY: the connection is open.
        if unsafe { pq::PQsetnonblocking(c.inner.conn, 1) } != 0 {
            return Err(c.err(RemoteError::connect_failed(&c.error_message())));
        }
        c.flush_notices();
        Ok(c)
    }

    /// The remote's name in messages (`remote node "x"` / redacted conninfo).
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn is_open(&self) -> bool {
        !self.inner.conn.is_null() && !self.status_bad()
    }

    /// The remote backend's process id.
    pub fn backend_pid(&self) -> Option<i32> {
        // SAFETY: checked open.
        self.is_open()
            .then(|| unsafe { pq::PQbackendPID(self.inner.conn) })
    }

    /// A parameter the remote reported (`server_version`, `client_encoding`, ...).
    pub fn parameter_status(&self, name: &str) -> Option<String> {
        if self.inner.conn.is_null() {
            return None;
        }
        let n = CString::new(name).ok()?;
        // SAFETY: open connection, valid name; the value belongs to the connection.
        let p = unsafe { pq::PQparameterStatus(self.inner.conn, n.as_ptr()) };
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    /// Run a command and return its (last) result whole. For results of unbounded size
    /// use [`Self::query_stream`] or [`Self::copy_out`]. Parameters are text (`None` is
    /// NULL), typed by the server.
    pub fn exec(&mut self, sql: &str, params: &[Option<&str>]) -> Result<QueryResult, RemoteError> {
        self.send(sql, params, false)?;
        let mut last: Option<QueryResult> = None;
        let mut error: Option<RemoteError> = None;
        while let Some(r) = self.next_result()? {
            match r.status() {
                pq::ExecStatusType::PGRES_COMMAND_OK | pq::ExecStatusType::PGRES_TUPLES_OK => {
                    last = Some(r)
                }
                pq::ExecStatusType::PGRES_COPY_OUT
                | pq::ExecStatusType::PGRES_COPY_IN
                | pq::ExecStatusType::PGRES_COPY_BOTH => {
                    self.inner.mode = if r.status() == pq::ExecStatusType::PGRES_COPY_IN {
                        Mode::CopyIn
                    } else {
                        Mode::CopyOut
                    };
                    self.abandon();
                    return Err(self.err(RemoteError::new(
                        SqlState::INTERNAL_ERROR,
                        "COPY is not allowed here (use copy_out / copy_in)",
                    )));
                }
                _ => {
                    if error.is_none() {
                        error = Some(self.result_error(&r));
                    }
                }
            }
        }
        match (error, last) {
            (Some(e), _) => Err(e),
            (None, Some(r)) => Ok(r),
            (None, None) => {
                Err(self.err(RemoteError::new(SqlState::INTERNAL_ERROR, "empty query")))
            }
        }
    }

    /// Run a query in single-row mode: rows arrive one at a time as they are read.
    pub fn query_stream(
        &mut self,
        sql: &str,
        params: &[Option<&str>],
    ) -> Result<RowStream<'_>, RemoteError> {
        self.send(sql, params, true)?;
        Ok(RowStream {
            conn: self,
            done: false,
        })
    }

    /// Wait for notifications (of channels this connection LISTENs on) for at most
    /// `timeout`. Returns the channels of the notifications that arrived, empty when
    /// none did; also returns early (empty) when the latch is set, so the caller can
    /// look at SIGHUP and its other duties. SIGTERM and postmaster death interrupt the
    /// wait as every network wait.
    pub fn wait_notifications(&mut self, timeout: Duration) -> Result<Vec<String>, RemoteError> {
        if self.inner.conn.is_null() || self.inner.mode != Mode::Idle {
            return Err(self.lost());
        }
        let mut got = self.take_notifications();
        if !got.is_empty() {
            return Ok(got);
        }
        let deadline = Instant::now() + timeout;
        if let Waited::Ready { readable: true } =
            self.wait(pg_sys::WL_SOCKET_READABLE, Some(deadline), true)?
        {
            // SAFETY: open, idle connection.
            if unsafe { pq::PQconsumeInput(self.inner.conn) } == 0 {
                return Err(self.lost());
            }
            got = self.take_notifications();
        }
        Ok(got)
    }

    /// Notifications libpq has read already, as channel names.
    fn take_notifications(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        // SAFETY: open connection; each PGnotify is freed with PQfreemem after its
        // channel name was copied.
        unsafe {
            pq::PQconsumeInput(self.inner.conn);
            loop {
                let n = pq::PQnotifies(self.inner.conn);
                if n.is_null() {
                    break;
                }
                if !(*n).relname.is_null() {
                    out.push(CStr::from_ptr((*n).relname).to_string_lossy().into_owned());
                }
                pq::PQfreemem(n.cast());
            }
        }
        out
    }

    /// Run `COPY ... TO STDOUT` and read its data chunk by chunk.
    pub fn copy_out(&mut self, sql: &str) -> Result<CopyOut<'_>, RemoteError> {
        self.start_copy(sql, pq::ExecStatusType::PGRES_COPY_OUT)?;
        self.inner.mode = Mode::CopyOut;
        Ok(CopyOut {
            conn: self,
            done: false,
        })
    }

    /// Run `COPY ... FROM STDIN` and write its data.
    pub fn copy_in(&mut self, sql: &str) -> Result<CopyIn<'_>, RemoteError> {
        self.start_copy(sql, pq::ExecStatusType::PGRES_COPY_IN)?;
        self.inner.mode = Mode::CopyIn;
        Ok(CopyIn {
            conn: self,
            done: false,
        })
    }

    // ---- internals ----

    fn err(&self, e: RemoteError) -> RemoteError {
        e.context(self.label.clone()).scrubbed(&self.secrets)
    }

    fn status_bad(&self) -> bool {
        // SAFETY: called with an open connection (or NULL, which libpq reports as bad).
        (unsafe { pq::PQstatus(self.inner.conn) }) == pq::ConnStatusType::CONNECTION_BAD
    }

    fn error_message(&self) -> String {
        if self.inner.conn.is_null() {
            return "connection is closed".into();
        }
        // SAFETY: open connection; the message belongs to it.
        let p = unsafe { pq::PQerrorMessage(self.inner.conn) };
        if p.is_null() {
            return String::new();
        }
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    fn lost(&self) -> RemoteError {
        self.err(RemoteError::connection_lost(&self.error_message()))
    }

    fn result_error(&self, r: &QueryResult) -> RemoteError {
        let fallback = {
            // SAFETY: `r.res` is live; the message belongs to it.
            let p = unsafe { pq::PQresultErrorMessage(r.res) };
            if p.is_null() {
                String::new()
            } else {
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        self.err(RemoteError::from_remote(
            r.field(pq::PG_DIAG_SQLSTATE).as_deref(),
            r.field(pq::PG_DIAG_MESSAGE_PRIMARY).as_deref(),
            r.field(pq::PG_DIAG_MESSAGE_DETAIL).as_deref(),
            r.field(pq::PG_DIAG_MESSAGE_HINT).as_deref(),
            r.field(pq::PG_DIAG_CONTEXT).as_deref(),
            !self.status_bad(),
            &fallback,
        ))
    }

    fn ensure_idle(&self) -> Result<(), RemoteError> {
        if self.inner.conn.is_null() {
            return Err(self.err(RemoteError::new(
                SqlState::CONNECTION_DOES_NOT_EXIST,
                "connection to the remote server is closed",
            )));
        }
        if self.status_bad() {
            return Err(self.lost());
        }
        if self.inner.mode != Mode::Idle {
            return Err(self.err(RemoteError::new(
                SqlState::INTERNAL_ERROR,
                "another command is already in progress on this connection",
            )));
        }
        Ok(())
    }

    fn send(
        &mut self,
        sql: &str,
        params: &[Option<&str>],
        single_row: bool,
    ) -> Result<(), RemoteError> {
        self.ensure_idle()?;
        let bad = |what: &str| {
            RemoteError::new(
                SqlState::CHARACTER_NOT_IN_REPERTOIRE,
                format!("{what} contains a zero byte"),
            )
        };
        let q = CString::new(sql).map_err(|_| self.err(bad("query")))?;
        let vals: Vec<Option<CString>> = params
            .iter()
            .map(|p| p.map(CString::new).transpose())
            .collect::<Result<_, _>>()
            .map_err(|_| self.err(bad("a query parameter")))?;
        let ptrs: Vec<*const c_char> = vals
            .iter()
            .map(|v| v.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
            .collect();
        // SAFETY: open idle connection; the query and parameter strings outlive the
        // call; NULL types/lengths/formats mean "server infers, text".
        let ok = unsafe {
            pq::PQsendQueryParams(
                self.inner.conn,
                q.as_ptr(),
                ptrs.len() as c_int,
                std::ptr::null(),
                if ptrs.is_empty() {
                    std::ptr::null()
                } else {
                    ptrs.as_ptr()
                },
                std::ptr::null(),
                std::ptr::null(),
                0,
            )
        };
        if ok == 0 {
            return Err(self.lost_or(RemoteError::new(
                SqlState::CONNECTION_EXCEPTION,
                "could not send query",
            )));
        }
        self.inner.mode = Mode::Busy;
        // SAFETY: right after PQsendQueryParams, as libpq requires.
        if single_row && unsafe { pq::PQsetSingleRowMode(self.inner.conn) } == 0 {
            self.abandon();
            return Err(self.err(RemoteError::new(
                SqlState::INTERNAL_ERROR,
                "could not enter single-row mode",
            )));
        }
        self.flush_output()
    }

    /// libpq's error message as a connection loss if the connection is gone, else as
    /// the given error's detail.
    fn lost_or(&self, e: RemoteError) -> RemoteError {
        if self.status_bad() {
            self.lost()
        } else {
            let m = logic::clean_libpq_message(&self.error_message());
            self.err(e.detail(m))
        }
    }

    /// Push buffered output to the server (non-blocking mode), reading meanwhile.
    fn flush_output(&mut self) -> Result<(), RemoteError> {
        loop {
            // SAFETY: open connection.
            match unsafe { pq::PQflush(self.inner.conn) } {
                0 => return Ok(()),
                1 => {
                    let w = self.wait(
                        pg_sys::WL_SOCKET_READABLE | pg_sys::WL_SOCKET_WRITEABLE,
                        None,
                        true,
                    )?;
                    if let Waited::Ready { readable: true, .. } = w {
                        // SAFETY: open connection.
                        if unsafe { pq::PQconsumeInput(self.inner.conn) } == 0 {
                            return Err(self.lost());
                        }
                    }
                }
                _ => return Err(self.lost()),
            }
        }
    }

    /// The next result of the running command, waiting for it; `None` when the command
    /// is complete (the connection is then idle).
    fn next_result(&mut self) -> Result<Option<QueryResult>, RemoteError> {
        // SAFETY (all libpq calls below): the connection is open while mode != Idle.
        while unsafe { pq::PQisBusy(self.inner.conn) } != 0 {
            if let Waited::Ready { .. } = self.wait(pg_sys::WL_SOCKET_READABLE, None, true)? {
                if unsafe { pq::PQconsumeInput(self.inner.conn) } == 0 {
                    break; // PQgetResult reports it
                }
            }
        }
        let r = unsafe { pq::PQgetResult(self.inner.conn) };
        self.flush_notices();
        if r.is_null() {
            self.inner.mode = Mode::Idle;
            if self.status_bad() {
                return Err(self.lost());
            }
            return Ok(None);
        }
        Ok(Some(QueryResult { res: r }))
    }

    /// Read the rest of a command's results; the first error is returned.
    fn finish_command(&mut self) -> Result<Option<u64>, RemoteError> {
        let mut error = None;
        let mut rows = None;
        while let Some(r) = self.next_result()? {
            match r.status() {
                pq::ExecStatusType::PGRES_COMMAND_OK | pq::ExecStatusType::PGRES_TUPLES_OK => {
                    rows = r.cmd_tuples()
                }
                st @ (pq::ExecStatusType::PGRES_COPY_IN
                | pq::ExecStatusType::PGRES_COPY_OUT
                | pq::ExecStatusType::PGRES_COPY_BOTH) => {
                    // still (or again) in a COPY: end it rather than read forever
                    drop(r);
                    self.inner.mode = if st == pq::ExecStatusType::PGRES_COPY_IN {
                        Mode::CopyIn
                    } else {
                        Mode::CopyOut
                    };
                    self.abandon();
                    return Err(error.unwrap_or_else(|| {
                        self.err(RemoteError::new(
                            SqlState::INTERNAL_ERROR,
                            "unexpected COPY state",
                        ))
                    }));
                }
                _ => {
                    if error.is_none() {
                        error = Some(self.result_error(&r))
                    }
                }
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    fn start_copy(&mut self, sql: &str, want: pq::ExecStatusType) -> Result<(), RemoteError> {
        self.send(sql, &[], false)?;
        match self.next_result()? {
            Some(r) if r.status() == want => Ok(()),
            Some(r) => {
                let st = r.status();
                let e = if st == pq::ExecStatusType::PGRES_FATAL_ERROR {
                    self.result_error(&r)
                } else {
                    self.err(RemoteError::new(
                        SqlState::INTERNAL_ERROR,
                        "the command is not the expected COPY",
                    ))
                };
                drop(r);
                match st {
                    // a COPY of the other direction is running: stop it
                    pq::ExecStatusType::PGRES_COPY_IN => {
                        self.inner.mode = Mode::CopyIn;
                        self.abandon();
                    }
                    pq::ExecStatusType::PGRES_COPY_OUT | pq::ExecStatusType::PGRES_COPY_BOTH => {
                        self.inner.mode = Mode::CopyOut;
                        self.abandon();
                    }
                    _ => {
                        if self.finish_command().is_err() {
                            self.abandon();
                        }
                    }
                }
                Err(e)
            }
            None => Err(self.err(RemoteError::new(SqlState::INTERNAL_ERROR, "empty query"))),
        }
    }

    /// Wait on the socket (and the latch, and `deadline`). With `interruptible`, a latch
    /// wake runs CHECK_FOR_INTERRUPTS; an interrupt that raises first cancels the running
    /// remote command (bounded), then carries on unwinding.
    fn wait(
        &mut self,
        events: u32,
        deadline: Option<Instant>,
        interruptible: bool,
    ) -> Result<Waited, RemoteError> {
        if self.inner.conn.is_null() {
            return Err(self.lost());
        }
        // SAFETY: open connection.
        let sock = unsafe { pq::PQsocket(self.inner.conn) };
        if sock < 0 {
            return Err(self.lost());
        }
        let mut flags = pg_sys::WL_LATCH_SET | pg_sys::WL_EXIT_ON_PM_DEATH | events;
        let mut timeout: libc::c_long = -1;
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Waited::TimedOut);
            }
            flags |= pg_sys::WL_TIMEOUT;
            timeout = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_long;
        }
        // SAFETY: MyLatch is this backend's latch; the socket is the connection's.
        let rc = unsafe {
            pg_sys::WaitLatchOrSocket(pg_sys::MyLatch, flags as c_int, sock, timeout, WAIT_EVENT)
        } as u32;
        if rc & pg_sys::WL_LATCH_SET != 0 {
            // SAFETY: as above.
            unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
            if interruptible {
                self.check_interrupts();
            }
        }
        self.flush_notices();
        let readable = rc & pg_sys::WL_SOCKET_READABLE != 0;
        let writeable = rc & pg_sys::WL_SOCKET_WRITEABLE != 0;
        Ok(if readable || writeable {
            Waited::Ready { readable }
        } else if rc & pg_sys::WL_TIMEOUT != 0 {
            Waited::TimedOut
        } else {
            Waited::Latch
        })
    }

    fn check_interrupts(&mut self) {
        // SAFETY: reading a backend-local flag.
        if unsafe { pg_sys::InterruptPending } == 0 {
            return;
        }
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| {
            pgrx::check_for_interrupts!();
        })) {
            self.abandon();
            resume_unwind(payload);
        }
    }

    /// Stop whatever remote command is running so the connection is idle again: send a
    /// cancel, read and discard until the command ends, at most `cancel_timeout`; a
    /// remote that does not stop in time (or a broken connection) is closed. Runs with
    /// interrupts held, so it can run during unwinding.
    fn abandon(&mut self) {
        if self.inner.conn.is_null() || self.inner.mode == Mode::Idle {
            return;
        }
        let _hold = HoldInterrupts::new();
        let deadline = Instant::now() + self.cancel_timeout;
        let _cancel = if self.inner.mode == Mode::CopyIn {
            // SAFETY: open connection in COPY IN: end it with an error (non-blocking).
            unsafe { pq::PQputCopyEnd(self.inner.conn, c"canceled by the client".as_ptr()) };
            self.inner.mode = Mode::Busy;
            None
        } else {
            spawn_cancel(self.inner.conn)
        };
        // Some(true): stopped; Some(false): still running at the deadline; None: the
        // connection broke (then there is nothing to say: the error that brought us
        // here already tells of it)
        let stopped = loop {
            match self.drain_step() {
                Some(true) => break Some(true),
                None => break None,
                Some(false) => {}
            }
            // SAFETY: open connection; PQflush pushes the copy end if still queued.
            let pending_output = unsafe { pq::PQflush(self.inner.conn) } == 1;
            let mut events = pg_sys::WL_SOCKET_READABLE;
            if pending_output {
                events |= pg_sys::WL_SOCKET_WRITEABLE;
            }
            match self.wait(events, Some(deadline), false) {
                Ok(Waited::TimedOut) => break Some(false),
                Err(_) => break None,
                Ok(_) => {}
            }
        };
        match stopped {
            Some(true) => self.inner.mode = Mode::Idle,
            Some(false) => {
                pgrx::log!(
                    "pgq: closing the connection to {}: the remote command did not stop within {} s of a cancel",
                    self.label,
                    self.cancel_timeout.as_secs_f64()
                );
                self.close();
            }
            None => self.close(),
        }
    }

    /// One non-blocking step of draining: Some(true) when the command is over,
    /// Some(false) when more input is needed, None when the connection broke.
    fn drain_step(&mut self) -> Option<bool> {
        let conn = self.inner.conn;
        // SAFETY (all libpq calls below): `conn` is open.
        if unsafe { pq::PQconsumeInput(conn) } == 0 {
            return None;
        }
        loop {
            if self.inner.mode == Mode::CopyOut {
                let mut buf: *mut c_char = std::ptr::null_mut();
                match unsafe { pq::PQgetCopyData(conn, &mut buf, 1) } {
                    n if n > 0 => {
                        unsafe { pq::PQfreemem(buf.cast()) };
                        continue;
                    }
                    0 => return Some(false),
                    -1 => self.inner.mode = Mode::Busy,
                    _ => return None,
                }
            }
            if unsafe { pq::PQisBusy(conn) } != 0 {
                return Some(false);
            }
            let r = unsafe { pq::PQgetResult(conn) };
            if r.is_null() {
                self.flush_notices();
                return Some(true);
            }
            let st = unsafe { pq::PQresultStatus(r) };
            unsafe { pq::PQclear(r) };
            match st {
                pq::ExecStatusType::PGRES_COPY_OUT => self.inner.mode = Mode::CopyOut,
                pq::ExecStatusType::PGRES_COPY_IN => {
                    unsafe { pq::PQputCopyEnd(conn, c"canceled by the client".as_ptr()) };
                }
                pq::ExecStatusType::PGRES_COPY_BOTH => return None,
                _ => {}
            }
        }
    }

    fn close(&mut self) {
        let inner_ptr: *mut Inner = &mut *self.inner;
        unregister(inner_ptr);
        if !self.inner.conn.is_null() {
            self.flush_notices();
            // SAFETY: the connection is open and ours; closed exactly once.
            unsafe { pq::PQfinish(self.inner.conn) };
            self.inner.conn = std::ptr::null_mut();
        }
        if self.inner.fd_reserved {
            // SAFETY: paired with the AcquireExternalFD in connect.
            unsafe { pg_sys::ReleaseExternalFD() };
            self.inner.fd_reserved = false;
        }
        self.inner.mode = Mode::Idle;
    }

    /// Log the queued remote notices at LOG (scrubbed).
    fn flush_notices(&self) {
        let list = match self.inner.notices.try_borrow_mut() {
            Ok(mut q) if !q.is_empty() => std::mem::take(&mut *q),
            _ => Vec::new(),
        };
        for n in list {
            let msg = logic::scrub(&n.message, &self.secrets);
            pgrx::log!("pgq: {}: remote {}: {}", self.label, n.severity, msg);
        }
        let dropped = self.inner.notices_dropped.replace(0);
        if dropped > 0 {
            pgrx::log!(
                "pgq: {}: {} more remote notices not logged",
                self.label,
                dropped
            );
        }
    }
}

/// Rows of a single-row-mode query. Dropping it before the end cancels the rest of the
/// query (bounded by the cancel timeout), so the connection can be used again.
pub struct RowStream<'c> {
    conn: &'c mut Connection,
    done: bool,
}

impl RowStream<'_> {
    /// The next row, `None` at the end. An error ends the stream.
    pub fn next_row(&mut self) -> Result<Option<Row>, RemoteError> {
        if self.done {
            return Ok(None);
        }
        loop {
            let r = match self.conn.next_result() {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.done = true;
                    return Ok(None);
                }
                Err(e) => {
                    self.done = true;
                    self.conn.abandon();
                    return Err(e);
                }
            };
            match r.status() {
                pq::ExecStatusType::PGRES_SINGLE_TUPLE => return Ok(Some(Row(r))),
                pq::ExecStatusType::PGRES_TUPLES_OK | pq::ExecStatusType::PGRES_COMMAND_OK => {}
                _ => {
                    let e = self.conn.result_error(&r);
                    drop(r);
                    self.done = true;
                    if self.conn.finish_command().is_err() {
                        self.conn.abandon();
                    }
                    return Err(e);
                }
            }
        }
    }
}

impl Iterator for RowStream<'_> {
    type Item = Result<Row, RemoteError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_row().transpose()
    }
}

impl Drop for RowStream<'_> {
    fn drop(&mut self) {
        self.conn.abandon();
    }
}

/// The data of a `COPY ... TO STDOUT`, one chunk (row) at a time.
pub struct CopyOut<'c> {
    conn: &'c mut Connection,
    done: bool,
}

impl CopyOut<'_> {
    /// The next chunk, `None` once the COPY has completed successfully.
    pub fn next_chunk(&mut self) -> Result<Option<CopyData>, RemoteError> {
        if self.done {
            return Ok(None);
        }
        loop {
            let mut buf: *mut c_char = std::ptr::null_mut();
            // SAFETY: open connection in COPY OUT; async mode never blocks.
            let n = unsafe { pq::PQgetCopyData(self.conn.inner.conn, &mut buf, 1) };
            if n > 0 {
                return Ok(Some(CopyData {
                    ptr: buf,
                    len: n as usize,
                }));
            }
            match n {
                0 => {
                    if let Waited::Ready { .. } =
                        self.conn.wait(pg_sys::WL_SOCKET_READABLE, None, true)?
                    {
                        // SAFETY: open connection.
                        if unsafe { pq::PQconsumeInput(self.conn.inner.conn) } == 0 {
                            self.done = true;
                            return Err(self.conn.lost());
                        }
                    }
                }
                -1 => {
                    self.done = true;
                    self.conn.inner.mode = Mode::Busy;
                    return self.conn.finish_command().map(|_| None);
                }
                _ => {
                    self.done = true;
                    return Err(self.conn.lost());
                }
            }
        }
    }
}

impl Drop for CopyOut<'_> {
    fn drop(&mut self) {
        self.conn.abandon();
    }
}

/// A `COPY ... FROM STDIN` being written. Call [`CopyIn::finish`]; dropping it
/// unfinished makes the remote COPY fail (nothing is committed there).
pub struct CopyIn<'c> {
    conn: &'c mut Connection,
    done: bool,
}

impl CopyIn<'_> {
    /// Queue data (any split of the COPY stream), waiting while libpq's buffer is full.
    pub fn write(&mut self, data: &[u8]) -> Result<(), RemoteError> {
        for piece in data.chunks(1 << 20) {
            loop {
                // SAFETY: open connection in COPY IN; `piece` is valid for its length.
                let r = unsafe {
                    pq::PQputCopyData(
                        self.conn.inner.conn,
                        piece.as_ptr().cast(),
                        piece.len() as c_int,
                    )
                };
                match r {
                    1 => break,
                    0 => self.wait_writable()?,
                    _ => return Err(self.failed()),
                }
            }
        }
        Ok(())
    }

    /// libpq refused COPY data: either the connection broke, or the remote already
    /// ended the COPY with an error, which is then read and returned.
    fn failed(&mut self) -> RemoteError {
        self.done = true;
        if self.conn.status_bad() {
            return self.conn.lost();
        }
        let libpq_message = logic::clean_libpq_message(&self.conn.error_message());
        self.conn.inner.mode = Mode::Busy;
        match self.conn.finish_command() {
            Err(e) => e,
            Ok(_) => self.conn.err(
                RemoteError::new(SqlState::INTERNAL_ERROR, "COPY data was refused")
                    .detail(libpq_message),
            ),
        }
    }

    fn wait_writable(&mut self) -> Result<(), RemoteError> {
        let w = self.conn.wait(
            pg_sys::WL_SOCKET_READABLE | pg_sys::WL_SOCKET_WRITEABLE,
            None,
            true,
        )?;
        if let Waited::Ready { readable, .. } = w {
            // SAFETY: open connection.
            if readable && unsafe { pq::PQconsumeInput(self.conn.inner.conn) } == 0 {
                return Err(self.conn.lost());
            }
            // SAFETY: open connection.
            if unsafe { pq::PQflush(self.conn.inner.conn) } < 0 {
                return Err(self.conn.lost());
            }
        }
        Ok(())
    }

    /// End the COPY and wait for the remote to finish it: the row count.
    pub fn finish(mut self) -> Result<u64, RemoteError> {
        self.end(None)
    }

    /// End the COPY with an error: the remote rolls it back. Returns the remote's error
    /// (which names `reason`).
    pub fn abort(mut self, reason: &str) -> RemoteError {
        match self.end(Some(reason)) {
            Err(e) => e,
            Ok(_) => self.conn.err(RemoteError::new(
                SqlState::INTERNAL_ERROR,
                "COPY was not aborted",
            )),
        }
    }

    fn end(&mut self, reason: Option<&str>) -> Result<u64, RemoteError> {
        let reason = reason.map(|r| CString::new(r.replace('\0', " ")).unwrap_or_default());
        loop {
            // SAFETY: open connection in COPY IN; `reason` outlives the call.
            let r = unsafe {
                pq::PQputCopyEnd(
                    self.conn.inner.conn,
                    reason.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                )
            };
            match r {
                1 => break,
                0 => self.wait_writable()?,
                _ => return Err(self.failed()),
            }
        }
        self.done = true;
        self.conn.inner.mode = Mode::Busy;
        self.conn.flush_output()?;
        self.conn.finish_command().map(|n| n.unwrap_or(0))
    }
}

impl Drop for CopyIn<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.conn.abandon();
        }
    }
}
