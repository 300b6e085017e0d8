//! Catalogue sync and witnessing against a hostile member: one that lists standards or catalogue
//! sequences it never serves, floods standards, or stalls a consistency proof. Each test checks
//! that the node under attack keeps syncing with and witnessing the honest members meanwhile,
//! and that tree heads arriving out of order are not taken for a fork.
//!
//! The hostile member is the harness's [`yrd_tests::hostile::HostileMember`]: a member key on
//! the node's own network stack that answers `/yrd/req/1` as the test tells it — or never.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use libp2p::PeerId;
use yrd_node::config::NodeConfig;
use yrd_node::identity::NodeKey;
use yrd_node::model::catalogue::SchemaDoc;
use yrd_node::model::message::{Head, Request, Response, SchemaHead};
use yrd_node::model::provenance::TreeHead;
use yrd_node::model::refusal::RefusalCode;
use yrd_node::model::signed::Signed;
use yrd_node::net;
use yrd_tests::fixtures::{STANDARD, sample_schema};
use yrd_tests::hostile::{
    FakeLog, HostileMember, fake_standards, network_with as network, new_snapshot, silent,
};
use yrd_tests::{TestNet, TestNode, WAIT, wait_until};

// ------------------------------------------------------------------------- the network

/// Only these peers may connect to a node.
fn trust_only(config: &mut NodeConfig, peers: &[PeerId]) {
    config
        .federation
        .members
        .retain(|m| peers.contains(&m.peer_id));
    config
        .network
        .bootstrap
        .retain(|a| net::peer_of(a).is_some_and(|p| peers.contains(&p)));
}

/// The sequence of `publisher`'s catalogue that `node` holds (0: none).
fn held_sequence(node: &TestNode, publisher: PeerId) -> Result<u64> {
    Ok(node
        .node()?
        .network_catalogues()
        .iter()
        .find(|c| c.document.publisher == publisher.to_string())
        .map_or(0, |c| c.document.sequence))
}

/// Waits until `node` holds `publisher`'s catalogue at `sequence` or later, within `within`.
async fn wait_sequence(
    node: &TestNode,
    publisher: PeerId,
    sequence: u64,
    within: Duration,
) -> Result<()> {
    wait_until(
        &format!("snapshot {sequence} of {publisher}"),
        within,
        || async { Ok(held_sequence(node, publisher)? >= sequence) },
    )
    .await
}

// ------------------------------------------------------------------------- hole 6: sync

/// A member lists 10,000 standards it never serves: the node's anti-entropy still brings it a
/// catalogue that only another member (a relay) can give it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standards_a_member_lists_and_never_serves_do_not_hold_up_sync_with_others() -> Result<()> {
    let h_key = NodeKey::generate();
    // A (0) syncs every second; B (1) talks only to C (2), so B's catalogue reaches A only
    // through anti-entropy with C.
    let mut net = network(3, &h_key, |_, c| {
        c.sync.anti_entropy_secs = 1;
        c.sync.peer_deadline_secs = 5;
    })
    .await?;
    let c_id = net.nodes[2].peer_id();
    net.nodes[1].edit_config(|cfg| trust_only(cfg, &[c_id]))?;
    net.nodes[1].restart().await?;
    let (a, b, c) = (&net.nodes[0], &net.nodes[1], &net.nodes[2]);
    let first = held_sequence(b, b.peer_id())?;
    wait_sequence(a, b.peer_id(), first, WAIT).await?;

    let fake = fake_standards(10_000);
    let hostile = HostileMember::start(
        h_key,
        a,
        Arc::new(move |r| match r {
            Request::Heads => Some(Response::Heads {
                charter: None,
                catalogues: Vec::new(),
                schemas: fake.clone(),
            }),
            _ => None,
        }),
    )
    .await?;
    // A asked its heads on connect and again in a round, and is waiting on its standards.
    hostile.wait_seen("heads", 2).await?;
    hostile.wait_seen("get-schema", 1).await?;

    let next = new_snapshot(b, "need-registration").await?;
    wait_sequence(c, b.peer_id(), next, WAIT).await?;
    wait_sequence(a, b.peer_id(), next, WAIT).await?;
    net.stop_all().await
}

