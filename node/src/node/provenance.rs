//! Provenance in the service layer (R6, R8, R10, R11): recording each step in the node's log,
//! witnessing peers' tree heads (consistency checked, cosigned, forks alarmed), queries, the
//! deliveries report, and evidence bundles.

use std::collections::HashMap;
use std::sync::Arc;

use libp2p::PeerId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Node, NodeError, unexpected};
use crate::clock::now_rfc3339;
use crate::model::catalogue::valid_identifier;
use crate::model::membership::MAX_BUNDLE_CHARTERS;
use crate::model::merkle;
use crate::model::message::{Request, Response};
use crate::model::node_info::NodeInfo;
use crate::model::provenance::{
    Alarm, AlarmResolution, BUNDLE_FORMAT, BundleEntry, BundleWitness, Cosignature, DatasetHead,
    DocRef, EvidenceBundle, ProvenanceRecord, Query, RecordKind, SessionEnd, TreeHead,
};
use crate::model::refusal::RefusalCode;
use crate::model::signed::{AnySigned, CanonicalEnvelope, Document, Signed};
use crate::store::provenance::{MAX_QUERY_RECORDS, NewRecord};

/// A signed document to keep with a record, in the canonical form the log stores.
pub(crate) fn doc<T: Document>(signed: &Signed<T>) -> Option<CanonicalEnvelope> {
    CanonicalEnvelope::of(signed).ok()
}

/// One delivery of a dataset, as the deliveries report shows it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Delivery {
    /// The delivery record's seq.
    pub seq: u64,
    /// When it was served.
    pub time: String,
    /// The receiver.
    pub receiver: String,
    /// Its region, "320000 江苏省 Jiangsu".
    pub receiver_region: Option<String>,
    /// The dataset.
    pub dataset: String,
    /// The version.
    pub version: Option<u64>,
    /// Fields and masking, in words.
    pub fields: String,
    /// Purpose of the access.
    pub purpose: Option<String>,
    /// Legal basis.
    pub legal_basis: Option<String>,
    /// The grant (conditional data).
    pub grant: Option<String>,
    /// Digest of what was delivered.
    pub data_digest: Option<String>,
    /// Distinct chunks of the file sent in this session (absent in records from before
    /// sessions were counted).
    pub chunks_sent: Option<u32>,
    /// The chunks the file has: all of it left when `chunks_sent` equals it.
    pub chunk_count: Option<u32>,
    /// The bytes of the chunks sent.
    pub bytes_sent: Option<u64>,
    /// How the session ended.
    pub ended: Option<SessionEnd>,
    /// Why, when the fetcher did not end it.
    pub cause: Option<String>,
    /// When the receiver's signed receipt arrived, if it did.
    pub receipt_at: Option<String>,
    /// Seq of the receipt record.
    pub receipt_seq: Option<u64>,
}

/// What to put in an evidence bundle.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ExportQuery {
    /// Every record about this dataset.
    pub dataset: Option<String>,
    /// Or a range of seqs, inclusive.
    pub from_seq: Option<u64>,
    /// End of the range, inclusive.
    pub to_seq: Option<u64>,
    /// Only records with this counterparty.
    pub peer: Option<String>,
}

/// Most records in one bundle.
pub const MAX_BUNDLE_RECORDS: usize = 100_000;

/// Longest text from a peer kept in a record (a refusal's cause, a denial's or revocation's
/// reason as we record it), in characters; longer text is cut with a marker.
pub const MAX_PEER_TEXT_CHARS: usize = 512;

/// `s` cut to `max` characters, with a marker naming its full length in bytes when it was cut.
pub(crate) fn capped(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((end, _)) => format!("{}… (truncated, {} bytes)", &s[..end], s.len()),
    }
}

/// The seq of an appended record; a failure is logged loudly (the step happened, its record
/// could not be kept).
fn kept(
    kind: RecordKind,
    result: Result<u64, crate::store::provenance::ProvenanceError>,
) -> Option<u64> {
    match result {
        Ok(seq) => Some(seq),
        Err(e) => {
            tracing::error!(kind = %kind.name(), error = %e, "PROVENANCE RECORD NOT KEPT");
            None
        }
    }
}

/// A record not yet appended: what [`Node::record_all`] appends with others.
#[derive(Debug)]
pub(crate) struct PendingRecord {
    pub record: ProvenanceRecord,
    pub counterparty: Option<PeerId>,
    pub documents: Vec<CanonicalEnvelope>,
}

impl Node {
    /// The log.
    pub fn provenance(&self) -> &crate::store::provenance::ProvenanceLog {
        &self.inner.provenance
    }

    /// A record of `kind` with the fields the log does not fill in.
    pub(crate) fn new_record(&self, kind: RecordKind) -> ProvenanceRecord {
        ProvenanceRecord::new(kind, self.peer_id_text().to_owned(), self.region())
    }

