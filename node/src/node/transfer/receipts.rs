//! Receipts (R7): the fetcher signs one Receipt per delivery it completed (naming the provider,
//! the dataset version, the manifest and data digests and the grant), keeps it with the fetch
//! and sends it until the provider acknowledges it, again whenever the provider reconnects; the
//! provider accepts a receipt only from the receiver it names and only for a manifest it served
//! (original, or derived under a grant we issued to that receiver), stores it by receiver,
//! dataset, version and digest, and records it as a `ReceiptReceived` provenance record, once per
//! delivery (a receipt signed again for a delivery already acknowledged adds nothing).

use std::time::Duration;

use libp2p::PeerId;

use super::{FetchRecord, TransferStatus};
use crate::clock::now_rfc3339;
use crate::model::exchange::{Manifest, Receipt};
use crate::model::message::{Request, Response};
use crate::model::provenance::RecordKind;
use crate::model::signed::Signed;
use crate::node::provenance::{capped, doc};
use crate::node::{Node, NodeError};
use crate::store::RecordTree;

impl Node {
    /// Provider side: a receiver's signed Receipt arrived.
    pub(crate) async fn on_receipt(
        &self,
        peer: PeerId,
        receipt: Signed<Receipt>,
    ) -> Result<(), NodeError> {
        receipt.verify()?;
        let r = &receipt.document;
        let signer = self.signer_peer(&receipt.signer_key()?, &r.receiver)?;
        if signer != peer {
            return Err(NodeError::invalid(
                "receipt",
                format!("receipt signed by {signer}, sent by {peer}"),
            ));
        }
        if !self.is_us(&r.provider) {
            return Err(NodeError::invalid(
                "receipt",
                "the receipt names another provider".into(),
            ));
        }
        // It must acknowledge something we actually served: one of our manifests, original
        // or derived (under a grant to this receiver, or an unconditional offer's masked copy).
        // One read, not every version of the dataset (a receipt arrives for each version).
        let mut known = self
            .manifest(None, &r.dataset, Some(r.version))?
            .into_iter()
            .collect::<Vec<_>>();
        // Served before a key rotation: signed by the key we ran on then.
        for earlier in self.earlier_keys() {
            known.extend(self.manifest(Some(&earlier.to_string()), &r.dataset, Some(r.version))?);
        }
        if let Some(g) = &r.grant_id {
            // A grant's derived delivery is acknowledged only by its grantee.
            let issued = self.issued_grant(g).ok();
            if !issued.is_some_and(|i| {
                self.same_party(&i.grant.document.grantee, &peer)
                    && i.grant.document.dataset == r.dataset
            }) {
                return Err(NodeError::invalid(
                    "receipt",
                    format!(
                        "the receipt names grant {} which we did not issue to {} for {}",
                        capped(g, 64),
                        r.receiver,
                        r.dataset
                    ),
                ));
            }
        }
        let key = super::derivation::derived_key(r.grant_id.as_deref(), &r.dataset, r.version);
        if let Some(m) = self
            .store()
            .record::<Signed<Manifest>>(RecordTree::Derived, &key)?
        {
            known.push(m);
        }
        for earlier in self.earlier_keys() {
            let superseded = super::derivation::superseded_derived_key(&key, &earlier.to_string());
            known.extend(
                self.store()
                    .record::<Signed<Manifest>>(RecordTree::Derived, &superseded)?,
            );
        }
        let matched = known.iter().any(|m| {
            m.digest_hex().ok().as_deref() == Some(r.manifest_digest.as_str())
                && m.document.digest == r.data_digest
        });
        if !matched {
            return Err(NodeError::invalid(
                "receipt",
                format!(
                    "the receipt acknowledges {} v{} with a manifest we did not serve",
                    r.dataset, r.version
                ),
            ));
        }
        let key = format!(
            "{}/{}/{}/{}",
            r.receiver, r.dataset, r.version, r.data_digest
        );
        // One receipt per delivery: one signed again (a resend, or a flood) is acknowledged
        // and adds nothing, so a receiver can cause at most one record per delivery it had.
        if self
            .store()
            .record::<Signed<Receipt>>(RecordTree::Receipts, &key)?
            .is_some()
        {
            tracing::debug!(peer = %peer, dataset = %r.dataset, version = r.version, "receipt already held");
            return Ok(());
        }
        // Recorded before it is stored and acknowledged: a crash in between leaves a record the
        // resent receipt records again, never a stored receipt without its record.
        let mut rec = self.new_record(RecordKind::ReceiptReceived);
        rec.dataset = Some(r.dataset.clone());
        rec.version = Some(r.version);
        rec.data_digest = Some(r.data_digest.clone());
        rec.grant = r.grant_id.clone();
        self.record(rec, Some(peer), doc(&receipt).into_iter().collect())
            .await;
        crate::failpoint::pause(&self.inner.data_dir, "receipt.after_record").await;
        self.store()
            .put_record(RecordTree::Receipts, &key, &receipt)?;
        self.store().flush().await?;
        tracing::info!(peer = %peer, dataset = %r.dataset, version = r.version, "receipt recorded");
        Ok(())
    }

