//! The key indexes of our published versions, built at publish (and again, once, when a query
//! finds one missing: a crash before it was written, or a key the offer gained later), and the
//! reading of the records an index names: a lookup reads two small ranges of the index and the
//! few records it points at, never the dataset.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::identity::QuerySecret;
use crate::model::exchange::DataFormat;
use crate::model::query::value_text;
use crate::model::standard::CompiledStandard;
use crate::node::NodeError;
use crate::node::datasets::csv_cell;
use crate::store::query_index::{IndexEntry, index_path, write_index};

/// The text hashed under the index key into every index file's header.
const CHECK_TEXT: &str = "yrd key index check";

/// The header check of index files built under `secret`.
pub fn index_check(secret: &QuerySecret) -> u64 {
    secret.index_hash(CHECK_TEXT)
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> NodeError + 'a {
    move |source| NodeError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn bad_record(offset: u64, e: impl std::fmt::Display) -> NodeError {
    NodeError::invalid("record", format!("stored record at byte {offset}: {e}"))
}

fn csv_headers(blob: &Path) -> Result<Vec<String>, NodeError> {
    let file = std::fs::File::open(blob).map_err(io("open", blob))?;
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(file);
    Ok(csv
        .headers()
        .map_err(|e| bad_record(0, e))?
        .iter()
        .map(|c| c.trim_start_matches('\u{feff}').to_string())
        .collect())
}

/// Builds the index of each of `fields` for the version in `blob` (blob digest `digest`)
/// under `dir`, in one pass over the file; returns the records indexed.
pub fn build(
    blob: &Path,
    digest: &str,
    format: DataFormat,
    fields: &[String],
    standard: &CompiledStandard,
    secret: &QuerySecret,
    dir: &Path,
) -> Result<u64, NodeError> {
    let mut entries: Vec<Vec<IndexEntry>> = vec![Vec::new(); fields.len()];
    let mut records = 0u64;
    let mut add = |record: &Value, offset: u64, len: u32| {
        records += 1;
        for (field, list) in fields.iter().zip(entries.iter_mut()) {
            if let Some(text) = record.get(field).and_then(value_text) {
                list.push(IndexEntry {
                    hash: secret.index_hash(&text),
                    offset,
                    len,
                });
            }
        }
    };
    let file = std::fs::File::open(blob).map_err(io("open", blob))?;
    match format {
        DataFormat::Csv => {
            let size = file.metadata().map_err(io("read", blob))?.len();
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(file);
            let headers: Vec<String> = csv
                .headers()
                .map_err(|e| bad_record(0, e))?
                .iter()
                .map(|c| c.trim_start_matches('\u{feff}').to_string())
                .collect();
            let types = standard.column_types(&headers);
            let mut row = csv::StringRecord::new();
            let mut pending: Option<(Value, u64)> = None;
            loop {
                let more = csv.read_record(&mut row).map_err(|e| bad_record(0, e))?;
                let start = row.position().map(|p| p.byte()).unwrap_or(size);
                if let Some((record, at)) = pending.take() {
                    let end = if more { start } else { size };
                    add(&record, at, u32::try_from(end - at).unwrap_or(u32::MAX));
                }
                if !more {
                    break;
                }
                let mut record = serde_json::Map::new();
                for ((name, cell), t) in headers.iter().zip(row.iter()).zip(&types) {
                    record.insert(name.clone(), csv_cell(cell, t));
                }
                pending = Some((Value::Object(record), start));
            }
        }
        DataFormat::Jsonl | DataFormat::File => {
            let mut reader = BufReader::with_capacity(1 << 20, file);
            let mut buf = Vec::new();
            let mut offset = 0u64;
            loop {
                buf.clear();
                let n = reader
                    .read_until(b'\n', &mut buf)
                    .map_err(io("read", blob))?;
                if n == 0 {
                    break;
                }
                let at = offset;
                offset += n as u64;
                let line = buf.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let record: Value = serde_json::from_slice(line).map_err(|e| bad_record(at, e))?;
                add(&record, at, u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
    }
    let check = index_check(secret);
    for (field, list) in fields.iter().zip(entries) {
        let path = index_path(dir, digest, field);
        write_index(&path, list, check).map_err(io("write", &path))?;
    }
    Ok(records)
}

/// The records at `positions` of the version in `blob`, as JSON objects.
pub fn read_records(
    blob: &Path,
    format: DataFormat,
    positions: &[(u64, u32)],
    standard: &CompiledStandard,
) -> Result<Vec<Value>, NodeError> {
    RecordFile::open(blob, format)?.read(positions, standard)
}

/// A stored version opened for reading records by position: its file and, for CSV, its header
/// row. A blob is never modified in place (`store::blobs`), so a handle can be kept and read
/// by many lookups at once (positioned reads), saving the open, stat and header read of each.
#[derive(Debug)]
pub struct RecordFile {
    path: PathBuf,
    file: std::fs::File,
    headers: Option<Vec<String>>,
}

impl RecordFile {
    /// Opens the version in `blob`, stored as `format`.
    pub fn open(blob: &Path, format: DataFormat) -> Result<RecordFile, NodeError> {
        let file = std::fs::File::open(blob).map_err(io("open", blob))?;
        let headers = match format {
            DataFormat::Csv => Some(csv_headers(blob)?),
            _ => None,
        };
        Ok(RecordFile {
            path: blob.to_path_buf(),
            file,
            headers,
        })
    }

    /// The records at `positions`, as JSON objects.
    pub fn read(
        &self,
        positions: &[(u64, u32)],
        standard: &CompiledStandard,
    ) -> Result<Vec<Value>, NodeError> {
        let (blob, headers) = (&self.path, &self.headers);
        let types = headers.as_ref().map(|h| standard.column_types(h));
        let mut out = Vec::with_capacity(positions.len());
        let mut buf = Vec::new();
        for &(offset, len) in positions {
            buf.resize(len as usize, 0);
            self.file
                .read_exact_at(&mut buf, offset)
                .map_err(io("read", blob))?;
            let record = match (headers, &types) {
                (Some(headers), Some(types)) => {
                    let mut csv = csv::ReaderBuilder::new()
                        .has_headers(false)
                        .from_reader(buf.as_slice());
                    let mut row = csv::StringRecord::new();
                    if !csv
                        .read_record(&mut row)
                        .map_err(|e| bad_record(offset, e))?
                    {
                        return Err(bad_record(offset, "no row there"));
                    }
                    let mut record = serde_json::Map::new();
                    for ((name, cell), t) in headers.iter().zip(row.iter()).zip(types) {
                        record.insert(name.clone(), csv_cell(cell, t));
                    }
                    Value::Object(record)
                }
                _ => serde_json::from_slice(buf.trim_ascii()).map_err(|e| bad_record(offset, e))?,
            };
            out.push(record);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::query_index::KeyIndex;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn standard() -> Result<CompiledStandard, Box<dyn std::error::Error>> {
        let text = crate::samples::schema_json("enterprise-licence").ok_or("no sample")?;
        Ok(crate::model::standard::compile(&serde_json::from_str(
            text,
        )?)?)
    }

    /// Builds the `uscc` index of `blob` and looks every record's key up through it.
    fn round_trip(blob: &Path, format: DataFormat, records: &[Value]) -> TestResult {
        let standard = standard()?;
        let secret = QuerySecret::from_seed(&[3; 32]);
        let dir = blob.with_extension("idx");
        let keys = vec!["uscc".to_string()];
        let n = build(blob, "d", format, &keys, &standard, &secret, &dir)?;
        assert_eq!(n, records.len() as u64);
        let index = KeyIndex::open(&index_path(&dir, "d", "uscc"), index_check(&secret))?
            .ok_or("no index")?;
        for r in records {
            let key = r["uscc"].as_str().ok_or("uscc")?;
            let at = index.lookup(secret.index_hash(key))?;
            let found = read_records(blob, format, &at, &standard)?;
            assert!(found.contains(r), "{key}: {found:?}");
        }
        Ok(())
    }

    #[test]
    fn jsonl_and_csv_records_are_found_through_the_index() -> TestResult {
        let dir = tempfile::tempdir()?;
        let records = crate::samples::generate("enterprise-licence", 50, 9)?;
        let jsonl = dir.path().join("v.jsonl");
        let mut text = String::new();
        for r in &records {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        std::fs::write(&jsonl, text)?;
        round_trip(&jsonl, DataFormat::Jsonl, &records)?;
        // The same records as CSV, a quoted cell with a comma and a newline among them.
        let fields: Vec<String> = standard()?.field_names().to_vec();
        let mut out = csv::Writer::from_path(dir.path().join("v.csv"))?;
        out.write_record(&fields)?;
        let mut as_csv = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let mut r = r.clone();
            if i == 7 {
                r["address"] = Value::String("上海市, 第一行\n第二行".into());
            }
            let row: Vec<String> = fields
                .iter()
                .map(|f| match &r[f] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .collect();
            out.write_record(&row)?;
            as_csv.push(r);
        }
        out.flush()?;
        drop(out);
        round_trip(&dir.path().join("v.csv"), DataFormat::Csv, &as_csv)
    }
}
