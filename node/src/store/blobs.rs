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
//!                          atomically, as the last step of creating the partial
//! partial/<id>/present.log the journal of chunks written, see below
//! ```
//! Blobs and state files are written under a temporary name (or, for a download, inside
//! `partial/`), `fsync`ed, renamed into place, and the directory `fsync`ed, so a crash never
//! leaves a half-written blob in `objects/` or a half-written state file under its final name.
//!
//! # Chunk table and its digest
//! A [`ChunkTable`] splits a blob of `size` bytes into `ceil(size / chunk_size)` chunks (the last
//! may be short; a 0-byte blob has none) and lists the plain (unkeyed) BLAKE3 hash of each chunk's
//! bytes as lowercase hex; in JSON: `{"chunk_size":1048576,"size":..,"chunks":["<64 hex>",..]}`.
//! `chunk_size` is between [`MIN_CHUNK_SIZE`] (64 KiB) and [`MAX_CHUNK_SIZE`] (16 MiB).
//! [`ChunkTable::digest`] is the lowercase hex BLAKE3 (plain hash, 32 bytes) of:
//! ```text
//! "yrd/v1/chunk-table"      18 ASCII bytes (CHUNK_TABLE_DOMAIN), no terminator
//! chunk_size                u32 big-endian (4 bytes)
//! size                      u64 big-endian (8 bytes)
//! hash of chunk 0, 1, ...   32 raw bytes each (hex-decoded), in index order
//! ```
//! The domain tag follows the signing convention `yrd/v1/<type>` so the encoding can never be
//! mistaken for another hashed object. The chunk count is implied by `size` and `chunk_size`.
//! `digest` returns an error for a table that fails [`ChunkTable::validate`] (chunk size out of
//! range, wrong chunk count, a hash not 64 lowercase hex digits), so a malformed table received
//! from a peer can never be mistaken for the one a manifest signed.
//!
//! # Partial downloads
//! [`BlobStore::begin_partial`] creates (or resumes, given the same expected digest and table)
//! `partial/<id>/`. [`Partial::write_chunk`] verifies the bytes against the table *before*
//! writing anything, writes them at the chunk's offset, `fdatasync`s the data, then appends a
//! record to `present.log` and `fdatasync`s it. [`Partial::write_chunk_deferred`] does the same
//! without syncing, and [`Partial::commit`] then syncs the data once and appends the records of
//! every chunk written since (the fetcher commits every 16 MiB), so a crash loses at most the
//! uncommitted chunks and never marks one present whose data is not durable. The journal replaces a rewritten state file: an
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

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default chunk size of a chunk table: 1 MiB.
pub const DEFAULT_CHUNK_SIZE: u32 = 1 << 20;
/// Smallest accepted chunk size: 64 KiB.
pub const MIN_CHUNK_SIZE: u32 = 64 << 10;
/// Largest accepted chunk size: 16 MiB.
pub const MAX_CHUNK_SIZE: u32 = 16 << 20;
/// Domain tag that starts the encoding hashed by [`ChunkTable::digest`].
pub const CHUNK_TABLE_DOMAIN: &[u8] = b"yrd/v1/chunk-table";
/// Longest accepted partial download id.
pub const MAX_PARTIAL_ID_LEN: usize = 128;

const OBJECTS_DIR: &str = "objects";
const TMP_DIR: &str = "tmp";
const PARTIAL_DIR: &str = "partial";
const DATA_FILE: &str = "data";
const META_FILE: &str = "meta.json";
const JOURNAL_FILE: &str = "present.log";
/// Version of `partial/<id>/meta.json` (and the journal format) this code reads and writes.
const PARTIAL_FORMAT: u32 = 1;
const JOURNAL_RECORD: usize = 8;
/// Size of the streaming buffer.
const IO_BUF: usize = 1 << 20;

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
    /// A chunk size outside the accepted range.
    #[error("chunk size {chunk_size} is out of range: must be {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}")]
    InvalidChunkSize {
        /// The chunk size given.
        chunk_size: u32,
    },
    /// A chunk table that is inconsistent with itself.
    #[error("invalid chunk table: {reason}")]
    InvalidTable {
        /// What is wrong with it.
        reason: String,
    },
    /// A blob too large to index its chunks with a u32.
    #[error("blob of {size} bytes has too many chunks of {chunk_size} bytes (more than 2^32)")]
    TooManyChunks {
        /// The blob's size.
        size: u64,
        /// The chunk size.
        chunk_size: u32,
    },
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
    /// A chunk index beyond the table.
    #[error("chunk index {index} is out of range: the table has {count} chunks")]
    ChunkIndex {
        /// The index given.
        index: u32,
        /// Chunks in the table.
        count: u32,
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

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BlobError + 'a {
    move |source| BlobError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `s` is a blob digest: 64 lowercase hex digits.
pub fn is_valid_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
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

/// Checks a partial download id: 1 to 128 of `[a-z0-9._-]`, not starting with `.` (so neither
/// `.` nor `..` nor a hidden name).
pub fn validate_partial_id(id: &str) -> Result<(), BlobError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_PARTIAL_ID_LEN
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BlobError::InvalidId { id: id.to_owned() })
    }
}

fn check_chunk_size(chunk_size: u32) -> Result<(), BlobError> {
    if (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        Ok(())
    } else {
        Err(BlobError::InvalidChunkSize { chunk_size })
    }
}

/// The chunks of a blob of `size` bytes.
fn chunks_for(size: u64, chunk_size: u32) -> u64 {
    size.div_ceil(u64::from(chunk_size))
}

/// How a blob splits into chunks, with each chunk's hash; signed (by digest) in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChunkTable {
    /// Bytes per chunk (the last chunk may be shorter).
    pub chunk_size: u32,
    /// The blob's size in bytes.
    pub size: u64,
    /// Lowercase hex BLAKE3 of each chunk, in order.
    pub chunks: Vec<String>,
}

impl ChunkTable {
    /// Checks the chunk size range, that the chunk count matches `size`, and every hash's form.
    pub fn validate(&self) -> Result<(), BlobError> {
        check_chunk_size(self.chunk_size)?;
        let expected = chunks_for(self.size, self.chunk_size);
        if expected > u64::from(u32::MAX) {
            return Err(BlobError::TooManyChunks {
                size: self.size,
                chunk_size: self.chunk_size,
            });
        }
        if self.chunks.len() as u64 != expected {
            return Err(BlobError::InvalidTable {
                reason: format!(
                    "{} bytes in chunks of {} need {expected} chunk hashes, the table has {}",
                    self.size,
                    self.chunk_size,
                    self.chunks.len()
                ),
            });
        }
        if let Some(i) = self.chunks.iter().position(|c| !is_valid_digest(c)) {
            return Err(BlobError::InvalidTable {
                reason: format!("chunk {i}'s hash is not 64 lowercase hex digits"),
            });
        }
        Ok(())
    }

