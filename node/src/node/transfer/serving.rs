//! The provider side of `/yrd/fetch/1`: accepting fetch streams from members (at most
//! [`MAX_SERVING`] at once, and `max_transfers_per_peer` per peer), the access checks that decide
//! what a peer receives (the original version, or its masked derivation under the peer's grant),
//! the chunk tables of what we serve, and chunks read and verified from the blob store, sent in
//! the order asked. A successful session is recorded as a `DeliveryServed` provenance record.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::derivation::delivered_fields;
use super::registry::Progress;
use super::{MAX_OPEN_FRAME, MAX_SERVING, TransferStatus, TransferView, blocking_err};
use crate::clock::now_rfc3339;
use crate::model::catalogue::ShareType;
use crate::model::chunks::ChunkTable;
use crate::model::exchange::{Grant, Manifest};
use crate::model::provenance::RecordKind;
use crate::model::refusal::RefusalCode;
use crate::model::region::Region;
use crate::model::signed::Signed;
use crate::model::transfer::{ChunkWant, FetchOpen, FetchReply, MAX_CONTROL_FRAME};
use crate::net::frames::{self, FrameError};
use crate::node::access::{Direction, Refusal};
use crate::node::counters::Counters;
use crate::node::provenance::doc;
use crate::node::{Node, NodeError};
use crate::store::blobs::BlobError;

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
fn choose_version(
    versions: Vec<Signed<Manifest>>,
    dataset: &str,
    wanted: Option<u64>,
) -> Result<Signed<Manifest>, Refusal> {
    match wanted {
        Some(v) => versions.into_iter().find(|m| m.document.version == v),
        None => versions.into_iter().last(),
    }
    .ok_or_else(|| Refusal {
        code: RefusalCode::NotFound,
        message: match wanted {
            Some(v) => format!("{dataset} has no version {v}"),
            None => format!("{dataset} has no published version yet"),
        },
    })
}

