//! Multi-node network tests: real libp2p on loopback, real sled, temp dirs, ports 0.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yrd_node::identity::NodeKey;
use yrd_tests::api::{refusal, refusal_of};
use yrd_tests::fixtures::{STANDARD, publish_sample_standard};
use yrd_tests::{TestNet, TestNode, WAIT, add_member, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_bootstrapped_in_a_line_end_in_a_full_mesh() -> Result<()> {
    let mut net = TestNet::meshed(4).await?;
    // Every display of a peer shows its region code and name.
    let peers = net.nodes[0].peers().await?;
    let labels: Vec<String> = peers
        .iter()
        .filter_map(|p| p.region_label.clone())
        .collect();
    assert!(
        labels.iter().any(|l| l.starts_with("320000 江苏省")),
        "{labels:?}"
    );
    assert!(
        labels.iter().any(|l| l.starts_with("340000 安徽省")),
        "{labels:?}"
    );
    assert!(
        peers
            .iter()
            .all(|p| !p.addresses.is_empty() && p.organisation.is_some())
    );
    net.stop_all().await
}

/// Each member's count of refused connections.
async fn refusals(net: &TestNet) -> Result<Vec<u64>> {
    let mut counts = Vec::new();
    for n in &net.nodes {
        counts.push(n.api()?.health().await?.refused_connections);
    }
    Ok(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_is_refused_by_every_member() -> Result<()> {
    let mut net = TestNet::meshed(3).await?;
    // The outsider trusts the members and dials each of them; none of them trusts it.
    let member_ids: Vec<_> = net.nodes.iter().map(TestNode::peer_id).collect();
    let mut bootstrap = Vec::new();
    for n in &net.nodes {
        bootstrap.push(n.tcp_address().await?);
    }
    let mut outsider = TestNode::create(
        net.root.path(),
        5,
        NodeKey::generate(),
        &member_ids,
        bootstrap,
    )?;
    outsider.start().await?;
    let outsider_id = outsider.peer_id();

    let first = wait_until("every member to refuse the outsider", WAIT, || async {
        let counts = refusals(&net).await?;
        Ok(counts.iter().all(|c| *c > 0).then_some(counts))
    })
    .await?;
    // Two more redial rounds refused everywhere: it never gets in, however often it tries.
    wait_until("two more refused redial rounds", WAIT, || async {
        let counts = refusals(&net).await?;
        Ok(counts
            .iter()
            .zip(&first)
            .all(|(now, then)| *now >= then + 2))
    })
    .await?;
    for n in &net.nodes {
        let peers = n.peers().await?;
        assert!(peers.iter().all(|p| p.peer_id != outsider_id.to_string()));
        // Nothing it sent is kept: it has no record in the member's database.
        assert!(n.node()?.store().peer(&outsider_id)?.is_none());
    }
    // No member ever answered it: it holds no verified card of anyone.
    assert!(outsider.peers().await?.iter().all(|p| p.region.is_none()));
    let outsider_store = outsider.node()?.store().peers()?;
    assert!(
        outsider_store.iter().all(|(_, p)| p.node_info.is_none()),
        "{outsider_store:?}"
    );
    outsider.stop().await?;
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_identity_and_reconnects_without_help() -> Result<()> {
    let mut net = TestNet::meshed(3).await?;
    let before = net.nodes[2].peer_id();
    // Node 2 (the end of the line) bootstraps to nobody: it must reconnect from what it learned.
    net.nodes[2].restart().await?;
    let view = net.api(2)?.node().await?;
    assert_eq!(view.peer_id, before.to_string());
    net.wait_full_mesh().await?;
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_later_is_admitted() -> Result<()> {
    let mut net = TestNet::meshed(2).await?;
    let ids: Vec<_> = net.nodes.iter().map(TestNode::peer_id).collect();
    let key = NodeKey::generate();
    let newcomer_id = key.peer_id();
    let bootstrap = vec![net.nodes[0].tcp_address().await?];
    let mut newcomer = TestNode::create(net.root.path(), 2, key, &ids, bootstrap)?;
    for n in &mut net.nodes {
        n.edit_config(|c| add_member(c, newcomer_id))?;
        n.restart().await?;
    }
    newcomer.start().await?;
    net.nodes.push(newcomer);
    net.wait_full_mesh().await?;
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_speaking_garbage_does_not_hurt_the_node() -> Result<()> {
    let mut net = TestNet::meshed(2).await?;
    let port = net.nodes[0].tcp_port().await?;
    for payload in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xffu8; 4096][..],
        b"/multistream/1.0.0\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        // The node has dealt with it once it closes the connection (or resets it: the
        // writes and the read may then fail).
        let sent = async {
            s.write_all(payload).await?;
            s.shutdown().await?;
            s.read_to_end(&mut Vec::new()).await
        };
        match tokio::time::timeout(WAIT, sent).await? {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let health = net.api(0)?.health().await?;
    assert_eq!(health.status, "ok");
    assert_eq!(
        net.nodes[0].peers().await?.len(),
        1,
        "the member connection survives"
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_a_missing_or_wrong_token() -> Result<()> {
    let mut net = TestNet::line(1).await?;
    let url = net.nodes[0].api_url()?;
    let peer = net.nodes[0].peer_id().to_string();
    let http = reqwest::Client::new();
    for path in [
        "/api/v1/health",
        "/api/v1/node",
        "/api/v1/peers",
        "/api/v1/nonexistent",
    ] {
        let none = http.get(format!("{url}{path}")).send().await?;
        let (status, body) = refusal_of(none).await?;
        assert_eq!(status, 401, "{path} without token");
        assert_eq!(body.error, "unauthorized");
        assert!(!body.message.contains(&peer), "{path}: {}", body.message);
        let (status, _) =
            refusal(http.get(format!("{url}{path}")).bearer_auth("0".repeat(64))).await?;
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    assert_eq!(net.api(0)?.health().await?.status, "ok");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_libp2p_port_of_a_running_node_is_a_clear_error() -> Result<()> {
    let mut net = TestNet::line(1).await?;
    let mut taken = net.nodes[0].tcp_address().await?;
    taken.pop();
    let mut clash = TestNode::create(net.root.path(), 1, NodeKey::generate(), &[], Vec::new())?;
    clash.edit_config(|c| c.network.listen = vec![taken])?;
    let err = clash.start().await.expect_err("port in use");
    assert!(err.to_string().contains("already in use"), "{err}");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_port_of_a_running_node_is_a_clear_error() -> Result<()> {
    let mut net = TestNet::line(1).await?;
    let api = net.nodes[0].running()?.api_address;
    let mut clash = TestNode::create(net.root.path(), 1, NodeKey::generate(), &[], Vec::new())?;
    clash.edit_config(|c| c.api.listen = api)?;
    let err = clash.start().await.expect_err("API port in use");
    assert!(
        err.to_string().contains("admin API") && err.to_string().contains("already in use"),
        "{err}"
    );
    net.stop_all().await
}

/// The times at which something connected to a TCP listener that closes each connection at
/// once: a bootstrap member whose port answers but that never completes a handshake.
struct Silent {
    attempts: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    async fn listen(port: u16) -> Result<Silent> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let seen = attempts.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                seen.lock().unwrap().push(Instant::now());
                drop(stream);
            }
        });
        Ok(Silent { attempts, task })
    }

    /// Offsets of the connection attempts from the first.
    fn attempts(&self) -> Vec<Duration> {
        let attempts = self.attempts.lock().unwrap().clone();
        match attempts.first() {
            Some(first) => attempts.iter().map(|t| *t - *first).collect(),
            None => Vec::new(),
        }
    }

    /// Rounds of connection attempts so far (attempts within 200 ms of the previous one are
    /// one round: a dial may try the address more than once).
    fn rounds(&self) -> usize {
        let attempts = self.attempts();
        attempts.len().min(1)
            + attempts
                .windows(2)
                .filter(|w| w[1] - w[0] > Duration::from_millis(200))
                .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bootstrap_member_is_redialled_until_it_answers() -> Result<()> {
    // The member runs once so its port and a standard of its own are known, then goes away.
    let root = tempfile::tempdir()?;
    let keys = [NodeKey::generate(), NodeKey::generate()];
    let ids: Vec<_> = keys.iter().map(NodeKey::peer_id).collect();
    let mut member = TestNode::create(root.path(), 0, keys[0].clone(), &ids, Vec::new())?;
    member.start().await?;
    let member_addr = member.tcp_address().await?;
    let port = member.tcp_port().await?;
    publish_sample_standard(&member.api()?, STANDARD).await?;
    member.stop().await?;
    let silent = Silent::listen(port).await?;

    // The node starts and serves its API although its only bootstrap member cannot be reached.
    let mut lonely = TestNode::create(root.path(), 1, keys[1].clone(), &ids, vec![member_addr])?;
    // Redials wait 0.5 s, 1 s, then 2 s (the cap) until the member answers.
    lonely.edit_config(|c| c.network.redial_max_secs = 2)?;
    lonely.start().await?;
    let health = lonely.api()?.health().await?;
    assert_eq!(
        (
            health.status.as_str(),
            health.members,
            health.connected_members
        ),
        ("ok", 1, 0)
    );
    // It keeps redialling: round after round of dials, the waits between them capped at
    // network.redial_max_secs (service requests to the member dial it too, so the rounds are
    // not all spaced by the backoff).
    let rounds = wait_until(
        "five rounds of dials to the bootstrap address",
        WAIT,
        || async { Ok(silent.rounds() >= 5) },
    )
    .await;
    rounds.with_context(|| format!("dials seen: {:?}", silent.attempts()))?;
    let health = lonely.api()?.health().await?;
    assert_eq!(
        (health.status.as_str(), health.connected_members),
        ("ok", 0)
    );
    assert!(lonely.peers().await?.is_empty());

    // Once the member answers at that address again, the node connects and syncs from it.
    silent.task.abort();
    let _ = silent.task.await;
    member.start().await?;
    wait_until("the redial to reach the member", WAIT, || async {
        let peers = lonely.peers().await?;
        Ok(peers.len() == 1 && peers[0].region.is_some())
    })
    .await?;
    wait_until("the member's standard to sync", WAIT, || async {
        Ok(lonely.node()?.schema_doc(STANDARD, Some("1.0.0")).is_ok())
    })
    .await?;
    lonely.stop().await?;
    member.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_connect_over_quic() -> Result<()> {
    let root = tempfile::tempdir()?;
    let keys = [NodeKey::generate(), NodeKey::generate()];
    let ids: Vec<_> = keys.iter().map(NodeKey::peer_id).collect();
    let quic: libp2p::Multiaddr = "/ip4/127.0.0.1/udp/0/quic-v1".parse()?;
    let is_quic = |m: &libp2p::Multiaddr| m.to_string().contains("quic-v1");
    let mut a = TestNode::create(root.path(), 0, keys[0].clone(), &ids, Vec::new())?;
    a.edit_config(|c| c.network.listen = vec![quic.clone()])?;
    a.start().await?;
    let a_addr = a.listen_address("QUIC", is_quic).await?;
    let mut b = TestNode::create(root.path(), 1, keys[1].clone(), &ids, vec![a_addr])?;
    b.edit_config(|c| c.network.listen = vec![quic])?;
    b.start().await?;
    wait_until("a verified QUIC connection", WAIT, || async {
        let peers = b.peers().await?;
        Ok(peers.len() == 1
            && peers[0].region.is_some()
            && peers[0].addresses.iter().all(|a| a.contains("quic-v1")))
    })
    .await?;
    b.stop().await?;
    a.stop().await
}
