//! The hostile-peer harness: a federation member on the node's own libp2p stack
//! (`yrd_node::net`, with a member's key) that speaks our protocols badly on purpose. It runs no
//! node service, so nothing it sends is checked on its side: a test chooses every frame.
//!
//! - On `/yrd/fetch/1` ([`HostileMember::fetch_stream`], [`HostileFetch`]): a `FetchOpen`, chunk
//!   requests of its choosing (bad ones included), raw, oversized or malformed frames, a bare
//!   length announcing a frame it never sends, and how the session ends (reset, close, stall).
//! - On `/yrd/req/1`: any [`Request`] ([`HostileMember::request`]), or raw bytes in place of one
//!   ([`HostileMember::raw_request`]: malformed, oversized); and what it answers to the node's
//!   requests, as its [`Behaviour`] says — a truthful NodeInfo always, everything else as the
//!   test likes (fake catalogue and standard listings, consistency proofs of a log it forged),
//!   or never.
//! - On `/yrd/query/1` and `/yrd/query/2`, as a provider: what it answers to the node's
//!   queries, alone or in batches, as the test scripts it ([`HostileMember::answer_queries`]):
//!   forged, wrong or oversized answers signed with the member's key or another, or nothing;
//!   and batches answered one response short ([`HostileMember::answer_batches_short`]).
//! - Signed documents of its own or forged ([`HostileMember::head`], [`FakeLog`]).
//!
//! The node under test must stay honest and keep serving the other members meanwhile; each
//! hostile test checks that while the attack runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use libp2p::{Multiaddr, PeerId};
use yrd_node::config::NodeConfig;
use yrd_node::identity::NodeKey;
use yrd_node::model::catalogue::{Demand, UpdateCycle};
use yrd_node::model::chunks::ChunkTable;
use yrd_node::model::exchange::Manifest;
use yrd_node::model::merkle::{self, MemoryStore};
use yrd_node::model::message::{ANNOUNCE_TOPIC, Announcement, Request, Response, SchemaHead};
use yrd_node::model::node_info::NodeInfo;
use yrd_node::model::provenance::TreeHead;
use yrd_node::model::query::{QueryBatchResponse, QueryResponse};
use yrd_node::model::refusal::RefusalCode;
use yrd_node::model::signed::Signed;
use yrd_node::model::transfer::{
    CHUNK_HEADER, ChunkWant, FETCH_PROTOCOL, FetchOpen, FetchReply, MAX_CONTROL_FRAME, refusal_in,
};
use yrd_node::net::{self, Members, NetConfig, NetEvent, NetHandle, TcpSecurity, frames};

use crate::{TestNet, TestNode, WAIT, wait_until};

/// How long the hostile side waits on one frame before it calls the node stuck.
const FRAME_WAIT: Duration = Duration::from_secs(20);
/// How long a request of the node's that it leaves unanswered stays open, unless the test says
/// otherwise ([`HostileMember::start_holding`]): its network stack drops the stream then
/// (libp2p's request timeout applies to inbound requests too). Longer than any timeout of the
/// node's, so it is the node that gives up.
const HOLD: Duration = Duration::from_secs(120);
/// Most bytes of an answer to a raw request it reads.
const MAX_RAW_ANSWER: u64 = 1 << 20;

/// What the hostile member answers to a request of the node's (other than NodeInfo, which it
/// always answers truly): `None` leaves it unanswered until the node gives up.
pub type Behaviour = Arc<dyn Fn(&Request) -> Option<Response> + Send + Sync>;

/// What the hostile member answers to a query of the node's on `/yrd/query/1` (the query as
/// sent, JSON): `None` leaves it unanswered until the node gives up.
pub type QueryBehaviour = Arc<dyn Fn(&serde_json::Value) -> Option<QueryResponse> + Send + Sync>;

/// Answers nothing but NodeInfo.
pub fn silent() -> Behaviour {
    Arc::new(|_| None)
}

/// A member that misbehaves: its own swarm, with a member's key, trusting only its target.
pub struct HostileMember {
    key: NodeKey,
    net: NetHandle,
    target: PeerId,
    /// The kind of every request the node sent it, in order.
    seen: Arc<Mutex<Vec<String>>>,
    /// What it answers to queries (none: it leaves them unanswered).
    queries: Arc<Mutex<Option<QueryBehaviour>>>,
    /// Each batch of queries answered one response short.
    short_batches: Arc<AtomicBool>,
}