/// A member claims a huge sequence of another member's catalogue and never serves it: that
/// member's real updates still arrive at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_claimed_for_another_member_and_never_served_does_not_block_its_updates()
-> Result<()> {
    let h_key = NodeKey::generate();
    let mut net = network(2, &h_key, |_, c| c.sync.anti_entropy_secs = 1).await?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    net.wait_full_mesh().await?;
    wait_sequence(a, b.peer_id(), 1, WAIT).await?;
    let b_id = b.peer_id().to_string();
    let hostile = HostileMember::start(
        h_key,
        a,
        Arc::new(move |r| match r {
            Request::Heads => Some(Response::Heads {
                charter: None,
                catalogues: vec![Head {
                    publisher: b_id.clone(),
                    sequence: 1 << 60,
                }],
                schemas: Vec::new(),
            }),
            _ => None,
        }),
    )
    .await?;
    // A is pulling B's catalogue from the hostile member, which never answers.
    hostile.wait_seen("get-catalogue", 1).await?;
    let next = new_snapshot(b, "need-registration").await?;
    // Well within one request timeout (30 s): the claim must not wait for it.
    wait_sequence(a, b.peer_id(), next, Duration::from_secs(12)).await?;
    net.stop_all().await
}

/// A member lists a thousand catalogues it never serves — its own at a huge sequence, another
/// member's beyond what it issued, and catalogues of peers that are no members — and answers
/// no pull: an honest member's updates still arrive at once, directly and through
/// anti-entropy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_entries_a_member_lists_and_never_serves_do_not_hold_up_sync() -> Result<()> {
    let h_key = NodeKey::generate();
    let mut net = network(2, &h_key, |_, c| c.sync.anti_entropy_secs = 1).await?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    net.wait_full_mesh().await?;
    wait_sequence(a, b.peer_id(), 1, WAIT).await?;
    // Members' catalogues first (claims the node pulls), then a thousand of non-members.
    let mut listed: Vec<Head> = [(h_key.peer_id(), 1 << 50), (b.peer_id(), 1 << 40)]
        .into_iter()
        .map(|(publisher, sequence)| Head {
            publisher: publisher.to_string(),
            sequence,
        })
        .collect();
    listed.extend((0..1000).map(|i| Head {
        publisher: NodeKey::generate().peer_id().to_string(),
        sequence: 1 + i,
    }));
    let hostile = HostileMember::start(
        h_key,
        a,
        Arc::new(move |r| match r {
            Request::Heads => Some(Response::Heads {
                charter: None,
                catalogues: listed.clone(),
                schemas: Vec::new(),
            }),
            _ => None,
        }),
    )
    .await?;
    hostile.wait_seen("get-catalogue", 1).await?;
    for name in ["need-registration", "need-licences"] {
        let next = new_snapshot(b, name).await?;
        // Well within one request timeout (30 s): no listed entry is waited for.
        wait_sequence(a, b.peer_id(), next, Duration::from_secs(12)).await?;
    }
    // The listed entries of non-members are not pulled at all; the node asks for a bounded
    // number of the rest.
    assert!(
        hostile.seen("get-catalogue") <= 20,
        "{} pulls",
        hostile.seen("get-catalogue")
    );
    hostile.shutdown().await;
    net.stop_all().await
}

// ------------------------------------------------------------------------- hole 7: standards

/// A member publishing more standards than the quota gets only the quota kept; another
/// member's standard is still taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_make_a_node_keep_more_standards_than_its_quota() -> Result<()> {
    let h_key = NodeKey::generate();
    let mut net = network(3, &h_key, |i, c| {
        if i == 0 {
            c.sync.max_standards_per_member = 3;
        }
    })
    .await?;
    net.wait_full_mesh().await?;
    let (a, b, c) = (&net.nodes[0], &net.nodes[1], &net.nodes[2]);
    let schema = sample_schema(STANDARD)?;
    for i in 0..5 {
        b.node()?
            .publish_schema(&format!("flood-{i}"), "1.0.0", None, schema.clone())
            .await?;
    }
    c.node()?
        .publish_schema("honest-standard", "1.0.0", None, schema.clone())
        .await?;
    // C holds everything; A syncs with it and takes what it may.
    wait_until("C to hold B's five standards", WAIT, || async {
        Ok((0..5).all(|i| {
            c.node()
                .is_ok_and(|n| n.schema_doc(&format!("flood-{i}"), Some("1.0.0")).is_ok())
        }))
    })
    .await?;
    let _ = a.node()?.sync_with(c.peer_id()).await;
    wait_until("A to hold C's standard", WAIT, || async {
        Ok(a.node()?
            .schema_doc("honest-standard", Some("1.0.0"))
            .is_ok())
    })
    .await?;
    let from_b = a
        .node()?
        .schema_docs()?
        .iter()
        .filter(|d| d.document.publisher == b.peer_id().to_string())
        .count();
    assert_eq!(from_b, 3, "A keeps at most 3 standards of B");
    net.stop_all().await
}