/// The chunks a [`ChunkWant`] asks for, checked against the table we serve (ranges non-empty, in
/// bounds, ascending, disjoint, not too many). Empty: the fetcher ends the session.
fn wanted_chunks(want: &ChunkWant, table: &ChunkTable) -> Result<Vec<u32>, NodeError> {
    want.indexes(table.chunk_count())
        .map_err(|e| NodeError::invalid("want", format!("bad chunk request: {e}")))
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
            self.spawn_long(async move {
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
        let open: FetchOpen = match frames::read_json(stream, MAX_OPEN_FRAME, stall).await {
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
        let (manifest, table, grant) = match self.prepare_delivery(peer, &open).await {
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
        let outcome = self
            .serve_chunks(stream, &digest, table, &progress, stall)
            .await;
        let elapsed = started.elapsed().as_millis() as u64;
        let (status, error) = match &outcome {
            Ok(()) => (TransferStatus::Done, None),
            Err(e) => (TransferStatus::Failed, Some(e.to_string())),
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
            bytes = progress.bytes.load(Ordering::Relaxed),
            ok = outcome.is_ok(),
            "fetch session served"
        );
        if outcome.is_ok() {
            let m = &manifest.document;
            let mut r = self.new_record(RecordKind::DeliveryServed);
            r.dataset = Some(m.dataset.clone());
            r.version = Some(m.version);
            r.data_digest = Some(m.digest.clone());
            // The projection actually applied, from the manifest served, never the grant's word.
            r.fields = delivered_fields(m);
            if let Some(g) = &grant {
                r.grant = Some(g.document.id.clone());
                r.purpose = Some(g.document.purpose.clone());
                r.legal_basis = Some(g.document.legal_basis.clone());
            }
            let docs = [doc(&manifest), grant.as_ref().and_then(doc)]
                .into_iter()
                .flatten()
                .collect();
            self.record(r, Some(peer), docs).await;
            self.witness_soon(peer);
        }
        outcome
    }

    /// The region of a member whose NodeInfo we verified.
    pub(crate) fn peer_region(&self, peer: &PeerId) -> Option<Region> {
        self.inner.peers.region(peer)
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
        let versions = self.manifests(None, &open.dataset).map_err(internal)?;
        let original = choose_version(versions, &open.dataset, open.version)?;
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

    async fn serve_chunks(
        &self,
        stream: &mut libp2p::Stream,
        digest: &str,
        table: Arc<ChunkTable>,
        progress: &Progress,
        stall: Duration,
    ) -> Result<(), NodeError> {
        let bad = |reason: String| NodeError::invalid("want", reason);
        loop {
            let want: ChunkWant = match frames::read_json(stream, MAX_CONTROL_FRAME, stall).await {
                Ok(w) => w,
                Err(FrameError::Closed) => return Ok(()),
                Err(e) => return Err(bad(format!("reading the chunk request: {e}"))),
            };
            let indexes = wanted_chunks(&want, &table)?;
            if indexes.is_empty() {
                return Ok(());
            }
            // One blocking reader per round streams verified chunks through a short queue.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(u32, Vec<u8>), BlobError>>(2);
            let blobs = self.blobs().clone();
            let (d, t) = (digest.to_string(), table.clone());
            let reader = tokio::task::spawn_blocking(move || {
                let mut chunks = match blobs.open_chunks(&d, &t) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                for i in indexes {
                    let mut buf = Vec::new();
                    let r = chunks.read_chunk_into(i, &mut buf).map(|()| (i, buf));
                    let stop = r.is_err();
                    if tx.blocking_send(r).is_err() || stop {
                        return;
                    }
                }
            });
            while let Some(item) = rx.recv().await {
                #[cfg_attr(not(feature = "test-hooks"), allow(unused_mut))]
                let (index, mut bytes) = item.map_err(NodeError::Blob)?;
                #[cfg(feature = "test-hooks")]
                self.apply_chunk_faults(index, &mut bytes).await;
                if let Some(d) = self.answer_delay() {
                    tokio::time::sleep(d).await;
                }
                frames::write_frame(stream, &[&index.to_be_bytes(), &bytes], stall)
                    .await
                    .map_err(|e| bad(format!("sending chunk {index}: {e}")))?;
                progress
                    .bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Counters::add(
                    &self.inner.transfers.counters().bytes_sent,
                    bytes.len() as u64,
                );
            }
            let _ = reader.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeKey;
    use crate::model::exchange::DataFormat;
    use crate::model::region::Region;

    fn table(chunks: usize) -> ChunkTable {
        let chunk_size = crate::model::chunks::MIN_CHUNK_SIZE;
        ChunkTable {
            chunk_size,
            size: u64::from(chunk_size) * chunks as u64,
            chunks: vec!["0".repeat(64); chunks],
        }
    }

    fn versions(numbers: &[u64]) -> Result<Vec<Signed<Manifest>>, Box<dyn std::error::Error>> {
        let key = NodeKey::generate();
        numbers
            .iter()
            .map(|&version| {
                let m = Manifest {
                    dataset: "ds".into(),
                    publisher: key.peer_id().to_string(),
                    region: Region::from_code(310000)?,
                    version,
                    previous: None,
                    schema: None,
                    format: DataFormat::File,
                    digest: "0".repeat(64),
                    size: 0,
                    record_count: 0,
                    chunk_size: crate::model::chunks::MIN_CHUNK_SIZE,
                    chunk_table_digest: "0".repeat(64),
                    published_at: "2025-01-01T00:00:00Z".into(),
                    derived_from: None,
                };
                Ok(Signed::sign(m, key.signing_key())?)
            })
            .collect()
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
    fn chooses_the_version_asked_or_the_latest() -> Result<(), Box<dyn std::error::Error>> {
        let pick = |wanted| -> Result<u64, Box<dyn std::error::Error>> {
            Ok(choose_version(versions(&[1, 2, 3])?, "ds", wanted)
                .map_err(|r| r.message)?
                .document
                .version)
        };
        assert_eq!(pick(None)?, 3);
        assert_eq!(pick(Some(2))?, 2);
        let missing = choose_version(versions(&[1, 2])?, "ds", Some(7));
        assert_eq!(
            missing.map(|_| ()),
            Err(Refusal {
                code: RefusalCode::NotFound,
                message: "ds has no version 7".into()
            })
        );
        let none = choose_version(vec![], "ds", None);
        assert_eq!(
            none.map(|_| ()),
            Err(Refusal {
                code: RefusalCode::NotFound,
                message: "ds has no published version yet".into()
            })
        );
        Ok(())
    }
}
