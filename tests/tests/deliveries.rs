//! What a provider records of a delivery, whatever the fetcher does: a hostile member
//! ([`yrd_tests::hostile`]) pulls every chunk and resets, closes after the manifest, asks a bad
//! range, stalls, or keeps its session open while its grant is revoked or expires, or while the
//! provider shuts down. Each delivery record says the chunks and bytes that actually left and how
//! the session ended; a session that sent nothing claims no delivery; a grant is checked again
//! before every chunk. An honest member is served in full while each hostile session is open.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::time::Duration;

use anyhow::{Result, ensure};
use libp2p::PeerId;
use tempfile::TempDir;
use yrd_node::api::exchange::{ApproveBody, FetchBody, RequestBody};
use yrd_node::model::provenance::{ProvenanceRecord, RecordKind, SessionEnd, verify_bundle_value};
use yrd_node::model::refusal::RefusalCode;
use yrd_node::model::transfer::FetchOpen;
use yrd_node::node::access::Direction;
use yrd_node::node::transfer::{Fault, TransferStatus};
use yrd_tests::api::{fetch_body, finished};
use yrd_tests::fixtures::{
    COND, OPEN, Provider, STANDARD, file_digest, grant, provider, publish_sample_version,
    request_body,
};
use yrd_tests::hostile::{HostileFetch, HostileMember, Ready, Served, network, silent};
use yrd_tests::{TestNet, WAIT, wait_until};

const PURPOSE: &str = "跨省通办企业核验";

/// A request for every field of the conditional offer.
fn every_field() -> RequestBody {
    request_body(COND, PURPOSE, &[])
}

/// Its approval, with the ID number masked.
fn approval() -> Result<ApproveBody> {
    Ok(ApproveBody {
        fields: None,
        masks: vec!["legal_representative_id_number=keep:6:4".parse()?],
        expires: Some("30d".into()),
        modes: Vec::new(),
        query_limits: None,
    })
}

/// Shanghai (node 0) provides; Jiangsu's key (node 1) is held by a hostile peer, its node
/// stopped; Zhejiang (node 2) is the honest member.
struct Setup {
    net: TestNet,
    _dir: TempDir,
    published: Provider,
    hostile: HostileMember,
    /// A grant to the hostile member of the conditional offer (when asked for).
    grant: Option<String>,
}

impl Setup {
    /// With a grant of the conditional offer (version 2, several chunks) when `granted`; the
    /// provider's stall timeout set to `stall_secs` when given.
    async fn new(granted: bool, stall_secs: Option<u64>) -> Result<Setup> {
        // Anti-entropy every 2 s: a gossip announcement lost while the mesh forms costs 2 s.
        let mut net = network(3, &[], |i, c| {
            c.sync.anti_entropy_secs = 2;
            if let (0, Some(secs)) = (i, stall_secs) {
                c.exchange.stall_timeout_secs = secs;
            }
        })
        .await?;
        net.wait_full_mesh().await?;
        let dir = tempfile::tempdir()?;
        let published = provider(&net, dir.path(), 6000).await?;
        let mut grant_id = None;
        if granted {
            let sh = net.api(0)?;
            publish_sample_version(&sh, dir.path(), COND, STANDARD, 8000, 3).await?;
            let g = grant(&sh, &net.api(1)?, &every_field(), &approval()?).await?;
            grant_id = Some(g.document.id);
        }
        net.nodes[1].stop().await?;
        // It never acks a revocation; held 5 s, not until the provider's 30 s request timeout,
        // which would outlast the stall timeout of the session a test holds open meanwhile.
        let hold = Duration::from_secs(5);
        let hostile =
            HostileMember::start_holding(net.nodes[1].key.clone(), &net.nodes[0], silent(), hold)
                .await?;
        Ok(Setup {
            net,
            _dir: dir,
            published,
            hostile,
            grant: grant_id,
        })
    }

    /// The hostile member opens a session of `dataset` (under its grant, if it has one).
    async fn open(&self, dataset: &str) -> Result<(HostileFetch, Ready)> {
        let open = FetchOpen {
            dataset: dataset.into(),
            version: None,
            grant: self.grant.clone(),
        };
        self.hostile.open_fetch(&open).await
    }

    fn hostile_id(&self) -> PeerId {
        self.hostile.peer_id()
    }

    /// The provider's delivery records of `dataset` to the hostile member.
    async fn deliveries_to_hostile(&self, dataset: &str) -> Result<Vec<ProvenanceRecord>> {
        let id = self.hostile_id().to_string();
        Ok(self
            .net
            .api(0)?
            .provenance(Some(dataset), Some(RecordKind::DeliveryServed))
            .await?
            .into_iter()
            .filter(|r| r.counterparty.as_deref() == Some(id.as_str()))
            .collect())
    }

    /// Waits for the provider's one delivery record of `dataset` to the hostile member.
    async fn delivery_to_hostile(&self, dataset: &str) -> Result<ProvenanceRecord> {
        wait_until(
            "the delivery record of the hostile session",
            WAIT,
            || async {
                Ok(self
                    .deliveries_to_hostile(dataset)
                    .await?
                    .into_iter()
                    .next())
            },
        )
        .await
    }

