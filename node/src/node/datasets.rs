//! Publishing dataset versions (R3): the file is validated record by record against the offer's
//! standard, kept as a content-addressed blob, described by a signed Manifest chained to the
//! previous version, and the offer in our catalogue points at the latest version.

use std::borrow::Cow;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::schemas::to_json;
use super::{Node, NodeError};
use crate::clock::now_rfc3339;
use crate::model::borrowed_json::Raw;
use crate::model::catalogue::{CatalogueEntry, SchemaRef};
use crate::model::chunks::DEFAULT_CHUNK_SIZE;
use crate::model::exchange::{DataFormat, Manifest};
use crate::model::signed::Signed;
use crate::model::standard::{self, CompiledStandard};
use crate::model::transfer::MAX_CONTROL_FRAME;
use crate::store::blobs::{BlobError, BlobInfo, BlobStore};

/// Record errors reported when a version is refused.
pub const MAX_REPORTED_ERRORS: usize = 10;
/// Longest JSON line accepted, in bytes.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// One reason a record was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordProblem {
    /// 1-based line number in the file.
    pub line: u64,
    /// JSON pointer of the field ("" for the record itself).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// The outcome of validating a file.
#[derive(Debug, Clone, Copy)]
pub struct Checked {
    /// Records found.
    pub records: u64,
}

/// Validates JSON Lines from `reader` against `standard`, collecting the first problems. Public
/// so that the validation benchmark measures exactly the path `publish` takes.
pub fn check_jsonl(
    reader: impl std::io::Read,
    standard: &CompiledStandard,
) -> Result<Checked, Vec<RecordProblem>> {
    let mut problems = Vec::new();
    let mut records = 0u64;
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    // A line that lies whole in the reader's buffer is checked there; only one that straddles
    // two fills is gathered here, and at most one byte past the limit of a line.
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                problems.push(RecordProblem {
                    line: number + 1,
                    path: String::new(),
                    message: format!("cannot read: {e}"),
                });
                break;
            }
        };
        if buf.is_empty() && line.is_empty() {
            break;
        }
        let (whole, used) = match memchr::memchr(b'\n', buf) {
            _ if buf.is_empty() => (true, 0), // the file's last line, without its `\n`
            Some(i) => (true, i + 1),
            None => (false, buf.len()),
        };
        let room = (MAX_LINE_BYTES + 1).saturating_sub(line.len());
        let too_long = used > room;
        if too_long || !whole || !line.is_empty() {
            line.extend_from_slice(&buf[..used.min(room)]);
        }
        let verdict = if too_long || whole {
            number += 1;
            let text = if line.is_empty() {
                &buf[..used]
            } else {
                &line[..]
            };
            Some(check_jsonl_line(standard, number, text, &mut problems))
        } else {
            None
        };
        reader.consume(used);
        match verdict {
            None => continue,
            Some(Line::Stop) => break,
            Some(Line::Record) => records += 1,
            Some(Line::Blank) => {}
        }
        line.clear();
        if problems.len() >= MAX_REPORTED_ERRORS {
            break;
        }
    }
    verdict(records, problems)
}

/// What one line of JSON Lines was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// Blank, or not UTF-8 (a problem, not a record).
    Blank,
    /// A record (valid or not).
    Record,
    /// Too long: nothing after it is read.
    Stop,
}

