//! The tests' admin API client: one typed method per route the tests call, each returning the
//! node's own view type, so that a misspelt field fails to compile instead of timing out a wait.
//! Errors stay [`ClientError`]s, so a test can match the status a refusal carries.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};
use yrd_node::api::ApiErrorBody;
use yrd_node::api::exchange::{
    ApproveBody, FetchBody, GrantView, ReasonBody, RequestBody, TargetBody,
};
use yrd_node::api::provenance::{CheckView, HeadView, ResolveBody};
use yrd_node::api::routes::{OwnCatalogue, PublishSchema, PublishVersion, Removed};
use yrd_node::cli::client::{ApiClient, ClientError};
use yrd_node::model::catalogue::{
    Catalogue, CatalogueEntry, Demand, OfferInput, SchemaDoc, Withheld,
};
use yrd_node::model::charter::SignedCharter;
use yrd_node::model::exchange::{DataFormat, Denial, Grant, Manifest, Receipt};
use yrd_node::model::message::RequestStatus;
use yrd_node::model::provenance::Alarm;
use yrd_node::model::provenance::{EvidenceBundle, ProvenanceRecord, RecordKind};
use yrd_node::model::signed::Signed;
use yrd_node::node::access::{Direction, RequestRecord};
use yrd_node::node::catalogue::{MatchReport, SearchHit, SearchQuery};
use yrd_node::node::charter_sync::ProposalView;
use yrd_node::node::provenance::{Delivery, ExportQuery};
use yrd_node::node::transfer::{Subscription, TransferStatus, TransferView};
use yrd_node::node::{CharterVersionView, FederationView, Health, NodeView, PeerView};

use crate::{WAIT, wait_until};

/// A route's answer, or why the node refused it.
pub type Answer<T> = Result<T, ClientError>;

/// The HTTP status of a refusal, if the node answered with one.
pub fn status(err: &ClientError) -> Option<u16> {
    match err {
        ClientError::Api { status, .. } => Some(*status),
        _ => None,
    }
}

/// The wire name of a serialisable value (an enum's kebab-case name, a region's code).
fn wire<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// `path?k=v&…` with the given pairs form-encoded, absent ones left out.
fn with_query(path: &str, pairs: &[(&str, Option<String>)]) -> Result<String, ClientError> {
    let present = pairs
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)));
    let url = reqwest::Url::parse_with_params("http://query.invalid/", present)
        .map_err(|e| ClientError::Decode(e.to_string()))?;
    Ok(match url.query() {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    })
}

/// A client of one node's admin API.
#[derive(Debug, Clone)]
pub struct Api {
    client: ApiClient,
}

