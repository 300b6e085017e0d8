//! Dataset exchange between real nodes: unconditional fetch, conditional request → grant →
//! masked delivery, denial, expired / revoked / someone else's grant, not shared, tampered chunks,
//! forged manifests, resume after a restart of either side, subscriptions, and per-peer limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;
use tempfile::TempDir;
use yrd_node::api::exchange::{ApproveBody, FetchBody, MAX_WAIT_MS};
use yrd_node::cli::client::ClientError;
use yrd_node::model::exchange::{DataFormat, Grant};
use yrd_node::model::masking::MaskRule;
use yrd_node::model::message::RequestStatus;
use yrd_node::model::refusal::RefusalCode;
use yrd_node::model::signed::Signed;
use yrd_node::model::transfer::{FETCH_PROTOCOL, FetchOpen, FetchReply};
use yrd_node::node::access::{Direction, GrantState};
use yrd_node::node::transfer::{Fault, TransferStatus, TransferView};
use yrd_tests::api::{fetch_body, finished, status};
use yrd_tests::fixtures::{
    COND, FIELDS, OPEN, Provider, SECRET, SECRET_REASON, STANDARD, WITHHELD, WITHHELD_BASIS,
    WITHHELD_REASON, file_digest, grant, provider, request_body, write_sample_records,
};
use yrd_tests::{TestNet, WAIT, wait_until};

/// The purpose of the conditional requests.
const PURPOSE: &str = "跨省通办企业核验";

/// `n` meshed nodes, node 0 the provider with `open_records` records in its unconditional offer.
async fn exchange(n: usize, open_records: usize) -> Result<(TestNet, TempDir, Provider)> {
    let net = TestNet::meshed(n).await?;
    let dir = tempfile::tempdir()?;
    let published = provider(&net, dir.path(), open_records).await?;
    Ok((net, dir, published))
}

fn target(dataset: &str) -> String {
    format!("310000/{dataset}")
}

/// A fetch of the latest version of `dataset` under `grant`.
fn under(dataset: &str, grant: &str) -> FetchBody {
    FetchBody {
        grant: Some(grant.into()),
        ..fetch_body(&target(dataset))
    }
}

/// Asserts that a fetch failed saying `says`.
fn assert_failed(t: &TransferView, says: &str) {
    assert_eq!(t.status, TransferStatus::Failed, "{t:?}");
    assert!(
        t.error.as_deref().is_some_and(|e| e.contains(says)),
        "{says}: {t:?}"
    );
}

