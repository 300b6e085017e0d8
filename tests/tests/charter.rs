//! Nodes started on a federation charter (issue 14): the charter's keys are the members, and a
//! member's region is the charter's. A member whose NodeInfo claims another province is refused,
//! recorded and shown, and still counted in the charter's region; a charter member is admitted
//! with its region; a key the charter does not list is refused at the gate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use anyhow::Result;
use yrd_node::api::exchange::ApproveBody;
use yrd_node::identity::NodeKey;
use yrd_node::model::charter::{Charter, Role, SignedCharter};
use yrd_node::model::provenance::RecordKind;
use yrd_node::model::region::Region;
use yrd_tests::charter::{four_founders, genesis, member};
use yrd_tests::fixtures::{self, COND};
use yrd_tests::{TestNet, TestNode, WAIT, wait_until};

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

fn index_of(code: u32) -> Result<usize> {
    yrd_node::model::region::all()
        .position(|r| r.code == code)
        .ok_or_else(|| anyhow::anyhow!("no region {code}"))
}

async fn versions(net: &TestNet) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for i in 0..net.nodes.len() {
        out.push(net.api(i)?.federation().await?.charter.version);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_joins_with_three_of_four_founders_and_a_removed_member_is_cut_off() -> Result<()> {
    use yrd_node::model::charter::Change;
    let root = tempfile::tempdir()?;
    let (keys, genesis_signed, nodes) = four_founders(root.path()).await?;
    let boot = nodes[0].tcp_address().await?;
    let mut net = TestNet { root, nodes };
    net.wait_full_mesh().await?;

    // Suzhou runs on a member list naming the founders; their gates refuse it for now.
    let city_key = NodeKey::generate();
    let city_root = net.root.path().join("city");
    std::fs::create_dir_all(&city_root)?;
    let founder_ids: Vec<_> = keys.iter().map(NodeKey::peer_id).collect();
    let mut city = TestNode::create(
        &city_root,
        index_of(320500)?,
        city_key.clone(),
        &founder_ids,
        vec![boot.clone()],
    )?;
    city.start().await?;
    wait_until("the city refused at the gate", WAIT, || async {
        Ok(net.api(0)?.health().await?.refused_connections > 0)
    })
    .await?;

    // A proposal adding Suzhou, submitted unsigned at Shanghai, reaches every founder.
    let mut suzhou = member(&city_key, 320500, 9)?;
    suzhou.role = Role::Member;
    let v2 = genesis_signed.document.next(
        &[Change::AddMember(suzhou)],
        "2026-02-01T00:00:00Z".into(),
        "2099-01-01T00:00:00Z".into(),
    )?;
    let submitted = net
        .api(0)?
        .submit_proposal(&SignedCharter::draft(v2))
        .await?;
    let digest = submitted.digest.clone();
    assert!(!submitted.ready && submitted.signers.is_empty());
    for i in 1..4 {
        let api = net.api(i)?;
        wait_until("the proposal gossiped to every founder", WAIT, || async {
            Ok(api.proposals().await?.iter().any(|p| p.digest == digest))
        })
        .await?;
    }
    // Two founders approve, each with its own key, on its own node.
    net.api(1)?.sign_proposal(&digest).await?;
    net.api(2)?.sign_proposal(&digest).await?;
    for i in 0..4 {
        let api = net.api(i)?;
        wait_until("both approvals seen by every founder", WAIT, || async {
            Ok(api
                .proposals()
                .await?
                .iter()
                .any(|p| p.digest == digest && p.signers.len() == 2))
        })
        .await?;
    }
    assert_eq!(
        versions(&net).await?,
        vec![1, 1, 1, 1],
        "2 of 3 is not enough"
    );
    let lacking = net.api(0)?.proposals().await?[0]
        .lacking
        .clone()
        .unwrap_or_default();
    assert!(lacking.contains("2 of the 3"), "{lacking}");

    // The third applies it everywhere within seconds.
    let started = std::time::Instant::now();
    let signed = net.api(3)?.sign_proposal(&digest).await?;
    assert!(signed.ready, "{signed:?}");
    wait_until("version 2 on every founder", WAIT, || async {
        Ok(versions(&net).await? == vec![2, 2, 2, 2])
    })
    .await?;
    let spread = started.elapsed();
    eprintln!("charter version 2 applied on 4 founders {spread:?} after the 3rd approval");
    assert!(spread < std::time::Duration::from_secs(10), "{spread:?}");
    for i in 0..4 {
        assert!(
            net.api(i)?.proposals().await?.is_empty(),
            "obsolete proposal dropped"
        );
        let applied = net
            .api(i)?
            .provenance(None, Some(RecordKind::CharterApplied))
            .await?;
        assert_eq!(
            applied.iter().filter_map(|r| r.version).collect::<Vec<_>>(),
            vec![2]
        );
    }
    let history = net.api(1)?.federation_history().await?;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].signed_by_previous.len(), 3);

    // Suzhou connects now, placed in the charter's region.
    city.node()?.net().dial(boot.clone()).await?;
    let city_id = city_key.peer_id().to_string();
    wait_until("Suzhou connected to Shanghai as 320500", WAIT, || async {
        Ok(net
            .api(0)?
            .peers()
            .await?
            .iter()
            .any(|p| p.peer_id == city_id && p.region.map(Region::code) == Some(320500)))
    })
    .await?;

    // Version 3 removes Suzhou: applied by 3 founders' signatures through the API, and Suzhou is
    // cut off from every founder within seconds.
    let current = net.api(0)?.federation().await?;
    let suzhou_id = current
        .members
        .iter()
        .find(|m| m.region.code() == 320500)
        .map(|m| m.member_id.clone())
        .expect("Suzhou listed");
    let v2_signed = net.api(0)?.federation_version(2).await?;
    let v3 = v2_signed.document.next(
        &[Change::RemoveMember(suzhou_id)],
        "2026-03-01T00:00:00Z".into(),
        "2099-01-01T00:00:00Z".into(),
    )?;
    let mut v3 = SignedCharter::draft(v3);
    for k in &keys[1..4] {
        v3.sign(k.signing_key())?;
    }
    let started = std::time::Instant::now();
    net.api(0)?.apply_charter(&v3).await?;
    wait_until("Suzhou disconnected from every founder", WAIT, || async {
        for i in 0..4 {
            if net
                .api(i)?
                .peers()
                .await?
                .iter()
                .any(|p| p.peer_id == city_id)
            {
                return Ok(false);
            }
        }
        Ok(versions(&net).await? == vec![3, 3, 3, 3])
    })
    .await?;
    let cut = started.elapsed();
    eprintln!("removed member cut off from 4 founders {cut:?} after apply");
    assert!(cut < std::time::Duration::from_secs(10), "{cut:?}");
    // Its later attempts are refused at the gate.
    let refused = net.api(1)?.health().await?.refused_connections;
    let _ = city
        .node()?
        .net()
        .dial(net.nodes[1].tcp_address().await?)
        .await;
    wait_until("Suzhou's new connection refused", WAIT, || async {
        Ok(net.api(1)?.health().await?.refused_connections > refused)
    })
    .await?;
    assert!(
        !net.api(1)?
            .peers()
            .await?
            .iter()
            .any(|p| p.peer_id == city_id),
        "not admitted again"
    );
    // An operator's second apply of an applied version only adds its signatures; another
    // document of an older version is a rollback, named.
    net.api(2)?.apply_charter(&genesis_signed).await?;
    let mut other_v2 = v2_signed.clone();
    other_v2.document.issued = "2026-02-02T00:00:00Z".into();
    let e = net
        .api(2)?
        .apply_charter(&other_v2)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("409") && e.contains("rollback"), "{e}");

    // The founder's whole log — the versions it applied included — verifies offline, with
    // the three charter versions it carries, by `yrd verify` and the Python verifier alike.
    let size = net.api(0)?.check().await?.size;
    let bundle = net.api(0)?.export_range(0, size.saturating_sub(1)).await?;
    assert_eq!(bundle.charters.as_ref().map(Vec::len), Some(3));
    assert!(
        bundle
            .entries
            .iter()
            .filter(|e| e.record.kind == RecordKind::CharterApplied)
            .count()
            >= 2,
        "versions 2 and 3 recorded"
    );
    let file = net.root.path().join("founder-log.json");
    std::fs::write(&file, serde_json::to_string_pretty(&bundle)?)?;
    yrd_tests::verifiers::both_accept(&file, "the founder's log")?;

    city.stop().await?;
    net.stop_all().await
}

