//! Catalogue and standard synchronisation: pulling what an announcement names, anti-entropy
//! rounds that compare heads with a few peers, and the budgets that keep one peer — slow, silent
//! or lying — from holding up the sync of the others. [`CatalogueSync`] owns them: the pull and
//! connect-sync semaphores, the peers being synced now (one sync per peer, each under a deadline
//! and a cap on pulls), and [`Wants`], who claims to hold which catalogue sequence, so a
//! publisher's catalogue is pulled from any holder and a failed pull is retried from another.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Node, NodeError, unexpected};
use crate::model::catalogue::Catalogue;
use crate::model::message::{Announcement, Request, Response, SchemaHead};
use crate::model::signed::Signed;

/// Catalogue pulls in flight at once.
pub const MAX_CONCURRENT_PULLS: usize = 32;
/// Announcements handled at once (a carried document checked and stored, or a pull it names
/// started); beyond, an announcement is dropped and anti-entropy brings what it named. Apart
/// from the pulls, so a backlog of pulls never makes a node drop the gossip that would have
/// spared them.
pub const MAX_CONCURRENT_ANNOUNCEMENTS: usize = 32;
/// Syncs on connect in flight at once.
pub const MAX_CONNECT_SYNCS: usize = 4;
/// Pulls of one publisher's catalogue from holders other than the publisher in flight at once
/// (a pull from the publisher itself may always run besides): when a hundred members all claim
/// a catalogue, it is pulled from one or two of them, not from each.
pub const MAX_PULLS_PER_PUBLISHER: usize = 2;
/// Peers synchronised with per anti-entropy round.
pub const PEERS_PER_ROUND: usize = 3;
/// First wait before a holder that failed to serve a catalogue it claimed is asked again;
/// doubles with each failure.
pub const RETRY_FIRST: Duration = Duration::from_secs(5);
/// Longest wait before such a holder is asked again.
pub const RETRY_MAX: Duration = Duration::from_secs(600);

/// Why a standard was not pulled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    /// The peer did not serve it: no answer in time, an error answer, another answer.
    #[error("{0}")]
    NotServed(NodeError),
    /// It served a standard we refuse (a broken rule, a signature, a member's quota).
    #[error("{0}")]
    Refused(NodeError),
}

/// The limits on pulls and syncs, who is being synced, and the claims of who holds what.
#[derive(Debug)]
pub(crate) struct CatalogueSync {
    pulls: Arc<Semaphore>,
    announcements: Arc<Semaphore>,
    connect_syncs: Arc<Semaphore>,
    syncing: Arc<Mutex<HashSet<PeerId>>>,
    wants: Mutex<Wants>,
    refused: Mutex<RefusedStandards>,
}

/// Most standards remembered as refused (by id, version and digest); the oldest is forgotten
/// first. 4,096 entries of a few hundred bytes each.
pub const MAX_REMEMBERED_REFUSALS: usize = 4096;

/// Standards a peer served us and we refused (over a member's quota, or breaking the rules), so
/// that it is not asked for them again each round. Keyed by the peer and the entry its `heads`
/// answer gave (id, version, digest): what one peer served never stops us pulling a standard
/// from another.
#[derive(Debug, Default)]
struct RefusedStandards {
    set: HashSet<RefusedKey>,
    order: std::collections::VecDeque<RefusedKey>,
}

type RefusedKey = (PeerId, String, String, String);

impl RefusedStandards {
    fn insert(&mut self, key: RefusedKey) {
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
            while self.order.len() > MAX_REMEMBERED_REFUSALS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

impl Default for CatalogueSync {
    fn default() -> Self {
        CatalogueSync {
            pulls: Arc::new(Semaphore::new(MAX_CONCURRENT_PULLS)),
            announcements: Arc::new(Semaphore::new(MAX_CONCURRENT_ANNOUNCEMENTS)),
            connect_syncs: Arc::new(Semaphore::new(MAX_CONNECT_SYNCS)),
            syncing: Arc::default(),
            wants: Mutex::default(),
            refused: Mutex::default(),
        }
    }
}

impl CatalogueSync {
    /// A slot for an announcement's handling, if one is free now (otherwise the announcement is
    /// dropped: anti-entropy fetches what it named within one round).
    pub(crate) fn try_announcement_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.announcements.clone().try_acquire_owned().ok()
    }

    /// A slot for a sync on connect; waits for one.
    pub(crate) async fn connect_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.connect_syncs.clone().acquire_owned().await.ok()
    }

