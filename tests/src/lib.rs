//! The multi-node test harness, in the manner of lighthouse's `node_test_rig`: in-process nodes
//! with their own temp dirs, real libp2p on loopback ports chosen by the OS, real sled, and a
//! typed admin API client for each ([`api::Api`]). [`TestNode::start`] is the one place a node is
//! started; [`wait_until`] is the one way a test waits for something; [`fixtures`] holds the
//! setups (standards, offers, versions, the provider, grants) the test files share.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tempfile::TempDir;
use yrd_node::config::{CONFIG_FILE, Member, NodeConfig};
use yrd_node::identity::{self, NodeKey, TOKEN_FILE};
use yrd_node::model::region::{self, Region};
use yrd_node::node::{Node, NodeOptions, PeerView};
use yrd_node::server::Server;
use yrd_node::setup::{self, InitOptions};

pub mod api;
pub mod charter;
pub mod fixtures;
pub mod hostile;
pub mod verifiers;

use api::Api;

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

    /// Starts the node: the one place a test node is started.
    pub async fn start(&mut self) -> Result<()> {
        if self.running.is_some() {
            bail!("node already running");
        }
        let options = NodeOptions::from_config_file(&self.config_path())?;
        let first_start = options
            .config
            .network
            .listen
            .iter()
            .any(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(0))));
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

    /// Stops the node cleanly; returns once its database may be opened again.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(r) = self.running.take() {
            r.shutdown().await?;
            self.wait_database_released().await?;
        }
        Ok(())
    }

    /// Waits until nothing holds the lock of the node's database: sled's background writes
    /// keep it a moment after the last handle is dropped, so a start or an open of the store
    /// right after a shutdown (or after a test's own use of the store) could find it locked.
    pub async fn wait_database_released(&self) -> Result<()> {
        let lock_file = self.data_dir.join(yrd_node::store::DB_DIR).join("db");
        wait_until("the node's database lock to be released", WAIT, || async {
            Ok(std::fs::File::open(&lock_file)?.try_lock().is_ok())
        })
        .await
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
        Ok(&self.running()?.node)
    }

    /// Takes the key the data dir holds now (after a key rotation switched it).
    pub fn reload_key(&mut self) -> Result<()> {
        self.key = NodeKey::load(&self.data_dir.join(yrd_node::identity::KEY_FILE))?;
        Ok(())
    }

    /// The node id.
    pub fn peer_id(&self) -> PeerId {
        self.key.peer_id()
    }

    /// The admin token, as the data dir holds it.
    pub fn token(&self) -> Result<String> {
        Ok(identity::load_token(&self.data_dir.join(TOKEN_FILE))?)
    }

    /// The admin API base URL.
    pub fn api_url(&self) -> Result<String> {
        Ok(format!("http://{}", self.running()?.api_address))
    }

    /// A typed admin API client.
    pub fn api(&self) -> Result<Api> {
        Ok(Api::new(self.api_url()?, self.token()?))
    }

    /// The first address it listens on that `wanted` accepts, with `/p2p/<id>`, once it listens.
    pub async fn listen_address(
        &self,
        what: &str,
        wanted: impl Fn(&Multiaddr) -> bool,
    ) -> Result<Multiaddr> {
        let node = self.node()?;
        let addr = wait_until(&format!("the node to listen on {what}"), WAIT, || async {
            let addrs = node.net().listen_addresses().await?;
            Ok(addrs.into_iter().find(|a| wanted(a)))
        })
        .await?;
        addr.with_p2p(self.peer_id())
            .map_err(|a| anyhow::anyhow!("{a} already names another peer"))
    }

    /// The TCP address it listens on, with `/p2p/<id>`, once it listens.
    pub async fn tcp_address(&self) -> Result<Multiaddr> {
        self.listen_address("a TCP port", |a| {
            a.iter()
                .any(|p| matches!(p, Protocol::Tcp(port) if port != 0))
        })
        .await
    }

    /// The TCP port it listens on.
    pub async fn tcp_port(&self) -> Result<u16> {
        self.tcp_address()
            .await?
            .iter()
            .find_map(|p| match p {
                Protocol::Tcp(port) => Some(port),
                _ => None,
            })
            .context("no TCP port")
    }

    /// Connected members, as the API reports them.
    pub async fn peers(&self) -> Result<Vec<PeerView>> {
        Ok(self.api()?.peers().await?)
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

    /// [`TestNet::line`] of `n` nodes, waited on until it is a full mesh.
    pub async fn meshed(n: usize) -> Result<TestNet> {
        let net = TestNet::line(n).await?;
        net.wait_full_mesh().await?;
        Ok(net)
    }

    /// The typed API client of node `i`.
    pub fn api(&self, i: usize) -> Result<Api> {
        self.nodes.get(i).context("no such node")?.api()
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

    /// Waits until every node holds standard `id` at `version`.
    pub async fn wait_schema(&self, id: &str, version: &str) -> Result<()> {
        wait_until(&format!("{id}@{version} on every node"), WAIT, || async {
            for n in &self.nodes {
                if n.node()?.schema_doc(id, Some(version)).is_err() {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await
    }

    /// Waits until every other running node holds node `i`'s latest catalogue snapshot.
    pub async fn wait_catalogue_of(&self, i: usize) -> Result<()> {
        let publisher = self.nodes.get(i).context("no such node")?;
        let latest = publisher
            .node()?
            .own_catalogue()?
            .map(|c| c.document.sequence)
            .unwrap_or(0);
        let id = publisher.peer_id().to_string();
        let others = self
            .nodes
            .iter()
            .filter(|n| n.peer_id() != publisher.peer_id());
        for n in others.filter(|n| n.running.is_some()) {
            wait_until(
                &format!("{} to hold snapshot {latest} of node {i}", n.region.code()),
                WAIT,
                || async {
                    Ok(n.node()?
                        .network_catalogues()
                        .iter()
                        .any(|c| c.document.publisher == id && c.document.sequence >= latest))
                },
            )
            .await?;
        }
        Ok(())
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

/// What a wait's condition answers: `bool` (done or not yet), or `Option<T>` (the value the wait
/// returns, once there is one).
pub trait Outcome {
    /// What the wait returns.
    type Value;
    /// The value, once the wait is over.
    fn ready(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Polls `check` every 100 ms until it is ready, failing after `timeout` with a message naming
/// `what` and the last error `check` returned (an error means "not yet": a peer reconnecting).
pub async fn wait_until<F, Fut, O>(what: &str, timeout: Duration, mut check: F) -> Result<O::Value>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<O>>,
    O: Outcome,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(outcome) => {
                if let Some(value) = outcome.ready() {
                    return Ok(value);
                }
            }
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
