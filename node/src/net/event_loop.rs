//! The task that owns the libp2p `Swarm`: it turns commands into swarm calls and swarm events into
//! [`NetEvent`]s, keeps members connected (redial with backoff, Kademlia lookups), and nothing more.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, gossipsub, identify, kad, mdns, noise, ping, tcp,
};
use tokio::sync::{mpsc, oneshot};

use super::gate::{Gate, MAX_CONNECTIONS_PER_PEER, Members, Refused, RefusedBecause};
use super::{
    Command, ConnectedPeer, IDENTIFY_PROTOCOL, KAD_PROTOCOL, MAX_GOSSIP_BYTES, MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES, NetConfig, NetError, NetEvent, NetStats, PeerState, REQUEST_PROTOCOL,
    TcpSecurity, peer_of,
};
use super::{muxer, topology};
use crate::identity::short_peer;
use crate::model::message::{Request, Response};
use crate::model::query::{
    MAX_QUERY_ANSWER_BYTES, MAX_QUERY_BATCH_ANSWER_BYTES, MAX_QUERY_BATCH_BYTES, MAX_QUERY_BYTES,
    QUERY_BATCH_PROTOCOL, QUERY_PROTOCOL, QueryBatchResponse, QueryResponse,
};

const MAX_ADDRESSES_PER_PEER: usize = 16;
/// Between two Kademlia bootstraps. A bootstrap walks several members per bucket: every 30 s
/// on each of a hundred members, that was a tenth of the network's CPU at rest; addresses of
/// members are also learnt on connection, and a member we lack one for is looked up on its
/// own. The first is due this long after start, not at start: a joining node finds the members
/// it keeps by those lookups (libp2p's automatic bootstrap is off, see `make_behaviour`), and
/// one bootstrap on each of a hundred starting nodes only added to the lookups every node had
/// to answer.
const KAD_BOOTSTRAP_EVERY: Duration = Duration::from_secs(300);
const FIRST_REDIAL: Duration = Duration::from_millis(500);
/// A connection that lasted this long resets its peer's redial backoff when it closes.
const STABLE_CONNECTION: Duration = Duration::from_secs(30);
/// New dials started per maintenance tick (every 500 ms): a node joining a large federation, or
/// a whole simulated network starting at once, connects in a stream rather than a storm.
const DIALS_PER_TICK: usize = 8;
/// Kademlia lookups of unknown addresses started per maintenance tick.
const LOOKUPS_PER_TICK: usize = 2;
/// Requests held while the address of the member they go to is looked up.
const MAX_PARKED: usize = 256;

/// The members kept connected ([`topology::kept_members`]), computed again only when the
/// member list changed: sorting every member by hash twice a second was, on a hundred nodes in
/// one process, a few per cent of its CPU.
#[derive(Default)]
struct KeptMembers(Option<(u64, Vec<PeerId>)>);

impl KeptMembers {
    fn get(&mut self, local: &PeerId, members: &Members, bound: usize) -> &[PeerId] {
        if self
            .0
            .as_ref()
            .is_none_or(|(g, _)| *g != members.generation())
        {
            let (generation, list) = members.list_with_generation();
            self.0 = Some((generation, topology::kept_members(local, &list, bound)));
        }
        self.0.as_ref().map_or(&[], |(_, kept)| kept.as_slice())
    }
}

type RequestReply = oneshot::Sender<Result<Response, NetError>>;
type QueryReply = oneshot::Sender<Result<QueryResponse, NetError>>;
type BatchReply = oneshot::Sender<Result<QueryBatchResponse, NetError>>;

/// A request to a member not connected and of no known address (a member outside the kept
/// set, in a large federation), held until a Kademlia lookup finds it or ends.
enum Parked {
    Request(Request, RequestReply),
    Query(serde_json::Value, QueryReply),
    QueryBatch(Vec<serde_json::Value>, BatchReply),
}

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    // First, so a non-member is refused before any other behaviour sets up a handler.
    gate: Gate,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    rpc: request_response::json::Behaviour<Request, Response>,
    // Query services: any JSON up to 16 KiB in (the service parses it and names a malformed
    // query's cause), a bounded answer out.
    query: request_response::json::Behaviour<serde_json::Value, QueryResponse>,
    // The same in batches of up to 16 (`/yrd/query/2`), one response each; off when
    // `network.query_batches` is.
    query_batch:
        Toggle<request_response::json::Behaviour<Vec<serde_json::Value>, QueryBatchResponse>>,
    // Datasets move on their own streams (see `node::transfer`), outside request-response's caps.
    stream: libp2p_stream::Behaviour,
}

