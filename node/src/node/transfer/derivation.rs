//! Masked deliveries (R5, R7): what a peer receives instead of the original version. Under a
//! grant: only the granted fields, in granted order, masked by the grant's rules; for an
//! unconditional offer: every field. In both, each personal field of the standard that no grant
//! names with a rule of its own leaves masked by its default (`x-personal-data`, `x-mask`), so no
//! personal field ever leaves in clear. Hashes use a salt only this provider can compute,
//! distinct per grant. A delivery is derived once per grant (or unconditional offer) and version,
//! stored as a blob with its own signed manifest naming the original, the grant if any and the
//! projection applied (kept in the `Derived` tree), and served again from there. A version that
//! cannot be projected (an opaque file) is delivered only when the projection is the whole
//! record, and refused, saying why, otherwise.

use std::sync::Arc;
use std::time::Instant;

use super::blocking_err;
use crate::clock::now_rfc3339;
use crate::model::catalogue::{CatalogueEntry, ShareType};
use crate::model::chunks::DEFAULT_CHUNK_SIZE;
use crate::model::exchange::{DataFormat, Derivation, Grant, Manifest};
use crate::model::masking::{self, Projection};
use crate::model::refusal::RefusalCode;
use crate::model::signed::Signed;
use crate::model::standard::CompiledStandard;
use crate::node::access::Refusal;
use crate::node::datasets::csv_cell;
use crate::node::{Node, NodeError};
use crate::store::blobs::{BlobInfo, BlobStore};
use crate::store::{RecordTree, RecordWrite};

/// A salt only this provider can compute, distinct per grant: the same value hashes
/// differently for two grantees, so their deliveries cannot be joined on it.
pub(crate) fn mask_salt(seed: &[u8; 32], grant_id: &str) -> [u8; 32] {
    let mut material = seed.to_vec();
    material.extend_from_slice(grant_id.as_bytes());
    blake3::derive_key("yrd/v1 mask salt", &material)
}

/// Whose delivery a derivation is: the grant's id, or `unconditional/DATASET` for an
/// unconditional offer's copy. Grant ids are 32 hex digits, so neither form can take the other's
/// key in the `Derived` tree or its mask salt.
pub(crate) fn derivation_scope(grant_id: Option<&str>, dataset: &str) -> String {
    match grant_id {
        Some(g) => g.to_string(),
        None => format!("unconditional/{dataset}"),
    }
}

/// The key of a derived delivery's manifest in the `Derived` tree: `SCOPE/VERSION`.
pub(crate) fn derived_key(grant_id: Option<&str>, dataset: &str, version: u64) -> String {
    format!("{}/{version}", derivation_scope(grant_id, dataset))
}

/// Where a derived manifest signed by a key this node ran on before a rotation is kept once the
/// key in force signed it again (a receipt for it may still arrive): its key, `@` and that
/// key's peer id. A version number has no `@`, so no delivery's own key takes this form.
pub(crate) fn superseded_derived_key(key: &str, publisher: &str) -> String {
    format!("{key}@{publisher}")
}

/// What the evidence of a delivery says about its projection: the fields and masks the served
/// manifest's derivation applied; `None` (the whole version as published) for an original.
pub(crate) fn delivered_fields(m: &Manifest) -> Option<String> {
    m.derived_from
        .as_ref()
        .map(|d| masking::describe_delivery(&d.fields, &d.masks))
}

/// What leaves under `grant` (or, without one, from an unconditional offer) of a standard with
/// these fields and default masks: the grant's fields and masks, or every field, each personal
/// field not masked by the grant masked by its default. `None`: the original leaves as it is
/// (unconditional, no personal field).
pub(crate) fn projection_for(
    grant: Option<&Grant>,
    standard: &CompiledStandard,
) -> Result<Option<Projection>, masking::MaskError> {
    let known = standard.field_names();
    let defaults = standard.default_masks();
    match grant {
        Some(g) => Ok(Some(
            Projection::new(g.fields.clone(), g.masks.clone(), known)?.with_defaults(&defaults),
        )),
        None if defaults.is_empty() => Ok(None),
        None => Ok(Some(
            Projection::new(known.to_vec(), Vec::new(), known)?.with_defaults(&defaults),
        )),
    }
}

