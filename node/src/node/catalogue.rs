//! The catalogue service: our three lists (offers, demands, withheld), the signed snapshot we
//! issue after every change, the snapshots of other members we accept (newer, verified, members
//! only), anti-entropy, local search over the whole network, and demand matching.

use schemars::JsonSchema;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use libp2p::PeerId;
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};

use super::schemas::to_json;
use super::{Node, NodeError};
use crate::clock::now_rfc3339;
use crate::model::catalogue::{
    Catalogue, CatalogueEntry, Demand, InformationItem, OfferInput, SchemaRef, ShareType, Withheld,
    valid_identifier,
};
use crate::model::message::Announcement;
use crate::model::region::Region;
use crate::model::signed::Signed;
use crate::model::standard;

/// The three lists, as stored under these names.
pub const OFFERS: &str = "offer";
/// Demands list name.
pub const DEMANDS: &str = "demand";
/// Withheld list name.
pub const WITHHELD: &str = "withheld";

/// A search over the network's catalogues.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct SearchQuery {
    /// Words that must all appear in title, description, keywords, themes, identifier or
    /// resource code (case-insensitive).
    #[serde(default)]
    pub text: Option<String>,
    /// Standard id.
    #[serde(default)]
    pub schema: Option<String>,
    /// Publisher's region (a province code also matches its cities).
    #[serde(default)]
    pub region: Option<Region>,
    /// Share type.
    #[serde(default)]
    pub share_type: Option<ShareType>,
    /// Most hits to return (default 500, at most 10,000), in region and identifier order.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Hits returned when a search names no limit.
pub const DEFAULT_SEARCH_LIMIT: usize = 500;
/// The largest limit a search may ask for.
pub const MAX_SEARCH_LIMIT: usize = 10_000;

/// One search result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SearchHit {
    /// Publishing node.
    pub publisher: String,
    /// Its region.
    pub region: Region,
    /// "310000 上海市 Shanghai".
    pub region_label: String,
    /// Its organisation.
    pub organisation: String,
    /// The offer.
    pub entry: CatalogueEntry,
}

/// A demand of one node met by an offer of another.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DemandMatch {
    /// Whose demand.
    pub demander: String,
    /// Its region label.
    pub demander_region: String,
    /// The demand.
    pub demand: Demand,
    /// Who offers.
    pub provider: String,
    /// Its region label.
    pub provider_region: String,
    /// The offer's identifier.
    pub offer: String,
    /// The offer's title.
    pub offer_title: String,
    /// The standard version offered.
    pub schema_version: String,
    /// Its share type.
    pub share_type: ShareType,
}

/// `yrd demand match`: what meets our demands, and whose demands our offers meet.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MatchReport {
    /// For each of our demands, the offers of others that meet it.
    pub for_our_demands: Vec<DemandMatch>,
    /// For each of our offers, the demands of others it meets.
    pub for_our_offers: Vec<DemandMatch>,
    /// Our demands nobody meets yet.
    pub unmet_demands: Vec<String>,
}

/// Catalogue heads one node holds, for anti-entropy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct CatalogueHead {
    /// Publisher peer id.
    pub publisher: String,
    /// Sequence held.
    pub sequence: u64,
}

/// The latest verified catalogue of every member (ours included), each with the lowercased search
/// text of its offers, built once when it is held rather than on every search. One lock holds
/// both, so a snapshot and its search text always change together.
#[derive(Debug, Default)]
pub(crate) struct HeldCatalogues {
    held: RwLock<HashMap<PeerId, Held>>,
    /// [`HeldCatalogues::offers_named`] of the datasets asked for since the last snapshot was
    /// held (at most [`MAX_NAMED_KEPT`] names): a target is resolved on every query call, and
    /// copying its offer out of the snapshot each time cost the caller a tenth of its
    /// allocations. Changed only under `held`'s lock, so it never outlives the snapshots.
    named: parking_lot::Mutex<HashMap<String, Arc<[HeldOffer]>>>,
    /// Taken while a received snapshot is compared with the one held and stored: pulls of one
    /// publisher from several holders run at once, and an older one must not overwrite a newer.
    accepting: parking_lot::Mutex<()>,
}

