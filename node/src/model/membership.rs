//! Membership of an evidence bundle's signers: the charter chain a bundle carries, verified from
//! its genesis, and the version in force at each signed time, by which `yrd verify` checks that
//! every signer (log owner, counterparties, witnesses) was a member then, with the region its
//! record says (docs/evidence.md, step 9). Pure: times are the signed documents' own.

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::model::charter::{CharterChain, CharterMember, SignedCharter, VerifiedCharter};

/// Most charter versions a bundle may carry (genesis included). Each is at most 1 MiB.
pub const MAX_BUNDLE_CHARTERS: usize = 64;

/// What the charter says of one signer at one time.
#[derive(Debug, Clone, Copy)]
pub enum Standing<'a> {
    /// A member's key in the version in force then.
    Member {
        /// The member.
        member: &'a CharterMember,
        /// The version in force.
        version: u64,
    },
    /// The version in force then lists no such key (or the peer id holds no Ed25519 key).
    NotMember {
        /// The version in force.
        version: u64,
    },
    /// Cannot be decided: the time is before the genesis was issued.
    BeforeGenesis,
}

/// A verified charter chain with each version's `issued` time, answering who was a member when.
#[derive(Debug, Clone)]
pub struct Membership {
    chain: CharterChain,
    issued: Vec<OffsetDateTime>,
    /// Per version (same index): the member index of each peer id its keys make, so that a
    /// bundle of many records looks each signer up once, not by re-deriving every key.
    peers: Vec<HashMap<String, usize>>,
}

impl Membership {
    /// Verifies the chain a bundle carries (genesis first, each version applied in order by the
    /// charter rules); `Err` names what failed.
    pub fn verify(charters: &[SignedCharter]) -> Result<Membership, String> {
        if charters.len() > MAX_BUNDLE_CHARTERS {
            return Err(format!(
                "charters: {} versions, more than the {MAX_BUNDLE_CHARTERS} a bundle may carry",
                charters.len()
            ));
        }
        for (i, c) in charters.iter().enumerate() {
            if c.document.version != i as u64 + 1 {
                return Err(format!(
                    "charters[{i}]: version {}, expected {} (genesis first, each version once, in order)",
                    c.document.version,
                    i + 1
                ));
            }
        }
        let chain = CharterChain::verify_all(charters).map_err(|e| format!("charters: {e}"))?;
        let issued = chain
            .versions()
            .iter()
            .map(|v| {
                crate::clock::parse_rfc3339(&v.document().issued).ok_or_else(|| {
                    format!(
                        "charters: version {} issued {:?} is not an RFC 3339 time",
                        v.version(),
                        v.document().issued
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let peers = chain
            .versions()
            .iter()
            .map(|v| {
                let doc = v.document();
                doc.members
                    .iter()
                    .enumerate()
                    .flat_map(|(i, m)| {
                        m.keys
                            .iter()
                            .filter_map(move |k| Some((k.peer_id()?.to_string(), i)))
                    })
                    .collect()
            })
            .collect();
        Ok(Membership {
            chain,
            issued,
            peers,
        })
    }

    /// The genesis (its digest is the federation's anchor: compare it out of band).
    pub fn genesis(&self) -> &VerifiedCharter {
        &self.chain.versions()[0]
    }

    /// The latest version the bundle carries.
    pub fn latest(&self) -> &VerifiedCharter {
        self.chain.current()
    }

    /// The index of the version in force at `time`: the highest version whose `issued` is at or
    /// before it; `Ok(None)` before the genesis; `Err` when `time` is not RFC 3339.
    fn in_force(&self, time: &str) -> Result<Option<usize>, String> {
        let t = crate::clock::parse_rfc3339(time)
            .ok_or_else(|| format!("time {time:?} is not an RFC 3339 time"))?;
        // Versions are numbered 1, 2, … in order (checked in `verify`): the highest qualifying
        // version is the last qualifying index.
        Ok(self.issued.iter().rposition(|issued| *issued <= t))
    }

    /// Whether peer ids `a` and `b` are keys of one member: the same id, or two keys the chain
    /// binds to the same member id (in any versions: a rotation adds the next key, then retires
    /// the old one). A key the chain gave to two members is no one's. How a log whose owner
    /// rotated its key is read as one member's log; each signature is still checked against
    /// the version in force at its own time.
    pub fn same_member(&self, a: &str, b: &str) -> bool {
        if a == b {
            return true;
        }
        let member = |peer: &str| {
            let public = crate::model::charter::public_hex_of_peer(&peer.parse().ok()?)?;
            self.chain.member_id_of_key(&public).map(str::to_owned)
        };
        matches!((member(a), member(b)), (Some(x), Some(y)) if x == y)
    }

    /// Who `peer` was at `time`.
    pub fn standing(&self, peer: &str, time: &str) -> Result<Standing<'_>, String> {
        let Some(i) = self.in_force(time)? else {
            return Ok(Standing::BeforeGenesis);
        };
        let v = &self.chain.versions()[i];
        let member = self.peers[i]
            .get(peer)
            .and_then(|m| v.document().members.get(*m));
        Ok(match member {
            Some(member) => Standing::Member {
                member,
                version: v.version(),
            },
            None => Standing::NotMember {
                version: v.version(),
            },
        })
    }
}
