//! Provenance (R6, R8, R10, R11): the record of one step, the signed tree head of a node's
//! Merkle log, a witness's cosignature, a witness alarm and its resolution, the filters of a
//! query of the log, and the evidence bundle with its offline verification (`yrd verify`).
//! Pure: no I/O. The log itself lives in `store::provenance`; the bundle format
//! is specified in `docs/evidence.md`.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::canonical;
use crate::model::merkle::{self, Hash};
use crate::model::node_info::NodeInfo;
use crate::model::region::Region;
use crate::model::signed::{AnySigned, Document, Signed};

/// What a provenance record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RecordKind {
    /// We published a data standard.
    SchemaPublished,
    /// We issued a catalogue snapshot.
    CatalogueIssued,
    /// We published a dataset version.
    DatasetPublished,
    /// We sent an access request.
    RequestSent,
    /// We received an access request.
    RequestReceived,
    /// We issued a grant.
    GrantIssued,
    /// We issued a denial.
    DenialIssued,
    /// We revoked a grant.
    GrantRevoked,
    /// A grant issued to us arrived.
    GrantReceived,
    /// A denial of our request arrived.
    DenialReceived,
    /// A revocation of a grant issued to us arrived.
    RevocationReceived,
    /// Data left in a fetch session: one record per session that sent at least one chunk,
    /// however it ended; `chunks_sent`, `chunk_count`, `bytes_sent` and `ended` say how much
    /// and how. A session that sent no chunk records no delivery.
    DeliveryServed,
    /// We received and verified a dataset version.
    DatasetReceived,
    /// A receiver's signed receipt arrived.
    ReceiptReceived,
    /// Something was refused (non-member, bad signature, invalid grant, invalid data …).
    Refused,
    /// A peer's tree head was inconsistent with one it had shown us: a fork.
    WitnessAlarm,
    /// An operator resolved the witness alarms of a log (`cause` holds their note); its latest
    /// presented head became the baseline its next heads are checked against.
    AlarmResolved,
}

impl RecordKind {
    /// The kebab-case name.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// How a fetch session that sent data ended (`ended` of a `delivery-served` record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SessionEnd {
    /// The fetcher ended it as the protocol says: an empty chunk request.
    Closed,
    /// The stream ended without that: closed, reset or its connection lost (a multiplexer
    /// reads a reset between frames as an end, so these are one case).
    Reset,
    /// The fetcher sent nothing, or took nothing, within the stall timeout.
    Stalled,
    /// The fetcher broke the protocol (a chunk request out of bounds, out of order or
    /// malformed) and was refused.
    BadRequest,
    /// The grant was revoked or expired during the session; the next chunk was refused
    /// (`cause` says which).
    GrantInvalid,
    /// The provider was shutting down.
    Shutdown,
    /// The provider failed (reading its stored file).
    Internal,
}

impl SessionEnd {
    /// The kebab-case name.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Largest integer a record holds as a JSON number: RFC 8785 numbers are doubles, exact only
/// below 2^53.
pub const MAX_RECORD_INTEGER: u64 = (1 << 53) - 1;

/// A signed document a record names, by type and BLAKE3 digest of its canonical envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocRef {
    /// The document type, e.g. `grant`.
    #[serde(rename = "type")]
    pub doc_type: String,
    /// Lowercase hex BLAKE3 of its canonical envelope.
    pub digest: String,
}

/// One step, as the node where it happened records it. The leaf of the Merkle log is the
/// RFC 8785 canonical JSON of this object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceRecord {
    /// Position in the log (the leaf index), from 0.
    pub seq: u64,
    /// What happened.
    pub kind: RecordKind,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// The node that records it (the log's owner).
    pub actor: String,
    /// Its region.
    pub actor_region: Region,
    /// The other node involved, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<String>,
    /// Its region, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty_region: Option<Region>,
    /// The dataset (offer identifier) or standard id concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The grant concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Fields delivered and their masking, in words (deliveries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<String>,
    /// Purpose of the access (requests, grants, deliveries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Legal basis of the access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    /// Digest of the data concerned (BLAKE3 of the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_digest: Option<String>,
    /// Why something was refused or alarmed; for a delivery, why its session ended when the
    /// fetcher did not end it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Deliveries: distinct chunks of the file written to the fetcher in full in this session
    /// (a chunk sent twice counts once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks_sent: Option<u32>,
    /// Deliveries: the chunks the file served has; all of it left when `chunks_sent` equals it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_count: Option<u32>,
    /// Deliveries: the bytes of those chunks (at most the file's size, and never above
    /// 2^53 - 1, so a JSON number holds it exactly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 9007199254740991u64))]
    pub bytes_sent: Option<u64>,
    /// Deliveries: how the session ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<SessionEnd>,
    /// The signed documents this step issued or received; kept with the log.
    #[serde(default)]
    pub documents: Vec<DocRef>,
}