    /// Appends a record (waiting until it is durable) with the documents it names. A failure
    /// is logged loudly: the step happened, its record could not be kept.
    pub(crate) async fn record(
        &self,
        record: ProvenanceRecord,
        counterparty: Option<PeerId>,
        documents: Vec<CanonicalEnvelope>,
    ) -> Option<u64> {
        let entry = self.new_entry(record, counterparty, documents);
        let kind = entry.record.kind;
        kept(kind, self.inner.provenance.append(entry).await)
    }

    /// [`Node::record`] of several records at once, in one group commit (the records of steps
    /// that happened together); each result in order.
    pub(crate) async fn record_all(&self, records: Vec<PendingRecord>) -> Vec<Option<u64>> {
        let entries: Vec<NewRecord> = records
            .into_iter()
            .map(|p| self.new_entry(p.record, p.counterparty, p.documents))
            .collect();
        let kinds: Vec<RecordKind> = entries.iter().map(|e| e.record.kind).collect();
        let results = self.inner.provenance.append_all(entries).await;
        results
            .into_iter()
            .zip(kinds)
            .map(|(result, kind)| kept(kind, result))
            .collect()
    }

    /// The entry the log appends for `record`: its counterparty (and region) and the digests of
    /// the documents it names filled in.
    fn new_entry(
        &self,
        mut record: ProvenanceRecord,
        counterparty: Option<PeerId>,
        documents: Vec<CanonicalEnvelope>,
    ) -> NewRecord {
        if let Some(p) = counterparty {
            record.counterparty = Some(p.to_string());
            record.counterparty_region = self.peer_region(&p);
        }
        record.documents = documents
            .iter()
            .map(|d| DocRef {
                doc_type: d.doc_type.to_owned(),
                digest: hex::encode(d.digest),
            })
            .collect();
        NewRecord { record, documents }
    }

    /// Records a refusal with its cause, within the budget of the peer that caused it (beyond
    /// it the refusal is counted and logged at debug level, not kept). Whatever the peer sent is
    /// capped: a dataset that is not an identifier is not put in the record's dataset field (nor
    /// the dataset index) but named, cut, in the cause; the cause is cut at
    /// [`MAX_PEER_TEXT_CHARS`], with a marker saying how long it was.
    pub(crate) async fn record_refusal(
        &self,
        peer: Option<PeerId>,
        dataset: Option<&str>,
        cause: &str,
    ) {
        self.record_refusal_by(peer, dataset, cause, None).await;
    }

    /// [`Node::record_refusal`] of a call made by `client`, a scoped API client (named in the
    /// record).
    pub(crate) async fn record_refusal_by(
        &self,
        peer: Option<PeerId>,
        dataset: Option<&str>,
        cause: &str,
        client: Option<&str>,
    ) {
        if let Some(p) = peer {
            if !self
                .inner
                .peers
                .refusal_record_due(p, std::time::Instant::now())
            {
                tracing::debug!(peer = %p, "refusal not recorded: the peer's budget is used up");
                return;
            }
        }
        let mut r = self.new_record(RecordKind::Refused);
        let mut cause = cause.to_string();
        match dataset {
            Some(d) if valid_identifier(d) => r.dataset = Some(d.to_string()),
            Some(d) => cause = format!("dataset {}: {cause}", capped(d, 64)),
            None => {}
        }
        r.cause = Some(capped(&cause, MAX_PEER_TEXT_CHARS));
        r.client = client.map(str::to_string);
        self.record(r, peer, Vec::new()).await;
    }

    /// Records matching `q`.
    ///
    /// `since` and `until` are RFC 3339 times (any offset) or dates (`YYYY-MM-DD`: `since` from
    /// its start, `until` to its end, UTC); anything else is refused rather than compared as
    /// text, which would silently select the wrong records. At most [`MAX_QUERY_RECORDS`] are
    /// returned, whatever `limit` asks.
    pub fn provenance_query(&self, q: &Query) -> Result<Vec<ProvenanceRecord>, NodeError> {
        let mut q = q.clone();
        q.limit = Some(q.limit.unwrap_or(1000).min(MAX_QUERY_RECORDS));
        self.query_unbounded(q)
    }

    /// [`Self::provenance_query`] without its cap on `limit`, for exports that must see past it.
    fn query_unbounded(&self, mut q: Query) -> Result<Vec<ProvenanceRecord>, NodeError> {
        q.since = q
            .since
            .as_deref()
            .map(|s| time_bound(s, "since", false))
            .transpose()?;
        q.until = q
            .until
            .as_deref()
            .map(|s| time_bound(s, "until", true))
            .transpose()?;
        Ok(self.inner.provenance.query(&q)?)
    }

