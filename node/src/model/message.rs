//! The messages peers exchange: request/response over `/yrd/req/1` (documents, never datasets)
//! and announcements on the gossip topic `yrd/announce/1` (ids, sequence numbers and digests
//! only — content is always pulled and verified).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::catalogue::{Catalogue, SchemaDoc};
use crate::model::charter::{CharterSignature, SignedCharter};
use crate::model::exchange::{AccessRequest, Denial, Grant, Receipt, Revocation};
use crate::model::node_info::NodeInfo;
use crate::model::provenance::{Cosignature, TreeHead};
use crate::model::refusal::RefusalCode;
use crate::model::signed::Signed;

/// The gossip topic of announcements.
pub const ANNOUNCE_TOPIC: &str = "yrd/announce/1";

/// A request to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Ask for the peer's current signed NodeInfo.
    NodeInfo,
    /// Ask which catalogue sequences and standards the peer holds (anti-entropy).
    Heads,
    /// Ask for the latest catalogue the peer holds from `publisher` (its own or a relayed one;
    /// the publisher's signature makes relaying safe).
    GetCatalogue {
        /// Publisher peer id.
        publisher: String,
    },
    /// Ask for one version of a standard.
    GetSchema {
        /// Standard id.
        id: String,
        /// Version.
        version: String,
    },
    /// Ask for conditional data: the requester's signed AccessRequest (R5).
    Access {
        /// The signed request; its signer must be the sending peer.
        request: Box<Signed<AccessRequest>>,
    },
    /// The provider's answer to an earlier AccessRequest, pushed to the requester.
    Decision {
        /// The grant, if approved.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant: Option<Box<Signed<Grant>>>,
        /// The denial, if refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        denial: Option<Box<Signed<Denial>>>,
    },
    /// The provider withdraws a grant it issued to the receiving node.
    Revoke {
        /// The signed revocation.
        revocation: Box<Signed<Revocation>>,
    },
    /// The receiver's signed acknowledgement of a delivery, sent to the provider.
    Receipt {
        /// The signed receipt.
        receipt: Box<Signed<Receipt>>,
    },
    /// Witnessing: the sender's latest signed tree head, for the receiver to check against the
    /// heads it holds and cosign.
    TreeHead {
        /// The sender's head.
        head: Box<Signed<TreeHead>>,
    },
    /// Witnessing: a consistency proof of the receiver's log between two sizes.
    Consistency {
        /// The earlier size.
        old_size: u64,
        /// The later size.
        new_size: u64,
    },
    /// Ask for one applied version of the federation charter, with every signature known.
    Charter {
        /// The version.
        version: u64,
    },
    /// Ask which proposals of the charter's next version the peer holds (at most 32).
    CharterProposals,
    /// Ask for one proposal of the charter's next version, by the digest of its document.
    CharterProposal {
        /// Lowercase hex BLAKE3 of the proposal's document (what its signatures cover).
        digest: String,
    },
}

/// The charter version a peer has in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CharterHead {
    /// The version in force.
    pub version: u64,
    /// Its digest.
    pub digest: String,
}

/// A proposal of the charter's next version a peer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalHead {
    /// Digest of its document.
    pub digest: String,
    /// The version it proposes.
    pub version: u64,
    /// Signatures it carries that verify over its document.
    pub signatures: u32,
}

/// Where an access request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Waiting for an operator.
    Pending,
    /// A grant was issued.
    Granted,
    /// A denial was issued.
    Denied,
}

/// One standard version a peer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaHead {
    /// Standard id.
    pub id: String,
    /// Version.
    pub version: String,
    /// Content digest.
    pub digest: String,
}

/// One catalogue a peer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// Publisher peer id.
    pub publisher: String,
    /// Sequence held.
    pub sequence: u64,
}

/// A peer's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Response {
    /// The peer's signed NodeInfo.
    NodeInfo {
        /// The envelope.
        info: Box<Signed<NodeInfo>>,
    },
    /// What the peer holds.
    Heads {
        /// Catalogue sequences per publisher.
        catalogues: Vec<Head>,
        /// Standards.
        schemas: Vec<SchemaHead>,
        /// The federation charter version in force, when the peer runs on one (absent from
        /// peers older than live charters).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        charter: Option<CharterHead>,
    },
    /// A catalogue snapshot.
    Catalogue {
        /// The publisher's signed snapshot.
        catalogue: Box<Signed<Catalogue>>,
    },
    /// A standard.
    Schema {
        /// The publisher's signed standard.
        schema: Box<Signed<SchemaDoc>>,
    },
    /// The provider holds the access request; when a rule decided at once, the answer is here.
    Access {
        /// Where the request stands.
        status: RequestStatus,
        /// The grant, if approved.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant: Option<Box<Signed<Grant>>>,
        /// The denial, if refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        denial: Option<Box<Signed<Denial>>>,
    },
    /// Accepted and recorded.
    Ack,
    /// The witness checked the head and cosigned it.
    Cosigned {
        /// The witness's cosignature.
        cosignature: Box<Signed<Cosignature>>,
    },
    /// A consistency proof (hex hashes, bottom-up).
    Consistency {
        /// The proof.
        proof: Vec<String>,
    },
    /// An applied charter version.
    Charter {
        /// The signed charter, with every signature the peer holds.
        charter: Box<SignedCharter>,
    },
    /// The proposals of the charter's next version the peer holds (at most 32).
    CharterProposals {
        /// One per proposal.
        proposals: Vec<ProposalHead>,
    },
    /// One proposal of the charter's next version.
    CharterProposal {
        /// The draft with the signatures the peer holds.
        charter: Box<SignedCharter>,
    },
    /// The request was refused or failed; `code` is machine-readable, `message` for people.
    Error {
        /// Why, machine-readable (docs/protocol.md, "Refusal codes").
        code: RefusalCode,
        /// What went wrong.
        message: String,
    },
}

