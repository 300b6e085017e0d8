//! Handlers of the node's own routes: health, the node, connected peers, the region table and
//! the OpenAPI document as served. They call the service layer and shape JSON.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{ApiError, ApiState};

pub(super) async fn openapi_json(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(state.openapi.as_ref().clone())
}

/// A region as `GET /api/v1/regions` lists it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RegionView {
    /// GB/T 2260 code, e.g. "320000".
    pub code: String,
    /// Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
    /// province, city or municipality.
    pub level: String,
    /// The province's code.
    pub province: String,
}

pub(super) async fn regions() -> Json<Vec<RegionView>> {
    Json(
        crate::model::region::all()
            .map(|r| RegionView {
                code: r.code.to_string(),
                name_zh: r.name_zh.to_string(),
                name_en: r.name_en.to_string(),
                level: format!("{:?}", r.level).to_lowercase(),
                province: r.province.to_string(),
            })
            .collect(),
    )
}

pub(super) async fn health(
    State(state): State<ApiState>,
) -> Result<Json<crate::node::Health>, ApiError> {
    Ok(Json(state.node.health().await?))
}

pub(super) async fn node_view(
    State(state): State<ApiState>,
) -> Result<Json<crate::node::NodeView>, ApiError> {
    Ok(Json(state.node.view().await?))
}

pub(super) async fn peers(
    State(state): State<ApiState>,
) -> Result<Json<Vec<crate::node::PeerView>>, ApiError> {
    Ok(Json(state.node.peers().await?))
}
