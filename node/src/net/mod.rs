//! The network layer: one task owns the libp2p `Swarm`; everything else holds a cloneable
//! [`NetHandle`] that sends [`Command`]s with `oneshot` replies, and reads [`NetEvent`]s from a
//! bounded channel. It moves bytes and documents and knows no policy beyond membership gating.

mod event_loop;
pub mod frames;
pub mod gate;
pub mod muxer;
pub mod topology;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub use event_loop::{EventLoop, wait_bindable};
pub use gate::Members;

use crate::identity::NodeKey;
use crate::model::message::{Request, Response};
use crate::model::query::{QueryBatchResponse, QueryResponse};

/// Protocol id of the request/response protocol for documents.
pub const REQUEST_PROTOCOL: &str = "/yrd/req/1";
/// Protocol id of identify.
pub const IDENTIFY_PROTOCOL: &str = "/yrd/id/1.0.0";
/// Protocol id of the private Kademlia DHT (not the public IPFS one).
pub const KAD_PROTOCOL: &str = "/yrd/kad/1.0.0";
/// Largest gossip message (gossipsub's own cap is 64 KiB; an announcement carries its document
/// only within `model::message::MAX_EMBEDDED_ANNOUNCEMENT_BYTES`).
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;
/// Largest request we accept (documents are small).
pub const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// Largest response we accept.
pub const MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;

const COMMAND_QUEUE: usize = 256;
/// How long a stream request waits before [`NetHandle::open_stream`] makes it again.
const STREAM_REASK: Duration = Duration::from_secs(2);
const EVENT_QUEUE: usize = 4096;

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The transport could not be built.
    #[error("cannot build the libp2p transport: {0}")]
    Transport(String),
    /// Listening on an address failed (e.g. the port is in use).
    #[error("cannot listen on {addr}: {cause}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        cause: String,
    },
    /// Dialling failed.
    #[error("cannot dial {target}: {cause}")]
    Dial {
        /// Peer or address.
        target: String,
        /// Why.
        cause: String,
    },
    /// A request to a peer failed.
    #[error("request to {peer} failed: {cause}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// Why (timeout, connection closed, unsupported protocol, …).
        cause: String,
    },
    /// The peer does not speak `/yrd/query/2` (or batches are off here).
    #[error("{peer} does not take query batches (/yrd/query/2)")]
    BatchesUnsupported {
        /// The peer.
        peer: PeerId,
    },
    /// Publishing on gossip failed.
    #[error("gossip publish on {topic} failed: {cause}")]
    Publish {
        /// The topic.
        topic: String,
        /// Why.
        cause: String,
    },
    /// The event loop has stopped.
    #[error("the network task has stopped")]
    Stopped,
}

/// What the network layer needs to start.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The node key (transport identity).
    pub key: NodeKey,
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Extra addresses to announce.
    pub external_addresses: Vec<Multiaddr>,
    /// Bootstrap addresses, each ending in `/p2p/<peer>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses remembered from earlier runs, per member.
    pub known_addresses: Vec<(PeerId, Multiaddr)>,
    /// Who may connect.
    pub members: Members,
    /// mDNS discovery on/off.
    pub mdns: bool,
    /// Longest redial backoff.
    pub redial_max: Duration,
    /// Members kept connected at all times (0: all); see [`topology::kept_members`].
    pub kept_members: usize,
    /// Idle connection timeout.
    pub idle_timeout: Duration,
    /// Ping interval.
    pub ping_interval: Duration,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Agent string for identify.
    pub agent: String,
    /// The TCP security protocol offered first when dialling (listeners accept both).
    pub tcp_security: TcpSecurity,
    /// QUIC flow-control window, per connection and per stream, in bytes.
    pub quic_window_bytes: u32,
    /// How far a TCP connection's streams may grow their Yamux receive windows together, in
    /// bytes, beyond each stream's first 256 KiB ([`muxer`]).
    pub tcp_window_growth: usize,
    /// Speak `/yrd/query/2` (batches of queries); off, only `/yrd/query/1`.
    pub query_batches: bool,
}

/// The security protocol of TCP connections (also the config file's `network.tcp_security`,
/// which names net's type rather than net reading the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TcpSecurity {
    /// Noise XX (libp2p's default).
    #[default]
    Noise,
    /// TLS 1.3 (libp2p-tls).
    Tls,
}

/// The peer id at the end of a multiaddr (`…/p2p/<peer id>`), if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// A connected member, as the network layer sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectedPeer {
    /// The peer id.
    pub peer: PeerId,
    /// Remote addresses of its open connections.
    pub addresses: Vec<Multiaddr>,
    /// Addresses it told us it listens on (identify).
    pub listen_addresses: Vec<Multiaddr>,
    /// When the first of the current connections was established.
    pub connected_since: SystemTime,
    /// Latest ping round-trip time.
    pub rtt: Option<Duration>,
    /// Its agent string (identify).
    pub agent: Option<String>,
}

