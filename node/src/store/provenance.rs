//! The provenance log on disk (R6, R8): append-only records in sled with an RFC 6962 Merkle
//! tree over them (`model::merkle`), the signed documents they name, indexes by dataset,
//! counterparty and kind, a signed tree head per batch, and what witnessing keeps (heads of
//! other logs, cosignatures of ours, alarms).
//!
//! # Group commit
//! One thread owns all writes. Appenders send records through a bounded channel (one at a time,
//! or several that belong together with [`ProvenanceLog::append_all`], taken whole); the thread
//! takes every record waiting (up to [`MAX_BATCH`]), gives them consecutive sequence numbers, writes
//! records, documents, indexes and tree tiles in one sled transaction, flushes sled once
//! (fsync), signs one tree head for the batch, and only then acknowledges each record. An
//! acknowledged record is durable. Per record the batch holds the record and its entry in the
//! dataset index; the kind and counterparty indexes take one entry per kind and per
//! counterparty of the batch, and the tree one write per tile the batch touches (a batch of
//! 1,024 records: about six).
//!
//! # Crash safety
//! sled recovers a transaction whole or not at all, so after a crash the durable state ends at
//! a batch boundary. At open, the log size is the length of the prefix that has both a record
//! and its leaf hash (logs written before batches were transactions may end mid-batch);
//! anything beyond it (never acknowledged) is removed, with its index entries, and the tiles
//! are cut back to the nodes that cover kept leaves only.
//!
//! # The tree in tiles
//! The Merkle tree (`model::merkle`) is kept as tiles, as in C2SP tlog-tiles: the tile
//! `(k, t)` holds the hashes of nodes `t * 256 .. t * 256 + 256` of tree level `8k` (level 0:
//! the leaf hashes), fewer in the tile at the right edge. Every other node is the hash of a
//! perfect subtree inside one tile and is computed when read (at most 127 hashes), so an append
//! rewrites the few tiles it extends instead of inserting about two nodes per record, and a
//! proof costs a few hundred hashes on top of its reads.
//!
//! # Keys
//! `prov_records`: seq (u64 BE) → canonical JSON of the record. `prov_tiles`:
//! `merkle::node_key(k, t)` (tile level, then tile index BE) → the tile's 32-byte hashes,
//! concatenated. `prov_meta`: `head` → our latest signed tree head; `format` → `2`. `prov_index`: `b'd'`, dataset, 0x00, seq BE → the
//! record's canonical JSON; `b'k'|b'p'`, kind or counterparty, 0x00, first seq BE → the seqs
//! (u64 BE each, ascending) of the batch's records of that kind or counterparty. Logs written
//! before kind and counterparty entries were grouped hold one entry per record there, with an
//! empty value (the seq is the key's): both are read, so such logs need no migration.
//! `prov_docs`: digest (hex) → the signed document's JSON (canonical since 2026-12-08; older
//!   entries are serde_json's text of the same envelope).
//!
//! # Format versions
//! 1 (no `format` key): every node of the tree, at every level, under `merkle::node_key` in
//! `prov_nodes`. 2 (`format` = `2`, since 2026-12-06): tiles in `prov_tiles`. A log of format 1
//! is moved to format 2 when it is opened (`migrate_nodes_to_tiles`: the nodes of levels 0, 8,
//! 16, ... become the tiles, then `prov_nodes` is emptied; crash-safe at every step). Code that
//! knows only format 1 must not open a log of format 2.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use ed25519_dalek::SigningKey;
use tokio::sync::{mpsc, oneshot};

use crate::clock::now_rfc3339;
use crate::model::canonical;
use crate::model::merkle::{self, Hash};
use crate::model::provenance::{
    Alarm, AlarmResolution, Cosignature, ProvenanceRecord, Query, TreeHead,
};
use crate::model::region::Region;
use crate::model::signed::{AnySigned, CanonicalEnvelope, Signed};

/// Most records committed by one flush.
pub const MAX_BATCH: usize = 8192;
/// Appends waiting for the writer at once; more wait for room (backpressure).
pub const QUEUE: usize = 65_536;

const RECORDS: &str = "prov_records";
/// Where logs of format 1 kept every tree node (migrated to tiles at open).
const NODES: &str = "prov_nodes";
const TILES: &str = "prov_tiles";
const INDEX: &str = "prov_index";
const DOCS: &str = "prov_docs";
const META: &str = "prov_meta";
const WITNESSED: &str = "prov_witnessed";
const COSIGS: &str = "prov_cosigs";
const ALARMS: &str = "prov_alarms";
const HEAD_KEY: &[u8] = b"head";
/// `prov_meta` key of the on-disk format; absent in format 1 (every node in `prov_nodes`).
const FORMAT_KEY: &[u8] = b"format";
/// The on-disk format this code writes: the tree kept as tiles (see the module docs).
const FORMAT_TILES: &[u8] = b"2";

/// Why the log failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// Database failure.
    #[error("provenance log: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value is unreadable.
    #[error("provenance log: corrupt {what}: {message}")]
    Corrupt {
        /// What.
        what: String,
        /// Why.
        message: String,
    },
    /// The writer has stopped (shutdown).
    #[error("provenance log is closed")]
    Closed,
    /// Merkle tree failure.
    #[error("provenance tree: {0}")]
    Tree(String),
    /// A record does not verify against the tree.
    #[error("provenance log does not verify at seq {seq}: {message}")]
    Mismatch {
        /// Where.
        seq: u64,
        /// What.
        message: String,
    },
}

fn corrupt(what: impl Into<String>, e: impl std::fmt::Display) -> ProvenanceError {
    ProvenanceError::Corrupt {
        what: what.into(),
        message: e.to_string(),
    }
}

/// A step to record; the log fills in seq, time, actor and actor region.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// The record (seq, time, actor and actor_region are overwritten).
    pub record: ProvenanceRecord,
    /// The signed documents it names (kept by digest).
    pub documents: Vec<CanonicalEnvelope>,
}

struct Append {
    entry: NewRecord,
    ack: oneshot::Sender<Result<u64, String>>,
}

enum Job {
    Append(Box<Append>),
    /// Appends that go into one commit together (`append_all`).
    AppendAll(Vec<Append>),
    Close(std::sync::mpsc::SyncSender<()>),
}

/// What the writer's acknowledgement of one append says: its seq, or why it was not kept.
fn acked(
    ack: Result<Result<u64, String>, oneshot::error::RecvError>,
) -> Result<u64, ProvenanceError> {
    match ack {
        Ok(Ok(seq)) => Ok(seq),
        Ok(Err(e)) => Err(ProvenanceError::Tree(e)),
        Err(_) => Err(ProvenanceError::Closed),
    }
}

/// The most records one query of the admin API returns.
pub const MAX_QUERY_RECORDS: usize = 100_000;

