//! Persistence: the node's sled database, its dataset files ([`blobs`]) and the provenance log
//! ([`provenance`]). Nothing else in the crate opens sled; every tree is reached through
//! [`Store`], which knows no network and no policy. sled holds an exclusive file lock on the
//! database while a handle is open; [`Store::open`] waits a bounded time ([`LOCK_WAIT`]) for a
//! lock still held (a previous handle being released), then names the database in its error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The on-disk format this build reads and writes. Version 2 keys the `grants` tree by direction
/// ([`issued_grant_key`], [`received_grant_key`]); a version 1 database is migrated at open.
pub const FORMAT_VERSION: u32 = 2;
/// Directory of the sled database inside the data dir.
pub const DB_DIR: &str = "db";

/// Hands the calling thread's deferred frees to crossbeam-epoch's global collector and runs
/// those that are safe to run now.
///
/// sled 0.34 retires each 512 KiB write buffer (one per log segment) with crossbeam-epoch's
/// deferred destruction, which keeps a thread's deferred frees in a thread-local bag until 64
/// of them are waiting: a thread that seals sled's buffers (a flush, a large write) could hold
/// up to 63 retired buffers, about 32 MiB, for as long as it lives. Called after each flush, by
/// the provenance writer after each group commit, and by the runtime's threads before they
/// park (`main.rs`), so what sled retires is freed within a few epochs instead.
pub fn release_retired() {
    crossbeam_epoch::pin().flush();
}

pub mod blobs;
pub mod provenance;
pub mod query_index;

const META: &str = "meta";
const PEERS: &str = "peers";
/// Signed data standards, key `id@version`.
const SCHEMAS: &str = "schemas";
/// Our own offers, demands and withheld entries, key `<list>/<identifier>`.
const LOCAL_LISTS: &str = "local_lists";
/// Signed manifests of dataset versions, key `publisher \0 dataset \0 version (u64 BE)`.
const MANIFESTS: &str = "manifests";
/// The latest verified catalogue of every publisher (ourselves included), key = peer id bytes.
const CATALOGUES: &str = "catalogues";

/// The exchange's own trees: each keyed by an id, each value one JSON record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordTree {
    /// Access requests we sent or received, by request id.
    Requests,
    /// Grants we issued (`out/<id>`) or received (`in/<provider>/<id>`), with any revocation:
    /// a provider chooses the ids of the grants it issues, so a received one can never take
    /// the key of one we issued.
    Grants,
    /// Our subscriptions, by `publisher/dataset`.
    Subscriptions,
    /// Fetches (running, failed or done), by transfer id.
    Fetches,
    /// Derived deliveries we made, by `grant id/version`.
    Derived,
    /// Receipts received from receivers, by `receiver/dataset/version/digest`.
    Receipts,
    /// The federation charter versions applied, by version (20 digits, so key order is version
    /// order); a new tree, so no format change: an older database simply has none.
    Charters,
    /// Proposals of the charter's next version held (drafts, partly signed), by the digest of
    /// their document; obsolete ones go once a version is applied.
    CharterProposals,
    /// Charter equivocations seen (both documents of one version, as evidence), by version.
    CharterEquivocations,
    /// Query calls counted against a daily quota, by grant id (or `peer/dataset` without one).
    QueryUsage,
    /// Scoped API clients, by name (their tokens only as hashes).
    ApiClients,
}

impl RecordTree {
    /// The sled tree name.
    pub fn name(self) -> &'static str {
        match self {
            RecordTree::Requests => "requests",
            RecordTree::Grants => "grants",
            RecordTree::Subscriptions => "subscriptions",
            RecordTree::Fetches => "fetches",
            RecordTree::Derived => "derived",
            RecordTree::Receipts => "receipts",
            RecordTree::Charters => "charters",
            RecordTree::CharterProposals => "charter_proposals",
            RecordTree::CharterEquivocations => "charter_equivocations",
            RecordTree::QueryUsage => "query_usage",
            RecordTree::ApiClients => "api_clients",
        }
    }
}
const FORMAT_KEY: &[u8] = b"format_version";