/// A member serving standard after standard (fifty, listed in its heads, each signed and
/// served on request) gets only its quota kept; an honest member's standard is taken meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_serving_standards_beyond_its_quota_gets_only_the_quota_kept() -> Result<()> {
    let h_key = NodeKey::generate();
    let mut net = network(2, &h_key, |i, c| {
        if i == 0 {
            c.sync.max_standards_per_member = 3;
            c.sync.anti_entropy_secs = 1;
        }
    })
    .await?;
    net.wait_full_mesh().await?;
    let (a, c) = (&net.nodes[0], &net.nodes[1]);
    let schema = sample_schema(STANDARD)?;
    let digest = yrd_node::node::schemas::schema_digest(&schema)?;
    let docs: Vec<Signed<SchemaDoc>> = (0..50)
        .map(|i| {
            let doc = SchemaDoc {
                id: format!("flood-{i}"),
                version: "1.0.0".into(),
                title: "企业登记".into(),
                schema: schema.clone(),
                digest: digest.clone(),
                publisher: h_key.peer_id().to_string(),
                region: "340000".parse()?,
                published_at: "2026-12-06T00:00:00Z".into(),
            };
            Ok(Signed::sign(doc, h_key.signing_key())?)
        })
        .collect::<Result<_>>()?;
    let listed: Vec<SchemaHead> = docs
        .iter()
        .map(|d| SchemaHead {
            id: d.document.id.clone(),
            version: d.document.version.clone(),
            digest: d.document.digest.clone(),
        })
        .collect();
    // Which standards A asks the member for, in order.
    let asked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let asked_by_a = asked.clone();
    let hostile = HostileMember::start(
        h_key.clone(),
        a,
        Arc::new(move |r| match r {
            Request::Heads => Some(Response::Heads {
                charter: None,
                catalogues: Vec::new(),
                schemas: listed.clone(),
            }),
            Request::GetSchema { id, .. } => {
                if let Ok(mut asked) = asked_by_a.lock() {
                    asked.push(id.clone());
                }
                docs.iter()
                    .find(|d| d.document.id == *id)
                    .map(|d| Response::Schema {
                        schema: Box::new(d.clone()),
                    })
            }
            // Anything else (our tree head shown for witnessing) is answered at once, so
            // each round with the member ends quickly and rounds follow each other.
            _ => Some(Response::Error {
                code: RefusalCode::Refused,
                message: "not served here".into(),
            }),
        }),
    )
    .await?;
    // A pulls what the member lists, round after round; C publishes meanwhile.
    hostile.wait_seen("get-schema", 4).await?;
    c.node()?
        .publish_schema("honest-standard", "1.0.0", None, schema.clone())
        .await?;
    wait_until("A to hold C's standard", WAIT, || async {
        Ok(a.node()?
            .schema_doc("honest-standard", Some("1.0.0"))
            .is_ok())
    })
    .await?;
    // Three rounds past the quota: A keeps the quota, and each standard it refused was asked
    // for once — a refusal ends the member's pulls for that round and is remembered, so the
    // member costs A one pull a round, not `max_pulls_per_peer` (64) of up to 8 MiB each.
    hostile.wait_seen("get-schema", 6).await?;
    let from_hostile = a
        .node()?
        .schema_docs()?
        .iter()
        .filter(|d| d.document.publisher == h_key.peer_id().to_string())
        .count();
    assert_eq!(from_hostile, 3, "A keeps at most 3 standards of the member");
    let asked = asked.lock().map(|a| a.clone()).unwrap_or_default();
    let mut distinct = asked.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        asked.len(),
        "a refused standard was asked for again: {asked:?}"
    );
    hostile.shutdown().await;
    net.stop_all().await
}

// ------------------------------------------------------------------------- hole 9: witnessing

