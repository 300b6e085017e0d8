//! Rotating this node's key (`yrd key rotate`, docs/federation.md "Rotating a node's key"), in
//! two charter changes: the next key (`node.key.next`) is added to this member's keys, the node
//! restarts on it once that version applies, then the earlier key is removed. Owns the restart
//! request and the switch itself, done at start (`identity::switch_to_next_key`, crash-safe) so
//! there is one path to a new key whether the version arrived while the node ran or was down.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::charter::FederationCharter;
use super::charter_sync::ProposalView;
use super::schemas::to_json;
use super::{Node, NodeError};
use crate::config::NodeConfig;
use crate::identity::{self, NodeKey};
use crate::model::charter::{Change, MemberKey, SignedCharter};
use crate::model::exchange::Manifest;
use crate::model::provenance::RecordKind;
use crate::model::signed::Signed;
use crate::store::Store;

/// Which of the two changes of a rotation a proposal makes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RotationStage {
    /// The member gains the next key beside its current one; once applied, the node restarts on
    /// the next key (its current one is still a member, so it learns the version).
    AddNextKey,
    /// The node runs on its new key; the member's earlier keys (kept under `keys/`) are removed,
    /// after which every member refuses them.
    RetireOldKey,
}

/// A key rotation asked for: the key in force, the key the proposal keeps, the proposal.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct KeyRotationView {
    /// The node's peer id now (its key in force).
    pub peer_id: String,
    /// The key the rotation ends on: the next key (`node.key.next`) while it is added, this
    /// node's key once it retires the earlier ones.
    pub next_peer_id: String,
    /// The member whose keys change.
    pub member_id: String,
    /// Which change the proposal makes.
    pub stage: RotationStage,
    /// The proposal of the next charter version making that change: the founders approve it
    /// (`yrd federation approve DIGEST`) as any change.
    pub proposal: ProposalView,
}

