//! The federation charter on the network (docs/charter.md, "Live changes"): serving applied
//! versions and proposals to peers, pulling newer versions a peer announces or lists in its
//! heads (one at a time, a bounded number per peer and round), the proposals of the next version
//! ([`ProposalPool`]: bounded in total and per peer, signatures of copies merged), and what
//! applying a version does at once — the connection gate's member set replaced and removed keys
//! disconnected, a `charter-applied` record, the new version announced. Refusals are recorded
//! within the peer's refusal budget, naming the rule broken; an equivocation is an alarm record.

use std::collections::BTreeMap;

use libp2p::PeerId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::charter::{
    ApplyError, CharterVersionView, FederationCharter, FederationView, Offered, Resolution,
};
use super::{Node, NodeError, not_served};
use crate::model::charter::{
    Charter, CharterError, CharterSignature, MAX_CHARTER_BYTES, SignedCharter, VerifiedCharter,
    check_follows, verify_update,
};
use crate::model::message::{Announcement, CharterHead, ProposalHead, Request, Response};
use crate::model::provenance::RecordKind;
use crate::model::refusal::RefusalCode;

/// Proposals of the next version held at once, whoever made them.
pub const MAX_PROPOSALS: usize = 32;
/// Proposals one peer may introduce (be the first to send) among those held.
pub const MAX_PROPOSALS_PER_PEER: usize = 4;
/// Charter versions pulled from one peer in one round (announcement or sync); the rest follow
/// in later rounds.
pub const MAX_VERSIONS_PER_ROUND: u64 = 16;
/// Proposals pulled from one peer in one sync round.
pub const MAX_PROPOSAL_PULLS_PER_ROUND: usize = 4;

/// How a proposal reached this node, which decides whether it tells the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// An operator of this node submitted or signed it.
    Operator,
    /// Pulled from a peer (anti-entropy, or an announcement too big to carry it).
    Pulled,
    /// Carried by a gossip announcement, which every member received alike.
    Carried,
}

/// What a node tells the other members of a change it made to its proposals or its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tell {
    /// Nothing: the gossip carried it to every member alike (telling it again, or the version
    /// made from it, would cost N² deliveries).
    Nothing,
    /// The document with its signatures: the others may not hold it.
    Document,
    /// The signatures alone: the others hold the document, announced with it before.
    Signatures,
}

/// A proposal of the next version, as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct ProposalView {
    /// Digest of its document (what `approve` names).
    pub digest: String,
    /// The version it proposes.
    pub version: u64,
    /// When it was written.
    pub issued: String,
    /// When it would expire.
    pub expires: String,
    /// Members it lists.
    pub members: usize,
    /// Keys whose signature verifies over it (lowercase hex).
    pub signers: Vec<String>,
    /// Whether its signatures pass the rules against the version in force (it is then applied
    /// at once; a ready proposal is only seen between that check and its application).
    pub ready: bool,
    /// What it still lacks, when not ready (e.g. "1 of the 3 founder signatures needed …").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lacking: Option<String>,
    /// The peer that first sent it (absent when an operator of this node submitted it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced_by: Option<String>,
}

/// What taking a copy of a proposal changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Nothing: it brought no signature that verifies and is not held.
    Nothing,
    /// A proposal not held before, now held.
    New,
    /// Signatures merged into the copy held.
    Signatures,
}

impl Taken {
    /// Whether anything changed.
    pub(crate) fn changed(self) -> bool {
        self != Taken::Nothing
    }
}

#[derive(Debug, Clone)]
struct Pending {
    charter: SignedCharter,
    by: Option<PeerId>,
    /// Its document's signing message, computed once: every copy or signature the gossip
    /// brings is verified over it.
    message: Vec<u8>,
}

/// The proposals of the next version held: each a draft of version current+1 naming the
/// current version's digest, keyed by its document's digest, with only signatures that verify.
#[derive(Debug, Default)]
pub(crate) struct ProposalPool {
    items: BTreeMap<String, Pending>,
}