impl std::fmt::Debug for HostileMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileMember")
            .field("peer", &self.net.local_peer())
            .field("target", &self.target)
            .finish()
    }
}

impl HostileMember {
    /// Starts a swarm with `key` (a member of `target`'s federation whose node is not running),
    /// answering as `behaviour` says, connects it to `target` and waits until `target` knows it
    /// (has verified its NodeInfo).
    pub async fn start(
        key: NodeKey,
        target: &TestNode,
        behaviour: Behaviour,
    ) -> Result<HostileMember> {
        HostileMember::start_holding(key, target, behaviour, HOLD).await
    }

    /// [`HostileMember::start`], holding a request it leaves unanswered only for `hold`: then
    /// its stack drops it and the node's request fails. For a test whose node step waits on an
    /// answer (a revocation pushed to the grantee) while a session of the test's stays open.
    pub async fn start_holding(
        key: NodeKey,
        target: &TestNode,
        behaviour: Behaviour,
        hold: Duration,
    ) -> Result<HostileMember> {
        let hostile = HostileMember::open(key, target, behaviour, hold).await?;
        let id = hostile.peer_id().to_string();
        wait_until("the node to know the hostile member", WAIT, || async {
            Ok(target
                .peers()
                .await?
                .iter()
                .any(|p| p.peer_id == id && p.region.is_some()))
        })
        .await?;
        Ok(hostile)
    }

    /// [`HostileMember::start`] without waiting to be known: for a key the node may refuse.
    pub async fn connect(
        key: NodeKey,
        target: &TestNode,
        behaviour: Behaviour,
    ) -> Result<HostileMember> {
        HostileMember::open(key, target, behaviour, HOLD).await
    }

    async fn open(
        key: NodeKey,
        target: &TestNode,
        behaviour: Behaviour,
        hold: Duration,
    ) -> Result<HostileMember> {
        let target_addr = target.tcp_address().await?;
        let config = config(key.clone(), target_addr.clone(), hold)?;
        let (net, events, event_loop) = net::new(config)?;
        tokio::spawn(event_loop.run());
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let queries: Arc<Mutex<Option<QueryBehaviour>>> = Arc::default();
        let short_batches = Arc::new(AtomicBool::new(false));
        tokio::spawn(answer(
            net.clone(),
            events,
            key.clone(),
            Answering {
                requests: behaviour,
                queries: queries.clone(),
                short_batches: short_batches.clone(),
            },
            seen.clone(),
        ));
        net.dial(target_addr).await?;
        Ok(HostileMember {
            key,
            net,
            target: target.peer_id(),
            seen,
            queries,
            short_batches,
        })
    }

    /// From now on, answers the node's queries (alone or in batches) as `behaviour` says.
    pub fn answer_queries(&self, behaviour: QueryBehaviour) {
        if let Ok(mut q) = self.queries.lock() {
            *q = Some(behaviour);
        }
    }

    /// From now on (`true`), answers each batch of queries one response short.
    pub fn answer_batches_short(&self, short: bool) {
        self.short_batches.store(short, Ordering::Relaxed);
    }

    /// Its peer id (the member's whose key it holds).
    pub fn peer_id(&self) -> PeerId {
        self.key.peer_id()
    }

    /// Its key, to sign documents with.
    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    /// Whether its swarm holds a connection with the node now.
    pub async fn connected(&self) -> Result<bool> {
        let peers = self.net.connected_peers().await?;
        Ok(peers.iter().any(|p| p.peer == self.target))
    }

    /// Stops its swarm.
    pub async fn shutdown(&self) {
        self.net.shutdown().await;
    }

    /// Publishes `announcement` on the announcement topic as this member (the gossip message
    /// signed by its key), retrying until the node's subscription has reached it.
    pub async fn announce(&self, announcement: &Announcement) -> Result<()> {
        self.net.subscribe(ANNOUNCE_TOPIC).await?;
        let data = serde_json::to_vec(announcement)?;
        wait_until("the announcement to be published", WAIT, || async {
            Ok(self.net.publish(ANNOUNCE_TOPIC, data.clone()).await.is_ok())
        })
        .await
    }