    /// Waits until the provider's view of the hostile member's session has ended.
    async fn hostile_session_ended(&self) -> Result<()> {
        let (sh, id) = (self.net.api(0)?, self.hostile_id().to_string());
        wait_until("the hostile session to end", WAIT, || async {
            Ok(sh
                .transfers()
                .await?
                .iter()
                .any(|t| t.direction == Direction::Out && t.peer == id && finished(t)))
        })
        .await
    }

    /// The honest member fetches the unconditional offer in full.
    async fn honest_member_is_served(&self) -> Result<()> {
        let done = self
            .net
            .api(2)?
            .fetch_done(&format!("310000/{OPEN}"))
            .await?;
        ensure!(done.status == TransferStatus::Done, "{done:?}");
        ensure!(
            done.digest == Some(file_digest(&self.published.open)?),
            "{done:?}"
        );
        Ok(())
    }

    async fn stop(mut self) -> Result<()> {
        self.hostile.shutdown().await;
        self.net.stop_all().await
    }
}

/// Asserts that `r` records `chunks` of the `ready` file's chunks, `bytes` bytes, ended `end`.
fn assert_sent(r: &ProvenanceRecord, ready: &Ready, chunks: u32, bytes: u64, end: SessionEnd) {
    let m = &ready.manifest.document;
    assert_eq!(r.data_digest.as_deref(), Some(m.digest.as_str()), "{r:?}");
    assert_eq!(r.version, Some(m.version), "{r:?}");
    assert_eq!(r.chunks_sent, Some(chunks), "{r:?}");
    assert_eq!(r.chunk_count, Some(ready.chunk_count()), "{r:?}");
    assert_eq!(r.bytes_sent, Some(bytes), "{r:?}");
    assert_eq!(r.ended, Some(end), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetcher_that_pulls_every_chunk_then_resets_leaves_a_record_of_every_byte() -> Result<()>
{
    let s = Setup::new(false, None).await?;
    let (mut fetch, ready) = s.open(OPEN).await?;
    let n = ready.chunk_count();
    assert!(n >= 2, "the file should span chunks: {n}");
    let bytes = fetch.pull(0, n).await?;
    assert_eq!(bytes, ready.manifest.document.size);
    // The honest member is served while the hostile session is open.
    s.honest_member_is_served().await?;
    fetch.reset();
    let r = s.delivery_to_hostile(OPEN).await?;
    assert_sent(&r, &ready, n, bytes, SessionEnd::Reset);
    assert_eq!(s.deliveries_to_hostile(OPEN).await?.len(), 1);
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_closed_after_the_manifest_claims_no_delivery() -> Result<()> {
    let s = Setup::new(false, None).await?;
    let (fetch, _ready) = s.open(OPEN).await?;
    // The honest member's whole delivery is recorded meanwhile; the hostile session is not.
    s.honest_member_is_served().await?;
    fetch.close().await?;
    s.hostile_session_ended().await?;
    let to_hostile = s.deliveries_to_hostile(OPEN).await?;
    assert!(to_hostile.is_empty(), "{to_hostile:?}");
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_range_is_refused_and_what_was_sent_before_it_is_recorded() -> Result<()> {
    let s = Setup::new(false, None).await?;
    let (mut fetch, ready) = s.open(OPEN).await?;
    let n = ready.chunk_count();
    let first = fetch.pull(0, 1).await?;
    s.honest_member_is_served().await?;
    fetch.want(&[[n, n + 1]]).await?;
    match fetch.next().await? {
        Served::Refused(code, message) => {
            assert_eq!(code, RefusalCode::BadRequest);
            assert!(message.contains("bad chunk request"), "{message}");
        }
        other => panic!("a chunk beyond the file was answered with {other:?}"),
    }
    let r = s.delivery_to_hostile(OPEN).await?;
    assert_sent(&r, &ready, 1, first, SessionEnd::BadRequest);
    // The evidence says part of the file left, how much, and why the session ended.
    let bundle = serde_json::to_value(s.net.api(0)?.export(OPEN).await?)?;
    let account = verify_bundle_value(&bundle)?.account;
    let line = format!("sent part of {OPEN} v1");
    let partial = account
        .iter()
        .find(|l| l.contains(&line))
        .expect("the partial delivery");
    assert!(
        partial.contains(&format!(
            "1 of {n} chunks ({first} bytes) sent, session bad-request: "
        )),
        "{partial}"
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_asked_again_counts_once() -> Result<()> {
    let s = Setup::new(false, None).await?;
    let (mut fetch, ready) = s.open(OPEN).await?;
    let first = fetch.pull(0, 1).await?;
    assert_eq!(fetch.pull(0, 1).await?, first);
    s.honest_member_is_served().await?;
    fetch.want(&[]).await?;
    let r = s.delivery_to_hostile(OPEN).await?;
    assert_sent(&r, &ready, 1, first, SessionEnd::Closed);
    s.stop().await
}

/// The hostile member takes chunk 0 under its grant; `invalidate` ends the grant; the next
/// chunk request is refused naming `why`, and the record says so.
async fn grant_ends_mid_session(
    invalidate: impl AsyncFnOnce(&Setup, &str) -> Result<()>,
    why: &str,
) -> Result<()> {
    let s = Setup::new(true, None).await?;
    let (mut fetch, ready) = s.open(COND).await?;
    assert!(ready.chunk_count() >= 2, "{:?}", ready.table.size);
    assert!(ready.manifest.document.derived_from.is_some());
    let first = fetch.pull(0, 1).await?;
    s.honest_member_is_served().await?;
    let grant = s.grant.clone().expect("a grant");
    invalidate(&s, &grant).await?;
    fetch.want(&[[1, 2]]).await?;
    match fetch.next().await? {
        Served::Refused(code, message) => {
            assert_eq!(code, RefusalCode::GrantInvalid);
            assert!(message.contains(why), "{message}");
        }
        other => panic!("served under an ended grant: {other:?}"),
    }
    // The session is over: the provider sends nothing more.
    assert!(fetch.next().await.is_err());
    let r = s.delivery_to_hostile(COND).await?;
    assert_sent(&r, &ready, 1, first, SessionEnd::GrantInvalid);
    assert_eq!(r.grant.as_deref(), Some(grant.as_str()));
    assert!(r.cause.as_deref().is_some_and(|c| c.contains(why)), "{r:?}");
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_revoked_mid_session_stops_the_next_chunk() -> Result<()> {
    grant_ends_mid_session(
        async |s: &Setup, grant: &str| {
            s.net.api(0)?.revoke(grant, "项目结束").await?;
            Ok(())
        },
        "revoked",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_expiring_mid_session_stops_the_next_chunk() -> Result<()> {
    grant_ends_mid_session(
        async |s: &Setup, grant: &str| {
            s.net.nodes[0].node()?.expire_grant_for_test(grant).await?;
            Ok(())
        },
        "expired",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_session_ends_with_a_record_of_what_it_took() -> Result<()> {
    let s = Setup::new(false, Some(3)).await?;
    let (mut fetch, ready) = s.open(OPEN).await?;
    let first = fetch.pull(0, 1).await?;
    // It asks for nothing more and keeps the stream open; the honest member is served
    // meanwhile, and the provider gives up on the hostile session after its stall timeout.
    s.honest_member_is_served().await?;
    let r = s.delivery_to_hostile(OPEN).await?;
    assert_sent(&r, &ready, 1, first, SessionEnd::Stalled);
    drop(fetch);
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cut_by_shutdown_is_recorded() -> Result<()> {
    let mut s = Setup::new(false, None).await?;
    let (mut fetch, ready) = s.open(OPEN).await?;
    let first = fetch.pull(0, 1).await?;
    s.net.nodes[0].restart().await?;
    let r = s.delivery_to_hostile(OPEN).await?;
    assert_sent(&r, &ready, 1, first, SessionEnd::Shutdown);
    drop(fetch);
    s.honest_member_is_served().await?;
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_fetch_whose_grant_is_revoked_mid_transfer_fails_naming_the_revocation()
-> Result<()> {
    let s = Setup::new(true, None).await?;
    let (sh, zj) = (s.net.api(0)?, s.net.api(2)?);
    let g = grant(&sh, &zj, &every_field(), &approval()?).await?;
    s.net.nodes[0]
        .node()?
        .inject_fault(Fault::SlowChunks(Duration::from_millis(300)));
    let started = zj
        .fetch(&FetchBody {
            grant: Some(g.document.id.clone()),
            ..fetch_body(&format!("310000/{COND}"))
        })
        .await?;
    zj.wait_transfer(&started.id, "some chunks to arrive", |t| t.bytes_done > 0)
        .await?;
    sh.revoke(&g.document.id, "项目结束").await?;
    let ended = zj
        .wait_transfer(&started.id, "the fetch to end", finished)
        .await?;
    assert_eq!(ended.status, TransferStatus::Failed, "{ended:?}");
    assert!(
        ended
            .error
            .as_deref()
            .is_some_and(|e| e.contains("grant-invalid") && e.contains("revoked")),
        "{ended:?}"
    );
    let zj_id = s.net.nodes[2].peer_id().to_string();
    let r = wait_until("the delivery record of the cut session", WAIT, || async {
        let served = sh
            .provenance(Some(COND), Some(RecordKind::DeliveryServed))
            .await?;
        Ok(served
            .into_iter()
            .find(|r| r.counterparty.as_deref() == Some(zj_id.as_str())))
    })
    .await?;
    assert_eq!(r.ended, Some(SessionEnd::GrantInvalid), "{r:?}");
    assert!(r.chunks_sent < r.chunk_count, "{r:?}");
    s.stop().await
}
