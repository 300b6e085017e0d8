//! The multi-node test harness, in the manner of lighthouse's `node_test_rig`: in-process nodes
//! with their own temp dirs, real libp2p on loopback ports chosen by the OS, real sled, and an
//! admin API client for each.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use libp2p::{Multiaddr, PeerId};
use tempfile::TempDir;
use yrd_node::cli::client::ApiClient;
use yrd_node::config::{CONFIG_FILE, Member, NodeConfig};
use yrd_node::identity::{self, NodeKey, TOKEN_FILE};
use yrd_node::model::region::{self, Region};
use yrd_node::node::{Node, NodeOptions, PeerView};
use yrd_node::server::Server;
use yrd_node::setup::{self, InitOptions};

/// How long harness waits give the network before failing a test.
pub const WAIT: Duration = Duration::from_secs(30);

/// One in-process node.
#[derive(Debug)]
pub struct TestNode {
    /// Its region.
    pub region: Region,
    /// Its key (peer id).
    pub key: NodeKey,
    /// Its data dir.
    pub data_dir: PathBuf,
    running: Option<Server>,
}

impl TestNode {
    /// Creates the data dir of a node that trusts `members` and bootstraps to `bootstrap`.
    pub fn create(
        root: &Path,
        index: usize,
        key: NodeKey,
        members: &[PeerId],
        bootstrap: Vec<Multiaddr>,
    ) -> Result<TestNode> {
        let info = region::all()
            .nth(index)
            .context("more nodes than regions")?;
        let region = Region::from_code(info.code)?;
        let data_dir = root.join(format!("node{index}-{}", info.code));
        setup::init(InitOptions {
            data_dir: data_dir.clone(),
            region,
            name: format!("{} test bureau", info.name_zh),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            api: Some("127.0.0.1:0".parse()?),
            members: members
                .iter()
                .copied()
                .filter(|p| *p != key.peer_id())
                .collect(),
            bootstrap,
            mdns: false,
            key: Some(key.clone()),
        })?;
        Ok(TestNode {
            region,
            key,
            data_dir,
            running: None,
        })
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.data_dir.join(CONFIG_FILE)
    }

    /// Rewrites the config with `edit`.
    pub fn edit_config(&self, edit: impl FnOnce(&mut NodeConfig)) -> Result<()> {
        let mut config = NodeConfig::load(&self.config_path())?;
        edit(&mut config);
        setup::write_config(&self.config_path(), &config)?;
        Ok(())
    }

    /// Starts the node.
    pub async fn start(&mut self) -> Result<()> {
        if self.running.is_some() {
            bail!("node already running");
        }
        let options = NodeOptions::from_config_file(&self.config_path())?;
        let first_start = options.config.network.listen.iter().any(|a| {
            a.iter()
                .any(|p| matches!(p, libp2p::multiaddr::Protocol::Tcp(0)))
        });
        self.running = Some(Server::start(options).await?);
        if first_start {
            // Keep the port the OS chose, as a deployed node keeps its configured port, so peers
            // that learned the address reach the node again after a restart.
            let mut addr = self.tcp_address().await?;
            addr.pop();
            self.edit_config(|c| c.network.listen = vec![addr])?;
        }
        Ok(())
    }