/// Counters kept by the network task.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetStats {
    /// Connections refused because the peer is not a member.
    pub refused_connections: u64,
    /// Connections of members refused because they already held
    /// [`gate::MAX_CONNECTIONS_PER_PEER`] with us.
    pub excess_connections: u64,
    /// Events dropped because the service was not reading fast enough.
    pub dropped_events: u64,
    /// Inbound requests served or failed.
    pub inbound_requests: u64,
    /// Gossip messages received.
    pub gossip_received: u64,
    /// Queries sent to providers (in batches or alone).
    pub queries_sent: u64,
    /// Batches those queries left in (`/yrd/query/2`); `queries_sent` over this is the mean
    /// batch size.
    pub query_batches_sent: u64,
}

/// What the network tells the service layer.
#[derive(Debug)]
pub enum NetEvent {
    /// A member connected (its first connection).
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// Its address.
        address: Multiaddr,
    },
    /// A member's last connection closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A non-member was refused.
    Refused {
        /// Its authenticated peer id.
        peer: PeerId,
        /// Its address.
        address: Multiaddr,
        /// Whether it dialled us.
        inbound: bool,
    },
    /// A member sent a request; answer with [`NetHandle::respond`].
    InboundRequest {
        /// The peer.
        peer: PeerId,
        /// What it asked.
        request: Request,
        /// Where the answer goes.
        channel: ResponseChannel<Response>,
    },
    /// A member sent a query on `/yrd/query/1` (any JSON within the size limit: the service
    /// parses it, so a malformed query is answered with its cause); answer with
    /// [`NetHandle::respond_query`].
    InboundQuery {
        /// The peer.
        peer: PeerId,
        /// What it sent.
        request: serde_json::Value,
        /// Where the answer goes.
        channel: ResponseChannel<QueryResponse>,
    },
    /// A member sent a batch of queries on `/yrd/query/2` (each any JSON, parsed by the
    /// service); answer with [`NetHandle::respond_query_batch`], one response per query.
    InboundQueryBatch {
        /// The peer.
        peer: PeerId,
        /// What it sent, in order.
        requests: Vec<serde_json::Value>,
        /// Where the answers go.
        channel: ResponseChannel<QueryBatchResponse>,
    },
    /// A gossip message from a member.
    Gossip {
        /// The peer that originally published it (gossipsub signs messages).
        source: PeerId,
        /// The topic.
        topic: String,
        /// The payload.
        data: Vec<u8>,
    },
    /// We listen on a new address.
    Listening {
        /// The address.
        address: Multiaddr,
    },
}

/// Requests to the network task.
#[derive(Debug)]
pub(crate) enum Command {
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Request {
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, NetError>>,
    },
    Respond {
        channel: ResponseChannel<Response>,
        response: Response,
    },
    Query {
        peer: PeerId,
        request: serde_json::Value,
        reply: oneshot::Sender<Result<QueryResponse, NetError>>,
    },
    RespondQuery {
        channel: ResponseChannel<QueryResponse>,
        response: QueryResponse,
    },
    RespondQueryBatch {
        channel: ResponseChannel<QueryBatchResponse>,
        response: QueryBatchResponse,
    },
    QueryBatch {
        peer: PeerId,
        requests: Vec<serde_json::Value>,
        reply: oneshot::Sender<Result<QueryBatchResponse, NetError>>,
    },
    Subscribe {
        topic: String,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    ConnectedPeers {
        reply: oneshot::Sender<Vec<ConnectedPeer>>,
    },
    ListenAddresses {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Stats {
        reply: oneshot::Sender<NetStats>,
    },
    DisconnectNonMembers,
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A cloneable handle to the network task.
#[derive(Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
    local_peer: PeerId,
    streams: libp2p_stream::Control,
}

impl std::fmt::Debug for NetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetHandle")
            .field("local_peer", &self.local_peer)
            .finish()
    }
}

