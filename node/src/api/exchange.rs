//! Handlers of the exchange routes: fetch and transfers, access requests, grants,
//! subscriptions and receipts. They parse, call the service layer and shape JSON.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{ApiError, ApiState};
use crate::clock::parse_duration;
use crate::model::exchange::{Denial, Grant, Receipt};
use crate::model::masking::FieldMask;
use crate::model::message::RequestStatus;
use crate::model::query::{AccessMode, QueryLimits};
use crate::model::signed::Signed;
use crate::node::NodeError;
use crate::node::access::{Approval, Direction, GrantRecord, GrantState, RequestRecord};
use crate::node::transfer::{Subscription, TransferView};

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Body of `POST /api/v1/fetch`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct FetchBody {
    /// `REGION_OR_PEER/DATASET`.
    pub target: String,
    /// A version (default: the latest).
    #[serde(default)]
    pub version: Option<u64>,
    /// A grant id (default: the latest valid grant we hold, for conditional data).
    #[serde(default)]
    pub grant: Option<String>,
}

pub(super) async fn fetch(
    State(s): State<ApiState>,
    caller: Option<axum::Extension<super::auth::Caller>>,
    body: Result<Json<FetchBody>, JsonRejection>,
) -> Result<(StatusCode, Json<TransferView>), ApiError> {
    let Json(b) = body?;
    let client = match caller {
        Some(axum::Extension(c)) => {
            c.check(crate::node::clients::ClientAction::Fetch, &b.target)?
        }
        None => None,
    };
    let view = s
        .node
        .fetch_as(&b.target, b.version, b.grant, client.as_deref())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

pub(super) async fn transfers(State(s): State<ApiState>) -> ApiResult<Vec<TransferView>> {
    Ok(Json(s.node.transfers()))
}

/// The longest `wait_ms` of `GET /api/v1/transfers/{id}`.
pub const MAX_WAIT_MS: u64 = 30_000;

/// How many `wait_ms` waits may be open at once; beyond, 503. The API has no general limit on
/// concurrent requests, and each wait holds a connection for up to [`MAX_WAIT_MS`].
pub(super) const MAX_WAITERS: usize = 256;

/// Query of `GET /api/v1/transfers/{id}`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct TransferQuery {
    /// Wait up to this many milliseconds (at most 30000) for the transfer to finish (done or
    /// failed), answering as soon as it does; without it, answer at once.
    #[schemars(range(max = MAX_WAIT_MS))]
    wait_ms: Option<u64>,
}

/// One of the open waits' places, or 503 `busy` when all are taken.
fn admit_wait(waiters: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, ApiError> {
    waiters.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "{MAX_WAITERS} transfer waits are open already; retry, or poll without wait_ms"
            ),
        )
    })
}

pub(super) async fn transfer(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    q: Result<Query<TransferQuery>, QueryRejection>,
) -> ApiResult<TransferView> {
    // `wait_ms` is the only parameter, so any refusal is about it.
    let Query(q) = q.map_err(|e| {
        NodeError::invalid(
            "wait_ms",
            format!(
                "wait_ms must be a whole number of milliseconds: {}",
                e.body_text()
            ),
        )
    })?;
    let Some(wait_ms) = q.wait_ms else {
        return Ok(Json(s.node.transfer(&id)?));
    };
    if wait_ms > MAX_WAIT_MS {
        return Err(NodeError::invalid(
            "wait_ms",
            format!("wait_ms is {wait_ms}; at most {MAX_WAIT_MS} ms"),
        )
        .into());
    }
    let _waiting = admit_wait(&s.transfer_waiters)?;
    let wait = s.node.wait_transfer(&id, Duration::from_millis(wait_ms));
    tokio::select! {
        view = wait => Ok(Json(view?)),
        // The API is stopping: answer now rather than hold its graceful shutdown.
        () = s.stop.cancelled() => Ok(Json(s.node.transfer(&id)?)),
    }
}

/// `GET /api/v1/transfers/{id}/content`: the verified file of a completed fetch.
pub(super) async fn transfer_content(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (path, manifest) = s.node.fetched_file(&id)?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("cannot open the fetched file: {e}"),
        )
    })?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    let m = &manifest.document;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, m.size.to_string()),
            (
                header::HeaderName::from_static("x-yrd-digest"),
                m.digest.clone(),
            ),
        ],
        body,
    )
        .into_response())
}

/// Body of `POST /api/v1/requests`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct RequestBody {
    /// `REGION_OR_PEER/DATASET`.
    pub target: String,
    /// Why the data is needed (履职事项).
    pub purpose: String,
    /// The legal basis (法律依据).
    pub basis: String,
    /// Fields wanted (empty: all).
    #[serde(default)]
    pub fields: Vec<String>,
}

