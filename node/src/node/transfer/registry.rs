//! The in-memory registry of transfers, both ways: each transfer's view with its live byte and
//! re-fetch counts (shared with the task moving it), the serving slots taken per peer, and the
//! transfer totals of `/metrics`, and the waits for a transfer to finish. Finished transfers stay
//! listed until [`KEEP_FINISHED`] newer ones have finished; fetches are also in the database, so
//! they outlive the registry (one is found there by id), and at start the newest finished ones
//! are listed again. The list, `GET /api/v1/transfers`, is the registry only: its size does not
//! grow with the number of versions ever fetched.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokio::sync::watch;

use super::{FetchRecord, KEEP_FINISHED, TransferStatus, TransferView};
use crate::model::exchange::Manifest;
use crate::model::signed::Signed;
use crate::node::access::Direction;
use crate::node::counters::Counters;
use crate::node::{Node, NodeError};
use crate::store::RecordTree;

/// Live progress shared between a transfer's task and the registry.
#[derive(Debug, Default)]
pub(super) struct Progress {
    pub(super) bytes: AtomicU64,
    pub(super) refetched: AtomicU64,
}

impl Progress {
    /// The progress of a transfer that has `bytes` done already (a resumed fetch).
    fn starting_at(bytes: u64) -> Arc<Progress> {
        let progress = Arc::new(Progress::default());
        progress.bytes.store(bytes, Ordering::Relaxed);
        progress
    }
}

#[derive(Debug)]
struct Live {
    view: TransferView,
    progress: Arc<Progress>,
    started: Instant,
    /// Turns true when the transfer finishes; waiters subscribe under the registry's lock.
    finished: watch::Sender<bool>,
}

/// The transfers this node runs, both ways.
#[derive(Debug)]
pub(crate) struct Registry {
    live: HashMap<String, Live>,
    finished_order: Vec<String>,
    serving_per_peer: HashMap<PeerId, usize>,
    counters: Arc<Counters>,
}

impl Registry {
    pub(crate) fn new(counters: Arc<Counters>) -> Registry {
        Registry {
            live: HashMap::new(),
            finished_order: Vec::new(),
            serving_per_peer: HashMap::new(),
            counters,
        }
    }

    /// Lists a transfer whose task reports through `progress`.
    fn insert(&mut self, view: TransferView, progress: Arc<Progress>) {
        self.live.insert(
            view.id.clone(),
            Live {
                view,
                progress,
                started: Instant::now(),
                finished: watch::Sender::new(false),
            },
        );
    }

    /// Lists a transfer that finished before this run (read back from the database at start):
    /// counted among the [`KEEP_FINISHED`] like one that finishes now, but not in the totals.
    fn insert_finished(&mut self, view: TransferView) {
        if !view.status.finished() || self.live.contains_key(&view.id) {
            return;
        }
        let id = view.id.clone();
        let progress = Progress::starting_at(view.bytes_done);
        progress
            .refetched
            .store(view.refetched_chunks, Ordering::Relaxed);
        self.live.insert(
            id.clone(),
            Live {
                progress,
                view,
                started: Instant::now(),
                finished: watch::Sender::new(true),
            },
        );
        self.finished_order.push(id);
        self.trim_finished();
    }

