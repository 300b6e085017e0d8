//! Conditional access (R5, R7): the requester's signed AccessRequest, the provider's pending
//! queue, its signed Grant or Denial (by an operator or an auto-approval rule), revocation, and
//! the check every fetch under a grant passes. Also resolves `REGION_OR_PEER/DATASET` targets.

use schemars::JsonSchema;
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

mod rules;

use super::provenance::doc;
use super::{Node, NodeError, unexpected};
use crate::clock::now_rfc3339;
use crate::config::AutoDecision;
use crate::model::catalogue::{CatalogueEntry, ShareType};
use crate::model::exchange::{AccessRequest, Denial, Grant, Revocation};
use crate::model::masking::{self, FieldMask, Projection};
use crate::model::message::{Request, RequestStatus, Response};
use crate::model::provenance::RecordKind;
use crate::model::query::{AccessMode, QueryLimits};
use crate::model::refusal::RefusalCode;
use crate::model::region::{self, Region};
use crate::model::signed::Signed;
use crate::model::standard;
use crate::store::{RecordTree, RecordWrite, issued_grant_key, received_grant_key};
pub use rules::Refusal;
use rules::check_text;

/// Longest purpose, legal basis or reason accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Most fields a request may name.
pub const MAX_FIELDS: usize = 256;

/// Which side of an exchange a record is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received from the counterparty (an inbound request; a grant issued to us).
    In,
    /// Sent to the counterparty (our request; a grant we issued).
    Out,
}

/// An access request as this node keeps it, on either side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestRecord {
    /// The request id.
    pub id: String,
    /// `in`: we are the provider; `out`: we asked.
    pub direction: Direction,
    /// The counterparty's peer id.
    pub peer: String,
    /// The signed request.
    pub request: Signed<AccessRequest>,
    /// Where it stands.
    pub status: RequestStatus,
    /// The grant, once approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Signed<Grant>>,
    /// The denial, once refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<Signed<Denial>>,
    /// When this node recorded it (RFC 3339).
    pub recorded_at: String,
    /// When it was decided (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// Provider side: whether the decision has reached the requester.
    #[serde(default)]
    pub answer_delivered: bool,
}

/// A grant as this node keeps it: issued by us (`out`) or to us (`in`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GrantRecord {
    /// The grant id.
    pub id: String,
    /// `out`: we issued it; `in`: it was issued to us.
    pub direction: Direction,
    /// The signed grant.
    pub grant: Signed<Grant>,
    /// Its revocation, if withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Signed<Revocation>>,
    /// Issuer side: whether the revocation has reached the grantee.
    #[serde(default)]
    pub revocation_delivered: bool,
}

/// A grant's state at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GrantState {
    /// Usable now.
    Valid,
    /// Before `not_before`.
    NotYetValid,
    /// After `expires_at`.
    Expired,
    /// Withdrawn.
    Revoked,
}

impl GrantRecord {
    /// The state now.
    pub fn state(&self) -> GrantState {
        rules::grant_state(
            &self.grant.document,
            self.revocation.is_some(),
            OffsetDateTime::now_utc(),
        )
    }
}

/// What an operator (or a rule) approves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// Fields granted; absent: the fields requested, or all if none were named.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Masks of granted fields.
    #[serde(default)]
    pub masks: Vec<FieldMask>,
    /// Validity from now, in seconds; absent: `exchange.default_grant_days`.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
    /// What the grantee may do (empty: fetch only).
    #[serde(default)]
    pub modes: Vec<AccessMode>,
    /// Limits on its query calls (absent: unlimited).
    #[serde(default)]
    pub query_limits: Option<QueryLimits>,
}

/// A dataset target resolved against the catalogues we hold.
#[derive(Debug, Clone)]
pub struct Target {
    /// The publisher.
    pub peer: PeerId,
    /// Its region.
    pub region: Region,
    /// The offer (shared with the held catalogues' resolved offers).
    pub offer: Arc<CatalogueEntry>,
}

fn random_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| now_rfc3339())
}

/// The peer that sent inbound request `record`.
fn requester(record: &RequestRecord) -> Result<PeerId, NodeError> {
    record
        .peer
        .parse()
        .map_err(|_| NodeError::invalid("peer", format!("request {} names no peer", record.id)))
}

/// A grant's fields and masking in words, e.g. `fields uscc, id_number (keep first 6 last 4)`.
pub(crate) fn grant_fields(g: &Grant) -> Option<String> {
    let names: Vec<String> = g.fields.clone();
    Projection::new(g.fields.clone(), g.masks.clone(), &names)
        .ok()
        .map(|p| p.describe())
}

/// Parses a region given by code (`320000`) or name (`Jiangsu`, `江苏省`), ignoring case.
pub fn parse_region(s: &str) -> Option<Region> {
    if let Ok(r) = s.parse::<Region>() {
        return Some(r);
    }
    let lower = s.trim().to_lowercase();
    region::all()
        .find(|r| r.name_en.to_lowercase() == lower || r.name_zh == s.trim())
        .and_then(|r| Region::from_code(r.code).ok())
}