/// A snapshot and the search text of each of its offers (same order).
type Held = (Signed<Catalogue>, Vec<String>);

/// Dataset names whose offers [`HeldCatalogues`] keeps resolved; the names come from callers,
/// so the map is emptied rather than grown beyond this.
const MAX_NAMED_KEPT: usize = 256;

/// An offer of a held snapshot: its publisher (as the snapshot names it), the publisher's
/// region and the offer.
#[derive(Debug, Clone)]
pub(crate) struct HeldOffer {
    pub publisher: PeerId,
    pub region: Region,
    pub offer: Arc<CatalogueEntry>,
}

impl HeldCatalogues {
    /// Keeps a snapshot the caller has verified.
    pub(crate) fn hold(&self, peer: PeerId, signed: Signed<Catalogue>) {
        let texts: Vec<String> = signed.document.offers.iter().map(search_text).collect();
        let mut held = self.held.write();
        held.insert(peer, (signed, texts));
        self.named.lock().clear();
    }

    /// The snapshot held of `peer`.
    pub(crate) fn get(&self, peer: &PeerId) -> Option<Signed<Catalogue>> {
        self.held.read().get(peer).map(|(c, _)| c.clone())
    }

    /// The sequence of the snapshot held of `peer`, without copying it.
    pub(crate) fn sequence(&self, peer: &PeerId) -> Option<u64> {
        self.held.read().get(peer).map(|(c, _)| c.document.sequence)
    }

    /// The offers named `dataset` in the snapshots held, with their publisher (as the snapshot
    /// names it; a snapshot naming no valid peer id offers nothing) and its region. Only those
    /// are copied, once per snapshot held, not every snapshot (a target is resolved on every
    /// query call, and a federation's catalogues together are large).
    pub(crate) fn offers_named(&self, dataset: &str) -> Arc<[HeldOffer]> {
        let held = self.held.read();
        let mut named = self.named.lock();
        if let Some(found) = named.get(dataset) {
            return found.clone();
        }
        let found: Arc<[HeldOffer]> = held
            .values()
            .filter_map(|(c, _)| {
                let publisher = c.document.publisher.parse::<PeerId>().ok()?;
                let o = c
                    .document
                    .offers
                    .iter()
                    .find(|o| o.offer.identifier == dataset)?;
                Some(HeldOffer {
                    publisher,
                    region: c.document.region,
                    offer: Arc::new(o.clone()),
                })
            })
            .collect();
        if named.len() >= MAX_NAMED_KEPT {
            named.clear();
        }
        named.insert(dataset.to_owned(), found.clone());
        found
    }

    /// Every snapshot held.
    pub(crate) fn all(&self) -> Vec<Signed<Catalogue>> {
        self.held.read().values().map(|(c, _)| c.clone()).collect()
    }

    /// The sequence held of each publisher.
    pub(crate) fn heads(&self) -> Vec<CatalogueHead> {
        self.held
            .read()
            .iter()
            .map(|(p, (c, _))| CatalogueHead {
                publisher: p.to_string(),
                sequence: c.document.sequence,
            })
            .collect()
    }

