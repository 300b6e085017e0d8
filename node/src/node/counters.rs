//! Running totals of what the node moved since it started, for `/metrics`. Everything else the
//! metrics report is read from the state itself when scraped.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by the transfer tasks; relaxed atomics (totals, not synchronisation).
#[derive(Debug, Default)]
pub struct Counters {
    /// Dataset bytes sent to fetching peers (chunk payloads).
    pub bytes_sent: AtomicU64,
    /// Dataset bytes received, verified and written.
    pub bytes_received: AtomicU64,
    /// Fetches that completed.
    pub fetches_done: AtomicU64,
    /// Fetches given up.
    pub fetches_failed: AtomicU64,
    /// Serves that completed.
    pub serves_done: AtomicU64,
    /// Serves that failed.
    pub serves_failed: AtomicU64,
}

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
