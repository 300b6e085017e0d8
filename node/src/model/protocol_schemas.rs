//! The JSON Schemas of every document type and message, generated from the Rust types
//! (schemars), as checked in under `schemas/protocol/` and written by `yrd schema export`.

use schemars::{JsonSchema, schema_for};

use crate::model::catalogue::{Catalogue, Demand, OfferInput, SchemaDoc, Withheld};
use crate::model::charter::{Charter, SignedCharter};
use crate::model::exchange::{AccessRequest, Denial, Grant, Manifest, Receipt, Revocation};
use crate::model::message::{Announcement, Request, Response};
use crate::model::node_info::NodeInfo;
use crate::model::provenance::{
    Cosignature, DatasetHead, EvidenceBundle, ProvenanceRecord, TreeHead,
};
use crate::model::query::{Query, QueryAnswer, QueryBatch, QueryBatchResponse, QueryResponse};
use crate::model::signed::{Document, Signed};
use crate::model::transfer::{ChunkWant, FetchOpen, FetchReply};

fn schema<T: JsonSchema>() -> serde_json::Value {
    let mut schema = serde_json::to_value(schema_for!(T)).unwrap_or_default();
    bound_integers(&mut schema);
    schema
}

/// Every 64-bit integer is bounded to ±(2^53 − 1): beyond it RFC 8785 (whose numbers are
/// doubles) has no exact canonical form, and signed documents holding one are refused
/// (`canonical::MAX_EXACT_INTEGER`).
fn bound_integers(schema: &mut serde_json::Value) {
    use serde_json::Value;
    let max = crate::model::canonical::MAX_EXACT_INTEGER;
    match schema {
        Value::Object(members) => {
            match members.get("format").and_then(Value::as_str) {
                Some("uint64") => {
                    members.insert("maximum".into(), max.into());
                }
                Some("int64") => {
                    members.insert("maximum".into(), max.into());
                    members.insert("minimum".into(), (-(max as i64)).into());
                }
                _ => {}
            }
            members.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// A document type and its signed envelope, named by the document's `TYPE`.
fn document<T: Document>() -> [(String, serde_json::Value); 2] {
    [
        (T::TYPE.to_string(), schema::<T>()),
        (format!("signed-{}", T::TYPE), schema::<Signed<T>>()),
    ]
}

/// `(file stem, schema)` for every protocol type, in a fixed order.
pub fn all() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    out.extend(document::<NodeInfo>());
    out.extend(document::<SchemaDoc>());
    out.extend(document::<Catalogue>());
    out.extend(document::<Manifest>());
    out.extend(document::<AccessRequest>());
    out.extend(document::<Grant>());
    out.extend(document::<Denial>());
    out.extend(document::<Revocation>());
    out.extend(document::<Receipt>());
    out.extend(document::<TreeHead>());
    out.extend(document::<Cosignature>());
    out.extend(document::<DatasetHead>());
    // Multi-signature: its envelope carries a list of signatures, not one signer.
    out.push((Charter::TYPE.to_string(), schema::<Charter>()));
    out.push((
        format!("signed-{}", Charter::TYPE),
        schema::<SignedCharter>(),
    ));
    out.extend(document::<QueryAnswer>());
    for (name, schema) in [
        ("offer", schema::<OfferInput>()),
        ("demand", schema::<Demand>()),
        ("withheld", schema::<Withheld>()),
        ("request", schema::<Request>()),
        ("response", schema::<Response>()),
        ("announcement", schema::<Announcement>()),
        ("fetch-open", schema::<FetchOpen>()),
        ("fetch-reply", schema::<FetchReply>()),
        ("chunk-want", schema::<ChunkWant>()),
        ("query", schema::<Query>()),
        ("query-response", schema::<QueryResponse>()),
        ("query-batch", schema::<QueryBatch>()),
        ("query-batch-response", schema::<QueryBatchResponse>()),
        ("provenance-record", schema::<ProvenanceRecord>()),
        ("evidence-bundle", schema::<EvidenceBundle>()),
    ] {
        out.push((name.to_string(), schema));
    }
    out
}

/// The file text of one schema: pretty JSON with a trailing newline.
pub fn file_text(schema: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    /// The checked-in schemas must equal the generated ones: regenerate with
    /// `yrd schema export --out schemas/protocol` after changing a document type.
    #[test]
    fn checked_in_protocol_schemas_match_the_code() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/protocol");
        let all = super::all();
        for (name, schema) in &all {
            let path = dir.join(format!("{name}.schema.json"));
            let on_disk = std::fs::read_to_string(&path)
                .map_err(|e| format!("{}: {e} (run `yrd schema export`)", path.display()))?;
            assert!(
                on_disk == super::file_text(schema),
                "{} differs from the code: run `yrd schema export --out schemas/protocol`",
                path.display()
            );
        }
        let files = std::fs::read_dir(&dir)?.count();
        assert_eq!(files, all.len(), "stale files in {}", dir.display());
        Ok(())
    }

    /// The batch's schema holds the bound the provider enforces.
    #[test]
    fn a_query_batch_holds_one_to_the_most_queries() -> Result<(), Box<dyn std::error::Error>> {
        let all = super::all();
        let (_, batch) = all
            .iter()
            .find(|(n, _)| n == "query-batch")
            .ok_or("no query-batch schema")?;
        assert_eq!(batch["minItems"], 1);
        assert_eq!(
            batch["maxItems"],
            crate::model::query::MAX_QUERY_BATCH as u64
        );
        Ok(())
    }
}
