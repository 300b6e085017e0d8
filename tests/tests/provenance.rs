//! Provenance between real nodes: both sides of an exchange leave matching records, bundles from
//! either side verify offline and fail on any altered byte, a node that rewrites its log is
//! caught by its witness, the deliveries report, and crash safety under SIGKILL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::Result;
use serde_json::{Value, json};
use tempfile::TempDir;
use yrd_node::api::exchange::ApproveBody;
use yrd_node::model::provenance::{EvidenceBundle, ProvenanceRecord, RecordKind, verify_bundle};
use yrd_node::store::provenance::ProvenanceLog;
use yrd_tests::api::{Api, status};
use yrd_tests::fixtures::{COND, OPEN, grant, provider, request_body};
use yrd_tests::{TestNet, WAIT, wait_until};

const PURPOSE: &str = "跨省通办企业核验";

/// A three-node exchange: Jiangsu (node 1) fetched the unconditional offer; Zhejiang (node 2)
/// asked for two fields of the conditional one, was granted them (the ID number masked) and
/// fetched them; the provider holds Zhejiang's receipt and cosignature.
struct Exchanged {
    net: TestNet,
    _dir: TempDir,
}

async fn exchanged() -> Result<Exchanged> {
    let net = TestNet::meshed(3).await?;
    let dir = tempfile::tempdir()?;
    provider(&net, dir.path(), 200).await?;
    let (sh, js, zj) = (net.api(0)?, net.api(1)?, net.api(2)?);
    js.fetch_done(&format!("310000/{OPEN}")).await?;
    let approval = ApproveBody {
        masks: vec!["legal_representative_id_number=keep:6:4".parse()?],
        ..ApproveBody::default()
    };
    let fields = ["uscc", "legal_representative_id_number"];
    grant(&sh, &zj, &request_body(COND, PURPOSE, &fields), &approval).await?;
    zj.fetch_done(&format!("310000/{COND}")).await?;
    let zj_id = net.nodes[2].peer_id().to_string();
    wait_until(
        "the provider to hold the receipt and a cosignature",
        WAIT,
        || async {
            let k = kinds(&sh, COND).await?;
            let head = sh.head().await?;
            Ok(k.contains(&RecordKind::ReceiptReceived)
                && head
                    .cosignatures
                    .iter()
                    .any(|c| c.document.witness == zj_id))
        },
    )
    .await?;
    Ok(Exchanged { net, _dir: dir })
}

async fn kinds(api: &Api, dataset: &str) -> Result<Vec<RecordKind>> {
    Ok(api
        .provenance(Some(dataset), None)
        .await?
        .iter()
        .map(|r| r.kind)
        .collect())
}