    /// Searches every snapshot held.
    pub(crate) fn search(&self, query: &SearchQuery) -> Vec<SearchHit> {
        let words: Vec<String> = query
            .text
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        let held = self.held.read();
        // Collect references first and clone only the hits returned.
        let mut found: Vec<(&Catalogue, &CatalogueEntry)> = Vec::new();
        for (c, texts) in held.values() {
            let doc = &c.document;
            if let Some(r) = query.region {
                if doc.region != r && doc.region.province() != r {
                    continue;
                }
            }
            for (i, entry) in doc.offers.iter().enumerate() {
                if query
                    .schema
                    .as_deref()
                    .is_some_and(|s| s != entry.conforms_to.id)
                    || query
                        .share_type
                        .is_some_and(|t| t != entry.offer.share_type)
                {
                    continue;
                }
                if !words.is_empty() {
                    let text = texts.get(i).map(String::as_str).unwrap_or("");
                    if !words.iter().all(|w| text.contains(w.as_str())) {
                        continue;
                    }
                }
                found.push((doc, entry));
            }
        }
        found.sort_by(|a, b| {
            a.0.region
                .cmp(&b.0.region)
                .then(a.1.offer.identifier.cmp(&b.1.offer.identifier))
        });
        let limit = query
            .limit
            .unwrap_or(DEFAULT_SEARCH_LIMIT)
            .min(MAX_SEARCH_LIMIT);
        found
            .into_iter()
            .take(limit)
            .map(|(doc, entry)| SearchHit {
                publisher: doc.publisher.clone(),
                region: doc.region,
                region_label: doc.region.label(),
                organisation: doc.organisation.clone(),
                entry: entry.clone(),
            })
            .collect()
    }
}

impl Node {
    fn local<T: serde::de::DeserializeOwned>(&self, list: &str) -> Result<Vec<T>, NodeError> {
        self.store()
            .local_list(list)?
            .into_iter()
            .map(|v| {
                serde_json::from_value(v).map_err(|e| {
                    NodeError::Store(crate::store::StoreError::Corrupt {
                        tree: "local_lists",
                        message: format!("stored {list} unreadable: {e}"),
                    })
                })
            })
            .collect()
    }

    /// Our offers.
    pub fn offers(&self) -> Result<Vec<CatalogueEntry>, NodeError> {
        self.local(OFFERS)
    }

    /// Our demands.
    pub fn demands(&self) -> Result<Vec<Demand>, NodeError> {
        self.local(DEMANDS)
    }

    /// Our withheld entries.
    pub fn withheld(&self) -> Result<Vec<Withheld>, NodeError> {
        self.local(WITHHELD)
    }

    /// Completes and checks an offer: the standard must be known.
    fn complete_offer(&self, input: OfferInput) -> Result<CatalogueEntry, NodeError> {
        let invalid = |m: String| Err(NodeError::invalid("offer", m));
        if !valid_identifier(&input.identifier) {
            return invalid(format!(
                "offer identifier {:?}: expected 1-64 characters of a-z 0-9 . _ - starting with a letter or digit",
                input.identifier
            ));
        }
        for (field, value, max) in [
            ("title", &input.title, 200),
            ("description", &input.description, 4000),
            ("media_type", &input.media_type, 100),
            ("resource_code", &input.resource_code, 64),
        ] {
            if value.trim().is_empty() || value.chars().count() > max {
                return invalid(format!(
                    "offer {}: field `{field}` must be 1 to {max} characters",
                    input.identifier
                ));
            }
        }
        if input.share_type != ShareType::Unconditional
            && input
                .share_conditions
                .as_deref()
                .is_none_or(|c| c.trim().is_empty())
        {
            return invalid(format!(
                "offer {}: field `share_conditions` (共享条件) is required when share_type is {}",
                input.identifier,
                serde_json::to_value(input.share_type)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ));
        }
        if input.theme.len() > 32 || input.keyword.len() > 64 || input.spatial.len() > 64 {
            return invalid(format!(
                "offer {}: too many themes, keywords or regions",
                input.identifier
            ));
        }
        let schema = self.schema_doc(&input.schema_id, Some(&input.schema_version)).map_err(|_| {
            NodeError::invalid("schema_id", format!(
                "offer {}: standard {}@{} is not known to this node; publish it or wait for it to arrive (`yrd schema list --network`)",
                input.identifier, input.schema_id, input.schema_version
            ))
        })?;
        let compiled = standard::compile(&schema.document.schema).map_err(|e| {
            NodeError::invalid("schema_id", format!("standard {}: {e}", input.schema_id))
        })?;
        super::query::check_query_keys(&input.identifier, &input.query_keys, &compiled)?;
        let information_items = compiled
            .fields()
            .iter()
            .map(|f| InformationItem {
                name: f.name.clone(),
                title: f.title.clone(),
                data_type: f.types.join("|"),
                required: f.required,
                personal_data: f.personal.clone(),
                mask: f.mask,
            })
            .collect();
        let mut input = input;
        if input.spatial.is_empty() {
            input.spatial.push(self.region());
        }
        Ok(CatalogueEntry {
            publisher: self.config().node.name.clone(),
            conforms_to: SchemaRef {
                id: schema.document.id.clone(),
                version: schema.document.version.clone(),
                digest: schema.document.digest.clone(),
            },
            information_items,
            modified: now_rfc3339(),
            latest_version: None,
            byte_size: None,
            checksum: None,
            offer: input,
        })
    }

