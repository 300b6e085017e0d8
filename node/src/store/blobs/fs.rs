//! File helpers of the blob store: durable writes (`fsync` of files and directories, atomic
//! replacement through a synced temporary file), positioned and streaming reads through one
//! bounded buffer, and the mapping of OS errors to [`BlobError::Io`] naming the operation and
//! path. Plain blocking `std` I/O; they know nothing of blobs or chunks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::BlobError;

/// Size of the streaming buffer.
pub(super) const IO_BUF: usize = 1 << 20;

/// Maps an OS error of `op` on `path` to [`BlobError::Io`].
pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> BlobError + 'a {
    move |source| BlobError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Feeds all of `file` to `sink` through one bounded buffer.
pub(super) fn stream_file(
    file: &mut File,
    path: &Path,
    mut sink: impl FnMut(&[u8]),
) -> Result<(), BlobError> {
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
pub(super) fn read_at(mut file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// `fsync`s a directory so renames and new entries in it are durable (a no-op off Unix).
pub(super) fn sync_dir(dir: &Path) -> Result<(), BlobError> {
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
pub(super) fn write_atomic(
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

/// Creates (or truncates) `path` as a sparse file of `size` bytes, open read-write; synced when
/// `sync` (a caller that syncs the directory afterwards and can recover a lost length need not).
pub(super) fn create_data_file(path: &Path, size: u64, sync: bool) -> Result<File, BlobError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_err("create", path))?;
    file.set_len(size).map_err(io_err("resize", path))?;
    if sync {
        file.sync_all().map_err(io_err("sync", path))?;
    }
    Ok(file)
}
