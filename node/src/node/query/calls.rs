//! The caller side of query services in batches: a call's query goes to its provider with the
//! others asked meanwhile, and the answers of one batch are checked and their `query-sent`
//! records appended together, in one group commit.
//!
//! Per provider, at most [`MAX_BATCHES_IN_FLIGHT`] batches are in flight. A call made while
//! fewer are leaves at once, alone (a batch of one: no wait is added to a lone call); calls made
//! while that many are in flight wait, and the batch that ends first takes up to
//! [`MAX_QUERY_BATCH`] of them with it on its next trip, the way records share a group commit.
//! At most [`MAX_WAITING_PER_PROVIDER`] calls wait for one provider and [`MAX_WAITING_CALLS`]
//! in all (so a provider that stops answering cannot take every place); beyond that a call
//! fails at once, `busy`. A call whose caller went away before it left is dropped (nothing was
//! sent, nothing is recorded); one that waited longer than a request may take fails `busy`. A
//! provider that does not take batches (`/yrd/query/1` only) gets the batch's queries one by
//! one, concurrently.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use serde_json::Value;
use tokio::sync::oneshot;

use super::{Expected, QueryOutcome, check_answer, query_fields};
use crate::model::catalogue::CatalogueEntry;
use crate::model::provenance::ProvenanceRecord;
use crate::model::query::{
    MAX_QUERY_ANSWER_BYTES, MAX_QUERY_BATCH, Query, QueryBatchResponse, QueryResponse,
    compact_json_len,
};
use crate::net::NetError;
use crate::node::access::GrantRecord;
use crate::node::provenance::{MAX_PEER_TEXT_CHARS, PendingRecord, capped, doc};
use crate::node::{Node, NodeError};

/// Batches in flight to one provider. At most this many times [`MAX_QUERY_BATCH`] answers
/// (each ≤ 2 MiB) are in flight from one provider.
pub const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// Calls waiting for a batch, over all providers.
pub const MAX_WAITING_CALLS: usize = 1024;
/// Calls waiting for a batch to one provider.
pub const MAX_WAITING_PER_PROVIDER: usize = 128;

/// One call on its way: the query (and as sent), what its answer is checked against, and its
/// `query-sent` record (filled in with the outcome).
pub(crate) struct Call {
    pub query: Query,
    pub raw: Value,
    pub digest: String,
    pub offer: Arc<CatalogueEntry>,
    pub grant: Option<Arc<GrantRecord>>,
    pub record: ProvenanceRecord,
}

/// A call and who waits for its outcome.
pub(crate) type Waiting = (Call, oneshot::Sender<Result<QueryOutcome, NodeError>>);

/// The calls of this node waiting for, and in batches to, each provider.
pub(crate) type Calls = Dispatch<Waiting>;

/// What may wait in a [`Dispatch`].
pub(crate) trait Pending {
    /// Nobody waits for it any more: drop it rather than send it.
    fn abandoned(&self) -> bool;
}

impl Pending for Waiting {
    fn abandoned(&self) -> bool {
        self.1.is_closed()
    }
}

/// Why a call could not wait.
#[derive(Debug, PartialEq, Eq)]
enum Full {
    Provider,
    All,
}

/// The next batch to send, and the calls that waited too long (to fail).
struct Next<T> {
    batch: Option<Vec<T>>,
    expired: Vec<T>,
}

struct ProviderCalls<T> {
    waiting: VecDeque<(T, Instant)>,
    in_flight: usize,
}

impl<T> Default for ProviderCalls<T> {
    fn default() -> Self {
        ProviderCalls {
            waiting: VecDeque::new(),
            in_flight: 0,
        }
    }
}

/// Items (calls) waiting for, and the batches in flight to, each provider; how many wait in
/// all.
pub(crate) struct Dispatch<T> {
    providers: parking_lot::Mutex<(HashMap<PeerId, ProviderCalls<T>>, usize)>,
}

impl<T> Default for Dispatch<T> {
    fn default() -> Self {
        Dispatch {
            providers: parking_lot::Mutex::new((HashMap::new(), 0)),
        }
    }
}

impl<T: Pending> Dispatch<T> {
    /// Queues `call` for `peer` (at `now`); returns the batch to send now if a slot is free,
    /// or the call back if too many already wait.
    fn submit(&self, peer: PeerId, call: T, now: Instant) -> Result<Option<Vec<T>>, (T, Full)> {
        let mut guard = self.providers.lock();
        let (providers, waiting) = &mut *guard;
        let calls = providers.entry(peer).or_default();
        if calls.in_flight < MAX_BATCHES_IN_FLIGHT {
            calls.in_flight += 1;
            return Ok(Some(vec![call]));
        }
        if calls.waiting.len() >= MAX_WAITING_PER_PROVIDER {
            return Err((call, Full::Provider));
        }
        if *waiting >= MAX_WAITING_CALLS {
            return Err((call, Full::All));
        }
        calls.waiting.push_back((call, now));
        *waiting += 1;
        Ok(None)
    }

