//! Handlers of the catalogue, schema and document routes: parse, call the service, shape JSON.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::model::catalogue::{Catalogue, CatalogueEntry, Demand, OfferInput, SchemaDoc, Withheld};
use crate::model::exchange::{DataFormat, Manifest};
use crate::model::signed::{AnySigned, Signed, Verified, verify_any};
use crate::node::catalogue::{DEMANDS, MatchReport, OFFERS, SearchHit, SearchQuery, WITHHELD};
use crate::node::schemas::SchemaSummary;

type ApiResult<T> = Result<Json<T>, ApiError>;

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct ListQuery {
    #[serde(default)]
    network: bool,
}

pub(super) async fn schema_list(
    State(s): State<ApiState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Vec<SchemaSummary>> {
    let Query(q) = q?;
    Ok(Json(s.node.schema_summaries(q.network)?))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct VersionQuery {
    version: Option<String>,
}

pub(super) async fn schema_show(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    q: Result<Query<VersionQuery>, QueryRejection>,
) -> ApiResult<Signed<SchemaDoc>> {
    let Query(q) = q?;
    Ok(Json(s.node.schema_doc(&id, q.version.as_deref())?))
}

/// Body of `POST /api/v1/schemas`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PublishSchema {
    /// Standard id.
    pub id: String,
    /// Semantic version.
    pub version: String,
    /// Title (default: the schema's `title`).
    #[serde(default)]
    pub title: Option<String>,
    /// The JSON Schema.
    pub schema: serde_json::Value,
}

pub(super) async fn schema_publish(
    State(s): State<ApiState>,
    body: Result<Json<PublishSchema>, JsonRejection>,
) -> Result<(StatusCode, Json<Signed<SchemaDoc>>), ApiError> {
    let Json(b) = body?;
    let doc = s
        .node
        .publish_schema(&b.id, &b.version, b.title, b.schema)
        .await?;
    Ok((StatusCode::CREATED, Json(doc)))
}

/// `GET /api/v1/catalogue`: our lists and our latest signed snapshot.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct OwnCatalogue {
    /// Our latest signed snapshot.
    pub signed: Option<Signed<Catalogue>>,
    /// Offers.
    pub offers: Vec<CatalogueEntry>,
    /// Demands.
    pub demands: Vec<Demand>,
    /// Withheld.
    pub withheld: Vec<Withheld>,
}

pub(super) async fn catalogue_show(State(s): State<ApiState>) -> ApiResult<OwnCatalogue> {
    Ok(Json(OwnCatalogue {
        signed: s.node.own_catalogue()?,
        offers: s.node.offers()?,
        demands: s.node.demands()?,
        withheld: s.node.withheld()?,
    }))
}

pub(super) async fn catalogue_network(
    State(s): State<ApiState>,
) -> ApiResult<Vec<Signed<Catalogue>>> {
    Ok(Json(s.node.network_catalogues()))
}

pub(super) async fn catalogue_search(
    State(s): State<ApiState>,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> ApiResult<Vec<SearchHit>> {
    let Query(q) = q?;
    Ok(Json(s.node.search(&q)))
}

/// The format of a catalogue export.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum ExportFormat {
    /// DCAT-AP 3 JSON-LD (`application/ld+json`).
    Dcat,
    /// The national catalogue template's CSV (`text/csv`).
    Csv,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct ExportQuery {
    /// dcat or csv.
    format: ExportFormat,
    /// Every member's offers, not only ours.
    #[serde(default)]
    network: bool,
}

pub(super) async fn catalogue_export(
    State(s): State<ApiState>,
    q: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let catalogues: Vec<Catalogue> = if q.network {
        s.node
            .network_catalogues()
            .into_iter()
            .map(|c| c.document)
            .collect()
    } else {
        s.node
            .own_catalogue()?
            .into_iter()
            .map(|c| c.document)
            .collect()
    };
    match q.format {
        ExportFormat::Dcat => {
            let doc = crate::export::dcat_jsonld(&catalogues);
            Ok(([(header::CONTENT_TYPE, "application/ld+json")], Json(doc)).into_response())
        }
        ExportFormat::Csv => {
            let text = crate::export::catalogue_csv(&catalogues);
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response())
        }
    }
}

pub(super) async fn offer_add(
    State(s): State<ApiState>,
    body: Result<Json<OfferInput>, JsonRejection>,
) -> Result<(StatusCode, Json<CatalogueEntry>), ApiError> {
    let Json(b) = body?;
    Ok((StatusCode::CREATED, Json(s.node.add_offer(b).await?)))
}

pub(super) async fn demand_add(
    State(s): State<ApiState>,
    body: Result<Json<Demand>, JsonRejection>,
) -> Result<(StatusCode, Json<Demand>), ApiError> {
    let Json(b) = body?;
    Ok((StatusCode::CREATED, Json(s.node.add_demand(b).await?)))
}

pub(super) async fn withheld_add(
    State(s): State<ApiState>,
    body: Result<Json<Withheld>, JsonRejection>,
) -> Result<(StatusCode, Json<Withheld>), ApiError> {
    let Json(b) = body?;
    Ok((StatusCode::CREATED, Json(s.node.add_withheld(b).await?)))
}

/// The answer of a removal.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Removed {
    /// Which list.
    pub list: String,
    /// Which entry.
    pub identifier: String,
}

async fn remove(s: ApiState, list: &str, id: String) -> ApiResult<Removed> {
    s.node.remove_entry(list, &id).await?;
    Ok(Json(Removed {
        list: list.to_string(),
        identifier: id,
    }))
}

pub(super) async fn offer_remove(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Removed> {
    remove(s, OFFERS, id).await
}

pub(super) async fn demand_remove(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Removed> {
    remove(s, DEMANDS, id).await
}

pub(super) async fn withheld_remove(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Removed> {
    remove(s, WITHHELD, id).await
}

pub(super) async fn demand_match(State(s): State<ApiState>) -> ApiResult<MatchReport> {
    Ok(Json(s.node.match_demands()))
}

/// Answer of `POST /api/v1/doc/canon`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Canonical {
    /// The RFC 8785 canonical form.
    pub canonical: String,
}

pub(super) async fn doc_canon(
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> ApiResult<Canonical> {
    let Json(v) = body?;
    let canonical = crate::model::canonical::canonicalize(&v)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.to_string()))?;
    Ok(Json(Canonical { canonical }))
}

pub(super) async fn doc_verify(
    body: Result<Json<AnySigned>, JsonRejection>,
) -> ApiResult<Verified> {
    let Json(doc) = body?;
    Ok(Json(verify_any(&doc)))
}

/// Body of `POST /api/v1/datasets/{id}/versions`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PublishVersion {
    /// Absolute path of the file on the node's machine.
    pub file: std::path::PathBuf,
    /// jsonl, csv or file.
    pub format: DataFormat,
}

pub(super) async fn version_publish(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<PublishVersion>, JsonRejection>,
) -> Result<(StatusCode, Json<Signed<Manifest>>), ApiError> {
    let Json(b) = body?;
    if !b.file.is_absolute() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!(
                "file {:?}: give an absolute path on the node's machine",
                b.file
            ),
        ));
    }
    let m = s.node.publish_dataset(&id, &b.file, b.format).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

pub(super) async fn versions_list(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Vec<Signed<Manifest>>> {
    Ok(Json(s.node.manifests(None, &id)?))
}

pub(super) async fn protocol_schemas() -> Json<std::collections::BTreeMap<String, serde_json::Value>>
{
    Json(crate::model::protocol_schemas::all().into_iter().collect())
}
