//! The fetcher side of `/yrd/fetch/1`: starting a fetch (one per version, grant and provider at
//! a time), its attempts with backoff until `fetch_retry_secs` have passed, the checks on what
//! the provider sends (the manifest signed by the dataset's only publisher, for the dataset,
//! version and grant asked, signing the chunk table sent; every chunk verified before it is
//! written, a chunk that arrives bad [`MAX_BAD_CHUNK_RETRIES`] times ending the fetch), resuming
//! from the partial file across dropped connections and restarts, and re-validating the received
//! records against the standard before the version is kept. A completed fetch is recorded as a
//! `DatasetReceived` provenance record and acknowledged with a signed Receipt.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::registry::Progress;
use super::validating::ReceiveCheck;
use super::{
    CHUNK_QUEUE, FetchRecord, MAX_BAD_CHUNK_RETRIES, SPARE_BUFFERS, SYNC_EVERY, TransferStatus,
    TransferView,
};
use crate::clock::now_rfc3339;
use crate::model::catalogue::{SchemaRef, ShareType};
use crate::model::chunks::ChunkTable;
use crate::model::exchange::{DataFormat, Grant, Manifest};
use crate::model::masking;
use crate::model::message::{Request, Response};
use crate::model::provenance::RecordKind;
use crate::model::refusal::RefusalCode;
use crate::model::signed::Signed;
use crate::model::standard::{self, CompiledStandard};
use crate::model::transfer::{
    CHUNK_HEADER, ChunkWant, FETCH_PROTOCOL, FetchOpen, FetchReply, MAX_CONTROL_FRAME,
    MAX_WANT_RANGES, refusal_in,
};
use crate::net::frames::{self, FrameError};
use crate::node::access::{Direction, Target};
use crate::node::counters::Counters;
use crate::node::datasets::{Checked, RecordProblem};
use crate::node::provenance::doc;
use crate::node::{Node, NodeError, unexpected};
use crate::store::RecordTree;
use crate::store::blobs::{BlobError, Partial};

/// How one attempt of a fetch ended, when it did not complete.
enum AttemptError {
    /// Worth another attempt (connection lost, provider busy or restarting).
    Retry(String),
    /// Not (refused, forged, invalid data).
    Fatal(String),
}

impl From<FrameError> for AttemptError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { .. } | FrameError::Malformed(_) => {
                AttemptError::Fatal(format!("provider broke the protocol: {e}"))
            }
            _ => AttemptError::Retry(e.to_string()),
        }
    }
}

/// Milliseconds since `*since`, which is then reset: one phase of a fetch ends, the next begins.
fn lap(since: &mut Instant) -> u64 {
    let now = Instant::now();
    let ms = now.duration_since(*since).as_millis() as u64;
    *since = now;
    ms
}

fn fatal(e: impl std::fmt::Display) -> AttemptError {
    AttemptError::Fatal(e.to_string())
}

/// A provider's refusal, at the start of a session or in place of a chunk.
fn refused(code: RefusalCode, message: &str) -> AttemptError {
    let e = format!("refused by the provider ({code}): {message}");
    if code.is_retryable() {
        AttemptError::Retry(e)
    } else {
        AttemptError::Fatal(e)
    }
}

impl Node {
    /// Starts fetching `target` (`REGION_OR_PEER/DATASET`); returns at once with the transfer.
    /// A conditional offer needs a valid grant: the one named, or the latest we hold.
    pub async fn fetch(
        &self,
        target: &str,
        version: Option<u64>,
        grant: Option<String>,
    ) -> Result<TransferView, NodeError> {
        self.fetch_as(target, version, grant, None).await
    }

    /// [`Node::fetch`] asked by `client`, a scoped API client: its records name it.
    pub async fn fetch_as(
        &self,
        target: &str,
        version: Option<u64>,
        grant: Option<String>,
        client: Option<&str>,
    ) -> Result<TransferView, NodeError> {
        let t = self.resolve_target(target)?;
        self.fetch_from(&t, version, grant, client)
    }

    pub(super) fn fetch_from(
        &self,
        t: &Target,
        version: Option<u64>,
        grant: Option<String>,
        client: Option<&str>,
    ) -> Result<TransferView, NodeError> {
        let dataset = t.offer.offer.identifier.clone();
        let grant = match t.offer.offer.share_type {
            ShareType::NotShared => {
                return Err(NodeError::invalid(
                    "target",
                    format!(
                        "{dataset} is not shared (不予共享): {}",
                        t.offer
                            .offer
                            .share_conditions
                            .as_deref()
                            .unwrap_or("no reason given")
                    ),
                ));
            }
            ShareType::Unconditional => None,
            ShareType::Conditional => match grant {
                Some(g) => Some(g),
                None => Some(
                    self.usable_grant(&t.peer, &dataset)
                        .map(|g| g.id.clone())
                        .ok_or_else(|| {
                            NodeError::invalid(
                                "target",
                                format!(
                                    "{dataset} is shared on conditions (有条件共享) and we hold no \
                                 valid grant for it: `yrd request {}/{dataset} --purpose … \
                                 --basis …` first",
                                    t.peer
                                ),
                            )
                        })?,
                ),
            },
        };
        // One fetch of a version at a time: return the running one.
        let peer = t.peer.to_string();
        if let Some(running) = self.transfers().into_iter().find(|v| {
            v.direction == Direction::In
                && !v.status.finished()
                && v.peer == peer
                && v.dataset == dataset
                && v.grant == grant
                && (version.is_none() || v.version.is_none() || v.version == version)
        }) {
            return Ok(running);
        }
        let view = TransferView {
            peer_region: Some(t.region),
            version,
            grant,
            ..TransferView::starting(Direction::In, peer, dataset, TransferStatus::Connecting)
        };
        let record = FetchRecord {
            view: view.clone(),
            manifest: None,
            wanted_version: version,
            receipt: None,
            receipt_acknowledged: false,
            client: client.map(str::to_string),
        };
        self.store()
            .put_record(RecordTree::Fetches, &view.id, &record)?;
        self.spawn_fetch(record);
        Ok(view)
    }