/// The key of a grant we issued, in [`RecordTree::Grants`].
pub fn issued_grant_key(id: &str) -> String {
    format!("out/{id}")
}

/// The key of a grant `provider` issued to us, in [`RecordTree::Grants`].
pub fn received_grant_key(provider: &str, id: &str) -> String {
    format!("in/{provider}/{id}")
}

/// One write of [`Store::put_records`]: a record of an exchange tree, encoded.
#[derive(Debug, Clone)]
pub struct RecordWrite {
    tree: RecordTree,
    key: String,
    value: Vec<u8>,
}

impl RecordWrite {
    /// `value` to be written under `key` of `tree`.
    pub fn new<T: Serialize>(tree: RecordTree, key: &str, value: &T) -> Result<Self, StoreError> {
        Ok(RecordWrite {
            tree,
            key: key.to_string(),
            value: serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
                tree: tree.name(),
                message: e.to_string(),
            })?,
        })
    }
}

/// How long [`Store::open`] waits for a database lock held by another handle.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// sled's page cache, in MiB, unless `[store] cache_mib` says otherwise (sled's own default is
/// 1 GiB: a node's resident memory would creep towards it and never plateau).
pub const DEFAULT_CACHE_MIB: u64 = 64;
const LOCK_BACKOFF_MIN: Duration = Duration::from_millis(10);
const LOCK_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Whether sled refused to open because another handle holds the database's file lock. sled
/// reports it only as an `io::ErrorKind::Other` with this message (sled 0.34, `Config::try_lock`).
fn is_lock_held(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock on"))
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled could not open the database.
    #[error("cannot open database {path}: {source} (is another yrd running on this data dir?)")]
    Open {
        /// The database directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// The database stayed locked by another handle for the whole wait.
    #[error(
        "database {path} is locked: still held by another handle after waiting {waited:?} \
         (is another yrd running on this data dir?)"
    )]
    Locked {
        /// The database directory.
        path: PathBuf,
        /// How long the open waited.
        waited: Duration,
    },
    /// The database was written by a newer yrd.
    #[error(
        "database {path} has format version {found}, but this yrd supports up to {supported}; \
         run a newer yrd (or restore a backup made by this version)"
    )]
    NewerFormat {
        /// The database directory.
        path: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Version this build supports.
        supported: u32,
    },
    /// The format key is unreadable.
    #[error("database {path}: corrupt format version key")]
    CorruptMeta {
        /// The database directory.
        path: PathBuf,
    },
    /// A sled operation failed.
    #[error("database: {0}")]
    Sled(#[from] sled::Error),
    /// The task flushing the database to disk ended without an answer (a panic in sled, or
    /// the runtime shutting down).
    #[error("database: the flush to disk did not complete: {0}")]
    FlushTask(String),
    /// A stored value could not be decoded.
    #[error("database: corrupt value in tree {tree}: {message}")]
    Corrupt {
        /// The tree.
        tree: &'static str,
        /// The decoder's account.
        message: String,
    },
}

/// What the node remembers about a federation member between runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredPeer {
    /// The member's latest verified NodeInfo envelope (JSON), if one was received.
    #[serde(default)]
    pub node_info: Option<serde_json::Value>,
    /// Addresses the member was last reached at.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// When it was last connected (RFC 3339).
    #[serde(default)]
    pub last_seen: Option<String>,
}

/// The node's database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    writes: Arc<Writes>,
}

/// Counts of completed writes to the trees whose decoded contents the node keeps in memory
/// (our lists, our manifests, the grants). A reader that read generation `g` before reading
/// the tree may keep what it decoded until the generation moves on: each counter moves after
/// its write.
#[derive(Debug, Default)]
struct Writes {
    local_lists: AtomicU64,
    manifests: AtomicU64,
    grants: AtomicU64,
}

