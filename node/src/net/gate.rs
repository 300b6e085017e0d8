//! Connection gating: only federation members may stay connected. Everyone else is refused right
//! after the Noise handshake (so their peer id is authenticated) and before any protocol runs, so
//! nothing a non-member sends ever reaches the node.

use std::collections::{HashSet, VecDeque};
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

/// A refusal, reported to the event loop with who and from where.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The authenticated peer id of the refused side.
    pub peer: PeerId,
    /// Its address.
    pub address: Multiaddr,
    /// Whether it dialled us.
    pub inbound: bool,
}

/// The gate behaviour.
#[derive(Debug)]
pub struct Gate {
    members: Members,
    refused: VecDeque<Refused>,
    waker: Option<std::task::Waker>,
}

impl Gate {
    /// A gate admitting `members`.
    pub fn new(members: Members) -> Self {
        Gate {
            members,
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
        if self.members.contains(&peer) {
            return Ok(());
        }
        // Bounded: the event loop drains this every poll; cap it anyway against a flood.
        if self.refused.len() < 1024 {
            self.refused.push_back(Refused {
                peer,
                address: address.clone(),
                inbound,
            });
        }
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        Err(ConnectionDenied::new(NotAMember { peer }))
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

    fn on_swarm_event(&mut self, _event: FromSwarm) {}

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
