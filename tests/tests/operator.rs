//! The operator surface against real nodes: the served OpenAPI document equals the checked-in
//! one and names only routes that exist; every endpoint refuses a missing or wrong token in the
//! one error shape; `/metrics` reports what the node did; and a data dir backed up with `tar`
//! (as docs/operations.md says), lost and restored, gives a node that works.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::process::Command;

use anyhow::{Context, Result, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use yrd_node::api::provenance::HeadView;
use yrd_node::model::catalogue::ShareType;
use yrd_node::model::provenance::{ProvenanceRecord, VerifiedBundle};
use yrd_node::node::transfer::TransferView;
use yrd_tests::api::{refusal, refusal_of};
use yrd_tests::fixtures::{STANDARD, offer, publish_sample_standard, publish_sample_version};
use yrd_tests::{TestNet, TestNode, WAIT, wait_until};

fn checked_in_openapi() -> Result<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api/openapi.json");
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

/// Every (method, concrete path) of the document, path parameters filled in.
fn operations(doc: &Value) -> Vec<(Method, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            let concrete: String = path
                .split('/')
                .map(|s| match s {
                    "{seq}" => "1",
                    s if s.starts_with('{') => "no-such-thing",
                    s => s,
                })
                .collect::<Vec<_>>()
                .join("/");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            out.push((m, concrete));
        }
    }
    out
}

