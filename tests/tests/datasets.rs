//! Publishing dataset versions: validation with line numbers, content-addressed blobs, signed
//! manifests chained by digest, and the catalogue pointing at the latest version.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

use anyhow::Result;
use serde_json::{Value, json};
use yrd_node::cli::client::ClientError;
use yrd_tests::{TestNet, WAIT, wait_until};

fn write_jsonl(path: &std::path::Path, records: &[Value]) -> Result<()> {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_validated_stored_signed_chained_and_catalogued() -> Result<()> {
    let mut net = TestNet::line(2).await?;
    net.wait_full_mesh().await?;
    let sh = net.nodes[0].client()?;
    let schema: Value =
        serde_json::from_str(yrd_node::samples::schema_json("enterprise-licence").unwrap())?;
    let _: Value = sh
        .post(
            "/api/v1/schemas",
            &json!({"id": "enterprise-licence", "version": "1.0.0", "schema": schema}),
        )
        .await?;
    let offer = json!({
        "identifier": "sh-licences", "title": "企业营业执照", "description": "测试",
        "media_type": "application/jsonl", "resource_code": "310000-SCJG-00001",
        "share_type": "unconditional", "share_method": "file", "update_cycle": "daily",
        "schema_id": "enterprise-licence", "schema_version": "1.0.0"
    });
    let _: Value = sh.post("/api/v1/catalogue/offers", &offer).await?;

    let dir = tempfile::tempdir()?;
    let records = yrd_node::samples::generate("enterprise-licence", 200, 7)?;
    let v1 = dir.path().join("v1.jsonl");
    write_jsonl(&v1, &records)?;
    let m1: Value = sh
        .post(
            "/api/v1/datasets/sh-licences/versions",
            &json!({"file": v1, "format": "jsonl"}),
        )
        .await?;
    let d1 = &m1["document"];
    assert_eq!(d1["version"], 1);
    assert_eq!(d1["record_count"], 200);
    assert!(d1.get("previous").is_none());
    let digest1 = d1["digest"].as_str().unwrap().to_string();
    assert_eq!(
        digest1,
        blake3::hash(&std::fs::read(&v1)?).to_hex().to_string()
    );
    assert!(net.nodes[0].node()?.blobs().contains(&digest1));
    assert_eq!(d1["schema"]["id"], "enterprise-licence");

    // The catalogue points at the latest version, on the publisher and on its peer.
    wait_until("peer sees version 1", WAIT, || async {
        let hits: Vec<Value> = net.nodes[1]
            .client()?
            .get("/api/v1/catalogue/search?text=sh-licences")
            .await?;
        Ok(hits.len() == 1
            && hits[0]["entry"]["latest_version"] == 1
            && hits[0]["entry"]["checksum"] == digest1.as_str())
    })
    .await?;

    // Version 2 chains to version 1.
    let v2 = dir.path().join("v2.jsonl");
    write_jsonl(
        &v2,
        &yrd_node::samples::generate("enterprise-licence", 300, 8)?,
    )?;
    let m2: Value = sh
        .post(
            "/api/v1/datasets/sh-licences/versions",
            &json!({"file": v2, "format": "jsonl"}),
        )
        .await?;
    assert_eq!(m2["document"]["version"], 2);
    assert_eq!(m2["document"]["previous"], digest1.as_str());

    // The same file again is refused.
    let err = sh
        .post::<_, Value>(
            "/api/v1/datasets/sh-licences/versions",
            &json!({"file": v2, "format": "jsonl"}),
        )
        .await
        .expect_err("unchanged");
    assert!(matches!(err, ClientError::Api { status: 409, .. }), "{err}");

    // A schema-invalid record refuses the whole version, with line numbers and field paths.
    let mut bad = records.clone();
    bad[2]["uscc"] = json!("NOT-A-CODE");
    bad[4]["registered_capital"] = json!("lots");
    let v3 = dir.path().join("v3.jsonl");
    write_jsonl(&v3, &bad)?;
    let err = sh
        .post::<_, Value>(
            "/api/v1/datasets/sh-licences/versions",
            &json!({"file": v3, "format": "jsonl"}),
        )
        .await
        .expect_err("invalid");
    let text = err.to_string();
    assert!(
        matches!(err, ClientError::Api { status: 400, .. }),
        "{text}"
    );
    assert!(
        text.contains("line 3 at /uscc") && text.contains("line 5 at /registered_capital"),
        "{text}"
    );
    let versions: Vec<Value> = sh.get("/api/v1/datasets/sh-licences/versions").await?;
    assert_eq!(
        versions.len(),
        2,
        "nothing recorded for the refused version"
    );
    let refused_digest = blake3::hash(&std::fs::read(&v3)?).to_hex().to_string();
    assert!(
        !net.nodes[0].node()?.blobs().contains(&refused_digest),
        "no refused bytes kept"
    );

    // The same standard's records as CSV (a header row, typed by the standard) are a version too.
    let header: Vec<String> = records[0].as_object().unwrap().keys().cloned().collect();
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut csv_text = header
        .iter()
        .map(|h| quote(h))
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    for r in &records[..100] {
        let cells: Vec<String> = header
            .iter()
            .map(|h| match &r[h] {
                Value::Null => String::new(),
                Value::String(s) => quote(s),
                other => other.to_string(),
            })
            .collect();
        csv_text.push_str(&(cells.join(",") + "\n"));
    }
    let v4 = dir.path().join("v4.csv");
    std::fs::write(&v4, csv_text)?;
    let m4: Value = sh
        .post(
            "/api/v1/datasets/sh-licences/versions",
            &json!({"file": v4, "format": "csv"}),
        )
        .await?;
    assert_eq!(m4["document"]["version"], 3);
    assert_eq!(m4["document"]["format"], "csv");
    assert_eq!(m4["document"]["record_count"], 100);

    // Unknown dataset, relative path, missing file: clear refusals.
    let err = sh
        .post::<_, Value>(
            "/api/v1/datasets/nope/versions",
            &json!({"file": v1, "format": "jsonl"}),
        )
        .await
        .expect_err("404");
    assert!(matches!(err, ClientError::Api { status: 404, .. }), "{err}");
    let err = sh
        .post::<_, Value>(
            "/api/v1/datasets/sh-licences/versions",
            &json!({"file": "v1.jsonl", "format": "jsonl"}),
        )
        .await
        .expect_err("relative");
    assert!(err.to_string().contains("absolute"), "{err}");
    let err = sh
        .post::<_, Value>(
            "/api/v1/datasets/sh-licences/versions",
            &json!({"file": dir.path().join("missing.jsonl"), "format": "jsonl"}),
        )
        .await
        .expect_err("missing");
    assert!(err.to_string().contains("missing.jsonl"), "{err}");
    net.stop_all().await
}
