//! Evidence bundles between real nodes: a bundle of a dataset proves it holds every record about
//! it, and `yrd verify` names the record a bundle leaves out (docs/evidence.md, "Completeness").

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use yrd_node::model::provenance::{RecordKind, verify_bundle};
use yrd_tests::fixtures::{OPEN, provider};
use yrd_tests::{TestNet, WAIT, wait_until};

/// The `yrd` binary of this build (target/debug/yrd beside the test's deps directory), built
/// if it is not there yet.
fn yrd() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| anyhow::anyhow!("no target directory above {}", exe.display()))?;
    let bin = dir.join(format!("yrd{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "-q", "-p", "yrd-node", "--bin", "yrd"])
            .status()?;
        anyhow::ensure!(built.success(), "cargo build of yrd failed");
    }
    Ok(bin)
}

/// `yrd verify FILE`: its exit status and standard output.
fn yrd_verify(file: &std::path::Path) -> Result<(bool, String)> {
    let out = Command::new(yrd()?).arg("verify").arg(file).output()?;
    Ok((
        out.status.success(),
        String::from_utf8(out.stdout)? + &String::from_utf8(out.stderr)?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_without_its_one_delivery_is_named_incomplete_by_yrd_verify() -> Result<()> {
    let mut net = TestNet::meshed(2).await?;
    let dir = tempfile::tempdir()?;
    provider(&net, dir.path(), 50).await?;
    let (sh, js) = (net.api(0)?, net.api(1)?);
    js.fetch_done(&format!("310000/{OPEN}")).await?;
    wait_until("the provider to hold the receipt", WAIT, || async {
        let records = sh.provenance(Some(OPEN), None).await?;
        Ok(records
            .iter()
            .any(|r| r.kind == RecordKind::ReceiptReceived))
    })
    .await?;
    let bundle = sh.export(OPEN).await?;
    net.stop_all().await?;
    let size = bundle.head.document.size;

    // As exported: complete.
    let verified = verify_bundle(&bundle).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(verified.complete, "{}", verified.completeness);
    let whole = dir.path().join("whole.json");
    std::fs::write(&whole, serde_json::to_string_pretty(&bundle)?)?;
    let (ok, out) = yrd_verify(&whole)?;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "complete: every record about {OPEN} up to head {size}"
        )),
        "{out}"
    );

    // The one delivery dropped (what a data subject would ask about): every record left still
    // verifies, and the gap is named.
    let delivery: Vec<u64> = bundle
        .entries
        .iter()
        .filter(|e| e.record.kind == RecordKind::DeliveryServed)
        .map(|e| e.record.seq)
        .collect();
    assert_eq!(delivery.len(), 1, "{:?}", verified.account);
    let mut gapped = bundle.clone();
    gapped.entries.retain(|e| e.record.seq != delivery[0]);
    let file = dir.path().join("gapped.json");
    std::fs::write(&file, serde_json::to_string_pretty(&gapped)?)?;
    let (ok, out) = yrd_verify(&file)?;
    assert!(ok, "the records left still verify: {out}");
    assert!(
        out.contains(&format!(
            "INCOMPLETE: record seq {} about {OPEN} is not in this bundle",
            delivery[0]
        )),
        "{out}"
    );
    assert!(!out.contains("complete: every record"), "{out}");
    Ok(())
}

/// The two published vectors: a bundle from before records were linked (no dataset-head: its
/// completeness cannot be shown) and one exported with the links (complete), both verifying.
#[test]
fn the_published_vectors_say_what_they_prove_about_completeness() -> Result<()> {
    use yrd_node::model::provenance::verify_bundle_value;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/vectors");
    let read = |name: &str| -> Result<_> {
        let text = std::fs::read_to_string(dir.join(name))?;
        let v = yrd_node::model::canonical::parse_strict(&text)?;
        verify_bundle_value(&v).map_err(|e| anyhow::anyhow!("{name}: {e}"))
    };
    let old = read("evidence-bundle.json")?;
    assert!(!old.complete);
    assert!(
        old.completeness
            .starts_with("completeness: cannot be shown"),
        "{}",
        old.completeness
    );
    // Its receipt record (seq 28) lies beyond every cosigned size (25, 25, 28).
    assert!(
        old.account.last().unwrap().ends_with("[not yet witnessed]"),
        "{:?}",
        old.account
    );
    let linked = read("evidence-bundle-linked.json")?;
    assert!(linked.complete, "{}", linked.completeness);
    assert_eq!(
        linked.completeness,
        "complete: every record about sh-medical-settlement up to head 29 (9 records)"
    );
    Ok(())
}