    /// Lists again the newest [`KEEP_FINISHED`] of `views` that finished (by start time), older
    /// than any finishing in this run.
    fn relist(&mut self, mut views: Vec<TransferView>) {
        views.retain(|v| v.status.finished());
        views.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(b.id.cmp(&a.id)));
        let skip = views.len().saturating_sub(KEEP_FINISHED);
        for view in views.into_iter().skip(skip) {
            self.insert_finished(view);
        }
    }

    /// Drops the oldest finished transfers beyond [`KEEP_FINISHED`].
    fn trim_finished(&mut self) {
        if self.finished_order.len() > KEEP_FINISHED {
            let excess = self.finished_order.len() - KEEP_FINISHED;
            for old in self.finished_order.drain(..excess) {
                self.live.remove(&old);
            }
        }
    }

    /// A transfer's view with its live counts.
    fn view(&self, id: &str) -> Option<TransferView> {
        self.live.get(id).map(|l| {
            let mut v = l.view.clone();
            v.bytes_done = v.bytes_done.max(l.progress.bytes.load(Ordering::Relaxed));
            v.refetched_chunks = l.progress.refetched.load(Ordering::Relaxed);
            if !v.status.finished() {
                v.total_ms = l.started.elapsed().as_millis() as u64;
            }
            v
        })
    }

    /// Every listed transfer's view.
    fn views(&self) -> Vec<TransferView> {
        self.live.keys().filter_map(|id| self.view(id)).collect()
    }

    /// Changes a transfer's view. The change that finishes it counts it in the totals and
    /// freezes its live counts into the view; the oldest finished transfers beyond
    /// [`KEEP_FINISHED`] are dropped.
    fn update(&mut self, id: &str, f: impl FnOnce(&mut TransferView)) {
        if let Some(l) = self.live.get_mut(id) {
            let was_finished = l.view.status.finished();
            f(&mut l.view);
            if l.view.status.finished() && !was_finished {
                let c = &self.counters;
                let counter = match (l.view.direction, l.view.status) {
                    (Direction::In, TransferStatus::Done) => &c.fetches_done,
                    (Direction::In, _) => &c.fetches_failed,
                    (Direction::Out, TransferStatus::Done) => &c.serves_done,
                    (Direction::Out, _) => &c.serves_failed,
                };
                Counters::add(counter, 1);
                l.finished.send_replace(true);
            }
            if l.view.status.finished() {
                l.view.bytes_done = l
                    .view
                    .bytes_done
                    .max(l.progress.bytes.load(Ordering::Relaxed));
                l.view.refetched_chunks = l.progress.refetched.load(Ordering::Relaxed);
                if !was_finished {
                    self.finished_order.push(id.to_string());
                    self.trim_finished();
                }
            }
        }
    }

    /// A running transfer's finish signal, taken under the same lock [`Registry::update`] holds
    /// when it finishes one, so no finish falls between the check and the subscription. `None`:
    /// finished, or not listed here.
    fn finish_signal(&self, id: &str) -> Option<watch::Receiver<bool>> {
        self.live
            .get(id)
            .filter(|l| !l.view.status.finished())
            .map(|l| l.finished.subscribe())
    }

    /// Takes one of `peer`'s serving slots, unless it already holds `limit`.
    pub(super) fn admit_serving(&mut self, peer: PeerId, limit: usize) -> bool {
        let n = self.serving_per_peer.entry(peer).or_insert(0);
        if *n >= limit {
            false
        } else {
            *n += 1;
            true
        }
    }

    /// Gives back one of `peer`'s serving slots.
    pub(super) fn release_serving(&mut self, peer: &PeerId) {
        if let Some(n) = self.serving_per_peer.get_mut(peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.serving_per_peer.remove(peer);
            }
        }
    }
}

impl Node {
    /// Lists a transfer in the registry; its task reports progress through the result.
    pub(super) fn register(&self, view: TransferView) -> Arc<Progress> {
        let progress = Progress::starting_at(view.bytes_done);
        self.inner
            .transfers
            .registry()
            .insert(view, progress.clone());
        progress
    }

    pub(super) fn update_transfer(&self, id: &str, f: impl FnOnce(&mut TransferView)) {
        self.inner.transfers.registry().update(id, f);
    }