impl Store {
    /// Opens (or creates) the database under `data_dir`, checking its format version. While
    /// another handle holds the database's lock (a previous one still being released, or
    /// another yrd), it retries for up to [`LOCK_WAIT`].
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Self::open_with_cache(data_dir, DEFAULT_CACHE_MIB)
    }

    /// [`open`](Self::open) with sled's page cache bounded to `cache_mib` MiB (`[store]
    /// cache_mib`).
    pub fn open_with_cache(data_dir: &Path, cache_mib: u64) -> Result<Store, StoreError> {
        Self::open_waiting(data_dir, cache_mib, LOCK_WAIT, || {})
    }

    /// [`open`](Self::open) waiting at most `wait` for the lock; `on_locked` runs each time the
    /// lock is found held.
    fn open_waiting(
        data_dir: &Path,
        cache_mib: u64,
        wait: Duration,
        mut on_locked: impl FnMut(),
    ) -> Result<Store, StoreError> {
        let path = data_dir.join(DB_DIR);
        let start = Instant::now();
        let mut backoff = LOCK_BACKOFF_MIN;
        let db = loop {
            match sled::Config::new()
                .path(&path)
                .mode(sled::Mode::HighThroughput)
                .cache_capacity(cache_mib.saturating_mul(1 << 20))
                .open()
            {
                Ok(db) => break db,
                Err(source) if is_lock_held(&source) => {
                    on_locked();
                    let waited = start.elapsed();
                    if waited >= wait {
                        return Err(StoreError::Locked { path, waited });
                    }
                    std::thread::sleep(backoff.min(wait - waited));
                    backoff = (backoff * 2).min(LOCK_BACKOFF_MAX);
                }
                Err(source) => return Err(StoreError::Open { path, source }),
            }
        };
        let store = Store {
            db,
            path,
            writes: Arc::default(),
        };
        store.check_format()?;
        Ok(store)
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let meta = self.db.open_tree(META)?;
        match meta.get(FORMAT_KEY)? {
            None => {
                meta.insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())?;
                self.db.flush()?;
                Ok(())
            }
            Some(raw) => {
                let bytes: [u8; 4] =
                    raw.as_ref()
                        .try_into()
                        .map_err(|_| StoreError::CorruptMeta {
                            path: self.path.clone(),
                        })?;
                let found = u32::from_be_bytes(bytes);
                if found > FORMAT_VERSION {
                    return Err(StoreError::NewerFormat {
                        path: self.path.clone(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                if found < 2 {
                    self.migrate_grants_to_2(&meta)?;
                }
                Ok(())
            }
        }
    }

    /// Format 1 → 2: grants keyed by their id become keyed by direction (`out/<id>`,
    /// `in/<provider>/<id>`). The new keys and the new format version are written in one
    /// transaction, so a crash leaves either the old database or the new one, never half.
    fn migrate_grants_to_2(&self, meta: &sled::Tree) -> Result<(), StoreError> {
        let name = RecordTree::Grants.name();
        let grants = self.db.open_tree(name)?;
        let mut moves = Vec::new();
        for item in grants.iter() {
            let (old, value) = item?;
            let record: serde_json::Value = decode(name, &value)?;
            let id = record["id"].as_str().unwrap_or_default();
            let new = match record["direction"].as_str() {
                Some("out") => issued_grant_key(id),
                Some("in") => received_grant_key(
                    record["grant"]["document"]["provider"]
                        .as_str()
                        .unwrap_or_default(),
                    id,
                ),
                other => {
                    return Err(StoreError::Corrupt {
                        tree: name,
                        message: format!("grant {id:?} has no direction ({other:?})"),
                    });
                }
            };
            moves.push((old, new, value));
        }
        use sled::Transactional;
        (&grants, meta)
            .transaction(|(g, m)| {
                for (old, _, _) in &moves {
                    g.remove(old)?;
                }
                for (_, new, value) in &moves {
                    g.insert(new.as_bytes(), value)?;
                }
                m.insert(FORMAT_KEY, &2u32.to_be_bytes())?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(transaction_error)?;
        self.db.flush()?;
        tracing::info!(
            grants = moves.len(),
            "database migrated to format 2 (grants keyed by direction)"
        );
        Ok(())
    }

    /// The underlying database (for the provenance log, which owns its own trees).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The format version recorded on disk.
    pub fn format_version(&self) -> Result<u32, StoreError> {
        let raw = self.db.open_tree(META)?.get(FORMAT_KEY)?;
        let bytes: [u8; 4] =
            raw.as_deref()
                .and_then(|r| r.try_into().ok())
                .ok_or(StoreError::CorruptMeta {
                    path: self.path.clone(),
                })?;
        Ok(u32::from_be_bytes(bytes))
    }

    /// Test and upgrade hook: overwrite the format version.
    pub fn set_format_version(&self, version: u32) -> Result<(), StoreError> {
        self.db
            .open_tree(META)?
            .insert(FORMAT_KEY, &version.to_be_bytes())?;
        Ok(())
    }

    /// Writes everything to disk; call before acknowledging anything that must survive a crash.
    ///
    /// sled's blocking flush on the runtime's blocking pool, not `flush_async`: sled 0.34 runs
    /// an async flush on its own I/O pool (seven threads), where flushes waiting for writes
    /// queued behind them lock it up for good once enough run at once (sled issues 1241 and
    /// 1308; `many_flushes_at_once_all_complete`).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let flushed = db.flush();
            release_retired();
            flushed
        })
        .await
        .map_err(|e| StoreError::FlushTask(e.to_string()))??;
        Ok(())
    }

    /// Blocking flush, for shutdown paths outside the runtime.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Remembers a member.
    pub fn put_peer(&self, peer: &PeerId, record: &StoredPeer) -> Result<(), StoreError> {
        put_json(&self.db.open_tree(PEERS)?, PEERS, &peer.to_bytes(), record)
    }

    /// What we remember of a member.
    pub fn peer(&self, peer: &PeerId) -> Result<Option<StoredPeer>, StoreError> {
        get_json(&self.db.open_tree(PEERS)?, PEERS, &peer.to_bytes())
    }

    /// Every member we remember, with its record.
    pub fn peers(&self) -> Result<Vec<(PeerId, StoredPeer)>, StoreError> {
        let tree = self.db.open_tree(PEERS)?;
        let mut out = Vec::new();
        for item in tree.iter() {
            let (k, v) = item?;
            let Ok(peer) = PeerId::from_bytes(&k) else {
                continue;
            };
            let record = decode(PEERS, &v)?;
            out.push((peer, record));
        }
        Ok(out)
    }

    /// Addresses we last reached `peer` at, parsed.
    pub fn peer_addresses(&self, peer: &PeerId) -> Result<Vec<Multiaddr>, StoreError> {
        Ok(self
            .peer(peer)?
            .map(|p| p.addresses.iter().filter_map(|a| a.parse().ok()).collect())
            .unwrap_or_default())
    }

    /// Stores a signed standard (JSON envelope) under `id@version`.
    pub fn put_schema(
        &self,
        id: &str,
        version: &str,
        envelope: &serde_json::Value,
    ) -> Result<(), StoreError> {
        put_json(
            &self.db.open_tree(SCHEMAS)?,
            SCHEMAS,
            format!("{id}@{version}").as_bytes(),
            envelope,
        )
    }

    /// One stored standard.
    pub fn schema(&self, id: &str, version: &str) -> Result<Option<serde_json::Value>, StoreError> {
        get_json(
            &self.db.open_tree(SCHEMAS)?,
            SCHEMAS,
            format!("{id}@{version}").as_bytes(),
        )
    }

    /// Every stored standard envelope.
    pub fn schemas(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        let tree = self.db.open_tree(SCHEMAS)?;
        tree.iter().values().map(|v| decode(SCHEMAS, &v?)).collect()
    }

    /// Puts an entry of one of our lists (`offer`, `demand`, `withheld`).
    pub fn put_local(
        &self,
        list: &str,
        id: &str,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let put = put_json(
            &self.db.open_tree(LOCAL_LISTS)?,
            LOCAL_LISTS,
            format!("{list}/{id}").as_bytes(),
            value,
        );
        self.writes.local_lists.fetch_add(1, Ordering::AcqRel);
        put
    }

    /// Removes an entry of one of our lists; true if it existed.
    pub fn remove_local(&self, list: &str, id: &str) -> Result<bool, StoreError> {
        let removed = self
            .db
            .open_tree(LOCAL_LISTS)?
            .remove(format!("{list}/{id}").as_bytes());
        self.writes.local_lists.fetch_add(1, Ordering::AcqRel);
        Ok(removed?.is_some())
    }

    /// How many writes our lists have had since the database was opened: what was decoded
    /// from them after reading generation `g` holds while it is still `g`.
    pub fn local_lists_generation(&self) -> u64 {
        self.writes.local_lists.load(Ordering::Acquire)
    }

    /// [`Self::local_lists_generation`] for the stored manifests.
    pub fn manifests_generation(&self) -> u64 {
        self.writes.manifests.load(Ordering::Acquire)
    }

    /// [`Self::local_lists_generation`] for [`RecordTree::Grants`].
    pub fn grants_generation(&self) -> u64 {
        self.writes.grants.load(Ordering::Acquire)
    }

    /// Moves the generation of `tree` on, if it has one: after a write to it, failed or not.
    fn wrote(&self, tree: RecordTree) {
        if tree == RecordTree::Grants {
            self.writes.grants.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The entries of one of our lists, in identifier order.
    pub fn local_list(&self, list: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        let tree = self.db.open_tree(LOCAL_LISTS)?;
        tree.scan_prefix(format!("{list}/").as_bytes())
            .values()
            .map(|v| decode(LOCAL_LISTS, &v?))
            .collect()
    }

    /// Stores the latest verified catalogue of `publisher`.
    pub fn put_catalogue(
        &self,
        publisher: &PeerId,
        envelope: &serde_json::Value,
    ) -> Result<(), StoreError> {
        put_json(
            &self.db.open_tree(CATALOGUES)?,
            CATALOGUES,
            &publisher.to_bytes(),
            envelope,
        )
    }

    /// The latest catalogue we hold from `publisher`.
    pub fn catalogue(&self, publisher: &PeerId) -> Result<Option<serde_json::Value>, StoreError> {
        get_json(
            &self.db.open_tree(CATALOGUES)?,
            CATALOGUES,
            &publisher.to_bytes(),
        )
    }

    /// Every catalogue we hold.
    pub fn catalogues(&self) -> Result<Vec<(PeerId, serde_json::Value)>, StoreError> {
        let tree = self.db.open_tree(CATALOGUES)?;
        let mut out = Vec::new();
        for item in tree.iter() {
            let (k, v) = item?;
            let Ok(peer) = PeerId::from_bytes(&k) else {
                continue;
            };
            out.push((peer, decode(CATALOGUES, &v)?));
        }
        Ok(out)
    }

    /// Stores a signed manifest (JSON envelope).
    pub fn put_manifest(
        &self,
        publisher: &str,
        dataset: &str,
        version: u64,
        envelope: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut key = manifest_prefix(publisher, dataset);
        key.extend_from_slice(&version.to_be_bytes());
        let put = put_json(&self.db.open_tree(MANIFESTS)?, MANIFESTS, &key, envelope);
        self.writes.manifests.fetch_add(1, Ordering::AcqRel);
        put
    }

    /// Every stored manifest of `dataset` by `publisher`, in version order.
    pub fn manifests(
        &self,
        publisher: &str,
        dataset: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let tree = self.db.open_tree(MANIFESTS)?;
        tree.scan_prefix(manifest_prefix(publisher, dataset))
            .values()
            .map(|v| decode(MANIFESTS, &v?))
            .collect()
    }

    /// Every stored manifest by `publisher`, all datasets, in key order (dataset, then version).
    pub fn manifests_of_publisher(
        &self,
        publisher: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut prefix = publisher.as_bytes().to_vec();
        prefix.push(0);
        let tree = self.db.open_tree(MANIFESTS)?;
        tree.scan_prefix(prefix)
            .values()
            .map(|v| decode(MANIFESTS, &v?))
            .collect()
    }

    /// One stored manifest of `dataset` by `publisher`: version `version`, or the latest when
    /// None. One key read (or one step back from the end of the prefix), however many
    /// versions there are.
    pub fn manifest(
        &self,
        publisher: &str,
        dataset: &str,
        version: Option<u64>,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let tree = self.db.open_tree(MANIFESTS)?;
        let prefix = manifest_prefix(publisher, dataset);
        let raw = match version {
            Some(v) => {
                let mut key = prefix;
                key.extend_from_slice(&v.to_be_bytes());
                tree.get(key)?
            }
            None => tree.scan_prefix(prefix).values().next_back().transpose()?,
        };
        raw.map(|v| decode(MANIFESTS, &v)).transpose()
    }

    /// The blob digests every stored manifest names.
    pub fn manifest_digests(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut out = std::collections::HashSet::new();
        for v in self.db.open_tree(MANIFESTS)?.iter().values() {
            let m: serde_json::Value = decode(MANIFESTS, &v?)?;
            if let Some(d) = m["document"]["digest"].as_str() {
                out.insert(d.to_string());
            }
        }
        Ok(out)
    }

    /// Whether any stored manifest names the blob `digest`.
    pub fn manifest_names_blob(&self, digest: &str) -> Result<bool, StoreError> {
        for v in self.db.open_tree(MANIFESTS)?.iter().values() {
            let m: serde_json::Value = decode(MANIFESTS, &v?)?;
            if m["document"]["digest"].as_str() == Some(digest) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The database size on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Writes one record of an exchange tree.
    pub fn put_record<T: Serialize>(
        &self,
        tree: RecordTree,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let written = put_json(
            &self.db.open_tree(tree.name())?,
            tree.name(),
            key.as_bytes(),
            value,
        );
        self.wrote(tree);
        written
    }

    /// Reads one record of an exchange tree.
    pub fn record<T: DeserializeOwned>(
        &self,
        tree: RecordTree,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        get_json(
            &self.db.open_tree(tree.name())?,
            tree.name(),
            key.as_bytes(),
        )
    }

    /// Every record of an exchange tree, in key order.
    pub fn records<T: DeserializeOwned>(
        &self,
        tree: RecordTree,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let t = self.db.open_tree(tree.name())?;
        let mut out = Vec::new();
        for item in t.iter() {
            let (k, v) = item?;
            out.push((
                String::from_utf8_lossy(&k).into_owned(),
                decode(tree.name(), &v)?,
            ));
        }
        Ok(out)
    }

    /// Writes several records of exchange trees at once: after a crash, all of them are there
    /// or none is (one sled transaction).
    pub fn put_records(&self, writes: &[RecordWrite]) -> Result<(), StoreError> {
        let mut trees: Vec<RecordTree> = Vec::new();
        for w in writes {
            if !trees.contains(&w.tree) {
                trees.push(w.tree);
            }
        }
        let opened = trees
            .iter()
            .map(|t| self.db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()?;
        use sled::Transactional;
        let written = opened
            .as_slice()
            .transaction(|views| {
                for w in writes {
                    let i = trees.iter().position(|t| *t == w.tree).unwrap_or(0);
                    views[i].insert(w.key.as_bytes(), w.value.as_slice())?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(transaction_error);
        for t in trees {
            self.wrote(t);
        }
        written
    }

    /// Removes one record; whether it existed.
    pub fn remove_record(&self, tree: RecordTree, key: &str) -> Result<bool, StoreError> {
        let removed = self.db.open_tree(tree.name())?.remove(key.as_bytes());
        self.wrote(tree);
        Ok(removed?.is_some())
    }
}

fn transaction_error(e: sled::transaction::TransactionError<()>) -> StoreError {
    match e {
        sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
        sled::transaction::TransactionError::Abort(()) => StoreError::Corrupt {
            tree: "transaction",
            message: "aborted".into(),
        },
    }
}

fn manifest_prefix(publisher: &str, dataset: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(publisher.len() + dataset.len() + 10);
    key.extend_from_slice(publisher.as_bytes());
    key.push(0);
    key.extend_from_slice(dataset.as_bytes());
    key.push(0);
    key
}

fn put_json<T: Serialize>(
    tree: &sled::Tree,
    name: &'static str,
    key: &[u8],
    value: &T,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        tree: name,
        message: e.to_string(),
    })?;
    tree.insert(key, bytes)?;
    Ok(())
}

fn get_json<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &'static str,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match tree.get(key)? {
        None => Ok(None),
        Some(v) => decode(name, &v).map(Some),
    }
}

fn decode<T: DeserializeOwned>(name: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree: name,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// The node keeps the grants decoded while their generation stands still
    /// (`node/decoded.rs`): every way of writing the tree must move it, and only those.
    #[test]
    fn every_write_to_the_grants_moves_their_generation() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let g0 = store.grants_generation();
        store.put_record(
            RecordTree::Grants,
            "out/g1",
            &serde_json::json!({"id": "g1"}),
        )?;
        let g1 = store.grants_generation();
        assert!(g1 > g0, "put_record");
        store.put_records(&[
            RecordWrite::new(RecordTree::Requests, "r1", &serde_json::json!({}))?,
            RecordWrite::new(
                RecordTree::Grants,
                "out/g2",
                &serde_json::json!({"id": "g2"}),
            )?,
        ])?;
        let g2 = store.grants_generation();
        assert!(g2 > g1, "put_records");
        assert!(store.remove_record(RecordTree::Grants, "out/g1")?);
        let g3 = store.grants_generation();
        assert!(g3 > g2, "remove_record");
        store.put_record(RecordTree::Requests, "r2", &serde_json::json!({}))?;
        store.put_records(&[RecordWrite::new(
            RecordTree::Requests,
            "r3",
            &serde_json::json!({}),
        )?])?;
        store.remove_record(RecordTree::Requests, "r1")?;
        assert_eq!(store.grants_generation(), g3, "writes to other trees");
        Ok(())
    }

    #[test]
    fn format_version_is_checked_at_open() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        {
            let store = Store::open(dir.path())?;
            assert_eq!(store.format_version()?, FORMAT_VERSION);
            store.set_format_version(FORMAT_VERSION + 1)?;
            store.flush_blocking()?;
        }
        let err = Store::open(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("newer yrd") || err.contains("supports up to"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn open_waits_for_a_lock_released_meanwhile() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (held_tx, held_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let data_dir = dir.path().to_path_buf();
        let holder = std::thread::spawn(move || -> Result<(), StoreError> {
            let held = Store::open(&data_dir)?;
            let _ = held_tx.send(());
            let _ = release_rx.recv();
            drop(held);
            Ok(())
        });
        held_rx.recv()?;
        // Told to release only once the open has found the lock held: the wait is exercised.
        let mut locked = 0;
        let store = Store::open_waiting(dir.path(), DEFAULT_CACHE_MIB, LOCK_WAIT, || {
            locked += 1;
            let _ = release_tx.send(());
        })?;
        assert!(locked >= 1);
        holder.join().map_err(|_| "holder panicked")??;
        assert_eq!(store.format_version()?, FORMAT_VERSION);
        Ok(())
    }

    #[test]
    fn a_lock_held_past_the_bound_is_a_clear_error() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let _held = Store::open(dir.path())?;
        let mut locked = 0;
        let err = Store::open_waiting(
            dir.path(),
            DEFAULT_CACHE_MIB,
            Duration::from_millis(100),
            || locked += 1,
        )
        .err()
        .ok_or("opened a database whose lock is held")?;
        let db = dir.path().join(DB_DIR);
        assert!(
            matches!(&err, StoreError::Locked { path, waited }
                if *path == db && *waited >= Duration::from_millis(100)),
            "{err}"
        );
        assert!(locked >= 2, "retried before giving up");
        let message = err.to_string();
        assert!(message.contains(&db.display().to_string()), "{message}");
        assert!(message.contains("locked"), "{message}");
        Ok(())
    }

    #[test]
    fn other_open_errors_fail_at_once() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join(DB_DIR), b"not a directory")?;
        let mut locked = 0;
        let err = Store::open_waiting(dir.path(), DEFAULT_CACHE_MIB, LOCK_WAIT, || locked += 1)
            .err()
            .ok_or("opened a database that is a file")?;
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert_eq!(locked, 0);
        Ok(())
    }

    #[test]
    fn one_manifest_is_read_by_version_or_latest_without_the_others()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let m = |v: u64| serde_json::json!({"document": {"version": v}});
        // Versions stored out of order, past 255 (the key is big-endian), and neighbours that
        // share a prefix of the dataset's name or belong to another publisher.
        for v in [3u64, 1, 300, 2] {
            store.put_manifest("P", "ds", v, &m(v))?;
        }
        store.put_manifest("P", "ds2", 999, &m(999))?;
        store.put_manifest("Q", "ds", 500, &m(500))?;
        store.put_manifest("P", "d", 700, &m(700))?;
        let version = |v: Option<u64>| -> Result<Option<u64>, StoreError> {
            Ok(store
                .manifest("P", "ds", v)?
                .and_then(|m| m["document"]["version"].as_u64()))
        };
        assert_eq!(version(None)?, Some(300));
        assert_eq!(version(Some(2))?, Some(2));
        assert_eq!(version(Some(4))?, None);
        assert_eq!(store.manifest("P", "none", None)?, None);
        Ok(())
    }

    #[test]
    fn grants_of_format_1_are_keyed_by_direction_at_open() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let grant = |id: &str, direction: &str, provider: &str| {
            serde_json::json!({
                "id": id, "direction": direction,
                "grant": {"document": {"id": id, "provider": provider}},
            })
        };
        {
            let store = Store::open(dir.path())?;
            store.set_format_version(1)?;
            let t = store.db().open_tree(RecordTree::Grants.name())?;
            for (id, direction, provider) in [("g1", "out", "P0"), ("g2", "in", "P1")] {
                t.insert(id, serde_json::to_vec(&grant(id, direction, provider))?)?;
            }
            store.flush_blocking()?;
        }
        let store = Store::open(dir.path())?;
        assert_eq!(store.format_version()?, FORMAT_VERSION);
        assert_eq!(FORMAT_VERSION, 2);
        let held = store.records::<serde_json::Value>(RecordTree::Grants)?;
        let keys: Vec<&str> = held.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["in/P1/g2", "out/g1"]);
        assert_eq!(held[1].1, grant("g1", "out", "P0"));
        // Opening again changes nothing.
        drop(store);
        let store = Store::open(dir.path())?;
        assert_eq!(
            store.records::<serde_json::Value>(RecordTree::Grants)?,
            held
        );
        Ok(())
    }

    #[test]
    fn peers_survive_reopen() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let peer = PeerId::random();
        let rec = StoredPeer {
            node_info: None,
            addresses: vec!["/ip4/127.0.0.1/tcp/7401".into()],
            last_seen: None,
        };
        {
            let store = Store::open(dir.path())?;
            store.put_peer(&peer, &rec)?;
            store.flush_blocking()?;
        }
        let store = Store::open(dir.path())?;
        assert_eq!(store.peer(&peer)?, Some(rec));
        assert_eq!(store.peer_addresses(&peer)?.len(), 1);
        Ok(())
    }
}

