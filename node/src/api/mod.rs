//! The admin HTTP API (axum): every route behind the bearer token, JSON in and out, bound to
//! loopback by default. It translates HTTP to calls on the service layer and decides nothing.
//!
//! This file owns the route table ([`routes`]: each route with its OpenAPI operation, so the
//! router and the document cannot drift apart) and the router built from it. The handlers live
//! by subject (`status`, `routes`, `exchange`, `provenance`, `metrics`); the error shape in
//! `error`, the token check in `auth`, listening and shutdown in `server`.

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::MethodFilter;

use crate::identity::AdminToken;
use crate::model::catalogue::{Catalogue, CatalogueEntry, Demand, OfferInput, SchemaDoc, Withheld};
use crate::model::charter::SignedCharter;
use crate::model::exchange::{Denial, Grant, Manifest, Receipt};
use crate::model::provenance::{
    Alarm, EvidenceBundle, ProvenanceRecord, Query as LogQuery, VerifiedBundle,
};
use crate::model::signed::{AnySigned, Signed, Verified};
use crate::node::access::RequestRecord;
use crate::node::catalogue::{MatchReport, SearchHit, SearchQuery};
use crate::node::charter_sync::ProposalView;
use crate::node::clients::{ClientView, NewClient};
use crate::node::provenance::{BundleEntryView, Delivery, ExportQuery};
use crate::node::query::{QueryInput, QueryOutcome};
use crate::node::schemas::SchemaSummary;
use crate::node::transfer::{Subscription, TransferView};
use crate::node::{CharterVersionView, FederationView, Health, Node, NodeView, PeerView};
use openapi::{ApiBuilder, Doc};

mod auth;
mod error;
pub mod exchange;
mod federation;
pub mod metrics;
pub mod openapi;
pub mod provenance;
pub mod query;
pub mod routes;
mod server;
mod status;

use auth::{require_token, token_reload};
use error::{method_not_allowed, not_found};
use status::{health, node_view, openapi_json, peers, regions};

pub use auth::TokenReloaded;
pub use error::{ApiError, ApiErrorBody};
pub use server::{ApiServer, BindError};
pub use status::RegionView;

/// What every handler gets: the service handle, the admin token, the OpenAPI document.
#[derive(Clone)]
struct ApiState {
    node: Node,
    token: AdminToken,
    openapi: Arc<serde_json::Value>,
    /// The open `wait_ms` waits of `GET /api/v1/transfers/{id}`, bounded.
    transfer_waiters: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the API stops, so long waits answer at once.
    stop: tokio_util::sync::CancellationToken,
}

