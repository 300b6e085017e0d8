//! Chunk tables: how a dataset file splits into fixed-size chunks, the hash of each chunk, and
//! the table's digest that a manifest signs. Wire data — a [`ChunkTable`] travels in the `ready`
//! frame of `/yrd/fetch/1` — and pure: no I/O (the blob store in `store::blobs` reads and writes
//! the files these tables describe).
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

/// Why a chunk table, or a chunk checked against one, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
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
    /// A chunk index beyond the table.
    #[error("chunk index {index} is out of range: the table has {count} chunks")]
    ChunkIndex {
        /// The index given.
        index: u32,
        /// Chunks in the table.
        count: u32,
    },
    /// Chunk bytes that do not match the table.
    #[error("chunk {index} refused: {reason}")]
    BadChunk {
        /// The chunk.
        index: u32,
        /// Wrong length or wrong hash.
        reason: String,
    },
}

/// Whether `s` is a BLAKE3 digest as tables and manifests write it: 64 lowercase hex digits.
pub fn is_valid_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks `chunk_size` is within [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`].
pub fn check_chunk_size(chunk_size: u32) -> Result<(), ChunkError> {
    if (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        Ok(())
    } else {
        Err(ChunkError::InvalidChunkSize { chunk_size })
    }
}

/// The number of chunks of a blob of `size` bytes (0 for a 0-byte blob).
pub fn chunks_for(size: u64, chunk_size: u32) -> u64 {
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
    pub fn validate(&self) -> Result<(), ChunkError> {
        check_chunk_size(self.chunk_size)?;
        let expected = chunks_for(self.size, self.chunk_size);
        if expected > u64::from(u32::MAX) {
            return Err(ChunkError::TooManyChunks {
                size: self.size,
                chunk_size: self.chunk_size,
            });
        }
        if self.chunks.len() as u64 != expected {
            return Err(ChunkError::InvalidTable {
                reason: format!(
                    "{} bytes in chunks of {} need {expected} chunk hashes, the table has {}",
                    self.size,
                    self.chunk_size,
                    self.chunks.len()
                ),
            });
        }
        if let Some(i) = self.chunks.iter().position(|c| !is_valid_digest(c)) {
            return Err(ChunkError::InvalidTable {
                reason: format!("chunk {i}'s hash is not 64 lowercase hex digits"),
            });
        }
        Ok(())
    }

    /// Lowercase hex BLAKE3 of the canonical encoding (see the module docs); fails on a table
    /// that does not [`validate`](Self::validate).
    pub fn digest(&self) -> Result<String, ChunkError> {
        self.validate()?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(CHUNK_TABLE_DOMAIN);
        hasher.update(&self.chunk_size.to_be_bytes());
        hasher.update(&self.size.to_be_bytes());
        let mut raw = [0u8; 32];
        for chunk in &self.chunks {
            hex::decode_to_slice(chunk, &mut raw).map_err(|e| ChunkError::InvalidTable {
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
    pub fn verify_chunk(&self, index: u32, bytes: &[u8]) -> Result<(), ChunkError> {
        let Some(len) = self.chunk_len(index) else {
            return Err(ChunkError::ChunkIndex {
                index,
                count: self.chunk_count(),
            });
        };
        if bytes.len() as u64 != u64::from(len) {
            return Err(ChunkError::BadChunk {
                index,
                reason: format!("it is {} bytes, the table says {len}", bytes.len()),
            });
        }
        let actual = blake3::hash(bytes);
        match self.chunks.get(index as usize) {
            Some(expected) if actual.to_hex().as_str() == expected => Ok(()),
            _ => Err(ChunkError::BadChunk {
                index,
                reason: format!("its hash {} differs from the table's", actual.to_hex()),
            }),
        }
    }

    /// The first 4 raw bytes of chunk `index`'s hash (the check bytes of the blob store's
    /// journal records).
    pub fn hash_prefix(&self, index: u32) -> Option<[u8; 4]> {
        let hex = self.chunks.get(index as usize)?.get(..8)?;
        let mut out = [0u8; 4];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const CS: u32 = MIN_CHUNK_SIZE;

    fn hex_of(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    /// The table of `data` in chunks of `chunk_size`, computed directly.
    fn table_of(data: &[u8], chunk_size: u32) -> ChunkTable {
        ChunkTable {
            chunk_size,
            size: data.len() as u64,
            chunks: data.chunks(chunk_size as usize).map(hex_of).collect(),
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn table_digest_encoding_and_sensitivity() -> TestResult {
        let data = pattern(CS as usize * 3 + 10);
        let table = table_of(&data, CS);
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
        assert!(matches!(t.digest(), Err(ChunkError::InvalidTable { .. })));
        let mut t = table.clone();
        t.chunks.pop();
        assert!(matches!(t.digest(), Err(ChunkError::InvalidTable { .. })));
        let mut t = table.clone();
        t.chunk_size = 1024;
        assert!(matches!(
            t.digest(),
            Err(ChunkError::InvalidChunkSize { chunk_size: 1024 })
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
    fn chunk_bounds_and_verification() -> TestResult {
        let cs = CS as usize;
        for (size, count) in [(0, 0), (1, 1), (cs, 1), (cs + 1, 2), (cs * 7 / 2, 4)] {
            let data = pattern(size);
            let table = table_of(&data, CS);
            table.validate()?;
            assert_eq!(table.chunk_count(), count, "size {size}");
            assert_eq!(chunks_for(table.size, CS), u64::from(count));
            assert_eq!(table.chunk_len(count), None);
            assert_eq!(table.chunk_offset(count), None);
            for i in 0..count {
                let start = i as usize * cs;
                let end = (start + cs).min(size);
                assert_eq!(table.chunk_offset(i), Some(start as u64));
                assert_eq!(table.chunk_len(i), Some((end - start) as u32));
                table.verify_chunk(i, &data[start..end])?;
                let mut prefix = [0u8; 4];
                prefix.copy_from_slice(&blake3::hash(&data[start..end]).as_bytes()[..4]);
                assert_eq!(table.hash_prefix(i), Some(prefix));
            }
            assert!(matches!(
                table.verify_chunk(count, b"x"),
                Err(ChunkError::ChunkIndex { index, count: c }) if index == count && c == count
            ));
        }
        let data = pattern(cs * 2);
        let table = table_of(&data, CS);
        assert!(matches!(
            table.verify_chunk(1, &data[..cs]),
            Err(ChunkError::BadChunk { index: 1, .. })
        ));
        assert!(matches!(
            table.verify_chunk(1, &data[cs..cs * 2 - 1]),
            Err(ChunkError::BadChunk { index: 1, .. })
        ));
        check_chunk_size(MIN_CHUNK_SIZE)?;
        check_chunk_size(MAX_CHUNK_SIZE)?;
        assert!(check_chunk_size(MIN_CHUNK_SIZE - 1).is_err());
        assert!(check_chunk_size(MAX_CHUNK_SIZE + 1).is_err());
        assert!(is_valid_digest(&hex_of(b"")));
        assert!(!is_valid_digest(&hex_of(b"").to_uppercase()));
        assert!(!is_valid_digest("../x"));
        Ok(())
    }
}