impl Node {
    /// Resolves `REGION_OR_PEER/DATASET` (region code or name, or a full peer id) to the member
    /// whose catalogue offers `DATASET`.
    pub fn resolve_target(&self, target: &str) -> Result<Target, NodeError> {
        let (who, dataset) = target.split_once('/').ok_or_else(|| {
            NodeError::invalid(
                "target",
                format!(
                    "{target:?}: expected REGION_OR_PEER/DATASET, e.g. 320000/enterprise-licence"
                ),
            )
        })?;
        if dataset.is_empty() || dataset.contains('/') {
            return Err(NodeError::invalid(
                "target",
                format!(
                    "{target:?}: the dataset identifier after the first '/' is empty or has a '/'"
                ),
            ));
        }
        let peer = who.parse::<PeerId>().ok();
        let region = if peer.is_none() {
            Some(parse_region(who).ok_or_else(|| {
                NodeError::invalid("target", format!(
                    "{who:?} is neither a peer id nor a Delta region code or name (`yrd regions`)"
                ))
            })?)
        } else {
            None
        };
        let mut found = Vec::new();
        for held in self.inner.catalogues.offers_named(dataset).iter() {
            let (publisher, held_region) = (held.publisher, held.region);
            if self.is_own_key(&publisher) {
                continue;
            }
            let matches = match (peer, region) {
                (Some(p), _) => p == publisher,
                // The charter's region of the publisher when there is one (a catalogue that
                // contradicts it is refused on arrival, so the two agree).
                (None, Some(r)) => self.peer_region(&publisher).unwrap_or(held_region) == r,
                _ => false,
            };
            if matches {
                found.push(Target {
                    peer: publisher,
                    region: held_region,
                    offer: held.offer.clone(),
                });
            }
        }
        // The same order as the catalogues are listed in (by region, then publisher), so that
        // an ambiguous target names its candidates alike every time.
        found.sort_by(|a, b| {
            a.region
                .cmp(&b.region)
                .then(a.peer.to_string().cmp(&b.peer.to_string()))
        });
        // A member rotating its key offers under both while both are in force: its newer key's
        // catalogue is the one it publishes from (docs/federation.md, "Rotating a node's key").
        if let Some(charter) = &self.inner.charter {
            let superseded: Vec<PeerId> = found
                .iter()
                .filter(|old| found.iter().any(|t| charter.supersedes(&t.peer, &old.peer)))
                .map(|t| t.peer)
                .collect();
            found.retain(|t| !superseded.contains(&t.peer));
        }
        match found.len() {
            0 => Err(NodeError::NotFound(format!(
                "no catalogue we hold from {who} offers {dataset:?} (search with `yrd catalog search`)"
            ))),
            1 => Ok(found.remove(0)),
            n => {
                // A member running several nodes (keys that replace none of the others).
                let one_member = self.inner.charter.as_ref().is_some_and(|c| {
                    found[1..]
                        .iter()
                        .all(|t| c.same_member(&found[0].peer.to_string(), &t.peer))
                });
                let offering = if one_member {
                    format!("{n} nodes of one member ({who})")
                } else {
                    format!("{n} members of {who}")
                };
                let peers: Vec<String> = found.iter().map(|t| t.peer.to_string()).collect();
                Err(NodeError::invalid(
                    "target",
                    format!(
                        "{offering} offer {dataset:?}; name one by peer id: {}",
                        peers.join(", ")
                    ),
                ))
            }
        }
    }

    /// The field names of one of our offers' standards.
    fn offer_fields(&self, offer: &CatalogueEntry) -> Result<Vec<String>, NodeError> {
        let r = &offer.conforms_to;
        let doc = self.schema_doc(&r.id, Some(&r.version))?;
        let compiled = standard::compile(&doc.document.schema)
            .map_err(|e| NodeError::invalid("standard", e.to_string()))?;
        Ok(compiled.fields().iter().map(|f| f.name.clone()).collect())
    }

    /// Our offer `dataset`, or why it cannot be delivered: withheld (with the reason and legal
    /// basis), not shared, or not offered.
    /// Shared with the decoded list, not copied: every query and fetch asks for it.
    pub(crate) fn deliverable_offer(&self, dataset: &str) -> Result<Arc<CatalogueEntry>, Refusal> {
        let internal = |e: NodeError| rules::refusal(RefusalCode::Internal, e.to_string());
        let lists = self.own_lists().map_err(internal)?;
        rules::deliverable(dataset, &lists.withheld, &lists.offers).cloned()
    }

    /// Every request we sent or received, newest first.
    pub fn requests(&self) -> Result<Vec<RequestRecord>, NodeError> {
        let mut list: Vec<RequestRecord> = self
            .store()
            .records::<RequestRecord>(RecordTree::Requests)?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        list.sort_by(|a, b| b.recorded_at.cmp(&a.recorded_at).then(a.id.cmp(&b.id)));
        Ok(list)
    }

    /// One request.
    pub fn request_record(&self, id: &str) -> Result<RequestRecord, NodeError> {
        self.store()
            .record(RecordTree::Requests, id)?
            .ok_or_else(|| NodeError::NotFound(format!("no access request {id}")))
    }

    /// Every grant we issued or hold, newest first.
    pub fn grants(&self) -> Result<Vec<GrantRecord>, NodeError> {
        Ok(self
            .grants_shared()?
            .all
            .iter()
            .map(|g| GrantRecord::clone(g))
            .collect())
    }

    /// [`Self::grants`] read from the store (kept decoded by [`Self::grants_shared`]).
    pub(crate) fn read_grants(&self) -> Result<Vec<GrantRecord>, NodeError> {
        let mut list: Vec<GrantRecord> = self
            .store()
            .records::<GrantRecord>(RecordTree::Grants)?
            .into_iter()
            .map(|(_, g)| g)
            .collect();
        list.sort_by(|a, b| {
            b.grant
                .document
                .issued_at
                .cmp(&a.grant.document.issued_at)
                .then(a.id.cmp(&b.id))
        });
        Ok(list)
    }

