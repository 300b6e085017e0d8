//! The operator surface against real nodes: the served OpenAPI document equals the checked-in
//! one and names only routes that exist; every endpoint refuses a missing or wrong token in the
//! one error shape; `/metrics` reports what the node did; and a data dir backed up with `tar`
//! (as docs/operations.md says), lost and restored, gives a node that works.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use yrd_node::cli::client::ApiClient;
use yrd_tests::{TestNet, WAIT, publish_sample_standard, publish_sample_version, wait_until};

const SCHEMA: &str = "enterprise-licence";

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

/// Sends `request` and reads the answer as (status, JSON body).
async fn ask(request: reqwest::RequestBuilder) -> Result<(StatusCode, Value)> {
    error_body(request.send().await?).await
}

async fn error_body(response: reqwest::Response) -> Result<(StatusCode, Value)> {
    let status = response.status();
    let text = response.text().await?;
    let body: Value = serde_json::from_str(&text)
        .with_context(|| format!("status {status}: body is not JSON: {text:?}"))?;
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_described_by_the_checked_in_openapi_and_every_endpoint_needs_the_token()
-> Result<()> {
    let mut net = TestNet::line(1).await?;
    let node = &net.nodes[0];
    let base = node.api_url()?;
    let client = node.client()?;
    let http = reqwest::Client::new();

    // The served document is the checked-in one.
    let served: Value = client.get("/api/v1/openapi.json").await?;
    let doc = checked_in_openapi()?;
    ensure!(
        served == doc,
        "the served OpenAPI differs from docs/api/openapi.json"
    );
    let ops = operations(&doc);
    ensure!(ops.len() >= 45, "only {} operations", ops.len());

    let token =
        yrd_node::identity::load_token(&node.data_dir.join(yrd_node::identity::TOKEN_FILE))?;
    let wrong = format!("{}x", &token[..token.len() - 1]);
    for (method, path) in &ops {
        let url = format!("{base}{path}");
        for auth in [None, Some(wrong.as_str()), Some("")] {
            let mut request = http.request(method.clone(), &url);
            if let Some(t) = auth {
                request = request.bearer_auth(t);
            }
            let (status, body) = error_body(request.send().await?).await?;
            ensure!(
                status == StatusCode::UNAUTHORIZED && body["error"] == "unauthorized",
                "{method} {path} with token {auth:?}: {status} {body}"
            );
            ensure!(body["message"].is_string(), "{method} {path}: {body}");
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
            let (_, body) = error_body(response).await?;
            ensure!(
                body["error"].is_string() && body["message"].is_string(),
                "{method} {path}: {status} {body}"
            );
            ensure!(
                body["message"] != "no such endpoint",
                "{method} {path} is in the document but not routed"
            );
        }
    }

    // Routes not in the document: 404 in the same shape, and only after the token check.
    let (status, body) = ask(http.get(format!("{base}/api/v1/nothing"))).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{status} {body}");
    let (status, body) = ask(http
        .get(format!("{base}/api/v1/nothing"))
        .bearer_auth(&token))
    .await?;
    ensure!(
        status == StatusCode::NOT_FOUND && body["error"] == "not-found",
        "{status} {body}"
    );
    let (status, body) = ask(http.put(format!("{base}/api/v1/node")).bearer_auth(&token)).await?;
    ensure!(
        status == StatusCode::METHOD_NOT_ALLOWED && body["error"] == "method-not-allowed",
        "{status} {body}"
    );
    // Bad bodies and methods are refused with the right status, in our shape.
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
            "a POST to the console's page, which takes GET only",
            http.post(format!("{base}/")),
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        ),
    ] {
        let (status, body) = ask(request.bearer_auth(&token)).await?;
        ensure!(
            status == want && body["error"] == code,
            "{what}: {status} {body}"
        );
    }
    let page = http.get(format!("{base}/")).send().await?;
    ensure!(page.status() == StatusCode::OK, "{}", page.status());
    net.stop_all().await
}

