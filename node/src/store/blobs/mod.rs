//! Dataset files: the content-addressed blob store on disk, and resumable partial downloads
//! whose every chunk is verified against a chunk table before a byte of it is written.
//!
//! # I/O model
//! Everything here is plain blocking `std` I/O (files, `fsync`, `rename`); async callers run it
//! under `tokio::task::spawn_blocking`. [`BlobStore`] is a cheap `Clone + Send + Sync` handle, a
//! [`Partial`] or [`BlobWriter`] is `Send` and can move into a blocking task. Memory stays bounded
//! whatever the blob's size: data is streamed through one 1 MiB buffer and at most one chunk
//! buffer; only the chunk table (about 90 bytes per chunk) and one bit per chunk stay resident.
//!
//! # Layout under the root (the node passes `DATA_DIR/blobs`)
//! ```text
//! objects/<d[0..2]>/<d>    complete blobs, d = 64 lowercase hex BLAKE3 of the content; made
//!                          read-only, then renamed in (a blob is never modified in place)
//! tmp/<nonce>-<n>.tmp      files being written by `import_*` / `BlobWriter`; at `open`, files
//!                          left by another process (another nonce) are removed
//! partial/<id>/data        a download in progress: a sparse file of the final size, each chunk
//!                          at offset `index * chunk_size`
//! partial/<id>/meta.json   {"format":1,"expected_digest":..,"table":ChunkTable}; written once,
//!                          atomically, just before the first journal record: it and the
//!                          directories are the partial's only syncs until then. A directory
//!                          without it is a partial no commit made durable, started afresh;
//!                          a download that finishes before its first commit never writes it
//!                          (nothing is synced for it but the finished file). The data file's
//!                          length and the empty journal are never synced on their own:
//!                          resuming recovers either's loss as a partial with no chunk present
//! partial/<id>/present.log the journal of chunks written, see below
//! ```
//! Blobs and state files are written under a temporary name (or, for a download, inside
//! `partial/`), `fsync`ed, renamed into place, and the directory `fsync`ed, so a crash never
//! leaves a half-written blob in `objects/` or a half-written state file under its final name.
//!
//! # Chunk tables
//! Every blob is described by a [`ChunkTable`] (its chunks' hashes; the manifest signs its
//! digest). The table, its encoding and its digest are wire data and live in
//! [`crate::model::chunks`]; this store computes tables while it writes and checks chunks
//! against them when it reads or receives them.
//!
//! # Partial downloads
//! [`BlobStore::begin_partial`] creates (or resumes, given the same expected digest and table)
//! `partial/<id>/`. [`Partial::write_chunk`] verifies the bytes against the table *before*
//! writing anything, writes them at the chunk's offset, `fdatasync`s the data, then appends a
//! record to `present.log` and `fdatasync`s it. [`Partial::write_chunk_deferred`] does the same
//! without syncing, and [`Partial::commit`] then syncs the data once and appends the records of
//! every chunk written since (the fetcher commits every 16 MiB), so a crash loses at most the
//! uncommitted chunks and never marks one present whose data is not durable. A finished
//! download is synced once more, whole, before it is renamed into `objects/`, so the fetcher
//! does not journal the chunks that complete a file ([`Partial::sync_data`]); removing the partial's directory after
//! that rename is not synced (a directory a crash brings back is resumed, finding the blob
//! stored, or collected at the next start). The journal replaces a rewritten state file: an
//! append costs O(1) bytes and one sync per chunk instead of rewriting the whole state (which
//! grows with the chunk count) plus a rename and a directory sync.
//!
//! A journal record is 8 bytes: the chunk index as u32 big-endian, then the first 4 bytes of that
//! chunk's raw hash from the table. On load, a record is accepted only if the index is in range
//! and the 4 bytes match; a torn or garbage record (a crash mid-append) is ignored and a trailing
//! fragment dropped, after which the journal is rewritten atomically (temp, sync, rename, sync
//! dir). Because the data is synced before its record is appended, a crash can lose a written
//! chunk (it is fetched again) but never marks an unwritten chunk present. Dropping chunks
//! ([`Partial::recheck`], or [`Partial::finish`] finding a bad one) also rewrites the journal
//! atomically. Recorded chunks are still not blindly trusted: `recheck` re-verifies them on demand
//! (run it after an unclean shutdown, or before resuming an old download), and `finish` always
//! re-verifies every chunk and the whole-file digest in one streaming pass before the file is
//! renamed into `objects/`. Resuming re-verifies automatically only when the data file's size
//! is wrong. Serving is verified too: [`ChunkReader`] checks every chunk it reads from a stored
//! blob against the table, so bit rot is reported instead of sent.
//!
//! # Concurrency
//! One process owns a root (the node's data dir is already locked by sled). Within it, any number
//! of imports and reads run in parallel; a partial id can be open by only one [`Partial`] at a
//! time (a second `begin_partial` fails with [`BlobError::PartialBusy`] until it is dropped).
//!
//! # Files
//! This file holds [`BlobStore`] (opening, reading and verifying stored blobs, committing new
//! ones into `objects/`), [`ChunkReader`] and [`BlobError`]; `writer.rs` writing new blobs
//! ([`BlobWriter`], the chunker); `partial.rs` partial downloads ([`Partial`], their state
//! files and the set of partial ids open in this process); `journal.rs` the `present.log`
//! journal; `fs.rs` the durable-write and streaming-read helpers.

