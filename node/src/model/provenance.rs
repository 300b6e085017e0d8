//! Provenance (R6, R8, R10, R11): the record of one step, the signed tree head of a node's
//! Merkle log, a witness's cosignature, a witness alarm and its resolution, the filters of a
//! query of the log, and the evidence bundle with its offline verification (`yrd verify`).
//! Pure: no I/O. The log itself lives in `store::provenance`; the bundle format
//! is specified in `docs/evidence.md`.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::canonical;
use crate::model::charter::{CharterMember, SignedCharter};
use crate::model::membership::{Membership, Standing};
use crate::model::merkle::{self, Hash};
use crate::model::node_info::NodeInfo;
use crate::model::query::QueryMode;
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
    /// Caller: we sent a query and got its signed answer (or a refusal, in `cause`).
    QuerySent,
    /// Provider: we answered a query with a signed answer.
    QueryAnswered,
    /// Provider: we refused a query (`cause` says why).
    QueryRefused,
    /// A new version of the federation charter was applied: `version` is its number, `cause`
    /// names its digest and who it came from (`counterparty`, absent when an operator applied it).
    CharterApplied,
    /// Two validly signed documents of one charter version were seen (`version`; `cause` names
    /// both digests): nothing further is applied and no new grant issued until it is resolved.
    CharterEquivocation,
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
    /// Queries: `verify` or `lookup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_mode: Option<QueryMode>,
    /// Queries: the keyed hash of the looked-up key (dataset, field and value under this
    /// node's query secret), so the calls about one key can be listed without the value being
    /// kept in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hash: Option<String>,
    /// Queries: whether the answer found a record with the key (`false`: the signed "not
    /// found"); absent on a refused or unanswered call. The key itself is named only by
    /// `key_hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<bool>,
    /// The API client that made the call: queries (`query-sent`) and fetches (`dataset-received`,
    /// and the record of a fetch that failed), caller side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,

    /// The seq of the previous record about the same `dataset`, or this record's own `seq` when
    /// it is the first about it; set by the log's writer on every record with a `dataset`, so
    /// that a bundle can prove it holds every record about a dataset. Absent on records with no
    /// `dataset` and on records written before the log linked them (completeness cannot be
    /// shown across those).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_about_dataset: Option<u64>,
    /// The signed documents this step issued or received; kept with the log.
    #[serde(default)]
    pub documents: Vec<DocRef>,
}

impl ProvenanceRecord {
    /// A record of `kind` by `actor` in `actor_region` with every optional field empty; the log's
    /// writer sets `seq`, `time` and the dataset link when it appends it.
    pub fn new(kind: RecordKind, actor: String, actor_region: Region) -> ProvenanceRecord {
        ProvenanceRecord {
            seq: 0,
            kind,
            time: String::new(),
            actor,
            actor_region,
            counterparty: None,
            counterparty_region: None,
            dataset: None,
            version: None,
            grant: None,
            fields: None,
            purpose: None,
            legal_basis: None,
            data_digest: None,
            cause: None,
            chunks_sent: None,
            chunk_count: None,
            bytes_sent: None,
            ended: None,
            query_mode: None,
            key_hash: None,
            found: None,
            client: None,
            prev_about_dataset: None,
            documents: Vec::new(),
        }
    }

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

/// The log owner's statement, at its head of `size` records with `root`, that its latest
/// record about `dataset` is `latest`: the anchor from which a bundle's chain of
/// `prev_about_dataset` links proves that it holds every record about the dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetHead {
    /// The log's owner (peer id); must be the signer.
    pub log: String,
    /// The dataset (or standard id) the statement is about.
    pub dataset: String,
    /// The size of the head it is made at.
    pub size: u64,
    /// That head's root.
    pub root: String,
    /// The seq of the latest record about `dataset` below `size`.
    pub latest: u64,
    /// When it was signed (RFC 3339).
    pub time: String,
}

impl Document for DatasetHead {
    const TYPE: &'static str = "dataset-head";
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
    /// Queries: only records of calls about this keyed hash of a key.
    #[serde(default)]
    pub key_hash: Option<String>,
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
    /// For a bundle of a dataset: the owner's statement of its latest record about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_head: Option<Signed<DatasetHead>>,
    /// When the exporting node runs on a federation charter: every version it holds, genesis
    /// first (at most [`MAX_BUNDLE_CHARTERS`](crate::model::membership::MAX_BUNDLE_CHARTERS)),
    /// by which each signer's membership and region at the time it signed are checked
    /// (docs/evidence.md, step 9). Absent from a node without a charter: membership not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charters: Option<Vec<SignedCharter>>,
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
    /// The log owner's NodeInfo; with a charter, its organisation and region are the charter's
    /// for the owner's key at the head's time.
    pub log: NodeInfo,
    /// Its head.
    pub head: TreeHead,
    /// Witnesses whose cosignatures verified (peer ids), in the bundle's order.
    pub witnesses: Vec<String>,
    /// The size each of `witnesses` cosigned.
    pub witnessed_sizes: Vec<u64>,
    /// True when the bundle proves it holds every record about its dataset up to the head.
    pub complete: bool,
    /// One line saying what the bundle proves about completeness, or naming the gap.
    pub completeness: String,
    /// One plain line per record.
    pub account: Vec<String>,
    /// One line saying whether, and against which charter, membership was checked.
    #[serde(default)]
    pub membership: String,
    /// Membership checks that could not be decided (signatures made before the charter's
    /// genesis was issued), each named; such a witness is not counted as a member.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The digest of the charter genesis membership was checked against, when the bundle
    /// carries a charter: the federation's anchor, to compare with one obtained out of band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis: Option<String>,
}

