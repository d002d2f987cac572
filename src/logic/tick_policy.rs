//! When does a queue get a new tick (README "Settings": the queue thresholds)? Pure decision logic shared by
//! `pgq.ticker()`, `pgq.ticker(queue)` and the in-server ticker.

/// Queue thresholds, durations in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub max_count: i64,
    pub max_lag: f64,
    pub idle_period: f64,
}

/// What the ticker knows about the queue's latest ticks.
#[derive(Debug, Clone, Copy)]
pub struct TickState {
    /// Event sequence now (non-transactional last value).
    pub event_seq: i64,
    /// Latest tick: its event sequence value and age (now - tick_time, seconds).
    pub last: Option<(i64, f64)>,
    /// Time between the latest tick and the one before it, seconds.
    pub prev_gap: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Tick,
    Skip,
}

pub fn decide(th: &Thresholds, st: &TickState) -> Decision {
    let Some((last_seq, lag)) = st.last else {
        return Decision::Tick;
    };
    let new_events = st.event_seq - last_seq;
    if new_events > 0 {
        if new_events >= th.max_count || lag >= th.max_lag {
            Decision::Tick
        } else {
            Decision::Skip
        }
    } else {
        // Idle: back off geometrically, never closer than max_lag/2, at least once
        // per idle_period.
        let Some(gap) = st.prev_gap else {
            return Decision::Tick;
        };
        if lag < th.max_lag / 2.0 || (lag < 2.0 * gap && lag < th.idle_period) {
            Decision::Skip
        } else {
            Decision::Tick
        }
    }
}

/// Seconds from now until `decide` would say Tick if nothing else happened (no new
/// events), 0 when it already does. Lets the ticker sleep exactly until a queue's
/// lag or idle threshold is reached instead of polling.
pub fn due_in(th: &Thresholds, st: &TickState) -> f64 {
    let Some((last_seq, lag)) = st.last else {
        return 0.0;
    };
    let threshold = if st.event_seq - last_seq > 0 {
        if st.event_seq - last_seq >= th.max_count {
            return 0.0;
        }
        th.max_lag
    } else {
        let Some(gap) = st.prev_gap else { return 0.0 };
        (th.max_lag / 2.0).max((2.0 * gap).min(th.idle_period))
    };
    (threshold - lag).max(0.0)
}

/// How the in-server ticker sleeps until `until` (microseconds, like `now`): a sleep
/// longer than the minimum period asks the next event commit of the database to wake
/// it (`Arm`), unless events were committed since its last run began, which that run
/// may not have seen: then it comes back after the minimum period (`Short(next_tick)`,
/// no later than `next_tick`). A short sleep needs no wake-up (`Plain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sleep {
    Plain,
    Arm,
    Short(i64),
}

pub fn before_sleep(
    now: i64,
    until: i64,
    next_tick: i64,
    last_run: i64,
    min_period: i64,
    commits_moved: bool,
) -> Sleep {
    if until - now <= min_period {
        Sleep::Plain
    } else if commits_moved {
        Sleep::Short(next_tick.min((last_run + min_period).max(now)))
    } else {
        Sleep::Arm
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sleeping_ticker() {
        use super::{before_sleep, Sleep};
        // 5 ms to the next run, minimum period 10 ms: no wake-up needed
        assert_eq!(
            before_sleep(1_000, 6_000, 6_000, 0, 10_000, true),
            Sleep::Plain
        );
        // a long sleep with no commit since the last run: armed
        assert_eq!(
            before_sleep(1_000, 900_000, 900_000, 0, 10_000, false),
            Sleep::Arm
        );
        // commits since the last run: back at the run's time + the minimum period
        assert_eq!(
            before_sleep(1_000, 900_000, 900_000, 0, 10_000, true),
            Sleep::Short(10_000)
        );
        // ... but not in the past, and never later than the tick was due anyway
        assert_eq!(
            before_sleep(50_000, 900_000, 900_000, 0, 10_000, true),
            Sleep::Short(50_000)
        );
        assert_eq!(
            before_sleep(1_000, 900_000, 5_000, 0, 10_000, true),
            Sleep::Short(5_000)
        );
    }

    use super::*;
    const TH: Thresholds = Thresholds {
        max_count: 500,
        max_lag: 3.0,
        idle_period: 60.0,
    };

    fn st(seq: i64, last: Option<(i64, f64)>, gap: Option<f64>) -> TickState {
        TickState {
            event_seq: seq,
            last,
            prev_gap: gap,
        }
    }

    #[test]
    fn first_tick_always() {
        assert_eq!(decide(&TH, &st(1, None, None)), Decision::Tick);
    }

    #[test]
    fn busy_queue() {
        assert_eq!(
            decide(&TH, &st(600, Some((100, 0.1)), Some(1.0))),
            Decision::Tick
        );
        assert_eq!(
            decide(&TH, &st(599, Some((100, 0.1)), Some(1.0))),
            Decision::Skip
        );
        assert_eq!(
            decide(&TH, &st(101, Some((100, 3.0)), Some(1.0))),
            Decision::Tick
        );
        assert_eq!(
            decide(&TH, &st(101, Some((100, 2.9)), Some(1.0))),
            Decision::Skip
        );
    }

    #[test]
    fn due_matches_decide() {
        let cases = [
            st(1, None, None),
            st(600, Some((100, 0.1)), Some(1.0)),
            st(101, Some((100, 1.2)), Some(1.0)),
            st(5, Some((5, 0.2)), None),
            st(5, Some((5, 0.2)), Some(0.1)),
            st(5, Some((5, 4.0)), Some(6.0)),
            st(5, Some((5, 10.0)), Some(50.0)),
        ];
        for c in cases {
            let due = due_in(&TH, &c);
            let at = |extra: f64| {
                let mut s = c;
                if let Some((seq, lag)) = s.last {
                    s.last = Some((seq, lag + extra));
                }
                decide(&TH, &s)
            };
            assert_eq!(at(due), Decision::Tick, "{c:?} due {due}");
            if due > 0.0 {
                assert_eq!(at(due - 0.001), Decision::Skip, "{c:?} due {due}");
            }
        }
    }

    #[test]
    fn idle_backoff() {
        // no tick before the latest one
        assert_eq!(decide(&TH, &st(5, Some((5, 0.0)), None)), Decision::Tick);
        // never closer than max_lag / 2
        assert_eq!(
            decide(&TH, &st(5, Some((5, 1.4)), Some(0.1))),
            Decision::Skip
        );
        // lag below twice the previous gap
        assert_eq!(
            decide(&TH, &st(5, Some((5, 10.0)), Some(6.0))),
            Decision::Skip
        );
        assert_eq!(
            decide(&TH, &st(5, Some((5, 12.0)), Some(6.0))),
            Decision::Tick
        );
        // but at least once per idle period
        assert_eq!(
            decide(&TH, &st(5, Some((5, 60.0)), Some(50.0))),
            Decision::Tick
        );
        // negative "new" counts as idle
        assert_eq!(
            decide(&TH, &st(4, Some((5, 1.0)), Some(0.1))),
            Decision::Skip
        );
    }
}