/// What the hostile member claims and serves, changed by the test as it goes.
#[derive(Default)]
struct Script {
    /// The charter version its heads claim, and the digest (changed with each lie, or the
    /// node does not ask again).
    claim: u64,
    claim_digest: String,
    /// What it serves for any version asked (unless `versions` has that one).
    serve: Option<SignedCharter>,
    /// What it serves for a given version.
    versions: std::collections::BTreeMap<u64, SignedCharter>,
    /// The proposals it lists and serves.
    proposals: Vec<SignedCharter>,
}

fn serve(script: &std::sync::Mutex<Script>, charter: SignedCharter, digest: &str) {
    if let Ok(mut s) = script.lock() {
        s.serve = Some(charter);
        s.claim_digest = digest.repeat(32);
    }
}

fn scripted(script: std::sync::Arc<std::sync::Mutex<Script>>) -> yrd_tests::hostile::Behaviour {
    use yrd_node::model::message::{CharterHead, ProposalHead, Request, Response};
    use yrd_node::model::refusal::RefusalCode;
    std::sync::Arc::new(move |request: &Request| {
        let s = script.lock().ok()?;
        let digest = |c: &SignedCharter| c.document.digest().unwrap_or_default();
        Some(match request {
            Request::Heads => Response::Heads {
                catalogues: Vec::new(),
                schemas: Vec::new(),
                charter: Some(CharterHead {
                    version: s.claim,
                    digest: s.claim_digest.clone(),
                }),
            },
            Request::Charter { version } if s.versions.contains_key(version) => Response::Charter {
                charter: Box::new(s.versions.get(version)?.clone()),
            },
            Request::Charter { .. } if s.serve.is_some() => Response::Charter {
                charter: Box::new(s.serve.clone()?),
            },
            Request::CharterProposals => Response::CharterProposals {
                proposals: s
                    .proposals
                    .iter()
                    .map(|p| ProposalHead {
                        digest: digest(p),
                        version: p.document.version,
                        // More than it serves: pulled once per claim all the same.
                        signatures: 3,
                    })
                    .collect(),
            },
            Request::CharterProposal { digest: d } => Response::CharterProposal {
                charter: Box::new(s.proposals.iter().find(|p| &digest(p) == d)?.clone()),
            },
            _ => Response::Error {
                code: RefusalCode::NotFound,
                message: "nothing here".into(),
            },
        })
    })
}