impl Node {
    /// Operator: rotates this node's key, one stage at a time (docs/federation.md, "Rotating a
    /// node's key"). Stage 1: makes the next key (or takes the one a rotation under way made)
    /// and proposes adding it to this member's keys; once that version applies, the node
    /// restarts on it. Stage 2 (submitted by the node itself after that restart, or asked
    /// again): proposes removing the member's earlier keys. A proposal already held for the
    /// same change is returned instead of a second one. 409 without a charter, when this node's
    /// key is no member, or while a version lists the next key but the node has not restarted.
    pub async fn rotate_key(&self) -> Result<KeyRotationView, NodeError> {
        let charter = self.inner.charter.as_ref().ok_or_else(|| {
            NodeError::Conflict(
                "this node runs without a federation charter: its key is its identity in every \
                 member list; rotate it with a charter (docs/federation.md)"
                    .into(),
            )
        })?;
        let current = charter.current();
        let doc = current.document();
        let own = self.inner.key.public_hex();
        let member = doc.member_of_key(&own).ok_or_else(|| {
            NodeError::Conflict(format!(
                "this node's key is not a member of charter version {}",
                current.version()
            ))
        })?;
        let member_id = member.member_id.clone();
        let data_dir = &self.inner.data_dir;
        // The member's keys this node ran on before; a key of the member's other nodes is not.
        let retired_listed: Vec<String> = member
            .keys
            .iter()
            .filter(|k| {
                k.public_key != own
                    && k.peer_id()
                        .is_some_and(|p| identity::retired_key_path(data_dir, &p).exists())
            })
            .map(|k| k.public_key.clone())
            .collect();
        let pending = identity::pending_next_key(data_dir)?;
        let (stage, keep, keys) = match pending {
            None if !retired_listed.is_empty() => (
                RotationStage::RetireOldKey,
                self.inner.key.clone(),
                member
                    .keys
                    .iter()
                    .map(|k| k.public_key.clone())
                    .filter(|k| !retired_listed.contains(k))
                    .collect(),
            ),
            _ => {
                let next = identity::next_key(data_dir)?;
                let next_public = next.public_hex();
                if member.keys.iter().any(|k| k.public_key == next_public) {
                    return Err(NodeError::Conflict(format!(
                        "charter version {} already lists the next key: the node restarts on it",
                        current.version()
                    )));
                }
                let mut keys: Vec<String> =
                    member.keys.iter().map(|k| k.public_key.clone()).collect();
                keys.push(next_public);
                (RotationStage::AddNextKey, next, keys)
            }
        };
        let makes_change = |c: &SignedCharter| {
            c.document.version == current.version() + 1
                && c.document.members.iter().any(|m| {
                    m.member_id == member_id && m.keys.iter().map(|k| &k.public_key).eq(keys.iter())
                })
        };
        let held = charter.proposal_views().into_iter().find(|v| {
            charter
                .proposal(&v.digest)
                .is_some_and(|c| makes_change(&c))
        });
        let proposal = match held {
            Some(view) => view,
            None => {
                // The next key names the one it replaces, so that `REGION/DATASET` and a
                // subscription follow the rotation and not a member's other node.
                let changes: Vec<Change> = match stage {
                    RotationStage::AddNextKey => vec![Change::AddKey(
                        member_id.clone(),
                        MemberKey {
                            replaces: Some(own.clone()),
                            ..MemberKey::ed25519_hex(keep.public_hex())
                        },
                    )],
                    RotationStage::RetireOldKey => retired_listed
                        .iter()
                        .map(|old| Change::RetireKey(member_id.clone(), old.clone()))
                        .collect(),
                };
                // Evidence takes the version in force at a signature's time from `issued`, to
                // the second. The node proposes the removal once it runs on its new key, so every
                // signature of the old key is from this second or before: the removal is issued
                // at the next second, or a record of the old key could fall under it.
                let issued = match stage {
                    RotationStage::AddNextKey => crate::clock::now_rfc3339(),
                    RotationStage::RetireOldKey => crate::clock::format_system_time(
                        std::time::SystemTime::now() + std::time::Duration::from_secs(1),
                    ),
                };
                let draft = doc
                    .next(&changes, issued, doc.expires.clone())
                    .map_err(|e| NodeError::invalid("charter", format!("{e} ({})", e.code())))?;
                self.submit_proposal(SignedCharter::draft(draft)).await?
            }
        };
        tracing::info!(stage = ?stage, key = %keep.peer_id(), digest = %proposal.digest, "key rotation proposed");
        Ok(KeyRotationView {
            peer_id: self.peer_id_text().to_owned(),
            next_peer_id: keep.peer_id().to_string(),
            member_id,
            stage,
            proposal,
        })
    }

