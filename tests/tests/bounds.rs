//! Bounds on what peers can make a node keep (issue 13, holes 4, 5, 8 and 11): refused
//! non-members leave counters, not records; peer strings are capped and each member has a budget
//! of refusal records; a received grant cannot replace one we issued; a receipt must come from
//! the grantee of the grant it names; a grant interrupted before its request's state leaves no
//! second grant possible; partial downloads nobody will resume are collected at start. Where a
//! peer attacks, it is the harness's [`HostileMember`] (a node's key taken over, or a fresh
//! one), and an honest member is served while it does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;
use yrd_node::api::exchange::ApproveBody;
use yrd_node::identity::NodeKey;
use yrd_node::model::catalogue::ShareType;
use yrd_node::model::exchange::{Grant, Manifest, Receipt};
use yrd_node::model::message::{Request, RequestStatus, Response};
use yrd_node::model::provenance::RecordKind;
use yrd_node::model::refusal::RefusalCode;
use yrd_node::model::signed::Signed;
use yrd_node::model::transfer::{FetchOpen, FetchReply};
use yrd_node::node::access::{Direction, GrantState};
use yrd_node::node::transfer::TransferStatus;
use yrd_node::store::RecordTree;
use yrd_tests::api::fetch_body;
use yrd_tests::fixtures::{
    COND, FIELDS, OPEN, STANDARD, UNMARKED, grant, offer, provider, request_body,
};
use yrd_tests::hostile::{
    HostileMember, network_with, new_snapshot, quick_mesh, silent, take_over,
};
use yrd_tests::{TestNet, WAIT, wait_until};

/// `n` meshed nodes, node 0 the provider of the fixtures' offers.
async fn exchange(n: usize) -> Result<(TestNet, TempDir)> {
    let net = quick_mesh(n).await?;
    let dir = tempfile::tempdir()?;
    provider(&net, dir.path(), 50).await?;
    Ok((net, dir))
}

/// Shanghai (node 0) grants Jiangsu (node 1) its conditional offer; returns the grant.
async fn cond_grant(net: &TestNet) -> Result<Signed<Grant>> {
    grant(
        &net.api(0)?,
        &net.api(1)?,
        &request_body(COND, "跨省通办企业核验", &FIELDS),
        &ApproveBody::default(),
    )
    .await
}

/// A fetch of the provider's conditional offer under grant `id`.
fn under(id: &str) -> yrd_node::api::exchange::FetchBody {
    yrd_node::api::exchange::FetchBody {
        grant: Some(id.into()),
        ..fetch_body(&format!("310000/{COND}"))
    }
}

/// Node `i` fetches the provider's unconditional offer in full.
async fn honest_fetch(net: &TestNet, i: usize) -> Result<()> {
    net.api(i)?.fetch_done(&format!("310000/{OPEN}")).await?;
    Ok(())
}

/// Records of `kind` in node `i`'s log whose counterparty is `peer`.
async fn records_with(
    net: &TestNet,
    i: usize,
    kind: RecordKind,
    peer: &str,
) -> Result<Vec<yrd_node::model::provenance::ProvenanceRecord>> {
    Ok(net
        .api(i)?
        .provenance(None, Some(kind))
        .await?
        .into_iter()
        .filter(|r| r.counterparty.as_deref() == Some(peer))
        .collect())
}

// ------------------------------------------------------------------------------------------------
// Hole 4: refusals from outside the federation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_non_members_are_counted_and_never_recorded() -> Result<()> {
    let mut net = quick_mesh(2).await?;
    let api = net.api(0)?;
    let before = api.health().await?.refused_connections;
    // Fresh keys are free: each outsider is a new peer id, on the harness's stack.
    const OUTSIDERS: u64 = 6;
    for i in 0..OUTSIDERS {
        let outsider = HostileMember::connect(NodeKey::generate(), &net.nodes[0], silent()).await?;
        wait_until(&format!("outsider {i} to be refused"), WAIT, || async {
            Ok(api.health().await?.refused_connections > before + i)
        })
        .await?;
        outsider.shutdown().await;
    }
    // The member is served meanwhile: its new catalogue arrives.
    let sequence = new_snapshot(&net.nodes[1], "need-after-outsiders").await?;
    let publisher = net.nodes[1].peer_id().to_string();
    wait_until("the member's catalogue", WAIT, || async {
        Ok(net.nodes[0]
            .node()?
            .network_catalogues()
            .iter()
            .any(|c| c.document.publisher == publisher && c.document.sequence >= sequence))
    })
    .await?;
    let health = api.health().await?;
    assert!(
        health.refused_connections >= before + OUTSIDERS,
        "{health:?}"
    );
    // The counter is in /metrics as well.
    let metrics = api.raw().get_text("/metrics").await?;
    assert!(
        metrics.contains("yrd_refused_connections_total"),
        "{metrics}"
    );
    // The permanent log holds nothing the outsiders caused.
    let refused = api.provenance(None, Some(RecordKind::Refused)).await?;
    assert!(refused.is_empty(), "{refused:?}");
    net.stop_all().await
}