/// A genesis of two founders (Shanghai `a`, Jiangsu `b`, threshold 2, both signed) and a
/// member in Anhui (`h`): `(a, b, h, genesis)`.
fn two_founders_and_anhui() -> Result<(NodeKey, NodeKey, NodeKey, SignedCharter)> {
    let (a, b, h) = (
        NodeKey::generate(),
        NodeKey::generate(),
        NodeKey::generate(),
    );
    let mut g = SignedCharter::draft(genesis(
        vec![
            member(&a, 310000, 1)?,
            member(&b, 320000, 2)?,
            member(&h, 340000, 3)?,
        ],
        2,
    ));
    g.sign(a.signing_key())?;
    g.sign(b.signing_key())?;
    Ok((a, b, h, g))
}

/// Version 2 after genesis `g`: a city in Jiangsu (Suzhou) joins as a member.
fn suzhou_joins(g: &SignedCharter) -> Result<Charter> {
    use yrd_node::model::charter::Change;
    let mut m = member(&NodeKey::generate(), 320500, 10)?;
    m.role = Role::Member;
    Ok(g.document.next(
        &[Change::AddMember(m)],
        "2026-02-01T00:00:00Z".into(),
        "2099-01-01T00:00:00Z".into(),
    )?)
}

/// A node of founder `a` started on genesis `g` in `dir`, syncing every second.
async fn founder_on(dir: &std::path::Path, a: &NodeKey, g: &SignedCharter) -> Result<TestNode> {
    let path = dir.join("charter.json");
    std::fs::write(&path, g.to_json_pretty()?)?;
    let mut node = TestNode::create(dir, 0, a.clone(), &[], Vec::new())?;
    node.edit_config(|c| {
        c.federation.charter = Some(path.clone());
        c.sync.anti_entropy_secs = 1;
    })?;
    node.start().await?;
    Ok(node)
}

