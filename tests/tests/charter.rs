//! Nodes started on a federation charter (issue 14): the charter's keys are the members, and a
//! member's region is the charter's. A member whose NodeInfo claims another province is refused,
//! recorded and shown, and still counted in the charter's region; a charter member is admitted
//! with its region; a key the charter does not list is refused at the gate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use anyhow::Result;
use yrd_node::api::exchange::ApproveBody;
use yrd_node::devnet::fictitious_member_id;
use yrd_node::identity::NodeKey;
use yrd_node::model::charter::{
    ChangePolicy, Charter, CharterMember, Federation, KeyAlgorithm, MemberKey, Role, SignedCharter,
};
use yrd_node::model::provenance::RecordKind;
use yrd_node::model::region::Region;
use yrd_tests::fixtures::{self, COND};
use yrd_tests::{TestNet, TestNode, WAIT, wait_until};

fn member(key: &NodeKey, region: u32, n: usize) -> Result<CharterMember> {
    let region = Region::from_code(region)?;
    Ok(CharterMember {
        member_id: fictitious_member_id(region, n),
        organisation: format!("{} 测试局", region.name_zh()),
        region,
        role: Role::Founder,
        keys: vec![MemberKey {
            algorithm: KeyAlgorithm::Ed25519,
            public_key: key.public_hex(),
        }],
    })
}