/// Why an opaque file is not delivered: under a grant it cannot be limited to the granted fields
/// or masked; without one its personal fields cannot be masked.
fn unprojectable(o: &Manifest, grant: Option<&Grant>, projection: &Projection) -> Refusal {
    let what = format!(
        "{} v{} was published as an opaque file (--format file), which cannot be projected",
        o.dataset, o.version
    );
    match grant {
        Some(g) => Refusal {
            code: RefusalCode::GrantInvalid,
            message: format!(
                "{what}: grant {} delivers only {}; the provider must publish the version as \
                 jsonl or csv",
                g.id,
                projection.describe()
            ),
        },
        None => Refusal {
            code: RefusalCode::NotShared,
            message: format!(
                "{what}: its standard's personal fields must leave masked ({}); the provider \
                 must publish the version as jsonl or csv",
                projection.describe()
            ),
        },
    }
}

impl Node {
    /// Derives the masked copy of a just published `version` of an unconditional offer in the
    /// background, so the first member to fetch it does not wait for the derivation within its
    /// fetch (every member gets the same copy). Nothing is derived for an offer whose delivery
    /// is the original; a failure here only means the first fetch derives it (and says why).
    pub(crate) fn derive_public_copy_soon(&self, offer: CatalogueEntry, version: Signed<Manifest>) {
        if offer.offer.share_type != ShareType::Unconditional {
            return;
        }
        let node = self.clone();
        self.spawn_long(async move {
            if let Err(r) = node.delivery_of(&offer, None, &version).await {
                tracing::warn!(
                    dataset = %version.document.dataset,
                    version = version.document.version,
                    code = %r.code,
                    reason = %r.message,
                    "masked copy not prepared at publish; the first fetch derives it"
                );
            }
        });
    }

    /// What `original`, a version of our `offer`, is delivered as under `grant` (None: the offer
    /// is unconditional): the original itself when the projection is the whole record, else
    /// the masked derivation, or a refusal when the version is an opaque file that would need
    /// projecting.
    pub(super) async fn delivery_of(
        &self,
        offer: &CatalogueEntry,
        grant: Option<&Signed<Grant>>,
        original: &Signed<Manifest>,
    ) -> Result<Signed<Manifest>, Refusal> {
        let internal = |e: NodeError| Refusal {
            code: RefusalCode::Internal,
            message: e.to_string(),
        };
        let o = &original.document;
        let standard = self
            .compiled_standard(&offer.conforms_to)
            .map_err(internal)?;
        let g = grant.map(|g| &g.document);
        let projection = projection_for(g, &standard).map_err(|e| Refusal {
            code: RefusalCode::GrantInvalid,
            message: match g {
                Some(g) => format!("grant {}: {e}", g.id),
                None => format!("{}: {e}", o.dataset),
            },
        })?;
        let Some(projection) = projection else {
            return Ok(original.clone());
        };
        if o.format == DataFormat::File {
            if projection.is_whole(standard.field_names()) {
                return Ok(original.clone());
            }
            return Err(unprojectable(o, g, &projection));
        }
        self.derived_delivery(g, original, standard, projection)
            .await
            .map_err(internal)
    }