/// A hostile member's bad charters are each refused naming the cause. (It also checks the
/// shipped alert rules against the metrics of a node on a charter.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_serving_bad_charters_is_refused_naming_the_cause() -> Result<()> {
    use std::sync::{Arc, Mutex};
    use yrd_node::model::charter::Change;
    use yrd_node::node::charter_sync::MAX_PROPOSALS_PER_PEER;
    use yrd_tests::hostile::HostileMember;
    let root = tempfile::tempdir()?;
    // The hostile member's NodeInfo says Anhui: the charter agrees, so only its charters lie.
    let (a, b, h, g) = two_founders_and_anhui()?;
    let mut node = founder_on(root.path(), &a, &g).await?;
    let api = node.api()?;
    let script = Arc::new(Mutex::new(Script {
        claim: 1,
        ..Script::default()
    }));
    let hostile = HostileMember::start(h.clone(), &node, scripted(script.clone())).await?;

    let adding = |n: usize| -> Result<Charter> {
        let mut m = member(&NodeKey::generate(), 320500, 10 + n)?;
        m.role = Role::Member;
        Ok(g.document.next(
            &[Change::AddMember(m)],
            "2026-02-01T00:00:00Z".into(),
            "2099-01-01T00:00:00Z".into(),
        )?)
    };
    let refused_with = |code: &'static str| {
        let api = api.clone();
        async move {
            wait_until(&format!("a refusal naming {code}"), WAIT, || async {
                let records = api.provenance(None, Some(RecordKind::Refused)).await?;
                Ok(records.iter().any(|r| {
                    r.cause
                        .as_deref()
                        .is_some_and(|c| c.contains(&format!("({code})")))
                }))
            })
            .await
        }
    };

    // A flood of proposals: it introduces at most 4, the rest refused.
    script.lock().unwrap().proposals = (0..40)
        .map(|n| adding(n).map(SignedCharter::draft))
        .collect::<Result<_>>()?;
    wait_until("the flood bounded", WAIT, || async {
        Ok(api.proposals().await?.len() == MAX_PROPOSALS_PER_PEER)
    })
    .await?;
    wait_until("the proposal over its bound refused", WAIT, || async {
        let records = api.provenance(None, Some(RecordKind::Refused)).await?;
        Ok(records.iter().any(|r| {
            r.cause
                .as_deref()
                .is_some_and(|c| c.contains("introduced 4 proposals"))
        }))
    })
    .await?;
    // Each was pulled once, though it claims signatures it never serves: the node moved on
    // from the first four to the rest rather than asking for those again each round.
    let pulled = hostile.seen("charter-proposal");
    assert!((5..=40).contains(&pulled), "{pulled} pulls");
    script.lock().unwrap().proposals.clear();

    // Version 3 served for version 2: skipped.
    let mut skip = SignedCharter::draft(adding(100)?);
    skip.document.version = 3;
    {
        let mut s = script.lock().unwrap();
        s.claim = 2;
        s.claim_digest = "01".repeat(32);
        s.serve = Some(skip);
    }
    refused_with("skipped-version").await?;
    // Another version 1, signed by nobody: a rollback.
    let mut other_genesis = SignedCharter::draft(g.document.clone());
    other_genesis.document.federation.name = "另一个联盟".into();
    // Asked again only once its claim changes.
    let served = hostile.seen("charter");
    tokio::time::timeout(
        std::time::Duration::from_secs(3),
        hostile.wait_seen("charter", served + 1),
    )
    .await
    .err()
    .ok_or_else(|| anyhow::anyhow!("asked again under the same claim"))?;
    serve(&script, other_genesis, "02");
    refused_with("rollback").await?;
    // Over 1 MiB.
    let mut huge = SignedCharter::draft(adding(101)?);
    let filler = huge.document.members[0].clone();
    for _ in 0..1500 {
        let mut m = filler.clone();
        m.organisation = "𠀀".repeat(200);
        huge.document.members.push(m);
    }
    serve(&script, huge, "03");
    refused_with("too-large").await?;
    // Version 2 below the threshold: one founder signed.
    let mut thin = SignedCharter::draft(adding(102)?);
    thin.sign(a.signing_key())?;
    serve(&script, thin, "04");
    refused_with("below-threshold-previous").await?;
    assert_eq!(api.federation().await?.charter.version, 1);

    // A valid version 2 is applied; the flood's proposals are obsolete and dropped.
    let mut v2 = SignedCharter::draft(adding(103)?);
    v2.sign(a.signing_key())?;
    v2.sign(b.signing_key())?;
    serve(&script, v2, "05");
    wait_until("version 2 applied", WAIT, || async {
        Ok(api.federation().await?.charter.version == 2)
    })
    .await?;
    assert_eq!(api.federation().await?.proposals, 0);

    // Another validly signed version 2, served for version 3: equivocation, both kept.
    let mut v2b = SignedCharter::draft(adding(104)?);
    v2b.sign(a.signing_key())?;
    v2b.sign(b.signing_key())?;
    {
        let mut s = script.lock().unwrap();
        s.claim = 3;
        s.claim_digest = "06".repeat(32);
        s.serve = Some(v2b);
    }
    // The state changes as the evidence is kept; its record follows through the group commit.
    wait_until("the equivocation seen and recorded", WAIT, || async {
        let recorded = api
            .provenance(None, Some(RecordKind::CharterEquivocation))
            .await?;
        Ok(api.federation().await?.charter.state == "equivocated" && !recorded.is_empty())
    })
    .await?;
    let alarms = api
        .provenance(None, Some(RecordKind::CharterEquivocation))
        .await?;
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0].version, Some(2));
    let metrics = api.raw().get_text("/metrics").await?;
    for line in [
        "yrd_charter_version 2",
        "yrd_charter_equivocated 1",
        "yrd_charter_proposals 0",
    ] {
        assert!(metrics.contains(line), "{line} missing");
    }
    // Every metric the shipped alert rules name is one this node exports.
    let rules = include_str!("../../scripts/yrd-alerts.yml");
    let named = alert_metrics(rules);
    assert!(named.len() >= 10, "{named:?}");
    for name in named {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"))),
            "scripts/yrd-alerts.yml names {name}, which /metrics does not have"
        );
    }

    hostile.shutdown().await;
    // Both documents were kept: after a restart the node is still equivocated, on version 2.
    node.restart().await?;
    let after = node.api()?.federation().await?.charter;
    assert_eq!((after.version, after.state.as_str()), (2, "equivocated"));
    node.stop().await?;
    Ok(())
}

