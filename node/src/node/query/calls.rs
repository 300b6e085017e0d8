//! The caller side of query services in batches: a call's query goes to its provider with the
//! others asked meanwhile, and the answers of one batch are checked and their `query-sent`
//! records appended together, in one group commit.
//!
//! Per provider, at most [`MAX_BATCHES_IN_FLIGHT`] batches are in flight. A call made while
//! fewer are leaves at once, alone (a batch of one: no wait is added to a lone call); calls made
//! while that many are in flight wait, and the batch that ends first takes up to
//! [`MAX_QUERY_BATCH`] of them with it on its next trip, the way records share a group commit.
//! At most [`MAX_WAITING_CALLS`] calls wait in all; beyond that a call fails at once. A
//! provider that does not take batches (`/yrd/query/1` only) gets the batch's queries one by
//! one, concurrently.

use std::collections::{HashMap, VecDeque};

use libp2p::PeerId;
use serde_json::Value;
use tokio::sync::oneshot;

use super::{Expected, QueryOutcome, check_answer, query_fields};
use crate::model::catalogue::CatalogueEntry;
use crate::model::exchange::Grant;
use crate::model::provenance::ProvenanceRecord;
use crate::model::query::{
    MAX_QUERY_ANSWER_BYTES, MAX_QUERY_BATCH, Query, QueryBatchResponse, QueryResponse,
    compact_json_len,
};
use crate::net::NetError;
use crate::node::provenance::{MAX_PEER_TEXT_CHARS, PendingRecord, capped, doc};
use crate::node::{Node, NodeError};

/// Batches in flight to one provider. At most this many times [`MAX_QUERY_BATCH`] answers
/// (each ≤ 2 MiB) are in flight from one provider.
pub const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// Calls waiting for a batch, over all providers.
pub const MAX_WAITING_CALLS: usize = 1024;

/// One call on its way: the query (and as sent), what its answer is checked against, and its
/// `query-sent` record (filled in with the outcome).
pub(crate) struct Call {
    pub query: Query,
    pub raw: Value,
    pub digest: String,
    pub offer: CatalogueEntry,
    pub grant: Option<Grant>,
    pub record: ProvenanceRecord,
}

/// A call and who waits for its outcome.
pub(crate) type Waiting = (Call, oneshot::Sender<Result<QueryOutcome, NodeError>>);

/// The calls of this node waiting for, and in batches to, each provider.
pub(crate) type Calls = Dispatch<Waiting>;

struct ProviderCalls<T> {
    waiting: VecDeque<T>,
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

impl<T> Dispatch<T> {
    /// Queues `call` for `peer`; returns the batch to send now if a slot is free, or the call
    /// back if [`MAX_WAITING_CALLS`] already wait.
    fn submit(&self, peer: PeerId, call: T) -> Result<Option<Vec<T>>, T> {
        let mut guard = self.providers.lock();
        let (providers, waiting) = &mut *guard;
        let calls = providers.entry(peer).or_default();
        if calls.in_flight < MAX_BATCHES_IN_FLIGHT {
            calls.in_flight += 1;
            return Ok(Some(vec![call]));
        }
        if *waiting >= MAX_WAITING_CALLS {
            return Err(call);
        }
        calls.waiting.push_back(call);
        *waiting += 1;
        Ok(None)
    }

    /// After a batch to `peer`: the next one (up to [`MAX_QUERY_BATCH`] waiting calls), or
    /// none, the slot given back.
    fn next(&self, peer: PeerId) -> Option<Vec<T>> {
        let mut guard = self.providers.lock();
        let (providers, waiting) = &mut *guard;
        let calls = providers.get_mut(&peer)?;
        let n = calls.waiting.len().min(MAX_QUERY_BATCH);
        if n > 0 {
            *waiting -= n;
            return Some(calls.waiting.drain(..n).collect());
        }
        calls.in_flight = calls.in_flight.saturating_sub(1);
        if calls.in_flight == 0 {
            providers.remove(&peer);
        }
        None
    }
}

/// Gives a provider's slot back if its batch task ends early (cancelled at shutdown), so the
/// calls waiting for that provider are not stranded.
struct Slot<'a, T> {
    dispatch: &'a Dispatch<T>,
    peer: PeerId,
    held: bool,
}

