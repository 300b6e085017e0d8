//! A hostile member: a peer on the node's own libp2p stack (`yrd_node::net`, with a member's
//! key) that speaks our protocols badly on purpose. It runs no node service: nothing it does is
//! checked on its side, so a test chooses every frame it sends — a `FetchOpen`, chunk requests
//! of its choosing (bad ones included), raw frames — and how the session ends: a reset, a clean
//! close, or a stall. The provider under test must stay honest and keep serving the others.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use libp2p::PeerId;
use yrd_node::identity::NodeKey;
use yrd_node::model::chunks::ChunkTable;
use yrd_node::model::exchange::Manifest;
use yrd_node::model::refusal::RefusalCode;
use yrd_node::model::signed::Signed;
use yrd_node::model::transfer::{
    CHUNK_HEADER, ChunkWant, FETCH_PROTOCOL, FetchOpen, FetchReply, MAX_CONTROL_FRAME, refusal_in,
};
use yrd_node::net::{self, Members, NetConfig, NetHandle, TcpSecurity, frames};

use crate::{TestNode, WAIT};

/// How long the hostile side waits on one frame before it calls the provider stuck.
const FRAME_WAIT: Duration = Duration::from_secs(20);

/// A member that misbehaves: its own swarm, with a member's key, trusting only the provider.
pub struct HostilePeer {
    net: NetHandle,
    provider: PeerId,
}

impl std::fmt::Debug for HostilePeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostilePeer")
            .field("peer", &self.net.local_peer())
            .field("provider", &self.provider)
            .finish()
    }
}

impl HostilePeer {
    /// Starts a swarm with `key` (a member of `provider`'s federation whose node is not running)
    /// and connects it to `provider`.
    pub async fn start(key: NodeKey, provider: &TestNode) -> Result<HostilePeer> {
        let provider_addr = provider.tcp_address().await?;
        let config = NetConfig {
            key,
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            external_addresses: Vec::new(),
            bootstrap: vec![provider_addr.clone()],
            known_addresses: Vec::new(),
            members: Members::new([provider.peer_id()]),
            mdns: false,
            redial_max: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(120),
            ping_interval: Duration::from_secs(15),
            request_timeout: Duration::from_secs(10),
            agent: "yrd-hostile/test".into(),
            tcp_security: TcpSecurity::Noise,
            quic_window_bytes: 1 << 20,
        };
        let (handle, mut events, event_loop) = net::new(config)?;
        tokio::spawn(event_loop.run());
        // It answers nothing: requests the provider pushes (revocations, heads) go unanswered.
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        handle.dial(provider_addr).await?;
        Ok(HostilePeer {
            net: handle,
            provider: provider.peer_id(),
        })
    }

    /// Its peer id (the member's whose key it holds).
    pub fn peer_id(&self) -> PeerId {
        self.net.local_peer()
    }

    /// Opens a `/yrd/fetch/1` stream to the provider.
    pub async fn fetch_stream(&self) -> Result<HostileFetch> {
        let stream = self
            .net
            .open_stream(self.provider, FETCH_PROTOCOL, WAIT)
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

    /// Stops its swarm.
    pub async fn shutdown(self) {
        self.net.shutdown().await;
    }
}

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
    /// Sends `open` and reads the provider's reply.
    pub async fn open(&mut self, open: &FetchOpen) -> Result<FetchReply> {
        frames::write_json(&mut self.stream, open, FRAME_WAIT).await?;
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