    /// The masked delivery of `original` by `projection` (under `grant`, if any): derived once
    /// per grant (or unconditional offer) and version, stored as a blob with its own signed
    /// manifest naming the original, the grant and the projection.
    async fn derived_delivery(
        &self,
        grant: Option<&Grant>,
        original: &Signed<Manifest>,
        standard: CompiledStandard,
        projection: Projection,
    ) -> Result<Signed<Manifest>, NodeError> {
        let o = &original.document;
        let scope = derivation_scope(grant.map(|g| g.id.as_str()), &o.dataset);
        let key = derived_key(grant.map(|g| g.id.as_str()), &o.dataset, o.version);
        let _guard = self.inner.transfers.derive_lock.lock().await;
        if let Some(m) = self
            .store()
            .record::<Signed<Manifest>>(RecordTree::Derived, &key)?
        {
            // A copy derived by another projection (before the standard's defaults applied)
            // is not what this delivery must be: derive it again.
            let same = m.document.derived_from.as_ref().is_some_and(|d| {
                d.original_digest == o.digest
                    && d.fields == projection.fields()
                    && d.masks == projection.masks()
            });
            if same && self.blobs().contains(&m.document.digest) {
                if m.document.publisher == self.peer_id_text() {
                    return Ok(m);
                }
                // Derived under a key this node ran on before a rotation: the same file, signed
                // again by the key in force (a fetcher takes a manifest only from its signer);
                // the earlier one is kept for the receipts that name it.
                let earlier = superseded_derived_key(&key, &m.document.publisher);
                let signed = self.resign_manifest(&m.document)?;
                self.store().put_records(&[
                    RecordWrite::new(RecordTree::Derived, &earlier, &m)?,
                    RecordWrite::new(RecordTree::Derived, &key, &signed)?,
                ])?;
                self.store().flush().await?;
                return Ok(signed);
            }
        }
        let schema_ref = o.schema.clone().ok_or_else(|| {
            NodeError::invalid("dataset", "a record dataset without a standard".into())
        })?;
        let salt = mask_salt(self.inner.mask.seed(), &scope);
        let blobs = self.blobs().clone();
        let (digest, format) = (o.digest.clone(), o.format);
        let started = Instant::now();
        let derivation = Derivation {
            original_digest: o.digest.clone(),
            grant_id: grant.map(|g| g.id.clone()),
            fields: projection.fields().to_vec(),
            masks: projection.masks().to_vec(),
        };
        let (info, records) = tokio::task::spawn_blocking(move || {
            derive_file(&blobs, &digest, format, &standard, &projection, &salt)
        })
        .await
        .map_err(blocking_err)??;
        let manifest = Manifest {
            dataset: o.dataset.clone(),
            publisher: self.peer_id_text().to_owned(),
            region: self.region(),
            version: o.version,
            previous: None,
            schema: Some(schema_ref),
            format: DataFormat::Jsonl,
            digest: info.digest.clone(),
            size: info.size,
            record_count: records,
            chunk_size: info.chunk_table.chunk_size,
            chunk_table_digest: info.chunk_table.digest().map_err(NodeError::from)?,
            published_at: now_rfc3339(),
            derived_from: Some(derivation),
        };
        let signed = Signed::sign(manifest, self.inner.key.signing_key())?;
        self.store()
            .put_record(RecordTree::Derived, &key, &signed)?;
        self.store().flush().await?;
        self.inner
            .transfers
            .cache_table(&info.digest, Arc::new(info.chunk_table));
        tracing::info!(
            dataset = %o.dataset,
            version = o.version,
            grant = grant.map(|g| g.id.as_str()).unwrap_or("-"),
            records,
            ms = started.elapsed().as_millis() as u64,
            "masked delivery derived"
        );
        Ok(signed)
    }
}

/// Bytes of derived records handed to the blob writer at a time.
const DERIVED_BLOCK: usize = 64 << 10;