    /// Remembers a standard `peer` served and we refused.
    pub(crate) fn note_refused(&self, peer: PeerId, head: &SchemaHead) {
        let key = (
            peer,
            head.id.clone(),
            head.version.clone(),
            head.digest.clone(),
        );
        self.refused.lock().insert(key);
    }

    /// Whether `peer` served this standard before and we refused it.
    pub(crate) fn was_refused(&self, peer: PeerId, head: &SchemaHead) -> bool {
        let key = (
            peer,
            head.id.clone(),
            head.version.clone(),
            head.digest.clone(),
        );
        self.refused.lock().set.contains(&key)
    }

    /// Claims `peer` for one sync; `None` while another sync with it runs (a round does not
    /// queue behind a peer still being synced: it skips it). Released when the guard drops.
    pub(crate) fn claim(&self, peer: PeerId) -> Option<SyncClaim> {
        if !self.syncing.lock().insert(peer) {
            return None;
        }
        Some(SyncClaim {
            set: self.syncing.clone(),
            peer,
        })
    }
}

/// One peer being synced; released on drop.
#[derive(Debug)]
pub(crate) struct SyncClaim {
    set: Arc<Mutex<HashSet<PeerId>>>,
    peer: PeerId,
}

impl Drop for SyncClaim {
    fn drop(&mut self) {
        self.set.lock().remove(&self.peer);
    }
}

/// Who claims to hold which sequence of each publisher's catalogue. Claims come from
/// announcements and `heads` answers of members about members, so there are at most members²
/// of them; each is pulled once at a time, and one that fails waits (doubling) before it is
/// tried again, while the claims of other holders are pulled meanwhile.
#[derive(Debug, Default)]
pub(crate) struct Wants {
    by_publisher: HashMap<PeerId, HashMap<PeerId, Claim>>,
}

