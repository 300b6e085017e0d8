//! Named fail points: places in the code where a test can make the next step fail, or stop the
//! whole process there as a kill would, to check that whatever had already started is stopped,
//! nothing is left half-done and nothing acknowledged is lost.
//!
//! A point is armed for one data dir, in one of two ways:
//! - **in-process** ([`arm`]): the next [`hit`] of the point by the node of that data dir answers
//!   true (once) and the caller fails the step. Tests running side by side in one process (each
//!   with its own temp dir) never trip each other's.
//! - **crash** (a file): a test writes the point's name to `<data_dir>/`[`ARM_FILE`] while a `yrd`
//!   process runs on that dir. The next time the process reaches the point it removes the file,
//!   writes the name to `<data_dir>/`[`HIT_FILE`] and stops there for good (the task pends, the
//!   thread parks), so the test can kill it with SIGKILL at exactly that step and restart it
//!   (`node/tests/crash.rs`, the crash matrix).
//!
//! Both exist only in unit-test builds and in builds with the `test-hooks` feature; in a release
//! build [`hit`] is a constant `false`, [`pause`] and [`pause_blocking`] do nothing, there is
//! nothing to arm, and the compiler removes every check.
//!
//! The names in use are listed in [`POINTS`]; docs/architecture.md ("Tests") and
//! docs/crash-matrix.md describe them.

use std::path::Path;

/// The file in a data dir that arms a crash point (its content: the point's name).
pub const ARM_FILE: &str = "failpoint.arm";
/// The file a process writes in its data dir when it stops at a crash point (the point's name).
pub const HIT_FILE: &str = "failpoint.hit";

/// Every fail point the code checks, by name.
pub const POINTS: &[&str] = &[
    // Node::start: after the provenance log is open and the network runs, before fetch streams
    // are accepted (as if the protocol could not be registered).
    "start.accept_streams",
    // Node::start: after resumed fetches are running, before the start completes.
    "start.after_resume",
    // Node::publish_dataset: the file is imported as a blob, nothing names it yet (no manifest,
    // no record): a crash leaves an unnamed blob for the start-time collection.
    "publish.after_blob",
    // Node::publish_dataset: the `dataset-published` record is durable, the manifest and the
    // catalogue naming the version are not stored yet.
    "publish.after_record",
    // Node::decide_grant: after the grant is signed, before its `grant-issued` record and the
    // request's state (in-process: the step fails; crash: nothing of the grant survives).
    "grant.before_request_state",
    // Node::keep_decision (operator or rule): the `grant-issued` record is durable, the grant and
    // the request's state are not stored yet.
    "grant.after_record",
    // Node::approve_request: the grant and the request's state are stored and
    // flushed, the answer is not yet sent to the requester.
    "grant.after_request_state",
    // Fetcher, pull_chunks: a chunk is written to the partial download (others still to come).
    "fetch.mid_transfer",
    // Fetcher, attempt: every chunk is in the partial download, not yet assembled into a blob.
    "fetch.before_commit",
    // Fetcher, attempt: the blob is assembled and its manifest stored (we hold the version),
    // the `dataset-received` record is not yet appended.
    "fetch.after_commit",
    // Fetcher, run_fetch: the `dataset-received` record is durable, the fetch is not yet stored
    // as done.
    "fetch.after_record",
    // Fetcher, send_receipt: the receipt is signed and kept with the fetch, not yet sent.
    "receipt.before_send",
    // Provider, on_receipt: the `receipt-received` record is durable, the receipt is not yet
    // stored nor acknowledged.
    "receipt.after_record",
    // Provenance writer: a batch's records, index entries and tree nodes are applied to sled,
    // the batch is not flushed (nor its appends acknowledged).
    "append.before_flush",
    // Provenance writer: the batch is flushed, its head not yet signed, its appends not yet
    // acknowledged.
    "append.after_flush",
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

    /// Whether `point` is the crash point armed in `data_dir`; if so, disarms it and leaves the
    /// marker the test waits for.
    pub fn crash_here(data_dir: &Path, point: &'static str) -> bool {
        let arm = data_dir.join(super::ARM_FILE);
        let Ok(named) = std::fs::read_to_string(&arm) else {
            return false;
        };
        if named.trim() != point {
            return false;
        }
        let _ = std::fs::remove_file(&arm);
        // Written whole, then renamed: the test never reads half a name.
        let tmp = data_dir.join(format!("{}.tmp", super::HIT_FILE));
        let _ = std::fs::write(&tmp, point);
        let _ = std::fs::rename(&tmp, data_dir.join(super::HIT_FILE));
        tracing::warn!(point, "fail point reached: stopping here until killed");
        true
    }
}

/// Arms `point` for the node whose data dir is `data_dir`: the next time that node reaches it,
/// [`hit`] answers true (once).
#[cfg(any(test, feature = "test-hooks"))]
pub fn arm(data_dir: &Path, point: &'static str) {
    armed::arm(data_dir, point);
}

/// Whether `point` is armed in-process for `data_dir` (disarming it); when it is the crash point
/// armed in the data dir, never returns (the thread parks until the process is killed). Always
/// false in a release build.
#[inline]
pub fn hit(data_dir: &Path, point: &'static str) -> bool {
    #[cfg(any(test, feature = "test-hooks"))]
    {
        pause_blocking(data_dir, point);
        armed::hit(data_dir, point)
    }
    #[cfg(not(any(test, feature = "test-hooks")))]
    {
        let _ = (data_dir, point);
        false
    }
}

/// A crash point on a thread of its own (or in a blocking task): when `point` is the one armed
/// in `data_dir`, parks the thread until the process is killed. Nothing in a release build.
#[inline]
pub fn pause_blocking(data_dir: &Path, point: &'static str) {
    #[cfg(any(test, feature = "test-hooks"))]
    if armed::crash_here(data_dir, point) {
        loop {
            std::thread::park();
        }
    }
    #[cfg(not(any(test, feature = "test-hooks")))]
    let _ = (data_dir, point);
}

/// A crash point in async code: when `point` is the one armed in `data_dir`, the task never
/// resumes (the rest of the node runs on until the process is killed). Nothing in a release
/// build.
#[inline]
pub async fn pause(data_dir: &Path, point: &'static str) {
    #[cfg(any(test, feature = "test-hooks"))]
    if armed::crash_here(data_dir, point) {
        std::future::pending::<()>().await;
    }
    #[cfg(not(any(test, feature = "test-hooks")))]
    let _ = (data_dir, point);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_crash_point_is_taken_once_by_its_name_and_leaves_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let arm = dir.path().join(ARM_FILE);
        let hit = dir.path().join(HIT_FILE);
        std::fs::write(&arm, "fetch.before_commit\n").unwrap();
        // Another point passes, and leaves the armed one armed.
        assert!(!armed::crash_here(dir.path(), "fetch.after_commit"));
        assert!(arm.exists() && !hit.exists());
        // The armed point is taken: disarmed, and the marker names it.
        assert!(armed::crash_here(dir.path(), "fetch.before_commit"));
        assert!(!arm.exists());
        assert_eq!(
            std::fs::read_to_string(&hit).unwrap(),
            "fetch.before_commit"
        );
        // Once: a restarted process passes it.
        assert!(!armed::crash_here(dir.path(), "fetch.before_commit"));
    }

    #[test]
    fn every_point_is_named_once() {
        let mut names = POINTS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), POINTS.len());
    }
}
