//! Named fail points: places in the code where a test can make the next step fail, to check that
//! whatever had already started is stopped and nothing is left half-done.
//!
//! A point is armed for one data dir, so tests running side by side in one process (each with its
//! own temp dir) never trip each other's. The set of armed points exists only in unit-test builds
//! and in builds with the `test-hooks` feature; in a release build [`hit`] is a constant `false`,
//! there is nothing to arm, and the compiler removes every check.
//!
//! The names in use are listed in [`POINTS`]; docs/architecture.md ("Tests") describes them.

use std::path::Path;

/// Every fail point the code checks, by name.
pub const POINTS: &[&str] = &[
    // Node::start: after the provenance log is open and the network runs, before fetch streams
    // are accepted (as if the protocol could not be registered).
    "start.accept_streams",
    // Node::start: after resumed fetches are running, before the start completes.
    "start.after_resume",
    // Node::decide_grant: after the grant is signed, before the request's state is stored (as
    // if the process were killed there).
    "grant.before_request_state",
];

#[cfg(any(test, feature = "test-hooks"))]
mod armed {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, OnceLock};

    fn set() -> &'static Mutex<HashSet<(PathBuf, &'static str)>> {
        static SET: OnceLock<Mutex<HashSet<(PathBuf, &'static str)>>> = OnceLock::new();
        SET.get_or_init(|| Mutex::new(HashSet::new()))
    }

    pub fn arm(data_dir: &Path, point: &'static str) {
        assert!(
            super::POINTS.contains(&point),
            "unknown fail point {point:?}"
        );
        // A poisoned set means a test already panicked; the point is armed all the same.
        let mut s = set().lock().unwrap_or_else(|p| p.into_inner());
        s.insert((data_dir.to_path_buf(), point));
    }

    pub fn hit(data_dir: &Path, point: &'static str) -> bool {
        let mut s = set().lock().unwrap_or_else(|p| p.into_inner());
        s.remove(&(data_dir.to_path_buf(), point))
    }
}

/// Arms `point` for the node whose data dir is `data_dir`: the next time that node reaches it,
/// [`hit`] answers true (once).
#[cfg(any(test, feature = "test-hooks"))]
pub fn arm(data_dir: &Path, point: &'static str) {
    armed::arm(data_dir, point);
}

/// Whether `point` is armed for `data_dir` (disarming it). Always false in a release build.
#[inline]
pub fn hit(data_dir: &Path, point: &'static str) -> bool {
    #[cfg(any(test, feature = "test-hooks"))]
    {
        armed::hit(data_dir, point)
    }
    #[cfg(not(any(test, feature = "test-hooks")))]
    {
        let _ = (data_dir, point);
        false
    }
}
