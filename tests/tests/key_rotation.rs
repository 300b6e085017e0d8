//! Rotating a node's key on a live federation (docs/federation.md, "Rotating a node's key"):
//! `yrd key rotate` makes the next key and proposes the charter change, the founders approve it,
//! the node restarts on the new key once the version applies, and keeps its grants, its
//! pseudonyms and its log; the old key is refused from then on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use anyhow::Result;
use yrd_node::identity::{self, NodeKey};
use yrd_node::model::catalogue::ShareType;
use yrd_node::model::exchange::DataFormat;
use yrd_node::model::provenance::RecordKind;
use yrd_node::model::query::{FieldValue, QueryMode};
use yrd_node::node::key_rotation::{KeyRotationView, RotationStage};
use yrd_node::node::query::QueryInput;
use yrd_node::node::transfer::TransferStatus;
use yrd_tests::charter::four_founders;
use yrd_tests::fixtures::{self, COND};
use yrd_tests::{TestNet, TestNode, WAIT, wait_until};

/// Three founders (nodes 0–3) other than node `rotating` approve proposal `digest` once it
/// reached them: the threshold, which applies it.
async fn approve(net: &TestNet, rotating: usize, digest: &str) -> Result<()> {
    for i in (0..4).filter(|i| *i != rotating).take(3) {
        let api = net.api(i)?;
        wait_until("the rotation proposal gossiped", WAIT, || async {
            Ok(api.proposals().await?.iter().any(|p| p.digest == digest))
        })
        .await?;
        api.sign_proposal(digest).await?;
    }
    Ok(())
}

/// Waits until the subscription to `publisher` on the node behind `api` fetched `version`.
async fn subscription_fetched(
    api: &yrd_tests::api::Api,
    publisher: &libp2p::PeerId,
    version: u64,
) -> Result<()> {
    let publisher = publisher.to_string();
    wait_until(
        &format!("the subscription to {publisher} fetching version {version}"),
        WAIT,
        || async {
            Ok(api
                .subscriptions()
                .await?
                .iter()
                .any(|s| s.publisher == publisher && s.fetched_version == version))
        },
    )
    .await
}

/// Stage 1 of node `i`'s rotation: `yrd key rotate`, asked twice (the same key and proposal),
/// approved by the three other founders; returns once version 2 (both keys) applied on the
/// node and it asks to restart on its new key.
async fn stage_one(net: &TestNet, i: usize) -> Result<KeyRotationView> {
    let js = net.api(i)?;
    let old = net.nodes[i].peer_id();
    // `yrd key rotate`, stage 1: the next key, and the change adding it to Jiangsu's keys.
    let rotation = js.rotate_key().await?;
    assert_eq!(rotation.peer_id, old.to_string());
    assert_ne!(rotation.next_peer_id, rotation.peer_id);
    assert_eq!(rotation.stage, RotationStage::AddNextKey);
    assert!(!rotation.proposal.ready);
    // Asked again: the same key and proposal, not a second one.
    let again = js.rotate_key().await?;
    assert_eq!(
        (again.next_peer_id.as_str(), again.proposal.digest.as_str()),
        (
            rotation.next_peer_id.as_str(),
            rotation.proposal.digest.as_str()
        )
    );
    // The other three founders approve, as for any change.
    approve(net, i, &rotation.proposal.digest).await?;
    // Version 2 (both keys) applies everywhere, the node included: it asks to start again on
    // its new key (`yrd run` restarts in the same process; the harness restarts the node).
    let restart = net.nodes[i].node()?.restart_requested();
    wait_until("the node asks to restart on its new key", WAIT, || async {
        Ok(restart.is_cancelled())
    })
    .await?;
    Ok(rotation)
}