    // ------------------------------------------------------------------ /yrd/req/1

    /// Sends `request` to the node and returns its answer.
    pub async fn request(&self, request: Request) -> Result<Response> {
        Ok(self.net.request(self.target, request).await?)
    }

    /// Sends `bytes` as one request on `/yrd/req/1` exactly as they are (the protocol's codec
    /// reads a request to the end of its stream, up to 1 MiB, and parses it as JSON), then reads
    /// the answer until the node closes the stream. `None`: the stream ended (or was reset)
    /// without an answer, as it does for a request the node cannot read.
    pub async fn raw_request(&self, bytes: &[u8]) -> Result<Option<Vec<u8>>> {
        use futures::{AsyncReadExt, AsyncWriteExt};
        let mut stream = self
            .net
            .open_stream(self.target, net::REQUEST_PROTOCOL, WAIT)
            .await?;
        let exchange = async {
            stream.write_all(bytes).await?;
            stream.close().await?;
            let mut answer = Vec::new();
            (&mut stream)
                .take(MAX_RAW_ANSWER)
                .read_to_end(&mut answer)
                .await?;
            std::io::Result::Ok(answer)
        };
        match tokio::time::timeout(FRAME_WAIT, exchange).await {
            Err(_) => bail!("the node neither answered nor closed a raw request"),
            // A reset, or the write cut off by the node refusing the rest.
            Ok(Err(_)) => Ok(None),
            Ok(Ok(answer)) if answer.is_empty() => Ok(None),
            Ok(Ok(answer)) => Ok(Some(answer)),
        }
    }

    /// A head of its own log, signed by it.
    pub fn head(&self, size: u64, root: &merkle::Hash) -> Result<Signed<TreeHead>> {
        signed_head(&self.key, &self.peer_id(), size, root)
    }

    /// Shows `head` to the node as a witness and returns its answer.
    pub async fn show_head(&self, head: Signed<TreeHead>) -> Result<Response> {
        self.request(Request::TreeHead {
            head: Box::new(head),
        })
        .await
    }

    /// How many requests of `kind` (`heads`, `get-schema`, `consistency`, …) the node sent it.
    pub fn seen(&self, kind: &str) -> usize {
        self.seen
            .lock()
            .map(|s| s.iter().filter(|k| *k == kind).count())
            .unwrap_or(0)
    }

    /// Waits until the node has sent it at least `n` requests of `kind`.
    pub async fn wait_seen(&self, kind: &str, n: usize) -> Result<()> {
        wait_until(
            &format!("{n} {kind} request(s) at the hostile member"),
            WAIT,
            || async { Ok(self.seen(kind) >= n) },
        )
        .await
    }

    // ------------------------------------------------------------------ /yrd/fetch/1

    /// Opens a `/yrd/fetch/1` stream to the node.
    pub async fn fetch_stream(&self) -> Result<HostileFetch> {
        let stream = self
            .net
            .open_stream(self.target, FETCH_PROTOCOL, WAIT)
            .await?;
        Ok(HostileFetch { stream })
    }

    /// Opens a stream, sends `open` and returns the session with the manifest and chunk table
    /// it was served (failing on a refusal).
    pub async fn open_fetch(&self, open: &FetchOpen) -> Result<(HostileFetch, Ready)> {
        let mut fetch = self.fetch_stream().await?;
        match fetch.open(open).await? {
            FetchReply::Ready {
                manifest,
                chunk_table,
            } => Ok((
                fetch,
                Ready {
                    manifest: *manifest,
                    table: chunk_table,
                },
            )),
            FetchReply::Refused { code, message } => {
                bail!("fetch of {} refused ({code}): {message}", open.dataset)
            }
        }
    }
}

fn config(key: NodeKey, target: Multiaddr, hold: Duration) -> Result<NetConfig> {
    let target_id = net::peer_of(&target).context("the target's address names no peer")?;
    Ok(NetConfig {
        key,
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        external_addresses: Vec::new(),
        bootstrap: vec![target],
        known_addresses: Vec::new(),
        members: Members::new([target_id]),
        mdns: false,
        redial_max: Duration::from_secs(2),
        kept_members: 0,
        idle_timeout: Duration::from_secs(300),
        ping_interval: Duration::from_secs(15),
        request_timeout: hold,
        agent: "yrd-hostile/test".into(),
        tcp_security: TcpSecurity::Noise,
        quic_window_bytes: 1 << 20,
        tcp_window_growth: 1 << 20,
        query_batches: true,
    })
}

