//! Query services (issue 15): single-record verify (核验) and lookup over our published
//! datasets on `/yrd/query/1`, both sides. The provider checks the query's form, the offer
//! (not shared and withheld refuse; conditional needs a grant allowing the mode; unconditional
//! allows calls without a grant only by and about fields that are not personal data), the
//! grant's fields, its rate limit and daily quota; finds the records through the version's key
//! index (`index.rs`, never a scan); answers with a signed [`QueryAnswer`]; and records
//! `query-answered` or `query-refused`. The caller checks the answer against its query and
//! records `query-sent`. Both sides name the looked-up key in their records only by a keyed
//! hash under their own query secret, so `provenance_query_calls` can list the calls about one
//! key without either log holding the value.

mod calls;
pub mod index;
mod limits;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use libp2p::PeerId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::access::Refusal;
use super::provenance::{MAX_PEER_TEXT_CHARS, PendingRecord, capped, doc};
use super::transfer::{derivation_scope, mask_salt, projection_for};
use super::{Node, NodeError};
use crate::clock::now_rfc3339;
use crate::identity::QuerySecret;
use crate::model::catalogue::{CatalogueEntry, ShareType};
use crate::model::exchange::{DataFormat, Grant, Manifest};
use crate::model::masking::{self, FieldMask};
use crate::model::provenance::{ProvenanceRecord, Query as LogQuery, RecordKind};
use crate::model::query::{
    FieldValue, MAX_LOOKUP_RECORDS, MAX_LOOKUP_RESULT_BYTES, MAX_QUERY_BATCH, MAX_QUERY_BYTES,
    Query, QueryAnswer, QueryBatchResponse, QueryLimits, QueryMode, QueryResponse,
    compact_json_len, result_digest, value_text,
};
use crate::model::refusal::RefusalCode;
use crate::model::signed::Signed;
use crate::model::standard::CompiledStandard;
use crate::store::RecordTree;
use crate::store::query_index::{INDEX_DIR, KeyIndex, index_path};

/// Inbound queries answered at once; beyond it a caller is told `busy`.
pub const MAX_INBOUND_QUERIES: usize = 256;
/// Most query keys an offer declares.
pub const MAX_QUERY_KEYS_PER_OFFER: usize = 8;
/// The limits on calls made without a grant (to an unconditional offer), per caller and
/// dataset.
pub const UNGRANTED_LIMITS: QueryLimits = QueryLimits {
    calls_per_day: Some(10_000),
    calls_per_minute: Some(600),
};
/// Most open key indexes kept.
const MAX_OPEN_INDEXES: usize = 256;
/// Most stored versions kept open for reading records (one file handle each).
const MAX_OPEN_RECORD_FILES: usize = 64;

/// Where a lookup reads its records from: the version kept open, or its stored file (opened
/// for the lookup, then kept).
enum RecordSource {
    Open(Arc<index::RecordFile>),
    Stored(PathBuf),
}

/// The query services' state: the query secret, open key indexes, rate buckets.
pub(crate) struct Queries {
    secret: QuerySecret,
    indexes: parking_lot::Mutex<HashMap<PathBuf, Arc<KeyIndex>>>,
    /// Versions opened for reading records, by blob digest.
    record_files: parking_lot::Mutex<HashMap<String, Arc<index::RecordFile>>>,
    build_lock: tokio::sync::Mutex<()>,
    rates: limits::RateLimiter,
    /// Our calls to providers, batched per provider.
    calls: calls::Calls,
    quota_lock: parking_lot::Mutex<()>,
    pub(crate) inbound: Arc<tokio::sync::Semaphore>,
}

impl Queries {
    pub(crate) fn new(secret: QuerySecret) -> Queries {
        Queries {
            secret,
            indexes: parking_lot::Mutex::new(HashMap::new()),
            record_files: parking_lot::Mutex::new(HashMap::new()),
            build_lock: tokio::sync::Mutex::new(()),
            rates: limits::RateLimiter::default(),
            calls: calls::Calls::default(),
            quota_lock: parking_lot::Mutex::new(()),
            inbound: Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND_QUERIES)),
        }
    }
}

