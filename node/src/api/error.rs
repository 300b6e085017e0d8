//! The API's one error shape, `{"error", "message"}`: [`ApiError`] with its status, the mapping
//! of the service layer's [`NodeError`] to a status and code, axum's extractor refusals in the
//! same shape, and the fallbacks for an unknown path or method.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::node::NodeError;

/// The one JSON shape of every error the API returns.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ApiErrorBody {
    /// Machine-readable code, e.g. "unauthorized", "not-found", "bad-request".
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
}

/// An error as the API returns it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ApiErrorBody,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ApiErrorBody {
                error: code.into(),
                message: message.into(),
            },
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let (status, code) = match &e {
            NodeError::Invalid(_) | NodeError::Signature(_) => {
                (StatusCode::BAD_REQUEST, "bad-request")
            }
            NodeError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            NodeError::Conflict(_) | NodeError::Stale(_) => (StatusCode::CONFLICT, "conflict"),
            NodeError::Net(_) | NodeError::BadPeer { .. } => (StatusCode::BAD_GATEWAY, "peer"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

/// An extractor's refusal in our error shape: 415 for a missing JSON content type, 413 for a
/// body over the limit, 400 for anything else (bad JSON, a missing field, a wrong type).
fn rejection(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(status, "too-large", text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(status, "unsupported-media-type", text),
        // axum answers 422 for well-formed JSON of the wrong shape; to us that is bad input
        // like any other, and one status for it is simpler for clients.
        _ => ApiError::new(StatusCode::BAD_REQUEST, "bad-request", text),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this endpoint does not take that method (see /api/v1/openapi.json)",
    )
}
