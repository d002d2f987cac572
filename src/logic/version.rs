//! Versions: the extension version of this build and the per-database worker's check
//! that the SQL objects installed in its database are the ones this library was built
//! for (README, "Versions and upgrades").
//!
//! Two numbers, kept apart on purpose:
//! * the extension version (`pg_extension.extversion`, the control file's
//!   `default_version`, Cargo's package version: one number, pgrx substitutes it),
//!   which changes whenever this project's SQL or library changes;
//! * the PgQ API versions that clients test for (`pgq.version()` = 3.5,
//!   `pgq_node.version()` = 3.5, `londiste.version()` = 3.8, `pgq_ext.version()` = 3.1,
//!   `pgq_coop.version()` = 3.1.1), which change only when the API they promise does.
//!
//! After a new library is installed and the server restarted, a database still has the
//! SQL of the old version until someone runs `ALTER EXTENSION pgq UPDATE`; a server
//! still running an old preloaded library may also see a database updated to SQL newer
//! than itself. In both cases the worker does no work in that database: it logs one
//! line, shows the reason in `pgq.worker_status()`, and looks again now and then.

/// The extension version this library was built for (Cargo's package version, which
/// the control file's `default_version = '@CARGO_VERSION@'` turns into the version
/// `CREATE EXTENSION pgq` installs).
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// SQLSTATE shown in worker_status while the versions disagree
/// (object_not_in_prerequisite_state).
pub const MISMATCH_SQLSTATE: &str = "55000";

/// How often (µs) the installed version is read while the versions agree: an
/// `ALTER EXTENSION pgq UPDATE` to a version this library does not know is noticed
/// within this time.
pub const RECHECK_OK_US: i64 = 5_000_000;
/// How often (µs) it is read while they disagree (and how long the worker waits
/// between looks, unless woken).
pub const RECHECK_WAIT_US: i64 = 1_000_000;

/// What the worker does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// the SQL objects are this library's (or there is no extension: the worker's own
    /// "extension gone" path handles that): do the work
    Run,
    /// do nothing for `wait_us`, then ask again
    Wait { wait_us: i64 },
}

/// A line for the server log (and, for a mismatch, worker_status.last_error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Mismatch(String),
    Resumed(String),
}

/// The message for a database whose installed extension version is not the library's.
pub fn mismatch_message(installed: &str, library: &str) -> String {
    format!(
        "extension pgq is installed at version \"{installed}\" but the loaded library is \
         version \"{library}\"; no ticking or maintenance in this database until they agree \
         (run ALTER EXTENSION pgq UPDATE if the library is the newer one, or restart the \
         server if the library on disk is newer than the one it loaded)"
    )
}

/// The per-database worker's version check: when to read `extversion`, what to do
/// with what it read, and which line (if any) to log. Pure state machine; the worker
/// feeds it the clock and the catalog.
#[derive(Debug, Clone)]
pub struct VersionGate {
    library: String,
    /// time of the last read of extversion (None: never read)
    last_check: Option<i64>,
    /// the mismatching version last reported (None: the versions agreed last time)
    reported: Option<String>,
}

impl VersionGate {
    pub fn new(library: &str) -> Self {
        VersionGate {
            library: library.to_string(),
            last_check: None,
            reported: None,
        }
    }

    /// Whether extversion should be read now. A closed gate waits between looks; an
    /// open one re-reads every RECHECK_OK_US.
    pub fn due(&self, now: i64) -> bool {
        let every = if self.reported.is_some() {
            RECHECK_WAIT_US
        } else {
            RECHECK_OK_US
        };
        match self.last_check {
            None => true,
            Some(t) => now - t >= every || now < t,
        }
    }

    /// The verdict without reading the catalog again (between looks).
    pub fn current(&self, now: i64) -> Verdict {
        match (&self.reported, self.last_check) {
            (Some(_), Some(t)) => Verdict::Wait {
                wait_us: (t + RECHECK_WAIT_US - now).clamp(1_000, RECHECK_WAIT_US),
            },
            _ => Verdict::Run,
        }
    }

