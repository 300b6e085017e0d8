//! Multi-node network tests: real libp2p on loopback, real sled, temp dirs, ports 0.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::err_expect)] // tests may panic

use std::time::Duration;

use anyhow::Result;
use tokio::io::AsyncWriteExt;
use yrd_node::identity::NodeKey;
use yrd_tests::{TestNet, TestNode, WAIT, add_member, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_bootstrapped_in_a_line_end_in_a_full_mesh() -> Result<()> {
    let mut net = TestNet::line(4).await?;
    net.wait_full_mesh().await?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_is_refused_by_every_member() -> Result<()> {
    let mut net = TestNet::line(3).await?;
    net.wait_full_mesh().await?;
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

    wait_until("every member to refuse the outsider", WAIT, || async {
        for n in &net.nodes {
            let health: serde_json::Value = n.client()?.get("/api/v1/health").await?;
            if health["refused_connections"].as_u64().unwrap_or(0) == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    // Give it a few redial rounds: it must never appear as a connected peer anywhere.
    tokio::time::sleep(Duration::from_secs(2)).await;
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
    let mut net = TestNet::line(3).await?;
    net.wait_full_mesh().await?;
    let before = net.nodes[2].peer_id();
    // Node 2 (the end of the line) bootstraps to nobody: it must reconnect from what it learned.
    net.nodes[2].restart().await?;
    let view: serde_json::Value = net.nodes[2].client()?.get("/api/v1/node").await?;
    assert_eq!(view["peer_id"].as_str(), Some(before.to_string().as_str()));
    net.wait_full_mesh().await?;
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_later_is_admitted() -> Result<()> {
    let mut net = TestNet::line(2).await?;
    net.wait_full_mesh().await?;
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
    let mut net = TestNet::line(2).await?;
    net.wait_full_mesh().await?;
    let addr = net.nodes[0].tcp_address().await?;
    let port = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    for payload in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xffu8; 4096][..],
        b"/multistream/1.0.0\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(payload).await?;
        drop(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health: serde_json::Value = net.nodes[0].client()?.get("/api/v1/health").await?;
    assert_eq!(health["status"], "ok");
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
    let http = reqwest::Client::new();
    for path in [
        "/api/v1/health",
        "/api/v1/node",
        "/api/v1/peers",
        "/api/v1/nonexistent",
    ] {
        let none = http.get(format!("{url}{path}")).send().await?;
        assert_eq!(none.status(), 401, "{path} without token");
        let body: serde_json::Value = none.json().await?;
        assert_eq!(body["error"], "unauthorized");
        assert!(body.get("peer_id").is_none());
        let wrong = http
            .get(format!("{url}{path}"))
            .bearer_auth("0".repeat(64))
            .send()
            .await?;
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
    }
    let ok: serde_json::Value = net.nodes[0].client()?.get("/api/v1/health").await?;
    assert_eq!(ok["status"], "ok");
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_clear_error_and_an_unreachable_bootstrap_peer_is_not() -> Result<()> {
    let mut net = TestNet::line(1).await?;
    let taken = net.nodes[0].tcp_address().await?;
    let member = NodeKey::generate();
    // An unreachable bootstrap member: the node starts, stays healthy, and keeps redialling.
    let unreachable = format!("/ip4/127.0.0.1/tcp/1/p2p/{}", member.peer_id()).parse()?;
    let mut lonely = TestNode::create(
        net.root.path(),
        1,
        NodeKey::generate(),
        &[member.peer_id()],
        vec![unreachable],
    )?;
    lonely.start().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let health: serde_json::Value = lonely.client()?.get("/api/v1/health").await?;
    assert_eq!(health["status"], "ok");
    lonely.stop().await?;

    // The libp2p port of a running node.
    let mut clash = TestNode::create(net.root.path(), 2, NodeKey::generate(), &[], Vec::new())?;
    let mut addr = taken.clone();
    addr.pop();
    clash.edit_config(|c| c.network.listen = vec![addr])?;
    let err = clash.start().await.expect_err("port in use");
    assert!(err.to_string().contains("already in use"), "{err}");

    // The admin API port of a running node.
    let api = net.nodes[0]
        .api_url()?
        .trim_start_matches("http://")
        .parse()?;
    clash.edit_config(|c| {
        c.network.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
        c.api.listen = api;
    })?;
    let err = clash.start().await.expect_err("API port in use");
    assert!(
        err.to_string().contains("admin API") && err.to_string().contains("already in use"),
        "{err}"
    );
    net.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_connect_over_quic() -> Result<()> {
    let root = tempfile::tempdir()?;
    let keys = [NodeKey::generate(), NodeKey::generate()];
    let ids: Vec<_> = keys.iter().map(NodeKey::peer_id).collect();
    let quic: libp2p::Multiaddr = "/ip4/127.0.0.1/udp/0/quic-v1".parse()?;
    let mut a = TestNode::create(root.path(), 0, keys[0].clone(), &ids, Vec::new())?;
    a.edit_config(|c| c.network.listen = vec![quic.clone()])?;
    a.start().await?;
    let deadline = std::time::Instant::now() + WAIT;
    let a_addr = loop {
        let addrs = a.node()?.net().listen_addresses().await?;
        if let Some(m) = addrs
            .into_iter()
            .find(|m| m.to_string().contains("quic-v1"))
        {
            break Some(m);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "A never listened on QUIC"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let a_addr = a_addr.expect("quic address").with_p2p(ids[0]).expect("p2p");
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
