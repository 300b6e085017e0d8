//! Dataset exchange between real nodes: unconditional fetch, conditional request → grant →
//! masked delivery, denial, expired / revoked / someone else's grant, not shared, tampered chunks,
//! forged manifests, resume after a provider restart, and subscriptions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use yrd_node::cli::client::ApiClient;
use yrd_node::node::transfer::Fault;
use yrd_tests::{TestNet, WAIT, wait_until};

const SCHEMA: &str = "enterprise-licence";

fn write_jsonl(path: &Path, records: &[Value]) -> Result<()> {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text)?;
    Ok(())
}

/// Shanghai (node 0) publishes the standard, four offers (unconditional, conditional, not
/// shared, and one withheld by its withheld list) and version 1 of the shared ones; returns
/// the records of the unconditional and conditional files.
async fn provider(net: &TestNet, dir: &Path, records: usize) -> Result<(PathBuf, PathBuf)> {
    let sh = net.nodes[0].client()?;
    let schema: Value = serde_json::from_str(yrd_node::samples::schema_json(SCHEMA).unwrap())?;
    let _: Value = sh
        .post(
            "/api/v1/schemas",
            &json!({"id": SCHEMA, "version": "1.0.0", "schema": schema}),
        )
        .await?;
    let offer = |id: &str, share: &str, conditions: Option<&str>| {
        let mut o = json!({
            "identifier": id, "title": format!("营业执照 {id}"), "description": "测试",
            "media_type": "application/jsonl", "resource_code": "310000-SCJG-00001",
            "share_type": share, "share_method": "file", "update_cycle": "daily",
            "schema_id": SCHEMA, "schema_version": "1.0.0"
        });
        if let Some(c) = conditions {
            o["share_conditions"] = json!(c);
        }
        o
    };
    for o in [
        offer("sh-open", "unconditional", None),
        offer("sh-cond", "conditional", Some("履职需要，经审批")),
        offer("sh-secret", "not-shared", Some("涉及国家秘密")),
        offer("sh-withheld", "unconditional", None),
    ] {
        let _: Value = sh.post("/api/v1/catalogue/offers", &o).await?;
    }
    let _: Value = sh
        .post(
            "/api/v1/catalogue/withheld",
            &json!({"identifier": "sh-withheld", "title": "暂停共享的执照",
                    "reason": "数据治理整改中", "legal_basis": "《公共数据管理办法》第十条"}),
        )
        .await?;
    let open = dir.join("open.jsonl");
    write_jsonl(&open, &yrd_node::samples::generate(SCHEMA, records, 1)?)?;
    let cond = dir.join("cond.jsonl");
    write_jsonl(&cond, &yrd_node::samples::generate(SCHEMA, 300, 2)?)?;
    for (id, file) in [
        ("sh-open", &open),
        ("sh-cond", &cond),
        ("sh-withheld", &open),
    ] {
        let _: Value = sh
            .post(
                &format!("/api/v1/datasets/{id}/versions"),
                &json!({"file": file, "format": "jsonl"}),
            )
            .await?;
    }
    for n in &net.nodes[1..] {
        let c = n.client()?;
        wait_until("offers with versions reach the peer", WAIT, || async {
            let hits: Vec<Value> = c.get("/api/v1/catalogue/search?text=sh-cond").await?;
            Ok(hits.len() == 1 && hits[0]["entry"]["latest_version"] == 1)
        })
        .await?;
    }
    Ok((open, cond))
}