    /// Adds or replaces an offer and issues a new catalogue.
    pub async fn add_offer(&self, input: OfferInput) -> Result<CatalogueEntry, NodeError> {
        let _guard = self.inner.write_lock.lock().await;
        let mut entry = self.complete_offer(input)?;
        // Keep what publishing recorded about the latest version.
        if let Some(old) = self
            .offers()?
            .into_iter()
            .find(|o| o.offer.identifier == entry.offer.identifier)
        {
            entry.latest_version = old.latest_version;
            entry.byte_size = old.byte_size;
            entry.checksum = old.checksum;
        }
        self.store()
            .put_local(OFFERS, &entry.offer.identifier, &to_json(&entry)?)?;
        self.issue_catalogue().await?;
        Ok(entry)
    }

    /// Adds or replaces a demand and issues a new catalogue.
    pub async fn add_demand(&self, demand: Demand) -> Result<Demand, NodeError> {
        if !valid_identifier(&demand.identifier) {
            return Err(NodeError::invalid(
                "identifier",
                format!("demand identifier {:?} is not valid", demand.identifier),
            ));
        }
        VersionReq::parse(&demand.version_req).map_err(|e| {
            NodeError::invalid("version_req", format!(
                "demand {}: version_req {:?} is not a semver requirement such as \"^1.0\" ({e})",
                demand.identifier, demand.version_req
            ))
        })?;
        for (field, value) in [
            ("title", &demand.title),
            ("purpose", &demand.purpose),
            ("legal_basis", &demand.legal_basis),
            ("schema_id", &demand.schema_id),
        ] {
            if value.trim().is_empty() || value.chars().count() > 2000 {
                return Err(NodeError::invalid(
                    "demand",
                    format!(
                        "demand {}: field `{field}` must be 1 to 2000 characters",
                        demand.identifier
                    ),
                ));
            }
        }
        let _guard = self.inner.write_lock.lock().await;
        self.store()
            .put_local(DEMANDS, &demand.identifier, &to_json(&demand)?)?;
        self.issue_catalogue().await?;
        Ok(demand)
    }

    /// Adds or replaces a withheld entry and issues a new catalogue.
    pub async fn add_withheld(&self, entry: Withheld) -> Result<Withheld, NodeError> {
        if !valid_identifier(&entry.identifier) {
            return Err(NodeError::invalid(
                "identifier",
                format!("withheld identifier {:?} is not valid", entry.identifier),
            ));
        }
        for (field, value) in [
            ("title", &entry.title),
            ("reason", &entry.reason),
            ("legal_basis", &entry.legal_basis),
        ] {
            if value.trim().is_empty() || value.chars().count() > 2000 {
                return Err(NodeError::invalid(
                    "withheld",
                    format!(
                        "withheld {}: field `{field}` must be 1 to 2000 characters",
                        entry.identifier
                    ),
                ));
            }
        }
        let _guard = self.inner.write_lock.lock().await;
        self.store()
            .put_local(WITHHELD, &entry.identifier, &to_json(&entry)?)?;
        self.issue_catalogue().await?;
        Ok(entry)
    }

    /// Removes an entry from one of our lists and issues a new catalogue.
    pub async fn remove_entry(&self, list: &str, id: &str) -> Result<(), NodeError> {
        let _guard = self.inner.write_lock.lock().await;
        if !self.store().remove_local(list, id)? {
            return Err(NodeError::NotFound(format!(
                "no {list} {id:?} in our catalogue"
            )));
        }
        self.issue_catalogue().await?;
        Ok(())
    }

