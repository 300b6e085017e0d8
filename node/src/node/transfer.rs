//! Moving dataset versions between nodes (R3, R5, R7): the provider side of `/yrd/fetch/1`
//! (access checks, masked derived deliveries, chunks read and verified from the blob store), the
//! fetcher side (manifest and chunk table checked against the publisher's signature, every chunk
//! verified before it is written, resume across dropped connections and restarts, records
//! re-validated, a signed Receipt sent), the registry of transfers in progress, and
//! subscriptions that fetch each new version as it is published.

use super::counters::Counters;
use schemars::JsonSchema;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::access::{Direction, Refusal, Target, grant_fields};
use super::datasets::{RecordProblem, check_csv, check_jsonl, csv_cell};
use super::provenance::doc;
use super::{Node, NodeError, unexpected};
use crate::clock::now_rfc3339;
use crate::model::catalogue::ShareType;
use crate::model::chunks::{ChunkTable, DEFAULT_CHUNK_SIZE};
use crate::model::exchange::{DataFormat, Derivation, Grant, Manifest, Receipt};
use crate::model::masking::Projection;
use crate::model::message::{Request, Response};
use crate::model::provenance::RecordKind;
use crate::model::region::Region;
use crate::model::signed::Signed;
use crate::model::standard::{self, CompiledStandard};
use crate::model::transfer::{
    CHUNK_HEADER, ChunkWant, FETCH_PROTOCOL, FetchOpen, FetchReply, MAX_CONTROL_FRAME,
};
use crate::net::frames::{self, FrameError};
use crate::store::RecordTree;
use crate::store::blobs::{BlobError, BlobStore, Partial};

/// Inbound fetch streams served at once, all peers together.
pub const MAX_SERVING: usize = 64;
/// Times one chunk may arrive bad before the fetch gives up on the provider.
pub const MAX_BAD_CHUNK_RETRIES: u32 = 3;
/// Finished transfers kept in the in-memory registry (the fetch records stay in the database).
pub const KEEP_FINISHED: usize = 200;
/// Largest first frame (FetchOpen) accepted.
const MAX_OPEN_FRAME: usize = 64 * 1024;
/// Chunk buffers queued between the network and the disk, per transfer.
const CHUNK_QUEUE: usize = 4;
/// Bytes a fetcher writes between two syncs of the partial file and its journal.
const SYNC_EVERY: u64 = 16 << 20;
/// Chunk tables kept in memory (each costs about 90 bytes per MiB of data).
const CHUNK_TABLE_CACHE: usize = 256;

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransferStatus {
    /// Opening a stream to the provider.
    Connecting,
    /// Chunks are moving.
    Running,
    /// The provider is unreachable or busy; retrying with backoff.
    Waiting,
    /// All chunks are in; checking the file and its records.
    Verifying,
    /// Complete.
    Done,
    /// Given up; `error` says why.
    Failed,
}

impl TransferStatus {
    fn finished(self) -> bool {
        matches!(self, TransferStatus::Done | TransferStatus::Failed)
    }
}

/// A transfer, either way, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TransferView {
    /// Transfer id (32 hex).
    pub id: String,
    /// `in`: we fetch; `out`: we serve.
    pub direction: Direction,
    /// The counterparty.
    pub peer: String,
    /// Its region, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_region: Option<Region>,
    /// The offer identifier.
    pub dataset: String,
    /// The version (once known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The grant it runs under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Where it stands.
    pub status: TransferStatus,
    /// Bytes verified and written (fetch) or sent (serve).
    pub bytes_done: u64,
    /// Bytes of the version (0 until the manifest arrives).
    pub bytes_total: u64,
    /// Chunks that arrived bad and were fetched again.
    pub refetched_chunks: u64,
    /// Connection attempts so far.
    pub attempts: u32,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Milliseconds moving chunks (excludes waiting and verification).
    #[serde(default)]
    pub transfer_ms: u64,
    /// Milliseconds from start to finish.
    #[serde(default)]
    pub total_ms: u64,
    /// The delivered file's digest, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Whether the delivery is a masked derivation.
    #[serde(default)]
    pub derived: bool,
    /// Why it failed (or why it is waiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A fetch as the database keeps it, so it resumes after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FetchRecord {
    view: TransferView,
    /// The manifest, once received and checked.
    #[serde(default)]
    manifest: Option<Signed<Manifest>>,
    /// The version asked for (None: the latest).
    #[serde(default)]
    wanted_version: Option<u64>,
    /// The receipt we sent.
    #[serde(default)]
    receipt: Option<Signed<Receipt>>,
    /// Whether the provider acknowledged it.
    #[serde(default)]
    receipt_acknowledged: bool,
}

/// Live progress shared between a transfer's task and the registry.
#[derive(Debug, Default)]
struct Progress {
    bytes: AtomicU64,
    refetched: AtomicU64,
}

struct Live {
    view: TransferView,
    progress: Arc<Progress>,
    started: Instant,
}

/// The transfers this node runs, both ways.
pub(crate) struct Registry {
    live: HashMap<String, Live>,
    finished_order: Vec<String>,
    serving_per_peer: HashMap<PeerId, usize>,
    counters: Arc<Counters>,
}

impl Registry {
    pub(crate) fn new(counters: Arc<Counters>) -> Registry {
        Registry {
            live: HashMap::new(),
            finished_order: Vec::new(),
            serving_per_peer: HashMap::new(),
            counters,
        }
    }

    fn view(&self, id: &str) -> Option<TransferView> {
        self.live.get(id).map(|l| {
            let mut v = l.view.clone();
            v.bytes_done = v.bytes_done.max(l.progress.bytes.load(Ordering::Relaxed));
            v.refetched_chunks = l.progress.refetched.load(Ordering::Relaxed);
            if !v.status.finished() {
                v.total_ms = l.started.elapsed().as_millis() as u64;
            }
            v
        })
    }

    fn update(&mut self, id: &str, f: impl FnOnce(&mut TransferView)) {
        if let Some(l) = self.live.get_mut(id) {
            let was_finished = l.view.status.finished();
            f(&mut l.view);
            if l.view.status.finished() && !was_finished {
                let c = &self.counters;
                let counter = match (l.view.direction, l.view.status) {
                    (Direction::In, TransferStatus::Done) => &c.fetches_done,
                    (Direction::In, _) => &c.fetches_failed,
                    (Direction::Out, TransferStatus::Done) => &c.serves_done,
                    (Direction::Out, _) => &c.serves_failed,
                };
                Counters::add(counter, 1);
            }
            if l.view.status.finished() {
                l.view.bytes_done = l
                    .view
                    .bytes_done
                    .max(l.progress.bytes.load(Ordering::Relaxed));
                l.view.refetched_chunks = l.progress.refetched.load(Ordering::Relaxed);
                self.finished_order.push(id.to_string());
                while self.finished_order.len() > KEEP_FINISHED {
                    let old = self.finished_order.remove(0);
                    self.live.remove(&old);
                }
            }
        }
    }
}

struct ServingSlot {
    node: Node,
    peer: PeerId,
}

impl Drop for ServingSlot {
    fn drop(&mut self) {
        if let Ok(mut r) = self.node.inner.transfers.lock() {
            if let Some(n) = r.serving_per_peer.get_mut(&self.peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    r.serving_per_peer.remove(&self.peer);
                }
            }
        }
    }
}