    /// At start: the versions this node published under the keys it ran on before a rotation
    /// are signed again by its key in force — same dataset, version, content and chain, only the
    /// publisher changes — so that it goes on numbering them, serves them under the key members
    /// reach it by, and its grantees and subscribers see its next version as newer
    /// (docs/federation.md, "Rotating a node's key"). Each is recorded (`dataset-published`, the
    /// cause naming the key and manifest it was first published under) before it is stored,
    /// as a publish is. A version the key in force already signed is left as it is, so a start
    /// interrupted midway completes at the next one. Standards and grants are not signed again:
    /// they are judged by member, not by key. Returns how many versions were signed.
    pub(crate) async fn adopt_earlier_publications(&self) -> Result<usize, NodeError> {
        if self.earlier_keys().is_empty() {
            return Ok(0);
        }
        let _guard = self.inner.write_lock.lock().await;
        let me = self.peer_id_text().to_owned();
        let mut adopted = 0;
        for earlier in self.earlier_keys() {
            for raw in self.store().manifests_of_publisher(&earlier.to_string())? {
                let old = match serde_json::from_value::<Signed<Manifest>>(raw) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(key = %earlier, error = %e, "unreadable stored manifest of an earlier key skipped");
                        continue;
                    }
                };
                let d = &old.document;
                // Only originals are in this tree (derived copies are kept apart and signed
                // again when served next); a manifest naming another publisher is not ours.
                if d.derived_from.is_some() || d.publisher != earlier.to_string() {
                    continue;
                }
                if self
                    .store()
                    .manifest(&me, &d.dataset, Some(d.version))?
                    .is_some()
                {
                    continue;
                }
                let signed = self.resign_manifest(d)?;
                let mut r = self.new_record(RecordKind::DatasetPublished);
                r.dataset = Some(d.dataset.clone());
                r.version = Some(d.version);
                r.data_digest = Some(d.digest.clone());
                r.cause = Some(format!(
                    "signed again by this node's key after a key rotation; first published by \
                     {earlier} as manifest {}",
                    old.digest_hex()?
                ));
                self.record(
                    r,
                    None,
                    super::provenance::doc(&signed).into_iter().collect(),
                )
                .await;
                self.store()
                    .put_manifest(&me, &d.dataset, d.version, &to_json(&signed)?)?;
                adopted += 1;
            }
        }
        if adopted > 0 {
            self.store().flush().await?;
            tracing::info!(
                versions = adopted,
                "versions published under earlier keys signed again by the key in force"
            );
        }
        Ok(adopted)
    }

    /// A manifest this node signed under an earlier key, signed by the key in force: only the
    /// publisher (and its region, the charter's for the key) changes.
    pub(crate) fn resign_manifest(&self, m: &Manifest) -> Result<Signed<Manifest>, NodeError> {
        let mut doc = m.clone();
        doc.publisher = self.peer_id_text().to_owned();
        doc.region = self.region();
        Ok(Signed::sign(doc, self.inner.key.signing_key())?)
    }

    /// Cancelled when the node must be started again: a version now in force lists its next key
    /// ([`Self::check_key_switch`]). `yrd run` restarts the node in the same process; the start
    /// switches the key.
    pub fn restart_requested(&self) -> tokio_util::sync::CancellationToken {
        self.inner.restart.clone()
    }

    /// After a version is applied: asks for a restart when a rotation is under way and the
    /// version lists the next key.
    pub(crate) fn check_key_switch(&self) {
        let Some(charter) = self.inner.charter.as_ref() else {
            return;
        };
        let next = match identity::pending_next_key(&self.inner.data_dir) {
            Ok(Some(next)) => next,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "the next key of a rotation cannot be read");
                return;
            }
        };
        if charter.region_of(&next.peer_id()).is_some() {
            tracing::warn!(
                key = %next.peer_id(),
                version = charter.version(),
                "the charter now lists this node's next key: restarting on it"
            );
            self.inner.restart.cancel();
        }
    }
}

/// At start: the charter, the key to run with, and whether the key was just switched. When a
/// rotation is under way and the version in force lists its next key, the key is switched
/// (`identity::switch_to_next_key`) and the node starts on it — also when the configured key is
/// no longer a member (a version removing it arrived while the node was down).
pub(crate) fn load_charter(
    config: &NodeConfig,
    data_dir: &Path,
    store: &Store,
    key: NodeKey,
) -> Result<(NodeKey, Option<FederationCharter>, bool), NodeError> {
    let next = identity::pending_next_key(data_dir)?;
    let refused = match FederationCharter::load(config, data_dir, store, key.peer_id()) {
        Ok(Some(charter)) => match &next {
            Some(next) if charter.region_of(&next.peer_id()).is_some() => {
                return Ok((identity::switch_to_next_key(data_dir)?, Some(charter), true));
            }
            _ => return Ok((key, Some(charter), false)),
        },
        Ok(None) => return Ok((key, None, false)),
        Err(e) => e,
    };
    let Some(next) = next else {
        return Err(refused);
    };
    let Some(charter) = FederationCharter::load(config, data_dir, store, next.peer_id())? else {
        return Err(refused);
    };
    let switched = identity::switch_to_next_key(data_dir)?;
    Ok((switched, Some(charter), true))
}
