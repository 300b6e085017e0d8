//! Publishing dataset versions: validation with line numbers, content-addressed blobs, signed
//! manifests chained by digest, and the catalogue pointing at the latest version.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{Value, json};
use tempfile::TempDir;
use yrd_node::model::catalogue::ShareType;
use yrd_node::model::exchange::{DataFormat, Manifest};
use yrd_node::model::signed::Signed;
use yrd_tests::api::status;
use yrd_tests::fixtures::{STANDARD, file_digest, offer, publish_sample_standard, write_jsonl};
use yrd_tests::{TestNet, WAIT, wait_until};

const DATASET: &str = "sh-licences";

/// Shanghai's offer with version 1 published: 200 records.
struct Published {
    net: TestNet,
    dir: TempDir,
    records: Vec<Value>,
    v1: PathBuf,
    manifest: Signed<Manifest>,
}

/// `nodes` meshed nodes; node 0 publishes the standard, the offer and version 1.
async fn published(nodes: usize) -> Result<Published> {
    let net = TestNet::meshed(nodes).await?;
    let sh = net.api(0)?;
    publish_sample_standard(&sh, STANDARD).await?;
    sh.add_offer(&offer(DATASET, STANDARD, ShareType::Unconditional, None))
        .await?;
    let dir = tempfile::tempdir()?;
    let records = yrd_node::samples::generate(STANDARD, 200, 7)?;
    let v1 = dir.path().join("v1.jsonl");
    write_jsonl(&v1, &records)?;
    let manifest = sh.publish_version(DATASET, &v1, DataFormat::Jsonl).await?;
    Ok(Published {
        net,
        dir,
        records,
        v1,
        manifest,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_is_stored_by_digest_and_signed() -> Result<()> {
    let mut p = published(1).await?;
    let m = &p.manifest.document;
    assert_eq!((m.version, m.record_count, &m.previous), (1, 200, &None));
    assert_eq!(m.digest, file_digest(&p.v1)?);
    assert!(p.net.nodes[0].node()?.blobs().contains(&m.digest));
    assert_eq!(m.schema.as_ref().map(|s| s.id.as_str()), Some(STANDARD));
    assert_eq!(
        p.manifest.document.publisher,
        p.net.nodes[0].peer_id().to_string()
    );
    p.net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_of_a_peer_points_at_the_latest_version() -> Result<()> {
    let mut p = published(2).await?;
    let digest = p.manifest.document.digest.clone();
    let js = p.net.api(1)?;
    wait_until("the peer to see version 1", WAIT, || async {
        let hits = js.search_text(DATASET).await?;
        Ok(hits.len() == 1
            && hits[0].entry.latest_version == Some(1)
            && hits[0].entry.checksum.as_deref() == Some(digest.as_str()))
    })
    .await?;
    p.net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_version_chains_to_the_first() -> Result<()> {
    let mut p = published(1).await?;
    let v2 = p.dir.path().join("v2.jsonl");
    write_jsonl(&v2, &yrd_node::samples::generate(STANDARD, 300, 8)?)?;
    let m2 = p
        .net
        .api(0)?
        .publish_version(DATASET, &v2, DataFormat::Jsonl)
        .await?;
    assert_eq!(m2.document.version, 2);
    assert_eq!(
        m2.document.previous,
        Some(p.manifest.document.digest.clone())
    );
    p.net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_file_is_refused() -> Result<()> {
    let mut p = published(1).await?;
    let err = p
        .net
        .api(0)?
        .publish_version(DATASET, &p.v1, DataFormat::Jsonl)
        .await
        .expect_err("unchanged");
    assert_eq!(status(&err), Some(409), "{err}");
    p.net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_invalid_record_refuses_the_whole_version_naming_lines_and_fields() -> Result<()> {
    let mut p = published(1).await?;
    let sh = p.net.api(0)?;
    let mut bad = p.records.clone();
    bad[2]["uscc"] = json!("NOT-A-CODE");
    bad[4]["registered_capital"] = json!("lots");
    let v2 = p.dir.path().join("v2.jsonl");
    write_jsonl(&v2, &bad)?;
    let err = sh
        .publish_version(DATASET, &v2, DataFormat::Jsonl)
        .await
        .expect_err("invalid");
    let text = err.to_string();
    assert_eq!(status(&err), Some(400), "{text}");
    assert!(
        text.contains("line 3 at /uscc") && text.contains("line 5 at /registered_capital"),
        "{text}"
    );
    assert_eq!(
        sh.versions(DATASET).await?.len(),
        1,
        "nothing recorded for the refused version"
    );
    assert!(
        !p.net.nodes[0].node()?.blobs().contains(&file_digest(&v2)?),
        "no refused bytes kept"
    );
    p.net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_with_a_header_row_typed_by_the_standard_is_a_version() -> Result<()> {
    let mut p = published(1).await?;
    let header: Vec<String> = p.records[0].as_object().unwrap().keys().cloned().collect();
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut csv_text = header
        .iter()
        .map(|h| quote(h))
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    for r in &p.records[..100] {
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
    let v2 = p.dir.path().join("v2.csv");
    std::fs::write(&v2, csv_text)?;
    let m2 = p
        .net
        .api(0)?
        .publish_version(DATASET, &v2, DataFormat::Csv)
        .await?;
    let m = &m2.document;
    assert_eq!(
        (m.version, m.format, m.record_count),
        (2, DataFormat::Csv, 100)
    );
    p.net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_dataset_a_relative_path_and_a_missing_file_are_refused_by_name() -> Result<()> {
    let mut p = published(1).await?;
    let sh = p.net.api(0)?;
    let missing = p.dir.path().join("missing.jsonl");
    for (case, dataset, file, says) in [
        ("unknown dataset", "nope", p.v1.clone(), "404"),
        (
            "relative path",
            DATASET,
            PathBuf::from("v1.jsonl"),
            "absolute",
        ),
        ("missing file", DATASET, missing, "missing.jsonl"),
    ] {
        let err = sh
            .publish_version(dataset, &file, DataFormat::Jsonl)
            .await
            .expect_err(case);
        assert!(err.to_string().contains(says), "{case}: {err}");
    }
    p.net.stop_all().await
}
