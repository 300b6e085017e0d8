//! Connection gating: only federation members may stay connected. Everyone else is refused right
//! after the Noise handshake (so their peer id is authenticated) and before any protocol runs, so
//! nothing a non-member sends ever reaches the node. A member holds at most
//! [`MAX_CONNECTIONS_PER_PEER`] connections with us at once: each connection may make us buffer
//! up to its multiplexer's window (`net::muxer`), so their number is bounded too.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// The set of peers allowed to connect, shared between the gate and the node.
#[derive(Debug, Clone, Default)]
pub struct Members(Arc<RwLock<MemberSet>>);

#[derive(Debug, Default)]
struct MemberSet {
    peers: HashSet<PeerId>,
    /// Bumped by every [`Members::replace`], so that what is derived from the set (the members
    /// a node keeps connected) is computed again only when it changed.
    generation: u64,
}

impl Members {
    /// A set holding `peers`.
    pub fn new(peers: impl IntoIterator<Item = PeerId>) -> Self {
        Members(Arc::new(RwLock::new(MemberSet {
            peers: peers.into_iter().collect(),
            generation: 0,
        })))
    }

    /// Is `peer` a member?
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.0.read().peers.contains(peer)
    }

    /// All members.
    pub fn list(&self) -> Vec<PeerId> {
        self.0.read().peers.iter().copied().collect()
    }

    /// How many times the set was replaced: equal numbers, equal sets.
    pub fn generation(&self) -> u64 {
        self.0.read().generation
    }

    /// All members with the generation they are of, read together.
    pub fn list_with_generation(&self) -> (u64, Vec<PeerId>) {
        let set = self.0.read();
        (set.generation, set.peers.iter().copied().collect())
    }

    /// Replaces the set.
    pub fn replace(&self, peers: impl IntoIterator<Item = PeerId>) {
        let mut set = self.0.write();
        set.peers = peers.into_iter().collect();
        set.generation += 1;
    }
}

/// The denial reason libp2p carries for a refused connection.
#[derive(Debug)]
pub struct NotAMember {
    /// The refused peer.
    pub peer: PeerId,
}

impl fmt::Display for NotAMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer {} is not a federation member", self.peer)
    }
}

impl std::error::Error for NotAMember {}

/// Most connections one peer may hold with this node at once, in both directions together. Two
/// members dialling each other at the same moment hold two; a member's TCP and QUIC addresses
/// raced by one dial end in one.
pub const MAX_CONNECTIONS_PER_PEER: usize = 4;

/// The denial reason libp2p carries for a member's connection beyond
/// [`MAX_CONNECTIONS_PER_PEER`].
#[derive(Debug)]
pub struct TooManyConnections {
    /// The member.
    pub peer: PeerId,
}

impl fmt::Display for TooManyConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "peer {} already holds {MAX_CONNECTIONS_PER_PEER} connections",
            self.peer
        )
    }
}

impl std::error::Error for TooManyConnections {}

/// A refusal, reported to the event loop with who and from where.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The authenticated peer id of the refused side.
    pub peer: PeerId,
    /// Its address.
    pub address: Multiaddr,
    /// Whether it dialled us.
    pub inbound: bool,
    /// Why.
    pub because: RefusedBecause,
}

/// Why the gate refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBecause {
    /// The peer is not a federation member.
    NotAMember,
    /// The peer is a member already holding [`MAX_CONNECTIONS_PER_PEER`] connections.
    TooManyConnections,
}

/// The gate behaviour.
#[derive(Debug)]
pub struct Gate {
    members: Members,
    /// Open connections per peer; only members' ever open, so at most one entry per member.
    established: HashMap<PeerId, usize>,
    refused: VecDeque<Refused>,
    waker: Option<std::task::Waker>,
}

impl Gate {
    /// A gate admitting `members`.
    pub fn new(members: Members) -> Self {
        Gate {
            members,
            established: HashMap::new(),
            refused: VecDeque::new(),
            waker: None,
        }
    }

    fn enforce(
        &mut self,
        peer: PeerId,
        address: &Multiaddr,
        inbound: bool,
    ) -> Result<(), ConnectionDenied> {
        let because = if !self.members.contains(&peer) {
            RefusedBecause::NotAMember
        } else if self.established.get(&peer).copied().unwrap_or(0) >= MAX_CONNECTIONS_PER_PEER {
            RefusedBecause::TooManyConnections
        } else {
            return Ok(());
        };
        // Bounded: the event loop drains this every poll; cap it anyway against a flood.
        if self.refused.len() < 1024 {
            self.refused.push_back(Refused {
                peer,
                address: address.clone(),
                inbound,
                because,
            });
        }
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        Err(match because {
            RefusedBecause::NotAMember => ConnectionDenied::new(NotAMember { peer }),
            RefusedBecause::TooManyConnections => {
                ConnectionDenied::new(TooManyConnections { peer })
            }
        })
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Refused;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.enforce(peer, remote, true)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        // Our own dials to a known non-member are stopped quietly; they are not refusals.
        if let Some(peer) = peer {
            if !self.members.contains(&peer) {
                return Err(ConnectionDenied::new(NotAMember { peer }));
            }
        }
        Ok(vec![])
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.enforce(peer, addr, false)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        // The swarm reports a connection established right after the gate admitted it, before
        // it asks about the next one: the count is exact.
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                *self.established.entry(e.peer_id).or_insert(0) += 1;
            }
            FromSwarm::ConnectionClosed(e) => {
                if let Some(n) = self.established.get_mut(&e.peer_id) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.established.remove(&e.peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        let _: Infallible = event;
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.refused.pop_front() {
            Some(r) => Poll::Ready(ToSwarm::GenerateEvent(r)),
            None => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