/// The admin API's routes and their OpenAPI document, built together (see [`openapi`]).
fn routes() -> ApiBuilder {
    use MethodFilter as M;
    use exchange as x;
    use federation as f;
    use provenance as p;
    use routes as r;
    ApiBuilder::new()
        // The node.
        .route(
            M::GET,
            "/api/v1/health",
            health,
            Doc::new::<Health>(
                "health",
                "node",
                "Health: status, uptime, members connected, refused connections, database",
            )
            .cli("yrd health"),
        )
        .route(
            M::GET,
            "/api/v1/node",
            node_view,
            Doc::new::<NodeView>(
                "node",
                "node",
                "This node: identity, region, addresses, counts",
            )
            .cli("yrd node"),
        )
        .route(
            M::GET,
            "/api/v1/peers",
            peers,
            Doc::new::<Vec<PeerView>>("peers", "node", "Connected federation members")
                .cli("yrd peers"),
        )
        .route(
            M::GET,
            "/api/v1/regions",
            regions,
            Doc::new::<Vec<RegionView>>(
                "regions",
                "node",
                "The GB/T 2260 regions a node may serve",
            )
            .cli("yrd regions"),
        )
        .route(
            M::POST,
            "/api/v1/token/reload",
            token_reload,
            Doc::new::<TokenReloaded>(
                "tokenReload",
                "node",
                "Re-read the admin token from the data dir's api.token (after it was replaced)",
            )
            .cli("yrd token rotate"),
        )
        .route(
            M::GET,
            "/api/v1/openapi.json",
            openapi_json,
            Doc::new::<serde_json::Value>("openapi", "node", "This document (OpenAPI 3.1)"),
        )
        .route(
            M::GET,
            "/metrics",
            metrics::serve,
            Doc::new::<()>(
                "metrics",
                "node",
                "Prometheus metrics (text exposition format 0.0.4)",
            )
            .raw("text/plain; version=0.0.4"),
        )
        // Data standards.
        .route(
            M::GET,
            "/api/v1/schemas",
            r::schema_list,
            Doc::new::<Vec<SchemaSummary>>(
                "schemaList",
                "schemas",
                "List standards (ours, or every one held)",
            )
            .query::<r::ListQuery>()
            .cli("yrd schema list"),
        )
        .route(
            M::POST,
            "/api/v1/schemas",
            r::schema_publish,
            Doc::new::<Signed<SchemaDoc>>(
                "schemaPublish",
                "schemas",
                "Publish a data standard (a JSON Schema)",
            )
            .body::<r::PublishSchema>()
            .status(201)
            .cli("yrd schema publish"),
        )
        .route(
            M::GET,
            "/api/v1/schemas/{id}",
            r::schema_show,
            Doc::new::<Signed<SchemaDoc>>(
                "schemaShow",
                "schemas",
                "One standard, the highest version unless one is named",
            )
            .query::<r::VersionQuery>()
            .cli("yrd schema show"),
        )
        .route(
            M::GET,
            "/api/v1/protocol/schemas",
            r::protocol_schemas,
            Doc::new::<std::collections::BTreeMap<String, serde_json::Value>>(
                "protocolSchemas",
                "schemas",
                "The JSON Schema of every protocol document and message",
            )
            .cli("yrd schema export"),
        )
        // Catalogue.
        .route(
            M::GET,
            "/api/v1/catalogue",
            r::catalogue_show,
            Doc::new::<r::OwnCatalogue>(
                "catalogueShow",
                "catalogue",
                "Our three lists and our latest signed catalogue",
            )
            .cli("yrd catalog show"),
        )
        .route(
            M::GET,
            "/api/v1/catalogue/network",
            r::catalogue_network,
            Doc::new::<Vec<Signed<Catalogue>>>(
                "catalogueNetwork",
                "catalogue",
                "Every member's latest signed catalogue",
            ),
        )
        .route(
            M::GET,
            "/api/v1/catalogue/search",
            r::catalogue_search,
            Doc::new::<Vec<SearchHit>>(
                "catalogueSearch",
                "catalogue",
                "Search every member's offers",
            )
            .query::<SearchQuery>()
            .cli("yrd catalog search"),
        )
        .route(
            M::GET,
            "/api/v1/catalogue/export",
            r::catalogue_export,
            Doc::new::<()>(
                "catalogueExport",
                "catalogue",
                "DCAT-AP 3 JSON-LD (application/ld+json) or the national CSV template (text/csv)",
            )
            .query::<r::ExportQuery>()
            .raw("application/ld+json, text/csv; charset=utf-8")
            .cli("yrd catalog export"),
        )
        .route(
            M::POST,
            "/api/v1/catalogue/offers",
            r::offer_add,
            Doc::new::<CatalogueEntry>(
                "offerAdd",
                "catalogue",
                "Add or replace an offer (共享数据清单)",
            )
            .body::<OfferInput>()
            .status(201)
            .cli("yrd catalog add"),
        )
        .route(
            M::DELETE,
            "/api/v1/catalogue/offers/{id}",
            r::offer_remove,
            Doc::new::<r::Removed>("offerRemove", "catalogue", "Remove an offer")
                .cli("yrd catalog remove"),
        )
        .route(
            M::POST,
            "/api/v1/catalogue/demands",
            r::demand_add,
            Doc::new::<Demand>(
                "demandAdd",
                "catalogue",
                "Add or replace a demand (履职需求数据清单)",
            )
            .body::<Demand>()
            .status(201)
            .cli("yrd demand add"),
        )
        .route(
            M::DELETE,
            "/api/v1/catalogue/demands/{id}",
            r::demand_remove,
            Doc::new::<r::Removed>("demandRemove", "catalogue", "Remove a demand")
                .cli("yrd demand remove"),
        )
        .route(
            M::POST,
            "/api/v1/catalogue/withheld",
            r::withheld_add,
            Doc::new::<Withheld>(
                "withheldAdd",
                "catalogue",
                "Add or replace a withheld entry (不予共享清单)",
            )
            .body::<Withheld>()
            .status(201)
            .cli("yrd withheld add"),
        )
        .route(
            M::DELETE,
            "/api/v1/catalogue/withheld/{id}",
            r::withheld_remove,
            Doc::new::<r::Removed>("withheldRemove", "catalogue", "Remove a withheld entry")
                .cli("yrd withheld remove"),
        )
        .route(
            M::GET,
            "/api/v1/demands/match",
            r::demand_match,
            Doc::new::<MatchReport>(
                "demandMatch",
                "catalogue",
                "Match our demands against the network's offers",
            )
            .cli("yrd demand match"),
        )
        // Datasets and exchange.
        .route(
            M::GET,
            "/api/v1/datasets/{id}/versions",
            r::versions_list,
            Doc::new::<Vec<Signed<Manifest>>>(
                "versionsList",
                "exchange",
                "The published versions of one of our datasets",
            )
            .cli("yrd versions"),
        )
        .route(
            M::POST,
            "/api/v1/datasets/{id}/versions",
            r::version_publish,
            Doc::new::<Signed<Manifest>>(
                "versionPublish",
                "exchange",
                "Publish a new version from a file on the node's machine",
            )
            .body::<r::PublishVersion>()
            .status(201)
            .cli("yrd publish"),
        )
        .route(
            M::POST,
            "/api/v1/fetch",
            x::fetch,
            Doc::new::<TransferView>(
                "fetch",
                "exchange",
                "Start fetching a dataset version (follow it in transfers)",
            )
            .body::<x::FetchBody>()
            .status(202)
            .cli("yrd fetch"),
        )
        .route(
            M::GET,
            "/api/v1/transfers",
            x::transfers,
            Doc::new::<Vec<TransferView>>(
                "transfers",
                "exchange",
                "Transfers in progress and the newest 200 finished, both ways",
            )
            .cli("yrd transfers"),
        )
        .route(
            M::GET,
            "/api/v1/transfers/{id}",
            x::transfer,
            Doc::new::<TransferView>(
                "transferShow",
                "exchange",
                "One transfer; with wait_ms, once it finishes or wait_ms passes (503 busy beyond 256 open waits)",
            )
            .query::<x::TransferQuery>()
            .cli("yrd transfers ID"),
        )
        .route(
            M::GET,
            "/api/v1/transfers/{id}/content",
            x::transfer_content,
            Doc::new::<()>(
                "transferContent",
                "exchange",
                "The verified file of a completed fetch (header x-yrd-digest)",
            )
            .raw("application/octet-stream")
            .cli("yrd fetch --out"),
        )
        .route(
            M::GET,
            "/api/v1/requests",
            x::requests,
            Doc::new::<Vec<RequestRecord>>(
                "requests",
                "access",
                "Access requests we received or sent",
            )
            .query::<x::RequestFilter>()
            .cli("yrd requests list"),
        )
        .route(
            M::POST,
            "/api/v1/requests",
            x::request_create,
            Doc::new::<RequestRecord>(
                "requestCreate",
                "access",
                "Ask a provider for conditional data (a signed AccessRequest)",
            )
            .body::<x::RequestBody>()
            .status(201)
            .cli("yrd request"),
        )
        .route(
            M::GET,
            "/api/v1/requests/{id}",
            x::request_show,
            Doc::new::<RequestRecord>(
                "requestShow",
                "access",
                "One request with its signed documents",
            )
            .cli("yrd requests show"),
        )
        .route(
            M::POST,
            "/api/v1/requests/{id}/approve",
            x::request_approve,
            Doc::new::<Signed<Grant>>(
                "requestApprove",
                "access",
                "Approve a pending request: sign a grant (fields, masks, expiry)",
            )
            .body::<x::ApproveBody>()
            .cli("yrd requests approve"),
        )
        .route(
            M::POST,
            "/api/v1/requests/{id}/deny",
            x::request_deny,
            Doc::new::<Signed<Denial>>(
                "requestDeny",
                "access",
                "Deny a pending request with a reason",
            )
            .body::<x::ReasonBody>()
            .cli("yrd requests deny"),
        )
        .route(
            M::GET,
            "/api/v1/grants",
            x::grants,
            Doc::new::<Vec<x::GrantView>>(
                "grants",
                "access",
                "Grants issued by us and to us, with their state",
            )
            .query::<x::GrantFilter>()
            .cli("yrd grants list"),
        )
        .route(
            M::GET,
            "/api/v1/grants/{id}",
            x::grant_show,
            Doc::new::<x::GrantView>("grantShow", "access", "One grant").cli("yrd grants show"),
        )
        .route(
            M::POST,
            "/api/v1/grants/{id}/revoke",
            x::grant_revoke,
            Doc::new::<x::GrantView>(
                "grantRevoke",
                "access",
                "Withdraw a grant we issued and tell the grantee",
            )
            .body::<x::ReasonBody>()
            .cli("yrd grants revoke"),
        )
        .route(
            M::GET,
            "/api/v1/subscriptions",
            x::subscriptions,
            Doc::new::<Vec<Subscription>>("subscriptions", "exchange", "Our subscriptions")
                .cli("yrd subscriptions"),
        )
        .route(
            M::POST,
            "/api/v1/subscriptions",
            x::subscribe,
            Doc::new::<Subscription>(
                "subscribe",
                "exchange",
                "Fetch each new version of a dataset as it is published",
            )
            .body::<x::TargetBody>()
            .status(201)
            .cli("yrd subscribe"),
        )
        .route(
            M::DELETE,
            "/api/v1/subscriptions",
            x::unsubscribe,
            Doc::new::<r::Removed>("unsubscribe", "exchange", "End a subscription")
                .query::<x::TargetBody>()
                .cli("yrd unsubscribe"),
        )
        .route(
            M::GET,
            "/api/v1/receipts",
            x::receipts,
            Doc::new::<Vec<Signed<Receipt>>>(
                "receipts",
                "exchange",
                "Receipts receivers signed for our data",
            )
            .cli("yrd receipts"),
        )
        // Query services.
        .route(
            M::POST,
            "/api/v1/query",
            query::query,
            Doc::new::<QueryOutcome>(
                "query",
                "query",
                "Ask a provider one query (verify or lookup); returns its signed answer",
            )
            .body::<QueryInput>()
            .cli("yrd query"),
        )
        .route(
            M::POST,
            "/api/v1/clients",
            query::client_add,
            Doc::new::<NewClient>(
                "clientAdd",
                "query",
                "Make a scoped API client (query:DATASET, fetch:DATASET); its token is shown once",
            )
            .body::<query::ClientBody>()
            .status(201)
            .cli("yrd clients add"),
        )
        .route(
            M::GET,
            "/api/v1/clients",
            query::clients,
            Doc::new::<Vec<ClientView>>("clients", "query", "The scoped API clients")
                .cli("yrd clients list"),
        )
        .route(
            M::DELETE,
            "/api/v1/clients/{name}",
            query::client_remove,
            Doc::new::<ClientView>(
                "clientRemove",
                "query",
                "Remove a scoped API client: its token stops working at once",
            )
            .cli("yrd clients remove"),
        )
        .route(
            M::POST,
            "/api/v1/provenance/queries",
            query::calls,
            Doc::new::<Vec<ProvenanceRecord>>(
                "provenanceQueries",
                "provenance",
                "The calls about one key of a dataset (the key is hashed, never stored)",
            )
            .body::<query::QueryCallsBody>()
            .cli("yrd provenance queries"),
        )
        // Provenance.
        .route(
            M::GET,
            "/api/v1/provenance",
            p::list,
            Doc::new::<Vec<ProvenanceRecord>>(
                "provenanceList",
                "provenance",
                "Records, oldest first, filtered",
            )
            .query::<LogQuery>()
            .cli("yrd provenance list"),
        )
        .route(
            M::GET,
            "/api/v1/provenance/head",
            p::head,
            Doc::new::<p::HeadView>(
                "provenanceHead",
                "provenance",
                "The latest signed tree head and its cosignatures",
            )
            .cli("yrd provenance head"),
        )
        .route(
            M::POST,
            "/api/v1/provenance/check",
            p::check,
            Doc::new::<p::CheckView>(
                "provenanceCheck",
                "provenance",
                "Recompute every leaf and node of the log",
            )
            .cli("yrd provenance check"),
        )
        .route(
            M::GET,
            "/api/v1/provenance/alarms",
            p::alarms,
            Doc::new::<Vec<Alarm>>(
                "provenanceAlarms",
                "provenance",
                "Witness alarms: members whose log forked",
            )
            .cli("yrd provenance alarms"),
        )
        .route(
            M::POST,
            "/api/v1/provenance/alarms/resolve",
            p::alarms_resolve,
            Doc::new::<Vec<Alarm>>(
                "provenanceAlarmsResolve",
                "provenance",
                "Resolve a log's open witness alarms with a note; its newest head becomes the baseline",
            )
            .body::<p::ResolveBody>()
            .cli("yrd provenance resolve"),
        )
        // The federation charter.
        .route(
            M::GET,
            "/api/v1/federation",
            f::view,
            Doc::new::<FederationView>(
                "federation",
                "federation",
                "The charter in force: state, policy, members with region, role and keys",
            ),
        )
        .route(
            M::GET,
            "/api/v1/federation/history",
            f::history,
            Doc::new::<Vec<CharterVersionView>>(
                "federationHistory",
                "federation",
                "Every charter version applied: number, digest, times, who signed",
            )
            .cli("yrd federation history"),
        )
        .route(
            M::GET,
            "/api/v1/federation/versions/{version}",
            f::version,
            Doc::new::<SignedCharter>(
                "federationVersion",
                "federation",
                "One applied charter version, with every signature held",
            ),
        )
        .route(
            M::GET,
            "/api/v1/federation/proposals",
            f::proposals,
            Doc::new::<Vec<ProposalView>>(
                "federationProposals",
                "federation",
                "Proposals of the next charter version held, with what each lacks",
            )
            .cli("yrd federation proposals"),
        )
        .route(
            M::POST,
            "/api/v1/federation/proposals",
            f::submit,
            Doc::new::<ProposalView>(
                "federationSubmit",
                "federation",
                "Submit a proposal (a draft or a signed copy): stored, merged, gossiped, applied once signed enough",
            )
            .body::<SignedCharter>()
            .status(201)
            .cli("yrd federation submit"),
        )
        .route(
            M::POST,
            "/api/v1/federation/proposals/{digest}/sign",
            f::sign,
            Doc::new::<ProposalView>(
                "federationSign",
                "federation",
                "Sign a proposal held with this node's key (409 if the key is not a signer)",
            )
            .cli("yrd federation approve"),
        )
        .route(
            M::POST,
            "/api/v1/federation/apply",
            f::apply,
            Doc::new::<CharterVersionView>(
                "federationApply",
                "federation",
                "Apply a fully signed next charter version (refused naming the rule broken)",
            )
            .body::<SignedCharter>()
            .cli("yrd federation apply"),
        )
        .route(
            M::POST,
            "/api/v1/key/rotate",
            f::rotate_key,
            Doc::new::<crate::node::key_rotation::KeyRotationView>(
                "keyRotate",
                "federation",
                "Make the next node key and propose the charter change to it (the node switches once it is applied)",
            )
            .cli("yrd key rotate"),
        )
        .route(
            M::GET,
            "/api/v1/provenance/deliveries",
            p::deliveries,
            Doc::new::<Vec<Delivery>>(
                "provenanceDeliveries",
                "provenance",
                "Every delivery of a dataset",
            )
            .query::<p::DatasetQuery>()
            .cli("yrd provenance deliveries"),
        )
        .route(
            M::POST,
            "/api/v1/provenance/export",
            p::export,
            Doc::new::<EvidenceBundle>(
                "provenanceExport",
                "provenance",
                "An evidence bundle (for `yrd verify`)",
            )
            .body::<ExportQuery>()
            .cli("yrd provenance export"),
        )
        .route(
            M::GET,
            "/api/v1/provenance/{seq}",
            p::show,
            Doc::new::<BundleEntryView>(
                "provenanceShow",
                "provenance",
                "One record with its inclusion proof and documents",
            )
            .int_params(&["seq"])
            .cli("yrd provenance show"),
        )
        .route(
            M::POST,
            "/api/v1/evidence/verify",
            p::verify,
            Doc::new::<VerifiedBundle>(
                "evidenceVerify",
                "provenance",
                "Check an evidence bundle and say what it proves",
            )
            .body::<EvidenceBundle>()
            .body_limit(256 << 20)
            .errors(&[(422, "InvalidEvidence")])
            .cli("yrd verify"),
        )
        // Signed documents.
        .route(
            M::POST,
            "/api/v1/doc/canon",
            r::doc_canon,
            Doc::new::<r::Canonical>(
                "docCanon",
                "documents",
                "The RFC 8785 canonical form of a JSON value",
            )
            .body::<serde_json::Value>()
            .cli("yrd doc canon"),
        )
        .route(
            M::POST,
            "/api/v1/doc/verify",
            r::doc_verify,
            Doc::new::<Verified>(
                "docVerify",
                "documents",
                "Check the signature of any signed document",
            )
            .body::<AnySigned>()
            .cli("yrd doc verify"),
        )
}