/// Two founders sign two different versions 2 (an equivocation); the node applied one, a
/// member follows the other and announces a version 3 built on it. The node pulls that member's
/// version 2 (the fork: kept as evidence, recorded), and version 3 resolves it for the document
/// it names, which takes version 2's place, and the state is in force again (no longer blocking
/// grants); after a restart the node is still resolved, and the dropped document applied again
/// is refused as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_version_resolves_an_equivocation_even_across_a_fork() -> Result<()> {
    use std::sync::{Arc, Mutex};
    use yrd_node::model::charter::Change;
    use yrd_tests::hostile::HostileMember;
    let root = tempfile::tempdir()?;
    let (a, b, h, g) = two_founders_and_anhui()?;
    let next = |prev: &SignedCharter, n: usize| -> Result<SignedCharter> {
        let mut m = member(&NodeKey::generate(), 320500, 10 + n)?;
        m.role = Role::Member;
        let mut c = SignedCharter::draft(prev.document.next(
            &[Change::AddMember(m)],
            "2026-02-01T00:00:00Z".into(),
            "2099-01-01T00:00:00Z".into(),
        )?);
        c.sign(a.signing_key())?;
        c.sign(b.signing_key())?;
        Ok(c)
    };
    let (v2, v2b) = (next(&g, 1)?, next(&g, 2)?);
    let v3b = next(&v2b, 3)?;
    let digest = |c: &SignedCharter| c.document.digest().unwrap_or_default();

    let mut node = founder_on(root.path(), &a, &g).await?;
    let api = node.api()?;
    api.apply_charter(&v2).await?;
    assert_eq!(api.federation().await?.charter.version, 2);

    // The member on the other side of the fork claims version 3 and serves its versions.
    let script = Arc::new(Mutex::new(Script {
        claim: 3,
        claim_digest: digest(&v3b),
        versions: [(2, v2b.clone()), (3, v3b.clone())].into(),
        ..Script::default()
    }));
    let member_h = HostileMember::start(h.clone(), &node, scripted(script.clone())).await?;
    // Applied, and recorded (the record follows the chain through the group commit).
    wait_until("version 3 applied and recorded", WAIT, || async {
        let applied = api
            .provenance(None, Some(RecordKind::CharterApplied))
            .await?;
        Ok(applied.iter().any(|r| r.version == Some(3)))
    })
    .await?;
    let view = api.federation().await?.charter;
    assert_eq!(view.state, "in-force", "{view:?}");
    // Version 2 is now the document version 3 names.
    assert_eq!(digest(&api.federation_version(2).await?), digest(&v2b));
    // The fork was recorded as an equivocation, and its resolution with the version applied.
    let alarms = api
        .provenance(None, Some(RecordKind::CharterEquivocation))
        .await?;
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    let applied = api
        .provenance(None, Some(RecordKind::CharterApplied))
        .await?;
    let resolution = applied
        .iter()
        .find(|r| r.version == Some(3))
        .and_then(|r| r.cause.clone())
        .unwrap_or_default();
    assert!(
        resolution.contains("resolves the equivocation at version 2")
            && resolution.contains(&format!("keeping document {}", digest(&v2b))),
        "{resolution}"
    );
    let metrics = api.raw().get_text("/metrics").await?;
    assert!(metrics.contains("yrd_charter_equivocated 0"), "{metrics}");
    member_h.shutdown().await;

    // After a restart: still resolved, on version 3; the dropped document is refused as such.
    node.restart().await?;
    let api = node.api()?;
    let view = api.federation().await?.charter;
    assert_eq!((view.version, view.state.as_str()), (3, "in-force"));
    let again = api.apply_charter(&v2).await;
    let message = format!("{:?}", again.err());
    assert!(message.contains("dropped"), "{message}");
    assert_eq!(api.federation().await?.charter.state, "in-force");
    node.stop().await?;
    Ok(())
}