impl VerifiedBundle {
    /// With `expected` (a genesis digest obtained out of band), refuses a bundle whose charter
    /// chain does not start from it, or that carries none (docs/evidence.md, step 10).
    pub fn check_genesis(&self, expected: Option<&str>) -> Result<(), BundleError> {
        let Some(expected) = expected else {
            return Ok(());
        };
        match &self.genesis {
            None => Err(fail(format!(
                "the bundle carries no charter, so it cannot be from the federation of genesis {expected}"
            ))),
            Some(g) if g != expected => Err(fail(format!(
                "the bundle's charter starts from genesis {g}, not from the federation's {expected}"
            ))),
            Some(_) => Ok(()),
        }
    }
}

fn party_label(parties: &HashMap<String, NodeInfo>, peer: &str) -> String {
    match parties.get(peer) {
        Some(p) => format!("{} ({})", p.region.name_en(), p.region.code()),
        None => format!("peer {peer}"),
    }
}

/// How the account names a party: by the charter's region for its key at the time (a key the
/// charter does not list is `peer ID (not a member)`, one before its genesis
/// `LABEL (not checked)`), or without a charter by its self-signed NodeInfo.
struct Labels<'a> {
    parties: &'a HashMap<String, NodeInfo>,
    membership: Option<&'a Membership>,
}

impl Labels<'_> {
    fn label(&self, peer: &str, time: &str) -> String {
        let Some(m) = self.membership else {
            return party_label(self.parties, peer);
        };
        match m.standing(peer, time) {
            Ok(Standing::Member { member, .. }) => {
                format!("{} ({})", member.region.name_en(), member.region.code())
            }
            Ok(Standing::NotMember { .. }) => format!("peer {peer} (not a member)"),
            Ok(Standing::BeforeGenesis) | Err(_) => {
                format!("{} (not checked)", party_label(self.parties, peer))
            }
        }
    }
}

fn not_member(what: &str, peer: &str, time: &str, version: u64) -> BundleError {
    fail(format!(
        "{what} {peer} is not a member of the charter in force at {time} (version {version})"
    ))
}

fn region_mismatch(
    at: &str,
    field: &str,
    found: Region,
    whose: &str,
    peer: &str,
    (member, version): (&CharterMember, u64),
) -> BundleError {
    fail(format!(
        "{at}: region mismatch: {field} is {}, but charter version {version} binds {whose} {peer} (member {}) to {}",
        found.code(),
        member.member_id,
        member.region.code()
    ))
}

/// The standing of `peer` at `time` under the bundle's charter; an unreadable time fails.
fn standing<'m>(
    m: &'m Membership,
    what: &str,
    peer: &str,
    time: &str,
) -> Result<Standing<'m>, BundleError> {
    m.standing(peer, time)
        .map_err(|e| fail(format!("{what} {peer}: {e}")))
}

/// `what` `peer` signed at `time`: its member and the version in force when the charter lists
/// it; `None` with a warning when the time is before the genesis; an error when the version
/// in force does not list it.
fn signer_member<'m>(
    m: &'m Membership,
    what: &str,
    peer: &str,
    time: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<(&'m CharterMember, u64)>, BundleError> {
    match standing(m, what, peer, time)? {
        Standing::Member { member, version } => Ok(Some((member, version))),
        Standing::NotMember { version } => Err(not_member(what, peer, time, version)),
        Standing::BeforeGenesis => {
            warnings.push(format!(
                "{what} {peer} signed at {time}, before the charter's genesis was issued ({}): membership not checked",
                m.genesis().document().issued
            ));
            Ok(None)
        }
    }
}

/// Step 9 for one record: the log owner was a member at the record's time, with its
/// `actor_region`; so was the counterparty, with its `counterparty_region` when given (a
/// `refused` record may name a non-member: refusing it is what it records). Returns false when
/// the record was made before the genesis (not decided).
fn check_record_members(m: &Membership, r: &ProvenanceRecord) -> Result<bool, BundleError> {
    let at = format!("record seq {}", r.seq);
    let owner_what = format!("{at}: the log owner");
    match standing(m, &owner_what, &r.actor, &r.time)? {
        Standing::BeforeGenesis => return Ok(false),
        Standing::NotMember { version } => {
            return Err(not_member(&owner_what, &r.actor, &r.time, version));
        }
        Standing::Member { member, version } => {
            if member.region != r.actor_region {
                return Err(region_mismatch(
                    &at,
                    "actor_region",
                    r.actor_region,
                    "the log owner",
                    &r.actor,
                    (member, version),
                ));
            }
        }
    }
    let Some(c) = &r.counterparty else {
        return Ok(true);
    };
    let what = format!("{at}: the counterparty");
    match standing(m, &what, c, &r.time)? {
        Standing::Member { member, version } => match r.counterparty_region {
            Some(region) if region != member.region => Err(region_mismatch(
                &at,
                "counterparty_region",
                region,
                "the counterparty",
                c,
                (member, version),
            )),
            _ => Ok(true),
        },
        Standing::NotMember { version } if r.kind != RecordKind::Refused => {
            Err(not_member(&what, c, &r.time, version))
        }
        _ => Ok(true),
    }
}