    /// Our latest signed catalogue, if we issued one.
    pub fn own_catalogue(&self) -> Result<Option<Signed<Catalogue>>, NodeError> {
        Ok(self.catalogue_of(&self.peer_id()))
    }

    pub(crate) fn catalogue_of(&self, peer: &PeerId) -> Option<Signed<Catalogue>> {
        self.inner.catalogues.get(peer)
    }

    /// The sequence of the catalogue held of `peer` (0: none), without copying the catalogue:
    /// asked for every publisher in every sync round, and by the simulator's convergence
    /// checks every few milliseconds on every node.
    pub(crate) fn held_catalogue_sequence(&self, peer: &PeerId) -> u64 {
        self.inner.catalogues.sequence(peer).unwrap_or(0)
    }

    /// Signs a new snapshot of our lists with the next sequence number, stores it (flushed),
    /// and announces it. Callers hold the write lock.
    pub(crate) async fn issue_catalogue(&self) -> Result<Signed<Catalogue>, NodeError> {
        let sequence = self
            .own_catalogue()?
            .map(|c| c.document.sequence + 1)
            .unwrap_or(1);
        let catalogue = Catalogue {
            publisher: self.peer_id_text().to_owned(),
            region: self.region(),
            organisation: self.config().node.name.clone(),
            sequence,
            issued_at: now_rfc3339(),
            offers: self.offers()?,
            demands: self.demands()?,
            withheld: self.withheld()?,
        };
        let signed = Signed::sign(catalogue, self.inner.key.signing_key())?;
        // Recorded before it is stored and announced: a crash in between leaves a record of a
        // catalogue no one saw (the next one takes its sequence again), never a catalogue the
        // members hold with no record.
        let r = self.new_record(crate::model::provenance::RecordKind::CatalogueIssued);
        self.record(
            r,
            None,
            super::provenance::doc(&signed).into_iter().collect(),
        )
        .await;
        self.store()
            .put_catalogue(&self.peer_id(), &to_json(&signed)?)?;
        self.store().flush().await?;
        self.hold_catalogue(self.peer_id(), signed.clone());
        tracing::info!(sequence, "catalogue issued");
        self.announce(Announcement::Catalogue {
            publisher: self.peer_id_text().to_owned(),
            sequence,
            digest: signed.digest_hex()?,
            catalogue: Some(Box::new(signed.clone())),
        })
        .await;
        Ok(signed)
    }

    /// Loads every stored catalogue into memory (at start).
    pub(crate) fn load_catalogues(&self) -> Result<(), NodeError> {
        let mut map = HashMap::new();
        for (peer, raw) in self.store().catalogues()? {
            match serde_json::from_value::<Signed<Catalogue>>(raw) {
                Ok(c) if c.verify().is_ok() => {
                    map.insert(peer, c);
                }
                _ => tracing::error!(peer = %peer, "stored catalogue does not verify; dropped"),
            }
        }
        for (peer, c) in map {
            // Ours from before a key rotation: not another member's catalogue.
            if self.earlier_keys().contains(&peer) {
                continue;
            }
            // With a charter, only its members' catalogues under the region it binds them to
            // (a catalogue kept from before the node ran on the charter may say otherwise).
            if let Some(charter) = &self.inner.charter {
                if charter.region_of(&peer) != Some(c.document.region) {
                    tracing::warn!(peer = %peer, region = %c.document.region.label(), "stored catalogue not held: its region is not the charter's for its publisher");
                    continue;
                }
            }
            self.hold_catalogue(peer, c);
        }
        Ok(())
    }

    /// Keeps a verified snapshot in memory with the lowercased text search matches against,
    /// built once here rather than on every search.
    fn hold_catalogue(&self, peer: PeerId, signed: Signed<Catalogue>) {
        self.inner.catalogues.hold(peer, signed);
    }

