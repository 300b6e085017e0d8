//! Which members a node keeps connected: all of them in a small federation; in a large one a
//! bounded set — its neighbours on a ring of all members ordered by key hash, and chords chosen
//! by a hash of both keys — so that the members' connections form one connected graph of small
//! diameter without every pair of members holding a connection.
//!
//! Invariants (tested below):
//! - the choice is a pure function of the member set, the local key and the bound: every node
//!   computes its own set from the same charter or member list, with no coordination;
//! - with every member up, the union of all members' sets is connected (the ring alone is), so
//!   gossip reaches every member;
//! - a node keeps at most `bound` members; more may connect to it (their choice), and any
//!   member is still dialled on demand (a request, a fetch) and may stay while in use.

use libp2p::PeerId;

/// Ring neighbours kept on each side (so a ring survives one member being down).
const RING_SIDE: usize = 2;

/// The members `local` keeps connected, out of `members` (which may include `local`): every
/// other member when there are at most `bound` of them (or `bound` is 0), else `bound` of them.
pub fn kept_members(local: &PeerId, members: &[PeerId], bound: usize) -> Vec<PeerId> {
    let mut others: Vec<PeerId> = members.iter().filter(|p| *p != local).copied().collect();
    others.sort();
    others.dedup();
    if bound == 0 || others.len() <= bound {
        return others;
    }
    // The ring: every member, local included, by the hash of its key.
    let mut ring: Vec<([u8; 32], PeerId)> = others
        .iter()
        .chain(std::iter::once(local))
        .map(|p| (*blake3::hash(&p.to_bytes()).as_bytes(), *p))
        .collect();
    ring.sort();
    let n = ring.len();
    let at = ring.iter().position(|(_, p)| p == local).unwrap_or(0);
    let side = RING_SIDE.min(bound / 2).max(1);
    let mut kept: Vec<PeerId> = Vec::with_capacity(bound);
    for step in 1..=side {
        for i in [(at + step) % n, (at + n - step) % n] {
            let p = ring[i].1;
            if p != *local && !kept.contains(&p) && kept.len() < bound {
                kept.push(p);
            }
        }
    }
    // Chords: the rest by a hash of both keys, different for every node.
    let me = local.to_bytes();
    let mut chords: Vec<([u8; 32], PeerId)> = others
        .iter()
        .filter(|p| !kept.contains(p))
        .map(|p| {
            let mut h = blake3::Hasher::new();
            h.update(&me);
            h.update(&p.to_bytes());
            (*h.finalize().as_bytes(), *p)
        })
        .collect();
    chords.sort();
    kept.extend(
        chords
            .into_iter()
            .map(|(_, p)| p)
            .take(bound.saturating_sub(kept.len())),
    );
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet, VecDeque};

    fn members(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    /// Undirected graph of every member's kept set.
    fn graph(all: &[PeerId], bound: usize) -> HashMap<PeerId, HashSet<PeerId>> {
        let mut g: HashMap<PeerId, HashSet<PeerId>> = HashMap::new();
        for p in all {
            for q in kept_members(p, all, bound) {
                g.entry(*p).or_default().insert(q);
                g.entry(q).or_default().insert(*p);
            }
        }
        g
    }

    /// Longest shortest path from `from` (None if some member is unreachable).
    fn eccentricity(g: &HashMap<PeerId, HashSet<PeerId>>, from: PeerId, n: usize) -> Option<usize> {
        let mut seen = HashMap::from([(from, 0usize)]);
        let mut queue = VecDeque::from([from]);
        while let Some(p) = queue.pop_front() {
            let d = seen[&p];
            for q in g.get(&p).into_iter().flatten() {
                if !seen.contains_key(q) {
                    seen.insert(*q, d + 1);
                    queue.push_back(*q);
                }
            }
        }
        (seen.len() == n).then(|| seen.values().copied().max().unwrap_or(0))
    }

    #[test]
    fn a_small_federation_keeps_every_member() {
        let all = members(17);
        let kept = kept_members(&all[0], &all, 16);
        assert_eq!(kept.len(), 16);
        assert!(!kept.contains(&all[0]));
        assert_eq!(kept_members(&all[0], &all, 0).len(), 16, "0 means all");
    }

    #[test]
    fn a_large_federation_keeps_a_bounded_connected_set_of_small_diameter() {
        for (n, bound) in [(100, 12), (200, 12), (45, 8), (300, 8)] {
            let all = members(n);
            for p in &all {
                let kept = kept_members(p, &all, bound);
                assert_eq!(kept.len(), bound, "{n} members, bound {bound}");
                assert!(!kept.contains(p));
                assert_eq!(kept_members(p, &all, bound), kept, "deterministic");
            }
            let g = graph(&all, bound);
            let diameter = eccentricity(&g, all[0], n);
            assert!(
                diameter.is_some(),
                "{n} members, bound {bound}: not connected"
            );
            assert!(
                diameter.unwrap_or(usize::MAX) <= 8,
                "{n} members, bound {bound}: {diameter:?} hops"
            );
        }
    }

    #[test]
    fn the_ring_keeps_the_graph_connected_with_a_member_down() {
        let all = members(120);
        let down = all[7];
        let up: Vec<PeerId> = all.iter().copied().filter(|p| *p != down).collect();
        // Every node still computes its set over the whole membership; the one down is absent.
        let mut g: HashMap<PeerId, HashSet<PeerId>> = HashMap::new();
        for p in &up {
            for q in kept_members(p, &all, 4).into_iter().filter(|q| *q != down) {
                g.entry(*p).or_default().insert(q);
                g.entry(q).or_default().insert(*p);
            }
        }
        assert!(eccentricity(&g, up[0], up.len()).is_some());
    }
}
