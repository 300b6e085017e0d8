//! Evidence bundles between real nodes: a bundle of a dataset proves it holds every record about
//! it, and `yrd verify` names the record a bundle leaves out (docs/evidence.md, "Completeness");
//! a bundle from nodes on a charter is checked signer by signer against it (step 9).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::process::Command;

use anyhow::Result;
use yrd_node::identity::NodeKey;
use yrd_node::model::node_info::NodeInfo;
use yrd_node::model::provenance::{
    BundleWitness, Cosignature, EvidenceBundle, RecordKind, verify_bundle,
};
use yrd_node::model::region::Region;
use yrd_node::model::signed::Signed;
use yrd_tests::fixtures::{OPEN, founders_charter, provider};
use yrd_tests::verifiers::{python_verify, yrd, yrd_verify};
use yrd_tests::{TestNet, TestNode, WAIT, wait_until};

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
    assert!(linked.membership.starts_with("membership: not checked"));
    // Exported from a devnet on its genesis charter: every signer checked against it.
    let charter = read("evidence-bundle-charter.json")?;
    assert!(charter.complete, "{}", charter.completeness);
    assert!(
        charter.membership.ends_with(
            "log owner: member 12310000YRD000001W 上海市大数据中心; member witnesses: 3 of 3"
        ),
        "{}",
        charter.membership
    );
    assert!(charter.warnings.is_empty(), "{:?}", charter.warnings);
    Ok(())
}