/// The account's membership line (docs/evidence.md, "The account").
fn membership_line(
    m: Option<&Membership>,
    owner: Option<&CharterMember>,
    member_witnesses: usize,
    witnesses: usize,
) -> String {
    let Some(m) = m else {
        return "membership: not checked (the bundle carries no charter; parties are as their \
                self-signed NodeInfo describes them)"
            .into();
    };
    let owner = match owner {
        Some(o) => format!("member {} {}", o.member_id, o.organisation),
        None => "not checked".into(),
    };
    format!(
        "membership: checked against charter {} versions 1 to {} (genesis {}); log owner: {owner}; member witnesses: {member_witnesses} of {witnesses}",
        m.genesis().document().federation.id,
        m.latest().version(),
        m.genesis().digest
    )
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
    if let Some(at) = canonical::unsafe_integer(value, "bundle") {
        return Err(fail(at));
    }
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

/// The peer id of a document's signer.
fn signer_peer(doc: &AnySigned) -> Result<String, BundleError> {
    doc.signer_key()
        .ok()
        .and_then(|k| crate::identity::peer_id_of(&k))
        .map(|p| p.to_string())
        .ok_or_else(|| fail(format!("{} signed by an invalid key", doc.doc_type)))
}

/// Whether the log owner is the provider (true) or the requester, grantee or receiver (false)
/// of the step a record of `kind` records; `None` for kinds outside an exchange.
fn owner_is_provider(kind: RecordKind) -> Option<bool> {
    use RecordKind::*;
    match kind {
        DatasetPublished | RequestReceived | GrantIssued | DenialIssued | GrantRevoked
        | DeliveryServed | ReceiptReceived => Some(true),
        RequestSent | GrantReceived | DenialReceived | RevocationReceived | DatasetReceived => {
            Some(false)
        }
        _ => None,
    }
}

/// A record value a document member is compared with.
#[derive(Clone, Copy)]
enum Field {
    /// The provider of the step (the owner or the counterparty, by kind).
    Provider,
    /// The requester, grantee or receiver of the step.
    Client,
    /// The record's `dataset`.
    Dataset,
    /// The record's `grant`.
    Grant,
    /// The record's `version`.
    Version,
    /// The record's `data_digest`.
    DataDigest,
}

/// Document members and the record values they must equal.
type Agreement = &'static [(&'static str, Field)];

/// Per document type made in an exchange: the party that makes it (its signer), and which of its
/// members must equal which record value (docs/evidence.md, step 6.5).
#[rustfmt::skip]
const MADE_BY: &[(&str, Field, Agreement)] = &[
    ("access-request", Field::Client, &[("requester", Field::Client), ("provider", Field::Provider), ("dataset", Field::Dataset)]),
    ("grant", Field::Provider, &[("provider", Field::Provider), ("grantee", Field::Client), ("dataset", Field::Dataset), ("id", Field::Grant)]),
    ("denial", Field::Provider, &[("provider", Field::Provider), ("requester", Field::Client), ("dataset", Field::Dataset)]),
    ("revocation", Field::Provider, &[("provider", Field::Provider), ("grantee", Field::Client), ("grant_id", Field::Grant)]),
    ("receipt", Field::Client, &[("receiver", Field::Client), ("provider", Field::Provider), ("dataset", Field::Dataset), ("version", Field::Version), ("data_digest", Field::DataDigest), ("grant_id", Field::Grant)]),
    ("manifest", Field::Provider, &[("publisher", Field::Provider), ("dataset", Field::Dataset), ("version", Field::Version), ("digest", Field::DataDigest)]),
];

/// The role's name in messages.
fn role_name(field: Field, doc_type: &str) -> &'static str {
    match (field, doc_type) {
        (Field::Client, "receipt") => "receiver",
        (Field::Client, _) => "requester",
        (_, "manifest") => "publisher",
        _ => "provider",
    }
}

/// Checks that the party the record says made `doc` signed it, and that the document's members
/// agree with the record (docs/evidence.md, step 6.5).
fn check_document(
    r: &ProvenanceRecord,
    doc: &AnySigned,
    digest: &str,
    owner_key: &str,
    membership: Option<&Membership>,
) -> Result<(), BundleError> {
    // Two peer ids name one party: the same, or (under a charter) keys of one member, as a
    // grant naming a grantee's earlier key and a record naming its key in force.
    let same = |a: &str, b: &str| a == b || membership.is_some_and(|m| m.same_member(a, b));
    let at = format!("record seq {}", r.seq);
    let name = format!("{} {digest}", doc.doc_type);
    let owner = Some(r.actor.as_str());
    let other = r.counterparty.as_deref();
    let side = owner_is_provider(r.kind);
    let (provider, client) = match side {
        Some(true) => (owner, other),
        Some(false) => (other, owner),
        None => (None, None),
    };
    let value = |f: Field| -> Option<serde_json::Value> {
        match f {
            Field::Provider => provider.map(Into::into),
            Field::Client => client.map(Into::into),
            Field::Dataset => r.dataset.as_deref().map(Into::into),
            Field::Grant => r.grant.as_deref().map(Into::into),
            Field::Version => r.version.map(Into::into),
            Field::DataDigest => r.data_digest.as_deref().map(Into::into),
        }
    };
    let rule = MADE_BY
        .iter()
        .find(|(t, _, _)| *t == doc.doc_type && side.is_some());
    type Wanted<'a> = Vec<(&'a str, Option<serde_json::Value>)>;
    let (role, maker, members): (&str, Option<&str>, Wanted) = match rule {
        Some((t, by, members)) => (
            role_name(*by, t),
            match by {
                Field::Client => client,
                _ => provider,
            },
            members.iter().map(|(m, f)| (*m, value(*f))).collect(),
        ),
        // A head of another log (witness alarms and their resolution): that log's owner's.
        None if doc.doc_type == "tree-head" => {
            ("log owner", other, vec![("log", other.map(Into::into))])
        }
        None => {
            // Documents outside an exchange (catalogue, schema, …): one of the two parties.
            let by_owner = doc.signer == owner_key || signer_peer(doc).is_ok_and(|p| p == r.actor);
            let by_other = other.is_some_and(|o| signer_peer(doc).is_ok_and(|p| p == o));
            if !by_owner && !by_other {
                return Err(fail(format!(
                    "{at}: {name} is signed by neither the log owner nor the counterparty"
                )));
            }
            return Ok(());
        }
    };
    let maker = maker.ok_or_else(|| {
        fail(format!(
            "{at}: names {name}, made by the {role}, but has no counterparty"
        ))
    })?;
    let signer = signer_peer(doc)?;
    if !same(&signer, maker) {
        return Err(fail(format!(
            "{at}: {name} is signed by {signer}, not by the {role} {maker}"
        )));
    }
    for (member, wanted) in members {
        let Some(wanted) = wanted else { continue };
        let found = doc.document.get(member);
        let agrees = match (found, &wanted) {
            (Some(serde_json::Value::String(f)), serde_json::Value::String(w))
                if matches!(
                    member,
                    "provider" | "grantee" | "requester" | "receiver" | "publisher" | "log"
                ) =>
            {
                same(f, w)
            }
            (found, wanted) => found == Some(wanted),
        };
        if !agrees {
            let found = found.map_or("nothing".to_string(), |v| v.to_string());
            return Err(fail(format!(
                "{at}: {name} says {member} {found}, the record says {wanted}"
            )));
        }
    }
    Ok(())
}