/// The OpenAPI document of the admin API, as served at `/api/v1/openapi.json` and checked in at
/// `docs/api/openapi.json`.
pub fn openapi_document() -> serde_json::Value {
    routes().finish().1
}

/// [`openapi_document`] as the checked-in file's text: pretty JSON and a final newline.
pub fn openapi_text() -> String {
    let mut text = serde_json::to_string_pretty(&openapi_document()).unwrap_or_default();
    text.push('\n');
    text
}

/// The admin API's router: the table of [`routes`] behind the token check, the console's
/// assets before it, and our JSON shape for an unknown path or method.
fn router(
    node: Node,
    token: AdminToken,
    stop: tokio_util::sync::CancellationToken,
) -> (Router, ApiState) {
    let (routes, doc) = routes().finish();
    let state = ApiState {
        node,
        token,
        openapi: Arc::new(doc),
        transfer_waiters: Arc::new(tokio::sync::Semaphore::new(exchange::MAX_WAITERS)),
        stop,
    };
    let api = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(middleware::from_fn(error::plain_refusals_as_json))
        .with_state(state.clone());
    // The console's static assets carry no data, so they are served before the token check.
    // (The API's routes got their 405 inside the token check; this gives the console's the
    // same JSON shape.)
    (
        Router::new()
            .merge(crate::console::routes())
            .method_not_allowed_fallback(method_not_allowed)
            .merge(api),
        state,
    )
}

#[cfg(test)]
mod tests {
    /// The checked-in document is the one the code generates (regenerate it with
    /// `cargo run -q --bin yrd -- openapi > docs/api/openapi.json`).
    #[test]
    fn checked_in_openapi_equals_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api/openapi.json");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        let generated = super::openapi_text();
        assert!(
            checked_in == generated,
            "docs/api/openapi.json differs from the API's routes and types; regenerate it with \
             `cargo run -q --bin yrd -- openapi > docs/api/openapi.json`"
        );
    }

    #[test]
    fn every_operation_has_an_id_a_summary_and_the_error_responses() {
        let doc = super::openapi_document();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        assert!(paths.len() > 40, "only {} paths", paths.len());
        let mut ids = std::collections::HashSet::new();
        for (path, item) in &paths {
            for (method, op) in item.as_object().cloned().unwrap_or_default() {
                let id = op["operationId"].as_str().unwrap_or_default().to_string();
                assert!(!id.is_empty(), "{method} {path}: no operationId");
                assert!(ids.insert(id.clone()), "operationId {id} twice");
                assert!(op["summary"].is_string(), "{method} {path}: no summary");
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path}: no 401"
                );
            }
        }
        // Every $ref points at a schema the document holds.
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
    }
}
