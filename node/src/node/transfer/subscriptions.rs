//! Subscriptions to other members' datasets: kept in the database by publisher and dataset;
//! each new version the publisher's catalogue announces is fetched once (a conditional offer
//! waits for a grant, and the subscription notes why it waits), and the latest version fetched
//! is remembered.

use libp2p::PeerId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::FetchRecord;
use crate::clock::now_rfc3339;
use crate::model::catalogue::ShareType;
use crate::model::region::Region;
use crate::node::{Node, NodeError};
use crate::store::RecordTree;

/// A subscription to another member's dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Subscription {
    /// The publisher.
    pub publisher: String,
    /// Its region.
    pub region: Region,
    /// The offer identifier.
    pub dataset: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// The latest version fetched under it (0: none yet).
    pub fetched_version: u64,
    /// Why the latest version is not fetched yet, if something stands in the way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The database key of a subscription: the publisher's peer id and the dataset identifier.
fn sub_key(publisher: &str, dataset: &str) -> String {
    format!("{publisher}/{dataset}")
}

impl Node {
    /// Subscribes to `target`: its latest version is fetched now and each new one as it is
    /// announced (a conditional offer needs a grant; the subscription waits for one).
    pub async fn subscribe(&self, target: &str) -> Result<Subscription, NodeError> {
        let t = self.resolve_target(target)?;
        if t.offer.offer.share_type == ShareType::NotShared {
            return Err(NodeError::invalid(
                "target",
                format!("{} is not shared (不予共享)", t.offer.offer.identifier),
            ));
        }
        let publisher = t.peer.to_string();
        let key = sub_key(&publisher, &t.offer.offer.identifier);
        let sub = match self
            .store()
            .record::<Subscription>(RecordTree::Subscriptions, &key)?
        {
            Some(s) => s,
            None => {
                let s = Subscription {
                    publisher,
                    region: t.region,
                    dataset: t.offer.offer.identifier.clone(),
                    created_at: now_rfc3339(),
                    fetched_version: 0,
                    note: None,
                };
                self.store()
                    .put_record(RecordTree::Subscriptions, &key, &s)?;
                self.store().flush().await?;
                tracing::info!(peer = %t.peer, dataset = %s.dataset, "subscribed");
                s
            }
        };
        self.kick_subscription(t.peer, &sub.dataset);
        Ok(sub)
    }

    /// Ends a subscription.
    pub async fn unsubscribe(&self, target: &str) -> Result<(), NodeError> {
        let t = self.resolve_target(target)?;
        let key = sub_key(&t.peer.to_string(), &t.offer.offer.identifier);
        if !self
            .store()
            .remove_record(RecordTree::Subscriptions, &key)?
        {
            return Err(NodeError::NotFound(format!("no subscription to {target}")));
        }
        self.store().flush().await?;
        Ok(())
    }

