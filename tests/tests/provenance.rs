//! Provenance between real nodes: both sides of an exchange leave matching records, bundles from
//! either side verify offline and fail on any altered byte, a node that rewrites its log is
//! caught by its witness, the deliveries report, and crash safety under SIGKILL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use yrd_node::cli::client::ApiClient;
use yrd_node::cli::client::ClientError;
use yrd_node::model::provenance::{EvidenceBundle, verify_bundle};
use yrd_node::store::provenance::ProvenanceLog;
use yrd_tests::{TestNet, WAIT, publish_sample_standard, publish_sample_version, wait_until};

const SCHEMA: &str = "enterprise-licence";

/// Shanghai (node 0) publishes the standard, an unconditional and a conditional offer, v1 of each.
async fn provider(net: &TestNet, dir: &std::path::Path) -> Result<()> {
    let sh = net.nodes[0].client()?;
    publish_sample_standard(&sh, SCHEMA).await?;
    for (id, share) in [("sh-open", "unconditional"), ("sh-cond", "conditional")] {
        let o = json!({
            "identifier": id, "title": "营业执照", "description": "测试",
            "media_type": "application/jsonl", "resource_code": "310000-SCJG-00001",
            "share_type": share, "share_method": "file", "update_cycle": "daily",
            "schema_id": SCHEMA, "schema_version": "1.0.0", "share_conditions": "履职需要"
        });
        let _: Value = sh.post("/api/v1/catalogue/offers", &o).await?;
        publish_sample_version(&sh, dir, id, SCHEMA, 200, 3).await?;
    }
    for n in &net.nodes[1..] {
        let c = n.client()?;
        wait_until("offers reach the peer", WAIT, || async {
            let hits: Vec<Value> = c.get("/api/v1/catalogue/search?text=sh-cond").await?;
            Ok(hits.len() == 1 && hits[0]["entry"]["latest_version"] == 1)
        })
        .await?;
    }
    Ok(())
}

