//! Shared state of the pgq background workers: the launcher's pid and one slot per
//! database with a ticker worker. Read by `pgq.worker_status()`, written by the
//! launcher and the workers, consulted by the utility hook and commit callbacks.

use pgrx::lwlock::PgLwLock;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;

/// How many databases can have a pgq ticker at once.
pub const MAX_DATABASES: usize = 64;
pub const ERROR_LEN: usize = 240;

#[derive(Copy, Clone)]
pub struct DbSlot {
    pub dboid: u32,
    pub in_use: bool,
    /// pid of the running ticker worker, 0 if none
    pub pid: i32,
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
    pub error_len: u16,
    pub error: [u8; ERROR_LEN],
}

impl Default for DbSlot {
    fn default() -> Self {
        DbSlot {
            dboid: 0,
            in_use: false,
            pid: 0,
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
            error_len: 0,
            error: [0; ERROR_LEN],
        }
    }
}

impl DbSlot {
    pub fn set_error(&mut self, now: i64, msg: &str) {
        let mut n = msg.len().min(ERROR_LEN);
        while !msg.is_char_boundary(n) {
            n -= 1;
        }
        self.error[..n].copy_from_slice(&msg.as_bytes()[..n]);
        self.error_len = n as u16;
        self.last_error_time = now;
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
    pub slots: [DbSlot; MAX_DATABASES],
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            launcher_pid: 0,
            reprobe: false,
            slots: [DbSlot::default(); MAX_DATABASES],
        }
    }
}

unsafe impl PGRXSharedMemory for Shared {}

pub static STATE: PgLwLock<Shared> = unsafe { PgLwLock::new(c"pgq_worker_state") };

static mut INITIALIZED: bool = false;

/// Called from `_PG_init` while preloading.
pub fn init() {
    pgrx::pg_shmem_init!(STATE);
    unsafe { INITIALIZED = true };
}

/// Shared memory exists only when the library was preloaded.
pub fn available() -> bool {
    unsafe { INITIALIZED && pg_sys::IsUnderPostmaster }
}

pub fn now() -> i64 {
    unsafe { pg_sys::GetCurrentTimestamp() }
}

impl Shared {
    pub fn slot_of(&self, dboid: u32) -> Option<usize> {
        self.slots.iter().position(|s| s.in_use && s.dboid == dboid)
    }

    pub fn slot_for(&mut self, dboid: u32) -> Option<usize> {
        if let Some(i) = self.slot_of(dboid) {
            return Some(i);
        }
        let i = self.slots.iter().position(|s| !s.in_use)?;
        self.slots[i] = DbSlot {
            dboid,
            in_use: true,
            ..DbSlot::default()
        };
        Some(i)
    }
}

/// Whether process `pid` still exists (signal 0 probes without sending anything).
pub fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 has no effect on the target.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Wake a process (launcher or worker): SIGUSR1 sets its latch.
pub fn wake(pid: i32) {
    if pid > 0 {
        unsafe {
            libc::kill(pid, libc::SIGUSR1);
        }
    }
}