/// What the hostile member answers: requests on `/yrd/req/1`, queries on `/yrd/query/1` and
/// in batches on `/yrd/query/2` (a batch with a query left unanswered is held whole).
struct Answering {
    requests: Behaviour,
    queries: Arc<Mutex<Option<QueryBehaviour>>>,
    /// Each batch is answered one response short.
    short_batches: Arc<AtomicBool>,
}

/// Answers the node's requests and queries as `answering` says, until the swarm stops.
/// Requests and queries left unanswered are held (their channels kept), so the node waits on
/// them until it gives up.
async fn answer(
    net: NetHandle,
    mut events: tokio::sync::mpsc::Receiver<NetEvent>,
    key: NodeKey,
    answering: Answering,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let mut held = Vec::new();
    let mut held_queries = Vec::new();
    let mut held_batches = Vec::new();
    while let Some(event) = events.recv().await {
        let (request, channel) = match event {
            NetEvent::InboundRequest {
                request, channel, ..
            } => (request, channel),
            NetEvent::InboundQueryBatch {
                requests, channel, ..
            } => {
                if let Ok(mut s) = seen.lock() {
                    s.push("query-batch".into());
                }
                let behaviour = answering.queries.lock().ok().and_then(|q| q.clone());
                let answered: Option<Vec<QueryResponse>> = behaviour
                    .and_then(|b| requests.iter().map(|r| b(r)).collect::<Option<Vec<_>>>());
                match answered {
                    Some(mut responses) => {
                        if answering.short_batches.load(Ordering::Relaxed) {
                            responses.pop();
                        }
                        let response = QueryBatchResponse::Responses { responses };
                        let _ = net.respond_query_batch(channel, response).await;
                    }
                    None => held_batches.push(channel),
                }
                continue;
            }
            NetEvent::InboundQuery {
                request, channel, ..
            } => {
                if let Ok(mut s) = seen.lock() {
                    s.push("query".into());
                }
                let behaviour = answering.queries.lock().ok().and_then(|q| q.clone());
                match behaviour.and_then(|b| b(&request)) {
                    Some(response) => {
                        let _ = net.respond_query(channel, response).await;
                    }
                    None => held_queries.push(channel),
                }
                continue;
            }
            _ => continue,
        };
        let kind = serde_json::to_value(&request)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_string))
            .unwrap_or_default();
        if let Ok(mut s) = seen.lock() {
            s.push(kind);
        }
        let answer = match request {
            Request::NodeInfo => node_info(&key).map(|info| Response::NodeInfo {
                info: Box::new(info),
            }),
            ref other => (answering.requests)(other),
        };
        match answer {
            Some(response) => {
                let _ = net.respond(channel, response).await;
            }
            None => held.push(channel),
        }
    }
}

/// Its NodeInfo, signed truly (Anhui's region; nothing checks it against the key).
fn node_info(key: &NodeKey) -> Option<Signed<NodeInfo>> {
    let info = NodeInfo {
        peer_id: key.peer_id().to_string(),
        region: "340000".parse().ok()?,
        organisation: "hostile bureau".into(),
        addresses: Vec::new(),
        issued_at: "2026-12-06T00:00:00Z".into(),
        software: "yrd-hostile/test".into(),
    };
    Signed::sign(info, key.signing_key()).ok()
}

/// A tree head naming `log`, signed with `key` (which need not be `log`'s: a forgery).
pub fn signed_head(
    key: &NodeKey,
    log: &PeerId,
    size: u64,
    root: &merkle::Hash,
) -> Result<Signed<TreeHead>> {
    let head = TreeHead {
        log: log.to_string(),
        size,
        root: hex(root),
        time: "2026-12-06T00:00:00Z".into(),
    };
    Ok(Signed::sign(head, key.signing_key())?)
}