/// Largest announcement that carries its document (gossipsub caps a message at 64 KiB, its
/// envelope included); above, the document is left out and pulled.
pub const MAX_EMBEDDED_ANNOUNCEMENT_BYTES: usize = 60 * 1024;

/// A gossip announcement. It names a document (publisher, version, digest) and, when the whole
/// announcement stays within [`MAX_EMBEDDED_ANNOUNCEMENT_BYTES`], carries the signed document
/// itself, so that members take it from the gossip (which crosses the members' connection
/// graph) instead of each pulling it from the one node that made it. A receiver checks the
/// document against the digest it is announced under and judges it exactly as a pulled one; a
/// document too big to carry is pulled as before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Announcement {
    /// A new catalogue snapshot.
    Catalogue {
        /// Publisher peer id.
        publisher: String,
        /// Its sequence number.
        sequence: u64,
        /// BLAKE3 of the signed envelope's canonical JSON.
        digest: String,
        /// The signed catalogue, when it fits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        catalogue: Option<Box<Signed<Catalogue>>>,
    },
    /// A new standard version.
    Schema {
        /// Publisher peer id.
        publisher: String,
        /// Standard id.
        id: String,
        /// Version.
        version: String,
        /// Content digest.
        digest: String,
        /// The signed standard, when it fits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<Box<Signed<SchemaDoc>>>,
    },
    /// A new federation charter version was applied.
    Charter {
        /// The version now in force.
        version: u64,
        /// Its digest.
        digest: String,
        /// The signed charter version, when it fits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        charter: Option<Box<SignedCharter>>,
    },
    /// A proposal of the charter's next version was made or gained signatures.
    CharterProposal {
        /// The version it proposes.
        version: u64,
        /// Digest of its document.
        digest: String,
        /// Signatures it now carries that verify over its document.
        signatures: u32,
        /// The proposal with those signatures, when it fits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        charter: Option<Box<SignedCharter>>,
    },
    /// The signatures over a proposal of the charter's next version, sent in place of the
    /// proposal once it was announced with its document: a few hundred bytes where the document
    /// of a hundred members is tens of KiB, so a signature crosses the members' graph at the
    /// speed of a small message. A member holding proposal `digest` merges them (each verified
    /// over its document, as a carried copy's); one lacking it pulls the proposal from the
    /// sender — or, when `applied`, the version.
    CharterSignatures {
        /// The version the proposal proposes.
        version: u64,
        /// Digest of its document.
        digest: String,
        /// The signatures the sender holds over that document (at most 512).
        #[schemars(length(max = 512))]
        signatures: Vec<CharterSignature>,
        /// Whether they complete it: the version is in force at the sender.
        applied: bool,
    },
}

impl Announcement {
    /// The same announcement without the document it carries (to be pulled instead).
    pub fn without_document(self) -> Announcement {
        match self {
            Announcement::Catalogue {
                publisher,
                sequence,
                digest,
                ..
            } => Announcement::Catalogue {
                publisher,
                sequence,
                digest,
                catalogue: None,
            },
            Announcement::Schema {
                publisher,
                id,
                version,
                digest,
                ..
            } => Announcement::Schema {
                publisher,
                id,
                version,
                digest,
                schema: None,
            },
            Announcement::Charter {
                version, digest, ..
            } => Announcement::Charter {
                version,
                digest,
                charter: None,
            },
            Announcement::CharterProposal {
                version,
                digest,
                signatures,
                ..
            } => Announcement::CharterProposal {
                version,
                digest,
                signatures,
                charter: None,
            },
            // Too many to carry: the head alone, which the receiver pulls.
            Announcement::CharterSignatures {
                version,
                digest,
                applied: true,
                ..
            } => Announcement::Charter {
                version,
                digest,
                charter: None,
            },
            Announcement::CharterSignatures {
                version,
                digest,
                signatures,
                applied: false,
            } => Announcement::CharterProposal {
                version,
                digest,
                signatures: u32::try_from(signatures.len()).unwrap_or(u32::MAX),
                charter: None,
            },
        }
    }
}