/// Writes the masked derivation of blob `digest` as JSON Lines; returns it and its record count.
fn derive_file(
    blobs: &BlobStore,
    digest: &str,
    format: DataFormat,
    standard: &CompiledStandard,
    projection: &Projection,
    salt: &[u8; 32],
) -> Result<(BlobInfo, u64), NodeError> {
    use std::io::{BufRead, BufReader, BufWriter, Write};
    let store_err = NodeError::Blob;
    let reader = blobs.open_read(digest).map_err(store_err)?;
    let mut out = blobs.writer(DEFAULT_CHUNK_SIZE).map_err(store_err)?;
    let mut records = 0u64;
    // Records reach the blob writer in blocks: it hashes what it is given (the file's and the
    // chunk's BLAKE3), and serde_json writes token by token, so the hashes were fed a few bytes
    // at a time (docs/benchmarks.md, "Machine").
    let mut pending = BufWriter::with_capacity(DERIVED_BLOCK, &mut out);
    let mut emit = |record: &serde_json::Value, line: u64| -> Result<(), NodeError> {
        let delivered = projection
            .apply(record, salt)
            .map_err(|e| NodeError::invalid("record", format!("record at line {line}: {e}")))?;
        serde_json::to_writer(&mut pending, &delivered).map_err(derivation_write)?;
        pending.write_all(b"\n").map_err(derivation_io)?;
        records += 1;
        Ok(())
    };
    match format {
        DataFormat::Csv => {
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(reader);
            let headers: Vec<String> = csv
                .headers()
                .map_err(|e| NodeError::invalid("record", format!("CSV header: {e}")))?
                .iter()
                .map(|c| c.trim_start_matches('\u{feff}').to_string())
                .collect();
            let types = standard.column_types(&headers);
            let mut row = csv::StringRecord::new();
            let mut line = 1u64;
            while csv
                .read_record(&mut row)
                .map_err(|e| NodeError::invalid("record", format!("CSV line {}: {e}", line + 1)))?
            {
                line += 1;
                let mut record = serde_json::Map::new();
                for ((name, cell), t) in headers.iter().zip(row.iter()).zip(&types) {
                    record.insert(name.clone(), csv_cell(cell, t));
                }
                emit(&serde_json::Value::Object(record), line)?;
            }
        }
        DataFormat::Jsonl | DataFormat::File => {
            let mut reader = BufReader::with_capacity(1 << 20, reader);
            let mut buf = Vec::new();
            let mut line = 0u64;
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf).map_err(derivation_io)?;
                if n == 0 {
                    break;
                }
                line += 1;
                let text = String::from_utf8_lossy(&buf);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let record: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| NodeError::invalid("record", format!("line {line}: {e}")))?;
                emit(&record, line)?;
            }
        }
    }
    pending.flush().map_err(derivation_io)?;
    drop(pending);
    let info = out.finish().map_err(store_err)?;
    Ok((info, records))
}

/// Writing the derived copy failed: the disk's fault, never the grantee's.
fn derivation_io(source: std::io::Error) -> NodeError {
    NodeError::Io {
        op: "write the masked copy of",
        path: "blobs/tmp".into(),
        source,
    }
}

