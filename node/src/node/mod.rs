//! The service layer: the only place that decides. It owns the node's state (identity, store,
//! peers' verified NodeInfos, catalogues, standards), reacts to network events, and serves the
//! admin API and CLI.

pub mod access;
pub mod catalogue;
mod charter;
pub mod charter_sync;
pub mod clients;
pub mod counters;
pub mod datasets;
mod decoded;
mod error;
pub mod key_rotation;
mod peers;
pub mod provenance;
pub mod query;
pub mod schemas;
mod sync;
pub mod transfer;

pub use charter::{
    CharterVersionView, CharterView, FederationView, MemberView, RegionContradiction,
};
pub use error::{ErrorClass, NodeError};
pub use peers::REFUSAL_RECORDS_PER_PEER_PER_HOUR;

use schemars::JsonSchema;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::{format_system_time, now_rfc3339};
use crate::config::NodeConfig;
use crate::identity::{self, NodeKey, short_peer};

use crate::model::message::{ANNOUNCE_TOPIC, Announcement, CharterHead, Head, Request, Response};
use crate::model::node_info::NodeInfo;
use crate::model::refusal::RefusalCode;
use crate::model::region::Region;
use crate::model::signed::Signed;
use crate::net::{self, Members, NetConfig, NetError, NetEvent, NetHandle};
use crate::store::{Store, StoredPeer};

/// Directory of the dataset blobs inside the data dir.
pub const BLOBS_DIR: &str = "blobs";

/// Inbound Access, Decision, Revoke, Receipt and TreeHead requests answered at once; beyond it a
/// peer is told to retry later (`busy`), so no flood of them grows the task set without bound.
pub const MAX_INBOUND_EXCHANGE: usize = 64;

/// A peer's answer that is not the one asked for: its refusal as such, anything else as
/// unexpected.
fn not_served(peer: PeerId, response: Response) -> NodeError {
    match response {
        Response::Error { code, message } => NodeError::Refused {
            peer,
            code,
            message,
        },
        other => unexpected(peer, &other),
    }
}

fn unexpected(peer: PeerId, response: &Response) -> NodeError {
    let kind = serde_json::to_value(response)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
        .unwrap_or_default();
    NodeError::BadPeer {
        peer,
        reason: format!("unexpected answer of kind {kind:?}"),
    }
}

/// The software name and version peers see.
pub const AGENT: &str = concat!("yrd/", env!("CARGO_PKG_VERSION"));

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The parsed config.
    pub config: NodeConfig,
    /// The data dir (key, token, db).
    pub data_dir: PathBuf,
}

impl NodeOptions {
    /// Options from a config file, resolving the data dir against it.
    pub fn from_config_file(path: &Path) -> Result<NodeOptions, crate::config::ConfigError> {
        let mut config = NodeConfig::load(path)?;
        let data_dir = config.data_dir(path);
        // The node reads the charter by a path that no longer depends on the config's place.
        config.federation.charter = config.charter_path(path);
        Ok(NodeOptions { config, data_dir })
    }
}

/// A connected member as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PeerView {
    /// Full peer id.
    pub peer_id: String,
    /// Short form for tables.
    pub short_id: String,
    /// Region code, if its NodeInfo was verified.
    pub region: Option<Region>,
    /// "310000 上海市 Shanghai".
    pub region_label: Option<String>,
    /// Organisation name from its NodeInfo.
    pub organisation: Option<String>,
    /// Remote addresses of the open connections.
    pub addresses: Vec<String>,
    /// When it connected (RFC 3339).
    pub connected_since: String,
    /// Latest ping round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Its software.
    pub agent: Option<String>,
}

/// This node, as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NodeView {
    /// Peer id.
    pub peer_id: String,
    /// Region.
    pub region: Region,
    /// "310000 上海市 Shanghai".
    pub region_label: String,
    /// Organisation.
    pub organisation: String,
    /// Addresses we listen on.
    pub listen_addresses: Vec<String>,
    /// Admin API address.
    pub api_address: Option<String>,
    /// Data dir.
    pub data_dir: String,
    /// Federation size (members besides us).
    pub members: usize,
    /// Members connected now.
    pub connected: usize,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// Software version.
    pub version: String,
    /// Our signed NodeInfo.
    pub node_info: Signed<NodeInfo>,
    /// The federation charter in force, when the node runs on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charter: Option<CharterView>,
}

/// The health summary.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// "ok" or "degraded".
    pub status: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Members connected now.
    pub connected_members: usize,
    /// Members configured.
    pub members: usize,
    /// Connections refused because the peer is not a member (counted, never recorded).
    pub refused_connections: u64,
    /// Connections of members refused because the member already held 4 with this node
    /// (`net::gate::MAX_CONNECTIONS_PER_PEER`; counted, never recorded).
    pub excess_connections: u64,
    /// Refusal and witness-alarm records not kept since start because the member that caused
    /// them had used up its budget (60 an hour; a log's first open alarm is always kept).
    pub refusal_records_dropped: u64,
    /// Database reachable.
    pub store_ok: bool,
}