    /// One grant, by id: the one we issued if there is one, else one issued to us (the first by
    /// provider if several providers chose the same id).
    pub fn grant_record(&self, id: &str) -> Result<GrantRecord, NodeError> {
        if let Some(issued) = self
            .store()
            .record(RecordTree::Grants, &issued_grant_key(id))?
        {
            return Ok(issued);
        }
        self.grants_shared()?
            .all
            .iter()
            .find(|g| g.direction == Direction::In && g.id == id)
            .map(|g| GrantRecord::clone(g))
            .ok_or_else(|| NodeError::NotFound(format!("no grant {id}")))
    }

    /// A grant we issued.
    pub fn issued_grant(&self, id: &str) -> Result<GrantRecord, NodeError> {
        self.store()
            .record(RecordTree::Grants, &issued_grant_key(id))?
            .ok_or_else(|| NodeError::NotFound(format!("no grant {id} issued here")))
    }

    /// A grant `provider` issued to us.
    pub fn received_grant(&self, provider: &PeerId, id: &str) -> Result<GrantRecord, NodeError> {
        if let Some(g) = self.store().record(
            RecordTree::Grants,
            &received_grant_key(&provider.to_string(), id),
        )? {
            return Ok(g);
        }
        // Issued by an earlier key of the provider's member (it rotated its key since).
        self.grants_shared()?
            .all
            .iter()
            .find(|g| {
                g.direction == Direction::In
                    && g.id == id
                    && self.same_party(&g.grant.document.provider, provider)
            })
            .map(|g| GrantRecord::clone(g))
            .ok_or_else(|| NodeError::NotFound(format!("no grant {id} from {provider}")))
    }

    /// A valid grant issued to us by `provider` for `dataset`, the latest issued first.
    pub fn usable_grant(&self, provider: &PeerId, dataset: &str) -> Option<Arc<GrantRecord>> {
        self.usable_grant_for(provider, dataset, AccessMode::Fetch)
    }

    /// A valid grant issued to us by `provider` for `dataset` that allows `mode`, the latest
    /// issued first.
    pub fn usable_grant_for(
        &self,
        provider: &PeerId,
        dataset: &str,
        mode: AccessMode,
    ) -> Option<Arc<GrantRecord>> {
        self.grants_shared()
            .ok()?
            .all
            .iter()
            .find(|g| {
                g.direction == Direction::In
                    && self.same_party(&g.grant.document.provider, provider)
                    && g.grant.document.dataset == dataset
                    && g.state() == GrantState::Valid
                    && mode.allowed_by(&g.grant.document.modes)
            })
            .cloned()
    }

    /// Requester side: signs an AccessRequest for a conditional offer and sends it.
    pub async fn request_access(
        &self,
        target: &str,
        purpose: &str,
        legal_basis: &str,
        fields: Vec<String>,
    ) -> Result<RequestRecord, NodeError> {
        check_text("the purpose", purpose)?;
        check_text("the legal basis", legal_basis)?;
        if fields.len() > MAX_FIELDS {
            return Err(NodeError::invalid(
                "fields",
                format!("at most {MAX_FIELDS} fields"),
            ));
        }
        for f in &fields {
            if !masking::is_valid_field_name(f) {
                return Err(NodeError::invalid(
                    "fields",
                    format!("{f:?} is not a field name"),
                ));
            }
        }
        let t = self.resolve_target(target)?;
        match t.offer.offer.share_type {
            ShareType::Conditional => {}
            ShareType::Unconditional => {
                return Err(NodeError::invalid(
                    "target",
                    format!(
                        "{} is shared unconditionally: fetch it, no request needed",
                        t.offer.offer.identifier
                    ),
                ));
            }
            ShareType::NotShared => {
                return Err(NodeError::invalid(
                    "target",
                    format!(
                        "{} is not shared (不予共享): {}",
                        t.offer.offer.identifier,
                        t.offer
                            .offer
                            .share_conditions
                            .as_deref()
                            .unwrap_or("no reason given")
                    ),
                ));
            }
        }
        let known: Vec<&str> = t
            .offer
            .information_items
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        if !known.is_empty() {
            if let Some(f) = fields.iter().find(|f| !known.contains(&f.as_str())) {
                return Err(NodeError::invalid(
                    "fields",
                    format!(
                        "{f:?} is not a field of {} (fields: {})",
                        t.offer.offer.identifier,
                        known.join(", ")
                    ),
                ));
            }
        }
        let request = AccessRequest {
            id: random_id(),
            requester: self.peer_id_text().to_owned(),
            requester_region: self.region(),
            provider: t.peer.to_string(),
            dataset: t.offer.offer.identifier.clone(),
            purpose: purpose.trim().to_string(),
            legal_basis: legal_basis.trim().to_string(),
            fields,
            requested_at: now_rfc3339(),
            wanted_until: None,
        };
        let signed = Signed::sign(request, self.inner.key.signing_key())?;
        let mut record = RequestRecord {
            id: signed.document.id.clone(),
            direction: Direction::Out,
            peer: t.peer.to_string(),
            request: signed.clone(),
            status: RequestStatus::Pending,
            grant: None,
            denial: None,
            recorded_at: now_rfc3339(),
            decided_at: None,
            answer_delivered: false,
        };
        let response = self
            .inner
            .net
            .request(
                t.peer,
                Request::Access {
                    request: Box::new(signed),
                },
            )
            .await?;
        match response {
            Response::Access {
                status,
                grant,
                denial,
            } => {
                // Recorded before it is stored (and before any decision that came with the
                // answer): a crash in between leaves a record, never a request with none.
                self.record_request(RecordKind::RequestSent, t.peer, &record)
                    .await;
                self.store()
                    .put_record(RecordTree::Requests, &record.id, &record)?;
                if status != RequestStatus::Pending {
                    self.on_decision(t.peer, grant.map(|g| *g), denial.map(|d| *d))
                        .await?;
                    record = self.request_record(&record.id)?;
                }
                self.store().flush().await?;
                tracing::info!(
                    peer = %t.peer,
                    dataset = %record.request.document.dataset,
                    request = %record.id,
                    status = ?record.status,
                    "access request sent"
                );
                Ok(record)
            }
            Response::Error { code, message } => Err(NodeError::BadPeer {
                peer: t.peer,
                reason: format!("request refused ({code}): {message}"),
            }),
            other => Err(unexpected(t.peer, &other)),
        }
    }