    /// Accepts a catalogue snapshot: verified, signed by its publisher, a member, and newer than
    /// what we hold. Returns whether it was stored.
    /// The entry point of every snapshot that arrives from the network.
    pub async fn accept_catalogue(
        &self,
        from: PeerId,
        signed: Signed<Catalogue>,
    ) -> Result<bool, NodeError> {
        signed.verify()?;
        let publisher = self.signer_peer(&signed.signer_key()?, &signed.document.publisher)?;
        if self.is_own_key(&publisher) {
            return Ok(false);
        }
        if !self.members().contains(&publisher) {
            return Err(NodeError::BadPeer {
                peer: from,
                reason: format!("catalogue of non-member {publisher} refused"),
            });
        }
        if let Some(charter) = &self.inner.charter {
            if let Err(cause) = charter.check_claim(publisher, signed.document.region) {
                let reason = format!("catalogue of {publisher} refused: {cause}");
                self.record_refusal(Some(publisher), None, &reason).await;
                return Err(NodeError::BadPeer { peer: from, reason });
            }
        }
        {
            let _accepting = self.inner.catalogues.accepting.lock();
            let held = self
                .catalogue_of(&publisher)
                .map(|c| c.document.sequence)
                .unwrap_or(0);
            if signed.document.sequence <= held {
                return Err(NodeError::Stale(format!(
                    "catalogue of {publisher} with sequence {} refused: we hold sequence {held}",
                    signed.document.sequence
                )));
            }
            self.store().put_catalogue(&publisher, &to_json(&signed)?)?;
            self.hold_catalogue(publisher, signed.clone());
        }
        tracing::info!(
            peer = %from,
            publisher = %publisher,
            region = %signed.document.region.label(),
            sequence = signed.document.sequence,
            "catalogue accepted"
        );
        self.on_catalogue_changed(publisher);
        Ok(true)
    }

    /// The sequence heads we hold, ours included.
    pub fn catalogue_heads(&self) -> Vec<CatalogueHead> {
        self.inner.catalogues.heads()
    }

    /// The latest catalogue of every member we know, ours included.
    pub fn network_catalogues(&self) -> Vec<Signed<Catalogue>> {
        let mut list: Vec<Signed<Catalogue>> = self.inner.catalogues.all();
        list.sort_by(|a, b| {
            a.document
                .region
                .cmp(&b.document.region)
                .then(a.document.publisher.cmp(&b.document.publisher))
        });
        list
    }

    /// Searches every catalogue we hold, locally.
    pub fn search(&self, query: &SearchQuery) -> Vec<SearchHit> {
        self.inner.catalogues.search(query)
    }

    /// Matches demands and offers across the network, from our point of view.
    pub fn match_demands(&self) -> MatchReport {
        let me = self.peer_id_text().to_owned();
        let catalogues = self.network_catalogues();
        let mut report = MatchReport {
            for_our_demands: Vec::new(),
            for_our_offers: Vec::new(),
            unmet_demands: Vec::new(),
        };
        for demander in &catalogues {
            for demand in &demander.document.demands {
                let Ok(req) = VersionReq::parse(&demand.version_req) else {
                    continue;
                };
                let mut met = false;
                for provider in &catalogues {
                    if provider.document.publisher == demander.document.publisher {
                        continue;
                    }
                    let ours_involved =
                        demander.document.publisher == me || provider.document.publisher == me;
                    if !ours_involved {
                        continue;
                    }
                    if !demand.regions.is_empty()
                        && !demand.regions.iter().any(|r| {
                            *r == provider.document.region
                                || *r == provider.document.region.province()
                        })
                    {
                        continue;
                    }
                    for offer in &provider.document.offers {
                        let version_ok = Version::parse(&offer.conforms_to.version)
                            .is_ok_and(|v| req.matches(&v));
                        if offer.conforms_to.id != demand.schema_id
                            || !version_ok
                            || offer.offer.share_type == ShareType::NotShared
                        {
                            continue;
                        }
                        met = true;
                        let m = DemandMatch {
                            demander: demander.document.publisher.clone(),
                            demander_region: demander.document.region.label(),
                            demand: demand.clone(),
                            provider: provider.document.publisher.clone(),
                            provider_region: provider.document.region.label(),
                            offer: offer.offer.identifier.clone(),
                            offer_title: offer.offer.title.clone(),
                            schema_version: offer.conforms_to.version.clone(),
                            share_type: offer.offer.share_type,
                        };
                        if demander.document.publisher == me {
                            report.for_our_demands.push(m);
                        } else {
                            report.for_our_offers.push(m);
                        }
                    }
                }
                if demander.document.publisher == me && !met {
                    report.unmet_demands.push(demand.identifier.clone());
                }
            }
        }
        report
    }
}