/// The provenance log of this node.
#[derive(Clone)]
pub struct ProvenanceLog {
    records: sled::Tree,
    tiles: sled::Tree,
    index: sled::Tree,
    docs: sled::Tree,
    meta: sled::Tree,
    witnessed: sled::Tree,
    cosigs: sled::Tree,
    alarms: sled::Tree,
    size: Arc<AtomicU64>,
    head: Arc<RwLock<Option<Signed<TreeHead>>>>,
    jobs: mpsc::Sender<Job>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    /// Set when the tree was rebuilt behind the writer (a test hook): its edge is stale.
    edge_stale: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for ProvenanceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvenanceLog")
            .field("size", &self.size())
            .finish()
    }
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn index_key(tag: u8, value: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(value.len() + 10);
    k.push(tag);
    k.extend_from_slice(value.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `tag`, `value`, 0x00: the prefix of every index key of one dataset, kind or counterparty.
fn index_prefix(tag: u8, value: &str) -> Vec<u8> {
    let mut k = index_key(tag, value, 0);
    k.truncate(k.len() - 8);
    k
}

/// The seq at the end of an index key of `prefix`, if the key is exactly the prefix and a seq.
fn key_seq(key: &[u8], prefix_len: usize) -> Option<u64> {
    if key.len() != prefix_len + 8 {
        return None;
    }
    key.get(prefix_len..)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
}

/// The seqs an index entry of kind or counterparty names: the list in its value (one entry per
/// group commit), or the seq in its key (an empty value: one entry per record, as logs written
/// before group entries have).
fn entry_seqs(key_seq: u64, value: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let single = value.is_empty().then_some(key_seq);
    single.into_iter().chain(
        value
            .chunks_exact(8)
            .filter_map(|s| s.try_into().ok().map(u64::from_be_bytes)),
    )
}

/// The seq of the latest record about `dataset` below `size`, from the dataset index. A key
/// of another dataset that merely starts with the same bytes is longer, so the length check
/// keeps only exact matches.
fn latest_in_index(
    index: &sled::Tree,
    dataset: &str,
    size: u64,
) -> Result<Option<u64>, ProvenanceError> {
    let prefix = index_prefix(b'd', dataset);
    for item in index.scan_prefix(&prefix).rev() {
        let (k, _) = item?;
        if let Some(seq) = key_seq(&k, prefix.len()).filter(|s| *s < size) {
            return Ok(Some(seq));
        }
    }
    Ok(None)
}

/// Tree node `(level, index)`, from its tile.
fn get_node(tiles: &sled::Tree, level: u8, index: u64) -> Result<Option<Hash>, sled::Error> {
    merkle::node_from_tiles(level, index, |k, t| tiles.get(merkle::node_key(k, t)))
}

impl ProvenanceLog {
    /// Opens the log in `db` (repairing a crash-interrupted batch) and starts its writer, which
    /// signs tree heads with `key` as `actor` of `region`.
    pub fn open(
        db: &sled::Db,
        key: SigningKey,
        actor: String,
        region: Region,
    ) -> Result<ProvenanceLog, ProvenanceError> {
        ProvenanceLog::open_in(db, key, actor, region, None)
    }

    /// [`ProvenanceLog::open`] for the node of `data_dir`: its writer checks the `append.*` fail
    /// points armed for that dir (`failpoint.rs`; nothing in a release build).
    pub fn open_in(
        db: &sled::Db,
        key: SigningKey,
        actor: String,
        region: Region,
        data_dir: Option<std::path::PathBuf>,
    ) -> Result<ProvenanceLog, ProvenanceError> {
        let records = db.open_tree(RECORDS)?;
        let tiles = db.open_tree(TILES)?;
        let index = db.open_tree(INDEX)?;
        let docs = db.open_tree(DOCS)?;
        let meta = db.open_tree(META)?;
        migrate_nodes_to_tiles(db, &db.open_tree(NODES)?, &tiles, &meta)?;
        let size = repair(&records, &tiles, &index)?;
        let head = match meta.get(HEAD_KEY)? {
            // A head of another key (signed before the node's key was rotated) is signed again.
            Some(raw) => serde_json::from_slice::<Signed<TreeHead>>(&raw)
                .ok()
                .filter(|h| h.document.size == size && h.document.log == actor),
            None => None,
        };
        let (jobs, rx) = mpsc::channel(QUEUE);
        let log = ProvenanceLog {
            records,
            tiles,
            index,
            docs,
            meta,
            witnessed: db.open_tree(WITNESSED)?,
            cosigs: db.open_tree(COSIGS)?,
            alarms: db.open_tree(ALARMS)?,
            size: Arc::new(AtomicU64::new(size)),
            head: Arc::new(RwLock::new(head)),
            jobs,
            writer: Arc::new(Mutex::new(None)),
            edge_stale: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        if log.head().is_none() {
            let h = log.sign_head(&key, &actor, size)?;
            *log.head.write() = Some(h);
        }
        let writer = Writer {
            log: log.clone(),
            db: db.clone(),
            key,
            actor,
            region,
            data_dir,
            latest: std::collections::HashMap::new(),
            edge: std::collections::HashMap::new(),
        };
        let handle = std::thread::Builder::new()
            .name("yrd-provenance".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| corrupt("writer thread", e))?;
        *log.writer.lock() = Some(handle);
        Ok(log)
    }

    /// Records committed so far.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// The latest signed tree head.
    pub fn head(&self) -> Option<Signed<TreeHead>> {
        self.head.read().clone()
    }

    fn sign_head(
        &self,
        key: &SigningKey,
        actor: &str,
        size: u64,
    ) -> Result<Signed<TreeHead>, ProvenanceError> {
        sign_head_of(key, actor, size, self.root(size)?)
    }

    /// Appends one record and waits until it is durable; returns its seq.
    pub async fn append(&self, entry: NewRecord) -> Result<u64, ProvenanceError> {
        let (ack, rx) = oneshot::channel();
        self.jobs
            .send(Job::Append(Box::new(Append { entry, ack })))
            .await
            .map_err(|_| ProvenanceError::Closed)?;
        acked(rx.await)
    }

    /// Appends `entries` in one group commit (waiting until they are durable), in order: the
    /// records of steps that happened together (a batch of queries answered) cost one commit,
    /// where appended one by one as each step ends they would trickle into several. Each gets
    /// its own result.
    pub async fn append_all(&self, entries: Vec<NewRecord>) -> Vec<Result<u64, ProvenanceError>> {
        let mut acks = Vec::with_capacity(entries.len());
        let appends = entries
            .into_iter()
            .map(|entry| {
                let (ack, rx) = oneshot::channel();
                acks.push(rx);
                Append { entry, ack }
            })
            .collect();
        if self.jobs.send(Job::AppendAll(appends)).await.is_err() {
            return acks.iter().map(|_| Err(ProvenanceError::Closed)).collect();
        }
        let mut results = Vec::with_capacity(acks.len());
        for rx in acks {
            results.push(acked(rx.await));
        }
        results
    }

    /// Stops the writer after the appends already queued, and waits for it.
    pub fn close(&self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let mut job = Job::Close(tx);
        // The queue drains as the writer commits: wait for room, but not forever.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let sent = loop {
            match self.jobs.try_send(job) {
                Ok(()) => break true,
                Err(mpsc::error::TrySendError::Closed(_)) => break false,
                Err(mpsc::error::TrySendError::Full(back)) => {
                    if std::time::Instant::now() > deadline {
                        break false;
                    }
                    job = back;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        };
        if !sent {
            tracing::error!("provenance writer did not take the close request; not waiting for it");
            return;
        }
        let _ = rx.recv_timeout(std::time::Duration::from_secs(30));
        let handle = self.writer.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// The root of the first `size` records.
    pub fn root(&self, size: u64) -> Result<Hash, ProvenanceError> {
        let tiles = &self.tiles;
        merkle::root(size, &|l: u8, i: u64| get_node(tiles, l, i))
            .map_err(|e| ProvenanceError::Tree(e.to_string()))
    }

    /// Inclusion proof of record `seq` in the tree of `size` records.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, ProvenanceError> {
        let tiles = &self.tiles;
        merkle::inclusion_proof(seq, size, &|l: u8, i: u64| get_node(tiles, l, i))
            .map_err(|e| ProvenanceError::Tree(e.to_string()))
    }

    /// Consistency proof from `old` to `new` records.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProvenanceError> {
        let tiles = &self.tiles;
        merkle::consistency_proof(old, new, &|l: u8, i: u64| get_node(tiles, l, i))
            .map_err(|e| ProvenanceError::Tree(e.to_string()))
    }

    /// Record `seq`.
    pub fn record(&self, seq: u64) -> Result<Option<ProvenanceRecord>, ProvenanceError> {
        if seq >= self.size() {
            return Ok(None);
        }
        match self.records.get(seq_key(seq))? {
            None => Ok(None),
            Some(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| corrupt(format!("record {seq}"), e)),
        }
    }

    /// The seq of the latest record about `dataset` among the first `size`.
    pub fn latest_about_dataset(
        &self,
        dataset: &str,
        size: u64,
    ) -> Result<Option<u64>, ProvenanceError> {
        latest_in_index(&self.index, dataset, size.min(self.size()))
    }

    /// A kept document by digest.
    pub fn document(&self, digest: &str) -> Result<Option<AnySigned>, ProvenanceError> {
        match self.docs.get(digest.as_bytes())? {
            None => Ok(None),
            Some(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| corrupt(format!("document {digest}"), e)),
        }
    }

    /// Records matching `q`, oldest first: at most `q.limit` (default 1000), which the caller
    /// bounds (the admin API at [`MAX_QUERY_RECORDS`]).
    pub fn query(&self, q: &Query) -> Result<Vec<ProvenanceRecord>, ProvenanceError> {
        let limit = q.limit.unwrap_or(1000);
        let size = self.size();
        let mut out = Vec::new();
        let keep = |r: &ProvenanceRecord| {
            q.dataset
                .as_ref()
                .is_none_or(|d| r.dataset.as_ref() == Some(d))
                && q.peer
                    .as_ref()
                    .is_none_or(|p| r.counterparty.as_ref() == Some(p))
                && q.kind.as_ref().is_none_or(|k| &r.kind.name() == k)
                && q.since.as_ref().is_none_or(|s| &r.time >= s)
                && q.until.as_ref().is_none_or(|u| &r.time <= u)
                && q.key_hash
                    .as_ref()
                    .is_none_or(|h| r.key_hash.as_ref() == Some(h))
        };
        let indexed = match (&q.dataset, &q.peer, &q.kind) {
            (Some(d), _, _) => Some((b'd', d.clone())),
            (None, Some(p), _) => Some((b'p', p.clone())),
            (None, None, Some(k)) => Some((b'k', k.clone())),
            _ => None,
        };
        match indexed {
            Some((tag, value)) => {
                let prefix = index_prefix(tag, &value);
                // Seqs come in ascending order; `next` skips any an entry names twice.
                let mut next = 0u64;
                'scan: for item in self.index.scan_prefix(&prefix) {
                    let (k, v) = item?;
                    let Some(key_seq) = key_seq(&k, prefix.len()) else {
                        continue;
                    };
                    if tag == b'd' {
                        if key_seq >= size || key_seq < next {
                            continue;
                        }
                        next = key_seq + 1;
                        let r = if v.is_empty() {
                            self.record(key_seq)?
                        } else {
                            Some(
                                serde_json::from_slice::<ProvenanceRecord>(&v)
                                    .map_err(|e| corrupt(format!("record {key_seq}"), e))?,
                            )
                        };
                        if let Some(r) = r.filter(|r| keep(r)) {
                            out.push(r);
                            if out.len() >= limit {
                                break;
                            }
                        }
                        continue;
                    }
                    for seq in entry_seqs(key_seq, &v) {
                        if seq >= size || seq < next {
                            continue;
                        }
                        next = seq + 1;
                        if let Some(r) = self.record(seq)?.filter(|r| keep(r)) {
                            out.push(r);
                            if out.len() >= limit {
                                break 'scan;
                            }
                        }
                    }
                }
            }
            None => {
                for item in self.records.range(seq_key(0)..seq_key(size)) {
                    let (_, raw) = item?;
                    let r: ProvenanceRecord =
                        serde_json::from_slice(&raw).map_err(|e| corrupt("record", e))?;
                    if keep(&r) {
                        out.push(r);
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Recomputes every leaf from its record and every node above it, checks each against
    /// its tile, and the root; fails at the first record or node that does not match.
    pub fn verify_all(&self) -> Result<(u64, Hash), ProvenanceError> {
        let size = self.size();
        let mut stack: Vec<Hash> = Vec::new();
        // The tile last read at each tile level: the walk reads each tile once.
        let mut tiles: Vec<Option<(u64, sled::IVec)>> = vec![None; 8];
        for seq in 0..size {
            let raw = self
                .records
                .get(seq_key(seq))?
                .ok_or_else(|| ProvenanceError::Mismatch {
                    seq,
                    message: "record missing".into(),
                })?;
            let value = canonical::parse_strict(
                std::str::from_utf8(&raw).map_err(|e| corrupt("record", e))?,
            )
            .map_err(|e| corrupt("record", e))?;
            let bytes = canonical::canonicalize(&value).map_err(|e| corrupt("record", e))?;
            if bytes.as_bytes() != raw.as_ref() {
                return Err(ProvenanceError::Mismatch {
                    seq,
                    message: "stored record is not in canonical form".into(),
                });
            }
            let mut h = merkle::leaf_hash(&raw);
            let (mut level, mut index) = (0u8, seq);
            loop {
                if level % merkle::TILE_HEIGHT == 0 {
                    self.check_in_tile(&mut tiles, seq, level, index, &h)?;
                }
                if index % 2 == 0 {
                    break;
                }
                let left = stack.pop().ok_or_else(|| ProvenanceError::Mismatch {
                    seq,
                    message: "tree shape".into(),
                })?;
                h = merkle::node_hash(&left, &h);
                level += 1;
                index /= 2;
            }
            stack.push(h);
        }
        let root = match stack.split_last() {
            None => merkle::empty_root(),
            Some((last, rest)) => rest
                .iter()
                .rev()
                .fold(*last, |acc, left| merkle::node_hash(left, &acc)),
        };
        if root != self.root(size)? {
            return Err(ProvenanceError::Mismatch {
                seq: size,
                message: "root does not match".into(),
            });
        }
        Ok((size, root))
    }

    /// Checks that the tile holding node `(level, index)` (a tile's base level) holds `h`;
    /// `cache` keeps the tile last read per tile level.
    fn check_in_tile(
        &self,
        cache: &mut [Option<(u64, sled::IVec)>],
        seq: u64,
        level: u8,
        index: u64,
        h: &Hash,
    ) -> Result<(), ProvenanceError> {
        let mismatch = || ProvenanceError::Mismatch {
            seq,
            message: format!("tree node ({level}, {index}) does not match"),
        };
        let (k, t, offset, _) = merkle::tile_span(level, index).ok_or_else(mismatch)?;
        let slot = cache.get_mut(usize::from(k)).ok_or_else(mismatch)?;
        if slot.as_ref().is_none_or(|(at, _)| *at != t) {
            *slot = self
                .tiles
                .get(merkle::node_key(k, t))?
                .map(|tile| (t, tile));
        }
        let stored = slot
            .as_ref()
            .and_then(|(_, tile)| merkle::node_in_tile(tile, offset, 1));
        if stored != Some(*h) {
            return Err(mismatch());
        }
        Ok(())
    }

    /// The latest head we verified of another node's log.
    pub fn witnessed(&self, log: &str) -> Result<Option<Signed<TreeHead>>, ProvenanceError> {
        match self.witnessed.get(log.as_bytes())? {
            None => Ok(None),
            Some(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| corrupt("witnessed head", e)),
        }
    }

    /// Keeps a verified head of another log (flushed by the caller's next flush).
    pub fn put_witnessed(&self, head: &Signed<TreeHead>) -> Result<(), ProvenanceError> {
        let bytes = serde_json::to_vec(head).map_err(|e| corrupt("head", e))?;
        self.witnessed.insert(head.document.log.as_bytes(), bytes)?;
        Ok(())
    }

    /// Keeps a witness's cosignature of our log (the latest per witness).
    pub fn put_cosignature(&self, c: &Signed<Cosignature>) -> Result<(), ProvenanceError> {
        let bytes = serde_json::to_vec(c).map_err(|e| corrupt("cosignature", e))?;
        self.cosigs.insert(c.document.witness.as_bytes(), bytes)?;
        Ok(())
    }

    /// The latest cosignature of our log from each witness.
    pub fn cosignatures(&self) -> Result<Vec<Signed<Cosignature>>, ProvenanceError> {
        let mut out = Vec::new();
        for item in self.cosigs.iter() {
            let (_, raw) = item?;
            out.push(serde_json::from_slice(&raw).map_err(|e| corrupt("cosignature", e))?);
        }
        Ok(out)
    }

    /// Records an alarm (kept forever).
    pub fn put_alarm(&self, alarm: &Alarm) -> Result<(), ProvenanceError> {
        // Time first keeps them in order; the count keeps two alarms of one log raised in the
        // same second apart (callers raise alarms one at a time, under the witness lock).
        let key = format!("{}/{:010}/{}", alarm.time, self.alarms.len(), alarm.log);
        let bytes = serde_json::to_vec(alarm).map_err(|e| corrupt("alarm", e))?;
        self.alarms.insert(key.as_bytes(), bytes)?;
        Ok(())
    }

    /// Marks every open alarm of `log` resolved and, with a `baseline`, takes it as the head we
    /// hold of that log, in one transaction (no alarm resolved without its baseline, nor the
    /// reverse). Returns the alarms resolved.
    pub fn resolve_alarms(
        &self,
        log: &str,
        resolution: &AlarmResolution,
        baseline: Option<&Signed<TreeHead>>,
    ) -> Result<Vec<Alarm>, ProvenanceError> {
        let mut updates = Vec::new();
        for item in self.alarms.iter() {
            let (key, raw) = item?;
            let mut alarm: Alarm = serde_json::from_slice(&raw).map_err(|e| corrupt("alarm", e))?;
            if alarm.log == log && alarm.resolved.is_none() {
                alarm.resolved = Some(resolution.clone());
                let bytes = serde_json::to_vec(&alarm).map_err(|e| corrupt("alarm", e))?;
                updates.push((key, bytes, alarm));
            }
        }
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let head = match baseline {
            Some(h) => Some(serde_json::to_vec(h).map_err(|e| corrupt("head", e))?),
            None => None,
        };
        use sled::Transactional;
        (&self.alarms, &self.witnessed)
            .transaction(|(alarms, witnessed)| {
                for (key, bytes, _) in &updates {
                    alarms.insert(key.as_ref(), bytes.as_slice())?;
                }
                if let Some(h) = &head {
                    witnessed.insert(log.as_bytes(), h.as_slice())?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => ProvenanceError::Sled(e),
                sled::transaction::TransactionError::Abort(()) => {
                    corrupt("alarm resolution", "aborted")
                }
            })?;
        Ok(updates.into_iter().map(|(_, _, a)| a).collect())
    }

    /// Every alarm, oldest first.
    pub fn alarms(&self) -> Result<Vec<Alarm>, ProvenanceError> {
        let mut out = Vec::new();
        for item in self.alarms.iter() {
            let (_, raw) = item?;
            out.push(serde_json::from_slice(&raw).map_err(|e| corrupt("alarm", e))?);
        }
        Ok(out)
    }

    /// Test hook: rewrites record `seq` behind the log's back and rebuilds the whole tree, as
    /// a node that quietly rewrites its history would. Only for tests of witnessing.
    #[doc(hidden)]
    pub fn rewrite_for_test(
        &self,
        seq: u64,
        record: &ProvenanceRecord,
    ) -> Result<(), ProvenanceError> {
        let bytes = record.leaf_data().map_err(|e| corrupt("record", e))?;
        self.records.insert(seq_key(seq), bytes)?;
        self.tiles.clear()?;
        let size = self.size();
        let mut leaves = Vec::new();
        for s in 0..size {
            let raw = self
                .records
                .get(seq_key(s))?
                .ok_or_else(|| corrupt("record", "missing"))?;
            leaves.push(merkle::leaf_hash(&raw));
        }
        let (batch, _) = tile_batch(&self.tiles, 0, &leaves, &Edge::new())?;
        self.tiles.apply_batch(batch)?;
        self.meta.remove(HEAD_KEY)?;
        self.edge_stale.store(true, Ordering::Release);
        Ok(())
    }
}

/// Our tree head for `size` records with `root`, signed.
fn sign_head_of(
    key: &SigningKey,
    actor: &str,
    size: u64,
    root: Hash,
) -> Result<Signed<TreeHead>, ProvenanceError> {
    let head = TreeHead {
        log: actor.to_string(),
        size,
        root: hex::encode(root),
        time: now_rfc3339(),
    };
    Signed::sign(head, key).map_err(|e| corrupt("tree head", e))
}

/// The right edge of the tree, by `(level, index)`: see [`edge_of`].
type Edge = std::collections::HashMap<(u8, u64), Hash>;

/// The tile writes that append `leaves` to a tree of `first` leaves: each tile touched, whole
/// (the hashes it held before, then the new ones), and the node writes they stand for. Nodes
/// in `edge` are taken from it rather than computed from their tiles.
fn tile_batch(
    tiles: &sled::Tree,
    first: u64,
    leaves: &[Hash],
    edge: &Edge,
) -> Result<(sled::Batch, Vec<merkle::NodeUpdate>), ProvenanceError> {
    let updates = merkle::append_batch_updates(first, leaves, |l, i| match edge.get(&(l, i)) {
        Some(h) => Ok(Some(*h)),
        None => get_node(tiles, l, i),
    })
    .map_err(|e| ProvenanceError::Tree(e.to_string()))?;
    let mut batch = sled::Batch::default();
    for (k, t, offset, new) in merkle::tile_appends(&updates) {
        let key = merkle::node_key(k, t);
        let mut value = Vec::with_capacity(offset * 32 + new.len());
        if offset > 0 {
            let old = tiles.get(key)?.unwrap_or_default();
            if old.len() != offset * 32 {
                return Err(ProvenanceError::Tree(format!(
                    "tile ({k}, {t}) holds {} bytes, expected {}",
                    old.len(),
                    offset * 32
                )));
            }
            value.extend_from_slice(&old);
        }
        value.extend_from_slice(&new);
        batch.insert(&key, value);
    }
    Ok((batch, updates))
}

/// The nodes on the right edge of a tree of `size` leaves, `(level, index)`: the perfect
/// subtrees of its one-bits, which make its root and are the left siblings the next append
/// reads.
fn edge_of(size: u64) -> impl Iterator<Item = (u8, u64)> {
    (0u32..64)
        .filter(move |l| size >> l & 1 == 1)
        // The subtree of bit `l` starts after those of the higher bits.
        .map(move |l| (l as u8, size.checked_shr(l + 1).unwrap_or(0) << 1))
}

/// Moves a log of format 1 (every node under `merkle::node_key` in `prov_nodes`) to tiles:
/// the nodes of levels 0, 8, 16, ... are packed into their tiles, then `prov_nodes` is
/// emptied. Crash-safe: the format key is written only after the tiles are durable, and
/// before it tiles are rebuilt from scratch; after it only the clearing is left.
fn migrate_nodes_to_tiles(
    db: &sled::Db,
    nodes: &sled::Tree,
    tiles: &sled::Tree,
    meta: &sled::Tree,
) -> Result<(), ProvenanceError> {
    if nodes.is_empty() {
        if meta.get(FORMAT_KEY)?.is_none() {
            meta.insert(FORMAT_KEY, FORMAT_TILES)?;
        }
        return Ok(());
    }
    match meta.get(FORMAT_KEY)? {
        Some(f) if f.as_ref() == FORMAT_TILES => {}
        Some(f) => {
            return Err(corrupt(
                "log format",
                format!("unknown format {}", String::from_utf8_lossy(&f)),
            ));
        }
        None => {
            tiles.clear()?;
            let mut moved = 0u64;
            for k in 0..64 / merkle::TILE_HEIGHT {
                let level = k * merkle::TILE_HEIGHT;
                // Consecutive nodes from index 0; a gap ends the level (repair then cuts
                // what lies above it).
                let mut tile: Option<(u64, Vec<u8>)> = None;
                for (next, item) in (0u64..).zip(nodes.scan_prefix([level])) {
                    let (key, value) = item?;
                    let index = key
                        .get(1..9)
                        .and_then(|s| s.try_into().ok())
                        .map(u64::from_be_bytes);
                    if index != Some(next) || value.len() != 32 {
                        break;
                    }
                    let t = next >> merkle::TILE_HEIGHT;
                    if tile.as_ref().is_some_and(|(at, _)| *at != t) {
                        if let Some((at, bytes)) = tile.take() {
                            tiles.insert(merkle::node_key(k, at), bytes)?;
                        }
                    }
                    tile.get_or_insert_with(|| (t, Vec::new()))
                        .1
                        .extend_from_slice(&value);
                    moved += 1;
                }
                if let Some((at, bytes)) = tile {
                    tiles.insert(merkle::node_key(k, at), bytes)?;
                }
            }
            db.flush()?;
            meta.insert(FORMAT_KEY, FORMAT_TILES)?;
            db.flush()?;
            tracing::info!(
                nodes = moved,
                "provenance: tree nodes moved to tiles (format 2)"
            );
        }
    }
    nodes.clear()?;
    db.flush()?;
    Ok(())
}

/// Finds the committed size after a crash and removes what lies beyond it.
fn repair(
    records: &sled::Tree,
    tiles: &sled::Tree,
    index: &sled::Tree,
) -> Result<u64, ProvenanceError> {
    let n_rec = match records.last()? {
        None => 0,
        Some((k, _)) => {
            let b: [u8; 8] = k
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("record key", "not 8 bytes"))?;
            u64::from_be_bytes(b) + 1
        }
    };
    // The leaves: full tiles of level 0 and the hashes of the last.
    let n_leaf = match tiles.scan_prefix([0u8]).last() {
        None => 0,
        Some(item) => {
            let (k, v) = item?;
            let b: [u8; 8] = k
                .get(1..9)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| corrupt("tile key", "not 9 bytes"))?;
            (u64::from_be_bytes(b) << merkle::TILE_HEIGHT) + (v.len() / 32) as u64
        }
    };
    let size = n_rec.min(n_leaf);
    // Records are written in order, so the first `size` are all present.
    if n_rec > size {
        let mut groups = std::collections::BTreeSet::new();
        for seq in size..n_rec {
            if let Some(raw) = records.remove(seq_key(seq))? {
                if let Ok(r) = serde_json::from_slice::<ProvenanceRecord>(&raw) {
                    if let Some(d) = &r.dataset {
                        index.remove(index_key(b'd', d, seq))?;
                    }
                    groups.insert((b'k', r.kind.name()));
                    if let Some(p) = &r.counterparty {
                        groups.insert((b'p', p.clone()));
                    }
                }
            }
        }
        for (tag, value) in groups {
            drop_index_entries_from(index, &index_prefix(tag, &value), size)?;
        }
        tracing::warn!(
            kept = size,
            dropped = n_rec - size,
            "provenance: unacknowledged records of an interrupted batch removed"
        );
    }
    // Each tile level keeps the nodes of its base level that cover leaves below `size` only.
    for k in 0..64 / merkle::TILE_HEIGHT {
        let kept = size >> (k * merkle::TILE_HEIGHT);
        for item in tiles.scan_prefix([k]).rev() {
            let (key, v) = item?;
            let Some(t) = key
                .get(1..9)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            let start = u128::from(t) << merkle::TILE_HEIGHT;
            let keep = u128::from(kept).saturating_sub(start).min(256) as usize * 32;
            if keep == 0 {
                tiles.remove(key)?;
                continue;
            }
            if v.len() > keep {
                tiles.insert(key, v.get(..keep).unwrap_or_default())?;
            }
            break;
        }
    }
    Ok(size)
}

/// Removes what the index entries under `prefix` (a kind or counterparty) name from `size` on:
/// entries keyed at or beyond it go, and an entry keyed before it keeps only the seqs below it.
fn drop_index_entries_from(
    index: &sled::Tree,
    prefix: &[u8],
    size: u64,
) -> Result<(), ProvenanceError> {
    for item in index.scan_prefix(prefix).rev() {
        let (k, v) = item?;
        let Some(first) = key_seq(&k, prefix.len()) else {
            continue;
        };
        if first >= size {
            index.remove(k)?;
            continue;
        }
        let kept: Vec<u8> = entry_seqs(first, &v)
            .filter(|s| *s < size)
            .flat_map(u64::to_be_bytes)
            .collect();
        if !v.is_empty() && kept.len() != v.len() {
            index.insert(k, kept)?;
        }
        break;
    }
    Ok(())
}

/// Applies the batches of one group commit in one sled transaction: after a crash sled
/// recovers all of them or none.
fn apply_atomically(
    trees: (&sled::Tree, &sled::Tree, &sled::Tree, &sled::Tree),
    batches: [&sled::Batch; 4],
) -> Result<(), ProvenanceError> {
    use sled::Transactional;
    let [a, b, c, d] = batches;
    trees
        .transaction(|(ta, tb, tc, td)| {
            ta.apply_batch(a)?;
            tb.apply_batch(b)?;
            tc.apply_batch(c)?;
            td.apply_batch(d)?;
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })
        .map_err(|e| match e {
            sled::transaction::TransactionError::Storage(e) => ProvenanceError::Sled(e),
            sled::transaction::TransactionError::Abort(()) => corrupt("batch", "aborted"),
        })
}

/// Datasets whose latest record the writer remembers (beyond that it forgets them all and
/// reads the dataset index again).
const LATEST_CACHED: usize = 65_536;

struct Writer {
    log: ProvenanceLog,
    db: sled::Db,
    key: SigningKey,
    actor: String,
    region: Region,
    /// The node's data dir, for the fail points (none outside a node).
    data_dir: Option<std::path::PathBuf>,
    /// The seq of the latest committed record about each dataset recently recorded: the writer
    /// is the only one to append, so this is the dataset index's answer without its scan.
    latest: std::collections::HashMap<String, u64>,
    /// The right edge of the committed tree ([`edge_of`] its size), once known: the next
    /// batch's left siblings and the root come from it, not from hashing inside tiles.
    edge: Edge,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch: Vec<Append> = Vec::new();
        let mut close: Option<std::sync::mpsc::SyncSender<()>> = None;
        while close.is_none() {
            match rx.blocking_recv() {
                None => break,
                Some(Job::Close(done)) => close = Some(done),
                Some(Job::Append(a)) => batch.push(*a),
                Some(Job::AppendAll(all)) => batch.extend(all),
            }
            while batch.len() < MAX_BATCH && close.is_none() {
                match rx.try_recv() {
                    Ok(Job::Append(a)) => batch.push(*a),
                    Ok(Job::AppendAll(all)) => batch.extend(all),
                    Ok(Job::Close(done)) => close = Some(done),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit(std::mem::take(&mut batch));
            }
        }
        if let Some(done) = close {
            let _ = done.send(());
        }
    }

    fn commit(&mut self, mut batch: Vec<Append>) {
        let result = self.write(&mut batch);
        // The flush retired sled's write buffers on this thread (see `release_retired`).
        super::release_retired();
        match result {
            Ok(first) => {
                for (i, a) in batch.into_iter().enumerate() {
                    let _ = a.ack.send(Ok(first + i as u64));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "provenance batch not committed");
                self.latest.clear();
                self.edge.clear();
                // Remove whatever of the batch reached the trees, so the next batch starts clean.
                let log = &self.log;
                match repair(&log.records, &log.tiles, &log.index) {
                    Ok(size) => log.size.store(size, Ordering::Release),
                    Err(e) => tracing::error!(error = %e, "provenance log repair failed"),
                }
                let msg = e.to_string();
                for a in batch {
                    let _ = a.ack.send(Err(msg.clone()));
                }
            }
        }
    }

    /// Fills in each record of `batch` (seq, time, actor) and writes them; a batch that fails
    /// is refused whole, so its records are not used again.
    fn write(&mut self, batch: &mut [Append]) -> Result<u64, ProvenanceError> {
        let log = &self.log;
        let first = log.size();
        let time = now_rfc3339();
        let mut records = sled::Batch::default();
        let mut index = sled::Batch::default();
        let mut docs = sled::Batch::default();
        let mut leaves = Vec::with_capacity(batch.len());
        // The latest seq about each dataset this batch touched (earlier ones are in the index).
        let mut latest: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        // The seqs of this batch by kind and by counterparty: one index entry each.
        let mut grouped: std::collections::BTreeMap<(u8, String), Vec<u8>> =
            std::collections::BTreeMap::new();
        for (i, a) in batch.iter_mut().enumerate() {
            let r = &mut a.entry.record;
            r.seq = first + i as u64;
            r.time.clone_from(&time);
            r.actor.clone_from(&self.actor);
            r.actor_region = self.region;
            // Each record about a dataset names the previous one about it (itself when it is
            // the first), inside its leaf: a bundle of the dataset can then prove it is whole.
            r.prev_about_dataset = match &r.dataset {
                Some(d) => {
                    let prev = match latest.get(d).or_else(|| self.latest.get(d)) {
                        Some(p) => Some(*p),
                        None => latest_in_index(&log.index, d, first)?,
                    };
                    latest.insert(d.clone(), r.seq);
                    Some(prev.unwrap_or(r.seq))
                }
                None => None,
            };
            for d in &a.entry.documents {
                docs.insert(hex::encode(d.digest).as_bytes(), d.json.as_slice());
            }
            let bytes = sled::IVec::from(r.leaf_data().map_err(|e| corrupt("record", e))?);
            leaves.push(merkle::leaf_hash(&bytes));
            // The dataset index carries the record itself, so the deliveries report of a
            // dataset is one ordered scan rather than a random read per record.
            if let Some(d) = &r.dataset {
                index.insert(index_key(b'd', d, r.seq), bytes.clone());
            }
            let seq = r.seq.to_be_bytes();
            grouped
                .entry((b'k', r.kind.name()))
                .or_default()
                .extend_from_slice(&seq);
            if let Some(p) = &r.counterparty {
                grouped
                    .entry((b'p', p.clone()))
                    .or_default()
                    .extend_from_slice(&seq);
            }
            records.insert(&seq_key(r.seq), bytes);
        }
        for ((tag, value), seqs) in grouped {
            let Some(first_seq) = seqs.get(..8).and_then(|s| s.try_into().ok()) else {
                continue;
            };
            index.insert(index_key(tag, &value, u64::from_be_bytes(first_seq)), seqs);
        }
        if log.edge_stale.swap(false, Ordering::AcqRel) {
            self.edge.clear();
        }
        let (tile_batch, updates) = tile_batch(&log.tiles, first, &leaves, &self.edge)?;
        let size = first + batch.len() as u64;
        // The new edge: nodes this batch made, else the old edge's, else read from the tiles.
        let made: Edge = {
            let wanted: std::collections::HashSet<(u8, u64)> = edge_of(size).collect();
            updates
                .into_iter()
                .filter(|(l, i, _)| wanted.contains(&(*l, *i)))
                .map(|(l, i, h)| ((l, i), h))
                .collect()
        };
        let mut edge = Edge::new();
        for (l, i) in edge_of(size) {
            let h = match made.get(&(l, i)).or_else(|| self.edge.get(&(l, i))) {
                Some(h) => *h,
                None => get_node(&log.tiles, l, i)?
                    .ok_or_else(|| ProvenanceError::Tree(format!("node ({l}, {i}) missing")))?,
            };
            edge.insert((l, i), h);
        }
        let root = merkle::root(size, &|l: u8, i: u64| {
            Ok::<_, std::convert::Infallible>(edge.get(&(l, i)).copied())
        })
        .map_err(|e| ProvenanceError::Tree(e.to_string()))?;
        // One atomic write for the whole group: after a crash sled recovers all of it or none.
        apply_atomically(
            (&log.docs, &log.records, &log.index, &log.tiles),
            [&docs, &records, &index, &tile_batch],
        )?;
        if let Some(dir) = &self.data_dir {
            crate::failpoint::pause_blocking(dir, "append.before_flush");
        }
        self.db.flush()?;
        if let Some(dir) = &self.data_dir {
            crate::failpoint::pause_blocking(dir, "append.after_flush");
        }
        if self.latest.len() + latest.len() > LATEST_CACHED {
            self.latest.clear();
        }
        self.latest.extend(latest);
        log.size.store(size, Ordering::Release);
        self.edge = edge;
        let head = sign_head_of(&self.key, &self.actor, size, root)?;
        // The records are committed; a head that cannot be stored is signed again at the next
        // batch or at open (repair), so this is loud but not fatal.
        match serde_json::to_vec(&head) {
            Ok(bytes) => {
                if let Err(e) = log.meta.insert(HEAD_KEY, bytes) {
                    tracing::error!(error = %e, size, "provenance tree head not stored");
                }
            }
            Err(e) => tracing::error!(error = %e, size, "provenance tree head not encoded"),
        }
        *log.head.write() = Some(head);
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::identity::NodeKey;
    use crate::model::provenance::RecordKind;

    fn open(db: &sled::Db) -> ProvenanceLog {
        let key = NodeKey::from_seed([9; 32]);
        ProvenanceLog::open(
            db,
            key.signing_key().clone(),
            key.peer_id().to_string(),
            Region::from_code(310000).unwrap(),
        )
        .unwrap()
    }

    fn about(dataset: Option<&str>) -> NewRecord {
        NewRecord {
            record: ProvenanceRecord {
                dataset: dataset.map(str::to_string),
                // Whatever an appender sets, the writer decides.
                prev_about_dataset: Some(77),
                ..ProvenanceRecord::new(
                    RecordKind::Refused,
                    String::new(),
                    Region::from_code(310000).unwrap(),
                )
            },
            documents: Vec::new(),
        }
    }

    fn of(kind: RecordKind, peer: &str) -> NewRecord {
        let mut e = about(None);
        e.record.kind = kind;
        e.record.counterparty = Some(peer.to_string());
        e
    }

    fn seqs(log: &ProvenanceLog, q: Query) -> Vec<u64> {
        log.query(&q).unwrap().iter().map(|r| r.seq).collect()
    }

    fn by_kind(kind: RecordKind) -> Query {
        Query {
            kind: Some(kind.name()),
            ..Query::default()
        }
    }

    fn by_peer(peer: &str) -> Query {
        Query {
            peer: Some(peer.to_string()),
            ..Query::default()
        }
    }

    #[tokio::test]
    async fn kind_and_peer_entries_of_a_group_commit_and_of_older_logs_are_both_read() {
        use RecordKind::{Refused, WitnessAlarm};
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let log = open(&db);
        let (a, b, c) = tokio::join!(
            log.append(of(Refused, "p1")),
            log.append(of(WitnessAlarm, "p2")),
            log.append(of(Refused, "p2")),
        );
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        assert_eq!(seqs(&log, by_kind(Refused)), vec![a, c]);
        assert_eq!(seqs(&log, by_peer("p2")), vec![b, c]);
        log.close();
        drop(log);
        // A log written before group entries: one empty entry per record, keyed by its seq.
        let index = db.open_tree(INDEX).unwrap();
        for item in index.iter() {
            let (k, v) = item.unwrap();
            if k.first() != Some(&b'd') {
                assert!(!v.is_empty(), "a group entry lists its seqs");
                index.remove(k).unwrap();
            }
        }
        for (seq, kind, peer) in [
            (a, Refused, "p1"),
            (b, WitnessAlarm, "p2"),
            (c, Refused, "p2"),
        ] {
            index
                .insert(index_key(b'k', &kind.name(), seq), &[] as &[u8])
                .unwrap();
            index
                .insert(index_key(b'p', peer, seq), &[] as &[u8])
                .unwrap();
        }
        let log = open(&db);
        let d = log.append(of(Refused, "p2")).await.unwrap();
        assert_eq!(seqs(&log, by_kind(Refused)), vec![a, c, d]);
        assert_eq!(seqs(&log, by_peer("p2")), vec![b, c, d]);
        assert_eq!(seqs(&log, by_peer("p1")), vec![a]);
        log.close();
    }

    #[tokio::test]
    async fn records_beyond_the_committed_tree_leave_no_index_entry_behind() {
        use RecordKind::{Refused, WitnessAlarm};
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let log = open(&db);
        let kept = log.append(of(Refused, "p1")).await.unwrap();
        let (x, y) = tokio::join!(
            log.append(of(Refused, "p1")),
            log.append(of(WitnessAlarm, "p1"))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        log.close();
        drop(log);
        // As after a crash that kept the records of the last two but not their leaves.
        let tiles = db.open_tree(TILES).unwrap();
        let key = merkle::node_key(0, 0);
        let tile = tiles.get(key).unwrap().unwrap();
        assert_eq!(tile.len(), 3 * 32);
        tiles.insert(key, &tile[..32 * x.min(y) as usize]).unwrap();
        let log = open(&db);
        assert_eq!(log.size(), kept + 1);
        assert_eq!(seqs(&log, by_peer("p1")), vec![kept]);
        // The seqs are taken again, by records of other kinds and peers.
        let (x2, y2) = tokio::join!(
            log.append(of(WitnessAlarm, "p2")),
            log.append(of(Refused, "p2"))
        );
        let (x2, y2) = (x2.unwrap(), y2.unwrap());
        assert_eq!(seqs(&log, by_kind(Refused)), vec![kept, y2]);
        assert_eq!(seqs(&log, by_kind(WitnessAlarm)), vec![x2]);
        assert_eq!(seqs(&log, by_peer("p1")), vec![kept]);
        assert_eq!(seqs(&log, by_peer("p2")), vec![x2, y2]);
        log.verify_all().unwrap();
        log.close();
    }

    #[tokio::test]
    async fn the_writer_links_each_record_to_the_previous_about_its_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let log = open(&db);
        // One batch (appended together) and separate batches link alike.
        let (s0, s1, s2) = tokio::join!(
            log.append(about(Some("a"))),
            log.append(about(Some("a\u{0}b"))),
            log.append(about(None)),
        );
        let s3 = log.append(about(Some("a"))).await.unwrap();
        let (s0, s1, s2) = (s0.unwrap(), s1.unwrap(), s2.unwrap());
        let prev = |seq| log.record(seq).unwrap().unwrap().prev_about_dataset;
        assert_eq!(prev(s0), Some(s0), "the first about a dataset names itself");
        assert_eq!(
            prev(s1),
            Some(s1),
            "a dataset whose name starts like another's"
        );
        assert_eq!(prev(s2), None, "no dataset, no link");
        assert_eq!(prev(s3), Some(s0));
        log.close();
        drop(log);
        // After a restart the link reaches back into what is on disk.
        let log = open(&db);
        let s4 = log.append(about(Some("a"))).await.unwrap();
        assert_eq!(
            log.record(s4).unwrap().unwrap().prev_about_dataset,
            Some(s3)
        );
        assert_eq!(log.latest_about_dataset("a", log.size()).unwrap(), Some(s4));
        assert_eq!(log.latest_about_dataset("a", s4).unwrap(), Some(s3));
        assert_eq!(log.latest_about_dataset("b", log.size()).unwrap(), None);
        log.close();
    }

    /// Rewrites the tree of the log in `db` as format 1 kept it: every node under its own key
    /// in `prov_nodes`, no tiles and no format key.
    fn to_format_1(db: &sled::Db) {
        let records = db.open_tree(RECORDS).unwrap();
        let leaves: Vec<Hash> = records
            .iter()
            .map(|item| merkle::leaf_hash(&item.unwrap().1))
            .collect();
        let updates = merkle::append_batch_updates(0, &leaves, |_, _| {
            Ok::<_, std::convert::Infallible>(None)
        })
        .unwrap();
        let nodes = db.open_tree(NODES).unwrap();
        for (l, i, h) in updates {
            nodes.insert(merkle::node_key(l, i), &h).unwrap();
        }
        db.open_tree(TILES).unwrap().clear().unwrap();
        db.open_tree(META).unwrap().remove(FORMAT_KEY).unwrap();
    }

    async fn append_n(log: &ProvenanceLog, n: usize) {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let log = log.clone();
            tasks.spawn(async move {
                log.append(of(RecordKind::Refused, &format!("p{}", i % 7)))
                    .await
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
    }

    #[test]
    fn the_edge_is_the_perfect_subtree_of_each_one_bit() {
        let edge = |n| edge_of(n).collect::<Vec<_>>();
        assert_eq!(edge(0), vec![]);
        assert_eq!(edge(6), vec![(1, 2), (2, 0)]);
        assert_eq!(edge(7), vec![(0, 6), (1, 2), (2, 0)]);
        assert_eq!(edge(u64::MAX).last(), Some(&(63, 0)));
    }

    #[tokio::test]
    async fn a_log_of_format_1_is_moved_to_tiles_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let log = open(&db);
        // Three leaf tiles (the last partial) and two hashes in a tile of level 8.
        append_n(&log, 600).await;
        let size = log.size();
        assert_eq!(size, 600);
        let root = log.root(size).unwrap();
        let proofs = |log: &ProvenanceLog| {
            (
                log.inclusion_proof(5, size).unwrap(),
                log.inclusion_proof(599, size).unwrap(),
                log.consistency_proof(300, size).unwrap(),
            )
        };
        let before = proofs(&log);
        log.close();
        drop(log);
        to_format_1(&db);
        assert!(db.open_tree(NODES).unwrap().len() > 1000);
        // An earlier attempt, interrupted, left a wrong tile behind: it is rebuilt.
        let tiles = db.open_tree(TILES).unwrap();
        tiles
            .insert(merkle::node_key(0, 0), &[7u8; 64][..])
            .unwrap();

        let log = open(&db);
        assert_eq!(log.size(), size);
        assert_eq!(log.root(size).unwrap(), root);
        assert_eq!(log.head().unwrap().document.root, hex::encode(root));
        assert_eq!(proofs(&log), before);
        assert!(db.open_tree(NODES).unwrap().is_empty());
        assert_eq!(tiles.len(), 4, "tiles (0, 0..3) and (1, 0)");
        log.verify_all().unwrap();
        append_n(&log, 1).await;
        log.verify_all().unwrap();
        log.close();
        drop(log);

        // Interrupted after the format key was written: only the clearing was left.
        let nodes = db.open_tree(NODES).unwrap();
        nodes
            .insert(merkle::node_key(0, 0), &[1u8; 32][..])
            .unwrap();
        let log = open(&db);
        assert_eq!(log.size(), size + 1);
        assert_eq!(log.inclusion_proof(5, size).unwrap(), before.0);
        append_n(&log, 300).await;
        let head = log.head().unwrap().document;
        assert_eq!(head.root, hex::encode(log.root(head.size).unwrap()));
        assert!(nodes.is_empty());
        log.verify_all().unwrap();
        log.close();
    }
}