    /// Provider side: a signed AccessRequest arrived from `peer`.
    pub(crate) async fn on_access_request(
        &self,
        peer: PeerId,
        signed: Signed<AccessRequest>,
    ) -> Response {
        match self.take_access_request(peer, signed).await {
            Ok(record) => Response::Access {
                status: record.status,
                grant: record.grant.map(Box::new),
                denial: record.denial.map(Box::new),
            },
            Err((code, message)) => {
                tracing::warn!(peer = %peer, %code, %message, "access request refused");
                self.record_refusal(
                    Some(peer),
                    None,
                    &format!("access request refused ({code}): {message}"),
                )
                .await;
                Response::Error { code, message }
            }
        }
    }

    async fn take_access_request(
        &self,
        peer: PeerId,
        signed: Signed<AccessRequest>,
    ) -> Result<RequestRecord, (RefusalCode, String)> {
        let as_pair = |f: Refusal| (f.code, f.message);
        let bad = |m: String| (RefusalCode::BadRequest, m);
        signed.verify().map_err(|e| bad(e.to_string()))?;
        let key = signed.signer_key().map_err(|e| bad(e.to_string()))?;
        let r = &signed.document;
        let signer = self
            .signer_peer(&key, &r.requester)
            .map_err(|e| bad(e.to_string()))?;
        let us = self.peer_id_text().to_owned();
        rules::check_request_form(r, signer, peer, &us).map_err(as_pair)?;
        let offer = self.deliverable_offer(&r.dataset).map_err(as_pair)?;
        // Rules match on the region the requester really is, not the one it claims.
        rules::check_request_offer(r, &offer, self.peer_region(&peer)).map_err(as_pair)?;
        let known = self
            .offer_fields(&offer)
            .map_err(|e| (RefusalCode::Internal, e.to_string()))?;
        rules::check_request_fields(r, &known).map_err(as_pair)?;
        let _guard = self.inner.write_lock.lock().await;
        let existing = self
            .store()
            .record::<RequestRecord>(RecordTree::Requests, &r.id)
            .map_err(|e| (RefusalCode::Internal, e.to_string()))?;
        if let Some(existing) = existing {
            if existing.request == signed {
                return Ok(existing);
            }
            return Err((
                RefusalCode::Conflict,
                format!("request id {} is taken", r.id),
            ));
        }
        let limit = self.config().exchange.max_pending_requests_per_peer;
        let pending = self
            .requests()
            .map_err(|e| (RefusalCode::Internal, e.to_string()))?
            .iter()
            .filter(|x| {
                x.direction == Direction::In
                    && x.peer == peer.to_string()
                    && x.status == RequestStatus::Pending
            })
            .count();
        rules::pending_within_limit(pending, limit).map_err(as_pair)?;
        let record = RequestRecord {
            id: r.id.clone(),
            direction: Direction::In,
            peer: peer.to_string(),
            request: signed.clone(),
            status: RequestStatus::Pending,
            grant: None,
            denial: None,
            recorded_at: now_rfc3339(),
            decided_at: None,
            answer_delivered: false,
        };
        // Recorded before it is stored: a crash in between leaves a record of a request the
        // requester saw fail, never a request held with no record.
        self.record_request(RecordKind::RequestReceived, peer, &record)
            .await;
        self.store()
            .put_record(RecordTree::Requests, &record.id, &record)
            .map_err(|e| (RefusalCode::Internal, e.to_string()))?;
        tracing::info!(
            peer = %peer,
            region = %r.requester_region.label(),
            dataset = %r.dataset,
            request = %r.id,
            "access request received"
        );
        let rule = self
            .config()
            .exchange
            .auto_approve
            .iter()
            .find(|rule| rule.matches(&r.dataset, r.requester_region, &r.purpose))
            .cloned();
        let record = match rule {
            None => record,
            Some(rule) => {
                let decided_by = format!("auto:{}", rule.name);
                let decided = match rule.decision {
                    AutoDecision::Approve => rules::rule_approval(&rule)
                        .and_then(|approval| self.decide_grant(&r.id, approval, &decided_by)),
                    AutoDecision::Deny => self
                        .decide_denial(&r.id, rule.reason.as_deref().unwrap_or("denied by rule")),
                };
                match decided {
                    Ok(mut decided) => {
                        // The answer travels in this response.
                        decided.answer_delivered = true;
                        self.keep_decision(peer, &decided)
                            .await
                            .map_err(|e| (RefusalCode::Internal, e.to_string()))?;
                        decided
                    }
                    Err(e) => {
                        tracing::warn!(request = %r.id, rule = %rule.name, error = %e, "auto rule could not decide; left pending");
                        record
                    }
                }
            }
        };
        self.store()
            .flush()
            .await
            .map_err(|e| (RefusalCode::Internal, e.to_string()))?;
        Ok(record)
    }

    /// Inbound request `id`, if it is still waiting for our decision.
    fn pending_inbound(&self, id: &str) -> Result<RequestRecord, NodeError> {
        let record = self.request_record(id)?;
        if record.direction != Direction::In {
            return Err(NodeError::invalid(
                "id",
                format!("request {id} is one we sent; only its provider can answer it"),
            ));
        }
        if record.status != RequestStatus::Pending {
            return Err(NodeError::Conflict(format!(
                "request {id} is already {:?}",
                record.status
            )));
        }
        Ok(record)
    }

