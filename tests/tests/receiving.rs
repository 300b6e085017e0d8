//! The pipelined receiver between real nodes: records are checked while the chunks arrive, and a
//! version whose records do not conform is refused with the text a check of the whole file in
//! one pass gives, wherever the bad record lies (the first chunk, across a boundary in a middle
//! one, the last), with nothing of it kept; a fetch resumed from a partial checks again what the
//! partial already held.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;
use yrd_node::api::exchange::FetchBody;
use yrd_node::model::exchange::DataFormat;
use yrd_node::model::standard;
use yrd_node::node::datasets::check_jsonl;
use yrd_node::node::transfer::{Fault, TransferStatus, TransferView};
use yrd_tests::api::{fetch_body, finished};
use yrd_tests::fixtures::{OPEN, STANDARD, UNMARKED, file_digest, provider, unmarked_schema};
use yrd_tests::{TestNet, TestNode};

/// Records in a test version: about 3.6 MiB, four chunks of 1 MiB.
const RECORDS: usize = 4500;
const MIB: usize = 1 << 20;

/// `RECORDS` sample records as JSON Lines, record `bad` (if any) given a number where the
/// standard wants a string.
fn version_with(bad: Option<usize>, seed: u64) -> Result<Vec<u8>> {
    let mut records = yrd_node::samples::generate(STANDARD, RECORDS, seed)?;
    if let Some(i) = bad {
        records[i]["uscc"] = Value::from(12);
    }
    Ok(records
        .iter()
        .flat_map(|r| format!("{r}\n").into_bytes())
        .collect())
}

/// The index of the record whose line holds byte `offset` of `bytes`.
fn record_at(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset].iter().filter(|&&b| b == b'\n').count()
}

/// The error a fetch of `file` must end with: the one-pass check's problems, as the receiver
/// has always worded them.
fn refusal_of(file: &Path) -> Result<String> {
    let compiled = standard::compile(&unmarked_schema(STANDARD, UNMARKED)?)?;
    let problems = check_jsonl(std::fs::File::open(file)?, &compiled)
        .expect_err("the version has a bad record");
    Ok(format!(
        "received records do not conform to {UNMARKED}@1.0.0: {}",
        problems
            .iter()
            .map(|p| format!("line {} {}: {}", p.line, p.path, p.message))
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

/// Writes `bytes` to `dir/name` and has the provider publish it, unchecked, as the next version
/// of the unconditional offer; returns the file and the version.
async fn publish_unchecked(
    provider: &TestNode,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(PathBuf, u64)> {
    let file = dir.join(name);
    std::fs::write(&file, bytes)?;
    let m = provider
        .node()?
        .publish_unchecked_for_test(OPEN, &file, DataFormat::Jsonl)
        .await?;
    Ok((file, m.document.version))
}

/// Asserts that `t`, receiver 1's fetch of version `v` from node 0 (made of `file`), failed
/// with exactly the one-pass check's error, and that the receiver kept nothing of it: no blob,
/// no partial, no manifest of the version.
fn assert_refused_and_nothing_kept(
    net: &TestNet,
    t: &TransferView,
    file: &Path,
    v: u64,
) -> Result<()> {
    assert_eq!(t.status, TransferStatus::Failed, "{t:?}");
    assert_eq!(t.error.as_deref(), Some(refusal_of(file)?.as_str()));
    let node = net.nodes[1].node()?;
    assert!(
        !node.blobs().contains(&file_digest(file)?),
        "the refused file is kept"
    );
    assert_eq!(node.blobs().partials()?, Vec::<String>::new());
    let publisher = net.nodes[0].peer_id().to_string();
    assert!(
        node.manifests(Some(&publisher), OPEN)?
            .iter()
            .all(|m| m.document.version != v),
        "the refused version is held"
    );
    Ok(())
}

fn version(v: u64) -> FetchBody {
    FetchBody {
        version: Some(v),
        ..fetch_body(&format!("310000/{OPEN}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_in_the_first_a_middle_or_the_last_chunk_refuses_the_version() -> Result<()> {
    let mut net = TestNet::meshed(2).await?;
    let dir = tempfile::tempdir()?;
    provider(&net, dir.path(), 10).await?;
    let good = version_with(None, 5)?;
    assert!(good.len() > 3 * MIB, "four chunks: {}", good.len());
    // The first record; the one across the boundary of chunks 1 and 2; the last.
    for (what, bad) in [
        ("first chunk", 0),
        (
            "a middle chunk, across a boundary",
            record_at(&good, 2 * MIB),
        ),
        ("last chunk", RECORDS - 1),
    ] {
        let bytes = version_with(Some(bad), 5)?;
        let (file, v) = publish_unchecked(
            &net.nodes[0],
            dir.path(),
            &format!("bad-{bad}.jsonl"),
            &bytes,
        )
        .await?;
        net.wait_catalogue_of(0).await?;
        let t = net.api(1)?.fetch_to_end(&version(v)).await?;
        eprintln!("bad record {bad} ({what}): {:?}", t.error);
        assert_refused_and_nothing_kept(&net, &t, &file, v)?;
    }
    // A version that conforms, in as many chunks, is received whole.
    let (file, v) = publish_unchecked(&net.nodes[0], dir.path(), "good.jsonl", &good).await?;
    net.wait_catalogue_of(0).await?;
    let t = net.api(1)?.fetch_to_end(&version(v)).await?;
    // The manifest of an unchecked publish says 0 records: counted, and refused for that.
    assert_eq!(
        t.error.as_deref(),
        Some(format!("received {RECORDS} records, the manifest says 0").as_str()),
        "{t:?}"
    );
    assert!(!net.nodes[1].node()?.blobs().contains(&file_digest(&file)?));
    let t = net.api(1)?.fetch_to_end(&version(1)).await?;
    assert_eq!(t.status, TransferStatus::Done, "{t:?}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_fetch_checks_again_the_chunks_its_partial_held() -> Result<()> {
    let mut net = TestNet::meshed(2).await?;
    let dir = tempfile::tempdir()?;
    provider(&net, dir.path(), 10).await?;
    // One bad record, in the first chunk: the verdict waits for the end of the file.
    let bytes = version_with(Some(3), 6)?;
    let (file, v) = publish_unchecked(&net.nodes[0], dir.path(), "bad-3.jsonl", &bytes).await?;
    net.wait_catalogue_of(0).await?;
    net.nodes[0]
        .node()?
        .inject_fault(Fault::SlowChunks(Duration::from_millis(300)));
    let js = net.api(1)?;
    let started = js.fetch(&version(v)).await?;
    // The first chunk (with the bad record) arrived and was checked; then the receiver stops.
    js.wait_transfer(&started.id, "the first chunk to arrive", |t| {
        t.bytes_done > 0
    })
    .await?;
    net.nodes[1].restart().await?;
    let t = net
        .api(1)?
        .wait_transfer(&started.id, "the resumed fetch to end", finished)
        .await?;
    assert!(t.attempts >= 2, "{t:?}");
    assert_refused_and_nothing_kept(&net, &t, &file, v)?;
    net.stop_all().await
}
