//! Catalogue sync and witnessing against a hostile member: one that lists standards or catalogue
//! sequences it never serves, floods standards, or stalls a consistency proof. Each test checks
//! that the node under attack keeps syncing with and witnessing the honest members meanwhile,
//! and that tree heads arriving out of order are not taken for a fork.
//!
//! The hostile member ([`Hostile`]) is a member key on the node's own network stack
//! (`yrd_node::net`) that answers `/yrd/req/1` as the test tells it — or never.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use libp2p::{Multiaddr, PeerId};
use std::sync::Mutex;
use yrd_node::config::NodeConfig;
use yrd_node::identity::NodeKey;
use yrd_node::model::catalogue::{Demand, UpdateCycle};
use yrd_node::model::merkle::{self, MemoryStore};
use yrd_node::model::message::{Head, Request, Response, SchemaHead};
use yrd_node::model::node_info::NodeInfo;
use yrd_node::model::provenance::TreeHead;
use yrd_node::model::signed::Signed;
use yrd_node::net::{self, Members, NetConfig, NetEvent, NetHandle, TcpSecurity};
use yrd_tests::fixtures::{STANDARD, sample_schema};
use yrd_tests::{TestNet, TestNode, WAIT, wait_until};

// ------------------------------------------------------------------------- the hostile member

/// What the hostile member answers to a request: `None` keeps the request open for ever.
type Behaviour = Arc<dyn Fn(&Request) -> Option<Response> + Send + Sync>;

/// A federation member that answers as its behaviour says (its NodeInfo always truly).
struct Hostile {
    key: NodeKey,
    net: NetHandle,
    /// The kind of every request it received, in order.
    seen: Arc<Mutex<Vec<String>>>,
}

impl Hostile {
    /// Starts it on loopback, trusting `members` and dialling `bootstrap`.
    async fn start(
        key: NodeKey,
        members: Vec<PeerId>,
        bootstrap: Multiaddr,
        behaviour: Behaviour,
    ) -> Result<Hostile> {
        let config = NetConfig {
            key: key.clone(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            external_addresses: Vec::new(),
            bootstrap: vec![bootstrap],
            known_addresses: Vec::new(),
            members: Members::new(members),
            mdns: false,
            redial_max: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(300),
            ping_interval: Duration::from_secs(15),
            request_timeout: Duration::from_secs(60),
            agent: "hostile/1".into(),
            tcp_security: TcpSecurity::Noise,
            quic_window_bytes: 1 << 24,
        };
        let (net, mut events, event_loop) = net::new(config)?;
        tokio::spawn(event_loop.run());
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (handle, log, card_key) = (net.clone(), seen.clone(), key.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(event) = events.recv().await {
                let NetEvent::InboundRequest {
                    request, channel, ..
                } = event
                else {
                    continue;
                };
                let kind = serde_json::to_value(&request).unwrap()["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                log.lock().unwrap().push(kind);
                let answer = match request {
                    Request::NodeInfo => Some(Response::NodeInfo {
                        info: Box::new(node_info(&card_key)),
                    }),
                    ref other => behaviour(other),
                };
                match answer {
                    Some(response) => {
                        let _ = handle.respond(channel, response).await;
                    }
                    None => held.push(channel),
                }
            }
        });
        Ok(Hostile { key, net, seen })
    }

    fn peer_id(&self) -> PeerId {
        self.key.peer_id()
    }

    /// How many requests of `kind` it received.
    fn seen(&self, kind: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|k| *k == kind)
            .count()
    }

    /// Waits until it has received at least `n` requests of `kind`.
    async fn wait_seen(&self, kind: &str, n: usize) -> Result<()> {
        wait_until(
            &format!("{n} {kind} request(s) at the hostile member"),
            WAIT,
            || async { Ok(self.seen(kind) >= n) },
        )
        .await
    }

    /// A head of its log signed by it.
    fn head(&self, size: u64, root: &merkle::Hash) -> Signed<TreeHead> {
        let head = TreeHead {
            log: self.peer_id().to_string(),
            size,
            root: hex(root),
            time: "2026-12-06T00:00:00Z".into(),
        };
        Signed::sign(head, self.key.signing_key()).unwrap()
    }

    /// Shows `head` to `witness` and returns its answer.
    async fn show(&self, witness: PeerId, head: Signed<TreeHead>) -> Result<Response> {
        let request = Request::TreeHead {
            head: Box::new(head),
        };
        Ok(self.net.request(witness, request).await?)
    }
}

fn node_info(key: &NodeKey) -> Signed<NodeInfo> {
    let info = NodeInfo {
        peer_id: key.peer_id().to_string(),
        region: "340000".parse().unwrap(),
        organisation: "hostile bureau".into(),
        addresses: Vec::new(),
        issued_at: "2026-12-06T00:00:00Z".into(),
        software: "hostile/1".into(),
    };
    Signed::sign(info, key.signing_key()).unwrap()
}

/// A log of `leaves` records whose contents start with `tag` (two tags: two different logs).
fn tree(tag: &str, leaves: u64) -> MemoryStore {
    let mut store = MemoryStore::new();
    for i in 0..leaves {
        store
            .append(merkle::leaf_hash(format!("{tag}{i}").as_bytes()))
            .unwrap();
    }
    store
}