/// The service's state: the node's identity and handles below it, then one owned part per
/// responsibility. Each part keeps its own locks and maps private to its module; this struct
/// only holds them together.
struct Inner {
    config: NodeConfig,
    data_dir: PathBuf,
    key: NodeKey,
    /// The keys this node ran on before a rotation (`identity::retired_peer_ids`): what it
    /// published under them is its own (docs/federation.md, "Rotating a node's key").
    earlier_keys: Vec<PeerId>,
    store: Store,
    net: NetHandle,
    members: Members,
    /// The federation charter in force, when the config names one (`charter.rs`).
    charter: Option<charter::FederationCharter>,
    started: SystemTime,
    /// Dataset files.
    blobs: crate::store::blobs::BlobStore,
    /// The provenance log.
    provenance: crate::store::provenance::ProvenanceLog,
    /// Members' verified cards, our listen addresses, recent refusals (`peers.rs`).
    peers: peers::Peers,
    /// Every member's latest catalogue with its search text (`catalogue.rs`).
    catalogues: catalogue::HeldCatalogues,
    /// The limits on catalogue pulls and syncs (`sync.rs`).
    sync: sync::CatalogueSync,
    /// Transfers both ways, chunk tables, derivation, counters (`transfer/`).
    transfers: transfer::Transfers,
    /// One witnessing check at a time per witnessed log: its heads are compared in turn, other
    /// logs' heads are not held up (`provenance.rs`).
    witness: provenance::WitnessLocks,
    /// Every standard held, indexed by id and version (`schemas.rs`).
    standards: schemas::Standards,
    /// Our offers, withheld list and latest manifests, decoded once per change (`decoded.rs`).
    decoded: decoded::Decoded,
    /// Query services: the query secret, key indexes, rate limits (`query/`).
    queries: query::Queries,
    /// The seed of mask salts (`mask.secret`), apart from the key so a rotation keeps pseudonyms.
    mask: identity::MaskSecret,
    /// Serialises changes that issue a new signed document (catalogue sequence numbers, the
    /// standards registry, grant decisions), so two never take the same number.
    write_lock: tokio::sync::Mutex<()>,
    /// Where the admin API listens, once the server above has bound it (for [`Node::view`]).
    api_address: parking_lot::RwLock<Option<SocketAddr>>,
    /// Inbound exchange requests being answered at once (each signs, stores and flushes).
    inbound_exchange: Arc<tokio::sync::Semaphore>,
    /// Cancelled at shutdown: long tasks (transfers) stop, and a fetch resumes at next start.
    shutdown: tokio_util::sync::CancellationToken,
    /// Cancelled when the node must start again on its next key (`key_rotation.rs`).
    restart: tokio_util::sync::CancellationToken,
    /// The long tasks, awaited at shutdown so the database is released.
    tasks: tokio_util::task::TaskTracker,
    /// Dropped with the state: tells shutdown that the database is released.
    _released: tokio::sync::oneshot::Sender<()>,
}

/// A cloneable handle to the service layer.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer", &short_peer(&self.peer_id()))
            .finish()
    }
}

/// A started node: its handle plus the tasks to stop on shutdown.
///
/// It is also the start's teardown guard: [`Node::start`] builds it as soon as the node exists and
/// adds each task as it starts, so a failure at any later step runs the same
/// [`RunningNode::shutdown`] as a normal stop, and stops exactly what had started. Dropped without
/// a shutdown (a panic, a caller's bug), it still cancels the long tasks and aborts its loops.
#[derive(Debug)]
pub struct RunningNode {
    /// The service handle.
    pub node: Node,
    tasks: NodeTasks,
}

/// The tasks of a running node, stopped once: by [`RunningNode::shutdown`], or on drop.
#[derive(Debug)]
struct NodeTasks {
    net_task: Option<JoinHandle<()>>,
    service_task: Option<JoinHandle<()>>,
    sync_task: Option<JoinHandle<()>>,
    fetch_task: Option<JoinHandle<()>>,
    /// Resolves once the node's state is dropped (its last handle gone), which releases sled's
    /// lock on the database.
    released: Option<tokio::sync::oneshot::Receiver<()>>,
    /// The node's long tasks watch it.
    cancel: tokio_util::sync::CancellationToken,
    stopped: bool,
}

impl Drop for NodeTasks {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.cancel.cancel();
        for task in [
            self.sync_task.take(),
            self.fetch_task.take(),
            self.service_task.take(),
            self.net_task.take(),
        ]
        .into_iter()
        .flatten()
        {
            task.abort();
        }
    }
}

impl RunningNode {
    /// Stops the network and the service, then flushes the database; returns once the database
    /// is released (or after 10 s, with a warning).
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let RunningNode { node, mut tasks } = self;
        tasks.stopped = true;
        for task in [tasks.sync_task.take(), tasks.fetch_task.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
            let _ = task.await;
        }
        node.inner.shutdown.cancel();
        node.inner.tasks.close();
        if tokio::time::timeout(SHUTDOWN_WAIT, node.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("transfers did not stop within 10 s");
        }
        node.inner.net.shutdown().await;
        if let Some(t) = tasks.net_task.take() {
            let _ = t.await;
        }
        if let Some(t) = tasks.service_task.take() {
            let _ = t.await;
        }
        let log = node.inner.provenance.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || log.close()).await {
            tracing::error!(error = %e, "provenance log did not close cleanly");
        }
        let flushed = node.inner.store.flush().await;
        let peer = node.peer_id();
        // Our handle goes; every other clone (a request still being answered) must follow
        // before sled's lock on the database is released.
        drop(node);
        if let Some(released) = tasks.released.take() {
            if tokio::time::timeout(SHUTDOWN_WAIT, released).await.is_err() {
                tracing::warn!(peer = %peer, "node state still referenced 10 s after shutdown");
            }
        }
        flushed?;
        tracing::info!(peer = %peer, "node stopped; database flushed");
        Ok(())
    }
}