    /// Signs a grant for pending inbound request `id`; returns the request in its new state,
    /// the grant in it, for [`Node::keep_decision`] (nothing is recorded or stored yet).
    fn decide_grant(
        &self,
        id: &str,
        approval: Approval,
        decided_by: &str,
    ) -> Result<RequestRecord, NodeError> {
        if let Some(why) = self.inner.charter.as_ref().and_then(|c| c.blocks_grants()) {
            return Err(NodeError::Conflict(why));
        }
        let mut record = self.pending_inbound(id)?;
        let r = &record.request.document;
        let offer = self
            .deliverable_offer(&r.dataset)
            .map_err(|f| NodeError::invalid("dataset", f.message))?;
        let known = self.offer_fields(&offer)?;
        let fields = approval.fields.unwrap_or_else(|| {
            if r.fields.is_empty() {
                known.clone()
            } else {
                r.fields.clone()
            }
        });
        // The grant names every mask that will apply: a personal field the approval leaves
        // unmasked takes its standard's default (docs/protocol.md, "Masking").
        let defaults = self.compiled_standard(&offer.conforms_to)?.default_masks();
        let projection = Projection::new(fields, approval.masks, &known)
            .map_err(|e| NodeError::invalid("masks", format!("cannot grant: {e}")))?
            .with_defaults(&defaults);
        let secs = approval
            .expires_in_secs
            .unwrap_or(self.config().exchange.default_grant_days * 86_400);
        if secs == 0 || secs > 3_650 * 86_400 {
            return Err(NodeError::invalid(
                "expires",
                "a grant's validity must be from 1 second to 3650 days".into(),
            ));
        }
        let modes = rules::check_modes(&approval.modes, &offer)?;
        let now = OffsetDateTime::now_utc();
        let expires = now + Duration::from_secs(secs);
        let grant = Grant {
            id: random_id(),
            request_id: r.id.clone(),
            request_digest: record.request.digest_hex()?,
            provider: self.peer_id_text().to_owned(),
            grantee: r.requester.clone(),
            dataset: r.dataset.clone(),
            purpose: r.purpose.clone(),
            legal_basis: r.legal_basis.clone(),
            fields: projection.fields().to_vec(),
            masks: projection.masks().to_vec(),
            not_before: rfc3339(now),
            expires_at: rfc3339(expires),
            issued_at: rfc3339(now),
            decided_by: decided_by.to_string(),
            modes,
            query_limits: approval
                .query_limits
                .filter(|l| *l != QueryLimits::default()),
        };
        let signed = Signed::sign(grant, self.inner.key.signing_key())?;
        if crate::failpoint::hit(&self.inner.data_dir, "grant.before_request_state") {
            return Err(NodeError::Net(crate::net::NetError::Stopped));
        }
        record.status = RequestStatus::Granted;
        record.grant = Some(signed.clone());
        record.decided_at = Some(now_rfc3339());
        tracing::info!(
            peer = %record.peer,
            dataset = %signed.document.dataset,
            grant = %signed.document.id,
            fields = %projection.describe(),
            decided_by,
            "grant issued"
        );
        Ok(record)
    }

    /// Records a decision (durably), then stores it: the grant, if any, and the request's new
    /// state in one write, so a crash between them cannot leave the request pending beside its
    /// grant (and a second grant possible). Recorded first: a crash after the record leaves a
    /// `grant-issued` (or `denial-issued`) record of a decision never stored nor sent — the
    /// request is still pending, and decided again it is recorded again — never a grant held
    /// and served with no record. The caller holds the write lock and flushes.
    async fn keep_decision(&self, peer: PeerId, record: &RequestRecord) -> Result<(), NodeError> {
        self.record_decision(peer, record).await;
        crate::failpoint::pause(&self.inner.data_dir, "grant.after_record").await;
        let mut writes = Vec::with_capacity(2);
        if let Some(signed) = &record.grant {
            writes.push(RecordWrite::new(
                RecordTree::Grants,
                &issued_grant_key(&signed.document.id),
                &GrantRecord {
                    id: signed.document.id.clone(),
                    direction: Direction::Out,
                    grant: signed.clone(),
                    revocation: None,
                    revocation_delivered: false,
                },
            )?);
        }
        writes.push(RecordWrite::new(RecordTree::Requests, &record.id, record)?);
        self.store().put_records(&writes)?;
        Ok(())
    }

    /// Signs a denial of pending inbound request `id`; returns the request in its new state, for
    /// [`Node::keep_decision`].
    fn decide_denial(&self, id: &str, reason: &str) -> Result<RequestRecord, NodeError> {
        check_text("the reason", reason)?;
        let mut record = self.pending_inbound(id)?;
        let r = &record.request.document;
        let denial = Denial {
            request_id: r.id.clone(),
            request_digest: record.request.digest_hex()?,
            provider: self.peer_id_text().to_owned(),
            requester: r.requester.clone(),
            dataset: r.dataset.clone(),
            reason: reason.trim().to_string(),
            issued_at: now_rfc3339(),
        };
        let signed = Signed::sign(denial, self.inner.key.signing_key())?;
        tracing::info!(peer = %record.peer, dataset = %r.dataset, request = %r.id, "access denied");
        record.status = RequestStatus::Denied;
        record.denial = Some(signed);
        record.decided_at = Some(now_rfc3339());
        Ok(record)
    }

