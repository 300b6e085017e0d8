//! The machine-readable reasons a node gives on the wire when it refuses or fails a peer's
//! request: one enum for every protocol (`Response::Error` on `/yrd/exchange/1`,
//! `FetchReply::Refused` on `/yrd/fetch/1`, `QueryResponse::Refused` on `/yrd/query/1`), so a code is never a string literal and the fetcher
//! branches on a variant. docs/protocol.md ("Refusal codes") lists them with their meaning.
//!
//! Wire form: the kebab-case name (`"grant-invalid"`). A code this build does not know (a newer
//! peer's) reads as [`RefusalCode::Unknown`] rather than failing the whole answer.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a request was refused or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalCode {
    /// The dataset, version, catalogue or standard asked for is not held.
    NotFound,
    /// The offer is not shared (不予共享) or withheld.
    NotShared,
    /// The offer is conditional and the request names no grant.
    GrantRequired,
    /// The grant named is unknown, someone else's, revoked, expired or does not cover the
    /// version.
    GrantInvalid,
    /// The provider is at its limit of sessions or requests now; retry later.
    Busy,
    /// A limit on what one peer may have pending was reached (not retryable at once).
    Limit,
    /// The request is malformed or names something invalid.
    BadRequest,
    /// The request conflicts with what the provider holds (e.g. a request id already taken).
    Conflict,
    /// A document sent (a decision, revocation, receipt, head) was checked and refused.
    Refused,
    /// The provider failed to answer (its disk, its database).
    Internal,
    /// Queries: the grant's calls for today are used up (retry the next UTC day).
    QuotaExceeded,
    /// Queries: calls come faster than the grant's rate limit allows (retry shortly).
    RateLimited,
    /// Queries: the grant does not allow this mode (e.g. lookup under a verify-only grant, or
    /// a fetch under a query-only grant).
    ModeNotGranted,
    /// Queries: a field named is not a field of the dataset, or not one it can be looked up by.
    UnknownField,
    /// Queries: a field asked for is not one the grant delivers.
    FieldNotGranted,
    /// The requester is not a member of the federation (a key a new charter version removed,
    /// asking on a connection still open).
    NotMember,
    /// A code this build does not know.
    #[serde(other)]
    Unknown,
}

impl RefusalCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::NotFound => "not-found",
            RefusalCode::NotShared => "not-shared",
            RefusalCode::GrantRequired => "grant-required",
            RefusalCode::GrantInvalid => "grant-invalid",
            RefusalCode::Busy => "busy",
            RefusalCode::Limit => "limit",
            RefusalCode::BadRequest => "bad-request",
            RefusalCode::Conflict => "conflict",
            RefusalCode::Refused => "refused",
            RefusalCode::Internal => "internal",
            RefusalCode::QuotaExceeded => "quota-exceeded",
            RefusalCode::RateLimited => "rate-limited",
            RefusalCode::ModeNotGranted => "mode-not-granted",
            RefusalCode::UnknownField => "unknown-field",
            RefusalCode::FieldNotGranted => "field-not-granted",
            RefusalCode::NotMember => "not-member",
            RefusalCode::Unknown => "unknown",
        }
    }

    /// Whether asking again later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            RefusalCode::Busy | RefusalCode::Internal | RefusalCode::RateLimited
        )
    }
}

impl std::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [RefusalCode; 17] = [
        RefusalCode::NotFound,
        RefusalCode::NotShared,
        RefusalCode::GrantRequired,
        RefusalCode::GrantInvalid,
        RefusalCode::Busy,
        RefusalCode::Limit,
        RefusalCode::BadRequest,
        RefusalCode::Conflict,
        RefusalCode::Refused,
        RefusalCode::Internal,
        RefusalCode::QuotaExceeded,
        RefusalCode::RateLimited,
        RefusalCode::ModeNotGranted,
        RefusalCode::UnknownField,
        RefusalCode::FieldNotGranted,
        RefusalCode::NotMember,
        RefusalCode::Unknown,
    ];

    #[test]
    fn wire_names_are_the_serde_names() {
        for code in ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<RefusalCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn an_unknown_code_reads_as_unknown() {
        let code: RefusalCode = serde_json::from_str("\"over-the-moon\"").unwrap();
        assert_eq!(code, RefusalCode::Unknown);
        assert!(!code.is_retryable());
        assert!(RefusalCode::Busy.is_retryable());
    }
}