    /// Lowercase hex BLAKE3 of the canonical encoding (see the module docs); fails on a table
    /// that does not [`validate`](Self::validate).
    pub fn digest(&self) -> Result<String, BlobError> {
        self.validate()?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(CHUNK_TABLE_DOMAIN);
        hasher.update(&self.chunk_size.to_be_bytes());
        hasher.update(&self.size.to_be_bytes());
        let mut raw = [0u8; 32];
        for chunk in &self.chunks {
            hex::decode_to_slice(chunk, &mut raw).map_err(|e| BlobError::InvalidTable {
                reason: format!("chunk hash {chunk:?}: {e}"),
            })?;
            hasher.update(&raw);
        }
        Ok(hasher.finalize().to_hex().to_string())
    }

    /// Number of chunks (0 for a 0-byte blob).
    pub fn chunk_count(&self) -> u32 {
        u32::try_from(self.chunks.len()).unwrap_or(u32::MAX)
    }

    /// Byte offset of chunk `index`, if it exists.
    pub fn chunk_offset(&self, index: u32) -> Option<u64> {
        self.chunk_len(index)
            .map(|_| u64::from(index) * u64::from(self.chunk_size))
    }

    /// Length of chunk `index` (the last one may be short), or `None` past the end.
    pub fn chunk_len(&self, index: u32) -> Option<u32> {
        if index >= self.chunk_count() {
            return None;
        }
        let start = u64::from(index).checked_mul(u64::from(self.chunk_size))?;
        let left = self.size.checked_sub(start).filter(|&n| n > 0)?;
        Some(u32::try_from(left.min(u64::from(self.chunk_size))).unwrap_or(self.chunk_size))
    }

    /// Checks `bytes` are chunk `index`: its length and its hash.
    pub fn verify_chunk(&self, index: u32, bytes: &[u8]) -> Result<(), BlobError> {
        let Some(len) = self.chunk_len(index) else {
            return Err(BlobError::ChunkIndex {
                index,
                count: self.chunk_count(),
            });
        };
        if bytes.len() as u64 != u64::from(len) {
            return Err(BlobError::BadChunk {
                index,
                reason: format!("it is {} bytes, the table says {len}", bytes.len()),
            });
        }
        let actual = blake3::hash(bytes);
        match self.chunks.get(index as usize) {
            Some(expected) if actual.to_hex().as_str() == expected => Ok(()),
            _ => Err(BlobError::BadChunk {
                index,
                reason: format!("its hash {} differs from the table's", actual.to_hex()),
            }),
        }
    }

    /// The first 4 raw bytes of chunk `index`'s hash (the journal's record check).
    fn hash_prefix(&self, index: u32) -> Option<[u8; 4]> {
        let hex = self.chunks.get(index as usize)?.get(..8)?;
        let mut out = [0u8; 4];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(out)
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

/// Hashes a stream into the whole-content digest and the chunk table at once.
#[derive(Debug)]
struct Chunker {
    chunk_size: u32,
    whole: blake3::Hasher,
    chunk: blake3::Hasher,
    in_chunk: usize,
    size: u64,
    chunks: Vec<String>,
}

impl Chunker {
    fn new(chunk_size: u32) -> Self {
        Self {
            chunk_size,
            whole: blake3::Hasher::new(),
            chunk: blake3::Hasher::new(),
            in_chunk: 0,
            size: 0,
            chunks: Vec::new(),
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        let chunk_size = self.chunk_size as usize;
        while !data.is_empty() {
            let take = (chunk_size - self.in_chunk).min(data.len());
            let (head, rest) = data.split_at(take);
            self.whole.update(head);
            self.chunk.update(head);
            self.in_chunk += take;
            self.size += take as u64;
            if self.in_chunk == chunk_size {
                self.chunks.push(self.chunk.finalize().to_hex().to_string());
                self.chunk.reset();
                self.in_chunk = 0;
            }
            data = rest;
        }
    }

    fn finish(mut self) -> Result<BlobInfo, BlobError> {
        if self.in_chunk > 0 {
            self.chunks.push(self.chunk.finalize().to_hex().to_string());
        }
        if u32::try_from(self.chunks.len()).is_err() {
            return Err(BlobError::TooManyChunks {
                size: self.size,
                chunk_size: self.chunk_size,
            });
        }
        Ok(BlobInfo {
            digest: self.whole.finalize().to_hex().to_string(),
            size: self.size,
            chunk_table: ChunkTable {
                chunk_size: self.chunk_size,
                size: self.size,
                chunks: self.chunks,
            },
        })
    }
}

/// Feeds all of `file` to `sink` through one bounded buffer.
fn stream_file(file: &mut File, path: &Path, mut sink: impl FnMut(&[u8])) -> Result<(), BlobError> {
    let mut buf = vec![0u8; IO_BUF];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => sink(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("read", path)(e)),
        }
    }
}

/// Reads `buf.len()` bytes at `offset`.
fn read_at(mut file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// `fsync`s a directory so renames and new entries in it are durable (a no-op off Unix).
fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync directory", dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `path` atomically through `write`: `<path>.tmp`, sync, rename, sync the directory.
fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), BlobError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    let mut out = BufWriter::new(file);
    write(&mut out).map_err(io_err("write", &tmp))?;
    let file = out
        .into_inner()
        .map_err(|e| io_err("write", &tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err("sync", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
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

/// Partial directories open in this process (by canonical path).
fn open_partials() -> &'static Mutex<HashSet<PathBuf>> {
    static OPEN: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    OPEN.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Holds a partial id open; released on drop.
#[derive(Debug)]
struct Claim {
    dir: PathBuf,
}

impl Claim {
    fn take(dir: &Path, id: &str) -> Result<Self, BlobError> {
        let mut open = open_partials()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if open.insert(dir.to_path_buf()) {
            Ok(Self {
                dir: dir.to_path_buf(),
            })
        } else {
            Err(BlobError::PartialBusy { id: id.to_owned() })
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        open_partials()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.dir);
    }
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
            fs::create_dir_all(&path).map_err(io_err("create directory", &path))?;
        }
        let root = fs::canonicalize(root).map_err(io_err("resolve", root))?;
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
        for entry in fs::read_dir(&tmp).map_err(io_err("list", &tmp))? {
            let entry = entry.map_err(io_err("list", &tmp))?;
            if entry.file_name().to_string_lossy().starts_with(&ours) {
                continue;
            }
            let path = entry.path();
            let is_dir = entry.file_type().map_err(io_err("stat", &path))?.is_dir();
            if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
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
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("remove", &path)(e)),
        }
        let dir = self.root.join(OBJECTS_DIR).join(&digest[..2]);
        sync_dir(&dir)?;
        Ok(true)
    }

    /// Starts writing a new blob into `tmp/`; finish it with [`BlobWriter::finish`].
    pub fn writer(&self, chunk_size: u32) -> Result<BlobWriter, BlobError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        check_chunk_size(chunk_size)?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join(TMP_DIR)
            .join(format!("{}-{n}.tmp", process_nonce()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        Ok(BlobWriter {
            store: self.clone(),
            out: Some(BufWriter::with_capacity(256 << 10, file)),
            path,
            chunker: Chunker::new(chunk_size),
            committed: false,
        })
    }

    /// Copies the file at `path` into the store (streaming), returning its digest and table.
    pub fn import_file(
        &self,
        path: impl AsRef<Path>,
        chunk_size: u32,
    ) -> Result<BlobInfo, BlobError> {
        let path = path.as_ref();
        check_chunk_size(chunk_size)?;
        let file = File::open(path).map_err(io_err("open", path))?;
        self.import(file, chunk_size, |e| io_err("read", path)(e))
    }

    /// Copies everything `reader` yields into the store (streaming).
    pub fn import_reader(&self, reader: impl Read, chunk_size: u32) -> Result<BlobInfo, BlobError> {
        self.import(reader, chunk_size, |source| BlobError::Input { source })
    }

    fn import(
        &self,
        mut reader: impl Read,
        chunk_size: u32,
        read_err: impl Fn(io::Error) -> BlobError,
    ) -> Result<BlobInfo, BlobError> {
        let mut writer = self.writer(chunk_size)?;
        let mut buf = vec![0u8; IO_BUF];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => writer.write_bytes(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_err(e)),
            }
        }
        writer.finish()
    }

