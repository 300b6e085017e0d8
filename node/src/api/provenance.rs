//! Handlers of the provenance routes: records, one record with its proof, the deliveries
//! report, alarms, the tree head, a full check of the log, and evidence bundles.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::model::provenance::{
    Alarm, Cosignature, EvidenceBundle, ProvenanceRecord, Query as LogQuery, TreeHead,
    VerifiedBundle, verify_bundle_value,
};
use crate::model::signed::Signed;
use crate::node::provenance::{BundleEntryView, Delivery, ExportQuery};

type ApiResult<T> = Result<Json<T>, ApiError>;

pub(super) async fn list(
    State(s): State<ApiState>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> ApiResult<Vec<ProvenanceRecord>> {
    let Query(q) = q?;
    Ok(Json(s.node.provenance_query(&q)?))
}

pub(super) async fn show(
    State(s): State<ApiState>,
    Path(seq): Path<String>,
) -> ApiResult<BundleEntryView> {
    let seq: u64 = seq.parse().map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad-request",
            format!("{seq:?} is not a record number"),
        )
    })?;
    Ok(Json(s.node.provenance_show(seq)?))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct DatasetQuery {
    dataset: String,
}

pub(super) async fn deliveries(
    State(s): State<ApiState>,
    q: Result<Query<DatasetQuery>, QueryRejection>,
) -> ApiResult<Vec<Delivery>> {
    let Query(q) = q?;
    Ok(Json(s.node.deliveries(&q.dataset)?))
}

/// Body of `POST /api/v1/provenance/alarms/resolve`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ResolveBody {
    /// The log's owner (peer id).
    pub log: String,
    /// What the operator found and who confirmed it.
    pub note: String,
}

pub(super) async fn alarms_resolve(
    State(s): State<ApiState>,
    body: Result<Json<ResolveBody>, JsonRejection>,
) -> ApiResult<Vec<Alarm>> {
    let Json(b) = body?;
    Ok(Json(s.node.resolve_alarms(&b.log, &b.note).await?))
}

pub(super) async fn alarms(State(s): State<ApiState>) -> ApiResult<Vec<Alarm>> {
    Ok(Json(s.node.alarms()?))
}

/// `GET /api/v1/provenance/head`: the latest signed tree head and the witnesses' cosignatures.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct HeadView {
    /// The latest signed head.
    pub head: Option<Signed<TreeHead>>,
    /// The latest cosignature of our log from each witness.
    pub cosignatures: Vec<Signed<Cosignature>>,
}

pub(super) async fn head(State(s): State<ApiState>) -> ApiResult<HeadView> {
    let log = s.node.provenance();
    Ok(Json(HeadView {
        head: log.head(),
        cosignatures: log.cosignatures().map_err(crate::node::NodeError::from)?,
    }))
}

/// `POST /api/v1/provenance/check`: recomputes every leaf and node of the log.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct CheckView {
    /// Records verified.
    pub size: u64,
    /// The root they give (hex).
    pub root: String,
    /// Milliseconds taken.
    pub ms: u64,
}

pub(super) async fn check(State(s): State<ApiState>) -> ApiResult<CheckView> {
    let log = s.node.provenance().clone();
    let started = std::time::Instant::now();
    let (size, root) = tokio::task::spawn_blocking(move || log.verify_all())
        .await
        .map_err(crate::node::NodeError::task("checking the log"))?
        .map_err(crate::node::NodeError::from)?;
    Ok(Json(CheckView {
        size,
        root: hex::encode(root),
        ms: started.elapsed().as_millis() as u64,
    }))
}

pub(super) async fn export(
    State(s): State<ApiState>,
    body: Result<Json<ExportQuery>, JsonRejection>,
) -> ApiResult<EvidenceBundle> {
    let Json(q) = body?;
    let node = s.node.clone();
    let bundle = tokio::task::spawn_blocking(move || node.export_bundle(&q))
        .await
        .map_err(crate::node::NodeError::task("exporting the bundle"))??;
    Ok(Json(bundle))
}

pub(super) async fn verify(
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> ApiResult<VerifiedBundle> {
    let Json(value) = body?;
    let verified = tokio::task::spawn_blocking(move || verify_bundle_value(&value))
        .await
        .map_err(crate::node::NodeError::task("verifying the bundle"))?
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-evidence",
                e.to_string(),
            )
        })?;
    Ok(Json(verified))
}