impl ProvenanceRecord {
    /// The leaf data: RFC 8785 canonical JSON.
    pub fn leaf_data(&self) -> Result<Vec<u8>, canonical::CanonicalError> {
        canonical::canonical_bytes(self)
    }

    /// The RFC 6962 leaf hash of this record.
    pub fn leaf_hash(&self) -> Result<Hash, canonical::CanonicalError> {
        Ok(merkle::leaf_hash(&self.leaf_data()?))
    }
}

/// A signed tree head: the log of `log` had `size` records with this `root` at `time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TreeHead {
    /// The log's owner (peer id); must be the signer.
    pub log: String,
    /// Number of records.
    pub size: u64,
    /// Lowercase hex SHA-256 Merkle root (RFC 6962) of the first `size` records.
    pub root: String,
    /// When it was signed (RFC 3339).
    pub time: String,
}

impl Document for TreeHead {
    const TYPE: &'static str = "tree-head";
}

/// A witness's statement that it saw `log` at `size` with `root`, consistent with every earlier
/// head of that log it had seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cosignature {
    /// The log's owner.
    pub log: String,
    /// The size witnessed.
    pub size: u64,
    /// The root witnessed.
    pub root: String,
    /// The witness (peer id); must be the signer.
    pub witness: String,
    /// When (RFC 3339).
    pub time: String,
}

impl Document for Cosignature {
    const TYPE: &'static str = "cosignature";
}

/// An alarm raised by witnessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alarm {
    /// When (RFC 3339).
    pub time: String,
    /// The log that forked (peer id).
    pub log: String,
    /// The head we held from it.
    pub held: Signed<TreeHead>,
    /// The head it presented that does not extend it.
    pub presented: Signed<TreeHead>,
    /// What failed.
    pub cause: String,
    /// Set once an operator resolved it (`yrd provenance resolve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<AlarmResolution>,
}

/// How an operator resolved an alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlarmResolution {
    /// When (RFC 3339).
    pub time: String,
    /// What the operator found, e.g. "restored from the backup of 2026-11-20; confirmed with
    /// the Jiangsu operator by phone".
    pub note: String,
    /// The head taken as the new baseline of that log.
    pub baseline_size: u64,
}

/// Filters of a query of the provenance log; every given one must hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Query {
    /// Dataset (or standard) id.
    pub dataset: Option<String>,
    /// Counterparty peer id.
    pub peer: Option<String>,
    /// Kind (kebab-case).
    pub kind: Option<String>,
    /// At or after (RFC 3339).
    pub since: Option<String>,
    /// At or before (RFC 3339).
    pub until: Option<String>,
    /// Most records returned (default 1000).
    pub limit: Option<usize>,
}

/// One record of a bundle with its inclusion proof in the bundle's head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    /// The record.
    pub record: ProvenanceRecord,
    /// Inclusion proof (audit path, bottom-up), lowercase hex hashes.
    pub proof: Vec<String>,
}

/// A witness's cosignature with the consistency proof from its size to the head's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleWitness {
    /// The cosignature.
    pub cosignature: Signed<Cosignature>,
    /// Consistency proof from `cosignature.size` to the head's size (hex, bottom-up).
    pub consistency: Vec<String>,
}

/// Format tag of an evidence bundle.
pub const BUNDLE_FORMAT: &str = "yrd-evidence/1";

/// An evidence bundle: everything a third party needs to check, offline, what a node's log
/// says about some steps (see `docs/evidence.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceBundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The log's signed tree head the proofs lead to.
    pub head: Signed<TreeHead>,
    /// The records, each with its inclusion proof.
    pub entries: Vec<BundleEntry>,
    /// The signed documents the records name.
    pub documents: Vec<AnySigned>,
    /// The parties' signed NodeInfos (public keys, regions, organisations).
    pub parties: Vec<Signed<NodeInfo>>,
    /// Heads of this log other members witnessed.
    #[serde(default)]
    pub witnesses: Vec<BundleWitness>,
}