/// A test-only fault the provider injects into what it serves.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Flip a byte of chunk `index` the next `times` times it is sent.
    CorruptChunk {
        /// The chunk.
        index: u32,
        /// How many sends are corrupted.
        times: u32,
    },
    /// Sign the manifests we serve with a throw-away key instead of ours.
    ForgeManifest,
    /// Wait this long before sending each chunk.
    SlowChunks(Duration),
    /// Add this latency to every answer and every chunk (the simulator's slow links; zero
    /// removes it).
    Delay(Duration),
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    corrupt: Option<(u32, u32)>,
    forge: bool,
    slow: Option<Duration>,
    delay: Option<Duration>,
}

/// A subscription to another member's dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Subscription {
    /// The publisher.
    pub publisher: String,
    /// Its region.
    pub region: Region,
    /// The offer identifier.
    pub dataset: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// The latest version fetched under it (0: none yet).
    pub fetched_version: u64,
    /// Why the latest version is not fetched yet, if something stands in the way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn sub_key(publisher: &str, dataset: &str) -> String {
    format!("{publisher}/{dataset}")
}

fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// How one attempt of a fetch ended, when it did not complete.
enum AttemptError {
    /// Worth another attempt (connection lost, provider busy or restarting).
    Retry(String),
    /// Not (refused, forged, invalid data).
    Fatal(String),
}

impl From<FrameError> for AttemptError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { .. } | FrameError::Malformed(_) => {
                AttemptError::Fatal(format!("provider broke the protocol: {e}"))
            }
            _ => AttemptError::Retry(e.to_string()),
        }
    }
}

fn fatal(e: impl std::fmt::Display) -> AttemptError {
    AttemptError::Fatal(e.to_string())
}

/// A salt only this provider can compute, distinct per grant: the same value hashes
/// differently for two grantees, so their deliveries cannot be joined on it.
fn mask_salt(seed: &[u8; 32], grant_id: &str) -> [u8; 32] {
    let mut material = seed.to_vec();
    material.extend_from_slice(grant_id.as_bytes());
    blake3::derive_key("yrd/v1 mask salt", &material)
}

fn blocking_err(e: tokio::task::JoinError) -> NodeError {
    NodeError::Invalid(format!("background task failed: {e}"))
}

impl Node {
    // ---------------------------------------------------------------- registry

    fn register(&self, view: TransferView) -> Arc<Progress> {
        let progress = Arc::new(Progress::default());
        progress.bytes.store(view.bytes_done, Ordering::Relaxed);
        if let Ok(mut r) = self.inner.transfers.lock() {
            r.live.insert(
                view.id.clone(),
                Live {
                    view,
                    progress: progress.clone(),
                    started: Instant::now(),
                },
            );
        }
        progress
    }

    fn update_transfer(&self, id: &str, f: impl FnOnce(&mut TransferView)) {
        if let Ok(mut r) = self.inner.transfers.lock() {
            r.update(id, f);
        }
    }