struct BehaviourParams {
    members: Members,
    request_timeout: Duration,
    ping_interval: Duration,
    mdns_on: bool,
    query_batches: bool,
    agent: String,
}

fn make_behaviour(
    key: &libp2p::identity::Keypair,
    p: &BehaviourParams,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let peer = key.public().to_peer_id();
    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config.set_query_timeout(Duration::from_secs(30));
    // Bootstraps are run by the event loop's tick (KAD_BOOTSTRAP_EVERY), not twice.
    kad_config.set_periodic_bootstrap_interval(None);
    // Nor on every peer added while the routing table holds fewer than 20 (libp2p's automatic
    // bootstrap): each walks every bucket and dials the members it asks, and a member keeping a
    // dozen connected has a small table while it starts, so each new connection set off the
    // next walk. A hundred nodes starting together answered about 50,000 lookups, against about
    // 13,000 without, and took 33 s to start instead of 19 s (docs/benchmarks.md, "What a
    // hundred nodes did after they had meshed"). Members are found by the lookups of `look_up`,
    // which end at the member sought, and by the bootstrap every KAD_BOOTSTRAP_EVERY.
    kad_config.set_automatic_bootstrap_throttle(None);
    let mut kad = kad::Behaviour::with_config(peer, kad::store::MemoryStore::new(peer), kad_config);
    kad.set_mode(Some(kad::Mode::Server));
    // A message waits up to 10 s (not gossipsub's 1 s) for a busy connection before it is given
    // up to the lazy IHAVE/IWANT path, which costs a heartbeat per hop: on a loaded node (a
    // hundred simulated on two cores) forwarding otherwise fell back to it at every hop.
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_secs(1))
        .forward_queue_duration(Duration::from_secs(10))
        .publish_queue_duration(Duration::from_secs(10))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .build()?;
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_config,
    )?;
    // mDNS is a convenience (devnet, one LAN); a host without multicast still runs.
    let mdns = if p.mdns_on {
        match mdns::tokio::Behaviour::new(mdns::Config::default(), peer) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "mDNS unavailable; continuing without it");
                None
            }
        }
    } else {
        None
    };
    let codec = request_response::json::codec::Codec::default()
        .set_request_size_maximum(MAX_REQUEST_BYTES)
        .set_response_size_maximum(MAX_RESPONSE_BYTES);
    let rpc = request_response::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(REQUEST_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(p.request_timeout),
    );
    let query_codec = request_response::json::codec::Codec::default()
        .set_request_size_maximum(MAX_QUERY_BYTES)
        .set_response_size_maximum(MAX_QUERY_ANSWER_BYTES);
    let query = request_response::Behaviour::with_codec(
        query_codec,
        [(StreamProtocol::new(QUERY_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(p.request_timeout)
            .with_max_concurrent_streams(1024),
    );
    let query_batch = p.query_batches.then(|| {
        let codec = request_response::json::codec::Codec::default()
            .set_request_size_maximum(MAX_QUERY_BATCH_BYTES)
            .set_response_size_maximum(MAX_QUERY_BATCH_ANSWER_BYTES);
        request_response::Behaviour::with_codec(
            codec,
            [(
                StreamProtocol::new(QUERY_BATCH_PROTOCOL),
                ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(p.request_timeout)
                // A batch is parsed whole before it is checked: few at once per connection.
                .with_max_concurrent_streams(32),
        )
    });
    Ok(Behaviour {
        gate: Gate::new(p.members.clone()),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                .with_agent_version(p.agent.clone()),
        ),
        ping: ping::Behaviour::new(ping::Config::new().with_interval(p.ping_interval)),
        kad,
        gossipsub,
        mdns: Toggle::from(mdns),
        rpc,
        query,
        query_batch: Toggle::from(query_batch),
        stream: libp2p_stream::Behaviour::new(),
    })
}

struct Redial {
    next: Instant,
    backoff: Duration,
}

/// When to dial each kept member again: a backoff from [`FIRST_REDIAL`] doubling up to `max`,
/// started again only by a connection that lasted [`STABLE_CONNECTION`] — so a member that
/// drops each connection at once (it does not take us as a member, or is overloaded) is not
/// redialled twice a second. One entry per member dialled: bounded by the member list.
struct Redials {
    due: HashMap<PeerId, Redial>,
    max: Duration,
}

impl Redials {
    fn new(max: Duration) -> Redials {
        Redials {
            due: HashMap::new(),
            max,
        }
    }

    /// Whether `peer` may be dialled at `now`; if so, its next dial is pushed back.
    fn take_due(&mut self, peer: PeerId, now: Instant) -> bool {
        let state = self.due.entry(peer).or_insert(Redial {
            next: now,
            backoff: FIRST_REDIAL,
        });
        if now < state.next {
            return false;
        }
        state.next = now + state.backoff;
        state.backoff = (state.backoff * 2).min(self.max);
        true
    }

    /// The last connection to `peer` closed after lasting `lasted`.
    fn closed(&mut self, peer: &PeerId, lasted: Duration) {
        if lasted >= STABLE_CONNECTION {
            self.due.remove(peer);
        }
    }
}

/// The network task. Build it with [`super::new`], then `tokio::spawn(event_loop.run())`.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    members: Members,
    peers: HashMap<PeerId, PeerState>,
    addresses: HashMap<PeerId, Vec<Multiaddr>>,
    redial: Redials,
    kept_members: usize,
    pending_requests: HashMap<OutboundRequestId, RequestReply>,
    pending_queries: HashMap<OutboundRequestId, QueryReply>,
    /// Batches in flight, with how many queries each carries.
    pending_batches: HashMap<OutboundRequestId, (BatchReply, u64)>,
    parked: HashMap<PeerId, Vec<Parked>>,
    pending_dials: Vec<(PeerId, oneshot::Sender<Result<(), NetError>>)>,
    last_kad_bootstrap: Instant,
    kept: KeptMembers,
    stats: NetStats,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("peer", self.swarm.local_peer_id())
            .finish()
    }
}

impl EventLoop {
    /// A control for opening and accepting streams, usable from any task.
    pub(super) fn stream_control(&self) -> libp2p_stream::Control {
        self.swarm.behaviour().stream.new_control()
    }

    pub(super) fn new(
        config: NetConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetEvent>,
    ) -> Result<EventLoop, NetError> {
        let local = config.key.peer_id();
        let members = config.members.clone();
        let keypair = config.key.keypair().clone();
        let transport = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
        let request_timeout = config.request_timeout;
        let ping_interval = config.ping_interval;
        let mdns_on = config.mdns;
        let agent = config.agent.clone();
        let params = BehaviourParams {
            members: members.clone(),
            request_timeout,
            ping_interval,
            mdns_on,
            query_batches: config.query_batches,
            agent,
        };
        let tcp_config = tcp::Config::default().nodelay(true);
        let idle = config.idle_timeout;
        let window = config.quic_window_bytes;
        let tcp_growth = config.tcp_window_growth;
        // Each stream may use the whole connection window: bulk transfers run one stream each.
        let quic_tune = move |mut c: libp2p::quic::Config| {
            c.max_connection_data = window;
            c.max_stream_data = window;
            c
        };
        // Listeners accept both TCP security protocols; the dialer offers its preference first.
        macro_rules! build_swarm {
            ($security:expr) => {
                libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
                    .with_tokio()
                    .with_tcp(tcp_config.clone(), $security, move || {
                        muxer::upgrade(tcp_growth)
                    })
                    .map_err(|e| transport(&e))?
                    .with_quic_config(quic_tune)
                    .with_dns()
                    .map_err(|e| transport(&e))?
                    .with_behaviour(|key| make_behaviour(key, &params))
                    .map_err(|e| transport(&e))?
                    .with_swarm_config(|c| {
                        // A stream's protocol is settled optimistically (multistream-select
                        // V1Lazy): the dialer's first frame goes with its proposal instead of a
                        // round trip later (with several proposals, only the last is settled
                        // so). A peer lacking the protocol fails the stream's first read instead
                        // of its open. Over a WAN: one round trip off every fetch and request
                        // (docs/benchmarks.md, "Over an emulated WAN").
                        c.with_idle_connection_timeout(idle)
                            .with_substream_upgrade_protocol_override(
                                libp2p::core::upgrade::Version::V1Lazy,
                            )
                    })
                    .build()
            };
        }
        let mut swarm = match config.tcp_security {
            TcpSecurity::Noise => build_swarm!((noise::Config::new, libp2p::tls::Config::new)),
            TcpSecurity::Tls => build_swarm!((libp2p::tls::Config::new, noise::Config::new)),
        };

        for addr in &config.listen {
            probe_port(addr)?;
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    cause: listen_cause(&e),
                })?;
        }
        for addr in &config.external_addresses {
            swarm.add_external_address(addr.clone());
        }
        let mut event_loop = EventLoop {
            swarm,
            commands,
            events,
            members,
            peers: HashMap::new(),
            addresses: HashMap::new(),
            redial: Redials::new(config.redial_max),
            kept_members: config.kept_members,
            pending_requests: HashMap::new(),
            pending_queries: HashMap::new(),
            pending_batches: HashMap::new(),
            parked: HashMap::new(),
            pending_dials: Vec::new(),
            last_kad_bootstrap: Instant::now(),
            kept: KeptMembers::default(),
            stats: NetStats::default(),
        };
        for addr in &config.bootstrap {
            if let Some(peer) = peer_of(addr) {
                event_loop.learn_address(peer, strip_p2p(addr));
            }
        }
        for (peer, addr) in config.known_addresses {
            event_loop.learn_address(peer, addr);
        }
        tracing::debug!(peer = %local, "network task built");
        Ok(event_loop)
    }

    /// Runs until shutdown or until every handle is dropped.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => break,
                },
                _ = tick.tick() => self.maintain(),
            }
        }
        tracing::debug!("network task stopped");
    }

    fn emit(&mut self, event: NetEvent) {
        // Never block the swarm on a slow reader: drop and count instead (peers retry, and the
        // service re-reads state through commands).
        if let Err(e) = self.events.try_send(event) {
            self.stats.dropped_events += 1;
            tracing::warn!(error = %e, "network event dropped: the service is not keeping up");
        }
    }

    fn learn_address(&mut self, peer: PeerId, addr: Multiaddr) {
        if peer == *self.swarm.local_peer_id() || !self.members.contains(&peer) {
            return;
        }
        let list = self.addresses.entry(peer).or_default();
        if !list.contains(&addr) {
            if list.len() >= MAX_ADDRESSES_PER_PEER {
                list.remove(0);
            }
            list.push(addr.clone());
            self.swarm.behaviour_mut().kad.add_address(&peer, addr);
        }
        if self.parked.contains_key(&peer) {
            self.unpark(peer);
        }
    }

    /// Keeps the members this node keeps ([`topology::kept_members`]: all of a small
    /// federation) connected: dial the ones we know how to reach, look the others up — a
    /// bounded number per tick, each member with its own backoff.
    fn maintain(&mut self) {
        let now = Instant::now();
        let local = *self.swarm.local_peer_id();
        let kept = self
            .kept
            .get(&local, &self.members, self.kept_members)
            .to_vec();
        let (mut dials, mut lookups) = (DIALS_PER_TICK, LOOKUPS_PER_TICK);
        for peer in kept {
            if self.swarm.is_connected(&peer) {
                continue;
            }
            let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
            let budget = if addrs.is_empty() {
                &mut lookups
            } else {
                &mut dials
            };
            if *budget == 0 {
                continue;
            }
            if !self.redial.take_due(peer, now) {
                continue;
            }
            *budget -= 1;
            if addrs.is_empty() {
                self.look_up(peer);
                continue;
            }
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(peer = %short_peer(&peer), error = %e, "redial not started");
            }
        }
        let due = now.duration_since(self.last_kad_bootstrap) > KAD_BOOTSTRAP_EVERY;
        if due && !self.peers.is_empty() {
            self.last_kad_bootstrap = now;
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
        // Close connections of peers removed from the member list.
        let stale: Vec<PeerId> = self
            .peers
            .keys()
            .filter(|p| !self.members.contains(p))
            .copied()
            .collect();
        for peer in stale {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn send_request(&mut self, peer: PeerId, request: Request, reply: RequestReply) {
        let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
        let id = self
            .swarm
            .behaviour_mut()
            .rpc
            .send_request_with_addresses(&peer, request, addrs);
        self.pending_requests.insert(id, reply);
    }

    fn send_query(&mut self, peer: PeerId, request: serde_json::Value, reply: QueryReply) {
        let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
        let id = self
            .swarm
            .behaviour_mut()
            .query
            .send_request_with_addresses(&peer, request, addrs);
        self.pending_queries.insert(id, reply);
        self.stats.queries_sent += 1;
    }

    /// Sends a batch of queries on `/yrd/query/2`, unless batches are off here or the
    /// provider's identify says it speaks only `/yrd/query/1` (then `BatchesUnsupported`, at
    /// once: the caller sends each query alone).
    fn send_query_batch(
        &mut self,
        peer: PeerId,
        requests: Vec<serde_json::Value>,
        reply: BatchReply,
    ) {
        let v1_only = self.peers.get(&peer).is_some_and(|s| s.queries_v1_only);
        let addrs = self.addresses.get(&peer).cloned().unwrap_or_default();
        let count = requests.len() as u64;
        match self.swarm.behaviour_mut().query_batch.as_mut() {
            Some(batches) if !v1_only => {
                let id = batches.send_request_with_addresses(&peer, requests, addrs);
                self.pending_batches.insert(id, (reply, count));
                self.stats.queries_sent += count;
                self.stats.query_batches_sent += 1;
            }
            _ => {
                let _ = reply.send(Err(NetError::BatchesUnsupported { peer }));
            }
        }
    }

    /// Looks up one member's address. The walk ends once the member itself answers (or the
    /// closest member known to be reachable has, without naming a closer one), instead of
    /// once the 20 closest to its id have: what we want is that one peer, not its
    /// neighbourhood, and while a network starts every node looks up a dozen members, each
    /// walk costing the members it asks a routing-table search.
    fn look_up(&mut self, peer: PeerId) {
        self.swarm
            .behaviour_mut()
            .kad
            .get_n_closest_peers(peer, std::num::NonZeroUsize::MIN);
    }

    /// A request to `peer` waits for a lookup: a member, not connected, address unknown, and
    /// room to hold it (else it is sent, and fails naming the dial).
    fn must_look_up(&self, peer: &PeerId) -> bool {
        *peer != *self.swarm.local_peer_id()
            && self.members.contains(peer)
            && !self.swarm.is_connected(peer)
            && self.addresses.get(peer).is_none_or(Vec::is_empty)
            && self.parked.values().map(Vec::len).sum::<usize>() < MAX_PARKED
    }

    fn park(&mut self, peer: PeerId, parked: Parked) {
        let list = self.parked.entry(peer).or_default();
        let first = list.is_empty();
        list.push(parked);
        if first {
            self.look_up(peer);
        }
    }

    /// Sends what waited for `peer`'s address (found, connected, or the lookup ended).
    fn unpark(&mut self, peer: PeerId) {
        for parked in self.parked.remove(&peer).unwrap_or_default() {
            match parked {
                Parked::Request(request, reply) => self.send_request(peer, request, reply),
                Parked::Query(request, reply) => self.send_query(peer, request, reply),
                Parked::QueryBatch(requests, reply) => self.send_query_batch(peer, requests, reply),
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Dial { addr, reply } => {
                let target = addr.to_string();
                let result = self.swarm.dial(addr.clone()).map_err(|e| NetError::Dial {
                    target,
                    cause: e.to_string(),
                });
                if let (Ok(()), Some(peer)) = (&result, peer_of(&addr)) {
                    self.learn_address(peer, strip_p2p(&addr));
                    if self.pending_dials.len() < 256 {
                        self.pending_dials.push((peer, reply));
                        return;
                    }
                }
                let _ = reply.send(result);
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                if self.must_look_up(&peer) {
                    self.park(peer, Parked::Request(request, reply));
                } else {
                    self.send_request(peer, request, reply);
                }
            }
            Command::Respond { channel, response } => {
                if self
                    .swarm
                    .behaviour_mut()
                    .rpc
                    .send_response(channel, response)
                    .is_err()
                {
                    tracing::debug!("response not sent: the requester went away");
                }
            }
            Command::Query {
                peer,
                request,
                reply,
            } => {
                if self.must_look_up(&peer) {
                    self.park(peer, Parked::Query(request, reply));
                } else {
                    self.send_query(peer, request, reply);
                }
            }
            Command::QueryBatch {
                peer,
                requests,
                reply,
            } => {
                if self.must_look_up(&peer) {
                    self.park(peer, Parked::QueryBatch(requests, reply));
                } else {
                    self.send_query_batch(peer, requests, reply);
                }
            }
            Command::RespondQueryBatch { channel, response } => {
                let sent = self
                    .swarm
                    .behaviour_mut()
                    .query_batch
                    .as_mut()
                    .map(|b| b.send_response(channel, response).is_ok());
                if sent != Some(true) {
                    tracing::debug!("query batch answer not sent: the caller went away");
                }
            }
            Command::RespondQuery { channel, response } => {
                if self
                    .swarm
                    .behaviour_mut()
                    .query
                    .send_response(channel, response)
                    .is_err()
                {
                    tracing::debug!("query answer not sent: the caller went away");
                }
            }
            Command::Subscribe { topic, reply } => {
                let t = gossipsub::IdentTopic::new(topic.clone());
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&t)
                    .map(|_| ())
                    .map_err(|e| NetError::Publish {
                        topic,
                        cause: e.to_string(),
                    });
                let _ = reply.send(result);
            }
            Command::Publish { topic, data, reply } => {
                let t = gossipsub::IdentTopic::new(topic.clone());
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(t, data)
                    .map(|_| ())
                    .map_err(|e| NetError::Publish {
                        topic,
                        cause: e.to_string(),
                    });
                let _ = reply.send(result);
            }
            Command::ConnectedPeers { reply } => {
                let list = self
                    .peers
                    .iter()
                    .map(|(peer, s)| ConnectedPeer {
                        peer: *peer,
                        addresses: s.connections.values().cloned().collect(),
                        listen_addresses: s.listen_addresses.clone(),
                        connected_since: s.since,
                        rtt: s.rtt,
                        agent: s.agent.clone(),
                    })
                    .collect();
                let _ = reply.send(list);
            }
            Command::ListenAddresses { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats.clone());
            }
            Command::DisconnectNonMembers => self.maintain(),
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.emit(NetEvent::Listening { address });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let address = endpoint.get_remote_address().clone();
                if endpoint.is_dialer() {
                    self.learn_address(peer_id, strip_p2p(&address));
                }
                let first = !self.peers.contains_key(&peer_id);
                let state = self.peers.entry(peer_id).or_insert_with(|| PeerState {
                    connections: HashMap::new(),
                    listen_addresses: Vec::new(),
                    since: SystemTime::now(),
                    rtt: None,
                    agent: None,
                    queries_v1_only: false,
                });
                state.connections.insert(connection_id, address.clone());
                if self.parked.contains_key(&peer_id) {
                    self.unpark(peer_id);
                }
                let dials = std::mem::take(&mut self.pending_dials);
                for (peer, reply) in dials {
                    if peer == peer_id {
                        let _ = reply.send(Ok(()));
                    } else {
                        self.pending_dials.push((peer, reply));
                    }
                }
                if first {
                    tracing::info!(peer = %peer_id, %address, "member connected");
                    self.emit(NetEvent::PeerConnected {
                        peer: peer_id,
                        address,
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.connections.remove(&connection_id);
                }
                if num_established == 0 {
                    if let Some(state) = self.peers.remove(&peer_id) {
                        let lasted = state.since.elapsed().unwrap_or_default();
                        self.redial.closed(&peer_id, lasted);
                        tracing::info!(
                            peer = %peer_id,
                            lasted_ms = u64::try_from(lasted.as_millis()).unwrap_or(u64::MAX),
                            cause = cause.as_ref().map(ToString::to_string),
                            "member disconnected"
                        );
                        self.emit(NetEvent::PeerDisconnected { peer: peer_id });
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                let dials = std::mem::take(&mut self.pending_dials);
                for (p, reply) in dials {
                    if p == peer {
                        let _ = reply.send(Err(NetError::Dial {
                            target: peer.to_string(),
                            cause: error.to_string(),
                        }));
                    } else {
                        self.pending_dials.push((p, reply));
                    }
                }
                tracing::debug!(peer = %short_peer(&peer), %error, "dial failed");
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(address = %send_back_addr, %error, "incoming connection failed");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gate(Refused {
                peer,
                address,
                inbound,
                because: RefusedBecause::TooManyConnections,
            }) => {
                // A member, so not a refusal to log for the operator: counted, and in debug.
                self.stats.excess_connections += 1;
                tracing::debug!(
                    peer = %peer, %address, inbound,
                    "refused a connection: the member already holds {MAX_CONNECTIONS_PER_PEER}"
                );
            }
            BehaviourEvent::Gate(Refused {
                peer,
                address,
                inbound,
                because: RefusedBecause::NotAMember,
            }) => {
                self.stats.refused_connections += 1;
                // The service logs refusals at a bounded rate; this line is for debugging only.
                tracing::debug!(
                    peer = %peer, %address, inbound,
                    "refused a connection: peer is not a federation member"
                );
                self.emit(NetEvent::Refused {
                    peer,
                    address,
                    inbound,
                });
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in &info.listen_addrs {
                    self.learn_address(peer_id, strip_p2p(addr));
                }
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.listen_addresses = info
                        .listen_addrs
                        .into_iter()
                        .take(MAX_ADDRESSES_PER_PEER)
                        .collect();
                    state.agent = Some(info.agent_version.chars().take(128).collect());
                    let speaks = |p: &str| info.protocols.iter().any(|q| q.as_ref() == p);
                    state.queries_v1_only = speaks(QUERY_PROTOCOL) && !speaks(QUERY_BATCH_PROTOCOL);
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.rtt = Some(rtt);
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, addresses, ..
            }) => {
                for addr in addresses.iter() {
                    self.learn_address(peer, strip_p2p(addr));
                }
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                ..
            }) => {
                for info in ok.peers {
                    for addr in info.addrs {
                        self.learn_address(info.peer_id, strip_p2p(&addr));
                    }
                }
                // The lookup ended: what waited for this member goes now, found or not.
                if let Ok(peer) = PeerId::from_bytes(&ok.key) {
                    self.unpark(peer);
                }
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Err(e)),
                ..
            }) => {
                if let Ok(peer) = PeerId::from_bytes(e.key()) {
                    self.unpark(peer);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    self.learn_address(peer, addr);
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. }) => {
                self.stats.gossip_received += 1;
                let Some(source) = message.source else { return };
                self.emit(NetEvent::Gossip {
                    source,
                    topic: message.topic.to_string(),
                    data: message.data,
                });
            }
            BehaviourEvent::Rpc(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        self.stats.inbound_requests += 1;
                        self.emit(NetEvent::InboundRequest {
                            peer,
                            request,
                            channel,
                        });
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(reply) = self.pending_requests.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                }
            }
            BehaviourEvent::Rpc(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        cause: error.to_string(),
                    }));
                }
            }
            BehaviourEvent::Rpc(request_response::Event::InboundFailure {
                peer, error, ..
            }) => {
                tracing::debug!(peer = %short_peer(&peer), %error, "inbound request failed");
            }
            BehaviourEvent::Query(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        self.stats.inbound_requests += 1;
                        self.emit(NetEvent::InboundQuery {
                            peer,
                            request,
                            channel,
                        });
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(reply) = self.pending_queries.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                }
            }
            BehaviourEvent::Query(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                if let Some(reply) = self.pending_queries.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        cause: error.to_string(),
                    }));
                }
            }
            BehaviourEvent::Query(request_response::Event::InboundFailure {
                peer, error, ..
            }) => {
                // An oversized or non-JSON query ends here: the codec refuses to read it.
                tracing::info!(peer = %short_peer(&peer), %error, "inbound query not read");
            }
            BehaviourEvent::QueryBatch(request_response::Event::Message {
                peer, message, ..
            }) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.stats.inbound_requests += 1;
                    self.emit(NetEvent::InboundQueryBatch {
                        peer,
                        requests: request,
                        channel,
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((reply, _)) = self.pending_batches.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            BehaviourEvent::QueryBatch(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                let Some((reply, count)) = self.pending_batches.remove(&request_id) else {
                    return;
                };
                let _ = reply.send(Err(if batches_unsupported(&error) {
                    // An older provider whose identify had not come yet: the queries go again,
                    // one by one, and are counted then.
                    if let Some(state) = self.peers.get_mut(&peer) {
                        state.queries_v1_only = true;
                    }
                    self.stats.queries_sent = self.stats.queries_sent.saturating_sub(count);
                    self.stats.query_batches_sent = self.stats.query_batches_sent.saturating_sub(1);
                    NetError::BatchesUnsupported { peer }
                } else {
                    NetError::Request {
                        peer,
                        cause: error.to_string(),
                    }
                }));
            }
            BehaviourEvent::QueryBatch(request_response::Event::InboundFailure {
                peer,
                error,
                ..
            }) => {
                // An oversized or non-JSON batch ends here: the codec refuses to read it.
                tracing::info!(peer = %short_peer(&peer), %error, "inbound query batch not read");
            }
            _ => {}
        }
    }
}

