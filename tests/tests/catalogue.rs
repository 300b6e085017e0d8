//! Catalogue and schema-registry tests on real in-process networks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use yrd_node::cli::client::ClientError;
use yrd_node::identity::NodeKey;
use yrd_node::model::catalogue::Catalogue;
use yrd_node::model::signed::Signed;
use yrd_node::node::NodeError;
use yrd_tests::{TestNet, TestNode, WAIT, wait_until};

fn standard(id: &str) -> Value {
    let text = yrd_node::samples::schema_json(id).expect("sample standard");
    serde_json::from_str(text).expect("json")
}

fn offer(id: &str, std: &str, share: &str) -> Value {
    let mut v = json!({
        "identifier": id, "title": format!("{id} 测试数据"), "description": "测试用共享数据",
        "keyword": ["测试"], "media_type": "application/jsonl", "resource_code": "310000-TEST-00001",
        "share_type": share, "share_method": "file", "update_cycle": "daily",
        "schema_id": std, "schema_version": "1.0.0"
    });
    if share != "unconditional" {
        v["share_conditions"] = json!("仅限履职使用");
    }
    v
}

async fn publish(
    node: &TestNode,
    id: &str,
    version: &str,
    schema: Value,
) -> Result<Value, ClientError> {
    node.client()
        .map_err(|e| ClientError::Decode(e.to_string()))?
        .post(
            "/api/v1/schemas",
            &json!({"id": id, "version": version, "schema": schema}),
        )
        .await
}