impl ProposalPool {
    /// How many are held.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Takes `proposal` from `by` (an operator when `None`) as a proposal following `current`:
    /// it must pass the shape checks and be the next version of the same federation naming
    /// `current` as previous. A copy of one held merges its new valid signatures; a new one is
    /// kept within [`MAX_PROPOSALS`] and [`MAX_PROPOSALS_PER_PEER`]. Returns its digest and
    /// what changed.
    pub(crate) fn add(
        &mut self,
        current: &VerifiedCharter,
        by: Option<PeerId>,
        proposal: SignedCharter,
    ) -> Result<(String, Taken), CharterError> {
        // A copy of one held is the same document (same digest), checked when it came: only
        // its signatures are new. Gossip brings many copies, each with another signature.
        let message = proposal.document.signing_message()?;
        let digest = Charter::digest_of_message(&message);
        if let Some(taken) = self.merge(&digest, &proposal.signatures) {
            return Ok((digest, taken));
        }
        proposal.check()?;
        let new = &proposal.document;
        check_follows(current, new)?;
        if self.items.len() >= MAX_PROPOSALS {
            return Err(CharterError::Invalid {
                field: "proposals".into(),
                reason: format!("{MAX_PROPOSALS} proposals are held already"),
            });
        }
        if let Some(peer) = by {
            let introduced = self.items.values().filter(|p| p.by == Some(peer)).count();
            if introduced >= MAX_PROPOSALS_PER_PEER {
                return Err(CharterError::Invalid {
                    field: "proposals".into(),
                    reason: format!(
                        "peer {peer} introduced {MAX_PROPOSALS_PER_PEER} proposals held already"
                    ),
                });
            }
        }
        // Only the signatures that verify are kept.
        let mut kept = SignedCharter::draft(proposal.document);
        kept.merge_signatures(&message, &proposal.signatures);
        self.items.insert(
            digest.clone(),
            Pending {
                charter: kept,
                by,
                message,
            },
        );
        Ok((digest, Taken::New))
    }

    /// Merges `signatures` into proposal `digest`, those that verify over its document and
    /// name a signer the held copy lacks; `None` when it is not held.
    pub(crate) fn merge(&mut self, digest: &str, signatures: &[CharterSignature]) -> Option<Taken> {
        let held = self.items.get_mut(digest)?;
        let added = held.charter.merge_signatures(&held.message, signatures);
        Some(if added > 0 {
            Taken::Signatures
        } else {
            Taken::Nothing
        })
    }

    /// One proposal, by digest.
    pub(crate) fn get(&self, digest: &str) -> Option<&SignedCharter> {
        self.items.get(digest).map(|p| &p.charter)
    }

    /// Drops every proposal of a version at or below `applied`; returns their digests.
    pub(crate) fn drop_obsolete(&mut self, applied: u64) -> Vec<String> {
        let gone: Vec<String> = self
            .items
            .iter()
            .filter(|(_, p)| p.charter.document.version <= applied)
            .map(|(d, _)| d.clone())
            .collect();
        for d in &gone {
            self.items.remove(d);
        }
        gone
    }

    /// What peers are told is held.
    pub(crate) fn heads(&self) -> Vec<ProposalHead> {
        self.items
            .iter()
            .map(|(digest, p)| ProposalHead {
                digest: digest.clone(),
                version: p.charter.document.version,
                signatures: signature_count(&p.charter),
            })
            .collect()
    }

    /// What operators are shown.
    pub(crate) fn views(&self, current: &VerifiedCharter) -> Vec<ProposalView> {
        self.items
            .iter()
            .map(|(digest, p)| {
                let doc = &p.charter.document;
                let verdict = verify_update(current, &p.charter);
                ProposalView {
                    digest: digest.clone(),
                    version: doc.version,
                    issued: doc.issued.clone(),
                    expires: doc.expires.clone(),
                    members: doc.members.len(),
                    signers: p.charter.valid_signers(),
                    ready: verdict.is_ok(),
                    lacking: verdict.err().map(|e| e.to_string()),
                    introduced_by: p.by.map(|b| b.to_string()),
                }
            })
            .collect()
    }

    /// A proposal whose signatures pass the rules against `current`.
    pub(crate) fn ready(&self, current: &VerifiedCharter) -> Option<SignedCharter> {
        // Fewer signatures than the version in force requires cannot pass: not checked.
        let needed = usize::try_from(current.document().policy.threshold).unwrap_or(usize::MAX);
        self.items
            .values()
            .filter(|p| p.charter.signatures.len() >= needed)
            .find(|p| verify_update(current, &p.charter).is_ok())
            .map(|p| p.charter.clone())
    }
}

/// A charter a peer served is judged by its size first: over [`MAX_CHARTER_BYTES`] in canonical
/// form it is refused as `too-large` before any other rule is looked at.
fn within_size(c: &SignedCharter) -> Result<(), CharterError> {
    let bytes = crate::model::canonical::canonical_bytes(c)
        .map_err(|e| CharterError::Malformed(e.to_string()))?
        .len();
    if bytes > MAX_CHARTER_BYTES {
        return Err(CharterError::TooLarge {
            bytes,
            max: MAX_CHARTER_BYTES,
        });
    }
    Ok(())
}