impl<T> Drop for Slot<'_, T> {
    fn drop(&mut self) {
        if self.held {
            let mut guard = self.dispatch.providers.lock();
            if let Some(calls) = guard.0.get_mut(&self.peer) {
                calls.in_flight = calls.in_flight.saturating_sub(1);
            }
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
        match self.queries().calls.submit(peer, (call, tx)) {
            Ok(Some(batch)) => {
                let node = self.clone();
                self.spawn_long(async move { node.run_batches(peer, batch).await });
            }
            Ok(None) => {}
            Err(_) => {
                return Err(NodeError::Net(NetError::Request {
                    peer,
                    cause: format!(
                        "{MAX_WAITING_CALLS} queries are already waiting to be sent; retry \
                         shortly"
                    ),
                }));
            }
        }
        rx.await.map_err(|_| NodeError::Net(NetError::Stopped))?
    }

    /// Sends `batch`, then the batches that queued behind it, until none waits.
    async fn run_batches(&self, peer: PeerId, mut batch: Vec<Waiting>) {
        let dispatch = &self.queries().calls;
        let mut slot = Slot {
            dispatch,
            peer,
            held: true,
        };
        loop {
            self.send_batch(peer, batch).await;
            match dispatch.next(peer) {
                Some(next) => batch = next,
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
            match self.inner.net.query_batch(peer, raws.clone()).await {
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
                    let alone = raws.into_iter().map(|raw| self.inner.net.query(peer, raw));
                    futures::future::join_all(alone)
                        .await
                        .into_iter()
                        .map(|r| r.map_err(net_cause))
                        .collect()
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
                    grant: call.grant.as_ref(),
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

    #[test]
    fn calls_leave_alone_while_slots_are_free_then_wait_and_leave_together() {
        let d: Dispatch<u32> = Dispatch::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        // The first calls to a provider each take a slot and leave at once, alone.
        for i in 0..MAX_BATCHES_IN_FLIGHT as u32 {
            assert_eq!(d.submit(a, i).ok(), Some(Some(vec![i])));
        }
        // With every slot busy, the next wait; another provider has slots of its own.
        for i in 100..140 {
            assert_eq!(d.submit(a, i).ok(), Some(None));
        }
        assert_eq!(d.submit(b, 7).ok(), Some(Some(vec![7])));
        // A slot freed takes the waiting calls with it, in order, at most a batch at a time.
        let first = d.next(a).unwrap();
        assert_eq!(
            first,
            (100..100 + MAX_QUERY_BATCH as u32).collect::<Vec<_>>()
        );
        let second = d.next(a).unwrap();
        assert_eq!(second.len(), MAX_QUERY_BATCH);
        assert_eq!(d.next(a).unwrap().len(), 40 - 2 * MAX_QUERY_BATCH);
        // Nothing waits: each slot is given back, then the provider is forgotten.
        for _ in 0..MAX_BATCHES_IN_FLIGHT {
            assert!(d.next(a).is_none());
        }
        assert!(!d.providers.lock().0.contains_key(&a));
        assert_eq!(d.submit(a, 1).ok(), Some(Some(vec![1])));
    }

    #[test]
    fn no_more_than_the_bound_of_calls_wait_and_a_cancelled_batch_gives_its_slot_back() {
        let d: Dispatch<usize> = Dispatch::default();
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        for p in &peers {
            for i in 0..MAX_BATCHES_IN_FLIGHT {
                assert!(matches!(d.submit(*p, i), Ok(Some(_))));
            }
        }
        // The bound holds over all providers together.
        for i in 0..MAX_WAITING_CALLS {
            assert!(matches!(d.submit(peers[i % 4], i), Ok(None)));
        }
        assert_eq!(d.submit(peers[0], 9).err(), Some(9));
        // A batch taken makes room again.
        assert_eq!(d.next(peers[1]).unwrap().len(), MAX_QUERY_BATCH);
        assert!(matches!(d.submit(peers[0], 9), Ok(None)));
        // A batch task that ends early (cancelled) gives its slot back.
        let lone = PeerId::random();
        assert!(matches!(d.submit(lone, 1), Ok(Some(_))));
        drop(Slot {
            dispatch: &d,
            peer: lone,
            held: true,
        });
        assert_eq!(
            d.providers.lock().0.get(&lone).map(|c| c.in_flight),
            Some(0)
        );
    }
}