/// Checks line `number` of JSON Lines (`line` with its `\n`, if it has one), adding its
/// problems. The one rule for a line, whether the file is read in one pass ([`check_jsonl`])
/// or in blocks while it arrives ([`check_jsonl_block`]).
pub(crate) fn check_jsonl_line(
    standard: &CompiledStandard,
    number: u64,
    line: &[u8],
    problems: &mut Vec<RecordProblem>,
) -> Line {
    if line.len() > MAX_LINE_BYTES {
        problems.push(RecordProblem {
            line: number,
            path: String::new(),
            message: format!("line longer than {MAX_LINE_BYTES} bytes"),
        });
        return Line::Stop;
    }
    // The same verdict as `std::str::from_utf8`, several times faster on non-ASCII text.
    let text = match simdutf8::basic::from_utf8(line) {
        Ok(t) => t.trim(),
        Err(_) => {
            problems.push(RecordProblem {
                line: number,
                path: String::new(),
                message: "not UTF-8".into(),
            });
            return Line::Blank;
        }
    };
    if text.is_empty() {
        return Line::Blank;
    }
    // A valid record is judged without building a `Value`; reasons are the owned path's.
    match standard.check_text(text) {
        Ok(Ok(())) => {}
        Ok(Err(errors)) => push_errors(number, errors, problems),
        Err(e) => problems.push(RecordProblem {
            line: number,
            path: String::new(),
            message: format!("not a JSON record: {e}"),
        }),
    }
    Line::Record
}

/// What a block of whole lines of JSON Lines held.
#[derive(Debug, Default)]
pub(crate) struct BlockChecked {
    /// Lines in the block.
    pub lines: u64,
    /// Records among them.
    pub records: u64,
    /// The first problems, numbered from 1 at the block's first line.
    pub problems: Vec<RecordProblem>,
    /// A line too long ended the check.
    pub stop: bool,
}

/// Checks a block of whole lines of JSON Lines (each ending in `\n` but perhaps the file's
/// last), as [`check_jsonl`] checks them, numbering lines from 1: blocks checked on several
/// threads and merged in file order give [`check_jsonl`]'s verdict.
pub(crate) fn check_jsonl_block(standard: &CompiledStandard, block: &[u8]) -> BlockChecked {
    let mut out = BlockChecked::default();
    let mut rest = block;
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        out.lines += 1;
        match check_jsonl_line(standard, out.lines, line, &mut out.problems) {
            Line::Stop => {
                out.stop = true;
                break;
            }
            Line::Record => out.records += 1,
            Line::Blank => {}
        }
        if out.problems.len() >= MAX_REPORTED_ERRORS {
            break;
        }
    }
    out
}

/// Validates one record, adding its problems (found at `line`).
fn check_record(
    standard: &CompiledStandard,
    line: u64,
    record: &serde_json::Value,
    problems: &mut Vec<RecordProblem>,
) {
    if let Err(errors) = standard.validate(record) {
        push_errors(line, errors, problems);
    }
}

/// Adds a record's reasons (found at `line`) to the problems.
fn push_errors(line: u64, errors: Vec<standard::RecordError>, problems: &mut Vec<RecordProblem>) {
    problems.extend(errors.into_iter().map(|e| RecordProblem {
        line,
        path: e.path,
        message: e.message,
    }));
}

/// Accepted when nothing was found; otherwise the first problems.
pub(crate) fn verdict(
    records: u64,
    mut problems: Vec<RecordProblem>,
) -> Result<Checked, Vec<RecordProblem>> {
    if problems.is_empty() {
        Ok(Checked { records })
    } else {
        problems.truncate(MAX_REPORTED_ERRORS);
        Err(problems)
    }
}

/// The JSON value of one CSV cell, by the types the standard allows for its column: an empty
/// cell is null where null is allowed; numbers, integers and booleans are parsed where the
/// standard asks for them; everything else stays a string (and validation says if it must not).
pub(crate) fn csv_cell(cell: &str, types: &[String]) -> serde_json::Value {
    csv_raw(cell, types).to_value()
}

/// [`csv_cell`] borrowing the cell: the one rule for a cell's value, on either path.
fn csv_raw<'a>(cell: &'a str, types: &[String]) -> Raw<'a> {
    let allows = |t: &str| types.iter().any(|x| x == t);
    if cell.is_empty() && allows("null") {
        return Raw::Null;
    }
    if allows("integer") {
        if let Ok(i) = cell.parse::<i64>() {
            return Raw::Number(i.into());
        }
    }
    if allows("number") {
        if let Ok(n) = serde_json::from_str::<serde_json::Number>(cell) {
            return Raw::Number(n);
        }
    }
    if allows("boolean") {
        match cell {
            "true" => return Raw::Bool(true),
            "false" => return Raw::Bool(false),
            _ => {}
        }
    }
    Raw::String(Cow::Borrowed(cell))
}