/// Three nodes on a charter: the bundle carries the charter and every signer is checked against
/// it, by `yrd verify` and the Python verifier alike; a sock-puppet witness, a tampered charter
/// and a charter contradicting the records' regions are refused (docs/evidence.md, step 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_from_a_charter_network_checks_every_signer_against_the_charter() -> Result<()> {
    let root = tempfile::tempdir()?;
    let keys = [
        NodeKey::generate(),
        NodeKey::generate(),
        NodeKey::generate(),
    ];
    let regions = [310000, 320000, 330000];
    let members: Vec<(&NodeKey, u32)> = keys.iter().zip(regions).collect();
    let charter = founders_charter(&members, 2)?;
    let path = root.path().join("charter.json");
    std::fs::write(&path, charter.to_json_pretty()?)?;
    let mut nodes = Vec::new();
    let mut boot = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        // Created with a member list (the harness's way), then switched to the charter.
        let trusted: Vec<_> = keys[..i].iter().map(NodeKey::peer_id).collect();
        let mut node = TestNode::create(root.path(), i, key.clone(), &trusted, boot.clone())?;
        node.edit_config(|c| {
            c.federation.members.clear();
            c.federation.charter = Some(path.clone());
        })?;
        node.start().await?;
        if i == 0 {
            boot.push(node.tcp_address().await?);
        }
        nodes.push(node);
    }
    let mut net = TestNet { root, nodes };
    net.wait_full_mesh().await?;
    let dir = tempfile::tempdir()?;
    provider(&net, dir.path(), 20).await?;
    let sh = net.api(0)?;
    net.api(1)?.fetch_done(&format!("310000/{OPEN}")).await?;
    // Exported once the receipt is in and both other members cosigned a head holding it.
    let bundle = wait_until("a bundle witnessed by both members", WAIT, || async {
        let records = sh.provenance(Some(OPEN), None).await?;
        let Some(receipt) = records
            .iter()
            .find(|r| r.kind == RecordKind::ReceiptReceived)
        else {
            return Ok(None);
        };
        let bundle = sh.export(OPEN).await?;
        let covered = bundle
            .witnesses
            .iter()
            .filter(|w| w.cosignature.document.size > receipt.seq)
            .count();
        Ok((covered == 2).then_some(bundle))
    })
    .await?;
    net.stop_all().await?;
    assert_eq!(bundle.charters.as_ref().map(Vec::len), Some(1));

    let verified = verify_bundle(&bundle).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(
        verified
            .membership
            .starts_with("membership: checked against charter yrd-test versions 1 to 1")
            && verified
                .membership
                .ends_with("上海市大数据中心; member witnesses: 2 of 2"),
        "{}",
        verified.membership
    );
    assert!(verified.warnings.is_empty(), "{:?}", verified.warnings);
    assert_eq!(verified.log.organisation, "上海市大数据中心");
    let delivery = verified
        .account
        .iter()
        .find(|l| l.contains(" delivered "))
        .ok_or_else(|| anyhow::anyhow!("no delivery in {:?}", verified.account))?;
    assert!(delivery.contains("to Jiangsu (320000)"), "{delivery}");
    let whole = dir.path().join("whole.json");
    std::fs::write(&whole, serde_json::to_string_pretty(&bundle)?)?;
    let (ok, out) = yrd_verify(&whole)?;
    assert!(ok && out.contains("member witnesses: 2 of 2"), "{out}");
    if let Some((ok, python)) = python_verify(&whole)? {
        assert!(ok, "{python}");
        assert_eq!(python, out, "the two verifiers print the same account");
    }
    // Pinned to the federation's genesis, obtained out of band: it verifies; pinned to another,
    // it does not.
    let genesis = charter.document.digest()?;
    let pinned = |digest: &str| -> Result<(bool, String)> {
        let out = Command::new(yrd()?)
            .args(["verify", "--genesis", digest])
            .arg(&whole)
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8(out.stdout)? + &String::from_utf8(out.stderr)?,
        ))
    };
    let (ok, out) = pinned(&genesis)?;
    assert!(ok && out.contains(&format!("(genesis {genesis})")), "{out}");
    let (ok, out) = pinned(&"0".repeat(64))?;
    assert!(!ok && out.contains("not from the federation's"), "{out}");

    // A sock puppet: a key of the log owner's making, with a NodeInfo of Anhui and a
    // cosignature of the very head. Without the charter it would be "witnessed by" it.
    let puppet = NodeKey::generate();
    let mut forged = bundle.clone();
    forged.parties.push(Signed::sign(
        NodeInfo {
            peer_id: puppet.peer_id().to_string(),
            region: Region::from_code(340000)?,
            organisation: "安徽省大数据中心".into(),
            addresses: Vec::new(),
            issued_at: bundle.head.document.time.clone(),
            software: "yrd/0.1.0".into(),
        },
        puppet.signing_key(),
    )?);
    let head = &bundle.head.document;
    forged.witnesses.push(BundleWitness {
        cosignature: Signed::sign(
            Cosignature {
                log: head.log.clone(),
                size: head.size,
                root: head.root.clone(),
                witness: puppet.peer_id().to_string(),
                time: head.time.clone(),
            },
            puppet.signing_key(),
        )?,
        consistency: Vec::new(),
    });
    let refused = |b: &EvidenceBundle| -> String {
        verify_bundle(b)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let e = refused(&forged);
    assert!(
        e.contains(&format!(
            "the witness {} is not a member of the charter in force",
            puppet.peer_id()
        )),
        "{e}"
    );
    let mut unchecked = forged.clone();
    unchecked.charters = None;
    assert_eq!(
        verify_bundle(&unchecked)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .witnesses
            .len(),
        3,
        "without a charter the puppet counts: the hole the charter closes"
    );

    // The charter tampered with in the bundle: its founders' signatures no longer count.
    let mut tampered = bundle.clone();
    if let Some(c) = tampered.charters.as_mut().and_then(|c| c.first_mut()) {
        c.document.members[2].region = Region::from_code(340000)?;
    }
    let e = refused(&tampered);
    assert!(e.starts_with("charters:"), "{e}");

    // A charter, validly signed by the founders, that binds Shanghai's key to Jiangsu: every
    // record of the real log says 310000, and the first one fails naming both.
    let mut relocated = bundle.clone();
    relocated.charters = Some(vec![founders_charter(
        &[(&keys[0], 320000), (&keys[1], 320000), (&keys[2], 330000)],
        2,
    )?]);
    let e = refused(&relocated);
    assert!(
        e.contains(
            "region mismatch: actor_region is 310000, but charter version 1 binds the log owner"
        ) && e.ends_with("to 320000"),
        "{e}"
    );
    Ok(())
}