    /// Makes the synced file at `from` the blob `digest`: read-only, renamed into `objects/`,
    /// directories synced. An existing identical blob is replaced (same content).
    fn commit(&self, from: &Path, digest: &str) -> Result<(), BlobError> {
        let mut perms = fs::metadata(from)
            .map_err(io_err("stat", from))?
            .permissions();
        perms.set_readonly(true);
        fs::set_permissions(from, perms).map_err(io_err("make read-only", from))?;
        let objects = self.root.join(OBJECTS_DIR);
        let dir = objects.join(&digest[..2]);
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
            sync_dir(&objects)?;
        }
        let to = dir.join(digest);
        fs::rename(from, &to).map_err(io_err("rename into place", &to))?;
        sync_dir(&dir)
    }

    fn partial_dir(&self, id: &str) -> PathBuf {
        self.root.join(PARTIAL_DIR).join(id)
    }

    /// Ids of the partial downloads on disk, sorted.
    pub fn partials(&self) -> Result<Vec<String>, BlobError> {
        let dir = self.root.join(PARTIAL_DIR);
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let name = entry.file_name();
            match name.to_str() {
                Some(name) if validate_partial_id(name).is_ok() => ids.push(name.to_owned()),
                _ => {}
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Deletes the partial download `id`; `false` if there was none. Refused while it is open.
    pub fn abort_partial(&self, id: &str) -> Result<bool, BlobError> {
        validate_partial_id(id)?;
        let dir = self.partial_dir(id);
        let _claim = Claim::take(&dir, id)?;
        remove_partial_dir(&dir)
    }

    /// Starts the partial download `id` of blob `expected_digest` described by `table`, or
    /// resumes it if it exists with the same digest and table ([`BlobError::PartialMismatch`]
    /// otherwise). Check [`contains`](Self::contains) first: a blob already stored needs none.
    pub fn begin_partial(
        &self,
        id: &str,
        expected_digest: &str,
        table: &ChunkTable,
    ) -> Result<Partial, BlobError> {
        validate_partial_id(id)?;
        check_digest(expected_digest)?;
        table.validate()?;
        let dir = self.partial_dir(id);
        let claim = Claim::take(&dir, id)?;
        let meta_path = dir.join(META_FILE);
        if meta_path.is_file() {
            let meta = read_meta(id, &meta_path)?;
            if meta.expected_digest != expected_digest || meta.table != *table {
                return Err(BlobError::PartialMismatch { id: id.to_owned() });
            }
            Partial::resume(self.clone(), id, dir, meta, claim)
        } else {
            Partial::create(self.clone(), id, dir, expected_digest, table, claim)
        }
    }
}

fn remove_partial_dir(dir: &Path) -> Result<bool, BlobError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("remove", dir)(e)),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(true)
}

/// Writes a new blob incrementally (e.g. a masked dataset, record by record); implements
/// [`Write`]. Dropping it unfinished deletes the temp file.
#[derive(Debug)]
pub struct BlobWriter {
    store: BlobStore,
    out: Option<BufWriter<File>>,
    path: PathBuf,
    chunker: Chunker,
    committed: bool,
}

impl BlobWriter {
    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.write_all(bytes).map_err(io_err("write", &self.path))
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.chunker.size
    }

    /// Syncs the file and moves it into `objects/` under its digest.
    pub fn finish(mut self) -> Result<BlobInfo, BlobError> {
        let Some(out) = self.out.take() else {
            return Err(io_err("write", &self.path)(io::Error::other(
                "writer already closed",
            )));
        };
        let file = out
            .into_inner()
            .map_err(|e| io_err("write", &self.path)(e.into_error()))?;
        file.sync_all().map_err(io_err("sync", &self.path))?;
        drop(file);
        let chunker = std::mem::replace(&mut self.chunker, Chunker::new(MIN_CHUNK_SIZE));
        let info = chunker.finish()?;
        self.store.commit(&self.path, &info.digest)?;
        self.committed = true;
        Ok(info)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("writer already closed"))?;
        let n = out.write(buf)?;
        self.chunker.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            // Unfinished, or failed before the rename: the temp file is garbage.
            let _ = fs::remove_file(&self.path);
        }
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
            return Err(BlobError::ChunkIndex {
                index,
                count: self.table.chunk_count(),
            });
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

/// `partial/<id>/meta.json`.
#[derive(Debug, Serialize, Deserialize)]
struct PartialMeta {
    format: u32,
    expected_digest: String,
    table: ChunkTable,
}

fn read_meta(id: &str, path: &Path) -> Result<PartialMeta, BlobError> {
    let bad = |reason: String| BlobError::PartialState {
        id: id.to_owned(),
        path: path.to_path_buf(),
        reason,
    };
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    let meta: PartialMeta = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if meta.format != PARTIAL_FORMAT {
        return Err(bad(format!(
            "format {} (this build reads {PARTIAL_FORMAT})",
            meta.format
        )));
    }
    check_digest(&meta.expected_digest).map_err(|e| bad(e.to_string()))?;
    meta.table.validate().map_err(|e| bad(e.to_string()))?;
    Ok(meta)
}