/// A proposal of version 2 that arrives after version 2 was applied (the signatures met
/// elsewhere and the version overtook its proposal) is obsolete: dropped, never recorded as a
/// refusal of the honest member that served it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_overtaken_by_its_version_is_not_held_against_the_member() -> Result<()> {
    use std::sync::{Arc, Mutex, mpsc};
    use yrd_node::model::message::{CharterHead, ProposalHead, Request, Response};
    use yrd_tests::hostile::HostileMember;
    let root = tempfile::tempdir()?;
    let (a, b, h, g) = two_founders_and_anhui()?;
    let doc = suzhou_joins(&g)?;
    let mut proposal = SignedCharter::draft(doc);
    proposal.sign(a.signing_key())?;
    let mut v2 = proposal.clone();
    v2.sign(b.signing_key())?;
    let mut node = founder_on(root.path(), &a, &g).await?;
    let api = node.api()?;

    // The member lists the proposal at version 1 and answers the pull only when told to.
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let g_head = CharterHead {
        version: 1,
        digest: g.document.digest()?,
    };
    let served = proposal.clone();
    let listed = ProposalHead {
        digest: proposal.document.digest()?,
        version: 2,
        signatures: 1,
    };
    let behaviour: yrd_tests::hostile::Behaviour = Arc::new(move |request: &Request| {
        Some(match request {
            Request::Heads => Response::Heads {
                catalogues: Vec::new(),
                schemas: Vec::new(),
                charter: Some(g_head.clone()),
            },
            Request::CharterProposals => Response::CharterProposals {
                proposals: vec![listed.clone()],
            },
            Request::CharterProposal { .. } => {
                // Blocks this member's answering task (not the node) until the test says.
                let _ = released
                    .lock()
                    .ok()?
                    .recv_timeout(std::time::Duration::from_secs(20));
                Response::CharterProposal {
                    charter: Box::new(served.clone()),
                }
            }
            _ => return None,
        })
    });
    let member_h = HostileMember::start(h.clone(), &node, behaviour).await?;
    member_h.wait_seen("charter-proposal", 1).await?;
    // While the node waits for the proposal, version 2 is applied.
    api.apply_charter(&v2).await?;
    let heads_shown = member_h.seen("tree-head");
    release.send(())?;
    // The round that pulled it ends by showing our log's head.
    member_h.wait_seen("tree-head", heads_shown + 1).await?;
    let refused = api.provenance(None, Some(RecordKind::Refused)).await?;
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(api.federation().await?.charter.version, 2);
    member_h.shutdown().await;
    node.stop().await?;
    Ok(())
}

/// A proposal carried by a member's gossip is judged exactly as a pulled one: only the
/// signatures that verify over it are kept (a forged one is dropped), one naming another
/// previous version is refused and recorded with its cause, and one whose signatures meet the
/// threshold is applied — with nothing pulled from the member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_carried_by_gossip_is_judged_as_a_pulled_one() -> Result<()> {
    use yrd_node::model::message::Announcement;
    use yrd_tests::hostile::{HostileMember, silent};
    let root = tempfile::tempdir()?;
    let (a, b, h, g) = two_founders_and_anhui()?;
    let mut node = founder_on(root.path(), &a, &g).await?;
    let api = node.api()?;
    let hostile = HostileMember::start(h.clone(), &node, silent()).await?;
    let carried = |p: &SignedCharter| -> Result<Announcement> {
        Ok(Announcement::CharterProposal {
            version: p.document.version,
            digest: p.document.digest()?,
            signatures: u32::try_from(p.signatures.len())?,
            charter: Some(Box::new(p.clone())),
        })
    };
    let doc = suzhou_joins(&g)?;
    let digest = doc.digest()?;

    // Jiangsu's signature, and one claimed for Shanghai (Jiangsu's bytes under Shanghai's key).
    let mut jiangsu = SignedCharter::draft(doc.clone());
    jiangsu.sign(b.signing_key())?;
    let mut forged = jiangsu.clone();
    let mut fake = forged.signatures[0].clone();
    fake.signer = a.public_hex();
    forged.signatures.push(fake);
    hostile.announce(&carried(&forged)?).await?;
    let held = wait_until("the carried proposal held", WAIT, || async {
        Ok(api
            .proposals()
            .await?
            .into_iter()
            .find(|p| p.digest == digest))
    })
    .await?;
    assert_eq!(
        held.signers,
        vec![b.public_hex()],
        "only the valid signature kept"
    );
    assert!(!held.ready, "{held:?}");
    assert_eq!(api.federation().await?.charter.version, 1);

    // Another previous version named: refused, recorded against the member with the rule.
    let mut astray = doc.clone();
    astray.previous = Some("0".repeat(64));
    let mut astray = SignedCharter::draft(astray);
    astray.sign(b.signing_key())?;
    hostile.announce(&carried(&astray)?).await?;
    wait_until("the carried proposal's refusal", WAIT, || async {
        let records = api.provenance(None, Some(RecordKind::Refused)).await?;
        Ok(records.iter().any(|r| {
            r.counterparty.as_deref() == Some(h.peer_id().to_string().as_str())
                && r.cause
                    .as_deref()
                    .is_some_and(|c| c.contains("(wrong-previous)"))
        }))
    })
    .await?;

    // Shanghai's signature, in a copy of its own (founders sign apart: it carries as many
    // signatures as the one held, and another one): applied from the gossip alone.
    let mut shanghai = SignedCharter::draft(doc.clone());
    shanghai.sign(a.signing_key())?;
    hostile.announce(&carried(&shanghai)?).await?;
    wait_until(
        "version 2 applied from the carried proposal",
        WAIT,
        || async { Ok(api.federation().await?.charter.version == 2) },
    )
    .await?;
    assert_eq!(hostile.seen("charter-proposal"), 0, "nothing was pulled");
    hostile.shutdown().await;
    node.stop().await?;
    Ok(())
}