    fn spawn_fetch(&self, record: FetchRecord) {
        let progress = self.register(record.view.clone());
        let node = self.clone();
        self.spawn_long(async move { node.run_fetch(record, progress).await });
    }

    /// Resumes fetches a previous run left unfinished and lists again the newest it finished
    /// (called at start).
    pub(crate) fn resume_fetches(&self) {
        let Ok(records) = self.store().records::<FetchRecord>(RecordTree::Fetches) else {
            return;
        };
        let mut finished = Vec::new();
        for (_, rec) in records {
            if rec.view.status.finished() {
                finished.push(rec.view);
            } else {
                tracing::info!(dataset = %rec.view.dataset, transfer = %rec.view.id, "resuming fetch");
                self.spawn_fetch(rec);
            }
        }
        self.list_finished_fetches(finished);
    }

    pub(super) fn save_fetch(&self, record: &FetchRecord) {
        if let Err(e) = self
            .store()
            .put_record(RecordTree::Fetches, &record.view.id, record)
        {
            tracing::error!(transfer = %record.view.id, error = %e, "cannot record fetch state");
        }
    }

    async fn run_fetch(&self, mut record: FetchRecord, progress: Arc<Progress>) {
        let id = record.view.id.clone();
        let Ok(peer) = record.view.peer.parse::<PeerId>() else {
            return;
        };
        let started = Instant::now();
        let retry_for = Duration::from_secs(self.config().exchange.fetch_retry_secs);
        let mut backoff = Duration::from_millis(250);
        let outcome = loop {
            record.view.attempts += 1;
            let attempts = record.view.attempts;
            self.update_transfer(&id, |v| {
                v.attempts = attempts;
                v.status = TransferStatus::Connecting;
            });
            match self.attempt(peer, &mut record, &progress).await {
                Ok(()) => break Ok(()),
                Err(AttemptError::Fatal(e)) => break Err(e),
                Err(AttemptError::Retry(e)) => {
                    if started.elapsed() >= retry_for {
                        break Err(format!(
                            "gave up after {} s of retries: {e}",
                            retry_for.as_secs()
                        ));
                    }
                    tracing::info!(peer = %peer, dataset = %record.view.dataset, error = %e, "fetch interrupted; will resume");
                    let msg = e.clone();
                    self.update_transfer(&id, |v| {
                        v.status = TransferStatus::Waiting;
                        v.error = Some(msg);
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        record.view.finished_at = Some(now_rfc3339());
        record.view.total_ms = started.elapsed().as_millis() as u64;
        record.view.bytes_done = progress.bytes.load(Ordering::Relaxed);
        record.view.refetched_chunks = progress.refetched.load(Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                record.view.status = TransferStatus::Done;
                record.view.error = None;
            }
            Err(e) => {
                tracing::warn!(peer = %peer, dataset = %record.view.dataset, error = %e, "fetch failed");
                self.record_refusal_by(
                    Some(peer),
                    Some(&record.view.dataset),
                    &format!("fetch failed: {e}"),
                    record.client.as_deref(),
                )
                .await;
                record.view.status = TransferStatus::Failed;
                record.view.error = Some(e);
                // Nothing half-fetched is kept for a fetch that will not resume.
                self.discard_partial(&id).await;
            }
        }
        // Recorded before the fetch is stored as done: a crash in between resumes the fetch and
        // records it again (a duplicate), never a dataset held as received with no record.
        let recording = Instant::now();
        if record.view.status == TransferStatus::Done {
            crate::failpoint::pause(&self.inner.data_dir, "fetch.after_commit").await;
            if let Some(m) = &record.manifest {
                let mut r = self.new_record(RecordKind::DatasetReceived);
                r.dataset = Some(m.document.dataset.clone());
                r.version = Some(m.document.version);
                r.data_digest = Some(m.document.digest.clone());
                r.grant = record.view.grant.clone();
                r.client = record.client.clone();
                r.fields = super::derivation::delivered_fields(&m.document);
                let grant = record
                    .view
                    .grant
                    .as_deref()
                    .and_then(|g| self.received_grant(&peer, g).ok());
                if let Some(g) = &grant {
                    r.purpose = Some(g.grant.document.purpose.clone());
                    r.legal_basis = Some(g.grant.document.legal_basis.clone());
                }
                let docs = [doc(m), grant.as_ref().and_then(|g| doc(&g.grant))]
                    .into_iter()
                    .flatten()
                    .collect();
                self.record(r, Some(peer), docs).await;
            }
            crate::failpoint::pause(&self.inner.data_dir, "fetch.after_record").await;
            // Flushed with the fetch's done state: a crash after it cannot leave the
            // subscription asking for the version again.
            self.note_subscription_progress(&record);
        }
        self.save_fetch(&record);
        let _ = self.store().flush().await;
        // Timed to the end of the flush (what the API's caller waits for); stored again
        // without a flush of its own, as figures that only inform.
        record.view.phases.record_ms = recording.elapsed().as_millis() as u64;
        record.view.total_ms = started.elapsed().as_millis() as u64;
        self.save_fetch(&record);
        let view = record.view.clone();
        self.update_transfer(&id, |v| *v = view);
        if record.view.status == TransferStatus::Done {
            self.send_receipt(peer, &mut record).await;
            self.witness_soon(peer);
        }
    }

    /// One connection's worth of a fetch.
    async fn attempt(
        &self,
        peer: PeerId,
        record: &mut FetchRecord,
        progress: &Arc<Progress>,
    ) -> Result<(), AttemptError> {
        use futures::AsyncWriteExt;
        let id = record.view.id.clone();
        let stall = Duration::from_secs(self.config().exchange.stall_timeout_secs);
        let mut phase = Instant::now();
        let mut stream = self
            .inner
            .net
            .open_stream(peer, FETCH_PROTOCOL, stall)
            .await
            .map_err(|e| AttemptError::Retry(e.to_string()))?;
        record.view.phases.connect_ms += lap(&mut phase);
        // Once a version is pinned, later attempts ask for exactly it.
        let version = record
            .manifest
            .as_ref()
            .map(|m| m.document.version)
            .or(record.wanted_version);
        let open = FetchOpen {
            dataset: record.view.dataset.clone(),
            version,
            grant: record.view.grant.clone(),
        };
        frames::write_json(&mut stream, &open, stall).await?;
        let reply: FetchReply = frames::read_json(&mut stream, MAX_CONTROL_FRAME, stall).await?;
        let (manifest, table) = match reply {
            FetchReply::Ready {
                manifest,
                chunk_table,
            } => (*manifest, chunk_table),
            FetchReply::Refused { code, message } => return Err(refused(code, &message)),
        };
        check_manifest(peer, record, &manifest, &table, |gid| {
            self.received_grant(&peer, gid).map(|g| g.grant.document)
        })
        .map_err(fatal)?;
        let m = manifest.document.clone();
        if record
            .manifest
            .as_ref()
            .is_some_and(|held| held.document.digest != m.digest)
        {
            // The provider re-derived the delivery (e.g. after losing it): start over.
            self.discard_partial(&id).await;
            progress.bytes.store(0, Ordering::Relaxed);
        }
        record.manifest = Some(manifest.clone());
        record.view.version = Some(m.version);
        record.view.bytes_total = m.size;
        record.view.digest = Some(m.digest.clone());
        record.view.derived = m.derived_from.is_some();
        record.view.status = TransferStatus::Running;
        record.view.phases.ready_ms += lap(&mut phase);
        self.save_fetch(record);
        let snapshot = record.view.clone();
        self.update_transfer(&id, |v| {
            *v = TransferView {
                attempts: v.attempts,
                ..snapshot
            }
        });
        let moving = Instant::now();
        if !self.blobs().contains(&m.digest) {
            // The standard first: the records are checked while the chunks arrive.
            let standard = self
                .records_standard(peer, &manifest)
                .await
                .map_err(fatal)?;
            let blobs = self.blobs().clone();
            let (pid, digest, t) = (id.clone(), m.digest.clone(), table.clone());
            let format = m.format;
            let making = tokio::task::spawn_blocking(move || {
                let partial = blobs.begin_partial(&pid, &digest, &t)?;
                let check = ReceiveCheck::new(t.chunk_count(), format, standard).map_err(|e| {
                    BlobError::Io {
                        op: "start validation threads",
                        path: std::path::PathBuf::new(),
                        source: e,
                    }
                })?;
                Ok::<_, BlobError>((partial, check))
            });
            // The fetch's state (with its manifest) is durable before the first chunk lands,
            // so a crash from here on leaves a partial that a record names, which the next
            // start resumes — not an orphan it removes. Flushed while the partial is made.
            let (flushed, made) = tokio::join!(self.store().flush(), making);
            flushed.map_err(fatal)?;
            let (partial, check) = made.map_err(fatal)?.map_err(fatal)?;
            progress
                .bytes
                .store(partial.progress().0, Ordering::Relaxed);
            record.view.phases.prepare_ms += lap(&mut phase);
            let (partial, check) = self
                .pull_chunks(&mut stream, partial, check, progress, stall)
                .await?;
            let _ = frames::write_json(&mut stream, &ChunkWant { ranges: vec![] }, stall).await;
            let _ = stream.close().await;
            record.view.transfer_ms += moving.elapsed().as_millis() as u64;
            record.view.phases.chunks_ms += lap(&mut phase);
            self.update_transfer(&id, |v| v.status = TransferStatus::Verifying);
            crate::failpoint::pause(&self.inner.data_dir, "fetch.before_commit").await;
            // The workers' last blocks, then the verdict; the file is kept only if it holds.
            let complete = check.complete() && !check.failed();
            let outcome = tokio::task::spawn_blocking(move || check.finish())
                .await
                .map_err(fatal)?;
            let assembled =
                |e: BlobError| AttemptError::Fatal(format!("assembled file refused: {e}"));
            if complete {
                partial.check_digest(&outcome.digest).map_err(assembled)?;
            }
            if let (Some(checked), Some(r)) = (outcome.records, &m.schema) {
                records_verdict(r, m.record_count, checked)
                    .map_err(|e| AttemptError::Fatal(e.to_string()))?;
            }
            if !complete {
                return Err(AttemptError::Fatal(
                    "the records were refused before the file was complete".into(),
                ));
            }
            tokio::task::spawn_blocking(move || partial.finish_hashed(&outcome.digest))
                .await
                .map_err(fatal)?
                .map_err(assembled)?;
        } else {
            let _ = frames::write_json(&mut stream, &ChunkWant { ranges: vec![] }, stall).await;
            let _ = stream.close().await;
            progress.bytes.store(m.size, Ordering::Relaxed);
            self.update_transfer(&id, |v| v.status = TransferStatus::Verifying);
            if let Err(e) = self.revalidate(peer, &manifest).await {
                if !self.store().manifest_names_blob(&m.digest).unwrap_or(true) {
                    self.discard_blob(&m.digest).await;
                }
                return Err(AttemptError::Fatal(e.to_string()));
            }
        }
        self.store()
            .put_manifest(
                &m.publisher,
                &m.dataset,
                m.version,
                &crate::node::schemas::to_json(&manifest).map_err(fatal)?,
            )
            .map_err(fatal)?;
        record.view.phases.verify_ms += lap(&mut phase);
        tracing::info!(
            peer = %peer,
            dataset = %m.dataset,
            version = m.version,
            bytes = m.size,
            records = m.record_count,
            derived = m.derived_from.is_some(),
            "dataset received and verified"
        );
        Ok(())
    }

    /// Pulls every missing chunk, verifying each before it is written; a bad chunk is asked
    /// again (up to [`MAX_BAD_CHUNK_RETRIES`] times) and never stored. Each written chunk goes
    /// to `check` in file order; once `check` has refused the records, no more are asked.
    async fn pull_chunks(
        &self,
        stream: &mut libp2p::Stream,
        partial: Partial,
        check: ReceiveCheck,
        progress: &Arc<Progress>,
        stall: Duration,
    ) -> Result<(Partial, ReceiveCheck), AttemptError> {
        let (mut partial, mut check) = (partial, check);
        let mut bad_counts: HashMap<u32, u32> = HashMap::new();
        let limit = CHUNK_HEADER + partial.table().chunk_size as usize;
        let mut missing = partial.missing();
        loop {
            let round = next_round(&missing);
            if !round.is_empty() {
                let want = ChunkWant::from_indexes(&round);
                frames::write_json(stream, &want, stall).await?;
            }
            let (tx, mut rx) = tokio::sync::mpsc::channel::<(u32, Vec<u8>)>(CHUNK_QUEUE);
            // Stored chunks' buffers come back to be read into again (SPARE_BUFFERS).
            let (spare_tx, spare_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(SPARE_BUFFERS);
            let p = progress.clone();
            let totals = self.inner.transfers.counters().clone();
            let data_dir = self.inner.data_dir.clone();
            let writer = tokio::task::spawn_blocking(move || {
                let mut bad = Vec::new();
                let mut unsynced = 0u64;
                // What a resumed partial already holds is checked first, from its file.
                check.catch_up(&partial)?;
                while let Some((index, bytes)) = rx.blocking_recv() {
                    let len = (bytes.len() - CHUNK_HEADER) as u64;
                    let chunk = &bytes[CHUNK_HEADER..];
                    match partial.write_chunk_deferred(index, chunk) {
                        Ok(()) => {
                            unsynced += len;
                            p.bytes.fetch_add(len, Ordering::Relaxed);
                            Counters::add(&totals.bytes_received, len);
                            check.arrived(&partial, index, chunk)?;
                            let (done, total) = partial.progress();
                            if done < total {
                                crate::failpoint::pause_blocking(&data_dir, "fetch.mid_transfer");
                            }
                        }
                        Err(BlobError::BadChunk { .. }) => bad.push(index),
                        Err(e) => return Err(e),
                    }
                    // Full (the reader has spares enough) or gone: the buffer is dropped.
                    let _ = spare_tx.try_send(bytes);
                    // One data sync and one journal sync per SYNC_EVERY bytes, not per chunk.
                    if unsynced >= SYNC_EVERY {
                        partial.commit()?;
                        unsynced = 0;
                    }
                }
                // A complete file is finished right after the verdict, so its chunks need no
                // journal; its data is synced here, while the validation threads finish.
                if partial.is_complete() {
                    partial.sync_data()?;
                } else {
                    partial.commit()?;
                }
                Ok((partial, check, bad))
            });
            let mut read_error = None;
            for &expected in &round {
                let mut frame = spare_rx.try_recv().unwrap_or_default();
                if let Err(e) = frames::read_frame_into(stream, &mut frame, limit, stall).await {
                    read_error = Some(AttemptError::from(e));
                    break;
                }
                if let Some(refusal) = refusal_in(&frame) {
                    read_error = Some(match refusal {
                        Ok((code, message)) => refused(code, &message),
                        Err(e) => AttemptError::Fatal(format!("provider broke the protocol: {e}")),
                    });
                    break;
                }
                if let Err(e) = check_chunk_index(&frame, expected) {
                    read_error = Some(AttemptError::Fatal(e));
                    break;
                }
                if tx.send((expected, frame)).await.is_err() {
                    break;
                }
            }
            drop(tx);
            let (back, back_check, bad) = match writer.await.map_err(fatal)? {
                Ok(x) => x,
                Err(e) => {
                    return Err(AttemptError::Fatal(format!("cannot store a chunk: {e}")));
                }
            };
            (partial, check) = (back, back_check);
            // Refused records end the fetch whatever else happened: the verdict says why.
            if check.failed() {
                return Ok((partial, check));
            }
            if let Some(e) = read_error {
                return Err(e);
            }
            for index in &bad {
                let n = bad_counts.entry(*index).or_insert(0);
                *n += 1;
                progress.refetched.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    chunk = index,
                    times = *n,
                    "chunk failed verification; asking again"
                );
                if *n > MAX_BAD_CHUNK_RETRIES {
                    return Err(AttemptError::Fatal(format!(
                        "the provider sent chunk {index} corrupted {} times",
                        *n
                    )));
                }
            }
            missing = partial.missing();
            if missing.is_empty() {
                return Ok((partial, check));
            }
        }
    }

    /// The standard the received records must meet (for a masked delivery: restricted to the
    /// granted fields, masked fields as strings), asked of `peer` if we do not hold it; none for
    /// an opaque file or a dataset without one.
    async fn records_standard(
        &self,
        peer: PeerId,
        manifest: &Signed<Manifest>,
    ) -> Result<Option<CompiledStandard>, NodeError> {
        let m = &manifest.document;
        let Some(r) = &m.schema else {
            return Ok(None);
        };
        if m.format == DataFormat::File {
            return Ok(None);
        }
        if self.schema_doc(&r.id, Some(&r.version)).is_err() {
            let request = Request::GetSchema {
                id: r.id.clone(),
                version: r.version.clone(),
            };
            match self.inner.net.request(peer, request).await? {
                Response::Schema { schema } => {
                    self.accept_schema(peer, *schema).await?;
                }
                other => return Err(unexpected(peer, &other)),
            }
        }
        let Some(d) = &m.derived_from else {
            return self.compiled_standard(r).map(Some);
        };
        let doc = self.schema_doc(&r.id, Some(&r.version))?;
        let masked: Vec<String> = d.masks.iter().map(|x| x.field.clone()).collect();
        // The projection is part of the key: the same fields masked otherwise compile apart.
        let key = format!(
            "{}@{} fields={:?} masked={:?}",
            r.id, r.version, d.fields, masked
        );
        self.inner
            .standards
            .compiled(&key, || {
                let schema = standard::project_schema(&doc.document.schema, &d.fields, &masked);
                standard::compile(&schema)
                    .map_err(|e| NodeError::invalid("standard", e.to_string()))
            })
            .map(|c| Some(CompiledStandard::clone(&c)))
    }

    /// Re-validates the records of a file we already held against the standard.
    async fn revalidate(&self, peer: PeerId, manifest: &Signed<Manifest>) -> Result<(), NodeError> {
        let m = &manifest.document;
        let (Some(compiled), Some(r)) = (self.records_standard(peer, manifest).await?, &m.schema)
        else {
            return Ok(());
        };
        let checked = self
            .check_stored_records(&m.digest, m.format, compiled)
            .await?;
        records_verdict(r, m.record_count, checked)
    }
}

/// The received records' verdict: as many as the manifest says, each conforming to `r`.
fn records_verdict(
    r: &SchemaRef,
    expected: u64,
    checked: Result<Checked, Vec<RecordProblem>>,
) -> Result<(), NodeError> {
    match checked {
        Ok(c) if c.records == expected => Ok(()),
        Ok(c) => Err(NodeError::invalid(
            "records",
            format!(
                "received {} records, the manifest says {expected}",
                c.records
            ),
        )),
        Err(problems) => Err(NodeError::invalid(
            "records",
            format!(
                "received records do not conform to {}@{}: {}",
                r.id,
                r.version,
                problems
                    .iter()
                    .map(|p| format!("line {} {}: {}", p.line, p.path, p.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )),
    }
}

/// The manifest must be signed by the provider (the only publisher), name the dataset and
/// version asked for, sign this chunk table, and for a masked delivery name our grant with
/// exactly its fields and masks (`grant_of` finds the grant we hold, only for a masked
/// delivery).
fn check_manifest(
    peer: PeerId,
    record: &FetchRecord,
    manifest: &Signed<Manifest>,
    table: &ChunkTable,
    grant_of: impl FnOnce(&str) -> Result<Grant, NodeError>,
) -> Result<(), NodeError> {
    manifest
        .verify()
        .map_err(|e| NodeError::invalid("manifest", format!("manifest refused: {e}")))?;
    let m = &manifest.document;
    let signer = crate::identity::peer_id_of(&manifest.signer_key()?).ok_or_else(|| {
        NodeError::invalid("manifest", "manifest signer is not a valid key".into())
    })?;
    if signer != peer || m.publisher != peer.to_string() {
        return Err(NodeError::invalid(
            "manifest",
            format!(
                "forged manifest refused: signed by {signer} for publisher {}, but the \
             dataset's only publisher is {peer}",
                m.publisher
            ),
        ));
    }
    if m.dataset != record.view.dataset {
        return Err(NodeError::invalid(
            "manifest",
            format!("manifest is for {}, not {}", m.dataset, record.view.dataset),
        ));
    }
    if let Some(v) = record.wanted_version {
        if m.version != v {
            return Err(NodeError::invalid(
                "manifest",
                format!("manifest is for version {}, not {v}", m.version),
            ));
        }
    }
    table
        .validate()
        .map_err(|e| NodeError::invalid("chunk_table", format!("chunk table refused: {e}")))?;
    let td = table
        .digest()
        .map_err(|e| NodeError::invalid("chunk_table", format!("chunk table refused: {e}")))?;
    if td != m.chunk_table_digest || table.size != m.size || table.chunk_size != m.chunk_size {
        return Err(NodeError::invalid(
            "chunk_table",
            "the chunk table sent is not the one the manifest signs".into(),
        ));
    }
    match (&record.view.grant, &m.derived_from) {
        (Some(gid), Some(d)) => {
            let g = grant_of(gid)?;
            // More masking than granted (a standard's default on a field the grant left
            // unmasked) is accepted; less, never.
            if d.grant_id.as_deref() != Some(gid.as_str())
                || d.fields != g.fields
                || !masking::honours(&g.masks, &d.masks)
            {
                return Err(NodeError::invalid(
                    "grant",
                    format!("the delivery does not match grant {gid}'s fields and masking"),
                ));
            }
        }
        (None, Some(d)) if d.grant_id.is_some() => {
            return Err(NodeError::invalid(
                "manifest",
                "a masked delivery arrived without a grant".into(),
            ));
        }
        // An unconditional offer's copy: its standard's personal fields masked by default.
        (None, Some(_)) => {}
        (Some(_), None) if m.format != DataFormat::File => {
            return Err(NodeError::invalid(
                "manifest",
                "a delivery under a grant must be a masked derivation".into(),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The chunks to ask for next among `missing` (ascending): from the first, as many as fit in
/// [`MAX_WANT_RANGES`] ranges, so a want frame stays small however fragmented the gaps are.
fn next_round(missing: &[u32]) -> Vec<u32> {
    let mut round: Vec<u32> = Vec::new();
    let mut ranges = 0usize;
    for &i in missing {
        if round.last().is_none_or(|&last| last + 1 != i) {
            if ranges == MAX_WANT_RANGES {
                break;
            }
            ranges += 1;
        }
        round.push(i);
    }
    round
}

/// Checks that a chunk frame carries chunk `expected` (chunks come back in the order asked).
fn check_chunk_index(frame: &[u8], expected: u32) -> Result<(), String> {
    let index = frame
        .get(..CHUNK_HEADER)
        .and_then(|h| h.try_into().ok())
        .map(u32::from_be_bytes);
    if index == Some(expected) {
        Ok(())
    } else {
        Err(format!(
            "provider sent chunk {index:?} where {expected} was asked"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeKey;
    use crate::model::catalogue::SchemaRef;
    use crate::model::chunks::MIN_CHUNK_SIZE;
    use crate::model::exchange::Derivation;
    use crate::model::masking::{FieldMask, MaskRule};
    use crate::model::region::Region;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Two chunks: one full, one of 10 bytes.
    fn table() -> ChunkTable {
        ChunkTable {
            chunk_size: MIN_CHUNK_SIZE,
            size: u64::from(MIN_CHUNK_SIZE) + 10,
            chunks: vec![
                blake3::hash(b"one").to_hex().to_string(),
                blake3::hash(b"two").to_hex().to_string(),
            ],
        }
    }

    /// A provider serving version 3 of `licences` (JSON Lines) with [`table`]'s chunks.
    struct Provider {
        key: NodeKey,
        peer: PeerId,
    }

    impl Provider {
        fn new() -> Provider {
            let key = NodeKey::generate();
            let peer = key.peer_id();
            Provider { key, peer }
        }

        fn manifest(&self) -> Result<Manifest, Box<dyn std::error::Error>> {
            let t = table();
            Ok(Manifest {
                dataset: "licences".into(),
                publisher: self.peer.to_string(),
                region: Region::from_code(320500)?,
                version: 3,
                previous: None,
                schema: Some(SchemaRef {
                    id: "licence".into(),
                    version: "1.0.0".into(),
                    digest: "0".repeat(64),
                }),
                format: DataFormat::Jsonl,
                digest: blake3::hash(b"file").to_hex().to_string(),
                size: t.size,
                record_count: 2,
                chunk_size: t.chunk_size,
                chunk_table_digest: t.digest()?,
                published_at: "2025-01-01T00:00:00Z".into(),
                derived_from: None,
            })
        }

        /// Its manifest made under `derivation`.
        fn derived(&self, d: Derivation) -> Result<Manifest, Box<dyn std::error::Error>> {
            let mut m = self.manifest()?;
            m.derived_from = Some(d);
            Ok(m)
        }

        /// Our fetch from it, of `version` (None: the latest) under `grant`.
        fn fetch(&self, version: Option<u64>, grant: Option<&str>) -> FetchRecord {
            FetchRecord {
                view: TransferView {
                    version,
                    grant: grant.map(str::to_string),
                    ..TransferView::starting(
                        Direction::In,
                        self.peer.to_string(),
                        "licences".into(),
                        TransferStatus::Connecting,
                    )
                },
                manifest: None,
                wanted_version: version,
                receipt: None,
                receipt_acknowledged: false,
                client: None,
            }
        }

        /// The check of `m` signed by `signer` and sent with `t` for `fetch`: its error
        /// message, or "ok".
        fn check(
            &self,
            fetch: &FetchRecord,
            signer: &NodeKey,
            m: Manifest,
            t: &ChunkTable,
        ) -> Result<String, Box<dyn std::error::Error>> {
            let signed = Signed::sign(m, signer.signing_key())?;
            Ok(match check_manifest(self.peer, fetch, &signed, t, held) {
                Ok(()) => "ok".into(),
                Err(e) => e.to_string(),
            })
        }

        /// [`check`](Self::check) of `m` signed by the provider with the signed table.
        fn check_own(
            &self,
            fetch: &FetchRecord,
            m: Manifest,
        ) -> Result<String, Box<dyn std::error::Error>> {
            self.check(fetch, &self.key, m, &table())
        }
    }

    fn masks() -> Vec<FieldMask> {
        vec![FieldMask {
            field: "phone".into(),
            rule: MaskRule::Hash,
        }]
    }

    fn derivation(grant_id: &str) -> Derivation {
        Derivation {
            original_digest: "0".repeat(64),
            grant_id: Some(grant_id.into()),
            fields: vec!["name".into(), "phone".into()],
            masks: masks(),
        }
    }

    /// The grant store of a fetcher holding grant `g1` (of the fields and masks of
    /// [`derivation`]).
    fn held(id: &str) -> Result<Grant, NodeError> {
        if id != "g1" {
            return Err(NodeError::NotFound(format!("no grant {id}")));
        }
        Ok(Grant {
            id: id.into(),
            request_id: "r".into(),
            request_digest: "0".repeat(64),
            provider: "p".into(),
            grantee: "g".into(),
            dataset: "licences".into(),
            purpose: "audit".into(),
            legal_basis: "law".into(),
            fields: vec!["name".into(), "phone".into()],
            masks: masks(),
            not_before: "2025-01-01T00:00:00Z".into(),
            expires_at: "2099-01-01T00:00:00Z".into(),
            issued_at: "2025-01-01T00:00:00Z".into(),
            decided_by: "operator".into(),
            modes: Vec::new(),
            query_limits: None,
        })
    }

    fn no_grant_lookup(id: &str) -> Result<Grant, NodeError> {
        panic!("grant {id} looked up for a delivery that needs none")
    }

    #[test]
    fn a_manifest_from_the_publisher_for_what_was_asked_passes() -> TestResult {
        let p = Provider::new();
        assert_eq!(p.check_own(&p.fetch(Some(3), None), p.manifest()?)?, "ok");
        // Without a version asked, any version is the latest.
        let signed = Signed::sign(p.manifest()?, p.key.signing_key())?;
        check_manifest(
            p.peer,
            &p.fetch(None, None),
            &signed,
            &table(),
            no_grant_lookup,
        )?;
        Ok(())
    }

    #[test]
    fn a_manifest_signed_or_published_by_another_node_is_forged() -> TestResult {
        let (p, other) = (Provider::new(), Provider::new());
        let fetch = p.fetch(Some(3), None);
        let forged = |s: String| s.starts_with("forged manifest refused");
        // Signed by another node, naming itself or the provider as publisher.
        assert!(forged(p.check(
            &fetch,
            &other.key,
            other.manifest()?,
            &table()
        )?));
        assert!(forged(p.check(
            &fetch,
            &other.key,
            p.manifest()?,
            &table()
        )?));
        // Signed by the provider, naming another publisher.
        let mut relayed = p.manifest()?;
        relayed.publisher = other.peer.to_string();
        assert!(forged(p.check_own(&fetch, relayed)?));
        // A signature that does not cover the document.
        let mut tampered = Signed::sign(p.manifest()?, p.key.signing_key())?;
        tampered.document.record_count += 1;
        let e = check_manifest(p.peer, &fetch, &tampered, &table(), no_grant_lookup);
        assert!(
            matches!(&e, Err(NodeError::Invalid { reason: m, .. }) if m.starts_with("manifest refused")),
            "{e:?}"
        );
        Ok(())
    }

    #[test]
    fn a_manifest_for_another_dataset_or_version_is_refused() -> TestResult {
        let p = Provider::new();
        let mut other_dataset = p.manifest()?;
        other_dataset.dataset = "permits".into();
        assert_eq!(
            p.check_own(&p.fetch(Some(3), None), other_dataset)?,
            "manifest is for permits, not licences"
        );
        assert_eq!(
            p.check_own(&p.fetch(Some(2), None), p.manifest()?)?,
            "manifest is for version 3, not 2"
        );
        Ok(())
    }

    #[test]
    fn the_chunk_table_must_be_valid_and_the_one_signed() -> TestResult {
        let p = Provider::new();
        let fetch = p.fetch(Some(3), None);
        let not_signed = "the chunk table sent is not the one the manifest signs";
        let mut swapped = table();
        swapped.chunks[1] = blake3::hash(b"three").to_hex().to_string();
        assert_eq!(
            p.check(&fetch, &p.key, p.manifest()?, &swapped)?,
            not_signed
        );
        let mut short = table();
        short.chunks.pop();
        let refused = p.check(&fetch, &p.key, p.manifest()?, &short)?;
        assert!(refused.starts_with("chunk table refused"), "{refused}");
        // The signed table, but a manifest of another size.
        let mut resized = p.manifest()?;
        resized.size += 1;
        assert_eq!(p.check_own(&fetch, resized)?, not_signed);
        Ok(())
    }

    #[test]
    fn a_masked_delivery_must_match_our_grant() -> TestResult {
        let p = Provider::new();
        let under_g1 = p.fetch(Some(3), Some("g1"));
        assert_eq!(p.check_own(&under_g1, p.derived(derivation("g1"))?)?, "ok");
        // Made under another grant, with other fields or other masks.
        let mismatch = "the delivery does not match grant g1's fields and masking";
        assert_eq!(
            p.check_own(&under_g1, p.derived(derivation("g9"))?)?,
            mismatch
        );
        let mut more_fields = derivation("g1");
        more_fields.fields.push("id_number".into());
        assert_eq!(p.check_own(&under_g1, p.derived(more_fields)?)?, mismatch);
        let mut unmasked = derivation("g1");
        unmasked.masks.clear();
        assert_eq!(p.check_own(&under_g1, p.derived(unmasked)?)?, mismatch);
        // A grant we do not hold.
        let under_g2 = p.fetch(Some(3), Some("g2"));
        assert_eq!(
            p.check_own(&under_g2, p.derived(derivation("g2"))?)?,
            "no grant g2"
        );
        // Masked without a grant asked; unmasked records under a grant.
        assert_eq!(
            p.check_own(&p.fetch(Some(3), None), p.derived(derivation("g1"))?)?,
            "a masked delivery arrived without a grant"
        );
        assert_eq!(
            p.check_own(&under_g1, p.manifest()?)?,
            "a delivery under a grant must be a masked derivation"
        );
        // An opaque file under a grant is delivered whole.
        let mut file = p.manifest()?;
        file.format = DataFormat::File;
        file.schema = None;
        let signed = Signed::sign(file, p.key.signing_key())?;
        check_manifest(p.peer, &under_g1, &signed, &table(), no_grant_lookup)?;
        Ok(())
    }

    #[test]
    fn rounds_take_the_missing_chunks_in_order_within_the_range_limit() {
        assert_eq!(next_round(&[]), Vec::<u32>::new());
        let contiguous: Vec<u32> = (5..20_000).collect();
        assert_eq!(next_round(&contiguous), contiguous);
        // Every other chunk missing: one range each, so a round stops at the limit.
        let gaps: Vec<u32> = (0..(MAX_WANT_RANGES as u32 + 10)).map(|i| 2 * i).collect();
        let round = next_round(&gaps);
        assert_eq!(round, gaps[..MAX_WANT_RANGES]);
        let want = ChunkWant::from_indexes(&round);
        assert_eq!(want.ranges.len(), MAX_WANT_RANGES);
        assert_eq!(want.indexes(u32::MAX).ok(), Some(round));
        // Runs count as one range each.
        let runs: Vec<u32> = (0..MAX_WANT_RANGES as u32 + 1)
            .flat_map(|i| [10 * i, 10 * i + 1, 10 * i + 2])
            .collect();
        assert_eq!(next_round(&runs).len(), 3 * MAX_WANT_RANGES);
    }

    #[test]
    fn a_chunk_frame_must_carry_the_chunk_asked() {
        let frame = |i: u32| [&i.to_be_bytes()[..], b"data"].concat();
        assert_eq!(check_chunk_index(&frame(7), 7), Ok(()));
        assert_eq!(
            check_chunk_index(&frame(8), 7),
            Err("provider sent chunk Some(8) where 7 was asked".into())
        );
        assert_eq!(
            check_chunk_index(&[0, 0], 0),
            Err("provider sent chunk None where 0 was asked".into())
        );
        assert_eq!(check_chunk_index(&0u32.to_be_bytes(), 0), Ok(()));
    }
}
