//! The provider side of `/yrd/fetch/1`: accepting fetch streams from members (at most
//! [`MAX_SERVING`] at once, and `max_transfers_per_peer` per peer), the access checks that decide
//! what a peer receives (the original version, or its masked derivation under the peer's grant),
//! the chunk tables of what we serve, and chunks read and verified from the blob store, sent in
//! the order asked. A grant is checked again before every chunk: a revoked or expired one ends
//! the session with a refusal in place of the next chunk. Every session that sent a chunk is
//! recorded as a `DeliveryServed` provenance record of what actually left (distinct chunks and
//! their bytes) and how it ended, whether the fetcher ended it, reset it, broke the protocol or
//! stalled, the grant ended or the node shut down; a session that sent none claims no delivery.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::derivation::delivered_fields;
use super::registry::Progress;
use super::{MAX_SERVING, SPARE_BUFFERS, TransferStatus, TransferView, blocking_err};
use crate::clock::now_rfc3339;
use crate::model::catalogue::ShareType;
use crate::model::chunks::ChunkTable;
use crate::model::exchange::{Grant, Manifest};
use crate::model::provenance::{MAX_RECORD_INTEGER, RecordKind, SessionEnd};
use crate::model::refusal::RefusalCode;
use crate::model::region::Region;
use crate::model::signed::Signed;
use crate::model::transfer::{
    ChunkWant, FetchOpen, FetchReply, MAX_OPEN_FRAME, MAX_WANT_FRAME, refusal_frame,
};
use crate::net::frames::{self, FrameError};
use crate::node::access::{Direction, Refusal};
use crate::node::counters::Counters;
use crate::node::provenance::doc;
use crate::node::{Node, NodeError};
use crate::store::blobs::BlobError;

/// Longest `cause` a delivery record keeps (characters): it may quote what the peer sent.
const MAX_CAUSE: usize = 500;

/// A serving slot of one peer, given back however the session ends (error, cancellation at
/// shutdown).
struct ServingSlot {
    node: Node,
    peer: PeerId,
}

impl Drop for ServingSlot {
    fn drop(&mut self) {
        self.node
            .inner
            .transfers
            .registry()
            .release_serving(&self.peer);
    }
}

/// The version a fetch asks for among `versions` (oldest first): `wanted`, or the latest.
fn not_published(dataset: &str, wanted: Option<u64>) -> Refusal {
    Refusal {
        code: RefusalCode::NotFound,
        message: match wanted {
            Some(v) => format!("{dataset} has no version {v}"),
            None => format!("{dataset} has no published version yet"),
        },
    }
}

/// The chunks a [`ChunkWant`] asks for, checked against the table we serve (ranges non-empty, in
/// bounds, ascending, disjoint, not too many). Empty: the fetcher ends the session.
fn wanted_chunks(want: &ChunkWant, table: &ChunkTable) -> Result<Vec<u32>, NodeError> {
    want.indexes(table.chunk_count())
        .map_err(|e| NodeError::invalid("want", format!("bad chunk request: {e}")))
}

/// What one session has sent: each chunk of the file once (a bit per chunk), and their bytes.
struct Sent {
    seen: Vec<u64>,
    chunks: u32,
    bytes: u64,
}

impl Sent {
    fn new(chunk_count: u32) -> Sent {
        Sent {
            seen: vec![0; (chunk_count as usize).div_ceil(64)],
            chunks: 0,
            bytes: 0,
        }
    }

    /// Counts chunk `index` of `len` bytes once, however often it is sent.
    fn add(&mut self, index: u32, len: usize) {
        let (word, bit) = ((index / 64) as usize, 1u64 << (index % 64));
        if let Some(w) = self.seen.get_mut(word) {
            if *w & bit == 0 {
                *w |= bit;
                self.chunks += 1;
                // At most the file's size; capped so the record's number stays exact in JSON.
                self.bytes = self
                    .bytes
                    .saturating_add(len as u64)
                    .min(MAX_RECORD_INTEGER);
            }
        }
    }
}

/// How a session ended, and why when the fetcher did not end it.
struct Ending {
    end: SessionEnd,
    cause: Option<String>,
}

impl Ending {
    fn new(end: SessionEnd, cause: Option<String>) -> Ending {
        Ending {
            end,
            cause: cause.map(|c| c.chars().take(MAX_CAUSE).collect()),
        }
    }

    fn shutdown() -> Ending {
        Ending::new(SessionEnd::Shutdown, Some("the provider shut down".into()))
    }

