//! Supervision decisions: what a supervisor (the launcher for the per-database
//! workers, later a database's manager for its replay and copy workers) does with one
//! worker slot. Shared memory holds the slots; this module only decides, so the rules
//! are unit-tested without a server.
//!
//! A slot goes through four phases:
//! * `Idle`: no process; the supervisor starts one once `next_start` and
//!   `blocked_until` have passed.
//! * `Launched`: the supervisor registered a worker for the slot's current generation;
//!   the postmaster has not forked it yet, or it has not attached yet.
//! * `Running`: a worker attached (it checked the generation and that no live process
//!   holds the slot) and wrote its pid.
//! * `Exited`: the worker of the current generation ran its exit callback.
//!
//! The supervisor keeps no record of its own: a restarted supervisor reads the same
//! slots and finds `Launched`/`Running` slots busy, so it starts no duplicate.

/// Microseconds, as PostgreSQL's TimestampTz.
pub const SEC: i64 = 1_000_000;

/// A slot whose worker was registered but never attached is given up after this long
/// (the postmaster could not fork it, or it failed before attaching).
pub const STARTUP_GRACE: i64 = 30 * SEC;

/// How long a database without the extension waits before it is probed again
/// (CREATE EXTENSION wakes the launcher at once anyway).
pub const REPROBE_AFTER: i64 = 300 * SEC;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Phase {
    #[default]
    Idle = 0,
    Launched = 1,
    Running = 2,
    Exited = 3,
}

/// What the supervisor knows about one slot at one moment.
#[derive(Copy, Clone, Debug, Default)]
pub struct SlotView {
    pub phase: Phase,
    /// the recorded pid (0: none) and whether that process still exists
    pub pid: i32,
    pub pid_alive: bool,
    pub launched_at: i64,
    pub next_start: i64,
    pub blocked_until: i64,
    pub restarts: i32,
    /// the worker found nothing to do in its database (no extension, no node):
    /// probed again after `REPROBE_AFTER`, not restarted as a crash
    pub nothing_to_do: bool,
    /// the supervisor wants workers of this kind at all (pgq.enabled, node present)
    pub wanted: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// a live worker holds the slot, or one is on its way: leave it alone
    Busy,
    /// the worker is gone: record it (new `restarts`, `next_start`), the slot is Idle
    Reap { restarts: i32, next_start: i64 },
    /// start a worker now
    Start,
    /// nothing to start before this time
    WaitUntil(i64),
    /// not wanted and nothing running
    Nothing,
}

/// Delay before restart number `restarts` (1, 2, 4, ... seconds, at most a minute).
pub fn backoff(restarts: i32) -> i64 {
    let s = 1i64 << restarts.clamp(0, 6);
    s.min(60) * SEC
}

pub fn decide(v: &SlotView, now: i64) -> Decision {
    let gone = match v.phase {
        Phase::Running => !(v.pid > 0 && v.pid_alive),
        Phase::Launched => {
            if v.pid > 0 {
                !v.pid_alive
            } else {
                now - v.launched_at > STARTUP_GRACE
            }
        }
        Phase::Exited => true,
        Phase::Idle => false,
    };
    if matches!(v.phase, Phase::Running | Phase::Launched) && !gone {
        return Decision::Busy;
    }
    if gone {
        return if v.nothing_to_do {
            Decision::Reap {
                restarts: 0,
                next_start: now + REPROBE_AFTER,
            }
        } else if v.blocked_until > now || !v.wanted {
            // stopped on purpose: no backoff
            Decision::Reap {
                restarts: v.restarts,
                next_start: v.next_start,
            }
        } else {
            let r = v.restarts.saturating_add(1);
            Decision::Reap {
                restarts: r,
                next_start: now + backoff(r),
            }
        };
    }
    if !v.wanted {
        return Decision::Nothing;
    }
    let at = v.next_start.max(v.blocked_until);
    if at > now {
        Decision::WaitUntil(at)
    } else {
        Decision::Start
    }
}

