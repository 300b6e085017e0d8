//! The bearer-token check in front of every API route ([`require_token`], compared in constant
//! time) and `POST /api/v1/token/reload`, which makes the node read a replaced `api.token`.
//! The token itself is owned by `identity::AdminToken`; this module only checks and reloads it.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{ApiError, ApiState};

/// Passes a request on only with `Authorization: Bearer <the current token>`; anything else is
/// 401 with a `WWW-Authenticate` challenge.
pub(super) async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(presented.as_bytes(), state.token.current().as_bytes()) {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"yrd\""),
        );
        return response;
    }
    next.run(request).await
}

/// Compares without an early exit, so timing does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answer of `POST /api/v1/token/reload`.
#[derive(Debug, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct TokenReloaded {
    /// Always true: the node now checks the token in its `api.token`.
    pub reloaded: bool,
}

pub(super) async fn token_reload(
    State(state): State<ApiState>,
) -> Result<Json<TokenReloaded>, ApiError> {
    state.token.reload().map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{e}; the old token stays in force"),
        )
    })?;
    Ok(Json(TokenReloaded { reloaded: true }))
}