    /// Operator: approves pending request `id` and sends the grant to the requester.
    pub async fn approve_request(
        &self,
        id: &str,
        approval: Approval,
    ) -> Result<Signed<Grant>, NodeError> {
        let grant = {
            let _guard = self.inner.write_lock.lock().await;
            let record = self.decide_grant(id, approval, "operator")?;
            self.keep_decision(requester(&record)?, &record).await?;
            self.store().flush().await?;
            record.grant
        };
        crate::failpoint::pause(&self.inner.data_dir, "grant.after_request_state").await;
        self.deliver_answer(id).await;
        grant.ok_or_else(|| NodeError::Conflict(format!("request {id} was not granted")))
    }

    /// Operator: denies pending request `id` and sends the denial to the requester.
    pub async fn deny_request(&self, id: &str, reason: &str) -> Result<Signed<Denial>, NodeError> {
        let denial = {
            let _guard = self.inner.write_lock.lock().await;
            let record = self.decide_denial(id, reason)?;
            self.keep_decision(requester(&record)?, &record).await?;
            self.store().flush().await?;
            record.denial
        };
        self.deliver_answer(id).await;
        denial.ok_or_else(|| NodeError::Conflict(format!("request {id} was not denied")))
    }

    /// Pushes the decision of inbound request `id` to its requester; remembers success, so a
    /// failed push is retried when the requester next connects.
    async fn deliver_answer(&self, id: &str) {
        let Ok(record) = self.request_record(id) else {
            return;
        };
        if record.answer_delivered || record.status == RequestStatus::Pending {
            return;
        }
        // A requester that rotated its key is reached at its member's key in force.
        let Some(peer) = self.party_peers(&record.peer).first().copied() else {
            return;
        };
        let request = Request::Decision {
            grant: record.grant.clone().map(Box::new),
            denial: record.denial.clone().map(Box::new),
        };
        match self.inner.net.request(peer, request).await {
            Ok(Response::Ack) => {
                let mut record = record;
                record.answer_delivered = true;
                let _ = self
                    .store()
                    .put_record(RecordTree::Requests, &record.id, &record);
            }
            Ok(other) => {
                tracing::warn!(peer = %peer, request = %id, answer = ?other, "requester did not take the decision")
            }
            Err(e) => {
                tracing::info!(peer = %peer, request = %id, error = %e, "decision not delivered yet; retried on reconnect")
            }
        }
    }

    /// Retries undelivered decisions and revocations for `peer` (called when it connects).
    pub(crate) async fn redeliver_to(&self, peer: PeerId) {
        self.resend_receipts(peer).await;
        if let Ok(requests) = self.requests() {
            for r in requests {
                if r.direction == Direction::In
                    && self.same_party(&r.peer, &peer)
                    && r.status != RequestStatus::Pending
                    && !r.answer_delivered
                {
                    self.deliver_answer(&r.id).await;
                }
            }
        }
        if let Ok(grants) = self.grants() {
            for g in grants {
                if g.direction == Direction::Out
                    && self.same_party(&g.grant.document.grantee, &peer)
                    && g.revocation.is_some()
                    && !g.revocation_delivered
                {
                    self.deliver_revocation(&g.id).await;
                }
            }
        }
    }