/// Stage 2 of node `i`'s rotation, once it runs on its new key: `yrd key rotate` names the old
/// key's removal, the three other founders approve it; returns once version 3 applied on every
/// founder.
async fn stage_two(net: &TestNet, i: usize) -> Result<KeyRotationView> {
    let retire = net.api(i)?.rotate_key().await?;
    assert_eq!(retire.stage, RotationStage::RetireOldKey);
    approve(net, i, &retire.proposal.digest).await?;
    wait_until("version 3 on every founder", WAIT, || async {
        for i in 0..4 {
            if net.api(i)?.federation().await?.charter.version != 3 {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    Ok(retire)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_on_a_live_node_keeps_its_grants_and_log() -> Result<()> {
    // Four founders on a charter, 3 to sign changes; Shanghai provides, Jiangsu holds a grant.
    let root = tempfile::tempdir()?;
    let (keys, _, nodes) = four_founders(root.path()).await?;
    let boot = nodes[0].tcp_address().await?;
    let mut net = TestNet { root, nodes };
    net.wait_full_mesh().await?;
    let dir = tempfile::tempdir()?;
    let (grant, before) = fixtures::granted_fetch(&net, dir.path(), "轮换前的授权").await?;
    let (sh, js) = (net.api(0)?, net.api(1)?);
    let log_before = js.check().await?;
    let old = net.nodes[1].peer_id();

    // Jiangsu's head is witnessed by Shanghai under its old key.
    net.nodes[1]
        .node()?
        .send_head(net.nodes[0].peer_id())
        .await?;
    let rotation = stage_one(&net, 1).await?;
    let started = std::time::Instant::now();
    net.nodes[1].restart().await?;
    net.nodes[1].reload_key()?;
    let new = net.nodes[1].peer_id();
    assert_eq!(new.to_string(), rotation.next_peer_id);
    let data_dir = net.nodes[1].data_dir.clone();
    assert!(!data_dir.join(identity::NEXT_KEY_FILE).exists());
    let retired = NodeKey::load(&identity::retired_key_path(&data_dir, &old))?;
    assert_eq!(retired.peer_id(), old);
    net.wait_full_mesh().await?;
    eprintln!(
        "Jiangsu meshed again on its new key {:?} after its restart",
        started.elapsed()
    );
    let js = net.api(1)?;
    assert_eq!(js.node().await?.peer_id, new.to_string());
    // Shanghai takes the new key's first head as the continuation of the old key's log: it
    // extends the head it holds of it (checked by a consistency proof), so it is cosigned.
    net.nodes[1]
        .node()?
        .send_head(net.nodes[0].peer_id())
        .await?;

    // Stage 2, proposed by the node itself at its restart: the old key's removal.
    let retire = stage_two(&net, 1).await?;
    assert_eq!(retire.peer_id, new.to_string());
    let jiangsu = sh.federation().await?;
    let jiangsu_keys = &jiangsu
        .members
        .iter()
        .find(|m| m.region.code() == 320000)
        .expect("Jiangsu")
        .peers;
    assert_eq!(jiangsu_keys, &vec![new.to_string()]);

    // Its grant is kept: a new version is fetched under the grant issued to the old key.
    fixtures::publish_sample_version(&sh, dir.path(), COND, fixtures::STANDARD, 30, 7).await?;
    let after = fixtures::fetch_newer(&js, &format!("310000/{COND}"), before.version).await?;
    assert_eq!(after.grant.as_deref(), Some(grant.document.id.as_str()));
    // Its log is kept: every record before the rotation and after, and it verifies whole.
    let log_after = js.check().await?;
    assert!(
        log_after.size > log_before.size,
        "{} records after, {} before",
        log_after.size,
        log_before.size
    );

    // Evidence: the bundles of Jiangsu's log (records under both keys) and of Shanghai's
    // (a counterparty that changed keys) verify in both verifiers.
    for (who, api) in [("Jiangsu", &js), ("Shanghai", &sh)] {
        let bundle = api.export(COND).await?;
        let names = |peer: &libp2p::PeerId| {
            let peer = peer.to_string();
            bundle
                .entries
                .iter()
                .any(|e| e.record.actor == peer || e.record.counterparty.as_deref() == Some(&peer))
        };
        assert!(
            names(&old) && names(&new),
            "{who}'s bundle spans the rotation"
        );
        let file = net.root.path().join(format!("{who}.json"));
        std::fs::write(&file, serde_json::to_vec(&bundle)?)?;
        yrd_tests::verifiers::both_accept(&file, &format!("{who}'s log"))?;
    }

    // No witness took the new key's log for a rewrite of the old one.
    for i in 0..4 {
        assert!(net.api(i)?.alarms().await?.is_empty(), "node {i} alarmed");
    }

    // The old key is refused: a node started on it is turned away at Shanghai's gate.
    let refused_before = sh.health().await?.refused_connections;
    let impostor_root = net.root.path().join("old-key");
    std::fs::create_dir_all(&impostor_root)?;
    let ids: Vec<_> = keys.iter().map(NodeKey::peer_id).collect();
    let mut impostor = TestNode::create(&impostor_root, 1, retired, &ids, vec![boot])?;
    impostor.start().await?;
    wait_until("the old key refused at the gate", WAIT, || async {
        Ok(sh.health().await?.refused_connections > refused_before)
    })
    .await?;
    assert!(
        !sh.peers()
            .await?
            .iter()
            .any(|p| p.peer_id == old.to_string()),
        "the old key is not connected"
    );
    impostor.stop().await?;
    net.stop_all().await
}

/// A node cannot use its key rotation to start a new history: Shanghai witnessed Jiangsu's log
/// under its old key; Jiangsu, stopped for the switch, rewrites a record; the first head of its
/// new key does not extend the old key's last head Shanghai holds, so it is refused as a fork
/// and alarmed, not taken as a new log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_rewritten_at_a_key_rotation_is_caught_by_its_witness() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (_, _, nodes) = four_founders(root.path()).await?;
    let mut net = TestNet { root, nodes };
    net.wait_full_mesh().await?;
    let (sh_id, old) = (net.nodes[0].peer_id(), net.nodes[1].peer_id());
    net.nodes[1].node()?.send_head(sh_id).await?;
    stage_one(&net, 1).await?;
    // Stopped for the switch, Jiangsu rewrites record 0 of its log with its old key.
    net.nodes[1].stop().await?;
    {
        let node = &net.nodes[1];
        let store = yrd_node::store::Store::open(&node.data_dir)?;
        let log = yrd_node::store::provenance::ProvenanceLog::open(
            store.db(),
            node.key.signing_key().clone(),
            old.to_string(),
            node.region,
        )?;
        let mut r = log.record(0)?.expect("record 0");
        r.cause = Some("rewritten".into());
        log.rewrite_for_test(0, &r)?;
        log.close();
        store.flush_blocking()?;
    }
    net.nodes[1].wait_database_released().await?;
    net.nodes[1].start().await?;
    net.nodes[1].reload_key()?;
    let new = net.nodes[1].peer_id();
    assert_ne!(new, old, "switched to the next key");
    net.wait_full_mesh().await?;
    let sent = net.nodes[1].node()?.send_head(sh_id).await;
    assert!(sent.is_err(), "a forked head must not be cosigned");
    let alarms = net.api(0)?.alarms().await?;
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0].log, new.to_string());
    assert_eq!(alarms[0].held.document.log, old.to_string());
    net.stop_all().await
}

/// Shanghai's offer with a query key (`uscc`), unconditional.
const QUERIED: &str = "sh-licences-q";

/// A provider that rotates its key keeps its publications (docs/federation.md, "Rotating a
/// node's key"): at its restart on the new key it signs its versions again (numbering kept), so
/// its next version is numbered on; while both keys are in force `310000/DATASET` names the new
/// one, not both; its grantee's subscription follows it and fetches each new version under the
/// grant the old key issued; its call report for a key lists the calls answered under both keys;
/// it adds versions to the standard its old key published; and its
/// log's bundle, spanning both keys, verifies in both verifiers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_rotates_keeps_numbering_its_versions() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (_, _, nodes) = four_founders(root.path()).await?;
    let mut net = TestNet { root, nodes };
    net.wait_full_mesh().await?;
    let dir = tempfile::tempdir()?;
    let (grant, before) = fixtures::granted_fetch(&net, dir.path(), "轮换前的授权").await?;
    let first = before.version.expect("a version fetched");
    let target = format!("310000/{COND}");
    let js = net.api(1)?;
    js.subscribe(&target).await?;
    // An unconditional offer with a query key; Jiangsu verifies one licence before the rotation.
    let mut licences = fixtures::offer(QUERIED, fixtures::STANDARD, ShareType::Unconditional, None);
    licences.query_keys = vec!["uscc".into()];
    net.api(0)?.add_offer(&licences).await?;
    let file = dir.path().join("licences.jsonl");
    fixtures::write_sample_records(&file, fixtures::STANDARD, 50, 3)?;
    net.api(0)?
        .publish_version(QUERIED, &file, DataFormat::Jsonl)
        .await?;
    net.wait_catalogue_of(0).await?;
    let record: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&file)?
            .lines()
            .nth(5)
            .expect("a record"),
    )?;
    let uscc = FieldValue {
        field: "uscc".into(),
        value: record["uscc"].as_str().expect("uscc").into(),
    };
    let verify = || QueryInput {
        target: format!("310000/{QUERIED}"),
        mode: QueryMode::Verify,
        key: vec![uscc.clone()],
        fields: Vec::new(),
        purpose: Some("跨省通办企业资格核验".into()),
        legal_basis: Some("《优化营商环境条例》第三十七条".into()),
        grant: None,
    };
    assert!(
        net.nodes[1]
            .node()?
            .query(verify(), None)
            .await?
            .answer
            .document
            .found
    );
    let old = net.nodes[0].peer_id();
    let published = net.api(0)?.versions(COND).await?.len();

    // Stage 1: Shanghai's next key is added; Shanghai restarts on it.
    stage_one(&net, 0).await?;
    net.nodes[0].restart().await?;
    net.nodes[0].reload_key()?;
    let new = net.nodes[0].peer_id();
    assert_ne!(new, old);
    net.wait_full_mesh().await?;
    let sh = net.api(0)?;
    // Its versions are its own under the new key, numbering and content kept.
    let versions = sh.versions(COND).await?;
    assert_eq!(versions.len(), published, "every version signed again");
    assert!(
        versions
            .iter()
            .all(|m| m.document.publisher == new.to_string() && m.verify().is_ok()),
        "signed by the new key"
    );

    // Between the stages both keys are in force and Jiangsu holds a catalogue of each: the
    // region names the newer key, and the next version is numbered on from the last.
    net.wait_catalogue_of(0).await?;
    let (_, next) =
        fixtures::publish_sample_version(&sh, dir.path(), COND, fixtures::STANDARD, 25, 11).await?;
    assert_eq!(next.document.version, first + 1);
    assert_eq!(next.document.publisher, new.to_string());
    let fetched = fixtures::fetch_newer(&js, &target, Some(first)).await?;
    assert_eq!(
        fetched.peer,
        new.to_string(),
        "the region resolves to the new key"
    );
    assert_eq!(fetched.version, Some(first + 1));
    assert_eq!(fetched.grant.as_deref(), Some(grant.document.id.as_str()));
    wait_until(
        "the subscription follows Shanghai's new key",
        WAIT,
        || async {
            Ok(js.subscriptions().await?.iter().any(|s| {
                s.publisher == new.to_string()
                    && s.dataset == COND
                    && s.fetched_version == first + 1
            }))
        },
    )
    .await?;
    assert_eq!(js.subscriptions().await?.len(), 1, "moved, not copied");
    // The version fetched before the rotation, fetched again: its masked copy for this grant,
    // derived under the old key, is served signed by the new one (a fetcher takes a manifest
    // only from its signer).
    let mut body = yrd_tests::api::fetch_body(&target);
    body.version = Some(first);
    let refetched = js.fetch_to_end(&body).await?;
    assert_eq!(
        (refetched.status, refetched.peer.as_str(), refetched.version),
        (TransferStatus::Done, new.to_string().as_str(), Some(first)),
        "{refetched:?}"
    );
    // The same licence verified again, now answered by the new key: the data subject's report
    // at Shanghai lists both calls, one under each key.
    let again = net.nodes[1].node()?.query(verify(), None).await?;
    assert_eq!(again.answer.document.provider, new.to_string());
    let calls = net.nodes[0]
        .node()?
        .provenance_query_calls(QUERIED, &uscc, None)?;
    let answered_by: Vec<&str> = calls.iter().map(|r| r.actor.as_str()).collect();
    assert_eq!(
        answered_by,
        vec![old.to_string(), new.to_string()],
        "{calls:#?}"
    );
    assert!(calls.iter().all(|r| r.kind == RecordKind::QueryAnswered));
    // Jiangsu's own report of the calls it sent, asked by either of Shanghai's keys, lists
    // both (one sent to each key).
    for named in [&old, &new] {
        let sent = net.nodes[1].node()?.provenance_query_calls(
            QUERIED,
            &uscc,
            Some(&named.to_string()),
        )?;
        assert_eq!(
            sent.iter().map(|r| r.kind).collect::<Vec<_>>(),
            vec![RecordKind::QuerySent, RecordKind::QuerySent],
            "asked by {named}: {sent:#?}"
        );
    }

    // The standard its old key published takes versions from its new key, on every node.
    let mut schema = fixtures::sample_schema(fixtures::STANDARD)?;
    schema["title"] = "企业营业执照（第二版）".into();
    sh.publish_schema(fixtures::STANDARD, "2.0.0", &schema)
        .await?;
    net.wait_schema(fixtures::STANDARD, "2.0.0").await?;

    // Stage 2: the old key retired; the next version is still numbered on and still reaches
    // the subscriber.
    stage_two(&net, 0).await?;
    let (_, last) =
        fixtures::publish_sample_version(&sh, dir.path(), COND, fixtures::STANDARD, 30, 12).await?;
    assert_eq!(last.document.version, first + 2);
    subscription_fetched(&js, &new, first + 2).await?;

    // Shanghai's log, spanning both keys (the versions signed again are recorded), verifies.
    let bundle = sh.export(COND).await?;
    let resigned = bundle
        .entries
        .iter()
        .filter(|e| {
            e.record.actor == new.to_string()
                && e.record.cause.as_deref().is_some_and(|c| {
                    c.contains("after a key rotation") && c.contains(&old.to_string())
                })
        })
        .count();
    assert_eq!(resigned, published, "each version signed again is recorded");
    let file = net.root.path().join("shanghai.json");
    std::fs::write(&file, serde_json::to_vec(&bundle)?)?;
    yrd_tests::verifiers::both_accept(&file, "Shanghai's log")?;
    for i in 0..4 {
        assert!(net.api(i)?.alarms().await?.is_empty(), "node {i} alarmed");
    }
    net.stop_all().await
}

