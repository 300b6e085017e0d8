//! Handlers of the query routes: one query to a provider (verify or lookup), the report of
//! the calls about one key of a dataset, and the scoped API clients that call them. Key values travel in request bodies, never in URLs, so
//! they stay out of access logs.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::{ApiError, ApiState};
use crate::model::provenance::ProvenanceRecord;
use crate::model::query::FieldValue;
use crate::node::clients::{ClientAction, ClientView, NewClient};
use crate::node::query::{QueryInput, QueryOutcome};

type ApiResult<T> = Result<Json<T>, ApiError>;

pub(super) async fn query(
    State(s): State<ApiState>,
    caller: Option<Extension<Caller>>,
    body: Result<Json<QueryInput>, JsonRejection>,
) -> ApiResult<QueryOutcome> {
    let Json(input) = body?;
    let client = match caller {
        Some(Extension(c)) => c.check(ClientAction::Query, &input.target)?,
        None => None,
    };
    Ok(Json(s.node.query(input, client.as_deref()).await?))
}

/// Body of `POST /api/v1/clients`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientBody {
    /// The client's name (an identifier), named in the records of its calls.
    pub name: String,
    /// What it may do: `query:DATASET`, `fetch:DATASET` (`*`: every dataset).
    pub allow: Vec<String>,
}

pub(super) async fn client_add(
    State(s): State<ApiState>,
    body: Result<Json<ClientBody>, JsonRejection>,
) -> Result<(StatusCode, Json<NewClient>), ApiError> {
    let Json(b) = body?;
    Ok((
        StatusCode::CREATED,
        Json(s.node.add_client(&b.name, &b.allow).await?),
    ))
}

pub(super) async fn clients(State(s): State<ApiState>) -> ApiResult<Vec<ClientView>> {
    Ok(Json(s.node.clients()?))
}

pub(super) async fn client_remove(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<ClientView> {
    Ok(Json(s.node.remove_client(&name).await?))
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