/// Polls transfer `id` until `done` holds for it; returns it.
async fn poll(c: &ApiClient, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let t: Value = c.get(&format!("/api/v1/transfers/{id}")).await?;
        if done(&t) {
            return Ok(t);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out waiting until {what}: {t}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn finished(t: &Value) -> bool {
    t["status"] == "done" || t["status"] == "failed"
}

/// Starts a fetch and waits for it to finish; returns the final transfer.
async fn fetch(c: &ApiClient, body: Value) -> Result<Value> {
    let started: Value = c.post("/api/v1/fetch", &body).await?;
    poll(
        c,
        started["id"].as_str().unwrap(),
        "fetch finishes",
        finished,
    )
    .await
}

async fn download(c: &ApiClient, transfer: &Value, dir: &Path) -> Result<Vec<u8>> {
    let out = dir.join(format!("{}.out", transfer["id"].as_str().unwrap()));
    c.download(
        &format!(
            "/api/v1/transfers/{}/content",
            transfer["id"].as_str().unwrap()
        ),
        &out,
    )
    .await?;
    Ok(std::fs::read(out)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconditional_fetch_equals_the_publication_and_refusals_name_their_reason() -> Result<()> {
    let mut net = TestNet::line(4).await?;
    net.wait_full_mesh().await?;
    let dir = tempfile::tempdir()?;
    let (open, _) = provider(&net, dir.path(), 500).await?;
    let js = net.nodes[1].client()?;

    let done = fetch(&js, json!({"target": "310000/sh-open"})).await?;
    assert_eq!(done["status"], "done", "{done}");
    let published = blake3::hash(&std::fs::read(&open)?).to_hex().to_string();
    assert_eq!(done["digest"], published.as_str());
    assert_eq!(done["version"], 1);
    assert_eq!(done["derived"], false);
    assert_eq!(
        download(&js, &done, dir.path()).await?,
        std::fs::read(&open)?
    );
    // The receiver stored the publisher's manifest; the provider recorded the signed receipt.
    assert!(net.nodes[1].node()?.blobs().contains(&published));
    let receiver = net.nodes[1].peer_id().to_string();
    let sh = net.nodes[0].client()?;
    wait_until("provider records the receipt", WAIT, || async {
        let receipts: Vec<Value> = sh.get("/api/v1/receipts").await?;
        Ok(receipts.iter().any(|r| {
            r["document"]["receiver"] == receiver.as_str()
                && r["document"]["data_digest"] == published.as_str()
        }))
    })
    .await?;
    // The provider shows the transfer it served.
    let served: Vec<Value> = sh.get("/api/v1/transfers").await?;
    assert!(served.iter().any(|t| t["direction"] == "out"
        && t["peer"] == receiver.as_str()
        && t["status"] == "done"
        && t["bytes_done"] == t["bytes_total"]));

    // Not shared in the catalogue: refused before anything moves, with the stated reason.
    let err = js
        .post::<_, Value>("/api/v1/fetch", &json!({"target": "310000/sh-secret"}))
        .await
        .expect_err("not shared");
    assert!(err.to_string().contains("涉及国家秘密"), "{err}");
    // Withheld by the provider's list: the provider refuses with the reason and legal basis.
    let refused = fetch(&js, json!({"target": "Shanghai/sh-withheld"})).await?;
    assert_eq!(refused["status"], "failed");
    let why = refused["error"].as_str().unwrap();
    assert!(
        why.contains("not-shared") && why.contains("数据治理整改中") && why.contains("第十条"),
        "{why}"
    );
    // A conditional offer without a grant is refused at once, saying how to ask.
    let err = js
        .post::<_, Value>("/api/v1/fetch", &json!({"target": "310000/sh-cond"}))
        .await
        .expect_err("needs a grant");
    assert!(err.to_string().contains("yrd request"), "{err}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_access_delivers_exactly_the_granted_fields_masked_as_granted() -> Result<()> {
    let mut net = TestNet::line(4).await?;
    net.wait_full_mesh().await?;
    let dir = tempfile::tempdir()?;
    let (_, cond) = provider(&net, dir.path(), 50).await?;
    let sh = net.nodes[0].client()?;
    let zj = net.nodes[2].client()?;
    let ah = net.nodes[3].client()?;

    // Zhejiang asks for four fields; the request waits on Shanghai.
    let fields = [
        "uscc",
        "enterprise_name",
        "legal_representative",
        "legal_representative_id_number",
    ];
    let req: Value = zj
        .post(
            "/api/v1/requests",
            &json!({"target": "310000/sh-cond", "purpose": "跨省通办企业核验",
                    "basis": "《优化营商环境条例》第三十七条", "fields": fields}),
        )
        .await?;
    assert_eq!(req["status"], "pending");
    let id = req["id"].as_str().unwrap().to_string();
    let pending: Vec<Value> = sh
        .get("/api/v1/requests?direction=in&status=pending")
        .await?;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["id"], id.as_str());

    // Approve with masking; the grant reaches Zhejiang, masks included.
    let grant: Value = sh
        .post(
            &format!("/api/v1/requests/{id}/approve"),
            &json!({"masks": [
                {"field": "legal_representative_id_number", "rule": "keep", "first": 6, "last": 4},
                {"field": "legal_representative", "rule": "hash"}
            ], "expires": "30d"}),
        )
        .await?;
    let grant_id = grant["document"]["id"].as_str().unwrap().to_string();
    assert_eq!(grant["document"]["fields"], json!(fields));
    wait_until("grant reaches the requester", WAIT, || async {
        let grants: Vec<Value> = zj.get("/api/v1/grants").await?;
        Ok(grants
            .iter()
            .any(|g| g["id"] == grant_id.as_str() && g["state"] == "valid"))
    })
    .await?;
    let held: Value = zj.get(&format!("/api/v1/grants/{grant_id}")).await?;
    assert_eq!(held["grant"]["document"]["masks"][0]["rule"], "keep");

    // The fetch gets exactly the granted fields, masked as granted.
    let done = fetch(&zj, json!({"target": "310000/sh-cond"})).await?;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["derived"], true);
    assert_eq!(done["grant"], grant_id.as_str());
    let bytes = download(&zj, &done, dir.path()).await?;
    let delivered: Vec<Value> = String::from_utf8(bytes)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let originals: Vec<Value> = std::fs::read_to_string(&cond)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(delivered.len(), originals.len());
    for (d, o) in delivered.iter().zip(&originals) {
        let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, fields);
        assert_eq!(d["uscc"], o["uscc"]);
        assert_eq!(d["enterprise_name"], o["enterprise_name"]);
        let id_o = o["legal_representative_id_number"].as_str().unwrap();
        let id_d = d["legal_representative_id_number"].as_str().unwrap();
        assert_eq!(id_d.chars().count(), id_o.chars().count());
        assert_eq!(&id_d[..6], &id_o[..6]);
        assert_eq!(&id_d[id_d.len() - 4..], &id_o[id_o.len() - 4..]);
        assert!(id_d[6..id_d.len() - 4].chars().all(|c| c == '*'), "{id_d}");
        let name = d["legal_representative"].as_str().unwrap();
        assert_ne!(name, o["legal_representative"].as_str().unwrap());
        assert!(name.len() > 16, "hashed: {name}");
    }
    // The derived manifest names the original and the grant; a second fetch reuses it.
    let manifest = net.nodes[2]
        .node()?
        .manifests(Some(&net.nodes[0].peer_id().to_string()), "sh-cond")?;
    let derivation = manifest[0].document.derived_from.clone().unwrap();
    assert_eq!(derivation.grant_id, grant_id);
    assert_eq!(
        derivation.original_digest,
        blake3::hash(&std::fs::read(&cond)?).to_hex().to_string()
    );
    let again = fetch(&zj, json!({"target": "310000/sh-cond", "grant": grant_id})).await?;
    assert_eq!(
        again["digest"], done["digest"],
        "derived once per grant and version"
    );

    // Someone else's grant is refused.
    let stolen = fetch(&ah, json!({"target": "310000/sh-cond", "grant": grant_id})).await?;
    assert_eq!(stolen["status"], "failed");
    assert!(
        stolen["error"].as_str().unwrap().contains("another node"),
        "{stolen}"
    );

    // Deny: Anhui's request is refused with the reason, delivered to Anhui.
    let req: Value = ah
        .post(
            "/api/v1/requests",
            &json!({"target": "310000/sh-cond", "purpose": "统计分析", "basis": "无"}),
        )
        .await?;
    let ah_id = req["id"].as_str().unwrap().to_string();
    let _: Value = sh
        .post(
            &format!("/api/v1/requests/{ah_id}/deny"),
            &json!({"reason": "用途与履职事项不符"}),
        )
        .await?;
    wait_until("denial reaches the requester", WAIT, || async {
        let r: Value = ah.get(&format!("/api/v1/requests/{ah_id}")).await?;
        Ok(r["status"] == "denied" && r["denial"]["document"]["reason"] == "用途与履职事项不符")
    })
    .await?;

    // Revoked: the grant stops working, and the grantee is told.
    let _: Value = sh
        .post(
            &format!("/api/v1/grants/{grant_id}/revoke"),
            &json!({"reason": "项目结束"}),
        )
        .await?;
    wait_until("revocation reaches the grantee", WAIT, || async {
        let g: Value = zj.get(&format!("/api/v1/grants/{grant_id}")).await?;
        Ok(g["state"] == "revoked")
    })
    .await?;
    let revoked = fetch(&zj, json!({"target": "310000/sh-cond", "grant": grant_id})).await?;
    assert_eq!(revoked["status"], "failed");
    assert!(
        revoked["error"].as_str().unwrap().contains("revoked"),
        "{revoked}"
    );

    // Expired: a fresh grant whose time has passed is refused on fetch.
    let req: Value = zj
        .post(
            "/api/v1/requests",
            &json!({"target": "310000/sh-cond", "purpose": "跨省通办企业核验", "basis": "同上"}),
        )
        .await?;
    let g2: Value = sh
        .post(
            &format!("/api/v1/requests/{}/approve", req["id"].as_str().unwrap()),
            &json!({}),
        )
        .await?;
    let g2 = g2["document"]["id"].as_str().unwrap().to_string();
    net.nodes[0].node()?.expire_grant_for_test(&g2).await?;
    wait_until("second grant reaches the requester", WAIT, || async {
        let g: Result<Value, _> = zj.get(&format!("/api/v1/grants/{g2}")).await;
        Ok(g.is_ok())
    })
    .await?;
    let expired = fetch(&zj, json!({"target": "310000/sh-cond", "grant": g2})).await?;
    assert_eq!(expired["status"], "failed");
    assert!(
        expired["error"].as_str().unwrap().contains("expired"),
        "{expired}"
    );

    // Auto-approval by config: Jiangsu's request is granted at once by a rule.
    net.nodes[0].edit_config(|c| {
        c.exchange.auto_approve = vec![yrd_node::config::AutoRule {
            name: "jiangsu-verification".into(),
            decision: yrd_node::config::AutoDecision::Approve,
            datasets: vec!["sh-cond".into()],
            regions: vec!["320000".parse().unwrap()],
            purposes: vec!["核验".into()],
            fields: vec!["uscc".into(), "status".into()],
            masks: vec![],
            expires_days: Some(7),
            reason: None,
        }];
    })?;
    net.nodes[0].restart().await?;
    let js = net.nodes[1].client()?;
    let deadline = Instant::now() + WAIT;
    let auto: Value = loop {
        let sent = js
            .post::<_, Value>(
                "/api/v1/requests",
                &json!({"target": "310000/sh-cond", "purpose": "企业资质核验", "basis": "条例"}),
            )
            .await;
        match sent {
            Ok(v) => break v,
            // Reconnecting after the restart.
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying the request: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    assert_eq!(auto["status"], "granted", "{auto}");
    assert_eq!(
        auto["grant"]["document"]["decided_by"],
        "auto:jiangsu-verification"
    );
    assert_eq!(
        auto["grant"]["document"]["fields"],
        json!(["uscc", "status"])
    );
    let done = fetch(&js, json!({"target": "310000/sh-cond"})).await?;
    assert_eq!(done["status"], "done", "{done}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_chunks_are_refetched_and_forged_manifests_refused() -> Result<()> {
    let mut net = TestNet::line(4).await?;
    net.wait_full_mesh().await?;
    let dir = tempfile::tempdir()?;
    // About 4 MiB: several 1 MiB chunks.
    let (open, _) = provider(&net, dir.path(), 6000).await?;
    let published = blake3::hash(&std::fs::read(&open)?).to_hex().to_string();
    let provider = net.nodes[0].node()?.clone();

    provider.inject_fault(Fault::CorruptChunk { index: 1, times: 2 });
    let js = net.nodes[1].client()?;
    let done = fetch(&js, json!({"target": "310000/sh-open"})).await?;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["digest"], published.as_str());
    assert_eq!(done["refetched_chunks"], 2, "{done}");
    assert_eq!(
        download(&js, &done, dir.path()).await?,
        std::fs::read(&open)?
    );

    // A provider that keeps sending a bad chunk is given up on; nothing of it is stored.
    provider.inject_fault(Fault::CorruptChunk {
        index: 0,
        times: 100,
    });
    let zj = net.nodes[2].client()?;
    let failed = fetch(&zj, json!({"target": "310000/sh-open"})).await?;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("corrupted"),
        "{failed}"
    );
    assert!(!net.nodes[2].node()?.blobs().contains(&published));
    assert!(net.nodes[2].node()?.blobs().partials()?.is_empty());
    provider.inject_fault(Fault::CorruptChunk { index: 0, times: 0 });

    // A manifest signed by anyone but the publisher is refused before a chunk moves.
    provider.inject_fault(Fault::ForgeManifest);
    let ah = net.nodes[3].client()?;
    let forged = fetch(&ah, json!({"target": "310000/sh-open"})).await?;
    assert_eq!(forged["status"], "failed");
    assert!(
        forged["error"]
            .as_str()
            .unwrap()
            .contains("forged manifest"),
        "{forged}"
    );
    assert_eq!(forged["bytes_done"], 0);
    assert!(!net.nodes[3].node()?.blobs().contains(&published));
    drop(provider); // a held handle keeps the node's database open past its shutdown
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_resumes_after_the_provider_restarts() -> Result<()> {
    let mut net = TestNet::line(2).await?;
    net.wait_full_mesh().await?;
    let dir = tempfile::tempdir()?;
    let (open, _) = provider(&net, dir.path(), 6000).await?;
    let size = std::fs::metadata(&open)?.len();
    let published = blake3::hash(&std::fs::read(&open)?).to_hex().to_string();
    net.nodes[0]
        .node()?
        .inject_fault(Fault::SlowChunks(Duration::from_millis(400)));
    let js = net.nodes[1].client()?;
    let started: Value = js
        .post("/api/v1/fetch", &json!({"target": "310000/sh-open"}))
        .await?;
    let id = started["id"].as_str().unwrap().to_string();
    let t = poll(&js, &id, "some chunks arrive", |t| {
        t["bytes_done"].as_u64().unwrap_or(0) > 0
    })
    .await?;
    assert!(t["bytes_done"].as_u64().unwrap() < size);
    // Kill the provider mid-transfer; the fetch waits and retries.
    net.nodes[0].stop().await?;
    poll(&js, &id, "fetch waits for the provider", |t| {
        t["status"] == "waiting"
    })
    .await?;
    let kept: Value = js.get(&format!("/api/v1/transfers/{id}")).await?;
    let kept = kept["bytes_done"].as_u64().unwrap();
    assert!(kept > 0 && kept < size, "{kept} of {size}");
    // Restarted (without the slow fault), the provider serves only the missing chunks.
    net.nodes[0].start().await?;
    let done = poll(&js, &id, "fetch completes after the restart", finished).await?;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["digest"], published.as_str());
    assert!(done["attempts"].as_u64().unwrap() >= 2);
    let served: Vec<Value> = net.nodes[0].client()?.get("/api/v1/transfers").await?;
    let resumed = served
        .iter()
        .find(|t| t["direction"] == "out" && t["status"] == "done")
        .expect("the resumed session");
    assert_eq!(
        resumed["bytes_done"].as_u64().unwrap(),
        size - kept,
        "only the missing chunks were sent again"
    );
    assert_eq!(
        download(&js, &done, dir.path()).await?,
        std::fs::read(&open)?
    );

    // The receiver restarts mid-transfer: the fetch resumes by itself from its database.
    let v2 = dir.path().join("v2.jsonl");
    write_jsonl(&v2, &yrd_node::samples::generate(SCHEMA, 6000, 5)?)?;
    let _: Value = net.nodes[0]
        .client()?
        .post(
            "/api/v1/datasets/sh-open/versions",
            &json!({"file": v2, "format": "jsonl"}),
        )
        .await?;
    net.nodes[0]
        .node()?
        .inject_fault(Fault::SlowChunks(Duration::from_millis(300)));
    let started: Value = js
        .post(
            "/api/v1/fetch",
            &json!({"target": "310000/sh-open", "version": 2}),
        )
        .await?;
    let id = started["id"].as_str().unwrap().to_string();
    poll(&js, &id, "some chunks of v2 arrive", |t| {
        t["bytes_done"].as_u64().unwrap_or(0) > 0
    })
    .await?;
    net.nodes[1].restart().await?;
    let js = net.nodes[1].client()?;
    let done = poll(
        &js,
        &id,
        "v2 completes after the receiver restarts",
        finished,
    )
    .await?;
    assert_eq!(done["status"], "done", "{done}");
    assert!(done["attempts"].as_u64().unwrap() >= 2, "{done}");
    assert_eq!(
        done["digest"],
        blake3::hash(&std::fs::read(&v2)?)
            .to_hex()
            .to_string()
            .as_str()
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_fetches_each_new_version() -> Result<()> {
    let mut net = TestNet::line(4).await?;
    net.wait_full_mesh().await?;
    let dir = tempfile::tempdir()?;
    provider(&net, dir.path(), 100).await?;
    let ah = net.nodes[3].client()?;
    let sub: Value = ah
        .post(
            "/api/v1/subscriptions",
            &json!({"target": "310000/sh-open"}),
        )
        .await?;
    assert_eq!(sub["dataset"], "sh-open");
    wait_until("the current version is fetched", WAIT, || async {
        let subs: Vec<Value> = ah.get("/api/v1/subscriptions").await?;
        Ok(subs[0]["fetched_version"] == 1)
    })
    .await?;
    // Shanghai publishes version 2; Anhui has it shortly after, without being asked.
    let v2 = dir.path().join("v2.jsonl");
    write_jsonl(&v2, &yrd_node::samples::generate(SCHEMA, 120, 9)?)?;
    let sh = net.nodes[0].client()?;
    let published = Instant::now();
    let _: Value = sh
        .post(
            "/api/v1/datasets/sh-open/versions",
            &json!({"file": v2, "format": "jsonl"}),
        )
        .await?;
    wait_until("version 2 arrives by subscription", WAIT, || async {
        let subs: Vec<Value> = ah.get("/api/v1/subscriptions").await?;
        Ok(subs[0]["fetched_version"] == 2)
    })
    .await?;
    eprintln!(
        "subscription delivered version 2 {} ms after publication",
        published.elapsed().as_millis()
    );
    let digest = blake3::hash(&std::fs::read(&v2)?).to_hex().to_string();
    assert!(net.nodes[3].node()?.blobs().contains(&digest));
    let _: Value = ah
        .delete("/api/v1/subscriptions?target=310000/sh-open")
        .await?;
    let subs: Vec<Value> = ah.get("/api/v1/subscriptions").await?;
    assert!(subs.is_empty());
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_peer_limits_and_bad_frames_are_refused_with_a_reason() -> Result<()> {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let mut net = TestNet::line(2).await?;
    net.nodes[0].edit_config(|c| {
        c.exchange.max_transfers_per_peer = 1;
        c.exchange.max_pending_requests_per_peer = 1;
    })?;
    net.nodes[0].restart().await?;
    net.wait_full_mesh().await?;
    let dir = tempfile::tempdir()?;
    provider(&net, dir.path(), 3000).await?;
    let js = net.nodes[1].client()?;

    // One transfer at a time from this peer: the second waits as "busy", then completes.
    net.nodes[0]
        .node()?
        .inject_fault(Fault::SlowChunks(Duration::from_millis(300)));
    let first: Value = js
        .post("/api/v1/fetch", &json!({"target": "310000/sh-open"}))
        .await?;
    poll(
        &js,
        first["id"].as_str().unwrap(),
        "first fetch runs",
        |t| t["status"] == "running",
    )
    .await?;
    let second: Value = js
        .post(
            "/api/v1/fetch",
            &json!({"target": "310000/sh-open", "version": 1, "grant": null}),
        )
        .await?;
    assert_eq!(
        second["id"], first["id"],
        "one fetch of a version at a time"
    );
    let req: Value = js
        .post(
            "/api/v1/requests",
            &json!({"target": "310000/sh-cond", "purpose": "核验", "basis": "条例"}),
        )
        .await?;
    assert_eq!(req["status"], "pending");
    let err = js
        .post::<_, Value>(
            "/api/v1/requests",
            &json!({"target": "310000/sh-cond", "purpose": "核验", "basis": "条例"}),
        )
        .await
        .expect_err("over the pending limit");
    assert!(err.to_string().contains("limit 1"), "{err}");
    // A second concurrent stream from the same peer is refused as busy, with the reason.
    let provider_peer = net.nodes[0].peer_id();
    let handle = net.nodes[1].node()?.net().clone();
    let mut stream = handle
        .open_stream(
            provider_peer,
            yrd_node::model::transfer::FETCH_PROTOCOL,
            Duration::from_secs(5),
        )
        .await?;
    let open = serde_json::to_vec(&json!({"dataset": "sh-open"}))?;
    stream.write_all(&(open.len() as u32).to_be_bytes()).await?;
    stream.write_all(&open).await?;
    stream.flush().await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    let reply: Value = serde_json::from_slice(&reply[4..])?;
    assert_eq!(reply["kind"], "refused");
    assert_eq!(reply["code"], "busy");
    let done = poll(
        &js,
        first["id"].as_str().unwrap(),
        "first fetch ends",
        finished,
    )
    .await?;
    assert_eq!(done["status"], "done");

    // An oversized first frame is refused before anything is allocated, and named.
    let mut stream = handle
        .open_stream(
            provider_peer,
            yrd_node::model::transfer::FETCH_PROTOCOL,
            Duration::from_secs(5),
        )
        .await?;
    stream.write_all(&u32::MAX.to_be_bytes()).await?;
    stream.flush().await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    let reply: Value = serde_json::from_slice(&reply[4..])?;
    assert_eq!(reply["code"], "bad-request");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit"),
        "{reply}"
    );
    // The provider still serves.
    let _: Value = net.nodes[0].client()?.get("/api/v1/health").await?;
    net.stop_all().await
}