/// An offer's query keys: fields of its standard, none twice, at most
/// [`MAX_QUERY_KEYS_PER_OFFER`].
pub(crate) fn check_query_keys(
    offer: &str,
    keys: &[String],
    standard: &CompiledStandard,
) -> Result<(), NodeError> {
    if keys.len() > MAX_QUERY_KEYS_PER_OFFER {
        return Err(NodeError::invalid(
            "query_keys",
            format!("offer {offer}: at most {MAX_QUERY_KEYS_PER_OFFER} query keys"),
        ));
    }
    let known = standard.field_names();
    for (i, k) in keys.iter().enumerate() {
        if !known.contains(k) {
            return Err(NodeError::invalid(
                "query_keys",
                format!(
                    "offer {offer}: query key {:?} is not a field of its standard",
                    k.chars().take(64).collect::<String>()
                ),
            ));
        }
        if keys[..i].contains(k) {
            return Err(NodeError::invalid(
                "query_keys",
                format!("offer {offer}: query key {k} named twice"),
            ));
        }
    }
    Ok(())
}

/// A query as a caller (an operator, an API client) asks it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryInput {
    /// `REGION_OR_PEER/DATASET`.
    pub target: String,
    /// `verify` or `lookup`.
    pub mode: QueryMode,
    /// The values given (`field`, `value`); at least one a query key of the offer.
    pub key: Vec<FieldValue>,
    /// Lookup: the fields wanted (default: all the grant delivers).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Why (default: the grant's purpose).
    #[serde(default)]
    pub purpose: Option<String>,
    /// The legal basis (default: the grant's).
    #[serde(default)]
    pub legal_basis: Option<String>,
    /// The grant to call under (default: the latest valid one we hold that allows the mode;
    /// none for an unconditional offer).
    #[serde(default)]
    pub grant: Option<String>,
}

/// What a query returned: the provider's signed answer and, for a lookup, the records it names
/// by digest (already checked against it).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct QueryOutcome {
    /// The signed answer.
    pub answer: Signed<QueryAnswer>,
    /// Lookup: the projected, masked records.
    pub records: Vec<Value>,
    /// The seq of our `query-sent` record.
    pub seq: Option<u64>,
}

/// The provider's response to one query, and the record that must be durable before the
/// response leaves (none for a refusal beyond the caller's budget of refusal records).
struct Answered {
    response: QueryResponse,
    record: Option<PendingRecord>,
}

fn refusal(code: RefusalCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    refusal(RefusalCode::Internal, e.to_string())
}

fn today_utc() -> String {
    now_rfc3339().chars().take(10).collect()
}

fn random_nonce() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether `record` has `kv`'s value in `kv`'s field (compared as text).
fn has(record: &Value, kv: &FieldValue) -> bool {
    record
        .get(&kv.field)
        .and_then(value_text)
        .is_some_and(|t| t == kv.value.as_str())
}

