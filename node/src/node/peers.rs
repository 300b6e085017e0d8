//! The members as this node knows them: each one's verified NodeInfo (its region and
//! organisation as it signed them), the addresses we listen on, and the bounds on what refused
//! peers may make us keep: log lines about non-members (a global rate, since fresh keys are
//! free) and the records a member causes — refusals, witness alarms — (a budget per hour, with a
//! count of what was dropped).
//! Owns its locks; nothing else holds these maps.
//!
//! Locks are `parking_lot`'s, which cannot be poisoned: a panic elsewhere never makes a later
//! update silently skip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use parking_lot::{Mutex, RwLock};

use crate::model::node_info::NodeInfo;
use crate::model::region::Region;
use crate::model::signed::Signed;

/// Log lines about refused non-members per [`REFUSAL_LOG_WINDOW`], whoever they are: a flood of
/// fresh keys cannot flood the log either. Past it they are counted, and the count is logged
/// with the next window's first line.
pub const REFUSAL_LOG_LINES: u32 = 10;
/// The window of [`REFUSAL_LOG_LINES`].
pub const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(60);
/// Records one peer may cause per [`REFUSAL_BUDGET_WINDOW`] — refusals, and witness alarms its
/// heads raise beyond the first open one of its log; beyond it they are counted, not kept.
pub const REFUSAL_RECORDS_PER_PEER_PER_HOUR: u64 = 60;
/// The window of [`REFUSAL_RECORDS_PER_PEER_PER_HOUR`].
pub const REFUSAL_BUDGET_WINDOW: Duration = Duration::from_secs(3600);
/// Peers whose budget is remembered; only members can cause records, so this is never reached
/// in a federation of a sane size, but the map is bounded all the same.
pub const MAX_BUDGETS_REMEMBERED: usize = 10_000;

/// The window of log lines about refused non-members.
#[derive(Debug)]
struct LogWindow {
    start: Instant,
    lines: u32,
    suppressed: u64,
}

/// One peer's use of its refusal-record budget in the current window.
#[derive(Debug, Clone, Copy)]
struct Budget {
    start: Instant,
    used: u64,
}

/// Members' cards, our listen addresses, recent refusals.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    infos: RwLock<HashMap<PeerId, Signed<NodeInfo>>>,
    listen: RwLock<Vec<Multiaddr>>,
    refusal_log: Mutex<Option<LogWindow>>,
    budgets: Mutex<HashMap<PeerId, Budget>>,
    records_dropped: AtomicU64,
}

impl Peers {
    /// A member's region, as its verified NodeInfo says.
    pub(crate) fn region(&self, peer: &PeerId) -> Option<Region> {
        self.infos.read().get(peer).map(|i| i.document.region)
    }

    /// Every verified NodeInfo held.
    pub(crate) fn infos(&self) -> HashMap<PeerId, Signed<NodeInfo>> {
        self.infos.read().clone()
    }

    /// Keeps a NodeInfo the caller has verified for `peer`.
    pub(crate) fn remember(&self, peer: PeerId, info: Signed<NodeInfo>) {
        self.infos.write().insert(peer, info);
    }

    /// Notes an address we listen on.
    pub(crate) fn add_listen(&self, address: Multiaddr) {
        let mut l = self.listen.write();
        if !l.contains(&address) {
            l.push(address);
        }
    }

    /// The addresses we listen on.
    pub(crate) fn listen_addresses(&self) -> Vec<Multiaddr> {
        self.listen.read().clone()
    }

    /// Refusal records not kept since start (a peer over its budget).
    pub(crate) fn refusal_records_dropped(&self) -> u64 {
        self.records_dropped.load(Ordering::Relaxed)
    }

    /// Whether a refused non-member's connection may be logged now: `Some(n)` to log it, `n`
    /// being the lines suppressed in the window before; `None` to stay quiet (counted).
    pub(crate) fn refusal_log_due(&self, now: Instant) -> Option<u64> {
        log_due(&mut self.refusal_log.lock(), now)
    }