/// The digest of the grant a list of records names.
fn grant_digest(records: &[ProvenanceRecord]) -> Option<String> {
    records
        .iter()
        .flat_map(|r| &r.documents)
        .find(|d| d.doc_type == "grant")
        .map(|d| d.digest.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_of_an_exchange_record_their_half() -> Result<()> {
    let mut x = exchanged().await?;
    let (sh, zj) = (x.net.api(0)?, x.net.api(2)?);
    let provider_kinds = kinds(&sh, COND).await?;
    for k in [
        RecordKind::DatasetPublished,
        RecordKind::RequestReceived,
        RecordKind::GrantIssued,
        RecordKind::DeliveryServed,
        RecordKind::ReceiptReceived,
    ] {
        assert!(provider_kinds.contains(&k), "{k:?}: {provider_kinds:?}");
    }
    let requester_kinds = kinds(&zj, COND).await?;
    for k in [
        RecordKind::RequestSent,
        RecordKind::GrantReceived,
        RecordKind::DatasetReceived,
    ] {
        assert!(requester_kinds.contains(&k), "{k:?}: {requester_kinds:?}");
    }
    // Both name the same signed grant.
    let p_list = sh.provenance(Some(COND), None).await?;
    let r_list = zj.provenance(Some(COND), None).await?;
    assert!(grant_digest(&p_list).is_some());
    assert_eq!(grant_digest(&p_list), grant_digest(&r_list));
    x.net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deliveries_report_lists_exactly_the_deliveries_made() -> Result<()> {
    let mut x = exchanged().await?;
    let sh = x.net.api(0)?;
    let open = sh.deliveries(OPEN).await?;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].receiver, x.net.nodes[1].peer_id().to_string());
    let cond = sh.deliveries(COND).await?;
    assert_eq!(cond.len(), 1, "{cond:?}");
    let d = &cond[0];
    assert_eq!(d.receiver, x.net.nodes[2].peer_id().to_string());
    assert_eq!(d.purpose.as_deref(), Some(PURPOSE));
    assert!(
        d.fields
            .contains("legal_representative_id_number (keep first 6 last 4)"),
        "{d:?}"
    );
    assert!(d.receipt_at.is_some(), "{d:?}");
    x.net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_bundle_verifies_offline_and_tells_what_happened() -> Result<()> {
    let mut x = exchanged().await?;
    let bundle = x.net.api(0)?.export(COND).await?;
    let verified = verify_bundle(&bundle).map_err(|e| anyhow::anyhow!("{e}"))?;
    let zj_id = x.net.nodes[2].peer_id().to_string();
    assert!(
        verified.witnesses.contains(&zj_id),
        "{:?}",
        verified.witnesses
    );
    let account = verified.account.join("\n");
    assert!(
        account.contains("Shanghai (310000) delivered sh-cond v1")
            && account.contains("to Zhejiang (330000)")
            && account.contains("receipt signed by Zhejiang (330000)"),
        "{account}"
    );
    x.net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receivers_bundle_verifies_offline() -> Result<()> {
    let mut x = exchanged().await?;
    let bundle = x.net.api(2)?.export(COND).await?;
    let verified = verify_bundle(&bundle).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(
        verified
            .account
            .iter()
            .any(|l| l.contains("Zhejiang (330000) received sh-cond v1")),
        "{:?}",
        verified.account
    );
    x.net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_flipped_byte_of_a_bundle_fails_it() -> Result<()> {
    let mut x = exchanged().await?;
    let bundle = x.net.api(0)?.export(COND).await?;
    x.net.stop_all().await?;
    // Flipping any byte of the bundle's JSON makes it fail (or not parse).
    let text = serde_json::to_string(&bundle)?;
    let bytes = text.as_bytes();
    let mut tried = 0;
    let stride = (bytes.len() / 600).max(1);
    for pos in (0..bytes.len()).step_by(stride) {
        let mut altered = bytes.to_vec();
        altered[pos] ^= 0x01;
        let Ok(s) = std::str::from_utf8(&altered) else {
            continue;
        };
        tried += 1;
        let ok = yrd_node::model::canonical::parse_strict(s)
            .ok()
            .and_then(|v| serde_json::from_value::<EvidenceBundle>(v).ok())
            .map(|b| verify_bundle(&b).is_ok())
            .unwrap_or(false);
        assert!(
            !ok,
            "byte {pos} ({:?}) altered and still verifies",
            &text[pos.saturating_sub(20)..(pos + 20).min(text.len())]
        );
    }
    assert!(tried > 300, "{tried}");
    Ok(())
}

type Mutation = Box<dyn Fn(&mut Value)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_with_any_part_altered_fails() -> Result<()> {
    let mut x = exchanged().await?;
    let bundle = x.net.api(0)?.export(COND).await?;
    x.net.stop_all().await?;
    // The JSON is altered on purpose here: parts the typed bundle would not let us change.
    let v: Value = serde_json::to_value(&bundle)?;
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "record purpose",
            Box::new(|v: &mut Value| {
                let e = v["entries"]
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|e| e["record"]["purpose"].is_string())
                    .unwrap();
                e["record"]["purpose"] = json!("统计分析");
            }),
        ),
        (
            "proof hash",
            Box::new(|v: &mut Value| {
                let e = v["entries"]
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|e| !e["proof"].as_array().unwrap().is_empty())
                    .unwrap();
                e["proof"][0] = json!("00".repeat(32));
            }),
        ),
        (
            "document signature",
            Box::new(|v: &mut Value| {
                let sig = v["documents"][0]["signature"].as_str().unwrap().to_string();
                let rest = sig.get(1..).unwrap();
                let flipped = if sig.starts_with('0') {
                    format!("1{rest}")
                } else {
                    format!("0{rest}")
                };
                v["documents"][0]["signature"] = json!(flipped);
            }),
        ),
        (
            "head root",
            Box::new(|v: &mut Value| {
                v["head"]["document"]["root"] = json!("11".repeat(32));
            }),
        ),
        (
            "grant fields",
            Box::new(|v: &mut Value| {
                let d = v["documents"]
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|d| d["type"] == "grant")
                    .unwrap();
                d["document"]["fields"] = json!(["uscc"]);
            }),
        ),
        (
            "witness consistency",
            Box::new(|v: &mut Value| {
                v["witnesses"][0]["consistency"] = json!([]);
            }),
        ),
        (
            "format",
            Box::new(|v: &mut Value| {
                v["format"] = json!("yrd-evidence/2");
            }),
        ),
    ];
    for (what, mutate) in mutations {
        let mut altered = v.clone();
        mutate(&mut altered);
        let bundle: EvidenceBundle = serde_json::from_value(altered)?;
        let err = verify_bundle(&bundle).expect_err(what);
        eprintln!("{what}: {err}");
    }
    Ok(())
}