/// `n` standards listed in a `heads` answer that no request for them will ever be answered.
pub fn fake_standards(n: usize) -> Vec<SchemaHead> {
    (0..n)
        .map(|i| SchemaHead {
            id: format!("fake-{i}"),
            version: "1.0.0".into(),
            digest: "00".repeat(32),
        })
        .collect()
}

/// A provenance log a hostile member makes up: `leaves` records whose contents start with a
/// tag (two tags: two different logs of the same sizes, a fork).
#[derive(Debug)]
pub struct FakeLog(MemoryStore);

impl FakeLog {
    /// `leaves` records tagged `tag`.
    pub fn new(tag: &str, leaves: u64) -> Result<FakeLog> {
        let mut store = MemoryStore::new();
        for i in 0..leaves {
            store.append(merkle::leaf_hash(format!("{tag}{i}").as_bytes()))?;
        }
        Ok(FakeLog(store))
    }

    /// The root of its first `size` records.
    pub fn root(&self, size: u64) -> Result<merkle::Hash> {
        Ok(merkle::root(size, &self.0)?)
    }

    /// A consistency proof from `old` to `new`, hex, as a `consistency` answer carries it.
    pub fn proof(&self, old: u64, new: u64) -> Result<Vec<String>> {
        Ok(merkle::consistency_proof(old, new, &self.0)?
            .iter()
            .map(hex)
            .collect())
    }
}

fn hex(hash: &merkle::Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Node `i` of `net` turns hostile: its node stops and a [`HostileMember`] that answers only
/// NodeInfo takes its key, connected to node `target`.
pub async fn take_over(net: &mut TestNet, i: usize, target: usize) -> Result<HostileMember> {
    let key = net.nodes.get(i).context("no such node")?.key.clone();
    net.nodes[i].stop().await?;
    let target = net.nodes.get(target).context("no such node")?;
    // The node must have seen node `i` go, or its stale entry would pass for the hostile
    // member's own connection in `start`'s wait.
    let id = key.peer_id().to_string();
    wait_until("the node to see the stopped node gone", WAIT, || async {
        Ok(!target.peers().await?.iter().any(|p| p.peer_id == id))
    })
    .await?;
    HostileMember::start(key, target, silent()).await
}

/// Makes `node` issue a new catalogue (a new demand named `name`); returns its sequence.
pub async fn new_snapshot(node: &TestNode, name: &str) -> Result<u64> {
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

/// `n` honest nodes that also trust `hostile` (whose node never runs: a [`HostileMember`]
/// holds its key). See [`network`].
pub async fn network_with(
    n: usize,
    hostile: &NodeKey,
    tweak: impl Fn(usize, &mut NodeConfig),
) -> Result<TestNet> {
    network(n, &[hostile.peer_id()], tweak).await
}

/// `n` honest nodes trusting each other and `extra`, each bootstrapping to the last one, which
/// starts first; `tweak(i, config)` edits node i's config before it starts (say, anti-entropy
/// every 2 s, so that a gossip announcement lost while the mesh forms is made up for at once
/// rather than after the default 30 s).
pub async fn network(
    n: usize,
    extra: &[PeerId],
    tweak: impl Fn(usize, &mut NodeConfig),
) -> Result<TestNet> {
    let root = tempfile::tempdir()?;
    let keys: Vec<NodeKey> = (0..n).map(|_| NodeKey::generate()).collect();
    let mut ids: Vec<PeerId> = keys.iter().map(NodeKey::peer_id).collect();
    ids.extend_from_slice(extra);
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

/// [`network`] of `n` nodes and no other member, anti-entropy every 2 s, waited on until it is
/// a full mesh.
pub async fn quick_mesh(n: usize) -> Result<TestNet> {
    let net = network(n, &[], |_, c| c.sync.anti_entropy_secs = 2).await?;
    net.wait_full_mesh().await?;
    Ok(net)
}

// ---------------------------------------------------------------------- a fetch session

/// What the provider served in answer to a `FetchOpen`.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The manifest of the bytes it will send.
    pub manifest: Signed<Manifest>,
    /// Their chunk table.
    pub table: ChunkTable,
}

impl Ready {
    /// The chunks of the file.
    pub fn chunk_count(&self) -> u32 {
        self.table.chunk_count()
    }
}

/// What came back for a chunk asked.
#[derive(Clone, PartialEq)]
pub enum Served {
    /// A chunk: its index and bytes.
    Chunk(u32, Vec<u8>),
    /// The provider refused the rest of the session in place of a chunk.
    Refused(RefusalCode, String),
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The length, not the bytes: a failing test prints it.
            Served::Chunk(i, data) => write!(f, "Chunk({i}, {} bytes)", data.len()),
            Served::Refused(code, message) => write!(f, "Refused({code}, {message:?})"),
        }
    }
}

