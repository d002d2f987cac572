//! Shared state of the pgq background workers: the launcher's pid and one slot per
//! worker, keyed by (kind, database, object). The slots, not any process's memory, are
//! the record of what runs: a restarted launcher finds the workers it did not start in
//! them, and a worker attaches only to the slot (and generation) it was started for.
//! Read by `pgq.worker_status()`, written by the launcher and the workers, consulted by
//! the utility hook and commit callbacks.

pub use crate::logic::compare::HoldState;
pub use crate::logic::supervise::Phase;
use crate::logic::supervise::SlotView;
use pgrx::lwlock::PgLwLock;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;

/// How many pgq workers (of all kinds) can be known at once.
pub const MAX_WORKERS: usize = 128;
pub const ERROR_LEN: usize = 240;
pub const OBJECT_LEN: usize = 64;

/// What a worker does. The per-database ticker is that database's manager; replay and
/// copy workers are its children.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Kind {
    #[default]
    Ticker = 1,
    /// in-server replay of one cascaded node (object: the queue name), a child of its
    /// database's manager
    Replay = 2,
    /// the initial copy and catch-up of one table of a replayed node (object:
    /// `<londiste.table_info.nr> <table>`, cut to OBJECT_LEN bytes), a child of its
    /// database's manager
    Copy = 3,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ticker => "ticker",
            Kind::Replay => "replay",
            Kind::Copy => "copy",
        }
    }
}

#[derive(Copy, Clone)]
pub struct WorkerSlot {
    pub kind: Kind,
    pub dboid: u32,
    /// what the worker works on inside its database ("" for the ticker)
    pub object_len: u8,
    pub object: [u8; OBJECT_LEN],
    /// bumped at every start: a worker started for an older generation finds the slot
    /// reused and leaves it alone
    pub generation: u32,
    pub in_use: bool,
    /// where the slot's worker is (logic::supervise::Phase)
    pub phase: Phase,
    /// pid of the slot's worker, 0 if none (written by the worker when it attaches, or
    /// by its supervisor from the postmaster's startup report)
    pub pid: i32,
    /// when the supervisor registered the current generation's worker
    pub launched_at: i64,
    /// the database does not have the extension (worker exited 0)
    pub no_extension: bool,
    pub started_at: i64,
    pub last_tick: i64,
    pub last_maint: i64,
    pub last_retry: i64,
    pub ticks: i64,
    pub restarts: i32,
    /// earliest time the launcher may (re)start a worker (crash backoff)
    pub next_start: i64,
    /// worker must stay away until then (DROP/CREATE DATABASE ... TEMPLATE, RENAME)
    pub blocked_until: i64,
    pub last_error_time: i64,
    /// SQLSTATE of the last error ("" if it had none)
    pub sqlstate: [u8; 5],
    pub error_len: u16,
    pub error: [u8; ERROR_LEN],
    /// replay: the provider node's name
    pub provider_len: u8,
    pub provider: [u8; OBJECT_LEN],
    /// replay: the last batch applied (or finished), its end tick and that tick's time
    /// on the provider
    pub batch_id: i64,
    pub tick_id: i64,
    pub tick_time: i64,
    /// replay: events applied since the worker started
    pub events: i64,
    /// replay: an operator asked the worker to retry at once (skip_replay_error)
    pub wake_requested: bool,
    /// replay: a compare holds the worker at this tick (0: no hold): it applies no
    /// batch ending past it, and once it completed exactly that tick it stands still
    /// (pgq_cascade.compare / repair, src/replay/compare.rs)
    pub hold_tick: i64,
    /// replay: the backend holding it; a hold whose backend is gone is dropped
    pub hold_pid: i32,
    /// replay: how far the worker got towards the hold, and its completed tick then
    pub hold_state: HoldState,
    pub hold_position: i64,
    /// ticker: a supervision round is asked for now (a table waits for a copy worker)
    pub supervise_requested: bool,
    /// A ticker's slot: commits of its database that inserted events (counted by the
    /// committing backends), and whether the ticker sleeps long and wants the next
    /// such commit to wake it (then only that one signals: not every commit).
    pub event_commits: u64,
    pub wake_armed: bool,
}