    /// One record with its inclusion proof in the latest head, and its documents.
    pub fn provenance_show(&self, seq: u64) -> Result<BundleEntryView, NodeError> {
        let log = &self.inner.provenance;
        let record = log
            .record(seq)?
            .ok_or_else(|| NodeError::NotFound(format!("no provenance record {seq}")))?;
        let head = log
            .head()
            .ok_or_else(|| NodeError::NotFound("no tree head yet".into()))?;
        let proof = log
            .inclusion_proof(seq, head.document.size)?
            .iter()
            .map(hex::encode)
            .collect();
        let mut documents = Vec::new();
        for d in &record.documents {
            if let Some(doc) = log.document(&d.digest)? {
                documents.push(doc);
            }
        }
        Ok(BundleEntryView {
            record,
            proof,
            head,
            documents,
        })
    }

    /// Every delivery of `dataset` we served (one per session that sent data, with what it
    /// sent), with its receipt if one arrived.
    pub fn deliveries(&self, dataset: &str) -> Result<Vec<Delivery>, NodeError> {
        let records = self.provenance_query(&Query {
            dataset: Some(dataset.to_string()),
            limit: Some(100_000),
            ..Query::default()
        })?;
        let receipts: Vec<&ProvenanceRecord> = records
            .iter()
            .filter(|r| r.kind == RecordKind::ReceiptReceived)
            .collect();
        Ok(records
            .iter()
            .filter(|r| r.kind == RecordKind::DeliveryServed)
            .map(|r| {
                let receipt = receipts.iter().find(|x| {
                    x.counterparty == r.counterparty
                        && x.version == r.version
                        && x.data_digest == r.data_digest
                });
                Delivery {
                    seq: r.seq,
                    time: r.time.clone(),
                    receiver: r.counterparty.clone().unwrap_or_default(),
                    receiver_region: r.counterparty_region.map(|g| g.label()),
                    dataset: dataset.to_string(),
                    version: r.version,
                    fields: r.fields.clone().unwrap_or_else(|| "all fields".into()),
                    purpose: r.purpose.clone(),
                    legal_basis: r.legal_basis.clone(),
                    grant: r.grant.clone(),
                    data_digest: r.data_digest.clone(),
                    chunks_sent: r.chunks_sent,
                    chunk_count: r.chunk_count,
                    bytes_sent: r.bytes_sent,
                    ended: r.ended,
                    cause: r.cause.clone(),
                    receipt_at: receipt.map(|x| x.time.clone()),
                    receipt_seq: receipt.map(|x| x.seq),
                }
            })
            .collect())
    }

    /// Witness alarms raised here.
    pub fn alarms(&self) -> Result<Vec<Alarm>, NodeError> {
        Ok(self.inner.provenance.alarms()?)
    }