/// What the evidence says of a query's fields: the verified fields, or the looked-up
/// projection.
fn query_fields(q: &Query, answer: &QueryAnswer) -> String {
    match q.mode {
        QueryMode::Verify => format!(
            "verified {}",
            q.key
                .iter()
                .map(|kv| kv.field.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        QueryMode::Lookup => masking::describe_delivery(&answer.fields, &answer.masks),
    }
}

impl Node {
    fn queries(&self) -> &Queries {
        &self.inner.queries
    }

    /// The keyed hash under which our records name `value` of `field` in `publisher`'s
    /// `dataset`.
    pub fn query_key_hash(
        &self,
        publisher: &str,
        dataset: &str,
        field: &str,
        value: &str,
    ) -> String {
        self.queries()
            .secret
            .key_hash(publisher, dataset, field, value)
    }

    /// The records of the calls about one key of a dataset (both sides: the provider's
    /// `query-answered` and `query-refused`, the caller's `query-sent`), oldest first.
    /// `publisher` is the dataset's (default: ours); under a charter, the calls to every key
    /// of its member are included (a provider that rotated answered under each of its keys).
    pub fn provenance_query_calls(
        &self,
        dataset: &str,
        key: &FieldValue,
        publisher: Option<&str>,
    ) -> Result<Vec<ProvenanceRecord>, NodeError> {
        // Calls are keyed under the publisher key in force when each was answered: after a
        // key rotation, under each key this node (or the member called) ran on.
        let publishers: Vec<String> = match publisher {
            Some(p) => {
                let others = match (&self.inner.charter, p.parse::<PeerId>()) {
                    (Some(charter), Ok(peer)) => charter.other_keys_of_member(&peer),
                    _ => Vec::new(),
                };
                std::iter::once(p.to_string())
                    .chain(others.iter().map(PeerId::to_string))
                    .collect()
            }
            None => std::iter::once(self.peer_id())
                .chain(self.earlier_keys().iter().copied())
                .map(|p| p.to_string())
                .collect(),
        };
        let limit = crate::store::provenance::MAX_QUERY_RECORDS;
        let mut calls = Vec::new();
        for publisher in &publishers {
            let hash = self.query_key_hash(publisher, dataset, &key.field, &key.value);
            calls.extend(self.provenance_query(&LogQuery {
                dataset: Some(dataset.to_string()),
                key_hash: Some(hash),
                limit: Some(limit),
                ..LogQuery::default()
            })?);
        }
        calls.sort_by_key(|r| r.seq);
        calls.truncate(limit);
        Ok(calls)
    }

    /// Builds the key indexes of a version we published, for the query keys of its offer. A
    /// failure is logged: the first query builds the index again.
    pub(crate) async fn index_version(&self, offer: &CatalogueEntry, m: &Signed<Manifest>) {
        if offer.offer.query_keys.is_empty() || m.document.format == DataFormat::File {
            return;
        }
        if let Err(e) = self.build_indexes(offer, &m.document).await {
            tracing::error!(dataset = %m.document.dataset, error = %e, "key index not built; the first query builds it");
        }
        // Queries answer from the latest version only: the older versions' indexes go, and
        // their files are no longer kept open (one that another dataset's latest version
        // shares is opened or built again at its first query).
        let dir = self.inner.data_dir.join(INDEX_DIR);
        let older = self
            .manifests(None, &m.document.dataset)
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.document.digest != m.document.digest);
        for o in older {
            self.queries()
                .record_files
                .lock()
                .remove(&o.document.digest);
            for key in &offer.offer.query_keys {
                let path = index_path(&dir, &o.document.digest, key);
                self.queries().indexes.lock().remove(&path);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "old key index not removed")
                    }
                }
            }
        }
    }

    async fn build_indexes(&self, offer: &CatalogueEntry, m: &Manifest) -> Result<(), NodeError> {
        let _guard = self.queries().build_lock.lock().await;
        self.build_indexes_locked(offer, m).await
    }

    /// [`Self::build_indexes`], the caller holding the build lock.
    async fn build_indexes_locked(
        &self,
        offer: &CatalogueEntry,
        m: &Manifest,
    ) -> Result<(), NodeError> {
        let standard = self.compiled_standard(&offer.conforms_to)?;
        let blob = self
            .blobs()
            .path(&m.digest)
            .ok_or_else(|| NodeError::NotFound(format!("blob {} of {}", m.digest, m.dataset)))?;
        let (digest, format, keys) = (m.digest.clone(), m.format, offer.offer.query_keys.clone());
        let secret = self.queries().secret.clone();
        let dir = self.inner.data_dir.join(INDEX_DIR);
        let started = Instant::now();
        let records = tokio::task::spawn_blocking(move || {
            index::build(&blob, &digest, format, &keys, &standard, &secret, &dir)
        })
        .await
        .map_err(NodeError::task("building the key index"))??;
        tracing::info!(
            dataset = %m.dataset,
            version = m.version,
            keys = %offer.offer.query_keys.join(","),
            records,
            ms = started.elapsed().as_millis() as u64,
            "key index built"
        );
        Ok(())
    }

    /// The open key index of `field` for version `m`, built first if missing.
    async fn key_index(
        &self,
        offer: &CatalogueEntry,
        m: &Manifest,
        field: &str,
    ) -> Result<Arc<KeyIndex>, NodeError> {
        let path = index_path(&self.inner.data_dir.join(INDEX_DIR), &m.digest, field);
        if let Some(i) = self.queries().indexes.lock().get(&path) {
            return Ok(i.clone());
        }
        let check = index::index_check(&self.queries().secret);
        let io = |source| NodeError::Io {
            op: "open",
            path: path.clone(),
            source,
        };
        let opened = match KeyIndex::open(&path, check).map_err(io)? {
            Some(i) => i,
            None => {
                // Built by one caller; the others wait for it and find it built.
                let _guard = self.queries().build_lock.lock().await;
                if KeyIndex::open(&path, check).map_err(io)?.is_none() {
                    self.build_indexes_locked(offer, m).await?;
                }
                KeyIndex::open(&path, check)
                    .map_err(io)?
                    .ok_or_else(|| NodeError::NotFound(format!("key index {}", path.display())))?
            }
        };
        let opened = Arc::new(opened);
        let mut cache = self.queries().indexes.lock();
        if cache.len() >= MAX_OPEN_INDEXES {
            cache.clear();
        }
        cache.insert(path, opened.clone());
        Ok(opened)
    }

    /// The records of version `m` whose `by` field has `by`'s value, through the index.
    async fn records_by_key(
        &self,
        offer: &CatalogueEntry,
        m: &Manifest,
        standard: &Arc<CompiledStandard>,
        by: &FieldValue,
    ) -> Result<Vec<Value>, NodeError> {
        let index = self.key_index(offer, m, &by.field).await?;
        let hash = self.queries().secret.index_hash(&by.value);
        let kept = self.queries().record_files.lock().get(&m.digest).cloned();
        let source = match kept {
            Some(file) => RecordSource::Open(file),
            None => RecordSource::Stored(self.blobs().path(&m.digest).ok_or_else(|| {
                NodeError::NotFound(format!("blob {} of {}", m.digest, m.dataset))
            })?),
        };
        let (format, standard) = (m.format, standard.clone());
        let (found, opened) = tokio::task::spawn_blocking(move || {
            let positions = index.lookup(hash).map_err(|source| NodeError::Io {
                op: "read",
                path: "index".into(),
                source,
            })?;
            let (file, opened) = match source {
                RecordSource::Open(file) => (file, false),
                RecordSource::Stored(blob) => {
                    (Arc::new(index::RecordFile::open(&blob, format)?), true)
                }
            };
            Ok::<_, NodeError>((file.read(&positions, &standard)?, opened.then_some(file)))
        })
        .await
        .map_err(NodeError::task("reading records by key"))??;
        if let Some(file) = opened {
            let mut files = self.queries().record_files.lock();
            if files.len() >= MAX_OPEN_RECORD_FILES {
                files.clear();
            }
            files.insert(m.digest.clone(), file);
        }
        // A hash collision reads another record: keep only those that really have the value.
        Ok(found.into_iter().filter(|r| has(r, by)).collect())
    }

    /// Counts one call against the limits of `grant` (or, without one, of calls by `peer` to
    /// `dataset`): the rate limit first, then the daily quota.
    fn take_query_call(
        &self,
        peer: &PeerId,
        dataset: &str,
        grant: Option<&Grant>,
    ) -> Result<(), Refusal> {
        let (scope, limits, who) = match grant {
            Some(g) => (
                g.id.clone(),
                g.query_limits.unwrap_or_default(),
                format!("grant {}", g.id),
            ),
            None => (
                format!("{peer}/{dataset}"),
                UNGRANTED_LIMITS,
                format!("calls to {dataset} without a grant"),
            ),
        };
        if let Some(n) = limits.calls_per_minute {
            if !self.queries().rates.take(&scope, n, Instant::now()) {
                return Err(refusal(
                    RefusalCode::RateLimited,
                    format!("{who} allows {n} calls a minute; retry shortly"),
                ));
            }
        }
        if let Some(n) = limits.calls_per_day {
            let _guard = self.queries().quota_lock.lock();
            let today = today_utc();
            let held = self
                .store()
                .record::<limits::DayUsage>(RecordTree::QueryUsage, &scope)
                .map_err(internal)?;
            let Some(usage) = limits::count_call(held, &today, n) else {
                return Err(refusal(
                    RefusalCode::QuotaExceeded,
                    format!("{who} allows {n} calls a day, all used on {today} (UTC)"),
                ));
            };
            self.store()
                .put_record(RecordTree::QueryUsage, &scope, &usage)
                .map_err(internal)?;
        }
        Ok(())
    }

    /// Provider side: a query arrived from `peer` on `/yrd/query/1`. Its record is durable
    /// before the response is returned (to be sent).
    pub(crate) async fn on_query(&self, peer: PeerId, raw: Value) -> QueryResponse {
        let answered = self.answer_raw(peer, raw).await;
        if let Some(p) = answered.record {
            self.record(p.record, p.counterparty, p.documents).await;
        }
        answered.response
    }

    /// The response to one query as it arrived, and its record (not yet appended).
    async fn answer_raw(&self, peer: PeerId, raw: Value) -> Answered {
        let q: Query = match serde_json::from_value(raw) {
            Ok(q) => q,
            Err(e) => {
                let r = refusal(RefusalCode::BadRequest, format!("malformed query: {e}"));
                return self.refusal_answer(peer, None, None, r);
            }
        };
        let mut key_hash = None;
        match self.answer_query(peer, &q, &mut key_hash).await {
            Ok(answered) => answered,
            Err(r) => self.refusal_answer(peer, Some(&q), key_hash, r),
        }
    }

    /// Provider side: a batch of queries arrived from `peer` on `/yrd/query/2`. Each is
    /// answered as if it came alone; they are answered together, so their records share group
    /// commits.
    pub(crate) async fn on_query_batch(
        &self,
        peer: PeerId,
        requests: Vec<Value>,
    ) -> QueryBatchResponse {
        if requests.is_empty() || requests.len() > MAX_QUERY_BATCH {
            let message = format!(
                "a batch holds 1 to {MAX_QUERY_BATCH} queries; this one holds {}",
                requests.len()
            );
            let r = refusal(RefusalCode::BadRequest, message.clone());
            if let Some(p) = self.refusal_answer(peer, None, None, r).record {
                self.record(p.record, p.counterparty, p.documents).await;
            }
            return QueryBatchResponse::Refused {
                code: RefusalCode::BadRequest,
                message,
            };
        }
        let answered = futures::future::join_all(requests.into_iter().map(|raw| async move {
            // Each query keeps the bound it has alone.
            let size = compact_json_len(&raw);
            if size > MAX_QUERY_BYTES {
                let r = refusal(
                    RefusalCode::BadRequest,
                    format!(
                        "the query is {size} bytes; a query is at most {MAX_QUERY_BYTES} bytes"
                    ),
                );
                return self.refusal_answer(peer, None, None, r);
            }
            self.answer_raw(peer, raw).await
        }))
        .await;
        // The batch's records in one group commit, durable before any answer leaves.
        let mut responses = Vec::with_capacity(answered.len());
        let mut records = Vec::with_capacity(answered.len());
        for a in answered {
            responses.push(a.response);
            records.extend(a.record);
        }
        self.record_all(records).await;
        QueryBatchResponse::Responses { responses }
    }

    /// A refusal, and its record if `peer`'s budget of refusal records allows one.
    fn refusal_answer(
        &self,
        peer: PeerId,
        q: Option<&Query>,
        key_hash: Option<String>,
        r: Refusal,
    ) -> Answered {
        tracing::info!(peer = %peer, code = %r.code, message = %r.message, "query refused");
        let mut record = None;
        if self.inner.peers.refusal_record_due(peer, Instant::now()) {
            let mut rec = self.new_record(RecordKind::QueryRefused);
            if let Some(q) = q {
                if q.check_form().is_ok() {
                    rec.dataset = Some(q.dataset.clone());
                    rec.grant = q.grant.clone();
                    rec.purpose = Some(capped(&q.purpose, MAX_PEER_TEXT_CHARS));
                    rec.legal_basis = Some(capped(&q.legal_basis, MAX_PEER_TEXT_CHARS));
                }
                rec.query_mode = Some(q.mode);
            }
            rec.key_hash = key_hash;
            rec.cause = Some(capped(
                &format!("{}: {}", r.code, r.message),
                MAX_PEER_TEXT_CHARS,
            ));
            record = Some(PendingRecord {
                record: rec,
                counterparty: Some(peer),
                documents: Vec::new(),
            });
        }
        Answered {
            response: QueryResponse::Refused {
                code: r.code,
                message: r.message,
            },
            record,
        }
    }

    /// The signed answer to `q` and its `query-answered` record, or why it is refused.
    async fn answer_query(
        &self,
        peer: PeerId,
        q: &Query,
        key_hash: &mut Option<String>,
    ) -> Result<Answered, Refusal> {
        q.check_form()
            .map_err(|m| refusal(RefusalCode::BadRequest, m))?;
        let offer = self.deliverable_offer(&q.dataset)?;
        let standard = self.shared_standard(&offer.conforms_to).map_err(internal)?;
        let known = standard.field_names();
        let unknown = q
            .key
            .iter()
            .map(|kv| &kv.field)
            .chain(&q.fields)
            .find(|f| !known.contains(f));
        if let Some(f) = unknown {
            return Err(refusal(
                RefusalCode::UnknownField,
                format!("{f} is not a field of {}", q.dataset),
            ));
        }
        let keys = &offer.offer.query_keys;
        let Some(by) = q.key.iter().find(|kv| keys.contains(&kv.field)) else {
            return Err(refusal(
                RefusalCode::UnknownField,
                if keys.is_empty() {
                    format!(
                        "{} offers no query service (its offer declares no query keys)",
                        q.dataset
                    )
                } else {
                    format!(
                        "none of the given fields is a query key of {} (query keys: {})",
                        q.dataset,
                        keys.join(", ")
                    )
                },
            ));
        };
        let us = self.peer_id_text().to_owned();
        *key_hash = Some(self.query_key_hash(&us, &q.dataset, &by.field, &by.value));
        let grant = match q.grant.as_deref() {
            Some(id) => Some(self.check_grant_for(&peer, &q.dataset, Some(id), q.mode.access())?),
            None if offer.offer.share_type == ShareType::Unconditional => {
                let personal = standard.personal_fields();
                let named = q
                    .key
                    .iter()
                    .map(|kv| kv.field.as_str())
                    .find(|f| personal.contains(f));
                if let Some(f) = named {
                    return Err(refusal(
                        RefusalCode::GrantRequired,
                        format!(
                            "{f} is personal data: querying {} by or about it needs a grant \
                             (`yrd request …/{} --purpose … --basis …`)",
                            q.dataset, q.dataset
                        ),
                    ));
                }
                None
            }
            None => {
                return Err(refusal(
                    RefusalCode::GrantRequired,
                    format!(
                        "{} is shared on conditions (有条件共享): a query needs a grant that \
                         allows {}; request access first",
                        q.dataset,
                        q.mode.as_str()
                    ),
                ));
            }
        };
        let g = grant.as_ref().map(|g| &g.grant.document);
        let projection = projection_for(g, &standard)
            .map_err(|e| refusal(RefusalCode::GrantInvalid, format!("{}: {e}", q.dataset)))?;
        let allowed: Vec<String> = projection
            .as_ref()
            .map(|p| p.fields().to_vec())
            .unwrap_or_else(|| known.to_vec());
        if let Some(g) = g {
            let outside = q
                .key
                .iter()
                .map(|kv| &kv.field)
                .chain(&q.fields)
                .find(|f| !allowed.contains(f));
            if let Some(f) = outside {
                return Err(refusal(
                    RefusalCode::FieldNotGranted,
                    format!("grant {} does not cover field {f}", g.id),
                ));
            }
        }
        let manifest = self
            .own_latest_manifest(&q.dataset)
            .map_err(internal)?
            .ok_or_else(|| {
                refusal(
                    RefusalCode::NotFound,
                    format!("no version of {} is published", q.dataset),
                )
            })?;
        let m = &manifest.document;
        if m.format == DataFormat::File {
            return Err(refusal(
                RefusalCode::NotShared,
                format!(
                    "{} v{} was published as an opaque file, which cannot be queried",
                    q.dataset, m.version
                ),
            ));
        }
        self.take_query_call(&peer, &q.dataset, g)?;
        let candidates = self
            .records_by_key(&offer, m, &standard, by)
            .await
            .map_err(internal)?;
        let mut answer = QueryAnswer {
            provider: us,
            caller: peer.to_string(),
            dataset: q.dataset.clone(),
            version: m.version,
            data_digest: m.digest.clone(),
            mode: q.mode,
            query_digest: q.digest().map_err(internal)?,
            grant: g.map(|g| g.id.clone()),
            found: false,
            matched: None,
            matched_fields: Vec::new(),
            record_count: 0,
            truncated: false,
            fields: Vec::new(),
            masks: Vec::new(),
            result_digest: String::new(),
            answered_at: now_rfc3339(),
        };
        let mut records = Vec::new();
        match q.mode {
            QueryMode::Verify => {
                let best = candidates
                    .iter()
                    .map(|r| {
                        q.key
                            .iter()
                            .filter(|kv| has(r, kv))
                            .map(|kv| kv.field.clone())
                            .collect::<Vec<_>>()
                    })
                    .max_by_key(Vec::len)
                    .unwrap_or_default();
                answer.found = !candidates.is_empty();
                answer.matched = Some(answer.found && best.len() == q.key.len());
                answer.matched_fields = best;
            }
            QueryMode::Lookup => {
                let wanted = if q.fields.is_empty() {
                    allowed.clone()
                } else {
                    q.fields.clone()
                };
                let masks: Vec<FieldMask> = projection
                    .as_ref()
                    .map(|p| {
                        p.masks()
                            .iter()
                            .filter(|mk| wanted.contains(&mk.field))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                let scope = derivation_scope(g.map(|g| g.id.as_str()), &q.dataset);
                let salt = mask_salt(self.inner.mask.seed(), &scope);
                let mut bytes = 0usize;
                for r in candidates
                    .iter()
                    .filter(|r| q.key.iter().all(|kv| has(r, kv)))
                {
                    answer.found = true;
                    let mut delivered = match &projection {
                        Some(p) => p.apply(r, &salt).map_err(internal)?,
                        None => r.clone(),
                    };
                    let mut out = serde_json::Map::new();
                    if let Some(members) = delivered.as_object_mut() {
                        for f in &wanted {
                            if let Some((name, v)) = members.swap_remove_entry(f) {
                                out.insert(name, v);
                            }
                        }
                    }
                    let out = Value::Object(out);
                    bytes += compact_json_len(&out) as usize;
                    if records.len() >= MAX_LOOKUP_RECORDS || bytes > MAX_LOOKUP_RESULT_BYTES {
                        answer.truncated = true;
                        break;
                    }
                    records.push(out);
                }
                answer.record_count = records.len() as u64;
                answer.fields = wanted;
                answer.masks = masks;
            }
        }
        answer.result_digest = result_digest(&records).map_err(internal)?;
        let signed = Signed::sign(answer, self.inner.key.signing_key()).map_err(internal)?;
        let mut rec = self.new_record(RecordKind::QueryAnswered);
        rec.dataset = Some(q.dataset.clone());
        rec.version = Some(m.version);
        rec.grant = q.grant.clone();
        rec.purpose = Some(q.purpose.trim().to_string());
        rec.legal_basis = Some(q.legal_basis.trim().to_string());
        rec.query_mode = Some(q.mode);
        rec.key_hash = key_hash.clone();
        rec.found = Some(signed.document.found);
        rec.fields = Some(query_fields(q, &signed.document));
        rec.data_digest = Some(m.digest.clone());
        let documents = doc(&signed).into_iter().collect();
        Ok(Answered {
            response: QueryResponse::Answer {
                answer: Box::new(signed),
                records,
            },
            record: Some(PendingRecord {
                record: rec,
                counterparty: Some(peer),
                documents,
            }),
        })
    }

    /// Caller side: asks the publisher of `input.target` one query, checks its signed answer
    /// and records `query-sent` (naming `client`, the API client that asked, if any).
    pub async fn query(
        &self,
        input: QueryInput,
        client: Option<&str>,
    ) -> Result<QueryOutcome, NodeError> {
        let t = self.resolve_target(&input.target)?;
        let dataset = t.offer.offer.identifier.clone();
        let mode = input.mode;
        let grant = match &input.grant {
            Some(id) => Some(Arc::new(self.received_grant(&t.peer, id)?)),
            None if t.offer.offer.share_type == ShareType::Conditional => Some(
                self.usable_grant_for(&t.peer, &dataset, mode.access())
                    .ok_or_else(|| {
                        NodeError::invalid(
                            "grant",
                            format!(
                                "no valid grant from {} for {dataset} allows {}; request access \
                                 first (`yrd request`)",
                                t.peer,
                                mode.as_str()
                            ),
                        )
                    })?,
            ),
            None => None,
        };
        let g = grant.as_deref().map(|g| &g.grant.document);
        let purpose = input
            .purpose
            .clone()
            .or_else(|| g.map(|g| g.purpose.clone()))
            .ok_or_else(|| NodeError::invalid("purpose", "a query states its purpose".into()))?;
        let legal_basis = input
            .legal_basis
            .clone()
            .or_else(|| g.map(|g| g.legal_basis.clone()))
            .ok_or_else(|| {
                NodeError::invalid("legal_basis", "a query states its legal basis".into())
            })?;
        let q = Query {
            nonce: random_nonce(),
            dataset: dataset.clone(),
            mode,
            key: input.key,
            fields: input.fields,
            purpose,
            legal_basis,
            grant: g.map(|g| g.id.clone()),
        };
        q.check_form().map_err(|m| NodeError::invalid("query", m))?;
        let raw = serde_json::to_value(&q).map_err(NodeError::Encode)?;
        let size = raw.to_string().len();
        if size as u64 > MAX_QUERY_BYTES {
            return Err(NodeError::invalid(
                "query",
                format!("the query is {size} bytes; a query is at most {MAX_QUERY_BYTES} bytes"),
            ));
        }
        let digest = q
            .digest()
            .map_err(|e| NodeError::invalid("query", e.to_string()))?;
        let by = q
            .key
            .iter()
            .find(|kv| t.offer.offer.query_keys.contains(&kv.field))
            .unwrap_or(&q.key[0]);
        let mut rec = self.new_record(RecordKind::QuerySent);
        rec.dataset = Some(dataset.clone());
        rec.grant = q.grant.clone();
        rec.purpose = Some(q.purpose.trim().to_string());
        rec.legal_basis = Some(q.legal_basis.trim().to_string());
        rec.query_mode = Some(mode);
        rec.key_hash =
            Some(self.query_key_hash(&t.peer.to_string(), &dataset, &by.field, &by.value));
        rec.client = client.map(str::to_string);
        self.make_call(
            t.peer,
            calls::Call {
                query: q,
                raw,
                digest,
                offer: t.offer,
                grant,
                record: rec,
            },
        )
        .await
    }

    /// Test hook: sends `raw` as a query to `peer` as it is, alone on `/yrd/query/1`
    /// (malformed or oversized queries; an older caller).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub async fn send_raw_query_for_test(
        &self,
        peer: PeerId,
        raw: Value,
    ) -> Result<QueryResponse, NodeError> {
        Ok(self.inner.net.query(peer, raw).await?)
    }

    /// Test hook: sends `raw` as one batch on `/yrd/query/2`, as it is.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub async fn send_raw_query_batch_for_test(
        &self,
        peer: PeerId,
        raw: Vec<Value>,
    ) -> Result<QueryBatchResponse, NodeError> {
        Ok(self.inner.net.query_batch(peer, raw).await?)
    }
}