fn root_of(store: &MemoryStore, size: u64) -> merkle::Hash {
    merkle::root(size, store).unwrap()
}

fn proof_hex(store: &MemoryStore, old: u64, new: u64) -> Vec<String> {
    merkle::consistency_proof(old, new, store)
        .unwrap()
        .iter()
        .map(hex)
        .collect()
}

fn hex(hash: &merkle::Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

// ------------------------------------------------------------------------- the network

/// `n` honest nodes that also trust `hostile`, each bootstrapping to the last one (which
/// starts first). `tweak(i, config)` edits node i's config before it starts.
async fn network(
    n: usize,
    hostile: &NodeKey,
    tweak: impl Fn(usize, &mut NodeConfig),
) -> Result<TestNet> {
    let root = tempfile::tempdir()?;
    let keys: Vec<NodeKey> = (0..n).map(|_| NodeKey::generate()).collect();
    let mut ids: Vec<PeerId> = keys.iter().map(NodeKey::peer_id).collect();
    ids.push(hostile.peer_id());
    let mut nodes: Vec<TestNode> = Vec::new();
    let mut hub: Option<Multiaddr> = None;
    for i in (0..n).rev() {
        let bootstrap = hub.clone().into_iter().collect();
        let mut node = TestNode::create(root.path(), i, keys[i].clone(), &ids, bootstrap)?;
        node.edit_config(|c| tweak(i, c))?;
        node.start().await?;
        if hub.is_none() {
            hub = Some(node.tcp_address().await?);
        }
        nodes.push(node);
    }
    nodes.reverse();
    Ok(TestNet { root, nodes })
}

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

/// Makes `node` issue a new catalogue (a new demand); returns its sequence.
async fn new_snapshot(node: &TestNode, name: &str) -> Result<u64> {
    let node = node.node()?;
    node.add_demand(Demand {
        identifier: name.into(),
        title: "企业登记信息".into(),
        schema_id: "enterprise-registration".into(),
        version_req: "^1.0".into(),
        purpose: "跨省通办".into(),
        legal_basis: "《优化营商环境条例》".into(),
        frequency: UpdateCycle::Daily,
        regions: Vec::new(),
    })
    .await?;
    Ok(node
        .own_catalogue()?
        .context("no catalogue")?
        .document
        .sequence)
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

    let fake: Vec<SchemaHead> = (0..10_000)
        .map(|i| SchemaHead {
            id: format!("fake-{i}"),
            version: "1.0.0".into(),
            digest: "00".repeat(32),
        })
        .collect();
    let hostile = Hostile::start(
        h_key,
        vec![a.peer_id()],
        a.tcp_address().await?,
        Arc::new(move |r| match r {
            Request::Heads => Some(Response::Heads {
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
    let hostile = Hostile::start(
        h_key,
        vec![a.peer_id()],
        a.tcp_address().await?,
        Arc::new(move |r| match r {
            Request::Heads => Some(Response::Heads {
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
    let (kept, forked) = (Arc::new(tree("a", 4)), Arc::new(tree("b", 4)));
    let proofs = kept.clone();
    let hostile = Hostile::start(
        h_key,
        vec![witness.peer_id()],
        witness.tcp_address().await?,
        Arc::new(move |r| match r {
            Request::Consistency { old_size, new_size } => Some(Response::Consistency {
                proof: proof_hex(&proofs, *old_size, *new_size),
            }),
            _ => None,
        }),
    )
    .await?;
    let w = witness.peer_id();
    wait_until("the witness to know the hostile member", WAIT, || async {
        Ok(witness.peers().await?.iter().any(|p| p.region.is_some()))
    })
    .await?;
    let answer = hostile.show(w, hostile.head(4, &root_of(&kept, 4))).await?;
    assert!(matches!(answer, Response::Cosigned { .. }), "{answer:?}");
    // A true prefix, proven: not a fork.
    let answer = hostile.show(w, hostile.head(2, &root_of(&kept, 2))).await?;
    assert!(matches!(answer, Response::Cosigned { .. }), "{answer:?}");
    assert!(witness.node()?.alarms()?.is_empty());
    // Size 2 of another log: its proof to the held head cannot verify.
    let answer = hostile
        .show(w, hostile.head(2, &root_of(&forked, 2)))
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
    let hostile = Arc::new(
        Hostile::start(
            h_key,
            vec![witness.peer_id()],
            witness.tcp_address().await?,
            Arc::new(|_| None),
        )
        .await?,
    );
    let w = witness.peer_id();
    wait_until("the witness to know the hostile member", WAIT, || async {
        Ok(witness.peers().await?.len() == 2)
    })
    .await?;
    let log = tree("a", 2);
    let answer = hostile.show(w, hostile.head(1, &root_of(&log, 1))).await?;
    assert!(matches!(answer, Response::Cosigned { .. }), "{answer:?}");
    // A larger head: the witness asks for a consistency proof, which never comes.
    let stalled = hostile.clone();
    let larger = hostile.head(2, &root_of(&log, 2));
    tokio::spawn(async move { stalled.show(w, larger).await });
    hostile.wait_seen("consistency", 1).await?;
    // Meanwhile an honest member's head is cosigned at once.
    tokio::time::timeout(Duration::from_secs(5), owner.node()?.send_head(w))
        .await
        .context("the honest head waited for the stalled one")??;
    net.stop_all().await
}
