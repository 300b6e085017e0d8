//! The federation charter in force on this node (docs/charter.md): the chain of versions applied
//! (kept in the `charters` tree), the member set and each member key's region derived from it,
//! and the recent NodeInfos refused for claiming another region than the charter binds. Owns
//! its locks; nothing else holds these maps.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use libp2p::PeerId;
use parking_lot::{Mutex, RwLock};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::NodeError;
use crate::config::NodeConfig;
use crate::model::charter::{CharterChain, CharterState, Offer, SignedCharter};
use crate::model::region::Region;
use crate::store::{RecordTree, Store};

/// Refused region claims remembered for `yrd node` and the API (one per peer, latest first).
pub const MAX_CONTRADICTIONS_SHOWN: usize = 64;

/// A member whose signed NodeInfo claimed another region than the charter binds to its key.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct RegionContradiction {
    /// The member's peer id.
    pub peer: String,
    /// Its member id in the charter.
    pub member_id: String,
    /// The region its NodeInfo claimed.
    pub claimed: Region,
    /// The region the charter binds to its key (the one this node uses).
    pub charter: Region,
    /// When it was last refused (RFC 3339).
    pub time: String,
}

/// The charter in force, as `yrd node` and `GET /api/v1/node` show it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct CharterView {
    /// Federation id.
    pub federation: String,
    /// Federation name.
    pub name: String,
    /// Version in force.
    pub version: u64,
    /// Its digest (what the next version names as `previous`).
    pub digest: String,
    /// When it expires (RFC 3339).
    pub expires: String,
    /// `in-force`, `expired` (alarm: renew it) or `equivocated` (alarm: two documents of one
    /// version were seen).
    pub state: String,
    /// Members listed (this node included).
    pub members: usize,
    /// Members whose NodeInfo claimed another region than the charter's (refused, recorded).
    pub region_contradictions: Vec<RegionContradiction>,
}

/// One charter-listed peer: the region and member the charter binds to its key.
#[derive(Debug, Clone)]
struct Bound {
    region: Region,
    member_id: String,
}

/// The charter chain in force and what is derived from it.
#[derive(Debug)]
pub(crate) struct FederationCharter {
    chain: RwLock<CharterChain>,
    peers: RwLock<HashMap<PeerId, Bound>>,
    contradictions: Mutex<VecDeque<RegionContradiction>>,
}

fn charter_key(version: u64) -> String {
    format!("{version:020}")
}

fn invalid(reason: String) -> NodeError {
    NodeError::invalid("federation.charter", reason)
}

fn bound_peers(chain: &CharterChain) -> HashMap<PeerId, Bound> {
    chain
        .current()
        .document()
        .peers()
        .into_iter()
        .map(|(peer, m)| {
            (
                peer,
                Bound {
                    region: m.region,
                    member_id: m.member_id.clone(),
                },
            )
        })
        .collect()
}

impl FederationCharter {
    /// Loads the charter the config names, with the versions stored after it, and checks that
    /// this node (`own`) is a member with the region its config says, and that every bootstrap
    /// peer is a member. `None` when the config names no charter.
    pub(crate) fn load(
        config: &NodeConfig,
        data_dir: &Path,
        store: &Store,
        own: PeerId,
    ) -> Result<Option<FederationCharter>, NodeError> {
        let Some(path) = &config.federation.charter else {
            return Ok(None);
        };
        let path = data_dir.join(path);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        let file = SignedCharter::from_json(&text)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        let stored: Vec<SignedCharter> = store
            .records::<SignedCharter>(RecordTree::Charters)?
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        let chain = Self::chain(&file, stored, store, &path)?;
        let charter = FederationCharter {
            peers: RwLock::new(bound_peers(&chain)),
            chain: RwLock::new(chain),
            contradictions: Mutex::new(VecDeque::new()),
        };
        let Some(me) = charter.region_of(&own) else {
            return Err(invalid(format!(
                "this node's key (peer {own}) is not a member of charter version {}",
                charter.version()
            )));
        };
        if me != config.node.region {
            return Err(NodeError::invalid(
                "node.region",
                format!(
                    "node.region is {} in the config, but the charter binds this node's key to {}",
                    config.node.region.label(),
                    me.label()
                ),
            ));
        }
        for (i, addr) in config.network.bootstrap.iter().enumerate() {
            if let Some(peer) = crate::net::peer_of(addr) {
                if charter.region_of(&peer).is_none() {
                    return Err(NodeError::invalid(
                        "network.bootstrap",
                        format!("[{i}] {addr}: peer {peer} is not a member of the charter"),
                    ));
                }
            }
        }
        if let Some(alarm) = charter.blocks_grants() {
            tracing::error!(alarm = %alarm, "federation charter alarm");
        }
        Ok(Some(charter))
    }