    /// An evidence bundle of the records `q` selects, proven against our latest head.
    pub fn export_bundle(&self, q: &ExportQuery) -> Result<EvidenceBundle, NodeError> {
        let log = &self.inner.provenance;
        let head = log
            .head()
            .ok_or_else(|| NodeError::NotFound("no tree head yet".into()))?;
        let size = head.document.size;
        // A bundle of a dataset carries our signed statement of its latest record about it at
        // this head: the anchor of the chain of `prev_about_dataset` links that proves the
        // bundle holds every record about it (docs/evidence.md, "Completeness").
        let dataset_head = match &q.dataset {
            Some(d) => match log.latest_about_dataset(d, size)? {
                Some(latest) => Some(Signed::sign(
                    DatasetHead {
                        log: head.document.log.clone(),
                        dataset: d.clone(),
                        size,
                        root: head.document.root.clone(),
                        latest,
                        time: now_rfc3339(),
                    },
                    self.inner.key.signing_key(),
                )?),
                None => None,
            },
            None => None,
        };
        let records: Vec<ProvenanceRecord> = match (&q.dataset, q.from_seq) {
            (Some(d), _) => {
                // One more than the cap, so that a dataset with too many records is refused
                // rather than exported in part.
                let found = self.query_unbounded(Query {
                    dataset: Some(d.clone()),
                    peer: q.peer.clone(),
                    limit: Some(MAX_BUNDLE_RECORDS + 1),
                    ..Query::default()
                })?;
                if found.len() > MAX_BUNDLE_RECORDS {
                    return Err(NodeError::invalid(
                        "dataset",
                        format!(
                            "dataset {d} has more than {MAX_BUNDLE_RECORDS} records: export it in seq ranges (--seq A..B --peer P)"
                        ),
                    ));
                }
                found
            }
            (None, Some(from)) => {
                let to = q
                    .to_seq
                    .unwrap_or(size.saturating_sub(1))
                    .min(size.saturating_sub(1));
                if to < from || to - from >= MAX_BUNDLE_RECORDS as u64 {
                    return Err(NodeError::invalid(
                        "seq",
                        format!(
                            "seq range {from}..{to}: give at most {MAX_BUNDLE_RECORDS} records"
                        ),
                    ));
                }
                let mut out = Vec::new();
                for seq in from..=to {
                    if let Some(r) = log.record(seq)? {
                        if q.peer
                            .as_ref()
                            .is_none_or(|p| r.counterparty.as_ref() == Some(p))
                        {
                            out.push(r);
                        }
                    }
                }
                out
            }
            _ => {
                return Err(NodeError::invalid(
                    "query",
                    "export needs --dataset ID or --seq A..B".into(),
                ));
            }
        };
        let records: Vec<ProvenanceRecord> = records.into_iter().filter(|r| r.seq < size).collect();
        if records.is_empty() {
            return Err(NodeError::NotFound("no records match".into()));
        }
        let mut entries = Vec::new();
        let mut documents: Vec<AnySigned> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut party_ids = std::collections::BTreeSet::new();
        party_ids.insert(self.peer_id_text().to_owned());
        for r in records {
            let proof = log
                .inclusion_proof(r.seq, size)?
                .iter()
                .map(hex::encode)
                .collect();
            for d in &r.documents {
                if seen.insert(d.digest.clone()) {
                    if let Some(doc) = log.document(&d.digest)? {
                        if let Ok(key) = doc.signer_key() {
                            if let Some(p) = crate::identity::peer_id_of(&key) {
                                party_ids.insert(p.to_string());
                            }
                        }
                        documents.push(doc);
                    }
                }
            }
            if let Some(c) = &r.counterparty {
                party_ids.insert(c.clone());
            }
            entries.push(BundleEntry { record: r, proof });
        }
        let infos = self.inner.peers.infos();
        let mut witnesses = Vec::new();
        for c in log.cosignatures()? {
            if c.document.size > size || c.document.size == 0 {
                continue;
            }
            // A witness the bundle cannot name (no verified NodeInfo) cannot be checked.
            let known = c
                .document
                .witness
                .parse::<PeerId>()
                .is_ok_and(|p| infos.contains_key(&p));
            if !known {
                continue;
            }
            let consistency = log
                .consistency_proof(c.document.size, size)?
                .iter()
                .map(hex::encode)
                .collect();
            party_ids.insert(c.document.witness.clone());
            witnesses.push(BundleWitness {
                cosignature: c,
                consistency,
            });
        }
        let mut parties: Vec<Signed<NodeInfo>> = vec![self.signed_node_info()?];
        for id in party_ids {
            if id == self.peer_id_text() {
                continue;
            }
            if let Some(info) = id.parse::<PeerId>().ok().and_then(|p| infos.get(&p)) {
                parties.push(info.clone());
            }
        }
        // The charter versions this node holds, so that each signer's membership and region
        // when it signed can be checked offline (docs/evidence.md, step 9).
        let charters = match &self.inner.charter {
            Some(c) => {
                let versions = c.versions();
                if versions.len() > MAX_BUNDLE_CHARTERS {
                    return Err(NodeError::invalid(
                        "charters",
                        format!(
                            "this node holds {} charter versions; a bundle carries at most {MAX_BUNDLE_CHARTERS}",
                            versions.len()
                        ),
                    ));
                }
                Some(versions)
            }
            None => None,
        };
        Ok(EvidenceBundle {
            format: BUNDLE_FORMAT.to_string(),
            head,
            entries,
            documents,
            parties,
            witnesses,
            dataset_head,
            charters,
        })
    }

    // ---------------------------------------------------------------- witnessing

    /// Sends our latest head to `peer` and keeps its cosignature. Called after every exchange
    /// with it and periodically.
    pub async fn send_head(&self, peer: PeerId) -> Result<(), NodeError> {
        let Some(head) = self.inner.provenance.head() else {
            return Ok(());
        };
        if head.document.size == 0 {
            return Ok(());
        }
        let request = Request::TreeHead {
            head: Box::new(head.clone()),
        };
        match self.inner.net.request(peer, request).await? {
            Response::Cosigned { cosignature } => {
                cosignature.verify()?;
                let c = &cosignature.document;
                let signer = self.signer_peer(&cosignature.signer_key()?, &c.witness)?;
                if signer != peer
                    || c.log != self.peer_id_text()
                    || c.size != head.document.size
                    || c.root != head.document.root
                {
                    return Err(NodeError::BadPeer {
                        peer,
                        reason: "cosignature does not match the head we sent".into(),
                    });
                }
                // Heads shown concurrently may be cosigned out of order: keep the largest.
                let newer = self
                    .inner
                    .provenance
                    .cosignatures()?
                    .iter()
                    .filter(|k| k.document.witness == c.witness)
                    .all(|k| k.document.size <= c.size);
                if newer {
                    self.inner.provenance.put_cosignature(&cosignature)?;
                }
                Ok(())
            }
            Response::Error { code, message } => Err(NodeError::BadPeer {
                peer,
                reason: format!("{code}: {message}"),
            }),
            other => Err(unexpected(peer, &other)),
        }
    }