/// Stops node 0, rewrites record `seq` of its log behind its back (a new counterparty), and
/// starts it again: a node quietly rewriting its history.
async fn rewrite_record(net: &mut TestNet, seq: u64, counterparty: &str) -> Result<()> {
    net.nodes[0].stop().await?;
    {
        let store = yrd_node::store::Store::open(&net.nodes[0].data_dir)?;
        let log = ProvenanceLog::open(
            store.db(),
            net.nodes[0].key.signing_key().clone(),
            net.nodes[0].peer_id().to_string(),
            net.nodes[0].region,
        )?;
        let mut r = log.record(seq)?.unwrap();
        r.counterparty = Some(counterparty.into());
        log.rewrite_for_test(seq, &r)?;
        log.close();
        store.flush_blocking()?;
    }
    net.nodes[0].wait_database_released().await?;
    net.nodes[0].start().await?;
    net.wait_full_mesh().await
}

/// Two nodes: Jiangsu fetched from Shanghai and witnessed its head; then Shanghai, stopped,
/// rewrote the delivery record (to someone else) and started again. Returns the net and the
/// rewritten record's seq.
async fn rewritten() -> Result<(TestNet, TempDir, u64)> {
    let mut net = TestNet::meshed(2).await?;
    let dir = tempfile::tempdir()?;
    provider(&net, dir.path(), 200).await?;
    net.api(1)?.fetch_done(&format!("310000/{OPEN}")).await?;
    // Jiangsu witnesses Shanghai's head (after the exchange, and now explicitly).
    net.nodes[0]
        .node()?
        .send_head(net.nodes[1].peer_id())
        .await?;
    let delivery = net
        .api(0)?
        .provenance(None, Some(RecordKind::DeliveryServed))
        .await?;
    let seq = delivery[0].seq;
    rewrite_record(&mut net, seq, "12D3KooWSomeoneElseEntirely").await?;
    Ok((net, dir, seq))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_rewrites_its_log_is_caught_by_its_witness() -> Result<()> {
    let (mut net, _dir, seq) = rewritten().await?;
    // Its log verifies on its own (the rewrite is self-consistent) …
    assert!(net.api(0)?.check().await?.size > seq);
    // … but the witness holding the earlier head refuses the new one and raises an alarm.
    let sent = net.nodes[0].node()?.send_head(net.nodes[1].peer_id()).await;
    assert!(sent.is_err(), "a forked head must not be cosigned");
    let js = net.api(1)?;
    let alarms = js.alarms().await?;
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0].log, net.nodes[0].peer_id().to_string());
    let recorded = js.provenance(None, Some(RecordKind::WitnessAlarm)).await?;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    net.stop_all().await
}