    /// The chain: the stored versions if they start from the same genesis as the file, then the
    /// file offered to them; else the file alone, which must then be a genesis. Every version
    /// applied is stored.
    fn chain(
        file: &SignedCharter,
        stored: Vec<SignedCharter>,
        store: &Store,
        path: &Path,
    ) -> Result<CharterChain, NodeError> {
        let same_genesis = match (stored.first(), file.document.version) {
            (Some(g), 1) => g.document == file.document,
            (Some(_), _) => true,
            (None, _) => false,
        };
        let held = if same_genesis {
            match CharterChain::verify_all(&stored) {
                Ok(chain) => Some(chain),
                Err(e) => {
                    tracing::warn!(error = %e, "stored charter versions do not verify; starting from the configured charter");
                    None
                }
            }
        } else {
            if !stored.is_empty() {
                tracing::warn!(
                    file = %path.display(),
                    "the configured charter is another genesis than the stored one: the stored versions are dropped"
                );
            }
            None
        };
        let chain = match held {
            Some(mut chain) => {
                match chain.offer(file) {
                    Ok(Offer::Equivocation(e)) => tracing::error!(
                        version = e.version,
                        "charter equivocation: the configured charter and a stored one are two versions {}; no further version is applied",
                        e.version
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, file = %path.display(), "configured charter not applied")
                    }
                }
                chain
            }
            None => {
                if file.document.version != 1 {
                    return Err(invalid(format!(
                        "{}: version {}; a node's first charter is the genesis (version 1), later \
                         versions are applied to it in order",
                        path.display(),
                        file.document.version
                    )));
                }
                for (key, _) in store.records::<serde_json::Value>(RecordTree::Charters)? {
                    store.remove_record(RecordTree::Charters, &key)?;
                }
                CharterChain::from_genesis(file)
                    .map_err(|e| invalid(format!("{}: {e}", path.display())))?
            }
        };
        for v in chain.versions() {
            let key = charter_key(v.version());
            if store
                .record::<SignedCharter>(RecordTree::Charters, &key)?
                .as_ref()
                != Some(&v.charter)
            {
                store.put_record(RecordTree::Charters, &key, &v.charter)?;
            }
        }
        Ok(chain)
    }

    /// The version in force.
    pub(crate) fn version(&self) -> u64 {
        self.chain.read().current().version()
    }

    /// Every peer the charter admits, except `own`.
    pub(crate) fn member_peers(&self, own: &PeerId) -> Vec<PeerId> {
        self.peers
            .read()
            .keys()
            .filter(|p| *p != own)
            .copied()
            .collect()
    }

    /// The region the charter binds to `peer`'s key; `None` if it is no member.
    pub(crate) fn region_of(&self, peer: &PeerId) -> Option<Region> {
        self.peers.read().get(peer).map(|b| b.region)
    }

    /// The organisation the charter names for `peer`.
    pub(crate) fn organisation_of(&self, peer: &PeerId) -> Option<String> {
        let member_id = self.peers.read().get(peer)?.member_id.clone();
        let chain = self.chain.read();
        chain
            .current()
            .document()
            .members
            .iter()
            .find(|m| m.member_id == member_id)
            .map(|m| m.organisation.clone())
    }

    /// Checks a region `peer` claims (in its NodeInfo or catalogue) against the charter; a
    /// contradiction is remembered for status and returned as the refusal's cause.
    pub(crate) fn check_claim(&self, peer: PeerId, claimed: Region) -> Result<(), String> {
        let Some(bound) = self.peers.read().get(&peer).cloned() else {
            return Err(format!("peer {peer} is not a member of the charter"));
        };
        if bound.region == claimed {
            return Ok(());
        }
        let c = RegionContradiction {
            peer: peer.to_string(),
            member_id: bound.member_id.clone(),
            claimed,
            charter: bound.region,
            time: crate::clock::now_rfc3339(),
        };
        let mut list = self.contradictions.lock();
        list.retain(|h| h.peer != c.peer);
        list.push_front(c);
        list.truncate(MAX_CONTRADICTIONS_SHOWN);
        Err(format!(
            "claims region {} but the charter (version {}) binds member {} to {}",
            claimed.label(),
            self.version(),
            bound.member_id,
            bound.region.label()
        ))
    }

    /// Why no new grant may be issued now: the charter in force has expired, or an equivocation
    /// was seen. Existing grants and evidence stay as they are; this only stops new ones, so an
    /// outdated membership never fails open.
    pub(crate) fn blocks_grants(&self) -> Option<String> {
        match self.chain.read().state(time::OffsetDateTime::now_utc()) {
            CharterState::InForce { .. } => None,
            CharterState::Expired { version, expires } => Some(format!(
                "the federation charter (version {version}) expired at {expires}: no new grants \
                 until its next version is applied"
            )),
            CharterState::Equivocated { version, at } => Some(format!(
                "charter equivocation at version {at} (version {version} in force): no new grants \
                 until it is resolved"
            )),
        }
    }

    /// The view for status.
    pub(crate) fn view(&self) -> CharterView {
        let chain = self.chain.read();
        let current = chain.current();
        let doc = current.document();
        let state = match chain.state(time::OffsetDateTime::now_utc()) {
            CharterState::InForce { .. } => "in-force",
            CharterState::Expired { .. } => "expired",
            CharterState::Equivocated { .. } => "equivocated",
        };
        CharterView {
            federation: doc.federation.id.clone(),
            name: doc.federation.name.clone(),
            version: doc.version,
            digest: current.digest.clone(),
            expires: doc.expires.clone(),
            state: state.to_string(),
            members: doc.members.len(),
            region_contradictions: self.contradictions.lock().iter().cloned().collect(),
        }
    }
}

impl FederationCharter {
    /// Every version applied, genesis first (what an evidence bundle carries).
    pub(crate) fn versions(&self) -> Vec<SignedCharter> {
        self.chain
            .read()
            .versions()
            .iter()
            .map(|v| v.charter.clone())
            .collect()
    }
}