fn signature_count(c: &SignedCharter) -> u32 {
    u32::try_from(c.valid_signers().len()).unwrap_or(u32::MAX)
}

fn no_charter() -> NodeError {
    NodeError::NotFound("this node runs on no federation charter ([federation] charter)".into())
}

impl Node {
    fn charter(&self) -> Result<&FederationCharter, NodeError> {
        self.inner.charter.as_ref().ok_or_else(no_charter)
    }

    /// The charter version in force, for `heads` answers.
    pub(crate) fn charter_head(&self) -> Option<CharterHead> {
        self.inner.charter.as_ref().map(FederationCharter::head)
    }

    /// Answers a peer's charter request: an applied version, the proposals held, one proposal.
    pub(crate) fn answer_charter(&self, request: Request) -> Response {
        let error = |code: RefusalCode, message: String| Response::Error { code, message };
        let Some(charter) = &self.inner.charter else {
            return error(RefusalCode::NotFound, no_charter().to_string());
        };
        match request {
            Request::Charter { version } => match charter.signed(version) {
                Some(c) => Response::Charter {
                    charter: Box::new(c),
                },
                None => error(
                    RefusalCode::NotFound,
                    format!("charter version {version} is not applied here"),
                ),
            },
            Request::CharterProposals => Response::CharterProposals {
                proposals: charter.proposal_heads(),
            },
            Request::CharterProposal { digest } => match charter.proposal(&digest) {
                Some(c) => Response::CharterProposal {
                    charter: Box::new(c),
                },
                None => error(RefusalCode::NotFound, format!("no proposal {digest} held")),
            },
            _ => error(RefusalCode::Internal, "answered elsewhere".into()),
        }
    }