fn derivation_write(e: serde_json::Error) -> NodeError {
    match e.io_error_kind() {
        Some(_) => derivation_io(std::io::Error::other(e)),
        None => NodeError::Encode(e),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use serde_json::{Value, json};

    use super::*;
    use crate::model::masking::{FieldMask, MaskRule};
    use crate::model::standard;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const SEED: [u8; 32] = [3; 32];

    fn person_standard() -> Result<CompiledStandard, Box<dyn std::error::Error>> {
        Ok(standard::compile(&json!({
            "$schema": standard::DRAFT_2020_12,
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "id_number": { "type": "string" },
                "phone": { "type": "string" },
                "age": { "type": "integer" },
                "note": { "type": "string" }
            },
            "required": ["name"]
        }))?)
    }

    /// Delivers name, id_number (keep 6 and 4) and phone (hash); age and note are not granted.
    fn projection(standard: &CompiledStandard) -> Result<Projection, Box<dyn std::error::Error>> {
        let known: Vec<String> = standard.fields().iter().map(|f| f.name.clone()).collect();
        Ok(Projection::new(
            vec!["phone".into(), "name".into(), "id_number".into()],
            vec![
                FieldMask {
                    field: "id_number".into(),
                    rule: MaskRule::Keep { first: 6, last: 4 },
                },
                FieldMask {
                    field: "phone".into(),
                    rule: MaskRule::Hash,
                },
            ],
            &known,
        )?)
    }

    const JSONL: &str = concat!(
        r#"{"name":"张三","id_number":"110101199003071234","phone":"13800138000","age":34,"note":"x"}"#,
        "\n\n",
        r#"{"note":"y","age":51,"phone":"13900139000","id_number":"310101198001011111","name":"李四"}"#,
        "\n",
    );

    struct Derived {
        info: BlobInfo,
        records: u64,
        lines: Vec<Value>,
    }

    fn derive(
        blobs: &BlobStore,
        input: &str,
        format: DataFormat,
        grant: &str,
    ) -> Result<Derived, Box<dyn std::error::Error>> {
        derive_salted(blobs, input, format, &mask_salt(&SEED, grant))
    }

    fn derive_salted(
        blobs: &BlobStore,
        input: &str,
        format: DataFormat,
        salt: &[u8; 32],
    ) -> Result<Derived, Box<dyn std::error::Error>> {
        let standard = person_standard()?;
        let original = blobs.import_reader(input.as_bytes(), DEFAULT_CHUNK_SIZE)?;
        let (info, records) = derive_file(
            blobs,
            &original.digest,
            format,
            &standard,
            &projection(&standard)?,
            salt,
        )?;
        let mut text = String::new();
        blobs.open_read(&info.digest)?.read_to_string(&mut text)?;
        let lines = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<Vec<Value>, _>>()?;
        Ok(Derived {
            info,
            records,
            lines,
        })
    }

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn delivers_exactly_the_granted_fields_masked() -> TestResult {
        let dir = tempfile::tempdir()?;
        let blobs = BlobStore::open(dir.path())?;
        let d = derive(&blobs, JSONL, DataFormat::Jsonl, "grant-1")?;
        assert_eq!(d.records, 2);
        assert_eq!(d.lines.len(), 2);
        for line in &d.lines {
            assert_eq!(keys(line), ["phone", "name", "id_number"]);
        }
        assert_eq!(d.lines[0]["name"], "张三");
        assert_eq!(d.lines[0]["id_number"], "110101********1234");
        assert_eq!(d.lines[1]["id_number"], "310101********1111");
        for (line, phone) in d.lines.iter().zip(["13800138000", "13900139000"]) {
            let hashed = line["phone"].as_str().unwrap_or_default();
            assert!(hashed.starts_with("h:"), "{hashed}");
            assert!(!hashed.contains(phone));
        }
        assert_ne!(d.lines[0]["phone"], d.lines[1]["phone"]);
        // The delivery is a blob of its own, with its chunk table.
        assert!(blobs.contains(&d.info.digest));
        d.info.chunk_table.validate()?;
        assert_eq!(d.info.chunk_table.size, d.info.size);
        Ok(())
    }

    #[test]
    fn the_same_grant_derives_the_same_bytes_another_grant_other_hashes() -> TestResult {
        let dir = tempfile::tempdir()?;
        let blobs = BlobStore::open(dir.path())?;
        let a = derive(&blobs, JSONL, DataFormat::Jsonl, "grant-1")?;
        let again = derive(&blobs, JSONL, DataFormat::Jsonl, "grant-1")?;
        let b = derive(&blobs, JSONL, DataFormat::Jsonl, "grant-2")?;
        assert_eq!(a.info, again.info);
        assert_ne!(a.info.digest, b.info.digest);
        // Only the salted hash differs: the other masks do not depend on the grant.
        assert_ne!(a.lines[0]["phone"], b.lines[0]["phone"]);
        assert_eq!(a.lines[0]["id_number"], b.lines[0]["id_number"]);
        assert_eq!(a.lines[0]["name"], b.lines[0]["name"]);
        Ok(())
    }

    #[test]
    fn csv_cells_are_typed_by_the_standard_before_masking() -> TestResult {
        let dir = tempfile::tempdir()?;
        let blobs = BlobStore::open(dir.path())?;
        let csv = "\u{feff}name,id_number,phone,age\n王五,320101197512125678,13700137000,49\n";
        let d = derive(&blobs, csv, DataFormat::Csv, "grant-1")?;
        assert_eq!(d.records, 1);
        assert_eq!(keys(&d.lines[0]), ["phone", "name", "id_number"]);
        assert_eq!(d.lines[0]["name"], "王五");
        assert_eq!(d.lines[0]["id_number"], "320101********5678");
        // The same value hashes the same from CSV as from JSON Lines under one grant.
        let j = derive(
            &blobs,
            r#"{"name":"王五","id_number":"320101197512125678","phone":"13700137000"}"#,
            DataFormat::Jsonl,
            "grant-1",
        )?;
        assert_eq!(d.lines[0], j.lines[0]);
        Ok(())
    }

    #[test]
    fn a_record_that_is_not_an_object_or_not_json_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let blobs = BlobStore::open(dir.path())?;
        for (input, expected) in [
            ("{\"name\":\"a\"}\n[1,2]\n", "record at line 2"),
            ("{\"name\":\"a\"}\n\n{oops\n", "line 3"),
        ] {
            match derive(&blobs, input, DataFormat::Jsonl, "grant-1") {
                Err(e) => assert!(e.to_string().contains(expected), "{e}"),
                Ok(_) => panic!("{input:?} was derived"),
            }
        }
        Ok(())
    }

    #[test]
    fn what_leaves_takes_the_standards_defaults_for_personal_fields() -> TestResult {
        let plain = person_standard()?;
        // No personal field: an unconditional delivery is the original.
        assert_eq!(projection_for(None, &plain)?, None);
        let mut schema = json!({
            "$schema": standard::DRAFT_2020_12,
            "type": "object",
            "properties": {
                "name": { "type": "string", "x-personal-data": "name" },
                "id_number": { "type": "string", "x-personal-data": "id-number" },
                "age": { "type": "integer" }
            }
        });
        let personal = standard::compile(&schema)?;
        let open = projection_for(None, &personal)?.ok_or("no projection")?;
        assert_eq!(
            open.describe(),
            "fields name (keep first 1 last 0), id_number (keep first 6 last 4), age"
        );
        assert!(!open.is_whole(personal.field_names()));
        schema["properties"]["name"]
            .as_object_mut()
            .ok_or("no name")?
            .remove("x-personal-data");
        let grant = Grant {
            id: "g1".into(),
            request_id: "r".into(),
            request_digest: "d".into(),
            provider: "p".into(),
            grantee: "g".into(),
            dataset: "ds".into(),
            purpose: "p".into(),
            legal_basis: "b".into(),
            fields: vec!["age".into(), "id_number".into()],
            masks: vec!["id_number=hash".parse()?],
            not_before: String::new(),
            expires_at: String::new(),
            issued_at: String::new(),
            decided_by: "operator".into(),
            modes: Vec::new(),
            query_limits: None,
        };
        let granted = projection_for(Some(&grant), &personal)?.ok_or("no projection")?;
        assert_eq!(granted.describe(), "fields age, id_number (hash)");
        let m = Manifest {
            dataset: "ds".into(),
            publisher: "p".into(),
            region: crate::model::region::Region::from_code(310000)?,
            version: 1,
            previous: None,
            schema: None,
            format: DataFormat::Jsonl,
            digest: String::new(),
            size: 0,
            record_count: 0,
            chunk_size: 0,
            chunk_table_digest: String::new(),
            published_at: String::new(),
            derived_from: Some(Derivation {
                original_digest: String::new(),
                grant_id: None,
                fields: open.fields().to_vec(),
                masks: open.masks().to_vec(),
            }),
        };
        assert_eq!(delivered_fields(&m), Some(open.describe()));
        Ok(())
    }

    /// A node from before `mask.secret` salted its masks with its key's secret bytes: the
    /// migrated secret hands out the very same pseudonyms, and still does after the key changes.
    #[test]
    fn pseudonyms_survive_the_mask_secret_migration_and_a_key_rotation() -> TestResult {
        use crate::identity::{MASK_SECRET_FILE, MaskSecret, NodeKey};
        let dir = tempfile::tempdir()?;
        let blobs = BlobStore::open(dir.path().join("blobs"))?;
        let key = NodeKey::from_seed([9; 32]);
        let before = derive_salted(
            &blobs,
            JSONL,
            DataFormat::Jsonl,
            &mask_salt(&key.signing_key().to_bytes(), "grant-1"),
        )?;
        let path = dir.path().join(MASK_SECRET_FILE);
        let migrated = MaskSecret::load_or_migrate(&path, &key)?;
        let rotated = MaskSecret::load_or_migrate(&path, &NodeKey::from_seed([10; 32]))?;
        for secret in [migrated, rotated] {
            let after = derive_salted(
                &blobs,
                JSONL,
                DataFormat::Jsonl,
                &mask_salt(secret.seed(), "grant-1"),
            )?;
            assert_eq!(after.lines, before.lines);
            assert!(
                after.lines[0]["phone"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("h:"))
            );
        }
        Ok(())
    }

    #[test]
    fn mask_salt_is_per_grant_and_per_provider() {
        let a = mask_salt(&SEED, "grant-1");
        assert_eq!(a, mask_salt(&SEED, "grant-1"));
        assert_ne!(a, mask_salt(&SEED, "grant-2"));
        assert_ne!(a, mask_salt(&[4; 32], "grant-1"));
        assert_ne!(a, SEED);
    }
}