    /// Witness side: `peer` shows us its head. It must be signed by `peer` and extend every
    /// head of its log we hold (checked with a consistency proof we ask it for); then we keep
    /// it and cosign. A head that does not extend what we hold is a fork: recorded, alarmed,
    /// refused.
    pub(crate) async fn on_tree_head(&self, peer: PeerId, head: Signed<TreeHead>) -> Response {
        match self.witness(peer, head).await {
            Ok(c) => Response::Cosigned {
                cosignature: Box::new(c),
            },
            Err(e) => Response::Error {
                code: RefusalCode::Refused,
                message: e.to_string(),
            },
        }
    }

    async fn witness(
        &self,
        peer: PeerId,
        head: Signed<TreeHead>,
    ) -> Result<Signed<Cosignature>, NodeError> {
        head.verify()?;
        let signer = self.signer_peer(&head.signer_key()?, &head.document.log)?;
        if signer != peer {
            return Err(NodeError::invalid(
                "head",
                format!("tree head of {signer} sent by {peer}"),
            ));
        }
        let presented = (head.document.size, parse_root(&head.document.root)?);
        // Heads of one log are compared one at a time, in whatever order they arrive; other
        // logs' heads are not held up by this one (nor by its owner's consistency proof).
        let lock = self.inner.witness.of(&head.document.log);
        let _guard = lock.lock().await;
        let held = match self.inner.provenance.witnessed(&head.document.log)? {
            Some(h) => Some(h),
            // The first head of a key: if its member rotated from a key whose log we witnessed,
            // the new head must extend the last one we hold of it (the same log, re-keyed).
            None => self.head_under_earlier_key(&peer)?,
        };
        let held_pair = match &held {
            Some(h) => Some((h.document.size, parse_root(&h.document.root)?)),
            None => None,
        };
        let mut verdict = judge_head(held_pair, presented, None);
        if let HeadVerdict::NeedProof { old_size, new_size } = verdict {
            verdict = match self.consistency_from(peer, old_size, new_size).await? {
                Ok(proof) => judge_head(held_pair, presented, Some(&proof)),
                Err(cause) => HeadVerdict::Fork(cause),
            };
        }
        match verdict {
            HeadVerdict::Fork(cause) => {
                if let Some(old) = held {
                    self.raise_alarm(peer, old, head.clone(), &cause).await;
                }
                return Err(NodeError::invalid(
                    "head",
                    format!("fork of {peer}'s provenance log: {cause}"),
                ));
            }
            HeadVerdict::Extends if held_pair.is_none_or(|(o, _)| presented.0 > o) => {
                self.inner.provenance.put_witnessed(&head)?;
                // What we cosign must survive a crash, or we could later cosign a fork of it.
                self.store().flush().await?;
            }
            // The same head again, or an older one that arrived late: the held head stays.
            HeadVerdict::Extends | HeadVerdict::Older | HeadVerdict::NeedProof { .. } => {}
        }
        let cosignature = Cosignature {
            log: head.document.log.clone(),
            size: head.document.size,
            root: head.document.root.clone(),
            witness: self.peer_id_text().to_owned(),
            time: now_rfc3339(),
        };
        Ok(Signed::sign(cosignature, self.inner.key.signing_key())?)
    }

    /// The largest head we witnessed of the same member's log under another of its keys (before
    /// it rotated to `peer`'s), if any.
    fn head_under_earlier_key(&self, peer: &PeerId) -> Result<Option<Signed<TreeHead>>, NodeError> {
        let Some(charter) = self.inner.charter.as_ref() else {
            return Ok(None);
        };
        let mut best: Option<Signed<TreeHead>> = None;
        for key in charter.other_keys_of_member(peer) {
            if let Some(h) = self.inner.provenance.witnessed(&key.to_string())? {
                if best
                    .as_ref()
                    .is_none_or(|b| h.document.size > b.document.size)
                {
                    best = Some(h);
                }
            }
        }
        Ok(best)
    }