impl Api {
    /// A client for the API at `base` with `token`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Api {
        Api {
            client: ApiClient::new(base, token),
        }
    }

    /// The untyped client (routes whose answer is not a view: OpenAPI, exports).
    pub fn raw(&self) -> &ApiClient {
        &self.client
    }

    // --- The node

    /// `GET /api/v1/federation`.
    pub async fn federation(&self) -> Answer<FederationView> {
        self.client.get("/api/v1/federation").await
    }

    /// `GET /api/v1/federation/history`.
    pub async fn federation_history(&self) -> Answer<Vec<CharterVersionView>> {
        self.client.get("/api/v1/federation/history").await
    }

    /// `GET /api/v1/federation/versions/{version}`.
    pub async fn federation_version(&self, version: u64) -> Answer<SignedCharter> {
        self.client
            .get(&format!("/api/v1/federation/versions/{version}"))
            .await
    }

    /// `GET /api/v1/federation/proposals`.
    pub async fn proposals(&self) -> Answer<Vec<ProposalView>> {
        self.client.get("/api/v1/federation/proposals").await
    }

    /// `POST /api/v1/federation/proposals`.
    pub async fn submit_proposal(&self, charter: &SignedCharter) -> Answer<ProposalView> {
        self.client
            .post("/api/v1/federation/proposals", charter)
            .await
    }

    /// `POST /api/v1/federation/proposals/{digest}/sign`.
    pub async fn sign_proposal(&self, digest: &str) -> Answer<ProposalView> {
        self.client
            .post(
                &format!("/api/v1/federation/proposals/{digest}/sign"),
                &json!({}),
            )
            .await
    }

    /// `POST /api/v1/key/rotate`.
    pub async fn rotate_key(&self) -> Answer<yrd_node::node::key_rotation::KeyRotationView> {
        self.client.post("/api/v1/key/rotate", &json!({})).await
    }

    /// `POST /api/v1/federation/apply`.
    pub async fn apply_charter(&self, charter: &SignedCharter) -> Answer<CharterVersionView> {
        self.client.post("/api/v1/federation/apply", charter).await
    }

    /// `GET /api/v1/health`.
    pub async fn health(&self) -> Answer<Health> {
        self.client.get("/api/v1/health").await
    }

    /// `GET /api/v1/node`.
    pub async fn node(&self) -> Answer<NodeView> {
        self.client.get("/api/v1/node").await
    }

    /// `GET /api/v1/peers`.
    pub async fn peers(&self) -> Answer<Vec<PeerView>> {
        self.client.get("/api/v1/peers").await
    }

    // --- Standards and the catalogue

    /// `POST /api/v1/schemas`.
    pub async fn publish_schema(
        &self,
        id: &str,
        version: &str,
        schema: &Value,
    ) -> Answer<Signed<SchemaDoc>> {
        self.client
            .post(
                "/api/v1/schemas",
                &PublishSchema {
                    id: id.into(),
                    version: version.into(),
                    title: None,
                    schema: schema.clone(),
                },
            )
            .await
    }

    /// `POST /api/v1/catalogue/offers`.
    pub async fn add_offer(&self, offer: &OfferInput) -> Answer<CatalogueEntry> {
        self.client.post("/api/v1/catalogue/offers", offer).await
    }

    /// `POST /api/v1/catalogue/demands`.
    pub async fn add_demand(&self, demand: &Demand) -> Answer<Demand> {
        self.client.post("/api/v1/catalogue/demands", demand).await
    }

    /// `POST /api/v1/catalogue/withheld`.
    pub async fn add_withheld(&self, withheld: &Withheld) -> Answer<Withheld> {
        self.client
            .post("/api/v1/catalogue/withheld", withheld)
            .await
    }

    /// `GET /api/v1/catalogue`: our lists and latest snapshot.
    pub async fn catalogue(&self) -> Answer<OwnCatalogue> {
        self.client.get("/api/v1/catalogue").await
    }

    /// `GET /api/v1/catalogue/network`: every member's latest snapshot.
    pub async fn network_catalogues(&self) -> Answer<Vec<Signed<Catalogue>>> {
        self.client.get("/api/v1/catalogue/network").await
    }

    /// `GET /api/v1/catalogue/search`.
    pub async fn search(&self, q: &SearchQuery) -> Answer<Vec<SearchHit>> {
        let path = with_query(
            "/api/v1/catalogue/search",
            &[
                ("text", q.text.clone()),
                ("schema", q.schema.clone()),
                ("region", q.region.as_ref().map(wire)),
                ("share_type", q.share_type.as_ref().map(wire)),
                ("limit", q.limit.map(|l| l.to_string())),
            ],
        )?;
        self.client.get(&path).await
    }

    /// A search for `text` alone.
    pub async fn search_text(&self, text: &str) -> Answer<Vec<SearchHit>> {
        self.search(&SearchQuery {
            text: Some(text.into()),
            ..SearchQuery::default()
        })
        .await
    }

    /// `GET /api/v1/demands/match`.
    pub async fn demand_match(&self) -> Answer<MatchReport> {
        self.client.get("/api/v1/demands/match").await
    }

    // --- Dataset versions

    /// `POST /api/v1/datasets/{dataset}/versions`.
    pub async fn publish_version(
        &self,
        dataset: &str,
        file: &Path,
        format: DataFormat,
    ) -> Answer<Signed<Manifest>> {
        self.client
            .post(
                &format!("/api/v1/datasets/{dataset}/versions"),
                &PublishVersion {
                    file: file.to_path_buf(),
                    format,
                },
            )
            .await
    }

    /// `GET /api/v1/datasets/{dataset}/versions`.
    pub async fn versions(&self, dataset: &str) -> Answer<Vec<Signed<Manifest>>> {
        self.client
            .get(&format!("/api/v1/datasets/{dataset}/versions"))
            .await
    }

    // --- Transfers

    /// `POST /api/v1/fetch`: starts a fetch.
    pub async fn fetch(&self, body: &FetchBody) -> Answer<TransferView> {
        self.client.post("/api/v1/fetch", body).await
    }

    /// Starts a fetch of the latest version of `target` with the grant the node picks.
    pub async fn fetch_latest(&self, target: &str) -> Answer<TransferView> {
        self.fetch(&fetch_body(target)).await
    }

    /// `GET /api/v1/transfers/{id}`.
    pub async fn transfer(&self, id: &str) -> Answer<TransferView> {
        self.client.get(&format!("/api/v1/transfers/{id}")).await
    }

    /// `GET /api/v1/transfers/{id}?wait_ms=N`: the transfer once it finishes or `wait_ms` passes.
    pub async fn transfer_waiting(&self, id: &str, wait_ms: &str) -> Answer<TransferView> {
        let path = with_query(
            &format!("/api/v1/transfers/{id}"),
            &[("wait_ms", Some(wait_ms.to_string()))],
        )?;
        self.client.get(&path).await
    }

    /// `GET /api/v1/transfers`.
    pub async fn transfers(&self) -> Answer<Vec<TransferView>> {
        self.client.get("/api/v1/transfers").await
    }

    /// Polls transfer `id` until `done` holds for it; returns it. A timeout names `what` and
    /// the transfer as last seen.
    pub async fn wait_transfer(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&TransferView) -> bool,
    ) -> Result<TransferView> {
        let last = std::sync::Mutex::new(None);
        wait_until(what, WAIT, || async {
            let t = self.transfer(id).await?;
            if done(&t) {
                return Ok(Some(t));
            }
            if let Ok(mut l) = last.lock() {
                *l = Some(t);
            }
            Ok(None)
        })
        .await
        .with_context(|| format!("transfer {id} as last seen: {:?}", last.lock().ok()))
    }

    /// Starts a fetch and waits until it is done or failed; returns the final transfer.
    pub async fn fetch_to_end(&self, body: &FetchBody) -> Result<TransferView> {
        let started = self.fetch(body).await?;
        self.wait_transfer(&started.id, "the fetch to finish", finished)
            .await
    }

    /// Fetches the latest version of `target`; fails unless it is done.
    pub async fn fetch_done(&self, target: &str) -> Result<TransferView> {
        let t = self.fetch_to_end(&fetch_body(target)).await?;
        anyhow::ensure!(
            t.status == TransferStatus::Done,
            "fetch of {target} failed: {t:?}"
        );
        Ok(t)
    }

    /// `GET /api/v1/transfers/{id}/content`, written to `dir`; returns the bytes.
    pub async fn download(&self, id: &str, dir: &Path) -> Result<Vec<u8>> {
        let out = dir.join(format!("{id}.out"));
        self.client
            .download(&format!("/api/v1/transfers/{id}/content"), &out)
            .await?;
        Ok(std::fs::read(out)?)
    }

    // --- Requests and grants

    /// `POST /api/v1/requests`.
    pub async fn request(&self, body: &RequestBody) -> Answer<RequestRecord> {
        self.client.post("/api/v1/requests", body).await
    }

    /// `GET /api/v1/requests`, filtered.
    pub async fn requests(
        &self,
        direction: Option<Direction>,
        status: Option<RequestStatus>,
    ) -> Answer<Vec<RequestRecord>> {
        let path = with_query(
            "/api/v1/requests",
            &[
                ("direction", direction.as_ref().map(wire)),
                ("status", status.as_ref().map(wire)),
            ],
        )?;
        self.client.get(&path).await
    }

    /// `GET /api/v1/requests/{id}`.
    pub async fn request_record(&self, id: &str) -> Answer<RequestRecord> {
        self.client.get(&format!("/api/v1/requests/{id}")).await
    }

    /// `POST /api/v1/requests/{id}/approve`.
    pub async fn approve(&self, id: &str, body: &ApproveBody) -> Answer<Signed<Grant>> {
        self.client
            .post(&format!("/api/v1/requests/{id}/approve"), body)
            .await
    }

    /// `POST /api/v1/requests/{id}/deny`.
    pub async fn deny(&self, id: &str, reason: &str) -> Answer<Signed<Denial>> {
        self.client
            .post(
                &format!("/api/v1/requests/{id}/deny"),
                &ReasonBody {
                    reason: reason.into(),
                },
            )
            .await
    }

    /// `GET /api/v1/grants`, filtered.
    pub async fn grants(&self, direction: Option<Direction>) -> Answer<Vec<GrantView>> {
        let path = with_query(
            "/api/v1/grants",
            &[("direction", direction.as_ref().map(wire))],
        )?;
        self.client.get(&path).await
    }

    /// `GET /api/v1/grants/{id}`.
    pub async fn grant(&self, id: &str) -> Answer<GrantView> {
        self.client.get(&format!("/api/v1/grants/{id}")).await
    }

    /// `POST /api/v1/grants/{id}/revoke`.
    pub async fn revoke(&self, id: &str, reason: &str) -> Answer<GrantView> {
        self.client
            .post(
                &format!("/api/v1/grants/{id}/revoke"),
                &ReasonBody {
                    reason: reason.into(),
                },
            )
            .await
    }

    // --- Subscriptions and receipts

    /// `POST /api/v1/subscriptions`.
    pub async fn subscribe(&self, target: &str) -> Answer<Subscription> {
        self.client
            .post(
                "/api/v1/subscriptions",
                &TargetBody {
                    target: target.into(),
                },
            )
            .await
    }

    /// `GET /api/v1/subscriptions`.
    pub async fn subscriptions(&self) -> Answer<Vec<Subscription>> {
        self.client.get("/api/v1/subscriptions").await
    }

    /// `DELETE /api/v1/subscriptions?target=…`.
    pub async fn unsubscribe(&self, target: &str) -> Answer<Removed> {
        let path = with_query("/api/v1/subscriptions", &[("target", Some(target.into()))])?;
        self.client.delete(&path).await
    }

    /// `GET /api/v1/receipts`.
    pub async fn receipts(&self) -> Answer<Vec<Signed<Receipt>>> {
        self.client.get("/api/v1/receipts").await
    }

    // --- Provenance

    /// `GET /api/v1/provenance`, filtered by dataset and kind.
    pub async fn provenance(
        &self,
        dataset: Option<&str>,
        kind: Option<RecordKind>,
    ) -> Answer<Vec<ProvenanceRecord>> {
        let path = with_query(
            "/api/v1/provenance",
            &[
                ("dataset", dataset.map(str::to_string)),
                ("kind", kind.as_ref().map(wire)),
                ("limit", Some("100000".into())),
            ],
        )?;
        self.client.get(&path).await
    }

    /// `GET /api/v1/provenance/head`.
    pub async fn head(&self) -> Answer<HeadView> {
        self.client.get("/api/v1/provenance/head").await
    }

    /// `POST /api/v1/provenance/check`.
    pub async fn check(&self) -> Answer<CheckView> {
        self.client
            .post("/api/v1/provenance/check", &json!({}))
            .await
    }

    /// `GET /api/v1/provenance/alarms`.
    pub async fn alarms(&self) -> Answer<Vec<Alarm>> {
        self.client.get("/api/v1/provenance/alarms").await
    }

    /// `POST /api/v1/provenance/alarms/resolve`.
    pub async fn resolve_alarms(&self, log: &str, note: &str) -> Answer<Vec<Alarm>> {
        self.client
            .post(
                "/api/v1/provenance/alarms/resolve",
                &ResolveBody {
                    log: log.into(),
                    note: note.into(),
                },
            )
            .await
    }

    /// `GET /api/v1/provenance/deliveries?dataset=…`.
    pub async fn deliveries(&self, dataset: &str) -> Answer<Vec<Delivery>> {
        let path = with_query(
            "/api/v1/provenance/deliveries",
            &[("dataset", Some(dataset.into()))],
        )?;
        self.client.get(&path).await
    }

    /// `POST /api/v1/provenance/export` of the records `from_seq` to `to_seq`.
    pub async fn export_range(&self, from_seq: u64, to_seq: u64) -> Answer<EvidenceBundle> {
        self.client
            .post(
                "/api/v1/provenance/export",
                &ExportQuery {
                    from_seq: Some(from_seq),
                    to_seq: Some(to_seq),
                    ..ExportQuery::default()
                },
            )
            .await
    }

    /// `POST /api/v1/provenance/export` of every record about `dataset`.
    pub async fn export(&self, dataset: &str) -> Answer<EvidenceBundle> {
        self.client
            .post(
                "/api/v1/provenance/export",
                &ExportQuery {
                    dataset: Some(dataset.into()),
                    ..ExportQuery::default()
                },
            )
            .await
    }
}

/// The body of a fetch of the latest version of `target`.
pub fn fetch_body(target: &str) -> FetchBody {
    FetchBody {
        target: target.into(),
        version: None,
        grant: None,
    }
}

/// Whether a transfer has ended, either way.
pub fn finished(t: &TransferView) -> bool {
    matches!(t.status, TransferStatus::Done | TransferStatus::Failed)
}

/// Sends a request made by hand and reads the answer as a refusal: its status and the API's one
/// error shape (failing if the body is not that shape).
pub async fn refusal(
    request: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, ApiErrorBody)> {
    refusal_of(request.send().await?).await
}

/// The status and error body of an answer.
pub async fn refusal_of(
    response: reqwest::Response,
) -> Result<(reqwest::StatusCode, ApiErrorBody)> {
    let status = response.status();
    let text = response.text().await?;
    let body = serde_json::from_str(&text)
        .with_context(|| format!("status {status}: body is not the error shape: {text:?}"))?;
    Ok((status, body))
}