    /// Feed what pg_extension says (`None`: no extension pgq) at `now`; returns what to
    /// do and the line to log, if this look changed anything: one line when a mismatch
    /// starts (or the installed version changes to another wrong one), one when it ends.
    pub fn observe(&mut self, now: i64, installed: Option<&str>) -> (Verdict, Option<Notice>) {
        self.last_check = Some(now);
        let wrong = installed.filter(|v| *v != self.library);
        let notice = match (wrong, &self.reported) {
            (Some(v), Some(r)) if v == r => None,
            (Some(v), _) => Some(Notice::Mismatch(mismatch_message(v, &self.library))),
            (None, Some(_)) => installed.map(|v| {
                Notice::Resumed(format!(
                    "extension pgq is at version \"{v}\" now, the library's; ticking resumes"
                ))
            }),
            (None, None) => None,
        };
        self.reported = wrong.map(str::to_string);
        (self.current(now), notice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn library_version_is_cargo_version() {
        assert_eq!(LIBRARY_VERSION, env!("CARGO_PKG_VERSION"));
        assert!(!LIBRARY_VERSION.is_empty());
    }

    #[test]
    fn matching_version_runs_silently() {
        let mut g = VersionGate::new("0.2.0");
        assert!(g.due(0));
        assert_eq!(g.observe(0, Some("0.2.0")), (Verdict::Run, None));
        assert!(!g.due(S));
        assert!(g.due(5 * S));
        assert_eq!(g.current(S), Verdict::Run);
    }

    #[test]
    fn mismatch_logs_once_and_waits() {
        let mut g = VersionGate::new("0.2.0");
        let (v, n) = g.observe(0, Some("3.5"));
        assert_eq!(v, Verdict::Wait { wait_us: S });
        match n {
            Some(Notice::Mismatch(m)) => {
                assert!(m.contains("\"3.5\"") && m.contains("\"0.2.0\""), "{m}");
                assert!(m.contains("ALTER EXTENSION pgq UPDATE"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        // looks again after a second, not before, and says nothing new
        assert!(!g.due(S / 2));
        assert_eq!(g.current(S / 2), Verdict::Wait { wait_us: S / 2 });
        assert!(g.due(S));
        for i in 1..100 {
            assert_eq!(
                g.observe(i * S, Some("3.5")),
                (Verdict::Wait { wait_us: S }, None)
            );
        }
    }

    #[test]
    fn update_ends_the_wait_with_one_line() {
        let mut g = VersionGate::new("0.2.0");
        g.observe(0, Some("3.5"));
        let (v, n) = g.observe(S, Some("0.2.0"));
        assert_eq!(v, Verdict::Run);
        assert!(matches!(n, Some(Notice::Resumed(m)) if m.contains("\"0.2.0\"")));
        assert_eq!(g.observe(7 * S, Some("0.2.0")), (Verdict::Run, None));
    }

    #[test]
    fn another_wrong_version_is_reported_again() {
        let mut g = VersionGate::new("0.2.0");
        g.observe(0, Some("3.5"));
        let (_, n) = g.observe(S, Some("0.3.0"));
        assert!(matches!(n, Some(Notice::Mismatch(m)) if m.contains("\"0.3.0\"")));
        // an update of a running database to SQL newer than the library closes the gate
        let mut g = VersionGate::new("0.2.0");
        g.observe(0, Some("0.2.0"));
        let (v, n) = g.observe(5 * S, Some("0.3.0"));
        assert_eq!(v, Verdict::Wait { wait_us: S });
        assert!(matches!(n, Some(Notice::Mismatch(_))));
    }

    #[test]
    fn no_extension_is_left_to_the_worker() {
        let mut g = VersionGate::new("0.2.0");
        assert_eq!(g.observe(0, None), (Verdict::Run, None));
        // dropped while waiting: the gate opens (the worker then sees the extension gone)
        let mut g = VersionGate::new("0.2.0");
        g.observe(0, Some("3.5"));
        assert_eq!(g.observe(S, None), (Verdict::Run, None));
    }

    #[test]
    fn clock_going_back_forces_a_look() {
        let mut g = VersionGate::new("0.2.0");
        g.observe(10 * S, Some("0.2.0"));
        assert!(g.due(9 * S));
    }
}
