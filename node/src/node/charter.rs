//! The federation charter in force on this node (docs/charter.md): the chain of versions applied
//! (kept in the `charters` tree), the member set and each member key's region derived from it,
//! the recent NodeInfos refused for claiming another region than the charter binds, the
//! proposals of the next version held (`charter_proposals`) and the equivocations seen
//! (`charter_equivocations`). Offering a version here applies and stores it; what follows on the
//! network (the gate, records, gossip) is `charter_sync.rs`'s. Owns its locks; nothing else holds
//! these maps.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use libp2p::PeerId;
use parking_lot::{Mutex, RwLock};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::NodeError;
use super::charter_sync::{ProposalPool, ProposalView, Taken};
use crate::config::NodeConfig;
use crate::model::charter::{
    ChangePolicy, CharterChain, CharterError, CharterSignature, CharterState, Offer, Role,
    SignedCharter, VerifiedCharter,
};
use crate::model::message::{CharterHead, ProposalHead};
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
    proposals: Mutex<ProposalPool>,
    /// The head each peer claimed when it last served a version we refused.
    refused: Mutex<HashMap<PeerId, CharterHead>>,
    /// The signature count each peer claimed for a proposal when we last pulled it from there.
    asked: Mutex<HashMap<(PeerId, String), u32>>,
    /// Peers a pull of versions runs from now ([`FederationCharter::pull_slot`]).
    pulling: PullSlots,
    /// The highest head a peer announced while no pull slot was free: pulled when one frees,
    /// so an announcement is never left to anti-entropy alone. One entry: a bound.
    pending: PendingHead,
    /// Woken when a proposal is first held: signatures that came before their document wait
    /// for it ([`FederationCharter::wait_for_proposal`]).
    proposal_added: tokio::sync::Notify,
    /// Announcements waiting so at once: a bound on the announcement slots they hold.
    waiting: std::sync::Arc<tokio::sync::Semaphore>,
}

/// How long signatures announced before their document wait for it (gossip from several
/// founders is not ordered) before the proposal is pulled from the sender.
pub const DOCUMENT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Announcements of signatures waiting for their document at once; beyond, the proposal is
/// pulled at once (each holds one of the node's announcement slots while it waits).
pub const MAX_WAITING_FOR_DOCUMENT: usize = 4;

/// Pulls of charter versions at once. Every member announces a version it applies, so without
/// a bound a node behind would pull (and verify) the same version once per announcer — at 45
/// members, ~2,000 pulls per change across the federation, which made propagation grow with
/// the number of members (docs/charter.md, "Propagation").
pub const MAX_CHARTER_PULLS: usize = 2;

/// The peers charter versions are being pulled from: at most [`MAX_CHARTER_PULLS`], one pull
/// per peer, so one slow or lying member cannot hold them all.
#[derive(Debug, Default)]
pub(crate) struct PullSlots(Mutex<std::collections::HashSet<PeerId>>);

impl PullSlots {
    /// A slot to pull from `peer`, or none while a pull from it runs or the slots are taken
    /// (the announcement is then left to the running pulls and to anti-entropy).
    pub(crate) fn take(&self, peer: PeerId) -> Option<PullSlot<'_>> {
        let mut pulling = self.0.lock();
        if pulling.len() >= MAX_CHARTER_PULLS || !pulling.insert(peer) {
            return None;
        }
        Some(PullSlot { slots: self, peer })
    }
}

/// A running pull of charter versions from one peer; its slot is free again when dropped.
pub(crate) struct PullSlot<'a> {
    slots: &'a PullSlots,
    peer: PeerId,
}

impl Drop for PullSlot<'_> {
    fn drop(&mut self) {
        self.slots.0.lock().remove(&self.peer);
    }
}

/// The highest charter head a peer claimed while no pull could follow it (one entry).
#[derive(Debug, Default)]
pub(crate) struct PendingHead(Mutex<Option<(PeerId, CharterHead)>>);

impl PendingHead {
    /// Keeps `head` from `peer` unless a higher version is already noted.
    pub(crate) fn note(&self, peer: PeerId, head: CharterHead) {
        let mut pending = self.0.lock();
        if pending
            .as_ref()
            .is_none_or(|(_, h)| h.version < head.version)
        {
            *pending = Some((peer, head));
        }
    }

