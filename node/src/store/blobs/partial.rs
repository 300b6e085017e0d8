//! Partial downloads under `partial/<id>/`: creating or resuming one ([`BlobStore::begin_partial`]),
//! writing chunks verified against the table before a byte is written, committing them to the
//! journal, re-verifying ([`Partial::recheck`]) and finishing into `objects/`. It owns the
//! partial's `meta.json`, its sparse data file, the in-memory present set ([`Bits`]) and the
//! process-wide set of open partial ids ([`Claim`]), so one id is open by one [`Partial`] at a
//! time. The durability rules are in the module docs of `store::blobs`.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::{Deserialize, Serialize};

use super::fs::{create_data_file, io_err, read_at, sync_dir, write_atomic};
use super::journal::{
    JOURNAL_FILE, JOURNAL_RECORD, journal_record, load_journal, open_journal, write_journal,
};
use super::{BlobError, BlobInfo, BlobStore, PARTIAL_DIR, check_digest};
use crate::model::chunks::ChunkTable;

/// Longest accepted partial download id.
pub const MAX_PARTIAL_ID_LEN: usize = 128;

const DATA_FILE: &str = "data";
const META_FILE: &str = "meta.json";
/// Version of `partial/<id>/meta.json` (and the journal format) this code reads and writes.
const PARTIAL_FORMAT: u32 = 1;

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