    /// Whether a record `peer` caused (a refusal, a witness alarm) may be kept now, counting it
    /// against its budget; if not, it is counted as dropped.
    pub(crate) fn refusal_record_due(&self, peer: PeerId, now: Instant) -> bool {
        let due = budget_due(&mut self.budgets.lock(), peer, now);
        if !due {
            self.records_dropped.fetch_add(1, Ordering::Relaxed);
        }
        due
    }
}

fn log_due(window: &mut Option<LogWindow>, now: Instant) -> Option<u64> {
    let w = match window {
        Some(w) if now.duration_since(w.start) < REFUSAL_LOG_WINDOW => w,
        _ => {
            let before = window.as_ref().map_or(0, |w| w.suppressed);
            *window = Some(LogWindow {
                start: now,
                lines: 1,
                suppressed: 0,
            });
            return Some(before);
        }
    };
    if w.lines < REFUSAL_LOG_LINES {
        w.lines += 1;
        Some(0)
    } else {
        w.suppressed += 1;
        None
    }
}

fn budget_due(budgets: &mut HashMap<PeerId, Budget>, peer: PeerId, now: Instant) -> bool {
    let fresh = |b: &Budget| now.duration_since(b.start) < REFUSAL_BUDGET_WINDOW;
    if budgets.len() >= MAX_BUDGETS_REMEMBERED && !budgets.contains_key(&peer) {
        budgets.retain(|_, b| fresh(b));
        if budgets.len() >= MAX_BUDGETS_REMEMBERED {
            // Every remembered peer is within its window: a new one waits for room.
            return false;
        }
    }
    let b = budgets.entry(peer).or_insert(Budget {
        start: now,
        used: 0,
    });
    if !fresh(b) {
        *b = Budget {
            start: now,
            used: 0,
        };
    }
    if b.used < REFUSAL_RECORDS_PER_PEER_PER_HOUR {
        b.used += 1;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_log_lines_are_limited_whoever_is_refused() {
        let mut w = None;
        let t0 = Instant::now();
        let logged = (0..REFUSAL_LOG_LINES + 5)
            .filter(|_| log_due(&mut w, t0).is_some())
            .count();
        assert_eq!(logged, REFUSAL_LOG_LINES as usize);
        // The next window's first line carries the count of the quiet ones.
        assert_eq!(log_due(&mut w, t0 + REFUSAL_LOG_WINDOW), Some(5));
        assert_eq!(log_due(&mut w, t0 + REFUSAL_LOG_WINDOW), Some(0));
    }

    #[test]
    fn each_peer_has_a_budget_of_refusal_records_per_hour() {
        let peers = Peers::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        for _ in 0..REFUSAL_RECORDS_PER_PEER_PER_HOUR {
            assert!(peers.refusal_record_due(a, t0));
        }
        assert!(!peers.refusal_record_due(a, t0 + Duration::from_secs(10)));
        assert!(
            peers.refusal_record_due(b, t0),
            "another peer's budget is its own"
        );
        assert_eq!(peers.refusal_records_dropped(), 1);
        assert!(peers.refusal_record_due(a, t0 + REFUSAL_BUDGET_WINDOW));
    }

    #[test]
    fn the_memory_of_budgets_is_bounded() {
        let mut budgets = HashMap::new();
        let t0 = Instant::now();
        for _ in 0..MAX_BUDGETS_REMEMBERED + 5 {
            budget_due(&mut budgets, PeerId::random(), t0);
        }
        assert!(budgets.len() <= MAX_BUDGETS_REMEMBERED);
        // Once the windows have passed, room is made.
        assert!(budget_due(
            &mut budgets,
            PeerId::random(),
            t0 + REFUSAL_BUDGET_WINDOW
        ));
    }

    #[test]
    fn listen_addresses_are_kept_once() {
        let peers = Peers::default();
        let a: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        peers.add_listen(a.clone());
        peers.add_listen(a.clone());
        assert_eq!(peers.listen_addresses(), vec![a]);
    }
}