/// Why a bundle did not verify: names exactly what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BundleError(pub String);

fn fail(msg: impl Into<String>) -> BundleError {
    BundleError(msg.into())
}

fn parse_hash(s: &str, what: &str) -> Result<Hash, BundleError> {
    if !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(fail(format!("{what}: not lowercase hex")));
    }
    let bytes = hex::decode(s).map_err(|_| fail(format!("{what}: not hex")))?;
    bytes
        .try_into()
        .map_err(|_| fail(format!("{what}: not a 32-byte hash")))
}

fn parse_hashes(list: &[String], what: &str) -> Result<Vec<Hash>, BundleError> {
    list.iter()
        .enumerate()
        .map(|(i, h)| parse_hash(h, &format!("{what}[{i}]")))
        .collect()
}

/// What a verified bundle establishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VerifiedBundle {
    /// The log owner's NodeInfo.
    pub log: NodeInfo,
    /// Its head.
    pub head: TreeHead,
    /// Witnesses whose cosignatures verified (peer ids).
    pub witnesses: Vec<String>,
    /// One plain line per record.
    pub account: Vec<String>,
}

fn party_label(parties: &HashMap<String, NodeInfo>, peer: &str) -> String {
    match parties.get(peer) {
        Some(p) => format!("{} ({})", p.region.name_en(), p.region.code()),
        None => format!("peer {peer}"),
    }
}

fn short_time(t: &str) -> String {
    // "2026-11-26T14:03:09Z" → "2026-11-26 14:03"
    t.get(..16)
        .map(|s| s.replace('T', " "))
        .unwrap_or_else(|| t.to_string())
}

/// Verifies a bundle as read from its JSON: it must also be in exactly the form it was written
/// in (no member null, missing or re-encoded), so that what was hashed is what is shown.
pub fn verify_bundle_value(value: &serde_json::Value) -> Result<VerifiedBundle, BundleError> {
    let bundle: EvidenceBundle = serde_json::from_value(value.clone())
        .map_err(|e| fail(format!("not an evidence bundle: {e}")))?;
    let exact = |a: &serde_json::Value, b: &serde_json::Value| matches!((canonical::canonicalize(a), canonical::canonicalize(b)), (Ok(x), Ok(y)) if x == y);
    let again = serde_json::to_value(&bundle).map_err(|e| fail(e.to_string()))?;
    if !exact(&again, value) {
        if let (Some(read), Some(written)) =
            (value["entries"].as_array(), again["entries"].as_array())
        {
            for (i, (a, b)) in read.iter().zip(written).enumerate() {
                if !exact(a, b) {
                    return Err(fail(format!(
                        "entry {i}: the record is not in its exact form (a member is null, \
                         missing or re-encoded)"
                    )));
                }
            }
        }
        return Err(fail(
            "the bundle is not in its exact form (a member is null, missing or re-encoded)",
        ));
    }
    verify_bundle(&bundle)
}