/// [`rewritten`], and Jiangsu's witness has raised its alarm.
async fn alarmed() -> Result<(TestNet, TempDir, u64)> {
    let (net, dir, seq) = rewritten().await?;
    let sent = net.nodes[0].node()?.send_head(net.nodes[1].peer_id()).await;
    assert!(sent.is_err(), "a forked head must not be cosigned");
    Ok((net, dir, seq))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_is_resolved_once_and_only_with_a_note() -> Result<()> {
    let (mut net, _dir, _) = alarmed().await?;
    let js = net.api(1)?;
    let sh_log = net.nodes[0].peer_id().to_string();
    let empty = js.resolve_alarms(&sh_log, "  ").await;
    assert_eq!(
        empty.as_ref().err().and_then(status),
        Some(400),
        "a resolution needs a note: {empty:?}"
    );
    let resolved = js
        .resolve_alarms(&sh_log, "上海确认：测试中改写了记录 / rewritten in a test")
        .await?;
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    let alarms = js.alarms().await?;
    assert!(alarms[0].resolved.is_some(), "{alarms:?}");
    let again = js.resolve_alarms(&sh_log, "twice").await;
    assert_eq!(
        again.as_ref().err().and_then(status),
        Some(404),
        "no open alarm is left to resolve: {again:?}"
    );
    net.stop_all().await
}

/// [`alarmed`], and Jiangsu's operator resolved the alarm: the forked branch is the baseline.
async fn resolved() -> Result<(TestNet, TempDir, u64)> {
    let (net, dir, seq) = alarmed().await?;
    let sh_log = net.nodes[0].peer_id().to_string();
    net.api(1)?
        .resolve_alarms(&sh_log, "上海确认：测试中改写了记录 / rewritten in a test")
        .await?;
    Ok((net, dir, seq))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_resolution_the_head_is_cosigned_again_and_the_step_is_kept() -> Result<()> {
    let (mut net, _dir, _) = resolved().await?;
    net.nodes[0]
        .node()?
        .send_head(net.nodes[1].peer_id())
        .await?;
    let kept = net
        .api(1)?
        .provenance(None, Some(RecordKind::AlarmResolved))
        .await?;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        kept[0].counterparty,
        Some(net.nodes[0].peer_id().to_string())
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rewrite_after_a_resolution_is_a_new_open_alarm() -> Result<()> {
    let (mut net, _dir, seq) = resolved().await?;
    net.nodes[0]
        .node()?
        .send_head(net.nodes[1].peer_id())
        .await?;
    // A resolution does not blind the witness: a rewrite against the new baseline alarms.
    rewrite_record(&mut net, seq, "12D3KooWYetAnotherRewrite").await?;
    let sent = net.nodes[0].node()?.send_head(net.nodes[1].peer_id()).await;
    assert!(sent.is_err(), "a second fork must not be cosigned");
    let alarms = net.api(1)?.alarms().await?;
    let open = alarms.iter().filter(|a| a.resolved.is_none()).count();
    assert_eq!((alarms.len(), open), (2, 1), "{alarms:?}");
    net.stop_all().await
}

#[test]
fn sigkill_during_appends_loses_no_acknowledged_record() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench-provenance"))
        .args(["burst", "--dir", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().unwrap();
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    while acked.len() < 3000 {
        let line = lines.next().expect("appender output")?;
        let mut parts = line.split_whitespace().skip(1);
        let seq: u64 = parts.next().unwrap().parse()?;
        let tag: u64 = parts.next().unwrap().parse()?;
        acked.push((seq, tag));
    }
    child.kill()?; // SIGKILL, mid-burst
    child.wait()?;
    // Whatever the appender printed before it died was acknowledged.
    for line in lines.map_while(Result::ok) {
        let mut parts = line.split_whitespace().skip(1);
        if let (Some(Ok(seq)), Some(Ok(tag))) = (
            parts.next().map(str::parse::<u64>),
            parts.next().map(str::parse::<u64>),
        ) {
            acked.push((seq, tag));
        }
    }
    let db = sled::open(dir.path())?;
    let key = yrd_node::identity::NodeKey::from_seed([7; 32]);
    let log = ProvenanceLog::open(
        &db,
        key.signing_key().clone(),
        key.peer_id().to_string(),
        yrd_node::model::region::Region::from_code(310000)?,
    )?;
    let (size, _) = log.verify_all()?;
    let max = acked.iter().map(|(s, _)| *s).max().unwrap();
    assert!(size > max, "size {size} lost acknowledged record {max}");
    for (seq, tag) in &acked {
        let r = log.record(*seq)?.expect("acknowledged record present");
        assert_eq!(r.grant, Some(format!("{tag:032x}")), "record {seq}");
    }
    eprintln!(
        "{} acknowledged records all present; log size {size} verifies",
        acked.len()
    );
    log.close();
    Ok(())
}

/// The published evidence vector verifies, and the forms of alteration that keep the typed
/// bundle intact (nulls, re-encoded hex, duplicated parties or witnesses, self-witnessing) are
/// refused as well.
#[test]
fn the_published_evidence_vector_verifies_and_loose_forms_are_refused() -> Result<()> {
    use yrd_node::model::provenance::verify_bundle_value;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/vectors/evidence-bundle.json");
    let text = std::fs::read_to_string(path)?;
    let v = yrd_node::model::canonical::parse_strict(&text)?;
    let ok = verify_bundle_value(&v).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(ok.witnesses.len() >= 2, "{:?}", ok.witnesses);
    assert!(
        ok.account
            .iter()
            .any(|l| l.contains("delivered sh-medical-settlement v1"))
    );
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "null optional member",
            Box::new(|v: &mut Value| v["entries"][0]["record"]["cause"] = Value::Null),
        ),
        (
            "missing documents list",
            Box::new(|v: &mut Value| {
                v["entries"][0]["record"]
                    .as_object_mut()
                    .unwrap()
                    .remove("documents");
            }),
        ),
        (
            "uppercase proof hex",
            Box::new(|v: &mut Value| {
                let e = v["entries"]
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|e| !e["proof"].as_array().unwrap().is_empty())
                    .unwrap();
                let h = e["proof"][0].as_str().unwrap().to_uppercase();
                e["proof"][0] = json!(h);
            }),
        ),
        (
            "party listed twice",
            Box::new(|v: &mut Value| {
                let p = v["parties"][1].clone();
                v["parties"].as_array_mut().unwrap().push(p);
            }),
        ),
        (
            "witness listed twice",
            Box::new(|v: &mut Value| {
                let w = v["witnesses"][0].clone();
                v["witnesses"].as_array_mut().unwrap().push(w);
            }),
        ),
    ];
    for (what, mutate) in cases {
        let mut altered = v.clone();
        mutate(&mut altered);
        let err = verify_bundle_value(&altered).expect_err(what);
        eprintln!("{what}: {err}");
    }
    Ok(())
}