/// One bit per chunk.
#[derive(Debug, Clone)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: u32) -> Self {
        Self(vec![0; (n as usize).div_ceil(64)])
    }
    fn get(&self, i: u32) -> bool {
        self.0
            .get(i as usize / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    fn set(&mut self, i: u32, on: bool) {
        if let Some(w) = self.0.get_mut(i as usize / 64) {
            if on {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }
}

/// A download in progress under `partial/<id>/`; see the module docs for its durability rules.
#[derive(Debug)]
pub struct Partial {
    store: BlobStore,
    id: String,
    dir: PathBuf,
    expected_digest: String,
    table: ChunkTable,
    data: File,
    journal: File,
    present: Bits,
    present_chunks: u32,
    present_bytes: u64,
    /// The journal may end in a torn record (a failed append): rewrite it before appending.
    journal_dirty: bool,
    /// Chunks written by [`Partial::write_chunk_deferred`] whose journal records wait for
    /// [`Partial::commit`].
    pending: Vec<u32>,
    _claim: Claim,
}

impl Partial {
    fn create(
        store: BlobStore,
        id: &str,
        dir: PathBuf,
        expected_digest: &str,
        table: &ChunkTable,
        claim: Claim,
    ) -> Result<Self, BlobError> {
        // A directory without meta.json is a creation interrupted by a crash: start afresh.
        remove_partial_dir(&dir)?;
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let data_path = dir.join(DATA_FILE);
        let data = create_data_file(&data_path, table.size)?;
        let journal_path = dir.join(JOURNAL_FILE);
        write_atomic(&journal_path, |_| Ok(()))?;
        let meta = PartialMeta {
            format: PARTIAL_FORMAT,
            expected_digest: expected_digest.to_owned(),
            table: table.clone(),
        };
        write_atomic(&dir.join(META_FILE), |out| {
            serde_json::to_writer(&mut *out, &meta).map_err(io::Error::other)
        })?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        let journal = open_journal(&journal_path)?;
        Ok(Self {
            store,
            id: id.to_owned(),
            dir,
            expected_digest: meta.expected_digest,
            present: Bits::new(table.chunk_count()),
            table: meta.table,
            data,
            journal,
            present_chunks: 0,
            present_bytes: 0,
            journal_dirty: false,
            pending: Vec::new(),
            _claim: claim,
        })
    }

    fn resume(
        store: BlobStore,
        id: &str,
        dir: PathBuf,
        meta: PartialMeta,
        claim: Claim,
    ) -> Result<Self, BlobError> {
        let data_path = dir.join(DATA_FILE);
        let journal_path = dir.join(JOURNAL_FILE);
        let (data, mut fresh) = match OpenOptions::new().read(true).write(true).open(&data_path) {
            Ok(f) => (f, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                (create_data_file(&data_path, meta.table.size)?, true)
            }
            Err(e) => return Err(io_err("open", &data_path)(e)),
        };
        let len = data.metadata().map_err(io_err("stat", &data_path))?.len();
        let mut recheck = false;
        if len != meta.table.size {
            data.set_len(meta.table.size)
                .map_err(io_err("resize", &data_path))?;
            data.sync_all().map_err(io_err("sync", &data_path))?;
            recheck = true;
        }
        if !journal_path.is_file() {
            fresh = true;
        }
        let mut present = Bits::new(meta.table.chunk_count());
        let mut clean = true;
        if !fresh {
            clean = load_journal(&journal_path, &meta.table, &mut present)?;
        }
        if fresh || !clean {
            write_journal(&journal_path, &meta.table, &present)?;
        }
        let mut partial = Self {
            store,
            id: id.to_owned(),
            dir,
            expected_digest: meta.expected_digest,
            table: meta.table,
            data,
            journal: open_journal(&journal_path)?,
            present: Bits::new(0),
            present_chunks: 0,
            present_bytes: 0,
            journal_dirty: false,
            pending: Vec::new(),
            _claim: claim,
        };
        partial.set_present(present);
        if recheck {
            partial.recheck()?;
        }
        Ok(partial)
    }

    fn set_present(&mut self, present: Bits) {
        self.present = present;
        self.present_chunks = 0;
        self.present_bytes = 0;
        for i in 0..self.table.chunk_count() {
            if self.present.get(i) {
                self.present_chunks += 1;
                self.present_bytes += u64::from(self.table.chunk_len(i).unwrap_or(0));
            }
        }
    }

    /// The partial's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The digest the finished blob must have.
    pub fn expected_digest(&self) -> &str {
        &self.expected_digest
    }

    /// The chunk table being filled.
    pub fn table(&self) -> &ChunkTable {
        &self.table
    }

    /// Indexes of the chunks not yet written, ascending.
    pub fn missing(&self) -> Vec<u32> {
        (0..self.table.chunk_count())
            .filter(|&i| !self.present.get(i))
            .collect()
    }

    /// Whether chunk `index` is recorded as written.
    pub fn has_chunk(&self, index: u32) -> bool {
        self.present.get(index)
    }

    /// Whether every chunk is written.
    pub fn is_complete(&self) -> bool {
        self.present_chunks == self.table.chunk_count()
    }

    /// `(bytes written, total bytes)`.
    pub fn progress(&self) -> (u64, u64) {
        (self.present_bytes, self.table.size)
    }

    /// Verifies `bytes` as chunk `index` and, only if they match, writes them durably: data
    /// synced, then the chunk recorded in the journal and synced. Writing a chunk already present
    /// is a no-op after verification.
    pub fn write_chunk(&mut self, index: u32, bytes: &[u8]) -> Result<(), BlobError> {
        self.table.verify_chunk(index, bytes)?;
        if self.present.get(index) {
            return Ok(());
        }
        let offset = u64::from(index) * u64::from(self.table.chunk_size);
        let data_path = self.dir.join(DATA_FILE);
        let mut data = &self.data;
        data.seek(SeekFrom::Start(offset))
            .map_err(io_err("seek", &data_path))?;
        data.write_all(bytes).map_err(io_err("write", &data_path))?;
        data.sync_data().map_err(io_err("sync", &data_path))?;
        if self.journal_dirty {
            self.rewrite_journal()?;
        }
        let record = journal_record(&self.table, index);
        let journal_path = self.dir.join(JOURNAL_FILE);
        let appended = self
            .journal
            .write_all(&record)
            .and_then(|()| self.journal.sync_data());
        if let Err(e) = appended {
            self.journal_dirty = true;
            return Err(io_err("append to", &journal_path)(e));
        }
        self.present.set(index, true);
        self.present_chunks += 1;
        self.present_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Like [`write_chunk`](Self::write_chunk) but without syncing: the chunk is verified and
    /// written, counts as present in memory, and is recorded in the journal only by the next
    /// [`commit`](Self::commit) (after one data sync for all of them). A crash before that
    /// loses the chunk (it is fetched again) and never marks an unsynced chunk present.
    pub fn write_chunk_deferred(&mut self, index: u32, bytes: &[u8]) -> Result<(), BlobError> {
        self.table.verify_chunk(index, bytes)?;
        if self.present.get(index) {
            return Ok(());
        }
        let offset = u64::from(index) * u64::from(self.table.chunk_size);
        let data_path = self.dir.join(DATA_FILE);
        let mut data = &self.data;
        data.seek(SeekFrom::Start(offset))
            .map_err(io_err("seek", &data_path))?;
        data.write_all(bytes).map_err(io_err("write", &data_path))?;
        self.present.set(index, true);
        self.present_chunks += 1;
        self.present_bytes += bytes.len() as u64;
        self.pending.push(index);
        Ok(())
    }

    /// Makes the chunks written since the last commit durable: one data sync, then their
    /// journal records appended and synced.
    pub fn commit(&mut self) -> Result<(), BlobError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let data_path = self.dir.join(DATA_FILE);
        self.data.sync_data().map_err(io_err("sync", &data_path))?;
        if self.journal_dirty {
            // The rewrite records every present chunk, the pending ones included.
            self.rewrite_journal()?;
            self.pending.clear();
            return Ok(());
        }
        let mut records = Vec::with_capacity(self.pending.len() * 8);
        for &i in &self.pending {
            records.extend_from_slice(&journal_record(&self.table, i));
        }
        let journal_path = self.dir.join(JOURNAL_FILE);
        let appended = self
            .journal
            .write_all(&records)
            .and_then(|()| self.journal.sync_data());
        if let Err(e) = appended {
            self.journal_dirty = true;
            return Err(io_err("append to", &journal_path)(e));
        }
        self.pending.clear();
        Ok(())
    }

    /// Rewrites the journal atomically from the in-memory present set.
    fn rewrite_journal(&mut self) -> Result<(), BlobError> {
        // Present chunks may include deferred writes: their data must be durable first.
        let data_path = self.dir.join(DATA_FILE);
        self.data.sync_data().map_err(io_err("sync", &data_path))?;
        self.pending.clear();
        let path = self.dir.join(JOURNAL_FILE);
        write_journal(&path, &self.table, &self.present)?;
        self.journal = open_journal(&path)?;
        self.journal_dirty = false;
        Ok(())
    }

    /// Marks chunks absent (in memory and, atomically, in the journal).
    fn drop_chunks(&mut self, dropped: &[u32]) -> Result<(), BlobError> {
        if dropped.is_empty() {
            return Ok(());
        }
        for &i in dropped {
            if self.present.get(i) {
                self.present.set(i, false);
                self.present_chunks -= 1;
                self.present_bytes -= u64::from(self.table.chunk_len(i).unwrap_or(0));
            }
        }
        self.rewrite_journal()
    }

    /// Re-reads every chunk recorded as written, drops those that fail verification (so they
    /// show in [`missing`](Self::missing) again), and returns their indexes.
    pub fn recheck(&mut self) -> Result<Vec<u32>, BlobError> {
        let data_path = self.dir.join(DATA_FILE);
        let mut buf = Vec::with_capacity(self.table.chunk_size as usize);
        let mut dropped = Vec::new();
        for i in 0..self.table.chunk_count() {
            if !self.present.get(i) {
                continue;
            }
            let (Some(len), Some(offset)) = (self.table.chunk_len(i), self.table.chunk_offset(i))
            else {
                continue;
            };
            buf.clear();
            buf.resize(len as usize, 0);
            match read_at(&self.data, offset, &mut buf) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    dropped.push(i);
                    continue;
                }
                Err(e) => return Err(io_err("read", &data_path)(e)),
            }
            if self.table.verify_chunk(i, &buf).is_err() {
                dropped.push(i);
            }
        }
        self.drop_chunks(&dropped)?;
        Ok(dropped)
    }

    /// Completes the download: requires every chunk, re-verifies each chunk and the whole-file
    /// digest in one streaming pass, then moves the file into `objects/` and deletes the partial.
    /// Chunks found corrupt are dropped ([`BlobError::ChunksDropped`]; resume and fetch them).
    pub fn finish(mut self) -> Result<BlobInfo, BlobError> {
        if !self.is_complete() {
            let count = self.table.chunk_count();
            return Err(BlobError::Incomplete {
                id: self.id.clone(),
                missing: count - self.present_chunks,
                count,
            });
        }
        let data_path = self.dir.join(DATA_FILE);
        (&self.data)
            .seek(SeekFrom::Start(0))
            .map_err(io_err("seek", &data_path))?;
        let mut buf = Vec::with_capacity(self.table.chunk_size as usize);
        let mut whole = blake3::Hasher::new();
        let mut dropped = Vec::new();
        for i in 0..self.table.chunk_count() {
            let len = self.table.chunk_len(i).unwrap_or(0) as usize;
            buf.clear();
            buf.resize(len, 0);
            (&self.data)
                .read_exact(&mut buf)
                .map_err(io_err("read", &data_path))?;
            whole.update(&buf);
            if self.table.verify_chunk(i, &buf).is_err() {
                dropped.push(i);
            }
        }
        if !dropped.is_empty() {
            self.drop_chunks(&dropped)?;
            return Err(BlobError::ChunksDropped {
                id: self.id.clone(),
                dropped,
            });
        }
        let actual = whole.finalize().to_hex().to_string();
        if actual != self.expected_digest {
            return Err(BlobError::DigestMismatch {
                id: self.id.clone(),
                expected: self.expected_digest.clone(),
                actual,
            });
        }
        self.data.sync_all().map_err(io_err("sync", &data_path))?;
        self.store.commit(&data_path, &self.expected_digest)?;
        // The blob is safe in objects/; a leftover directory is harmless (abort_partial).
        let _ = remove_partial_dir(&self.dir);
        Ok(BlobInfo {
            digest: self.expected_digest,
            size: self.table.size,
            chunk_table: self.table,
        })
    }

    /// Deletes this partial download.
    pub fn abort(self) -> Result<(), BlobError> {
        remove_partial_dir(&self.dir).map(|_| ())
    }
}

fn create_data_file(path: &Path, size: u64) -> Result<File, BlobError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_err("create", path))?;
    file.set_len(size).map_err(io_err("resize", path))?;
    file.sync_all().map_err(io_err("sync", path))?;
    Ok(file)
}

