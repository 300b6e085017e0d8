//! The journal of a partial download, `partial/<id>/present.log`: which chunks are written and
//! durable. It owns the record encoding, loading the journal (ignoring torn or garbage records)
//! and rewriting it atomically; when to append and when to rewrite is the
//! [`Partial`](super::Partial)'s business. The record format and the durability rules are in the
//! module docs of `store::blobs`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use super::BlobError;
use super::fs::{io_err, write_atomic};
use super::partial::Bits;
use crate::model::chunks::ChunkTable;

/// The journal's file name inside `partial/<id>/`.
pub(super) const JOURNAL_FILE: &str = "present.log";
/// Bytes per journal record.
pub(super) const JOURNAL_RECORD: usize = 8;

/// Writes the journal at `path` atomically, one record per present chunk.
pub(super) fn write_journal(
    path: &Path,
    table: &ChunkTable,
    present: &Bits,
) -> Result<(), BlobError> {
    write_atomic(path, |out| {
        for i in (0..table.chunk_count()).filter(|&i| present.get(i)) {
            out.write_all(&journal_record(table, i))?;
        }
        Ok(())
    })
}

/// The journal record of chunk `index`: index (u32 BE), first 4 bytes of its hash.
pub(super) fn journal_record(table: &ChunkTable, index: u32) -> [u8; JOURNAL_RECORD] {
    let mut record = [0u8; JOURNAL_RECORD];
    record[..4].copy_from_slice(&index.to_be_bytes());
    record[4..].copy_from_slice(&table.hash_prefix(index).unwrap_or_default());
    record
}

/// Opens the journal for appending.
pub(super) fn open_journal(path: &Path) -> Result<File, BlobError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err("open", path))
}

/// Loads the journal into `present`; `false` if it had torn or invalid records (rewrite it).
pub(super) fn load_journal(
    path: &Path,
    table: &ChunkTable,
    present: &mut Bits,
) -> Result<bool, BlobError> {
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
    use std::fs::{self, OpenOptions};
    use std::io::Write;

    use super::super::PARTIAL_DIR;
    use super::super::test_support::{CS, TestResult, random_bytes, source};
    use super::*;
    use crate::store::blobs::BlobStore;

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
}