/// The lowercased text an offer is found by: title, description, identifier, resource code,
/// standard, keywords and themes.
fn search_text(entry: &CatalogueEntry) -> String {
    let o = &entry.offer;
    let mut parts: Vec<&str> = vec![
        &o.title,
        &o.description,
        &o.identifier,
        &o.resource_code,
        &entry.conforms_to.id,
    ];
    parts.extend(o.keyword.iter().map(String::as_str));
    parts.extend(o.theme.iter().map(String::as_str));
    parts.join("\n").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeKey;
    use serde_json::json;

    type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

    fn snapshot(key: &NodeKey, sequence: u64, title: &str) -> TestResult<Signed<Catalogue>> {
        let offer: CatalogueEntry = serde_json::from_value(json!({
            "offer": {
                "identifier": "enterprise-licence", "title": title, "description": "d",
                "media_type": "application/x-ndjson", "resource_code": "310000-RS-0001",
                "share_type": "conditional", "share_conditions": "仅限核验", "share_method": "file",
                "update_cycle": "daily", "schema_id": "enterprise-licence",
                "schema_version": "1.0.0"
            },
            "publisher": key.peer_id_text(),
            "conforms_to": {"id": "enterprise-licence", "version": "1.0.0", "digest": "00"},
            "information_items": [],
            "modified": "2026-05-01T00:00:00Z"
        }))?;
        let catalogue = Catalogue {
            publisher: key.peer_id_text().to_owned(),
            region: "310000".parse()?,
            organisation: "上海市大数据中心".into(),
            sequence,
            issued_at: "2026-12-08T00:00:00Z".into(),
            offers: vec![offer],
            demands: Vec::new(),
            withheld: Vec::new(),
        };
        Ok(Signed::sign(catalogue, key.signing_key())?)
    }

    #[test]
    fn resolved_offers_follow_the_snapshot_held() -> TestResult {
        let key = NodeKey::from_seed([7; 32]);
        let held = HeldCatalogues::default();
        assert!(held.offers_named("enterprise-licence").is_empty());
        held.hold(key.peer_id(), snapshot(&key, 1, "营业执照")?);
        let first = held.offers_named("enterprise-licence");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].publisher, key.peer_id());
        assert_eq!(first[0].offer.offer.title, "营业执照");
        // Asked again, the same resolved offer, not another copy.
        assert!(Arc::ptr_eq(
            &first[0].offer,
            &held.offers_named("enterprise-licence")[0].offer
        ));
        held.hold(key.peer_id(), snapshot(&key, 2, "营业执照（第二版）")?);
        let second = held.offers_named("enterprise-licence");
        assert_eq!(second[0].offer.offer.title, "营业执照（第二版）");
        assert!(held.offers_named("no-such-dataset").is_empty());
        Ok(())
    }

    #[test]
    fn names_asked_for_are_kept_within_their_bound() -> TestResult {
        let key = NodeKey::from_seed([7; 32]);
        let held = HeldCatalogues::default();
        held.hold(key.peer_id(), snapshot(&key, 1, "营业执照")?);
        for i in 0..(3 * MAX_NAMED_KEPT) {
            assert!(held.offers_named(&format!("unknown-{i}")).is_empty());
            assert!(held.named.lock().len() <= MAX_NAMED_KEPT);
        }
        assert_eq!(held.offers_named("enterprise-licence").len(), 1);
        Ok(())
    }
}