/// Flushes from many databases and tasks at once (a node's concurrent writers; a simulation's
/// nodes in one process) must all complete: sled 0.34's `flush_async` runs each flush on sled's
/// own small I/O pool, where flushes waiting for writes queued behind them lock it up for good
/// (sled issues 1241 and 1308; found when 25 simulated nodes started together).
#[cfg(test)]
mod flush_tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_flushes_at_once_all_complete() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut stores = Vec::new();
        for i in 0..24 {
            stores.push(Store::open(&dir.path().join(format!("db{i}")))?);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for round in 0..8u32 {
            for (i, store) in stores.iter().enumerate() {
                let store = store.clone();
                tasks.spawn(async move {
                    let key = format!("{i}/{round}");
                    store.put_record(RecordTree::Requests, &key, &vec![7u8; 4096])?;
                    store.flush().await
                });
            }
        }
        // A hang, not a slow flush, is what fails: far beyond any disk's flush time.
        let all = async {
            while let Some(done) = tasks.join_next().await {
                done??;
            }
            Ok::<(), Box<dyn std::error::Error>>(())
        };
        tokio::time::timeout(Duration::from_secs(120), all)
            .await
            .map_err(|_| "flushes still pending after 120 s: the store's flush locked up")??;
        Ok(())
    }
}
