//! `NodeInfo`: the self-signed card a node shows its peers — who it is, where, and how to reach it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::region::Region;
use crate::model::signed::Document;

/// A node's self-description, signed by its own key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeInfo {
    /// The node's libp2p peer id; must be the id of the key that signs this document.
    pub peer_id: String,
    /// GB/T 2260 code of the region the node serves.
    pub region: Region,
    /// The organisation running the node.
    pub organisation: String,
    /// Multiaddrs the node can be reached at.
    pub addresses: Vec<String>,
    /// When this card was issued (RFC 3339, UTC).
    pub issued_at: String,
    /// Software and version, e.g. "yrd/0.1.0".
    pub software: String,
}

impl Document for NodeInfo {
    const TYPE: &'static str = "node-info";
}
