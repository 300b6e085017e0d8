//! The JSON Schemas of every document type and message, generated from the Rust types
//! (schemars), as checked in under `schemas/protocol/` and written by `yrd schema export`.

use schemars::{JsonSchema, schema_for};

use crate::model::catalogue::{Catalogue, Demand, OfferInput, SchemaDoc, Withheld};
use crate::model::exchange::{AccessRequest, Denial, Grant, Manifest, Receipt, Revocation};
use crate::model::message::{Announcement, Request, Response};
use crate::model::node_info::NodeInfo;
use crate::model::signed::Signed;

fn schema<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schema_for!(T)).unwrap_or_default()
}

/// `(file stem, schema)` for every protocol type, in a fixed order.
pub fn all() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("node-info", schema::<NodeInfo>()),
        ("signed-node-info", schema::<Signed<NodeInfo>>()),
        ("schema", schema::<SchemaDoc>()),
        ("signed-schema", schema::<Signed<SchemaDoc>>()),
        ("catalogue", schema::<Catalogue>()),
        ("signed-catalogue", schema::<Signed<Catalogue>>()),
        ("offer", schema::<OfferInput>()),
        ("demand", schema::<Demand>()),
        ("withheld", schema::<Withheld>()),
        ("manifest", schema::<Manifest>()),
        ("signed-manifest", schema::<Signed<Manifest>>()),
        ("access-request", schema::<AccessRequest>()),
        ("signed-access-request", schema::<Signed<AccessRequest>>()),
        ("grant", schema::<Grant>()),
        ("signed-grant", schema::<Signed<Grant>>()),
        ("denial", schema::<Denial>()),
        ("signed-denial", schema::<Signed<Denial>>()),
        ("revocation", schema::<Revocation>()),
        ("signed-revocation", schema::<Signed<Revocation>>()),
        ("receipt", schema::<Receipt>()),
        ("signed-receipt", schema::<Signed<Receipt>>()),
        ("request", schema::<Request>()),
        ("response", schema::<Response>()),
        ("announcement", schema::<Announcement>()),
    ]
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
}