/// How long shutdown waits for long tasks, and then for the last handle to the node's state.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

impl Node {
    /// Loads identity and store, starts the network and the service. A failure at any step stops
    /// whatever had started before it returns.
    pub async fn start(options: NodeOptions) -> Result<RunningNode, NodeError> {
        let NodeOptions { config, data_dir } = options;
        let key = NodeKey::load(&data_dir.join(identity::KEY_FILE))?;
        let query_secret =
            identity::QuerySecret::load_or_create(&data_dir.join(identity::QUERY_SECRET_FILE))?;
        let mask = identity::MaskSecret::load_or_migrate(
            &data_dir.join(identity::MASK_SECRET_FILE),
            &key,
        )?;
        // Opening may wait for sled's lock (a node on this dir still stopping): off the runtime.
        let dir = data_dir.clone();
        let cache_mib = config.store.cache_mib;
        let store = tokio::task::spawn_blocking(move || Store::open_with_cache(&dir, cache_mib))
            .await
            .map_err(NodeError::task("opening the database"))??;
        let blobs = crate::store::blobs::BlobStore::open(data_dir.join(BLOBS_DIR))?;
        // A rotation whose next key the charter now lists instead of this one switches here.
        let (key, charter, switched) = key_rotation::load_charter(&config, &data_dir, &store, key)?;
        let earlier_keys = identity::retired_peer_ids(&data_dir)?;
        let members = match &charter {
            // The charter's keys are the members; each one's region is the charter's.
            Some(c) => Members::new(c.member_peers(&key.peer_id())),
            None => Members::new(config.member_ids()),
        };
        let mut known_addresses = Vec::new();
        for (peer, _) in store.peers()? {
            for addr in store.peer_addresses(&peer)? {
                known_addresses.push((peer, addr));
            }
        }
        let net_config = NetConfig {
            key: key.clone(),
            listen: config.network.listen.clone(),
            external_addresses: config.network.external_addresses.clone(),
            bootstrap: config.network.bootstrap.clone(),
            known_addresses,
            members: members.clone(),
            mdns: config.network.mdns,
            redial_max: Duration::from_secs(config.network.redial_max_secs),
            kept_members: config.network.kept_members,
            idle_timeout: Duration::from_secs(config.network.idle_timeout_secs),
            ping_interval: Duration::from_secs(config.network.ping_interval_secs),
            request_timeout: Duration::from_secs(config.network.request_timeout_secs),
            agent: AGENT.to_string(),
            tcp_security: config.network.tcp_security,
            quic_window_bytes: config.network.quic_window_mib.saturating_mul(1 << 20),
            tcp_window_growth: (config.network.tcp_window_mib as usize).saturating_mul(1 << 20),
            query_batches: config.network.query_batches,
        };
        // Nothing runs yet: a failure up to here drops what was opened (the swarm's listeners
        // close with it) and releases the database.
        let (net, events, event_loop) = net::new(net_config)?;
        let provenance = crate::store::provenance::ProvenanceLog::open_in(
            store.db(),
            key.signing_key().clone(),
            key.peer_id().to_string(),
            config.node.region,
            Some(data_dir.clone()),
        )?;
        let (released_tx, released) = tokio::sync::oneshot::channel();
        let node = Node {
            inner: Arc::new(Inner {
                config: config.clone(),
                data_dir,
                key,
                earlier_keys,
                store,
                net,
                members,
                charter,
                started: SystemTime::now(),
                blobs,
                provenance,
                peers: peers::Peers::default(),
                catalogues: catalogue::HeldCatalogues::default(),
                sync: sync::CatalogueSync::default(),
                transfers: transfer::Transfers::new(),
                witness: provenance::WitnessLocks::default(),
                standards: schemas::Standards::default(),
                decoded: decoded::Decoded::default(),
                queries: query::Queries::new(query_secret),
                mask,
                write_lock: tokio::sync::Mutex::new(()),
                api_address: parking_lot::RwLock::new(None),
                inbound_exchange: Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND_EXCHANGE)),
                shutdown: tokio_util::sync::CancellationToken::new(),
                restart: tokio_util::sync::CancellationToken::new(),
                tasks: tokio_util::task::TaskTracker::new(),
                _released: released_tx,
            }),
        };
        // From here on every failure goes through the guard's one shutdown path.
        let mut running = RunningNode {
            node: node.clone(),
            tasks: NodeTasks {
                net_task: Some(tokio::spawn(event_loop.run())),
                service_task: None,
                sync_task: None,
                fetch_task: None,
                released: Some(released),
                cancel: node.inner.shutdown.clone(),
                stopped: false,
            },
        };
        match node.start_service(&mut running, events).await {
            Ok(()) => {
                tracing::info!(peer = %node.peer_id(), region = %node.region().label(), "node started");
                if switched {
                    // The second stage of the rotation: the earlier key's removal, proposed
                    // for the founders to approve.
                    match node.rotate_key().await {
                        Ok(v) => {
                            tracing::info!(digest = %v.proposal.digest, "removal of the earlier key proposed")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "removal of the earlier key not proposed; run `yrd key rotate`")
                        }
                    }
                }
                Ok(running)
            }
            Err(e) => {
                drop(node);
                if let Err(stop) = running.shutdown().await {
                    tracing::warn!(error = %stop, "stopping after a failed start");
                }
                Err(e)
            }
        }
    }

    /// The steps of a start after the node exists, each task handed to `running` as it starts.
    async fn start_service(
        &self,
        running: &mut RunningNode,
        events: mpsc::Receiver<NetEvent>,
    ) -> Result<(), NodeError> {
        self.load_peer_infos()?;
        self.load_schemas()?;
        self.load_catalogues()?;
        self.inner.net.subscribe(ANNOUNCE_TOPIC).await?;
        // After a key rotation, before the first catalogue of the new key lists their versions.
        self.adopt_earlier_publications().await?;
        if self.own_catalogue()?.is_none() {
            let _guard = self.inner.write_lock.lock().await;
            self.issue_catalogue().await?;
        }
        // The service loop reads network events from the start, so none are dropped meanwhile.
        running.tasks.service_task = Some(tokio::spawn(self.clone().service_loop(events)));
        // The fail point takes the protocol first, so the real registration below fails.
        let _taken =
            crate::failpoint::hit(&self.inner.data_dir, "start.accept_streams").then(|| {
                self.inner
                    .net
                    .accept_streams(crate::model::transfer::FETCH_PROTOCOL)
            });
        let incoming = self
            .inner
            .net
            .accept_streams(crate::model::transfer::FETCH_PROTOCOL)?;
        // Before any transfer runs: what a crash left that nothing will use goes.
        self.collect_garbage().await?;
        running.tasks.fetch_task = Some(tokio::spawn(self.clone().accept_fetches(incoming)));
        self.resume_fetches();
        running.tasks.sync_task = Some(tokio::spawn(self.clone().anti_entropy_loop()));
        if crate::failpoint::hit(&self.inner.data_dir, "start.after_resume") {
            return Err(NodeError::Net(NetError::Stopped));
        }
        Ok(())
    }

    /// Removes the partial downloads no fetch will resume (no fetch record, or a finished one)
    /// and the blobs no record names (no manifest, derived delivery or fetch): what a crash
    /// between writing a file and recording it leaves behind. Runs at start, off the runtime.
    async fn collect_garbage(&self) -> Result<(), NodeError> {
        use crate::model::exchange::Manifest;
        use crate::store::RecordTree;
        /// What a fetch record names, read without the transfer module's own type.
        #[derive(Deserialize)]
        struct FetchNames {
            view: ViewNames,
            #[serde(default)]
            manifest: Option<Signed<Manifest>>,
        }
        #[derive(Deserialize)]
        struct ViewNames {
            status: transfer::TransferStatus,
            #[serde(default)]
            digest: Option<String>,
        }
        let store = self.inner.store.clone();
        let mut named = store.manifest_digests()?;
        for (_, m) in store.records::<Signed<Manifest>>(RecordTree::Derived)? {
            named.insert(m.document.digest);
        }
        let mut resumable = std::collections::HashSet::new();
        for (id, f) in store.records::<FetchNames>(RecordTree::Fetches)? {
            named.extend(f.view.digest);
            named.extend(f.manifest.map(|m| m.document.digest));
            use transfer::TransferStatus::{Done, Failed};
            if !matches!(f.view.status, Done | Failed) {
                resumable.insert(id);
            }
        }
        let blobs = self.inner.blobs.clone();
        let collected = tokio::task::spawn_blocking(move || {
            blobs.collect(|id| resumable.contains(id), |d| named.contains(d))
        })
        .await
        .map_err(NodeError::task("collecting garbage"))??;
        if collected != crate::store::blobs::Collected::default() {
            tracing::warn!(
                partials = collected.partials,
                blobs = collected.blobs,
                "removed partial downloads and files no record names (left by a crash)"
            );
        }
        Ok(())
    }

    /// Records where the admin API listens, for [`Node::view`] (set by the server above).
    pub fn set_api_address(&self, address: SocketAddr) {
        *self.inner.api_address.write() = Some(address);
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.key.peer_id()
    }

    /// Our node id as text, as our documents and records name it.
    pub fn peer_id_text(&self) -> &str {
        self.inner.key.peer_id_text()
    }

    /// Our region.
    pub fn region(&self) -> Region {
        self.inner.config.node.region
    }

    /// The network handle.
    pub fn net(&self) -> &NetHandle {
        &self.inner.net
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The config the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// The federation members.
    pub fn members(&self) -> &Members {
        &self.inner.members
    }

    /// The members' cards kept from earlier runs; one that no longer verifies is dropped with a
    /// warning (the member is asked again when it connects).
    fn load_peer_infos(&self) -> Result<(), NodeError> {
        for (peer, stored) in self.inner.store.peers()? {
            let Some(raw) = stored.node_info else {
                continue;
            };
            let checked = serde_json::from_value::<Signed<NodeInfo>>(raw)
                .map_err(|e| NodeError::invalid("node_info", e.to_string()))
                .and_then(|info| verify_node_info(&info, &peer).map(|()| info));
            match checked {
                Ok(info) => self.inner.peers.remember(peer, info),
                Err(e) => tracing::warn!(peer = %peer, error = %e, "stored NodeInfo dropped"),
            }
        }
        Ok(())
    }

    /// Our NodeInfo, signed now with the addresses we listen on.
    pub fn signed_node_info(&self) -> Result<Signed<NodeInfo>, NodeError> {
        let addresses = self
            .inner
            .peers
            .listen_addresses()
            .iter()
            .map(|a| a.to_string())
            .collect();
        let info = NodeInfo {
            peer_id: self.peer_id_text().to_owned(),
            region: self.region(),
            organisation: self.inner.config.node.name.clone(),
            addresses,
            issued_at: now_rfc3339(),
            software: AGENT.to_string(),
        };
        Ok(Signed::sign(info, self.inner.key.signing_key())?)
    }

    async fn service_loop(self, mut events: mpsc::Receiver<NetEvent>) {
        while let Some(event) = events.recv().await {
            self.on_net_event(event).await;
        }
    }

    async fn on_net_event(&self, event: NetEvent) {
        match event {
            NetEvent::Listening { address } => {
                self.inner.peers.add_listen(address);
            }
            NetEvent::PeerConnected { peer, address } => {
                // Ask for its card off the event path: the answer needs the network task.
                let node = self.clone();
                self.spawn_long(async move {
                    if let Err(e) = node.fetch_node_info(peer, address).await {
                        tracing::warn!(peer = %peer, error = %e, "no valid NodeInfo from member");
                    }
                    // Anti-entropy on connect: pull whatever we missed while apart. Bounded, so a
                    // whole network connecting at once does not swamp the node.
                    let permit = node.inner.sync.connect_slot().await;
                    if let Err(e) = node.sync_with(peer).await {
                        tracing::debug!(peer = %peer, error = %e, "sync on connect failed");
                    }
                    drop(permit);
                    node.redeliver_to(peer).await;
                });
            }
            NetEvent::PeerDisconnected { .. } => {}
            NetEvent::Refused { peer, address, .. } => {
                // Counted by the network task (refused_connections); never a provenance record,
                // since fresh keys are free; logged at a bounded rate whoever is refused.
                if let Some(quiet) = self.inner.peers.refusal_log_due(std::time::Instant::now()) {
                    tracing::warn!(
                        peer = %peer,
                        %address,
                        not_logged_before = quiet,
                        "refused a connection: peer is not a federation member"
                    );
                }
            }
            NetEvent::InboundRequest {
                peer,
                request,
                channel,
            } => {
                // A key a new charter version removed may still have a connection open for a
                // moment: nothing it asks is served.
                if !self.inner.members.contains(&peer) {
                    let refused = Response::Error {
                        code: RefusalCode::NotMember,
                        message: format!("peer {peer} is not a federation member"),
                    };
                    let _ = self.inner.net.respond(channel, refused).await;
                    return;
                }
                if let Some(d) = self.answer_delay() {
                    // A simulated slow link: answer later, off the event path.
                    let node = self.clone();
                    self.spawn_long(async move {
                        tokio::time::sleep(d).await;
                        let response = if is_exchange(&request) {
                            node.answer_exchange(peer, request).await
                        } else {
                            node.answer(peer, request)
                        };
                        let _ = node.inner.net.respond(channel, response).await;
                    });
                    return;
                }
                if is_exchange(&request) {
                    // These sign, store and flush: answer off the event path, a bounded number
                    // at once; beyond that the peer is told to retry.
                    let Ok(permit) = self.inner.inbound_exchange.clone().try_acquire_owned() else {
                        tracing::debug!(peer = %peer, "exchange request refused: too many in progress");
                        let busy = Response::Error {
                            code: RefusalCode::Busy,
                            message: format!(
                                "{MAX_INBOUND_EXCHANGE} exchange requests are being answered; retry later"
                            ),
                        };
                        if let Err(e) = self.inner.net.respond(channel, busy).await {
                            tracing::debug!(peer = %peer, error = %e, "could not answer");
                        }
                        return;
                    };
                    let node = self.clone();
                    self.spawn_long(async move {
                        let response = node.answer_exchange(peer, request).await;
                        if let Err(e) = node.inner.net.respond(channel, response).await {
                            tracing::debug!(peer = %peer, error = %e, "could not answer");
                        }
                        drop(permit);
                    });
                    return;
                }
                let response = self.answer(peer, request);
                if let Err(e) = self.inner.net.respond(channel, response).await {
                    tracing::debug!(peer = %peer, error = %e, "could not answer");
                }
            }
            NetEvent::InboundQuery {
                peer,
                request,
                channel,
            } => {
                if !self.inner.members.contains(&peer) {
                    let refused = crate::model::query::QueryResponse::Refused {
                        code: RefusalCode::NotMember,
                        message: format!("peer {peer} is not a federation member"),
                    };
                    let _ = self.inner.net.respond_query(channel, refused).await;
                    return;
                }
                // Queries sign and record: answered off the event path, a bounded number at
                // once; beyond that the caller is told to retry.
                let Ok(permit) = self.inner.queries.inbound.clone().try_acquire_owned() else {
                    let busy = crate::model::query::QueryResponse::Refused {
                        code: RefusalCode::Busy,
                        message: format!(
                            "{} queries are being answered; retry later",
                            query::MAX_INBOUND_QUERIES
                        ),
                    };
                    if let Err(e) = self.inner.net.respond_query(channel, busy).await {
                        tracing::debug!(peer = %peer, error = %e, "could not answer");
                    }
                    return;
                };
                let node = self.clone();
                self.spawn_long(async move {
                    let response = node.on_query(peer, request).await;
                    if let Err(e) = node.inner.net.respond_query(channel, response).await {
                        tracing::debug!(peer = %peer, error = %e, "could not answer");
                    }
                    drop(permit);
                });
            }
            NetEvent::InboundQueryBatch {
                peer,
                requests,
                channel,
            } => {
                use crate::model::query::QueryBatchResponse;
                if !self.inner.members.contains(&peer) {
                    let refused = QueryBatchResponse::Refused {
                        code: RefusalCode::NotMember,
                        message: format!("peer {peer} is not a federation member"),
                    };
                    let _ = self.inner.net.respond_query_batch(channel, refused).await;
                    return;
                }
                // A permit per query; a batch of no query or too many takes one, to be refused.
                let n = match requests.len() {
                    n @ 1..=crate::model::query::MAX_QUERY_BATCH => n as u32,
                    _ => 1,
                };
                let Ok(permit) = self.inner.queries.inbound.clone().try_acquire_many_owned(n)
                else {
                    let busy = QueryBatchResponse::Refused {
                        code: RefusalCode::Busy,
                        message: format!(
                            "{} queries are being answered; retry later",
                            query::MAX_INBOUND_QUERIES
                        ),
                    };
                    if let Err(e) = self.inner.net.respond_query_batch(channel, busy).await {
                        tracing::debug!(peer = %peer, error = %e, "could not answer");
                    }
                    return;
                };
                let node = self.clone();
                self.spawn_long(async move {
                    let response = node.on_query_batch(peer, requests).await;
                    if let Err(e) = node.inner.net.respond_query_batch(channel, response).await {
                        tracing::debug!(peer = %peer, error = %e, "could not answer");
                    }
                    drop(permit);
                });
            }
            NetEvent::Gossip {
                source,
                topic,
                data,
            } => {
                if !self.inner.members.contains(&source) {
                    tracing::warn!(peer = %source, %topic, "gossip from a non-member ignored");
                    return;
                }
                match serde_json::from_slice::<Announcement>(&data) {
                    Ok(a) => {
                        // Bounded: when every announcement slot is busy it is dropped;
                        // anti-entropy fetches what it named within one round.
                        let Some(permit) = self.inner.sync.try_announcement_slot() else {
                            // A newer charter is not left to anti-entropy: it is followed
                            // when a running charter pull ends.
                            if let (
                                Announcement::Charter {
                                    version, digest, ..
                                },
                                Some(c),
                            ) = (&a, &self.inner.charter)
                            {
                                c.note_pending(
                                    source,
                                    CharterHead {
                                        version: *version,
                                        digest: digest.clone(),
                                    },
                                );
                            }
                            tracing::debug!(peer = %source, "announcement dropped: every announcement slot is busy");
                            return;
                        };
                        let node = self.clone();
                        self.spawn_long(async move {
                            node.on_announcement(source, a).await;
                            // A charter head noted while the slots were busy is followed now.
                            node.follow_pending_charter().await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(peer = %source, %topic, error = %e, "malformed announcement ignored");
                    }
                }
            }
        }
    }

    async fn answer_exchange(&self, peer: PeerId, request: Request) -> Response {
        let (result, what) = match request {
            Request::Access { request } => return self.on_access_request(peer, *request).await,
            Request::TreeHead { head } => return self.on_tree_head(peer, *head).await,
            Request::Decision { grant, denial } => (
                self.on_decision(peer, grant.map(|g| *g), denial.map(|d| *d))
                    .await,
                "decision",
            ),
            Request::Revoke { revocation } => {
                (self.on_revocation(peer, *revocation).await, "revocation")
            }
            Request::Receipt { receipt } => (self.on_receipt(peer, *receipt).await, "receipt"),
            other => return self.answer(peer, other),
        };
        match result {
            Ok(()) => Response::Ack,
            Err(e) => {
                // A document refused (bad signature, not ours, not matching) is evidence too.
                tracing::warn!(peer = %peer, error = %e, "{what} refused");
                self.record_refusal(Some(peer), None, &format!("{what} refused: {e}"))
                    .await;
                Response::Error {
                    code: RefusalCode::Refused,
                    message: e.to_string(),
                }
            }
        }
    }

    fn answer(&self, _peer: PeerId, request: Request) -> Response {
        let error = |code: RefusalCode, message: String| Response::Error { code, message };
        match request {
            Request::Access { .. }
            | Request::Decision { .. }
            | Request::Revoke { .. }
            | Request::Receipt { .. }
            | Request::TreeHead { .. } => error(RefusalCode::Internal, "answered elsewhere".into()),
            Request::Consistency { old_size, new_size } => self.on_consistency(old_size, new_size),
            Request::NodeInfo => match self.signed_node_info() {
                Ok(info) => Response::NodeInfo {
                    info: Box::new(info),
                },
                Err(e) => error(RefusalCode::Internal, e.to_string()),
            },
            Request::Heads => Response::Heads {
                catalogues: self
                    .catalogue_heads()
                    .into_iter()
                    .map(|h| Head {
                        publisher: h.publisher,
                        sequence: h.sequence,
                    })
                    .collect(),
                schemas: self.inner.standards.heads(),
                charter: self.charter_head(),
            },
            Request::GetCatalogue { publisher } => {
                let found = publisher
                    .parse::<PeerId>()
                    .ok()
                    .and_then(|p| self.catalogue_of(&p));
                match found {
                    Some(c) => Response::Catalogue {
                        catalogue: Box::new(c),
                    },
                    None => error(
                        RefusalCode::NotFound,
                        format!("no catalogue of {publisher} held"),
                    ),
                }
            }
            Request::Charter { .. }
            | Request::CharterProposals
            | Request::CharterProposal { .. } => self.answer_charter(request),
            Request::GetSchema { id, version } => match self.schema_doc(&id, Some(&version)) {
                Ok(s) => Response::Schema {
                    schema: Box::new(s),
                },
                Err(e) => error(RefusalCode::NotFound, e.to_string()),
            },
        }
    }

    /// Runs `task` as a long task: it stops at shutdown, which waits for it.
    pub(crate) fn spawn_long(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let token = self.inner.shutdown.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                () = task => {}
                () = token.cancelled() => {}
            }
        });
    }

    /// Publishes an announcement; having no peers yet is not an error (anti-entropy catches up).
    pub(crate) async fn announce(&self, announcement: Announcement) {
        let Ok(mut data) = serde_json::to_vec(&announcement) else {
            return;
        };
        if data.len() > crate::model::message::MAX_EMBEDDED_ANNOUNCEMENT_BYTES {
            let Ok(bare) = serde_json::to_vec(&announcement.without_document()) else {
                return;
            };
            data = bare;
        }
        if let Err(e) = self.inner.net.publish(ANNOUNCE_TOPIC, data).await {
            tracing::debug!(error = %e, "announcement not sent");
        }
    }

    /// Whether the party a document names (`named`, a peer id) is `peer`: the same key, or —
    /// under a charter — a key of the same member, which `peer` holds now and `named` held
    /// before a rotation (docs/federation.md, "Rotating a node's key").
    pub(crate) fn same_party(&self, named: &str, peer: &PeerId) -> bool {
        named == peer.to_string()
            || self
                .inner
                .charter
                .as_ref()
                .is_some_and(|c| c.same_member(named, peer))
    }

    /// Whether a document naming `named` names this node (its key, or an earlier key of its
    /// member).
    pub(crate) fn is_us(&self, named: &str) -> bool {
        self.same_party(named, &self.peer_id())
    }

    /// Whether `peer` is one of this node's own keys: the key in force or one it ran on before
    /// a rotation. Narrower than [`Self::is_us`], which takes any key of our member (a member
    /// may run another node).
    pub(crate) fn is_own_key(&self, peer: &PeerId) -> bool {
        *peer == self.peer_id() || self.inner.earlier_keys.contains(peer)
    }

    /// The keys this node ran on before a rotation, oldest rotation not necessarily first.
    pub(crate) fn earlier_keys(&self) -> &[PeerId] {
        &self.inner.earlier_keys
    }

    /// Where to reach the party `named`: its member's keys in force (a rotated member's new
    /// key first), else the id itself.
    pub(crate) fn party_peers(&self, named: &str) -> Vec<PeerId> {
        let mut peers = self
            .inner
            .charter
            .as_ref()
            .map(|c| c.current_peers_of(named))
            .unwrap_or_default();
        if peers.is_empty() {
            peers.extend(named.parse::<PeerId>().ok());
        }
        peers
    }

    /// The peer id of a document's signer, checked against the id the document claims.
    pub(crate) fn signer_peer(
        &self,
        key: &ed25519_dalek::VerifyingKey,
        claimed: &str,
    ) -> Result<PeerId, NodeError> {
        let signer = identity::peer_id_of(key).ok_or_else(|| {
            NodeError::invalid("signer", "signer key is not a valid ed25519 key".into())
        })?;
        if signer.to_string() != claimed {
            return Err(NodeError::invalid(
                "signer",
                format!("document claims publisher {claimed} but is signed by {signer}"),
            ));
        }
        Ok(signer)
    }

    async fn fetch_node_info(&self, peer: PeerId, address: Multiaddr) -> Result<(), NodeError> {
        let response = self.inner.net.request(peer, Request::NodeInfo).await?;
        let info = match response {
            Response::NodeInfo { info } => *info,
            Response::Error { code, message } => {
                return Err(NodeError::BadPeer {
                    peer,
                    reason: format!("{code}: {message}"),
                });
            }
            other => return Err(unexpected(peer, &other)),
        };
        verify_node_info(&info, &peer)?;
        if let Some(charter) = &self.inner.charter {
            if let Err(cause) = charter.check_claim(peer, info.document.region) {
                let reason = format!("NodeInfo refused: {cause}");
                self.record_refusal(Some(peer), None, &reason).await;
                return Err(NodeError::BadPeer { peer, reason });
            }
        }
        let region = info.document.region;
        tracing::info!(
            peer = %peer,
            region = %region.label(),
            organisation = %info.document.organisation,
            "member identified"
        );
        let mut stored = self.inner.store.peer(&peer)?.unwrap_or(StoredPeer {
            node_info: None,
            addresses: Vec::new(),
            last_seen: None,
        });
        stored.node_info = serde_json::to_value(&info).ok();
        let addr = address.to_string();
        if !stored.addresses.contains(&addr) {
            stored.addresses.insert(0, addr);
            stored.addresses.truncate(8);
        }
        stored.last_seen = Some(now_rfc3339());
        self.inner.store.put_peer(&peer, &stored)?;
        self.inner.peers.remember(peer, info);
        Ok(())
    }

    /// The connected members with their verified cards.
    pub async fn peers(&self) -> Result<Vec<PeerView>, NodeError> {
        let connected = self.inner.net.connected_peers().await?;
        let infos = self.inner.peers.infos();
        let mut views: Vec<PeerView> = connected
            .into_iter()
            .map(|c| {
                let info = infos.get(&c.peer).map(|s| &s.document);
                // With a charter, the region is the charter's, whatever the NodeInfo says.
                let region = self.peer_region(&c.peer);
                let charter_org = self
                    .inner
                    .charter
                    .as_ref()
                    .and_then(|ch| ch.organisation_of(&c.peer));
                PeerView {
                    peer_id: c.peer.to_string(),
                    short_id: short_peer(&c.peer),
                    region,
                    region_label: region.map(|r| r.label()),
                    organisation: info.map(|i| i.organisation.clone()).or(charter_org),
                    addresses: c.addresses.iter().map(|a| a.to_string()).collect(),
                    connected_since: format_system_time(c.connected_since),
                    rtt_ms: c.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    agent: c.agent,
                }
            })
            .collect();
        views.sort_by(|a, b| a.region.cmp(&b.region).then(a.peer_id.cmp(&b.peer_id)));
        Ok(views)
    }

    /// How many of [`Node::peers`] have a region (the charter's, or a verified NodeInfo's),
    /// without building their views: the simulator asks every node this while a hundred
    /// start.
    pub async fn connected_members_with_region(&self) -> Result<usize, NodeError> {
        let connected = self.inner.net.connected_peers().await?;
        Ok(connected
            .iter()
            .filter(|c| self.peer_region(&c.peer).is_some())
            .count())
    }

    /// This node's summary.
    pub async fn view(&self) -> Result<NodeView, NodeError> {
        let listen = self.inner.net.listen_addresses().await?;
        let connected = self.inner.net.connected_peers().await?.len();
        let api_address = self.inner.api_address.read().map(|a| a.to_string());
        Ok(NodeView {
            peer_id: self.peer_id_text().to_owned(),
            region: self.region(),
            region_label: self.region().label(),
            organisation: self.inner.config.node.name.clone(),
            listen_addresses: listen.iter().map(|a| a.to_string()).collect(),
            api_address,
            data_dir: self.inner.data_dir.display().to_string(),
            members: self.inner.members.list().len(),
            connected,
            started_at: format_system_time(self.inner.started),
            version: env!("CARGO_PKG_VERSION").to_string(),
            node_info: self.signed_node_info()?,
            charter: self.inner.charter.as_ref().map(|c| c.view()),
        })
    }

    /// Bytes and transfers since start.
    pub fn counters(&self) -> &counters::Counters {
        self.inner.transfers.counters()
    }

    /// The federation's size (members besides us).
    pub fn member_count(&self) -> usize {
        self.inner.members.list().len()
    }

    /// Health summary.
    pub async fn health(&self) -> Result<Health, NodeError> {
        Ok(self.health_and_net_stats().await?.0)
    }

    /// Health summary, and the network counters it was made from (one ask of the swarm task
    /// for both, as `/metrics` needs).
    pub async fn health_and_net_stats(&self) -> Result<(Health, crate::net::NetStats), NodeError> {
        let connected = self.inner.net.connected_peers().await?.len();
        let stats = self.inner.net.stats().await?;
        let store_ok = self.inner.store.format_version().is_ok();
        let health = Health {
            status: if store_ok { "ok" } else { "degraded" }.to_string(),
            uptime_secs: self
                .inner
                .started
                .elapsed()
                .map(|d| d.as_secs())
                .unwrap_or(0),
            connected_members: connected,
            members: self.inner.members.list().len(),
            refused_connections: stats.refused_connections,
            excess_connections: stats.excess_connections,
            refusal_records_dropped: self.inner.peers.refusal_records_dropped(),
            store_ok,
        };
        Ok((health, stats))
    }
}

fn is_exchange(request: &Request) -> bool {
    matches!(
        request,
        Request::Access { .. }
            | Request::Decision { .. }
            | Request::Revoke { .. }
            | Request::Receipt { .. }
            | Request::TreeHead { .. }
    )
}

/// A NodeInfo is acceptable from `peer` only if it verifies, is signed by `peer`'s own key and
/// names `peer`.
pub fn verify_node_info(info: &Signed<NodeInfo>, peer: &PeerId) -> Result<(), NodeError> {
    info.verify()?;
    let signer = info.signer_key()?;
    if identity::peer_id_of(&signer) != Some(*peer) {
        return Err(NodeError::BadPeer {
            peer: *peer,
            reason: "NodeInfo is signed by a key that is not the peer's own".into(),
        });
    }
    if info.document.peer_id != peer.to_string() {
        return Err(NodeError::BadPeer {
            peer: *peer,
            reason: format!("NodeInfo names peer {} instead", info.document.peer_id),
        });
    }
    Ok(())
}
