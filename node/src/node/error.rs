//! The service layer's one error type, [`NodeError`], and the class of each failure, which the
//! API turns into a status: bad input the caller can fix (400, naming the field), a missing thing
//! (404), a conflict with what exists (409), a peer at fault (502), or a failure inside the node —
//! the disk, the database, the provenance log, a background task — which is never the caller's
//! fault (500) and keeps its source chain for the log.
//!
//! Invariant: nothing that failed inside the node is reported as bad input. An I/O or database
//! error travels in its own variant with its source; [`NodeError::Invalid`] carries only
//! judgements about input (a request body, a document from a peer, a file the operator named).

use std::path::PathBuf;

use libp2p::PeerId;

use crate::identity::IdentityError;
use crate::model::refusal::RefusalCode;
use crate::model::signed::SignatureError;
use crate::net::NetError;
use crate::store::StoreError;
use crate::store::blobs::BlobError;
use crate::store::provenance::ProvenanceError;

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Key or token problem.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Database problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Dataset file problem (a disk failure, or a blob the caller named wrongly; see
    /// [`NodeError::class`]).
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A chunk table we built or hold does not hold together.
    #[error(transparent)]
    Chunks(#[from] crate::model::chunks::ChunkError),
    /// The provenance log failed.
    #[error(transparent)]
    Provenance(#[from] ProvenanceError),
    /// Network problem.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A document could not be signed or verified.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// A file the node reads or writes itself (not a blob) failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done, e.g. `"read"`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A background task (validation, derivation, a blocking write) panicked or was cancelled.
    #[error("{what} did not finish: {source}")]
    Task {
        /// The task, e.g. `"validating the records"`.
        what: &'static str,
        /// Why.
        source: tokio::task::JoinError,
    },
    /// A value of ours could not be encoded as JSON.
    #[error("cannot encode: {0}")]
    Encode(#[source] serde_json::Error),
    /// The input is invalid: `field` names what was wrong, the message the rule.
    #[error("{reason}")]
    Invalid {
        /// The input field, parameter or document part at fault, e.g. `"purpose"`, `"target"`.
        field: &'static str,
        /// What is wrong with it and what was expected.
        reason: String,
    },
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists (e.g. a reused id+version).
    #[error("{0}")]
    Conflict(String),
    /// A document older than (or as old as) the one held.
    #[error("{0}")]
    Stale(String),
    /// A peer answered something we cannot accept.
    #[error("peer {peer}: {reason}")]
    BadPeer {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        reason: String,
    },
    /// This node has too much of this work waiting already (its own back-pressure, not a
    /// peer's refusal): retry shortly.
    #[error("{0}")]
    Busy(String),
    /// A peer refused our request, with its code.
    #[error("peer {peer} refused ({code}): {message}")]
    Refused {
        /// The peer.
        peer: PeerId,
        /// Its machine-readable reason.
        code: RefusalCode,
        /// Its account, for people.
        message: String,
    },
}

/// What kind of failure an error is, for the API's status and the CLI's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The caller's input is wrong: fix it and retry.
    BadInput,
    /// The thing named does not exist.
    NotFound,
    /// It conflicts with what exists, or is older than what is held.
    Conflict,
    /// A peer failed, refused or answered wrongly (or the network is down).
    Peer,
    /// Something inside the node failed: the disk, the database, a task.
    Internal,
    /// The node has too much of this work waiting: retry shortly.
    Busy,
}

impl NodeError {
    /// Bad input in `field`.
    pub fn invalid(field: &'static str, reason: String) -> NodeError {
        NodeError::Invalid { field, reason }
    }

    /// A background task that did not finish.
    pub fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> NodeError {
        move |source| NodeError::Task { what, source }
    }

    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            NodeError::Invalid { .. } | NodeError::Signature(_) => ErrorClass::BadInput,
            NodeError::NotFound(_) => ErrorClass::NotFound,
            NodeError::Conflict(_) | NodeError::Stale(_) => ErrorClass::Conflict,
            NodeError::Busy(_) => ErrorClass::Busy,
            NodeError::Net(_) | NodeError::BadPeer { .. } | NodeError::Refused { .. } => {
                ErrorClass::Peer
            }
            NodeError::Blob(e) => blob_class(e),
            NodeError::Identity(_)
            | NodeError::Store(_)
            | NodeError::Provenance(_)
            | NodeError::Io { .. }
            | NodeError::Encode(_)
            | NodeError::Chunks(_)
            | NodeError::Task { .. } => ErrorClass::Internal,
        }
    }

    /// The input field at fault, for bad input.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            NodeError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The message with every source below it ("a: b: c"), for logs and 500 answers.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let s_text = s.to_string();
            // `transparent` variants repeat their source's text; say it once.
            if !text.ends_with(&s_text) {
                text.push_str(": ");
                text.push_str(&s_text);
            }
            source = s.source();
        }
        text
    }
}

/// A blob error is the caller's only when it names a blob or id wrongly; the disk, a corrupt
/// object or an unreadable partial is the node's.
fn blob_class(e: &BlobError) -> ErrorClass {
    match e {
        BlobError::InvalidDigest { .. } | BlobError::InvalidId { .. } | BlobError::Input { .. } => {
            ErrorClass::BadInput
        }
        BlobError::NotFound { .. } => ErrorClass::NotFound,
        BlobError::PartialBusy { .. } => ErrorClass::Conflict,
        _ => ErrorClass::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_failure_is_internal_with_its_source() {
        let e = NodeError::from(BlobError::Io {
            op: "open",
            path: "/data/blobs/objects/ab".into(),
            source: std::io::Error::other("input/output error"),
        });
        assert_eq!(e.class(), ErrorClass::Internal);
        assert!(e.chain().contains("input/output error"), "{}", e.chain());
        assert_eq!(e.field(), None);
    }

    #[test]
    fn our_own_back_pressure_is_busy_not_a_peer_failure() {
        let e =
            NodeError::Busy("1024 queries are already waiting to be sent; retry shortly".into());
        assert_eq!(e.class(), ErrorClass::Busy);
        assert_eq!(e.field(), None);
    }

    #[test]
    fn bad_input_names_its_field() {
        let e = NodeError::invalid("purpose", "the purpose must be 1 to 500 characters".into());
        assert_eq!(e.class(), ErrorClass::BadInput);
        assert_eq!(e.field(), Some("purpose"));
        assert_eq!(e.to_string(), "the purpose must be 1 to 500 characters");
    }

    #[test]
    fn a_wrong_digest_is_the_callers_and_a_missing_blob_not_found() {
        let bad = NodeError::from(BlobError::InvalidDigest {
            digest: "xyz".into(),
        });
        assert_eq!(bad.class(), ErrorClass::BadInput);
        let missing = NodeError::from(BlobError::NotFound {
            digest: "00".repeat(32),
        });
        assert_eq!(missing.class(), ErrorClass::NotFound);
    }

    #[tokio::test]
    async fn a_panicked_task_is_internal() {
        let join = tokio::spawn(async { panic!("boom") }).await.unwrap_err();
        let e = NodeError::task("validating the records")(join);
        assert_eq!(e.class(), ErrorClass::Internal);
        assert!(
            e.to_string()
                .starts_with("validating the records did not finish")
        );
    }
}