mod fs;
mod journal;
mod partial;
#[cfg(test)]
mod test_support;
mod writer;

pub use partial::{MAX_PARTIAL_ID_LEN, Partial, validate_partial_id};
pub use writer::BlobWriter;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use self::fs::{io_err, read_at, stream_file, sync_dir};
use self::writer::Chunker;
use crate::model::chunks::{ChunkError, ChunkTable, check_chunk_size, is_valid_digest};

const OBJECTS_DIR: &str = "objects";
const TMP_DIR: &str = "tmp";
const PARTIAL_DIR: &str = "partial";

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A file system operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done, e.g. `"open"`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Reading the caller's input stream failed.
    #[error("cannot read the input stream: {source}")]
    Input {
        /// The reader's error.
        source: io::Error,
    },
    /// Not a 64-digit lowercase hex BLAKE3 digest.
    #[error("invalid blob digest {digest:?}: expected 64 lowercase hex digits (BLAKE3)")]
    InvalidDigest {
        /// The string given.
        digest: String,
    },
    /// Not a valid partial download id.
    #[error(
        "invalid partial download id {id:?}: expected 1 to 128 characters of [a-z0-9._-], \
         not starting with '.'"
    )]
    InvalidId {
        /// The id given.
        id: String,
    },
    /// A chunk table refused, or a chunk beyond it (see [`ChunkError`]).
    #[error(transparent)]
    Chunk(ChunkError),
    /// No such blob.
    #[error("blob {digest} is not in the store")]
    NotFound {
        /// The digest asked for.
        digest: String,
    },
    /// A stored blob whose content no longer hashes to its name.
    #[error("blob {digest} is corrupt on disk: its content hashes to {actual}")]
    Corrupt {
        /// The blob's name.
        digest: String,
        /// The hash of what is on disk.
        actual: String,
    },
    /// A stored blob whose size differs from the chunk table's.
    #[error("blob {digest} is {actual} bytes, but the chunk table says {expected}")]
    SizeMismatch {
        /// The blob.
        digest: String,
        /// Size in the table.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// A stored chunk that does not match the chunk table.
    #[error(
        "chunk {index} of blob {digest} does not match the chunk table (the blob is corrupt on \
         disk, or the table belongs to another blob)"
    )]
    ChunkMismatch {
        /// The blob.
        digest: String,
        /// The chunk.
        index: u32,
    },
    /// Received chunk bytes that do not match the table; nothing was written.
    #[error("chunk {index} refused: {reason}")]
    BadChunk {
        /// The chunk.
        index: u32,
        /// Wrong length or wrong hash.
        reason: String,
    },
    /// A partial download with this id exists for another digest or chunk table.
    #[error(
        "partial download {id} already exists for a different digest or chunk table; abort it \
         first"
    )]
    PartialMismatch {
        /// The partial's id.
        id: String,
    },
    /// The partial download is open elsewhere in this process.
    #[error("partial download {id} is already open")]
    PartialBusy {
        /// The partial's id.
        id: String,
    },
    /// The partial download's state on disk is unreadable.
    #[error("partial download {id}: unreadable state {path}: {reason}")]
    PartialState {
        /// The partial's id.
        id: String,
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `finish` called before every chunk was written.
    #[error("partial download {id} is missing {missing} of {count} chunks")]
    Incomplete {
        /// The partial's id.
        id: String,
        /// Chunks not yet written.
        missing: u32,
        /// Chunks in the table.
        count: u32,
    },
    /// `finish` found chunks corrupt on disk; they were dropped and must be fetched again.
    #[error(
        "partial download {id}: {} chunk(s) failed re-verification on disk and were dropped \
         (first: {}); fetch them again",
        dropped.len(),
        dropped.first().copied().unwrap_or_default()
    )]
    ChunksDropped {
        /// The partial's id.
        id: String,
        /// The dropped chunk indexes.
        dropped: Vec<u32>,
    },
    /// Every chunk matches the table but the whole file does not hash to the expected digest:
    /// the table does not describe that blob. The partial is useless; abort it.
    #[error(
        "partial download {id}: the assembled file hashes to {actual}, expected {expected}; \
         every chunk matches the chunk table, so the table does not describe the expected blob"
    )]
    DigestMismatch {
        /// The partial's id.
        id: String,
        /// The digest the download was started for.
        expected: String,
        /// The digest of what was assembled.
        actual: String,
    },
}