/// Validates CSV (a header row naming the standard's fields, then one record per row). Public
/// so that the fuzz target (`fuzz/`) checks exactly the path `publish` takes.
pub fn check_csv(
    reader: impl std::io::Read,
    standard: &CompiledStandard,
) -> Result<Checked, Vec<RecordProblem>> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(reader);
    let problem = |line: u64, message: String| RecordProblem {
        line,
        path: String::new(),
        message,
    };
    let headers: Vec<String> = match csv.headers() {
        Ok(h) => h
            .iter()
            .map(|c| c.trim_start_matches('\u{feff}').to_string())
            .collect(),
        Err(e) => return Err(vec![problem(1, format!("cannot read the header row: {e}"))]),
    };
    let fields = standard.fields();
    let mut types = Vec::with_capacity(headers.len());
    for h in &headers {
        match fields.iter().find(|f| &f.name == h) {
            Some(f) => types.push(f.types.clone()),
            None => {
                return Err(vec![problem(
                    1,
                    format!("column {h:?} is not a field of the standard"),
                )]);
            }
        }
    }
    let unique_headers = headers
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len()
        == headers.len();
    let mut problems = Vec::new();
    let mut records = 0u64;
    let mut row = csv::StringRecord::new();
    loop {
        let line = csv.position().line();
        match csv.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                problems.push(problem(line.max(2), format!("malformed CSV: {e}")));
                break;
            }
        }
        let line = row.position().map(|p| p.line()).unwrap_or(line);
        records += 1;
        // The row borrowed; a valid one is judged without building a `Value`. A header named
        // twice collapses to one member in a `Value` (the last cell wins), so such files are
        // always judged on the `Value`.
        let record = Raw::Object(
            headers
                .iter()
                .zip(row.iter())
                .zip(&types)
                .map(|((name, cell), t)| (Cow::Borrowed(name.as_str()), csv_raw(cell, t)))
                .collect(),
        );
        if !(unique_headers && standard.is_valid_raw(&record)) {
            check_record(standard, line, &record.to_value(), &mut problems);
        }
        if problems.len() >= MAX_REPORTED_ERRORS {
            break;
        }
    }
    verdict(records, problems)
}

