//! Handlers of the federation routes: the charter in force with its members, the versions
//! applied, one version, the proposals of the next version, submitting, signing (with this
//! node's key) and applying. Charters are read from the body as text and parsed strictly (the
//! same bounded parser as the CLI's), never by the lenient JSON extractor.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{ApiError, ApiState};
use crate::model::charter::SignedCharter;
use crate::node::charter_sync::ProposalView;
use crate::node::key_rotation::KeyRotationView;
use crate::node::{CharterVersionView, FederationView, Node};

type ApiResult<T> = Result<Json<T>, ApiError>;

pub(super) async fn view(State(s): State<ApiState>) -> ApiResult<FederationView> {
    Ok(Json(s.node.federation()?))
}

pub(super) async fn history(State(s): State<ApiState>) -> ApiResult<Vec<CharterVersionView>> {
    Ok(Json(s.node.federation_history()?))
}

pub(super) async fn version(
    State(s): State<ApiState>,
    Path(version): Path<String>,
) -> ApiResult<SignedCharter> {
    let version: u64 = version.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!("{version:?} is not a charter version"),
        )
    })?;
    Ok(Json(s.node.federation_version(version)?))
}

pub(super) async fn proposals(State(s): State<ApiState>) -> ApiResult<Vec<ProposalView>> {
    Ok(Json(s.node.federation_proposals()?))
}

pub(super) async fn submit(
    State(s): State<ApiState>,
    body: Bytes,
) -> Result<(StatusCode, Json<ProposalView>), ApiError> {
    let charter = Node::parse_charter(charter_text(&body)?)?;
    Ok((
        StatusCode::CREATED,
        Json(s.node.submit_proposal(charter).await?),
    ))
}

pub(super) async fn sign(
    State(s): State<ApiState>,
    Path(digest): Path<String>,
) -> ApiResult<ProposalView> {
    Ok(Json(s.node.sign_proposal(&digest).await?))
}

pub(super) async fn rotate_key(State(s): State<ApiState>) -> ApiResult<KeyRotationView> {
    Ok(Json(s.node.rotate_key().await?))
}

pub(super) async fn apply(State(s): State<ApiState>, body: Bytes) -> ApiResult<CharterVersionView> {
    let charter = Node::parse_charter(charter_text(&body)?)?;
    Ok(Json(s.node.apply_charter(charter).await?))
}

/// The body as text; axum's `String` extractor would answer bad UTF-8 in plain text, outside
/// the API's JSON error shape.
fn charter_text(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!("the charter is not UTF-8 text: {e}"),
        )
    })
}