/// Checks every signature, inclusion proof, document digest and cosignature of a bundle, and
/// writes a plain account of the steps. Any alteration of a byte that matters fails, naming it.
pub fn verify_bundle(bundle: &EvidenceBundle) -> Result<VerifiedBundle, BundleError> {
    if bundle.format != BUNDLE_FORMAT {
        return Err(fail(format!(
            "format {:?}: expected {BUNDLE_FORMAT}",
            bundle.format
        )));
    }
    // Parties: each NodeInfo self-signed by the key its peer id names.
    let mut parties: HashMap<String, NodeInfo> = HashMap::new();
    let mut keys: HashMap<String, String> = HashMap::new();
    for (i, p) in bundle.parties.iter().enumerate() {
        p.verify()
            .map_err(|e| fail(format!("party {i} NodeInfo signature: {e}")))?;
        let key = p
            .signer_key()
            .map_err(|e| fail(format!("party {i} key: {e}")))?;
        let peer = crate::identity::peer_id_of(&key)
            .ok_or_else(|| fail(format!("party {i}: invalid key")))?;
        if peer.to_string() != p.document.peer_id {
            return Err(fail(format!(
                "party {i}: NodeInfo names {} but is signed by {peer}",
                p.document.peer_id
            )));
        }
        if keys
            .insert(p.document.peer_id.clone(), p.signer.clone())
            .is_some()
        {
            return Err(fail(format!(
                "party {i}: {} is listed twice",
                p.document.peer_id
            )));
        }
        parties.insert(p.document.peer_id.clone(), p.document.clone());
    }
    // The head: signed by the log's owner, a listed party.
    let head = &bundle.head;
    head.verify()
        .map_err(|e| fail(format!("tree head signature: {e}")))?;
    let log = head.document.log.clone();
    let log_info = parties
        .get(&log)
        .cloned()
        .ok_or_else(|| fail(format!("the log owner {log} is not among the parties")))?;
    if keys.get(&log) != Some(&head.signer) {
        return Err(fail("tree head is not signed by the log owner's key"));
    }
    let root = parse_hash(&head.document.root, "tree head root")?;
    // Documents by digest, each signature checked.
    let mut docs: HashMap<String, &AnySigned> = HashMap::new();
    let owner_key = head.signer.clone();
    for (i, d) in bundle.documents.iter().enumerate() {
        d.verify()
            .map_err(|e| fail(format!("document {i} ({}) signature: {e}", d.doc_type)))?;
        let digest = d.digest().map_err(|e| fail(format!("document {i}: {e}")))?;
        docs.insert(hex::encode(digest), d);
    }
    // Records: inclusion in the head, owner, documents present.
    let mut account = Vec::new();
    for (i, entry) in bundle.entries.iter().enumerate() {
        let r = &entry.record;
        let at = format!("record seq {}", r.seq);
        if r.actor != log {
            return Err(fail(format!(
                "{at}: actor {} is not the log owner",
                r.actor
            )));
        }
        let leaf = r
            .leaf_hash()
            .map_err(|e| fail(format!("{at}: cannot canonicalize: {e}")))?;
        let proof = parse_hashes(&entry.proof, &format!("entry {i} proof"))?;
        merkle::verify_inclusion(&leaf, r.seq, head.document.size, &proof, &root).map_err(|e| {
            fail(format!(
                "{at}: not in the log at size {}: {e}",
                head.document.size
            ))
        })?;
        for d in &r.documents {
            let doc = docs.get(&d.digest).ok_or_else(|| {
                fail(format!(
                    "{at}: names {} {} which is not in the bundle",
                    d.doc_type, d.digest
                ))
            })?;
            if doc.doc_type != d.doc_type {
                return Err(fail(format!(
                    "{at}: document {} is a {}, the record says {}",
                    d.digest, doc.doc_type, d.doc_type
                )));
            }
            // A step's documents are signed by one of its two parties.
            let counterparty_key = r.counterparty.as_ref().and_then(|c| keys.get(c));
            let by_owner = doc.signer == owner_key;
            let by_counterparty = counterparty_key == Some(&doc.signer);
            if !by_owner && !by_counterparty {
                return Err(fail(format!(
                    "{at}: {} {} is signed by neither the log owner nor the counterparty",
                    d.doc_type, d.digest
                )));
            }
            if r.kind == RecordKind::ReceiptReceived && d.doc_type == "receipt" && !by_counterparty
            {
                return Err(fail(format!(
                    "{at}: the receipt is not signed by the counterparty"
                )));
            }
        }
        account.push(describe(r, &parties, &docs, &bundle.entries));
    }
    // Witnesses: cosignatures by parties, consistent with the head.
    let mut witnesses: Vec<String> = Vec::new();
    for (i, w) in bundle.witnesses.iter().enumerate() {
        let c = &w.cosignature;
        c.verify()
            .map_err(|e| fail(format!("witness {i} cosignature signature: {e}")))?;
        if c.document.witness == log {
            return Err(fail(format!(
                "witness {i}: the log owner cannot witness itself"
            )));
        }
        if c.document.size == 0 {
            return Err(fail(format!(
                "witness {i}: a cosignature of the empty log proves nothing"
            )));
        }
        if witnesses.contains(&c.document.witness) {
            return Err(fail(format!(
                "witness {i}: {} is listed twice",
                c.document.witness
            )));
        }
        if keys.get(&c.document.witness) != Some(&c.signer) {
            return Err(fail(format!(
                "witness {i}: cosignature not signed by the witness's listed key"
            )));
        }
        if c.document.log != log {
            return Err(fail(format!("witness {i}: cosigns another log")));
        }
        let old = parse_hash(&c.document.root, &format!("witness {i} root"))?;
        let proof = parse_hashes(&w.consistency, &format!("witness {i} consistency"))?;
        merkle::verify_consistency(c.document.size, head.document.size, &old, &root, &proof)
            .map_err(|e| {
                fail(format!(
                    "witness {i}: the head is not consistent with what {} witnessed at size {}: {e}",
                    c.document.witness, c.document.size
                ))
            })?;
        witnesses.push(c.document.witness.clone());
    }
    Ok(VerifiedBundle {
        log: log_info,
        head: head.document.clone(),
        witnesses,
        account,
    })
}

