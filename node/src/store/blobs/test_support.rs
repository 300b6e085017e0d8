//! Helpers shared by the blob store's unit tests: deterministic data, orders and source stores.

use std::path::Path;

use super::fs::io_err;
use super::{BlobError, BlobInfo, BlobStore};
use crate::model::chunks::MIN_CHUNK_SIZE;

pub(super) type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The chunk size of the tests: the smallest accepted.
pub(super) const CS: u32 = MIN_CHUNK_SIZE;

/// `len` pseudo-random bytes determined by `seed`.
pub(super) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Deterministic Fisher-Yates shuffle.
pub(super) fn shuffled(n: u32, mut seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).collect();
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    v
}

/// Lowercase hex BLAKE3 of `bytes`.
pub(super) fn hex_of(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Imports `data` into a fresh source store; returns (tempdir, store, info).
pub(super) fn source(data: &[u8]) -> Result<(tempfile::TempDir, BlobStore, BlobInfo), BlobError> {
    let dir = tempfile::tempdir().map_err(io_err("tempdir", Path::new("/tmp")))?;
    let store = BlobStore::open(dir.path().join("blobs"))?;
    let info = store.import_reader(data, CS)?;
    Ok((dir, store, info))
}
