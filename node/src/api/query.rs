//! Handlers of the query routes: one query to a provider (verify or lookup), and the report of
//! the calls about one key of a dataset. Key values travel in request bodies, never in URLs, so
//! they stay out of access logs.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::model::provenance::ProvenanceRecord;
use crate::model::query::FieldValue;
use crate::node::query::{QueryInput, QueryOutcome};

type ApiResult<T> = Result<Json<T>, ApiError>;

pub(super) async fn query(
    State(s): State<ApiState>,
    body: Result<Json<QueryInput>, JsonRejection>,
) -> ApiResult<QueryOutcome> {
    let Json(input) = body?;
    Ok(Json(s.node.query(input, None).await?))
}

/// Body of `POST /api/v1/provenance/queries`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryCallsBody {
    /// The dataset.
    pub dataset: String,
    /// The key: its field and value (hashed here, never stored).
    pub key: FieldValue,
    /// The dataset's publisher, for calls we made as a caller (default: us).
    #[serde(default)]
    pub publisher: Option<String>,
}

pub(super) async fn calls(
    State(s): State<ApiState>,
    body: Result<Json<QueryCallsBody>, JsonRejection>,
) -> ApiResult<Vec<ProvenanceRecord>> {
    let Json(b) = body?;
    Ok(Json(s.node.provenance_query_calls(
        &b.dataset,
        &b.key,
        b.publisher.as_deref(),
    )?))
}