/// Signatures a member announces without their document (the proposal was announced with it
/// before) are merged into the copy held, each verified over the document: a forged one is not
/// kept, and the real one that completes the threshold applies the version with nothing pulled.
/// A member that lacks the document pulls the proposal from the sender — or, when the sender
/// says the version is applied, the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_sent_without_their_document_are_merged_or_what_they_name_pulled() -> Result<()>
{
    use yrd_node::model::message::Announcement;
    use yrd_tests::hostile::{HostileMember, silent};
    let root = tempfile::tempdir()?;
    let (a, b, h, g) = two_founders_and_anhui()?;
    let mut node = founder_on(root.path(), &a, &g).await?;
    let api = node.api()?;
    let hostile = HostileMember::start(h.clone(), &node, silent()).await?;
    let signatures = |p: &SignedCharter, applied: bool| -> Result<Announcement> {
        Ok(Announcement::CharterSignatures {
            version: p.document.version,
            digest: p.document.digest()?,
            signatures: p.signatures.clone(),
            applied,
        })
    };
    let doc = suzhou_joins(&g)?;
    let digest = doc.digest()?;

    // The proposal with Jiangsu's signature, carried with its document.
    let mut jiangsu = SignedCharter::draft(doc.clone());
    jiangsu.sign(b.signing_key())?;
    hostile
        .announce(&Announcement::CharterProposal {
            version: 2,
            digest: digest.clone(),
            signatures: 1,
            charter: Some(Box::new(jiangsu.clone())),
        })
        .await?;
    wait_until("the carried proposal held", WAIT, || async {
        Ok(api.proposals().await?.iter().any(|p| p.digest == digest))
    })
    .await?;

    // Shanghai's name on Jiangsu's signature bytes, alone: not kept, nothing applied.
    let mut shanghai = SignedCharter::draft(doc.clone());
    shanghai.sign(a.signing_key())?;
    let mut forged = jiangsu.signatures[0].clone();
    forged.signer = a.public_hex();
    let mut forgery = SignedCharter::draft(doc.clone());
    forgery.signatures = vec![forged];
    hostile.announce(&signatures(&forgery, false)?).await?;
    // Shanghai's true signature on another document of version 2: the proposal held is
    // untouched by it (a signature is verified over the document it is merged into).
    let mut other = suzhou_joins(&g)?;
    other.issued = "2026-02-02T00:00:00Z".into();
    let mut elsewhere = SignedCharter::draft(other);
    elsewhere.sign(a.signing_key())?;
    let mut misfiled = SignedCharter::draft(doc.clone());
    misfiled.signatures = elsewhere.signatures.clone();
    hostile.announce(&signatures(&misfiled, false)?).await?;
    // The announcement that completes it comes after both: once it is applied, both were
    // taken and neither was kept.
    hostile.announce(&signatures(&shanghai, true)?).await?;
    wait_until("version 2 applied from the signatures", WAIT, || async {
        Ok(api.federation().await?.charter.version == 2)
    })
    .await?;
    let applied = api.federation_version(2).await?;
    let mut signers: Vec<String> = applied
        .signatures
        .iter()
        .map(|s| s.signer.clone())
        .collect();
    signers.sort();
    let mut expected = vec![a.public_hex(), b.public_hex()];
    expected.sort();
    assert_eq!(signers, expected, "only the two valid signatures");
    assert_eq!(hostile.seen("charter-proposal"), 0, "nothing was pulled");
    assert_eq!(hostile.seen("charter"), 0, "nothing was pulled");

    // Version 3's signatures, its document never sent: the proposal is asked of the sender;
    // said to be applied, the version is.
    let mut nantong = member(&NodeKey::generate(), 320600, 11)?;
    nantong.role = Role::Member;
    let mut third = SignedCharter::draft(applied.document.next(
        &[yrd_node::model::charter::Change::AddMember(nantong)],
        "2026-03-01T00:00:00Z".into(),
        "2099-01-01T00:00:00Z".into(),
    )?);
    third.sign(b.signing_key())?;
    hostile.announce(&signatures(&third, false)?).await?;
    hostile.wait_seen("charter-proposal", 1).await?;
    hostile.announce(&signatures(&third, true)?).await?;
    hostile.wait_seen("charter", 1).await?;
    assert_eq!(api.federation().await?.charter.version, 2);
    hostile.shutdown().await;
    node.stop().await?;
    Ok(())
}