/// A member may run more than one node: a key it adds for a second node replaces none of its
/// others, so it is no rotation (docs/federation.md, "A member with several nodes"). While only
/// the first node offers a dataset, `310000/DATASET` names it; once the second offers the same
/// dataset too, the target is refused as ambiguous naming both nodes (not silently resolved to
/// the key added last), and a subscription to the first node stays with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_two_nodes_is_not_a_rotation() -> Result<()> {
    use yrd_node::model::charter::{MemberKey, SignedCharter};
    use yrd_tests::charter::{founders, genesis, member, on_charter};
    let root = tempfile::tempdir()?;
    // Four founders; Shanghai's member lists a second key for its second node.
    let keys: Vec<NodeKey> = (0..4).map(|_| NodeKey::generate()).collect();
    let second = NodeKey::generate();
    let mut members = Vec::new();
    for (i, (k, region)) in keys
        .iter()
        .zip([310000, 320000, 330000, 340000])
        .enumerate()
    {
        members.push(member(k, region, i + 1)?);
    }
    members[0]
        .keys
        .push(MemberKey::ed25519_hex(second.public_hex()));
    let mut signed = SignedCharter::draft(genesis(members, 3));
    for k in &keys[..3] {
        signed.sign(k.signing_key())?;
    }
    let nodes = founders(root.path(), &keys, &signed).await?;
    let boot = nodes[0].tcp_address().await?;
    // Shanghai's second node: region 310000 (index 0), its own directory, the same charter.
    let second_root = root.path().join("second");
    std::fs::create_dir_all(&second_root)?;
    let ids: Vec<_> = keys.iter().map(NodeKey::peer_id).collect();
    let mut node = TestNode::create(&second_root, 0, second.clone(), &ids, vec![boot])?;
    on_charter(&mut node, &root.path().join("charter.json"))?;
    node.start().await?;
    let mut nodes = nodes;
    nodes.push(node);
    let mut net = TestNet { root, nodes };
    net.wait_full_mesh().await?;
    let (first, two) = (net.nodes[0].peer_id(), net.nodes[4].peer_id());

    // Only the first node offers `sh-open`: the region names it; Jiangsu subscribes.
    let dir = tempfile::tempdir()?;
    fixtures::provider(&net, dir.path(), 20).await?;
    let target = format!("310000/{}", fixtures::OPEN);
    let js = net.api(1)?;
    let fetched = js.fetch_done(&target).await?;
    assert_eq!(fetched.peer, first.to_string());
    js.subscribe(&target).await?;

    // The second node offers the same dataset (the standard it holds from the first).
    net.wait_schema(fixtures::UNMARKED, "1.0.0").await?;
    let sh2 = net.api(4)?;
    sh2.add_offer(&fixtures::offer(
        fixtures::OPEN,
        fixtures::UNMARKED,
        ShareType::Unconditional,
        None,
    ))
    .await?;
    fixtures::publish_sample_version(&sh2, dir.path(), fixtures::OPEN, fixtures::STANDARD, 10, 9)
        .await?;
    net.wait_catalogue_of(4).await?;
    let refused = js
        .fetch_latest(&target)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        refused.contains("2 nodes of one member (310000) offer")
            && refused.contains(&first.to_string())
            && refused.contains(&two.to_string()),
        "{refused}"
    );
    // Each node is still reached by its peer id.
    let from_two = js.fetch_done(&format!("{two}/{}", fixtures::OPEN)).await?;
    assert_eq!(from_two.peer, two.to_string());

    // The subscription stays with the first node: its next version arrives under it.
    fixtures::publish_sample_version(
        &net.api(0)?,
        dir.path(),
        fixtures::OPEN,
        fixtures::STANDARD,
        20,
        3,
    )
    .await?;
    subscription_fetched(&js, &first, 2).await?;
    let subs = js.subscriptions().await?;
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(subs[0].publisher, first.to_string());
    net.stop_all().await
}