/// Checks the bundle's dataset-head and follows the `prev_about_dataset` links from its latest
/// record back (docs/evidence.md, step 8): returns whether every record about the dataset up to
/// the head is in the bundle, and the account's completeness line. A contradiction between the
/// links and the records the bundle holds fails verification; a record the bundle lacks is named.
fn completeness(bundle: &EvidenceBundle, owner_key: &str) -> Result<(bool, String), BundleError> {
    let Some(dh) = &bundle.dataset_head else {
        return Ok((
            false,
            "completeness: cannot be shown (the bundle has no dataset-head; it is a selection of records)"
                .into(),
        ));
    };
    dh.verify()
        .map_err(|e| fail(format!("dataset-head signature: {e}")))?;
    let (head, s) = (&bundle.head.document, &dh.document);
    if dh.signer != owner_key || s.log != head.log {
        return Err(fail("dataset-head is not the log owner's"));
    }
    if s.size != head.size || s.root != head.root {
        return Err(fail(format!(
            "dataset-head is made at size {} (root {}), not at the bundle's head",
            s.size, s.root
        )));
    }
    if s.latest >= s.size {
        return Err(fail(format!(
            "dataset-head names seq {} as the latest record, beyond the head's {} records",
            s.latest, s.size
        )));
    }
    let x = &s.dataset;
    let by_seq: HashMap<u64, &ProvenanceRecord> = bundle
        .entries
        .iter()
        .map(|e| (e.record.seq, &e.record))
        .collect();
    let about = |r: &ProvenanceRecord| r.dataset.as_deref() == Some(x.as_str());
    if let Some(r) = bundle
        .entries
        .iter()
        .map(|e| &e.record)
        .find(|r| about(r) && r.seq > s.latest)
    {
        return Err(fail(format!(
            "record seq {} is about {x}, after the latest record about it the dataset-head names ({})",
            r.seq, s.latest
        )));
    }
    let mut visited = std::collections::HashSet::new();
    let (mut cur, mut named_by) = (s.latest, None::<u64>);
    // `floor`: records about X at or below it are beyond what the links can show.
    let (floor, complete, line) = loop {
        let Some(r) = by_seq.get(&cur).filter(|r| about(r)) else {
            if let Some(other) = by_seq.get(&cur) {
                return Err(fail(format!(
                    "record seq {} names seq {cur} as the previous record about {x}, but it is about {}",
                    named_by.unwrap_or(cur),
                    other.dataset.as_deref().unwrap_or("nothing")
                )));
            }
            let by = match named_by {
                Some(n) => format!("named by record seq {n}"),
                None => format!("the latest about it at head {}", s.size),
            };
            break (
                Some(cur),
                false,
                format!("INCOMPLETE: record seq {cur} about {x} is not in this bundle ({by})"),
            );
        };
        visited.insert(cur);
        match r.prev_about_dataset {
            None => {
                break (
                    Some(cur),
                    false,
                    format!(
                        "complete from seq {cur}: every record about {x} from seq {cur} up to head {} is in this bundle; before seq {cur} the log did not link records about {x}, so completeness cannot be shown there",
                        s.size
                    ),
                );
            }
            Some(p) if p == cur => {
                break (
                    None,
                    true,
                    format!(
                        "complete: every record about {x} up to head {} ({} records)",
                        s.size,
                        visited.len()
                    ),
                );
            }
            Some(p) => {
                named_by = Some(cur);
                cur = p;
            }
        }
    };
    if let Some(r) = bundle
        .entries
        .iter()
        .map(|e| &e.record)
        .find(|r| about(r) && !visited.contains(&r.seq) && floor.is_none_or(|f| r.seq > f))
    {
        return Err(fail(format!(
            "record seq {} is about {x}, but the links between the records about it skip it",
            r.seq
        )));
    }
    Ok((complete, line))
}