fn describe(problems: &[RecordProblem]) -> String {
    problems
        .iter()
        .map(|p| {
            let at = if p.path.is_empty() {
                String::new()
            } else {
                format!(" at {}", p.path)
            };
            format!("  line {}{at}: {}", p.line, p.message)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Bytes of a fetch's first reply kept for the manifest and the frame's envelope; the rest of
/// [`MAX_CONTROL_FRAME`] is the chunk table.
const READY_RESERVE: usize = 1 << 20;
/// Bytes of one chunk's entry in a chunk table as JSON: 64 hex digits, quotes and a comma.
const CHUNK_ENTRY_BYTES: usize = 67;
/// The largest version we publish: its chunk table (in [`DEFAULT_CHUNK_SIZE`] chunks) must fit
/// the first reply of a fetch, a control frame of at most [`MAX_CONTROL_FRAME`] bytes, or no
/// member could ever fetch it (about 229 GiB). Refusing at publish is simpler and clearer than
/// paging the table, and no bureau's dataset is near the bound.
pub const MAX_VERSION_BYTES: u64 =
    ((MAX_CONTROL_FRAME - READY_RESERVE) / CHUNK_ENTRY_BYTES) as u64 * DEFAULT_CHUNK_SIZE as u64;

/// Refuses a version of `size` bytes above [`MAX_VERSION_BYTES`].
fn check_servable_size(file: &Path, size: u64) -> Result<(), NodeError> {
    if size > MAX_VERSION_BYTES {
        return Err(NodeError::invalid(
            "file",
            format!(
                "{}: {size} bytes is too large to publish: a version is at most {MAX_VERSION_BYTES} \
                 bytes ({} GiB), so that its chunk table fits the {} MiB first reply of a fetch; \
                 split the data into several datasets",
                file.display(),
                MAX_VERSION_BYTES >> 30,
                MAX_CONTROL_FRAME >> 20
            ),
        ));
    }
    Ok(())
}

impl Node {
    /// The node's blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    /// Checks every record of a stored blob against `standard`, off the runtime. The outer error
    /// is the node's own (the blob unreadable, the task lost); the inner one lists the records
    /// that do not conform.
    pub(crate) async fn check_stored_records(
        &self,
        digest: &str,
        format: DataFormat,
        standard: CompiledStandard,
    ) -> Result<Result<Checked, Vec<RecordProblem>>, NodeError> {
        let (blobs, digest) = (self.inner.blobs.clone(), digest.to_string());
        tokio::task::spawn_blocking(move || {
            let reader = blobs.open_read(&digest)?;
            Ok(if format == DataFormat::Csv {
                check_csv(reader, &standard)
            } else {
                check_jsonl(reader, &standard)
            })
        })
        .await
        .map_err(NodeError::task("validating the records"))?
    }

    /// Deletes a blob nothing should keep (refused records), off the runtime: it may be a large
    /// file. The caller is already failing for another reason, so a failure here is logged, not
    /// returned; the file stays on disk until removed by hand.
    pub(crate) async fn discard_blob(&self, digest: &str) {
        let (blobs, d) = (self.inner.blobs.clone(), digest.to_string());
        match tokio::task::spawn_blocking(move || blobs.remove(&d)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(digest, error = %e, "refused blob not removed"),
            Err(e) => tracing::error!(digest, error = %e, "refused blob not removed"),
        }
    }

    /// Deletes a partial download that will not resume, off the runtime (a directory of up to
    /// the dataset's size); a failure is logged.
    pub(crate) async fn discard_partial(&self, id: &str) {
        let (blobs, i) = (self.inner.blobs.clone(), id.to_string());
        match tokio::task::spawn_blocking(move || blobs.abort_partial(&i)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(transfer = id, error = %e, "partial download not removed")
            }
            Err(e) => tracing::error!(transfer = id, error = %e, "partial download not removed"),
        }
    }

    /// The standard `r` names, compiled (it must be one we hold).
    pub(crate) fn compiled_standard(&self, r: &SchemaRef) -> Result<CompiledStandard, NodeError> {
        let shared = self.shared_standard(r)?;
        Ok(CompiledStandard::clone(&shared))
    }

    /// The standard `r` names, compiled once and shared (compiling costs milliseconds; every
    /// fetch, query and publish needs one).
    pub(crate) fn shared_standard(
        &self,
        r: &SchemaRef,
    ) -> Result<std::sync::Arc<CompiledStandard>, NodeError> {
        let key = format!("{}@{}", r.id, r.version);
        // The document is read (a clone of the whole schema) only to compile it: a standard
        // once held is never dropped, so a compiled one needs no look at it.
        self.inner.standards.compiled(&key, || {
            let doc = self.schema_doc(&r.id, Some(&r.version))?;
            standard::compile(&doc.document.schema)
                .map_err(|e| NodeError::invalid("standard", e.to_string()))
        })
    }

    /// Version `version` (the latest when None) of `dataset` from `publisher` (ours when
    /// None), if we hold it: one read, whatever the number of versions.
    pub fn manifest(
        &self,
        publisher: Option<&str>,
        dataset: &str,
        version: Option<u64>,
    ) -> Result<Option<Signed<Manifest>>, NodeError> {
        let publisher = publisher
            .map(str::to_string)
            .unwrap_or_else(|| self.peer_id_text().to_owned());
        self.store()
            .manifest(&publisher, dataset, version)?
            .map(serde_json::from_value::<Signed<Manifest>>)
            .transpose()
            .map_err(NodeError::Encode)
    }

    /// Every version we hold of `dataset` from `publisher` (ours when None), oldest first.
    pub fn manifests(
        &self,
        publisher: Option<&str>,
        dataset: &str,
    ) -> Result<Vec<Signed<Manifest>>, NodeError> {
        let publisher = publisher
            .map(str::to_string)
            .unwrap_or_else(|| self.peer_id_text().to_owned());
        let mut out = Vec::new();
        for raw in self.store().manifests(&publisher, dataset)? {
            match serde_json::from_value::<Signed<Manifest>>(raw) {
                Ok(m) => out.push(m),
                Err(e) => {
                    tracing::error!(dataset, error = %e, "unreadable stored manifest skipped")
                }
            }
        }
        out.sort_by_key(|m| m.document.version);
        Ok(out)
    }

    /// Publishes a new version of one of our offers from a file on this machine.
    pub async fn publish_dataset(
        &self,
        dataset: &str,
        file: &Path,
        format: DataFormat,
    ) -> Result<Signed<Manifest>, NodeError> {
        self.publish_version(dataset, file, format, true).await
    }

    /// Test hook: publishes as [`Self::publish_dataset`] does but without checking the records
    /// (the manifest says 0 records), as a faulty or hostile publisher would, so that tests can
    /// show what a fetcher does with records that do not conform.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub async fn publish_unchecked_for_test(
        &self,
        dataset: &str,
        file: &Path,
        format: DataFormat,
    ) -> Result<Signed<Manifest>, NodeError> {
        self.publish_version(dataset, file, format, false).await
    }

    async fn publish_version(
        &self,
        dataset: &str,
        file: &Path,
        format: DataFormat,
        check_records: bool,
    ) -> Result<Signed<Manifest>, NodeError> {
        let _guard = self.inner.write_lock.lock().await;
        let offer: CatalogueEntry = self
            .offers()?
            .into_iter()
            .find(|o| o.offer.identifier == dataset)
            .ok_or_else(|| {
                NodeError::NotFound(format!(
                    "{dataset:?} is not one of our offers; add it with `yrd catalog add` first"
                ))
            })?;
        let schema_ref = offer.conforms_to.clone();
        let compiled = match format {
            DataFormat::File => {
                refuse_opaque_personal(dataset, &self.compiled_standard(&schema_ref)?)?;
                None
            }
            DataFormat::Jsonl | DataFormat::Csv => Some(self.compiled_standard(&schema_ref)?),
        };
        // A version whose chunk table does not fit a control frame could never be fetched.
        if let Ok(meta) = tokio::fs::metadata(file).await {
            check_servable_size(file, meta.len())?;
        }
        // Import first, then validate the stored blob: what is validated is exactly what is
        // published, even if the source file changes meanwhile.
        let blobs = self.inner.blobs.clone();
        let path: PathBuf = file.to_path_buf();
        let info: BlobInfo =
            tokio::task::spawn_blocking(move || blobs.import_file(&path, DEFAULT_CHUNK_SIZE))
                .await
                .map_err(NodeError::task("importing the file"))?
                .map_err(|e| import_error(file, e))?;
        crate::failpoint::pause(&self.inner.data_dir, "publish.after_blob").await;
        if let Err(e) = check_servable_size(file, info.size) {
            // The file grew while it was imported.
            if !self.store().manifest_names_blob(&info.digest)? {
                self.discard_blob(&info.digest).await;
            }
            return Err(e);
        }
        let previous = self.manifest(None, dataset, None)?;
        let records = match compiled.filter(|_| check_records) {
            None => 0,
            Some(standard) => {
                let checked = self
                    .check_stored_records(&info.digest, format, standard)
                    .await?;
                match checked {
                    Ok(c) => c.records,
                    Err(problems) => {
                        // Keep no refused bytes, unless a published version is the same file.
                        if !self.store().manifest_names_blob(&info.digest)? {
                            self.discard_blob(&info.digest).await;
                        }
                        return Err(NodeError::invalid(
                            "file",
                            format!(
                                "{}: version refused, records do not conform to {}@{}:\n{}",
                                file.display(),
                                schema_ref.id,
                                schema_ref.version,
                                describe(&problems)
                            ),
                        ));
                    }
                }
            }
        };
        if previous
            .as_ref()
            .is_some_and(|p| p.document.digest == info.digest)
        {
            return Err(NodeError::Conflict(format!(
                "{dataset}: the file is identical to version {} (digest {}); nothing to publish",
                previous.as_ref().map(|p| p.document.version).unwrap_or(0),
                info.digest
            )));
        }
        let manifest = Manifest {
            dataset: dataset.to_string(),
            publisher: self.peer_id_text().to_owned(),
            region: self.region(),
            version: previous
                .as_ref()
                .map(|p| p.document.version + 1)
                .unwrap_or(1),
            previous: previous.as_ref().map(|p| p.document.digest.clone()),
            schema: if format == DataFormat::File {
                None
            } else {
                Some(schema_ref)
            },
            format,
            digest: info.digest.clone(),
            size: info.size,
            record_count: records,
            chunk_size: info.chunk_table.chunk_size,
            chunk_table_digest: info.chunk_table.digest().map_err(NodeError::from)?,
            published_at: now_rfc3339(),
            derived_from: None,
        };
        let signed = Signed::sign(manifest, self.inner.key.signing_key())?;
        let m = &signed.document;
        // Recorded before the version is stored: a crash in between leaves a record of a
        // version that was never stored nor answered (the publish, retried, is recorded again),
        // never a version held, served and announced with no record.
        let mut r = self.new_record(crate::model::provenance::RecordKind::DatasetPublished);
        r.dataset = Some(dataset.to_string());
        r.version = Some(m.version);
        r.data_digest = Some(m.digest.clone());
        self.record(
            r,
            None,
            super::provenance::doc(&signed).into_iter().collect(),
        )
        .await;
        crate::failpoint::pause(&self.inner.data_dir, "publish.after_record").await;
        self.store()
            .put_manifest(&m.publisher, dataset, m.version, &to_json(&signed)?)?;
        let mut entry = offer;
        entry.latest_version = Some(m.version);
        entry.byte_size = Some(m.size);
        entry.checksum = Some(m.digest.clone());
        entry.modified = now_rfc3339();
        self.store()
            .put_local(super::catalogue::OFFERS, dataset, &to_json(&entry)?)?;
        // issue_catalogue flushes, so the manifest is durable before we answer.
        self.issue_catalogue().await?;
        self.index_version(&entry, &signed).await;
        self.derive_public_copy_soon(entry.clone(), signed.clone());
        tracing::info!(
            dataset,
            version = m.version,
            records = m.record_count,
            size = m.size,
            "dataset version published"
        );
        Ok(signed)
    }
}

/// An opaque file cannot be projected, so it could only leave with its personal fields in clear:
/// refused for an offer whose standard marks any (whatever the share type: without a grant they
/// would leave unmasked, and no grant could mask them).
fn refuse_opaque_personal(dataset: &str, standard: &CompiledStandard) -> Result<(), NodeError> {
    let personal = standard.personal_fields();
    if personal.is_empty() {
        return Ok(());
    }
    Err(NodeError::invalid(
        "format",
        format!(
            "{dataset}: a version in format file is refused: its standard marks personal fields \
             ({}), which must leave masked, and an opaque file cannot be masked; publish the \
             records as jsonl or csv",
            personal.join(", ")
        ),
    ))
}

/// A file the operator named that cannot be opened or read is their input at fault; a failure
/// writing the blob store is the node's own.
fn import_error(file: &Path, e: BlobError) -> NodeError {
    match e {
        BlobError::Io { ref path, .. } if path == file => {
            NodeError::invalid("file", format!("{}: {e}", file.display()))
        }
        other => NodeError::Blob(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chunk_table_of_the_largest_version_fits_a_control_frame() {
        use crate::model::chunks::{ChunkTable, chunks_for};
        let count = chunks_for(MAX_VERSION_BYTES, DEFAULT_CHUNK_SIZE);
        let table = ChunkTable {
            chunk_size: DEFAULT_CHUNK_SIZE,
            size: MAX_VERSION_BYTES,
            chunks: vec!["f".repeat(64); count as usize],
        };
        let bytes = serde_json::to_vec(&table)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        assert!(bytes + READY_RESERVE <= MAX_CONTROL_FRAME, "{bytes}");
        let file = Path::new("big.bin");
        assert!(check_servable_size(file, MAX_VERSION_BYTES).is_ok());
        let refused = check_servable_size(file, MAX_VERSION_BYTES + 1)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("too large"), "{refused}");
    }

    #[test]
    fn jsonl_problems_name_line_and_field() -> Result<(), Box<dyn std::error::Error>> {
        let schema = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "properties": {"a": {"type": "string"}, "n": {"type": "integer"}}, "required": ["a"]
        });
        let standard = standard::compile(&schema)?;
        let good = "{\"a\":\"x\",\"n\":1}\n\n{\"a\":\"y\"}\n";
        assert_eq!(
            check_jsonl(good.as_bytes(), &standard)
                .map(|c| c.records)
                .ok(),
            Some(2)
        );
        let bad = "{\"a\":\"x\"}\n{\"a\":1}\n{\"n\":\"z\",\"a\":\"q\"}\nnot json\n";
        let problems = check_jsonl(bad.as_bytes(), &standard)
            .err()
            .unwrap_or_default();
        let lines: Vec<(u64, &str)> = problems.iter().map(|p| (p.line, p.path.as_str())).collect();
        assert_eq!(lines, vec![(2, "/a"), (3, "/n"), (4, "")]);
        Ok(())
    }

    /// Reads at most `piece` bytes a call, so lines straddle the reader's fills.
    struct Trickle<'a> {
        bytes: &'a [u8],
        piece: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.piece.min(out.len()).min(self.bytes.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    /// `check_jsonl` as it read lines before it checked them in the reader's buffer: one bounded
    /// `read_until` a line.
    fn check_jsonl_by_read_until(bytes: &[u8], standard: &CompiledStandard) -> String {
        let mut reader = BufReader::new(bytes);
        let (mut problems, mut records, mut number) = (Vec::new(), 0u64, 0u64);
        let mut line = Vec::new();
        loop {
            line.clear();
            let mut limited = std::io::Read::take(&mut reader, MAX_LINE_BYTES as u64 + 1);
            match limited.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            number += 1;
            match check_jsonl_line(standard, number, &line, &mut problems) {
                Line::Stop => break,
                Line::Record => records += 1,
                Line::Blank => {}
            }
            if problems.len() >= MAX_REPORTED_ERRORS {
                break;
            }
        }
        format!("{:?}", verdict(records, problems))
    }

    #[test]
    fn lines_are_read_as_one_read_until_a_line_read_them() -> Result<(), Box<dyn std::error::Error>>
    {
        let schema = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "properties": {"a": {"type": "string"}}, "required": ["a"]
        });
        let standard = standard::compile(&schema)?;
        let mut cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\n".to_vec(),
            b"{\"a\":\"x\"}".to_vec(),
            b"{\"a\":\"x\"}\n{\"a\":1}\n\n \r\n{\"a\":\"y\"}\r\n\xff\n{\"b\":2}".to_vec(),
        ];
        let record = b"{\"a\":\"0123456789\"}\n";
        for len in [
            MAX_LINE_BYTES - 1,
            MAX_LINE_BYTES,
            MAX_LINE_BYTES + 1,
            MAX_LINE_BYTES + 2,
        ] {
            // A line of `len` bytes with its newline between records, and one at the end.
            let mut long = record.repeat(3);
            long.extend(std::iter::repeat_n(b' ', len - 1));
            long.push(b'\n');
            long.extend_from_slice(record);
            cases.push(long);
            let mut last = record.repeat(2);
            last.extend(std::iter::repeat_n(b' ', len));
            cases.push(last);
        }
        cases.push(b"{\"a\":1}\n".repeat(12));
        for bytes in &cases {
            let expected = check_jsonl_by_read_until(bytes, &standard);
            // Reads of a byte or a few only where the file is small (debug builds are slow).
            let pieces = [1, 5, 4096, 1 << 20, usize::MAX];
            for piece in pieces
                .into_iter()
                .filter(|&p| p >= 4096 || bytes.len() < 1000)
            {
                let got = check_jsonl(Trickle { bytes, piece }, &standard);
                assert_eq!(
                    format!("{got:?}"),
                    expected,
                    "{} bytes in {piece}",
                    bytes.len()
                );
            }
        }
        Ok(())
    }

    #[test]
    fn csv_cells_follow_the_standard_and_problems_name_lines()
    -> Result<(), Box<dyn std::error::Error>> {
        let schema = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "properties": {"a": {"type": "string"}, "n": {"type": "integer"},
                           "x": {"type": ["number", "null"]}, "b": {"type": "boolean"}},
            "required": ["a", "n"], "additionalProperties": false
        });
        let standard = standard::compile(&schema)?;
        let good = "\u{feff}a,n,x,b\n\"hello, world\",1,2.5,true\n007,2,,false\n";
        assert_eq!(
            check_csv(good.as_bytes(), &standard)
                .map(|c| c.records)
                .ok(),
            Some(2)
        );
        let bad = "a,n,x,b\nq,1,,true\nq,one,,true\nq,3,,maybe\n";
        let problems = check_csv(bad.as_bytes(), &standard)
            .err()
            .unwrap_or_default();
        let lines: Vec<(u64, &str)> = problems.iter().map(|p| (p.line, p.path.as_str())).collect();
        assert_eq!(lines, vec![(3, "/n"), (4, "/b")]);
        let unknown = check_csv("a,zzz\nq,1\n".as_bytes(), &standard)
            .err()
            .unwrap_or_default();
        assert!(unknown.first().is_some_and(|p| p.message.contains("zzz")));
        let ragged = check_csv("a,n\nq,1,extra\n".as_bytes(), &standard)
            .err()
            .unwrap_or_default();
        assert!(
            ragged
                .first()
                .is_some_and(|p| p.message.contains("malformed CSV"))
        );
        // A column named twice: the record's value is the last cell, as in a JSON object.
        let twice = check_csv("a,n,n\nq,1,x\nq,x,1\n".as_bytes(), &standard)
            .err()
            .unwrap_or_default();
        let lines: Vec<(u64, &str)> = twice.iter().map(|p| (p.line, p.path.as_str())).collect();
        assert_eq!(lines, vec![(2, "/n")]);
        // ... so it has one member fewer than cells: three cells, two properties.
        let schema = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "properties": {"a": {}, "n": {}, "b": {}}, "minProperties": 3
        });
        let three = standard::compile(&schema)?;
        assert!(check_csv("a,n,b\nq,1,2\n".as_bytes(), &three).is_ok());
        let twice = check_csv("a,n,n\nq,1,2\n".as_bytes(), &three)
            .err()
            .unwrap_or_default();
        let lines: Vec<(u64, &str)> = twice.iter().map(|p| (p.line, p.path.as_str())).collect();
        assert_eq!(lines, vec![(2, "")]);
        Ok(())
    }
}
