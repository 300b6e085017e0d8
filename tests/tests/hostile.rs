//! Attacks of a hostile member ([`yrd_tests::hostile::HostileMember`]) that no other file holds:
//! floods of malformed and oversized frames on both protocols, a chunk request announced beyond
//! its frame limit, forged and out-of-order tree heads, and fork after fork to fill the alarm
//! table. Each test checks that an honest member is served while the attack runs: its fetch
//! completes, its catalogue update arrives, its head is witnessed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use yrd_node::identity::NodeKey;
use yrd_node::model::catalogue::Catalogue;
use yrd_node::model::message::{Announcement, Request, Response};
use yrd_node::model::provenance::{RecordKind, SessionEnd};
use yrd_node::model::refusal::RefusalCode;
use yrd_node::model::signed::Signed;
use yrd_node::model::transfer::{FetchOpen, FetchReply, MAX_WANT_FRAME};
use yrd_node::node::REFUSAL_RECORDS_PER_PEER_PER_HOUR;
use yrd_tests::fixtures::{OPEN, Provider, file_digest, provider};
use yrd_tests::hostile::{
    FakeLog, HostileMember, Served, network_with, new_snapshot, signed_head, silent,
};
use yrd_tests::{TestNet, TestNode, WAIT, wait_until};

/// Node 0 (the provider of the fixtures' offers when `records` > 0), node 1 an honest member,
/// and a hostile member connected to node 0 answering as its behaviour says.
struct Attacked {
    net: TestNet,
    _dir: tempfile::TempDir,
    published: Option<Provider>,
    hostile: Arc<HostileMember>,
}

async fn attacked(behaviour: yrd_tests::hostile::Behaviour, records: usize) -> Result<Attacked> {
    let key = NodeKey::generate();
    // Anti-entropy every 2 s: an announcement lost while the gossip mesh forms is made up for
    // at once, not after the default 30 s.
    let net = network_with(2, &key, |_, c| c.sync.anti_entropy_secs = 2).await?;
    net.wait_full_mesh().await?;
    let dir = tempfile::tempdir()?;
    let published = if records > 0 {
        Some(provider(&net, dir.path(), records).await?)
    } else {
        None
    };
    let hostile = HostileMember::start(key, &net.nodes[0], behaviour).await?;
    Ok(Attacked {
        net,
        _dir: dir,
        published,
        hostile: Arc::new(hostile),
    })
}

impl Attacked {
    /// The honest member (node 1) fetches the unconditional offer in full.
    async fn honest_fetch(&self) -> Result<()> {
        let done = self
            .net
            .api(1)?
            .fetch_done(&format!("310000/{OPEN}"))
            .await?;
        let published = self.published.as_ref().context("nothing published")?;
        ensure!(
            done.digest == Some(file_digest(&published.open)?),
            "{done:?}"
        );
        eprintln!("honest fetch done in {} attempt(s)", done.attempts);
        Ok(())
    }

    async fn stop(mut self) -> Result<()> {
        self.hostile.shutdown().await;
        self.net.stop_all().await
    }
}

/// The honest member (node 1) issues a new catalogue; waits until node 0 holds it.
async fn honest_catalogue_arrives(net: &TestNet, name: &str) -> Result<()> {
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let sequence = new_snapshot(b, name).await?;
    let publisher = b.peer_id().to_string();
    wait_until(
        &format!("snapshot {sequence} of node 1 at node 0"),
        WAIT,
        || async {
            Ok(a.node()?
                .network_catalogues()
                .iter()
                .any(|c| c.document.publisher == publisher && c.document.sequence >= sequence))
        },
    )
    .await
}

/// Node 0's records of `kind` whose counterparty is the hostile member.
async fn records_from(
    node: &TestNode,
    hostile: &HostileMember,
    kind: RecordKind,
) -> Result<Vec<yrd_node::model::provenance::ProvenanceRecord>> {
    let id = hostile.peer_id().to_string();
    Ok(node
        .api()?
        .provenance(None, Some(kind))
        .await?
        .into_iter()
        .filter(|r| r.counterparty.as_deref() == Some(id.as_str()))
        .collect())
}

