//! The blob store streams a 64 MiB file through import, verification, a chunk-by-chunk partial
//! download and its finish with bounded memory. It measures the process's peak resident memory,
//! so it is the only test in this file: each integration-test file is its own process, and no
//! other test's allocations can count against the bound.

use std::fs::{self, File};
use std::io::{BufWriter, Write};

use yrd_node::model::chunks::DEFAULT_CHUNK_SIZE;
use yrd_node::store::blobs::BlobStore;

type TestResult = Result<(), Box<dyn std::error::Error>>;

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
    // Out of order (37 is coprime to 64, so every chunk once), as a download from peers is.
    for i in (0..64u32).map(|i| i * 37 % 64) {
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