    /// After a batch to `peer`: the next one (up to [`MAX_QUERY_BATCH`] waiting calls, those
    /// abandoned dropped and those waiting since before `now - max_wait` handed back to fail),
    /// or none, the slot given back.
    fn next(&self, peer: PeerId, now: Instant, max_wait: Duration) -> Next<T> {
        let mut guard = self.providers.lock();
        let (providers, waiting) = &mut *guard;
        let mut next = Next {
            batch: None,
            expired: Vec::new(),
        };
        let Some(calls) = providers.get_mut(&peer) else {
            return next;
        };
        let mut batch = Vec::new();
        while batch.len() < MAX_QUERY_BATCH {
            let Some((call, since)) = calls.waiting.pop_front() else {
                break;
            };
            *waiting -= 1;
            if call.abandoned() {
                continue;
            }
            if now.saturating_duration_since(since) > max_wait {
                next.expired.push(call);
                continue;
            }
            batch.push(call);
        }
        if batch.is_empty() {
            calls.in_flight = calls.in_flight.saturating_sub(1);
            if calls.in_flight == 0 && calls.waiting.is_empty() {
                providers.remove(&peer);
            }
        } else {
            next.batch = Some(batch);
        }
        next
    }
}

impl<T> Dispatch<T> {
    /// A batch task ended early (cancelled at shutdown): its slot is given back, and when it
    /// was the provider's last, the calls waiting for it are dropped (their callers learn the
    /// node stopped) rather than stranded.
    fn release(&self, peer: PeerId) {
        let mut guard = self.providers.lock();
        let (providers, waiting) = &mut *guard;
        let Some(calls) = providers.get_mut(&peer) else {
            return;
        };
        calls.in_flight = calls.in_flight.saturating_sub(1);
        if calls.in_flight == 0 {
            if let Some(gone) = providers.remove(&peer) {
                *waiting -= gone.waiting.len();
            }
        }
    }
}

/// A provider's batch slot, given back if the task holding it ends without giving it back
/// itself (cancelled, even before it first ran).
struct Slot {
    node: Node,
    peer: PeerId,
    held: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.held {
            self.node.queries().calls.release(self.peer);
        }
    }
}

impl Node {
    /// Sends `call` to `peer` in a batch and waits for its outcome.
    pub(super) async fn make_call(
        &self,
        peer: PeerId,
        call: Call,
    ) -> Result<QueryOutcome, NodeError> {
        let (tx, rx) = oneshot::channel();
        match self
            .queries()
            .calls
            .submit(peer, (call, tx), Instant::now())
        {
            Ok(Some(batch)) => {
                let slot = Slot {
                    node: self.clone(),
                    peer,
                    held: true,
                };
                let node = self.clone();
                self.spawn_long(async move { node.run_batches(peer, batch, slot).await });
            }
            Ok(None) => {}
            Err((_, full)) => {
                return Err(NodeError::Busy(match full {
                    Full::Provider => format!(
                        "{MAX_WAITING_PER_PROVIDER} queries to {peer} are already waiting to \
                         be sent; retry shortly"
                    ),
                    Full::All => format!(
                        "{MAX_WAITING_CALLS} queries are already waiting to be sent; retry \
                         shortly"
                    ),
                }));
            }
        }
        rx.await.map_err(|_| NodeError::Net(NetError::Stopped))?
    }

    /// Sends `batch`, then the batches that queued behind it, until none waits; then gives
    /// the provider's slot back.
    async fn run_batches(&self, peer: PeerId, mut batch: Vec<Waiting>, mut slot: Slot) {
        let max_wait = Duration::from_secs(self.inner.config.network.request_timeout_secs);
        loop {
            self.send_batch(peer, batch).await;
            let next = self.queries().calls.next(peer, Instant::now(), max_wait);
            for (_, reply) in next.expired {
                let _ = reply.send(Err(NodeError::Busy(format!(
                    "not sent within {} s: the earlier queries to {peer} took that long; retry \
                     later",
                    max_wait.as_secs()
                ))));
            }
            match next.batch {
                Some(b) => batch = b,
                None => {
                    slot.held = false;
                    return;
                }
            }
        }
    }