/// A chain file (`[federation] charter` as a JSON array) starts a node on every version in it;
/// one that is empty, not an array of charters, or whose versions do not follow each other is
/// refused at start, naming the file, the index and the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_file_starts_a_node_on_its_versions_and_a_broken_one_is_refused() -> Result<()> {
    use yrd_node::model::charter::Change;
    let root = tempfile::tempdir()?;
    let (a, city) = (NodeKey::generate(), NodeKey::generate());
    let mut v1 = SignedCharter::draft(genesis(vec![member(&a, 310000, 1)?], 1));
    v1.sign(a.signing_key())?;
    // Version 2 adds the city: it starts on the chain [v1, v2], where it is a member.
    let mut suzhou = member(&city, 320500, 2)?;
    suzhou.role = Role::Member;
    let doc2 = v1.document.next(
        &[Change::AddMember(suzhou)],
        "2026-02-01T00:00:00Z".into(),
        "2099-01-01T00:00:00Z".into(),
    )?;
    let mut v2 = SignedCharter::draft(doc2.clone());
    v2.sign(a.signing_key())?;
    let index = yrd_node::model::region::all()
        .position(|r| r.code == 320500)
        .expect("Suzhou is in the table");
    let start = |name: &str, chain: String| {
        let root = root.path().join(name);
        let city = city.clone();
        async move {
            std::fs::create_dir_all(&root)?;
            let path = root.join("chain.json");
            std::fs::write(&path, chain)?;
            let mut node = TestNode::create(&root, index, city, &[], Vec::new())?;
            node.edit_config(|c| c.federation.charter = Some(path.clone()))?;
            let started = node.start().await.map_err(|e| format!("{e:#}"));
            if started.is_ok() {
                let version = node.api()?.node().await?.charter.map(|c| c.version);
                node.stop().await?;
                return Ok::<_, anyhow::Error>(Ok(version));
            }
            Ok(started.map(|()| None))
        }
    };
    let chain = |versions: &[&SignedCharter]| serde_json::to_string_pretty(versions);
    assert_eq!(start("joined", chain(&[&v1, &v2])?).await?, Ok(Some(2)));
    // Broken chains: empty, not charters, a version that skips one.
    let e = start("empty", "[]".into()).await?.expect_err("empty");
    assert!(
        e.contains("chain.json") && e.contains("an empty chain"),
        "{e}"
    );
    let e = start("numbers", "[1, 2]".into())
        .await?
        .expect_err("not charters");
    assert!(e.contains("chain.json: [0]"), "{e}");
    let mut v3 = SignedCharter::draft(doc2.next(
        &[],
        "2026-03-01T00:00:00Z".into(),
        "2099-01-01T00:00:00Z".into(),
    )?);
    v3.sign(a.signing_key())?;
    let e = start("skipped", chain(&[&v1, &v3])?)
        .await?
        .expect_err("skipped");
    assert!(e.contains("[1] version 3") && e.contains("skipped"), "{e}");
    Ok(())
}

/// The `yrd_…` metric names in the `expr:` lines of an alert rules file.
fn alert_metrics(rules: &str) -> std::collections::BTreeSet<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .flat_map(|expr| {
            expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("yrd_"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}