    /// Requester side: a decision arrived (pushed, or in the answer to our request).
    pub(crate) async fn on_decision(
        &self,
        peer: PeerId,
        grant: Option<Signed<Grant>>,
        denial: Option<Signed<Denial>>,
    ) -> Result<(), NodeError> {
        let (request_id, request_digest, provider, key, dataset) = match (&grant, &denial) {
            (Some(g), None) => {
                g.verify()?;
                let d = &g.document;
                if !self.is_us(&d.grantee) {
                    return Err(NodeError::invalid(
                        "grant",
                        "the grant names another grantee".into(),
                    ));
                }
                (
                    d.request_id.clone(),
                    d.request_digest.clone(),
                    d.provider.clone(),
                    g.signer_key()?,
                    d.dataset.clone(),
                )
            }
            (None, Some(n)) => {
                n.verify()?;
                let d = &n.document;
                if !self.is_us(&d.requester) {
                    return Err(NodeError::invalid(
                        "denial",
                        "the denial names another requester".into(),
                    ));
                }
                (
                    d.request_id.clone(),
                    d.request_digest.clone(),
                    d.provider.clone(),
                    n.signer_key()?,
                    d.dataset.clone(),
                )
            }
            _ => {
                return Err(NodeError::invalid(
                    "decision",
                    "a decision carries exactly one of grant or denial".into(),
                ));
            }
        };
        let signer = self.signer_peer(&key, &provider)?;
        if signer != peer {
            return Err(NodeError::invalid(
                "decision",
                format!("decision signed by {signer}, sent by {peer}"),
            ));
        }
        let _guard = self.inner.write_lock.lock().await;
        let mut record = self.request_record(&request_id)?;
        if record.direction != Direction::Out
            || record.peer != provider
            || record.request.document.dataset != dataset
            || record.request.digest_hex()? != request_digest
        {
            return Err(NodeError::invalid(
                "decision",
                format!("the decision does not answer our request {request_id}"),
            ));
        }
        if record.status != RequestStatus::Pending {
            // Already have it (the push raced the direct answer).
            return Ok(());
        }
        record.decided_at = Some(now_rfc3339());
        let mut writes = Vec::new();
        if let Some(g) = grant {
            rules::check_received_grant(&g.document)?;
            // Keyed by provider: the id is the provider's choice, and may be one we issued.
            let key = received_grant_key(&provider, &g.document.id);
            if let Some(held) = self
                .store()
                .record::<GrantRecord>(RecordTree::Grants, &key)?
            {
                if held.grant != g {
                    return Err(NodeError::invalid(
                        "grant",
                        format!(
                            "grant id {} already names another grant of {provider}",
                            g.document.id
                        ),
                    ));
                }
            }
            record.status = RequestStatus::Granted;
            record.grant = Some(g.clone());
            writes.push(RecordWrite::new(
                RecordTree::Grants,
                &key,
                &GrantRecord {
                    id: g.document.id.clone(),
                    direction: Direction::In,
                    grant: g.clone(),
                    revocation: None,
                    revocation_delivered: false,
                },
            )?);
            tracing::info!(peer = %peer, dataset = %dataset, grant = %g.document.id, "grant received");
        } else if let Some(d) = denial {
            rules::check_text("the denial's reason", &d.document.reason)?;
            tracing::info!(peer = %peer, dataset = %dataset, reason = %d.document.reason, "access denied by provider");
            record.status = RequestStatus::Denied;
            record.denial = Some(d);
        }
        writes.push(RecordWrite::new(RecordTree::Requests, &record.id, &record)?);
        // Recorded before the state is stored: a crash in between leaves the request pending,
        // and the decision pushed again is recorded again (a duplicate, never a gap).
        let kind = if record.status == RequestStatus::Granted {
            RecordKind::GrantReceived
        } else {
            RecordKind::DenialReceived
        };
        let mut r = self.new_record(kind);
        r.dataset = Some(dataset.clone());
        r.purpose = Some(record.request.document.purpose.clone());
        r.legal_basis = Some(record.request.document.legal_basis.clone());
        if let Some(g) = &record.grant {
            r.grant = Some(g.document.id.clone());
            r.fields = grant_fields(&g.document);
        }
        if let Some(d) = &record.denial {
            r.cause = Some(d.document.reason.clone());
        }
        let docs = [
            record.grant.as_ref().and_then(doc),
            record.denial.as_ref().and_then(doc),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.record(r, Some(peer), docs).await;
        self.store().put_records(&writes)?;
        self.store().flush().await?;
        drop(_guard);
        // A subscription waiting for this grant can start now.
        if record.status == RequestStatus::Granted {
            if let Ok(p) = provider.parse::<PeerId>() {
                self.kick_subscription(p, &dataset);
            }
        }
        Ok(())
    }

    /// Operator: withdraws grant `id` we issued and tells the grantee.
    pub async fn revoke_grant(&self, id: &str, reason: &str) -> Result<GrantRecord, NodeError> {
        check_text("the reason", reason)?;
        {
            let _guard = self.inner.write_lock.lock().await;
            let mut record = self.issued_grant(id).map_err(|e| {
                if self.grant_record(id).is_ok() {
                    NodeError::invalid(
                        "id",
                        format!("grant {id} was issued to us; only its provider can revoke it"),
                    )
                } else {
                    e
                }
            })?;
            if record.revocation.is_some() {
                return Err(NodeError::Conflict(format!(
                    "grant {id} is already revoked"
                )));
            }
            let revocation = Revocation {
                grant_id: id.to_string(),
                provider: self.peer_id_text().to_owned(),
                grantee: record.grant.document.grantee.clone(),
                reason: reason.trim().to_string(),
                revoked_at: now_rfc3339(),
            };
            record.revocation = Some(Signed::sign(revocation, self.inner.key.signing_key())?);
            // Recorded before the state is stored: a crash in between leaves a record of a
            // revocation signed but not in effect (not acknowledged; the operator revokes
            // again), never a revocation in effect that the log does not show.
            let mut r = self.new_record(RecordKind::GrantRevoked);
            r.dataset = Some(record.grant.document.dataset.clone());
            r.grant = Some(id.to_string());
            r.cause = Some(reason.trim().to_string());
            let peer = record.grant.document.grantee.parse::<PeerId>().ok();
            let docs = record
                .revocation
                .as_ref()
                .and_then(doc)
                .into_iter()
                .collect();
            self.record(r, peer, docs).await;
            self.store()
                .put_record(RecordTree::Grants, &issued_grant_key(id), &record)?;
            self.store().flush().await?;
            tracing::info!(grant = %id, grantee = %record.grant.document.grantee, "grant revoked");
        }
        self.deliver_revocation(id).await;
        self.issued_grant(id)
    }

    async fn deliver_revocation(&self, id: &str) {
        let Ok(mut record) = self.issued_grant(id) else {
            return;
        };
        // A grantee that rotated its key is reached at its member's key in force.
        let (Some(revocation), Some(peer)) = (
            record.revocation.clone(),
            self.party_peers(&record.grant.document.grantee)
                .first()
                .copied(),
        ) else {
            return;
        };
        let request = Request::Revoke {
            revocation: Box::new(revocation),
        };
        match self.inner.net.request(peer, request).await {
            Ok(Response::Ack) => {
                record.revocation_delivered = true;
                let _ = self
                    .store()
                    .put_record(RecordTree::Grants, &issued_grant_key(id), &record);
            }
            Ok(other) => {
                tracing::warn!(peer = %peer, grant = %id, answer = ?other, "grantee did not take the revocation")
            }
            Err(e) => {
                tracing::info!(peer = %peer, grant = %id, error = %e, "revocation not delivered yet; retried on reconnect")
            }
        }
    }

    /// Grantee side: the provider revoked a grant.
    pub(crate) async fn on_revocation(
        &self,
        peer: PeerId,
        revocation: Signed<Revocation>,
    ) -> Result<(), NodeError> {
        revocation.verify()?;
        let r = &revocation.document;
        let signer = self.signer_peer(&revocation.signer_key()?, &r.provider)?;
        if signer != peer {
            return Err(NodeError::invalid(
                "revocation",
                format!("revocation signed by {signer}, sent by {peer}"),
            ));
        }
        let _guard = self.inner.write_lock.lock().await;
        let mut record = self.received_grant(&peer, &r.grant_id)?;
        if record.direction != Direction::In
            || record.grant.document.provider != r.provider
            || !self.is_us(&r.grantee)
        {
            return Err(NodeError::invalid(
                "revocation",
                format!(
                    "grant {} was not issued to us by {}",
                    r.grant_id, r.provider
                ),
            ));
        }
        if record.revocation.is_none() {
            record.revocation = Some(revocation.clone());
            rules::check_text("the revocation's reason", &r.reason)?;
            // Recorded first: a crash before the state is stored leaves it unrevoked here, and
            // the provider's resend records it again, never a revocation held but not recorded.
            let mut rec = self.new_record(RecordKind::RevocationReceived);
            rec.dataset = Some(record.grant.document.dataset.clone());
            rec.grant = Some(r.grant_id.clone());
            rec.cause = Some(r.reason.clone());
            self.record(rec, Some(peer), doc(&revocation).into_iter().collect())
                .await;
            self.store().put_record(
                RecordTree::Grants,
                &received_grant_key(&r.provider, &r.grant_id),
                &record,
            )?;
            self.store().flush().await?;
            tracing::info!(peer = %peer, grant = %r.grant_id, reason = %r.reason, "grant revoked by provider");
        }
        Ok(())
    }

    /// Provider side, on every fetch of a conditional offer: the grant must be ours, issued to
    /// `peer`, for `dataset`, within its validity, and not revoked.
    pub(crate) fn check_grant(
        &self,
        peer: &PeerId,
        dataset: &str,
        grant_id: Option<&str>,
    ) -> Result<Signed<Grant>, Refusal> {
        self.check_grant_for(peer, dataset, grant_id, AccessMode::Fetch)
            .map(|r| r.grant.clone())
    }

    /// [`Self::check_grant`] for a use of the grant: it must also allow `mode` (a grant naming
    /// no modes allows fetching only).
    pub(crate) fn check_grant_for(
        &self,
        peer: &PeerId,
        dataset: &str,
        grant_id: Option<&str>,
        mode: AccessMode,
    ) -> Result<Arc<GrantRecord>, Refusal> {
        // The decoded grants, not a read of the store: a provider checks a grant on every
        // query call, and every write to the grants (a revocation too) is seen at once.
        let record: Option<Arc<GrantRecord>> = match grant_id {
            None => None,
            Some(id) => self
                .grants_shared()
                .map_err(|e| rules::refusal(RefusalCode::Internal, e.to_string()))?
                .issued(id)
                .cloned(),
        };
        let record = rules::grant_for_fetch(
            record,
            grant_id,
            |grantee| self.same_party(grantee, peer),
            dataset,
            OffsetDateTime::now_utc(),
        )?;
        let grant = &record.grant;
        if !mode.allowed_by(&grant.document.modes) {
            let allowed: Vec<&str> = if grant.document.modes.is_empty() {
                vec!["fetch"]
            } else {
                grant.document.modes.iter().map(|m| m.as_str()).collect()
            };
            return Err(rules::refusal(
                RefusalCode::ModeNotGranted,
                format!(
                    "grant {} allows {} only, not {mode}",
                    grant.document.id,
                    allowed.join(", ")
                ),
            ));
        }
        Ok(record)
    }

    async fn record_request(&self, kind: RecordKind, peer: PeerId, record: &RequestRecord) {
        let q = &record.request.document;
        let mut r = self.new_record(kind);
        r.dataset = Some(q.dataset.clone());
        r.purpose = Some(q.purpose.clone());
        r.legal_basis = Some(q.legal_basis.clone());
        if !q.fields.is_empty() {
            r.fields = Some(format!("fields requested {}", q.fields.join(", ")));
        }
        self.record(r, Some(peer), doc(&record.request).into_iter().collect())
            .await;
    }

    /// Records the grant or denial we issued for an inbound request.
    async fn record_decision(&self, peer: PeerId, record: &RequestRecord) {
        let q = &record.request.document;
        let kind = match record.status {
            RequestStatus::Granted => RecordKind::GrantIssued,
            RequestStatus::Denied => RecordKind::DenialIssued,
            RequestStatus::Pending => return,
        };
        let mut r = self.new_record(kind);
        r.dataset = Some(q.dataset.clone());
        r.purpose = Some(q.purpose.clone());
        r.legal_basis = Some(q.legal_basis.clone());
        if let Some(g) = &record.grant {
            r.grant = Some(g.document.id.clone());
            r.fields = grant_fields(&g.document);
        }
        if let Some(d) = &record.denial {
            r.cause = Some(d.document.reason.clone());
        }
        let docs = [
            record.grant.as_ref().and_then(doc),
            record.denial.as_ref().and_then(doc),
            doc(&record.request),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.record(r, Some(peer), docs).await;
    }

    /// Test hook: makes grant `id` (issued by us) expire now, as if its time had passed.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub async fn expire_grant_for_test(&self, id: &str) -> Result<(), NodeError> {
        let _guard = self.inner.write_lock.lock().await;
        let mut record = self.issued_grant(id)?;
        let mut g = record.grant.document.clone();
        let past = OffsetDateTime::now_utc() - Duration::from_secs(1);
        g.expires_at = rfc3339(past);
        g.not_before = rfc3339(past - Duration::from_secs(60));
        record.grant = Signed::sign(g, self.inner.key.signing_key())?;
        self.store()
            .put_record(RecordTree::Grants, &issued_grant_key(id), &record)?;
        Ok(())
    }
}
