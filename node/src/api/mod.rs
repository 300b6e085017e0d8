//! The admin HTTP API (axum): every route behind the bearer token, JSON in and out, bound to
//! loopback by default. It translates HTTP to calls on the service layer and decides nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::node::{Node, NodeError};

/// The one JSON shape of every error the API returns.
#[derive(Debug, Serialize)]
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
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

pub mod exchange;
pub mod provenance;
pub mod routes;

#[derive(Clone)]
struct ApiState {
    node: Node,
    token: Arc<str>,
}

/// The running API server.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// Binds `addr` (port 0 picks one) and serves the API for `node`.
    pub async fn bind(node: Node, addr: SocketAddr, token: String) -> Result<ApiServer, NodeError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| NodeError::Api {
                addr,
                cause: if e.kind() == std::io::ErrorKind::AddrInUse {
                    "the port is already in use (another node on this port?)".into()
                } else {
                    e.to_string()
                },
            })?;
        let local = listener.local_addr().map_err(|e| NodeError::Api {
            addr,
            cause: e.to_string(),
        })?;
        let app = router(node, token);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "admin API stopped with an error");
            }
        });
        Ok(ApiServer {
            addr: local,
            stop: Some(stop_tx),
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting requests and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Open keep-alive connections would hold graceful shutdown forever; bound the wait.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
    }
}

fn router(node: Node, token: String) -> Router {
    let state = ApiState {
        node,
        token: Arc::from(token),
    };
    let api = Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/node", get(node_view))
        .route("/api/v1/peers", get(peers))
        .route(
            "/api/v1/schemas",
            get(routes::schema_list).post(routes::schema_publish),
        )
        .route("/api/v1/schemas/{id}", get(routes::schema_show))
        .route("/api/v1/catalogue", get(routes::catalogue_show))
        .route("/api/v1/catalogue/network", get(routes::catalogue_network))
        .route("/api/v1/catalogue/search", get(routes::catalogue_search))
        .route("/api/v1/catalogue/export", get(routes::catalogue_export))
        .route("/api/v1/catalogue/offers", post(routes::offer_add))
        .route(
            "/api/v1/catalogue/offers/{id}",
            delete(routes::offer_remove),
        )
        .route("/api/v1/catalogue/demands", post(routes::demand_add))
        .route(
            "/api/v1/catalogue/demands/{id}",
            delete(routes::demand_remove),
        )
        .route("/api/v1/catalogue/withheld", post(routes::withheld_add))
        .route(
            "/api/v1/catalogue/withheld/{id}",
            delete(routes::withheld_remove),
        )
        .route("/api/v1/demands/match", get(routes::demand_match))
        .route(
            "/api/v1/datasets/{id}/versions",
            get(routes::versions_list).post(routes::version_publish),
        )
        .route("/api/v1/fetch", post(exchange::fetch))
        .route("/api/v1/transfers", get(exchange::transfers))
        .route("/api/v1/transfers/{id}", get(exchange::transfer))
        .route(
            "/api/v1/transfers/{id}/content",
            get(exchange::transfer_content),
        )
        .route(
            "/api/v1/requests",
            get(exchange::requests).post(exchange::request_create),
        )
        .route("/api/v1/requests/{id}", get(exchange::request_show))
        .route(
            "/api/v1/requests/{id}/approve",
            post(exchange::request_approve),
        )
        .route("/api/v1/requests/{id}/deny", post(exchange::request_deny))
        .route("/api/v1/grants", get(exchange::grants))
        .route("/api/v1/grants/{id}", get(exchange::grant_show))
        .route("/api/v1/grants/{id}/revoke", post(exchange::grant_revoke))
        .route(
            "/api/v1/subscriptions",
            get(exchange::subscriptions)
                .post(exchange::subscribe)
                .delete(exchange::unsubscribe),
        )
        .route("/api/v1/receipts", get(exchange::receipts))
        .route("/api/v1/provenance", get(provenance::list))
        .route("/api/v1/provenance/head", get(provenance::head))
        .route("/api/v1/provenance/check", post(provenance::check))
        .route("/api/v1/provenance/alarms", get(provenance::alarms))
        .route("/api/v1/provenance/deliveries", get(provenance::deliveries))
        .route("/api/v1/provenance/export", post(provenance::export))
        .route("/api/v1/provenance/{seq}", get(provenance::show))
        .route("/api/v1/doc/canon", post(routes::doc_canon))
        .route("/api/v1/doc/verify", post(routes::doc_verify))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state);
    // The console's static assets carry no data, so they are served before the token check.
    Router::new().merge(crate::console::routes()).merge(api)
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(presented.as_bytes(), state.token.as_bytes()) {
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

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint")
}

async fn health(State(state): State<ApiState>) -> Result<Json<crate::node::Health>, ApiError> {
    Ok(Json(state.node.health().await?))
}

async fn node_view(State(state): State<ApiState>) -> Result<Json<crate::node::NodeView>, ApiError> {
    Ok(Json(state.node.view().await?))
}

async fn peers(
    State(state): State<ApiState>,
) -> Result<Json<Vec<crate::node::PeerView>>, ApiError> {
    Ok(Json(state.node.peers().await?))
}