impl BlobStore {
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
pub(super) struct Bits(Vec<u64>);

impl Bits {
    pub(super) fn new(n: u32) -> Self {
        Self(vec![0; (n as usize).div_ceil(64)])
    }
    pub(super) fn get(&self, i: u32) -> bool {
        self.0
            .get(i as usize / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    pub(super) fn set(&mut self, i: u32, on: bool) {
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
    /// `meta.json` is on disk and synced ([`Partial::make_durable`]); until then a crash
    /// leaves a directory the next `begin_partial` starts afresh.
    durable: bool,
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
        // A directory without meta.json is a partial no commit made durable: start afresh.
        remove_partial_dir(&dir)?;
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        // Nothing is synced here: the partial becomes durable (`meta.json`, then the
        // directories) only when its first chunk does (`make_durable`). A download that
        // finishes before its first commit never syncs it at all; a crash before then leaves
        // a directory without `meta.json`, which the next `begin_partial` starts afresh.
        let data_path = dir.join(DATA_FILE);
        let data = create_data_file(&data_path, table.size, false)?;
        let journal_path = dir.join(JOURNAL_FILE);
        File::create(&journal_path).map_err(io_err("create", &journal_path))?;
        let journal = open_journal(&journal_path)?;
        Ok(Self {
            store,
            id: id.to_owned(),
            dir,
            expected_digest: expected_digest.to_owned(),
            present: Bits::new(table.chunk_count()),
            table: table.clone(),
            data,
            journal,
            present_chunks: 0,
            present_bytes: 0,
            journal_dirty: false,
            pending: Vec::new(),
            durable: false,
            _claim: claim,
        })
    }

    /// Makes the partial itself durable, once, before the first journal record that needs
    /// it: `meta.json` written atomically (which syncs this directory, so the data file's and
    /// the journal's entries too), then the parent directory.
    fn make_durable(&mut self) -> Result<(), BlobError> {
        if self.durable {
            return Ok(());
        }
        let meta = PartialMeta {
            format: PARTIAL_FORMAT,
            expected_digest: self.expected_digest.clone(),
            table: self.table.clone(),
        };
        write_atomic(&self.dir.join(META_FILE), |out| {
            serde_json::to_writer(&mut *out, &meta).map_err(io::Error::other)
        })?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        self.durable = true;
        Ok(())
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
                (create_data_file(&data_path, meta.table.size, true)?, true)
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
            durable: true,
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
        if !self.write_unsynced(index, bytes)? {
            return Ok(());
        }
        self.sync_data()?;
        if self.journal_dirty {
            self.rewrite_journal()?;
        }
        self.append_journal(&journal_record(&self.table, index))?;
        self.mark_present(index, bytes.len());
        Ok(())
    }

    /// Like [`write_chunk`](Self::write_chunk) but without syncing: the chunk is verified and
    /// written, counts as present in memory, and is recorded in the journal only by the next
    /// [`commit`](Self::commit) (after one data sync for all of them). A crash before that
    /// loses the chunk (it is fetched again) and never marks an unsynced chunk present.
    pub fn write_chunk_deferred(&mut self, index: u32, bytes: &[u8]) -> Result<(), BlobError> {
        if self.write_unsynced(index, bytes)? {
            self.mark_present(index, bytes.len());
            self.pending.push(index);
        }
        Ok(())
    }

    /// Verifies `bytes` as chunk `index` and writes them at its offset without syncing; `false`
    /// (nothing written) if the chunk is already present.
    fn write_unsynced(&mut self, index: u32, bytes: &[u8]) -> Result<bool, BlobError> {
        self.table.verify_chunk(index, bytes)?;
        if self.present.get(index) {
            return Ok(false);
        }
        let offset = u64::from(index) * u64::from(self.table.chunk_size);
        let data_path = self.dir.join(DATA_FILE);
        let mut data = &self.data;
        data.seek(SeekFrom::Start(offset))
            .map_err(io_err("seek", &data_path))?;
        data.write_all(bytes).map_err(io_err("write", &data_path))?;
        Ok(true)
    }

    fn mark_present(&mut self, index: u32, len: usize) {
        self.present.set(index, true);
        self.present_chunks += 1;
        self.present_bytes += len as u64;
    }

    /// Appends `records` to the journal and syncs it. A failed append may leave a torn record,
    /// so the journal is marked for a rewrite before the next append.
    fn append_journal(&mut self, records: &[u8]) -> Result<(), BlobError> {
        // A record counts only in a partial that a restart finds.
        self.make_durable()?;
        let appended = self
            .journal
            .write_all(records)
            .and_then(|()| self.journal.sync_data());
        if let Err(e) = appended {
            self.journal_dirty = true;
            let journal_path = self.dir.join(JOURNAL_FILE);
            return Err(io_err("append to", &journal_path)(e));
        }
        Ok(())
    }

    /// Makes the chunks written since the last commit durable: one data sync, then their
    /// journal records appended and synced.
    pub fn commit(&mut self) -> Result<(), BlobError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.sync_data()?;
        if self.journal_dirty {
            // The rewrite records every present chunk, the pending ones included.
            self.rewrite_journal()?;
            self.pending.clear();
            return Ok(());
        }
        let mut records = Vec::with_capacity(self.pending.len() * JOURNAL_RECORD);
        for &i in &self.pending {
            records.extend_from_slice(&journal_record(&self.table, i));
        }
        self.append_journal(&records)?;
        self.pending.clear();
        Ok(())
    }

    /// Syncs the data written so far without journaling it: for a file about to be finished,
    /// whose chunks no resume will need (a crash before the finish fetches them again).
    pub fn sync_data(&self) -> Result<(), BlobError> {
        let data_path = self.dir.join(DATA_FILE);
        self.data.sync_data().map_err(io_err("sync", &data_path))
    }

    /// Rewrites the journal atomically from the in-memory present set.
    fn rewrite_journal(&mut self) -> Result<(), BlobError> {
        // Present chunks may include deferred writes: their data must be durable first.
        self.sync_data()?;
        self.pending.clear();
        self.make_durable()?;
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

    /// Checks that `actual`, the digest of the assembled file, is the expected one.
    pub fn check_digest(&self, actual: &str) -> Result<(), BlobError> {
        if actual != self.expected_digest {
            return Err(BlobError::DigestMismatch {
                id: self.id.clone(),
                expected: self.expected_digest.clone(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }

    /// Reads chunk `index` (written, perhaps not yet synced) into `buf`.
    pub fn read_chunk(&self, index: u32, buf: &mut Vec<u8>) -> Result<(), BlobError> {
        let data_path = self.dir.join(DATA_FILE);
        let (Some(len), Some(offset)) =
            (self.table.chunk_len(index), self.table.chunk_offset(index))
        else {
            return Err(io_err("read", &data_path)(io::Error::other(format!(
                "no chunk {index}"
            ))));
        };
        buf.clear();
        buf.resize(len as usize, 0);
        read_at(&self.data, offset, buf).map_err(io_err("read", &data_path))
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
        self.finish_hashed(&whole.finalize().to_hex())
    }

    /// Completes the download whose whole-file digest the caller computed while the chunks
    /// arrived (each verified before it was written, then hashed in file order from memory or
    /// read back once): no second pass over the file. Requires every chunk and `actual` to be
    /// the expected digest; then syncs, moves the file into `objects/` and deletes the partial.
    pub fn finish_hashed(self, actual: &str) -> Result<BlobInfo, BlobError> {
        if !self.is_complete() {
            let count = self.table.chunk_count();
            return Err(BlobError::Incomplete {
                id: self.id.clone(),
                missing: count - self.present_chunks,
                count,
            });
        }
        self.check_digest(actual)?;
        // The data and the length, not the timestamps: a file the fetcher already synced
        // (`sync_data`) costs no second journal commit here.
        self.sync_data()?;
        let data_path = self.dir.join(DATA_FILE);
        self.store.commit(&data_path, &self.expected_digest)?;
        // The blob is safe in objects/. Its removal is not synced: a directory a crash
        // brings back is resumed (and finds the blob stored) or collected at the next start.
        let _ = fs::remove_dir_all(&self.dir);
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{CS, TestResult, hex_of, random_bytes, shuffled, source};
    use super::*;
    use crate::model::chunks::{ChunkError, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};

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
            Err(BlobError::Chunk(ChunkError::ChunkIndex { index: 3, .. }))
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

    /// Making a partial durable syncs only `meta.json` and the directories: a crash may lose
    /// the data file's length, the data file itself or the empty journal. Each loss resumes as
    /// a partial with no chunk present, and the download completes.
    #[test]
    fn a_partial_whose_unsynced_files_were_lost_resumes_from_nothing() -> TestResult {
        let data = random_bytes(CS as usize * 3 + 5, 11);
        let (_s, src, info) = source(&data)?;
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("blobs");
        let part = root.join(PARTIAL_DIR).join("lost");
        type Loss = fn(&Path) -> io::Result<()>;
        let losses: [(&str, Loss); 3] = [
            ("length", |d| {
                OpenOptions::new()
                    .write(true)
                    .open(d.join(DATA_FILE))?
                    .set_len(0)
            }),
            ("data file", |d| fs::remove_file(d.join(DATA_FILE))),
            ("journal", |d| fs::remove_file(d.join(JOURNAL_FILE))),
        ];
        for (what, lose) in losses {
            let dst = BlobStore::open(&root)?;
            let mut p = dst.begin_partial("lost", &info.digest, &info.chunk_table)?;
            p.make_durable()?;
            drop(p);
            lose(&part)?;
            let mut p = dst.begin_partial("lost", &info.digest, &info.chunk_table)?;
            assert_eq!(p.progress().0, 0, "{what}");
            assert_eq!(p.missing(), vec![0, 1, 2, 3], "{what}");
            for i in p.missing() {
                p.write_chunk(i, &src.read_chunk(&info.digest, &info.chunk_table, i)?)?;
            }
            assert_eq!(p.finish()?, info, "{what}");
            assert_eq!(fs::read(dst.path(&info.digest).ok_or("not stored")?)?, data);
            fs::remove_file(dst.path(&info.digest).ok_or("not stored")?)?;
        }
        Ok(())
    }

    /// A partial writes no `meta.json` until its first commit: one dropped before that (a
    /// crash) starts afresh, even over leftover chunks, and one that finishes without a commit
    /// never writes it.
    #[test]
    fn a_partial_is_durable_only_from_its_first_commit() -> TestResult {
        let data = random_bytes(CS as usize * 3 + 5, 12);
        let (_s, src, info) = source(&data)?;
        let dir = tempfile::tempdir()?;
        let dst = BlobStore::open(dir.path())?;
        let meta = dir.path().join(PARTIAL_DIR).join("lazy").join(META_FILE);
        let chunk = |i| src.read_chunk(&info.digest, &info.chunk_table, i);
        {
            let mut p = dst.begin_partial("lazy", &info.digest, &info.chunk_table)?;
            p.write_chunk_deferred(0, &chunk(0)?)?;
            p.write_chunk_deferred(1, &chunk(1)?)?;
            assert!(!meta.exists(), "made durable before a commit");
        }
        let mut p = dst.begin_partial("lazy", &info.digest, &info.chunk_table)?;
        assert_eq!(
            p.missing(),
            vec![0, 1, 2, 3],
            "an undurable partial resumed"
        );
        p.write_chunk_deferred(0, &chunk(0)?)?;
        p.commit()?;
        assert!(meta.is_file(), "a commit left no meta.json");
        drop(p);
        let p = dst.begin_partial("lazy", &info.digest, &info.chunk_table)?;
        assert_eq!(p.missing(), vec![1, 2, 3], "the committed chunk was lost");
        p.abort()?;

        let mut p = dst.begin_partial("lazy", &info.digest, &info.chunk_table)?;
        for i in 0..4 {
            p.write_chunk_deferred(i, &chunk(i)?)?;
        }
        assert!(!meta.exists());
        assert_eq!(p.finish()?, info);
        assert_eq!(fs::read(dst.path(&info.digest).ok_or("not stored")?)?, data);
        assert!(dst.partials()?.is_empty());
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
            Err(BlobError::Chunk(ChunkError::InvalidTable { .. }))
        ));
        assert!(matches!(
            dst.writer(MIN_CHUNK_SIZE - 1),
            Err(BlobError::Chunk(ChunkError::InvalidChunkSize { .. }))
        ));
        assert!(matches!(
            dst.import_reader(&b""[..], MAX_CHUNK_SIZE + 1),
            Err(BlobError::Chunk(ChunkError::InvalidChunkSize { .. }))
        ));
        assert!(dst.partials()?.is_empty());
        Ok(())
    }
}
