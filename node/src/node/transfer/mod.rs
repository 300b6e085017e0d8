//! Moving dataset versions between nodes (R3, R5, R7). This module owns the types the API shows
//! of a transfer ([`TransferStatus`], [`TransferView`]), the fetch record the database keeps,
//! the limits of the exchange and the simulated link delay; the work is split by job:
//!
//! * `registry` — the in-memory registry of transfers, both ways, with live byte counts;
//! * `serving` — the provider side of `/yrd/fetch/1`: access checks, chunk serving, per-peer
//!   slots;
//! * `derivation` — masked deliveries, derived once per grant and version;
//! * `fetching` — the fetcher side: manifest and chunk checks, resume, record re-validation;
//! * `validating` — the pipelined receiver: the digest and the records checked in file order
//!   while chunks arrive, JSON Lines on a bounded pool of worker threads;
//! * `receipts` — the signed Receipt, sent by the fetcher and checked by the provider;
//! * `subscriptions` — fetching each new version of a dataset as it is published;
//! * `faults` (feature `test-hooks` only) — provider misbehaviour injected by tests.

mod derivation;
pub(crate) use derivation::{derivation_scope, mask_salt, projection_for};
#[cfg(feature = "test-hooks")]
mod faults;
mod fetching;
mod receipts;
mod registry;
mod serving;
mod subscriptions;
mod validating;

#[cfg(feature = "test-hooks")]
pub use faults::Fault;
#[cfg(feature = "test-hooks")]
use faults::Faults;
use registry::Registry;
pub use subscriptions::Subscription;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use super::counters::Counters;
use crate::model::chunks::ChunkTable;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::access::Direction;
use super::{Node, NodeError};
use crate::clock::now_rfc3339;
use crate::model::exchange::{Manifest, Receipt};
use crate::model::region::Region;
use crate::model::signed::Signed;

/// Inbound fetch streams served at once, all peers together.
pub const MAX_SERVING: usize = 64;
/// Times one chunk may arrive bad before the fetch gives up on the provider.
pub const MAX_BAD_CHUNK_RETRIES: u32 = 3;
/// Finished transfers kept in the in-memory registry (the fetch records stay in the database).
pub const KEEP_FINISHED: usize = 200;
/// Chunk buffers queued between the network and the disk, per transfer.
const CHUNK_QUEUE: usize = 4;
/// Chunk buffers handed back for reuse once their chunk is sent or stored, per transfer: a
/// chunk is then read into memory already mapped, not a fresh allocation of its size (mapped,
/// faulted in page by page, zeroed, unmapped again). Beyond it a returned buffer is dropped.
const SPARE_BUFFERS: usize = 2;
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
    /// Where a fetch's time went (zero for served transfers and phases not reached).
    #[serde(default)]
    pub phases: FetchPhases,
}

/// Where a fetch's time went, in milliseconds, summed over its attempts (docs/benchmarks.md,
/// "Where a small fetch's time goes"). `total_ms` also counts retries' waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchPhases {
    /// Opening the fetch stream (dialling the provider if not connected).
    pub connect_ms: u64,
    /// From sending the FetchOpen to the manifest and chunk table checked (the provider
    /// checks the grant, derives a masked delivery if it must, and answers).
    pub ready_ms: u64,
    /// Getting the records' standard and starting the partial file and validation threads.
    pub prepare_ms: u64,
    /// Moving chunks: each verified, written and synced (`transfer_ms` is this and
    /// `prepare_ms`).
    pub chunks_ms: u64,
    /// After the last chunk: the last records validated, the digest checked, the file
    /// committed and the manifest stored.
    pub verify_ms: u64,
    /// The received record (one group commit) and the fetch's done state stored.
    pub record_ms: u64,
}

