//! Key index files of query services: for one dataset version and one key field, a file beside
//! the blobs (`DATA_DIR/index/<blob digest>.<field>.kix`) mapping the keyed 64-bit hash of each
//! record's key value to the record's position in the blob (offset and length), so a lookup
//! reads two small ranges of the index and then only the records it names — never the dataset.
//!
//! Format (big-endian): magic `YRDKIX01`; the hash of a fixed text under the index key (a
//! file built under another secret is refused and rebuilt); the entry count (u64); a fan-out
//! table of 65,537 u32, entry `b` being the first entry whose hash's top 16 bits are `b` or
//! more; then the entries, sorted by hash, 20 bytes each (hash u64, offset u64, length u32).
//! Written to a temporary file, fsynced and renamed, so a reader sees a whole file or none.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"YRDKIX01";
const FANOUT: usize = 1 << 16;
const HEADER: u64 = 8 + 8 + 8;
const FANOUT_BYTES: u64 = (FANOUT as u64 + 1) * 4;
const ENTRY: u64 = 20;
/// Most entries one lookup reads: a key repeated more often than this (no real key is) is
/// answered from the first ones.
pub const MAX_ENTRIES_READ: u64 = 4096;

/// Directory of the key indexes inside the data dir.
pub const INDEX_DIR: &str = "index";

/// Where a record is in its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexEntry {
    /// The keyed hash of the key value.
    pub hash: u64,
    /// Byte offset of the record (its line, or CSV row) in the blob.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u32,
}

/// The index file of `field` for blob `digest` under `dir`.
pub fn index_path(dir: &Path, digest: &str, field: &str) -> PathBuf {
    dir.join(format!("{digest}.{field}.kix"))
}

/// Writes an index of `entries` (sorted here) to `path`, atomically. `check` is the hash of a
/// fixed text under the index key, kept to tell a file built under another key.
pub fn write_index(
    path: &Path,
    mut entries: Vec<IndexEntry>,
    check: u64,
) -> Result<(), std::io::Error> {
    if entries.len() > u32::MAX as usize {
        return Err(std::io::Error::other("more than 2^32 records in one index"));
    }
    entries.sort_unstable();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("kix.tmp");
    let file = File::create(&tmp)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(MAGIC)?;
    out.write_all(&check.to_be_bytes())?;
    out.write_all(&(entries.len() as u64).to_be_bytes())?;
    let mut next = 0usize;
    for bucket in 0..=FANOUT {
        while next < entries.len() && ((entries[next].hash >> 48) as usize) < bucket {
            next += 1;
        }
        out.write_all(&(next as u32).to_be_bytes())?;
    }
    for e in &entries {
        out.write_all(&e.hash.to_be_bytes())?;
        out.write_all(&e.offset.to_be_bytes())?;
        out.write_all(&e.len.to_be_bytes())?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// An open index file; lookups read it with positioned reads, so one handle serves many
/// callers at once.
#[derive(Debug)]
pub struct KeyIndex {
    file: File,
    count: u64,
}

impl KeyIndex {
    /// Opens `path`: `Ok(None)` when it does not exist or was built under another key
    /// (`check`), an error when it is unreadable or malformed.
    pub fn open(path: &Path, check: u64) -> Result<Option<KeyIndex>, std::io::Error> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut header = [0u8; HEADER as usize];
        file.read_exact_at(&mut header, 0)?;
        let bad = |what: &str| std::io::Error::other(format!("{}: {what}", path.display()));
        if &header[..8] != MAGIC {
            return Err(bad("not a key index"));
        }
        if u64::from_be_bytes(word(&header[8..16])) != check {
            return Ok(None);
        }
        let count = u64::from_be_bytes(word(&header[16..24]));
        let len = file.metadata()?.len();
        if len != HEADER + FANOUT_BYTES + count * ENTRY {
            return Err(bad("truncated or overlong key index"));
        }
        Ok(Some(KeyIndex { file, count }))
    }

    /// Records in the index.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The positions of the records whose key hashes to `hash` (at most
    /// [`MAX_ENTRIES_READ`]), in blob order.
    pub fn lookup(&self, hash: u64) -> Result<Vec<(u64, u32)>, std::io::Error> {
        let bucket = hash >> 48;
        let mut bounds = [0u8; 8];
        self.file.read_exact_at(&mut bounds, HEADER + bucket * 4)?;
        let start = u32::from_be_bytes([bounds[0], bounds[1], bounds[2], bounds[3]]) as u64;
        let end = u32::from_be_bytes([bounds[4], bounds[5], bounds[6], bounds[7]]) as u64;
        if end < start || end > self.count {
            return Err(std::io::Error::other("corrupt key index fan-out"));
        }
        let end = end.min(start + MAX_ENTRIES_READ);
        let mut buf = vec![0u8; ((end - start) * ENTRY) as usize];
        self.file
            .read_exact_at(&mut buf, HEADER + FANOUT_BYTES + start * ENTRY)?;
        let mut out: Vec<(u64, u32)> = buf
            .chunks_exact(ENTRY as usize)
            .filter(|e| u64::from_be_bytes(word(&e[..8])) == hash)
            .map(|e| {
                (
                    u64::from_be_bytes(word(&e[8..16])),
                    u32::from_be_bytes([e[16], e[17], e[18], e[19]]),
                )
            })
            .collect();
        out.sort_unstable();
        Ok(out)
    }
}

fn word(b: &[u8]) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_every_entry_of_a_hash_and_nothing_else()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = index_path(dir.path(), "d", "uscc");
        let mut entries = Vec::new();
        for i in 0..5000u64 {
            let hash = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            entries.push(IndexEntry {
                hash,
                offset: i * 100,
                len: 99,
            });
        }
        // A repeated key: two records.
        entries.push(IndexEntry {
            hash: 7u64.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            offset: 1,
            len: 5,
        });
        write_index(&path, entries, 42)?;
        let index = KeyIndex::open(&path, 42)?.ok_or("no index")?;
        assert_eq!(index.count(), 5001);
        assert_eq!(
            index.lookup(3u64.wrapping_mul(0x9E37_79B9_7F4A_7C15))?,
            vec![(300, 99)]
        );
        assert_eq!(
            index.lookup(7u64.wrapping_mul(0x9E37_79B9_7F4A_7C15))?,
            vec![(1, 5), (700, 99)]
        );
        assert!(index.lookup(12345)?.is_empty());
        assert!(index.lookup(u64::MAX)?.is_empty());
        // Built under another key: not used.
        assert!(KeyIndex::open(&path, 43)?.is_none());
        assert!(KeyIndex::open(&dir.path().join("none.kix"), 42)?.is_none());
        Ok(())
    }
}