    /// Our subscriptions.
    pub fn subscriptions(&self) -> Result<Vec<Subscription>, NodeError> {
        Ok(self
            .store()
            .records::<Subscription>(RecordTree::Subscriptions)?
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    /// A catalogue of `publisher` arrived: fetch what our subscriptions to it are missing.
    pub(crate) fn on_catalogue_changed(&self, publisher: PeerId) {
        let Ok(subs) = self.subscriptions() else {
            return;
        };
        let p = publisher.to_string();
        for s in subs {
            if s.publisher == p || self.follow_rotated_publisher(&s, publisher) {
                self.kick_subscription(publisher, &s.dataset);
            }
        }
    }

    /// A subscription to a member that rotated its key follows the member to its newer key
    /// once that key's catalogue offers the dataset: the record moves to the newer key, keeping
    /// the version fetched (a rotated publisher keeps numbering its versions). Returns whether
    /// it moved.
    fn follow_rotated_publisher(&self, sub: &Subscription, newer: PeerId) -> bool {
        let Some(charter) = &self.inner.charter else {
            return false;
        };
        let Ok(older) = sub.publisher.parse::<PeerId>() else {
            return false;
        };
        if !charter.supersedes(&newer, &older) {
            return false;
        }
        let offered = self.catalogue_of(&newer).is_some_and(|c| {
            c.document
                .offers
                .iter()
                .any(|o| o.offer.identifier == sub.dataset)
        });
        if !offered {
            return false;
        }
        let moved = Subscription {
            publisher: newer.to_string(),
            ..sub.clone()
        };
        let store = self.store();
        let new_key = sub_key(&moved.publisher, &moved.dataset);
        let kept = match store.record::<Subscription>(RecordTree::Subscriptions, &new_key) {
            // Subscribed to the newer key too: the one that fetched further stays.
            Ok(Some(held)) if held.fetched_version >= moved.fetched_version => Ok(()),
            Ok(_) => store.put_record(RecordTree::Subscriptions, &new_key, &moved),
            Err(e) => Err(e),
        };
        let removed = kept.and_then(|()| {
            store
                .remove_record(
                    RecordTree::Subscriptions,
                    &sub_key(&sub.publisher, &sub.dataset),
                )
                .map(|_| ())
        });
        match removed {
            Ok(()) => {
                tracing::info!(peer = %newer, earlier = %older, dataset = %sub.dataset, "subscription follows its publisher's rotated key");
                true
            }
            Err(e) => {
                tracing::warn!(peer = %newer, dataset = %sub.dataset, error = %e, "subscription not moved to the publisher's rotated key");
                false
            }
        }
    }

    /// Starts the fetch a subscription needs, if any.
    pub(crate) fn kick_subscription(&self, publisher: PeerId, dataset: &str) {
        let key = sub_key(&publisher.to_string(), dataset);
        let Ok(Some(mut sub)) = self
            .store()
            .record::<Subscription>(RecordTree::Subscriptions, &key)
        else {
            return;
        };
        let Ok(t) = self.resolve_target(&format!("{publisher}/{dataset}")) else {
            return;
        };
        let Some(latest) = t.offer.latest_version else {
            return;
        };
        if latest <= sub.fetched_version {
            return;
        }
        let note = match self.fetch_from(&t, Some(latest), None, None) {
            Ok(view) => {
                tracing::info!(peer = %publisher, dataset, version = latest, transfer = %view.id, "subscription fetching new version");
                None
            }
            Err(e) => Some(e.to_string()),
        };
        if sub.note != note {
            sub.note = note;
            let _ = self
                .store()
                .put_record(RecordTree::Subscriptions, &key, &sub);
        }
    }

    pub(super) fn note_subscription_progress(&self, record: &FetchRecord) {
        let Some(m) = &record.manifest else {
            return;
        };
        let key = sub_key(&m.document.publisher, &m.document.dataset);
        if let Ok(Some(mut sub)) = self
            .store()
            .record::<Subscription>(RecordTree::Subscriptions, &key)
        {
            if m.document.version > sub.fetched_version {
                sub.fetched_version = m.document.version;
                sub.note = None;
                let _ = self
                    .store()
                    .put_record(RecordTree::Subscriptions, &key, &sub);
            }
        }
        // A newer version may have been announced while this one moved.
        if let Ok(p) = m.document.publisher.parse::<PeerId>() {
            self.kick_subscription(p, &m.document.dataset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_publisher_slash_dataset() {
        // Stored keys outlive the code: subscriptions made by earlier versions must be found.
        let peer = "12D3KooWGzYHhzDNaJLL9JEpfRs6wMPTCmbzJbMbR6SFkXrZDsfZ";
        assert_eq!(
            sub_key(peer, "licences"),
            "12D3KooWGzYHhzDNaJLL9JEpfRs6wMPTCmbzJbMbR6SFkXrZDsfZ/licences"
        );
        assert_ne!(sub_key(peer, "licences"), sub_key(peer, "permits"));
        let other = PeerId::random().to_string();
        assert_ne!(sub_key(peer, "licences"), sub_key(&other, "licences"));
    }
}