    /// Asks `peer` for a consistency proof of its log, within the sync request timeout. The
    /// outer error (no answer, an error answer) proves nothing and refuses the head; the inner
    /// one is a malformed proof, which the owner sent of its own log.
    async fn consistency_from(
        &self,
        peer: PeerId,
        old_size: u64,
        new_size: u64,
    ) -> Result<Result<Vec<merkle::Hash>, String>, NodeError> {
        let timeout = self.sync_request_timeout();
        let request = Request::Consistency { old_size, new_size };
        let answer = tokio::time::timeout(timeout, self.inner.net.request(peer, request))
            .await
            .map_err(|_| NodeError::BadPeer {
                peer,
                reason: format!("no consistency proof within {} s", timeout.as_secs()),
            })??;
        match answer {
            Response::Consistency { proof } => Ok(proof
                .iter()
                .map(|h| parse_root(h))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("malformed consistency proof: {e}"))),
            // No proof is not a proof of a fork: refuse to cosign, raise nothing.
            Response::Error { code, message } => Err(NodeError::BadPeer {
                peer,
                reason: format!("no consistency proof ({code}: {message})"),
            }),
            other => Err(unexpected(peer, &other)),
        }
    }

    async fn raise_alarm(
        &self,
        peer: PeerId,
        held: Signed<TreeHead>,
        presented: Signed<TreeHead>,
        cause: &str,
    ) {
        // The same fork shown again is the same alarm, not a new one (unless it was resolved:
        // a resolved fork shown again against another baseline is news).
        let log = peer.to_string();
        let open: Vec<Alarm> = self
            .inner
            .provenance
            .alarms()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.log == log && a.resolved.is_none())
            .collect();
        let known = open.iter().any(|a| {
            a.presented.document.size == presented.document.size
                && a.presented.document.root == presented.document.root
        });
        if known {
            return;
        }
        // The first open alarm of a log is always kept, so refusals spent first cannot hide a
        // fork. Each further one (kept, and recorded) counts against the budget of records the
        // peer may cause, so a member forging fork after fork cannot grow our log and alarm
        // table without bound; beyond it the alarm is counted as dropped.
        if !open.is_empty()
            && !self
                .inner
                .peers
                .refusal_record_due(peer, std::time::Instant::now())
        {
            tracing::debug!(
                peer = %peer,
                cause,
                "witness alarm not kept: the log has an open alarm and the peer's budget is used up"
            );
            return;
        }
        tracing::error!(
            peer = %peer,
            region = %self.peer_region(&peer).map(|r| r.label()).unwrap_or_default(),
            cause,
            "WITNESS ALARM: a member's provenance log forked"
        );
        let alarm = Alarm {
            time: now_rfc3339(),
            log: peer.to_string(),
            held: held.clone(),
            presented: presented.clone(),
            cause: cause.to_string(),
            resolved: None,
        };
        if let Err(e) = self.inner.provenance.put_alarm(&alarm) {
            tracing::error!(error = %e, "alarm not kept");
        }
        let mut r = self.new_record(RecordKind::WitnessAlarm);
        r.cause = Some(cause.to_string());
        self.record(
            r,
            Some(peer),
            [doc(&held), doc(&presented)]
                .into_iter()
                .flatten()
                .collect(),
        )
        .await;
    }

    /// Resolves the open witness alarms of `log` after an operator checked what happened: each
    /// is marked resolved with `note`, the head presented in the newest alarm becomes the
    /// baseline its next heads must extend (unless we accepted a head of that log after that
    /// alarm: then that head stays), and the step is recorded.
    pub async fn resolve_alarms(&self, log: &str, note: &str) -> Result<Vec<Alarm>, NodeError> {
        let note = note.trim();
        if note.is_empty() || note.chars().count() > 2000 {
            return Err(NodeError::invalid(
                "note",
                "note: say what you found (1 to 2000 characters)".into(),
            ));
        }
        let peer: PeerId = log
            .parse()
            .map_err(|_| NodeError::invalid("log", format!("{log:?} is not a peer id")))?;
        let lock = self.inner.witness.of(log);
        let _guard = lock.lock().await;
        let open: Vec<Alarm> = self
            .inner
            .provenance
            .alarms()?
            .into_iter()
            .filter(|a| a.log == log && a.resolved.is_none())
            .collect();
        // Alarms are kept in the order they were raised (by our clock): the last is the newest.
        let Some(newest) = open.last() else {
            return Err(NodeError::NotFound(format!(
                "no open witness alarm for the log of {log}"
            )));
        };
        // If we accepted a head of that log after the newest alarm (it went back to the branch
        // we held), that head stays; otherwise the branch the operator accepts becomes it.
        let held = self.inner.provenance.witnessed(log)?;
        let baseline = (held.as_ref() == Some(&newest.held)).then(|| newest.presented.clone());
        let resolution = AlarmResolution {
            time: now_rfc3339(),
            note: note.to_string(),
            baseline_size: baseline
                .as_ref()
                .or(held.as_ref())
                .map_or(0, |h| h.document.size),
        };
        let resolved = self
            .inner
            .provenance
            .resolve_alarms(log, &resolution, baseline.as_ref())?;
        let baseline = baseline.or(held);
        self.store().flush().await?;
        tracing::warn!(
            peer = %peer,
            alarms = resolved.len(),
            baseline = resolution.baseline_size,
            note,
            "witness alarms resolved by an operator"
        );
        let mut r = self.new_record(RecordKind::AlarmResolved);
        r.cause = Some(note.to_string());
        self.record(
            r,
            Some(peer),
            baseline.as_ref().and_then(doc).into_iter().collect(),
        )
        .await;
        Ok(resolved)
    }

    /// Answers a witness's request for a consistency proof of our log.
    pub(crate) fn on_consistency(&self, old_size: u64, new_size: u64) -> Response {
        if new_size > self.inner.provenance.size() || old_size > new_size {
            return Response::Error {
                code: RefusalCode::BadRequest,
                message: format!("no consistency proof from {old_size} to {new_size}"),
            };
        }
        match self.inner.provenance.consistency_proof(old_size, new_size) {
            Ok(p) => Response::Consistency {
                proof: p.iter().map(hex::encode).collect(),
            },
            Err(e) => Response::Error {
                code: RefusalCode::Internal,
                message: e.to_string(),
            },
        }
    }

    /// Sends our head to `peer` in the background (after an exchange with it).
    pub(crate) fn witness_soon(&self, peer: PeerId) {
        let node = self.clone();
        self.spawn_long(async move {
            if let Err(e) = node.send_head(peer).await {
                tracing::debug!(peer = %peer, error = %e, "head not witnessed");
            }
        });
    }
}