    /// The head noted, forgotten here.
    pub(crate) fn take(&self) -> Option<(PeerId, CharterHead)> {
        self.0.lock().take()
    }
}

/// Proposal claims remembered ([`FederationCharter::should_pull`]); forgotten all at once past it.
const MAX_ASKED: usize = 4096;

/// Peers whose refused head is remembered (only members reach it; bounded all the same).
const MAX_REFUSED_HEADS: usize = 1024;

/// One member of the charter in force, as `GET /api/v1/federation` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct MemberView {
    /// Its 统一社会信用代码.
    pub member_id: String,
    /// Organisation.
    pub organisation: String,
    /// The region the charter binds to its keys.
    pub region: Region,
    /// "310000 上海市 Shanghai".
    pub region_label: String,
    /// `founder`, `member` or `observer`.
    pub role: Role,
    /// Its keys (lowercase hex).
    pub keys: Vec<String>,
    /// The peer id of each key.
    pub peers: Vec<String>,
}

/// The federation as `GET /api/v1/federation` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct FederationView {
    /// The charter in force.
    pub charter: CharterView,
    /// Who signs the next version, and how many.
    pub policy: ChangePolicy,
    /// The members, this node included.
    pub members: Vec<MemberView>,
    /// Proposals of the next version held.
    pub proposals: usize,
}

/// One applied version, as `GET /api/v1/federation/history` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct CharterVersionView {
    /// Its number.
    pub version: u64,
    /// Its digest.
    pub digest: String,
    /// When it was written.
    pub issued: String,
    /// When it expires.
    pub expires: String,
    /// Members listed.
    pub members: usize,
    /// Member ids of the previous version's signing role that signed it (empty at genesis).
    pub signed_by_previous: Vec<String>,
    /// Member ids of its own signing role that signed it.
    pub signed_by_own: Vec<String>,
}

/// Both documents of an equivocation, as kept in `charter_equivocations`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct StoredEquivocation {
    version: u64,
    held: SignedCharter,
    offered: SignedCharter,
    /// Set when a later version resolved it: both documents stay kept as evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resolved: Option<Resolution>,
}

/// How an equivocation was resolved: by which version, keeping which document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Resolution {
    /// The version that resolved it.
    pub by: u64,
    /// The version that had two documents.
    pub at: u64,
    /// Digest of the document kept.
    pub kept: String,
    /// Digest of the document dropped.
    pub dropped: String,
}

/// What offering a charter version did, with what the node must do next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Offered {
    /// The next version, now in force.
    Applied {
        /// Its number.
        version: u64,
        /// Its digest.
        digest: String,
        /// The equivocation it resolved, if any.
        resolved: Option<Resolution>,
    },
    /// A version already applied; `added` new signatures kept.
    Held {
        /// Signatures added.
        added: usize,
    },
    /// Another validly signed document of an applied version: kept as evidence; `first` when
    /// no equivocation had been seen before.
    Equivocation {
        /// The version.
        version: u64,
        /// Digest of the document held.
        held: String,
        /// Digest of the other one.
        offered: String,
        /// The first equivocation seen.
        first: bool,
    },
}

/// Why a charter version or proposal was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// It broke a rule (the code names which).
    #[error("{0}")]
    Refused(#[from] CharterError),
    /// Keeping it failed inside the node.
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl ApplyError {
    /// The rule's short name (`rollback`, `skipped-version` …), or `internal`.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ApplyError::Refused(e) => e.code(),
            ApplyError::Node(_) => "internal",
        }
    }
}

impl From<crate::store::StoreError> for ApplyError {
    fn from(e: crate::store::StoreError) -> ApplyError {
        ApplyError::Node(e.into())
    }
}

impl From<ApplyError> for NodeError {
    fn from(e: ApplyError) -> NodeError {
        match e {
            ApplyError::Node(e) => e,
            ApplyError::Refused(e) => match e {
                CharterError::Rollback { .. }
                | CharterError::SkippedVersion { .. }
                | CharterError::Equivocated(_)
                | CharterError::Dropped { .. } => {
                    NodeError::Conflict(format!("{} ({})", e, e.code()))
                }
                other => NodeError::invalid("charter", format!("{other} ({})", other.code())),
            },
        }
    }
}

fn charter_key(version: u64) -> String {
    format!("{version:020}")
}