/// A member that is not a founder rotates its key the same way: `yrd key rotate` on a city's
/// node, the founders approve both stages (the city signs neither), and the city keeps its
/// grant (a new version fetched under the grant issued to its old key) and its log, which
/// verifies across both keys; its old key is gone from the charter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_is_not_a_founder_rotates_its_key() -> Result<()> {
    use yrd_node::model::charter::{Role, SignedCharter};
    use yrd_tests::charter::{founders, genesis, member};
    let root = tempfile::tempdir()?;
    // Four founders and a city (the harness's fifth region) as a plain member, 3 to sign.
    let keys: Vec<NodeKey> = (0..5).map(|_| NodeKey::generate()).collect();
    let city_region = yrd_node::model::region::all()
        .nth(4)
        .expect("a fifth region")
        .code;
    let mut members = Vec::new();
    for (i, (k, region)) in keys
        .iter()
        .zip([310000, 320000, 330000, 340000, city_region])
        .enumerate()
    {
        members.push(member(k, region, i + 1)?);
    }
    members[4].role = Role::Member;
    let mut signed = SignedCharter::draft(genesis(members, 3));
    for k in &keys[..3] {
        signed.sign(k.signing_key())?;
    }
    let nodes = founders(root.path(), &keys, &signed).await?;
    let mut net = TestNet { root, nodes };
    net.wait_full_mesh().await?;

    // Shanghai provides; the city holds a grant of its conditional offer and fetches under it.
    let dir = tempfile::tempdir()?;
    fixtures::provider(&net, dir.path(), 20).await?;
    let (sh, city) = (net.api(0)?, net.api(4)?);
    let request = fixtures::request_body(COND, "城市轮换前的授权", &fixtures::FIELDS);
    let grant = fixtures::grant(&sh, &city, &request, &fixtures::approval_30_days()).await?;
    let target = format!("310000/{COND}");
    let before = city.fetch_done(&target).await?;
    assert_eq!(before.grant.as_deref(), Some(grant.document.id.as_str()));
    let log_before = city.check().await?;
    let old = net.nodes[4].peer_id();

    // Stage 1, approved by three founders; the city restarts on its new key.
    let rotation = stage_one(&net, 4).await?;
    net.nodes[4].restart().await?;
    net.nodes[4].reload_key()?;
    let new = net.nodes[4].peer_id();
    assert_eq!(new.to_string(), rotation.next_peer_id);
    net.wait_full_mesh().await?;
    // Stage 2: its old key retired.
    let retire = stage_two(&net, 4).await?;
    assert_eq!(retire.peer_id, new.to_string());
    let view = sh.federation().await?;
    let city_member = view
        .members
        .iter()
        .find(|m| m.region.code() == city_region)
        .expect("the city listed");
    assert_eq!(city_member.peers, vec![new.to_string()]);

    // Its grant is kept, and its log, which verifies across both keys in both verifiers.
    let city = net.api(4)?;
    fixtures::publish_sample_version(&sh, dir.path(), COND, fixtures::STANDARD, 30, 7).await?;
    let after = fixtures::fetch_newer(&city, &target, before.version).await?;
    assert_eq!(after.grant.as_deref(), Some(grant.document.id.as_str()));
    assert!(city.check().await?.size > log_before.size);
    let bundle = city.export(COND).await?;
    for key in [&old, &new] {
        let key = key.to_string();
        assert!(
            bundle.entries.iter().any(|e| e.record.actor == key),
            "the city's bundle has records of {key}"
        );
    }
    let file = net.root.path().join("city.json");
    std::fs::write(&file, serde_json::to_vec(&bundle)?)?;
    yrd_tests::verifiers::both_accept(&file, "the city's log")?;
    for i in 0..5 {
        assert!(net.api(i)?.alarms().await?.is_empty(), "node {i} alarmed");
    }
    net.stop_all().await
}