/// A genesis of `members`, all founders, `threshold` of them to sign changes.
fn genesis(members: Vec<CharterMember>, threshold: u32) -> Charter {
    Charter {
        federation: Federation {
            id: "yrd-test".into(),
            name: "测试联盟".into(),
        },
        version: 1,
        previous: None,
        issued: "2026-01-01T00:00:00Z".into(),
        expires: "2099-01-01T00:00:00Z".into(),
        members,
        policy: ChangePolicy {
            signers: Role::Founder,
            threshold,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_claiming_another_province_is_refused_recorded_and_placed_by_the_charter()
-> Result<()> {
    let root = tempfile::tempdir()?;
    let (shanghai, jiangsu, liar, outsider) = (
        NodeKey::generate(),
        NodeKey::generate(),
        NodeKey::generate(),
        NodeKey::generate(),
    );
    // The charter: Shanghai, Jiangsu, and a Zhejiang member whose node will claim Jiangsu.
    let doc = genesis(
        vec![
            member(&shanghai, 310000, 1)?,
            member(&jiangsu, 320000, 2)?,
            member(&liar, 330000, 3)?,
        ],
        2,
    );
    let mut charter = SignedCharter::draft(doc);
    charter.sign(shanghai.signing_key())?;
    charter.sign(jiangsu.signing_key())?;
    let charter_path = root.path().join("charter.json");
    std::fs::write(&charter_path, charter.to_json_pretty()?)?;
    let on_charter = |node: &TestNode| {
        node.edit_config(|c| {
            c.federation.members.clear();
            c.federation.charter = Some(charter_path.clone());
        })
    };

    let mut sh = TestNode::create(root.path(), 0, shanghai.clone(), &[], Vec::new())?;
    on_charter(&sh)?;
    sh.start().await?;
    let boot = vec![sh.tcp_address().await?];
    // Created with a member list (the harness's way), then switched to the charter.
    let mut js = TestNode::create(
        root.path(),
        1,
        jiangsu.clone(),
        &[shanghai.peer_id()],
        boot.clone(),
    )?;
    on_charter(&js)?;
    js.start().await?;
    // The liar runs on a member list, configured as Jiangsu (index 1), in a dir of its own.
    let liar_root = root.path().join("liar");
    std::fs::create_dir_all(&liar_root)?;
    let mut lr = TestNode::create(
        &liar_root,
        1,
        liar.clone(),
        &[shanghai.peer_id(), jiangsu.peer_id()],
        boot.clone(),
    )?;
    lr.start().await?;
    // A key the charter does not list, trusted by nobody.
    let out_root = root.path().join("outsider");
    std::fs::create_dir_all(&out_root)?;
    let mut out = TestNode::create(&out_root, 3, outsider.clone(), &[shanghai.peer_id()], boot)?;
    out.start().await?;

    let api = sh.api()?;
    let view = api.node().await?;
    let c = view.charter.clone().expect("the node runs on a charter");
    assert_eq!((c.version, c.state.as_str(), c.members), (1, "in-force", 3));
    assert_eq!(view.members, 2, "the charter's other members");

    // Jiangsu is admitted with its region; the liar is connected (its key is a member's) but
    // placed in the charter's Zhejiang, whatever its NodeInfo says.
    let liar_id = liar.peer_id().to_string();
    let jiangsu_id = jiangsu.peer_id().to_string();
    let peers = wait_until(
        "Jiangsu and the liar connected to Shanghai",
        WAIT,
        || async {
            let peers = api.peers().await?;
            let both = peers
                .iter()
                .any(|p| p.peer_id == jiangsu_id && p.organisation.is_some())
                && peers.iter().any(|p| p.peer_id == liar_id);
            Ok(both.then_some(peers))
        },
    )
    .await?;
    let region_of = |id: &str| {
        peers
            .iter()
            .find(|p| p.peer_id == id)
            .and_then(|p| p.region)
            .map(Region::code)
    };
    assert_eq!(region_of(&jiangsu_id), Some(320000));
    assert_eq!(region_of(&liar_id), Some(330000));

    // The liar's NodeInfo is refused, recorded and shown in status.
    let shown = wait_until("the contradiction shown in status", WAIT, || async {
        let c = api.node().await?.charter.expect("charter");
        Ok(c.region_contradictions
            .into_iter()
            .find(|r| r.peer == liar_id))
    })
    .await?;
    assert_eq!(
        (shown.claimed.code(), shown.charter.code()),
        (320000, 330000)
    );
    let refused = api.provenance(None, Some(RecordKind::Refused)).await?;
    let record = refused
        .iter()
        .find(|r| r.counterparty.as_deref() == Some(liar_id.as_str()))
        .expect("a refusal record about the liar");
    let cause = record.cause.clone().unwrap_or_default();
    assert!(
        cause.contains("claims region 320000") && cause.contains("330000"),
        "{cause}"
    );
    // The evidence names the region the charter binds, not the claim.
    assert_eq!(record.counterparty_region.map(Region::code), Some(330000));
    // Its catalogue, published under Jiangsu's code, is refused too; Jiangsu's is held.
    wait_until("Jiangsu's catalogue held by Shanghai", WAIT, || async {
        Ok(api
            .network_catalogues()
            .await?
            .iter()
            .any(|c| c.document.publisher == jiangsu_id))
    })
    .await?;
    wait_until(
        "the liar's catalogue refused and recorded",
        WAIT,
        || async {
            let refused = api.provenance(None, Some(RecordKind::Refused)).await?;
            Ok(refused.iter().any(|r| {
                r.cause
                    .as_deref()
                    .is_some_and(|c| c.starts_with("catalogue of") && c.contains(&liar_id))
            }))
        },
    )
    .await?;
    assert!(
        api.network_catalogues()
            .await?
            .iter()
            .all(|c| c.document.publisher != liar_id),
        "the liar's catalogue is not held"
    );
    // Jiangsu, honest, left no such record.
    assert!(
        refused
            .iter()
            .all(|r| r.counterparty.as_deref() != Some(jiangsu_id.as_str()))
    );

    // The outsider is refused at the gate: counted, never recorded.
    wait_until("the outsider refused at the gate", WAIT, || async {
        Ok(api.health().await?.refused_connections > 0)
    })
    .await?;
    assert!(
        !api.peers()
            .await?
            .iter()
            .any(|p| p.peer_id == outsider.peer_id().to_string())
    );

    for node in [&mut out, &mut lr, &mut js, &mut sh] {
        node.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_config_contradicts_its_charter_does_not_start() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (a, b) = (NodeKey::generate(), NodeKey::generate());
    // Node 0 of the harness is configured as Shanghai; the charter says Anhui.
    let doc = genesis(vec![member(&a, 340000, 1)?], 1);
    let mut charter = SignedCharter::draft(doc);
    charter.sign(a.signing_key())?;
    let path = root.path().join("charter.json");
    std::fs::write(&path, charter.to_json_pretty()?)?;
    let mut node = TestNode::create(root.path(), 0, a, &[], Vec::new())?;
    node.edit_config(|c| c.federation.charter = Some(path.clone()))?;
    let e = node
        .start()
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(e.contains("node.region") && e.contains("340000"), "{e}");
    // A key the charter does not list may not start on it either.
    let other = root.path().join("other");
    std::fs::create_dir_all(&other)?;
    let mut node = TestNode::create(&other, 3, b, &[], Vec::new())?;
    node.edit_config(|c| c.federation.charter = Some(path.clone()))?;
    let e = node
        .start()
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(e.contains("not a member of charter version 1"), "{e}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_charter_is_shown_and_stops_new_grants() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (shanghai, jiangsu) = (NodeKey::generate(), NodeKey::generate());
    let mut doc = genesis(
        vec![member(&shanghai, 310000, 1)?, member(&jiangsu, 320000, 2)?],
        1,
    );
    doc.issued = "2020-01-01T00:00:00Z".into();
    doc.expires = "2021-01-01T00:00:00Z".into();
    let mut charter = SignedCharter::draft(doc);
    charter.sign(shanghai.signing_key())?;
    let path = root.path().join("charter.json");
    std::fs::write(&path, charter.to_json_pretty()?)?;
    let mut sh = TestNode::create(root.path(), 0, shanghai.clone(), &[], Vec::new())?;
    sh.edit_config(|c| c.federation.charter = Some(path.clone()))?;
    sh.start().await?;
    let boot = vec![sh.tcp_address().await?];
    let mut js = TestNode::create(root.path(), 1, jiangsu, &[shanghai.peer_id()], boot)?;
    js.edit_config(|c| {
        c.federation.members.clear();
        c.federation.charter = Some(path.clone());
    })?;
    js.start().await?;
    let mut net = TestNet {
        root,
        nodes: vec![sh, js],
    };
    net.wait_full_mesh().await?;
    let view = net.api(0)?.node().await?;
    assert_eq!(view.charter.map(|c| c.state), Some("expired".to_string()));

    let dir = tempfile::tempdir()?;
    fixtures::provider(&net, dir.path(), 10).await?;
    let asked = net
        .api(1)?
        .request(&fixtures::request_body(COND, "核验", &[]))
        .await?;
    let e = net
        .api(0)?
        .approve(&asked.id, &ApproveBody::default())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("expired") && e.contains("no new grants"), "{e}");
    net.stop_all().await
}