async fn wait_schema(net: &TestNet, id: &str, version: &str) -> Result<()> {
    wait_until(&format!("{id}@{version} everywhere"), WAIT, || async {
        for n in &net.nodes {
            if n.node()?.schema_doc(id, Some(version)).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_published_on_one_node_is_usable_on_all_and_offers_are_found_everywhere()
-> Result<()> {
    let mut net = TestNet::line(4).await?;
    net.wait_full_mesh().await?;
    publish(
        &net.nodes[0],
        "enterprise-licence",
        "1.0.0",
        standard("enterprise-licence"),
    )
    .await?;
    wait_schema(&net, "enterprise-licence", "1.0.0").await?;

    // Anhui (the far end of the line) can offer data under Shanghai's standard...
    let added: Value = net.nodes[3]
        .client()?
        .post(
            "/api/v1/catalogue/offers",
            &offer("ah-licences", "enterprise-licence", "unconditional"),
        )
        .await?;
    assert_eq!(added["conforms_to"]["id"], "enterprise-licence");
    assert!(
        added["information_items"]
            .as_array()
            .is_some_and(|a| a.len() >= 10)
    );
    // ...and an offer added on Shanghai is found by a search on Anhui.
    let _: Value = net.nodes[0]
        .client()?
        .post(
            "/api/v1/catalogue/offers",
            &offer("sh-licences", "enterprise-licence", "conditional"),
        )
        .await?;
    wait_until("Shanghai's offer visible on Anhui", WAIT, || async {
        let hits: Vec<Value> = net.nodes[3]
            .client()?
            .get("/api/v1/catalogue/search?text=sh-licences")
            .await?;
        Ok(hits.len() == 1 && hits[0]["region"] == "310000")
    })
    .await?;
    let by_region: Vec<Value> = net.nodes[3]
        .client()?
        .get("/api/v1/catalogue/search?region=310000&share_type=conditional")
        .await?;
    assert_eq!(by_region.len(), 1);
    let by_schema: Vec<Value> = net.nodes[1]
        .client()?
        .get("/api/v1/catalogue/search?schema=enterprise-licence")
        .await?;
    wait_until("both offers visible on Jiangsu", WAIT, || async {
        let hits: Vec<Value> = net.nodes[1]
            .client()?
            .get("/api/v1/catalogue/search?schema=enterprise-licence")
            .await?;
        Ok(hits.len() == 2)
    })
    .await?;
    assert!(by_schema.len() <= 2);
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_node_converges_after_restart_without_a_new_publish() -> Result<()> {
    let mut net = TestNet::line(3).await?;
    net.wait_full_mesh().await?;
    publish(
        &net.nodes[0],
        "enterprise-licence",
        "1.0.0",
        standard("enterprise-licence"),
    )
    .await?;
    wait_schema(&net, "enterprise-licence", "1.0.0").await?;
    net.nodes[2].stop().await?;
    for i in 0..3 {
        let _: Value = net.nodes[0]
            .client()?
            .post(
                "/api/v1/catalogue/offers",
                &offer(&format!("offer-{i}"), "enterprise-licence", "unconditional"),
            )
            .await?;
    }
    let latest = net.nodes[0]
        .node()?
        .own_catalogue()?
        .map(|c| c.document.sequence)
        .unwrap_or(0);
    net.nodes[2].start().await?;
    let shanghai = net.nodes[0].peer_id();
    wait_until(
        "node 2 to catch up with Shanghai's catalogue",
        WAIT,
        || async {
            let cats = net.nodes[2].node()?.network_catalogues();
            Ok(cats.iter().any(|c| {
                c.document.publisher == shanghai.to_string() && c.document.sequence == latest
            }))
        },
    )
    .await?;
    assert_eq!(
        net.nodes[0]
            .node()?
            .own_catalogue()?
            .map(|c| c.document.sequence),
        Some(latest),
        "no new publish"
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_replayed_and_non_member_snapshots_are_refused() -> Result<()> {
    let mut net = TestNet::line(2).await?;
    net.wait_full_mesh().await?;
    publish(
        &net.nodes[0],
        "enterprise-licence",
        "1.0.0",
        standard("enterprise-licence"),
    )
    .await?;
    wait_schema(&net, "enterprise-licence", "1.0.0").await?;
    let shanghai = net.nodes[0].peer_id();
    let held_by_1 = |net: &TestNet| -> Result<Option<Signed<Catalogue>>> {
        Ok(net.nodes[1]
            .node()?
            .network_catalogues()
            .into_iter()
            .find(|c| c.document.publisher == shanghai.to_string()))
    };
    wait_until("first snapshot", WAIT, || async {
        Ok(held_by_1(&net)?.is_some())
    })
    .await?;
    let old = held_by_1(&net)?.expect("snapshot");
    let _: Value = net.nodes[0]
        .client()?
        .post(
            "/api/v1/catalogue/offers",
            &offer("x", "enterprise-licence", "unconditional"),
        )
        .await?;
    wait_until("newer snapshot", WAIT, || async {
        Ok(held_by_1(&net)?.is_some_and(|c| c.document.sequence > old.document.sequence))
    })
    .await?;
    let node1 = net.nodes[1].node()?;
    let from = net.nodes[0].peer_id();

    // Replayed older snapshot.
    let err = node1
        .accept_catalogue(from, old.clone())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, NodeError::Stale(_)), "{err}");

    // Tampered snapshot: a higher sequence with the original signature.
    let mut tampered = held_by_1(&net)?.expect("snapshot");
    tampered.document.sequence += 10;
    let err = node1
        .accept_catalogue(from, tampered)
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, NodeError::Signature(_)), "{err}");

    // A non-member's snapshot, correctly signed by its own key.
    let outsider = NodeKey::generate();
    let mut doc = old.document.clone();
    doc.publisher = outsider.peer_id().to_string();
    doc.sequence = 1;
    let signed = Signed::sign(doc, outsider.signing_key())?;
    let err = node1
        .accept_catalogue(from, signed)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("non-member"), "{err}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demands_are_matched_against_offers_across_nodes() -> Result<()> {
    let mut net = TestNet::line(2).await?;
    net.wait_full_mesh().await?;
    publish(
        &net.nodes[0],
        "housing-provident-fund",
        "1.0.0",
        standard("housing-provident-fund"),
    )
    .await?;
    wait_schema(&net, "housing-provident-fund", "1.0.0").await?;
    let _: Value = net.nodes[1]
        .client()?
        .post(
            "/api/v1/catalogue/offers",
            &offer("js-fund", "housing-provident-fund", "conditional"),
        )
        .await?;
    let demand = json!({"identifier": "need-fund", "title": "公积金缴存记录", "schema_id": "housing-provident-fund",
        "version_req": "^1.0", "purpose": "跨省公积金贷款审核", "legal_basis": "《住房公积金管理条例》", "frequency": "daily"});
    let _: Value = net.nodes[0]
        .client()?
        .post("/api/v1/catalogue/demands", &demand)
        .await?;
    wait_until("match on Shanghai", WAIT, || async {
        let m: Value = net.nodes[0].client()?.get("/api/v1/demands/match").await?;
        Ok(m["for_our_demands"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["offer"] == "js-fund"))
    })
    .await?;
    wait_until("match on Jiangsu", WAIT, || async {
        let m: Value = net.nodes[1].client()?.get("/api/v1/demands/match").await?;
        Ok(m["for_our_offers"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["demand"]["identifier"] == "need-fund"))
    })
    .await?;
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_refuses_bad_and_incompatible_standards() -> Result<()> {
    let mut net = TestNet::line(1).await?;
    let n = &net.nodes[0];
    let v1 = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "number"}}, "required": ["a"]
    });
    publish(n, "test-std", "1.0.0", v1.clone()).await?;
    // Same id+version, same content: accepted again (idempotent).
    publish(n, "test-std", "1.0.0", v1.clone()).await?;
    // Same id+version, other content: refused.
    let mut other = v1.clone();
    other["properties"]["c"] = json!({"type": "string"});
    let err = publish(n, "test-std", "1.0.0", other.clone())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, ClientError::Api { status: 409, .. }), "{err}");
    // A compatible minor version (an optional field added) is accepted.
    publish(n, "test-std", "1.1.0", other).await?;
    // An incompatible minor version is refused with each incompatibility listed.
    let breaking = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "properties": {"a": {"type": "string", "maxLength": 3}, "c": {"type": "string"}}, "required": ["a", "c"]
    });
    let err = publish(n, "test-std", "1.2.0", breaking.clone())
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        matches!(err, ClientError::Api { status: 400, .. }),
        "{text}"
    );
    assert!(
        text.contains("/properties/b")
            && text.contains("\"c\" is now required")
            && text.contains("maxLength"),
        "{text}"
    );
    // The same change as a new major version is fine.
    publish(n, "test-std", "2.0.0", breaking).await?;
    // Not a 2020-12 schema, or not compilable.
    let err = publish(n, "bad-std", "1.0.0", json!({"type": "object"}))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("$schema"), "{err}");
    let err = publish(
        n,
        "bad-std",
        "1.0.0",
        json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": 5}),
    )
    .await
    .err()
    .expect("refused");
    assert!(matches!(err, ClientError::Api { status: 400, .. }), "{err}");
    // An offer must reference a known standard, and conditions are required unless unconditional.
    let err = n
        .client()?
        .post::<_, Value>(
            "/api/v1/catalogue/offers",
            &offer("o", "unknown-std", "unconditional"),
        )
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not known"), "{err}");
    let mut no_conditions = offer("o", "test-std", "conditional");
    no_conditions
        .as_object_mut()
        .map(|o| o.remove("share_conditions"));
    let err = n
        .client()?
        .post::<_, Value>("/api/v1/catalogue/offers", &no_conditions)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("share_conditions"), "{err}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    net.stop_all().await
}