/// One lock per witnessed log: heads of one log are checked in turn, those of different logs
/// at once. Only members reach the witness, so there is at most one entry per member.
#[derive(Debug, Default)]
pub(crate) struct WitnessLocks(parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl WitnessLocks {
    /// The lock of `log`.
    pub(crate) fn of(&self, log: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.0.lock().entry(log.to_string()).or_default().clone()
    }
}

/// What a head a log's owner shows means against the head of that log we hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadVerdict {
    /// Nothing held, the same head again, or a larger head proven to extend the held one.
    Extends,
    /// A smaller head proven to be a prefix of the held one: an old head that arrived late.
    Older,
    /// A consistency proof of the owner's log from `old_size` to `new_size` decides.
    NeedProof {
        /// The smaller size.
        old_size: u64,
        /// The larger size.
        new_size: u64,
    },
    /// The two heads (and the proof between them) prove a fork; the cause in words.
    Fork(String),
}

/// Judges a presented head `(size, root)` against the held one, given the consistency proof
/// between the two sizes once there is one. Only the heads themselves can prove a fork: two
/// roots for one size, or a proof between the smaller and the larger that does not verify,
/// whichever of them came first.
pub(crate) fn judge_head(
    held: Option<(u64, merkle::Hash)>,
    presented: (u64, merkle::Hash),
    proof: Option<&[merkle::Hash]>,
) -> HeadVerdict {
    let Some((o, old_root)) = held else {
        return HeadVerdict::Extends;
    };
    let (n, new_root) = presented;
    if n == o {
        return if old_root == new_root {
            HeadVerdict::Extends
        } else {
            HeadVerdict::Fork(format!("two different roots for size {n}"))
        };
    }
    let (small, small_root, large, large_root) = if n > o {
        (o, old_root, n, new_root)
    } else {
        (n, new_root, o, old_root)
    };
    let Some(proof) = proof else {
        return HeadVerdict::NeedProof {
            old_size: small,
            new_size: large,
        };
    };
    match merkle::verify_consistency(small, large, &small_root, &large_root, proof) {
        Ok(()) if n > o => HeadVerdict::Extends,
        Ok(()) => HeadVerdict::Older,
        Err(e) if n > o => {
            HeadVerdict::Fork(format!("size {n} is not consistent with size {o}: {e}"))
        }
        Err(e) => HeadVerdict::Fork(format!(
            "size {n} is not a prefix of the held size {o}: {e}"
        )),
    }
}

fn parse_root(s: &str) -> Result<merkle::Hash, NodeError> {
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| NodeError::invalid("hash", format!("{s:?} is not a 32-byte hex hash")))
}

/// One record with its proof, the head it leads to, and its documents.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BundleEntryView {
    /// The record.
    pub record: ProvenanceRecord,
    /// Inclusion proof in `head`.
    pub proof: Vec<String>,
    /// The latest head.
    pub head: Signed<TreeHead>,
    /// The documents it names.
    pub documents: Vec<AnySigned>,
}