#[derive(Debug, Clone)]
struct Claim {
    sequence: u64,
    in_flight: bool,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Wants {
    /// `holder` says it holds `sequence` of `publisher`'s catalogue, of which we hold `held`.
    /// True if a pull from it should start now (it is then in flight).
    pub(crate) fn offer(
        &mut self,
        publisher: PeerId,
        holder: PeerId,
        sequence: u64,
        held: u64,
        now: Instant,
    ) -> bool {
        if sequence <= held {
            return false;
        }
        let claim = self
            .by_publisher
            .entry(publisher)
            .or_default()
            .entry(holder)
            .or_insert(Claim {
                sequence,
                in_flight: false,
                failures: 0,
                retry_at: None,
            });
        claim.sequence = claim.sequence.max(sequence);
        if holder != publisher && self.relays_in_flight(&publisher) >= MAX_PULLS_PER_PUBLISHER {
            return false;
        }
        self.by_publisher
            .get_mut(&publisher)
            .and_then(|c| c.get_mut(&holder))
            .is_some_and(|c| c.start(now))
    }

    /// Pulls of `publisher`'s catalogue in flight from holders other than itself.
    fn relays_in_flight(&self, publisher: &PeerId) -> usize {
        self.by_publisher
            .get(publisher)
            .map_or(0, |claims| relays_in_flight(publisher, claims))
    }

    /// The sequence `holder` claims of `publisher`'s catalogue, if it claims one.
    pub(crate) fn claimed(&self, publisher: &PeerId, holder: &PeerId) -> Option<u64> {
        self.by_publisher
            .get(publisher)
            .and_then(|c| c.get(holder))
            .map(|c| c.sequence)
    }

    /// A pull of `publisher` from `holder` ended (`served`: it answered with a catalogue that
    /// verified); we now hold `held`. A holder that did not serve what it claimed waits before
    /// it is asked again; every claim we now hold is dropped.
    pub(crate) fn done(
        &mut self,
        publisher: PeerId,
        holder: PeerId,
        served: bool,
        held: u64,
        now: Instant,
    ) {
        let Some(claims) = self.by_publisher.get_mut(&publisher) else {
            return;
        };
        if let Some(c) = claims.get_mut(&holder) {
            c.in_flight = false;
            if !served || c.sequence > held {
                c.failures = c.failures.saturating_add(1);
                let wait = RETRY_FIRST.saturating_mul(1 << c.failures.min(16).saturating_sub(1));
                c.retry_at = Some(now + wait.min(RETRY_MAX));
            }
        }
        claims.retain(|_, c| c.in_flight || c.sequence > held);
        if claims.is_empty() {
            self.by_publisher.remove(&publisher);
        }
    }

    /// The claims to pull now (each then in flight): not in flight, not waiting after a
    /// failure, and newer than what we hold (`held`).
    pub(crate) fn due(
        &mut self,
        held: impl Fn(&PeerId) -> u64,
        now: Instant,
    ) -> Vec<(PeerId, PeerId)> {
        let mut out = Vec::new();
        for (publisher, claims) in &mut self.by_publisher {
            let h = held(publisher);
            claims.retain(|_, c| c.in_flight || c.sequence > h);
            let mut relays = relays_in_flight(publisher, claims);
            for (holder, c) in claims.iter_mut() {
                let relay = holder != publisher;
                if relay && relays >= MAX_PULLS_PER_PUBLISHER {
                    continue;
                }
                if c.start(now) {
                    relays += usize::from(relay);
                    out.push((*publisher, *holder));
                }
            }
        }
        self.by_publisher.retain(|_, c| !c.is_empty());
        out
    }
}

/// Of `claims` (one publisher's), the pulls in flight from holders other than `publisher`.
fn relays_in_flight(publisher: &PeerId, claims: &HashMap<PeerId, Claim>) -> usize {
    claims
        .iter()
        .filter(|(holder, c)| *holder != publisher && c.in_flight)
        .count()
}

impl Claim {
    fn start(&mut self, now: Instant) -> bool {
        if self.in_flight || self.retry_at.is_some_and(|t| now < t) {
            return false;
        }
        self.in_flight = true;
        true
    }
}

impl Node {
    /// Timeout of one sync or witnessing request: `sync.request_timeout_secs`, or the network's
    /// request timeout if that is shorter.
    pub(crate) fn sync_request_timeout(&self) -> Duration {
        let c = self.config();
        Duration::from_secs(
            c.sync
                .request_timeout_secs
                .min(c.network.request_timeout_secs),
        )
    }

    /// The longest one sync with one peer (or one pull of a catalogue) may take.
    fn sync_deadline(&self) -> Duration {
        Duration::from_secs(self.config().sync.peer_deadline_secs)
    }