    /// A frame that could not be read or written.
    fn by_frame(e: &FrameError, doing: &str) -> Ending {
        let end = match e {
            FrameError::Closed | FrameError::Io(_) => SessionEnd::Reset,
            FrameError::Stalled(_) => SessionEnd::Stalled,
            FrameError::TooLarge { .. } | FrameError::Malformed(_) => SessionEnd::BadRequest,
        };
        Ending::new(end, Some(format!("{doing}: {e}")))
    }
}

/// What a session serves: a file (by digest) and its table, to a peer, under a grant or not.
struct Serving<'a> {
    peer: PeerId,
    dataset: &'a str,
    digest: &'a str,
    table: Arc<ChunkTable>,
    grant: Option<&'a str>,
}

/// Refuses the rest of a session in place of the next chunk, naming why.
async fn refuse_rest(
    stream: &mut libp2p::Stream,
    code: RefusalCode,
    ending: Ending,
    stall: Duration,
) -> Ending {
    let why = ending.cause.as_deref().unwrap_or_default();
    let _ = frames::write_frame(stream, &[&refusal_frame(code, why)], stall).await;
    ending
}

impl Node {
    /// Accepts inbound fetch streams until the network stops (spawned at start).
    pub(crate) async fn accept_fetches(self, mut incoming: libp2p_stream::IncomingStreams) {
        use futures::StreamExt;
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SERVING));
        while let Some((peer, stream)) = incoming.next().await {
            if !self.members().contains(&peer) {
                tracing::warn!(peer = %peer, "fetch stream from a non-member dropped");
                continue;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::warn!(peer = %peer, "fetch stream dropped: {MAX_SERVING} already served");
                continue;
            };
            let node = self.clone();
            // Not `spawn_long`, whose cancellation would drop the session unrecorded: a session
            // watches the shutdown itself, and records what it sent before it ends.
            self.inner.tasks.spawn(async move {
                node.serve(peer, stream).await;
                drop(permit);
            });
        }
    }

    async fn serve(&self, peer: PeerId, mut stream: libp2p::Stream) {
        use futures::AsyncWriteExt;
        let stall = Duration::from_secs(self.config().exchange.stall_timeout_secs);
        let limit = self.config().exchange.max_transfers_per_peer;
        let admitted = self.inner.transfers.registry().admit_serving(peer, limit);
        if !admitted {
            tracing::warn!(peer = %peer, limit, "fetch refused: too many transfers from this peer");
            let reply = FetchReply::Refused {
                code: RefusalCode::Busy,
                message: format!("{limit} transfers of yours are already running here"),
            };
            let _ = frames::write_json(&mut stream, &reply, stall).await;
            let _ = stream.close().await;
            return;
        }
        let _slot = ServingSlot {
            node: self.clone(),
            peer,
        };
        let result = self.serve_session(peer, &mut stream, stall).await;
        if let Err(e) = &result {
            tracing::info!(peer = %peer, error = %e, "fetch session ended with an error");
        }
        let _ = stream.close().await;
    }

    async fn serve_session(
        &self,
        peer: PeerId,
        stream: &mut libp2p::Stream,
        stall: Duration,
    ) -> Result<(), NodeError> {
        let frame_err = |e: FrameError| NodeError::BadPeer {
            peer,
            reason: e.to_string(),
        };
        let first = self.unless_shutdown(frames::read_json::<_, FetchOpen>(
            stream,
            MAX_OPEN_FRAME,
            stall,
        ));
        let Some(first) = first.await else {
            return Ok(());
        };
        let open = match first {
            Ok(o) => o,
            Err(e) => {
                let reply = FetchReply::Refused {
                    code: RefusalCode::BadRequest,
                    message: format!("first frame must be a FetchOpen: {e}"),
                };
                let _ = frames::write_json(stream, &reply, stall).await;
                return Err(frame_err(e));
            }
        };
        let Some(prepared) = self
            .unless_shutdown(self.prepare_delivery(peer, &open))
            .await
        else {
            return Ok(());
        };
        let (manifest, table, grant) = match prepared {
            Ok(x) => x,
            Err(refused) => {
                tracing::warn!(
                    peer = %peer,
                    dataset = %open.dataset,
                    code = %refused.code,
                    reason = %refused.message,
                    "fetch refused"
                );
                self.record_refusal(
                    Some(peer),
                    Some(&open.dataset),
                    &format!("fetch refused ({}): {}", refused.code, refused.message),
                )
                .await;
                let reply = FetchReply::Refused {
                    code: refused.code,
                    message: refused.message,
                };
                frames::write_json(stream, &reply, stall)
                    .await
                    .map_err(frame_err)?;
                return Ok(());
            }
        };
        let digest = manifest.document.digest.clone();
        #[cfg(feature = "test-hooks")]
        let served_manifest = self.maybe_forge(manifest.clone());
        #[cfg(not(feature = "test-hooks"))]
        let served_manifest = manifest.clone();
        let reply = FetchReply::Ready {
            manifest: Box::new(served_manifest),
            chunk_table: (*table).clone(),
        };
        frames::write_json(stream, &reply, stall)
            .await
            .map_err(frame_err)?;
        let view = TransferView {
            peer_region: self.peer_region(&peer),
            version: Some(manifest.document.version),
            grant: grant.as_ref().map(|g| g.document.id.clone()),
            bytes_total: manifest.document.size,
            attempts: 1,
            digest: Some(digest.clone()),
            derived: manifest.document.derived_from.is_some(),
            ..TransferView::starting(
                Direction::Out,
                peer.to_string(),
                open.dataset.clone(),
                TransferStatus::Running,
            )
        };
        let id = view.id.clone();
        let progress = self.register(view);
        let started = Instant::now();
        let mut sent = Sent::new(table.chunk_count());
        let serving = Serving {
            peer,
            dataset: &open.dataset,
            digest: &digest,
            table: table.clone(),
            grant: grant.as_ref().map(|g| g.document.id.as_str()),
        };
        let ending = self
            .serve_chunks(stream, &serving, &mut sent, &progress, stall)
            .await;
        let elapsed = started.elapsed().as_millis() as u64;
        let (status, error) = match ending.end {
            SessionEnd::Closed => (TransferStatus::Done, None),
            end => (
                TransferStatus::Failed,
                Some(ending.cause.clone().unwrap_or_else(|| end.name())),
            ),
        };
        self.update_transfer(&id, |v| {
            v.status = status;
            v.error = error;
            v.finished_at = Some(now_rfc3339());
            v.transfer_ms = elapsed;
            v.total_ms = elapsed;
        });
        tracing::info!(
            peer = %peer,
            dataset = %open.dataset,
            version = manifest.document.version,
            chunks = sent.chunks,
            bytes = sent.bytes,
            ended = %ending.end.name(),
            cause = ending.cause.as_deref().unwrap_or(""),
            "fetch session served"
        );
        self.record_session(peer, &manifest, grant.as_ref(), &table, &sent, &ending)
            .await;
        Ok(())
    }

    /// Records what left in a session: a delivery record of the chunks and bytes sent and how
    /// the session ended, when it sent any chunk. One that sent none claims no delivery; if its
    /// grant ended under it, that refusal is recorded as one at the start of a session is.
    async fn record_session(
        &self,
        peer: PeerId,
        manifest: &Signed<Manifest>,
        grant: Option<&Signed<Grant>>,
        table: &ChunkTable,
        sent: &Sent,
        ending: &Ending,
    ) {
        let m = &manifest.document;
        if sent.chunks == 0 {
            if ending.end == SessionEnd::GrantInvalid {
                let why = ending.cause.as_deref().unwrap_or_default();
                let cause = format!("fetch refused ({}): {why}", RefusalCode::GrantInvalid);
                self.record_refusal(Some(peer), Some(&m.dataset), &cause)
                    .await;
            }
            return;
        }
        let mut r = self.new_record(RecordKind::DeliveryServed);
        r.dataset = Some(m.dataset.clone());
        r.version = Some(m.version);
        r.data_digest = Some(m.digest.clone());
        // The projection actually applied, from the manifest served, never the grant's word.
        r.fields = delivered_fields(m);
        if let Some(g) = grant {
            r.grant = Some(g.document.id.clone());
            r.purpose = Some(g.document.purpose.clone());
            r.legal_basis = Some(g.document.legal_basis.clone());
        }
        r.chunks_sent = Some(sent.chunks);
        r.chunk_count = Some(table.chunk_count());
        r.bytes_sent = Some(sent.bytes);
        r.ended = Some(ending.end);
        r.cause = ending.cause.clone();
        let docs = [doc(manifest), grant.and_then(doc)]
            .into_iter()
            .flatten()
            .collect();
        self.record(r, Some(peer), docs).await;
        self.witness_soon(peer);
    }

    /// `work`, or `None` once the node shuts down.
    async fn unless_shutdown<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            out = work => Some(out),
            () = self.inner.shutdown.cancelled() => None,
        }
    }

    /// A member's region: the charter's when the node runs on one (never the member's own
    /// claim), else the one in the NodeInfo we verified.
    pub(crate) fn peer_region(&self, peer: &PeerId) -> Option<Region> {
        match &self.inner.charter {
            Some(charter) => charter.region_of(peer),
            None => self.inner.peers.region(peer),
        }
    }

    /// Access checks and the manifest + chunk table of what `peer` will receive.
    async fn prepare_delivery(
        &self,
        peer: PeerId,
        open: &FetchOpen,
    ) -> Result<(Signed<Manifest>, Arc<ChunkTable>, Option<Signed<Grant>>), Refusal> {
        let internal = |e: NodeError| Refusal {
            code: RefusalCode::Internal,
            message: e.to_string(),
        };
        let offer = self.deliverable_offer(&open.dataset)?;
        let original = self
            .manifest(None, &open.dataset, open.version)
            .map_err(internal)?
            .ok_or_else(|| not_published(&open.dataset, open.version))?;
        let grant = match offer.offer.share_type {
            ShareType::Unconditional => None,
            ShareType::Conditional => {
                Some(self.check_grant(&peer, &open.dataset, open.grant.as_deref())?)
            }
            ShareType::NotShared => {
                return Err(Refusal {
                    code: RefusalCode::NotShared,
                    message: format!("{} is not shared", open.dataset),
                });
            }
        };
        // Personal fields leave masked whatever the share type; a version that cannot be
        // projected as it must be is refused here, before anything moves.
        let manifest = self.delivery_of(&offer, grant.as_ref(), &original).await?;
        let table = self.chunk_table_of(&manifest).await.map_err(internal)?;
        Ok((manifest, table, grant))
    }

    /// The chunk table of a manifest we serve (computed once per process, checked against it).
    async fn chunk_table_of(
        &self,
        manifest: &Signed<Manifest>,
    ) -> Result<Arc<ChunkTable>, NodeError> {
        let m = &manifest.document;
        if let Some(t) = self.inner.transfers.cached_table(&m.digest) {
            return Ok(t);
        }
        let blobs = self.blobs().clone();
        let (digest, size) = (m.digest.clone(), m.chunk_size);
        let table = tokio::task::spawn_blocking(move || blobs.chunk_table(&digest, size))
            .await
            .map_err(blocking_err)?
            .map_err(NodeError::Blob)?;
        let digest = table.digest().map_err(NodeError::from)?;
        if digest != m.chunk_table_digest {
            return Err(NodeError::Conflict(format!(
                "stored file of {} v{} no longer matches its manifest",
                m.dataset, m.version
            )));
        }
        let table = Arc::new(table);
        self.inner.transfers.cache_table(&m.digest, table.clone());
        Ok(table)
    }

    /// Serves chunk requests until the session ends, counting in `sent` each chunk written in
    /// full; says how it ended.
    async fn serve_chunks(
        &self,
        stream: &mut libp2p::Stream,
        s: &Serving<'_>,
        sent: &mut Sent,
        progress: &Progress,
        stall: Duration,
    ) -> Ending {
        loop {
            // A want's own limit, not the largest control frame's: a frame announced beyond it
            // is refused after its 4 length bytes (`bad-request`, recorded with what was sent).
            let read = frames::read_json::<_, ChunkWant>(stream, MAX_WANT_FRAME, stall);
            let Some(read) = self.unless_shutdown(read).await else {
                return Ending::shutdown();
            };
            let indexes = match read.map(|want| wanted_chunks(&want, &s.table)) {
                Ok(Ok(indexes)) if indexes.is_empty() => {
                    return Ending::new(SessionEnd::Closed, None);
                }
                Ok(Ok(indexes)) => indexes,
                Ok(Err(e)) => {
                    let ending = Ending::new(SessionEnd::BadRequest, Some(e.to_string()));
                    return refuse_rest(stream, RefusalCode::BadRequest, ending, stall).await;
                }
                Err(e) => {
                    let ending = Ending::by_frame(&e, "reading the chunk request");
                    if ending.end != SessionEnd::BadRequest {
                        return ending;
                    }
                    return refuse_rest(stream, RefusalCode::BadRequest, ending, stall).await;
                }
            };
            // One blocking reader per round streams verified chunks through a short queue; the
            // buffers come back once sent ([`SPARE_BUFFERS`]).
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(u32, Vec<u8>), BlobError>>(2);
            let (spare_tx, spare_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(SPARE_BUFFERS);
            let blobs = self.blobs().clone();
            let (d, t) = (s.digest.to_string(), s.table.clone());
            let reader = tokio::task::spawn_blocking(move || {
                let mut chunks = match blobs.open_chunks(&d, &t) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                for i in indexes {
                    let mut buf = spare_rx.try_recv().unwrap_or_default();
                    let r = chunks.read_chunk_into(i, &mut buf).map(|()| (i, buf));
                    let stop = r.is_err();
                    if tx.blocking_send(r).is_err() || stop {
                        return;
                    }
                }
            });
            while let Some(item) = rx.recv().await {
                #[cfg_attr(not(feature = "test-hooks"), allow(unused_mut))]
                let (index, mut bytes) = match item {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        let cause = format!("reading the stored file: {e}");
                        return Ending::new(SessionEnd::Internal, Some(cause));
                    }
                };
                // The grant is checked again before every chunk (one read of its record): a
                // revocation or expiry stops the very next chunk, not the next session.
                if let Some(grant) = s.grant {
                    if let Err(refused) = self.check_grant(&s.peer, s.dataset, Some(grant)) {
                        let end = match refused.code {
                            RefusalCode::GrantInvalid => SessionEnd::GrantInvalid,
                            _ => SessionEnd::Internal,
                        };
                        let ending = Ending::new(end, Some(refused.message));
                        return refuse_rest(stream, refused.code, ending, stall).await;
                    }
                }
                #[cfg(feature = "test-hooks")]
                self.apply_chunk_faults(index, &mut bytes).await;
                if let Some(d) = self.answer_delay() {
                    tokio::time::sleep(d).await;
                }
                let header = index.to_be_bytes();
                let parts: [&[u8]; 2] = [&header, &bytes];
                let write = frames::write_frame(stream, &parts, stall);
                match self.unless_shutdown(write).await {
                    None => return Ending::shutdown(),
                    Some(Err(e)) => return Ending::by_frame(&e, &format!("sending chunk {index}")),
                    Some(Ok(())) => {}
                }
                sent.add(index, bytes.len());
                progress
                    .bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Counters::add(
                    &self.inner.transfers.counters().bytes_sent,
                    bytes.len() as u64,
                );
                // Full (the reader has spares enough) or gone: the buffer is dropped instead.
                let _ = spare_tx.try_send(bytes);
            }
            let _ = reader.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(chunks: usize) -> ChunkTable {
        let chunk_size = crate::model::chunks::MIN_CHUNK_SIZE;
        ChunkTable {
            chunk_size,
            size: u64::from(chunk_size) * chunks as u64,
            chunks: vec!["0".repeat(64); chunks],
        }
    }

    #[test]
    fn wanted_chunks_accepts_ranges_within_the_table() -> Result<(), NodeError> {
        let t = table(10);
        let want = ChunkWant {
            ranges: vec![[0, 2], [5, 6], [8, 10]],
        };
        assert_eq!(wanted_chunks(&want, &t)?, vec![0, 1, 5, 8, 9]);
        assert!(wanted_chunks(&ChunkWant { ranges: vec![] }, &t)?.is_empty());
        Ok(())
    }

    #[test]
    fn wanted_chunks_refuses_bad_ranges() {
        let t = table(10);
        for ranges in [
            vec![[9, 11]],        // past the last chunk
            vec![[3, 3]],         // empty
            vec![[4, 2]],         // backwards
            vec![[5, 7], [1, 2]], // out of order
            vec![[0, 4], [3, 5]], // overlapping
            vec![[10, 11]],       // entirely beyond
        ] {
            let want = ChunkWant {
                ranges: ranges.clone(),
            };
            match wanted_chunks(&want, &t) {
                Err(NodeError::Invalid { reason: m, .. }) => {
                    assert!(m.starts_with("bad chunk request"), "{m}")
                }
                other => panic!("{ranges:?} gave {other:?}"),
            }
        }
        let too_many = ChunkWant {
            ranges: (0..=crate::model::transfer::MAX_WANT_RANGES as u32)
                .map(|i| [2 * i, 2 * i + 1])
                .collect(),
        };
        assert!(wanted_chunks(&too_many, &table(10_000)).is_err());
        // Any chunk of an empty file is beyond it.
        let empty = ChunkTable {
            chunk_size: crate::model::chunks::MIN_CHUNK_SIZE,
            size: 0,
            chunks: vec![],
        };
        assert!(
            wanted_chunks(
                &ChunkWant {
                    ranges: vec![[0, 1]]
                },
                &empty
            )
            .is_err()
        );
    }

    #[test]
    fn a_version_not_held_is_refused_as_not_found_naming_it() {
        assert_eq!(
            not_published("ds", Some(7)),
            Refusal {
                code: RefusalCode::NotFound,
                message: "ds has no version 7".into()
            }
        );
        assert_eq!(
            not_published("ds", None).message,
            "ds has no published version yet"
        );
    }
}
