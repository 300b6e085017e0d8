//! Writing new blobs: [`BlobWriter`] streams bytes into `tmp/` while the [`Chunker`] hashes
//! them into the whole-content digest and the chunk table in the same pass, then syncs the file
//! and moves it into `objects/` under its digest. It owns `BlobStore::writer` and the
//! `import_*` entry points built on it. Memory stays bounded: one 1 MiB buffer and the table.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::fs::{IO_BUF, io_err};
use super::{BlobError, BlobInfo, BlobStore, TMP_DIR, process_nonce};
use crate::model::chunks::{ChunkError, ChunkTable, MIN_CHUNK_SIZE, check_chunk_size};

/// Hashes a stream into the whole-content digest and the chunk table at once.
#[derive(Debug)]
pub(super) struct Chunker {
    chunk_size: u32,
    whole: blake3::Hasher,
    chunk: blake3::Hasher,
    in_chunk: usize,
    size: u64,
    chunks: Vec<String>,
}

impl Chunker {
    pub(super) fn new(chunk_size: u32) -> Self {
        Self {
            chunk_size,
            whole: blake3::Hasher::new(),
            chunk: blake3::Hasher::new(),
            in_chunk: 0,
            size: 0,
            chunks: Vec::new(),
        }
    }

    pub(super) fn update(&mut self, mut data: &[u8]) {
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

    pub(super) fn finish(mut self) -> Result<BlobInfo, BlobError> {
        if self.in_chunk > 0 {
            self.chunks.push(self.chunk.finalize().to_hex().to_string());
        }
        if u32::try_from(self.chunks.len()).is_err() {
            return Err(ChunkError::TooManyChunks {
                size: self.size,
                chunk_size: self.chunk_size,
            }
            .into());
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

impl BlobStore {
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{CS, TestResult, hex_of, random_bytes};
    use super::*;

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
}