    pub(crate) async fn on_announcement(&self, source: PeerId, announcement: Announcement) {
        let result = match announcement {
            Announcement::Catalogue {
                publisher,
                sequence,
                digest,
                catalogue,
            } => {
                if let Ok(publisher) = publisher.parse::<PeerId>() {
                    let carried = catalogue.filter(|c| {
                        c.document.sequence == sequence
                            && c.document.publisher == publisher.to_string()
                            && c.digest_hex().is_ok_and(|d| d == digest)
                    });
                    match carried {
                        Some(c) if sequence > self.held_catalogue_sequence(&publisher) => {
                            self.take_catalogue(source, publisher, *c).await;
                        }
                        Some(_) => {}
                        None => self.offer_catalogue(publisher, source, sequence),
                    }
                }
                Ok(())
            }
            Announcement::Schema {
                id,
                version,
                digest,
                schema,
                ..
            } => {
                if self.schema_doc(&id, Some(&version)).is_ok() {
                    Ok(())
                } else {
                    let carried = schema.filter(|s| {
                        s.document.id == id
                            && s.document.version == version
                            && s.document.digest == digest
                    });
                    match carried {
                        Some(s) => self
                            .accept_schema(source, *s)
                            .await
                            .map(|_| ())
                            .map_err(PullError::Refused),
                        None => self.pull_schema(source, &id, &version).await,
                    }
                }
            }
            a @ (Announcement::Charter { .. }
            | Announcement::CharterProposal { .. }
            | Announcement::CharterSignatures { .. }) => {
                self.on_charter_announcement(source, a).await;
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!(peer = %source, error = %e, "announced document refused");
        }
    }

    /// Takes `catalogue`, carried by an announcement of `source`, as if pulled from it: the
    /// standards it names that we lack first, then the catalogue, judged as any. A refused one
    /// is recorded against `source`, the member whose signed gossip carried it (within its
    /// budget of refusal records), and not pulled again from it (it would serve the same).
    async fn take_catalogue(
        &self,
        source: PeerId,
        publisher: PeerId,
        catalogue: Signed<Catalogue>,
    ) {
        self.pull_missing_standards(source, &catalogue).await;
        match self.accept_catalogue(source, catalogue).await {
            Ok(_) | Err(NodeError::Stale(_)) => {}
            // A region contradicting the charter is recorded where it is found.
            Err(e @ (NodeError::Signature(_) | NodeError::Invalid { .. })) => {
                tracing::warn!(peer = %source, publisher = %publisher, error = %e, "announced catalogue refused");
                let cause =
                    format!("catalogue of {publisher} carried by an announcement refused: {e}");
                self.record_refusal(Some(source), None, &cause).await;
            }
            Err(e) => {
                tracing::warn!(peer = %source, publisher = %publisher, error = %e, "announced catalogue refused");
            }
        }
    }

    /// Pulls from `from` the standards `catalogue`'s offers name that we lack, at most
    /// `sync.max_pulls_per_peer` of them (a standard not served leaves its offers unresolved
    /// here until anti-entropy brings it).
    async fn pull_missing_standards(&self, from: PeerId, catalogue: &Signed<Catalogue>) {
        let mut wanted = HashSet::new();
        for offer in &catalogue.document.offers {
            let r = &offer.conforms_to;
            if wanted.len() >= self.config().sync.max_pulls_per_peer {
                break;
            }
            if self.schema_doc(&r.id, Some(&r.version)).is_err()
                && wanted.insert((r.id.clone(), r.version.clone()))
            {
                let _ = self.pull_schema(from, &r.id, &r.version).await;
            }
        }
    }

    /// `holder` holds `sequence` of `publisher`'s catalogue: pull it from there unless we hold
    /// it, a pull from there runs, or that holder is waiting after a failure. Pulls from
    /// different holders run side by side, so a holder that never answers delays no other.
    fn offer_catalogue(&self, publisher: PeerId, holder: PeerId, sequence: u64) {
        if self.is_own_key(&publisher) || !self.members().contains(&publisher) {
            return;
        }
        let held = self.held_catalogue_sequence(&publisher);
        let start =
            self.inner
                .sync
                .wants
                .lock()
                .offer(publisher, holder, sequence, held, Instant::now());
        if start {
            self.spawn_pull(publisher, holder);
        }
    }

    /// Starts every pull due now: claims of other holders, and failed ones whose wait is over.
    fn retry_pulls(&self) {
        let due = self
            .inner
            .sync
            .wants
            .lock()
            .due(|p| self.held_catalogue_sequence(p), Instant::now());
        for (publisher, holder) in due {
            self.spawn_pull(publisher, holder);
        }
    }

    fn spawn_pull(&self, publisher: PeerId, holder: PeerId) {
        let node = self.clone();
        self.spawn_long(async move {
            let permit = node.inner.sync.pulls.clone().acquire_owned().await;
            // Another pull may have brought it while this one waited for a slot.
            let wanted = node.inner.sync.wants.lock().claimed(&publisher, &holder);
            let pulled = if wanted.is_none_or(|s| s <= node.held_catalogue_sequence(&publisher)) {
                Ok(())
            } else {
                tokio::time::timeout(
                    node.sync_deadline(),
                    node.pull_catalogue(holder, publisher),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(NodeError::BadPeer {
                        peer: holder,
                        reason: "catalogue not served within the sync deadline".into(),
                    })
                })
            };
            if let Err(e) = &pulled {
                tracing::warn!(peer = %holder, publisher = %publisher, error = %e, "catalogue not pulled");
            }
            drop(permit);
            let held = node.held_catalogue_sequence(&publisher);
            node.inner.sync.wants.lock().done(
                publisher,
                holder,
                pulled.is_ok(),
                held,
                Instant::now(),
            );
            node.retry_pulls();
        });
    }