/// Runs `attack(i)` on `workers` tasks, each again and again, until `honest` is done and each
/// has attacked at least `min_each` times (worker `w` takes `i` = `w`, `w + workers`, …); fails
/// if `honest` or an attack failed, else returns how many attacks were made.
async fn while_attacking<A, F>(
    workers: usize,
    min_each: usize,
    attack: A,
    honest: impl std::future::Future<Output = Result<()>>,
) -> Result<usize>
where
    A: Fn(usize) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Result<()>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let attack = Arc::new(attack);
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (stop, made, attack) = (stop.clone(), made.clone(), attack.clone());
            tokio::spawn(async move {
                let mut i = w;
                loop {
                    attack(i).await?;
                    made.fetch_add(1, Ordering::Relaxed);
                    i += workers;
                    if stop.load(Ordering::Relaxed) && i >= min_each * workers {
                        return anyhow::Ok(());
                    }
                }
            })
        })
        .collect();
    let served = honest.await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(WAIT, t)
            .await
            .context("an attacking worker hung")???;
    }
    served?;
    Ok(made.load(Ordering::Relaxed))
}

// ------------------------------------------------------------------------- floods

/// Request bodies a member sends on `/yrd/req/1` that are no request, or too large to be one.
fn bad_requests() -> Vec<Vec<u8>> {
    let oversized = format!(
        r#"{{"kind":"heads","padding":"{}"}}"#,
        "a".repeat(3 << 19) // 1.5 MiB: beyond the 1 MiB a request may take
    );
    vec![
        Vec::new(),
        b"not json at all".to_vec(),
        br#"{"kind":"get-schema""#.to_vec(),
        br#"{"kind":"no-such-request"}"#.to_vec(),
        br#"{"kind":"tree-head","head":{"type":"tree-head"}}"#.to_vec(),
        "[".repeat(100_000).into_bytes(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        oversized.into_bytes(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_and_oversized_requests_leaves_honest_members_served() -> Result<()> {
    let attack = attacked(silent(), 2000).await?;
    let (net, hostile) = (&attack.net, attack.hostile.clone());
    let bodies = Arc::new(bad_requests());
    let answered = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (hostile, bodies, answered) = (hostile.clone(), bodies.clone(), answered.clone());
        move |i: usize| {
            let (hostile, bodies, answered) = (hostile.clone(), bodies.clone(), answered.clone());
            async move {
                let body = &bodies[i % bodies.len()];
                if hostile.raw_request(body).await?.is_some() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
        }
    };
    let honest = async {
        attack.honest_fetch().await?;
        honest_catalogue_arrives(net, "need-during-flood").await
    };
    let made = while_attacking(6, 2, flood, honest).await?;
    eprintln!("{made} bad requests sent");
    ensure!(made >= bodies.len(), "only {made} bad requests were sent");
    // Nothing malformed is answered as if it were a request, nothing of it is recorded, and
    // the member's next well-formed request is answered as ever.
    assert_eq!(
        answered.load(Ordering::Relaxed),
        0,
        "a bad request was answered"
    );
    let answer = hostile.request(Request::Heads).await?;
    assert!(matches!(answer, Response::Heads { .. }), "{answer:?}");
    let refused = records_from(&net.nodes[0], &hostile, RecordKind::Refused).await?;
    assert!(refused.is_empty(), "{refused:?}");
    attack.stop().await
}

/// What one bad fetch session got.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    /// A refusal, as the reply or in place of a chunk.
    Refused(RefusalCode),
    /// The stream was closed without a word (the node accepts one stream at a time: one that
    /// arrives while it takes another is dropped).
    Dropped,
    /// Something served for a bad frame: the failure this test looks for.
    Served(String),
}

/// Session `i` of a flood: a first frame that is not JSON, one announced at a gigabyte, a
/// FetchOpen near its limit, or a good FetchOpen followed by a want that is not JSON. (A write
/// may fail: a `busy` reply closes the stream at once; the reply is read all the same.)
async fn bad_session(hostile: &HostileMember, i: usize) -> Result<Got> {
    let mut fetch = hostile.fetch_stream().await?;
    let open = |dataset: String| FetchOpen {
        dataset,
        version: None,
        grant: None,
    };
    let reply = match i % 4 {
        0 => {
            let _ = fetch.send_frame(b"\x00\x01 not a FetchOpen").await;
            fetch.reply().await
        }
        1 => {
            let _ = fetch.announce(1 << 30).await;
            fetch.reply().await
        }
        2 => fetch.open(&open("x".repeat(60 * 1024))).await,
        _ => fetch.open(&open(OPEN.into())).await,
    };
    let got = match reply {
        Err(_) => Got::Dropped,
        Ok(FetchReply::Refused { code, .. }) => Got::Refused(code),
        Ok(FetchReply::Ready { .. }) if i % 4 == 3 => {
            let _ = fetch.send_frame(b"{\"ranges\":").await;
            match fetch.next().await {
                Ok(Served::Refused(code, _)) => Got::Refused(code),
                Ok(other) => Got::Served(format!("{other:?} for a bad want")),
                Err(_) => Got::Dropped,
            }
        }
        Ok(FetchReply::Ready { .. }) => Got::Served(format!("session {i} opened by a bad frame")),
    };
    fetch.reset();
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_fetch_frames_leaves_honest_fetches_served() -> Result<()> {
    let attack = attacked(silent(), 2000).await?;
    let (net, hostile) = (&attack.net, attack.hostile.clone());
    let got: Arc<std::sync::Mutex<Vec<Got>>> = Arc::default();
    let flood = {
        let (hostile, got) = (hostile.clone(), got.clone());
        move |i: usize| {
            let (hostile, got) = (hostile.clone(), got.clone());
            async move {
                let g = bad_session(&hostile, i).await?;
                got.lock().unwrap().push(g);
                Ok(())
            }
        }
    };
    let made = while_attacking(6, 1, flood, attack.honest_fetch()).await?;
    let got = got.lock().unwrap().clone();
    let count = |g: &Got| got.iter().filter(|x| *x == g).count();
    eprintln!(
        "{made} bad sessions: {} bad-request, {} busy, {} not-found, {} dropped",
        count(&Got::Refused(RefusalCode::BadRequest)),
        count(&Got::Refused(RefusalCode::Busy)),
        count(&Got::Refused(RefusalCode::NotFound)),
        count(&Got::Dropped),
    );
    ensure!(made >= 8, "only {made} bad sessions were opened");
    // Bad frames are refused as such (the long dataset string is no offer); beyond the
    // member's share of sessions it is told busy; none is served.
    assert!(
        got.iter().all(|g| matches!(
            g,
            Got::Dropped
                | Got::Refused(RefusalCode::BadRequest | RefusalCode::NotFound | RefusalCode::Busy)
        )),
        "{got:?}"
    );
    assert!(count(&Got::Refused(RefusalCode::BadRequest)) > 0, "{got:?}");
    // No session sent a chunk: no delivery is claimed for the hostile member.
    let delivered = records_from(&net.nodes[0], &hostile, RecordKind::DeliveryServed).await?;
    assert!(delivered.is_empty(), "{delivered:?}");
    attack.stop().await
}

// ------------------------------------------------------------------------- frame limits

/// A want announced beyond its own frame limit (yet far below the 16 MiB of the largest control
/// frame) is refused after its 4 length bytes, not waited for; the session ends recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_want_announced_beyond_its_limit_is_refused_after_its_length() -> Result<()> {
    let attack = attacked(silent(), 2000).await?;
    let (net, hostile) = (&attack.net, &attack.hostile);
    let open = FetchOpen {
        dataset: OPEN.into(),
        version: None,
        grant: None,
    };
    let (mut fetch, ready) = hostile.open_fetch(&open).await?;
    let first = fetch.pull(0, 1).await?;
    fetch.announce(MAX_WANT_FRAME as u32 + 1).await?;
    // The stall timeout is 30 s: an answer within 5 s did not wait for the frame's bytes.
    let (refused, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), fetch.next()),
        async { attack.honest_fetch().await.unwrap() }
    );
    let refused = refused.context("the provider waited for the oversized want")??;
    match &refused {
        Served::Refused(RefusalCode::BadRequest, message) => {
            assert!(message.contains("exceeds the limit"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let id = hostile.peer_id().to_string();
    let record = wait_until("the hostile session's record", WAIT, || async {
        Ok(net
            .api(0)?
            .provenance(Some(OPEN), Some(RecordKind::DeliveryServed))
            .await?
            .into_iter()
            .find(|r| r.counterparty.as_deref() == Some(id.as_str())))
    })
    .await?;
    assert_eq!(record.ended, Some(SessionEnd::BadRequest), "{record:?}");
    assert_eq!(record.chunks_sent, Some(1), "{record:?}");
    assert_eq!(record.bytes_sent, Some(first), "{record:?}");
    assert_eq!(record.chunk_count, Some(ready.chunk_count()), "{record:?}");
    attack.stop().await
}

// ------------------------------------------------------------------------- heads

/// Heads signed by another key, or whose signature does not verify, are refused and raise no
/// alarm; the member's own heads shown out of order are cosigned (a smaller one proven a prefix);
/// an honest member's heads are witnessed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_heads_are_refused_and_out_of_order_heads_are_no_fork() -> Result<()> {
    let log = Arc::new(FakeLog::new("a", 8)?);
    let proofs = log.clone();
    let attack = attacked(
        Arc::new(move |r| match r {
            Request::Consistency { old_size, new_size } => Some(Response::Consistency {
                proof: proofs.proof(*old_size, *new_size).ok()?,
            }),
            _ => None,
        }),
        0,
    )
    .await?;
    let (net, hostile) = (&attack.net, &attack.hostile);
    let (witness, owner) = (&net.nodes[0], &net.nodes[1]);
    let w = witness.peer_id();
    owner.node()?.send_head(w).await?;
    let held = witness
        .node()?
        .provenance()
        .witnessed(&owner.peer_id().to_string())?;
    let held = held.context("the honest head is not held")?;

    let mut forged = Vec::new();
    // A head of the honest member's log, signed by the hostile member.
    let other = FakeLog::new("x", held.document.size + 1)?;
    let size = held.document.size + 1;
    forged.push(signed_head(
        hostile.key(),
        &owner.peer_id(),
        size,
        &other.root(size)?,
    )?);
    // The honest member's real head, made larger after it was signed.
    let mut grown = held.clone();
    grown.document.size += 1;
    forged.push(grown);
    // Its own head, altered after signing.
    let mut altered = hostile.head(8, &log.root(8)?)?;
    altered.document.size = 7;
    forged.push(altered);
    // Its own head signed by a key that is not its own.
    forged.push(signed_head(
        &NodeKey::generate(),
        &hostile.peer_id(),
        8,
        &log.root(8)?,
    )?);
    // The honest member's head with the hostile member's key named as signer.
    let mut resigned = held.clone();
    resigned.signer = hostile.head(1, &log.root(1)?)?.signer;
    forged.push(resigned);
    for head in forged {
        let answer = hostile.show_head(head.clone()).await?;
        assert!(
            matches!(answer, Response::Error { .. }),
            "{head:?} gave {answer:?}"
        );
        assert!(
            !matches!(&answer, Response::Error { message, .. } if message.contains("fork")),
            "{answer:?}"
        );
    }
    // Out of order, each proven: not a fork.
    for size in [6, 2, 4, 8, 3] {
        let answer = hostile
            .show_head(hostile.head(size, &log.root(size)?)?)
            .await?;
        assert!(
            matches!(answer, Response::Cosigned { .. }),
            "size {size}: {answer:?}"
        );
    }
    assert!(witness.node()?.alarms()?.is_empty());
    let alarms = records_from(witness, hostile, RecordKind::WitnessAlarm).await?;
    assert!(alarms.is_empty(), "{alarms:?}");
    // The honest log's held head is its own, and its next head is cosigned at once.
    let still = witness
        .node()?
        .provenance()
        .witnessed(&owner.peer_id().to_string())?;
    assert_eq!(still.as_ref(), Some(&held));
    honest_catalogue_arrives(net, "need-after-forgeries").await?;
    tokio::time::timeout(Duration::from_secs(5), owner.node()?.send_head(w))
        .await
        .context("the honest head was not witnessed")??;
    attack.stop().await
}

/// A member showing fork after fork of its log (each a different root for one size) makes the
/// witness keep the log's first open alarm and then at most the member's budget of records;
/// the rest are counted as dropped. After the operator resolves them, the next fork is kept
/// again though the budget is spent. An honest member's heads are witnessed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_after_fork_causes_at_most_the_members_budget_of_alarms() -> Result<()> {
    let attack = attacked(silent(), 0).await?;
    let (net, hostile) = (&attack.net, &attack.hostile);
    let (witness, owner) = (&net.nodes[0], &net.nodes[1]);
    let w = witness.peer_id();
    let size = 4;
    let first = hostile.head(size, &FakeLog::new("a", size)?.root(size)?)?;
    let answer = hostile.show_head(first).await?;
    assert!(matches!(answer, Response::Cosigned { .. }), "{answer:?}");
    let budget = REFUSAL_RECORDS_PER_PEER_PER_HOUR as usize;
    let extra = 5;
    let dropped_before = witness.api()?.health().await?.refusal_records_dropped;
    let forks = {
        let hostile = hostile.clone();
        async move {
            for i in 0..budget + extra {
                let fork =
                    hostile.head(size, &FakeLog::new(&format!("f{i}-"), size)?.root(size)?)?;
                let answer = hostile.show_head(fork).await?;
                ensure!(
                    matches!(&answer, Response::Error { message, .. } if message.contains("fork")),
                    "{answer:?}"
                );
            }
            anyhow::Ok(())
        }
    };
    let honest = async {
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(5), owner.node()?.send_head(w))
                .await
                .context("the honest head was not witnessed during the forks")??;
        }
        anyhow::Ok(())
    };
    let (forked, served) = tokio::join!(forks, honest);
    forked?;
    served?;
    // The first alarm of the log, then its budget; the rest dropped and counted.
    let alarms = witness.node()?.alarms()?;
    assert_eq!(alarms.len(), 1 + budget, "alarms kept");
    let records = records_from(witness, hostile, RecordKind::WitnessAlarm).await?;
    assert_eq!(records.len(), 1 + budget, "alarm records kept");
    let dropped = witness.api()?.health().await?.refusal_records_dropped - dropped_before;
    assert_eq!(dropped, extra as u64 - 1, "alarms counted as dropped");
    // Resolved, the log has no open alarm: the next fork is kept though the budget is spent.
    let log = hostile.peer_id().to_string();
    witness
        .node()?
        .resolve_alarms(&log, "checked: a forger")
        .await?;
    let fork = hostile.head(size, &FakeLog::new("after", size)?.root(size)?)?;
    let answer = hostile.show_head(fork).await?;
    assert!(matches!(answer, Response::Error { .. }), "{answer:?}");
    let open = witness
        .node()?
        .alarms()?
        .into_iter()
        .filter(|a| a.resolved.is_none())
        .count();
    assert_eq!(open, 1, "the first open alarm is kept past the budget");
    attack.stop().await
}

/// A catalogue an announcement carries is judged as a pulled one: a member whose gossip
/// carries another member's catalogue with a raised sequence (its signature no longer over it)
/// is refused and recorded, and the catalogue held is unchanged; its own catalogue, validly
/// signed, is taken from the gossip alone — it answers no request, so nothing was pulled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalogue_carried_by_gossip_is_judged_as_a_pulled_one() -> Result<()> {
    let key = NodeKey::generate();
    let mut net = network_with(2, &key, |_, _| {}).await?;
    let hostile = HostileMember::start(key.clone(), &net.nodes[0], silent()).await?;
    let node = &net.nodes[0];
    let other = net.nodes[1].peer_id().to_string();
    let sequence = new_snapshot(&net.nodes[1], "carried").await?;
    let held = |node: &TestNode, publisher: &str| -> Result<Option<Signed<Catalogue>>> {
        Ok(node
            .node()?
            .network_catalogues()
            .into_iter()
            .find(|c| c.document.publisher == publisher))
    };
    let genuine = wait_until("node 1's snapshot on node 0", WAIT, || async {
        Ok(held(node, &other)?.filter(|c| c.document.sequence >= sequence))
    })
    .await?;
    let carried = |c: Signed<Catalogue>| -> Result<Announcement> {
        Ok(Announcement::Catalogue {
            publisher: c.document.publisher.clone(),
            sequence: c.document.sequence,
            digest: c.digest_hex()?,
            catalogue: Some(Box::new(c)),
        })
    };
    let mut forged = genuine.clone();
    forged.document.sequence += 10;
    hostile.announce(&carried(forged)?).await?;
    let refused = wait_until("the carried catalogue's refusal", WAIT, || async {
        Ok(records_from(node, &hostile, RecordKind::Refused)
            .await?
            .into_iter()
            .find(|r| {
                r.cause
                    .as_deref()
                    .is_some_and(|c| c.contains("carried by an announcement"))
            }))
    })
    .await?;
    assert!(
        refused.cause.as_deref().unwrap_or("").contains(&other),
        "{refused:?}"
    );
    assert_eq!(
        held(node, &other)?.map(|c| c.document.sequence),
        Some(genuine.document.sequence),
        "the forged sequence is not held"
    );
    let mut own = genuine.document.clone();
    own.publisher = hostile.peer_id().to_string();
    own.sequence = 1;
    hostile
        .announce(&carried(Signed::sign(own, hostile.key().signing_key())?)?)
        .await?;
    let id = hostile.peer_id().to_string();
    wait_until(
        "the hostile member's own catalogue from the gossip",
        WAIT,
        || async { Ok(held(node, &id)?.is_some_and(|c| c.document.sequence == 1)) },
    )
    .await?;
    assert_eq!(hostile.seen("get-catalogue"), 0, "nothing was pulled");
    hostile.shutdown().await;
    net.stop_all().await
}