pub(super) async fn request_create(
    State(s): State<ApiState>,
    body: Result<Json<RequestBody>, JsonRejection>,
) -> Result<(StatusCode, Json<RequestRecord>), ApiError> {
    let Json(b) = body?;
    let r = s
        .node
        .request_access(&b.target, &b.purpose, &b.basis, b.fields)
        .await?;
    Ok((StatusCode::CREATED, Json(r)))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct RequestFilter {
    direction: Option<Direction>,
    status: Option<RequestStatus>,
}

pub(super) async fn requests(
    State(s): State<ApiState>,
    q: Result<Query<RequestFilter>, QueryRejection>,
) -> ApiResult<Vec<RequestRecord>> {
    let Query(q) = q?;
    let list = s
        .node
        .requests()?
        .into_iter()
        .filter(|r| q.direction.is_none_or(|d| d == r.direction))
        .filter(|r| q.status.is_none_or(|st| st == r.status))
        .collect();
    Ok(Json(list))
}

pub(super) async fn request_show(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<RequestRecord> {
    Ok(Json(s.node.request_record(&id)?))
}

/// Body of `POST /api/v1/requests/{id}/approve`.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct ApproveBody {
    /// Fields granted (default: as requested, or all).
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// Masks, e.g. `{"field":"id_number","rule":"keep","first":6,"last":4}`.
    #[serde(default)]
    pub masks: Vec<FieldMask>,
    /// Validity: `90d`, `12h`, `30m` or `3600s` (default: `exchange.default_grant_days`).
    #[serde(default)]
    pub expires: Option<String>,
    /// What the grantee may do: `fetch`, `verify`, `lookup` (default: fetch only).
    #[serde(default)]
    pub modes: Vec<AccessMode>,
    /// Limits on its query calls (default: none).
    #[serde(default)]
    pub query_limits: Option<QueryLimits>,
}

pub(super) async fn request_approve(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<ApproveBody>, JsonRejection>,
) -> ApiResult<Signed<Grant>> {
    let Json(b) = body?;
    let expires_in_secs = match b.expires.as_deref() {
        None => None,
        Some(text) => Some(parse_duration(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("expires {text:?}: expected a number followed by d, h, m or s, e.g. 90d"),
            )
        })?),
    };
    let approval = Approval {
        fields: b.fields,
        masks: b.masks,
        expires_in_secs,
        modes: b.modes,
        query_limits: b.query_limits,
    };
    Ok(Json(s.node.approve_request(&id, approval).await?))
}

/// Body of `POST /api/v1/requests/{id}/deny` and `POST /api/v1/grants/{id}/revoke`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ReasonBody {
    /// Why (the requester or grantee reads it).
    pub reason: String,
}

pub(super) async fn request_deny(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<ReasonBody>, JsonRejection>,
) -> ApiResult<Signed<Denial>> {
    let Json(b) = body?;
    Ok(Json(s.node.deny_request(&id, &b.reason).await?))
}

/// A grant with its state now.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct GrantView {
    /// The record.
    #[serde(flatten)]
    pub record: GrantRecord,
    /// valid, not-yet-valid, expired or revoked.
    pub state: GrantState,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct GrantFilter {
    direction: Option<Direction>,
}

pub(super) async fn grants(
    State(s): State<ApiState>,
    q: Result<Query<GrantFilter>, QueryRejection>,
) -> ApiResult<Vec<GrantView>> {
    let Query(q) = q?;
    let list = s
        .node
        .grants()?
        .into_iter()
        .filter(|g| q.direction.is_none_or(|d| d == g.direction))
        .map(|record| GrantView {
            state: record.state(),
            record,
        })
        .collect();
    Ok(Json(list))
}

pub(super) async fn grant_show(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<GrantView> {
    let record = s.node.grant_record(&id)?;
    Ok(Json(GrantView {
        state: record.state(),
        record,
    }))
}

pub(super) async fn grant_revoke(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<ReasonBody>, JsonRejection>,
) -> ApiResult<GrantView> {
    let Json(b) = body?;
    let record = s.node.revoke_grant(&id, &b.reason).await?;
    Ok(Json(GrantView {
        state: record.state(),
        record,
    }))
}

/// Body of `POST /api/v1/subscriptions`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct TargetBody {
    /// `REGION_OR_PEER/DATASET`.
    pub target: String,
}

pub(super) async fn subscriptions(State(s): State<ApiState>) -> ApiResult<Vec<Subscription>> {
    Ok(Json(s.node.subscriptions()?))
}

pub(super) async fn subscribe(
    State(s): State<ApiState>,
    body: Result<Json<TargetBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Subscription>), ApiError> {
    let Json(b) = body?;
    Ok((
        StatusCode::CREATED,
        Json(s.node.subscribe(&b.target).await?),
    ))
}

pub(super) async fn unsubscribe(
    State(s): State<ApiState>,
    q: Result<Query<TargetBody>, QueryRejection>,
) -> ApiResult<super::routes::Removed> {
    let Query(q) = q?;
    s.node.unsubscribe(&q.target).await?;
    Ok(Json(super::routes::Removed {
        list: "subscriptions".into(),
        identifier: q.target,
    }))
}

pub(super) async fn receipts(State(s): State<ApiState>) -> ApiResult<Vec<Signed<Receipt>>> {
    Ok(Json(s.node.receipts()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_beyond_the_cap_are_refused_as_busy_until_one_ends() {
        let waiters = Arc::new(Semaphore::new(2));
        let first = admit_wait(&waiters);
        let second = admit_wait(&waiters);
        assert!(first.is_ok() && second.is_ok());
        let Err(refused) = admit_wait(&waiters) else {
            panic!("a third wait must be refused");
        };
        let response = refused.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        assert!(
            admit_wait(&waiters).is_ok(),
            "an ended wait frees its place"
        );
    }
}