/// Writes the journal at `path` atomically, one record per present chunk.
fn write_journal(path: &Path, table: &ChunkTable, present: &Bits) -> Result<(), BlobError> {
    write_atomic(path, |out| {
        for i in (0..table.chunk_count()).filter(|&i| present.get(i)) {
            out.write_all(&journal_record(table, i))?;
        }
        Ok(())
    })
}

/// The journal record of chunk `index`: index (u32 BE), first 4 bytes of its hash.
fn journal_record(table: &ChunkTable, index: u32) -> [u8; JOURNAL_RECORD] {
    let mut record = [0u8; JOURNAL_RECORD];
    record[..4].copy_from_slice(&index.to_be_bytes());
    record[4..].copy_from_slice(&table.hash_prefix(index).unwrap_or_default());
    record
}

fn open_journal(path: &Path) -> Result<File, BlobError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err("open", path))
}

/// Loads the journal into `present`; `false` if it had torn or invalid records (rewrite it).
fn load_journal(path: &Path, table: &ChunkTable, present: &mut Bits) -> Result<bool, BlobError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let mut reader = BufReader::new(file);
    let mut clean = true;
    let mut record = [0u8; JOURNAL_RECORD];
    loop {
        let mut got = 0;
        while got < JOURNAL_RECORD {
            match reader.read(&mut record[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("read", path)(e)),
            }
        }
        if got == 0 {
            return Ok(clean);
        }
        if got < JOURNAL_RECORD {
            return Ok(false);
        }
        let mut index = [0u8; 4];
        index.copy_from_slice(&record[..4]);
        let index = u32::from_be_bytes(index);
        match table.hash_prefix(index) {
            Some(prefix) if prefix[..] == record[4..] => present.set(index, true),
            _ => clean = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const CS: u32 = MIN_CHUNK_SIZE;

    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut out = vec![0u8; len];
        blake3::Hasher::new()
            .update(&seed.to_le_bytes())
            .finalize_xof()
            .fill(&mut out);
        out
    }

    /// Deterministic Fisher-Yates shuffle.
    fn shuffled(n: u32, mut seed: u64) -> Vec<u32> {
        let mut v: Vec<u32> = (0..n).collect();
        for i in (1..v.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            v.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        v
    }

    fn hex_of(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    /// Imports `data` into a fresh source store; returns (tempdir, store, info).
    fn source(data: &[u8]) -> Result<(tempfile::TempDir, BlobStore, BlobInfo), BlobError> {
        let dir = tempfile::tempdir().map_err(io_err("tempdir", Path::new("/tmp")))?;
        let store = BlobStore::open(dir.path().join("blobs"))?;
        let info = store.import_reader(data, CS)?;
        Ok((dir, store, info))
    }

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
            Err(BlobError::ChunkIndex { index: 4, count: 4 })
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
    fn chunk_table_for_edge_sizes() -> TestResult {
        let cs = CS as usize;
        let cases = [
            (0, 0),
            (1, 1),
            (cs - 1, 1),
            (cs, 1),
            (cs + 1, 2),
            (cs * 7 / 2, 4),
        ];
        let dir = tempfile::tempdir()?;
        let store = BlobStore::open(dir.path())?;
        for (size, count) in cases {
            let data = random_bytes(size, size as u64);
            let info = store.import_reader(&data[..], CS)?;
            let table = &info.chunk_table;
            table.validate()?;
            assert_eq!(info.digest, hex_of(&data), "size {size}");
            assert_eq!(table.size, size as u64);
            assert_eq!(table.chunk_count(), count, "size {size}");
            assert_eq!(table.chunk_len(count), None);
            for i in 0..count {
                let start = i as usize * cs;
                let end = (start + cs).min(size);
                assert_eq!(table.chunk_len(i), Some((end - start) as u32));
                assert_eq!(table.chunks[i as usize], hex_of(&data[start..end]));
                table.verify_chunk(i, &data[start..end])?;
            }
            assert_eq!(store.chunk_table(&info.digest, CS)?, *table);
            let mut writer = store.writer(CS)?;
            for piece in data.chunks(1000) {
                writer.write_all(piece)?;
            }
            assert_eq!(writer.finish()?, info, "writer, size {size}");
        }
        assert_eq!(store.import_reader(&[][..], CS)?.digest, hex_of(b""));
        Ok(())
    }

    #[test]
    fn table_digest_encoding_and_sensitivity() -> TestResult {
        let data = random_bytes(CS as usize * 3 + 10, 3);
        let (_dir, _store, info) = source(&data)?;
        let table = info.chunk_table;
        let digest = table.digest()?;

        let mut enc = b"yrd/v1/chunk-table".to_vec();
        enc.extend(CS.to_be_bytes());
        enc.extend((data.len() as u64).to_be_bytes());
        for c in data.chunks(CS as usize) {
            enc.extend(blake3::hash(c).as_bytes());
        }
        assert_eq!(digest, hex_of(&enc));

        for i in 0..table.chunks.len() {
            let mut t = table.clone();
            t.chunks[i] = hex_of(format!("other {i}").as_bytes());
            assert_ne!(t.digest()?, digest, "chunk {i}");
        }
        let mut t = table.clone();
        t.size -= 1;
        assert_ne!(t.digest()?, digest);
        let mut t = table.clone();
        t.chunks[0] = t.chunks[0].to_uppercase();
        assert!(matches!(t.digest(), Err(BlobError::InvalidTable { .. })));
        let mut t = table.clone();
        t.chunks.pop();
        assert!(matches!(t.digest(), Err(BlobError::InvalidTable { .. })));
        let mut t = table.clone();
        t.chunk_size = 1024;
        assert!(matches!(
            t.digest(),
            Err(BlobError::InvalidChunkSize { chunk_size: 1024 })
        ));
        let empty = ChunkTable {
            chunk_size: CS,
            size: 0,
            chunks: vec![],
        };
        let mut enc = b"yrd/v1/chunk-table".to_vec();
        enc.extend(CS.to_be_bytes());
        enc.extend(0u64.to_be_bytes());
        assert_eq!(empty.digest()?, hex_of(&enc));
        let json = serde_json::to_string(&table)?;
        assert_eq!(serde_json::from_str::<ChunkTable>(&json)?, table);
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
    fn partial_in_random_order_completes() -> TestResult {
        let data = random_bytes(CS as usize * 9 + 123, 5);
        let (_src_dir, src, info) = source(&data)?;
        let dir = tempfile::tempdir()?;
        let dst = BlobStore::open(dir.path())?;
        let mut p = dst.begin_partial("ds-1.v2", &info.digest, &info.chunk_table)?;
        assert_eq!(p.missing().len(), 10);
        assert_eq!(p.progress(), (0, data.len() as u64));
        assert_eq!(dst.partials()?, vec!["ds-1.v2".to_owned()]);
        for i in shuffled(10, 0x9e37_79b9_7f4a_7c15) {
            let chunk = src.read_chunk(&info.digest, &info.chunk_table, i)?;
            p.write_chunk(i, &chunk)?;
            p.write_chunk(i, &chunk)?; // idempotent
        }
        assert!(p.missing().is_empty());
        assert_eq!(p.progress(), (data.len() as u64, data.len() as u64));
        let done = p.finish()?;
        assert_eq!(done, info);
        let path = dst.path(&info.digest).ok_or("not stored")?;
        assert_eq!(fs::read(path)?, data);
        dst.verify(&info.digest)?;
        assert!(dst.partials()?.is_empty());
        assert!(!dir.path().join(PARTIAL_DIR).join("ds-1.v2").exists());
        Ok(())
    }

    #[test]
    fn empty_blob_partial() -> TestResult {
        let (_s, _src, info) = source(b"")?;
        let dir = tempfile::tempdir()?;
        let dst = BlobStore::open(dir.path())?;
        let p = dst.begin_partial("empty", &info.digest, &info.chunk_table)?;
        assert!(p.is_complete());
        assert_eq!(p.finish()?, info);
        assert!(dst.contains(&info.digest));
        Ok(())
    }

    #[test]
    fn bad_chunk_is_refused_and_nothing_written() -> TestResult {
        let data = random_bytes(CS as usize * 3, 6);
        let (_s, _src, info) = source(&data)?;
        let dir = tempfile::tempdir()?;
        let dst = BlobStore::open(dir.path())?;
        let mut p = dst.begin_partial("bad", &info.digest, &info.chunk_table)?;
        let data_path = dir.path().join(PARTIAL_DIR).join("bad").join(DATA_FILE);
        let before = fs::read(&data_path)?;
        let journal_path = dir.path().join(PARTIAL_DIR).join("bad").join(JOURNAL_FILE);

        let mut bad = data[CS as usize..2 * CS as usize].to_vec();
        bad[7] ^= 0x80;
        let err = p.write_chunk(1, &bad).err().ok_or("bad chunk accepted")?;
        assert!(matches!(err, BlobError::BadChunk { index: 1, .. }), "{err}");
        let short = &data[CS as usize..2 * CS as usize - 1];
        assert!(matches!(
            p.write_chunk(1, short),
            Err(BlobError::BadChunk { index: 1, .. })
        ));
        // Chunk 0's bytes are not chunk 1.
        assert!(matches!(
            p.write_chunk(1, &data[..CS as usize]),
            Err(BlobError::BadChunk { index: 1, .. })
        ));
        assert!(matches!(
            p.write_chunk(3, &bad),
            Err(BlobError::ChunkIndex { index: 3, .. })
        ));
        assert_eq!(fs::read(&data_path)?, before);
        assert_eq!(fs::metadata(&journal_path)?.len(), 0);
        assert_eq!(p.missing(), vec![0, 1, 2]);
        assert_eq!(p.progress().0, 0);
        Ok(())
    }

    #[test]
    fn deferred_chunks_count_only_once_committed() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = BlobStore::open(dir.path())?;
        let data: Vec<u8> = (0..(3 * MIN_CHUNK_SIZE as usize))
            .map(|i| (i % 251) as u8)
            .collect();
        let src = tempfile::tempdir()?;
        let info = BlobStore::open(src.path())?.import_reader(&data[..], MIN_CHUNK_SIZE)?;
        let table = info.chunk_table.clone();
        let chunk =
            |i: usize| &data[i * MIN_CHUNK_SIZE as usize..(i + 1) * MIN_CHUNK_SIZE as usize];
        {
            let mut p = store.begin_partial("d1", &info.digest, &table)?;
            p.write_chunk_deferred(0, chunk(0))?;
            p.commit()?;
            p.write_chunk_deferred(1, chunk(1))?;
            assert!(
                p.write_chunk_deferred(2, chunk(1)).is_err(),
                "verified first"
            );
            assert_eq!(p.missing(), vec![2]);
            // Dropped without commit: chunk 1 was never journaled.
        }
        let mut p = store.begin_partial("d1", &info.digest, &table)?;
        assert_eq!(p.missing(), vec![1, 2]);
        p.write_chunk_deferred(1, chunk(1))?;
        p.write_chunk_deferred(2, chunk(2))?;
        p.commit()?;
        let done = p.finish()?;
        assert_eq!(done.digest, info.digest);
        Ok(())
    }

    #[test]
    fn resume_after_restart_writes_only_missing() -> TestResult {
        let data = random_bytes(CS as usize * 6 + 1, 7);
        let (_s, src, info) = source(&data)?;
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("blobs");
        {
            let dst = BlobStore::open(&root)?;
            let mut p = dst.begin_partial("resume", &info.digest, &info.chunk_table)?;
            for i in [0, 2, 6] {
                p.write_chunk(i, &src.read_chunk(&info.digest, &info.chunk_table, i)?)?;
            }
            // Open twice at once: refused, also through another store instance.
            let again = BlobStore::open(&root)?;
            assert!(matches!(
                again.begin_partial("resume", &info.digest, &info.chunk_table),
                Err(BlobError::PartialBusy { .. })
            ));
            assert!(matches!(
                again.abort_partial("resume"),
                Err(BlobError::PartialBusy { .. })
            ));
        } // dropped: a restart
        let dst = BlobStore::open(&root)?;
        let mut other = info.chunk_table.clone();
        other.chunks.swap(0, 1);
        assert!(matches!(
            dst.begin_partial("resume", &info.digest, &other),
            Err(BlobError::PartialMismatch { .. })
        ));
        assert!(matches!(
            dst.begin_partial("resume", &hex_of(b"x"), &info.chunk_table),
            Err(BlobError::PartialMismatch { .. })
        ));
        let mut p = dst.begin_partial("resume", &info.digest, &info.chunk_table)?;
        let missing = p.missing();
        assert_eq!(missing, vec![1, 3, 4, 5]);
        let last = u64::from(info.chunk_table.chunk_len(6).ok_or("no chunk 6")?);
        assert_eq!(p.progress().0, 2 * u64::from(CS) + last);
        let mut writes = 0;
        for i in missing {
            p.write_chunk(i, &src.read_chunk(&info.digest, &info.chunk_table, i)?)?;
            writes += 1;
        }
        assert_eq!(writes, 4);
        assert_eq!(p.finish()?, info);
        assert_eq!(fs::read(dst.path(&info.digest).ok_or("not stored")?)?, data);
        Ok(())
    }

    #[test]
    fn torn_journal_records_are_ignored() -> TestResult {
        let data = random_bytes(CS as usize * 4, 8);
        let (_s, src, info) = source(&data)?;
        let dir = tempfile::tempdir()?;
        let dst = BlobStore::open(dir.path())?;
        let journal = dir.path().join(PARTIAL_DIR).join("torn").join(JOURNAL_FILE);
        {
            let mut p = dst.begin_partial("torn", &info.digest, &info.chunk_table)?;
            p.write_chunk(1, &src.read_chunk(&info.digest, &info.chunk_table, 1)?)?;
        }
        // A garbage record for chunk 3 (wrong check bytes) and a torn trailing fragment.
        let mut f = OpenOptions::new().append(true).open(&journal)?;
        f.write_all(&[0, 0, 0, 3, 1, 2, 3, 4, 0, 0, 0])?;
        drop(f);
        let mut p = dst.begin_partial("torn", &info.digest, &info.chunk_table)?;
        assert_eq!(p.missing(), vec![0, 2, 3]);
        assert_eq!(fs::metadata(&journal)?.len(), JOURNAL_RECORD as u64);
        for i in p.missing() {
            p.write_chunk(i, &src.read_chunk(&info.digest, &info.chunk_table, i)?)?;
        }
        assert_eq!(fs::metadata(&journal)?.len(), 4 * JOURNAL_RECORD as u64);
        assert_eq!(p.finish()?, info);
        Ok(())
    }

    #[test]
    fn recheck_drops_chunk_corrupted_on_disk() -> TestResult {
        let data = random_bytes(CS as usize * 4, 9);
        let (_s, src, info) = source(&data)?;
        let dir = tempfile::tempdir()?;
        let dst = BlobStore::open(dir.path())?;
        let data_path = dir.path().join(PARTIAL_DIR).join("rc").join(DATA_FILE);
        let corrupt = |offset: u64| -> io::Result<()> {
            let mut f = OpenOptions::new().write(true).open(&data_path)?;
            f.seek(SeekFrom::Start(offset))?;
            f.write_all(b"garbage")?;
            f.sync_all()
        };
        let mut p = dst.begin_partial("rc", &info.digest, &info.chunk_table)?;
        for i in 0..4 {
            p.write_chunk(i, &src.read_chunk(&info.digest, &info.chunk_table, i)?)?;
        }
        corrupt(u64::from(CS) * 2 + 100)?;
        assert_eq!(p.recheck()?, vec![2]);
        assert_eq!(p.missing(), vec![2]);
        assert_eq!(p.recheck()?, Vec::<u32>::new());
        drop(p);
        // The drop is durable.
        let mut p = dst.begin_partial("rc", &info.digest, &info.chunk_table)?;
        assert_eq!(p.missing(), vec![2]);
        p.write_chunk(2, &src.read_chunk(&info.digest, &info.chunk_table, 2)?)?;

        // finish() re-verifies too: corruption found there drops the chunk and refuses.
        corrupt(5)?;
        let err = p.finish().err().ok_or("finished with a corrupt chunk")?;
        assert!(
            matches!(&err, BlobError::ChunksDropped { dropped, .. } if dropped == &[0]),
            "{err}"
        );
        assert!(!dst.contains(&info.digest));
        let mut p = dst.begin_partial("rc", &info.digest, &info.chunk_table)?;
        assert_eq!(p.missing(), vec![0]);
        p.write_chunk(0, &src.read_chunk(&info.digest, &info.chunk_table, 0)?)?;
        assert_eq!(p.finish()?, info);
        Ok(())
    }

    #[test]
    fn finish_refuses_incomplete_or_wrong_digest() -> TestResult {
        let data = random_bytes(CS as usize * 2 + 5, 10);
        let (_s, src, info) = source(&data)?;
        let dir = tempfile::tempdir()?;
        let dst = BlobStore::open(dir.path())?;
        let mut p = dst.begin_partial("inc", &info.digest, &info.chunk_table)?;
        p.write_chunk(0, &src.read_chunk(&info.digest, &info.chunk_table, 0)?)?;
        let err = p.finish().err().ok_or("finished incomplete")?;
        assert!(
            matches!(
                err,
                BlobError::Incomplete {
                    missing: 2,
                    count: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!dst.contains(&info.digest));

        // A table consistent with itself but not with the expected digest.
        let wrong = hex_of(b"some other blob");
        let mut p = dst.begin_partial("wrong", &wrong, &info.chunk_table)?;
        for i in 0..3 {
            p.write_chunk(i, &src.read_chunk(&info.digest, &info.chunk_table, i)?)?;
        }
        let err = p.finish().err().ok_or("finished with the wrong digest")?;
        assert!(
            matches!(&err, BlobError::DigestMismatch { expected, actual, .. }
                if *expected == wrong && *actual == info.digest),
            "{err}"
        );
        assert!(!dst.contains(&wrong));
        assert!(!dst.contains(&info.digest));
        assert_eq!(dst.partials()?, vec!["inc".to_owned(), "wrong".to_owned()]);
        assert!(dst.abort_partial("wrong")?);
        assert!(!dst.abort_partial("wrong")?);
        let p = dst.begin_partial("inc", &info.digest, &info.chunk_table)?;
        assert_eq!(p.missing(), vec![1, 2]);
        p.abort()?;
        assert!(dst.partials()?.is_empty());
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

    #[test]
    fn ids_and_arguments_are_validated() -> TestResult {
        for ok in ["a", "abc-1.2_x", "0", "a..b", &"z".repeat(128)] {
            validate_partial_id(ok)?;
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "A",
            "a/b",
            "a\\b",
            "a b",
            "中",
            &"z".repeat(129),
        ] {
            assert!(
                matches!(validate_partial_id(bad), Err(BlobError::InvalidId { .. })),
                "{bad:?}"
            );
        }
        let (_s, _src, info) = source(b"abc")?;
        let dir = tempfile::tempdir()?;
        let dst = BlobStore::open(dir.path())?;
        assert!(matches!(
            dst.begin_partial("../escape", &info.digest, &info.chunk_table),
            Err(BlobError::InvalidId { .. })
        ));
        assert!(matches!(
            dst.begin_partial("ok", &info.digest.to_uppercase(), &info.chunk_table),
            Err(BlobError::InvalidDigest { .. })
        ));
        let mut bad_table = info.chunk_table.clone();
        bad_table.size = 1 << 40;
        assert!(matches!(
            dst.begin_partial("ok", &info.digest, &bad_table),
            Err(BlobError::InvalidTable { .. })
        ));
        assert!(matches!(
            dst.writer(MIN_CHUNK_SIZE - 1),
            Err(BlobError::InvalidChunkSize { .. })
        ));
        assert!(matches!(
            dst.import_reader(&b""[..], MAX_CHUNK_SIZE + 1),
            Err(BlobError::InvalidChunkSize { .. })
        ));
        assert!(dst.partials()?.is_empty());
        Ok(())
    }

    /// Peak resident memory (VmHWM) after resetting it, in bytes; `None` off Linux.
    fn reset_peak_rss() -> Option<u64> {
        fs::write("/proc/self/clear_refs", "5").ok()?;
        proc_status_kib("VmRSS:").map(|k| k * 1024)
    }

    fn peak_rss() -> Option<u64> {
        proc_status_kib("VmHWM:").map(|k| k * 1024)
    }

    fn proc_status_kib(key: &str) -> Option<u64> {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    #[test]
    fn streams_64_mib_with_bounded_memory() -> TestResult {
        const SIZE: u64 = 64 << 20;
        let dir = tempfile::tempdir()?;
        let input = dir.path().join("big.bin");
        // Written 1 MiB at a time; the whole file never exists in memory.
        let mut expected = blake3::Hasher::new();
        {
            let mut xof = blake3::Hasher::new().update(b"big").finalize_xof();
            let mut out = BufWriter::new(File::create(&input)?);
            let mut buf = vec![0u8; 1 << 20];
            for _ in 0..SIZE >> 20 {
                xof.fill(&mut buf);
                expected.update(&buf);
                out.write_all(&buf)?;
            }
            out.into_inner()?.sync_all()?;
        }
        let expected = expected.finalize().to_hex().to_string();
        let baseline = reset_peak_rss();

        let src = BlobStore::open(dir.path().join("src"))?;
        let info = src.import_file(&input, DEFAULT_CHUNK_SIZE)?;
        assert_eq!(info.digest, expected);
        assert_eq!(info.size, SIZE);
        assert_eq!(info.chunk_table.chunk_count(), 64);
        src.verify(&info.digest)?;
        assert_eq!(
            src.chunk_table(&info.digest, DEFAULT_CHUNK_SIZE)?,
            info.chunk_table
        );

        let dst = BlobStore::open(dir.path().join("dst"))?;
        let mut p = dst.begin_partial("big", &info.digest, &info.chunk_table)?;
        let mut reader = src.open_chunks(&info.digest, &info.chunk_table)?;
        let mut chunk = Vec::new();
        for i in shuffled(64, 42) {
            reader.read_chunk_into(i, &mut chunk)?;
            assert!(chunk.capacity() <= DEFAULT_CHUNK_SIZE as usize);
            p.write_chunk(i, &chunk)?;
        }
        let one = src.read_chunk(&info.digest, &info.chunk_table, 63)?;
        assert!(one.capacity() <= DEFAULT_CHUNK_SIZE as usize);
        assert_eq!(p.recheck()?, Vec::<u32>::new());
        assert_eq!(p.finish()?, info);
        dst.verify(&info.digest)?;

        if let (Some(base), Some(peak)) = (baseline, peak_rss()) {
            let growth = peak.saturating_sub(base);
            // Reading the file into one buffer would add at least 64 MiB.
            assert!(growth < 40 << 20, "resident memory grew by {growth} bytes");
        }
        Ok(())
    }
}
