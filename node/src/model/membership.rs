//! Membership of an evidence bundle's signers: the charter chain a bundle carries, verified from
//! its genesis, and the version in force at each signed time, by which `yrd verify` checks that
//! every signer (log owner, counterparties, witnesses) was a member then, with the region its
//! record says (docs/evidence.md, step 9). Pure: times are the signed documents' own.

use libp2p::PeerId;
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
        Ok(Membership { chain, issued })
    }

    /// The genesis (its digest is the federation's anchor: compare it out of band).
    pub fn genesis(&self) -> &VerifiedCharter {
        &self.chain.versions()[0]
    }

    /// The latest version the bundle carries.
    pub fn latest(&self) -> &VerifiedCharter {
        self.chain.current()
    }

    /// The version in force at `time`: the highest version whose `issued` is at or before it;
    /// `Ok(None)` before the genesis; `Err` when `time` is not RFC 3339.
    pub fn in_force(&self, time: &str) -> Result<Option<&VerifiedCharter>, String> {
        let t = crate::clock::parse_rfc3339(time)
            .ok_or_else(|| format!("time {time:?} is not an RFC 3339 time"))?;
        Ok(self
            .chain
            .versions()
            .iter()
            .zip(&self.issued)
            .filter(|(_, issued)| **issued <= t)
            .map(|(v, _)| v)
            .max_by_key(|v| v.version()))
    }

    /// Who `peer` was at `time`.
    pub fn standing(&self, peer: &str, time: &str) -> Result<Standing<'_>, String> {
        let Some(v) = self.in_force(time)? else {
            return Ok(Standing::BeforeGenesis);
        };
        let member = peer
            .parse::<PeerId>()
            .ok()
            .and_then(|p| v.document().member_of_peer(&p));
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