/// A received chunk that does not match its table keeps a variant of its own: it is the one
/// chunk error callers handle (the fetcher asks for the chunk again) rather than report.
impl From<ChunkError> for BlobError {
    fn from(e: ChunkError) -> Self {
        match e {
            ChunkError::BadChunk { index, reason } => BlobError::BadChunk { index, reason },
            other => BlobError::Chunk(other),
        }
    }
}

fn check_digest(digest: &str) -> Result<(), BlobError> {
    if is_valid_digest(digest) {
        Ok(())
    } else {
        Err(BlobError::InvalidDigest {
            digest: digest.to_owned(),
        })
    }
}

/// A blob in the store: its digest, size and chunk table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BlobInfo {
    /// Lowercase hex BLAKE3 of the content.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// The chunk table.
    pub chunk_table: ChunkTable,
}

/// A name prefix unique to this process, so `open` can tell its own temp files from stale ones.
fn process_nonce() -> &'static str {
    static NONCE: OnceLock<String> = OnceLock::new();
    NONCE.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{:x}-{:x}", std::process::id(), nanos)
    })
}

/// What [`BlobStore::collect`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    /// Partial downloads.
    pub partials: usize,
    /// Blobs.
    pub blobs: usize,
}

/// The content-addressed blob store rooted at one directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (creating if needed) the store at `root`, removing temp files left by a previous
    /// process.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, BlobError> {
        let root = root.as_ref();
        for dir in [OBJECTS_DIR, TMP_DIR, PARTIAL_DIR] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(io_err("create directory", &path))?;
        }
        let root = std::fs::canonicalize(root).map_err(io_err("resolve", root))?;
        let store = Self { root };
        store.clean_tmp()?;
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn clean_tmp(&self) -> Result<(), BlobError> {
        let tmp = self.root.join(TMP_DIR);
        let ours = format!("{}-", process_nonce());
        for entry in std::fs::read_dir(&tmp).map_err(io_err("list", &tmp))? {
            let entry = entry.map_err(io_err("list", &tmp))?;
            if entry.file_name().to_string_lossy().starts_with(&ours) {
                continue;
            }
            let path = entry.path();
            let is_dir = entry.file_type().map_err(io_err("stat", &path))?.is_dir();
            if is_dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            }
            .map_err(io_err("remove stale temp file", &path))?;
        }
        Ok(())
    }

    fn object_path(&self, digest: &str) -> PathBuf {
        self.root.join(OBJECTS_DIR).join(&digest[..2]).join(digest)
    }

    /// Path of the complete blob `digest`, if stored (`None` for a malformed digest too).
    pub fn path(&self, digest: &str) -> Option<PathBuf> {
        if !is_valid_digest(digest) {
            return None;
        }
        let path = self.object_path(digest);
        path.is_file().then_some(path)
    }

    /// Whether the blob `digest` is stored.
    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_some()
    }

    /// Opens the blob `digest` for reading.
    pub fn open_read(&self, digest: &str) -> Result<File, BlobError> {
        check_digest(digest)?;
        let path = self.object_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                BlobError::NotFound {
                    digest: digest.to_owned(),
                }
            } else {
                io_err("open", &path)(e)
            }
        })
    }

    /// Opens the blob `digest` for reading chunk by chunk per `table` (checked against the size).
    pub fn open_chunks<'t>(
        &self,
        digest: &str,
        table: &'t ChunkTable,
    ) -> Result<ChunkReader<'t>, BlobError> {
        table.validate()?;
        let file = self.open_read(digest)?;
        let path = self.object_path(digest);
        let actual = file.metadata().map_err(io_err("stat", &path))?.len();
        if actual != table.size {
            return Err(BlobError::SizeMismatch {
                digest: digest.to_owned(),
                expected: table.size,
                actual,
            });
        }
        Ok(ChunkReader {
            file,
            path,
            digest: digest.to_owned(),
            table,
        })
    }

    /// Reads and verifies chunk `index` of blob `digest` (at most one chunk in memory).
    pub fn read_chunk(
        &self,
        digest: &str,
        table: &ChunkTable,
        index: u32,
    ) -> Result<Vec<u8>, BlobError> {
        self.open_chunks(digest, table)?.read_chunk(index)
    }

    /// Recomputes blob `digest`'s chunk table by streaming it (and checks its digest meanwhile).
    pub fn chunk_table(&self, digest: &str, chunk_size: u32) -> Result<ChunkTable, BlobError> {
        check_chunk_size(chunk_size)?;
        let mut file = self.open_read(digest)?;
        let mut chunker = Chunker::new(chunk_size);
        stream_file(&mut file, &self.object_path(digest), |b| chunker.update(b))?;
        let info = chunker.finish()?;
        if info.digest != digest {
            return Err(BlobError::Corrupt {
                digest: digest.to_owned(),
                actual: info.digest,
            });
        }
        Ok(info.chunk_table)
    }

    /// Re-hashes blob `digest` by streaming it; fails with [`BlobError::Corrupt`] on a mismatch.
    pub fn verify(&self, digest: &str) -> Result<(), BlobError> {
        let mut file = self.open_read(digest)?;
        let mut hasher = blake3::Hasher::new();
        stream_file(&mut file, &self.object_path(digest), |b| {
            hasher.update(b);
        })?;
        let actual = hasher.finalize().to_hex().to_string();
        if actual == digest {
            Ok(())
        } else {
            Err(BlobError::Corrupt {
                digest: digest.to_owned(),
                actual,
            })
        }
    }

    /// Removes blob `digest`; `false` if it was not stored.
    pub fn remove(&self, digest: &str) -> Result<bool, BlobError> {
        check_digest(digest)?;
        let path = self.object_path(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("remove", &path)(e)),
        }
        let dir = self.root.join(OBJECTS_DIR).join(&digest[..2]);
        sync_dir(&dir)?;
        Ok(true)
    }

    /// Digests of every blob stored, sorted.
    pub fn digests(&self) -> Result<Vec<String>, BlobError> {
        let objects = self.root.join(OBJECTS_DIR);
        let mut out = Vec::new();
        for shard in std::fs::read_dir(&objects).map_err(io_err("list", &objects))? {
            let shard = shard.map_err(io_err("list", &objects))?.path();
            if !shard.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&shard).map_err(io_err("list", &shard))? {
                let entry = entry.map_err(io_err("list", &shard))?;
                if let Some(name) = entry.file_name().to_str() {
                    if is_valid_digest(name) {
                        out.push(name.to_owned());
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Garbage collection, run at start before any transfer: removes every partial download
    /// `keep_partial` does not keep (no fetch will resume it) and every blob `keep_blob` does not
    /// keep (no record names it: a masked copy or a publication whose record a crash lost).
    pub fn collect(
        &self,
        keep_partial: impl Fn(&str) -> bool,
        keep_blob: impl Fn(&str) -> bool,
    ) -> Result<Collected, BlobError> {
        let mut collected = Collected::default();
        for id in self.partials()? {
            if !keep_partial(&id) && self.abort_partial(&id)? {
                collected.partials += 1;
            }
        }
        for digest in self.digests()? {
            if !keep_blob(&digest) && self.remove(&digest)? {
                collected.blobs += 1;
            }
        }
        Ok(collected)
    }

    /// Makes the synced file at `from` the blob `digest`: read-only, renamed into `objects/`,
    /// directories synced. An existing identical blob is replaced (same content).
    fn commit(&self, from: &Path, digest: &str) -> Result<(), BlobError> {
        let mut perms = std::fs::metadata(from)
            .map_err(io_err("stat", from))?
            .permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(from, perms).map_err(io_err("make read-only", from))?;
        let objects = self.root.join(OBJECTS_DIR);
        let dir = objects.join(&digest[..2]);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
            sync_dir(&objects)?;
        }
        let to = dir.join(digest);
        std::fs::rename(from, &to).map_err(io_err("rename into place", &to))?;
        sync_dir(&dir)
    }
}

/// Reads verified chunks of one stored blob, keeping the file open between reads.
#[derive(Debug)]
pub struct ChunkReader<'t> {
    file: File,
    path: PathBuf,
    digest: String,
    table: &'t ChunkTable,
}

impl ChunkReader<'_> {
    /// Reads and verifies chunk `index`.
    pub fn read_chunk(&mut self, index: u32) -> Result<Vec<u8>, BlobError> {
        let mut buf = Vec::new();
        self.read_chunk_into(index, &mut buf)?;
        Ok(buf)
    }

    /// Reads and verifies chunk `index` into `buf` (replacing its contents, reusing its memory).
    pub fn read_chunk_into(&mut self, index: u32, buf: &mut Vec<u8>) -> Result<(), BlobError> {
        let (Some(len), Some(offset)) =
            (self.table.chunk_len(index), self.table.chunk_offset(index))
        else {
            return Err(ChunkError::ChunkIndex {
                index,
                count: self.table.chunk_count(),
            }
            .into());
        };
        buf.clear();
        buf.resize(len as usize, 0);
        read_at(&self.file, offset, buf).map_err(io_err("read", &self.path))?;
        match self.table.verify_chunk(index, buf) {
            Ok(()) => Ok(()),
            Err(_) => Err(BlobError::ChunkMismatch {
                digest: self.digest.clone(),
                index,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;

    use super::test_support::{CS, TestResult, hex_of, random_bytes, source};
    use super::*;
    use crate::model::chunks::DEFAULT_CHUNK_SIZE;

    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<BlobStore>();
        send_sync::<BlobError>();
        send::<Partial>();
        send::<BlobWriter>();
    }

    #[test]
    fn import_and_read_back_by_chunks() -> TestResult {
        let dir = tempfile::tempdir()?;
        let data = random_bytes(CS as usize * 7 / 2, 1);
        let file = dir.path().join("input.bin");
        fs::write(&file, &data)?;
        let store = BlobStore::open(dir.path().join("blobs"))?;
        let info = store.import_file(&file, CS)?;
        assert_eq!(info.digest, hex_of(&data));
        assert_eq!(info.size, data.len() as u64);
        assert_eq!(info.chunk_table.chunk_count(), 4);
        assert!(store.contains(&info.digest));
        let path = store.path(&info.digest).ok_or("no path")?;
        assert!(path.ends_with(format!("objects/{}/{}", &info.digest[..2], info.digest)));
        assert!(fs::metadata(&path)?.permissions().readonly());

        let mut back = Vec::new();
        for i in 0..info.chunk_table.chunk_count() {
            back.extend(store.read_chunk(&info.digest, &info.chunk_table, i)?);
        }
        assert_eq!(back, data);
        let mut reader = store.open_chunks(&info.digest, &info.chunk_table)?;
        assert!(matches!(
            reader.read_chunk(4),
            Err(BlobError::Chunk(ChunkError::ChunkIndex {
                index: 4,
                count: 4
            }))
        ));
        store.verify(&info.digest)?;
        assert_eq!(store.chunk_table(&info.digest, CS)?, info.chunk_table);
        let other = store.chunk_table(&info.digest, DEFAULT_CHUNK_SIZE)?;
        assert_eq!(other.chunk_count(), 1);
        assert_eq!(other.chunks[0], info.digest);
        assert!(matches!(
            store.open_read(&"0".repeat(64)),
            Err(BlobError::NotFound { .. })
        ));
        assert!(matches!(
            store.open_read("../x"),
            Err(BlobError::InvalidDigest { .. })
        ));
        assert!(store.path("../../etc/passwd").is_none());
        assert!(fs::read_dir(store.root().join(TMP_DIR))?.next().is_none());
        Ok(())
    }

    #[test]
    fn corrupt_blob_is_detected() -> TestResult {
        let data = random_bytes(CS as usize * 2, 2);
        let (_dir, store, info) = source(&data)?;
        let path = store.path(&info.digest).ok_or("no path")?;
        let mut perms = fs::metadata(&path)?.permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(&path, perms)?;
        let mut bad = data.clone();
        bad[CS as usize + 5] ^= 1;
        fs::write(&path, &bad)?;
        assert!(matches!(
            store.verify(&info.digest),
            Err(BlobError::Corrupt { .. })
        ));
        assert!(matches!(
            store.read_chunk(&info.digest, &info.chunk_table, 1),
            Err(BlobError::ChunkMismatch { index: 1, .. })
        ));
        assert_eq!(
            store.read_chunk(&info.digest, &info.chunk_table, 0)?,
            data[..CS as usize]
        );
        assert!(matches!(
            store.chunk_table(&info.digest, CS),
            Err(BlobError::Corrupt { .. })
        ));
        Ok(())
    }

    #[test]
    fn identical_content_is_deduplicated() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = BlobStore::open(dir.path())?;
        let data = random_bytes(100_000, 4);
        let a = store.import_reader(&data[..], CS)?;
        let b = store.import_reader(&data[..], CS)?;
        assert_eq!(a, b);
        let shard = dir.path().join(OBJECTS_DIR).join(&a.digest[..2]);
        assert_eq!(fs::read_dir(&shard)?.count(), 1);
        assert_eq!(fs::read_dir(dir.path().join(OBJECTS_DIR))?.count(), 1);
        assert!(fs::read_dir(dir.path().join(TMP_DIR))?.next().is_none());
        store.verify(&a.digest)?;
        assert!(store.remove(&a.digest)?);
        assert!(!store.contains(&a.digest));
        assert!(!store.remove(&a.digest)?);
        Ok(())
    }

    #[test]
    fn stale_tmp_files_removed_at_open() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = BlobStore::open(dir.path())?;
        let tmp = dir.path().join(TMP_DIR);
        fs::write(tmp.join("1234-abcd-0.tmp"), b"left by a crash")?;
        fs::create_dir(tmp.join("junk-dir"))?;
        // A writer of this process survives another open() in the same process.
        let mut live = store.writer(CS)?;
        live.write_all(b"in progress")?;
        let _reopened = BlobStore::open(dir.path())?;
        let names: Vec<_> = fs::read_dir(&tmp)?.collect::<Result<_, _>>()?;
        assert_eq!(names.len(), 1);
        let info = live.finish()?;
        assert_eq!(info.digest, hex_of(b"in progress"));
        assert!(fs::read_dir(&tmp)?.next().is_none());
        // An unfinished writer cleans up after itself.
        let mut dropped = store.writer(CS)?;
        dropped.write_all(b"abandoned")?;
        drop(dropped);
        assert!(fs::read_dir(&tmp)?.next().is_none());
        Ok(())
    }
}