fn invalid(reason: String) -> NodeError {
    NodeError::invalid("federation.charter", reason)
}

/// The Ed25519 public key (hex) of the peer id a document names as text.
fn public_hex_named(named: &str) -> Option<String> {
    crate::model::charter::public_hex_of_peer(&named.parse::<PeerId>().ok()?)
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

/// Versions a chain file may hold (as many as an evidence bundle carries).
pub const MAX_CHAIN_FILE_VERSIONS: usize = crate::model::membership::MAX_BUNDLE_CHARTERS;

/// `[federation] charter`: one signed charter (a genesis, or the next version of those stored),
/// or a JSON array of versions from the genesis on, in order — what a member that joins a
/// running federation is given (`GET /api/v1/federation/versions/{v}` of each). Each version is
/// parsed and bounded as on its own.
fn read_charter_file(path: &Path) -> Result<Vec<SignedCharter>, NodeError> {
    let named = |e: &dyn std::fmt::Display| invalid(format!("{}: {e}", path.display()));
    let max = MAX_CHAIN_FILE_VERSIONS * crate::model::charter::MAX_CHARTER_BYTES;
    let size = std::fs::metadata(path).map_err(|e| named(&e))?.len();
    if size > max as u64 {
        return Err(named(&format!(
            "{size} bytes, more than a chain file may hold ({max})"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| named(&e))?;
    if !text.trim_start().starts_with('[') {
        return Ok(vec![
            SignedCharter::from_json(&text).map_err(|e| named(&e))?,
        ]);
    }
    let value = crate::model::canonical::parse_strict(&text).map_err(|e| named(&e))?;
    let serde_json::Value::Array(items) = value else {
        return Err(named(&"expected an array of signed charters"));
    };
    if items.len() > MAX_CHAIN_FILE_VERSIONS {
        return Err(named(&format!(
            "{} versions, more than a chain file may hold ({MAX_CHAIN_FILE_VERSIONS})",
            items.len()
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let one = serde_json::to_string(item).map_err(|e| named(&e))?;
            SignedCharter::from_json(&one).map_err(|e| named(&format!("[{i}]: {e}")))
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
        let files = read_charter_file(&path)?;
        let stored: Vec<SignedCharter> = store
            .records::<SignedCharter>(RecordTree::Charters)?
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        let (first, later) = files
            .split_first()
            .ok_or_else(|| invalid(format!("{}: an empty chain", path.display())))?;
        let mut chain = Self::chain(first, stored, store, &path)?;
        // A chain file (how a member that joins later starts): its later versions in order.
        for (i, v) in later.iter().enumerate() {
            match chain.offer(v) {
                Ok(Offer::Applied { .. }) => {
                    let key = charter_key(v.document.version);
                    store.put_record(RecordTree::Charters, &key, v)?;
                }
                Ok(Offer::Held { .. }) => {}
                Ok(other) => {
                    return Err(invalid(format!(
                        "{}: [{}] version {}: {}",
                        path.display(),
                        i + 1,
                        v.document.version,
                        other.code()
                    )));
                }
                Err(e) => {
                    return Err(invalid(format!(
                        "{}: [{}] version {}: {e}",
                        path.display(),
                        i + 1,
                        v.document.version
                    )));
                }
            }
        }
        // An equivocation seen before a restart is seen again: its evidence is offered anew.
        for (_, e) in store.records::<StoredEquivocation>(RecordTree::CharterEquivocations)? {
            if let Some(r) = &e.resolved {
                chain.remember_dropped(r.dropped.clone());
                continue;
            }
            if let Ok(Offer::Equivocation(_)) = chain.offer(&e.offered) {
                tracing::error!(
                    version = e.version,
                    "charter equivocation (kept from before)"
                );
            }
        }
        let mut proposals = ProposalPool::default();
        for (key, stored) in store.records::<SignedCharter>(RecordTree::CharterProposals)? {
            if proposals.add(chain.current(), None, stored).is_err() {
                store.remove_record(RecordTree::CharterProposals, &key)?;
            }
        }
        let charter = FederationCharter::with(chain, proposals);
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

    /// A node's charter on `chain` alone (no store, no proposals), for tests of what it derives.
    #[cfg(test)]
    pub(crate) fn on_chain(chain: CharterChain) -> FederationCharter {
        FederationCharter::with(chain, ProposalPool::default())
    }

    fn with(chain: CharterChain, proposals: ProposalPool) -> FederationCharter {
        FederationCharter {
            peers: RwLock::new(bound_peers(&chain)),
            chain: RwLock::new(chain),
            contradictions: Mutex::new(VecDeque::new()),
            proposals: Mutex::new(proposals),
            refused: Mutex::new(HashMap::new()),
            pulling: PullSlots::default(),
            asked: Mutex::new(HashMap::new()),
            pending: PendingHead::default(),
            proposal_added: tokio::sync::Notify::new(),
            waiting: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_WAITING_FOR_DOCUMENT)),
        }
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

    /// Whether `named` (the peer id a grant, request or receipt names) and `peer` are keys of one
    /// member: `peer` a key in force now, and `named` a key the chain binds to the same member
    /// (in force too, or retired by a rotation). How a member that rotated its key keeps the
    /// grants, requests and deliveries that name its earlier key.
    pub(crate) fn same_member(&self, named: &str, peer: &PeerId) -> bool {
        let Some(member) = self.peers.read().get(peer).map(|b| b.member_id.clone()) else {
            return false;
        };
        let Some(public) = public_hex_named(named) else {
            return false;
        };
        self.chain.read().member_id_of_key(&public) == Some(member.as_str())
    }

    /// Every other key the chain ever bound to `peer`'s member (keys it rotated from, or to),
    /// in no particular order; empty if `peer` names no one.
    pub(crate) fn other_keys_of_member(&self, peer: &PeerId) -> Vec<PeerId> {
        let Some(public) = crate::model::charter::public_hex_of_peer(peer) else {
            return Vec::new();
        };
        let chain = self.chain.read();
        let Some(member) = chain.member_id_of_key(&public) else {
            return Vec::new();
        };
        let mut keys: Vec<PeerId> = chain
            .versions()
            .iter()
            .flat_map(|v| v.document().members.iter())
            .filter(|m| m.member_id == member)
            .flat_map(|m| m.keys.iter())
            .filter(|k| chain.member_id_of_key(&k.public_key) == Some(member))
            .filter_map(|k| k.peer_id())
            .filter(|p| p != peer)
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Whether `newer` replaces `older` for the member both belong to (a key rotation): `newer`
    /// in force for the member `older` was bound to, and some version listing `newer` with
    /// `replaces: older` (what `yrd key rotate` proposes). A member's other node replaces
    /// nothing, so it never supersedes. For a chain whose rotations name no replaced key
    /// (charters before `replaces`), only an unambiguous case counts: `older` no longer in
    /// force and `newer` the member's one key.
    pub(crate) fn supersedes(&self, newer: &PeerId, older: &PeerId) -> bool {
        if newer == older {
            return false;
        }
        let (Some(new_hex), Some(old_hex)) = (
            crate::model::charter::public_hex_of_peer(newer),
            crate::model::charter::public_hex_of_peer(older),
        ) else {
            return false;
        };
        let chain = self.chain.read();
        let Some(member_id) = chain.member_id_of_key(&old_hex) else {
            return false;
        };
        let current = chain.current();
        let Some(member) = current
            .document()
            .members
            .iter()
            .find(|m| m.member_id == member_id)
        else {
            return false;
        };
        if !member.keys.iter().any(|k| k.public_key == new_hex) {
            return false;
        }
        let declared = chain.versions().iter().any(|v| {
            v.document().members.iter().any(|m| {
                m.member_id == member_id
                    && m.keys.iter().any(|k| {
                        k.public_key == new_hex && k.replaces.as_deref() == Some(old_hex.as_str())
                    })
            })
        });
        declared || (member.keys.len() == 1 && !member.keys.iter().any(|k| k.public_key == old_hex))
    }

    /// The keys in force now of the member the chain binds `named` to (its current keys after a
    /// rotation); empty if no version names it or the member has left.
    pub(crate) fn current_peers_of(&self, named: &str) -> Vec<PeerId> {
        let Some(public) = public_hex_named(named) else {
            return Vec::new();
        };
        let chain = self.chain.read();
        let Some(member) = chain.member_id_of_key(&public) else {
            return Vec::new();
        };
        chain
            .current()
            .document()
            .members
            .iter()
            .filter(|m| m.member_id == member)
            .flat_map(|m| m.keys.iter().filter_map(|k| k.peer_id()))
            .collect()
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

    /// The version in force and its digest (for `heads` answers and announcements).
    pub(crate) fn head(&self) -> CharterHead {
        let chain = self.chain.read();
        CharterHead {
            version: chain.current().version(),
            digest: chain.current().digest.clone(),
        }
    }

    /// The version in force, verified.
    pub(crate) fn current(&self) -> VerifiedCharter {
        self.chain.read().current().clone()
    }

    /// An applied version, with every signature held.
    pub(crate) fn signed(&self, version: u64) -> Option<SignedCharter> {
        self.signed_in(&self.chain.read(), version)
    }

    /// Whether an equivocation was seen.
    pub(crate) fn equivocated(&self) -> bool {
        self.chain.read().equivocation().is_some()
    }

    /// Every applied version, genesis first.
    pub(crate) fn history(&self) -> Vec<CharterVersionView> {
        self.chain
            .read()
            .versions()
            .iter()
            .map(|v| CharterVersionView {
                version: v.version(),
                digest: v.digest.clone(),
                issued: v.document().issued.clone(),
                expires: v.document().expires.clone(),
                members: v.document().members.len(),
                signed_by_previous: v.signed_by_previous.clone(),
                signed_by_own: v.signed_by_own.clone(),
            })
            .collect()
    }

    /// The federation: the view, the policy, every member.
    pub(crate) fn federation(&self) -> FederationView {
        let current = self.current();
        let doc = current.document();
        FederationView {
            charter: self.view(),
            policy: doc.policy.clone(),
            members: doc
                .members
                .iter()
                .map(|m| MemberView {
                    member_id: m.member_id.clone(),
                    organisation: m.organisation.clone(),
                    region: m.region,
                    region_label: m.region.label(),
                    role: m.role,
                    keys: m.keys.iter().map(|k| k.public_key.clone()).collect(),
                    peers: m
                        .keys
                        .iter()
                        .filter_map(|k| k.peer_id().map(|p| p.to_string()))
                        .collect(),
                })
                .collect(),
            proposals: self.proposal_count(),
        }
    }

    /// Offers a charter version to the chain. The next version that passes the rules is
    /// applied and stored, the member map rebuilt and the proposals it makes obsolete dropped;
    /// an applied one adds its new signatures; an equivocation is kept as evidence (both
    /// documents) and blocks grants until the next version, naming the document the members
    /// keep, resolves it (the evidence stays, marked resolved); anything else is refused with
    /// the rule's code.
    pub(crate) fn offer(
        &self,
        store: &Store,
        offered: &SignedCharter,
    ) -> Result<Offered, ApplyError> {
        let mut chain = self.chain.write();
        let first = chain.equivocation().is_none();
        match chain.offer(offered)? {
            Offer::Applied { version } => {
                let current = chain.current().clone();
                store.put_record(
                    RecordTree::Charters,
                    &charter_key(version),
                    &current.charter,
                )?;
                *self.peers.write() = bound_peers(&chain);
                drop(chain);
                self.asked.lock().clear();
                let dropped = self.proposals.lock().drop_obsolete(version);
                for digest in dropped {
                    store.remove_record(RecordTree::CharterProposals, &digest)?;
                }
                Ok(Offered::Applied {
                    version,
                    digest: current.digest,
                    resolved: None,
                })
            }
            Offer::Resolved {
                version,
                at,
                kept,
                dropped,
            } => {
                // Version `at` may now be the other document: both it and the new one stored.
                for v in [at, version] {
                    if let Some(signed) = self.signed_in(&chain, v) {
                        store.put_record(RecordTree::Charters, &charter_key(v), &signed)?;
                    }
                }
                let digest = chain.current().digest.clone();
                *self.peers.write() = bound_peers(&chain);
                drop(chain);
                let resolution = Resolution {
                    by: version,
                    at,
                    kept,
                    dropped,
                };
                let key = charter_key(at);
                if let Some(mut kept) =
                    store.record::<StoredEquivocation>(RecordTree::CharterEquivocations, &key)?
                {
                    kept.resolved = Some(resolution.clone());
                    store.put_record(RecordTree::CharterEquivocations, &key, &kept)?;
                }
                self.asked.lock().clear();
                let obsolete = self.proposals.lock().drop_obsolete(version);
                for digest in obsolete {
                    store.remove_record(RecordTree::CharterProposals, &digest)?;
                }
                Ok(Offered::Applied {
                    version,
                    digest,
                    resolved: Some(resolution),
                })
            }
            Offer::Held { version, added } => {
                if added > 0 {
                    if let Some(v) = self.signed_in(&chain, version) {
                        store.put_record(RecordTree::Charters, &charter_key(version), &v)?;
                    }
                }
                Ok(Offered::Held { added })
            }
            Offer::Equivocation(e) => {
                drop(chain);
                let digest = |c: &SignedCharter| c.document.digest().unwrap_or_default();
                let (held, other) = (digest(&e.held), digest(&e.offered));
                if first {
                    let kept = StoredEquivocation {
                        version: e.version,
                        held: e.held.clone(),
                        offered: e.offered.clone(),
                        resolved: None,
                    };
                    store.put_record(
                        RecordTree::CharterEquivocations,
                        &charter_key(e.version),
                        &kept,
                    )?;
                }
                Ok(Offered::Equivocation {
                    version: e.version,
                    held,
                    offered: other,
                    first,
                })
            }
        }
    }

    fn signed_in(&self, chain: &CharterChain, version: u64) -> Option<SignedCharter> {
        let index = usize::try_from(version.checked_sub(1)?).ok()?;
        chain.versions().get(index).map(|v| v.charter.clone())
    }

    /// Takes a proposal of the next version (from `by`, or from an operator when `None`):
    /// stored new, or its new signatures merged into the copy held. Returns its digest and
    /// what changed.
    pub(crate) fn propose(
        &self,
        store: &Store,
        by: Option<PeerId>,
        proposal: SignedCharter,
    ) -> Result<(String, Taken), ApplyError> {
        // Read, not cloned: a hundred-member charter is copied for nothing on every gossip
        // copy. (Lock order: chain, then proposals, as `offer` takes them.)
        let chain = self.chain.read();
        let mut pool = self.proposals.lock();
        let (digest, taken) = pool.add(chain.current(), by, proposal)?;
        if taken.changed() {
            if let Some(p) = pool.get(&digest) {
                store.put_record(RecordTree::CharterProposals, &digest, p)?;
            }
        }
        if taken == Taken::New {
            self.proposal_added.notify_waiters();
        }
        Ok((digest, taken))
    }

    /// Merges `signatures` into proposal `digest` of version `version`: at once when it is
    /// held, otherwise once it is, waiting up to [`DOCUMENT_WAIT`] for it (its document may be
    /// on its way); `None` when it is not held by then, when its version was applied meanwhile,
    /// or when [`MAX_WAITING_FOR_DOCUMENT`] already wait.
    pub(crate) async fn wait_for_proposal(
        &self,
        store: &Store,
        version: u64,
        digest: &str,
        signatures: &[CharterSignature],
    ) -> Result<Option<Taken>, ApplyError> {
        if let Some(taken) = self.add_signatures(store, digest, signatures)? {
            return Ok(Some(taken));
        }
        let Ok(_permit) = self.waiting.clone().try_acquire_owned() else {
            return Ok(None);
        };
        let deadline = tokio::time::Instant::now() + DOCUMENT_WAIT;
        loop {
            // Registered before the check, so an addition in between is not missed.
            let added = self.proposal_added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if let Some(taken) = self.add_signatures(store, digest, signatures)? {
                return Ok(Some(taken));
            }
            if self.head().version >= version
                || tokio::time::timeout_at(deadline, added).await.is_err()
            {
                return Ok(None);
            }
        }
    }

    /// Merges `signatures`, sent without their document, into proposal `digest` of the next
    /// version; `None` when that proposal is not held.
    fn add_signatures(
        &self,
        store: &Store,
        digest: &str,
        signatures: &[CharterSignature],
    ) -> Result<Option<Taken>, ApplyError> {
        let mut pool = self.proposals.lock();
        let taken = pool.merge(digest, signatures);
        if taken.is_some_and(Taken::changed) {
            if let Some(p) = pool.get(digest) {
                store.put_record(RecordTree::CharterProposals, digest, p)?;
            }
        }
        Ok(taken)
    }

    /// A slot to pull versions from `peer` ([`PullSlots::take`]).
    pub(crate) fn pull_slot(&self, peer: PeerId) -> Option<PullSlot<'_>> {
        self.pulling.take(peer)
    }

    /// Remembers a head `peer` claims that no pull could follow now (the highest one wins).
    pub(crate) fn note_pending(&self, peer: PeerId, head: CharterHead) {
        self.pending.note(peer, head);
    }

    /// The head remembered by [`Self::note_pending`], if it is still ahead of ours and its peer
    /// was not refused under it.
    pub(crate) fn take_pending(&self) -> Option<(PeerId, CharterHead)> {
        let (peer, head) = self.pending.take()?;
        (head.version > self.head().version && !self.was_refused(peer, &head))
            .then_some((peer, head))
    }

    /// Whether `peer` served a refused version while claiming `head`.
    pub(crate) fn was_refused(&self, peer: PeerId, head: &CharterHead) -> bool {
        self.refused.lock().get(&peer) == Some(head)
    }

    /// Remembers that `peer` served a refused version while claiming `head`.
    pub(crate) fn note_refused(&self, peer: PeerId, head: CharterHead) {
        let mut refused = self.refused.lock();
        if refused.len() >= MAX_REFUSED_HEADS && !refused.contains_key(&peer) {
            refused.clear();
        }
        refused.insert(peer, head);
    }

    /// Whether `offered`, a copy of proposal `digest`, may add to what is held: the proposal is
    /// not held, or `offered` names a signer the held copy lacks. (Founders sign apart, so
    /// copies with as many signatures as ours may each bring another one.) Held copies keep
    /// only signatures that verify, so their signers are compared without verifying again.
    pub(crate) fn may_add_to_proposal(&self, digest: &str, offered: &SignedCharter) -> bool {
        self.proposal(digest).is_none_or(|held| {
            offered
                .signatures
                .iter()
                .any(|s| !held.signatures.iter().any(|h| h.signer == s.signer))
        })
    }

    /// Whether proposal `digest` is not held, or held with fewer than `signatures` valid
    /// signatures (a peer's claim of more is worth taking).
    fn lacks_proposal(&self, digest: &str, signatures: u32) -> bool {
        self.proposal(digest).is_none_or(|held| {
            u32::try_from(held.valid_signers().len()).unwrap_or(u32::MAX) < signatures
        })
    }

    /// Whether to pull proposal `digest` from `peer`, which claims `signatures` for it: we lack
    /// it or hold fewer, and `peer` did not claim as many when we last pulled it from there (a
    /// member announcing more signatures than it serves costs one pull per claim, not one per
    /// announcement). A pull that is decided here is remembered; [`Self::pull_failed`] forgets
    /// it.
    pub(crate) fn should_pull(&self, peer: PeerId, digest: &str, signatures: u32) -> bool {
        if !self.lacks_proposal(digest, signatures) {
            return false;
        }
        let mut asked = self.asked.lock();
        let key = (peer, digest.to_string());
        if asked
            .get(&key)
            .is_some_and(|&claimed| claimed >= signatures)
        {
            return false;
        }
        if asked.len() >= MAX_ASKED {
            asked.clear();
        }
        asked.insert(key, signatures);
        true
    }

    /// A pull of `digest` from `peer` was not served: it may be asked again.
    pub(crate) fn pull_failed(&self, peer: PeerId, digest: &str) {
        self.asked.lock().remove(&(peer, digest.to_string()));
    }

    /// How many proposals are held.
    pub(crate) fn proposal_count(&self) -> usize {
        self.proposals.lock().len()
    }

    /// One proposal held, by digest.
    pub(crate) fn proposal(&self, digest: &str) -> Option<SignedCharter> {
        self.proposals.lock().get(digest).cloned()
    }

    /// The proposals held, as peers see them.
    pub(crate) fn proposal_heads(&self) -> Vec<ProposalHead> {
        self.proposals.lock().heads()
    }

    /// The proposals held, as operators see them (whether each is ready, or what it lacks).
    pub(crate) fn proposal_views(&self) -> Vec<ProposalView> {
        let current = self.current();
        self.proposals.lock().views(&current)
    }

    /// A proposal whose signatures now pass the rules against the version in force.
    pub(crate) fn ready_proposal(&self) -> Option<SignedCharter> {
        let chain = self.chain.read();
        self.proposals.lock().ready(chain.current())
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