/// Whether a batch failed because the provider does not speak `/yrd/query/2`. With
/// optimistic negotiation (V1Lazy) that shows as the stream's first read failing with
/// multistream-select's `Failed`, not as `UnsupportedProtocols`.
fn batches_unsupported(error: &request_response::OutboundFailure) -> bool {
    use libp2p::core::upgrade::NegotiationError;
    match error {
        request_response::OutboundFailure::UnsupportedProtocols => true,
        request_response::OutboundFailure::Io(e) => e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<NegotiationError>())
            .is_some_and(|n| matches!(n, NegotiationError::Failed)),
        _ => false,
    }
}

fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}

/// libp2p listens with `SO_REUSEPORT`, so a second node on a taken port would start and silently
/// share it with the first; a plain bind first turns that into a clear error.
fn probe_port(addr: &Multiaddr) -> Result<(), NetError> {
    bind_once(addr).map_err(|e| NetError::Listen {
        addr: addr.clone(),
        cause: if e.kind() == std::io::ErrorKind::AddrInUse {
            "the port is already in use (another node on this port?)".to_string()
        } else {
            e.to_string()
        },
    })
}

/// Waits, at most `within`, until every fixed port of `addrs` can be bound again: a node
/// restarted in the same process (a key rotation) finds its previous QUIC endpoint still
/// holding its UDP port while its connections drain. Any other error is left to the start.
pub async fn wait_bindable(addrs: &[Multiaddr], within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    for addr in addrs {
        while matches!(bind_once(addr), Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Binds `addr`'s IP and fixed port once (TCP or UDP) and lets go; Ok for anything else.
fn bind_once(addr: &Multiaddr) -> std::io::Result<()> {
    use libp2p::multiaddr::Protocol;
    let parts: Vec<Protocol> = addr.iter().collect();
    let (ip, port, udp) = match parts.as_slice() {
        [Protocol::Ip4(ip), Protocol::Tcp(p)] => (std::net::IpAddr::V4(*ip), *p, false),
        [Protocol::Ip6(ip), Protocol::Tcp(p)] => (std::net::IpAddr::V6(*ip), *p, false),
        [Protocol::Ip4(ip), Protocol::Udp(p), ..] => (std::net::IpAddr::V4(*ip), *p, true),
        [Protocol::Ip6(ip), Protocol::Udp(p), ..] => (std::net::IpAddr::V6(*ip), *p, true),
        _ => return Ok(()),
    };
    if port == 0 {
        return Ok(());
    }
    if udp {
        std::net::UdpSocket::bind((ip, port)).map(drop)
    } else {
        std::net::TcpListener::bind((ip, port)).map(drop)
    }
}

fn listen_cause(e: &libp2p::TransportError<std::io::Error>) -> String {
    match e {
        libp2p::TransportError::MultiaddrNotSupported(a) => format!("address not supported: {a}"),
        libp2p::TransportError::Other(io) if io.kind() == std::io::ErrorKind::AddrInUse => {
            "the port is already in use (another node on this port?)".to_string()
        }
        libp2p::TransportError::Other(io) => io.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept set follows the member list: a member removed (a charter change) is no longer
    /// kept, one added is, without waiting for anything else to change.
    #[test]
    fn the_kept_members_follow_the_member_list() {
        let local = PeerId::random();
        let first: Vec<PeerId> = (0..30).map(|_| PeerId::random()).collect();
        let members = Members::new(first.iter().copied());
        let mut kept = KeptMembers::default();
        let before = kept.get(&local, &members, 12).to_vec();
        assert_eq!(before, topology::kept_members(&local, &first, 12));
        assert_eq!(
            kept.get(&local, &members, 12),
            before.as_slice(),
            "same list"
        );
        // Every kept member removed, others added: none of the earlier set stays.
        let second: Vec<PeerId> = first
            .iter()
            .filter(|p| !before.contains(p))
            .copied()
            .chain((0..5).map(|_| PeerId::random()))
            .collect();
        members.replace(second.iter().copied());
        let after = kept.get(&local, &members, 12).to_vec();
        assert_eq!(after, topology::kept_members(&local, &second, 12));
        assert!(after.iter().all(|p| !before.contains(p)), "{after:?}");
    }

    /// A member that drops each connection at once is dialled on the doubling backoff (0.5,
    /// 1, 2, 4 s …, up to the maximum), not every tick; one whose connection lasted is dialled
    /// again at once.
    #[test]
    fn a_member_dropping_each_connection_keeps_its_backoff() {
        let peer = PeerId::random();
        let mut redials = Redials::new(Duration::from_secs(4));
        let start = Instant::now();
        let ticks = |redials: &mut Redials, from: Instant, secs: u64| {
            (0..secs * 2)
                .map(|i| from + Duration::from_millis(500 * i))
                .filter(|t| {
                    let due = redials.take_due(peer, *t);
                    // Each dial connects and is dropped at once.
                    if due {
                        redials.closed(&peer, Duration::from_millis(20));
                    }
                    due
                })
                .count()
        };
        // In 20 s of 0.5 s ticks: at 0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5 s — 8 dials, not 40.
        assert_eq!(ticks(&mut redials, start, 20), 8);
        // A connection that lasted resets it: due at once, then 0.5 s later.
        let later = start + Duration::from_secs(60);
        redials.closed(&peer, STABLE_CONNECTION);
        assert!(redials.take_due(peer, later));
        assert!(!redials.take_due(peer, later + Duration::from_millis(400)));
        assert!(redials.take_due(peer, later + Duration::from_millis(500)));
    }
}