    /// Transfers in progress and recently finished, both ways, newest first.
    pub fn transfers(&self) -> Vec<TransferView> {
        let mut list: Vec<TransferView> = self
            .inner
            .transfers
            .lock()
            .map(|r| r.live.keys().filter_map(|id| r.view(id)).collect())
            .unwrap_or_default();
        // Fetches finished before this run are in the database.
        if let Ok(records) = self.store().records::<FetchRecord>(RecordTree::Fetches) {
            for (_, rec) in records {
                if !list.iter().any(|v| v.id == rec.view.id) {
                    list.push(rec.view);
                }
            }
        }
        list.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(a.id.cmp(&b.id)));
        list
    }

    /// One transfer.
    pub fn transfer(&self, id: &str) -> Result<TransferView, NodeError> {
        if let Some(v) = self.inner.transfers.lock().ok().and_then(|r| r.view(id)) {
            return Ok(v);
        }
        self.store()
            .record::<FetchRecord>(RecordTree::Fetches, id)?
            .map(|r| r.view)
            .ok_or_else(|| NodeError::NotFound(format!("no transfer {id}")))
    }

    /// The file of a completed fetch, for download.
    pub fn fetched_file(&self, id: &str) -> Result<(PathBuf, Signed<Manifest>), NodeError> {
        let rec = self
            .store()
            .record::<FetchRecord>(RecordTree::Fetches, id)?
            .ok_or_else(|| NodeError::NotFound(format!("no fetch {id}")))?;
        let (TransferStatus::Done, Some(m)) = (rec.view.status, rec.manifest) else {
            return Err(NodeError::Conflict(format!("fetch {id} has not completed")));
        };
        let path = self
            .blobs()
            .path(&m.document.digest)
            .filter(|p| p.is_file())
            .ok_or_else(|| NodeError::NotFound(format!("the file of fetch {id} is gone")))?;
        Ok((path, m))
    }

    /// Test hook: makes this node misbehave as a provider.
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: Fault) {
        if let Ok(mut f) = self.inner.faults.lock() {
            match fault {
                Fault::CorruptChunk { index, times } => f.corrupt = Some((index, times)),
                Fault::ForgeManifest => f.forge = true,
                Fault::SlowChunks(d) => f.slow = Some(d),
                Fault::Delay(d) => f.delay = (!d.is_zero()).then_some(d),
            }
        }
    }

    // ---------------------------------------------------------------- provider side

    /// Accepts inbound fetch streams until the network stops (spawned at start).
    pub(crate) async fn accept_fetches(self, mut incoming: libp2p_stream::IncomingStreams) {
        use futures::StreamExt;
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SERVING));
        while let Some((peer, stream)) = incoming.next().await {
            if !self.members().contains(&peer) {
                tracing::warn!(peer = %peer, "fetch stream from a non-member dropped");
                continue;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::warn!(peer = %peer, "fetch stream dropped: {MAX_SERVING} already served");
                continue;
            };
            let node = self.clone();
            self.spawn_long(async move {
                node.serve(peer, stream).await;
                drop(permit);
            });
        }
    }

    async fn serve(&self, peer: PeerId, mut stream: libp2p::Stream) {
        use futures::AsyncWriteExt;
        let stall = Duration::from_secs(self.config().exchange.stall_timeout_secs);
        let limit = self.config().exchange.max_transfers_per_peer;
        let admitted = self
            .inner
            .transfers
            .lock()
            .map(|mut r| {
                let n = r.serving_per_peer.entry(peer).or_insert(0);
                if *n >= limit {
                    false
                } else {
                    *n += 1;
                    true
                }
            })
            .unwrap_or(false);
        if !admitted {
            tracing::warn!(peer = %peer, limit, "fetch refused: too many transfers from this peer");
            let reply = FetchReply::Refused {
                code: "busy".into(),
                message: format!("{limit} transfers of yours are already running here"),
            };
            let _ = frames::write_json(&mut stream, &reply, stall).await;
            let _ = stream.close().await;
            return;
        }
        // Released however the session ends (error, cancellation at shutdown).
        let _slot = ServingSlot {
            node: self.clone(),
            peer,
        };
        let result = self.serve_session(peer, &mut stream, stall).await;
        if let Err(e) = &result {
            tracing::info!(peer = %peer, error = %e, "fetch session ended with an error");
        }
        let _ = stream.close().await;
    }

    async fn serve_session(
        &self,
        peer: PeerId,
        stream: &mut libp2p::Stream,
        stall: Duration,
    ) -> Result<(), NodeError> {
        let frame_err = |e: FrameError| NodeError::BadPeer {
            peer,
            reason: e.to_string(),
        };
        let open: FetchOpen = match frames::read_json(stream, MAX_OPEN_FRAME, stall).await {
            Ok(o) => o,
            Err(e) => {
                let reply = FetchReply::Refused {
                    code: "bad-request".into(),
                    message: format!("first frame must be a FetchOpen: {e}"),
                };
                let _ = frames::write_json(stream, &reply, stall).await;
                return Err(frame_err(e));
            }
        };
        let (manifest, table, grant) = match self.prepare_delivery(peer, &open).await {
            Ok(x) => x,
            Err(refused) => {
                tracing::warn!(
                    peer = %peer,
                    dataset = %open.dataset,
                    code = refused.code,
                    reason = %refused.message,
                    "fetch refused"
                );
                self.record_refusal(
                    Some(peer),
                    Some(&open.dataset),
                    &format!("fetch refused ({}): {}", refused.code, refused.message),
                )
                .await;
                let reply = FetchReply::Refused {
                    code: refused.code.into(),
                    message: refused.message,
                };
                frames::write_json(stream, &reply, stall)
                    .await
                    .map_err(frame_err)?;
                return Ok(());
            }
        };
        let digest = manifest.document.digest.clone();
        let served_manifest = self.maybe_forge(manifest.clone());
        let reply = FetchReply::Ready {
            manifest: Box::new(served_manifest),
            chunk_table: (*table).clone(),
        };
        frames::write_json(stream, &reply, stall)
            .await
            .map_err(frame_err)?;
        let id = new_id();
        let progress = self.register(TransferView {
            id: id.clone(),
            direction: Direction::Out,
            peer: peer.to_string(),
            peer_region: self.peer_region(&peer),
            dataset: open.dataset.clone(),
            version: Some(manifest.document.version),
            grant: grant.as_ref().map(|g| g.document.id.clone()),
            status: TransferStatus::Running,
            bytes_done: 0,
            bytes_total: manifest.document.size,
            refetched_chunks: 0,
            attempts: 1,
            started_at: now_rfc3339(),
            finished_at: None,
            transfer_ms: 0,
            total_ms: 0,
            digest: Some(digest.clone()),
            derived: manifest.document.derived_from.is_some(),
            error: None,
        });
        let started = Instant::now();
        let outcome = self
            .serve_chunks(stream, &digest, table, &progress, stall)
            .await;
        let elapsed = started.elapsed().as_millis() as u64;
        let (status, error) = match &outcome {
            Ok(()) => (TransferStatus::Done, None),
            Err(e) => (TransferStatus::Failed, Some(e.to_string())),
        };
        self.update_transfer(&id, |v| {
            v.status = status;
            v.error = error;
            v.finished_at = Some(now_rfc3339());
            v.transfer_ms = elapsed;
            v.total_ms = elapsed;
        });
        tracing::info!(
            peer = %peer,
            dataset = %open.dataset,
            version = manifest.document.version,
            bytes = progress.bytes.load(Ordering::Relaxed),
            ok = outcome.is_ok(),
            "fetch session served"
        );
        if outcome.is_ok() {
            let m = &manifest.document;
            let mut r = self.new_record(RecordKind::DeliveryServed);
            r.dataset = Some(m.dataset.clone());
            r.version = Some(m.version);
            r.data_digest = Some(m.digest.clone());
            if let Some(g) = &grant {
                r.grant = Some(g.document.id.clone());
                r.fields = grant_fields(&g.document);
                r.purpose = Some(g.document.purpose.clone());
                r.legal_basis = Some(g.document.legal_basis.clone());
            }
            let docs = [doc(&manifest), grant.as_ref().and_then(doc)]
                .into_iter()
                .flatten()
                .collect();
            self.record(r, Some(peer), docs).await;
            self.witness_soon(peer);
        }
        outcome
    }

    /// The region of a member whose NodeInfo we verified.
    pub(crate) fn peer_region(&self, peer: &PeerId) -> Option<Region> {
        self.inner
            .peer_infos
            .read()
            .ok()
            .and_then(|m| m.get(peer).map(|i| i.document.region))
    }

    fn maybe_forge(&self, manifest: Signed<Manifest>) -> Signed<Manifest> {
        let forge = self.inner.faults.lock().map(|f| f.forge).unwrap_or(false);
        if !forge {
            return manifest;
        }
        let other = crate::identity::NodeKey::generate();
        Signed::sign(manifest.document.clone(), other.signing_key()).unwrap_or(manifest)
    }

    /// Access checks and the manifest + chunk table of what `peer` will receive.
    async fn prepare_delivery(
        &self,
        peer: PeerId,
        open: &FetchOpen,
    ) -> Result<(Signed<Manifest>, Arc<ChunkTable>, Option<Signed<Grant>>), Refusal> {
        let internal = |e: NodeError| Refusal {
            code: "internal",
            message: e.to_string(),
        };
        let offer = self.deliverable_offer(&open.dataset)?;
        let versions = self.manifests(None, &open.dataset).map_err(internal)?;
        let manifest = match open.version {
            Some(v) => versions.into_iter().find(|m| m.document.version == v),
            None => versions.into_iter().last(),
        }
        .ok_or_else(|| Refusal {
            code: "not-found",
            message: match open.version {
                Some(v) => format!("{} has no version {v}", open.dataset),
                None => format!("{} has no published version yet", open.dataset),
            },
        })?;
        let (manifest, grant) = match offer.offer.share_type {
            ShareType::Unconditional => (manifest, None),
            ShareType::Conditional => {
                let grant = self.check_grant(&peer, &open.dataset, open.grant.as_deref())?;
                let derived = self
                    .derived_delivery(&grant, &manifest)
                    .await
                    .map_err(internal)?;
                (derived, Some(grant))
            }
            ShareType::NotShared => {
                return Err(Refusal {
                    code: "not-shared",
                    message: format!("{} is not shared", open.dataset),
                });
            }
        };
        let table = self.chunk_table_of(&manifest).await.map_err(internal)?;
        Ok((manifest, table, grant))
    }

    /// The chunk table of a manifest we serve (computed once per process, checked against it).
    async fn chunk_table_of(
        &self,
        manifest: &Signed<Manifest>,
    ) -> Result<Arc<ChunkTable>, NodeError> {
        let m = &manifest.document;
        if let Some(t) = self
            .inner
            .chunk_tables
            .lock()
            .ok()
            .and_then(|c| c.get(&m.digest).cloned())
        {
            return Ok(t);
        }
        let blobs = self.blobs().clone();
        let (digest, size) = (m.digest.clone(), m.chunk_size);
        let table = tokio::task::spawn_blocking(move || blobs.chunk_table(&digest, size))
            .await
            .map_err(blocking_err)?
            .map_err(|e| NodeError::Invalid(format!("stored file of {}: {e}", m.dataset)))?;
        let digest = table
            .digest()
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        if digest != m.chunk_table_digest {
            return Err(NodeError::Invalid(format!(
                "stored file of {} v{} no longer matches its manifest",
                m.dataset, m.version
            )));
        }
        let table = Arc::new(table);
        if let Ok(mut c) = self.inner.chunk_tables.lock() {
            if c.len() >= CHUNK_TABLE_CACHE {
                c.clear();
            }
            c.insert(m.digest.clone(), table.clone());
        }
        Ok(table)
    }

    async fn serve_chunks(
        &self,
        stream: &mut libp2p::Stream,
        digest: &str,
        table: Arc<ChunkTable>,
        progress: &Progress,
        stall: Duration,
    ) -> Result<(), NodeError> {
        let bad = |reason: String| NodeError::Invalid(reason);
        loop {
            let want: ChunkWant = match frames::read_json(stream, MAX_CONTROL_FRAME, stall).await {
                Ok(w) => w,
                Err(FrameError::Closed) => return Ok(()),
                Err(e) => return Err(bad(format!("reading the chunk request: {e}"))),
            };
            let indexes = want
                .indexes(table.chunk_count())
                .map_err(|e| bad(format!("bad chunk request: {e}")))?;
            if indexes.is_empty() {
                return Ok(());
            }
            // One blocking reader per round streams verified chunks through a short queue.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(u32, Vec<u8>), BlobError>>(2);
            let blobs = self.blobs().clone();
            let (d, t) = (digest.to_string(), table.clone());
            let reader = tokio::task::spawn_blocking(move || {
                let mut chunks = match blobs.open_chunks(&d, &t) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                for i in indexes {
                    let mut buf = Vec::new();
                    let r = chunks.read_chunk_into(i, &mut buf).map(|()| (i, buf));
                    let stop = r.is_err();
                    if tx.blocking_send(r).is_err() || stop {
                        return;
                    }
                }
            });
            while let Some(item) = rx.recv().await {
                let (index, mut bytes) =
                    item.map_err(|e| NodeError::Invalid(format!("stored file: {e}")))?;
                let (slow, corrupt) = self.take_faults(index);
                if let Some(d) = slow {
                    tokio::time::sleep(d).await;
                }
                if corrupt {
                    if let Some(b) = bytes.first_mut() {
                        *b ^= 0xff;
                    }
                }
                frames::write_frame(stream, &[&index.to_be_bytes(), &bytes], stall)
                    .await
                    .map_err(|e| bad(format!("sending chunk {index}: {e}")))?;
                progress
                    .bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Counters::add(&self.inner.counters.bytes_sent, bytes.len() as u64);
            }
            let _ = reader.await;
        }
    }

    fn take_faults(&self, index: u32) -> (Option<Duration>, bool) {
        let Ok(mut f) = self.inner.faults.lock() else {
            return (None, false);
        };
        let corrupt = match f.corrupt {
            Some((i, n)) if i == index && n > 0 => {
                f.corrupt = if n > 1 { Some((i, n - 1)) } else { None };
                true
            }
            _ => false,
        };
        let wait = match (f.slow, f.delay) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        (wait, corrupt)
    }

    /// The simulated latency of this node's answers, if any.
    pub(crate) fn answer_delay(&self) -> Option<Duration> {
        self.inner.faults.lock().ok().and_then(|f| f.delay)
    }

    /// The masked delivery of `original` under `grant`: derived once per grant and version,
    /// stored as a blob with its own signed manifest naming the original and the grant.
    async fn derived_delivery(
        &self,
        grant: &Signed<Grant>,
        original: &Signed<Manifest>,
    ) -> Result<Signed<Manifest>, NodeError> {
        let o = &original.document;
        if o.format == DataFormat::File {
            // An opaque file has no fields to select or mask: the grant covers the whole file.
            return Ok(original.clone());
        }
        let key = format!("{}/{}", grant.document.id, o.version);
        let _guard = self.inner.derive_lock.lock().await;
        if let Some(m) = self
            .store()
            .record::<Signed<Manifest>>(RecordTree::Derived, &key)?
        {
            if self.blobs().contains(&m.document.digest) {
                return Ok(m);
            }
        }
        let schema_ref = o
            .schema
            .clone()
            .ok_or_else(|| NodeError::Invalid("a record dataset without a standard".into()))?;
        let doc = self.schema_doc(&schema_ref.id, Some(&schema_ref.version))?;
        let compiled = standard::compile(&doc.document.schema)
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        let known: Vec<String> = compiled.fields().iter().map(|f| f.name.clone()).collect();
        let g = &grant.document;
        let projection = Projection::new(g.fields.clone(), g.masks.clone(), &known)
            .map_err(|e| NodeError::Invalid(format!("grant {}: {e}", g.id)))?;
        let salt = mask_salt(&self.inner.key.signing_key().to_bytes(), &g.id);
        let blobs = self.blobs().clone();
        let (digest, format) = (o.digest.clone(), o.format);
        let started = Instant::now();
        let (info, records) = tokio::task::spawn_blocking(move || {
            derive_file(&blobs, &digest, format, &compiled, &projection, &salt)
        })
        .await
        .map_err(blocking_err)??;
        let manifest = Manifest {
            dataset: o.dataset.clone(),
            publisher: self.peer_id().to_string(),
            region: self.region(),
            version: o.version,
            previous: None,
            schema: Some(schema_ref),
            format: DataFormat::Jsonl,
            digest: info.digest.clone(),
            size: info.size,
            record_count: records,
            chunk_size: info.chunk_table.chunk_size,
            chunk_table_digest: info
                .chunk_table
                .digest()
                .map_err(|e| NodeError::Invalid(e.to_string()))?,
            published_at: now_rfc3339(),
            derived_from: Some(Derivation {
                original_digest: o.digest.clone(),
                grant_id: g.id.clone(),
                fields: g.fields.clone(),
                masks: g.masks.clone(),
            }),
        };
        let signed = Signed::sign(manifest, self.inner.key.signing_key())?;
        self.store()
            .put_record(RecordTree::Derived, &key, &signed)?;
        self.store().flush().await?;
        if let Ok(mut c) = self.inner.chunk_tables.lock() {
            c.insert(info.digest.clone(), Arc::new(info.chunk_table));
        }
        tracing::info!(
            dataset = %o.dataset,
            version = o.version,
            grant = %g.id,
            records,
            ms = started.elapsed().as_millis() as u64,
            "masked delivery derived"
        );
        Ok(signed)
    }

    /// Provider side: a receiver's signed Receipt arrived.
    pub(crate) async fn on_receipt(
        &self,
        peer: PeerId,
        receipt: Signed<Receipt>,
    ) -> Result<(), NodeError> {
        receipt.verify()?;
        let r = &receipt.document;
        let signer = self.signer_peer(&receipt.signer_key()?, &r.receiver)?;
        if signer != peer {
            return Err(NodeError::Invalid(format!(
                "receipt signed by {signer}, sent by {peer}"
            )));
        }
        if r.provider != self.peer_id().to_string() {
            return Err(NodeError::Invalid(
                "the receipt names another provider".into(),
            ));
        }
        // It must acknowledge something we actually served: one of our manifests, original
        // or derived under a grant to this receiver.
        let mut known = self
            .manifests(None, &r.dataset)?
            .into_iter()
            .filter(|m| m.document.version == r.version)
            .collect::<Vec<_>>();
        if let Some(g) = &r.grant_id {
            let key = format!("{g}/{}", r.version);
            if let Some(m) = self
                .store()
                .record::<Signed<Manifest>>(RecordTree::Derived, &key)?
            {
                known.push(m);
            }
        }
        let matched = known.iter().any(|m| {
            m.digest_hex().ok().as_deref() == Some(r.manifest_digest.as_str())
                && m.document.digest == r.data_digest
        });
        if !matched {
            return Err(NodeError::Invalid(format!(
                "the receipt acknowledges {} v{} with a manifest we did not serve",
                r.dataset, r.version
            )));
        }
        let key = format!(
            "{}/{}/{}/{}",
            r.receiver, r.dataset, r.version, r.data_digest
        );
        self.store()
            .put_record(RecordTree::Receipts, &key, &receipt)?;
        self.store().flush().await?;
        let mut rec = self.new_record(RecordKind::ReceiptReceived);
        rec.dataset = Some(r.dataset.clone());
        rec.version = Some(r.version);
        rec.data_digest = Some(r.data_digest.clone());
        rec.grant = r.grant_id.clone();
        self.record(rec, Some(peer), doc(&receipt).into_iter().collect())
            .await;
        tracing::info!(peer = %peer, dataset = %r.dataset, version = r.version, "receipt recorded");
        Ok(())
    }

    /// Receipts we hold from receivers of our data.
    pub fn receipts(&self) -> Result<Vec<Signed<Receipt>>, NodeError> {
        Ok(self
            .store()
            .records::<Signed<Receipt>>(RecordTree::Receipts)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    // ---------------------------------------------------------------- fetcher side

    /// Starts fetching `target` (`REGION_OR_PEER/DATASET`); returns at once with the transfer.
    /// A conditional offer needs a valid grant: the one named, or the latest we hold.
    pub async fn fetch(
        &self,
        target: &str,
        version: Option<u64>,
        grant: Option<String>,
    ) -> Result<TransferView, NodeError> {
        let t = self.resolve_target(target)?;
        self.fetch_from(&t, version, grant)
    }

    fn fetch_from(
        &self,
        t: &Target,
        version: Option<u64>,
        grant: Option<String>,
    ) -> Result<TransferView, NodeError> {
        let dataset = t.offer.offer.identifier.clone();
        let grant = match t.offer.offer.share_type {
            ShareType::NotShared => {
                return Err(NodeError::Invalid(format!(
                    "{dataset} is not shared (不予共享): {}",
                    t.offer
                        .offer
                        .share_conditions
                        .as_deref()
                        .unwrap_or("no reason given")
                )));
            }
            ShareType::Unconditional => None,
            ShareType::Conditional => match grant {
                Some(g) => Some(g),
                None => Some(
                    self.usable_grant(&t.peer, &dataset)
                        .map(|g| g.id)
                        .ok_or_else(|| {
                            NodeError::Invalid(format!(
                                "{dataset} is shared on conditions (有条件共享) and we hold no \
                                 valid grant for it: `yrd request {}/{dataset} --purpose … \
                                 --basis …` first",
                                t.peer
                            ))
                        })?,
                ),
            },
        };
        // One fetch of a version at a time: return the running one.
        let peer = t.peer.to_string();
        if let Some(running) = self.transfers().into_iter().find(|v| {
            v.direction == Direction::In
                && !v.status.finished()
                && v.peer == peer
                && v.dataset == dataset
                && v.grant == grant
                && (version.is_none() || v.version.is_none() || v.version == version)
        }) {
            return Ok(running);
        }
        let view = TransferView {
            id: new_id(),
            direction: Direction::In,
            peer,
            peer_region: Some(t.region),
            dataset,
            version,
            grant,
            status: TransferStatus::Connecting,
            bytes_done: 0,
            bytes_total: 0,
            refetched_chunks: 0,
            attempts: 0,
            started_at: now_rfc3339(),
            finished_at: None,
            transfer_ms: 0,
            total_ms: 0,
            digest: None,
            derived: false,
            error: None,
        };
        let record = FetchRecord {
            view: view.clone(),
            manifest: None,
            wanted_version: version,
            receipt: None,
            receipt_acknowledged: false,
        };
        self.store()
            .put_record(RecordTree::Fetches, &view.id, &record)?;
        self.spawn_fetch(record);
        Ok(view)
    }

    fn spawn_fetch(&self, record: FetchRecord) {
        let progress = self.register(record.view.clone());
        let node = self.clone();
        self.spawn_long(async move { node.run_fetch(record, progress).await });
    }

    /// Resumes fetches a previous run left unfinished (called at start).
    pub(crate) fn resume_fetches(&self) {
        let Ok(records) = self.store().records::<FetchRecord>(RecordTree::Fetches) else {
            return;
        };
        for (_, rec) in records {
            if !rec.view.status.finished() {
                tracing::info!(dataset = %rec.view.dataset, transfer = %rec.view.id, "resuming fetch");
                self.spawn_fetch(rec);
            }
        }
    }

    fn save_fetch(&self, record: &FetchRecord) {
        if let Err(e) = self
            .store()
            .put_record(RecordTree::Fetches, &record.view.id, record)
        {
            tracing::error!(transfer = %record.view.id, error = %e, "cannot record fetch state");
        }
    }

    async fn run_fetch(&self, mut record: FetchRecord, progress: Arc<Progress>) {
        let id = record.view.id.clone();
        let Ok(peer) = record.view.peer.parse::<PeerId>() else {
            return;
        };
        let started = Instant::now();
        let retry_for = Duration::from_secs(self.config().exchange.fetch_retry_secs);
        let mut backoff = Duration::from_millis(250);
        let outcome = loop {
            record.view.attempts += 1;
            let attempts = record.view.attempts;
            self.update_transfer(&id, |v| {
                v.attempts = attempts;
                v.status = TransferStatus::Connecting;
            });
            match self.attempt(peer, &mut record, &progress).await {
                Ok(()) => break Ok(()),
                Err(AttemptError::Fatal(e)) => break Err(e),
                Err(AttemptError::Retry(e)) => {
                    if started.elapsed() >= retry_for {
                        break Err(format!(
                            "gave up after {} s of retries: {e}",
                            retry_for.as_secs()
                        ));
                    }
                    tracing::info!(peer = %peer, dataset = %record.view.dataset, error = %e, "fetch interrupted; will resume");
                    let msg = e.clone();
                    self.update_transfer(&id, |v| {
                        v.status = TransferStatus::Waiting;
                        v.error = Some(msg);
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        record.view.finished_at = Some(now_rfc3339());
        record.view.total_ms = started.elapsed().as_millis() as u64;
        record.view.bytes_done = progress.bytes.load(Ordering::Relaxed);
        record.view.refetched_chunks = progress.refetched.load(Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                record.view.status = TransferStatus::Done;
                record.view.error = None;
            }
            Err(e) => {
                tracing::warn!(peer = %peer, dataset = %record.view.dataset, error = %e, "fetch failed");
                self.record_refusal(
                    Some(peer),
                    Some(&record.view.dataset),
                    &format!("fetch failed: {e}"),
                )
                .await;
                record.view.status = TransferStatus::Failed;
                record.view.error = Some(e);
                // Nothing half-fetched is kept for a fetch that will not resume.
                let _ = self.blobs().abort_partial(&id);
            }
        }
        self.save_fetch(&record);
        let _ = self.store().flush().await;
        let view = record.view.clone();
        self.update_transfer(&id, |v| *v = view);
        if record.view.status == TransferStatus::Done {
            if let Some(m) = &record.manifest {
                let mut r = self.new_record(RecordKind::DatasetReceived);
                r.dataset = Some(m.document.dataset.clone());
                r.version = Some(m.document.version);
                r.data_digest = Some(m.document.digest.clone());
                r.grant = record.view.grant.clone();
                let grant = record
                    .view
                    .grant
                    .as_deref()
                    .and_then(|g| self.grant_record(g).ok());
                if let Some(g) = &grant {
                    r.fields = grant_fields(&g.grant.document);
                    r.purpose = Some(g.grant.document.purpose.clone());
                    r.legal_basis = Some(g.grant.document.legal_basis.clone());
                }
                let docs = [doc(m), grant.as_ref().and_then(|g| doc(&g.grant))]
                    .into_iter()
                    .flatten()
                    .collect();
                self.record(r, Some(peer), docs).await;
            }
            self.send_receipt(peer, &mut record).await;
            self.witness_soon(peer);
            self.note_subscription_progress(&record);
        }
    }

    /// One connection's worth of a fetch.
    async fn attempt(
        &self,
        peer: PeerId,
        record: &mut FetchRecord,
        progress: &Arc<Progress>,
    ) -> Result<(), AttemptError> {
        use futures::AsyncWriteExt;
        let id = record.view.id.clone();
        let stall = Duration::from_secs(self.config().exchange.stall_timeout_secs);
        let mut stream = self
            .inner
            .net
            .open_stream(peer, FETCH_PROTOCOL, stall)
            .await
            .map_err(|e| AttemptError::Retry(e.to_string()))?;
        // Once a version is pinned, later attempts ask for exactly it.
        let version = record
            .manifest
            .as_ref()
            .map(|m| m.document.version)
            .or(record.wanted_version);
        let open = FetchOpen {
            dataset: record.view.dataset.clone(),
            version,
            grant: record.view.grant.clone(),
        };
        frames::write_json(&mut stream, &open, stall).await?;
        let reply: FetchReply = frames::read_json(&mut stream, MAX_CONTROL_FRAME, stall).await?;
        let (manifest, table) = match reply {
            FetchReply::Ready {
                manifest,
                chunk_table,
            } => (*manifest, chunk_table),
            FetchReply::Refused { code, message } => {
                let e = format!("refused by the provider ({code}): {message}");
                return Err(if code == "busy" {
                    AttemptError::Retry(e)
                } else {
                    AttemptError::Fatal(e)
                });
            }
        };
        self.check_manifest(peer, record, &manifest, &table)
            .map_err(fatal)?;
        let m = manifest.document.clone();
        if record
            .manifest
            .as_ref()
            .is_some_and(|held| held.document.digest != m.digest)
        {
            // The provider re-derived the delivery (e.g. after losing it): start over.
            let _ = self.blobs().abort_partial(&id);
            progress.bytes.store(0, Ordering::Relaxed);
        }
        record.manifest = Some(manifest.clone());
        record.view.version = Some(m.version);
        record.view.bytes_total = m.size;
        record.view.digest = Some(m.digest.clone());
        record.view.derived = m.derived_from.is_some();
        record.view.status = TransferStatus::Running;
        self.save_fetch(record);
        let snapshot = record.view.clone();
        self.update_transfer(&id, |v| {
            *v = TransferView {
                attempts: v.attempts,
                ..snapshot
            }
        });
        let moving = Instant::now();
        if !self.blobs().contains(&m.digest) {
            let blobs = self.blobs().clone();
            let (pid, digest, t) = (id.clone(), m.digest.clone(), table.clone());
            let partial =
                tokio::task::spawn_blocking(move || blobs.begin_partial(&pid, &digest, &t))
                    .await
                    .map_err(fatal)?
                    .map_err(fatal)?;
            progress
                .bytes
                .store(partial.progress().0, Ordering::Relaxed);
            let partial = self
                .pull_chunks(&mut stream, partial, progress, stall)
                .await?;
            let _ = frames::write_json(&mut stream, &ChunkWant { ranges: vec![] }, stall).await;
            let _ = stream.close().await;
            record.view.transfer_ms += moving.elapsed().as_millis() as u64;
            self.update_transfer(&id, |v| v.status = TransferStatus::Verifying);
            let info = tokio::task::spawn_blocking(move || partial.finish())
                .await
                .map_err(fatal)?
                .map_err(|e| AttemptError::Fatal(format!("assembled file refused: {e}")))?;
            if info.digest != m.digest {
                return Err(AttemptError::Fatal(
                    "assembled file has the wrong digest".into(),
                ));
            }
        } else {
            let _ = frames::write_json(&mut stream, &ChunkWant { ranges: vec![] }, stall).await;
            let _ = stream.close().await;
            progress.bytes.store(m.size, Ordering::Relaxed);
        }
        self.update_transfer(&id, |v| v.status = TransferStatus::Verifying);
        if let Err(e) = self.revalidate(peer, &manifest).await {
            if !self.store().manifest_names_blob(&m.digest).unwrap_or(true) {
                let _ = self.blobs().remove(&m.digest);
            }
            return Err(AttemptError::Fatal(e.to_string()));
        }
        self.store()
            .put_manifest(
                &m.publisher,
                &m.dataset,
                m.version,
                &super::schemas::to_json(&manifest).map_err(fatal)?,
            )
            .map_err(fatal)?;
        tracing::info!(
            peer = %peer,
            dataset = %m.dataset,
            version = m.version,
            bytes = m.size,
            records = m.record_count,
            derived = m.derived_from.is_some(),
            "dataset received and verified"
        );
        Ok(())
    }

    /// The manifest must be signed by the provider (the only publisher), name the dataset and
    /// version asked for, sign this chunk table, and for a masked delivery name our grant with
    /// exactly its fields and masks.
    fn check_manifest(
        &self,
        peer: PeerId,
        record: &FetchRecord,
        manifest: &Signed<Manifest>,
        table: &ChunkTable,
    ) -> Result<(), NodeError> {
        manifest
            .verify()
            .map_err(|e| NodeError::Invalid(format!("manifest refused: {e}")))?;
        let m = &manifest.document;
        let signer = crate::identity::peer_id_of(&manifest.signer_key()?)
            .ok_or_else(|| NodeError::Invalid("manifest signer is not a valid key".into()))?;
        if signer != peer || m.publisher != peer.to_string() {
            return Err(NodeError::Invalid(format!(
                "forged manifest refused: signed by {signer} for publisher {}, but the \
                 dataset's only publisher is {peer}",
                m.publisher
            )));
        }
        if m.dataset != record.view.dataset {
            return Err(NodeError::Invalid(format!(
                "manifest is for {}, not {}",
                m.dataset, record.view.dataset
            )));
        }
        if let Some(v) = record.wanted_version {
            if m.version != v {
                return Err(NodeError::Invalid(format!(
                    "manifest is for version {}, not {v}",
                    m.version
                )));
            }
        }
        table
            .validate()
            .map_err(|e| NodeError::Invalid(format!("chunk table refused: {e}")))?;
        let td = table
            .digest()
            .map_err(|e| NodeError::Invalid(format!("chunk table refused: {e}")))?;
        if td != m.chunk_table_digest || table.size != m.size || table.chunk_size != m.chunk_size {
            return Err(NodeError::Invalid(
                "the chunk table sent is not the one the manifest signs".into(),
            ));
        }
        match (&record.view.grant, &m.derived_from) {
            (Some(gid), Some(d)) => {
                let g = self.grant_record(gid)?;
                if &d.grant_id != gid
                    || d.fields != g.grant.document.fields
                    || d.masks != g.grant.document.masks
                {
                    return Err(NodeError::Invalid(format!(
                        "the delivery does not match grant {gid}'s fields and masking"
                    )));
                }
            }
            (None, Some(_)) => {
                return Err(NodeError::Invalid(
                    "a masked delivery arrived without a grant".into(),
                ));
            }
            (Some(_), None) if m.format != DataFormat::File => {
                return Err(NodeError::Invalid(
                    "a delivery under a grant must be a masked derivation".into(),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Pulls every missing chunk, verifying each before it is written; a bad chunk is asked
    /// again (up to [`MAX_BAD_CHUNK_RETRIES`] times) and never stored.
    async fn pull_chunks(
        &self,
        stream: &mut libp2p::Stream,
        partial: Partial,
        progress: &Arc<Progress>,
        stall: Duration,
    ) -> Result<Partial, AttemptError> {
        let mut partial = partial;
        let mut bad_counts: HashMap<u32, u32> = HashMap::new();
        let limit = CHUNK_HEADER + partial.table().chunk_size as usize;
        let mut missing = partial.missing();
        while !missing.is_empty() {
            // Ask in slices, so a want frame stays small however fragmented the gaps are.
            // At most MAX_WANT_RANGES ranges per request, however fragmented the gaps are.
            let mut round: Vec<u32> = Vec::new();
            let mut ranges = 0usize;
            for &i in &missing {
                if round.last().is_none_or(|&last| last + 1 != i) {
                    if ranges == crate::model::transfer::MAX_WANT_RANGES {
                        break;
                    }
                    ranges += 1;
                }
                round.push(i);
            }
            let want = ChunkWant::from_indexes(&round);
            frames::write_json(stream, &want, stall).await?;
            let (tx, mut rx) = tokio::sync::mpsc::channel::<(u32, Vec<u8>)>(CHUNK_QUEUE);
            let p = progress.clone();
            let totals = self.inner.counters.clone();
            let writer = tokio::task::spawn_blocking(move || {
                let mut bad = Vec::new();
                let mut unsynced = 0u64;
                while let Some((index, bytes)) = rx.blocking_recv() {
                    let len = (bytes.len() - CHUNK_HEADER) as u64;
                    match partial.write_chunk_deferred(index, &bytes[CHUNK_HEADER..]) {
                        Ok(()) => {
                            unsynced += len;
                            p.bytes.fetch_add(len, Ordering::Relaxed);
                            Counters::add(&totals.bytes_received, len);
                        }
                        Err(BlobError::BadChunk { .. }) => bad.push(index),
                        Err(e) => return Err((partial, e)),
                    }
                    // One data sync and one journal sync per SYNC_EVERY bytes, not per chunk.
                    if unsynced >= SYNC_EVERY {
                        if let Err(e) = partial.commit() {
                            return Err((partial, e));
                        }
                        unsynced = 0;
                    }
                }
                if let Err(e) = partial.commit() {
                    return Err((partial, e));
                }
                Ok((partial, bad))
            });
            let mut read_error = None;
            for &expected in &round {
                let mut frame = Vec::new();
                if let Err(e) = frames::read_frame_into(stream, &mut frame, limit, stall).await {
                    read_error = Some(AttemptError::from(e));
                    break;
                }
                let index = frame
                    .get(..CHUNK_HEADER)
                    .and_then(|h| h.try_into().ok())
                    .map(u32::from_be_bytes);
                if index != Some(expected) {
                    read_error = Some(AttemptError::Fatal(format!(
                        "provider sent chunk {index:?} where {expected} was asked"
                    )));
                    break;
                }
                if tx.send((expected, frame)).await.is_err() {
                    break;
                }
            }
            drop(tx);
            let (back, bad) = match writer.await.map_err(fatal)? {
                Ok(x) => x,
                Err((_, e)) => {
                    return Err(AttemptError::Fatal(format!("cannot store a chunk: {e}")));
                }
            };
            partial = back;
            if let Some(e) = read_error {
                return Err(e);
            }
            for index in &bad {
                let n = bad_counts.entry(*index).or_insert(0);
                *n += 1;
                progress.refetched.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    chunk = index,
                    times = *n,
                    "chunk failed verification; asking again"
                );
                if *n > MAX_BAD_CHUNK_RETRIES {
                    return Err(AttemptError::Fatal(format!(
                        "the provider sent chunk {index} corrupted {} times",
                        *n
                    )));
                }
            }
            missing = partial.missing();
        }
        Ok(partial)
    }

    /// Re-validates the received records against the standard (for a masked delivery: the
    /// standard restricted to the granted fields, masked fields as strings).
    async fn revalidate(&self, peer: PeerId, manifest: &Signed<Manifest>) -> Result<(), NodeError> {
        let m = &manifest.document;
        let Some(r) = &m.schema else {
            return Ok(());
        };
        if m.format == DataFormat::File {
            return Ok(());
        }
        if self.schema_doc(&r.id, Some(&r.version)).is_err() {
            let request = Request::GetSchema {
                id: r.id.clone(),
                version: r.version.clone(),
            };
            match self.inner.net.request(peer, request).await? {
                Response::Schema { schema } => {
                    self.accept_schema(peer, *schema).await?;
                }
                other => return Err(unexpected(peer, &other)),
            }
        }
        let doc = self.schema_doc(&r.id, Some(&r.version))?;
        let schema = match &m.derived_from {
            None => doc.document.schema.clone(),
            Some(d) => {
                let masked: Vec<String> = d.masks.iter().map(|x| x.field.clone()).collect();
                standard::project_schema(&doc.document.schema, &d.fields, &masked)
            }
        };
        let compiled = standard::compile(&schema).map_err(|e| NodeError::Invalid(e.to_string()))?;
        let blobs = self.blobs().clone();
        let (digest, format, expected) = (m.digest.clone(), m.format, m.record_count);
        let checked = tokio::task::spawn_blocking(move || {
            let reader = blobs.open_read(&digest).map_err(|e| {
                vec![RecordProblem {
                    line: 0,
                    path: String::new(),
                    message: e.to_string(),
                }]
            })?;
            if format == DataFormat::Csv {
                check_csv(reader, &compiled)
            } else {
                check_jsonl(reader, &compiled)
            }
        })
        .await
        .map_err(blocking_err)?;
        match checked {
            Ok(c) if c.records == expected => Ok(()),
            Ok(c) => Err(NodeError::Invalid(format!(
                "received {} records, the manifest says {expected}",
                c.records
            ))),
            Err(problems) => Err(NodeError::Invalid(format!(
                "received records do not conform to {}@{}: {}",
                r.id,
                r.version,
                problems
                    .iter()
                    .map(|p| format!("line {} {}: {}", p.line, p.path, p.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))),
        }
    }

    /// Sends again the receipts `peer` has not acknowledged (called when it connects).
    pub(crate) async fn resend_receipts(&self, peer: PeerId) {
        let Ok(records) = self.store().records::<FetchRecord>(RecordTree::Fetches) else {
            return;
        };
        let who = peer.to_string();
        for (_, mut rec) in records {
            if rec.view.peer == who
                && rec.view.status == TransferStatus::Done
                && !rec.receipt_acknowledged
            {
                self.send_receipt(peer, &mut rec).await;
            }
        }
    }

    async fn send_receipt(&self, peer: PeerId, record: &mut FetchRecord) {
        let Some(manifest) = &record.manifest else {
            return;
        };
        let m = &manifest.document;
        let Ok(manifest_digest) = manifest.digest_hex() else {
            return;
        };
        // A receipt already signed is sent as it is: one receipt per delivery.
        if let Some(existing) = record.receipt.clone() {
            return self.deliver_receipt(peer, record, existing).await;
        }
        let receipt = Receipt {
            receiver: self.peer_id().to_string(),
            provider: m.publisher.clone(),
            dataset: m.dataset.clone(),
            version: m.version,
            manifest_digest,
            data_digest: m.digest.clone(),
            grant_id: record.view.grant.clone(),
            received_at: now_rfc3339(),
        };
        let Ok(signed) = Signed::sign(receipt, self.inner.key.signing_key()) else {
            return;
        };
        record.receipt = Some(signed.clone());
        self.save_fetch(record);
        self.deliver_receipt(peer, record, signed).await;
    }

    async fn deliver_receipt(
        &self,
        peer: PeerId,
        record: &mut FetchRecord,
        signed: Signed<Receipt>,
    ) {
        for attempt in 0..3u32 {
            let request = Request::Receipt {
                receipt: Box::new(signed.clone()),
            };
            match self.inner.net.request(peer, request).await {
                Ok(Response::Ack) => {
                    record.receipt_acknowledged = true;
                    self.save_fetch(record);
                    return;
                }
                Ok(other) => {
                    tracing::warn!(peer = %peer, answer = ?other, "provider refused our receipt");
                    return;
                }
                Err(e) => {
                    tracing::info!(peer = %peer, error = %e, attempt, "receipt not delivered; retrying");
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
            }
        }
    }

    // ---------------------------------------------------------------- subscriptions

    /// Subscribes to `target`: its latest version is fetched now and each new one as it is
    /// announced (a conditional offer needs a grant; the subscription waits for one).
    pub async fn subscribe(&self, target: &str) -> Result<Subscription, NodeError> {
        let t = self.resolve_target(target)?;
        if t.offer.offer.share_type == ShareType::NotShared {
            return Err(NodeError::Invalid(format!(
                "{} is not shared (不予共享)",
                t.offer.offer.identifier
            )));
        }
        let publisher = t.peer.to_string();
        let key = sub_key(&publisher, &t.offer.offer.identifier);
        let sub = match self
            .store()
            .record::<Subscription>(RecordTree::Subscriptions, &key)?
        {
            Some(s) => s,
            None => {
                let s = Subscription {
                    publisher,
                    region: t.region,
                    dataset: t.offer.offer.identifier.clone(),
                    created_at: now_rfc3339(),
                    fetched_version: 0,
                    note: None,
                };
                self.store()
                    .put_record(RecordTree::Subscriptions, &key, &s)?;
                self.store().flush().await?;
                tracing::info!(peer = %t.peer, dataset = %s.dataset, "subscribed");
                s
            }
        };
        self.kick_subscription(t.peer, &sub.dataset);
        Ok(sub)
    }

    /// Ends a subscription.
    pub async fn unsubscribe(&self, target: &str) -> Result<(), NodeError> {
        let t = self.resolve_target(target)?;
        let key = sub_key(&t.peer.to_string(), &t.offer.offer.identifier);
        if !self
            .store()
            .remove_record(RecordTree::Subscriptions, &key)?
        {
            return Err(NodeError::NotFound(format!("no subscription to {target}")));
        }
        self.store().flush().await?;
        Ok(())
    }

    /// Our subscriptions.
    pub fn subscriptions(&self) -> Result<Vec<Subscription>, NodeError> {
        Ok(self
            .store()
            .records::<Subscription>(RecordTree::Subscriptions)?
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    /// A catalogue of `publisher` arrived: fetch what our subscriptions to it are missing.
    pub(crate) fn on_catalogue_changed(&self, publisher: PeerId) {
        let Ok(subs) = self.subscriptions() else {
            return;
        };
        let p = publisher.to_string();
        for s in subs.into_iter().filter(|s| s.publisher == p) {
            self.kick_subscription(publisher, &s.dataset);
        }
    }

    /// Starts the fetch a subscription needs, if any.
    pub(crate) fn kick_subscription(&self, publisher: PeerId, dataset: &str) {
        let key = sub_key(&publisher.to_string(), dataset);
        let Ok(Some(mut sub)) = self
            .store()
            .record::<Subscription>(RecordTree::Subscriptions, &key)
        else {
            return;
        };
        let Ok(t) = self.resolve_target(&format!("{publisher}/{dataset}")) else {
            return;
        };
        let Some(latest) = t.offer.latest_version else {
            return;
        };
        if latest <= sub.fetched_version {
            return;
        }
        let note = match self.fetch_from(&t, Some(latest), None) {
            Ok(view) => {
                tracing::info!(peer = %publisher, dataset, version = latest, transfer = %view.id, "subscription fetching new version");
                None
            }
            Err(e) => Some(e.to_string()),
        };
        if sub.note != note {
            sub.note = note;
            let _ = self
                .store()
                .put_record(RecordTree::Subscriptions, &key, &sub);
        }
    }

    fn note_subscription_progress(&self, record: &FetchRecord) {
        let Some(m) = &record.manifest else {
            return;
        };
        let key = sub_key(&m.document.publisher, &m.document.dataset);
        if let Ok(Some(mut sub)) = self
            .store()
            .record::<Subscription>(RecordTree::Subscriptions, &key)
        {
            if m.document.version > sub.fetched_version {
                sub.fetched_version = m.document.version;
                sub.note = None;
                let _ = self
                    .store()
                    .put_record(RecordTree::Subscriptions, &key, &sub);
            }
        }
        // A newer version may have been announced while this one moved.
        if let Ok(p) = m.document.publisher.parse::<PeerId>() {
            self.kick_subscription(p, &m.document.dataset);
        }
    }
}

/// Writes the masked derivation of blob `digest` as JSON Lines; returns it and its record count.
fn derive_file(
    blobs: &BlobStore,
    digest: &str,
    format: DataFormat,
    standard: &CompiledStandard,
    projection: &Projection,
    salt: &[u8; 32],
) -> Result<(crate::store::blobs::BlobInfo, u64), NodeError> {
    use std::io::{BufRead, BufReader, Write};
    let store_err = |e: BlobError| NodeError::Invalid(format!("derivation: {e}"));
    let reader = blobs.open_read(digest).map_err(store_err)?;
    let mut out = blobs.writer(DEFAULT_CHUNK_SIZE).map_err(store_err)?;
    let mut records = 0u64;
    let mut emit = |record: &serde_json::Value, line: u64| -> Result<(), NodeError> {
        let delivered = projection
            .apply(record, salt)
            .map_err(|e| NodeError::Invalid(format!("record at line {line}: {e}")))?;
        serde_json::to_writer(&mut out, &delivered)
            .map_err(|e| NodeError::Invalid(format!("derivation: {e}")))?;
        out.write_all(b"\n")
            .map_err(|e| NodeError::Invalid(format!("derivation: {e}")))?;
        records += 1;
        Ok(())
    };
    match format {
        DataFormat::Csv => {
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(reader);
            let headers: Vec<String> = csv
                .headers()
                .map_err(|e| NodeError::Invalid(format!("derivation: {e}")))?
                .iter()
                .map(|c| c.trim_start_matches('\u{feff}').to_string())
                .collect();
            let types: Vec<Vec<String>> = headers
                .iter()
                .map(|h| {
                    standard
                        .fields()
                        .iter()
                        .find(|f| &f.name == h)
                        .map(|f| f.types.clone())
                        .unwrap_or_default()
                })
                .collect();
            let mut row = csv::StringRecord::new();
            let mut line = 1u64;
            while csv
                .read_record(&mut row)
                .map_err(|e| NodeError::Invalid(format!("derivation: {e}")))?
            {
                line += 1;
                let mut record = serde_json::Map::new();
                for ((name, cell), t) in headers.iter().zip(row.iter()).zip(&types) {
                    record.insert(name.clone(), csv_cell(cell, t));
                }
                emit(&serde_json::Value::Object(record), line)?;
            }
        }
        DataFormat::Jsonl | DataFormat::File => {
            let mut reader = BufReader::with_capacity(1 << 20, reader);
            let mut buf = Vec::new();
            let mut line = 0u64;
            loop {
                buf.clear();
                let n = reader
                    .read_until(b'\n', &mut buf)
                    .map_err(|e| NodeError::Invalid(format!("derivation: {e}")))?;
                if n == 0 {
                    break;
                }
                line += 1;
                let text = String::from_utf8_lossy(&buf);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let record: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| NodeError::Invalid(format!("line {line}: {e}")))?;
                emit(&record, line)?;
            }
        }
    }
    let info = out.finish().map_err(store_err)?;
    Ok((info, records))
}