    /// One batch: sent (or its queries one by one to a provider without batches), each answer
    /// checked, the records appended together, then each caller answered.
    async fn send_batch(&self, peer: PeerId, mut calls: Vec<Waiting>) {
        let raws: Vec<Value> = calls
            .iter_mut()
            .map(|(c, _)| std::mem::take(&mut c.raw))
            .collect();
        let n = raws.len();
        let responses: Vec<Result<QueryResponse, String>> =
            match self.inner.net.query_batch(peer, raws).await {
                Ok(QueryBatchResponse::Responses { responses }) if responses.len() == n => {
                    responses.into_iter().map(bounded).collect()
                }
                Ok(QueryBatchResponse::Responses { responses }) => {
                    let cause = format!(
                        "the provider sent {} responses to a batch of {n} queries",
                        responses.len()
                    );
                    vec![Err(cause); n]
                }
                Ok(QueryBatchResponse::Refused { code, message }) => {
                    vec![Ok(QueryResponse::Refused { code, message }); n]
                }
                Err(NetError::BatchesUnsupported { .. }) => {
                    // Rare (an older provider): each query written again from its typed form
                    // rather than every batch keeping a copy of what it sent.
                    let alone = calls.iter().map(|(c, _)| async move {
                        let raw = serde_json::to_value(&c.query).map_err(|e| e.to_string())?;
                        self.inner.net.query(peer, raw).await.map_err(net_cause)
                    });
                    futures::future::join_all(alone).await
                }
                Err(e) => vec![Err(net_cause(e)); n],
            };
        let mut records = Vec::with_capacity(n);
        let mut outcomes = Vec::with_capacity(n);
        for ((call, reply), response) in calls.into_iter().zip(responses) {
            let (outcome, record) = self.conclude(peer, &call, response);
            records.push(PendingRecord {
                record,
                counterparty: Some(peer),
                documents: outcome
                    .as_ref()
                    .ok()
                    .and_then(|o| doc(&o.answer))
                    .into_iter()
                    .collect(),
            });
            outcomes.push((outcome, reply));
        }
        let seqs = self.record_all(records).await;
        for ((outcome, reply), seq) in outcomes.into_iter().zip(seqs) {
            let _ = reply.send(outcome.map(|o| QueryOutcome { seq, ..o }));
        }
    }

    /// A call's outcome from its response, and its `query-sent` record saying it.
    fn conclude(
        &self,
        peer: PeerId,
        call: &Call,
        response: Result<QueryResponse, String>,
    ) -> (Result<QueryOutcome, NodeError>, ProvenanceRecord) {
        let mut rec = call.record.clone();
        let cause = |text: String| Some(capped(&text, MAX_PEER_TEXT_CHARS));
        let outcome = match response {
            Err(e) => {
                rec.cause = cause(format!("not answered: request to {peer} failed: {e}"));
                Err(NodeError::Net(NetError::Request { peer, cause: e }))
            }
            Ok(QueryResponse::Answer { answer, records }) => {
                let expected = Expected {
                    query: &call.query,
                    digest: &call.digest,
                    provider: peer,
                    offer: &call.offer,
                    grant: call.grant.as_deref().map(|g| &g.grant.document),
                };
                match check_answer(&answer, &records, &expected, self) {
                    Err(reason) => {
                        rec.cause = cause(format!("answer refused: {reason}"));
                        Err(NodeError::BadPeer { peer, reason })
                    }
                    Ok(()) => {
                        rec.version = Some(answer.document.version);
                        rec.data_digest = Some(answer.document.data_digest.clone());
                        rec.found = Some(answer.document.found);
                        rec.fields = Some(query_fields(&call.query, &answer.document));
                        Ok(QueryOutcome {
                            answer: *answer,
                            records,
                            seq: None,
                        })
                    }
                }
            }
            Ok(QueryResponse::Refused { code, message }) => {
                rec.cause = cause(format!("refused ({code}): {message}"));
                Err(NodeError::Refused {
                    peer,
                    code,
                    message,
                })
            }
        };
        (outcome, rec)
    }
}

/// Why a request failed, without the "request to … failed" its error says around it.
fn net_cause(e: NetError) -> String {
    match e {
        NetError::Request { cause, .. } => cause,
        other => other.to_string(),
    }
}