async fn publish_offer(c: &ApiClient, dir: &Path) -> Result<()> {
    publish_sample_standard(c, SCHEMA).await?;
    let _: Value = c
        .post(
            "/api/v1/catalogue/offers",
            &json!({
                "identifier": "sh-open", "title": "营业执照", "description": "测试",
                "media_type": "application/jsonl", "resource_code": "310000-SCJG-00001",
                "share_type": "unconditional", "share_method": "file", "update_cycle": "daily",
                "schema_id": SCHEMA, "schema_version": "1.0.0"
            }),
        )
        .await?;
    publish_sample_version(c, dir, "sh-open", SCHEMA, 2_000, 1).await?;
    Ok(())
}

/// Fetches `target` and waits until it is done; returns the transfer.
async fn fetch_done(c: &ApiClient, target: &str) -> Result<Value> {
    let started: Value = c.post("/api/v1/fetch", &json!({"target": target})).await?;
    let id = started["id"].as_str().context("transfer id")?.to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        let t: Value = c.get(&format!("/api/v1/transfers/{id}")).await?;
        match t["status"].as_str() {
            Some("done") => return Ok(t),
            Some("failed") => bail!("fetch failed: {t}"),
            _ if Instant::now() > deadline => bail!("fetch did not finish: {t}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
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
    net.nodes[0].stop().await?;
    net.nodes[0].edit_config(|c| c.api.metrics_listen = Some("127.0.0.1:0".parse().unwrap()))?;
    net.nodes[0].start().await?;
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
    let (status, body) = ask(http.get(format!("http://{metrics_addr}/api/v1/node"))).await?;
    ensure!(status == StatusCode::NOT_FOUND, "{status} {body}");
    let console = http.get(format!("http://{metrics_addr}/")).send().await?;
    ensure!(
        console.status() == StatusCode::NOT_FOUND,
        "{}",
        console.status()
    );
    // The API's own /metrics still needs the token.
    let (status, _) = ask(http.get(format!("{}/metrics", node.api_url()?))).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{status}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_routes_refuse_bad_input_with_its_cause() -> Result<()> {
    let mut net = TestNet::line(1).await?;
    let node = &net.nodes[0];
    let base = node.api_url()?;
    let token_file = node.data_dir.join(yrd_node::identity::TOKEN_FILE);
    let token = yrd_node::identity::load_token(&token_file)?;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };

    // The published evidence vector verifies; one changed byte of a record does not (422).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/vectors/evidence-bundle.json"
    );
    let mut bundle: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let response = post("/api/v1/evidence/verify", bundle.clone()).await?;
    ensure!(response.status() == StatusCode::OK, "{}", response.status());
    let verified: Value = response.json().await?;
    ensure!(
        verified["account"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{verified}"
    );
    let time = bundle["entries"][0]["record"]["time"]
        .as_str()
        .context("time")?
        .to_string();
    bundle["entries"][0]["record"]["time"] = json!(time.replace('0', "1"));
    let (status, body) = error_body(post("/api/v1/evidence/verify", bundle).await?).await?;
    ensure!(
        status == StatusCode::UNPROCESSABLE_ENTITY && body["error"] == "invalid-evidence",
        "{status} {body}"
    );

    // A catalogue export in a format there is not.
    let (status, body) = ask(http
        .get(format!("{base}/api/v1/catalogue/export?format=xml"))
        .bearer_auth(&token))
    .await?;
    ensure!(
        status == StatusCode::BAD_REQUEST
            && body["message"].as_str().is_some_and(|m| m.contains("csv")),
        "{status} {body}"
    );

    // Resolving alarms: not a peer id; a note far too long; no open alarm.
    for (body, want) in [
        (
            json!({"log": "not-a-peer", "note": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"log": node.peer_id().to_string(), "note": "长".repeat(2001)}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"log": node.peer_id().to_string(), "note": "nothing happened"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, answer) =
            error_body(post("/api/v1/provenance/alarms/resolve", body.clone()).await?).await?;
        ensure!(status == want, "{body}: {status} {answer}");
    }

    // A token file the node must refuse (readable by others, then too short) leaves the old
    // token in force, and the refusal names the cause.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644))?;
    let (status, body) = error_body(post("/api/v1/token/reload", json!({})).await?).await?;
    ensure!(
        status.is_server_error()
            && body["message"]
                .as_str()
                .is_some_and(|m| m.contains("api.token")),
        "{status} {body}"
    );
    std::fs::remove_file(&token_file)?;
    yrd_node::identity::write_private_file(&token_file, b"short")?;
    let (status, body) = error_body(post("/api/v1/token/reload", json!({})).await?).await?;
    ensure!(
        status.is_server_error()
            && body["message"]
                .as_str()
                .is_some_and(|m| m.contains("shorter")),
        "{status} {body}"
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

async fn metrics(node: &yrd_tests::TestNode) -> Result<String> {
    let token =
        yrd_node::identity::load_token(&node.data_dir.join(yrd_node::identity::TOKEN_FILE))?;
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", node.api_url()?))
        .bearer_auth(token)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_exchange_and_a_data_dir_restored_from_a_backup_works() -> Result<()> {
    // Node 2 (Zhejiang) stays idle until after the restore, so its fetch moves every chunk
    // from the restored data dir (Jiangsu already holds the file and would move none).
    let mut net = TestNet::line(3).await?;
    net.wait_full_mesh().await?;
    let work = tempfile::tempdir()?;
    let sh = net.nodes[0].client()?;
    let js = net.nodes[1].client()?;
    publish_offer(&sh, work.path()).await?;
    let target = format!("{}/sh-open", net.nodes[0].peer_id());
    wait_until("the offer reaches Jiangsu", WAIT, || async {
        let hits: Vec<Value> = js.get("/api/v1/catalogue/search?text=sh-open").await?;
        Ok(hits.len() == 1 && hits[0]["entry"]["latest_version"] == 1)
    })
    .await?;
    let first = fetch_done(&js, &target).await?;
    let size = first["bytes_total"].as_u64().context("bytes_total")?;

    // Metrics on both sides.
    let text = metrics(&net.nodes[1]).await?;
    ensure!(metric(&text, "yrd_members_connected") == Some(2), "{text}");
    ensure!(
        metric(&text, "yrd_dataset_bytes_total{direction=\"received\"}") == Some(size),
        "{text}"
    );
    ensure!(
        metric(
            &text,
            "yrd_transfers_finished_total{direction=\"in\",outcome=\"done\"}"
        ) == Some(1),
        "{text}"
    );
    ensure!(
        metric(&text, "yrd_catalogue_entries{scope=\"network\"}") == Some(1),
        "{text}"
    );
    ensure!(
        metric(&text, "yrd_witness_alarms{state=\"open\"}") == Some(0),
        "{text}"
    );
    let provider_metrics = metrics(&net.nodes[0]).await?;
    ensure!(
        metric(
            &provider_metrics,
            "yrd_dataset_bytes_total{direction=\"sent\"}"
        ) == Some(size),
        "{provider_metrics}"
    );
    ensure!(
        metric(&provider_metrics, "yrd_catalogue_entries{scope=\"own\"}") == Some(1),
        "{provider_metrics}"
    );
    let records = metric(&provider_metrics, "yrd_provenance_records").context("records")?;
    ensure!(records > 0, "{provider_metrics}");
    for family in [
        "yrd_members ",
        "yrd_refused_connections_total ",
        "yrd_transfers_active{",
        "yrd_access_requests{",
        "yrd_provenance_signed_tree_size ",
    ] {
        ensure!(
            provider_metrics.contains(family),
            "no {family} in {provider_metrics}"
        );
    }

    // Back up Shanghai's data dir, stopped, with tar as docs/operations.md does it.
    let before: Value = sh.get("/api/v1/provenance/head").await?;
    let log_before: Vec<Value> = sh.get("/api/v1/provenance?limit=100000").await?;
    net.nodes[0].stop().await?;
    let data_dir = net.nodes[0].data_dir.clone();
    let parent = data_dir.parent().context("parent")?.to_path_buf();
    let name = data_dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("name")?
        .to_string();
    let backup = work.path().join("yrd-backup.tar.gz");
    tar(&[
        "-C",
        parent.to_str().context("utf-8")?,
        "-czpf",
        backup.to_str().context("utf-8")?,
        &name,
    ])?;
    // The disk is lost; restore into the same place.
    std::fs::remove_dir_all(&data_dir)?;
    tar(&[
        "-C",
        parent.to_str().context("utf-8")?,
        "-xzpf",
        backup.to_str().context("utf-8")?,
    ])?;
    // The key and token keep their owner-only permissions through the round trip.
    use std::os::unix::fs::PermissionsExt;
    for file in [yrd_node::identity::KEY_FILE, yrd_node::identity::TOKEN_FILE] {
        let mode = std::fs::metadata(data_dir.join(file))?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "{file} restored with mode {mode:o}");
    }
    net.nodes[0].start().await?;
    let sh = net.nodes[0].client()?;

    // Same identity, same log (it checks), same catalogue, same files.
    let view: Value = sh.get("/api/v1/node").await?;
    ensure!(
        view["peer_id"] == net.nodes[0].peer_id().to_string(),
        "{view}"
    );
    let check: Value = sh.post("/api/v1/provenance/check", &json!({})).await?;
    ensure!(check["size"].as_u64() >= Some(records), "{check}");
    let log_after: Vec<Value> = sh.get("/api/v1/provenance?limit=100000").await?;
    ensure!(
        log_after[..log_before.len()] == log_before[..],
        "the restored log differs from the backed-up one"
    );
    ensure!(
        before["head"].is_object(),
        "no signed head before the backup: {before}"
    );
    let catalogue: Value = sh.get("/api/v1/catalogue").await?;
    ensure!(
        catalogue["offers"][0]["offer"]["identifier"] == "sh-open",
        "{catalogue}"
    );
    let versions: Vec<Value> = sh.get("/api/v1/datasets/sh-open/versions").await?;
    ensure!(versions.len() == 1, "{versions:?}");

    // And it serves: Zhejiang, which never held the file, fetches it from the restored node:
    // every chunk comes out of the restored blobs, digest-equal to the first delivery.
    let zj = net.nodes[2].client()?;
    wait_until("Zhejiang reconnects to the restored node", WAIT, || async {
        let peers: Vec<Value> = zj.get("/api/v1/peers").await?;
        Ok(peers.len() == 2)
    })
    .await?;
    let second = fetch_done(&zj, &target).await?;
    ensure!(
        second["digest"] == first["digest"] && second["bytes_total"] == first["bytes_total"],
        "{first} vs {second}"
    );
    ensure!(
        second["bytes_done"] == first["bytes_total"],
        "the fetch after the restore moved {} of {} bytes",
        second["bytes_done"],
        first["bytes_total"]
    );
    let after = metrics(&net.nodes[0]).await?;
    ensure!(
        metric(&after, "yrd_dataset_bytes_total{direction=\"sent\"}") == Some(size),
        "the restored node sent {:?} bytes since its start: {after}",
        metric(&after, "yrd_dataset_bytes_total{direction=\"sent\"}")
    );
    let deliveries: Vec<Value> = sh
        .get("/api/v1/provenance/deliveries?dataset=sh-open")
        .await?;
    ensure!(deliveries.len() == 2, "{deliveries:?}");
    net.stop_all().await
}