impl NetHandle {
    /// Opens a stream of `protocol` to a member, dialling it if needed, within `timeout`.
    ///
    /// `libp2p-stream` can leave a request waiting for a connection that never comes: its
    /// dial request is dropped when its one-slot dial queue is full (rust-libp2p #6157), and
    /// a dial it asks for in the instant between a connection's handler being made and the
    /// connection being announced is suppressed as "already connected" without failing the
    /// request. So the request is made again every [`STREAM_REASK`] until `timeout`: a new
    /// request finds a connection made meanwhile, or asks for the dial again. An abandoned
    /// request may still open a stream later; it is dropped unread, and the provider reads
    /// an empty session (no evidence is written for one).
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: &'static str,
        timeout: Duration,
    ) -> Result<libp2p::Stream, NetError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(NetError::Request {
                    peer,
                    cause: format!("no {protocol} stream within {} s", timeout.as_secs()),
                });
            }
            // Each request uses its own clone: a Control opens one stream at a time.
            let mut control = self.streams.clone();
            let opened = tokio::time::timeout(
                left.min(STREAM_REASK),
                control.open_stream(peer, libp2p::StreamProtocol::new(protocol)),
            )
            .await;
            match opened {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => {
                    return Err(NetError::Request {
                        peer,
                        cause: format!("cannot open a {protocol} stream: {e}"),
                    });
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, protocol, "stream not open yet; asking again")
                }
            }
        }
    }

    /// Starts accepting inbound streams of `protocol` (once per protocol).
    pub fn accept_streams(
        &self,
        protocol: &'static str,
    ) -> Result<libp2p_stream::IncomingStreams, NetError> {
        self.streams
            .clone()
            .accept(libp2p::StreamProtocol::new(protocol))
            .map_err(|_| NetError::Transport(format!("{protocol} is already being accepted")))
    }

    /// Our own peer id.
    pub fn local_peer(&self) -> PeerId {
        self.local_peer
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Dials an address (which may end in `/p2p/<peer>`).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    /// Sends a request to a connected (or dialable) member and waits for its answer.
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, NetError> {
        self.call(|reply| Command::Request {
            peer,
            request,
            reply,
        })
        .await?
    }

    /// Answers an inbound request.
    pub async fn respond(
        &self,
        channel: ResponseChannel<Response>,
        response: Response,
    ) -> Result<(), NetError> {
        self.commands
            .send(Command::Respond { channel, response })
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Sends one query on `/yrd/query/1` and waits for the answer.
    pub async fn query(
        &self,
        peer: PeerId,
        request: serde_json::Value,
    ) -> Result<QueryResponse, NetError> {
        self.call(|reply| Command::Query {
            peer,
            request,
            reply,
        })
        .await?
    }

    /// Sends a batch of queries on `/yrd/query/2` and waits for the response.
    /// [`NetError::BatchesUnsupported`] (at once, when identify has told us; else when the
    /// provider refuses the protocol) means: send each on its own with [`NetHandle::query`].
    pub async fn query_batch(
        &self,
        peer: PeerId,
        requests: Vec<serde_json::Value>,
    ) -> Result<QueryBatchResponse, NetError> {
        self.call(|reply| Command::QueryBatch {
            peer,
            requests,
            reply,
        })
        .await?
    }

    /// Answers an inbound batch of queries.
    pub async fn respond_query_batch(
        &self,
        channel: ResponseChannel<QueryBatchResponse>,
        response: QueryBatchResponse,
    ) -> Result<(), NetError> {
        self.commands
            .send(Command::RespondQueryBatch { channel, response })
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Answers an inbound query.
    pub async fn respond_query(
        &self,
        channel: ResponseChannel<QueryResponse>,
        response: QueryResponse,
    ) -> Result<(), NetError> {
        self.commands
            .send(Command::RespondQuery { channel, response })
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Joins a gossip topic.
    pub async fn subscribe(&self, topic: &str) -> Result<(), NetError> {
        let topic = topic.to_string();
        self.call(|reply| Command::Subscribe { topic, reply })
            .await?
    }

    /// Publishes on a gossip topic.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), NetError> {
        let topic = topic.to_string();
        self.call(|reply| Command::Publish { topic, data, reply })
            .await?
    }

    /// The members connected now.
    pub async fn connected_peers(&self) -> Result<Vec<ConnectedPeer>, NetError> {
        self.call(|reply| Command::ConnectedPeers { reply }).await
    }

    /// The addresses we listen on.
    pub async fn listen_addresses(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.call(|reply| Command::ListenAddresses { reply }).await
    }

    /// Counters.
    pub async fn stats(&self) -> Result<NetStats, NetError> {
        self.call(|reply| Command::Stats { reply }).await
    }

    /// After the member list shrank: close connections of peers no longer in it.
    pub async fn disconnect_non_members(&self) -> Result<(), NetError> {
        self.commands
            .send(Command::DisconnectNonMembers)
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Stops the network task and waits until it has.
    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
    }
}

/// Builds the swarm and starts listening. The caller spawns [`EventLoop::run`].
pub fn new(
    config: NetConfig,
) -> Result<(NetHandle, mpsc::Receiver<NetEvent>, EventLoop), NetError> {
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
    let local_peer = config.key.peer_id();
    let event_loop = EventLoop::new(config, cmd_rx, ev_tx)?;
    let streams = event_loop.stream_control();
    Ok((
        NetHandle {
            commands: cmd_tx,
            local_peer,
            streams,
        },
        ev_rx,
        event_loop,
    ))
}

/// Per-peer bookkeeping inside the event loop.
#[derive(Debug)]
pub(crate) struct PeerState {
    pub connections: HashMap<libp2p::swarm::ConnectionId, Multiaddr>,
    pub listen_addresses: Vec<Multiaddr>,
    pub since: SystemTime,
    pub rtt: Option<Duration>,
    pub agent: Option<String>,
    /// Its identify lists `/yrd/query/1` but not `/yrd/query/2`: queries go to it one by one.
    pub queries_v1_only: bool,
}