/// A response from a batch, within the bound one answer has alone.
fn bounded(response: QueryResponse) -> Result<QueryResponse, String> {
    let size = compact_json_len(&response);
    if size > MAX_QUERY_ANSWER_BYTES {
        return Err(format!(
            "the answer is {size} bytes; one answer is at most {MAX_QUERY_ANSWER_BYTES} bytes"
        ));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A test call: its number, and whether its caller went away.
    #[derive(Debug, PartialEq)]
    struct T(u32, bool);

    impl Pending for T {
        fn abandoned(&self) -> bool {
            self.1
        }
    }

    const WAIT: Duration = Duration::from_secs(30);

    fn numbers(batch: Option<Vec<T>>) -> Vec<u32> {
        batch.unwrap_or_default().into_iter().map(|t| t.0).collect()
    }

    #[test]
    fn calls_leave_alone_while_slots_are_free_then_wait_and_leave_together() {
        let d: Dispatch<T> = Dispatch::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        // The first calls to a provider each take a slot and leave at once, alone.
        for i in 0..MAX_BATCHES_IN_FLIGHT as u32 {
            assert_eq!(
                d.submit(a, T(i, false), now).ok(),
                Some(Some(vec![T(i, false)]))
            );
        }
        // With every slot busy, the next wait; another provider has slots of its own.
        for i in 100..140 {
            assert_eq!(d.submit(a, T(i, false), now).ok(), Some(None));
        }
        assert!(matches!(d.submit(b, T(7, false), now), Ok(Some(_))));
        // A slot freed takes the waiting calls with it, in order, at most a batch at a time.
        let first = numbers(d.next(a, now, WAIT).batch);
        assert_eq!(
            first,
            (100..100 + MAX_QUERY_BATCH as u32).collect::<Vec<_>>()
        );
        assert_eq!(numbers(d.next(a, now, WAIT).batch).len(), MAX_QUERY_BATCH);
        assert_eq!(
            numbers(d.next(a, now, WAIT).batch).len(),
            40 - 2 * MAX_QUERY_BATCH
        );
        // Nothing waits: each slot is given back, then the provider is forgotten.
        for _ in 0..MAX_BATCHES_IN_FLIGHT {
            assert!(d.next(a, now, WAIT).batch.is_none());
        }
        assert!(!d.providers.lock().0.contains_key(&a));
        assert!(matches!(d.submit(a, T(1, false), now), Ok(Some(_))));
    }

    #[test]
    fn abandoned_calls_are_dropped_and_late_ones_handed_back_to_fail() {
        let d: Dispatch<T> = Dispatch::default();
        let a = PeerId::random();
        let then = Instant::now();
        for i in 0..MAX_BATCHES_IN_FLIGHT as u32 {
            assert!(matches!(d.submit(a, T(i, false), then), Ok(Some(_))));
        }
        d.submit(a, T(10, true), then).unwrap();
        d.submit(a, T(11, false), then).unwrap();
        let later = then + Duration::from_secs(5);
        d.submit(a, T(12, false), later).unwrap();
        // 30 s after the first two were queued: 10 dropped, 11 late, 12 leaves.
        let next = d.next(a, then + WAIT + Duration::from_secs(1), WAIT);
        assert_eq!(numbers(next.batch), vec![12]);
        assert_eq!(next.expired, vec![T(11, false)]);
        assert_eq!(d.providers.lock().1, 0);
    }

    #[test]
    fn no_provider_takes_every_place_the_total_holds_and_a_cancelled_batch_gives_back() {
        let d: Dispatch<T> = Dispatch::default();
        let now = Instant::now();
        let peers: Vec<PeerId> = (0..9).map(|_| PeerId::random()).collect();
        for p in &peers {
            for i in 0..MAX_BATCHES_IN_FLIGHT as u32 {
                assert!(matches!(d.submit(*p, T(i, false), now), Ok(Some(_))));
            }
        }
        // One provider: at most its share waits.
        for i in 0..MAX_WAITING_PER_PROVIDER as u32 {
            assert!(matches!(d.submit(peers[0], T(i, false), now), Ok(None)));
        }
        assert_eq!(
            d.submit(peers[0], T(9, false), now).err(),
            Some((T(9, false), Full::Provider))
        );
        // All providers together: at most the total.
        let mut n = MAX_WAITING_PER_PROVIDER;
        'fill: for p in &peers[1..] {
            for i in 0..MAX_WAITING_PER_PROVIDER as u32 {
                if n == MAX_WAITING_CALLS {
                    break 'fill;
                }
                assert!(matches!(d.submit(*p, T(i, false), now), Ok(None)));
                n += 1;
            }
        }
        assert_eq!(
            d.submit(peers[8], T(9, false), now).err(),
            Some((T(9, false), Full::All))
        );
        // A batch taken makes room again.
        assert_eq!(
            numbers(d.next(peers[1], now, WAIT).batch).len(),
            MAX_QUERY_BATCH
        );
        assert!(matches!(d.submit(peers[8], T(9, false), now), Ok(None)));
        // Batch tasks cancelled: each gives its slot back; with the last, the provider's
        // waiting calls are dropped and no longer counted.
        let waiting = d.providers.lock().1;
        for _ in 0..MAX_BATCHES_IN_FLIGHT {
            d.release(peers[0]);
        }
        assert!(!d.providers.lock().0.contains_key(&peers[0]));
        assert_eq!(d.providers.lock().1, waiting - MAX_WAITING_PER_PROVIDER);
    }
}