    /// Receipts we hold from receivers of our data.
    pub fn receipts(&self) -> Result<Vec<Signed<Receipt>>, NodeError> {
        Ok(self
            .store()
            .records::<Signed<Receipt>>(RecordTree::Receipts)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Sends again the receipts `peer` has not acknowledged (called when it connects).
    pub(crate) async fn resend_receipts(&self, peer: PeerId) {
        let Ok(records) = self.store().records::<FetchRecord>(RecordTree::Fetches) else {
            return;
        };
        let who = peer.to_string();
        for (_, mut rec) in records {
            if rec.view.peer == who
                && rec.view.status == TransferStatus::Done
                && !rec.receipt_acknowledged
            {
                self.send_receipt(peer, &mut rec).await;
            }
        }
    }

    pub(super) async fn send_receipt(&self, peer: PeerId, record: &mut FetchRecord) {
        let Some(manifest) = &record.manifest else {
            return;
        };
        let m = &manifest.document;
        let Ok(manifest_digest) = manifest.digest_hex() else {
            return;
        };
        // A receipt already signed is sent as it is: one receipt per delivery.
        if let Some(existing) = record.receipt.clone() {
            return self.deliver_receipt(peer, record, existing).await;
        }
        let receipt = Receipt {
            receiver: self.peer_id_text().to_owned(),
            provider: m.publisher.clone(),
            dataset: m.dataset.clone(),
            version: m.version,
            manifest_digest,
            data_digest: m.digest.clone(),
            grant_id: record.view.grant.clone(),
            received_at: now_rfc3339(),
        };
        let Ok(signed) = Signed::sign(receipt, self.inner.key.signing_key()) else {
            return;
        };
        record.receipt = Some(signed.clone());
        self.save_fetch(record);
        crate::failpoint::pause(&self.inner.data_dir, "receipt.before_send").await;
        self.deliver_receipt(peer, record, signed).await;
    }

    async fn deliver_receipt(
        &self,
        peer: PeerId,
        record: &mut FetchRecord,
        signed: Signed<Receipt>,
    ) {
        for attempt in 0..3u32 {
            let request = Request::Receipt {
                receipt: Box::new(signed.clone()),
            };
            match self.inner.net.request(peer, request).await {
                Ok(Response::Ack) => {
                    record.receipt_acknowledged = true;
                    self.save_fetch(record);
                    return;
                }
                Ok(other) => {
                    tracing::warn!(peer = %peer, answer = ?other, "provider refused our receipt");
                    return;
                }
                Err(e) => {
                    tracing::info!(peer = %peer, error = %e, attempt, "receipt not delivered; retrying");
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
            }
        }
    }
}