/// A member holds at most `MAX_CONNECTIONS_PER_PEER` connections with a node: each one may make
/// the node buffer up to its multiplexer's window, so their number is bounded too. Six swarms
/// with one member's key connect; four are held, the others refused (and counted) as they try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_holds_at_most_its_bound_of_connections() -> Result<()> {
    use yrd_node::net::gate::MAX_CONNECTIONS_PER_PEER;
    const SWARMS: usize = 6;
    let key = NodeKey::generate();
    let mut net = network_with(2, &key, |_, _| {}).await?;
    net.wait_full_mesh().await?;
    let api = net.api(0)?;
    let mut swarms = vec![HostileMember::start(key.clone(), &net.nodes[0], silent()).await?];
    for _ in 1..SWARMS {
        swarms.push(HostileMember::connect(key.clone(), &net.nodes[0], silent()).await?);
    }
    let id = key.peer_id().to_string();
    wait_until(
        "the node to hold four and refuse the rest",
        WAIT,
        || async {
            let mut held = 0;
            for s in &swarms {
                held += usize::from(s.connected().await?);
            }
            let health = api.health().await?;
            Ok(held == MAX_CONNECTIONS_PER_PEER
                && health.excess_connections >= (SWARMS - MAX_CONNECTIONS_PER_PEER) as u64)
        },
    )
    .await?;
    let peers = net.nodes[0].peers().await?;
    let member = peers
        .iter()
        .find(|p| p.peer_id == id)
        .context("the member")?;
    assert!(
        member.addresses.len() <= MAX_CONNECTIONS_PER_PEER,
        "{:?}",
        member.addresses
    );
    // Not a non-member's refusal, and the honest member is still connected.
    assert_eq!(api.health().await?.refused_connections, 0);
    let honest = net.nodes[1].peer_id().to_string();
    assert!(peers.iter().any(|p| p.peer_id == honest), "{peers:?}");
    let metrics = api.raw().get_text("/metrics").await?;
    assert!(
        metrics.contains("yrd_excess_connections_total"),
        "{metrics}"
    );
    for s in &swarms {
        s.shutdown().await;
    }
    net.stop_all().await
}