    /// Transfers in progress and the newest [`KEEP_FINISHED`] finished (in this run or, listed
    /// again at start, before it), both ways, newest first. Read from memory only: the fetch
    /// records of every version ever fetched stay in the database, found by id with
    /// [`Node::transfer`].
    pub fn transfers(&self) -> Vec<TransferView> {
        let mut list: Vec<TransferView> = self.inner.transfers.registry().views();
        list.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(a.id.cmp(&b.id)));
        list
    }

    /// Lists again the newest [`KEEP_FINISHED`] fetches a previous run finished (called at start
    /// with the stored fetch records).
    pub(super) fn list_finished_fetches(&self, finished: Vec<TransferView>) {
        self.inner.transfers.registry().relist(finished);
    }

    /// One transfer.
    pub fn transfer(&self, id: &str) -> Result<TransferView, NodeError> {
        if let Some(v) = self.inner.transfers.registry().view(id) {
            return Ok(v);
        }
        self.store()
            .record::<FetchRecord>(RecordTree::Fetches, id)?
            .map(|r| r.view)
            .ok_or_else(|| NodeError::NotFound(format!("no transfer {id}")))
    }

    /// One transfer, once it has finished or `bound` has passed (or the node is shutting down),
    /// whichever comes first: the long poll of `GET /api/v1/transfers/{id}?wait_ms=N`.
    pub async fn wait_transfer(
        &self,
        id: &str,
        bound: Duration,
    ) -> Result<TransferView, NodeError> {
        let signal = self.inner.transfers.registry().finish_signal(id);
        if let Some(mut finished) = signal {
            tokio::select! {
                // An error means the transfer left the registry: it finished long ago.
                _ = finished.wait_for(|f| *f) => {}
                () = tokio::time::sleep(bound) => {}
                () = self.inner.shutdown.cancelled() => {}
            }
        }
        self.transfer(id)
    }

    /// The file of a completed fetch, for download.
    pub fn fetched_file(&self, id: &str) -> Result<(PathBuf, Signed<Manifest>), NodeError> {
        let rec = self
            .store()
            .record::<FetchRecord>(RecordTree::Fetches, id)?
            .ok_or_else(|| NodeError::NotFound(format!("no fetch {id}")))?;
        let (TransferStatus::Done, Some(m)) = (rec.view.status, rec.manifest) else {
            return Err(NodeError::Conflict(format!("fetch {id} has not completed")));
        };
        let path = self
            .blobs()
            .path(&m.document.digest)
            .filter(|p| p.is_file())
            .ok_or_else(|| NodeError::NotFound(format!("the file of fetch {id} is gone")))?;
        Ok((path, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, direction: Direction) -> TransferView {
        TransferView {
            id: id.to_string(),
            ..TransferView::starting(
                direction,
                "peer".into(),
                "ds".into(),
                TransferStatus::Running,
            )
        }
    }

    fn registry() -> (Registry, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        (Registry::new(counters.clone()), counters)
    }

    fn finish(r: &mut Registry, id: &str, status: TransferStatus) {
        r.update(id, |v| v.status = status);
    }

    #[test]
    fn keeps_the_newest_finished_and_every_running_transfer() {
        let (mut r, _) = registry();
        r.insert(view("running", Direction::In), Arc::default());
        let extra = 5;
        let ids: Vec<String> = (0..KEEP_FINISHED + extra)
            .map(|i| format!("t{i}"))
            .collect();
        for id in &ids {
            r.insert(view(id, Direction::Out), Arc::default());
        }
        for id in &ids {
            finish(&mut r, id, TransferStatus::Done);
        }
        assert_eq!(r.views().len(), KEEP_FINISHED + 1);
        for id in &ids[..extra] {
            assert!(r.view(id).is_none(), "{id} should have been trimmed");
        }
        for id in &ids[extra..] {
            assert!(r.view(id).is_some(), "{id} should be kept");
        }
        assert!(r.view("running").is_some());
    }

    #[test]
    fn fetches_of_a_previous_run_are_listed_again_up_to_the_bound() {
        let (mut r, c) = registry();
        r.insert(view("running", Direction::In), Arc::default());
        // Far more stored fetches than the bound, in no order, some not finished.
        let n = KEEP_FINISHED * 3;
        let stored: Vec<TransferView> = (0..n)
            .map(|i| {
                let i = (i * 7919) % n;
                let mut v = view(&format!("f{i:05}"), Direction::In);
                v.started_at = format!("2026-01-01T00:00:00.{i:05}Z");
                v.status = if i % 10 == 0 {
                    TransferStatus::Running
                } else {
                    TransferStatus::Done
                };
                v.refetched_chunks = 3;
                v
            })
            .collect();
        r.relist(stored.clone());
        assert_eq!(r.views().len(), KEEP_FINISHED + 1);
        let mut newest: Vec<&TransferView> =
            stored.iter().filter(|v| v.status.finished()).collect();
        newest.sort_by(|a, b| b.started_at.cmp(&a.started_at));
        for v in &newest[..KEEP_FINISHED] {
            let kept = r.view(&v.id).map(|k| k.refetched_chunks);
            assert_eq!(kept, Some(3), "{} is among the newest", v.id);
        }
        assert!(r.view(&newest[KEEP_FINISHED].id).is_none());
        assert!(r.view("running").is_some());
        // Listing them again counts nothing, and twice lists nothing twice.
        assert_eq!(c.fetches_done.load(Ordering::Relaxed), 0);
        r.relist(stored);
        assert_eq!(r.views().len(), KEEP_FINISHED + 1);
        assert_eq!(r.finished_order.len(), KEEP_FINISHED);
    }

    #[test]
    fn a_finished_transfer_changed_again_takes_one_place() {
        let (mut r, _) = registry();
        r.insert(view("x", Direction::Out), Arc::default());
        finish(&mut r, "x", TransferStatus::Done);
        for _ in 0..KEEP_FINISHED * 2 {
            r.update("x", |v| v.attempts += 1);
        }
        assert_eq!(r.finished_order, vec!["x".to_string()]);
        assert!(r.view("x").is_some());
    }

    #[test]
    fn finishing_counts_once_by_direction_and_outcome() {
        let (mut r, c) = registry();
        for (id, d) in [
            ("a", Direction::In),
            ("b", Direction::In),
            ("c", Direction::Out),
            ("d", Direction::Out),
        ] {
            r.insert(view(id, d), Arc::default());
        }
        finish(&mut r, "a", TransferStatus::Done);
        finish(&mut r, "b", TransferStatus::Failed);
        finish(&mut r, "c", TransferStatus::Done);
        finish(&mut r, "d", TransferStatus::Failed);
        // Progress without finishing counts nothing.
        r.update("a", |v| v.attempts = 2);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(load(&c.fetches_done), 1);
        assert_eq!(load(&c.fetches_failed), 1);
        assert_eq!(load(&c.serves_done), 1);
        assert_eq!(load(&c.serves_failed), 1);
    }

    #[test]
    fn views_carry_live_counts_and_freeze_them_when_finished() {
        let (mut r, _) = registry();
        let mut v = view("x", Direction::In);
        v.bytes_done = 10;
        let progress = Progress::starting_at(v.bytes_done);
        r.insert(v, progress.clone());
        assert_eq!(r.view("x").map(|v| v.bytes_done), Some(10));
        progress.bytes.store(40, Ordering::Relaxed);
        progress.refetched.store(2, Ordering::Relaxed);
        let live = r.view("x").map(|v| (v.bytes_done, v.refetched_chunks));
        assert_eq!(live, Some((40, 2)));
        assert_eq!(r.live.get("x").map(|l| l.view.bytes_done), Some(10));
        finish(&mut r, "x", TransferStatus::Done);
        assert_eq!(r.live.get("x").map(|l| l.view.bytes_done), Some(40));
        assert_eq!(r.view("x").map(|v| v.total_ms), Some(0));
        assert!(r.view("missing").is_none());
    }

    #[tokio::test]
    async fn a_finish_signal_is_taken_only_while_running_and_fires_on_finish() {
        let (mut r, _) = registry();
        r.insert(view("x", Direction::In), Arc::default());
        assert!(r.finish_signal("missing").is_none());
        let Some(mut signal) = r.finish_signal("x") else {
            panic!("a running transfer has a finish signal");
        };
        assert!(!*signal.borrow());
        // Progress that does not finish it does not fire.
        r.update("x", |v| v.attempts = 2);
        assert!(!signal.has_changed().unwrap_or(true));
        finish(&mut r, "x", TransferStatus::Failed);
        let fired = tokio::time::timeout(Duration::from_secs(5), signal.wait_for(|f| *f)).await;
        assert!(
            matches!(fired, Ok(Ok(_))),
            "the finish must wake the waiter"
        );
        assert!(
            r.finish_signal("x").is_none(),
            "finished: nothing to wait for"
        );
    }

    #[test]
    fn serving_slots_are_limited_per_peer_and_given_back() {
        let (mut r, _) = registry();
        let (a, b) = (PeerId::random(), PeerId::random());
        assert!(r.admit_serving(a, 2));
        assert!(r.admit_serving(a, 2));
        assert!(!r.admit_serving(a, 2));
        assert!(r.admit_serving(b, 2));
        r.release_serving(&a);
        assert!(r.admit_serving(a, 2));
        r.release_serving(&a);
        r.release_serving(&a);
        assert!(!r.serving_per_peer.contains_key(&a));
        r.release_serving(&a);
        assert!(!r.serving_per_peer.contains_key(&a));
        assert_eq!(r.serving_per_peer.get(&b), Some(&1));
    }
}
