//! The bearer-token check in front of every API route ([`require_token`], compared in constant
//! time) and `POST /api/v1/token/reload`, which makes the node read a replaced `api.token`.
//! The token itself is owned by `identity::AdminToken`; this module only checks and reloads it.
//! A scoped API client's token (`node::clients`) passes only to the routes of what it was
//! allowed (`POST /api/v1/query`, `POST /api/v1/fetch`), never to the admin routes; the
//! handler then checks the dataset against its scopes ([`Caller`]).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{ApiError, ApiState};
use crate::node::clients::{ClientAction, ClientView};

/// Who is calling: the operator (the admin token) or a scoped API client.
#[derive(Debug, Clone)]
pub(super) enum Caller {
    /// The admin token: every route.
    Admin,
    /// A scoped client: only what it was allowed.
    Client(ClientView),
}

impl Caller {
    /// Refuses a client without `action` on the dataset of `target` (`REGION_OR_PEER/DATASET`);
    /// returns the client's name, for the records of its calls.
    pub(super) fn check(
        &self,
        action: ClientAction,
        target: &str,
    ) -> Result<Option<String>, ApiError> {
        match self {
            Caller::Admin => Ok(None),
            Caller::Client(c) => {
                let dataset = target.rsplit('/').next().unwrap_or(target);
                if c.allows(action, dataset) {
                    Ok(Some(c.name.clone()))
                } else {
                    Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        format!(
                            "client {} is not allowed to {} {dataset}",
                            c.name,
                            action.as_str()
                        ),
                    ))
                }
            }
        }
    }
}

/// The routes a client allowed `action` may reach.
fn client_route(method: &axum::http::Method, path: &str) -> Option<ClientAction> {
    if method != axum::http::Method::POST {
        return None;
    }
    match path {
        "/api/v1/query" => Some(ClientAction::Query),
        "/api/v1/fetch" => Some(ClientAction::Fetch),
        _ => None,
    }
}

/// Passes a request on only with `Authorization: Bearer <the current token>` (or a scoped
/// client's token, to its routes only: 403 elsewhere); anything else is 401 with a
/// `WWW-Authenticate` challenge.
pub(super) async fn require_token(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), state.token.current().as_bytes()) {
        request.extensions_mut().insert(Caller::Admin);
        return next.run(request).await;
    }
    let client = if presented.is_empty() {
        None
    } else {
        state.node.client_for_token(presented).ok().flatten()
    };
    if let Some(c) = client {
        let allowed = client_route(request.method(), request.uri().path())
            .is_some_and(|action| c.allow.iter().any(|s| s.action == action));
        if !allowed {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "client {} may call only what it was allowed ({}), never this route",
                    c.name,
                    c.allowed()
                ),
            )
            .into_response();
        }
        request.extensions_mut().insert(Caller::Client(c));
        return next.run(request).await;
    }
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
    response
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
