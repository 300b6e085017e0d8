//! Catalogue and schema-registry tests on real in-process networks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

use anyhow::Result;
use serde_json::{Value, json};
use yrd_node::identity::NodeKey;
use yrd_node::model::catalogue::{Catalogue, Demand, OfferInput, ShareType, UpdateCycle};
use yrd_node::model::signed::Signed;
use yrd_node::node::NodeError;
use yrd_node::node::catalogue::SearchQuery;
use yrd_tests::api::{Api, status};
use yrd_tests::fixtures::{STANDARD, publish_sample_standard};
use yrd_tests::{TestNet, WAIT, wait_until};

/// An offer of test data under `standard`; conditions unless unconditional.
fn offer(id: &str, standard: &str, share: ShareType) -> OfferInput {
    let conditions = (share != ShareType::Unconditional).then_some("仅限履职使用");
    yrd_tests::fixtures::offer(id, standard, share, conditions)
}

/// `n` meshed nodes, the sample standard `id` published on node 0 and held by every node.
async fn with_standard(n: usize, id: &str) -> Result<TestNet> {
    let net = TestNet::meshed(n).await?;
    publish_sample_standard(&net.api(0)?, id).await?;
    net.wait_schema(id, "1.0.0").await?;
    Ok(net)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_published_on_one_node_is_usable_at_the_far_end_of_the_line() -> Result<()> {
    let mut net = with_standard(4, STANDARD).await?;
    let added = net
        .api(3)?
        .add_offer(&offer("ah-licences", STANDARD, ShareType::Unconditional))
        .await?;
    assert_eq!(added.conforms_to.id, STANDARD);
    assert!(added.information_items.len() >= 10, "{added:?}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_is_found_at_the_far_end_by_text_region_and_share_type() -> Result<()> {
    let mut net = with_standard(4, STANDARD).await?;
    net.api(0)?
        .add_offer(&offer("sh-licences", STANDARD, ShareType::Conditional))
        .await?;
    let ah = net.api(3)?;
    wait_until("Shanghai's offer visible on Anhui", WAIT, || async {
        let hits = ah.search_text("sh-licences").await?;
        Ok(hits.len() == 1 && hits[0].region.code() == 310000)
    })
    .await?;
    let by_region = ah
        .search(&SearchQuery {
            region: Some("310000".parse()?),
            share_type: Some(ShareType::Conditional),
            ..SearchQuery::default()
        })
        .await?;
    assert_eq!(by_region.len(), 1, "{by_region:?}");
    let unconditional = ah
        .search(&SearchQuery {
            region: Some("310000".parse()?),
            share_type: Some(ShareType::Unconditional),
            ..SearchQuery::default()
        })
        .await?;
    assert!(unconditional.is_empty(), "{unconditional:?}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_of_two_nodes_are_found_by_their_standard_on_a_third() -> Result<()> {
    let mut net = with_standard(4, STANDARD).await?;
    net.api(0)?
        .add_offer(&offer("sh-licences", STANDARD, ShareType::Conditional))
        .await?;
    net.api(3)?
        .add_offer(&offer("ah-licences", STANDARD, ShareType::Unconditional))
        .await?;
    let js = net.api(1)?;
    let by_standard = SearchQuery {
        schema: Some(STANDARD.into()),
        ..SearchQuery::default()
    };
    wait_until("both offers visible on Jiangsu", WAIT, || async {
        Ok(js.search(&by_standard).await?.len() == 2)
    })
    .await?;
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_node_converges_after_restart_without_a_new_publish() -> Result<()> {
    let mut net = with_standard(3, STANDARD).await?;
    net.nodes[2].stop().await?;
    for i in 0..3 {
        net.api(0)?
            .add_offer(&offer(
                &format!("offer-{i}"),
                STANDARD,
                ShareType::Unconditional,
            ))
            .await?;
    }
    let latest = net.nodes[0]
        .node()?
        .own_catalogue()?
        .map(|c| c.document.sequence)
        .unwrap_or(0);
    net.nodes[2].start().await?;
    net.wait_catalogue_of(0).await?;
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

/// Two meshed nodes; node 1 held Shanghai's first snapshot and now holds a newer one. Returns
/// the net and the older snapshot.
async fn two_snapshots() -> Result<(TestNet, Signed<Catalogue>)> {
    let net = with_standard(2, STANDARD).await?;
    let old = wait_until("a first snapshot on node 1", WAIT, || async {
        held_by_1(&net)
    })
    .await?;
    net.api(0)?
        .add_offer(&offer("x", STANDARD, ShareType::Unconditional))
        .await?;
    wait_until("a newer snapshot on node 1", WAIT, || async {
        Ok(held_by_1(&net)?.is_some_and(|c| c.document.sequence > old.document.sequence))
    })
    .await?;
    Ok((net, old))
}

/// Shanghai's snapshot as node 1 holds it.
fn held_by_1(net: &TestNet) -> Result<Option<Signed<Catalogue>>> {
    let shanghai = net.nodes[0].peer_id().to_string();
    Ok(net.nodes[1]
        .node()?
        .network_catalogues()
        .into_iter()
        .find(|c| c.document.publisher == shanghai))
}

/// Node 1's refusal of `snapshot` as if node 0 had sent it.
async fn refusal(net: &TestNet, snapshot: Signed<Catalogue>) -> Result<NodeError> {
    let from = net.nodes[0].peer_id();
    let accepted = net.nodes[1].node()?.accept_catalogue(from, snapshot).await;
    Ok(accepted.expect_err("refused"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_older_snapshot_is_refused_as_stale() -> Result<()> {
    let (mut net, old) = two_snapshots().await?;
    let err = refusal(&net, old).await?;
    assert!(matches!(err, NodeError::Stale(_)), "{err}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_snapshot_is_refused_by_its_signature() -> Result<()> {
    let (mut net, _) = two_snapshots().await?;
    // A higher sequence with the original signature.
    let mut tampered = held_by_1(&net)?.expect("snapshot");
    tampered.document.sequence += 10;
    let err = refusal(&net, tampered).await?;
    assert!(matches!(err, NodeError::Signature(_)), "{err}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_members_snapshot_signed_by_its_own_key_is_refused() -> Result<()> {
    let (mut net, old) = two_snapshots().await?;
    let outsider = NodeKey::generate();
    let mut doc = old.document;
    doc.publisher = outsider.peer_id().to_string();
    doc.sequence = 1;
    let err = refusal(&net, Signed::sign(doc, outsider.signing_key())?).await?;
    assert!(err.to_string().contains("non-member"), "{err}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demands_are_matched_against_offers_across_nodes() -> Result<()> {
    let fund = "housing-provident-fund";
    let mut net = with_standard(2, fund).await?;
    net.api(1)?
        .add_offer(&offer("js-fund", fund, ShareType::Conditional))
        .await?;
    net.api(0)?
        .add_demand(&Demand {
            identifier: "need-fund".into(),
            title: "公积金缴存记录".into(),
            schema_id: fund.into(),
            version_req: "^1.0".into(),
            purpose: "跨省公积金贷款审核".into(),
            legal_basis: "《住房公积金管理条例》".into(),
            frequency: UpdateCycle::Daily,
            regions: Vec::new(),
        })
        .await?;
    let (sh, js) = (net.api(0)?, net.api(1)?);
    wait_until("the match on Shanghai", WAIT, || async {
        let m = sh.demand_match().await?.for_our_demands;
        Ok(m.len() == 1 && m[0].offer == "js-fund")
    })
    .await?;
    wait_until("the match on Jiangsu", WAIT, || async {
        let m = js.demand_match().await?.for_our_offers;
        Ok(m.len() == 1 && m[0].demand.identifier == "need-fund")
    })
    .await?;
    net.stop_all().await
}

/// A 2020-12 schema with a required string `a` and an optional number `b`.
fn test_standard() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "number"}}, "required": ["a"]
    })
}

/// One node holding [`test_standard`] as `test-std` 1.0.0, and its API client.
async fn with_test_standard() -> Result<(TestNet, Api)> {
    let net = TestNet::line(1).await?;
    let api = net.api(0)?;
    api.publish_schema("test-std", "1.0.0", &test_standard())
        .await?;
    Ok((net, api))
}

/// [`test_standard`] with an optional string `c` added.
fn with_optional_c() -> Value {
    let mut v = test_standard();
    v["properties"]["c"] = json!({"type": "string"});
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_published_again_is_idempotent_and_other_content_conflicts() -> Result<()> {
    let (mut net, api) = with_test_standard().await?;
    api.publish_schema("test-std", "1.0.0", &test_standard())
        .await?;
    let err = api
        .publish_schema("test-std", "1.0.0", &with_optional_c())
        .await
        .expect_err("refused");
    assert_eq!(status(&err), Some(409), "{err}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minor_version_must_be_compatible_and_a_major_one_need_not() -> Result<()> {
    let (mut net, api) = with_test_standard().await?;
    // An optional field added: compatible.
    api.publish_schema("test-std", "1.1.0", &with_optional_c())
        .await?;
    // A field removed, one made required, a constraint tightened: each incompatibility listed.
    let breaking = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "properties": {"a": {"type": "string", "maxLength": 3}, "c": {"type": "string"}}, "required": ["a", "c"]
    });
    let err = api
        .publish_schema("test-std", "1.2.0", &breaking)
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert_eq!(status(&err), Some(400), "{text}");
    assert!(
        text.contains("/properties/b")
            && text.contains("\"c\" is now required")
            && text.contains("maxLength"),
        "{text}"
    );
    api.publish_schema("test-std", "2.0.0", &breaking).await?;
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_not_in_draft_2020_12_or_not_compilable_is_refused() -> Result<()> {
    let mut net = TestNet::line(1).await?;
    let api = net.api(0)?;
    for (case, schema, says) in [
        ("no $schema", json!({"type": "object"}), "$schema"),
        (
            "not compilable",
            json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": 5}),
            "400",
        ),
    ] {
        let err = api
            .publish_schema("bad-std", "1.0.0", &schema)
            .await
            .expect_err(case);
        assert!(err.to_string().contains(says), "{case}: {err}");
    }
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_needs_a_known_standard_and_conditions_unless_unconditional() -> Result<()> {
    let (mut net, api) = with_test_standard().await?;
    let mut no_conditions = offer("o", "test-std", ShareType::Conditional);
    no_conditions.share_conditions = None;
    for (case, o, says) in [
        (
            "unknown standard",
            offer("o", "unknown-std", ShareType::Unconditional),
            "not known",
        ),
        ("no conditions", no_conditions, "share_conditions"),
    ] {
        let err = api.add_offer(&o).await.expect_err(case);
        assert!(err.to_string().contains(says), "{case}: {err}");
    }
    net.stop_all().await
}