    /// A charter announcement from `source`: a newer version is pulled from it; a proposal we
    /// lack, or hold with fewer signatures, is pulled from it.
    pub(crate) async fn on_charter_announcement(&self, source: PeerId, a: Announcement) {
        let Some(charter) = &self.inner.charter else {
            return;
        };
        match &a {
            Announcement::CharterSignatures {
                version,
                digest,
                signatures,
                applied,
            } => tracing::debug!(
                peer = %source,
                version,
                digest,
                signatures = signatures.len(),
                applied,
                "charter signatures announced"
            ),
            _ => {
                tracing::debug!(peer = %source, announcement = ?a.clone().without_document(), "charter announcement");
            }
        }
        let result = match a {
            Announcement::Charter {
                version,
                digest,
                charter: carried,
            } if version > charter.head().version => {
                let next = carried.filter(|c| {
                    version == charter.head().version.saturating_add(1)
                        && c.document.version == version
                        && c.document.digest().is_ok_and(|d| d == digest)
                });
                match next {
                    Some(c) => self.take_charter(source, *c).await,
                    None => {
                        self.pull_charters(source, CharterHead { version, digest })
                            .await
                    }
                }
            }
            Announcement::CharterProposal {
                version,
                digest,
                signatures,
                charter: carried,
            } if version == charter.head().version.saturating_add(1) => {
                let carried = carried.filter(|c| {
                    c.document.version == version && c.document.digest().is_ok_and(|d| d == digest)
                });
                match carried {
                    Some(c) if charter.may_add_to_proposal(&digest, &c) => {
                        self.offer_proposal(source, *c, Arrival::Carried).await
                    }
                    // Carried, and bringing no signature we lack.
                    Some(_) => Ok(()),
                    None if charter.should_pull(source, &digest, signatures) => {
                        self.pull_proposal(source, &digest, version).await
                    }
                    None => Ok(()),
                }
            }
            Announcement::CharterSignatures {
                version,
                digest,
                signatures,
                applied,
            } => {
                self.take_signatures(source, version, digest, &signatures, applied)
                    .await
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(peer = %source, error = %e, "charter announcement not followed");
        }
    }

    /// Takes signatures `source` announced without their document: merged into proposal
    /// `digest` when it is held as the next version's, or once it is (waiting a little for its
    /// document), and applied when they complete it; otherwise the proposal is pulled from
    /// `source` — or the version, which `source` holds when it says they were `applied` (also
    /// when what it sent does not complete it here).
    async fn take_signatures(
        &self,
        source: PeerId,
        version: u64,
        digest: String,
        signatures: &[CharterSignature],
        applied: bool,
    ) -> Result<(), NodeError> {
        let charter = self.charter()?;
        let next = charter.head().version.saturating_add(1);
        if version == next {
            let store = self.inner.store.clone();
            // Founders sign apart and the gossip does not order their announcements: a document
            // not held yet is usually on its way. Pulled at once, it would be pulled by most
            // members from the one that signed.
            let taken = charter
                .wait_for_proposal(&store, version, &digest, signatures)
                .await?;
            if let Some(taken) = taken {
                tracing::debug!(digest, ?taken, "charter signatures taken");
                self.proposal_changed(version, &digest, taken, Arrival::Carried)
                    .await?;
            } else if !applied && charter.head().version < version {
                let claimed = u32::try_from(signatures.len()).unwrap_or(u32::MAX);
                if charter.should_pull(source, &digest, claimed) {
                    return self.pull_proposal(source, &digest, version).await;
                }
            }
        }
        if applied && version > charter.head().version {
            return self
                .pull_charters(source, CharterHead { version, digest })
                .await;
        }
        Ok(())
    }

    /// Offers the version after ours, carried by an announcement of `source`, exactly as
    /// [`Self::pull_versions`] offers a pulled one (a refusal is recorded and named).
    async fn take_charter(&self, source: PeerId, next: SignedCharter) -> Result<(), NodeError> {
        let charter = self.charter()?;
        let head = CharterHead {
            version: next.document.version,
            digest: next.document.digest().unwrap_or_default(),
        };
        if charter.was_refused(source, &head) {
            return Ok(());
        }
        self.offer_served(source, &next, head).await.map(|_| ())
    }

    /// Offers `served`, a version `peer` pulled or carried for us, judged by its size and then
    /// the rules; a refusal is noted against `peer`'s `claimed` head (so it is not asked for
    /// it again), recorded and named.
    async fn offer_served(
        &self,
        peer: PeerId,
        served: &SignedCharter,
        claimed: CharterHead,
    ) -> Result<Offered, NodeError> {
        let offered = match within_size(served) {
            Ok(()) => self.offer_across_fork(peer, served).await,
            Err(e) => Err(e.into()),
        };
        match offered {
            Ok(o) => Ok(o),
            Err(e) => {
                if let ApplyError::Refused(_) = e {
                    self.charter()?.note_refused(peer, claimed);
                }
                Err(self.charter_refused(peer, served, e).await)
            }
        }
    }

    /// Anti-entropy of the charter with `peer`, after its heads: newer versions, then proposals
    /// we lack or hold with fewer signatures (a few per round).
    pub(crate) async fn sync_charter(
        &self,
        peer: PeerId,
        head: Option<CharterHead>,
    ) -> Result<(), NodeError> {
        let Some(charter) = &self.inner.charter else {
            return Ok(());
        };
        let Some(head) = head else {
            return Ok(());
        };
        if head.version > charter.head().version {
            return self.pull_charters(peer, head).await;
        }
        if head.version != charter.head().version {
            return Ok(());
        }
        let proposals = match self.sync_request(peer, Request::CharterProposals).await? {
            Response::CharterProposals { proposals } => proposals,
            other => return Err(not_served(peer, other)),
        };
        let next = head.version.saturating_add(1);
        let wanted: Vec<String> = proposals
            .into_iter()
            .take(MAX_PROPOSALS)
            .filter(|p| p.version == next && charter.should_pull(peer, &p.digest, p.signatures))
            .map(|p| p.digest)
            .take(MAX_PROPOSAL_PULLS_PER_ROUND)
            .collect();
        for digest in wanted {
            self.pull_proposal(peer, &digest, next).await?;
        }
        Ok(())
    }

    /// Pulls versions current+1 ..= `claimed` from `peer`, one at a time and at most
    /// [`MAX_VERSIONS_PER_ROUND`], offering each to the chain; stops at the first refused.
    /// After an equivocation only the next version can be applied (the one that resolves it).
    ///
    /// Nothing is pulled from a peer whose claimed head is the one it served a refused version
    /// under (its claim must change before it is asked again: one refusal record per lie, not
    /// one per round). When both pull slots are taken the claim is remembered (the highest
    /// one) and followed as soon as a running pull ends.
    async fn pull_charters(&self, peer: PeerId, claimed: CharterHead) -> Result<(), NodeError> {
        let charter = self.charter()?;
        let (mut peer, mut claimed) = (peer, claimed);
        let mut outcome = None;
        loop {
            if charter.was_refused(peer, &claimed) {
                break;
            }
            let Some(slot) = charter.pull_slot(peer) else {
                // Followed when a running pull ends, not left to anti-entropy.
                charter.note_pending(peer, claimed);
                break;
            };
            let result = self.pull_versions(peer, claimed).await;
            drop(slot);
            match (&outcome, result) {
                (None, r) => outcome = Some(r),
                (Some(_), Err(e)) => {
                    tracing::warn!(peer = %peer, error = %e, "pending charter head not followed");
                }
                (Some(_), Ok(())) => {}
            }
            match charter.take_pending() {
                Some((p, c)) => (peer, claimed) = (p, c),
                None => break,
            }
        }
        outcome.unwrap_or(Ok(()))
    }

    /// Follows a charter head noted while no pull could run ([`FederationCharter::note_pending`]).
    pub(crate) async fn follow_pending_charter(&self) {
        let Some((peer, head)) = self.inner.charter.as_ref().and_then(|c| c.take_pending()) else {
            return;
        };
        if let Err(e) = self.pull_charters(peer, head).await {
            tracing::warn!(peer = %peer, error = %e, "pending charter head not followed");
        }
    }

    /// [`Self::pull_charters`] from one peer, its slot held.
    async fn pull_versions(&self, peer: PeerId, claimed: CharterHead) -> Result<(), NodeError> {
        let charter = self.charter()?;
        let from = charter.head().version.saturating_add(1);
        let to = claimed
            .version
            .min(from.saturating_add(MAX_VERSIONS_PER_ROUND - 1));
        for version in from..=to {
            if charter.head().version >= version {
                continue;
            }
            let served = match self
                .sync_request(peer, Request::Charter { version })
                .await?
            {
                Response::Charter { charter } => *charter,
                other => return Err(not_served(peer, other)),
            };
            if served.document.version != version {
                // Asked for one version, served another: judged by the rules all the same, so
                // a rollback or a skip is named as such.
                tracing::debug!(peer = %peer, version, served = served.document.version, "other version served");
            }
            if let Offered::Equivocation { .. } =
                self.offer_served(peer, &served, claimed.clone()).await?
            {
                break;
            }
        }
        Ok(())
    }

    /// Offers `served`, the version after ours, pulled from `peer`. If it follows another
    /// document of our version than the one we hold, `peer` is on the other side of a fork:
    /// its document of our version is pulled and offered too — validly signed, that is an
    /// equivocation (kept as evidence), which `served` may then resolve. So a node that
    /// applied the document the members dropped is not stranded on it.
    async fn offer_across_fork(
        &self,
        peer: PeerId,
        served: &SignedCharter,
    ) -> Result<Offered, ApplyError> {
        let first = self.offer_charter(Some(peer), served, Tell::Nothing).await;
        let ours = self.charter()?.head().version;
        let forked = matches!(
            &first,
            Err(ApplyError::Refused(CharterError::WrongPrevious { .. }))
        ) && served.document.version == ours.saturating_add(1);
        if !forked {
            return first;
        }
        let theirs = match self
            .sync_request(peer, Request::Charter { version: ours })
            .await
        {
            Ok(Response::Charter { charter }) => *charter,
            _ => return first,
        };
        if theirs.document.version != ours || within_size(&theirs).is_err() {
            return first;
        }
        match self.offer_charter(Some(peer), &theirs, Tell::Nothing).await {
            Ok(Offered::Equivocation { .. }) => {
                self.offer_charter(Some(peer), served, Tell::Nothing).await
            }
            _ => first,
        }
    }

    /// Pulls proposal `digest`, which `peer` listed or announced as one of version `claimed`.
    ///
    /// A version is often applied while its proposal is on the way (the signatures met
    /// somewhere, the version spread faster than the proposal): a proposal of the version
    /// claimed, which we applied meanwhile, is obsolete — dropped, not held against the peer;
    /// and so is the peer's "not found" for it (it applied the version and dropped the
    /// proposal). A proposal of another version than claimed is judged, and refused, as any.
    async fn pull_proposal(
        &self,
        peer: PeerId,
        digest: &str,
        claimed: u64,
    ) -> Result<(), NodeError> {
        let charter = self.charter()?;
        let request = Request::CharterProposal {
            digest: digest.to_string(),
        };
        let answer = self.sync_request(peer, request).await;
        if !matches!(answer, Ok(Response::CharterProposal { .. })) {
            charter.pull_failed(peer, digest);
        }
        let obsolete = || charter.head().version >= claimed;
        let served = match answer? {
            Response::CharterProposal { charter } => *charter,
            Response::Error {
                code: RefusalCode::NotFound,
                ..
            } if obsolete() => {
                tracing::debug!(peer = %peer, digest, "proposal gone: its version was applied");
                return Ok(());
            }
            other => return Err(not_served(peer, other)),
        };
        if served.document.version == claimed && obsolete() {
            tracing::debug!(peer = %peer, digest, "proposal of a version applied meanwhile");
            return Ok(());
        }
        self.offer_proposal(peer, served, Arrival::Pulled).await
    }

    /// Offers a proposal `peer` served or carried, judged by its size and then the rules; a
    /// refusal is recorded and named.
    async fn offer_proposal(
        &self,
        peer: PeerId,
        served: SignedCharter,
        arrival: Arrival,
    ) -> Result<(), NodeError> {
        let accepted = match within_size(&served) {
            Ok(()) => {
                self.accept_proposal(Some(peer), served.clone(), arrival)
                    .await
            }
            Err(e) => Err(e.into()),
        };
        match accepted {
            Ok(_) => Ok(()),
            Err(e) => Err(self.charter_refused(peer, &served, e).await),
        }
    }

    /// Records a charter or proposal `peer` served that was refused (within its budget),
    /// naming the rule broken, and returns the error.
    async fn charter_refused(
        &self,
        peer: PeerId,
        served: &SignedCharter,
        e: ApplyError,
    ) -> NodeError {
        if let ApplyError::Refused(_) = &e {
            let cause = format!(
                "charter version {} refused ({}): {e}",
                served.document.version,
                e.code()
            );
            tracing::warn!(peer = %peer, %cause, "charter refused");
            self.record_refusal(Some(peer), None, &cause).await;
            return NodeError::BadPeer {
                peer,
                reason: cause,
            };
        }
        e.into()
    }

    /// Offers a version (from `from`, or an operator) and does what follows an application or
    /// an equivocation.
    async fn offer_charter(
        &self,
        from: Option<PeerId>,
        offered: &SignedCharter,
        tell: Tell,
    ) -> Result<Offered, ApplyError> {
        let charter = self.charter()?;
        let store = self.inner.store.clone();
        let outcome = charter.offer(&store, offered)?;
        match &outcome {
            Offered::Applied {
                version,
                digest,
                resolved,
            } => {
                self.charter_applied(from, *version, digest, resolved.as_ref(), tell)
                    .await;
            }
            Offered::Equivocation {
                version,
                held,
                offered,
                first,
            } => {
                tracing::error!(
                    version,
                    held = %held,
                    offered = %offered,
                    "CHARTER EQUIVOCATION: two validly signed documents of one version; no new \
                     grants and no further version until it is resolved"
                );
                if *first {
                    let mut r = self.new_record(RecordKind::CharterEquivocation);
                    r.version = Some(*version);
                    r.cause = Some(format!(
                        "charter version {version}: document {held} held, document {offered} \
                         also validly signed (equivocation)"
                    ));
                    self.record(r, from, Vec::new()).await;
                }
            }
            Offered::Held { .. } => {}
        }
        Ok(outcome)
    }

    /// A version was applied: the gate admits exactly its keys (removed ones are disconnected
    /// at once), the step is recorded, the version told to the others as `tell` says.
    async fn charter_applied(
        &self,
        from: Option<PeerId>,
        version: u64,
        digest: &str,
        resolved: Option<&Resolution>,
        tell: Tell,
    ) {
        let charter = match self.charter() {
            Ok(c) => c,
            Err(_) => return,
        };
        let own = self.peer_id();
        self.inner.members.replace(charter.member_peers(&own));
        if let Err(e) = self.inner.net.disconnect_non_members().await {
            tracing::warn!(error = %e, "removed members not disconnected");
        }
        self.check_key_switch();
        if charter.region_of(&own).is_none() && !self.restart_requested().is_cancelled() {
            tracing::error!(
                version,
                "this node's key is not a member of the charter now in force"
            );
        }
        tracing::info!(version, digest, "federation charter version applied");
        let mut r = self.new_record(RecordKind::CharterApplied);
        r.version = Some(version);
        r.cause = Some(match resolved {
            None => format!("charter version {version} applied: {digest}"),
            Some(res) => {
                tracing::warn!(
                    version,
                    at = res.at,
                    kept = %res.kept,
                    dropped = %res.dropped,
                    "charter equivocation resolved"
                );
                format!(
                    "charter version {version} applied: {digest}; it resolves the equivocation \
                     at version {}, keeping document {} (document {} dropped, kept as evidence)",
                    res.at, res.kept, res.dropped
                )
            }
        });
        self.record(r, from, Vec::new()).await;
        // Told by the node that made it (an operator's apply, or the proposal that met its
        // threshold here from an operator's signature or a pull), which every member hears: a
        // version pulled from a peer, or made from a proposal the gossip carried to every
        // member alike, is not told again, or each change would cost N² deliveries. Heads
        // carry it to anyone who missed it.
        match tell {
            Tell::Nothing => {}
            Tell::Document => {
                self.announce(Announcement::Charter {
                    version,
                    digest: digest.to_string(),
                    charter: charter.signed(version).map(Box::new),
                })
                .await;
            }
            Tell::Signatures => {
                if let Some(signed) = charter.signed(version) {
                    self.announce_signatures(version, digest, signed.signatures, true)
                        .await;
                }
            }
        }
    }

    /// Announces the signatures over proposal `digest` alone, `applied` when they complete it.
    async fn announce_signatures(
        &self,
        version: u64,
        digest: &str,
        signatures: Vec<CharterSignature>,
        applied: bool,
    ) {
        self.announce(Announcement::CharterSignatures {
            version,
            digest: digest.to_string(),
            signatures,
            applied,
        })
        .await;
    }

    /// Takes a proposal (from `from`, or an operator): stored or merged, then
    /// [`Self::proposal_changed`].
    async fn accept_proposal(
        &self,
        from: Option<PeerId>,
        proposal: SignedCharter,
        arrival: Arrival,
    ) -> Result<String, ApplyError> {
        let charter = self.charter()?;
        let store = self.inner.store.clone();
        let version = proposal.document.version;
        let (digest, taken) = charter.propose(&store, from, proposal)?;
        tracing::debug!(digest, ?taken, ?arrival, "charter proposal taken");
        self.proposal_changed(version, &digest, taken, arrival)
            .await?;
        Ok(digest)
    }

    /// Proposal `digest` changed here as `taken` says: applied when its signatures now pass
    /// the rules, and told to the others — not when the gossip carried the change, which
    /// reached every member alike (telling it again, or the version made from it, would cost
    /// N² deliveries); with its document when it is new here; as its signatures alone when
    /// they were merged into a copy held (the others hold its document, announced with it:
    /// a hundred members' document is tens of KiB, its signatures a few hundred bytes).
    async fn proposal_changed(
        &self,
        version: u64,
        digest: &str,
        taken: Taken,
        arrival: Arrival,
    ) -> Result<(), ApplyError> {
        let tell = match (taken, arrival) {
            (Taken::Nothing, _) => return Ok(()),
            (_, Arrival::Carried) => Tell::Nothing,
            (Taken::New, _) => Tell::Document,
            (Taken::Signatures, _) => Tell::Signatures,
        };
        let charter = self.charter()?;
        if let Some(ready) = charter.ready_proposal() {
            // Another proposal than this one may be the ready one: its document is sent.
            let same = ready.document.digest().is_ok_and(|d| d == digest);
            let tell = if tell == Tell::Signatures && !same {
                Tell::Document
            } else {
                tell
            };
            self.offer_charter(None, &ready, tell).await?;
            return Ok(());
        }
        let Some(held) = charter.proposal(digest) else {
            return Ok(());
        };
        match tell {
            Tell::Nothing => {}
            Tell::Document => {
                self.announce(Announcement::CharterProposal {
                    version,
                    digest: digest.to_string(),
                    signatures: signature_count(&held),
                    charter: Some(Box::new(held)),
                })
                .await;
            }
            Tell::Signatures => {
                self.announce_signatures(version, digest, held.signatures, false)
                    .await;
            }
        }
        Ok(())
    }

    fn proposal_view(&self, digest: &str) -> Result<ProposalView, NodeError> {
        let charter = self.charter()?;
        if let Some(v) = charter
            .proposal_views()
            .into_iter()
            .find(|v| v.digest == digest)
        {
            return Ok(v);
        }
        // No longer pending: it was applied.
        let current = charter.current();
        if current.digest == digest {
            return Ok(ProposalView {
                digest: digest.to_string(),
                version: current.version(),
                issued: current.document().issued.clone(),
                expires: current.document().expires.clone(),
                members: current.document().members.len(),
                signers: current.charter.valid_signers(),
                ready: true,
                lacking: None,
                introduced_by: None,
            });
        }
        Err(NodeError::NotFound(format!("no proposal {digest} held")))
    }

    // ------------------------------------------------------------------ operators (API, CLI)

    /// The federation: the charter in force, its policy and members.
    pub fn federation(&self) -> Result<FederationView, NodeError> {
        Ok(self.charter()?.federation())
    }

    /// Every applied version, genesis first.
    pub fn federation_history(&self) -> Result<Vec<CharterVersionView>, NodeError> {
        Ok(self.charter()?.history())
    }

    /// One applied version, with every signature held.
    pub fn federation_version(&self, version: u64) -> Result<SignedCharter, NodeError> {
        self.charter()?
            .signed(version)
            .ok_or_else(|| NodeError::NotFound(format!("charter version {version} not applied")))
    }

    /// One proposal of the next version held, with the signatures it has.
    pub fn federation_proposal(&self, digest: &str) -> Result<SignedCharter, NodeError> {
        self.charter()?
            .proposal(digest)
            .ok_or_else(|| NodeError::NotFound(format!("charter proposal {digest}")))
    }

    /// The proposals of the next version held.
    pub fn federation_proposals(&self) -> Result<Vec<ProposalView>, NodeError> {
        Ok(self.charter()?.proposal_views())
    }

    /// Parses a charter an operator sent (bounded, strict).
    pub fn parse_charter(text: &str) -> Result<SignedCharter, NodeError> {
        if text.len() > MAX_CHARTER_BYTES {
            return Err(NodeError::invalid(
                "charter",
                format!("over {MAX_CHARTER_BYTES} bytes"),
            ));
        }
        SignedCharter::from_json(text)
            .map_err(|e| NodeError::invalid("charter", format!("{e} ({})", e.code())))
    }

    /// An operator submits a proposal (a draft or a signed copy): stored or merged, gossiped,
    /// applied when its signatures suffice.
    pub async fn submit_proposal(
        &self,
        proposal: SignedCharter,
    ) -> Result<ProposalView, NodeError> {
        let digest = self
            .accept_proposal(None, proposal, Arrival::Operator)
            .await?;
        self.proposal_view(&digest)
    }

    /// This node signs a proposal held with its own key, if that key is a member of the signing
    /// role of the proposal or of the version in force; then as [`Self::submit_proposal`].
    pub async fn sign_proposal(&self, digest: &str) -> Result<ProposalView, NodeError> {
        let charter = self.charter()?;
        let mut proposal = charter
            .proposal(digest)
            .ok_or_else(|| NodeError::NotFound(format!("no proposal {digest} held")))?;
        let own = self.inner.key.public_hex();
        let current = charter.current();
        let signs = |doc: &crate::model::charter::Charter| {
            doc.member_of_key(&own)
                .is_some_and(|m| m.role == doc.policy.signers)
        };
        if !signs(&proposal.document) && !signs(current.document()) {
            return Err(NodeError::Conflict(format!(
                "this node's key is not a {} of the proposal nor of version {} in force: it \
                 cannot sign",
                proposal.document.policy.signers,
                current.version()
            )));
        }
        proposal
            .sign(self.inner.key.signing_key())
            .map_err(|e| NodeError::invalid("charter", e.to_string()))?;
        self.submit_proposal(proposal).await
    }

    /// An operator applies a fully signed next version.
    pub async fn apply_charter(
        &self,
        next: SignedCharter,
    ) -> Result<CharterVersionView, NodeError> {
        let version = next.document.version;
        match self.offer_charter(None, &next, Tell::Document).await? {
            Offered::Equivocation { .. } => Err(NodeError::Conflict(format!(
                "charter version {version}: another validly signed document of this version is \
                 in force (equivocation): kept as evidence, no new grants until it is resolved"
            ))),
            Offered::Applied { .. } | Offered::Held { .. } => self
                .federation_history()?
                .into_iter()
                .find(|v| v.version == version)
                .ok_or_else(|| NodeError::NotFound(format!("charter version {version}"))),
        }
    }

    /// The charter for metrics: version, expiry (unix seconds), proposals held, equivocated.
    pub fn charter_metrics(&self) -> Option<(u64, i64, usize, bool)> {
        let charter = self.inner.charter.as_ref()?;
        let current = charter.current();
        let expires = current
            .document()
            .expires_at()
            .map_or(0, |t| t.unix_timestamp());
        Some((
            current.version(),
            expires,
            charter.proposal_count(),
            charter.equivocated(),
        ))
    }
}

#[cfg(test)]
mod tests;
