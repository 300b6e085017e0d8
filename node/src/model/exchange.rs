//! The documents of a dataset exchange (R3, R5, R6, R7): the publisher's Manifest of a dataset
//! version, the requester's AccessRequest, the provider's Grant, Denial or Revocation, and the
//! receiver's Receipt. Each is signed by the node that issues it (see `signed.rs`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::catalogue::SchemaRef;
use crate::model::masking::FieldMask;
use crate::model::query::{AccessMode, QueryLimits};
use crate::model::region::Region;
use crate::model::signed::Document;

/// How a dataset version's file is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// One JSON object per line, each conforming to the standard.
    Jsonl,
    /// CSV with a header row naming the standard's fields.
    Csv,
    /// An opaque file (no record validation).
    File,
}

/// What a derived delivery was made from, and under which grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Derivation {
    /// BLAKE3 of the original version's file.
    pub original_digest: String,
    /// The grant the delivery was made under; absent for the copy of an unconditional offer
    /// whose standard's personal fields leave masked by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// Fields delivered, in order.
    pub fields: Vec<String>,
    /// Masking applied.
    pub masks: Vec<FieldMask>,
}

/// One version of a dataset, signed by its only publisher (R3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The offer identifier.
    pub dataset: String,
    /// Publishing node (peer id); must be the signer.
    pub publisher: String,
    /// Its region.
    pub region: Region,
    /// Version number, rising by one from 1.
    pub version: u64,
    /// BLAKE3 of the previous version's file (None for version 1): versions form a chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// The standard the records conform to (None for opaque files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaRef>,
    /// File encoding.
    pub format: DataFormat,
    /// BLAKE3 (hex) of the whole file.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Number of records (0 for opaque files).
    pub record_count: u64,
    /// Chunk size of the transfer, in bytes.
    pub chunk_size: u32,
    /// Digest of the chunk table (see docs/protocol.md).
    pub chunk_table_digest: String,
    /// When it was published (RFC 3339).
    pub published_at: String,
    /// For a derived delivery: what it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<Derivation>,
}

impl Document for Manifest {
    const TYPE: &'static str = "manifest";
}

/// A signed request for conditional data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessRequest {
    /// Random id chosen by the requester (32 hex characters).
    pub id: String,
    /// Requesting node.
    pub requester: String,
    /// Its region.
    pub requester_region: Region,
    /// Providing node.
    pub provider: String,
    /// The offer identifier.
    pub dataset: String,
    /// Why the data is needed (履职事项).
    pub purpose: String,
    /// The legal basis (法律依据).
    pub legal_basis: String,
    /// Fields wanted (empty: all).
    #[serde(default)]
    pub fields: Vec<String>,
    /// When it was made (RFC 3339).
    pub requested_at: String,
    /// How long the requester wants access (RFC 3339), if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted_until: Option<String>,
}

impl Document for AccessRequest {
    const TYPE: &'static str = "access-request";
}

/// The provider's permission, answering one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Random id chosen by the provider.
    pub id: String,
    /// The request answered.
    pub request_id: String,
    /// Digest of the signed request.
    pub request_digest: String,
    /// Providing node.
    pub provider: String,
    /// The node allowed to fetch.
    pub grantee: String,
    /// The offer identifier.
    pub dataset: String,
    /// Purpose, as requested.
    pub purpose: String,
    /// Legal basis, as requested.
    pub legal_basis: String,
    /// Fields delivered, in order.
    pub fields: Vec<String>,
    /// Masking of delivered fields (part of what the requester sees).
    #[serde(default)]
    pub masks: Vec<FieldMask>,
    /// Not valid before (RFC 3339).
    pub not_before: String,
    /// Not valid after (RFC 3339).
    pub expires_at: String,
    /// When it was issued (RFC 3339).
    pub issued_at: String,
    /// Who decided: "operator" or "auto:<rule>".
    pub decided_by: String,
    /// What the grantee may do: `fetch`, `verify`, `lookup`. Absent (grants issued before
    /// query services): fetch only. A grant without `fetch` is refused on `/yrd/fetch/1`, and
    /// one with only `verify` never returns a field value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modes: Vec<AccessMode>,
    /// Limits on its query calls (absent: unlimited), enforced by the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_limits: Option<QueryLimits>,
}

impl Document for Grant {
    const TYPE: &'static str = "grant";
}

/// The provider's refusal, answering one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Denial {
    /// The request answered.
    pub request_id: String,
    /// Digest of the signed request.
    pub request_digest: String,
    /// Providing node.
    pub provider: String,
    /// The requester.
    pub requester: String,
    /// The offer identifier.
    pub dataset: String,
    /// Why.
    pub reason: String,
    /// When (RFC 3339).
    pub issued_at: String,
}

impl Document for Denial {
    const TYPE: &'static str = "denial";
}

/// The provider withdraws a grant before its expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// The grant withdrawn.
    pub grant_id: String,
    /// Providing node.
    pub provider: String,
    /// The grantee.
    pub grantee: String,
    /// Why.
    pub reason: String,
    /// When (RFC 3339).
    pub revoked_at: String,
}

impl Document for Revocation {
    const TYPE: &'static str = "revocation";
}

/// The receiver's signed acknowledgement of what it received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Receiving node.
    pub receiver: String,
    /// Providing node.
    pub provider: String,
    /// The offer identifier.
    pub dataset: String,
    /// Version received.
    pub version: u64,
    /// Digest of the signed manifest received.
    pub manifest_digest: String,
    /// BLAKE3 of the file received.
    pub data_digest: String,
    /// The grant it was fetched under (None for unconditional data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// When it was received and verified (RFC 3339).
    pub received_at: String,
}

impl Document for Receipt {
    const TYPE: &'static str = "receipt";
}