    /// Stops the node cleanly.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(r) = self.running.take() {
            r.shutdown().await?;
        }
        Ok(())
    }

    /// Stops and starts again with the same data dir.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.start().await
    }

    /// The running node (its addresses).
    pub fn running(&self) -> Result<&Server> {
        self.running.as_ref().context("node not running")
    }

    /// The running node's service handle.
    pub fn node(&self) -> Result<&Node> {
        Ok(&self.running.as_ref().context("node not running")?.node)
    }

    /// The node id.
    pub fn peer_id(&self) -> PeerId {
        self.key.peer_id()
    }

    /// An admin API client.
    pub fn client(&self) -> Result<ApiClient> {
        let running = self.running.as_ref().context("node not running")?;
        let token = identity::load_token(&self.data_dir.join(TOKEN_FILE))?;
        Ok(ApiClient::new(
            format!("http://{}", running.api_address),
            token,
        ))
    }

    /// The admin API base URL.
    pub fn api_url(&self) -> Result<String> {
        let running = self.running.as_ref().context("node not running")?;
        Ok(format!("http://{}", running.api_address))
    }

    /// The TCP address it listens on, with `/p2p/<id>`, once it listens.
    pub async fn tcp_address(&self) -> Result<Multiaddr> {
        let node = self.node()?;
        let deadline = Instant::now() + WAIT;
        loop {
            let addrs = node.net().listen_addresses().await?;
            let tcp = addrs.into_iter().find(|a| {
                a.iter()
                    .any(|p| matches!(p, libp2p::multiaddr::Protocol::Tcp(port) if port != 0))
            });
            if let Some(a) = tcp {
                return a
                    .with_p2p(self.peer_id())
                    .map_err(|_| anyhow::anyhow!("p2p"));
            }
            if Instant::now() > deadline {
                bail!("node never listened");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Connected members, as the API reports them.
    pub async fn peers(&self) -> Result<Vec<PeerView>> {
        Ok(self.client()?.get("/api/v1/peers").await?)
    }
}

/// A set of nodes sharing one temp dir.
#[derive(Debug)]
pub struct TestNet {
    /// The temp dir holding every node.
    pub root: TempDir,
    /// The nodes, in region order.
    pub nodes: Vec<TestNode>,
}

impl TestNet {
    /// `n` members started in a line: node i bootstraps only to node i+1 (the last to none).
    pub async fn line(n: usize) -> Result<TestNet> {
        let root = tempfile::tempdir()?;
        let keys: Vec<NodeKey> = (0..n).map(|_| NodeKey::generate()).collect();
        let ids: Vec<PeerId> = keys.iter().map(NodeKey::peer_id).collect();
        let mut nodes: Vec<TestNode> = Vec::new();
        // Start from the end so each node's bootstrap address is known when it is created.
        let mut next_addr: Option<Multiaddr> = None;
        for i in (0..n).rev() {
            let bootstrap = next_addr.take().into_iter().collect();
            let mut node = TestNode::create(root.path(), i, keys[i].clone(), &ids, bootstrap)?;
            node.start().await?;
            next_addr = Some(node.tcp_address().await?);
            nodes.push(node);
        }
        nodes.reverse();
        Ok(TestNet { root, nodes })
    }

    /// Waits until every node sees every other node, verified (region known).
    pub async fn wait_full_mesh(&self) -> Result<()> {
        let n = self.nodes.len();
        wait_until("full mesh", WAIT, || async {
            for node in &self.nodes {
                let peers = node.peers().await?;
                let verified = peers.iter().filter(|p| p.region.is_some()).count();
                if verified < n - 1 {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await
    }

    /// Stops every node.
    pub async fn stop_all(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            node.stop().await?;
        }
        Ok(())
    }
}

/// Adds `peer` to a config's members.
pub fn add_member(config: &mut NodeConfig, peer: PeerId) {
    if !config.federation.members.iter().any(|m| m.peer_id == peer) {
        config.federation.members.push(Member {
            peer_id: peer,
            name: None,
        });
    }
}

/// Polls `check` every 100 ms until it returns true, failing after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value after `name` on the command line (`--records 1000` → `Some("1000")`), for the
/// benchmark binaries.
pub fn flag_value(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// Publishes the sample data standard `id` (version 1.0.0) on the node behind `client`.
pub async fn publish_sample_standard(client: &ApiClient, id: &str) -> Result<()> {
    let schema: serde_json::Value = serde_json::from_str(
        yrd_node::samples::schema_json(id).context("no sample standard of that id")?,
    )?;
    let _: serde_json::Value = client
        .post(
            "/api/v1/schemas",
            &serde_json::json!({"id": id, "version": "1.0.0", "schema": schema}),
        )
        .await?;
    Ok(())
}

/// Writes `records` sample records of `standard` (generator `seed`) to `dir/DATASET.jsonl` and
/// publishes them as the next version of the offer `dataset`.
pub async fn publish_sample_version(
    client: &ApiClient,
    dir: &Path,
    dataset: &str,
    standard: &str,
    records: usize,
    seed: u64,
) -> Result<()> {
    let file = dir.join(format!("{dataset}.jsonl"));
    let text: String = yrd_node::samples::generate(standard, records, seed)?
        .iter()
        .map(|r| format!("{r}\n"))
        .collect();
    std::fs::write(&file, text)?;
    let _: serde_json::Value = client
        .post(
            &format!("/api/v1/datasets/{dataset}/versions"),
            &serde_json::json!({"file": file, "format": "jsonl"}),
        )
        .await?;
    Ok(())
}