impl Default for WorkerSlot {
    fn default() -> Self {
        WorkerSlot {
            kind: Kind::Ticker,
            dboid: 0,
            object_len: 0,
            object: [0; OBJECT_LEN],
            generation: 0,
            in_use: false,
            phase: Phase::Idle,
            pid: 0,
            launched_at: 0,
            no_extension: false,
            started_at: 0,
            last_tick: 0,
            last_maint: 0,
            last_retry: 0,
            ticks: 0,
            restarts: 0,
            next_start: 0,
            blocked_until: 0,
            last_error_time: 0,
            sqlstate: [0; 5],
            error_len: 0,
            error: [0; ERROR_LEN],
            provider_len: 0,
            provider: [0; OBJECT_LEN],
            batch_id: 0,
            tick_id: 0,
            tick_time: 0,
            events: 0,
            wake_requested: false,
            hold_tick: 0,
            hold_pid: 0,
            hold_state: HoldState::None,
            hold_position: 0,
            supervise_requested: false,
            event_commits: 0,
            wake_armed: false,
        }
    }
}

impl WorkerSlot {
    pub fn object(&self) -> &str {
        std::str::from_utf8(&self.object[..self.object_len as usize]).unwrap_or("")
    }

    pub fn provider(&self) -> &str {
        std::str::from_utf8(&self.provider[..self.provider_len as usize]).unwrap_or("")
    }

    pub fn set_provider(&mut self, name: &str) {
        let mut n = name.len().min(OBJECT_LEN);
        while !name.is_char_boundary(n) {
            n -= 1;
        }
        self.provider[..n].copy_from_slice(&name.as_bytes()[..n]);
        self.provider_len = n as u8;
    }

    /// Drop a compare's hold.
    pub fn clear_hold(&mut self) {
        self.hold_tick = 0;
        self.hold_pid = 0;
        self.hold_state = HoldState::None;
        self.hold_position = 0;
    }

    pub fn clear_error(&mut self) {
        self.error_len = 0;
        self.sqlstate = [0; 5];
    }

    pub fn is(&self, kind: Kind, dboid: u32, object: &str) -> bool {
        self.in_use && self.kind == kind && self.dboid == dboid && self.object() == object
    }

    pub fn sqlstate_text(&self) -> Option<String> {
        (self.sqlstate[0] != 0).then(|| String::from_utf8_lossy(&self.sqlstate).into_owned())
    }

    pub fn set_error(&mut self, now: i64, sqlstate: Option<&str>, msg: &str) {
        self.sqlstate = [0; 5];
        if let Some(code) = sqlstate.filter(|c| c.len() == 5) {
            self.sqlstate.copy_from_slice(code.as_bytes());
        }
        let mut n = msg.len().min(ERROR_LEN);
        while !msg.is_char_boundary(n) {
            n -= 1;
        }
        self.error[..n].copy_from_slice(&msg.as_bytes()[..n]);
        self.error_len = n as u16;
        self.last_error_time = now;
    }

    /// The slot as its supervisor's decision sees it (`wanted`: workers of this kind
    /// should run at all).
    pub fn view(&self, wanted: bool) -> SlotView {
        SlotView {
            phase: self.phase,
            pid: self.pid,
            pid_alive: alive(self.pid),
            launched_at: self.launched_at,
            next_start: self.next_start,
            blocked_until: self.blocked_until,
            restarts: self.restarts,
            nothing_to_do: self.no_extension,
            wanted,
        }
    }

    /// Record that the slot's worker is gone (a `Decision::Reap`).
    pub fn reap(&mut self, restarts: i32, next_start: i64) {
        self.phase = Phase::Idle;
        self.pid = 0;
        self.restarts = restarts;
        self.next_start = next_start;
    }

    pub fn error_text(&self) -> Option<String> {
        if self.error_len == 0 {
            None
        } else {
            Some(String::from_utf8_lossy(&self.error[..self.error_len as usize]).into_owned())
        }
    }
}

#[derive(Copy, Clone)]
pub struct Shared {
    pub launcher_pid: i32,
    /// set by CREATE EXTENSION: re-probe databases known to lack the extension
    pub reprobe: bool,
    /// the generation the next started worker gets
    pub next_generation: u32,
    pub slots: [WorkerSlot; MAX_WORKERS],
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            launcher_pid: 0,
            reprobe: false,
            next_generation: 1,
            slots: [WorkerSlot::default(); MAX_WORKERS],
        }
    }
}

// SAFETY: Shared is plain Copy data with no pointers, valid in any process.
unsafe impl PGRXSharedMemory for Shared {}

// SAFETY: the name is unique to this extension; initialised by pg_shmem_init! in _PG_init.
pub static STATE: PgLwLock<Shared> = unsafe { PgLwLock::new(c"pgq_worker_state") };

static INITIALIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Called from `_PG_init` while preloading.
pub fn init() {
    pgrx::pg_shmem_init!(STATE);
    INITIALIZED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Shared memory exists only when the library was preloaded.
pub fn available() -> bool {
    // SAFETY: reads a PostgreSQL global of this process.
    INITIALIZED.load(std::sync::atomic::Ordering::Relaxed) && unsafe { pg_sys::IsUnderPostmaster }
}

pub fn now() -> i64 {
    // SAFETY: reads the clock; no state.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

impl Shared {
    pub fn find(&self, kind: Kind, dboid: u32, object: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.is(kind, dboid, object))
    }

    /// The slot of (kind, database, object), taking a free one if there is none yet.
    pub fn find_or_add(&mut self, kind: Kind, dboid: u32, object: &str) -> Option<usize> {
        if let Some(i) = self.find(kind, dboid, object) {
            return Some(i);
        }
        if object.len() > OBJECT_LEN {
            return None;
        }
        let i = self.slots.iter().position(|s| !s.in_use)?;
        let mut slot = WorkerSlot {
            kind,
            dboid,
            object_len: object.len() as u8,
            in_use: true,
            ..WorkerSlot::default()
        };
        slot.object[..object.len()].copy_from_slice(object.as_bytes());
        self.slots[i] = slot;
        Some(i)
    }

    /// The ticker (manager) slot of a database.
    pub fn slot_of(&self, dboid: u32) -> Option<usize> {
        self.find(Kind::Ticker, dboid, "")
    }

    pub fn slot_for(&mut self, dboid: u32) -> Option<usize> {
        self.find_or_add(Kind::Ticker, dboid, "")
    }

    /// A new generation for slot `i`, about to get a worker: the slot is `Launched`
    /// from now on. Returns the generation, which the worker is told.
    pub fn new_generation(&mut self, i: usize, now: i64) -> u32 {
        let g = self.next_generation.max(1);
        self.next_generation = g.wrapping_add(1).max(1);
        let slot = &mut self.slots[i];
        slot.generation = g;
        slot.phase = Phase::Launched;
        slot.pid = 0;
        slot.launched_at = now;
        g
    }

    /// The postmaster reported the pid of the worker registered for generation `g` of
    /// slot `i` (`None`: it exited before the report).
    pub fn launched(&mut self, i: usize, g: u32, pid: Option<i32>) {
        let slot = &mut self.slots[i];
        if slot.generation != g || slot.phase != Phase::Launched {
            return; // the worker attached (or exited) already
        }
        match pid {
            Some(p) if slot.pid == 0 => slot.pid = p,
            Some(_) => {}
            None => slot.phase = Phase::Exited,
        }
    }

    /// Registering a worker for generation `g` of slot `i` failed.
    pub fn launch_failed(&mut self, i: usize, g: u32) {
        if self.slots[i].generation == g && self.slots[i].phase == Phase::Launched {
            self.slots[i].phase = Phase::Exited;
        }
    }
}

/// The argument a worker is started with: its slot and the slot's generation.
pub fn start_arg(slot: usize, generation: u32) -> pg_sys::Datum {
    pg_sys::Datum::from(((slot as u64) << 32 | generation as u64) as usize)
}

pub fn parse_start_arg(d: pg_sys::Datum) -> (usize, u32) {
    let v = d.value() as u64;
    ((v >> 32) as usize, v as u32)
}

/// The slot object of a copy worker: the table's `londiste.table_info.nr`, a space and
/// its name, cut to OBJECT_LEN bytes (the number alone keys it; the name is for people).
pub fn copy_object(nr: i32, table: &str) -> String {
    let mut o = format!("{nr} {table}");
    let mut n = o.len().min(OBJECT_LEN);
    while !o.is_char_boundary(n) {
        n -= 1;
    }
    o.truncate(n);
    o
}

/// The `londiste.table_info.nr` a copy worker's slot object names.
pub fn copy_object_nr(object: &str) -> Option<i32> {
    object.split(' ').next()?.parse().ok()
}

/// Whether process `pid` still exists (signal 0 probes without sending anything).
pub fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 has no effect on the target.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Wake a process (launcher or worker): SIGUSR1 sets its latch.
pub fn wake(pid: i32) {
    if pid > 0 {
        // SAFETY: SIGUSR1 to a pgq process recorded in shared memory sets its latch
        // (procsignal); a pid that has exited since gets ESRCH, which is ignored.
        unsafe {
            libc::kill(pid, libc::SIGUSR1);
        }
    }
}

/// Ask a pgq worker to stop: SIGTERM, which its handler (PostgreSQL's `die`) turns
/// into a clean exit at the next interrupt check.
pub fn terminate(pid: i32) {
    if pid > 0 {
        // SAFETY: SIGTERM to a pid a slot records for a pgq worker; ESRCH is ignored.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}