// ------------------------------------------------------------------------------------------------
// Unconditional data and refusals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconditional_fetch_equals_the_publication() -> Result<()> {
    let (mut net, dir, p) = exchange(2, 500).await?;
    let js = net.api(1)?;
    let done = js.fetch_done(&target(OPEN)).await?;
    let published = file_digest(&p.open)?;
    assert_eq!(done.digest.as_deref(), Some(published.as_str()));
    assert_eq!((done.version, done.derived), (Some(1), false));
    assert_eq!(
        js.download(&done.id, dir.path()).await?,
        std::fs::read(&p.open)?
    );
    assert!(net.nodes[1].node()?.blobs().contains(&published));
    // Where its time went: the phases are disjoint parts of the whole, and `transfer_ms` is
    // the preparation and the chunks.
    let ph = done.phases;
    let sum = ph.connect_ms + ph.ready_ms + ph.prepare_ms + ph.chunks_ms + ph.verify_ms;
    assert!(sum + ph.record_ms <= done.total_ms + 1, "{done:?}");
    let moving = ph.prepare_ms + ph.chunks_ms;
    assert!(moving.abs_diff(done.transfer_ms) <= 1, "{done:?}");
    let served = net.api(0)?.transfers().await?;
    assert!(
        served.iter().all(|t| t.phases == Default::default()),
        "{served:?}"
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_records_the_receipt_and_the_transfer_it_served() -> Result<()> {
    let (mut net, _dir, p) = exchange(2, 500).await?;
    net.api(1)?.fetch_done(&target(OPEN)).await?;
    let published = file_digest(&p.open)?;
    let receiver = net.nodes[1].peer_id().to_string();
    let sh = net.api(0)?;
    wait_until("the provider to record the receipt", WAIT, || async {
        Ok(sh
            .receipts()
            .await?
            .iter()
            .any(|r| r.document.receiver == receiver && r.document.data_digest == published))
    })
    .await?;
    let served = sh.transfers().await?;
    assert!(
        served.iter().any(|t| t.direction == Direction::Out
            && t.peer == receiver
            && t.status == TransferStatus::Done
            && t.bytes_done == t.bytes_total),
        "{served:?}"
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_shared_offer_is_refused_before_anything_moves_with_its_reason() -> Result<()> {
    let (mut net, _dir, _) = exchange(2, 50).await?;
    let err = net
        .api(1)?
        .fetch_latest(&target(SECRET))
        .await
        .expect_err("not shared");
    assert!(err.to_string().contains(SECRET_REASON), "{err}");
    assert!(net.api(1)?.transfers().await?.is_empty());
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withheld_offer_is_refused_by_the_provider_with_reason_and_legal_basis() -> Result<()> {
    let (mut net, _dir, _) = exchange(2, 50).await?;
    let refused = net
        .api(1)?
        .fetch_to_end(&fetch_body(&format!("Shanghai/{WITHHELD}")))
        .await?;
    assert_failed(&refused, "not-shared");
    assert_failed(&refused, WITHHELD_REASON);
    assert_failed(&refused, WITHHELD_BASIS);
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_offer_without_a_grant_is_refused_saying_how_to_ask() -> Result<()> {
    let (mut net, _dir, _) = exchange(2, 50).await?;
    let err = net
        .api(1)?
        .fetch_latest(&target(COND))
        .await
        .expect_err("needs a grant");
    assert!(err.to_string().contains("yrd request"), "{err}");
    net.stop_all().await
}

// ------------------------------------------------------------------------------------------------
// Conditional data

/// Masks: the ID number keeps its first 6 and last 4 characters; the name is hashed.
fn masked() -> Result<ApproveBody> {
    Ok(ApproveBody {
        masks: vec![
            "legal_representative_id_number=keep:6:4".parse()?,
            "legal_representative=hash".parse()?,
        ],
        expires: Some("30d".into()),
        fields: None,
        modes: Vec::new(),
        query_limits: None,
    })
}

/// Node `requester` holds a grant of [`FIELDS`] of the conditional offer, masked by [`masked`].
async fn granted(net: &TestNet, requester: usize) -> Result<Signed<Grant>> {
    grant(
        &net.api(0)?,
        &net.api(requester)?,
        &request_body(COND, PURPOSE, &FIELDS),
        &masked()?,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_on_the_provider_until_it_decides() -> Result<()> {
    let (mut net, _dir, _) = exchange(2, 50).await?;
    let asked = net
        .api(1)?
        .request(&request_body(COND, PURPOSE, &FIELDS))
        .await?;
    assert_eq!(asked.status, RequestStatus::Pending);
    let pending = net
        .api(0)?
        .requests(Some(Direction::In), Some(RequestStatus::Pending))
        .await?;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].id, asked.id);
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_reaches_the_requester_with_its_fields_and_masks() -> Result<()> {
    let (mut net, _dir, _) = exchange(2, 50).await?;
    let g = granted(&net, 1).await?;
    assert_eq!(g.document.fields, FIELDS);
    let held = net.api(1)?.grant(&g.document.id).await?;
    assert_eq!(held.state, GrantState::Valid);
    assert_eq!(held.record.grant.document.masks, g.document.masks);
    assert_eq!(
        held.record.grant.document.masks[0].rule,
        MaskRule::Keep { first: 6, last: 4 }
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_fetch_delivers_exactly_the_granted_fields_masked_as_granted() -> Result<()> {
    let (mut net, dir, p) = exchange(2, 50).await?;
    let g = granted(&net, 1).await?;
    let js = net.api(1)?;
    let done = js.fetch_done(&target(COND)).await?;
    assert!(done.derived, "{done:?}");
    assert_eq!(done.grant.as_deref(), Some(g.document.id.as_str()));
    let read = |text: &str| -> Result<Vec<Value>> {
        Ok(text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?)
    };
    let delivered = read(&String::from_utf8(
        js.download(&done.id, dir.path()).await?,
    )?)?;
    let originals = read(&std::fs::read_to_string(&p.cond)?)?;
    assert_eq!(delivered.len(), originals.len());
    for (d, o) in delivered.iter().zip(&originals) {
        let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, FIELDS);
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
    // The derived manifest names the original and the grant.
    let manifest = net.nodes[1]
        .node()?
        .manifests(Some(&net.nodes[0].peer_id().to_string()), COND)?;
    let derivation = manifest[0].document.derived_from.clone().unwrap();
    assert_eq!(derivation.grant_id, Some(g.document.id));
    assert_eq!(derivation.original_digest, file_digest(&p.cond)?);
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_derived_once_per_grant_and_version() -> Result<()> {
    let (mut net, _dir, _) = exchange(2, 50).await?;
    let g = granted(&net, 1).await?;
    let js = net.api(1)?;
    let first = js.fetch_done(&target(COND)).await?;
    let again = js.fetch_to_end(&under(COND, &g.document.id)).await?;
    assert_eq!(again.status, TransferStatus::Done, "{again:?}");
    assert_eq!(again.digest, first.digest);
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_grant_is_refused() -> Result<()> {
    let (mut net, _dir, _) = exchange(3, 50).await?;
    let g = granted(&net, 1).await?;
    let stolen = net
        .api(2)?
        .fetch_to_end(&under(COND, &g.document.id))
        .await?;
    assert_failed(&stolen, "another node");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_reaches_the_requester_with_its_reason() -> Result<()> {
    let (mut net, _dir, _) = exchange(2, 50).await?;
    let js = net.api(1)?;
    let asked = js.request(&request_body(COND, "统计分析", &[])).await?;
    net.api(0)?.deny(&asked.id, "用途与履职事项不符").await?;
    wait_until("the denial to reach the requester", WAIT, || async {
        let r = js.request_record(&asked.id).await?;
        Ok(r.status == RequestStatus::Denied
            && r.denial
                .is_some_and(|d| d.document.reason == "用途与履职事项不符"))
    })
    .await?;
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_stops_working_and_the_grantee_is_told() -> Result<()> {
    let (mut net, _dir, _) = exchange(2, 50).await?;
    let g = granted(&net, 1).await?;
    let id = g.document.id;
    net.api(0)?.revoke(&id, "项目结束").await?;
    let js = net.api(1)?;
    wait_until("the revocation to reach the grantee", WAIT, || async {
        Ok(js.grant(&id).await?.state == GrantState::Revoked)
    })
    .await?;
    let revoked = js.fetch_to_end(&under(COND, &id)).await?;
    assert_failed(&revoked, "revoked");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_grant_is_refused_on_fetch() -> Result<()> {
    let (mut net, _dir, _) = exchange(2, 50).await?;
    let g = granted(&net, 1).await?;
    net.nodes[0]
        .node()?
        .expire_grant_for_test(&g.document.id)
        .await?;
    let expired = net
        .api(1)?
        .fetch_to_end(&under(COND, &g.document.id))
        .await?;
    assert_failed(&expired, "expired");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_approval_rule_grants_a_matching_request_at_once() -> Result<()> {
    let (mut net, _dir, _) = exchange(2, 50).await?;
    net.nodes[0].edit_config(|c| {
        c.exchange.auto_approve = vec![yrd_node::config::AutoRule {
            name: "jiangsu-verification".into(),
            decision: yrd_node::config::AutoDecision::Approve,
            datasets: vec![COND.into()],
            regions: vec!["320000".parse().unwrap()],
            purposes: vec!["核验".into()],
            fields: vec!["uscc".into(), "status".into()],
            masks: vec![],
            expires_days: Some(7),
            reason: None,
        }];
    })?;
    net.nodes[0].restart().await?;
    net.wait_full_mesh().await?;
    let js = net.api(1)?;
    let auto = js.request(&request_body(COND, "企业资质核验", &[])).await?;
    assert_eq!(auto.status, RequestStatus::Granted, "{auto:?}");
    let g = auto.grant.expect("the grant").document;
    assert_eq!(g.decided_by, "auto:jiangsu-verification");
    assert_eq!(g.fields, ["uscc", "status"]);
    js.fetch_done(&target(COND)).await?;
    net.stop_all().await
}

// ------------------------------------------------------------------------------------------------
// Tampering

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_chunks_are_fetched_again() -> Result<()> {
    // About 4 MiB: several 1 MiB chunks.
    let (mut net, dir, p) = exchange(2, 6000).await?;
    net.nodes[0]
        .node()?
        .inject_fault(Fault::CorruptChunk { index: 1, times: 2 });
    let js = net.api(1)?;
    let done = js.fetch_done(&target(OPEN)).await?;
    assert_eq!(done.digest, Some(file_digest(&p.open)?));
    assert_eq!(done.refetched_chunks, 2, "{done:?}");
    assert_eq!(
        js.download(&done.id, dir.path()).await?,
        std::fs::read(&p.open)?
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_keeps_sending_a_bad_chunk_is_given_up_and_nothing_of_it_kept() -> Result<()>
{
    let (mut net, _dir, p) = exchange(2, 6000).await?;
    net.nodes[0].node()?.inject_fault(Fault::CorruptChunk {
        index: 0,
        times: 100,
    });
    let failed = net.api(1)?.fetch_to_end(&fetch_body(&target(OPEN))).await?;
    assert_failed(&failed, "corrupted");
    let receiver = net.nodes[1].node()?;
    assert!(!receiver.blobs().contains(&file_digest(&p.open)?));
    assert!(receiver.blobs().partials()?.is_empty());
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_signed_by_anyone_but_the_publisher_is_refused_before_a_chunk_moves()
-> Result<()> {
    let (mut net, _dir, p) = exchange(2, 6000).await?;
    net.nodes[0].node()?.inject_fault(Fault::ForgeManifest);
    let forged = net.api(1)?.fetch_to_end(&fetch_body(&target(OPEN))).await?;
    assert_failed(&forged, "forged manifest");
    assert_eq!(forged.bytes_done, 0);
    assert!(
        !net.nodes[1]
            .node()?
            .blobs()
            .contains(&file_digest(&p.open)?)
    );
    net.stop_all().await
}

// ------------------------------------------------------------------------------------------------
// Resuming

/// Starts a slow fetch of the unconditional offer on node 1; returns it once some chunks
/// arrived.
async fn slow_fetch_under_way(net: &TestNet) -> Result<TransferView> {
    net.nodes[0]
        .node()?
        .inject_fault(Fault::SlowChunks(Duration::from_millis(300)));
    let js = net.api(1)?;
    let started = js.fetch_latest(&target(OPEN)).await?;
    js.wait_transfer(&started.id, "some chunks to arrive", |t| t.bytes_done > 0)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_a_transfer_answers_when_it_finishes_not_at_its_bound() -> Result<()> {
    let (mut net, _dir, _p) = exchange(2, 6000).await?;
    // Slow chunks: the wait below starts while the fetch still runs, so only the finish's
    // wake-up can end it before its bound.
    let under_way = slow_fetch_under_way(&net).await?;
    assert!(!finished(&under_way), "{under_way:?}");
    let js = net.api(1)?;
    let bound = Duration::from_millis(MAX_WAIT_MS);
    let asked = Instant::now();
    let t = js
        .transfer_waiting(&under_way.id, &MAX_WAIT_MS.to_string())
        .await?;
    let took = asked.elapsed();
    assert_eq!(t.status, TransferStatus::Done, "{t:?}");
    assert!(
        took < bound / 2,
        "answered after {took:?} of a {bound:?} wait"
    );
    // A finished transfer answers at once.
    let asked = Instant::now();
    let again = js.transfer_waiting(&t.id, "30000").await?;
    assert_eq!(again.status, TransferStatus::Done);
    assert!(asked.elapsed() < bound / 2, "{:?}", asked.elapsed());
    // An unknown transfer is 404 at once, not after the wait.
    let asked = Instant::now();
    let missing = js.transfer_waiting("no-such-transfer", "30000").await;
    assert_eq!(
        missing.as_ref().err().and_then(status),
        Some(404),
        "{missing:?}"
    );
    assert!(asked.elapsed() < bound / 2, "{:?}", asked.elapsed());
    // Over the cap, or not a number: 400 naming the parameter.
    for bad in [(MAX_WAIT_MS + 1).to_string(), "soon".into(), "-1".into()] {
        match js.transfer_waiting(&t.id, &bad).await {
            Err(ClientError::Api {
                status: 400,
                message,
                ..
            }) => assert!(message.contains("wait_ms"), "{bad}: {message}"),
            other => panic!("wait_ms={bad}: {other:?}"),
        }
    }
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_a_running_transfer_ends_when_its_node_shuts_down() -> Result<()> {
    let (mut net, _dir, _p) = exchange(2, 6000).await?;
    let under_way = slow_fetch_under_way(&net).await?;
    let node = net.nodes[1].node()?.clone();
    let bound = Duration::from_millis(MAX_WAIT_MS);
    let id = under_way.id.clone();
    let wait = tokio::spawn(async move {
        let asked = Instant::now();
        let seen = node.wait_transfer(&id, bound).await.map(|t| t.status);
        (seen, asked.elapsed())
    });
    // The fetch stops with the node and resumes at its next start: it never finishes here.
    net.nodes[1].stop().await?;
    let (seen, took) = tokio::time::timeout(WAIT, wait).await??;
    assert!(took < bound / 2, "the wait held {took:?} past the shutdown");
    assert!(
        seen.as_ref().is_ok_and(|s| *s != TransferStatus::Done),
        "{seen:?}"
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_resumes_after_the_provider_restarts_and_moves_only_the_missing_chunks()
-> Result<()> {
    let (mut net, dir, p) = exchange(2, 6000).await?;
    let size = std::fs::metadata(&p.open)?.len();
    let under_way = slow_fetch_under_way(&net).await?;
    assert!(under_way.bytes_done < size, "{under_way:?}");
    // Kill the provider mid-transfer; the fetch waits and retries.
    net.nodes[0].stop().await?;
    let js = net.api(1)?;
    let waiting = js
        .wait_transfer(&under_way.id, "the fetch to wait for the provider", |t| {
            t.status == TransferStatus::Waiting
        })
        .await?;
    let kept = waiting.bytes_done;
    assert!(kept > 0 && kept < size, "{kept} of {size}");
    // Restarted (without the slow fault), the provider serves only the missing chunks.
    net.nodes[0].start().await?;
    let done = js
        .wait_transfer(
            &under_way.id,
            "the fetch to end after the restart",
            finished,
        )
        .await?;
    assert_eq!(done.status, TransferStatus::Done, "{done:?}");
    assert_eq!(done.digest, Some(file_digest(&p.open)?));
    assert!(done.attempts >= 2, "{done:?}");
    let served = net.api(0)?.transfers().await?;
    let resumed = served
        .iter()
        .find(|t| t.direction == Direction::Out && t.status == TransferStatus::Done)
        .expect("the resumed session");
    assert_eq!(
        resumed.bytes_done,
        size - kept,
        "only the missing chunks were sent again"
    );
    assert_eq!(
        js.download(&done.id, dir.path()).await?,
        std::fs::read(&p.open)?
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_resumes_by_itself_after_the_receiver_restarts() -> Result<()> {
    let (mut net, _dir, p) = exchange(2, 6000).await?;
    let under_way = slow_fetch_under_way(&net).await?;
    net.nodes[1].restart().await?;
    let done = net
        .api(1)?
        .wait_transfer(
            &under_way.id,
            "the fetch to end after the receiver restarts",
            finished,
        )
        .await?;
    assert_eq!(done.status, TransferStatus::Done, "{done:?}");
    assert!(done.attempts >= 2, "{done:?}");
    assert_eq!(done.digest, Some(file_digest(&p.open)?));
    net.stop_all().await
}

// ------------------------------------------------------------------------------------------------
// Subscriptions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_fetches_each_new_version() -> Result<()> {
    let (mut net, dir, _) = exchange(4, 100).await?;
    let ah = net.api(3)?;
    let sub = ah.subscribe(&target(OPEN)).await?;
    assert_eq!(sub.dataset, OPEN);
    let fetched = |version: u64| {
        let ah = &ah;
        move || async move {
            let subs = ah.subscriptions().await?;
            Ok(subs.first().is_some_and(|s| s.fetched_version == version))
        }
    };
    wait_until("the current version to be fetched", WAIT, fetched(1)).await?;
    // Shanghai publishes version 2; Anhui has it shortly after, without being asked.
    let v2 = dir.path().join("v2.jsonl");
    write_sample_records(&v2, STANDARD, 120, 9)?;
    let published = Instant::now();
    net.api(0)?
        .publish_version(OPEN, &v2, DataFormat::Jsonl)
        .await?;
    wait_until("version 2 to arrive by subscription", WAIT, fetched(2)).await?;
    eprintln!(
        "subscription delivered version 2 {} ms after publication",
        published.elapsed().as_millis()
    );
    assert!(net.nodes[3].node()?.blobs().contains(&file_digest(&v2)?));
    ah.unsubscribe(&target(OPEN)).await?;
    assert!(ah.subscriptions().await?.is_empty());
    net.stop_all().await
}

// ------------------------------------------------------------------------------------------------
// Per-peer limits and bad frames

/// Two nodes; the provider serves one transfer and holds one pending request per peer.
async fn limited() -> Result<(TestNet, TempDir)> {
    let mut net = TestNet::line(2).await?;
    net.nodes[0].edit_config(|c| {
        c.exchange.max_transfers_per_peer = 1;
        c.exchange.max_pending_requests_per_peer = 1;
    })?;
    net.nodes[0].restart().await?;
    net.wait_full_mesh().await?;
    let dir = tempfile::tempdir()?;
    provider(&net, dir.path(), 3000).await?;
    Ok((net, dir))
}

/// Opens a raw fetch stream from node 1 to the provider, sends `frame` (length-prefixed, or the
/// bare prefix `len` when `frame` is None) and reads the provider's reply.
async fn raw_fetch(net: &TestNet, frame: Option<&FetchOpen>, len: u32) -> Result<FetchReply> {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let mut stream = net.nodes[1]
        .node()?
        .net()
        .open_stream(
            net.nodes[0].peer_id(),
            FETCH_PROTOCOL,
            Duration::from_secs(5),
        )
        .await?;
    match frame {
        Some(open) => {
            let bytes = serde_json::to_vec(open)?;
            stream
                .write_all(&(bytes.len() as u32).to_be_bytes())
                .await?;
            stream.write_all(&bytes).await?;
        }
        None => stream.write_all(&len.to_be_bytes()).await?,
    }
    stream.flush().await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    Ok(serde_json::from_slice(&reply[4..])?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_transfer_at_a_time_per_peer_and_a_second_stream_is_refused_as_busy() -> Result<()> {
    let (mut net, _dir) = limited().await?;
    net.nodes[0]
        .node()?
        .inject_fault(Fault::SlowChunks(Duration::from_millis(300)));
    let js = net.api(1)?;
    let first = js.fetch_latest(&target(OPEN)).await?;
    js.wait_transfer(&first.id, "the first fetch to run", |t| {
        t.status == TransferStatus::Running
    })
    .await?;
    // The same version asked again is the same fetch.
    let second = js
        .fetch(&FetchBody {
            version: Some(1),
            ..fetch_body(&target(OPEN))
        })
        .await?;
    assert_eq!(second.id, first.id, "one fetch of a version at a time");
    // A second concurrent stream from the same peer is refused as busy, with the reason.
    let open = FetchOpen {
        dataset: OPEN.into(),
        version: None,
        grant: None,
    };
    match raw_fetch(&net, Some(&open), 0).await? {
        FetchReply::Refused { code, .. } => assert_eq!(code, RefusalCode::Busy),
        other => panic!("served a second stream: {other:?}"),
    }
    let done = js
        .wait_transfer(&first.id, "the first fetch to end", finished)
        .await?;
    assert_eq!(done.status, TransferStatus::Done, "{done:?}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_requests_per_peer_are_limited() -> Result<()> {
    let (mut net, _dir) = limited().await?;
    let js = net.api(1)?;
    let body = request_body(COND, "核验", &[]);
    assert_eq!(js.request(&body).await?.status, RequestStatus::Pending);
    let err = js.request(&body).await.expect_err("over the pending limit");
    assert!(err.to_string().contains("limit 1"), "{err}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_first_frame_is_refused_before_anything_is_allocated() -> Result<()> {
    let (mut net, _dir) = limited().await?;
    match raw_fetch(&net, None, u32::MAX).await? {
        FetchReply::Refused { code, message } => {
            assert_eq!(code, RefusalCode::BadRequest);
            assert!(message.contains("exceeds the limit"), "{message}");
        }
        other => panic!("served an oversized frame: {other:?}"),
    }
    // The provider still serves.
    net.api(0)?.health().await?;
    net.api(1)?.fetch_done(&target(OPEN)).await?;
    net.stop_all().await
}