/// An honest node's heads handled out of order: the older one after the newer is not a fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_head_shown_after_a_newer_one_is_not_a_fork() -> Result<()> {
    let mut net = TestNet::meshed(2).await?;
    let (witness, owner) = (&net.nodes[0], &net.nodes[1]);
    let log = owner.node()?.provenance();
    let older = log.head().context("no head")?;
    new_snapshot(owner, "need-registration").await?;
    let newer = log.head().context("no head")?;
    assert!(newer.document.size > older.document.size);
    let show = |head: Signed<TreeHead>| async move {
        let request = Request::TreeHead {
            head: Box::new(head),
        };
        let answer = owner
            .node()?
            .net()
            .request(witness.peer_id(), request)
            .await?;
        anyhow::Ok(answer)
    };
    let answer = show(newer).await?;
    assert!(matches!(answer, Response::Cosigned { .. }), "{answer:?}");
    let answer = show(older).await?;
    assert!(
        !matches!(answer, Response::Error { ref message, .. } if message.contains("fork")),
        "{answer:?}"
    );
    assert!(witness.node()?.alarms()?.is_empty(), "no alarm");
    // The owner's later heads are cosigned as before.
    new_snapshot(owner, "need-licences").await?;
    owner.node()?.send_head(witness.peer_id()).await?;
    net.stop_all().await
}

/// A smaller head that is not a prefix of the head held is a fork, proven by the heads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smaller_head_that_is_not_a_prefix_of_the_held_one_is_a_fork() -> Result<()> {
    let h_key = NodeKey::generate();
    let mut net = network(1, &h_key, |_, _| {}).await?;
    let witness = &net.nodes[0];
    let (kept, forked) = (Arc::new(FakeLog::new("a", 4)?), FakeLog::new("b", 4)?);
    let proofs = kept.clone();
    let hostile = HostileMember::start(
        h_key,
        witness,
        Arc::new(move |r| match r {
            Request::Consistency { old_size, new_size } => Some(Response::Consistency {
                proof: proofs.proof(*old_size, *new_size).ok()?,
            }),
            _ => None,
        }),
    )
    .await?;
    let answer = hostile.show_head(hostile.head(4, &kept.root(4)?)?).await?;
    assert!(matches!(answer, Response::Cosigned { .. }), "{answer:?}");
    // A true prefix, proven: not a fork.
    let answer = hostile.show_head(hostile.head(2, &kept.root(2)?)?).await?;
    assert!(matches!(answer, Response::Cosigned { .. }), "{answer:?}");
    assert!(witness.node()?.alarms()?.is_empty());
    // Size 2 of another log: its proof to the held head cannot verify.
    let answer = hostile
        .show_head(hostile.head(2, &forked.root(2)?)?)
        .await?;
    assert!(
        matches!(answer, Response::Error { ref message, .. } if message.contains("fork")),
        "{answer:?}"
    );
    let alarms = witness.node()?.alarms()?;
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0].held.document.size, 4);
    assert_eq!(alarms[0].presented.document.size, 2);
    net.stop_all().await
}

/// A member that never answers the consistency request its head needs does not hold up the
/// witnessing of another member's head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_stalling_its_consistency_proof_does_not_hold_up_witnessing_of_others()
-> Result<()> {
    let h_key = NodeKey::generate();
    let mut net = network(2, &h_key, |_, _| {}).await?;
    net.wait_full_mesh().await?;
    let (witness, owner) = (&net.nodes[0], &net.nodes[1]);
    let hostile = Arc::new(HostileMember::start(h_key, witness, silent()).await?);
    let w = witness.peer_id();
    let log = FakeLog::new("a", 2)?;
    let answer = hostile.show_head(hostile.head(1, &log.root(1)?)?).await?;
    assert!(matches!(answer, Response::Cosigned { .. }), "{answer:?}");
    // A larger head: the witness asks for a consistency proof, which never comes.
    let stalled = hostile.clone();
    let larger = hostile.head(2, &log.root(2)?)?;
    tokio::spawn(async move { stalled.show_head(larger).await });
    hostile.wait_seen("consistency", 1).await?;
    // Meanwhile an honest member's head is cosigned at once.
    tokio::time::timeout(Duration::from_secs(5), owner.node()?.send_head(w))
        .await
        .context("the honest head waited for the stalled one")??;
    net.stop_all().await
}