// ------------------------------------------------------------------------------------------------
// Hole 5: peer strings and refusal records

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_fetch_keeps_the_peers_dataset_string_capped() -> Result<()> {
    let key = NodeKey::generate();
    let mut net = network_with(2, &key, |_, _| {}).await?;
    net.wait_full_mesh().await?;
    let hostile = HostileMember::start(key, &net.nodes[0], silent()).await?;
    let huge = "x".repeat(60 * 1024);
    let open = FetchOpen {
        dataset: huge,
        version: None,
        grant: None,
    };
    let reply = hostile.fetch_stream().await?.open(&open).await?;
    assert!(matches!(reply, FetchReply::Refused { .. }), "{reply:?}");
    let fetcher = hostile.peer_id().to_string();
    let records = wait_until("the refusal to be recorded", WAIT, || async {
        let r = records_with(&net, 0, RecordKind::Refused, &fetcher).await?;
        Ok((!r.is_empty()).then_some(r))
    })
    .await?;
    for r in &records {
        let stored = serde_json::to_string(r)?;
        assert!(
            stored.len() < 2048,
            "{} bytes kept: {}",
            stored.len(),
            &stored[..200]
        );
        assert!(
            r.cause.as_deref().is_some_and(|c| c.contains("truncated")),
            "{r:?}"
        );
    }
    // The honest member is served: its head is witnessed.
    net.nodes[1]
        .node()?
        .send_head(net.nodes[0].peer_id())
        .await?;
    hostile.shutdown().await;
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_causes_at_most_its_budget_of_refusal_records() -> Result<()> {
    let key = NodeKey::generate();
    let mut net = network_with(2, &key, |_, _| {}).await?;
    net.wait_full_mesh().await?;
    let hostile = HostileMember::start(key, &net.nodes[0], silent()).await?;
    let sent = yrd_node::node::REFUSAL_RECORDS_PER_PEER_PER_HOUR + 10;
    let refusals = async {
        for _ in 0..sent {
            // A decision carrying neither a grant nor a denial: refused, every time.
            let decision = Request::Decision {
                grant: None,
                denial: None,
            };
            let answer = hostile.request(decision).await?;
            anyhow::ensure!(matches!(answer, Response::Error { .. }), "{answer:?}");
        }
        anyhow::Ok(())
    };
    // An honest member's heads are witnessed meanwhile.
    let honest = async {
        for _ in 0..3 {
            net.nodes[1]
                .node()?
                .send_head(net.nodes[0].peer_id())
                .await?;
        }
        anyhow::Ok(())
    };
    let (refused, served) = tokio::join!(refusals, honest);
    refused?;
    served?;
    let who = hostile.peer_id().to_string();
    let kept = records_with(&net, 0, RecordKind::Refused, &who).await?;
    assert_eq!(
        kept.len() as u64,
        yrd_node::node::REFUSAL_RECORDS_PER_PEER_PER_HOUR,
        "records kept"
    );
    let health = net.api(0)?.health().await?;
    assert_eq!(health.refusal_records_dropped, 10, "{health:?}");
    let metrics = net.api(0)?.raw().get_text("/metrics").await?;
    assert!(
        metrics.contains("yrd_refusal_records_dropped_total 10"),
        "{metrics}"
    );
    hostile.shutdown().await;
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_sent_again_adds_no_record() -> Result<()> {
    let (mut net, _dir) = exchange(3).await?;
    let js = net.api(1)?;
    js.fetch_done(&format!("310000/{OPEN}")).await?;
    let who = net.nodes[1].peer_id().to_string();
    wait_until("the receipt to be recorded", WAIT, || async {
        Ok(records_with(&net, 0, RecordKind::ReceiptReceived, &who)
            .await?
            .len()
            == 1)
    })
    .await?;
    let first = net
        .api(0)?
        .receipts()
        .await?
        .into_iter()
        .next()
        .context("no receipt held")?;
    let hostile = take_over(&mut net, 1, 0).await?;
    let resend = async {
        for i in 0..5 {
            let again = Receipt {
                received_at: format!("2026-12-0{}T00:00:00Z", i + 1),
                ..first.document.clone()
            };
            let signed = Signed::sign(again, hostile.key().signing_key())?;
            let receipt = Request::Receipt {
                receipt: Box::new(signed),
            };
            let answer = hostile.request(receipt).await?;
            anyhow::ensure!(matches!(answer, Response::Ack), "{answer:?}");
        }
        anyhow::Ok(())
    };
    let (resent, served) = tokio::join!(resend, honest_fetch(&net, 2));
    resent?;
    served?;
    let kept = records_with(&net, 0, RecordKind::ReceiptReceived, &who).await?;
    assert_eq!(kept.len(), 1, "{kept:?}");
    hostile.shutdown().await;
    net.stop_all().await
}

// ------------------------------------------------------------------------------------------------
// Hole 8: a received grant with the id of one we issued

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_grant_cannot_replace_one_we_issued() -> Result<()> {
    let (mut net, _dir) = exchange(3).await?;
    let (sh, js) = (net.api(0)?, net.api(1)?);
    // Shanghai grants Jiangsu its conditional offer, then revokes the grant.
    let issued = cond_grant(&net).await?;
    let id = issued.document.id.clone();
    sh.revoke(&id, "项目结束").await?;
    // Jiangsu offers a conditional dataset; Shanghai asks for it.
    net.wait_schema(STANDARD, "1.0.0").await?;
    js.add_offer(&offer(
        "js-cond",
        STANDARD,
        ShareType::Conditional,
        Some("审批"),
    ))
    .await?;
    net.wait_catalogue_of(1).await?;
    let asked = sh
        .request(&yrd_node::api::exchange::RequestBody {
            target: "320000/js-cond".into(),
            purpose: "核验".into(),
            basis: "《条例》".into(),
            fields: vec!["uscc".into()],
        })
        .await?;
    // Jiangsu turns hostile and answers with a grant that reuses the id of the grant Shanghai
    // issued to it.
    let hostile = take_over(&mut net, 1, 0).await?;
    let now = std::time::SystemTime::now();
    let stamp = yrd_node::clock::format_system_time;
    let colliding = Grant {
        id: id.clone(),
        request_id: asked.id.clone(),
        request_digest: asked.request.digest_hex()?,
        provider: hostile.peer_id().to_string(),
        grantee: net.nodes[0].peer_id().to_string(),
        dataset: "js-cond".into(),
        purpose: "核验".into(),
        legal_basis: "《条例》".into(),
        fields: vec!["uscc".into()],
        masks: Vec::new(),
        not_before: stamp(now),
        expires_at: stamp(now + Duration::from_secs(86_400)),
        issued_at: stamp(now),
        decided_by: "operator".into(),
        modes: Vec::new(),
        query_limits: None,
    };
    let signed = Signed::sign(colliding, hostile.key().signing_key())?;
    let decision = hostile.request(Request::Decision {
        grant: Some(Box::new(signed)),
        denial: None,
    });
    // Zhejiang is served meanwhile.
    let (answer, served) = tokio::join!(decision, honest_fetch(&net, 2));
    served?;
    // Accepted or refused, our issued grant and its revocation stay as they were.
    let _ = answer?;
    let ours = sh.grants(Some(Direction::Out)).await?;
    let kept = ours
        .iter()
        .find(|g| g.record.id == id)
        .context("the issued grant is gone")?;
    assert_eq!(kept.state, GrantState::Revoked, "{kept:?}");
    assert_eq!(kept.record.grant, issued);
    // The revoked grant still refuses the hostile member's fetch under it.
    let open = FetchOpen {
        dataset: COND.into(),
        version: None,
        grant: Some(id.clone()),
    };
    let refused = hostile.fetch_stream().await?.open(&open).await?;
    assert!(
        matches!(&refused, FetchReply::Refused { code, message }
            if *code == RefusalCode::GrantInvalid && message.contains("revoked")),
        "{refused:?}"
    );
    hostile.shutdown().await;
    net.stop_all().await
}

// ------------------------------------------------------------------------------------------------
// Hole 11c: a receipt naming someone else's grant

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_naming_another_grantees_grant_is_refused() -> Result<()> {
    let (mut net, _dir) = exchange(3).await?;
    let gid = cond_grant(&net).await?.document.id;
    let done = net.api(1)?.fetch_to_end(&under(&gid)).await?;
    assert_eq!(done.status, TransferStatus::Done, "{done:?}");
    // Node 2 learns the derived delivery's digests and acknowledges it as its own.
    let version = done.version.context("version")?;
    let derived: Signed<Manifest> = net.nodes[0]
        .node()?
        .store()
        .record(RecordTree::Derived, &format!("{gid}/{version}"))?
        .context("no derived delivery")?;
    let thief = net.nodes[2].peer_id().to_string();
    let hostile = take_over(&mut net, 2, 0).await?;
    let forged = Receipt {
        receiver: thief.clone(),
        provider: net.nodes[0].peer_id().to_string(),
        dataset: COND.into(),
        version,
        manifest_digest: derived.digest_hex()?,
        data_digest: derived.document.digest.clone(),
        grant_id: Some(gid),
        received_at: "2026-12-06T00:00:00Z".into(),
    };
    let signed = Signed::sign(forged, hostile.key().signing_key())?;
    let receipt = hostile.request(Request::Receipt {
        receipt: Box::new(signed),
    });
    // Jiangsu is served meanwhile.
    let (answer, served) = tokio::join!(receipt, honest_fetch(&net, 1));
    served?;
    let answer = answer?;
    assert!(
        matches!(&answer, Response::Error { message, .. } if message.contains("grant")),
        "{answer:?}"
    );
    assert!(
        records_with(&net, 0, RecordKind::ReceiptReceived, &thief)
            .await?
            .is_empty()
    );
    hostile.shutdown().await;
    net.stop_all().await
}

// ------------------------------------------------------------------------------------------------
// Hole 11d: a grant and its request's state in one write

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_interrupted_before_its_request_state_allows_no_second_grant() -> Result<()> {
    let (mut net, _dir) = exchange(2).await?;
    let (sh, js) = (net.api(0)?, net.api(1)?);
    let asked = js
        .request(&request_body(COND, "跨省通办企业核验", &FIELDS))
        .await?;
    // The step between signing the grant and recording the request's state fails, as a kill
    // there would stop it.
    yrd_node::failpoint::arm(&net.nodes[0].data_dir, "grant.before_request_state");
    assert!(
        sh.approve(&asked.id, &ApproveBody::default())
            .await
            .is_err()
    );
    // The operator approves again: there is exactly one grant for the request.
    sh.approve(&asked.id, &ApproveBody::default()).await?;
    let for_request: Vec<_> = sh
        .grants(Some(Direction::Out))
        .await?
        .into_iter()
        .filter(|g| g.record.grant.document.request_id == asked.id)
        .collect();
    assert_eq!(for_request.len(), 1, "{for_request:?}");
    assert_eq!(
        sh.request_record(&asked.id).await?.status,
        RequestStatus::Granted
    );
    net.stop_all().await
}

// ------------------------------------------------------------------------------------------------
// Hole 11d: what a crash leaves on disk is collected at start

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_partials_and_unnamed_blobs_are_collected_at_start() -> Result<()> {
    let (mut net, _dir) = exchange(2).await?;
    let js = net.api(1)?;
    let fetched = js.fetch_done(&format!("310000/{OPEN}")).await?;
    let kept = fetched.digest.clone().context("digest")?;
    net.nodes[1].stop().await?;
    // What a kill leaves: a partial download no fetch record names, and a file (a masked copy,
    // a publication) whose record was never written.
    let (orphan_blob, orphan_partial) = {
        use yrd_node::model::chunks::MIN_CHUNK_SIZE;
        let blobs = yrd_node::store::blobs::BlobStore::open(
            net.nodes[1].data_dir.join(yrd_node::node::BLOBS_DIR),
        )?;
        let data = vec![7u8; 3 * MIN_CHUNK_SIZE as usize];
        let info = blobs.import_reader(&data[..], MIN_CHUNK_SIZE)?;
        let id = "0123456789abcdef0123456789abcdef";
        let mut partial = blobs.begin_partial(id, &"ab".repeat(32), &info.chunk_table)?;
        partial.write_chunk(0, &data[..MIN_CHUNK_SIZE as usize])?;
        drop(partial);
        assert!(blobs.partials()?.contains(&id.to_string()));
        (info.digest, id.to_string())
    };
    net.nodes[1].start().await?;
    let blobs = net.nodes[1].node()?.blobs();
    assert!(!blobs.partials()?.contains(&orphan_partial));
    assert!(!blobs.contains(&orphan_blob), "an unnamed blob survived");
    assert!(blobs.contains(&kept), "the fetched dataset was collected");
    // The published versions of the provider are named by their manifests: untouched.
    net.nodes[0].restart().await?;
    net.wait_full_mesh().await?;
    // The admin API listens on a new port after the restart.
    net.api(1)?.fetch_done(&format!("310000/{OPEN}")).await?;
    net.stop_all().await
}

// ------------------------------------------------------------------------------------------------
// Hole 11b: a version whose chunk table could not be sent

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_too_large_to_serve_is_refused_at_publish() -> Result<()> {
    let mut net = TestNet::meshed(1).await?;
    let api = net.api(0)?;
    // A standard without personal fields: an opaque file of one with them is refused anyway.
    yrd_tests::fixtures::publish_unmarked_standard(&api).await?;
    api.add_offer(&offer(OPEN, UNMARKED, ShareType::Unconditional, None))
        .await?;
    // A sparse file of 300 GiB: its chunk table (about 20 MiB) exceeds the 16 MiB control frame.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("huge.bin");
    std::fs::File::create(&file)?.set_len(300 << 30)?;
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        api.publish_version(OPEN, &file, yrd_node::model::exchange::DataFormat::File),
    )
    .await
    .context("publishing read the file instead of refusing it")?
    .expect_err("a version no member could fetch was published");
    assert!(refused.to_string().contains("too large"), "{refused}");
    assert!(api.versions(OPEN).await?.is_empty());
    net.stop_all().await
}
