//! Catalogue and standard synchronisation: pulling what an announcement names, anti-entropy
//! rounds that compare heads with a few peers, and the limits that keep a network joining at once
//! from swamping a node. [`CatalogueSync`] owns those limits: the announcement-pull and
//! connect-sync semaphores and the set of publishers being pulled now.

use std::collections::HashSet;
use std::sync::Arc;

use libp2p::PeerId;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{ANTI_ENTROPY_EVERY, Node, NodeError, unexpected};
use crate::model::message::{Announcement, Request, Response};

/// Announcement-triggered pulls in flight at once.
pub const MAX_CONCURRENT_PULLS: usize = 32;
/// Syncs on connect in flight at once.
pub const MAX_CONNECT_SYNCS: usize = 4;

/// The limits on pulls and syncs, and who is being pulled now.
#[derive(Debug)]
pub(crate) struct CatalogueSync {
    pulls: Arc<Semaphore>,
    connect_syncs: Arc<Semaphore>,
    pulling: Arc<Mutex<HashSet<String>>>,
}

impl Default for CatalogueSync {
    fn default() -> Self {
        CatalogueSync {
            pulls: Arc::new(Semaphore::new(MAX_CONCURRENT_PULLS)),
            connect_syncs: Arc::new(Semaphore::new(MAX_CONNECT_SYNCS)),
            pulling: Arc::default(),
        }
    }
}

impl CatalogueSync {
    /// A slot for an announcement's pull, if one is free now (otherwise the announcement is
    /// dropped: anti-entropy fetches what it named within one round).
    pub(crate) fn try_pull_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.pulls.clone().try_acquire_owned().ok()
    }

    /// A slot for a sync on connect; waits for one.
    pub(crate) async fn connect_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.connect_syncs.clone().acquire_owned().await.ok()
    }

    /// Claims `publisher` for one pull; `None` while another pull of it runs. The claim ends when
    /// the returned guard is dropped, however the pull ends.
    pub(crate) fn claim(&self, publisher: &str) -> Option<PullClaim> {
        if !self.pulling.lock().insert(publisher.to_string()) {
            return None;
        }
        Some(PullClaim {
            set: self.pulling.clone(),
            publisher: publisher.to_string(),
        })
    }
}

/// One publisher being pulled; released on drop.
#[derive(Debug)]
pub(crate) struct PullClaim {
    set: Arc<Mutex<HashSet<String>>>,
    publisher: String,
}

impl Drop for PullClaim {
    fn drop(&mut self) {
        self.set.lock().remove(&self.publisher);
    }
}

impl Node {
    pub(crate) async fn on_announcement(&self, source: PeerId, announcement: Announcement) {
        let result = match announcement {
            Announcement::Catalogue {
                publisher,
                sequence,
                ..
            } => {
                let held = publisher
                    .parse::<PeerId>()
                    .ok()
                    .and_then(|p| self.catalogue_of(&p))
                    .map(|c| c.document.sequence)
                    .unwrap_or(0);
                if sequence > held {
                    self.pull_catalogue(source, &publisher).await
                } else {
                    Ok(())
                }
            }
            Announcement::Schema { id, version, .. } => {
                if self.schema_doc(&id, Some(&version)).is_err() {
                    self.pull_schema(source, &id, &version).await
                } else {
                    Ok(())
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(peer = %source, error = %e, "announced document refused");
        }
    }

    async fn pull_catalogue(&self, from: PeerId, publisher: &str) -> Result<(), NodeError> {
        // One pull per publisher at a time, however many peers announce or offer it.
        let Some(_claim) = self.inner.sync.claim(publisher) else {
            return Ok(());
        };
        self.pull_catalogue_now(from, publisher).await
    }

    async fn pull_catalogue_now(&self, from: PeerId, publisher: &str) -> Result<(), NodeError> {
        let request = Request::GetCatalogue {
            publisher: publisher.to_string(),
        };
        match self.inner.net.request(from, request).await? {
            Response::Catalogue { catalogue } => {
                // Standards the catalogue refers to come first, so its offers resolve here.
                for offer in &catalogue.document.offers {
                    let r = &offer.conforms_to;
                    if self.schema_doc(&r.id, Some(&r.version)).is_err() {
                        let _ = self.pull_schema(from, &r.id, &r.version).await;
                    }
                }
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

    async fn pull_schema(&self, from: PeerId, id: &str, version: &str) -> Result<(), NodeError> {
        let request = Request::GetSchema {
            id: id.to_string(),
            version: version.to_string(),
        };
        match self.inner.net.request(from, request).await? {
            Response::Schema { schema } => self.accept_schema(from, *schema).await.map(|_| ()),
            Response::Error { code, message } => Err(NodeError::BadPeer {
                peer: from,
                reason: format!("{code}: {message}"),
            }),
            other => Err(unexpected(from, &other)),
        }
    }

    /// Anti-entropy with one peer: compare heads, pull what is newer there.
    pub async fn sync_with(&self, peer: PeerId) -> Result<(), NodeError> {
        let (catalogues, schemas) = match self.inner.net.request(peer, Request::Heads).await? {
            Response::Heads {
                catalogues,
                schemas,
            } => (catalogues, schemas),
            other => return Err(unexpected(peer, &other)),
        };
        for s in schemas.iter().take(10_000) {
            if self.schema_doc(&s.id, Some(&s.version)).is_err() {
                if let Err(e) = self.pull_schema(peer, &s.id, &s.version).await {
                    tracing::warn!(peer = %peer, schema = %s.id, error = %e, "standard refused");
                }
            }
        }
        for head in catalogues.iter().take(10_000) {
            let Ok(publisher) = head.publisher.parse::<PeerId>() else {
                continue;
            };
            if publisher == self.peer_id() {
                continue;
            }
            let held = self
                .catalogue_of(&publisher)
                .map(|c| c.document.sequence)
                .unwrap_or(0);
            if head.sequence > held {
                if let Err(e) = self.pull_catalogue(peer, &head.publisher).await {
                    tracing::warn!(peer = %peer, publisher = %head.publisher, error = %e, "catalogue refused");
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn anti_entropy_loop(self) {
        let mut tick = tokio::time::interval(ANTI_ENTROPY_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Ok(mut peers) = self.inner.net.connected_peers().await else {
                return;
            };
            // A few random peers per round keep the cost flat as the federation grows.
            use rand::seq::SliceRandom;
            peers.shuffle(&mut rand::thread_rng());
            for p in peers.into_iter().take(3) {
                if let Err(e) = self.sync_with(p.peer).await {
                    tracing::debug!(peer = %p.peer, error = %e, "anti-entropy round failed");
                }
                // Witnessing rides on the same round.
                if let Err(e) = self.send_head(p.peer).await {
                    tracing::debug!(peer = %p.peer, error = %e, "head not witnessed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publisher_is_pulled_once_at_a_time() {
        let sync = CatalogueSync::default();
        let claim = sync.claim("12D3KooWA");
        assert!(claim.is_some());
        assert!(sync.claim("12D3KooWA").is_none());
        assert!(sync.claim("12D3KooWB").is_some());
        drop(claim);
        assert!(sync.claim("12D3KooWA").is_some());
    }

    #[test]
    fn announcement_pulls_are_bounded() {
        let sync = CatalogueSync::default();
        let held: Vec<_> = (0..MAX_CONCURRENT_PULLS)
            .map(|_| sync.try_pull_slot())
            .collect();
        assert!(held.iter().all(Option::is_some));
        assert!(sync.try_pull_slot().is_none());
        drop(held);
        assert!(sync.try_pull_slot().is_some());
    }
}