/// Checks every signature, inclusion proof, document digest and cosignature of a bundle, and
/// writes a plain account of the steps. Any alteration of a byte that matters fails, naming it.
pub fn verify_bundle(bundle: &EvidenceBundle) -> Result<VerifiedBundle, BundleError> {
    let value = serde_json::to_value(bundle).map_err(|e| fail(e.to_string()))?;
    if let Some(at) = canonical::unsafe_integer(&value, "bundle") {
        return Err(fail(at));
    }
    if bundle.format != BUNDLE_FORMAT {
        return Err(fail(format!(
            "format {:?}: expected {BUNDLE_FORMAT}",
            bundle.format
        )));
    }
    // The charter chain, verified from its genesis (step 9 uses it throughout).
    let membership = match &bundle.charters {
        Some(c) => Some(Membership::verify(c).map_err(fail)?),
        None => None,
    };
    let mut warnings: Vec<String> = Vec::new();
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
    let mut log_info = parties
        .get(&log)
        .cloned()
        .ok_or_else(|| fail(format!("the log owner {log} is not among the parties")))?;
    if keys.get(&log) != Some(&head.signer) {
        return Err(fail("tree head is not signed by the log owner's key"));
    }
    let owner_member = match &membership {
        Some(m) => signer_member(
            m,
            "tree head: the log owner",
            &log,
            &head.document.time,
            &mut warnings,
        )?
        .map(|(member, _)| member),
        None => None,
    };
    if let Some(o) = owner_member {
        log_info.organisation = o.organisation.clone();
        log_info.region = o.region;
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
    // Records: in increasing seq, each once; inclusion in the head, owner, documents present,
    // each signed by the party that made it and agreeing with the record.
    let mut previous: Option<u64> = None;
    let mut before_genesis: Vec<String> = Vec::new();
    for (i, entry) in bundle.entries.iter().enumerate() {
        let r = &entry.record;
        let at = format!("record seq {}", r.seq);
        if let Some(p) = previous.filter(|p| r.seq <= *p) {
            return Err(fail(format!(
                "entry {i}: {at} follows seq {p}: entries must be in increasing seq order, each once"
            )));
        }
        previous = Some(r.seq);
        // The owner may have rotated its key: under a charter, an actor of the same member
        // (each checked against the version in force at its record's time below).
        if r.actor != log
            && !membership
                .as_ref()
                .is_some_and(|m| m.same_member(&r.actor, &log))
        {
            return Err(fail(format!(
                "{at}: actor {} is not the log owner",
                r.actor
            )));
        }
        if let Some(m) = &membership {
            if !check_record_members(m, r)? {
                before_genesis.push(r.seq.to_string());
            }
        }
        match (r.prev_about_dataset, &r.dataset) {
            (Some(_), None) => {
                return Err(fail(format!("{at}: prev_about_dataset without a dataset")));
            }
            (Some(p), Some(_)) if p > r.seq => {
                return Err(fail(format!(
                    "{at}: prev_about_dataset {p} is after the record"
                )));
            }
            _ => {}
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
            check_document(r, doc, &d.digest, &owner_key, membership.as_ref())?;
        }
    }
    if let (Some(m), false) = (&membership, before_genesis.is_empty()) {
        warnings.push(format!(
            "records seq {} were made before the charter's genesis was issued ({}): their parties' membership is not checked",
            before_genesis.join(", "),
            m.genesis().document().issued
        ));
    }
    // Witnesses: cosignatures by parties, consistent with the head; with a charter, each a
    // member when it cosigned.
    let mut member_witnesses = 0;
    let mut witnesses: Vec<String> = Vec::new();
    let mut witnessed_sizes: Vec<u64> = Vec::new();
    for (i, w) in bundle.witnesses.iter().enumerate() {
        let c = &w.cosignature;
        c.verify()
            .map_err(|e| fail(format!("witness {i} cosignature signature: {e}")))?;
        let same_member = |peer: &str| {
            peer == log
                || membership
                    .as_ref()
                    .is_some_and(|m| m.same_member(peer, &log))
        };
        if same_member(&c.document.witness) {
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
        // A head witnessed before the owner rotated its key names the log by its earlier key.
        if !same_member(&c.document.log) {
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
        if let Some(m) = &membership {
            let what = format!("witness {i}: the witness");
            let (w, t) = (&c.document.witness, &c.document.time);
            match standing(m, &what, w, t)? {
                Standing::Member { .. } => member_witnesses += 1,
                Standing::NotMember { version } => return Err(not_member(&what, w, t, version)),
                Standing::BeforeGenesis => warnings.push(format!(
                    "{what} {w} signed at {t}, before the charter's genesis was issued ({}): not counted as a member witness",
                    m.genesis().document().issued
                )),
            }
        }
        witnesses.push(c.document.witness.clone());
        witnessed_sizes.push(c.document.size);
    }
    let (complete, completeness) = completeness(bundle, &owner_key)?;
    if let (Some(m), Some(dh)) = (&membership, &bundle.dataset_head) {
        signer_member(
            m,
            "dataset-head: the log owner",
            &log,
            &dh.document.time,
            &mut warnings,
        )?;
    }
    let labels = Labels {
        parties: &parties,
        membership: membership.as_ref(),
    };
    let times: Vec<&str> = bundle
        .witnesses
        .iter()
        .map(|w| w.cosignature.document.time.as_str())
        .collect();
    // The account: one line per record, with the witnesses whose heads cover it (size > seq).
    let account = bundle
        .entries
        .iter()
        .map(|e| {
            let r = &e.record;
            let covering: Vec<String> = witnesses
                .iter()
                .zip(&witnessed_sizes)
                .zip(&times)
                .filter(|((_, size), _)| **size > r.seq)
                .map(|((w, _), t)| labels.label(w, t))
                .collect();
            let coverage = if covering.is_empty() {
                " [not yet witnessed]".to_string()
            } else {
                format!(" [witnessed by {}]", covering.join(", "))
            };
            format!("{}{coverage}", describe(r, &labels, &docs, &bundle.entries))
        })
        .collect();
    let genesis = membership.as_ref().map(|m| m.genesis().digest.clone());
    let membership = membership_line(
        membership.as_ref(),
        owner_member,
        member_witnesses,
        witnesses.len(),
    );
    Ok(VerifiedBundle {
        log: log_info,
        head: head.document.clone(),
        witnesses,
        witnessed_sizes,
        complete,
        completeness,
        account,
        membership,
        warnings,
        genesis,
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
    labels: &Labels<'_>,
    docs: &HashMap<String, &AnySigned>,
    entries: &[BundleEntry],
) -> String {
    let me = labels.label(&r.actor, &r.time);
    let other = r
        .counterparty
        .as_deref()
        .map(|p| labels.label(p, &r.time))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::identity::NodeKey;
    use crate::model::signed::signing_message;
    use ed25519_dalek::Signer;
    use serde_json::{Value, json};

    const DATASET: &str = "sh-medical-settlement";

    struct Party {
        key: NodeKey,
        region: u32,
    }

    impl Party {
        fn new(seed: u8, region: u32) -> Party {
            Party {
                key: NodeKey::from_seed([seed; 32]),
                region,
            }
        }
        fn id(&self) -> String {
            self.key.peer_id().to_string()
        }
        fn sign(&self, doc_type: &str, document: Value) -> AnySigned {
            let message = signing_message(doc_type, &document).unwrap();
            let signature = self.key.signing_key().sign(&message);
            AnySigned {
                doc_type: doc_type.into(),
                version: 1,
                document,
                signer: hex::encode(self.key.signing_key().verifying_key().to_bytes()),
                signature: hex::encode(signature.to_bytes()),
            }
        }
        /// Signs without the checks of [`signing_message`] (for documents it refuses).
        fn sign_unchecked(&self, doc_type: &str, document: Value) -> AnySigned {
            let mut message = format!("yrd/v1/{doc_type}").into_bytes();
            message.extend_from_slice(canonical::canonicalize(&document).unwrap().as_bytes());
            let signature = self.key.signing_key().sign(&message);
            AnySigned {
                doc_type: doc_type.into(),
                version: 1,
                document,
                signer: hex::encode(self.key.signing_key().verifying_key().to_bytes()),
                signature: hex::encode(signature.to_bytes()),
            }
        }
        fn info(&self) -> Signed<NodeInfo> {
            let info = NodeInfo {
                peer_id: self.id(),
                region: Region::from_code(self.region).unwrap(),
                organisation: format!("org {}", self.region),
                addresses: Vec::new(),
                issued_at: "2026-11-26T21:00:00Z".into(),
                software: "yrd/test".into(),
            };
            Signed::sign(info, self.key.signing_key()).unwrap()
        }
    }

    /// A provider's log (Shanghai) of one exchange with a requester (Zhejiang), witnessed by a
    /// third member (Jiangsu): the documents, the records, and what signs them.
    struct Fixture {
        owner: Party,
        requester: Party,
        witness: Party,
        records: Vec<ProvenanceRecord>,
        documents: Vec<AnySigned>,
    }

    fn digest_of(d: &AnySigned) -> String {
        hex::encode(d.digest().unwrap())
    }

    fn reference(d: &AnySigned) -> DocRef {
        DocRef {
            doc_type: d.doc_type.clone(),
            digest: digest_of(d),
        }
    }

    fn record(owner: &Party, kind: RecordKind, counterparty: Option<&Party>) -> ProvenanceRecord {
        ProvenanceRecord {
            time: "2026-11-26T21:09:07Z".into(),
            counterparty: counterparty.map(Party::id),
            counterparty_region: counterparty.map(|p| Region::from_code(p.region).unwrap()),
            dataset: Some(DATASET.into()),
            ..ProvenanceRecord::new(kind, owner.id(), Region::from_code(owner.region).unwrap())
        }
    }

    const DATA: &str = "000d2dc8cbb9595430f493c8b4be41a7ae67d3811d698bfbcc031a971ecbefc1";
    const GRANT: &str = "dd325c9e54a1c88bc18093b65b1244f1";

    fn fixture() -> Fixture {
        let owner = Party::new(1, 310000);
        let requester = Party::new(2, 330000);
        let witness = Party::new(3, 320000);
        let manifest = owner.sign(
            "manifest",
            json!({"dataset": DATASET, "publisher": owner.id(), "version": 1, "digest": DATA}),
        );
        let request = requester.sign(
            "access-request",
            json!({"id": "r1", "requester": requester.id(), "provider": owner.id(),
                   "dataset": DATASET, "purpose": "核验"}),
        );
        let grant = owner.sign(
            "grant",
            json!({"id": GRANT, "provider": owner.id(), "grantee": requester.id(),
                   "dataset": DATASET, "purpose": "核验"}),
        );
        let receipt = requester.sign(
            "receipt",
            json!({"receiver": requester.id(), "provider": owner.id(), "dataset": DATASET,
                   "version": 1, "data_digest": DATA, "grant_id": GRANT}),
        );
        let mut published = record(&owner, RecordKind::DatasetPublished, None);
        published.version = Some(1);
        published.data_digest = Some(DATA.into());
        published.documents = vec![reference(&manifest)];
        let mut received = record(&owner, RecordKind::RequestReceived, Some(&requester));
        received.purpose = Some("核验".into());
        received.documents = vec![reference(&request)];
        let mut issued = record(&owner, RecordKind::GrantIssued, Some(&requester));
        issued.grant = Some(GRANT.into());
        issued.documents = vec![reference(&grant), reference(&request)];
        let mut other = record(&owner, RecordKind::CatalogueIssued, None);
        other.dataset = None;
        let mut delivery = record(&owner, RecordKind::DeliveryServed, Some(&requester));
        delivery.version = Some(1);
        delivery.grant = Some(GRANT.into());
        delivery.data_digest = Some(DATA.into());
        delivery.documents = vec![reference(&manifest), reference(&grant)];
        let mut receipted = record(&owner, RecordKind::ReceiptReceived, Some(&requester));
        receipted.version = Some(1);
        receipted.grant = Some(GRANT.into());
        receipted.data_digest = Some(DATA.into());
        receipted.documents = vec![reference(&receipt)];
        let mut records = vec![published, received, issued, other, delivery, receipted];
        // Seqs and links as the log's writer assigns them.
        let mut latest = None;
        for (i, r) in records.iter_mut().enumerate() {
            r.seq = i as u64;
            if r.dataset.is_some() {
                r.prev_about_dataset = Some(latest.unwrap_or(r.seq));
                latest = Some(r.seq);
            }
        }
        Fixture {
            owner,
            requester,
            witness,
            records,
            documents: vec![manifest, request, grant, receipt],
        }
    }

    impl Fixture {
        /// The bundle of every record about the dataset, proven against the head of the whole
        /// log, with the witness's cosignature at `witnessed` records.
        fn bundle(&self, witnessed: u64) -> Value {
            let mut tree = merkle::MemoryStore::new();
            let leaves: Vec<Hash> = self
                .records
                .iter()
                .map(|r| r.leaf_hash().unwrap())
                .collect();
            tree.append_batch(&leaves).unwrap();
            let size = tree.size();
            let root = hex::encode(merkle::root(size, &tree).unwrap());
            let head = self.owner.sign(
                "tree-head",
                json!({"log": self.owner.id(), "size": size, "root": root,
                       "time": "2026-11-26T21:09:34Z"}),
            );
            let entries: Vec<Value> = self
                .records
                .iter()
                .filter(|r| r.dataset.as_deref() == Some(DATASET))
                .map(|r| {
                    let proof: Vec<String> = merkle::inclusion_proof(r.seq, size, &tree)
                        .unwrap()
                        .iter()
                        .map(hex::encode)
                        .collect();
                    json!({"record": r, "proof": proof})
                })
                .collect();
            let cosignature = self.witness.sign(
                "cosignature",
                json!({"log": self.owner.id(), "size": witnessed,
                       "root": hex::encode(merkle::root(witnessed, &tree).unwrap()),
                       "witness": self.witness.id(), "time": "2026-11-26T21:09:35Z"}),
            );
            let consistency: Vec<String> = merkle::consistency_proof(witnessed, size, &tree)
                .unwrap()
                .iter()
                .map(hex::encode)
                .collect();
            let latest = self
                .records
                .iter()
                .rfind(|r| r.dataset.as_deref() == Some(DATASET))
                .unwrap()
                .seq;
            let dataset_head = self.owner.sign(
                "dataset-head",
                json!({"log": self.owner.id(), "dataset": DATASET, "size": size, "root": root,
                       "latest": latest, "time": "2026-11-26T21:09:36Z"}),
            );
            json!({
                "format": BUNDLE_FORMAT,
                "head": head,
                "entries": entries,
                "documents": self.documents,
                "parties": [self.owner.info(), self.requester.info(), self.witness.info()],
                "witnesses": [{"cosignature": cosignature, "consistency": consistency}],
                "dataset_head": dataset_head,
            })
        }

        /// Replaces document `i` (and every reference to it) with `new`.
        fn replace_document(&mut self, i: usize, new: AnySigned) {
            let old = digest_of(&self.documents[i]);
            for r in &mut self.records {
                for d in &mut r.documents {
                    if d.digest == old {
                        *d = reference(&new);
                    }
                }
            }
            self.documents[i] = new;
        }
    }

    fn refusal(bundle: &Value) -> String {
        match verify_bundle_value(bundle) {
            Ok(v) => panic!("verifies: {:?}", v.account),
            Err(e) => e.to_string(),
        }
    }

    /// Removes the entry of record `seq` from a bundle.
    fn drop_entry(bundle: &mut Value, seq: u64) {
        bundle["entries"]
            .as_array_mut()
            .unwrap()
            .retain(|e| e["record"]["seq"] != json!(seq));
    }

    #[test]
    fn an_honest_bundle_verifies_and_is_complete() {
        let f = fixture();
        let v = verify_bundle_value(&f.bundle(6)).unwrap();
        assert_eq!(v.account.len(), 5, "{:?}", v.account);
        assert!(v.complete);
        assert_eq!(
            v.completeness,
            format!("complete: every record about {DATASET} up to head 6 (5 records)")
        );
    }

    #[test]
    fn a_dropped_delivery_is_named_as_a_gap() {
        let f = fixture();
        let mut b = f.bundle(6);
        drop_entry(&mut b, 4);
        let v = verify_bundle_value(&b).unwrap();
        assert!(!v.complete);
        assert_eq!(
            v.completeness,
            format!(
                "INCOMPLETE: record seq 4 about {DATASET} is not in this bundle (named by record seq 5)"
            )
        );
    }

    #[test]
    fn a_dropped_latest_record_is_named_as_a_gap() {
        let f = fixture();
        let mut b = f.bundle(6);
        drop_entry(&mut b, 5);
        let v = verify_bundle_value(&b).unwrap();
        assert!(!v.complete);
        assert!(
            v.completeness.contains(
                "record seq 5 about sh-medical-settlement is not in this bundle (the latest"
            ),
            "{}",
            v.completeness
        );
    }

    #[test]
    fn a_bundle_without_its_dataset_head_does_not_claim_completeness() {
        let f = fixture();
        let mut b = f.bundle(6);
        b.as_object_mut().unwrap().remove("dataset_head");
        drop_entry(&mut b, 4);
        let v = verify_bundle_value(&b).unwrap();
        assert!(!v.complete);
        assert!(
            v.completeness.starts_with("completeness: cannot be shown"),
            "{}",
            v.completeness
        );
    }

    #[test]
    fn a_dataset_head_of_another_head_or_signer_is_refused() {
        let f = fixture();
        let mut b = f.bundle(6);
        let mut doc = b["dataset_head"]["document"].clone();
        doc["size"] = json!(5);
        b["dataset_head"] =
            serde_json::to_value(f.owner.sign("dataset-head", doc.clone())).unwrap();
        assert!(refusal(&b).contains("dataset-head"));
        doc["size"] = json!(6);
        b["dataset_head"] = serde_json::to_value(f.requester.sign("dataset-head", doc)).unwrap();
        assert!(refusal(&b).contains("dataset-head"));
    }

    #[test]
    fn links_that_skip_a_record_the_bundle_holds_are_refused() {
        let mut f = fixture();
        // The delivery's successor names the grant as its predecessor, skipping the delivery.
        f.records[5].prev_about_dataset = Some(2);
        let e = refusal(&f.bundle(6));
        assert!(e.contains("record seq 4") && e.contains("skip"), "{e}");
    }

    #[test]
    fn records_of_an_old_log_say_completeness_cannot_be_shown_before_the_links() {
        let mut f = fixture();
        // Records 0..=2 were written before the log linked records about a dataset.
        for r in f.records.iter_mut().take(3) {
            r.prev_about_dataset = None;
        }
        let v = verify_bundle_value(&f.bundle(6)).unwrap();
        assert!(!v.complete);
        assert!(
            v.completeness.starts_with(&format!(
                "complete from seq 2: every record about {DATASET} from seq 2 up to head 6"
            )) && v.completeness.contains("cannot be shown"),
            "{}",
            v.completeness
        );
        // Wholly old: nothing linked, nothing shown beyond the latest record itself.
        for r in &mut f.records {
            r.prev_about_dataset = None;
        }
        let v = verify_bundle_value(&f.bundle(6)).unwrap();
        assert!(
            v.completeness.starts_with("complete from seq 5"),
            "{}",
            v.completeness
        );
    }

    #[test]
    fn a_request_attributed_to_the_requester_but_signed_by_the_owner_is_refused() {
        let mut f = fixture();
        let forged = f
            .owner
            .sign("access-request", f.documents[1].document.clone());
        f.replace_document(1, forged);
        let e = refusal(&f.bundle(6));
        assert!(
            e.contains("access-request") && e.contains("requester"),
            "{e}"
        );
    }

    #[test]
    fn a_receipt_contradicting_its_record_is_refused() {
        let mut f = fixture();
        let mut doc = f.documents[3].document.clone();
        doc["data_digest"] = json!("11".repeat(32));
        let contradicting = f.requester.sign("receipt", doc);
        f.replace_document(3, contradicting);
        let e = refusal(&f.bundle(6));
        assert!(e.contains("receipt") && e.contains("data_digest"), "{e}");
    }

    #[test]
    fn a_grant_for_another_dataset_is_refused() {
        let mut f = fixture();
        let mut doc = f.documents[2].document.clone();
        doc["dataset"] = json!("js-other");
        let other = f.owner.sign("grant", doc);
        f.replace_document(2, other);
        let e = refusal(&f.bundle(6));
        assert!(e.contains("grant") && e.contains("dataset"), "{e}");
    }

    #[test]
    fn duplicated_entries_are_refused() {
        let f = fixture();
        let mut b = f.bundle(6);
        let first = b["entries"][1].clone();
        b["entries"].as_array_mut().unwrap().insert(2, first);
        let e = refusal(&b);
        assert!(e.contains("order"), "{e}");
    }

    #[test]
    fn reordered_entries_are_refused() {
        let f = fixture();
        let mut b = f.bundle(6);
        b["entries"].as_array_mut().unwrap().swap(0, 1);
        let e = refusal(&b);
        assert!(e.contains("order"), "{e}");
    }

    #[test]
    fn an_integer_beyond_two_to_the_53_is_refused() {
        let mut f = fixture();
        // In a record: its canonical form would be a rounded double.
        f.records[4].version = Some((1 << 53) + 1);
        let e = refusal(&f.bundle(6));
        assert!(e.contains("2^53"), "{e}");
        // In a signed document.
        let mut f = fixture();
        let mut doc = f.documents[3].document.clone();
        doc["version"] = json!(9_007_199_254_740_993_u64);
        let big = f.requester.sign_unchecked("receipt", doc);
        f.replace_document(3, big);
        let e = refusal(&f.bundle(6));
        assert!(e.contains("2^53"), "{e}");
        // Nor is one signed or accepted from a peer.
        let head = TreeHead {
            log: f.owner.id(),
            size: 1 << 60,
            root: "00".repeat(32),
            time: "2026-11-26T21:09:34Z".into(),
        };
        assert!(Signed::sign(head.clone(), f.owner.key.signing_key()).is_err());
        let forged = f
            .owner
            .sign_unchecked("tree-head", serde_json::to_value(&head).unwrap());
        let e = forged.verify().unwrap_err().to_string();
        assert!(e.contains("2^53"), "{e}");
        let typed = Signed::<TreeHead>::from_json(&serde_json::to_string(&forged).unwrap());
        assert!(typed.is_ok_and(|t| t.verify().is_err()));
    }

    /// Bundles on a federation charter (docs/evidence.md, step 9) and their published vectors.
    mod charter;

    #[test]
    fn records_beyond_every_cosigned_size_are_marked_not_yet_witnessed() {
        let f = fixture();
        let v = verify_bundle_value(&f.bundle(5)).unwrap();
        let last = v.account.last().unwrap();
        assert!(last.ends_with("[not yet witnessed]"), "{last}");
        let delivery = &v.account[3];
        assert!(
            delivery.ends_with("[witnessed by Jiangsu (320000)]"),
            "{delivery}"
        );
    }
}