    /// Pulls `publisher`'s catalogue from `from`, with the standards its offers name that we
    /// lack first (at most `sync.max_pulls_per_peer` of them), each request bounded.
    async fn pull_catalogue(&self, from: PeerId, publisher: PeerId) -> Result<(), NodeError> {
        let request = Request::GetCatalogue {
            publisher: publisher.to_string(),
        };
        match self.sync_request(from, request).await? {
            Response::Catalogue { catalogue } => {
                // Standards the catalogue refers to come first, so its offers resolve here.
                self.pull_missing_standards(from, &catalogue).await;
                match self.accept_catalogue(from, *catalogue).await {
                    Ok(_) | Err(NodeError::Stale(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Response::Error { code, message } => Err(NodeError::BadPeer {
                peer: from,
                reason: format!("{code}: {message}"),
            }),
            other => Err(unexpected(from, &other)),
        }
    }

    async fn pull_schema(&self, from: PeerId, id: &str, version: &str) -> Result<(), PullError> {
        let request = Request::GetSchema {
            id: id.to_string(),
            version: version.to_string(),
        };
        match self
            .sync_request(from, request)
            .await
            .map_err(PullError::NotServed)?
        {
            Response::Schema { schema } => self
                .accept_schema(from, *schema)
                .await
                .map(|_| ())
                .map_err(PullError::Refused),
            Response::Error { code, message } => Err(PullError::NotServed(NodeError::BadPeer {
                peer: from,
                reason: format!("{code}: {message}"),
            })),
            other => Err(PullError::NotServed(unexpected(from, &other))),
        }
    }

    /// One request of the sync, within [`Self::sync_request_timeout`].
    pub(crate) async fn sync_request(
        &self,
        peer: PeerId,
        request: Request,
    ) -> Result<Response, NodeError> {
        let timeout = self.sync_request_timeout();
        tokio::time::timeout(timeout, self.inner.net.request(peer, request))
            .await
            .map_err(|_| NodeError::BadPeer {
                peer,
                reason: format!("no answer within {} s", timeout.as_secs()),
            })?
            .map_err(NodeError::from)
    }

    /// Anti-entropy with one peer: compare heads, pull what is newer there. One sync per peer
    /// at a time (a sync already running with it makes this one a no-op), within
    /// `sync.peer_deadline_secs` and at most `sync.max_pulls_per_peer` pulls.
    pub async fn sync_with(&self, peer: PeerId) -> Result<(), NodeError> {
        let Some(_claim) = self.inner.sync.claim(peer) else {
            return Ok(());
        };
        self.sync_within_deadline(peer).await
    }

    async fn sync_within_deadline(&self, peer: PeerId) -> Result<(), NodeError> {
        let deadline = self.sync_deadline();
        tokio::time::timeout(deadline, self.sync_heads(peer))
            .await
            .unwrap_or_else(|_| {
                Err(NodeError::BadPeer {
                    peer,
                    reason: format!("sync not done within {} s", deadline.as_secs()),
                })
            })
    }

    async fn sync_heads(&self, peer: PeerId) -> Result<(), NodeError> {
        let (catalogues, schemas, charter) = match self.sync_request(peer, Request::Heads).await? {
            Response::Heads {
                catalogues,
                schemas,
                charter,
            } => (catalogues, schemas, charter),
            other => return Err(unexpected(peer, &other)),
        };
        // The charter first: a new version may change who the members are.
        if let Err(e) = self.sync_charter(peer, charter).await {
            tracing::debug!(peer = %peer, error = %e, "charter not synced");
        }
        let mut budget = self.config().sync.max_pulls_per_peer;
        // Catalogues first: each newer one is only a claim here, pulled on its own.
        for head in &catalogues {
            let Ok(publisher) = head.publisher.parse::<PeerId>() else {
                continue;
            };
            if budget == 0 {
                break;
            }
            if head.sequence > self.held_catalogue_sequence(&publisher) {
                budget -= 1;
                self.offer_catalogue(publisher, peer, head.sequence);
            }
        }
        for s in &schemas {
            if budget == 0 {
                tracing::debug!(peer = %peer, "pull budget of this sync spent");
                break;
            }
            if self.inner.sync.was_refused(peer, s)
                || self.schema_doc(&s.id, Some(&s.version)).is_ok()
            {
                continue;
            }
            budget -= 1;
            match self.pull_schema(peer, &s.id, &s.version).await {
                Ok(()) => {}
                // What it served was refused: not asked of it again, and the end of its
                // standard pulls this round, so a member listing standards we refuse (over its
                // quota, or breaking the rules) costs us one pull a round, not
                // `max_pulls_per_peer`.
                Err(PullError::Refused(e)) => {
                    tracing::warn!(peer = %peer, schema = %s.id, error = %e, "standard refused");
                    self.inner.sync.note_refused(peer, s);
                    break;
                }
                // No answer or an error answer: asked again next round.
                Err(PullError::NotServed(e)) => {
                    tracing::warn!(peer = %peer, schema = %s.id, error = %e, "standard not served");
                    break;
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn anti_entropy_loop(self) {
        let every = Duration::from_secs(self.config().sync.anti_entropy_secs);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Ok(mut peers) = self.inner.net.connected_peers().await else {
                return;
            };
            // A few random peers per round keep the cost flat as the federation grows. Each
            // is synced on its own, so a slow one holds up neither the others nor the next
            // round (which skips it while its sync still runs).
            use rand::seq::SliceRandom;
            peers.shuffle(&mut rand::thread_rng());
            for p in peers.into_iter().take(PEERS_PER_ROUND) {
                let Some(claim) = self.inner.sync.claim(p.peer) else {
                    continue;
                };
                let node = self.clone();
                self.spawn_long(async move {
                    if let Err(e) = node.sync_within_deadline(p.peer).await {
                        tracing::debug!(peer = %p.peer, error = %e, "anti-entropy round failed");
                    }
                    // Witnessing rides on the same round, within the same deadline.
                    let shown = tokio::time::timeout(node.sync_deadline(), node.send_head(p.peer));
                    match shown.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %p.peer, error = %e, "head not witnessed");
                        }
                        Err(_) => tracing::debug!(peer = %p.peer, "head not witnessed in time"),
                    }
                    drop(claim);
                });
            }
            self.retry_pulls();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers() -> (PeerId, PeerId, PeerId) {
        (PeerId::random(), PeerId::random(), PeerId::random())
    }

    #[test]
    fn a_peer_is_synced_once_at_a_time() {
        let sync = CatalogueSync::default();
        let (a, b, _) = peers();
        let claim = sync.claim(a);
        assert!(claim.is_some());
        assert!(sync.claim(a).is_none());
        assert!(sync.claim(b).is_some());
        drop(claim);
        assert!(sync.claim(a).is_some());
    }

    #[test]
    fn announcement_handlings_are_bounded() {
        let sync = CatalogueSync::default();
        let held: Vec<_> = (0..MAX_CONCURRENT_ANNOUNCEMENTS)
            .map(|_| sync.try_announcement_slot())
            .collect();
        assert!(held.iter().all(Option::is_some));
        assert!(sync.try_announcement_slot().is_none());
        drop(held);
        assert!(sync.try_announcement_slot().is_some());
    }

    #[test]
    fn a_holder_that_never_answers_does_not_hold_up_the_publisher_itself() {
        let (publisher, liar, _) = peers();
        let now = Instant::now();
        let mut w = Wants::default();
        assert!(
            w.offer(publisher, liar, 1 << 60, 1, now),
            "pulled from the liar"
        );
        assert!(!w.offer(publisher, liar, 1 << 60, 1, now), "once at a time");
        // The publisher's own announcement is pulled at once, beside the liar's pull.
        assert!(w.offer(publisher, publisher, 2, 1, now));
        w.done(publisher, publisher, true, 2, now);
        assert!(!w.offer(publisher, publisher, 2, 2, now), "held already");
    }

    #[test]
    fn a_failed_pull_is_retried_after_a_wait_that_doubles() {
        let (publisher, holder, _) = peers();
        let now = Instant::now();
        let mut w = Wants::default();
        assert!(w.offer(publisher, holder, 5, 1, now));
        w.done(publisher, holder, false, 1, now);
        assert!(w.due(|_| 1, now).is_empty(), "waits before a retry");
        assert!(
            !w.offer(publisher, holder, 5, 1, now),
            "a new claim waits too"
        );
        let later = now + RETRY_FIRST;
        assert_eq!(w.due(|_| 1, later), vec![(publisher, holder)]);
        // Served less than it claimed: a failure too, and the wait doubles.
        w.done(publisher, holder, true, 3, later);
        assert!(w.due(|_| 3, later + RETRY_FIRST).is_empty());
        assert_eq!(w.due(|_| 3, later + RETRY_FIRST * 2).len(), 1);
    }

    #[test]
    fn a_catalogue_many_claim_is_pulled_from_two_at_once_and_the_publisher() {
        let publisher = PeerId::random();
        let holders: Vec<PeerId> = (0..20).map(|_| PeerId::random()).collect();
        let now = Instant::now();
        let mut w = Wants::default();
        let started = holders
            .iter()
            .filter(|h| w.offer(publisher, **h, 7, 1, now))
            .count();
        assert_eq!(started, MAX_PULLS_PER_PUBLISHER);
        assert!(w.due(|_| 1, now).is_empty(), "the others wait");
        assert!(
            w.offer(publisher, publisher, 7, 1, now),
            "the publisher besides"
        );
        // One relay fails: one more starts in its place; once 7 is held, nothing is left.
        let first = holders
            .iter()
            .find(|h| {
                w.claimed(&publisher, h).is_some() && w.by_publisher[&publisher][*h].in_flight
            })
            .copied()
            .unwrap_or(publisher);
        w.done(publisher, first, false, 1, now);
        assert_eq!(w.due(|_| 1, now).len(), 1);
        w.done(publisher, publisher, true, 7, now);
        assert!(w.due(|_| 7, now).is_empty());
        assert!(w.by_publisher[&publisher].values().all(|c| c.in_flight));
    }

    #[test]
    fn a_pull_that_fails_from_one_holder_is_retried_from_another() {
        let (publisher, relay, liar) = peers();
        let now = Instant::now();
        let mut w = Wants::default();
        assert!(w.offer(publisher, liar, 9, 1, now));
        // The relay's claim came while every pull slot of it was taken: it is due on the next
        // retry sweep, whatever the liar does.
        w.by_publisher.entry(publisher).or_default().insert(
            relay,
            Claim {
                sequence: 4,
                in_flight: false,
                failures: 0,
                retry_at: None,
            },
        );
        w.done(publisher, liar, false, 1, now);
        assert_eq!(w.due(|_| 1, now), vec![(publisher, relay)]);
        // Once we hold 9, nothing is claimed any more.
        w.done(publisher, relay, true, 9, now);
        assert!(w.by_publisher.is_empty());
    }
}