/// Whether a delivery record says only part of the file left.
fn sent_part(r: &ProvenanceRecord) -> bool {
    matches!((r.chunks_sent, r.chunk_count), (Some(s), Some(n)) if s < n)
}

/// "; 3 of 3 chunks (2500000 bytes) sent, session closed", when the record counts them.
fn sent_amount(r: &ProvenanceRecord) -> String {
    let (Some(sent), Some(count), Some(bytes)) = (r.chunks_sent, r.chunk_count, r.bytes_sent)
    else {
        return String::new();
    };
    let ended = r.ended.map(SessionEnd::name).unwrap_or_default();
    let cause = r
        .cause
        .as_deref()
        .map(|c| format!(": {c}"))
        .unwrap_or_default();
    format!("; {sent} of {count} chunks ({bytes} bytes) sent, session {ended}{cause}")
}

fn describe(
    r: &ProvenanceRecord,
    parties: &HashMap<String, NodeInfo>,
    docs: &HashMap<String, &AnySigned>,
    entries: &[BundleEntry],
) -> String {
    let me = party_label(parties, &r.actor);
    let other = r
        .counterparty
        .as_deref()
        .map(|p| party_label(parties, p))
        .unwrap_or_else(|| "-".into());
    let what = match (&r.dataset, r.version) {
        (Some(d), Some(v)) => format!("{d} v{v}"),
        (Some(d), None) => d.clone(),
        _ => String::new(),
    };
    let digest = r
        .data_digest
        .as_deref()
        .map(|d| format!("digest {}…", d.get(..12).unwrap_or(d)))
        .unwrap_or_default();
    let when = short_time(&r.time);
    let grant = r
        .grant
        .as_deref()
        .map(|g| format!(" under grant {}", g.get(..12).unwrap_or(g)))
        .unwrap_or_default();
    let purpose = r
        .purpose
        .as_deref()
        .map(|p| format!(" for purpose {p:?}"))
        .unwrap_or_default();
    match r.kind {
        RecordKind::DeliveryServed => {
            let receipt = entries
                .iter()
                .map(|e| &e.record)
                .find(|x| {
                    x.kind == RecordKind::ReceiptReceived
                        && x.counterparty == r.counterparty
                        && x.dataset == r.dataset
                        && x.version == r.version
                        && x.data_digest == r.data_digest
                })
                .map(|x| {
                    let signed = x
                        .documents
                        .iter()
                        .any(|d| d.doc_type == "receipt" && docs.contains_key(&d.digest));
                    format!(
                        "; receipt {}by {} at {}",
                        if signed { "signed " } else { "" },
                        other,
                        short_time(&x.time)
                    )
                })
                .unwrap_or_else(|| "; no receipt in this bundle".into());
            format!(
                "{when} {me} {} {what} ({digest}, {}{}) to {other}{grant}{purpose}{receipt}",
                if sent_part(r) {
                    "sent part of"
                } else {
                    "delivered"
                },
                r.fields.as_deref().unwrap_or("all fields"),
                sent_amount(r)
            )
        }
        RecordKind::DatasetReceived => {
            format!("{when} {me} received {what} ({digest}) from {other}{grant}, verified")
        }
        RecordKind::Refused => format!(
            "{when} {me} refused {other}{}: {}",
            if what.is_empty() {
                String::new()
            } else {
                format!(" ({what})")
            },
            r.cause.as_deref().unwrap_or("")
        ),
        kind => {
            let mut line = format!("{when} {me} {}", kind.name().replace('-', " "));
            if !what.is_empty() {
                line.push_str(&format!(" {what}"));
            }
            if r.counterparty.is_some() {
                line.push_str(&format!(" with {other}"));
            }
            line.push_str(&grant);
            line.push_str(&purpose);
            if let Some(c) = &r.cause {
                line.push_str(&format!(": {c}"));
            }
            line
        }
    }
}