/// What the caller expects of an answer: its query (and that query's digest), the provider it
/// asked, the offer as the provider's catalogue lists it, and the grant it called under.
struct Expected<'a> {
    query: &'a Query,
    digest: &'a str,
    provider: PeerId,
    offer: &'a CatalogueEntry,
    grant: Option<&'a Grant>,
}

/// The caller's check of an answer: signed by the provider, about our query (digest, dataset,
/// mode, grant), to us, from the latest version the provider's catalogue lists (or a later
/// one), carrying exactly the records it names by digest, within the limits of one answer,
/// and no field the query asked for or the grant covers (a verify: no field at all). A
/// refused answer is never shown; its `query-sent` record names the cause.
fn check_answer(
    answer: &Signed<QueryAnswer>,
    records: &[Value],
    e: &Expected<'_>,
    node: &Node,
) -> Result<(), String> {
    let q = e.query;
    answer.verify().map_err(|e| e.to_string())?;
    let key = answer.signer_key().map_err(|e| e.to_string())?;
    let a = &answer.document;
    node.signer_peer(&key, &a.provider)
        .map_err(|e| e.to_string())
        .and_then(|signer| {
            (signer == e.provider)
                .then_some(())
                .ok_or_else(|| format!("answer signed by {signer}, not the provider"))
        })?;
    let verify = q.mode == QueryMode::Verify;
    let checks = [
        (a.query_digest == e.digest, "names another query"),
        (a.dataset == q.dataset, "is about another dataset"),
        (a.mode == q.mode, "is of another mode"),
        (a.grant == q.grant, "names another grant"),
        (
            a.caller == node.peer_id_text(),
            "is addressed to another node",
        ),
        (
            a.record_count == records.len() as u64,
            "counts other records than it carries",
        ),
        (
            !verify
                || (records.is_empty()
                    && a.matched.is_some()
                    && a.fields.is_empty()
                    && a.masks.is_empty()),
            "of a verify carries records, fields or no verdict",
        ),
        (
            a.found || records.is_empty(),
            "says not found but carries records",
        ),
        (
            records.len() <= MAX_LOOKUP_RECORDS,
            "carries more records than one answer may",
        ),
    ];
    if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
        return Err(format!("the answer {what}"));
    }
    if let Some(latest) = e.offer.latest_version {
        if a.version < latest {
            return Err(format!(
                "the answer is from version {} of {}, older than version {latest} its \
                 provider's catalogue lists",
                a.version, q.dataset
            ));
        }
        if a.version == latest
            && e.offer
                .checksum
                .as_ref()
                .is_some_and(|c| *c != a.data_digest)
        {
            return Err(format!(
                "the answer names another file for version {latest} of {} than its provider's \
                 catalogue (data digest)",
                q.dataset
            ));
        }
    }
    let bytes: usize = records.iter().map(|r| compact_json_len(r) as usize).sum();
    if bytes > MAX_LOOKUP_RESULT_BYTES {
        return Err(format!(
            "the answer carries {bytes} bytes of records; one answer carries at most \
             {MAX_LOOKUP_RESULT_BYTES}"
        ));
    }
    check_answer_fields(a, records, q, e.grant)?;
    let got = result_digest(records).map_err(|e| e.to_string())?;
    if got != a.result_digest {
        return Err("the records are not the ones the answer names (result digest)".into());
    }
    Ok(())
}

/// A lookup answer's fields: those it lists are among those asked for (or, asked for none,
/// those the grant covers), and each record has only fields it lists.
fn check_answer_fields(
    a: &QueryAnswer,
    records: &[Value],
    q: &Query,
    grant: Option<&Grant>,
) -> Result<(), String> {
    let (allowed, whose): (Option<&[String]>, &str) = if !q.fields.is_empty() {
        (Some(&q.fields), "the query asked for")
    } else {
        (
            grant.map(|g| g.fields.as_slice()).filter(|f| !f.is_empty()),
            "the grant covers",
        )
    };
    if let Some(allowed) = allowed {
        if let Some(f) = a.fields.iter().find(|f| !allowed.contains(f)) {
            return Err(format!(
                "the answer lists field {}, which is not among the fields {whose}",
                capped(f, 64)
            ));
        }
    }
    for r in records {
        let Some(obj) = r.as_object() else {
            return Err("the answer carries a record that is not a JSON object".into());
        };
        if let Some(f) = obj.keys().find(|f| !a.fields.contains(f)) {
            return Err(format!(
                "the answer carries field {}, which is not among the fields it lists",
                capped(f, 64)
            ));
        }
    }
    Ok(())
}