/// One fetch stream the hostile side drives frame by frame.
pub struct HostileFetch {
    stream: libp2p::Stream,
}

impl std::fmt::Debug for HostileFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostileFetch")
    }
}

impl HostileFetch {
    /// Sends `open` and reads the provider's reply. A provider that refuses a session before
    /// reading it (`busy`) may have closed the stream before `open` is written: its reply is
    /// read all the same.
    pub async fn open(&mut self, open: &FetchOpen) -> Result<FetchReply> {
        let sent = frames::write_json(&mut self.stream, open, FRAME_WAIT).await;
        match self.reply().await {
            Ok(reply) => Ok(reply),
            Err(e) => Err(sent.err().map_or(e, anyhow::Error::from)),
        }
    }

    /// Reads a control reply (`ready` or `refused`).
    pub async fn reply(&mut self) -> Result<FetchReply> {
        Ok(frames::read_json(&mut self.stream, MAX_CONTROL_FRAME, FRAME_WAIT).await?)
    }

    /// Asks for chunk ranges `[start, end)`, checked or not: they go out as given.
    pub async fn want(&mut self, ranges: &[[u32; 2]]) -> Result<()> {
        let want = ChunkWant {
            ranges: ranges.to_vec(),
        };
        Ok(frames::write_json(&mut self.stream, &want, FRAME_WAIT).await?)
    }

    /// Sends one frame with any payload.
    pub async fn send_frame(&mut self, payload: &[u8]) -> Result<()> {
        Ok(frames::write_frame(&mut self.stream, &[payload], FRAME_WAIT).await?)
    }

    /// Sends only the 4 length bytes of a frame of `len` bytes, and none of it.
    pub async fn announce(&mut self, len: u32) -> Result<()> {
        use futures::AsyncWriteExt;
        tokio::time::timeout(FRAME_WAIT, async {
            self.stream.write_all(&len.to_be_bytes()).await?;
            self.stream.flush().await
        })
        .await
        .context("the length bytes could not be sent")??;
        Ok(())
    }

    /// Reads the next chunk frame (or the refusal in its place).
    pub async fn next(&mut self) -> Result<Served> {
        let mut frame = Vec::new();
        frames::read_frame_into(&mut self.stream, &mut frame, MAX_CONTROL_FRAME, FRAME_WAIT)
            .await?;
        if let Some(refusal) = refusal_in(&frame) {
            let (code, message) = refusal.map_err(anyhow::Error::msg)?;
            return Ok(Served::Refused(code, message));
        }
        let header: [u8; CHUNK_HEADER] = frame
            .get(..CHUNK_HEADER)
            .and_then(|h| h.try_into().ok())
            .context("a chunk frame shorter than its header")?;
        Ok(Served::Chunk(
            u32::from_be_bytes(header),
            frame[CHUNK_HEADER..].to_vec(),
        ))
    }

    /// Asks for `[start, end)` and reads every chunk of it; returns their bytes in total.
    pub async fn pull(&mut self, start: u32, end: u32) -> Result<u64> {
        self.want(&[[start, end]]).await?;
        let mut bytes = 0;
        for expected in start..end {
            match self.next().await? {
                Served::Chunk(i, data) if i == expected => bytes += data.len() as u64,
                other => bail!("chunk {expected} asked, got {other:?}"),
            }
        }
        Ok(bytes)
    }

    /// Ends the session cleanly (the stream's write side closed), as a fetcher that is done.
    pub async fn close(mut self) -> Result<()> {
        use futures::AsyncWriteExt;
        self.stream.close().await?;
        Ok(())
    }

    /// Resets the stream: dropped without closing, so the provider's next read or write fails.
    pub fn reset(self) {
        drop(self.stream);
    }
}