async fn fetch_done(c: &ApiClient, target: &str) -> Result<Value> {
    let started: Value = c.post("/api/v1/fetch", &json!({"target": target})).await?;
    let id = started["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        let t: Value = c.get(&format!("/api/v1/transfers/{id}")).await?;
        if t["status"] == "done" || t["status"] == "failed" {
            assert_eq!(t["status"], "done", "{t}");
            return Ok(t);
        }
        assert!(Instant::now() < deadline, "fetch timed out: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn kinds(c: &ApiClient, dataset: &str) -> Result<Vec<String>> {
    let list: Vec<Value> = c
        .get(&format!("/api/v1/provenance?dataset={dataset}"))
        .await?;
    Ok(list
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_leaves_matching_evidence_on_both_sides() -> Result<()> {
    let mut net = TestNet::line(3).await?;
    net.wait_full_mesh().await?;
    let dir = tempfile::tempdir()?;
    provider(&net, dir.path()).await?;
    let sh = net.nodes[0].client()?;
    let js = net.nodes[1].client()?;
    let zj = net.nodes[2].client()?;
    let zj_id = net.nodes[2].peer_id().to_string();
    let js_id = net.nodes[1].peer_id().to_string();

    // Jiangsu fetches the unconditional offer; Zhejiang goes through request and grant.
    fetch_done(&js, "310000/sh-open").await?;
    let req: Value = zj
        .post(
            "/api/v1/requests",
            &json!({"target": "310000/sh-cond", "purpose": "跨省通办企业核验",
                    "basis": "《优化营商环境条例》第三十七条", "fields": ["uscc", "legal_representative_id_number"]}),
        )
        .await?;
    let _: Value = sh
        .post(
            &format!("/api/v1/requests/{}/approve", req["id"].as_str().unwrap()),
            &json!({"masks": [{"field": "legal_representative_id_number", "rule": "keep", "first": 6, "last": 4}]}),
        )
        .await?;
    wait_until("grant arrives", WAIT, || async {
        let g: Vec<Value> = zj.get("/api/v1/grants").await?;
        Ok(!g.is_empty())
    })
    .await?;
    fetch_done(&zj, "310000/sh-cond").await?;

    // Both sides recorded their half, the provider also the receipt and its witness's cosignature.
    wait_until(
        "provider has the receipt and a cosignature",
        WAIT,
        || async {
            let k = kinds(&sh, "sh-cond").await?;
            let head: Value = sh.get("/api/v1/provenance/head").await?;
            Ok(k.contains(&"receipt-received".to_string())
                && head["cosignatures"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["document"]["witness"] == zj_id.as_str()))
        },
    )
    .await?;
    let provider_kinds = kinds(&sh, "sh-cond").await?;
    for k in [
        "dataset-published",
        "request-received",
        "grant-issued",
        "delivery-served",
        "receipt-received",
    ] {
        assert!(
            provider_kinds.contains(&k.to_string()),
            "{k}: {provider_kinds:?}"
        );
    }
    let requester_kinds = kinds(&zj, "sh-cond").await?;
    for k in ["request-sent", "grant-received", "dataset-received"] {
        assert!(
            requester_kinds.contains(&k.to_string()),
            "{k}: {requester_kinds:?}"
        );
    }
    // The same documents on both sides: the grant's digest appears in both logs.
    let grant_digest = |list: &Vec<Value>| -> Option<String> {
        list.iter()
            .filter(|r| r["kind"] == "grant-issued" || r["kind"] == "grant-received")
            .flat_map(|r| r["documents"].as_array().unwrap().clone())
            .find(|d| d["type"] == "grant")
            .map(|d| d["digest"].as_str().unwrap().to_string())
    };
    let p_list: Vec<Value> = sh.get("/api/v1/provenance?dataset=sh-cond").await?;
    let r_list: Vec<Value> = zj.get("/api/v1/provenance?dataset=sh-cond").await?;
    assert!(grant_digest(&p_list).is_some());
    assert_eq!(grant_digest(&p_list), grant_digest(&r_list));

    // The deliveries report lists exactly the deliveries made.
    let open: Vec<Value> = sh
        .get("/api/v1/provenance/deliveries?dataset=sh-open")
        .await?;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["receiver"], js_id.as_str());
    let cond: Vec<Value> = sh
        .get("/api/v1/provenance/deliveries?dataset=sh-cond")
        .await?;
    assert_eq!(cond.len(), 1, "{cond:?}");
    assert_eq!(cond[0]["receiver"], zj_id.as_str());
    assert_eq!(cond[0]["purpose"], "跨省通办企业核验");
    assert!(
        cond[0]["fields"]
            .as_str()
            .unwrap()
            .contains("legal_representative_id_number (keep first 6 last 4)"),
        "{cond:?}"
    );
    assert!(cond[0]["receipt_at"].is_string(), "{cond:?}");

    // A bundle from each side verifies offline.
    let p_bundle: EvidenceBundle = sh
        .post("/api/v1/provenance/export", &json!({"dataset": "sh-cond"}))
        .await?;
    let verified = verify_bundle(&p_bundle).map_err(|e| anyhow::anyhow!("{e}"))?;
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
    let r_bundle: EvidenceBundle = zj
        .post("/api/v1/provenance/export", &json!({"dataset": "sh-cond"}))
        .await?;
    let r_verified = verify_bundle(&r_bundle).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(
        r_verified
            .account
            .iter()
            .any(|l| l.contains("Zhejiang (330000) received sh-cond v1")),
        "{:?}",
        r_verified.account
    );

    // Flipping any byte of the bundle's JSON makes it fail (or not parse).
    let text = serde_json::to_string(&p_bundle)?;
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
    // Targeted: a record's purpose, a proof hash, a document signature, the head's root.
    let mut v: Value = serde_json::to_value(&p_bundle)?;
    type Mutation = Box<dyn Fn(&mut Value)>;
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
    ];
    for (what, mutate) in mutations {
        let mut altered = v.clone();
        mutate(&mut altered);
        let bundle: EvidenceBundle = serde_json::from_value(altered)?;
        let err = verify_bundle(&bundle).expect_err(what);
        eprintln!("{what}: {err}");
    }
    v["format"] = json!("yrd-evidence/2");
    assert!(verify_bundle(&serde_json::from_value(v)?).is_err());
    net.stop_all().await
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
    net.nodes[0].start().await?;
    net.wait_full_mesh().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_rewrites_its_log_is_caught_by_its_witness() -> Result<()> {
    let mut net = TestNet::line(2).await?;
    net.wait_full_mesh().await?;
    let dir = tempfile::tempdir()?;
    provider(&net, dir.path()).await?;
    let js = net.nodes[1].client()?;
    let js_peer = net.nodes[1].peer_id();
    fetch_done(&js, "310000/sh-open").await?;
    // Jiangsu witnesses Shanghai's head (after the exchange, and now explicitly).
    net.nodes[0].node()?.send_head(js_peer).await?;
    let sh = net.nodes[0].client()?;
    let delivery: Vec<Value> = sh.get("/api/v1/provenance?kind=delivery-served").await?;
    let seq = delivery[0]["seq"].as_u64().unwrap();

    // Shanghai, stopped, rewrites the delivery record behind its own back: to someone else.
    rewrite_record(&mut net, seq, "12D3KooWSomeoneElseEntirely").await?;
    // Its log verifies on its own (the rewrite is self-consistent) …
    let check: Value = net.nodes[0]
        .client()?
        .post("/api/v1/provenance/check", &json!({}))
        .await?;
    assert!(check["size"].as_u64().unwrap() > seq);
    // … but the witness holding the earlier head refuses the new one and raises an alarm.
    let sent = net.nodes[0].node()?.send_head(js_peer).await;
    assert!(sent.is_err(), "a forked head must not be cosigned");
    let alarms: Vec<Value> = js.get("/api/v1/provenance/alarms").await?;
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(
        alarms[0]["log"],
        net.nodes[0].peer_id().to_string().as_str()
    );
    let recorded: Vec<Value> = js.get("/api/v1/provenance?kind=witness-alarm").await?;
    assert_eq!(recorded.len(), 1);

    // Jiangsu's operator finds out what happened and resolves the alarm with a note: the forked
    // branch becomes the baseline, so Shanghai's head is cosigned again, and the step is kept.
    let sh_log = net.nodes[0].peer_id().to_string();
    let empty = js
        .post::<_, Value>(
            "/api/v1/provenance/alarms/resolve",
            &json!({"log": sh_log, "note": "  "}),
        )
        .await;
    assert!(
        matches!(empty, Err(ClientError::Api { status: 400, .. })),
        "a resolution needs a note: {empty:?}"
    );
    let resolved: Vec<Value> = js
        .post(
            "/api/v1/provenance/alarms/resolve",
            &json!({"log": sh_log, "note": "上海确认：测试中改写了记录 / rewritten in a test"}),
        )
        .await?;
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    let alarms: Vec<Value> = js.get("/api/v1/provenance/alarms").await?;
    assert!(alarms[0]["resolved"]["note"].is_string(), "{alarms:?}");
    let again = js
        .post::<_, Value>(
            "/api/v1/provenance/alarms/resolve",
            &json!({"log": sh_log, "note": "twice"}),
        )
        .await;
    assert!(
        matches!(again, Err(ClientError::Api { status: 404, .. })),
        "no open alarm is left to resolve: {again:?}"
    );
    net.nodes[0].node()?.send_head(js_peer).await?;
    let kept: Vec<Value> = js.get("/api/v1/provenance?kind=alarm-resolved").await?;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["counterparty"], sh_log.as_str());

    // A resolution does not blind the witness: a second rewrite, against the new baseline, is
    // a new open alarm.
    rewrite_record(&mut net, seq, "12D3KooWYetAnotherRewrite").await?;
    let sent = net.nodes[0].node()?.send_head(js_peer).await;
    assert!(sent.is_err(), "a second fork must not be cosigned");
    let alarms: Vec<Value> = js.get("/api/v1/provenance/alarms").await?;
    let open: Vec<&Value> = alarms.iter().filter(|a| a["resolved"].is_null()).collect();
    assert_eq!((alarms.len(), open.len()), (2, 1), "{alarms:?}");
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