/// Whether a worker started for `generation` may take a slot whose current
/// generation is `slot_generation` and whose recorded holder is `holder`
/// (`holder_alive`: that process exists). `me` is the worker's own pid.
pub fn may_attach(
    generation: u32,
    slot_generation: u32,
    holder: i32,
    holder_alive: bool,
    me: i32,
) -> Result<(), AttachRefusal> {
    if generation != slot_generation {
        return Err(AttachRefusal::StaleGeneration);
    }
    if holder > 0 && holder != me && holder_alive {
        return Err(AttachRefusal::HeldBy(holder));
    }
    Ok(())
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AttachRefusal {
    /// the slot was reused for a newer start since this worker was asked for
    StaleGeneration,
    /// a live process holds the slot
    HeldBy(i32),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(phase: Phase) -> SlotView {
        SlotView {
            phase,
            wanted: true,
            ..SlotView::default()
        }
    }

    const NOW: i64 = 1_000 * SEC;

    #[test]
    fn idle_slot_starts_when_due() {
        assert_eq!(decide(&view(Phase::Idle), NOW), Decision::Start);
        let mut v = view(Phase::Idle);
        v.next_start = NOW + 3 * SEC;
        assert_eq!(decide(&v, NOW), Decision::WaitUntil(NOW + 3 * SEC));
        v.blocked_until = NOW + 9 * SEC;
        assert_eq!(decide(&v, NOW), Decision::WaitUntil(NOW + 9 * SEC));
        v.wanted = false;
        assert_eq!(decide(&v, NOW), Decision::Nothing);
    }

    #[test]
    fn live_worker_is_busy_whoever_started_it() {
        let mut v = view(Phase::Running);
        v.pid = 42;
        v.pid_alive = true;
        assert_eq!(decide(&v, NOW), Decision::Busy);
        // a restarted supervisor that never launched it sees the same
        v.wanted = false;
        assert_eq!(decide(&v, NOW), Decision::Busy);
    }

    #[test]
    fn launched_worker_is_busy_until_grace_ends() {
        let mut v = view(Phase::Launched);
        v.launched_at = NOW - 5 * SEC;
        assert_eq!(decide(&v, NOW), Decision::Busy);
        v.launched_at = NOW - STARTUP_GRACE - 1;
        assert!(matches!(
            decide(&v, NOW),
            Decision::Reap { restarts: 1, .. }
        ));
        // the startup pid is known and the process is gone: reaped at once
        v.launched_at = NOW;
        v.pid = 7;
        v.pid_alive = false;
        assert!(matches!(
            decide(&v, NOW),
            Decision::Reap { restarts: 1, .. }
        ));
    }

    #[test]
    fn crash_restarts_with_growing_backoff() {
        let mut v = view(Phase::Running);
        v.pid = 42;
        v.pid_alive = false;
        v.restarts = 2;
        assert_eq!(
            decide(&v, NOW),
            Decision::Reap {
                restarts: 3,
                next_start: NOW + 8 * SEC
            }
        );
        v.phase = Phase::Exited;
        v.restarts = 40;
        assert_eq!(
            decide(&v, NOW),
            Decision::Reap {
                restarts: 41,
                next_start: NOW + 60 * SEC
            }
        );
    }

    #[test]
    fn nothing_to_do_is_reprobed_later_without_backoff() {
        let mut v = view(Phase::Exited);
        v.nothing_to_do = true;
        v.restarts = 5;
        assert_eq!(
            decide(&v, NOW),
            Decision::Reap {
                restarts: 0,
                next_start: NOW + REPROBE_AFTER
            }
        );
    }

    #[test]
    fn stopped_on_purpose_keeps_its_schedule() {
        let mut v = view(Phase::Exited);
        v.blocked_until = NOW + 10 * SEC;
        v.restarts = 1;
        v.next_start = 5;
        assert_eq!(
            decide(&v, NOW),
            Decision::Reap {
                restarts: 1,
                next_start: 5
            }
        );
        let mut v = view(Phase::Exited);
        v.wanted = false;
        assert_eq!(
            decide(&v, NOW),
            Decision::Reap {
                restarts: 0,
                next_start: 0
            }
        );
    }

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(backoff(0), SEC);
        assert_eq!(backoff(1), 2 * SEC);
        assert_eq!(backoff(5), 32 * SEC);
        assert_eq!(backoff(6), 60 * SEC);
        assert_eq!(backoff(i32::MAX), 60 * SEC);
        assert_eq!(backoff(-3), SEC);
    }

    #[test]
    fn attach_rules() {
        assert_eq!(may_attach(5, 5, 0, false, 100), Ok(()));
        assert_eq!(may_attach(5, 5, 100, true, 100), Ok(()));
        assert_eq!(may_attach(5, 5, 99, false, 100), Ok(()));
        assert_eq!(
            may_attach(5, 5, 99, true, 100),
            Err(AttachRefusal::HeldBy(99))
        );
        assert_eq!(
            may_attach(4, 5, 0, false, 100),
            Err(AttachRefusal::StaleGeneration)
        );
    }
}
