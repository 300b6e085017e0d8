//! The API's one error shape, `{"error", "message", "field"?}`: [`ApiError`] with its status, the mapping
//! of the service layer's [`NodeError`] to a status and code, axum's extractor refusals in the
//! same shape, and the fallbacks for an unknown path or method.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::node::{ErrorClass, NodeError};

/// The one JSON shape of every error the API returns.
#[derive(Debug, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ApiErrorBody {
    /// Machine-readable code, e.g. "unauthorized", "not-found", "bad-request".
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// For bad input: the field, parameter or document part at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
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
                field: None,
            },
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let (status, code) = match e.class() {
            ErrorClass::BadInput => (StatusCode::BAD_REQUEST, "bad-request"),
            ErrorClass::NotFound => (StatusCode::NOT_FOUND, "not-found"),
            ErrorClass::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorClass::Peer => (StatusCode::BAD_GATEWAY, "peer"),
            ErrorClass::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ErrorClass::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        };
        // The node's own failures keep their whole source chain, in the log and in the answer.
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            let chain = e.chain();
            tracing::error!(error = %chain, "request failed inside the node");
            chain
        } else {
            e.to_string()
        };
        let mut error = ApiError::new(status, code, message);
        error.body.field = e.field().map(str::to_string);
        error
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

/// Refusals axum makes itself, in plain text, before or outside our extractors (a path
/// segment that is not UTF-8, a body over the limit, a body that is not UTF-8 text), put into
/// our shape, so that every client error of the API is JSON as the OpenAPI document says.
pub(super) async fn plain_refusals_as_json(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !status.is_client_error() || !plain {
        return response;
    }
    // axum's refusal texts are one line; more than this is not one of them.
    let text = match axum::body::to_bytes(response.into_body(), 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => status.canonical_reason().unwrap_or("refused").to_string(),
    };
    match status {
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE
        | StatusCode::UNPROCESSABLE_ENTITY => rejection(status, text),
        _ => ApiError::new(status, "refused", text),
    }
    .into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_503_and_a_peer_failure_502() {
        let busy = ApiError::from(NodeError::Busy("retry shortly".into()));
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.body.error, "busy");
        assert_eq!(busy.body.message, "retry shortly");
        let peer = ApiError::from(NodeError::Net(crate::net::NetError::Stopped));
        assert_eq!(peer.status, StatusCode::BAD_GATEWAY);
        assert_eq!(peer.body.error, "peer");
    }
}