/// One node, its API base URL and its token.
async fn one_node() -> Result<(TestNet, String, String)> {
    let net = TestNet::line(1).await?;
    let base = net.nodes[0].api_url()?;
    let token = net.nodes[0].token()?;
    Ok((net, base, token))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_is_the_checked_in_one() -> Result<()> {
    let mut net = TestNet::line(1).await?;
    let served: Value = net.api(0)?.raw().get("/api/v1/openapi.json").await?;
    let doc = checked_in_openapi()?;
    ensure!(
        served == doc,
        "the served OpenAPI differs from docs/api/openapi.json"
    );
    let ops = operations(&doc);
    ensure!(ops.len() >= 45, "only {} operations", ops.len());
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_needs_the_token_and_is_routed() -> Result<()> {
    let (mut net, base, token) = one_node().await?;
    let http = reqwest::Client::new();
    let wrong = format!("{}x", &token[..token.len() - 1]);
    for (method, path) in operations(&checked_in_openapi()?) {
        let url = format!("{base}{path}");
        for auth in [None, Some(wrong.as_str()), Some("")] {
            let mut request = http.request(method.clone(), &url);
            if let Some(t) = auth {
                request = request.bearer_auth(t);
            }
            let (status, body) = refusal(request).await?;
            ensure!(
                status == StatusCode::UNAUTHORIZED && body.error == "unauthorized",
                "{method} {path} with token {auth:?}: {status} {body:?}"
            );
        }
        // With the token the route exists: whatever it answers, it is not "no such endpoint"
        // or a wrong method, and an error keeps the one shape.
        let response = http
            .request(method.clone(), &url)
            .bearer_auth(&token)
            .send()
            .await?;
        let status = response.status();
        ensure!(
            status != StatusCode::METHOD_NOT_ALLOWED && status != StatusCode::UNAUTHORIZED,
            "{method} {path}: {status}"
        );
        if !status.is_success() {
            let (_, body) = refusal_of(response).await?;
            ensure!(
                body.message != "no such endpoint",
                "{method} {path} is in the document but not routed"
            );
        }
    }
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_not_in_the_document_is_404_and_a_wrong_method_405_after_the_token_check()
-> Result<()> {
    let (mut net, base, token) = one_node().await?;
    let http = reqwest::Client::new();
    let (status, body) = refusal(http.get(format!("{base}/api/v1/nothing"))).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{status} {body:?}");
    let (status, body) = refusal(
        http.get(format!("{base}/api/v1/nothing"))
            .bearer_auth(&token),
    )
    .await?;
    ensure!(
        status == StatusCode::NOT_FOUND && body.error == "not-found",
        "{status} {body:?}"
    );
    let (status, body) =
        refusal(http.put(format!("{base}/api/v1/node")).bearer_auth(&token)).await?;
    ensure!(
        status == StatusCode::METHOD_NOT_ALLOWED && body.error == "method-not-allowed",
        "{status} {body:?}"
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_and_methods_are_refused_with_their_status_in_the_error_shape() -> Result<()> {
    let (mut net, base, token) = one_node().await?;
    let http = reqwest::Client::new();
    let requests = format!("{base}/api/v1/requests");
    for (what, request, want, code) in [
        (
            "a body that is not JSON",
            http.post(&requests)
                .header("content-type", "application/json")
                .body("{not json"),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            // axum's own answer would be 422.
            "well-formed JSON of the wrong shape",
            http.post(&requests).json(&json!({"target": 7})),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            "a body without its JSON content type",
            http.post(&requests).body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            // axum's String/Bytes refusal is plain text; the API's is JSON.
            "a charter that is not UTF-8",
            http.post(format!("{base}/api/v1/federation/apply"))
                .header("content-type", "application/json")
                .body(vec![0xc3u8, 0x29, 0x2d, 0xff]),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            // Refused by axum's Path extractor before any handler of ours runs.
            "a path segment that is not UTF-8",
            http.get(format!("{base}/api/v1/requests/%FF%FE")),
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            "a POST to the console's page, which takes GET only",
            http.post(format!("{base}/")),
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        ),
    ] {
        let (status, body) = refusal(request.bearer_auth(&token)).await?;
        ensure!(
            status == want && body.error == code,
            "{what}: {status} {body:?}"
        );
    }
    let page = http.get(format!("{base}/")).send().await?;
    ensure!(page.status() == StatusCode::OK, "{}", page.status());
    net.stop_all().await
}

/// The value of a sample line `name{labels} value` in Prometheus text.
fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_serves_metrics_alone_without_the_token() -> Result<()> {
    let mut net = TestNet::line(1).await?;
    net.nodes[0].edit_config(|c| c.api.metrics_listen = Some("127.0.0.1:0".parse().unwrap()))?;
    net.nodes[0].restart().await?;
    let node = &net.nodes[0];
    let metrics_addr = node
        .running()?
        .metrics_address
        .context("no metrics listener")?;
    let http = reqwest::Client::new();
    let response = http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await?;
    ensure!(response.status() == StatusCode::OK, "{}", response.status());
    let text = response.text().await?;
    ensure!(metric(&text, "yrd_up") == Some(1), "{text}");
    // Only /metrics: nothing of the API is reachable there, with or without a token.
    let (status, body) = refusal(http.get(format!("http://{metrics_addr}/api/v1/node"))).await?;
    ensure!(status == StatusCode::NOT_FOUND, "{status} {body:?}");
    let console = http.get(format!("http://{metrics_addr}/")).send().await?;
    ensure!(
        console.status() == StatusCode::NOT_FOUND,
        "{}",
        console.status()
    );
    // The API's own /metrics still needs the token.
    let (status, _) = refusal(http.get(format!("{}/metrics", node.api_url()?))).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{status}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evidence_bundle_verifies_and_one_changed_byte_of_a_record_is_422() -> Result<()> {
    let (mut net, base, token) = one_node().await?;
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/evidence/verify");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/vectors/evidence-bundle.json"
    );
    let mut bundle: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let response = http
        .post(&url)
        .bearer_auth(&token)
        .json(&bundle)
        .send()
        .await?;
    ensure!(response.status() == StatusCode::OK, "{}", response.status());
    let verified: VerifiedBundle = response.json().await?;
    ensure!(!verified.account.is_empty(), "{verified:?}");
    // The record is altered as JSON: the typed bundle would be re-encoded.
    let time = bundle["entries"][0]["record"]["time"]
        .as_str()
        .context("time")?
        .to_string();
    bundle["entries"][0]["record"]["time"] = json!(time.replace('0', "1"));
    let (status, body) = refusal(http.post(&url).bearer_auth(&token).json(&bundle)).await?;
    ensure!(
        status == StatusCode::UNPROCESSABLE_ENTITY && body.error == "invalid-evidence",
        "{status} {body:?}"
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalogue_export_in_an_unknown_format_is_refused_naming_the_formats() -> Result<()> {
    let (mut net, base, token) = one_node().await?;
    let (status, body) = refusal(
        reqwest::Client::new()
            .get(format!("{base}/api/v1/catalogue/export?format=xml"))
            .bearer_auth(&token),
    )
    .await?;
    ensure!(
        status == StatusCode::BAD_REQUEST && body.message.contains("csv"),
        "{status} {body:?}"
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_alarm_resolutions_are_refused_with_their_cause() -> Result<()> {
    let mut net = TestNet::line(1).await?;
    let api = net.api(0)?;
    let me = net.nodes[0].peer_id().to_string();
    for (case, log, note, want) in [
        ("not a peer id", "not-a-peer", "x".to_string(), 400),
        ("a note far too long", me.as_str(), "长".repeat(2001), 400),
        ("no open alarm", me.as_str(), "nothing happened".into(), 404),
    ] {
        let err = api.resolve_alarms(log, &note).await.expect_err(case);
        ensure!(yrd_tests::api::status(&err) == Some(want), "{case}: {err}");
    }
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_the_node_refuses_leaves_the_old_token_in_force() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (mut net, base, token) = one_node().await?;
    let token_file = net.nodes[0].data_dir.join(yrd_node::identity::TOKEN_FILE);
    let http = reqwest::Client::new();
    let reload = || {
        http.post(format!("{base}/api/v1/token/reload"))
            .bearer_auth(&token)
            .json(&json!({}))
    };
    // Readable by others, then too short: each refusal names its cause.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644))?;
    let (status, body) = refusal(reload()).await?;
    ensure!(
        status.is_server_error() && body.message.contains("api.token"),
        "{status} {body:?}"
    );
    std::fs::remove_file(&token_file)?;
    yrd_node::identity::write_private_file(&token_file, b"short")?;
    let (status, body) = refusal(reload()).await?;
    ensure!(
        status.is_server_error() && body.message.contains("shorter"),
        "{status} {body:?}"
    );
    let response = http
        .get(format!("{base}/api/v1/node"))
        .bearer_auth(&token)
        .send()
        .await?;
    ensure!(
        response.status() == StatusCode::OK,
        "the old token stopped working"
    );
    net.stop_all().await
}

async fn metrics(node: &TestNode) -> Result<String> {
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", node.api_url()?))
        .bearer_auth(node.token()?)
        .send()
        .await?;
    ensure!(response.status() == StatusCode::OK, "{}", response.status());
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    ensure!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    Ok(response.text().await?)
}

fn tar(args: &[&str]) -> Result<()> {
    let status = Command::new("tar")
        .args(args)
        .status()
        .context("running tar")?;
    ensure!(status.success(), "tar {args:?}: {status}");
    Ok(())
}

/// Three meshed nodes; Shanghai published one offer (2,000 records) and Jiangsu fetched it.
/// Zhejiang (node 2) stays idle, so a later fetch of its moves every chunk from Shanghai.
struct Exchanged {
    net: TestNet,
    work: TempDir,
    target: String,
    first: TransferView,
}

async fn exchanged() -> Result<Exchanged> {
    let net = TestNet::meshed(3).await?;
    let work = tempfile::tempdir()?;
    let sh = net.api(0)?;
    publish_sample_standard(&sh, STANDARD).await?;
    sh.add_offer(&offer("sh-open", STANDARD, ShareType::Unconditional, None))
        .await?;
    publish_sample_version(&sh, work.path(), "sh-open", STANDARD, 2_000, 1).await?;
    net.wait_catalogue_of(0).await?;
    let target = format!("{}/sh-open", net.nodes[0].peer_id());
    let first = net.api(1)?.fetch_done(&target).await?;
    Ok(Exchanged {
        net,
        work,
        target,
        first,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_exchange_on_both_sides() -> Result<()> {
    let mut x = exchanged().await?;
    let size = x.first.bytes_total;
    let received = metrics(&x.net.nodes[1]).await?;
    for (series, want) in [
        ("yrd_members_connected", 2),
        ("yrd_dataset_bytes_total{direction=\"received\"}", size),
        (
            "yrd_transfers_finished_total{direction=\"in\",outcome=\"done\"}",
            1,
        ),
        ("yrd_catalogue_entries{scope=\"network\"}", 1),
        ("yrd_witness_alarms{state=\"open\"}", 0),
    ] {
        ensure!(
            metric(&received, series) == Some(want),
            "{series}: {received}"
        );
    }
    let sent = metrics(&x.net.nodes[0]).await?;
    for (series, want) in [
        ("yrd_dataset_bytes_total{direction=\"sent\"}", size),
        ("yrd_catalogue_entries{scope=\"own\"}", 1),
    ] {
        ensure!(metric(&sent, series) == Some(want), "{series}: {sent}");
    }
    let records = metric(&sent, "yrd_provenance_records").context("records")?;
    ensure!(records > 0, "{sent}");
    for family in [
        "yrd_members ",
        "yrd_refused_connections_total ",
        "yrd_transfers_active{",
        "yrd_access_requests{",
        "yrd_provenance_signed_tree_size ",
    ] {
        ensure!(sent.contains(family), "no {family} in {sent}");
    }
    x.net.stop_all().await
}

/// What Shanghai showed before its backup.
struct BeforeBackup {
    head: HeadView,
    log: Vec<ProvenanceRecord>,
}

/// [`exchanged`], then Shanghai's data dir backed up stopped with tar as docs/operations.md
/// does it, lost, restored into the same place, and the node started again.
async fn restored() -> Result<(Exchanged, BeforeBackup)> {
    let mut x = exchanged().await?;
    let sh = x.net.api(0)?;
    let before = BeforeBackup {
        head: sh.head().await?,
        log: sh.provenance(None, None).await?,
    };
    x.net.nodes[0].stop().await?;
    let data_dir = x.net.nodes[0].data_dir.clone();
    let parent = data_dir.parent().context("parent")?.to_path_buf();
    let parent = parent.to_str().context("utf-8")?;
    let name = data_dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("name")?;
    let backup = x.work.path().join("yrd-backup.tar.gz");
    let backup = backup.to_str().context("utf-8")?;
    tar(&["-C", parent, "-czpf", backup, name])?;
    std::fs::remove_dir_all(&data_dir)?;
    tar(&["-C", parent, "-xzpf", backup])?;
    x.net.nodes[0].start().await?;
    Ok((x, before))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_restored_from_a_backup_keeps_identity_secrets_log_and_catalogue() -> Result<()>
{
    use std::os::unix::fs::PermissionsExt;
    let (mut x, before) = restored().await?;
    let node = &x.net.nodes[0];
    for file in [yrd_node::identity::KEY_FILE, yrd_node::identity::TOKEN_FILE] {
        let mode = std::fs::metadata(node.data_dir.join(file))?
            .permissions()
            .mode()
            & 0o777;
        ensure!(mode == 0o600, "{file} restored with mode {mode:o}");
    }
    let sh = node.api()?;
    let view = sh.node().await?;
    ensure!(view.peer_id == node.peer_id().to_string(), "{view:?}");
    ensure!(
        before.head.head.is_some(),
        "no signed head before the backup"
    );
    let check = sh.check().await?;
    ensure!(
        check.size >= before.log.len() as u64,
        "{check:?} for {} records",
        before.log.len()
    );
    let after = sh.provenance(None, None).await?;
    ensure!(
        after.get(..before.log.len()) == Some(&before.log[..]),
        "the restored log differs from the backed-up one"
    );
    let catalogue = sh.catalogue().await?;
    ensure!(
        catalogue
            .offers
            .first()
            .map(|o| o.offer.identifier.as_str())
            == Some("sh-open"),
        "{catalogue:?}"
    );
    ensure!(sh.versions("sh-open").await?.len() == 1);
    x.net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_node_serves_every_chunk_from_its_restored_files() -> Result<()> {
    let (mut x, _) = restored().await?;
    let zj = x.net.api(2)?;
    wait_until(
        "Zhejiang to reconnect to the restored node",
        WAIT,
        || async { Ok(zj.peers().await?.len() == 2) },
    )
    .await?;
    let second = zj.fetch_done(&x.target).await?;
    let first = &x.first;
    ensure!(
        second.digest == first.digest && second.bytes_total == first.bytes_total,
        "{first:?} vs {second:?}"
    );
    ensure!(
        second.bytes_done == first.bytes_total,
        "the fetch after the restore moved {} of {} bytes",
        second.bytes_done,
        first.bytes_total
    );
    let after = metrics(&x.net.nodes[0]).await?;
    let sent = metric(&after, "yrd_dataset_bytes_total{direction=\"sent\"}");
    ensure!(
        sent == Some(first.bytes_total),
        "the restored node sent {sent:?} bytes since its start: {after}"
    );
    ensure!(x.net.api(0)?.deliveries("sh-open").await?.len() == 2);
    x.net.stop_all().await
}