/// A `since`/`until` bound in the records' own form (RFC 3339 UTC, whole seconds), so that the
/// log's text comparison is a time comparison.
fn time_bound(s: &str, name: &'static str, end_of_day: bool) -> Result<String, NodeError> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    let instant = if let Some(t) = crate::clock::parse_rfc3339(s) {
        t
    } else {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let date = time::Date::parse(s, &format).map_err(|_| {
            NodeError::invalid(name, format!(
                "{name} {s:?}: expected an RFC 3339 time (2026-11-26T14:03:00Z) or a date (2026-11-26)"
            ))
        })?;
        let t = if end_of_day {
            date.with_hms(23, 59, 59)
        } else {
            date.with_hms(0, 0, 0)
        };
        t.map_err(|e| NodeError::invalid(name, format!("{name} {s:?}: {e}")))?
            .assume_utc()
    };
    // A valid offset can carry a time past the last (or before the first) UTC instant we can
    // hold: refused, where `to_offset` would panic.
    let instant = instant
        .checked_to_offset(time::UtcOffset::UTC)
        .ok_or_else(|| {
            NodeError::invalid(
                name,
                format!("{name} {s:?}: out of range once converted to UTC"),
            )
        })?;
    instant
        .replace_nanosecond(0)
        .unwrap_or(instant)
        .format(&Rfc3339)
        .map_err(|e| NodeError::invalid(name, format!("{name} {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::{HeadVerdict, capped, judge_head, time_bound};
    use crate::model::merkle::{self, MemoryStore};

    fn log(tag: &str, size: u64) -> MemoryStore {
        let mut store = MemoryStore::new();
        for i in 0..size {
            let _ = store.append(merkle::leaf_hash(format!("{tag}{i}").as_bytes()));
        }
        store
    }

    fn head(store: &MemoryStore, size: u64) -> (u64, merkle::Hash) {
        (size, merkle::root(size, store).unwrap_or_default())
    }

    fn proof(store: &MemoryStore, old: u64, new: u64) -> Vec<merkle::Hash> {
        merkle::consistency_proof(old, new, store).unwrap_or_default()
    }

    #[test]
    fn a_head_is_judged_by_the_heads_and_the_proof_between_them() {
        let (a, b) = (log("a", 8), log("b", 8));
        // Nothing held, or the same head again.
        assert_eq!(judge_head(None, head(&a, 3), None), HeadVerdict::Extends);
        assert_eq!(
            judge_head(Some(head(&a, 5)), head(&a, 5), None),
            HeadVerdict::Extends
        );
        // Another root for the same size.
        assert!(matches!(
            judge_head(Some(head(&a, 5)), head(&b, 5), None),
            HeadVerdict::Fork(c) if c.contains("two different roots")
        ));
        // Larger or smaller: a proof from the smaller to the larger decides.
        for (held, shown) in [(3, 7), (7, 3)] {
            let need = HeadVerdict::NeedProof {
                old_size: 3,
                new_size: 7,
            };
            assert_eq!(
                judge_head(Some(head(&a, held)), head(&a, shown), None),
                need
            );
        }
        let p = proof(&a, 3, 7);
        assert_eq!(
            judge_head(Some(head(&a, 3)), head(&a, 7), Some(&p)),
            HeadVerdict::Extends
        );
        // An older head arriving late is not a fork.
        assert_eq!(
            judge_head(Some(head(&a, 7)), head(&a, 3), Some(&p)),
            HeadVerdict::Older
        );
        // A smaller head of another log cannot be proven a prefix: a fork.
        let forged = proof(&b, 3, 7);
        assert!(matches!(
            judge_head(Some(head(&a, 7)), head(&b, 3), Some(&forged)),
            HeadVerdict::Fork(c) if c.contains("not a prefix")
        ));
        assert!(matches!(
            judge_head(Some(head(&a, 3)), head(&b, 7), Some(&forged)),
            HeadVerdict::Fork(c) if c.contains("not consistent")
        ));
    }

    #[test]
    fn peer_text_is_cut_with_a_marker() {
        assert_eq!(capped("短文本", 3), "短文本");
        let long = "数".repeat(600);
        let cut = capped(&long, 512);
        assert!(cut.starts_with(&"数".repeat(512)));
        assert!(cut.ends_with("… (truncated, 1800 bytes)"), "{cut}");
    }

    #[test]
    fn time_bounds_are_normalised_to_the_records_form_or_refused() {
        let b = |s, end| time_bound(s, "since", end).ok();
        assert_eq!(
            b("2026-11-26", false).as_deref(),
            Some("2026-11-26T00:00:00Z")
        );
        assert_eq!(
            b("2026-11-26", true).as_deref(),
            Some("2026-11-26T23:59:59Z")
        );
        assert_eq!(
            b("2026-11-26T22:03:00+08:00", false).as_deref(),
            Some("2026-11-26T14:03:00Z")
        );
        assert_eq!(
            b("2026-11-26T14:03:00.75Z", false).as_deref(),
            Some("2026-11-26T14:03:00Z")
        );
        for bad in [
            "yesterday",
            "2026-13-01",
            "",
            "2026-11-26 14:03",
            // Valid RFC 3339, but beyond the years a UTC time can hold: refused, not a panic.
            "9999-12-31T23:59:59-23:59",
            "0000-01-01T00:00:00+23:59",
        ] {
            let e = time_bound(bad, "until", true).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|m| m.contains("until")),
                "{bad:?}: {e:?}"
            );
        }
    }
}