impl TransferView {
    /// A transfer starting now, with a new id: nothing moved, no attempt counted, nothing known
    /// of the version yet.
    fn starting(
        direction: Direction,
        peer: String,
        dataset: String,
        status: TransferStatus,
    ) -> TransferView {
        TransferView {
            id: new_id(),
            direction,
            peer,
            peer_region: None,
            dataset,
            version: None,
            grant: None,
            status,
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
            phases: FetchPhases::default(),
        }
    }
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
    /// The scoped API client that asked for the fetch (none: the operator or a subscription),
    /// named in its records.
    #[serde(default)]
    client: Option<String>,
}

/// The transfer service's own state, owned here and locked only here: the registry of transfers
/// both ways, the chunk tables of the files we serve, the one-at-a-time masked derivation, the
/// simulated link delay, the byte counters and (in test builds) the provider's faults.
#[derive(Debug)]
pub(crate) struct Transfers {
    registry: Mutex<Registry>,
    chunk_tables: Mutex<HashMap<String, Arc<ChunkTable>>>,
    /// One masked derivation at a time (they are long; the write lock must stay short).
    derive_lock: tokio::sync::Mutex<()>,
    link_delay: LinkDelay,
    counters: Arc<Counters>,
    #[cfg(feature = "test-hooks")]
    faults: Mutex<Faults>,
}

impl Transfers {
    pub(crate) fn new() -> Transfers {
        let counters = Arc::new(Counters::default());
        Transfers {
            registry: Mutex::new(Registry::new(counters.clone())),
            chunk_tables: Mutex::new(HashMap::new()),
            derive_lock: tokio::sync::Mutex::new(()),
            link_delay: LinkDelay::default(),
            counters,
            #[cfg(feature = "test-hooks")]
            faults: Mutex::new(Faults::default()),
        }
    }

    /// Bytes and transfers since start.
    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock()
    }

    /// The chunk table of a file we serve, if computed already.
    fn cached_table(&self, digest: &str) -> Option<Arc<ChunkTable>> {
        self.chunk_tables.lock().get(digest).cloned()
    }

    /// Keeps a file's chunk table; the cache is bounded (cleared when full).
    fn cache_table(&self, digest: &str, table: Arc<ChunkTable>) {
        let mut c = self.chunk_tables.lock();
        if c.len() >= CHUNK_TABLE_CACHE && !c.contains_key(digest) {
            c.clear();
        }
        c.insert(digest.to_string(), table);
    }
}

/// The simulated latency of this node's links (`yrd sim`'s `delay` step): added to every answer
/// and every chunk served. Zero means none.
#[derive(Debug, Default)]
pub(crate) struct LinkDelay {
    nanos: AtomicU64,
}

impl LinkDelay {
    fn get(&self) -> Option<Duration> {
        let nanos = self.nanos.load(Ordering::Relaxed);
        (nanos > 0).then(|| Duration::from_nanos(nanos))
    }

    fn set(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::Relaxed);
    }
}

impl Node {
    /// Simulates a slow link: adds `delay` to every answer and every chunk this node sends
    /// (zero removes it).
    pub fn set_link_delay(&self, delay: Duration) {
        self.inner.transfers.link_delay.set(delay);
    }

    /// The simulated latency of this node's answers, if any.
    pub(crate) fn answer_delay(&self) -> Option<Duration> {
        self.inner.transfers.link_delay.get()
    }
}

fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn blocking_err(source: tokio::task::JoinError) -> NodeError {
    NodeError::Task {
        what: "a transfer's file work",
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_delay_is_set_and_removed() {
        let d = LinkDelay::default();
        assert_eq!(d.get(), None);
        d.set(Duration::from_millis(250));
        assert_eq!(d.get(), Some(Duration::from_millis(250)));
        d.set(Duration::ZERO);
        assert_eq!(d.get(), None);
    }

    #[test]
    fn finished_statuses_are_done_and_failed() {
        use TransferStatus::*;
        for (s, finished) in [
            (Connecting, false),
            (Running, false),
            (Waiting, false),
            (Verifying, false),
            (Done, true),
            (Failed, true),
        ] {
            assert_eq!(s.finished(), finished, "{s:?}");
        }
    }
}
